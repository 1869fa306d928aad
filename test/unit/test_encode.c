/*
 * test_encode.c
 *	  Unit tests of the forest encoding: exact round trips, and a decoder
 *	  that refuses hostile input without crashing.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "forests.h"
#include "noise.h"
#include "unit.h"
#include "rcf/rcf.h"
#include "rcf/grade.h"
#include "rcf/rcf_internal.h"

/*
 * duplicates 1: every value rounded down (equal values occur); 2: the
 * first value to 2 decimals, the second as it is, the third rounded down
 * and now and then -0 (columns written as decimals, as floats, and as
 * floats unless -0 survives a decimal column).
 */
static void
record(double *rec, int dims, long i, uint64_t *s, int duplicates)
{
	for (int d = 0; d < dims; d++)
	{
		rec[d] = 5 * sin(i * 0.07 + d) + noise(s);
		if (duplicates == 1)
			rec[d] = floor(rec[d]);
		else if (duplicates == 2 && d == 0)
			rec[d] = round(rec[d] * 100) / 100;
		else if (duplicates == 2 && d == 2)
			rec[d] = i % 7 == 0 ? -0.0 : floor(rec[d]);
	}
}

/*
 * A forest of dims values per record, trained on n records of record();
 * every dup_every-th record (if dup_every > 0) is rounded down, so that
 * equal values occur.
 */
static RcfForest *
trained_forest(int dims, int shingle, int trees, int samples, long n,
			   uint64_t *s, int dup_every)
{
	RcfParams	p = forest_params(dims, shingle, trees, samples);
	RcfForest  *f = rcf_create(&p, NULL);
	double		rec[8];

	for (long i = 0; i < n; i++)
	{
		record(rec, dims, i, s, dup_every > 0 && i % dup_every == 0);
		rcf_update(f, rec);
	}
	return f;
}

static uint8_t *
encode(const RcfForest *f, size_t *len)
{
	size_t		size = rcf_encoded_size(f);
	uint8_t    *buf = malloc(size);

	*len = rcf_encode(f, buf, size);
	return buf;
}

/* Rewrites the CRC so that content checks, not the checksum, are tested. */
static void
fix_crc(uint8_t *buf, size_t len)
{
	uint32_t	crc;

	if (len < 12)
		return;
	crc = rcf_crc32c(0, buf + 12, len - 12);
	/* The header's flags, when any is set, come last. */
	if (buf[6] != 0 || buf[7] != 0)
		crc = rcf_crc32c(crc, buf + 6, 2);
	for (int i = 0; i < 4; i++)
		buf[8 + i] = (uint8_t) (crc >> (8 * i));
}

/*
 * Checks that buf (its CRC made right) is refused as corrupt with detail
 * want; what says which change it is.
 */
static void
refused_as(uint8_t *buf, size_t len, const char *want, const char *what)
{
	RcfDecodeStatus status;
	const char *detail = NULL;
	RcfForest  *g;

	fix_crc(buf, len);
	g = rcf_decode(buf, len, NULL, &status, &detail);
	UNIT_OK(g == NULL && status == RCF_DECODE_CORRUPT && detail &&
			strcmp(detail, want) == 0,
			"%s is refused (%s)", what, detail ? detail : "accepted");
	rcf_free(g);
}

/*
 * Trains a forest on n records, round-trips it, then feeds both the same
 * m records: the scores must be bit-identical, and so must the encodings.
 */
static void
test_round_trip(int dims, int shingle, int trees, int samples, double decay,
				long n, int duplicates, const char *what)
{
	RcfParams	p;
	RcfForest  *a;
	RcfForest  *b;
	uint64_t	s = 2024;
	double		rec[4];
	uint8_t    *buf,
			   *buf2;
	size_t		len,
				len2;
	RcfDecodeStatus status;
	const char *detail;
	int			same = 1;

	rcf_params_default(&p, dims);
	p.shingle_size = shingle;
	p.number_of_trees = trees;
	p.sample_size = samples;
	p.time_decay = decay;
	a = rcf_create(&p, NULL);
	for (long i = 0; i < n; i++)
	{
		record(rec, dims, i, &s, duplicates);
		rcf_update(a, rec);
	}
	buf = encode(a, &len);
	b = rcf_decode(buf, len, NULL, &status, &detail);
	if (!UNIT_OK(b != NULL, "%s: decodes (%s)", what, detail ? detail : "ok"))
	{
		free(buf);
		rcf_free(a);
		return;
	}
	buf2 = encode(b, &len2);
	UNIT_OK(len == len2 && memcmp(buf, buf2, len) == 0,
			"%s: re-encoding the decoded forest gives the same bytes", what);
	for (long i = n; i < n + 3000; i++)
	{
		record(rec, dims, i, &s, duplicates);
		same &= rcf_process(a, rec) == rcf_process(b, rec);
	}
	UNIT_OK(same, "%s: 3000 later scores are bit-identical after the round trip", what);
	UNIT_OK(rcf_check(b) == NULL, "%s: the continued forest is sound", what);
	free(buf);
	free(buf2);
	/* The decoded forest went on exactly as the original: same encoding. */
	buf = encode(a, &len);
	buf2 = encode(b, &len2);
	UNIT_OK(len == len2 && memcmp(buf, buf2, len) == 0,
			"%s: after 3000 more, both encode to the same bytes", what);
	free(buf);
	free(buf2);
	rcf_free(a);
	rcf_free(b);
}

/*
 * Ties at the top of the samplers: a few entries of each tree get the
 * largest weight.  The encoding keeps no heap layout, so the decoded
 * forest's heaps are laid out otherwise; the sampler's order (weight, then
 * the leaf's point) must still make both evict the same points: equal
 * scores and equal encodings afterwards.
 */
static void
test_ties(int shingle)
{
	RcfParams	p;
	RcfForest  *a;
	RcfForest  *b;
	uint64_t	s = 99;
	double		rec[1];
	uint8_t    *buf,
			   *buf2;
	size_t		len,
				len2;
	RcfDecodeStatus status;
	const char *detail;
	int			same = 1;

	rcf_params_default(&p, 1);
	p.shingle_size = shingle;
	p.number_of_trees = 10;
	p.sample_size = 64;
	a = rcf_create(&p, NULL);
	for (long i = 0; i < 2000; i++)
	{
		record(rec, 1, i, &s, 0);
		rcf_update(a, rec);
	}
	for (int t = 0; t < p.number_of_trees; t++)
	{
		RcfTree    *tree = &a->trees[t];

		for (int k = 0; k < 8; k++)
			tree->heap_weight[(int) (noise(&s) * 60 + 31)] = tree->heap_weight[0];
		rcf_sampler_heapify(a, tree);
	}
	buf = encode(a, &len);
	b = rcf_decode(buf, len, NULL, &status, &detail);
	if (!UNIT_OK(b != NULL, "ties, shingle %d: decodes (%s)", shingle, detail ? detail : "ok"))
	{
		free(buf);
		rcf_free(a);
		return;
	}
	buf2 = encode(b, &len2);
	UNIT_OK(len == len2 && memcmp(buf, buf2, len) == 0,
			"ties, shingle %d: re-encoding gives the same bytes", shingle);
	free(buf);
	free(buf2);
	for (long i = 2000; i < 5000; i++)
	{
		record(rec, 1, i, &s, 0);
		same &= rcf_process(a, rec) == rcf_process(b, rec);
	}
	UNIT_OK(same, "ties, shingle %d: 3000 later scores are bit-identical", shingle);
	buf = encode(a, &len);
	buf2 = encode(b, &len2);
	UNIT_OK(len == len2 && memcmp(buf, buf2, len) == 0,
			"ties, shingle %d: after 3000 more, both encode to the same bytes", shingle);
	free(buf);
	free(buf2);
	rcf_free(a);
	rcf_free(b);
}

/* An allocator whose blocks start out filled with the byte *ctx. */
static void *
filled_alloc(void *ctx, size_t size)
{
	void	   *p = malloc(size);

	if (p)
		memset(p, *(const int *) ctx, size);
	return p;
}

static void
plain_free(void *ctx, void *ptr)
{
	(void) ctx;
	free(ptr);
}

/*
 * Forests created and decoded in memory that holds garbage (as a detector
 * reuses an evicted forest's arena for the next key) behave exactly as in
 * zeroed memory: same scores, same encodings, at every age.
 */
static void
test_garbage_memory(int shingle)
{
	static const int fills[3] = {0x00, 0xFF, 0xA5};
	static const long ages[] = {0, 1, 3, 9, 300, 3000};
	RcfAllocator alloc[3];
	RcfForest  *f[3];
	RcfParams	p;
	uint64_t	s = 77;
	double		rec[1];
	long		i = 0;
	int			same_scores = 1;

	rcf_params_default(&p, 1);
	p.shingle_size = shingle;
	p.number_of_trees = 20;
	p.sample_size = 64;
	for (int k = 0; k < 3; k++)
	{
		alloc[k] = (RcfAllocator) {filled_alloc, plain_free, (void *) &fills[k]};
		f[k] = rcf_create(&p, &alloc[k]);
	}
	for (size_t a = 0; a < sizeof(ages) / sizeof(ages[0]); a++)
	{
		uint8_t    *buf[3];
		size_t		len[3];
		int			same_bytes = 1;
		int			same_decoded = 1;

		for (; i < ages[a]; i++)
		{
			double		sc[3];

			record(rec, 1, i, &s, 0);
			for (int k = 0; k < 3; k++)
				sc[k] = rcf_process(f[k], rec);
			same_scores &= sc[0] == sc[1] && sc[0] == sc[2];
		}
		for (int k = 0; k < 3; k++)
			buf[k] = encode(f[k], &len[k]);
		for (int k = 1; k < 3; k++)
			same_bytes &= len[k] == len[0] && memcmp(buf[k], buf[0], len[0]) == 0;
		UNIT_OK(same_bytes && len[0] > 0,
				"shingle %d, %ld updates: forests made in garbage encode as in zeroed memory",
				shingle, ages[a]);
		/* Decoded into garbage: the same bytes again, and the same scores on. */
		for (int k = 1; k < 3; k++)
		{
			RcfDecodeStatus status;
			const char *detail;
			RcfForest  *d = rcf_decode(buf[0], len[0], &alloc[k], &status, &detail);
			uint8_t    *again;
			size_t		alen;
			uint64_t	s2 = 5;

			if (d == NULL)
			{
				same_decoded = 0;
				continue;
			}
			again = encode(d, &alen);
			same_decoded &= alen == len[0] && memcmp(again, buf[0], alen) == 0;
			free(again);
			/* Against a decode into zeroed memory: 50 more points alike. */
			{
				RcfForest  *z = rcf_decode(buf[0], len[0], &alloc[0], &status, &detail);

				for (long j = 0; j < 50 && z; j++)
				{
					double		x[1];

					record(x, 1, 10000 + j, &s2, 0);
					same_decoded &= rcf_process(d, x) == rcf_process(z, x);
				}
				same_decoded &= z != NULL;
				rcf_free(z);
			}
			rcf_free(d);
		}
		UNIT_OK(same_decoded,
				"shingle %d, %ld updates: decoded into garbage, re-encodes to the same bytes and scores as in zeroed memory",
				shingle, ages[a]);
		for (int k = 0; k < 3; k++)
			free(buf[k]);
	}
	UNIT_OK(same_scores, "shingle %d: scores in garbage memory equal those in zeroed memory",
			shingle);
	for (int k = 0; k < 3; k++)
		rcf_free(f[k]);
}

/*
 * rcf_model_encode_into: one pass into a buffer too small tells the size
 * and writes nothing past it; into one large enough it writes the bytes of
 * rcf_encode.
 */
static void
test_encode_into(void)
{
	RcfForest  *f;
	uint64_t	s = 9;
	uint8_t    *want;
	uint8_t    *buf;
	size_t		len,
				got;
	int			untouched = 1;

	f = trained_forest(1, 8, 10, 64, 500, &s, 0);
	want = encode(f, &len);
	UNIT_OK(rcf_model_encode_into(f, NULL, NULL, NULL, 0) == len,
			"encode_into without a buffer returns the size");
	buf = malloc(len + 16);
	memset(buf, 0x5A, len + 16);
	got = rcf_model_encode_into(f, NULL, NULL, buf, len / 2);
	UNIT_OK(got == len, "encode_into a buffer half the size returns the size (%zu, want %zu)",
			got, len);
	for (size_t k = len / 2; k < len + 16; k++)
		untouched &= buf[k] == 0x5A;
	UNIT_OK(untouched, "encode_into writes nothing past the room it was given");
	got = rcf_model_encode_into(f, NULL, NULL, buf, len + 16);
	UNIT_OK(got == len && memcmp(buf, want, len) == 0,
			"encode_into a large enough buffer writes the bytes of rcf_encode");
	UNIT_OK(buf[len] == 0x5A, "encode_into writes no byte past the encoding");
	free(buf);
	free(want);
	rcf_free(f);
}

/* Every prefix, bit flip and tampered field fails cleanly. */
static void
test_hostile(void)
{
	RcfForest  *f;
	RcfForest  *f2;
	uint64_t	s = 7;
	double		rec[2];
	uint8_t    *buf,
			   *copy;
	size_t		len;
	RcfDecodeStatus status;
	const char *detail;
	int			truncated_ok = 1;
	int			flips_ok = 1;
	int			crc_caught = 1;
	int			accepted_sound = 1;
	int			accepted = 0;

	f = trained_forest(2, 3, 5, 32, 500, &s, 3);
	buf = encode(f, &len);
	copy = malloc(len + 16);

	for (size_t cut = 0; cut < len; cut++)
	{
		RcfForest  *g;

		memcpy(copy, buf, cut);
		g = rcf_decode(copy, cut, NULL, &status, &detail);
		if (g != NULL || status == RCF_DECODE_OK)
			truncated_ok = 0;
		rcf_free(g);
	}
	UNIT_OK(truncated_ok, "every one of %zu truncations is refused", len);

	memcpy(copy, buf, len);
	copy[len] = 0;
	UNIT_OK(rcf_decode(copy, len + 1, NULL, &status, &detail) == NULL &&
			status != RCF_DECODE_OK, "a trailing byte is refused (%s)", detail);
	fix_crc(copy, len + 1);
	UNIT_OK(rcf_decode(copy, len + 1, NULL, &status, &detail) == NULL &&
			status == RCF_DECODE_BAD_FORMAT,
			"a trailing byte with a valid checksum is refused as bad format");

	memcpy(copy, buf, len);
	copy[4] = 99;
	UNIT_OK(rcf_decode(copy, len, NULL, &status, &detail) == NULL &&
			status == RCF_DECODE_BAD_VERSION, "an unknown version is refused");
	memcpy(copy, buf, len);
	copy[0] ^= 1;
	UNIT_OK(rcf_decode(copy, len, NULL, &status, &detail) == NULL &&
			status == RCF_DECODE_BAD_FORMAT, "a wrong marker is refused");
	memcpy(copy, buf, len);
	copy[len / 2] ^= 0x10;
	UNIT_OK(rcf_decode(copy, len, NULL, &status, &detail) == NULL &&
			status == RCF_DECODE_BAD_CHECKSUM, "a flipped bit fails the checksum");

	/* Absurd parameters behind a valid checksum. */
	memcpy(copy, buf, len);
	copy[12 + 8] = 0xFF;		/* number_of_trees low byte */
	copy[12 + 9] = 0xFF;
	copy[12 + 10] = 0xFF;
	copy[12 + 11] = 0x7F;
	fix_crc(copy, len);
	f2 = rcf_decode(copy, len, NULL, &status, &detail);
	UNIT_OK(f2 == NULL && status == RCF_DECODE_CORRUPT,
			"2^31 trees is refused before any allocation (%s)", detail);

	/* Every single-bit flip, with and without a fixed-up checksum. */
	for (size_t byte = 0; byte < len; byte++)
	{
		for (int bit = 0; bit < 8; bit++)
		{
			RcfForest  *g;

			memcpy(copy, buf, len);
			copy[byte] ^= (uint8_t) (1 << bit);
			g = rcf_decode(copy, len, NULL, &status, &detail);
			if (g != NULL)
				crc_caught = 0;
			rcf_free(g);

			fix_crc(copy, len);
			g = rcf_decode(copy, len, NULL, &status, &detail);
			if (g != NULL)
			{
				/* Some flips (a weight's low bit) leave a valid forest. */
				accepted++;
				if (rcf_check(g) != NULL)
					accepted_sound = 0;
				record(rec, 2, 1, &s, 0);
				(void) rcf_process(g, rec);
				if (rcf_check(g) != NULL)
				{
					if (accepted_sound)
						unit_diag("flip at byte %zu bit %d: %s", byte, bit, rcf_check(g));
					accepted_sound = 0;
				}
			}
			else if (status == RCF_DECODE_OK)
				flips_ok = 0;
			rcf_free(g);
		}
	}
	UNIT_OK(crc_caught, "the checksum catches every single-bit flip");
	UNIT_OK(flips_ok, "every flip behind a valid checksum is refused or decodes");
	UNIT_OK(accepted_sound,
			"the %d flips that decode give sound forests that keep working", accepted);

	free(copy);
	free(buf);
	rcf_free(f);
}

/*
 * Without a shared store the distinct points are numbered in the order the
 * trees name them; a model whose points were listed in another order
 * decoded to the same forest, which then encoded differently.  Bit flips
 * in the points stream that reorder two points must be refused.  And a
 * varint in a longer form than the writer's (a last byte of 0) is refused.
 */
static void
test_canonical_forms(void)
{
	uint64_t	s = 11;
	RcfForest  *f = trained_forest(1, 1, 3, 16, 300, &s, 0);
	size_t		len;
	uint8_t    *buf = encode(f, &len);
	uint8_t    *copy = malloc(len + 1);
	int			reordered = 0;

	for (size_t byte = 0; byte < len; byte++)
	{
		for (int bit = 0; bit < 8; bit++)
		{
			RcfDecodeStatus status;
			const char *detail = NULL;
			RcfForest  *g;

			memcpy(copy, buf, len);
			copy[byte] ^= (uint8_t) (1 << bit);
			fix_crc(copy, len);
			g = rcf_decode(copy, len, NULL, &status, &detail);
			if (g == NULL && detail &&
				strcmp(detail, "points are not numbered in the order the trees name them") == 0)
				reordered++;
			rcf_free(g);
		}
	}
	UNIT_OK(reordered > 0,
			"%d flips that list the points in another order are refused", reordered);

	/* The update count, a varint at byte 48 (after the seed): 300 in two bytes. */
	UNIT_OK(f->updates == 300 && buf[48] == 0xAC && buf[49] == 0x02,
			"the update count is where the test expects it");
	copy[48] = 0xAC;
	copy[49] = 0x82;
	copy[50] = 0x00;
	memcpy(copy + 51, buf + 50, len - 50);
	refused_as(copy, len + 1, "a number is encoded in too many bytes",
			   "a varint with a last byte of 0");
	free(copy);
	free(buf);
	rcf_free(f);
}

/*
 * Every single-bit flip of a model's bytes after the header's CRC (made
 * right again) that decodes must encode to the very same bytes: the
 * decoder refuses whatever the writer would write otherwise.  Returns
 * how many flips were refused with detail want (NULL: none counted).
 */
static int
flips_encode_the_same(const char *what, const RcfForest *f, const RcfGrader *gr,
					  const RcfTransform *tf, const char *want)
{
	size_t		len = rcf_model_encoded_size_tf(f, gr, tf);
	uint8_t    *buf = malloc(len);
	uint8_t    *copy = malloc(len);
	uint8_t    *again = malloc(len);
	int			decoded = 0,
				same = 0,
				wanted = 0;

	UNIT_OK(rcf_model_encode_tf(f, gr, tf, buf, len) == len, "%s: encoded (%zu bytes)",
			what, len);
	for (size_t byte = 12; byte < len; byte++)
	{
		for (int bit = 0; bit < 8; bit++)
		{
			RcfDecodeStatus status;
			const char *detail = NULL;
			RcfGrader  *g2 = NULL;
			RcfTransform *t2 = NULL;
			RcfForest  *g;

			memcpy(copy, buf, len);
			copy[byte] ^= (uint8_t) (1 << bit);
			fix_crc(copy, len);
			g = rcf_model_decode_tf(copy, len, NULL, &g2, &t2, &status, &detail);
			if (g != NULL)
			{
				decoded++;
				if (rcf_model_encoded_size_tf(g, g2, t2) == len &&
					rcf_model_encode_tf(g, g2, t2, again, len) == len &&
					memcmp(again, copy, len) == 0)
					same++;
				else
					unit_diag("%s: the flip of bit %d of byte %zu decodes and encodes otherwise",
							  what, bit, byte);
			}
			else if (want && detail && strcmp(detail, want) == 0)
				wanted++;
			rcf_free(g);
			rcf_grader_free(g2);
			rcf_transform_free(t2);
		}
	}
	UNIT_OK(decoded > 0 && same == decoded,
			"%s: %d of the %d flips that decode encode to their own bytes", what, same, decoded);
	free(again);
	free(copy);
	free(buf);
	return wanted;
}

/*
 * One encoding per model, over all single-bit flips of a few models:
 * unshingled (distinct points), shingled (the shared store), columns of
 * decimals, floats and -0, and a model with a grader and a transform.
 * Each form the decoder refuses for it turns up among the flips.
 */
static void
test_flips_canonical(void)
{
	uint64_t	s = 11;
	RcfForest  *f = trained_forest(1, 1, 3, 16, 300, &s, 0);
	int			n;

	/* A sampler's weights read with a Rice k not rice_choose's for them. */
	n = flips_encode_the_same("unshingled", f, NULL, NULL,
							  "a bit stream's Rice parameter is not the one its values call for");
	UNIT_OK(n > 0, "unshingled: %d flips whose stream's Rice k is not the writer's are refused", n);
	rcf_free(f);

	s = 5;
	f = trained_forest(3, 1, 4, 32, 500, &s, 2);
	n = flips_encode_the_same("decimals, floats and -0", f, NULL, NULL,
							  "two points are written with the same values");
	UNIT_OK(n > 0, "decimals, floats and -0: %d flips that list a point twice are refused", n);
	rcf_free(f);

	s = 7;
	f = trained_forest(1, 4, 3, 16, 300, &s, 0);
	(void) flips_encode_the_same("shingle 4", f, NULL, NULL, NULL);
	rcf_free(f);

	s = 4;
	f = trained_forest(2, 2, 3, 16, 300, &s, 2);
	(void) flips_encode_the_same("2 values, shingle 2, decimals", f, NULL, NULL, NULL);
	rcf_free(f);

	/* 7 decimals: near 1, integers k and k + 1 / 10^7 can give one float. */
	{
		RcfParams	p = forest_params(1, 1, 2, 16);

		f = rcf_create(&p, NULL);
		for (int i = 0; i < 200; i++)
		{
			double		x = round((1.5 + sin(i * 0.3)) * 1e7) / 1e7;

			rcf_update(f, &x);
		}
		n = flips_encode_the_same("7 decimals", f, NULL, NULL,
								  "a point value is written as another integer than its own");
		UNIT_OK(n > 0, "7 decimals: %d flips that write a value as another integer are refused", n);
		rcf_free(f);
	}

	/* With a grader and a transform section. */
	{
		RcfParams	p = forest_params(2, 2, 3, 16);
		RcfGraderParams gp;
		RcfTransformParams tp;
		RcfGrader  *g;
		RcfTransform *t;
		double		rec[2];

		rcf_grader_params_default(&gp);
		gp.short_window = 3;
		rcf_transform_params_default(&tp, 2, 16);
		tp.method = RCF_TRANSFORM_NORMALIZE;
		f = rcf_create(&p, NULL);
		g = rcf_grader_create(&gp, &p, NULL);
		t = rcf_transform_create(&tp, NULL, NULL);
		s = 9;
		for (long i = 0; i < 200; i++)
		{
			RcfGrade	grade;

			record(rec, 2, i, &s, 0);
			rcf_grader_process_tf(g, f, t, rec, true, &grade, NULL);
		}
		(void) flips_encode_the_same("grader and transform", f, g, t, NULL);

		/* A transform of method none: the writer writes no section. */
		{
			size_t		len = rcf_model_encoded_size_tf(f, g, t);
			uint8_t    *buf = malloc(len);
			size_t		at = len - rcf_transform_encoded_size(t);	/* u64 method */

			rcf_model_encode_tf(f, g, t, buf, len);
			UNIT_OK(buf[at] == RCF_TRANSFORM_NORMALIZE, "the transform's method is where the test expects it");
			buf[at] = RCF_TRANSFORM_NONE;
			refused_as(buf, len, "a transform section of method none is never written",
					   "a transform section of method none");
			free(buf);
		}
		rcf_grader_free(g);
		rcf_transform_free(t);
		rcf_free(f);
	}
}

/* Skips a varint at *pos of buf. */
static void
skip_varint(const uint8_t *buf, size_t *pos)
{
	while (buf[(*pos)++] & 0x80)
		;
}

/*
 * The points' stream header of format 2: a column's scale above 10 or a
 * Rice k above 34 is refused with its reason, not taken as data.
 */
static void
test_points_header(void)
{
	RcfParams	p;
	RcfForest  *f;
	uint8_t    *buf;
	size_t		len,
				at = 48;		/* header 12, parameters 36 */
	uint8_t		keep;

	rcf_params_default(&p, 1);
	p.shingle_size = 4;
	p.number_of_trees = 5;
	p.sample_size = 32;
	f = rcf_create(&p, NULL);
	for (int i = 0; i < 300; i++)
	{
		double		x = round(500 * sin(i * 0.1)) / 100;

		rcf_update(f, &x);
	}
	buf = encode(f, &len);
	skip_varint(buf, &at);		/* updates */
	skip_varint(buf, &at);		/* inserted since the weight base */
	at += 4 * sizeof(float);	/* the shingle */
	skip_varint(buf, &at);		/* records */
	UNIT_OK((buf[at] & 0x0F) == 3, "a column of 2 decimals is written with scale 10^2 (%d)",
			buf[at] & 0x0F);
	keep = buf[at];
	buf[at] = (uint8_t) ((keep & 0xF0) | 11);
	refused_as(buf, len, "a point column has an unknown scale", "a column scale of 11");
	/* The Rice k: the 6 bits after the scale. */
	buf[at] = (uint8_t) (keep | 0xF0);
	buf[at + 1] |= 0x03;
	refused_as(buf, len, "a number is encoded in too many bits", "a Rice k of 63");
	free(buf);
	rcf_free(f);

	/*
	 * Tens, written as integers (scale 1): read with scale 10^1 instead,
	 * the same integers give the tens divided by 10, still integers, which
	 * the writer writes with scale 1: refused, as a second form.
	 */
	f = rcf_create(&p, NULL);
	for (int i = 0; i < 300; i++)
	{
		double		x = 10 * round(5 * sin(i * 0.1)) + 0.0;	/* no -0 */

		rcf_update(f, &x);
	}
	buf = encode(f, &len);
	at = 48;
	skip_varint(buf, &at);
	skip_varint(buf, &at);
	at += 4 * sizeof(float);
	skip_varint(buf, &at);
	UNIT_OK((buf[at] & 0x0F) == 1, "a column of tens is written as integers (%d)",
			buf[at] & 0x0F);
	buf[at] = (uint8_t) ((buf[at] & 0xF0) | 2);
	refused_as(buf, len, "a point column's scale is not the one its values call for",
			   "tens read as integers of tenths");
	free(buf);
	rcf_free(f);
}

/* Size of the benchmark configuration (a) after 10,000 updates. */
static void
test_size(void)
{
	RcfParams	p;
	RcfForest  *f;
	RcfForest  *g;
	uint64_t	s = 1;
	uint8_t    *buf;
	size_t		len,
				len4;
	RcfDecodeStatus status;
	const char *detail;
	clock_t		t0;
	double		ms;

	rcf_params_default(&p, 1);
	p.shingle_size = 8;
	p.number_of_trees = 50;
	f = rcf_create(&p, NULL);
	for (int i = 0; i < 10000; i++)
	{
		double		x = 10 * sin(i * 0.05) + noise(&s);

		rcf_update(f, &x);
	}
	buf = encode(f, &len);
	t0 = clock();
	g = rcf_decode(buf, len, NULL, &status, &detail);
	ms = (double) (clock() - t0) * 1000.0 / CLOCKS_PER_SEC;
	UNIT_OK(g != NULL, "50 trees, 256 samples, shingle 8 after 10000 updates: %zu bytes, decoded in %.2f ms",
			len, ms);
	UNIT_OK(len < rcf_bytes(f) / 4, "the encoding is under a quarter of the arena");
	free(buf);
	rcf_free(f);
	rcf_free(g);

	/* The same values to 4 decimals: their records are written as decimals. */
	s = 1;
	f = rcf_create(&p, NULL);
	for (int i = 0; i < 10000; i++)
	{
		double		x = round((10 * sin(i * 0.05) + noise(&s)) * 1e4) / 1e4;

		rcf_update(f, &x);
	}
	buf = encode(f, &len4);
	g = rcf_decode(buf, len4, NULL, &status, &detail);
	UNIT_OK(g != NULL && len4 < len - len / 20,
			"the same to 4 decimals: %zu bytes, 5%% or more smaller", len4);
	free(buf);
	rcf_free(f);
	rcf_free(g);
}

/* A model with a grader: both continue identically after a round trip. */
static void
test_grader_round_trip(void)
{
	RcfParams	p;
	RcfGraderParams gp;
	RcfForest  *f,
			   *f2;
	RcfGrader  *g,
			   *g2 = NULL;
	uint64_t	s = 3;
	size_t		len;
	size_t		grader_len;
	uint8_t    *buf;
	RcfDecodeStatus status;
	const char *detail;
	int			same = 1;
	int			fired = 0;

	rcf_params_default(&p, 1);
	p.number_of_trees = 20;
	p.shingle_size = 2;
	rcf_grader_params_default(&gp);
	gp.short_window = 3;
	f = rcf_create(&p, NULL);
	g = rcf_grader_create(&gp, &p, NULL);
	for (int i = 0; i < 2000; i++)
	{
		RcfGrade	grade;
		double		x = noise(&s) + (i % 500 == 499 ? 9 : 0);

		rcf_grader_process(g, f, &x, true, &grade, NULL);
	}
	len = rcf_model_encoded_size(f, g);
	grader_len = rcf_grader_encoded_size(g);
	UNIT_OK(grader_len - 24 >= 128 && grader_len < 16384,
			"the grader section's length is two varint bytes, in both layouts");
	buf = malloc(len);
	UNIT_OK(rcf_model_encode(f, g, buf, len) == len, "a model with a grader encodes");
	f2 = rcf_model_decode(buf, len, NULL, &g2, &status, &detail);
	UNIT_OK(f2 && g2, "a model with a grader decodes with its grader");
	for (int i = 2000; i < 4000 && f2 && g2; i++)
	{
		RcfGrade	a,
					b;
		double		ea[1],
					eb[1];
		double		x = noise(&s) + (i % 500 == 499 ? 9 : 0);

		rcf_grader_process(g, f, &x, true, &a, ea);
		rcf_grader_process(g2, f2, &x, true, &b, eb);
		same &= memcmp(&a, &b, sizeof(RcfGrade)) == 0;
		fired += a.is_anomaly;
	}
	UNIT_OK(same && fired >= 3,
			"grades are identical after the round trip (%d firings)", fired);
	/* g2 receives the failed decodes' NULL below. */
	rcf_grader_free(g2);
	g2 = NULL;

	/*
	 * The payload ends: ..., u32 ring_fill, f64 ring_sum, peak, cusum_drift,
	 * cusum_threshold, cusum, f64 ring[3].
	 */
	{
		uint8_t    *copy = malloc(len);
		size_t		cusum_at = len - 8 * 3 - 8;
		size_t		threshold_at = cusum_at - 8;
		double		minus = -1.0;

		/* A negative CUSUM is refused. */
		memcpy(copy, buf, len);
		memcpy(copy + cusum_at, &minus, 8);
		fix_crc(copy, len);
		UNIT_OK(rcf_model_decode(copy, len, NULL, &g2, &status, &detail) == NULL &&
				status == RCF_DECODE_CORRUPT, "a negative CUSUM is refused");
		/* A CUSUM threshold out of range is refused. */
		memcpy(copy, buf, len);
		if (threshold_at < len - 8)
			memcpy(copy + threshold_at, &minus, 8);
		fix_crc(copy, len);
		UNIT_OK(rcf_model_decode(copy, len, NULL, &g2, &status, &detail) == NULL &&
				status == RCF_DECODE_CORRUPT, "a negative cusum_threshold is refused");
		/* A section kind this version does not know is refused. */
		memcpy(copy, buf, len);
		UNIT_OK(copy[len - grader_len - 3] == RCF_SECTION_GRADER,
				"the grader section has kind %d", RCF_SECTION_GRADER);
		copy[len - grader_len - 3] = 3;
		fix_crc(copy, len);
		UNIT_OK(rcf_model_decode(copy, len, NULL, &g2, &status, &detail) == NULL &&
				status == RCF_DECODE_CORRUPT, "an unknown section kind is refused");
		free(copy);
	}

	/*
	 * The grader's layout before the CUSUM (section kind 1, without the
	 * three cusum fields) was only written in format version 1: in version
	 * 2 it would be a second form of a grader with the CUSUM off, which
	 * encodes as kind 2 (v1_kind1 decodes it in version 1).
	 */
	{
		size_t		v1_len = len - 24;
		uint8_t    *v1 = malloc(len);
		size_t		at = len - grader_len;	/* the payload's first byte */
		size_t		cusum_fields = len - 8 * 3 - 8 * 3;
		RcfGrader  *g3 = NULL;
		RcfForest  *f3;

		memcpy(v1, buf, cusum_fields);
		memcpy(v1 + cusum_fields, buf + cusum_fields + 24, len - cusum_fields - 24);
		v1[at - 3] = RCF_SECTION_GRADER_V1;
		v1[at - 2] = (uint8_t) (0x80 | ((grader_len - 24) & 0x7f));
		v1[at - 1] = (uint8_t) ((grader_len - 24) >> 7);
		fix_crc(v1, v1_len);
		f3 = rcf_model_decode(v1, v1_len, NULL, &g3, &status, &detail);
		UNIT_OK(f3 == NULL && g3 == NULL && status == RCF_DECODE_CORRUPT && detail &&
				strcmp(detail, "a grader section of the layout before the CUSUM is only read in format version 1") == 0,
				"a grader section of kind 1 in format version 2 is refused (%s)",
				detail ? detail : "accepted");
		/* The same grader as kind 2 with the CUSUM off decodes. */
		memcpy(v1, buf, len);
		memset(v1 + cusum_fields, 0, 24);
		fix_crc(v1, len);
		f3 = rcf_model_decode(v1, len, NULL, &g3, &status, &detail);
		UNIT_OK(f3 && g3 && rcf_grader_params(g3)->cusum_threshold == 0.0,
				"the grader with the CUSUM off in kind 2 decodes (%s)",
				detail ? detail : "ok");
		rcf_free(f3);
		rcf_grader_free(g3);
		free(v1);
	}

	/* The grader's ring fill beyond its window is refused. */
	buf[len - 8 * 3 - 3 * 8 - 8 - 8 - 4] = 9;
	fix_crc(buf, len);
	UNIT_OK(rcf_model_decode(buf, len, NULL, &g2, &status, &detail) == NULL &&
			status == RCF_DECODE_CORRUPT, "an inconsistent grader state is refused");
	free(buf);
	rcf_free(f);
	rcf_free(f2);
	rcf_grader_free(g);
	rcf_grader_free(g2);
}

/* CRC-32C against its standard check value and a bitwise reference. */
static void
test_crc(void)
{
	const char *long_text = "123456789abcdefghijklmnopqrstuvwxyz";
	uint32_t	ref = 0xFFFFFFFFu;

	UNIT_EQ_INT(rcf_crc32c(0, "123456789", 9), 0xE3069283u,
				"CRC-32C of \"123456789\" is the standard check value");
	for (const char *c = long_text; *c; c++)
	{
		ref ^= (uint8_t) *c;
		for (int k = 0; k < 8; k++)
			ref = (ref & 1) ? (ref >> 1) ^ 0x82F63B78u : ref >> 1;
	}
	UNIT_EQ_INT(rcf_crc32c(0, long_text, strlen(long_text)), ref ^ 0xFFFFFFFFu,
				"the eight-byte steps agree with the bitwise definition");

	/*
	 * The constant tables, every entry: 64 kB of pseudo-random bytes reach
	 * each of the 8 x 256 entries many times; any wrong entry changes the
	 * result.  Checked at every length up to 9 as well (the tail loop).
	 */
	{
		size_t		n = 65536;
		uint8_t    *buf = malloc(n);
		uint32_t	x = 2463534242u;
		int			tails_ok = 1;

		for (size_t i = 0; i < n; i++)
		{
			x ^= x << 13;
			x ^= x >> 17;
			x ^= x << 5;
			buf[i] = (uint8_t) (x >> 24);
		}
		ref = 0xFFFFFFFFu;
		for (size_t i = 0; i < n; i++)
		{
			ref ^= buf[i];
			for (int k = 0; k < 8; k++)
				ref = (ref & 1) ? (ref >> 1) ^ 0x82F63B78u : ref >> 1;
			if (i < 9 && rcf_crc32c(0, buf, i + 1) != (ref ^ 0xFFFFFFFFu))
				tails_ok = 0;
		}
		UNIT_EQ_INT(rcf_crc32c(0, buf, n), ref ^ 0xFFFFFFFFu,
					"every entry of the constant tables agrees with the bitwise definition");
		UNIT_OK(tails_ok, "and every length from 1 to 9 bytes");
		free(buf);
	}
}

/* The records that follow each fixture (as gen_v1.c feeds them). */
static void
fixture_record(double *rec, int dims, long i)
{
	for (int d = 0; d < dims; d++)
		rec[d] = 5.0 * sin((i + 3 * d) / 17.0) + 0.25 * ((i * 7919 + d * 31) % 13) +
			((i % 401) == 0 ? 12.0 : 0.0);
}

/* Reads a whole file; NULL if it cannot. */
static uint8_t *
read_file(const char *path, size_t *len)
{
	FILE	   *f = fopen(path, "rb");
	uint8_t    *buf;
	long		n;

	if (f == NULL)
		return NULL;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc(n > 0 ? n : 1);
	*len = fread(buf, 1, n, f);
	fclose(f);
	return buf;
}

/*
 * A graded version 1 fixture (buf, its grader section the last grader_len
 * bytes, of kind 2) rewritten with the grader's layout before the CUSUM
 * (kind 1, without the three cusum fields) still decodes, with the CUSUM
 * off; a ring fill beyond its window is refused.
 */
static void
v1_kind1(const char *name, const uint8_t *buf, size_t len, size_t grader_len)
{
	size_t		head = len - grader_len - 3;	/* kind, 2-byte length */
	size_t		ring = (grader_len - 144) / 8;	/* 144: the fixed part */
	size_t		cusum_at = len - 8 * ring - 24;
	size_t		n1 = grader_len - 24;
	uint8_t    *v1 = malloc(len);
	size_t		at;
	RcfGrader  *g1 = NULL;
	RcfForest  *f1;
	RcfDecodeStatus status;
	const char *detail = NULL;

	UNIT_OK(buf[head] == RCF_SECTION_GRADER &&
			(size_t) ((buf[head + 1] & 0x7f) | (buf[head + 2] << 7)) == grader_len,
			"%s: its grader section is of kind 2 (%zu bytes)", name, grader_len);
	memcpy(v1, buf, head);
	at = head;
	v1[at++] = RCF_SECTION_GRADER_V1;
	if (n1 < 128)
		v1[at++] = (uint8_t) n1;
	else
	{
		v1[at++] = (uint8_t) (0x80 | (n1 & 0x7f));
		v1[at++] = (uint8_t) (n1 >> 7);
	}
	memcpy(v1 + at, buf + head + 3, cusum_at - (head + 3));
	at += cusum_at - (head + 3);
	memcpy(v1 + at, buf + cusum_at + 24, 8 * ring);
	at += 8 * ring;
	fix_crc(v1, at);
	f1 = rcf_model_decode(v1, at, NULL, &g1, &status, &detail);
	UNIT_OK(f1 && g1 && rcf_grader_params(g1)->cusum_threshold == 0.0,
			"%s: with a grader section of kind 1 it decodes, with the CUSUM off (%s)",
			name, detail ? detail : "ok");
	rcf_free(f1);
	rcf_grader_free(g1);
	/* Its ring fill (before ring_sum and peak) beyond its window is refused. */
	v1[at - 8 * ring - 8 - 8 - 4] = 200;
	fix_crc(v1, at);
	g1 = NULL;
	f1 = rcf_model_decode(v1, at, NULL, &g1, &status, &detail);
	UNIT_OK(f1 == NULL && g1 == NULL && status == RCF_DECODE_CORRUPT && detail &&
			strcmp(detail, "the grader's state is inconsistent") == 0,
			"%s: an inconsistent kind 1 grader state is refused (%s)", name,
			detail ? detail : "accepted");
	free(v1);
}

/*
 * A model written by the engine before format version 2 (fixtures made by
 * test/unit/fixtures/gen_v1.c at commit f90745a) decodes, gives the very
 * scores the forest that wrote it gave on the following records, and is
 * written back as version 2, which decodes to the same scores again.
 */
static void
test_v1_fixture(const char *name, int dims, long updates, bool graded)
{
	char		path[1024];
	const char *dir = __FILE__;
	size_t		dirlen = strrchr(dir, '/') ? (size_t) (strrchr(dir, '/') - dir) : 0;
	uint8_t    *buf;
	size_t		len = 0;
	FILE	   *scores;
	RcfForest  *f,
			   *g = NULL;
	RcfGrader  *grader = NULL;
	RcfDecodeStatus status;
	const char *detail = NULL;
	RcfParams	peek;
	double		rec[4];
	int			same = 0,
				same2 = 0,
				lines = 0;
	uint8_t    *v2 = NULL;
	size_t		v2len = 0;

	snprintf(path, sizeof(path), "%.*s/fixtures/%s.rcf", (int) dirlen, dir, name);
	buf = read_file(path, &len);
	UNIT_OK(buf != NULL && len > 12 && buf[4] == 1 && buf[5] == 0,
			"%s: a version 1 fixture (%zu bytes)", name, len);
	if (buf == NULL)
		return;
	UNIT_OK(rcf_model_peek_params(buf, len, &peek) == 0 && peek.dims == dims,
			"%s: its parameters can be read before decoding", name);
	f = rcf_model_decode(buf, len, NULL, &grader, &status, &detail);
	UNIT_OK(f != NULL && rcf_check(f) == NULL && rcf_updates(f) == (uint64_t) updates &&
			(grader != NULL) == graded,
			"%s: decodes soundly (%s)", name, detail ? detail : "ok");
	if (f == NULL)
	{
		free(buf);
		return;
	}
	/* Written back as version 2 before anything changes. */
	v2len = rcf_model_encoded_size(f, grader);
	v2 = malloc(v2len);
	UNIT_OK(rcf_model_encode(f, grader, v2, v2len) == v2len && v2[4] == RCF_FORMAT_VERSION,
			"%s: written back as version %d (%zu bytes, version 1: %zu)", name,
			RCF_FORMAT_VERSION, v2len, len);
	g = rcf_model_decode(v2, v2len, NULL, NULL, &status, &detail);
	UNIT_OK(g != NULL && rcf_check(g) == NULL, "%s: the version 2 model decodes (%s)",
			name, detail ? detail : "ok");

	snprintf(path, sizeof(path), "%.*s/fixtures/%s.scores", (int) dirlen, dir, name);
	scores = fopen(path, "r");
	UNIT_OK(scores != NULL, "%s: its scores file", name);
	if (scores && g)
	{
		char		line[128];

		for (long i = updates; fgets(line, sizeof(line), scores); i++)
		{
			double		want = strtod(line, NULL);

			fixture_record(rec, dims, i);
			lines++;
			same += rcf_process(f, rec) == want;
			same2 += rcf_process(g, rec) == want;
		}
		fclose(scores);
	}
	UNIT_OK(lines == 200 && same == lines,
			"%s: %d of %d following scores are bit-identical to the writer's", name, same, lines);
	UNIT_OK(lines == 200 && same2 == lines,
			"%s: and %d of %d through version 2", name, same2, lines);
	if (graded)
		v1_kind1(name, buf, len, rcf_grader_encoded_size(grader));
	rcf_grader_free(grader);
	rcf_free(f);
	rcf_free(g);
	free(v2);
	free(buf);
}

/* Decodes buf as is; true if refused with status and detail. */
static bool
refused_with(const uint8_t *buf, size_t len, RcfDecodeStatus want_status,
			 const char *want)
{
	RcfDecodeStatus status;
	const char *detail = NULL;
	RcfForest  *g = rcf_decode(buf, len, NULL, &status, &detail);
	bool		ok = g == NULL && status == want_status &&
		(want == NULL || (detail && strcmp(detail, want) == 0));

	rcf_free(g);
	return ok;
}

/*
 * bounding_box_cache_fraction in the encoding: bit 0 of the header's flags
 * (the reserved field of version 1) says that an f64 fraction follows the
 * parameters, written only below 1, so that a model of the default
 * fraction is the bytes it always was; the checksum covers the flags then.
 * One encoding per model: a fraction of 1, -0, NaN or out of range
 * written, or an unknown flag, is refused; a flag flipped alone is a
 * checksum error.
 */
static void
test_box_cache_flag(void)
{
	uint64_t	s = 5;
	RcfForest  *f = trained_forest(1, 8, 5, 32, 600, &s, 0);
	size_t		len0,
				len;
	uint8_t    *def = encode(f, &len0);
	uint8_t    *buf;
	uint8_t    *copy;
	RcfParams	peek;
	RcfDecodeStatus status;
	const char *detail;
	RcfForest  *g;
	double		quarter = 0.25;
	static const double bad[] = {1.0, -0.0, 1.5, -0.5};
	bool		all_bad = true;

	UNIT_OK(def[6] == 0 && def[7] == 0, "a model of the default fraction has no header flag");

	/* The default's bytes with the flag and a fraction after the params. */
	buf = malloc(len0 + 8);
	memcpy(buf, def, 48);
	memcpy(buf + 48, &quarter, 8);
	memcpy(buf + 56, def + 48, len0 - 48);
	len = len0 + 8;
	buf[6] = 1;
	fix_crc(buf, len);
	g = rcf_decode(buf, len, NULL, &status, &detail);
	UNIT_OK(g != NULL && rcf_params(g)->bounding_box_cache_fraction == 0.25,
			"flag 1 and an f64 after the parameters: the fraction (%s)", detail ? detail : "ok");
	if (g)
	{
		uint8_t    *again = malloc(len);

		UNIT_OK(rcf_encoded_size(g) == len && rcf_encode(g, again, len) == len &&
				memcmp(again, buf, len) == 0,
				"a forest of fraction 0.25 encodes as that: the default's bytes, the flag and the fraction");
		free(again);
	}
	rcf_free(g);
	UNIT_OK(rcf_model_peek_params(buf, len, &peek) == 0 &&
			peek.bounding_box_cache_fraction == 0.25 && peek.seed == rcf_params(f)->seed,
			"peek reads the fraction");
	UNIT_OK(rcf_model_peek_params(def, len0, &peek) == 0 &&
			peek.bounding_box_cache_fraction == 1.0, "peek gives 1 without the flag");

	copy = malloc(len);
	memcpy(copy, buf, len);
	copy[6] = 0;
	UNIT_OK(refused_with(copy, len, RCF_DECODE_BAD_CHECKSUM, NULL),
			"the flag cleared alone is a checksum error");
	memcpy(copy, def, len0);
	copy[6] = 1;
	UNIT_OK(refused_with(copy, len0, RCF_DECODE_BAD_CHECKSUM, NULL),
			"the flag set alone is a checksum error");
	memcpy(copy, buf, len);
	copy[6] = 3;
	fix_crc(copy, len);
	UNIT_OK(refused_with(copy, len, RCF_DECODE_BAD_FORMAT,
						 "a header flag this version does not know is set"),
			"an unknown flag is refused");
	for (int i = 0; i < 4; i++)
	{
		memcpy(copy, buf, len);
		memcpy(copy + 48, &bad[i], 8);
		fix_crc(copy, len);
		all_bad &= refused_with(copy, len, RCF_DECODE_CORRUPT,
								"the bounding box cache fraction is not one an encoder writes");
	}
	{
		double		nan = NAN;

		memcpy(copy, buf, len);
		memcpy(copy + 48, &nan, 8);
		fix_crc(copy, len);
		all_bad &= refused_with(copy, len, RCF_DECODE_CORRUPT,
								"the bounding box cache fraction is not one an encoder writes");
	}
	UNIT_OK(all_bad, "a fraction of 1, -0, NaN, 1.5 or -0.5 written is refused");

	/* Decoding with another fraction, and a bad one asked for. */
	g = rcf_model_decode_boxes(def, len0, NULL, NULL, NULL, 0.0, &status, &detail);
	UNIT_OK(g != NULL && rcf_params(g)->bounding_box_cache_fraction == 0.0 &&
			g->box_mode == RCF_BOXES_WALK && rcf_encoded_size(g) == len0 + 8,
			"decoded with fraction 0, a default model keeps no box and encodes 8 bytes longer");
	rcf_free(g);
	g = rcf_model_decode_boxes(def, len0, NULL, NULL, NULL, -0.0, &status, &detail);
	if (g)
	{
		uint8_t    *zero = malloc(len0 + 8);

		UNIT_OK(rcf_encode(g, zero, len0 + 8) == len0 + 8 && !signbit(rcf_params(g)->bounding_box_cache_fraction),
				"asked for -0, the forest keeps +0 (one encoding)");
		free(zero);
	}
	else
		UNIT_OK(false, "asked for -0, the model decodes");
	rcf_free(g);
	g = rcf_model_decode_boxes(def, len0, NULL, NULL, NULL, 2.0, &status, &detail);
	UNIT_OK(g == NULL && status == RCF_DECODE_BAD_FORMAT,
			"a fraction of 2 asked for is refused (%s)", detail ? detail : "accepted");
	rcf_free(g);
	free(copy);
	free(buf);
	free(def);
	rcf_free(f);
}

int
main(void)
{
	test_crc();
	test_box_cache_flag();
	test_round_trip(1, 1, 10, 64, 100000, 0, 0, "empty forest");
	test_round_trip(1, 1, 10, 64, 100000, 20, 0, "warming up");
	test_round_trip(1, 4, 10, 64, 100000, 2, 0, "shingle not yet full");
	test_round_trip(1, 1, 20, 64, 500, 5000, 0, "1-D, fast decay");
	test_round_trip(1, 8, 30, 256, 100000, 5000, 0, "shingle 8");
	test_round_trip(4, 4, 10, 64, 1000, 4000, 0, "16 values a point (boxes cached by subtree size)");
	test_round_trip(1, 1, 260, 256, 100000, 3000, 1, "more than 65535 slots (32-bit slot numbers)");
	test_round_trip(3, 2, 10, 32, 1000, 4000, 1, "3-D with duplicates");
	test_round_trip(4, 1, 5, 16, 100, 100000, 0, "past a weight rebase");
	test_round_trip(3, 1, 10, 64, 1000, 4000, 2, "decimals, floats and -0 by column");
	test_round_trip(3, 4, 10, 64, 1000, 4000, 2, "decimals, floats and -0 by column, shingled");
	test_ties(1);
	test_ties(4);
	test_hostile();
	test_canonical_forms();
	test_flips_canonical();
	test_points_header();
	test_size();
	test_grader_round_trip();
	test_garbage_memory(1);
	test_garbage_memory(8);
	test_encode_into();
	test_v1_fixture("v1_shingled", 1, 3000, false);
	test_v1_fixture("v1_wide", 3, 500, false);
	test_v1_fixture("v1_graded", 2, 1500, true);
	test_v1_fixture("v1_young", 1, 9, false);
	return unit_done();
}
