/*
 * grading.c
 *	  What detect() and rcf_detect() share: grader parameters from SQL
 *	  arguments, the missing-value policies, and the anomaly.detection row.
 */
#include "postgres.h"

#include <math.h>

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

#include "anomaly.h"

/* Reads a float8 argument that must not be NULL. */
static double
float_arg(const NullableDatum *arg, const char *name)
{
	if (arg->isnull)
		anomaly_null_param(name);
	return DatumGetFloat8(arg->value);
}

/* A grader parameter's range, as SQL checks it (with its messages). */
typedef struct GraderRange
{
	const char *name;
	double		value;
	double		min;			/* the value must be above min when min_open, */
	bool		min_open;		/* else at least min */
	double		max;			/* and at most max */
	const char *range;			/* the range in words */
	bool		is_int;			/* said as an integer */
	const char *hint;
} GraderRange;

/* Raises an error for the first parameter out of its range. */
static void
check_ranges(const RcfGraderParams *params)
{
	/* in the order they are checked */
	const GraderRange ranges[] = {
		{"z_factor", params->z_factor, 0, true, 100, "above 0 and at most 100"},
		{"score_floor", params->score_floor, 0, false, 1e6, "between 0 and 1000000"},
		{"suppress", params->suppress, 0, false, 1000000, "between 0 and 1000000", true},
		{"score_horizon", params->horizon, 2, false, 1e9, "between 2 and 1000000000"},
		{"cusum_drift", params->cusum_drift, 0, false, 100, "between 0 and 100"},
		{"cusum_threshold", params->cusum_threshold, 0, false, 1e6,
		"between 0 and 1000000", false, "0 turns the CUSUM off."},
	};

	for (int i = 0; i < lengthof(ranges); i++)
	{
		const GraderRange *r = &ranges[i];

		if (r->min_open ? r->value > r->min && r->value <= r->max :
			r->value >= r->min && r->value <= r->max)
			continue;
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be %s", r->name, r->range),
				 r->is_int ? errdetail("%s is %.0f.", r->name, r->value) :
				 errdetail("%s is %g.", r->name, r->value),
				 r->hint ? errhint("%s", r->hint) : 0));
	}
}

/*
 * Grader parameters from SQL arguments in this order: z_factor,
 * score_floor, ignore_near_expected_above, ignore_near_expected_below,
 * ignore_near_expected_above_ratio, ignore_near_expected_below_ratio,
 * suppress, score_horizon, cusum_drift, cusum_threshold
 * (ANOMALY_GRADER_ARGS of them).
 */
void
anomaly_grader_params(RcfGraderParams *params, const NullableDatum *args)
{
	const char *err;

	rcf_grader_params_default(params);
	params->z_factor = float_arg(&args[0], "z_factor");
	params->score_floor = float_arg(&args[1], "score_floor");
	params->ignore_above = float_arg(&args[2], "ignore_near_expected_above");
	params->ignore_below = float_arg(&args[3], "ignore_near_expected_below");
	params->ignore_above_ratio = float_arg(&args[4], "ignore_near_expected_above_ratio");
	params->ignore_below_ratio = float_arg(&args[5], "ignore_near_expected_below_ratio");
	if (args[6].isnull)
		anomaly_null_param("suppress");
	params->suppress = DatumGetInt32(args[6].value);
	params->horizon = float_arg(&args[7], "score_horizon");
	params->cusum_drift = float_arg(&args[8], "cusum_drift");
	params->cusum_threshold = float_arg(&args[9], "cusum_threshold");

	check_ranges(params);
	err = rcf_grader_params_check(params);
	if (err)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s", err)));
}

/* Parses the missing argument. */
AnomalyMissing
anomaly_missing_policy(const NullableDatum *arg)
{
	char	   *s;

	if (arg->isnull)
		anomaly_null_param("missing");
	s = text_to_cstring(DatumGetTextPP(arg->value));
	if (strcmp(s, "skip") == 0)
		return ANOMALY_MISSING_SKIP;
	if (strcmp(s, "previous") == 0)
		return ANOMALY_MISSING_PREVIOUS;
	if (strcmp(s, "zero") == 0)
		return ANOMALY_MISSING_ZERO;
	if (strcmp(s, "impute") == 0)
		return ANOMALY_MISSING_IMPUTE;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("missing must be 'skip', 'previous', 'zero' or 'impute'"),
			 errdetail("missing is \"%s\".", s)));
	return ANOMALY_MISSING_SKIP;
}

/*
 * Fills the NULL values of a point as the policy says.  Returns false when
 * the point is to be skipped: NULL result, not learned.  'previous' and
 * 'impute' skip until the forest has learned something to go by.
 */
bool
anomaly_fill_missing(AnomalyMissing policy, RcfForest *forest,
					 const RcfTransform *transform,
					 AnomalyPoint *point, bool *mask, double *scratch)
{
	int			dims = point->dims;

	if (!point->has_null)
		return true;
	switch (policy)
	{
		case ANOMALY_MISSING_SKIP:
			return false;
		case ANOMALY_MISSING_ZERO:
			break;
		case ANOMALY_MISSING_PREVIOUS:
			/* In the caller's units: the transform's last input, if any. */
			if (transform ? rcf_transform_last_input(transform, scratch) != 0 :
				rcf_last_record(forest, scratch) != 0)
				return false;
			for (int i = 0; i < dims; i++)
				if (point->nulls[i])
					point->values[i] = scratch[i];
			break;
		case ANOMALY_MISSING_IMPUTE:
			for (int i = 0; i < dims; i++)
				mask[i] = point->nulls[i];
			if (rcf_transform_impute(transform, forest, point->values, mask,
									 scratch) != 0)
				return false;
			for (int i = 0; i < dims; i++)
				if (point->nulls[i])
					point->values[i] = scratch[i];
			break;
	}
	point->has_null = false;
	return true;
}

/* Builds an anomaly.detection row. */
Datum
anomaly_detection_datum(FunctionCallInfo fcinfo, const RcfGrade *grade,
						const double *expected, int dims, Jsonb *explanation)
{
	TupleDesc	desc;
	Datum		values[7];
	bool		nulls[7] = {false, false, false, false, false, false, false};

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "detect must return a composite type");
	desc = BlessTupleDesc(desc);
	values[0] = Float8GetDatum(grade->score);
	values[1] = Float8GetDatum(grade->grade);
	values[2] = BoolGetDatum(grade->is_anomaly);
	values[3] = Float8GetDatum(grade->threshold);
	if (grade->has_expected && expected)
	{
		Datum	   *elems = palloc(sizeof(Datum) * dims);

		for (int i = 0; i < dims; i++)
			elems[i] = Float8GetDatum(expected[i]);
		values[4] = PointerGetDatum(construct_array(elems, dims, FLOAT8OID, 8,
													FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	}
	else
		nulls[4] = true;
	if (explanation)
		values[5] = PointerGetDatum(explanation);
	else
		nulls[5] = true;
	values[6] = Float8GetDatum(grade->confidence);
	return HeapTupleGetDatum(heap_form_tuple(desc, values, nulls));
}
