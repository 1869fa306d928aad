/*
 * window_hotspots.c
 *	  KDA's HOTSPOTS as a window function: hotspots(point, window_size,
 *	  scan_radius, minimum_number_of_points_in_a_hotspot) OVER (...).
 *
 * One detector per window partition (src/hotspots/), fed in the window's
 * ORDER BY order.  Each row gets the hotspots of the last window_size points
 * of its partition, itself included, as KDA's HOTSPOTS_RESULT:
 * {"hotspots": [{"density": ..., "minValues": [...], "maxValues": [...]}]}.
 * As with the forest functions, the frame is ignored and every row is read
 * once, as the current row.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "windowapi.h"

#include "anomaly.h"
#include "hotspots/hotspots.h"

PG_FUNCTION_INFO_V1(hotspots_window);

/* Per partition, in partition-local memory (zeroed when a partition starts). */
typedef struct HotspotsPartition
{
	bool		started;
	bool		is_record;
	HotspotsDetector *detector; /* NULL until the first row with a point */
	int			dims;
	AnomalyPoint point;
} HotspotsPartition;

/* Per call site: the memory of the current partition's detector. */
typedef struct HotspotsSite
{
	MemoryContext context;
} HotspotsSite;

/* Starts a partition: checks the window once, frees the last detector. */
static void
start_partition(FunctionCallInfo fcinfo, WindowObject winobj,
				HotspotsPartition *state)
{
	HotspotsSite *site = (HotspotsSite *) fcinfo->flinfo->fn_extra;

	if (site == NULL)
	{
		anomaly_window_check(fcinfo, winobj,
							 _("The sliding window holds the last rows in the window's order; without ORDER BY that order is arbitrary."),
							 _("Each row gets the hotspots of the last window_size rows of its partition, whatever the frame says."));
		site = MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, sizeof(HotspotsSite));
		site->context = AllocSetContextCreate(fcinfo->flinfo->fn_mcxt,
											  "anomaly hotspots",
											  ALLOCSET_DEFAULT_SIZES);
		fcinfo->flinfo->fn_extra = site;
	}
	else
		MemoryContextReset(site->context);

	state->started = true;
	state->is_record = type_is_rowtype(get_fn_expr_argtype(fcinfo->flinfo, 0));
}

/* Reads a parameter that must not be NULL (KDA's have no defaults). */
static Datum
required_arg(WindowObject winobj, int argno, const char *name)
{
	bool		isnull;
	Datum		d = WinGetFuncArgCurrent(winobj, argno, &isnull);

	if (isnull)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", name)));
	return d;
}

/*
 * Creates the partition's detector from the parameters of its first row
 * with a point; that point's number of values fixes the dimensions.
 */
static void
create_detector(FunctionCallInfo fcinfo, WindowObject winobj,
				HotspotsPartition *state)
{
	HotspotsSite *site = (HotspotsSite *) fcinfo->flinfo->fn_extra;
	HotspotsParams params;
	HotspotsAllocator allocator = {anomaly_context_alloc, anomaly_context_free,
	site->context};
	const char *err;

	params.dims = state->point.dims;
	params.window_size = DatumGetInt32(required_arg(winobj, 1, "window_size"));
	params.scan_radius = DatumGetFloat8(required_arg(winobj, 2, "scan_radius"));
	params.min_points = DatumGetInt32(required_arg(winobj, 3,
												   "minimum_number_of_points_in_a_hotspot"));
	if ((err = hotspots_params_check(&params)) != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s", err),
				 errdetail("window_size is %d, scan_radius %g, minimum_number_of_points_in_a_hotspot %d, and the point has %d values.",
						   params.window_size, params.scan_radius,
						   params.min_points, params.dims)));
	state->detector = hotspots_create(&params, &allocator);
	if (state->detector == NULL)
		elog(ERROR, "could not create a hotspots detector with valid parameters");
	state->dims = params.dims;
}

/* Appends a JSON array of dims float8 values, as numbers. */
static void
push_values(JsonbParseState **ps, const double *values, int dims)
{
	pushJsonbValue(ps, WJB_BEGIN_ARRAY, NULL);
	for (int i = 0; i < dims; i++)
	{
		JsonbValue	v;

		v.type = jbvNumeric;
		v.val.numeric = DatumGetNumeric(DirectFunctionCall1(float8_numeric,
															Float8GetDatum(values[i])));
		pushJsonbValue(ps, WJB_ELEM, &v);
	}
	pushJsonbValue(ps, WJB_END_ARRAY, NULL);
}

/* Appends an object key. */
static void
push_key(JsonbParseState **ps, const char *key)
{
	JsonbValue	k;

	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	pushJsonbValue(ps, WJB_KEY, &k);
}

/* KDA's HOTSPOTS_RESULT for the detector's current hotspots. */
static Jsonb *
hotspots_result(const HotspotsDetector *detector, int n, int dims)
{
	JsonbParseState *ps = NULL;
	JsonbValue *result;

	pushJsonbValue(&ps, WJB_BEGIN_OBJECT, NULL);
	push_key(&ps, "hotspots");
	pushJsonbValue(&ps, WJB_BEGIN_ARRAY, NULL);
	for (int i = 0; i < n; i++)
	{
		const HotspotsRegion *r = hotspots_region(detector, i);
		JsonbValue	v;

		pushJsonbValue(&ps, WJB_BEGIN_OBJECT, NULL);
		push_key(&ps, "density");
		v.type = jbvNumeric;
		v.val.numeric = DatumGetNumeric(DirectFunctionCall1(float8_numeric,
															Float8GetDatum(r->density)));
		pushJsonbValue(&ps, WJB_VALUE, &v);
		push_key(&ps, "minValues");
		push_values(&ps, r->min, dims);
		push_key(&ps, "maxValues");
		push_values(&ps, r->max, dims);
		pushJsonbValue(&ps, WJB_END_OBJECT, NULL);
	}
	pushJsonbValue(&ps, WJB_END_ARRAY, NULL);
	result = pushJsonbValue(&ps, WJB_END_OBJECT, NULL);
	return JsonbValueToJsonb(result);
}

/*
 * hotspots(point, window_size, scan_radius,
 *			minimum_number_of_points_in_a_hotspot) OVER (...): KDA's
 * HOTSPOTS_RESULT of each row.  A NULL point, or one with a NULL value,
 * gets NULL and does not enter the window.
 */
Datum
hotspots_window(PG_FUNCTION_ARGS)
{
	WindowObject winobj = PG_WINDOW_OBJECT();
	HotspotsSite *site;
	HotspotsPartition *state;
	bool		isnull;
	Datum		d;
	int			n;

	anomaly_window_require(winobj);
	state = (HotspotsPartition *) WinGetPartitionLocalMemory(winobj,
															 sizeof(HotspotsPartition));
	if (!state->started)
		start_partition(fcinfo, winobj, state);
	site = (HotspotsSite *) fcinfo->flinfo->fn_extra;

	/* Rows already read are never needed again. */
	WinSetMarkPosition(winobj, WinGetCurrentPosition(winobj));

	d = WinGetFuncArgCurrent(winobj, 0, &isnull);
	if (isnull)
		PG_RETURN_NULL();
	if (state->is_record)
		anomaly_point_from_record(&state->point, DatumGetHeapTupleHeader(d),
								  site->context, NULL);
	else
		anomaly_point_from_array(&state->point, DatumGetArrayTypeP(d),
								 site->context);
	if (state->detector == NULL)
		create_detector(fcinfo, winobj, state);
	anomaly_point_check_dims(&state->point, state->dims);
	if (state->point.has_null)
		PG_RETURN_NULL();

	n = hotspots_add(state->detector, state->point.values);
	PG_RETURN_JSONB_P(hotspots_result(state->detector, n, state->dims));
}
