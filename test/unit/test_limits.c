/*
 * test_limits.c
 *	  Unit tests of the model parameter ranges and of rcf_forest_memory, the
 *	  bound the SQL layer compares with anomaly.max_forest_memory: it is
 *	  checked against what the engine really allocates, through an allocator
 *	  that counts.
 */
#include <stdlib.h>

#include "counting_alloc.h"
#include "forests.h"
#include "noise.h"
#include "unit.h"
#include "rcf/rcf.h"
#include "rcf/grade.h"
#include "rcf/rcf_internal.h"

/*
 * Creates a forest with these parameters through a counting allocator,
 * feeds it n distinct records, encodes it, and decodes the encoding through
 * another counting allocator.  The arena must be exactly rcf_arena_size, and
 * no moment of either life may hold more than rcf_forest_memory.  Returns
 * the decoder's peak, for the tightness test.
 */
/* The bounding_box_cache_fraction of check_bound's forests. */
static double bound_fraction = 1.0;

static size_t
check_bound(int dims, int shingle, int trees, int samples, double decay,
			long n, const char *what)
{
	RcfParams	p;
	RcfAllocator a;
	CountingAlloc c1 = {0},
				c2 = {0};
	RcfForest  *f,
			   *g;
	uint64_t	s = 99;
	double		rec[8];
	size_t		len,
				bound,
				arena;
	uint8_t    *buf;
	RcfDecodeStatus status;
	const char *detail;

	rcf_params_default(&p, dims);
	p.shingle_size = shingle;
	p.number_of_trees = trees;
	p.sample_size = samples;
	p.time_decay = decay;
	p.bounding_box_cache_fraction = bound_fraction;
	bound = rcf_forest_memory(&p);
	arena = rcf_arena_size(&p);

	a.alloc = counting_alloc;
	a.free = counting_free;
	a.ctx = &c1;
	f = rcf_create(&p, &a);
	UNIT_OK(f != NULL && c1.blocks == (shingle > 1 ? 2 : 1) && c1.live == rcf_bytes(f) &&
			c1.live == arena + (shingle > 1 ? rcf_store_block_size(&p, f->rec_cap) : 0),
			"%s: the forest is its arena of rcf_arena_size bytes (%zu) and with shingling its record store, as rcf_bytes says",
			what, arena);
	for (long i = 0; i < n; i++)
	{
		for (int d = 0; d < dims; d++)
			rec[d] = noise(&s) * 100.0 + (double) i;
		rcf_update(f, rec);
		if (c1.live != rcf_bytes(f))
			break;
	}
	UNIT_OK(c1.live == rcf_bytes(f), "%s: rcf_bytes follows the store as it grows (%zu)",
			what, rcf_bytes(f));
	len = rcf_encoded_size(f);
	buf = malloc(len);
	UNIT_OK(rcf_encode(f, buf, len) == len, "%s: encodes", what);
	UNIT_OK(rcf_check(f) == NULL, "%s: is sound", what);
	UNIT_OK(c1.peak <= bound,
			"%s: creating, updating, checking and encoding peak at %zu bytes, within the bound %zu",
			what, c1.peak, bound);

	a.ctx = &c2;
	g = rcf_decode(buf, len, &a, &status, &detail);
	UNIT_OK(g != NULL, "%s: decodes (%s)", what, detail ? detail : "ok");
	UNIT_OK(c2.peak <= bound && c2.peak > arena,
			"%s: decoding peaks at %zu bytes, above the arena %zu and within the bound %zu",
			what, c2.peak, arena, bound);
	rcf_free(g);
	rcf_free(f);
	UNIT_OK(c1.live == 0 && c2.live == 0, "%s: everything is freed", what);
	free(buf);
	return c2.peak;
}

/* The bound at the model ranges' extremes, and its growth. */
static void
test_bound_values(void)
{
	RcfParams	p;
	size_t		small,
				big;

	rcf_params_default(&p, 1);
	small = rcf_forest_memory(&p);
	UNIT_OK(small > rcf_arena_size(&p) && small < 4 * rcf_arena_size(&p),
			"KDA's defaults: bound %zu, arena %zu", small, rcf_arena_size(&p));

	/* Finding 9 of issue 12: 1,000 trees x 1,000 samples x 1,024 values. */
	rcf_params_default(&p, 1024);
	p.number_of_trees = RCF_MODEL_MAX_TREES;
	p.sample_size = RCF_MODEL_MAX_SAMPLES;
	p.output_after = RCF_MODEL_MAX_SAMPLES / 4;
	big = rcf_forest_memory(&p);
	UNIT_OK(big > (size_t) 11000 * 1000 * 1000 && rcf_model_params_check(&p) == NULL,
			"the largest model SQL allows needs more than 11 GB (%zu bytes)", big);

	rcf_params_default(&p, 4);
	p.number_of_trees = 50;
	small = rcf_forest_memory(&p);
	p.number_of_trees = 100;
	big = rcf_forest_memory(&p);
	UNIT_OK(big > small && big < 2 * small + 4096,
			"the bound is about linear in the number of trees (%zu, %zu)", small, big);
}

/*
 * With one tree whose sampler holds only distinct points from far apart
 * records, the decoder reaches the most points its buffer is sized for:
 * the bound then exceeds the real peak of decoding a current model by one
 * point's share at most, plus what a version 1 model's buffer takes more
 * (its record runs and sequence numbers; test_encode.c decodes version 1
 * fixtures within the bound).
 */
static void
test_bound_tight(void)
{
	RcfParams	p;
	size_t		peak,
				bound;

	rcf_params_default(&p, 3);
	p.number_of_trees = 1;
	p.sample_size = 10;
	p.time_decay = 1e9;
	bound = rcf_forest_memory(&p);
	peak = check_bound(3, 1, 1, 10, 1e9, 5000, "one tree, all points distinct");
	{
		size_t		v1_more = rcf_decode_scratch(&p, 1, 10, 10) -
			rcf_decode_scratch(&p, 2, 10, 0);

		UNIT_OK(bound - peak <= v1_more + 3 * sizeof(float) + 1,
				"the bound is exact but for one point's share and version 1's extra (bound %zu, peak %zu, version 1 %zu more)",
				bound, peak, v1_more);
	}
}

/* The model ranges: SQL's limits, refused outside, accepted at the edges. */
static void
test_model_ranges(void)
{
	RcfParams	p;

#define EXPECT(cond, valid, what) \
	do { \
		rcf_params_default(&p, 1); \
		p.output_after = 64; \
		cond; \
		UNIT_OK((rcf_model_params_check(&p) == NULL) == (valid), "%s", what); \
	} while (0)

	EXPECT((void) 0, true, "KDA's defaults are a valid model");
	EXPECT(p.number_of_trees = RCF_MODEL_MAX_TREES, true, "1000 trees are valid");
	EXPECT(p.number_of_trees = RCF_MODEL_MAX_TREES + 1, false, "1001 trees are not");
	EXPECT((p.sample_size = RCF_MODEL_MIN_SAMPLES, p.output_after = 2), true,
		   "sub_sample_size 10 is valid");
	EXPECT((p.sample_size = 9, p.output_after = 2), false, "sub_sample_size 9 is not");
	EXPECT(p.sample_size = RCF_MODEL_MAX_SAMPLES, true, "sub_sample_size 1000 is valid");
	EXPECT(p.sample_size = RCF_MODEL_MAX_SAMPLES + 1, false, "sub_sample_size 1001 is not");
	EXPECT(p.sample_size = RCF_MAX_SAMPLES, false,
		   "sub_sample_size 4096 (the engine's limit) is not a valid model");
	EXPECT(p.shingle_size = RCF_MODEL_MAX_SHINGLE, true, "shingle_size 30 is valid");
	EXPECT(p.shingle_size = RCF_MODEL_MAX_SHINGLE + 1, false, "shingle_size 31 is not");
	EXPECT((p.dims = 32, p.shingle_size = 32), false, "1024 values past shingle 30 are not");
	EXPECT((p.dims = 1024), true, "1024 dimensions are valid");
	EXPECT((p.dims = 1025), false, "1025 dimensions are not");
	EXPECT(p.time_decay = 256, false, "time_decay equal to sub_sample_size is not");
	EXPECT(p.time_decay = 257, true, "time_decay above sub_sample_size is valid");
	EXPECT(p.time_decay = 0, false, "time_decay 0 (engine: no decay) is not a model's");
	EXPECT(p.time_decay = 2e18, false, "time_decay 2e18 is not");
	EXPECT(p.output_after = 0, false, "output_after 0 is not");
	EXPECT(p.output_after = 257, false, "output_after above sub_sample_size is not");
#undef EXPECT
}

/* rcf_model_peek_params reads what rcf_encode wrote. */
static void
test_peek(void)
{
	RcfParams	q;
	RcfForest  *f = make_forest(2, 3, 7, 20, 555, 12345);
	uint8_t    *buf;
	size_t		len;

	len = rcf_encoded_size(f);
	buf = malloc(len);
	rcf_encode(f, buf, len);
	UNIT_OK(rcf_model_peek_params(buf, len, &q) == 0 && q.dims == 2 &&
			q.shingle_size == 3 && q.number_of_trees == 7 &&
			q.sample_size == 20 && q.time_decay == 555 && q.seed == 12345 &&
			q.output_after == 5,
			"peek reads the parameters of an encoding");
	UNIT_OK(rcf_model_peek_params(buf, 47, &q) == -1,
			"peek refuses data shorter than the parameters");
	buf[0] ^= 1;
	UNIT_OK(rcf_model_peek_params(buf, len, &q) == -1,
			"peek refuses data without the marker");
	free(buf);
	rcf_free(f);
}

int
main(void)
{
	test_bound_values();
	test_model_ranges();
	test_peek();
	check_bound(1, 1, 100, 256, 100000, 3000, "KDA's defaults, 1-D");
	check_bound(3, 4, 20, 64, 1000, 2000, "3-D, shingle 4");
	check_bound(2, 1, 5, 10, 20, 500, "smallest sample, fast decay");
	check_bound(1, 1, 3, 1000, 100000, 0, "empty forest");
	bound_fraction = 0.3;
	check_bound(3, 4, 20, 64, 1000, 2000, "3-D, shingle 4, fraction 0.3");
	check_bound(5, 1, 10, 64, 1000, 2000, "5-D, fraction 0.3");
	bound_fraction = 0.0;
	check_bound(3, 4, 20, 64, 1000, 2000, "3-D, shingle 4, fraction 0");
	check_bound(5, 1, 10, 64, 1000, 2000, "5-D, fraction 0");
	bound_fraction = 1.0;
	test_bound_tight();
	return unit_done();
}
