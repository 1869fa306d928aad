/*
 * bench_util.h
 *	  Helpers shared by the engine benchmarks: clocks, and the data
 *	  generator of the unit tests (test/unit/noise.h), which does not depend
 *	  on libc's rand().
 */
#ifndef BENCH_UTIL_H
#define BENCH_UTIL_H

#include <stdint.h>
#include <time.h>

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


#endif							/* BENCH_UTIL_H */
