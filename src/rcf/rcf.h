/*
 * rcf.h
 *	  Random Cut Forest engine: public interface.
 *
 * The engine is plain C99 with no PostgreSQL dependency, so that it can be
 * unit-tested and benchmarked on its own.  A forest lives in one arena whose
 * size is fixed at creation, and, with shingle_size > 1, a store of records
 * that grows by a quarter when compaction does not free enough (rarely: nothing
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

	/*
	 * Memory against time: the share of internal nodes whose bounding box
	 * is kept, 0 .. 1.  1 (the default) is the engine's choice for the
	 * points' size (rcf_internal.h); below 1, at most that share of each
	 * tree's boxes is kept, for its largest subtrees, and the others are
	 * recomputed from their points when needed.  0 keeps none.  Scores do
	 * not depend on it: a box is the exact minimum and maximum of its
	 * points, kept or not.
	 */
	double		bounding_box_cache_fraction;
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

/*
 * A new object of size bytes, zeroed, from allocator, or from malloc when it
 * is NULL; NULL when out of memory.  The object keeps a copy of the
 * allocator at offset allocator_at (all zero for malloc) and is freed with
 * rcf_allocator_free(&copy, object), which calls its free, or free() when
 * it has none; NULL is fine.
 */
extern void *rcf_allocator_new(const RcfAllocator *allocator, size_t size,
							   size_t allocator_at);
extern void rcf_allocator_free(const RcfAllocator *allocator, void *p);

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

/*
 * The bytes of an encoding's header, and the checksum stored there (0 if
 * len is shorter than a header): a cheap identity of a model, read without
 * decoding or checking it.
 */
#define RCF_MODEL_HEADER_SIZE 12
extern uint32_t rcf_model_stored_crc(const uint8_t *buf, size_t len);

/* CRC-32C (Castagnoli), as used in the encoding's header. */
extern uint32_t rcf_crc32c(uint32_t crc, const void *data, size_t len);

/*
 * Transforms (transform.c): per-feature rescaling of each input record
 * before the forest sees it, as the thresholded forest of AWS has them
 * (its TransformMethod), with discounted running statistics; and the
 * inverse, so that expected values come back in the caller's units.
 *
 * The usual step with a transform t, raw input x (dims values):
 *
 *		rcf_transform_apply(t, x, y);		y: what the forest sees
 *		score = rcf_score(forest, y);		(or a grader: see grade.h's
 *		rcf_update(forest, y);				 rcf_grader_process_tf)
 *		rcf_transform_learn(t, x);			statistics learn x last
 *
 * rcf_transform_invert turns the forest's values for this record (say
 * from rcf_impute on y) back into the caller's units; it must be called
 * before rcf_transform_learn(t, x), with the statistics y was made with.
 * Attribution needs no inversion: a score's parts stay per dimension.
 *
 * Every output is finite for finite input (a constant feature normalizes
 * to 0, a change of it to +-clip); no running statistic becomes NaN or
 * infinite (a value that would overflow one is not learned by it).  The
 * method NONE leaves values as they are, bit for bit.
 */
typedef enum RcfTransformMethod
{
	RCF_TRANSFORM_NONE = 0,		/* x */
	RCF_TRANSFORM_WEIGHTED,		/* w x */
	RCF_TRANSFORM_SUBTRACT_MA,	/* w (x - mean x) */
	RCF_TRANSFORM_DIFFERENCE,	/* w (x - previous x); the first: 0 */
	RCF_TRANSFORM_NORMALIZE,	/* w clip((x - mean x) / deviation of x) */
	RCF_TRANSFORM_NORMALIZE_DIFFERENCE	/* the same, of x - previous x */
} RcfTransformMethod;

#define RCF_TRANSFORM_DEFAULT_CLIP	10.0	/* AWS's clip factor */
#define RCF_TRANSFORM_MAX_CLIP		1e6
#define RCF_TRANSFORM_MIN_DECAY		1e-9
#define RCF_TRANSFORM_MAX_WEIGHT	1e6

typedef struct RcfTransformParams
{
	RcfTransformMethod method;
	int			dims;			/* values per input record */
	double		decay;			/* statistics discount the past by 1 - decay
								 * per record: 1e-9 <= decay < 1 */
	double		clip;			/* normalized values lie in [-clip, clip],
								 * 1 .. 1e6 */
} RcfTransformParams;

typedef struct RcfTransform RcfTransform;

/* "none", "weighted", ...; NULL for an unknown method. */
extern const char *rcf_transform_method_name(RcfTransformMethod method);

/* The method of a lower-case name, or -1. */
extern int	rcf_transform_method_parse(const char *name);

/* Method none, decay 1 / sample_size (as AWS), clip 10. */
extern void rcf_transform_params_default(RcfTransformParams *params,
										 int dims, int sample_size);

/* NULL when valid, else a static message naming the parameter. */
extern const char *rcf_transform_params_check(const RcfTransformParams *params);

/* NULL when a per-feature weight is valid (0 .. 1e6), else a message. */
extern const char *rcf_transform_weight_check(double weight);

/* Bytes a transform of dims features takes. */
extern size_t rcf_transform_bytes(int dims);

/*
 * Creates a transform; weights holds dims per-feature weights (NULL: all
 * 1; a weight of 0 hides the feature from the forest).  NULL if the
 * parameters or weights are invalid or alloc fails.  allocator may be NULL
 * (malloc).
 */
extern RcfTransform *rcf_transform_create(const RcfTransformParams *params,
										  const double *weights,
										  const RcfAllocator *allocator);
extern void rcf_transform_free(RcfTransform *transform);
extern const RcfTransformParams *rcf_transform_params(const RcfTransform *transform);
extern double rcf_transform_weight(const RcfTransform *transform, int i);

/* Records learned so far. */
extern uint64_t rcf_transform_count(const RcfTransform *transform);

/* out[dims] = the transformed input; the transform is unchanged. */
extern void rcf_transform_apply(const RcfTransform *transform,
								const double *input, double *out);

/* The statistics (and the previous record) learn input. */
extern void rcf_transform_learn(RcfTransform *transform, const double *input);

/*
 * out[dims] = values (transformed units) in the caller's units, for the
 * record input (raw; used for features the forest does not see and while
 * nothing is learned).  out may be values.
 */
extern void rcf_transform_invert(const RcfTransform *transform,
								 const double *values, const double *input,
								 double *out);

/* The last record learned, in the caller's units; -1 if none (or none). */
extern int	rcf_transform_last_input(const RcfTransform *transform,
									 double *record);

/*
 * rcf_impute in the caller's units: transforms input (values flagged
 * missing are ignored), imputes on the forest and inverts.  transform may
 * be NULL.  Returns 0, or -1 if the forest has learned nothing yet.
 */
extern int	rcf_transform_impute(const RcfTransform *transform,
								 RcfForest *forest, const double *input,
								 const bool *missing, double *expected);

/*
 * Encoded form (the optional model section RCF_SECTION_TRANSFORM of
 * grade.h).  Decoding checks every field against dims (the forest's) and
 * the statistics' possible ranges; NULL and *detail when malformed.
 */
extern size_t rcf_transform_encoded_size(const RcfTransform *transform);
extern void rcf_transform_encode(const RcfTransform *transform, uint8_t *buf);
extern RcfTransform *rcf_transform_decode(const uint8_t *buf, size_t len,
										  int dims,
										  const RcfAllocator *allocator,
										  const char **detail);

#endif							/* RCF_H */
