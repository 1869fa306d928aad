/*
 * model_score.c
 *	  The engine's scoring speed against a fixed forest, the reference for
 *	  rcf_score in SQL (bench/model.sh).
 *
 *	  bench/model_score --train FILE --input FILE [--shingle S] [--trees T]
 *
 * Trains a forest (KDA defaults) on the values of --train, one per line,
 * encodes and decodes it (reporting size and decode time), then scores
 * every value of --input without learning (decode_ms: the best of 21
 * decodes).  Prints one line:
 *
 *	  score_rows_per_s=<n> encoded_bytes=<n> decode_ms=<n> checksum=<sum>
 */
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

static double *
read_values(const char *path, long *n)
{
	FILE	   *f = fopen(path, "r");
	long		cap = 1024;
	double	   *v = malloc(sizeof(double) * cap);
	char		line[256];

	*n = 0;
	if (!f)
	{
		perror(path);
		exit(2);
	}
	while (fgets(line, sizeof(line), f))
	{
		if (*n == cap)
		{
			cap *= 2;
			v = realloc(v, sizeof(double) * cap);
		}
		v[(*n)++] = strtod(line, NULL);
	}
	fclose(f);
	return v;
}

int
main(int argc, char **argv)
{
	RcfParams	p;
	const char *train = NULL,
			   *input = NULL;
	double	   *tv,
			   *iv;
	long		nt,
				ni;
	RcfForest  *f,
			   *g;
	size_t		len;
	uint8_t    *buf;
	RcfDecodeStatus status;
	const char *detail;
	double		t0,
				decode_ms,
				secs,
				sum = 0;

	rcf_params_default(&p, 1);
	for (int i = 1; i + 1 < argc; i += 2)
	{
		if (!strcmp(argv[i], "--train"))
			train = argv[i + 1];
		else if (!strcmp(argv[i], "--input"))
			input = argv[i + 1];
		else if (!strcmp(argv[i], "--shingle"))
			p.shingle_size = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--trees"))
			p.number_of_trees = atoi(argv[i + 1]);
	}
	if (!train || !input)
	{
		fprintf(stderr, "usage: %s --train FILE --input FILE [--shingle S] [--trees T]\n", argv[0]);
		return 2;
	}
	tv = read_values(train, &nt);
	iv = read_values(input, &ni);
	f = rcf_create(&p, NULL);
	for (long i = 0; i < nt; i++)
		rcf_update(f, &tv[i]);
	len = rcf_encoded_size(f);
	buf = malloc(len);
	rcf_encode(f, buf, len);
	t0 = now();
	g = rcf_decode(buf, len, NULL, &status, &detail);
	decode_ms = (now() - t0) * 1000;
	/* The best of 20 more decodes: one is at the mercy of a shared machine. */
	for (int k = 0; k < 20 && g; k++)
	{
		RcfForest  *h;
		double		ms;

		t0 = now();
		h = rcf_decode(buf, len, NULL, &status, &detail);
		ms = (now() - t0) * 1000;
		if (ms < decode_ms)
			decode_ms = ms;
		rcf_free(h);
	}
	t0 = now();
	for (long i = 0; i < ni; i++)
		sum += rcf_score(g, &iv[i]);
	secs = now() - t0;
	printf("score_rows_per_s=%.0f encoded_bytes=%zu decode_ms=%.3f rows=%ld checksum=%.6f\n",
		   ni / secs, len, decode_ms, ni, sum);
	rcf_free(f);
	rcf_free(g);
	free(buf);
	free(tv);
	free(iv);
	return 0;
}
