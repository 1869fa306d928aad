/*
 * noise.h
 *	  Deterministic noise for the standalone C programs, the unit tests and
 *	  the engine benchmarks (bench/bench_util.h includes it): a xorshift
 *	  generator, so that a seed gives the same data on every libc.
 */
#ifndef ANOMALY_NOISE_H
#define ANOMALY_NOISE_H

#include <stdint.h>

/* xorshift noise in [-0.5, 0.5); *s is the state, never 0. */
static inline double
noise(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return ((double) (*s >> 11) / 9007199254740992.0) - 0.5;
}

/* Near a standard normal: the sum of twelve uniforms, less six. */
static inline double
gauss(uint64_t *s)
{
	double		x = 0.0;

	for (int i = 0; i < 12; i++)
		x += noise(s) + 0.5;
	return x - 6.0;
}

#endif							/* ANOMALY_NOISE_H */
