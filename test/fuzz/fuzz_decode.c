/*
 * fuzz_decode.c
 *	  libFuzzer target for the forest decoder (make fuzz).
 *
 * Inputs whose first byte is odd get their CRC fixed up before decoding,
 * so that the fuzzer explores the content checks behind the checksum too.
 * Whatever decodes must be a sound forest that keeps working: score,
 * learn, and survive another encode/decode round trip bit for bit.
 */
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

		for (int i = 0; i < 4; i++)
			buf[8 + i] = (uint8_t) (crc >> (8 * i));
	}
	{
		RcfGrader  *g = NULL;

		/* The model form too: with a grader section, it must round-trip. */
		f = rcf_model_decode(buf, len, NULL, &g, &status, &detail);
		if (f && g)
		{
			size_t		n = rcf_model_encoded_size(f, g);
			uint8_t    *again = malloc(n);
			RcfGrader  *g2 = NULL;
			RcfForest  *f2;

			if (rcf_model_encode(f, g, again, n) != n)
				abort();
			f2 = rcf_model_decode(again, n, NULL, &g2, &status, &detail);
			if (f2 == NULL || g2 == NULL)
				abort();
			rcf_free(f2);
			rcf_grader_free(g2);
			free(again);
		}
		rcf_grader_free(g);
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
	free(buf);
	return 0;
}
