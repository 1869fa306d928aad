/*
 * test_rcf.c
 *	  Unit tests of the Random Cut Forest engine.
 */
#include <stdlib.h>

#include "counting_alloc.h"
#include "forests.h"
#include "noise.h"
#include "unit.h"
#include "rcf/rcf.h"
#include "rcf/rcf_internal.h"
#include "rcf/grade.h"

/* Scores that a hand calculation gives for tiny trees. */
static void
test_exact_scores(void)
{
	RcfParams	p = forest_params(1, 1, 1, 4);
	RcfForest  *f;
	double		x;

	p.output_after = 1;
	f = rcf_create(&p, NULL);

	x = 0.0;
	UNIT_NEAR(rcf_process(f, &x), 0.0, 0, "score is 0 before any point is learned");
	x = 1.0;
	UNIT_NEAR(rcf_score(f, &x), 1.0, 1e-12,
			  "unseen point against one leaf scores 1/(0+1) * log2(2)");
	x = 0.0;
	UNIT_NEAR(rcf_score(f, &x), 0.5, 1e-12,
			  "seen point against one leaf scores (1 - 1/2) / log2(2) * log2(2)");
	x = 10.0;
	rcf_update(f, &x);
	x = 20.0;

	/*
	 * Leaf {10} at depth 1 gives 1/2; at the root, box [0, 10] and q = 20:
	 * p = 10 / 20, so 0.5 * 1 + 0.5 * 0.5 = 0.75, times log2(3).
	 */
	UNIT_NEAR(rcf_score(f, &x), 0.75 * log2(3.0), 1e-12,
			  "outside point against two leaves matches the hand calculation");
	UNIT_OK(rcf_check(f) == NULL, "tiny forest is sound");
	rcf_free(f);
}

/* Long runs with many evictions keep every structural invariant. */
static void
test_invariants(int dims, int shingle, int samples, double decay,
				int duplicates, const char *what)
{
	RcfForest  *f = make_forest(dims, shingle, 8, samples, decay, 7);
	uint64_t	s = 12345;
	double		rec[8];
	const char *err = NULL;
	int			checks = 0;

	for (int i = 0; i < 20000 && err == NULL; i++)
	{
		for (int d = 0; d < dims; d++)
		{
			rec[d] = sin(i * 0.05 + d) * 10 + noise(&s) * 3;
			if (duplicates)
				rec[d] = floor(rec[d] / 4);
		}
		rcf_process(f, rec);
		if (i % 997 == 0 || i == 19999)
		{
			err = rcf_check(f);
			checks++;
		}
	}
	UNIT_OK(err == NULL, "invariants hold after a 20000-point storm (%s): %s",
			what, err ? err : "sound");
	rcf_free(f);
}

/* The attribution splits the score exactly. */
static void
test_attribution_sums(void)
{
	RcfForest  *f = make_forest(3, 2, 30, 64, 1000, 3);
	uint64_t	s = 99;
	double		rec[3];
	double		high[6],
				low[6];
	double		worst = 0.0;
	int			high_dim_hit = 0;

	for (int i = 0; i < 3000; i++)
	{
		double		score,
					attr,
					sum = 0.0;

		rec[0] = noise(&s);
		rec[1] = noise(&s) + 5;
		rec[2] = noise(&s) - 5;
		if (i == 2500)
			rec[1] = 50.0;		/* far above in dimension 1 of the record */
		score = rcf_score(f, rec);
		attr = rcf_attribution(f, rec, high, low);
		for (int d = 0; d < 6; d++)
			sum += high[d] + low[d];
		if (fabs(sum - score) > worst)
			worst = fabs(sum - score);
		if (fabs(attr - score) > worst)
			worst = fabs(attr - score);
		if (i == 2500)
		{
			/* The shingle is (previous record, this record): dim 3 + 1. */
			int			best = 0;

			for (int d = 1; d < 6; d++)
				if (high[d] + low[d] > high[best] + low[best])
					best = d;
			high_dim_hit = (best == 4 && high[4] > low[4]);
		}
		rcf_update(f, rec);
	}
	UNIT_NEAR(worst, 0.0, 1e-9, "attribution sums to the score on every point");
	UNIT_OK(high_dim_hit, "an outlier above in one dimension is attributed to that dimension, HIGH");
	rcf_free(f);
}

/* Same seed and input give the same scores; another seed differs. */
static void
test_determinism(void)
{
	RcfForest  *a = make_forest(2, 4, 20, 128, 100000, 11);
	RcfForest  *b = make_forest(2, 4, 20, 128, 100000, 11);
	RcfForest  *c = make_forest(2, 4, 20, 128, 100000, 12);
	uint64_t	s = 5;
	int			same = 1,
				differ = 0;

	for (int i = 0; i < 5000; i++)
	{
		double		rec[2] = {noise(&s), sin(i * 0.3)};
		double		sa = rcf_process(a, rec);
		double		sb = rcf_process(b, rec);
		double		sc = rcf_process(c, rec);

		same &= (sa == sb);
		differ |= (sa != sc);
	}
	UNIT_OK(same, "two forests with the same seed give bit-identical scores");
	UNIT_OK(differ, "a different seed gives different scores");
	rcf_free(a);
	rcf_free(b);
	rcf_free(c);
}

/* An injected outlier outscores every inlier of generated data. */
static void
test_outlier(void)
{
	RcfForest  *f = make_forest(1, 8, 50, 256, 100000, 42);
	uint64_t	s = 77;
	double		max_inlier = 0.0,
				outlier = 0.0;

	for (int i = 0; i < 6000; i++)
	{
		double		x = 10 * sin(2 * M_PI * i / 100.0) + noise(&s);
		double		score;

		if (i == 5000)
			x += 15;
		score = rcf_process(f, &x);
		if (i == 5000)
			outlier = score;
		else if (i > 1000 && (i < 5000 || i > 5008))
			max_inlier = score > max_inlier ? score : max_inlier;
	}
	UNIT_OK(outlier > max_inlier,
			"injected spike scores %.3f, above every inlier (max %.3f)",
			outlier, max_inlier);
	UNIT_OK(outlier > 1.5 * max_inlier,
			"the spike scores at least 1.5 times the highest inlier");
	rcf_free(f);
}

/*
 * Internal shingling is the same as feeding the concatenated records to an
 * unshingled forest of the wider dimension.
 */
static void
test_shingling(void)
{
	RcfForest  *sh = make_forest(2, 3, 10, 64, 5000, 8);
	RcfForest  *flat = make_forest(6, 1, 10, 64, 5000, 8);
	double		hist[3][2] = {{0}};
	uint64_t	s = 31;
	int			same = 1;
	int			nonzero = 0;

	for (int i = 0; i < 3000; i++)
	{
		double		rec[2] = {noise(&s), cos(i * 0.2)};
		double		a = rcf_process(sh, rec);

		hist[0][0] = hist[1][0];
		hist[0][1] = hist[1][1];
		hist[1][0] = hist[2][0];
		hist[1][1] = hist[2][1];
		hist[2][0] = rec[0];
		hist[2][1] = rec[1];
		if (i >= 2)
		{
			double		point[6] = {hist[0][0], hist[0][1], hist[1][0],
			hist[1][1], hist[2][0], hist[2][1]};
			double		b = rcf_process(flat, point);

			same &= (a == b);
			nonzero += (a != 0.0);
		}
		else
			same &= (a == 0.0);
	}
	UNIT_OK(same && nonzero > 2500,
			"a 3-shingle of 2-D records scores exactly as the 6-D concatenation");
	rcf_free(sh);
	rcf_free(flat);
}

/* Scores are 0 for shingle_size - 1 + sample_size / 4 records, then not. */
static void
test_warmup(int shingle)
{
	RcfForest  *f = make_forest(1, shingle, 10, 256, 100000, 1);
	int			first_nonzero = -1;
	int			ready_at = -1;

	for (int i = 0; i < 200 && first_nonzero < 0; i++)
	{
		double		x = i % 7;

		if (ready_at < 0 && rcf_output_ready(f))
			ready_at = i;
		if (rcf_process(f, &x) != 0.0)
			first_nonzero = i;
	}
	UNIT_EQ_INT(ready_at, shingle - 1 + 64,
				"shingle %d: output is ready after shingle - 1 + 256/4 records", shingle);
	UNIT_EQ_INT(first_nonzero, shingle - 1 + 64,
				"shingle %d: the first non-zero score is the record after the warm-up", shingle);
	rcf_free(f);
}

/* Time decay makes the forest forget: an old level becomes anomalous. */
static void
test_time_decay(void)
{
	RcfForest  *fast = make_forest(1, 1, 50, 128, 200, 4);
	RcfForest  *none = make_forest(1, 1, 50, 128, 0, 4);
	uint64_t	s = 17;
	double		x;
	double		fast_score,
				none_score;

	for (int i = 0; i < 20000; i++)
	{
		x = (i < 15000 ? 0.0 : 100.0) + noise(&s);
		rcf_update(fast, &x);
		rcf_update(none, &x);
	}
	x = 0.0;
	fast_score = rcf_score(fast, &x);
	none_score = rcf_score(none, &x);
	UNIT_OK(fast_score > none_score + 0.5,
			"after a level shift, the old level scores %.3f with time_decay 200 and %.3f without decay",
			fast_score, none_score);
	rcf_free(fast);
	rcf_free(none);
}

/* Parameter checks name the parameter. */
static void
test_params(void)
{
	RcfParams	p;

	rcf_params_default(&p, 1);
	UNIT_OK(rcf_params_check(&p) == NULL, "KDA defaults are valid");
	UNIT_OK(p.number_of_trees == 100 && p.sample_size == 256 &&
			p.time_decay == 100000 && p.shingle_size == 1,
			"defaults are KDA's: 100 trees, 256 samples, time decay 100000, shingle 1");
	p.number_of_trees = 0;
	UNIT_OK(rcf_params_check(&p) && strstr(rcf_params_check(&p), "number_of_trees"),
			"zero trees is refused, naming number_of_trees");
	rcf_params_default(&p, 1);
	p.sample_size = 1;
	UNIT_OK(rcf_params_check(&p) && strstr(rcf_params_check(&p), "sample_size"),
			"sample size 1 is refused, naming sample_size");
	rcf_params_default(&p, 40);
	p.shingle_size = 30;
	UNIT_OK(rcf_params_check(&p) != NULL, "more than 1024 dimensions is refused");
	UNIT_OK(rcf_create(&p, NULL) == NULL, "rcf_create refuses invalid parameters");
	rcf_params_default(&p, 1);
	p.time_decay = -1;
	UNIT_OK(rcf_params_check(&p) && strstr(rcf_params_check(&p), "time_decay"),
			"negative time decay is refused");
	p.time_decay = 0.5;
	UNIT_OK(rcf_params_check(&p) && strstr(rcf_params_check(&p), "time_decay"),
			"a time decay below 1 (lambda above 1) is refused");
	rcf_params_default(&p, 1);
	UNIT_OK(p.bounding_box_cache_fraction == 1.0,
			"bounding_box_cache_fraction defaults to 1");
	{
		static const double bad[] = {-0.01, 1.0001, -INFINITY, INFINITY};
		bool		refused = true;

		for (int i = 0; i < 4; i++)
		{
			p.bounding_box_cache_fraction = bad[i];
			refused &= rcf_params_check(&p) != NULL &&
				strstr(rcf_params_check(&p), "bounding_box_cache_fraction") != NULL &&
				rcf_create(&p, NULL) == NULL;
		}
		p.bounding_box_cache_fraction = NAN;
		refused &= rcf_params_check(&p) != NULL;
		UNIT_OK(refused, "a bounding_box_cache_fraction below 0, above 1 or NaN is refused, naming it");
		p.bounding_box_cache_fraction = 0;
		UNIT_OK(rcf_params_check(&p) == NULL, "a fraction of 0 is valid");
	}
}

/*
 * The reported size is the arena's plus the record store's; the store is
 * shared by all trees, holds each record once, grows, and is compacted.
 */
static void
test_bytes(void)
{
	RcfParams	p = forest_params(1, 8, 50, 256);
	RcfForest  *f = rcf_create(&p, NULL);
	double		rec[1];
	size_t		peak = 0;
	bool		sound = true;
	bool		learned = true;
	bool		compacted = false;
	uint32_t	prev_used = 0;

	UNIT_OK(f != NULL && f->shared && f->trees[0].points == NULL &&
			rcf_bytes(f) == rcf_arena_size(&p) + rcf_store_block_size(&p, f->rec_cap),
			"rcf_bytes reports the arena and the store (%zu bytes)", f ? rcf_bytes(f) : 0);
	for (long i = 0; i < 20000; i++)
	{
		rec[0] = sin(i / 9.0) + 0.01 * (i % 7);
		if (rcf_update(f, rec) != 0)
			learned = false;
		if (f->rec_used < prev_used)
			compacted = true;
		prev_used = f->rec_used;
		if (rcf_bytes(f) > peak)
			peak = rcf_bytes(f);
		if (i % 2500 == 0 && rcf_check(f) != NULL)
			sound = false;
	}
	UNIT_OK(learned && sound && rcf_check(f) == NULL,
			"every record learned, sound through growth and compaction");
	UNIT_OK(compacted, "the store was compacted");
	UNIT_OK(f->rec_used <= (uint32_t) 50 * 256 * 8 && f->rec_cap <= rcf_store_max_records(&p),
			"the store holds %u records in %u", f->rec_used, f->rec_cap);
	UNIT_OK(peak < rcf_arena_size(&p) + sizeof(float) * 50 * 256 * 8,
			"shared records: at most %zu bytes, below a copy per leaf (%zu)",
			peak, rcf_arena_size(&p) + sizeof(float) * 50 * 256 * 8);
	rcf_free(f);

	/* Without shingling each leaf holds its values: no store. */
	p.shingle_size = 1;
	f = rcf_create(&p, NULL);
	UNIT_OK(f && !f->shared && f->records == NULL && f->trees[0].leaf_loc == NULL &&
			rcf_bytes(f) == rcf_arena_size(&p), "shingle 1: values in the leaves, no store");
	rcf_free(f);

	/*
	 * One value a point: no box is kept (a subtree's box is its outermost
	 * leaves), so KDA's defaults fit the 600 KB after any run.
	 */
	rcf_params_default(&p, 1);
	f = rcf_create(&p, NULL);
	UNIT_OK(f && f->box_mode == RCF_BOXES_NONE && f->trees[0].boxes == NULL &&
			rcf_bytes(f) <= 600000,
			"KDA's defaults: no boxes, %zu bytes (at most 600,000)", f ? rcf_bytes(f) : 0);
	rcf_free(f);
	p.dims = 2;
	f = rcf_create(&p, NULL);
	UNIT_OK(f && f->box_mode == RCF_BOXES_ALL && f->trees[0].boxes != NULL,
			"two values a point: every box cached");
	rcf_free(f);
}

/*
 * rcf_reserve(n): the next n updates allocate nothing (a detector learns on
 * threads that must not allocate); and when the store cannot grow,
 * rcf_update says so and leaves the forest as it was.
 */
static void
test_reserve(void)
{
	CountingAlloc c = {0};
	RcfAllocator a = {counting_alloc, counting_free, &c};
	RcfParams	p = forest_params(2, 4, 20, 64);
	RcfForest  *f = rcf_create(&p, &a);
	double		rec[2];
	int			quiet_runs = 0;
	bool		none = true;
	bool		refused = false;
	bool		unchanged = true;

	for (long i = 0; i < 30000 && f; i += 700)
	{
		int			before;

		if (rcf_reserve(f, 700) != 0)
			none = false;
		before = c.calls;
		for (long k = i; k < i + 700; k++)
		{
			rec[0] = sin(k / 7.0);
			rec[1] = (double) (k % 11);
			rcf_update(f, rec);
		}
		if (c.calls != before)
			none = false;
		quiet_runs++;
	}
	UNIT_OK(f && none && quiet_runs > 40 && rcf_check(f) == NULL,
			"after rcf_reserve(700), 700 updates allocate nothing (%d runs)", quiet_runs);

	rcf_free(f);

	/*
	 * Memory runs out once the new forest's first store is full: an update
	 * is refused, the forest stays sound.
	 */
	f = rcf_create(&p, &a);
	c.fail = true;
	for (long k = 0; k < 10000 && f && !refused; k++)
	{
		uint64_t	n = rcf_updates(f);

		rec[0] = 1000.0 + k;
		rec[1] = -(double) k;
		if (rcf_update(f, rec) != 0)
		{
			refused = true;
			unchanged = rcf_updates(f) == n;
		}
	}
	c.fail = false;				/* rcf_check allocates */
	UNIT_OK(f && refused && unchanged && rcf_check(f) == NULL,
			"a store that cannot grow refuses the update and leaves the forest sound");
	rcf_free(f);
}

/* Nodes of the caching size that have no cached box, in all trees. */
static int
uncached_large_nodes(const RcfForest *f)
{
	int			count = 0;

	for (int t = 0; t < f->params.number_of_trees; t++)
	{
		const RcfTree *tree = &f->trees[t];
		int16_t		stack[4096];
		int			top = 0;

		if (tree->root != RCF_NIL)
			stack[top++] = tree->root;
		while (top > 0)
		{
			int16_t		ref = stack[--top];

			if (RCF_IS_LEAF(ref))
				continue;
			if (tree->leaf_count[ref] >= RCF_BOX_MIN_LEAVES &&
				tree->node_box[ref] == RCF_NO_BOX)
				count++;
			stack[top++] = tree->nodes[ref].child[0];
			stack[top++] = tree->nodes[ref].child[1];
		}
	}
	return count;
}

/*
 * Boxes that are not cached are recomputed with the same values.  Values
 * of growing powers of two, alternately positive and negative, grow each
 * tree into a chain (each new point lies so far out that the cut almost
 * surely falls between it and all the others), with more large subtrees
 * than the box pool holds, so some boxes must be recomputed over long
 * subtrees.
 * A decoded copy caches a different set of boxes (the decoder's choice,
 * parents first), so equal scores from both show that a box's value does
 * not depend on whether it is cached.
 */
static void
test_box_cache(void)
{
	RcfParams	p;
	RcfForest  *f;
	RcfForest  *g;
	uint8_t    *buf;
	size_t		len;
	RcfDecodeStatus status;
	const char *detail;
	const char *err = NULL;
	int			overflowed = 0;
	int			same = 1;
	int			differ_in_cache = 0;

	/* Wide enough points for boxes to be cached by subtree size. */
	rcf_params_default(&p, RCF_BOX_PARTIAL_MIN_DIMS);
	p.number_of_trees = 4;
	p.sample_size = 64;
	p.time_decay = 257;
	p.seed = 3;
	f = rcf_create(&p, NULL);
	UNIT_OK(f->box_partial, "a forest of %d-value points caches boxes by subtree size",
			RCF_BOX_PARTIAL_MIN_DIMS);
	for (int i = 0; i < 3000 && err == NULL; i++)
	{
		double		x[RCF_BOX_PARTIAL_MIN_DIMS];

		for (int d = 0; d < RCF_BOX_PARTIAL_MIN_DIMS; d++)
			x[d] = ldexp(1.0, i % 100) * (i % 2 ? 1 : -1) + d;
		rcf_process(f, x);
		if (uncached_large_nodes(f) > 0)
			overflowed = 1;
		if (i % 250 == 0)
			err = rcf_check(f);
	}
	UNIT_OK(overflowed, "a rising series outgrows the box pool (nodes of the caching size left uncached)");
	UNIT_OK(err == NULL, "the forest stays sound with the pool exhausted: %s", err ? err : "sound");

	buf = malloc(rcf_encoded_size(f));
	len = rcf_encode(f, buf, rcf_encoded_size(f));
	g = rcf_decode(buf, len, NULL, &status, &detail);
	if (UNIT_OK(g != NULL, "the chained forest decodes (%s)", detail ? detail : "ok"))
	{
		for (int t = 0; t < p.number_of_trees; t++)
			for (int i = 0; i < p.sample_size - 1; i++)
				if (f->trees[t].node_box[i] != g->trees[t].node_box[i])
					differ_in_cache = 1;
		UNIT_OK(differ_in_cache, "the decoded copy caches other boxes than the original");
		/* Back and forth around the data, then a fresh rise. */
		for (int i = 0; i < 2000; i++)
		{
			double		x[RCF_BOX_PARTIAL_MIN_DIMS];
			double		high[RCF_BOX_PARTIAL_MIN_DIMS],
						low[RCF_BOX_PARTIAL_MIN_DIMS];

			for (int d = 0; d < RCF_BOX_PARTIAL_MIN_DIMS; d++)
				x[d] = (i < 1000 ? 1500.0 + 1500.0 * sin(i * 0.01 + d) : 3000.0 + i * d);
			same &= rcf_attribution(f, x, high, low) == rcf_attribution(g, x, high, low);
			same &= rcf_process(f, x) == rcf_process(g, x);
		}
		UNIT_OK(same, "scores and attributions of both stay bit-identical over 2000 more points");
		UNIT_OK(rcf_check(f) == NULL && rcf_check(g) == NULL, "both are sound afterwards");
	}
	rcf_free(g);
	free(buf);
	rcf_free(f);
}

/*
 * Partial caching at several sizes of cached subtrees (forest->
 * box_min_leaves, set before the first point), over points whose trees
 * change all the time (a short time decay, duplicates, jumps): every
 * cached box stays the exact box of its subtree and the leaves stay in
 * their left-to-right order (rcf_check), and scores and attributions are
 * bit-identical whatever the size, from 2 (every internal node cached while
 * the pool lasts) to a size no subtree reaches (no box at all).  Shared
 * store (shingle 8) and copied points (shingle 1).
 */
static void
test_box_sizes(int dims, int shingle)
{
	static const int sizes[] = {2, 3, 8, 32, 100};
	enum
	{
		NSIZES = sizeof(sizes) / sizeof(sizes[0])
	};
	RcfParams	p;
	RcfForest  *f[NSIZES];
	const char *err = NULL;
	int			same = 1;
	int			cached_any = 0;
	uint64_t	s = 7;

	rcf_params_default(&p, dims);
	p.shingle_size = shingle;
	p.number_of_trees = 5;
	p.sample_size = 64;
	p.time_decay = 80;
	p.seed = 11;
	for (int k = 0; k < NSIZES; k++)
	{
		f[k] = rcf_create(&p, NULL);
		f[k]->box_min_leaves = sizes[k];
	}
	UNIT_OK(f[0]->box_partial, "%d x %d values a point: boxes cached by subtree size",
			dims, shingle);
	for (int i = 0; i < 4000 && err == NULL; i++)
	{
		double		x[16];
		double		score[NSIZES];
		double		high[16 * RCF_MAX_SHINGLE],
					low[16 * RCF_MAX_SHINGLE];
		double		attr[NSIZES];

		for (int d = 0; d < dims; d++)
		{
			x[d] = 10 * sin(i * 0.07 + d) + 3 * noise(&s);
			if (i % 5 == 0)
				x[d] = floor(x[d]);	/* duplicates */
			if (i % 397 == 0)
				x[d] += 80;		/* far out */
		}
		for (int k = 0; k < NSIZES; k++)
		{
			attr[k] = rcf_attribution(f[k], x, high, low);
			score[k] = rcf_process(f[k], x);
			if (k > 0)
				same &= score[k] == score[0] && attr[k] == attr[0];
		}
		for (int t = 0; t < p.number_of_trees; t++)
			cached_any |= f[2]->trees[t].box_nfree < f[2]->box_slots;
		if (i % 97 == 0)
			for (int k = 0; k < NSIZES && err == NULL; k++)
				err = rcf_check(f[k]);
	}
	UNIT_OK(err == NULL, "%d x %d: cached boxes exact, leaves in order: %s",
			dims, shingle, err ? err : "sound");
	UNIT_OK(cached_any, "%d x %d: boxes are cached at size 8", dims, shingle);
	UNIT_OK(same, "%d x %d: scores and attributions identical at every size",
			dims, shingle);
	for (int k = 0; k < NSIZES; k++)
		rcf_free(f[k]);
}

/*
 * The same points through forests that keep their boxes in every way the
 * engine has (none: one value a point; every box; boxes by subtree size
 * from 2, 8 and 32 leaves; no box, walked): scores, attributions and imputed values are
 * bit-identical at every point, each forest stays sound, and all encode
 * to the same bytes (the encoding derives boxes, it stores none).
 */
static void
test_box_modes(int dims, int shingle)
{
	static const struct
	{
		int			mode;
		int			min_leaves;
	}			ways[] = {
		{RCF_BOXES_ALL, 0}, {RCF_BOXES_PARTIAL, 2}, {RCF_BOXES_PARTIAL, 8},
		{RCF_BOXES_PARTIAL, 32}, {RCF_BOXES_NONE, 0}, {RCF_BOXES_WALK, 0},
	};
	enum
	{
		NWAYS = sizeof(ways) / sizeof(ways[0])
	};
	RcfParams	p;
	RcfForest  *f[NWAYS];
	int			n = 0;
	const char *err = NULL;
	int			same = 1;
	int			same_bytes = 1;
	uint64_t	s = 5;
	size_t		len0;
	uint8_t    *buf0;

	rcf_params_default(&p, dims);
	p.shingle_size = shingle;
	p.number_of_trees = 6;
	p.sample_size = 64;
	p.time_decay = 100;
	p.seed = 9;
	for (int w = 0; w < NWAYS; w++)
	{
		if (ways[w].mode == RCF_BOXES_NONE && dims * shingle != 1)
			continue;
		f[n] = rcf_create_boxes(&p, NULL, ways[w].mode);
		if (ways[w].min_leaves > 0)
			f[n]->box_min_leaves = ways[w].min_leaves;
		n++;
	}
	for (int i = 0; i < 3000 && err == NULL; i++)
	{
		double		x[8];
		double		high[8 * RCF_MAX_SHINGLE],
					low[8 * RCF_MAX_SHINGLE];
		double		score0 = 0,
					attr0 = 0;
		double		expected0[8];
		bool		missing[8] = {true, false, true, false, true, false, true, false};

		for (int d = 0; d < dims; d++)
		{
			x[d] = 5 * sin(i * 0.09 + 2 * d) + noise(&s);
			if (i % 4 == 0)
				x[d] = round(x[d]);
			if (i % 311 == 0)
				x[d] -= 60;
		}
		for (int k = 0; k < n; k++)
		{
			double		attr = rcf_attribution(f[k], x, high, low);
			double		expected[8];

			if (i % 50 == 0 && rcf_impute(f[k], x, missing, expected) == 0)
			{
				if (k == 0)
					memcpy(expected0, expected, sizeof(double) * dims);
				else
					same &= memcmp(expected, expected0, sizeof(double) * dims) == 0;
			}
			if (k == 0)
				attr0 = attr;
			same &= attr == attr0;
			if (k == 0)
				score0 = rcf_process(f[k], x);
			else
				same &= rcf_process(f[k], x) == score0;
		}
		if (i % 101 == 0)
			for (int k = 0; k < n && err == NULL; k++)
				err = rcf_check(f[k]);
	}
	UNIT_OK(err == NULL, "%d x %d values, %d ways of keeping boxes: all sound: %s",
			dims, shingle, n, err ? err : "sound");
	UNIT_OK(same, "%d x %d: scores, attributions and imputations identical in every way",
			dims, shingle);
	len0 = rcf_encoded_size(f[0]);
	buf0 = malloc(len0);
	rcf_encode(f[0], buf0, len0);
	for (int k = 1; k < n; k++)
	{
		size_t		len = rcf_encoded_size(f[k]);
		uint8_t    *buf = malloc(len);

		same_bytes &= rcf_encode(f[k], buf, len) == len && len == len0 &&
			memcmp(buf, buf0, len) == 0;
		free(buf);
	}
	UNIT_OK(same_bytes, "%d x %d: every way encodes to the same bytes", dims, shingle);
	free(buf0);
	for (int k = 0; k < n; k++)
		rcf_free(f[k]);
}

/* A running FNV-1a hash of a double's bits. */
static uint64_t
hash_double(uint64_t h, double v)
{
	uint8_t		b[8];

	memcpy(b, &v, 8);
	for (int i = 0; i < 8; i++)
		h = (h ^ b[i]) * UINT64_C(0x100000001B3);
	return h;
}

/*
 * bounding_box_cache_fraction: forests of the same parameters but for the
 * fraction (1, 0.5, 0.25, 0.1, 0) learn the same points, with a short time
 * decay (so that points are deleted all the time), duplicates and jumps:
 * the hashes of all their scores, attributions and imputations are equal,
 * every forest stays sound, a smaller fraction never takes more memory,
 * and each fraction is kept by encoding: a decoded copy has it, goes on
 * with the same scores, and re-encodes to the same bytes; decoding with
 * another fraction gives the encoding of that fraction.  Points of one
 * value keep no box whatever the fraction.
 */
static void
test_box_fractions(int dims, int shingle, int samples)
{
	static const double fractions[] = {1.0, 0.5, 0.25, 0.1, 0.0};
	enum
	{
		NF = sizeof(fractions) / sizeof(fractions[0])
	};
	RcfParams	p;
	RcfForest  *f[NF];
	RcfForest  *g[NF];
	uint64_t	hash[NF];
	uint64_t	hash_g[NF];
	const char *err = NULL;
	bool		kept = true;
	bool		smaller = true;
	bool		modes = true;
	bool		same_bytes = true;
	bool		override = true;
	uint64_t	s = 17;
	int			D = dims * shingle;

	for (int k = 0; k < NF; k++)
	{
		rcf_params_default(&p, dims);
		p.shingle_size = shingle;
		p.number_of_trees = 7;
		p.sample_size = samples;
		p.time_decay = 3 * samples;
		p.seed = 23;
		p.bounding_box_cache_fraction = fractions[k];
		f[k] = rcf_create(&p, NULL);
		hash[k] = hash_g[k] = UINT64_C(0xCBF29CE484222325);
		if (D == 1)
			modes &= f[k]->box_mode == RCF_BOXES_NONE;
		else if ((int) (fractions[k] * (samples - 1)) == 0)
			modes &= f[k]->box_mode == RCF_BOXES_WALK && f[k]->box_slots == 0 &&
				f[k]->trees[0].node_box == NULL && f[k]->trees[0].leaf_count == NULL &&
				f[k]->trees[0].boxes == NULL;
		else if (fractions[k] < 1.0)
			modes &= f[k]->box_mode == RCF_BOXES_PARTIAL &&
				f[k]->box_slots <= (int) (fractions[k] * (samples - 1));
	}
	UNIT_OK(modes, "%d x %d: each fraction keeps its boxes as it should (%s)", dims, shingle,
			D == 1 ? "one value: none" : "no box in the pool: none, walked; below 1: a pool");

	for (int i = 0; i < 3000 && err == NULL; i++)
	{
		double		x[16];
		double		high[16 * 8],
					low[16 * 8];
		double		expected[16];
		bool		missing[16] = {true, false, true, false, false, true, false, false};

		for (int d = 0; d < dims; d++)
		{
			x[d] = 4 * sin(i * 0.11 + d) + noise(&s);
			if (i % 3 == 0)
				x[d] = round(x[d]);	/* duplicates */
			if (i % 257 == 0)
				x[d] += 50;		/* far out */
		}
		for (int k = 0; k < NF; k++)
		{
			hash[k] = hash_double(hash[k], rcf_attribution(f[k], x, high, low));
			for (int j = 0; j < D; j++)
				hash[k] = hash_double(hash_double(hash[k], high[j]), low[j]);
			if (i % 20 == 0 && rcf_impute(f[k], x, missing, expected) == 0)
				for (int j = 0; j < dims; j++)
					hash[k] = hash_double(hash[k], expected[j]);
			hash[k] = hash_double(hash[k], rcf_process(f[k], x));
		}
		if (i % 113 == 0)
			for (int k = 0; k < NF && err == NULL; k++)
				err = rcf_check(f[k]);
	}
	for (int k = 1; k < NF; k++)
		smaller &= rcf_bytes(f[k]) <= rcf_bytes(f[k - 1]) ||
			(f[k]->shared && rcf_arena_size(rcf_params(f[k])) <=
			 rcf_arena_size(rcf_params(f[k - 1])));
	UNIT_OK(err == NULL, "%d x %d: every fraction's forest is sound: %s", dims, shingle,
			err ? err : "sound");
	UNIT_OK(hash[1] == hash[0] && hash[2] == hash[0] && hash[3] == hash[0] &&
			hash[4] == hash[0],
			"%d x %d: scores, attributions and imputations hash the same at fractions 1, 0.5, 0.25, 0.1 and 0 (%016llx)",
			dims, shingle, (unsigned long long) hash[0]);
	UNIT_OK(smaller, "%d x %d: a smaller fraction takes no more memory (%zu bytes at 1, %zu at 0)",
			dims, shingle, rcf_bytes(f[0]), rcf_bytes(f[NF - 1]));

	/* Kept by encoding; another fraction on decoding. */
	{
		size_t		len0 = rcf_encoded_size(f[0]);
		uint8_t    *buf0 = malloc(len0);

		rcf_encode(f[0], buf0, len0);
		for (int k = 0; k < NF; k++)
		{
			size_t		len = rcf_encoded_size(f[k]);
			uint8_t    *buf = malloc(len);
			uint8_t    *again;
			RcfDecodeStatus status;
			const char *detail;
			RcfForest  *h;

			rcf_encode(f[k], buf, len);
			g[k] = rcf_decode(buf, len, NULL, &status, &detail);
			if (g[k] == NULL)
			{
				kept = false;
				free(buf);
				continue;
			}
			kept &= rcf_params(g[k])->bounding_box_cache_fraction == fractions[k] &&
				g[k]->box_mode == f[k]->box_mode;
			again = malloc(len);
			same_bytes &= rcf_encode(g[k], again, len) == len &&
				memcmp(again, buf, len) == 0;
			free(again);
			/* The default's bytes, and only its, have no flag. */
			kept &= (buf[6] == 0) == (fractions[k] == 1.0);
			h = rcf_model_decode_boxes(buf, len, NULL, NULL, NULL, 1.0, &status, &detail);
			if (h)
			{
				uint8_t    *as_one = malloc(len0);

				override &= rcf_params(h)->bounding_box_cache_fraction == 1.0 &&
					h->box_mode == f[0]->box_mode &&
					rcf_encoded_size(h) == len0 && rcf_encode(h, as_one, len0) == len0 &&
					memcmp(as_one, buf0, len0) == 0;
				free(as_one);
			}
			else
				override = false;
			rcf_free(h);
			free(buf);
		}
		free(buf0);
	}
	UNIT_OK(kept, "%d x %d: a decoded forest keeps its fraction (the default written as no flag)",
			dims, shingle);
	UNIT_OK(same_bytes, "%d x %d: every fraction's model re-encodes to its own bytes", dims, shingle);
	UNIT_OK(override, "%d x %d: decoded with fraction 1, every model encodes as the default's",
			dims, shingle);
	for (int i = 0; i < 500 && kept; i++)
	{
		double		x[16];

		for (int d = 0; d < dims; d++)
			x[d] = 4 * cos(i * 0.13 + d) + noise(&s) + (i % 97 == 0 ? -40 : 0);
		for (int k = 0; k < NF; k++)
			hash_g[k] = hash_double(hash_g[k], rcf_process(g[k], x));
	}
	UNIT_OK(kept && hash_g[1] == hash_g[0] && hash_g[2] == hash_g[0] &&
			hash_g[3] == hash_g[0] && hash_g[4] == hash_g[0] &&
			rcf_check(g[0]) == NULL && rcf_check(g[4]) == NULL,
			"%d x %d: decoded, every fraction goes on with the same scores", dims, shingle);
	for (int k = 0; k < NF; k++)
	{
		rcf_free(f[k]);
		rcf_free(kept ? g[k] : NULL);
	}
}

int
main(void)
{
	test_exact_scores();
	test_invariants(1, 1, 32, 100, 0, "1-D, sample 32, fast decay");
	test_invariants(3, 1, 64, 1000, 0, "3-D, sample 64");
	test_invariants(1, 8, 256, 100000, 0, "shingle 8, sample 256");
	test_invariants(2, 2, 16, 50, 1, "many duplicates, sample 16");
	test_invariants(1, 1, 2, 10, 1, "smallest sample, duplicates");
	test_invariants(4, 4, 64, 1000, 0, "16 values a point, boxes cached by subtree size");
	test_invariants(8, 2, 16, 50, 1, "16 values a point, duplicates, sample 16");
	test_attribution_sums();
	test_determinism();
	test_outlier();
	test_shingling();
	test_warmup(1);
	test_warmup(4);
	test_time_decay();
	test_params();
	test_bytes();
	test_reserve();
	test_box_cache();
	test_box_sizes(16, 1);
	test_box_sizes(2, 8);
	test_box_modes(8, 1);
	test_box_modes(1, 8);
	test_box_modes(1, 1);
	test_box_modes(3, 2);
	test_box_fractions(1, 8, 64);
	test_box_fractions(5, 1, 64);
	test_box_fractions(2, 2, 32);
	test_box_fractions(16, 1, 64);
	test_box_fractions(1, 1, 64);
	test_box_fractions(3, 1, 10);
	return unit_done();
}
