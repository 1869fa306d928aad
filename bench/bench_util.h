/*
 * bench_util.h
 *	  Helpers shared by the engine benchmarks: clocks and a data generator
 *	  that does not depend on libc's rand().
 */
#ifndef BENCH_UTIL_H
#define BENCH_UTIL_H

#include <stdint.h>
#include <time.h>

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

/* xorshift noise in [-0.5, 0.5). */
static inline double
noise(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return ((double) (*s >> 11) / 9007199254740992.0) - 0.5;
}

#endif							/* BENCH_UTIL_H */
