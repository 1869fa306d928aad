/*
 * fuzz_decode.c
 *	  libFuzzer target for the forest decoder (make fuzz).
 *
 * Inputs whose first byte is odd get their CRC fixed up before decoding,
 * so that the fuzzer explores the content checks behind the checksum too.
 * Whatever decodes must be a sound forest that keeps working: score,
 * learn, and survive another encode/decode round trip bit for bit.  And
 * a model of format version 2 that decodes must encode to its own bytes
 * (encode.c: one encoding per model); version 1 encodes as version 2.
 * With bit 2 of the first byte, the model is also decoded with another
 * bounding_box_cache_fraction, which must change no score.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rcf/rcf.h"
#include "rcf/grade.h"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t    *buf;
	size_t		len;
	RcfForest  *f;
	RcfDecodeStatus status;
	const char *detail;

	if (size < 1)
		return 0;
	len = size - 1;
	buf = malloc(len ? len : 1);
	memcpy(buf, data + 1, len);
	if ((data[0] & 1) && len >= 12)
	{
		uint32_t	crc = rcf_crc32c(0, buf + 12, len - 12);

		/* The header's flags, when any is set, come last (encode.c). */
		if (buf[6] != 0 || buf[7] != 0)
			crc = rcf_crc32c(crc, buf + 6, 2);

		for (int i = 0; i < 4; i++)
			buf[8 + i] = (uint8_t) (crc >> (8 * i));
	}
	{
		RcfGrader  *g = NULL;
		RcfTransform *t = NULL;

		/*
		 * The model form too: with a grader or a transform section, it must
		 * round-trip, and a transform must keep giving finite values.
		 */
		f = rcf_model_decode_tf(buf, len, NULL, &g, &t, &status, &detail);
		if (f && buf[4] == RCF_FORMAT_VERSION && buf[5] == 0)
		{
			size_t		n = rcf_model_encoded_size_tf(f, g, t);
			uint8_t    *again = malloc(n);

			if (rcf_model_encode_tf(f, g, t, again, n) != n ||
				n != len || memcmp(again, buf, len) != 0)
				abort();
			free(again);
		}
		if (f && (g || t))
		{
			size_t		n = rcf_model_encoded_size_tf(f, g, t);
			uint8_t    *again = malloc(n);
			RcfGrader  *g2 = NULL;
			RcfTransform *t2 = NULL;
			RcfForest  *f2;

			if (rcf_model_encode_tf(f, g, t, again, n) != n)
				abort();
			f2 = rcf_model_decode_tf(again, n, NULL, &g2, &t2, &status, &detail);
			if (f2 == NULL || (g2 == NULL) != (g == NULL) ||
				((t2 == NULL) != (t == NULL || rcf_transform_params(t)->method == RCF_TRANSFORM_NONE)))
				abort();
			if (t2)
			{
				int			dims = rcf_params(f2)->dims;
				double	   *x = calloc(dims, sizeof(double));
				double	   *y = calloc(dims, sizeof(double));

				for (int i = 0; i < 3; i++)
				{
					rcf_transform_apply(t2, x, y);
					for (int d = 0; d < dims; d++)
						if (!isfinite(y[d]))
							abort();
					rcf_transform_invert(t2, y, x, y);
					for (int d = 0; d < dims; d++)
						if (!isfinite(y[d]))
							abort();
					rcf_transform_learn(t2, x);
					x[0] += 1e300;
				}
				free(x);
				free(y);
			}
			rcf_free(f2);
			rcf_grader_free(g2);
			rcf_transform_free(t2);
			free(again);
		}
		rcf_grader_free(g);
		rcf_transform_free(t);
		rcf_free(f);
	}
	f = rcf_decode(buf, len, NULL, &status, &detail);
	if (f)
	{
		const RcfParams *p = rcf_params(f);
		double	   *x = calloc(p->dims, sizeof(double));
		size_t		n = rcf_encoded_size(f);
		uint8_t    *again = malloc(n);
		RcfForest  *g;

		if (rcf_check(f) != NULL)
			abort();
		if (rcf_encode(f, again, n) != n)
			abort();
		g = rcf_decode(again, n, NULL, &status, &detail);
		if (g == NULL)
			abort();
		for (int i = 0; i < 3; i++)
		{
			x[0] = i;
			if (rcf_process(f, x) != rcf_process(g, x))
				abort();
		}
		if (rcf_check(f) != NULL)
			abort();
		rcf_free(g);
		free(again);
		free(x);
		rcf_free(f);
	}
	else if (status == RCF_DECODE_OK || detail == NULL)
		abort();

	/*
	 * Mode bit 2: decoded again with another bounding_box_cache_fraction
	 * (the rest of the mode byte, over 63), it is as sound and scores the
	 * same as the forest of the fraction stored.
	 */
	if (data[0] & 2)
	{
		double		fraction = (data[0] >> 2) / 63.0;
		RcfForest  *a = rcf_decode(buf, len, NULL, &status, &detail);
		RcfForest  *b = rcf_model_decode_boxes(buf, len, NULL, NULL, NULL, fraction,
											   &status, &detail);

		if ((a == NULL) != (b == NULL) || (fraction > 1.0 && b != NULL))
			abort();
		if (a && b)
		{
			int			D = rcf_params(a)->dims;
			double	   *x = calloc(D, sizeof(double));

			if (rcf_params(b)->bounding_box_cache_fraction != fraction ||
				rcf_check(b) != NULL)
				abort();
			for (int i = 0; i < 3; i++)
			{
				x[0] = i * 0.5;
				if (rcf_process(a, x) != rcf_process(b, x))
					abort();
			}
			free(x);
		}
		rcf_free(a);
		rcf_free(b);
	}
	free(buf);
	return 0;
}
