/*
 * anomaly.h
 *	  Declarations shared by the SQL-facing files of the extension.
 */
#ifndef ANOMALY_H
#define ANOMALY_H

#include "postgres.h"

#include "access/htup.h"
#include "fmgr.h"
#include "nodes/pg_list.h"
#include "utils/array.h"
#include "utils/jsonb.h"

#include "rcf/rcf.h"
#include "rcf/grade.h"

/*
 * A point read from SQL: values as double, how many, and whether any was
 * NULL (such a point is skipped: NULL score, not learned).
 */
typedef struct AnomalyPoint
{
	int			dims;
	bool		has_null;
	double	   *values;			/* dims entries, palloc'd once and reused */
	bool	   *nulls;			/* which values were NULL (then 0 in values) */
	int			capacity;
	/* row form: the columns used, worked out on the first row */
	Oid			rowtype;		/* InvalidOid until then */
	int			row_natts;
	bool	   *row_use;		/* row_natts entries */
	int			row_dims;		/* how many are used */
	int			row_skipped;	/* numeric columns left out as counters */
} AnomalyPoint;

/* What detect() does with a point that has NULL values. */
typedef enum AnomalyMissing
{
	ANOMALY_MISSING_SKIP,		/* NULL result, not learned */
	ANOMALY_MISSING_PREVIOUS,	/* the previous record's values */
	ANOMALY_MISSING_ZERO,
	ANOMALY_MISSING_IMPUTE		/* what the forest expects, given the rest */
} AnomalyMissing;

/* params.c */
extern int	anomaly_max_forest_memory;	/* kB */

/*
 * Progress NOTICEs of long runs (progress_notice.c): every
 * anomaly.progress_interval seconds (0: never, the default), checked every
 * 1024 rows.
 */
extern int	anomaly_progress_interval;

typedef struct AnomalyProgress
{
	const char *what;			/* "random_cut_forest", ... */
	const char *done;			/* "scored", "learned" */
	int64		rows;
	int64		started;		/* TimestampTz */
	int64		next;
} AnomalyProgress;

extern void anomaly_progress_start(AnomalyProgress *p, const char *what,
								   const char *done);
extern void anomaly_progress_report(AnomalyProgress *p);

/* One more row; a NOTICE when the interval has passed. */
static inline void
anomaly_progress_tick(AnomalyProgress *p)
{
	if (++p->rows % 1024 == 0 && anomaly_progress_interval > 0)
		anomaly_progress_report(p);
}
extern void anomaly_check_forest_memory(const RcfParams *params);
extern void anomaly_check_model_memory(const uint8_t *bytes, size_t len,
									   double box_cache_fraction);
extern void anomaly_check_box_cache_fraction(const char *name, double fraction);
extern void anomaly_forest_params(RcfParams *params, int dims,
								  Datum number_of_trees, bool trees_null,
								  Datum sub_sample_size, bool samples_null,
								  Datum time_decay, bool decay_null,
								  Datum shingle_size, bool shingle_null,
								  Datum seed, bool seed_null,
								  double box_cache_fraction);
extern RcfForest *anomaly_forest_create(const RcfParams *params,
										MemoryContext context);
extern void anomaly_null_param(const char *name) pg_attribute_noreturn();
extern void *anomaly_context_alloc(void *ctx, size_t size);
extern void *anomaly_context_alloc_no_oom(void *ctx, size_t size);
extern void *anomaly_context_alloc_zero_no_oom(void *ctx, size_t size);
extern void anomaly_context_free(void *ctx, void *ptr);

/* point.c */
extern void anomaly_point_from_array(AnomalyPoint *point, ArrayType *array,
									 MemoryContext context);
extern void anomaly_point_from_record(AnomalyPoint *point, HeapTupleHeader rec,
									  MemoryContext context, List **names);
extern void anomaly_point_check_dims(const AnomalyPoint *point, int expected);

/* model.c */
extern bytea *anomaly_encode_model(const RcfForest *forest, const RcfGrader *grader,
								   const RcfTransform *transform);

/* window.c */
struct WindowObjectData;
extern void anomaly_window_check(FunctionCallInfo fcinfo,
								 struct WindowObjectData *winobj,
								 const char *order_detail,
								 const char *frame_detail);
extern void anomaly_window_require(struct WindowObjectData *winobj);

/* attribution.c */
extern Jsonb *anomaly_explanation(const RcfForest *forest, const double *high,
								  const double *low, int dims,
								  bool with_directionality,
								  List *names);
extern List *anomaly_feature_names(ArrayType *names, int dims);

/* grading.c */
#define ANOMALY_GRADER_ARGS 10
extern void anomaly_grader_params(RcfGraderParams *params,
								  const NullableDatum *args);
extern AnomalyMissing anomaly_missing_policy(const NullableDatum *arg);
extern bool anomaly_fill_missing(AnomalyMissing policy, RcfForest *forest,
								 const RcfTransform *transform,
								 AnomalyPoint *point, bool *mask,
								 double *scratch);
extern Datum anomaly_detection_datum(FunctionCallInfo fcinfo,
									 const RcfGrade *grade,
									 const double *expected, int dims,
									 Jsonb *explanation);

/* transform_params.c */

/*
 * detect()'s, detectors' and rcf_train's transform_decay when it is not
 * given (SQL NULL means 1 / sub_sample_size): chosen by the validation
 * protocol (bench/README.md, issue 13).  Keep equal to detect()'s DEFAULT.
 */
#define ANOMALY_TRANSFORM_DEFAULT_DECAY 0.0001

typedef struct AnomalyTransformSpec
{
	RcfTransformParams params;
	double	   *weights;		/* NULL: all 1 */
} AnomalyTransformSpec;

extern RcfTransformMethod anomaly_transform_method(const char *name);
extern void anomaly_transform_spec(AnomalyTransformSpec *spec,
								   const char *method, bool decay_null,
								   double decay, ArrayType *weights,
								   int dims, int sample_size);
extern RcfTransform *anomaly_transform_create(const AnomalyTransformSpec *spec,
											  MemoryContext context);

#endif							/* ANOMALY_H */
