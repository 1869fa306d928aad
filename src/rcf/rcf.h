/*
 * rcf.h
 *	  Random Cut Forest engine: public interface.
 *
 * The engine is plain C99 with no PostgreSQL dependency, so that it can be
 * unit-tested and benchmarked on its own.  A forest lives in one arena whose
 * size is fixed at creation, and, with shingle_size > 1, a store of records
 * that grows by half when compaction does not free enough (rarely: nothing
 * is allocated per point).
 *
 * Each call that takes an "input" takes one record of `dims` values.  With
 * shingle_size > 1 the forest keeps the last shingle_size records and works
 * on their concatenation (oldest first), as KDA's internal shingling did.
 *
 * The usual streaming step is: score (or attribute) the input, then update
 * the forest with it.  rcf_process() does both.
 */
#ifndef RCF_H
#define RCF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Limits; they are the engine's, the SQL layer may narrow them. */
#define RCF_MAX_TREES			1000
#define RCF_MIN_SAMPLES			2
#define RCF_MAX_SAMPLES			4096
#define RCF_MAX_SHINGLE			64
#define RCF_MAX_DIMENSIONS		1024	/* dims * shingle_size */

/*
 * Ranges of a model's parameters: what the SQL functions accept (KDA's
 * documented limits for RANDOM_CUT_FOREST) and what the decoder accepts, so
 * that no stored model asks for more than SQL could have built.  One table
 * for both: src/params.c checks SQL arguments against it, and
 * rcf_model_params_check() checks a decoded model's header.  Within the
 * engine's limits above, which the engine's own tests and benchmarks use.
 */
#define RCF_MODEL_MIN_TREES		1
#define RCF_MODEL_MAX_TREES		1000
#define RCF_MODEL_MIN_SAMPLES	10
#define RCF_MODEL_MAX_SAMPLES	1000
#define RCF_MODEL_MIN_SHINGLE	1
#define RCF_MODEL_MAX_SHINGLE	30
#define RCF_MODEL_MAX_DIMENSIONS RCF_MAX_DIMENSIONS	/* dims * shingle_size */
#define RCF_MODEL_MAX_DECAY		1e18	/* time_decay > sample_size, at most this */

typedef struct RcfParams
{
	int			dims;			/* values per input record */
	int			shingle_size;	/* records concatenated into one point */
	int			number_of_trees;
	int			sample_size;	/* points kept per tree */
	double		time_decay;		/* lambda = 1 / time_decay; 0 means none */
	uint64_t	seed;
	int			output_after;	/* points before scores are reported; <0
								 * means the default, sample_size / 4 */
} RcfParams;

/*
 * Memory hooks, so the PostgreSQL layer can allocate in a memory context.
 * alloc must return memory aligned for any type, or NULL.
 */
typedef struct RcfAllocator
{
	void	   *(*alloc) (void *ctx, size_t size);
	void		(*free) (void *ctx, void *ptr);
	void	   *ctx;
} RcfAllocator;

typedef struct RcfForest RcfForest;

/* Fills in KDA's defaults for everything but dims. */
extern void rcf_params_default(RcfParams *params, int dims);

/*
 * Checks parameters; returns NULL when valid, otherwise a static message
 * that names the offending parameter.
 */
extern const char *rcf_params_check(const RcfParams *params);

/*
 * Bytes the arena of a forest with these (valid) parameters takes: all of
 * its memory without shingling, and all but the record store with.
 */
extern size_t rcf_arena_size(const RcfParams *params);

/*
 * Checks parameters against the model ranges above (and the engine's
 * limits); NULL when a model may have them, else a static message.  Unlike
 * rcf_params_check, output_after must be resolved (1 .. sample_size).
 */
extern const char *rcf_model_params_check(const RcfParams *params);

/*
 * The most memory the engine holds for one forest with these (valid)
 * parameters at any time: its arena, plus the largest temporary buffer that
 * encoding it or decoding it takes while the forest exists.  Computed from
 * the parameters alone, so a caller can refuse a forest before any of it is
 * allocated.  Kept exact to the layout of forest.c (arena_layout) and of
 * encode.c (write_forest, rcf_model_decode); test/unit/test_limits.c
 * compares it with what those allocate.
 */
extern size_t rcf_forest_memory(const RcfParams *params);

/* Creates a forest; NULL if the parameters are invalid or alloc fails. */
extern RcfForest *rcf_create(const RcfParams *params,
							 const RcfAllocator *allocator);
extern void rcf_free(RcfForest *forest);

extern const RcfParams *rcf_params(const RcfForest *forest);

/* The bytes the forest holds now: its arena and its record store. */
extern size_t rcf_bytes(const RcfForest *forest);

/* Number of records passed to rcf_update so far. */
extern uint64_t rcf_updates(const RcfForest *forest);

/* True once scores are reported (the warm-up is over). */
extern int	rcf_output_ready(const RcfForest *forest);

/*
 * Anomaly score of the point that `input` would complete, without learning
 * it.  0 during warm-up.
 */
extern double rcf_score(RcfForest *forest, const double *input);

/*
 * Like rcf_score, and also splits the score over the dimensions of the
 * point: high[i] is the part due to the point lying above the data in
 * dimension i, low[i] below.  Both arrays have dims * shingle_size entries;
 * the sum of all entries equals the returned score.
 */
extern double rcf_attribution(RcfForest *forest, const double *input,
							  double *high, double *low);

/*
 * Expected values of the input's values flagged in `missing`, given its
 * other values and the shingle's earlier records: for each tree the leaf
 * nearest to the input in the known values, and per value the median over
 * trees.  Values not missing are copied.  Returns 0, or -1 if the forest
 * has learned nothing yet.  Used to impute missing values and to tell how
 * far an anomalous value is from what was expected.
 */
extern int	rcf_impute(RcfForest *forest, const double *input,
					   const bool *missing, double *expected);

/* The last record learned (as stored, in float precision); -1 if none. */
extern int	rcf_last_record(const RcfForest *forest, double *record);

/*
 * Learns one input record.  Returns 0, or -1 if the record store could not
 * grow; the forest is then as before the call (the record is not learned).
 */
extern int	rcf_update(RcfForest *forest, const double *input);

/*
 * Makes sure the next `updates` calls of rcf_update allocate no memory (with
 * shingling the record store may otherwise grow), for callers that learn
 * where they must not allocate.  Returns 0, or -1 if memory ran out.
 */
extern int	rcf_reserve(RcfForest *forest, uint64_t updates);

/* rcf_score then rcf_update; returns the score. */
extern double rcf_process(RcfForest *forest, const double *input);

/*
 * Checks every structural invariant (tree shapes, masses, cached boxes,
 * sampler heaps, point store reference counts).  Returns NULL when sound,
 * else a static description of the first violation.  For tests and for
 * validating decoded models; O(size of the forest).
 */
extern const char *rcf_check(const RcfForest *forest);

/*
 * Encoding: a compact, versioned, checksummed byte form of a forest that
 * holds everything needed to continue exactly where it stopped.  Decoding
 * trusts nothing: every count is checked against the parameters and the
 * bytes left before anything is allocated, and the rebuilt forest must pass
 * rcf_check.
 */
#define RCF_FORMAT_VERSION		2	/* written; 1 is still read */

typedef enum RcfDecodeStatus
{
	RCF_DECODE_OK = 0,
	RCF_DECODE_TRUNCATED,		/* fewer bytes than the content needs */
	RCF_DECODE_BAD_FORMAT,		/* not an encoded forest, or trailing bytes */
	RCF_DECODE_BAD_VERSION,		/* a format version this code cannot read */
	RCF_DECODE_BAD_CHECKSUM,
	RCF_DECODE_CORRUPT,			/* checksum fine, content inconsistent */
	RCF_DECODE_NO_MEMORY
} RcfDecodeStatus;

/* Exact size of the encoding. */
extern size_t rcf_encoded_size(const RcfForest *forest);

/*
 * Writes the encoding into buf, which has room for rcf_encoded_size bytes;
 * returns the bytes written, or 0 if the forest is too inconsistent to
 * encode or memory for temporary arrays ran out.
 */
extern size_t rcf_encode(const RcfForest *forest, uint8_t *buf, size_t size);

/*
 * Rebuilds a forest from an encoding.  On failure returns NULL, sets
 * *status, and points *detail at a static description.
 */
extern RcfForest *rcf_decode(const uint8_t *buf, size_t len,
							 const RcfAllocator *allocator,
							 RcfDecodeStatus *status, const char **detail);

/*
 * Reads the parameters from an encoding's header without checking the
 * checksum or anything after them, so that a caller can refuse a model by
 * its size before decoding it (rcf_decode checks everything again).
 * Returns 0, or -1 if the data is too short or not an encoded forest of a
 * known version.  output_after is as stored.
 */
extern int	rcf_model_peek_params(const uint8_t *buf, size_t len,
								  RcfParams *params);

/* CRC-32C (Castagnoli), as used in the encoding's header. */
extern uint32_t rcf_crc32c(uint32_t crc, const void *data, size_t len);

#endif							/* RCF_H */
