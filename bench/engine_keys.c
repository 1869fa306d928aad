/*
 * engine_keys.c
 *	  The engine as a detector uses it: many forests, one per partition key,
 *	  each fed its rows in short runs, so that a forest has partly left the
 *	  caches by the time its key's next rows come.
 *
 *	  bench/engine_keys [--keys K] [--batch B] [--rows R] [--warm W]
 *						[--trees T] [--samples N] [--shingle S] [--dims D]
 *
 * K forests (default 100; 50 trees, 256 samples, shingle 8, 1 value: the
 * detector benchmark's settings).  First every key learns W rows (default
 * 0, so young forests, whose learning dominates, are measured), then R rows
 * in all (default 500,000) go round-robin over the keys, B rows of a key at
 * a time (default 50), each scored and learned (rcf_process).  Prints one
 * machine-readable line:
 *
 *	  us_per_row=<mean over the R rows> cpu_seconds=... bytes_per_forest=...
 *	  checksum=<sum of every score, %.17g>
 *
 * The checksum is exact, so two builds of the engine can be checked to give
 * bit-identical scores on the same run.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rcf/rcf.h"
#include "bench_util.h"

/* The options, for bench_usage(). */
#define USAGE "[--keys K] [--batch B] [--rows R] [--warm W] [--trees T] [--samples N] [--shingle S] [--dims D]"

/* Row i of key k: a level per key plus noise, as bench/detect.sh inserts. */
static void
make_row(double *rec, int dims, int k, uint64_t *s)
{
	for (int d = 0; d < dims; d++)
		rec[d] = 10.0 * sin(k + d) + noise(s) + 0.5;
}

int
main(int argc, char **argv)
{
	RcfParams	params;
	int			keys = 100;
	int			batch = 50;
	long		rows = 500000;
	long		warm = 0;
	int			dims = 1;
	RcfForest **forests;
	double	   *rec;
	uint64_t	s = 88172645463325252ULL;
	double		checksum = 0.0;
	double		t0;
	long		done = 0;

	rcf_params_default(&params, 1);
	params.number_of_trees = 50;
	params.shingle_size = 8;
	for (int i = 1; i + 1 < argc; i += 2)
	{
		const char *a = argv[i];
		const char *v = argv[i + 1];

		if (bench_forest_option(&params, a, v))
			continue;
		if (strcmp(a, "--keys") == 0)
			keys = atoi(v);
		else if (strcmp(a, "--batch") == 0)
			batch = atoi(v);
		else if (strcmp(a, "--rows") == 0)
			rows = atol(v);
		else if (strcmp(a, "--warm") == 0)
			warm = atol(v);
		else if (strcmp(a, "--dims") == 0)
			dims = atoi(v);
		else
			bench_usage(argv[0], USAGE);
	}
	if (argc % 2 == 0)
		bench_usage(argv[0], USAGE);
	params.dims = dims;
	if (keys < 1 || batch < 1 || rows < 1 || warm < 0 ||
		rcf_params_check(&params) != NULL)
	{
		fprintf(stderr, "invalid parameters: %s\n",
				rcf_params_check(&params) ? rcf_params_check(&params) :
				"keys, batch and rows must be positive");
		return 2;
	}

	forests = malloc(sizeof(RcfForest *) * keys);
	rec = malloc(sizeof(double) * dims);
	for (int k = 0; k < keys; k++)
	{
		params.seed = 42 + k;
		forests[k] = rcf_create(&params, NULL);
		if (forests[k] == NULL)
		{
			fprintf(stderr, "could not create forest %d\n", k);
			return 1;
		}
		for (long i = 0; i < warm; i++)
		{
			make_row(rec, dims, k, &s);
			rcf_update(forests[k], rec);
		}
	}

	t0 = cpu_seconds();
	while (done < rows)
	{
		for (int k = 0; k < keys && done < rows; k++)
		{
			for (int b = 0; b < batch && done < rows; b++, done++)
			{
				make_row(rec, dims, k, &s);
				checksum += rcf_process(forests[k], rec);
			}
		}
	}
	t0 = cpu_seconds() - t0;

	printf("us_per_row=%.3f cpu_seconds=%.3f bytes_per_forest=%zu keys=%d batch=%d rows=%ld warm=%ld trees=%d samples=%d shingle=%d dims=%d checksum=%.17g\n",
		   t0 * 1e6 / rows, t0, rcf_bytes(forests[0]), keys, batch, rows, warm,
		   params.number_of_trees, params.sample_size, params.shingle_size,
		   dims, checksum);
	for (int k = 0; k < keys; k++)
		rcf_free(forests[k]);
	free(forests);
	free(rec);
	return 0;
}
