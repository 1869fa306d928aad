/*
 * make_corpus.c
 *	  Prints the hostile anomaly.rcf inputs of sql/model_corrupt.sql in the
 *	  current format (version 2): small valid models tampered with in one
 *	  way each, with the checksum fixed up so that the decoder's content
 *	  checks, not the checksum, must catch them.  Some are tampered in the
 *	  bytes, some in the forest before it is encoded (so that the encoder
 *	  writes a well-formed stream of an unsound forest).  Run it to
 *	  regenerate the corpus after a format change:
 *
 *		make test/corpus/make_corpus && test/corpus/make_corpus
 *
 * The version 1 rows of sql/model_corrupt.sql were printed by this program
 * at commit f90745a, before version 2, and are kept as they were.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <math.h>

#include "rcf/rcf.h"
#include "rcf/grade.h"
#include "rcf/rcf_internal.h"

static const char b64[] =
"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void
print_base64(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i += 3)
	{
		uint32_t	v = p[i] << 16;

		if (i + 1 < n)
			v |= p[i + 1] << 8;
		if (i + 2 < n)
			v |= p[i + 2];
		putchar(b64[(v >> 18) & 63]);
		putchar(b64[(v >> 12) & 63]);
		putchar(i + 1 < n ? b64[(v >> 6) & 63] : '=');
		putchar(i + 2 < n ? b64[v & 63] : '=');
	}
}

static void
fix_crc(uint8_t *buf, size_t len)
{
	uint32_t	crc = rcf_crc32c(0, buf + 12, len - 12);

	/* The header's flags, when any is set, come last (encode.c). */
	if (buf[6] != 0 || buf[7] != 0)
		crc = rcf_crc32c(crc, buf + 6, 2);

	for (int i = 0; i < 4; i++)
		buf[8 + i] = (uint8_t) (crc >> (8 * i));
}

static void
emit(const char *what, const uint8_t *buf, size_t len)
{
	printf("('v2: %s', '", what);
	print_base64(buf, len);
	printf("'),\n");
}

/* The small forest every row starts from: 1 value, 1 tree of 10. */
static RcfForest *
base_forest(int shingle)
{
	RcfParams	p;
	RcfForest  *f;

	rcf_params_default(&p, 1);
	p.number_of_trees = 1;
	p.sample_size = 10;
	p.shingle_size = shingle;
	f = rcf_create(&p, NULL);
	for (int i = 0; i < 6 + shingle - 1; i++)
	{
		double		x = i * 1.5;

		rcf_update(f, &x);
	}
	return f;
}

/* Encodes f and prints it as a row. */
static void
emit_forest(const char *what, RcfForest *f)
{
	size_t		len = rcf_encoded_size(f);
	uint8_t    *buf = malloc(len);

	if (len == 0 || rcf_encode(f, buf, len) != len)
	{
		fprintf(stderr, "%s: the encoder refused the forest\n", what);
		exit(1);
	}
	emit(what, buf, len);
	free(buf);
}

/*
 * Whether buf with bit `bit` flipped (checksum fixed, into t) is refused,
 * with `detail` unless that is NULL.
 */
static bool
flip_refused(uint8_t *t, const uint8_t *buf, size_t len, size_t bit,
			 const char *detail)
{
	RcfDecodeStatus status;
	const char *why;
	RcfForest  *f;

	memcpy(t, buf, len);
	t[bit / 8] ^= (uint8_t) (1 << (bit % 8));
	fix_crc(t, len);
	f = rcf_decode(t, len, NULL, &status, &why);
	rcf_free(f);
	return f == NULL && (detail == NULL || strcmp(why, detail) == 0);
}

/*
 * Emits buf with the first bit from byte `from` on flipped (checksum
 * fixed) that the decoder refuses with `detail`, or with the last bit
 * before byte `from` that it refuses for any reason when detail is NULL;
 * fails if none does.
 */
static void
flip_until(const char *what, const uint8_t *buf, size_t len, size_t from,
		   const char *detail)
{
	uint8_t    *t = malloc(len);

	if (detail)
	{
		for (size_t bit = from * 8; bit < len * 8; bit++)
			if (flip_refused(t, buf, len, bit, detail))
			{
				emit(what, t, len);
				free(t);
				return;
			}
	}
	else
	{
		for (size_t bit = from * 8; bit-- > 0;)
			if (flip_refused(t, buf, len, bit, NULL))
			{
				emit(what, t, len);
				free(t);
				return;
			}
	}
	fprintf(stderr, "%s: no bit flip is refused\n", what);
	exit(1);
}

/* Where the tree's section starts: at its generator's state. */
static size_t
tree_offset(const RcfForest *f, const uint8_t *buf, size_t len)
{
	uint8_t		rng[8];

	for (int i = 0; i < 8; i++)
		rng[i] = (uint8_t) (f->trees[0].rng >> (8 * i));
	for (size_t at = 12; at + 8 <= len; at++)
		if (memcmp(buf + at, rng, 8) == 0)
			return at;
	fprintf(stderr, "no tree found\n");
	exit(1);
}

int
main(void)
{
	RcfForest  *f;
	uint8_t    *buf,
			   *t;
	size_t		len,
				tree;
	/* Offsets in a 1-value, shingle 1, 1-tree model of 6 points. */
	size_t		params = 12,
				counters = 12 + 36,
				shingle = 12 + 36 + 2,
				points = 12 + 36 + 2 + 4;

	f = base_forest(1);
	len = rcf_encoded_size(f);
	buf = malloc(len);
	t = malloc(len + 8);
	rcf_encode(f, buf, len);
	tree = tree_offset(f, buf, len);

	emit("valid", buf, len);

#define TAMPER(what, stmt) \
	do { memcpy(t, buf, len); stmt; fix_crc(t, len); emit(what, t, len); } while (0)

	TAMPER("two billion trees", (t[params + 8] = 0xFF, t[params + 9] = 0xFF,
								 t[params + 10] = 0xFF, t[params + 11] = 0x7F));
	TAMPER("zero dimensions", memset(t + params, 0, 4));
	TAMPER("sample size one", (t[params + 12] = 1, t[params + 13] = 0));
	TAMPER("negative time decay", t[params + 27] = 0xC0);
	TAMPER("sample size 4096", (t[params + 12] = 0x00, t[params + 13] = 0x10));
	TAMPER("shingle size 31", t[params + 4] = 31);
	TAMPER("output_after above the sample size", t[params + 16] = 11);
	TAMPER("more updates than the samplers saw", t[counters] = 7);
	TAMPER("weight base after the last point", t[counters + 1] = 7);
	TAMPER("NaN in the shingle", (t[shingle] = 0, t[shingle + 1] = 0,
								  t[shingle + 2] = 0xC0, t[shingle + 3] = 0x7F));
	TAMPER("more points than the samplers hold", t[points] = 0x7F);
	TAMPER("fewer points than written", t[points] = 2);
	TAMPER("records stream bit flipped", t[points + 2] ^= 0x10);
	TAMPER("sampler size above the sample size", t[tree + 8] = 11);
	/* The last bit of the tree's stream that is refused flipped. */
	flip_until("tree stream bit flipped late", buf, len, len - 1, NULL);
	TAMPER("tree stream last byte flipped", t[len - 2] ^= 0xFF);

	/*
	 * Unsound forests, encoded as they are.  The largest weight is written
	 * first of the sampler's, the others as distances below it.
	 */
	{
		RcfForest  *g = base_forest(1);

		g->trees[0].heap_weight[0] = NAN;
		emit_forest("first weight NaN", g);
		g->trees[0].heap_weight[0] = 1e38f;
		emit_forest("first weight huge", g);
		rcf_free(g);
	}
	{
		/* A weight changed: a valid model (the checksum is what catches this). */
		RcfForest  *g = base_forest(1);

		g->trees[0].heap_weight[5] = nextafterf(g->trees[0].heap_weight[5], -INFINITY);
		emit_forest("a weight changed, still a valid model", g);
		rcf_free(g);
	}

	/*
	 * What the encoding cannot express (a heap's layout, a leaf without
	 * an entry) as the first bit of the tree's stream that, flipped, makes
	 * the decoder find the like.
	 */
	flip_until("a sampler weight flipped out of range", buf, len, tree + 9,
			   "a sampler weight is out of range");
	flip_until("more entries than the sampler holds",
			   buf, len, tree + 9, "a sampler's size does not match its leaves");
	{
		RcfForest  *g = base_forest(4);

		emit_forest("valid, shingle 4", g);
		rcf_free(g);
	}
	{
		RcfForest  *g = base_forest(4);
		size_t		n = rcf_encoded_size(g);
		uint8_t    *b = malloc(n + 8);

		rcf_encode(g, b, n);
		/* The record count (after 36 + 2 + 16 bytes) one higher than written. */
		b[12 + 36 + 2 + 16] += 1;
		fix_crc(b, n);
		emit("shingle 4, one record more than written", b, n);
		free(b);
		rcf_free(g);
	}

	/* One section of kind 7, empty, where the section count was 0. */
	memcpy(t, buf, len);
	t[len - 1] = 1;
	t[len] = 7;
	t[len + 1] = 0;
	fix_crc(t, len + 2);
	emit("optional section of an unknown kind", t, len + 2);
	memcpy(t, buf, len);
	t[4] = 3;
	emit("format version 3", t, len);
	memcpy(t, buf, len);
	t[6] = 2;
	fix_crc(t, len);
	emit("unknown header flag set", t, len);
	memcpy(t, buf, len);
	t[6] = 1;
	fix_crc(t, len);
	emit("box cache flag set, no fraction written", t, len);
	{
		/* The fraction follows the parameters (12 + 36 bytes). */
		RcfForest  *h;
		uint8_t    *b = malloc(len + 8);
		double		one = 1.0;
		RcfDecodeStatus status;
		const char *why;

		memcpy(b, buf, 48);
		memcpy(b + 48, &one, 8);
		memcpy(b + 56, buf + 48, len - 48);
		b[6] = 1;
		fix_crc(b, len + 8);
		emit("box cache fraction 1 written", b, len + 8);
		one = 0.25;
		memcpy(b + 48, &one, 8);
		fix_crc(b, len + 8);
		h = rcf_decode(b, len + 8, NULL, &status, &why);
		if (h == NULL || rcf_params(h)->bounding_box_cache_fraction != 0.25)
		{
			fprintf(stderr, "a model of fraction 0.25 does not decode: %s\n", why);
			exit(1);
		}
		rcf_free(h);
		emit("valid, box cache fraction 0.25", b, len + 8);
		free(b);
	}
	memcpy(t, buf, len);
	t[len / 2] ^= 4;
	emit("bit flip, checksum not fixed", t, len);
	emit("truncated by one byte", buf, len - 1);
	memcpy(t, buf, len);
	t[len] = 0;
	fix_crc(t, len + 1);
	emit("one byte too many", t, len + 1);

	/*
	 * The transform section (kind 3): the same forest with a normalize
	 * transform that learned the six points, then tampered with.  Its
	 * payload is the last 104 bytes: u64 method, dims, f64 decay, clip,
	 * u64 count, then weight, previous, level weight, mean, m2, diff
	 * weight, mean, m2.
	 */
	{
		RcfTransformParams tp;
		RcfTransform *tr;
		uint8_t    *m,
				   *u;
		size_t		mlen,
					pay;
		double		nan = NAN,
					one = 1.0,
					neg = -1.0;

		rcf_transform_params_default(&tp, 1, 10);
		tp.method = RCF_TRANSFORM_NORMALIZE;
		tr = rcf_transform_create(&tp, NULL, NULL);
		for (int i = 0; i < 6; i++)
		{
			double		x = i * 1.5;

			rcf_transform_learn(tr, &x);
		}
		mlen = rcf_model_encoded_size_tf(f, NULL, tr);
		m = malloc(mlen);
		u = malloc(mlen + 200);
		rcf_model_encode_tf(f, NULL, tr, m, mlen);
		pay = mlen - 104;
		emit("valid with a transform", m, mlen);
#define TAMPER_T(what, stmt) \
	do { memcpy(u, m, mlen); stmt; fix_crc(u, mlen); emit(what, u, mlen); } while (0)
		TAMPER_T("transform of an unknown method", u[pay] = 6);
		TAMPER_T("transform of other dimensions", u[pay + 8] = 2);
		TAMPER_T("transform decay of 1", memcpy(u + pay + 16, &one, 8));
		TAMPER_T("transform clip NaN", memcpy(u + pay + 24, &nan, 8));
		TAMPER_T("transform weight negative", memcpy(u + pay + 40, &neg, 8));
		TAMPER_T("transform mean NaN", memcpy(u + pay + 64, &nan, 8));
		TAMPER_T("transform sum of squares negative", memcpy(u + pay + 72, &neg, 8));
		TAMPER_T("transform statistic above its count", u[pay + 32] = 0);
		/* The section one byte short, its length fixed to match. */
		memcpy(u, m, mlen);
		u[pay - 1] = 103;
		fix_crc(u, mlen - 1);
		emit("transform section one byte short", u, mlen - 1);
		/* Two transform sections. */
		memcpy(u, m, mlen);
		u[pay - 3] = 2;
		memcpy(u + mlen, m + pay - 2, 106);
		fix_crc(u, mlen + 106);
		emit("two transform sections", u, mlen + 106);
		free(m);
		free(u);
		rcf_transform_free(tr);
	}
	printf("('empty', '')\n");
	free(buf);
	free(t);
	rcf_free(f);
	return 0;
}
