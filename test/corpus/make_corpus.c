/*
 * make_corpus.c
 *	  Prints the hostile anomaly.rcf inputs of sql/model_corrupt.sql: small
 *	  valid models tampered with in one way each, with the checksum fixed
 *	  up so that the decoder's content checks, not the checksum, must catch
 *	  them.  Run it to regenerate the corpus after a format change:
 *
 *		make test/corpus/make_corpus && test/corpus/make_corpus
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <math.h>

#include "rcf/rcf.h"
#include "rcf/grade.h"

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

	for (int i = 0; i < 4; i++)
		buf[8 + i] = (uint8_t) (crc >> (8 * i));
}

static void
emit(const char *what, const uint8_t *buf, size_t len)
{
	printf("('%s', '", what);
	print_base64(buf, len);
	printf("'),\n");
}

int
main(void)
{
	RcfParams	p;
	RcfForest  *f;
	uint8_t    *buf,
			   *t;
	size_t		len;
	/* Offsets in a 1-dimensional, shingle 1, 1-tree model. */
	size_t		params = 12,
				counters = 12 + 36,
				shingle = 12 + 36 + 24,
				points = 12 + 36 + 24 + 4;

	rcf_params_default(&p, 1);
	p.number_of_trees = 1;
	p.sample_size = 10;
	f = rcf_create(&p, NULL);
	for (int i = 0; i < 6; i++)
	{
		double		x = i * 1.5;

		rcf_update(f, &x);
	}
	len = rcf_encoded_size(f);
	buf = malloc(len);
	t = malloc(len + 8);
	rcf_encode(f, buf, len);

	emit("valid", buf, len);

#define TAMPER(what, stmt) \
	do { memcpy(t, buf, len); stmt; fix_crc(t, len); emit(what, t, len); } while (0)

	TAMPER("two billion trees", (t[params + 8] = 0xFF, t[params + 9] = 0xFF,
								 t[params + 10] = 0xFF, t[params + 11] = 0x7F));
	TAMPER("zero dimensions", memset(t + params, 0, 4));
	TAMPER("sample size one", (t[params + 12] = 1, t[params + 13] = 0));
	TAMPER("negative time decay", t[params + 27] = 0xC0);
	/* Within the engine's limits but outside SQL's (rcf.h model ranges). */
	TAMPER("sample size 4096", (t[params + 12] = 0x00, t[params + 13] = 0x10));
	TAMPER("sample size 1001", (t[params + 12] = 0xE9, t[params + 13] = 0x03));
	TAMPER("shingle size 31", t[params + 4] = 31);
	TAMPER("1001 trees", (t[params + 8] = 0xE9, t[params + 9] = 0x03));
	TAMPER("time decay equal to the sample size",
		   (memset(t + params + 20, 0, 6), t[params + 26] = 0x24, t[params + 27] = 0x40));
	TAMPER("output_after above the sample size", t[params + 16] = 11);
	TAMPER("updates disagree with points", t[counters] ^= 0x01);
	TAMPER("NaN in the shingle", (t[shingle] = 0, t[shingle + 1] = 0,
								  t[shingle + 2] = 0xC0, t[shingle + 3] = 0x7F));
	TAMPER("absurd point count", t[points] = 0x7F);
	TAMPER("record run past the end", t[points + 3] = 0x7F);
	TAMPER("NaN point value", (t[points + 4] = 0, t[points + 5] = 0,
							   t[points + 6] = 0xC0, t[points + 7] = 0x7F));
	/* The tree: rng (8), sampler size, weights, slots, preorder. */
	{
		/* After the counts, one run (gap, length, 6 records), 6 deltas. */
		size_t		tree = points + 2 + 2 + 6 * 4 + 6;
		size_t		heap;

		heap = tree + 8 + 1;
		TAMPER("sampler size above the sample size", t[tree + 8] = 11);
		TAMPER("heap order violated", (t[heap] = 0x00, t[heap + 1] = 0x00,
									   t[heap + 2] = 0xC8, t[heap + 3] = 0xC2));
		TAMPER("sampler refers to a missing point", t[heap + 6 * 4] = 9);
		TAMPER("cut on a missing dimension", t[heap + 6 * 4 + 6] = 2);
		TAMPER("cut that does not separate",
			   (t[heap + 6 * 4 + 7] = 0, t[heap + 6 * 4 + 8] = 0,
				t[heap + 6 * 4 + 9] = 0x20, t[heap + 6 * 4 + 10] = 0xC1));
	}
	/* One section of kind 7, empty, where the section count was 0. */
	memcpy(t, buf, len);
	t[len - 1] = 1;
	t[len] = 7;
	t[len + 1] = 0;
	fix_crc(t, len + 2);
	emit("optional section of an unknown kind", t, len + 2);
	memcpy(t, buf, len);
	t[4] = 2;
	emit("format version 2", t, len);
	memcpy(t, buf, len);
	t[6] = 1;
	emit("reserved field set", t, len);
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
