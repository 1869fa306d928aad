/*
 * grade.h
 *	  Graded anomalies: from the stream of raw forest scores to an anomaly
 *	  grade in [0, 1], a threshold, a yes/no, and the expected value of an
 *	  anomalous point; repeated alerts for one anomaly are suppressed.
 */
#ifndef RCF_GRADE_H
#define RCF_GRADE_H

#include "rcf.h"

typedef struct RcfGraderParams
{
	double		z_factor;		/* deviations above the mean that fire */
	double		score_floor;	/* raw scores at or below never fire */
	double		horizon;		/* points the score statistics remember */
	int			short_window;	/* raw scores averaged before comparing */
	int			suppress;		/* points after a firing that are muted; -1:
								 * the shingle size */
	int			warmup;			/* scores learned before grading starts */

	/*
	 * Sustained shifts: a CUSUM of the standardized scores, S = max(0, S + d
	 * - cusum_drift), fires when S exceeds cusum_threshold (both in score
	 * deviations; a cusum_threshold of 0 turns it off).
	 */
	double		cusum_drift;
	double		cusum_threshold;

	/*
	 * A firing is ignored when every value of the point lies this near its
	 * expected value: within an absolute amount, or a ratio of the expected
	 * value's magnitude, separately above and below.  0 turns a test off.
	 */
	double		ignore_above;
	double		ignore_below;
	double		ignore_above_ratio;
	double		ignore_below_ratio;
} RcfGraderParams;

typedef struct RcfGrade
{
	double		score;			/* raw anomaly score */
	double		grade;			/* 0 = normal .. 1 = certain anomaly */
	double		threshold;		/* raw score above which a point fires now */
	double		confidence;		/* how settled the statistics are, 0 .. 1 */
	double		deviation;		/* (average - mean) / deviation of scores */
	double		cusum;			/* the CUSUM after this score */
	bool		is_anomaly;
	bool		has_expected;	/* expected[] was filled in */
	bool		near_expected;	/* fired, but ignored as near the expected */
	bool		sustained;		/* fired by the CUSUM, not by the score alone */
} RcfGrade;

typedef struct RcfGrader RcfGrader;

extern void rcf_grader_params_default(RcfGraderParams *params);
extern const char *rcf_grader_params_check(const RcfGraderParams *params);
extern int	rcf_grader_set_option(RcfGraderParams *params, const char *name,
								  const char *value);
extern RcfGrader *rcf_grader_create(const RcfGraderParams *params,
									const RcfParams *forest_params,
									const RcfAllocator *allocator);
extern void rcf_grader_free(RcfGrader *grader);
extern const RcfGraderParams *rcf_grader_params(const RcfGrader *grader);
extern const char *rcf_grader_set_params(RcfGrader *grader,
										 const RcfGraderParams *params);

/*
 * Scores input on the forest and grades the score.  When the point fires,
 * fills expected[] (dims values; may be NULL) with what the forest expected
 * in its place.  With learn, the grader and then the forest learn the
 * point; without, neither changes (scoring against a stored model).
 */
extern void rcf_grader_process(RcfGrader *grader, RcfForest *forest,
							   const double *input, bool learn,
							   RcfGrade *out, double *expected);

/* The two halves of rcf_grader_process, for callers that work between. */
extern void rcf_grader_assess(const RcfGrader *grader, RcfForest *forest,
							  const double *input, RcfGrade *out,
							  double *expected);
extern void rcf_grader_learn(RcfGrader *grader, RcfForest *forest,
							 const double *input, const RcfGrade *grade);

/*
 * The same with a transform (rcf.h; NULL: none): input is in the caller's
 * units, the forest sees rcf_transform_apply(input), expected[] and the
 * ignore_near_expected test are in the caller's units, and learning ends
 * with rcf_transform_learn(input).  With a NULL transform or method none,
 * exactly the functions above.
 */
extern void rcf_grader_assess_tf(const RcfGrader *grader, RcfForest *forest,
								 const RcfTransform *transform,
								 const double *input, RcfGrade *out,
								 double *expected);
extern void rcf_grader_learn_tf(RcfGrader *grader, RcfForest *forest,
								RcfTransform *transform, const double *input,
								const RcfGrade *grade);
extern void rcf_grader_process_tf(RcfGrader *grader, RcfForest *forest,
								  RcfTransform *transform,
								  const double *input, bool learn,
								  RcfGrade *out, double *expected);

/*
 * Encoded form of the grader's parameters and state.  Models hold it as an
 * optional section of kind RCF_SECTION_GRADER (the current layout) or
 * RCF_SECTION_GRADER_V1 (before the CUSUM: still read, with it off).
 */
#define RCF_SECTION_GRADER_V1	1
#define RCF_SECTION_GRADER		2
#define RCF_SECTION_TRANSFORM	3	/* rcf_transform_encode's layout */

extern size_t rcf_grader_encoded_size(const RcfGrader *grader);
extern void rcf_grader_encode(const RcfGrader *grader, uint8_t *buf);
extern RcfGrader *rcf_grader_decode(int kind, const uint8_t *buf, size_t len,
									const RcfAllocator *allocator,
									const char **detail);

/* A forest and its grader together, as anomaly.rcf stores them. */
extern size_t rcf_model_encoded_size(const RcfForest *forest,
									 const RcfGrader *grader);
extern size_t rcf_model_encode(const RcfForest *forest,
							   const RcfGrader *grader,
							   uint8_t *buf, size_t size);
extern RcfForest *rcf_model_decode(const uint8_t *buf, size_t len,
								   const RcfAllocator *allocator,
								   RcfGrader **grader,
								   RcfDecodeStatus *status,
								   const char **detail);

/*
 * The same with a transform (NULL, or of method none: no section, so the
 * bytes are those of rcf_model_encode).  Decoding sets *transform to the
 * model's transform, or NULL when it has none (models stored before
 * transforms existed decode unchanged); transform may be NULL if the
 * caller wants none (a stored one is then freed).
 */
extern size_t rcf_model_encoded_size_tf(const RcfForest *forest,
										const RcfGrader *grader,
										const RcfTransform *transform);
extern size_t rcf_model_encode_tf(const RcfForest *forest,
								  const RcfGrader *grader,
								  const RcfTransform *transform,
								  uint8_t *buf, size_t size);
/*
 * Encodes in one pass into buf, which has room for cap bytes, and returns
 * the size of the encoding: when that is more than cap, buf holds nothing
 * usable and the caller tries again with that much room.  Returns 0 if the
 * forest is too inconsistent to encode or temporary memory ran out.  For
 * callers that keep one buffer for many models, instead of measuring each
 * (rcf_model_encoded_size_tf) before writing it.
 */
extern size_t rcf_model_encode_into(const RcfForest *forest,
									const RcfGrader *grader,
									const RcfTransform *transform,
									uint8_t *buf, size_t cap);
extern RcfForest *rcf_model_decode_tf(const uint8_t *buf, size_t len,
									  const RcfAllocator *allocator,
									  RcfGrader **grader,
									  RcfTransform **transform,
									  RcfDecodeStatus *status,
									  const char **detail);

/*
 * The same, with the forest's bounding_box_cache_fraction (0 .. 1) chosen
 * by the caller instead of the one stored, or RCF_BOX_CACHE_STORED to keep
 * that: the memory a forest takes is the user of the forest's to choose (a
 * detector's option, rcf_set_box_cache), and it changes no score.  The
 * forest then encodes with the fraction chosen.
 */
#define RCF_BOX_CACHE_STORED	(-1.0)
extern RcfForest *rcf_model_decode_boxes(const uint8_t *buf, size_t len,
										 const RcfAllocator *allocator,
										 RcfGrader **grader,
										 RcfTransform **transform,
										 double box_cache_fraction,
										 RcfDecodeStatus *status,
										 const char **detail);

#endif							/* RCF_GRADE_H */
