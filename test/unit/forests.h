/*
 * forests.h
 *	  Forests for the engine's unit tests: the parameters a test cares about
 *	  given in one call, every other one left at rcf_params_default's value,
 *	  so that a test shows what it varies.
 */
#ifndef ANOMALY_TEST_FORESTS_H
#define ANOMALY_TEST_FORESTS_H

#include <stdint.h>

#include "rcf/rcf.h"

/*
 * Parameters of records of dims values, shingled shingle at a time, into
 * trees trees of samples points each; time decay, seed and warm-up are the
 * defaults.
 */
static inline RcfParams
forest_params(int dims, int shingle, int trees, int samples)
{
	RcfParams	p;

	rcf_params_default(&p, dims);
	p.shingle_size = shingle;
	p.number_of_trees = trees;
	p.sample_size = samples;
	return p;
}

/* A forest of forest_params() with the given time decay and seed. */
static inline RcfForest *
make_forest(int dims, int shingle, int trees, int samples, double decay,
			uint64_t seed)
{
	RcfParams	p = forest_params(dims, shingle, trees, samples);

	p.time_decay = decay;
	p.seed = seed;
	return rcf_create(&p, NULL);
}

#endif							/* ANOMALY_TEST_FORESTS_H */
