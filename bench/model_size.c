/*
 * model_size.c
 *	  Stored size and decode time of the reference configuration's model
 *	  (1 value, shingle 8, 50 trees, 256 samples, time decay 100,000; the
 *	  issue 14 targets), after 10,000 and after 100,000 updates of the
 *	  unit tests' signal (test_encode's size case).
 *
 *	  bench/model_size
 *
 * Prints one line per model:
 *
 *	  signal=<s> updates=<n> encoded_bytes=<n> decode_ms=<best of 21> round_trip=<ok|FAILED>
 *
 * signal: "float", the unit tests' values as they are (the issue's
 * measure), or "decimal4", the same rounded to 4 decimals as bench/model.sh
 * makes them.
 *
 * round_trip: re-encoding the decoded forest gives the same bytes.
 */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"

/* Wall clock, in seconds. */
static double
now(void)
{
	return now_us() / 1e6;
}

/* Encodes f into a malloc'ed buffer. */
static uint8_t *
encode(const RcfForest *f, size_t *len)
{
	uint8_t    *buf;

	*len = rcf_encoded_size(f);
	buf = malloc(*len);
	if (buf == NULL || rcf_encode(f, buf, *len) != *len)
	{
		fprintf(stderr, "model_size: encoding failed\n");
		exit(1);
	}
	return buf;
}

static int
run(bool decimals)
{
	static const int checkpoints[] = {10000, 100000};
	RcfParams	p;
	RcfForest  *f;
	uint64_t	s = 1;
	int			done = 0;

	rcf_params_default(&p, 1);
	p.shingle_size = 8;
	p.number_of_trees = 50;
	f = rcf_create(&p, NULL);
	for (int c = 0; c < 2; c++)
	{
		uint8_t    *buf,
				   *again;
		size_t		len,
					len2;
		double		best = 1e9;
		RcfDecodeStatus status;
		const char *detail;
		RcfForest  *g = NULL;

		for (; done < checkpoints[c]; done++)
		{
			double		x = 10 * sin(done * 0.05) + noise(&s);

			if (decimals)
				x = round(x * 1e4) / 1e4;

			rcf_update(f, &x);
		}
		buf = encode(f, &len);
		for (int k = 0; k < 21; k++)
		{
			double		t0 = now();

			if (g)
				rcf_free(g);
			g = rcf_decode(buf, len, NULL, &status, &detail);
			if (g == NULL)
			{
				fprintf(stderr, "model_size: decode failed: %s\n", detail);
				return 1;
			}
			if (now() - t0 < best)
				best = now() - t0;
		}
		again = encode(g, &len2);
		printf("signal=%s updates=%d encoded_bytes=%zu decode_ms=%.3f round_trip=%s\n",
			   decimals ? "decimal4" : "float", done, len, best * 1000.0,
			   len2 == len && memcmp(buf, again, len) == 0 ? "ok" : "FAILED");
		rcf_free(g);
		free(buf);
		free(again);
	}
	rcf_free(f);
	return 0;
}

int
main(void)
{
	return run(false) || run(true);
}
