/*
 * hotspots.c
 *	  Benchmark of the HOTSPOTS engine alone.
 *
 *	  bench/hotspots --data clusters|uniform --dims D --window W
 *					 --radius R --min M --points P [--seed X]
 *
 * Fills the window, then times P points (each: added, the window's hotspots
 * found).  clusters: KDA's example shape, 60% of the points in two Gaussian
 * clusters (sigma 0.05), the rest uniform over [0,10]^D; uniform: all
 * uniform.  Prints one machine-readable line:
 *
 *	  hotspots data=.. dims=.. window=.. radius=.. min=.. points=..
 *	  us_per_point=<mean> cpu_us_per_point=<mean> bytes=.. hotspots_last=..
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "../test/unit/counting_alloc.h"
#include "hotspots/hotspots.h"

/* One point of the chosen data. */
static void
generate(double *p, int dims, bool clusters, uint64_t *s)
{
	double		u = noise(s) + 0.5;

	for (int k = 0; k < dims; k++)
	{
		if (clusters && u < 0.3)
			p[k] = 2.0 + 0.05 * gauss(s);
		else if (clusters && u < 0.6)
			p[k] = 7.0 + 0.05 * gauss(s);
		else
			p[k] = 10.0 * (noise(s) + 0.5);
	}
}

/* The options, for bench_usage(). */
#define USAGE "--data clusters|uniform --dims D --window W --radius R --min M --points P [--seed X]"

int
main(int argc, char **argv)
{
	HotspotsParams p = {2, 1000, 0.2, 17};
	CountingAlloc counter = {0};
	HotspotsAllocator a = {counting_alloc, counting_free, &counter};
	HotspotsDetector *d;
	bool		clusters = true;
	long		points = 10000;
	uint64_t	seed = 42;
	double	   *pt;
	double		t0,
				c0,
				t1,
				c1;
	int			n = 0;
	const char *err;

	for (int i = 1; i < argc; i++)
	{
		if (i + 1 >= argc)
			bench_usage(argv[0], USAGE);
		if (strcmp(argv[i], "--data") == 0)
			clusters = strcmp(argv[++i], "clusters") == 0;
		else if (strcmp(argv[i], "--dims") == 0)
			p.dims = atoi(argv[++i]);
		else if (strcmp(argv[i], "--window") == 0)
			p.window_size = atoi(argv[++i]);
		else if (strcmp(argv[i], "--radius") == 0)
			p.scan_radius = atof(argv[++i]);
		else if (strcmp(argv[i], "--min") == 0)
			p.min_points = atoi(argv[++i]);
		else if (strcmp(argv[i], "--points") == 0)
			points = atol(argv[++i]);
		else if (strcmp(argv[i], "--seed") == 0)
			seed = strtoull(argv[++i], NULL, 10);
		else
			bench_usage(argv[0], USAGE);
	}
	if ((err = hotspots_params_check(&p)) != NULL)
	{
		fprintf(stderr, "invalid parameters: %s\n", err);
		return 2;
	}
	d = hotspots_create(&p, &a);
	pt = malloc(sizeof(double) * p.dims);
	if (d == NULL || pt == NULL)
	{
		fprintf(stderr, "out of memory\n");
		return 1;
	}
	for (int i = 0; i < p.window_size; i++)
	{
		generate(pt, p.dims, clusters, &seed);
		hotspots_add(d, pt);
	}
	t0 = now_us();
	c0 = cpu_seconds();
	for (long i = 0; i < points; i++)
	{
		generate(pt, p.dims, clusters, &seed);
		n = hotspots_add(d, pt);
	}
	t1 = now_us();
	c1 = cpu_seconds();
	printf("hotspots data=%s dims=%d window=%d radius=%g min=%d points=%ld us_per_point=%.3f cpu_us_per_point=%.3f bytes=%zu hotspots_last=%d\n",
		   clusters ? "clusters" : "uniform", p.dims, p.window_size,
		   p.scan_radius, p.min_points, points, (t1 - t0) / points,
		   (c1 - c0) * 1e6 / points, hotspots_bytes(&p), n);
	free(pt);
	hotspots_free(d);
	return 0;
}
