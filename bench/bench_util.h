/*
 * bench_util.h
 *	  Helpers shared by the engine benchmarks: clocks, and the data
 *	  generator of the unit tests (test/unit/noise.h), which does not depend
 *	  on libc's rand().
 */
#ifndef BENCH_UTIL_H
#define BENCH_UTIL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rcf/rcf.h"

#include "../test/unit/noise.h"

/* Wall clock, in microseconds. */
static inline double
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

/* CPU time of this process, in seconds. */
static inline double
cpu_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}
/*
 * Says how to call the program (its name argv0, then its options) and exits
 * with status 2: every benchmark refuses bad arguments the same way.
 */
static inline void
bench_usage(const char *argv0, const char *options)
{
	fprintf(stderr, "usage: %s %s\n", argv0, options);
	exit(2);
}

/*
 * Reads the forest's options that the engine benchmarks share, --trees N,
 * --samples N, --shingle N, --seed N, --time-decay X and
 * --box-cache-fraction F (bounding_box_cache_fraction), into p: true when
 * option a (with value v) is one of them.
 */
static inline bool
bench_forest_option(RcfParams *p, const char *a, const char *v)
{
	if (strcmp(a, "--trees") == 0)
		p->number_of_trees = atoi(v);
	else if (strcmp(a, "--samples") == 0)
		p->sample_size = atoi(v);
	else if (strcmp(a, "--shingle") == 0)
		p->shingle_size = atoi(v);
	else if (strcmp(a, "--seed") == 0)
		p->seed = strtoull(v, NULL, 10);
	else if (strcmp(a, "--time-decay") == 0)
		p->time_decay = atof(v);
	else if (strcmp(a, "--box-cache-fraction") == 0)
		p->bounding_box_cache_fraction = atof(v);
	else
		return false;
	return true;
}

#endif							/* BENCH_UTIL_H */
