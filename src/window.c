/*
 * window.c
 *	  KDA's RANDOM_CUT_FOREST and RANDOM_CUT_FOREST_WITH_EXPLANATION as
 *	  window functions.
 *
 * One forest per window partition.  Rows arrive in the window's ORDER BY
 * order and each gets the score its point had before the forest learned it,
 * which is what KDA emitted for a record.  The frame is ignored: every row
 * is read once, as the current row, so a partition of any length takes one
 * pass and the forest's fixed memory.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "nodes/execnodes.h"
#include "nodes/parsenodes.h"
#include "nodes/plannodes.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "windowapi.h"

#include "anomaly.h"
#include "compat.h"

PG_FUNCTION_INFO_V1(rcf_window_score);
PG_FUNCTION_INFO_V1(rcf_window_explain);
PG_FUNCTION_INFO_V1(rcf_window_detect);

/* What a window function returns for each row. */
typedef enum WindowKind
{
	WINDOW_SCORE,
	WINDOW_EXPLAIN,
	WINDOW_DETECT
} WindowKind;

/* Per partition, in partition-local memory (zeroed when a partition starts). */
typedef struct PartitionState
{
	bool		started;
	bool		forest_ready;
	bool		is_record;
	bool		with_directionality;
	int			dims;
	RcfForest  *forest;
	RcfTransform *transform;	/* NULL: none */
	double	   *transformed;	/* the forest's view of the point */
	List	   *names;
	double	   *high;
	double	   *low;
	AnomalyPoint point;
	/* detect() only */
	RcfGrader  *grader;
	AnomalyMissing missing;
	double	   *expected;
	double	   *scratch;
	bool	   *mask;
} PartitionState;

/*
 * Per call site: the memory context holding the current partition's forest.
 * It is reset when the next partition starts, so a query over many
 * partitions holds one forest at a time.
 */
typedef struct CallSite
{
	MemoryContext forest_context;
	AnomalyProgress progress;	/* rows of every partition */
} CallSite;

/* Argument positions of the two functions. */
typedef struct ArgLayout
{
	int			trees;
	int			samples;
	int			decay;
	int			shingle;
	int			seed;
	int			directionality; /* -1 if absent */
	int			names;			/* -1 if absent */
	int			grader;			/* first grader argument, -1 if absent */
	int			grader_more;	/* the grader's last two arguments */
	int			missing;		/* -1 if absent */
	int			transform;		/* transform, then transform_decay and
								 * transform_weights */
} ArgLayout;

static const ArgLayout score_args = {1, 2, 3, 4, 5, -1, -1, -1, -1, -1, 6};
static const ArgLayout explain_args = {1, 2, 3, 4, 6, 5, 7, -1, -1, -1, 8};
static const ArgLayout detect_args = {1, 2, 3, 4, 5, -1, 15, 6, 16, 14, 18};

/*
 * Grader arguments of detect(): z_factor .. score_horizon from the first,
 * cusum_drift and cusum_threshold (added after feature_names) from the
 * second.
 */
#define DETECT_GRADER_ARGS 8

/* Reads argument argno of the current row. */
static Datum
current_arg(WindowObject winobj, int argno, bool *isnull)
{
	return WinGetFuncArgCurrent(winobj, argno, isnull);
}

/*
 * True for a frame that says what the functions do anyway: every earlier
 * row of the partition up to the current one, with nothing excluded --
 * PostgreSQL's default, or RANGE/ROWS BETWEEN UNBOUNDED PRECEDING AND
 * CURRENT ROW written out.
 */
static bool
frame_is_cumulative(int options)
{
	int			bounds = options & ~(FRAMEOPTION_NONDEFAULT | FRAMEOPTION_BETWEEN |
									 FRAMEOPTION_RANGE | FRAMEOPTION_ROWS);

	if (!(options & FRAMEOPTION_NONDEFAULT))
		return true;
	if (!(options & (FRAMEOPTION_RANGE | FRAMEOPTION_ROWS)))
		return false;
	return bounds == (FRAMEOPTION_START_UNBOUNDED_PRECEDING |
					  FRAMEOPTION_END_CURRENT_ROW);
}

/*
 * Checks the window once per call site: the functions learn rows in the
 * window's order, so a window without ORDER BY (learning in whatever order
 * the plan yields rows) is refused; any other frame than "every earlier row"
 * is accepted but has no effect, which a NOTICE says.  (PostgreSQL 16 and
 * later drop ORDER BY keys known to be constant, which order nothing.)
 * order_detail and frame_detail say what the calling function does with
 * the rows.  Shared with hotspots() (window_hotspots.c).
 */
void
anomaly_window_check(FunctionCallInfo fcinfo, WindowObject winobj,
					 const char *order_detail, const char *frame_detail)
{
	WindowAggState *winstate = compat_window_state(winobj);
	WindowAgg  *plan = (WindowAgg *) winstate->ss.ps.plan;
	const char *name = get_func_name(fcinfo->flinfo->fn_oid);

	if (plan->ordNumCols == 0)
		ereport(ERROR,
				(errcode(ERRCODE_WINDOWING_ERROR),
				 errmsg("%s needs a window with ORDER BY", name),
				 errdetail_internal("%s", order_detail),
				 errhint("Order the rows in time, for example %s(...) OVER (ORDER BY ts) or OVER (PARTITION BY key ORDER BY ts).",
						 name)));
	if (!frame_is_cumulative(winstate->frameOptions))
		ereport(NOTICE,
				(errmsg("the window frame is ignored by %s", name),
				 errdetail_internal("%s", frame_detail)));
}

/*
 * Refuses a call that does not come from a WindowAgg node: only such a
 * node passes a window object, and a superuser declaring the symbol again
 * as a plain function (or an aggregate's) must get an error, not a crash.
 */
void
anomaly_window_require(WindowObject winobj)
{
	if (!compat_window_object_ok(winobj))
		elog(ERROR, "anomaly's window functions must be called as window functions");
}

/* Starts a partition: frees the previous forest's memory. */
static void
start_partition(FunctionCallInfo fcinfo, WindowObject winobj,
				PartitionState *state)
{
	CallSite   *site = (CallSite *) fcinfo->flinfo->fn_extra;

	if (site == NULL)
	{
		anomaly_window_check(fcinfo, winobj,
							 _("The forest learns the rows in the window's order; without ORDER BY that order is arbitrary."),
							 _("Each row is scored by a forest that has learned every earlier row of its partition, whatever the frame says."));
		site = MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, sizeof(CallSite));
		site->forest_context = AllocSetContextCreate(fcinfo->flinfo->fn_mcxt,
													 "anomaly window forest",
													 ALLOCSET_DEFAULT_SIZES);
		fcinfo->flinfo->fn_extra = site;
		anomaly_progress_start(&site->progress,
							   MemoryContextStrdup(fcinfo->flinfo->fn_mcxt,
												   get_func_name(fcinfo->flinfo->fn_oid)),
							   "scored");
	}
	else
		MemoryContextReset(site->forest_context);

	state->started = true;
	state->is_record = type_is_rowtype(get_fn_expr_argtype(fcinfo->flinfo, 0));
}

/*
 * Creates the partition's forest from the parameters on the first row that
 * has a point; the number of values of that point fixes the dimensions.
 */
static void
create_forest(FunctionCallInfo fcinfo, WindowObject winobj,
			  PartitionState *state, const ArgLayout *layout)
{
	CallSite   *site = (CallSite *) fcinfo->flinfo->fn_extra;
	RcfParams	params;
	bool		n1,
				n2,
				n3,
				n4,
				n5;
	Datum		trees = current_arg(winobj, layout->trees, &n1);
	Datum		samples = current_arg(winobj, layout->samples, &n2);
	Datum		decay = current_arg(winobj, layout->decay, &n3);
	Datum		shingle = current_arg(winobj, layout->shingle, &n4);
	Datum		seed = current_arg(winobj, layout->seed, &n5);
	MemoryContext old;

	anomaly_forest_params(&params, state->point.dims, trees, n1, samples, n2,
						  decay, n3, shingle, n4, seed, n5, 1.0);
	state->forest = anomaly_forest_create(&params, site->forest_context);
	state->dims = state->point.dims;
	{
		AnomalyTransformSpec spec;
		bool		mnull,
					dnull,
					wnull;
		Datum		method = current_arg(winobj, layout->transform, &mnull);
		Datum		tdecay = current_arg(winobj, layout->transform + 1, &dnull);
		Datum		weights = current_arg(winobj, layout->transform + 2, &wnull);

		if (mnull)
			anomaly_null_param("transform");
		anomaly_transform_spec(&spec, TextDatumGetCString(method),
							   dnull, dnull ? 0.0 : DatumGetFloat8(tdecay),
							   wnull ? NULL : DatumGetArrayTypeP(weights),
							   state->dims, params.sample_size);
		state->transform = anomaly_transform_create(&spec, site->forest_context);
		state->transformed = MemoryContextAlloc(site->forest_context,
												sizeof(double) * state->dims);
	}

	if (layout->grader >= 0)
	{
		NullableDatum args[ANOMALY_GRADER_ARGS];
		RcfGraderParams gp;
		RcfAllocator allocator;
		size_t		n = sizeof(double) * state->dims;

		for (int i = 0; i < ANOMALY_GRADER_ARGS; i++)
		{
			int			argno = i < DETECT_GRADER_ARGS ? layout->grader + i :
				layout->grader_more + i - DETECT_GRADER_ARGS;

			args[i].value = current_arg(winobj, argno, &args[i].isnull);
		}
		anomaly_grader_params(&gp, args);
		args[0].value = current_arg(winobj, layout->missing, &args[0].isnull);
		state->missing = anomaly_missing_policy(&args[0]);
		allocator.alloc = anomaly_context_alloc;
		allocator.free = anomaly_context_free;
		allocator.ctx = site->forest_context;
		state->grader = rcf_grader_create(&gp, &params, &allocator);
		if (state->grader == NULL)
			elog(ERROR, "could not create a grader with valid parameters");
		state->expected = MemoryContextAlloc(site->forest_context, n);
		state->scratch = MemoryContextAlloc(site->forest_context, n);
		state->mask = MemoryContextAlloc(site->forest_context, sizeof(bool) * state->dims);
		state->with_directionality = true;
	}
	if (layout->names >= 0)
	{
		bool		isnull;
		Datum		d;

		if (layout->directionality >= 0)
		{
			d = current_arg(winobj, layout->directionality, &isnull);
			if (isnull)
				ereport(ERROR,
						(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						 errmsg("with_directionality must not be null")));
			state->with_directionality = DatumGetBool(d);
		}

		d = current_arg(winobj, layout->names, &isnull);
		if (!isnull)
		{
			old = MemoryContextSwitchTo(site->forest_context);
			state->names = anomaly_feature_names(DatumGetArrayTypeP(d),
												 state->dims);
			MemoryContextSwitchTo(old);
		}
		state->high = MemoryContextAlloc(site->forest_context,
										 sizeof(double) * state->dims * params.shingle_size);
		state->low = MemoryContextAlloc(site->forest_context,
										sizeof(double) * state->dims * params.shingle_size);
	}
	state->forest_ready = true;
}

/*
 * Reads the current row's point.  Returns false for a NULL point or one
 * with a NULL value: such a row gets NULL and is not learned.
 */
static bool
read_point(FunctionCallInfo fcinfo, WindowObject winobj, PartitionState *state,
		   bool want_names)
{
	CallSite   *site = (CallSite *) fcinfo->flinfo->fn_extra;
	bool		isnull;
	Datum		d = current_arg(winobj, 0, &isnull);

	if (isnull)
		return false;
	if (state->is_record)
		anomaly_point_from_record(&state->point, DatumGetHeapTupleHeader(d),
								  site->forest_context,
								  want_names && state->names == NIL ? &state->names : NULL);
	else
		anomaly_point_from_array(&state->point, DatumGetArrayTypeP(d),
								 site->forest_context);
	return true;
}

/*
 * The current point as the forest sees it: transformed (with the
 * statistics of the rows before it), or the point itself.
 */
static const double *
forest_view(PartitionState *state)
{
	if (state->transform == NULL)
		return state->point.values;
	rcf_transform_apply(state->transform, state->point.values,
						state->transformed);
	return state->transformed;
}

/*
 * detect(): grades the current row's point, explains it if it fires, then
 * learns it.  NULL values are handled by the missing policy.
 */
static Datum
detect_row(FunctionCallInfo fcinfo, PartitionState *state)
{
	RcfGrade	grade;
	Jsonb	   *explanation = NULL;
	Datum		result;

	if (!anomaly_fill_missing(state->missing, state->forest, state->transform,
							  &state->point, state->mask, state->scratch))
		PG_RETURN_NULL();
	rcf_grader_assess_tf(state->grader, state->forest, state->transform,
						 state->point.values, &grade, state->expected);
	if (grade.is_anomaly)
	{
		rcf_attribution(state->forest, forest_view(state), state->high,
						state->low);
		explanation = anomaly_explanation(state->forest, state->high,
										  state->low, state->dims, true,
										  state->names);
	}
	result = anomaly_detection_datum(fcinfo, &grade, state->expected,
									 state->dims, explanation);
	rcf_grader_learn_tf(state->grader, state->forest, state->transform,
						state->point.values, &grade);
	return result;
}

/* The shared body of the window functions. */
static Datum
window_common(FunctionCallInfo fcinfo, const ArgLayout *layout, WindowKind kind)
{
	bool		explain = kind != WINDOW_SCORE;
	WindowObject winobj = PG_WINDOW_OBJECT();
	PartitionState *state;
	bool		have_point;
	Datum		result;
	const double *x;

	anomaly_window_require(winobj);
	state = (PartitionState *) WinGetPartitionLocalMemory(winobj,
														  sizeof(PartitionState));
	if (!state->started)
		start_partition(fcinfo, winobj, state);

	/* Rows already read are never needed again. */
	WinSetMarkPosition(winobj, WinGetCurrentPosition(winobj));
	anomaly_progress_tick(&((CallSite *) fcinfo->flinfo->fn_extra)->progress);

	have_point = read_point(fcinfo, winobj, state, explain);
	if (!have_point)
		PG_RETURN_NULL();
	if (!state->forest_ready)
	{
		/* Explicit feature_names take precedence over column names. */
		if (explain && state->is_record && layout->names >= 0)
		{
			bool		isnull;

			(void) current_arg(winobj, layout->names, &isnull);
			if (!isnull)
				state->names = NIL;
		}
		create_forest(fcinfo, winobj, state, layout);
	}
	anomaly_point_check_dims(&state->point, state->dims);
	if (kind == WINDOW_DETECT)
		return detect_row(fcinfo, state);
	if (state->point.has_null)
		PG_RETURN_NULL();

	x = forest_view(state);
	if (explain)
	{
		rcf_attribution(state->forest, x, state->high, state->low);
		result = PointerGetDatum(anomaly_explanation(state->forest, state->high,
													 state->low, state->dims,
													 state->with_directionality,
													 state->names));
	}
	else
		result = Float8GetDatum(rcf_score(state->forest, x));

	if (rcf_update(state->forest, x) != 0)
		elog(ERROR, "could not grow the record store of a forest");	/* palloc raises first */
	if (state->transform)
		rcf_transform_learn(state->transform, state->point.values);
	return result;
}

/*
 * random_cut_forest(point, number_of_trees, sub_sample_size, time_decay,
 *					 shingle_size, seed) OVER (...): the anomaly score.
 */
Datum
rcf_window_score(PG_FUNCTION_ARGS)
{
	return window_common(fcinfo, &score_args, WINDOW_SCORE);
}

/*
 * random_cut_forest_with_explanation(point, number_of_trees,
 *		sub_sample_size, time_decay, shingle_size, with_directionality, seed,
 *		feature_names) OVER (...): KDA's explanation as jsonb.
 */
Datum
rcf_window_explain(PG_FUNCTION_ARGS)
{
	return window_common(fcinfo, &explain_args, WINDOW_EXPLAIN);
}

/*
 * detect(point, forest parameters, grader parameters, missing,
 *		  feature_names) OVER (...): the graded anomaly.detection of each
 * row.
 */
Datum
rcf_window_detect(PG_FUNCTION_ARGS)
{
	return window_common(fcinfo, &detect_args, WINDOW_DETECT);
}
