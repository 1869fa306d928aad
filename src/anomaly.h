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

/*
 * A point read from SQL: values as double, how many, and whether any was
 * NULL (such a point is skipped: NULL score, not learned).
 */
typedef struct AnomalyPoint
{
	int			dims;
	bool		has_null;
	double	   *values;			/* dims entries, palloc'd once and reused */
	int			capacity;
} AnomalyPoint;

/* params.c */
extern void anomaly_forest_params(RcfParams *params, int dims,
								  Datum number_of_trees, bool trees_null,
								  Datum sub_sample_size, bool samples_null,
								  Datum time_decay, bool decay_null,
								  Datum shingle_size, bool shingle_null,
								  Datum seed, bool seed_null);
extern RcfForest *anomaly_forest_create(const RcfParams *params,
										MemoryContext context);

/* point.c */
extern void anomaly_point_from_array(AnomalyPoint *point, ArrayType *array,
									 MemoryContext context);
extern void anomaly_point_from_record(AnomalyPoint *point, HeapTupleHeader rec,
									  MemoryContext context, List **names);
extern void anomaly_point_check_dims(const AnomalyPoint *point, int expected);

/* explain.c */
extern Jsonb *anomaly_explanation(const RcfForest *forest, const double *high,
								  const double *low, int dims,
								  bool with_directionality,
								  List *names);
extern List *anomaly_feature_names(ArrayType *names, int dims);

#endif							/* ANOMALY_H */
