/*
 * engine.c
 *	  Benchmark of the Random Cut Forest engine alone.
 *
 *	  bench/engine --dims D --shingle S --trees T --samples N --points P
 *				   [--seed X] [--time-decay L]
 *
 * Feeds a warm-up of sample_size * 4 records, then P records of a noisy
 * seasonal series, each scored then learned (rcf_process).  Timing is taken
 * over batches of 1000 records; the median batch gives the steady-state
 * cost per record.  Prints one machine-readable line:
 *
 *	  us_per_point=<median> bytes_per_forest=<arena bytes> ...
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <math.h>

#include "rcf/rcf.h"

#define BATCH 1000

static double
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int
cmp_double(const void *a, const void *b)
{
	double		x = *(const double *) a;
	double		y = *(const double *) b;

	return (x > y) - (x < y);
}

/* xorshift noise so the data do not depend on libc's rand(). */
static double
noise(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return ((double) (*s >> 11) / 9007199254740992.0) - 0.5;
}

static void
make_record(double *rec, int dims, long i, uint64_t *s)
{
	for (int d = 0; d < dims; d++)
		rec[d] = 10.0 * sin(2 * M_PI * (i + 7 * d) / 288.0) +
			3.0 * sin(2 * M_PI * i / 2016.0) + noise(s) +
			((i % 9973) == 0 ? 25.0 : 0.0);
}

int
main(int argc, char **argv)
{
	RcfParams	params;
	int			dims = 1;
	long		points = 100000;
	RcfForest  *forest;
	double	   *rec;
	double	   *batches;
	long		nbatches;
	long		warm;
	uint64_t	s = 88172645463325252ULL;
	double		checksum = 0.0;

	rcf_params_default(&params, 1);
	for (int i = 1; i < argc; i++)
	{
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (v == NULL)
			goto usage;
		if (strcmp(a, "--dims") == 0)
			dims = atoi(v);
		else if (strcmp(a, "--shingle") == 0)
			params.shingle_size = atoi(v);
		else if (strcmp(a, "--trees") == 0)
			params.number_of_trees = atoi(v);
		else if (strcmp(a, "--samples") == 0)
			params.sample_size = atoi(v);
		else if (strcmp(a, "--points") == 0)
			points = atol(v);
		else if (strcmp(a, "--seed") == 0)
			params.seed = strtoull(v, NULL, 10);
		else if (strcmp(a, "--time-decay") == 0)
			params.time_decay = atof(v);
		else
			goto usage;
		i++;
	}
	params.dims = dims;
	if (rcf_params_check(&params) || points < BATCH)
	{
		fprintf(stderr, "invalid parameters: %s\n",
				rcf_params_check(&params) ? rcf_params_check(&params) : "points");
		return 2;
	}

	forest = rcf_create(&params, NULL);
	rec = malloc(sizeof(double) * dims);
	nbatches = points / BATCH;
	batches = malloc(sizeof(double) * nbatches);

	warm = (long) params.sample_size * 4 + params.shingle_size;
	for (long i = 0; i < warm; i++)
	{
		make_record(rec, dims, i, &s);
		checksum += rcf_process(forest, rec);
	}
	for (long b = 0; b < nbatches; b++)
	{
		double		t0 = now_us();

		for (long i = 0; i < BATCH; i++)
		{
			make_record(rec, dims, warm + b * BATCH + i, &s);
			checksum += rcf_process(forest, rec);
		}
		batches[b] = (now_us() - t0) / BATCH;
	}
	qsort(batches, nbatches, sizeof(double), cmp_double);
	printf("us_per_point=%.3f bytes_per_forest=%zu dims=%d shingle=%d trees=%d samples=%d points=%ld checksum=%.6f\n",
		   batches[nbatches / 2], rcf_bytes(forest), dims, params.shingle_size,
		   params.number_of_trees, params.sample_size, nbatches * BATCH, checksum);
	rcf_free(forest);
	free(rec);
	free(batches);
	return 0;

usage:
	fprintf(stderr, "usage: %s --dims D --shingle S --trees T --samples N --points P [--seed X] [--time-decay L]\n", argv[0]);
	return 2;
}
