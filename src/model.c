/*
 * model.c
 *	  The anomaly.rcf type: a stored forest, its training aggregate, and the
 *	  functions that score, explain, update and describe it.
 *
 * The datum is a varlena holding the engine's encoding (src/rcf/encode.c):
 * a marker, a format version, a CRC-32C, then the forest.  Every way in
 * (text input, binary receive, and any datum read back) goes through the
 * validating decoder, so bytes a user hands us never reach the engine
 * unchecked.  The text form is the base64 of the encoding.
 *
 * A model may hold a transform (rcf_train's transform argument): every
 * function then shows the forest the transformed point, with the
 * statistics of the points learned before, and reports expected values in
 * the caller's units, as detect() does.
 */
#include "postgres.h"

#include <ctype.h>
#include <float.h>
#include <math.h>

#include "access/detoast.h"
#include "catalog/pg_type.h"
#include "common/base64.h"
#include "lib/stringinfo.h"
#include "libpq/pqformat.h"
#include "miscadmin.h"
#include "nodes/primnodes.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/float.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "anomaly.h"
#include "compat.h"

PG_FUNCTION_INFO_V1(rcf_in);
PG_FUNCTION_INFO_V1(rcf_out);
PG_FUNCTION_INFO_V1(rcf_recv);
PG_FUNCTION_INFO_V1(rcf_send);
PG_FUNCTION_INFO_V1(rcf_train_transfn);
PG_FUNCTION_INFO_V1(rcf_train_finalfn);
PG_FUNCTION_INFO_V1(rcf_score_model);
PG_FUNCTION_INFO_V1(rcf_explain_model);
PG_FUNCTION_INFO_V1(rcf_update_model);
PG_FUNCTION_INFO_V1(rcf_info_model);
PG_FUNCTION_INFO_V1(rcf_detect_model);
PG_FUNCTION_INFO_V1(rcf_set_grading_model);
PG_FUNCTION_INFO_V1(rcf_set_box_cache_model);


/*
 * Decodes an encoding into a forest in `context`, raising the error that
 * fits the failure.  `binary` picks the error code for malformed input.
 * The forest keeps box_cache_fraction of its bounding boxes, or as many as
 * the model says (RCF_BOX_CACHE_STORED).
 *
 * The forest's size is known from the parameters in the header, so a model
 * that would take more than anomaly.max_forest_memory is refused before
 * anything is allocated (a few bytes of header can ask for gigabytes).
 * Parameters out of the model ranges are left to the decoder to report.
 */
static RcfForest *
decode_boxes_or_error(const uint8_t *bytes, size_t len, MemoryContext context,
					  bool binary, RcfGrader **grader, RcfTransform **transform,
					  double box_cache_fraction)
{
	RcfAllocator allocator = {anomaly_context_alloc_no_oom, anomaly_context_free, context};
	RcfDecodeStatus status;
	const char *detail;
	RcfForest  *forest;
	int			code;

	anomaly_check_model_memory(bytes, len, box_cache_fraction);
	forest = rcf_model_decode_boxes(bytes, len, &allocator, grader, transform,
									box_cache_fraction, &status, &detail);
	if (forest)
		return forest;
	switch (status)
	{
		case RCF_DECODE_NO_MEMORY:
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("out of memory while decoding an anomaly.rcf model")));
			break;
		case RCF_DECODE_BAD_CHECKSUM:
		case RCF_DECODE_CORRUPT:
			code = ERRCODE_DATA_CORRUPTED;
			break;
		default:
			code = binary ? ERRCODE_INVALID_BINARY_REPRESENTATION :
				ERRCODE_INVALID_TEXT_REPRESENTATION;
			break;
	}
	ereport(ERROR,
			(errcode(code),
			 errmsg("invalid anomaly.rcf model"),
			 errdetail("The decoder reports: %s.",
					   detail ? detail : "the model cannot be decoded")));
	return NULL;
}

/* decode_boxes_or_error with the model's own bounding_box_cache_fraction. */
static RcfForest *
decode_or_error(const uint8_t *bytes, size_t len, MemoryContext context,
				bool binary, RcfGrader **grader, RcfTransform **transform)
{
	return decode_boxes_or_error(bytes, len, context, binary, grader, transform,
								 RCF_BOX_CACHE_STORED);
}

/*
 * Encodes a forest, its grader and its transform (if any) as a new
 * anomaly.rcf datum.
 */
bytea *
anomaly_encode_model(const RcfForest *forest, const RcfGrader *grader,
					 const RcfTransform *transform)
{
	size_t		size = rcf_model_encoded_size_tf(forest, grader, transform);
	bytea	   *result;

	if (size == 0 || size > MaxAllocSize - VARHDRSZ)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("anomaly.rcf model would be too large (%zu bytes)", size)));
	result = palloc(VARHDRSZ + size);
	SET_VARSIZE(result, VARHDRSZ + size);
	if (rcf_model_encode_tf(forest, grader, transform,
							(uint8_t *) VARDATA(result), size) != size)
		elog(ERROR, "could not encode an anomaly.rcf model");
	return result;
}

/*
 * A decoded model cached per call site, so that scoring many rows against
 * one stored model decodes it once.  The encoding's length and CRC, read
 * from a slice of the datum, tell a different model cheaply; a match is
 * confirmed, because a CRC is no fingerprint (anyone can make a valid
 * model with another's length and CRC by choosing four bytes of its seed,
 * and its rows were scored with the other's forest): by the TOAST pointer
 * when the datum is the stored value the cache was made or confirmed from
 * (so a TOASTed model is not detoasted per row), else by its bytes.
 */
typedef struct ModelCache
{
	MemoryContext context;
	RcfForest  *forest;
	RcfGrader  *grader;			/* NULL if the model has none */
	RcfTransform *transform;	/* NULL if the model has none */
	double	   *transformed;	/* the forest's view of the point */
	Size		raw_size;
	uint32		crc;
	char	   *bytes;			/* the model's encoding, raw_size bytes */
	Oid			toastrelid;		/* the TOAST value it was last seen as, */
	Oid			valueid;		/* or InvalidOid */
	AnomalyPoint point;
	double	   *high;
	double	   *low;
	double	   *expected;
} ModelCache;

/* Returns the call site's cache, creating it. */
static ModelCache *
model_cache(FunctionCallInfo fcinfo)
{
	ModelCache *cache = (ModelCache *) fcinfo->flinfo->fn_extra;

	if (cache == NULL)
	{
		cache = MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, sizeof(ModelCache));
		cache->context = AllocSetContextCreate(fcinfo->flinfo->fn_mcxt,
											   "anomaly model cache",
											   ALLOCSET_DEFAULT_SIZES);
		fcinfo->flinfo->fn_extra = cache;
	}
	return cache;
}

/*
 * The TOAST value a datum points to (relation and value), or InvalidOid
 * for a datum that is not an on-disk TOAST pointer.
 */
static void
toast_value_of(Datum model, Oid *toastrelid, Oid *valueid)
{
	struct varlena *attr = (struct varlena *) DatumGetPointer(model);

	*toastrelid = *valueid = InvalidOid;
	if (VARATT_IS_EXTERNAL_ONDISK(attr))
	{
		struct varatt_external toast_pointer;

		VARATT_EXTERNAL_GET_POINTER(toast_pointer, attr);
		*toastrelid = toast_pointer.va_toastrelid;
		*valueid = toast_pointer.va_valueid;
	}
}

/*
 * Whether a model argument of the cached model's length and CRC is the
 * cached model: the same TOAST value, or the same bytes.  Remembers the
 * TOAST value of a match, so that the next rows pointing to it are not
 * detoasted.
 */
static bool
is_cached_model(ModelCache *cache, Datum model)
{
	Oid			toastrelid;
	Oid			valueid;
	bytea	   *b;
	bool		same;

	toast_value_of(model, &toastrelid, &valueid);
	if (OidIsValid(valueid) && valueid == cache->valueid &&
		toastrelid == cache->toastrelid)
		return true;
	b = DatumGetByteaPP(model);
	same = VARSIZE_ANY_EXHDR(b) == cache->raw_size &&
		memcmp(VARDATA_ANY(b), cache->bytes, cache->raw_size) == 0;
	if ((Pointer) b != DatumGetPointer(model))
		pfree(b);
	if (same)
	{
		cache->toastrelid = toastrelid;
		cache->valueid = valueid;
	}
	return same;
}

/* The forest of a model argument, decoded at most once per distinct model. */
static RcfForest *
cached_forest(FunctionCallInfo fcinfo, Datum model)
{
	ModelCache *cache = model_cache(fcinfo);
	Size		raw_size = toast_raw_datum_size(model) - VARHDRSZ;
	uint32		crc = 0;

	if (raw_size >= RCF_MODEL_HEADER_SIZE)
	{
		bytea	   *head = DatumGetByteaPSlice(model, 0, RCF_MODEL_HEADER_SIZE);

		crc = rcf_model_stored_crc((const uint8 *) VARDATA_ANY(head),
								   VARSIZE_ANY_EXHDR(head));
	}
	if (cache->forest == NULL || cache->raw_size != raw_size || cache->crc != crc ||
		!is_cached_model(cache, model))
	{
		bytea	   *b = DatumGetByteaPP(model);

		MemoryContextReset(cache->context);
		cache->forest = NULL;
		cache->grader = NULL;
		cache->transform = NULL;
		cache->bytes = NULL;
		cache->high = cache->low = cache->expected = cache->transformed = NULL;
		memset(&cache->point, 0, sizeof(AnomalyPoint));
		cache->forest = decode_or_error((const uint8_t *) VARDATA_ANY(b),
										VARSIZE_ANY_EXHDR(b), cache->context,
										false, &cache->grader,
										&cache->transform);
		cache->raw_size = VARSIZE_ANY_EXHDR(b);
		cache->crc = crc;
		cache->bytes = MemoryContextAlloc(cache->context, Max(cache->raw_size, 1));
		memcpy(cache->bytes, VARDATA_ANY(b), cache->raw_size);
		toast_value_of(model, &cache->toastrelid, &cache->valueid);
	}
	return cache->forest;
}

/* Decodes a model for modification: a private copy, never the cache. */
static RcfForest *
private_forest(Datum model, RcfGrader **grader, RcfTransform **transform)
{
	bytea	   *b = DatumGetByteaPP(model);

	return decode_or_error((const uint8_t *) VARDATA_ANY(b),
						   VARSIZE_ANY_EXHDR(b), CurrentMemoryContext, false,
						   grader, transform);
}

/*
 * A model read by an input function (text or binary): model holds its len
 * bytes; sets its size, and decodes it and throws the result away, so that
 * no invalid model ever reaches a table.
 */
static bytea *
model_from_input(bytea *model, int len, bool binary)
{
	RcfGrader  *grader = NULL;
	RcfTransform *transform = NULL;
	RcfForest  *forest;

	SET_VARSIZE(model, VARHDRSZ + len);
	forest = decode_or_error((const uint8_t *) VARDATA(model), len,
							 CurrentMemoryContext, binary, &grader, &transform);
	rcf_grader_free(grader);
	rcf_transform_free(transform);
	rcf_free(forest);
	return model;
}

/* Text input: base64 of the encoding. */
Datum
rcf_in(PG_FUNCTION_ARGS)
{
	char	   *str = PG_GETARG_CSTRING(0);
	int			len = strlen(str);
	int			maxlen;
	bytea	   *result;
	int			n;

	while (len > 0 && isspace((unsigned char) str[len - 1]))
		len--;
	while (len > 0 && isspace((unsigned char) *str))
	{
		str++;
		len--;
	}
	maxlen = pg_b64_dec_len(len);
	if (maxlen < 0 || (Size) maxlen > MaxAllocSize - VARHDRSZ)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("invalid input syntax for type anomaly.rcf"),
				 errdetail("The text is too long.")));
	result = palloc(VARHDRSZ + maxlen);
	n = pg_b64_decode(str, len, VARDATA(result), maxlen);
	if (n < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("invalid input syntax for type anomaly.rcf"),
				 errdetail("The text is not valid base64.")));
	PG_RETURN_BYTEA_P(model_from_input(result, n, false));
}

/* Text output: base64 of the encoding. */
Datum
rcf_out(PG_FUNCTION_ARGS)
{
	bytea	   *model = PG_GETARG_BYTEA_PP(0);
	int			len = VARSIZE_ANY_EXHDR(model);
	int			enclen = pg_b64_enc_len(len);
	char	   *out = palloc(enclen + 1);
	int			n = pg_b64_encode(VARDATA_ANY(model), len, out, enclen);

	if (n < 0)
		elog(ERROR, "could not encode an anomaly.rcf model as base64");
	out[n] = '\0';
	PG_RETURN_CSTRING(out);
}

/* Binary receive: the encoding itself, validated. */
Datum
rcf_recv(PG_FUNCTION_ARGS)
{
	StringInfo	buf = (StringInfo) PG_GETARG_POINTER(0);
	int			len = buf->len - buf->cursor;
	bytea	   *result = palloc(VARHDRSZ + len);

	pq_copymsgbytes(buf, VARDATA(result), len);
	PG_RETURN_BYTEA_P(model_from_input(result, len, true));
}

/* Binary send: the encoding itself. */
Datum
rcf_send(PG_FUNCTION_ARGS)
{
	bytea	   *model = PG_GETARG_BYTEA_PP(0);
	StringInfoData buf;

	pq_begintypsend(&buf);
	pq_sendbytes(&buf, VARDATA_ANY(model), VARSIZE_ANY_EXHDR(model));
	PG_RETURN_BYTEA_P(pq_endtypsend(&buf));
}

/*
 * A grader with detect()'s defaults, in a memory context: the reference
 * library's (rcf_grader_params_default) but for z_factor 4 and CUSUM off,
 * which the validation protocol chose (bench/README.md, issue 13).  Keep
 * equal to detect()'s and rcf_set_grading's SQL defaults.
 */
static RcfGrader *
default_grader(const RcfParams *params, MemoryContext context)
{
	RcfGraderParams gp;
	RcfAllocator allocator = {anomaly_context_alloc, anomaly_context_free, context};
	RcfGrader  *grader;

	rcf_grader_params_default(&gp);
	gp.z_factor = 4.0;
	gp.cusum_threshold = 0.0;
	grader = rcf_grader_create(&gp, params, &allocator);
	if (grader == NULL)
		elog(ERROR, "could not create a grader with default parameters");
	return grader;
}

/*
 * Aggregate state of rcf_train.  It starts with a marker, checked by the
 * support functions: PostgreSQL lets a superuser pair them with another
 * aggregate's functions, whose state must not be taken for this one.
 */
#define TRAIN_STATE_MAGIC UINT64CONST(0x616e6f6d616c7931)	/* "anomaly1" */

typedef struct TrainState
{
	uint64		magic;			/* TRAIN_STATE_MAGIC */
	struct TrainState *self;	/* points to itself */
	MemoryContext context;
	RcfForest  *forest;
	RcfGrader  *grader;
	RcfTransform *transform;	/* NULL: none */
	AnomalyPoint point;
	AnomalyProgress progress;
} TrainState;

/* The state argument of a support function: NULL, or a TrainState. */
static TrainState *
train_state(FunctionCallInfo fcinfo)
{
	TrainState *state;

	if (PG_ARGISNULL(0))
		return NULL;
	state = (TrainState *) PG_GETARG_POINTER(0);
	if (state == NULL || state->magic != TRAIN_STATE_MAGIC || state->self != state)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("rcf_train's support functions were given another aggregate's state")));
	return state;
}

/*
 * Warns, once per call site and query, when rcf_train learns a second point
 * and the call has no ORDER BY: the forest then learns the rows in whatever
 * order the plan yields them.  A warning, not an error: input sorted by a
 * subquery is a known PostgreSQL idiom that works in practice, and one point
 * needs no order.  Called as a window aggregate there is no Aggref to ask.
 */
static void
warn_unordered(FunctionCallInfo fcinfo)
{
	Aggref	   *aggref;

	if (fcinfo->flinfo->fn_extra != NULL)
		return;
	aggref = AggGetAggref(fcinfo);
	if (aggref == NULL || aggref->aggorder != NIL)
		return;
	/* Any non-NULL pointer marks the warning as given for this call site. */
	fcinfo->flinfo->fn_extra = fcinfo->flinfo;
	ereport(WARNING,
			(errcode(ERRCODE_WARNING),
			 errmsg("rcf_train has no ORDER BY, so the forest learns the rows in an arbitrary order"),
			 errdetail("The model depends on the order its points are learned in."),
			 errhint("Order the points inside the call, for example rcf_train(ARRAY[v] ORDER BY t).")));
}

/*
 * rcf_train(point [, number_of_trees [, sub_sample_size [, time_decay
 * [, shingle_size [, seed [, transform [, transform_decay
 * [, transform_weights]]]]]]]]): learns each non-NULL point in the
 * aggregate's ORDER BY order.  Parameters come from the first point.
 * Until a first point arrives the state stays SQL NULL (not a NULL
 * pointer): a group of NULL points trains no model and yields NULL.
 */
Datum
rcf_train_transfn(PG_FUNCTION_ARGS)
{
	MemoryContext aggcontext;
	TrainState *state;
	ArrayType  *array;

	if (!AggCheckCallContext(fcinfo, &aggcontext))
		elog(ERROR, "rcf_train called in non-aggregate context");
	/* Cheap; keeps any caller cancellable (a window frame re-aggregated per row). */
	CHECK_FOR_INTERRUPTS();
	state = train_state(fcinfo);
	if (PG_ARGISNULL(1))
	{
		if (state == NULL)
			PG_RETURN_NULL();
		PG_RETURN_POINTER(state);
	}
	array = PG_GETARG_ARRAYTYPE_P(1);

	if (state == NULL)
	{
		RcfParams	params;
		int			nargs = PG_NARGS();
		Datum		defaults[5] = {Int32GetDatum(100), Int32GetDatum(256),
			Int64GetDatum(100000), Int32GetDatum(1), Int64GetDatum(42)};
		Datum		args[5];
		bool		nulls[5];

		for (int i = 0; i < 5; i++)
		{
			if (i + 2 < nargs)
			{
				nulls[i] = PG_ARGISNULL(i + 2);
				args[i] = nulls[i] ? (Datum) 0 : PG_GETARG_DATUM(i + 2);
			}
			else
			{
				nulls[i] = false;
				args[i] = defaults[i];
			}
		}
		state = MemoryContextAllocZero(aggcontext, sizeof(TrainState));
		state->magic = TRAIN_STATE_MAGIC;
		state->self = state;
		state->context = AllocSetContextCreate(aggcontext, "anomaly rcf_train",
											   ALLOCSET_DEFAULT_SIZES);
		anomaly_point_from_array(&state->point, array, state->context);
		anomaly_forest_params(&params, state->point.dims,
							  args[0], nulls[0], args[1], nulls[1],
							  args[2], nulls[2], args[3], nulls[3],
							  args[4], nulls[4], 1.0);
		state->forest = anomaly_forest_create(&params, state->context);
		state->grader = default_grader(&params, state->context);
		if (nargs > 7)
		{
			AnomalyTransformSpec spec;
			/* An omitted decay is detect()'s default, NULL 1 / sub_sample_size. */
			bool		dnull = nargs > 8 && PG_ARGISNULL(8);
			bool		wnull = nargs <= 9 || PG_ARGISNULL(9);

			if (PG_ARGISNULL(7))
				anomaly_null_param("transform");
			anomaly_transform_spec(&spec, text_to_cstring(PG_GETARG_TEXT_PP(7)),
								   dnull, nargs <= 8 ? ANOMALY_TRANSFORM_DEFAULT_DECAY :
								   dnull ? 0.0 : PG_GETARG_FLOAT8(8),
								   wnull ? NULL : PG_GETARG_ARRAYTYPE_P(9),
								   params.dims, params.sample_size);
			state->transform = anomaly_transform_create(&spec, state->context);
		}
		anomaly_progress_start(&state->progress, "rcf_train", "learned");
	}
	else
	{
		warn_unordered(fcinfo);
		anomaly_point_from_array(&state->point, array, state->context);
	}

	anomaly_point_check_dims(&state->point, rcf_params(state->forest)->dims);
	if (!state->point.has_null)
	{
		RcfGrade	grade;

		/* Scored before learned, so the grader follows the scores. */
		rcf_grader_process_tf(state->grader, state->forest, state->transform,
							  state->point.values, true, &grade, NULL);
	}
	anomaly_progress_tick(&state->progress);
	PG_RETURN_POINTER(state);
}

/* Serialises the trained forest; the state is left as it was. */
Datum
rcf_train_finalfn(PG_FUNCTION_ARGS)
{
	TrainState *state;

	if (!AggCheckCallContext(fcinfo, NULL))
		elog(ERROR, "rcf_train called in non-aggregate context");
	state = train_state(fcinfo);
	if (state == NULL)
		PG_RETURN_NULL();
	PG_RETURN_BYTEA_P(anomaly_encode_model(state->forest, state->grader,
								   state->transform));
}

/* Attribution and expected-value buffers, once per decoded model. */
static void
reserve_buffers(ModelCache *cache, const RcfParams *params)
{
	size_t		n = sizeof(double) * params->dims * params->shingle_size;

	if (cache->expected != NULL)
		return;
	cache->transformed = MemoryContextAlloc(cache->context,
											sizeof(double) * params->dims);
	cache->high = MemoryContextAlloc(cache->context, n);
	cache->low = MemoryContextAlloc(cache->context, n);
	cache->expected = MemoryContextAlloc(cache->context, n);
}

/* Reads the point argument into the cache's buffer. */
static AnomalyPoint *
model_point(FunctionCallInfo fcinfo, int argno, const RcfForest *forest,
			AnomalyPoint *point, MemoryContext context)
{
	anomaly_point_from_array(point, PG_GETARG_ARRAYTYPE_P(argno), context);
	anomaly_point_check_dims(point, rcf_params(forest)->dims);
	return point;
}

/* What a (model, point, ...) call works on. */
typedef struct ModelCall
{
	RcfForest  *forest;			/* the decoded model */
	ModelCache *cache;
	AnomalyPoint *point;
} ModelCall;

/*
 * Fills mc for a (model, point, ...) call; false when the call's result is
 * NULL: a NULL argument, or a point with a NULL value.
 */
static bool
model_call(FunctionCallInfo fcinfo, ModelCall *mc)
{
	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		return false;
	mc->forest = cached_forest(fcinfo, PG_GETARG_DATUM(0));
	mc->cache = model_cache(fcinfo);
	mc->point = model_point(fcinfo, 1, mc->forest, &mc->cache->point, mc->cache->context);
	return !mc->point->has_null;
}

/* The point as the model's forest sees it: transformed, or as it is. */
static const double *
forest_view(ModelCache *cache, const RcfForest *forest, const double *values)
{
	if (cache->transform == NULL)
		return values;
	reserve_buffers(cache, rcf_params(forest));
	rcf_transform_apply(cache->transform, values, cache->transformed);
	return cache->transformed;
}

/* The feature names of argument 2 (NULL: the defaults) for a forest. */
static List *
names_arg(FunctionCallInfo fcinfo, const RcfForest *forest)
{
	return anomaly_feature_names(PG_ARGISNULL(2) ? NULL : PG_GETARG_ARRAYTYPE_P(2),
								 rcf_params(forest)->dims);
}

/* KDA's explanation of a call's point (the cache's buffers reserved). */
static Jsonb *
explain_point(ModelCall *mc, List *names)
{
	ModelCache *cache = mc->cache;

	rcf_attribution(mc->forest, forest_view(cache, mc->forest, mc->point->values),
					cache->high, cache->low);
	return anomaly_explanation(mc->forest, cache->high, cache->low,
							   rcf_params(mc->forest)->dims, true, names);
}

/* rcf_score(model, point): the point's anomaly score; the model is unchanged. */
Datum
rcf_score_model(PG_FUNCTION_ARGS)
{
	ModelCall	mc;

	if (!model_call(fcinfo, &mc))
		PG_RETURN_NULL();
	PG_RETURN_FLOAT8(rcf_score(mc.forest, forest_view(mc.cache, mc.forest, mc.point->values)));
}

/*
 * rcf_explain(model, point, feature_names): KDA's explanation of the
 * point's score, with direction and strength.
 */
Datum
rcf_explain_model(PG_FUNCTION_ARGS)
{
	ModelCall	mc;

	if (!model_call(fcinfo, &mc))
		PG_RETURN_NULL();
	reserve_buffers(mc.cache, rcf_params(mc.forest));
	PG_RETURN_JSONB_P(explain_point(&mc, names_arg(fcinfo, mc.forest)));
}

/*
 * Learns a point: through the grader when the model has one, and through
 * its transform.
 */
static void
learn(RcfForest *forest, RcfGrader *grader, RcfTransform *transform,
	  const double *values)
{
	if (grader)
	{
		RcfGrade	grade;

		rcf_grader_process_tf(grader, forest, transform, values, true,
							  &grade, NULL);
	}
	else if (transform)
	{
		double		x[RCF_MAX_DIMENSIONS];

		rcf_transform_apply(transform, values, x);
		if (rcf_update(forest, x) != 0)
			elog(ERROR, "could not grow the record store of a forest");	/* palloc raises first */
		rcf_transform_learn(transform, values);
	}
	else if (rcf_update(forest, values) != 0)
		elog(ERROR, "could not grow the record store of a forest");	/* palloc raises first */
}

/*
 * Learns each row of a two-dimensional array in order; rows with a NULL
 * are skipped.
 */
static void
update_many(RcfForest *forest, RcfGrader *grader, RcfTransform *transform,
			ArrayType *array)
{
	int			rows,
				cols;
	float8	   *data;
	bits8	   *nulls;
	double	   *values;
	int			dims;

	dims = rcf_params(forest)->dims;
	rows = ARR_DIMS(array)[0];
	cols = ARR_DIMS(array)[1];
	if (cols != dims)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("point has %d values but the forest was built for %d",
						cols, dims)));
	data = (float8 *) ARR_DATA_PTR(array);
	nulls = ARR_NULLBITMAP(array);
	values = palloc(sizeof(double) * dims);
	for (int r = 0; r < rows; r++)
	{
		bool		skip = false;

		/* An array can hold millions of rows: stay cancellable. */
		CHECK_FOR_INTERRUPTS();

		for (int c = 0; c < cols; c++)
		{
			int			i = r * cols + c;

			if (nulls && !(nulls[i / 8] & (1 << (i % 8))))
			{
				skip = true;
				continue;
			}
			values[c] = *data++;
			if (isnan(values[c]) || isinf(values[c]) || fabs(values[c]) > FLT_MAX)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("point %d has a value that is not a finite real", r + 1)));
		}
		if (!skip)
			learn(forest, grader, transform, values);
	}
	pfree(values);
}

/*
 * rcf_update(model, point): the model after learning the point; with a
 * two-dimensional array, after learning each of its rows in order.
 */
Datum
rcf_update_model(PG_FUNCTION_ARGS)
{
	RcfForest  *forest;
	RcfGrader  *grader = NULL;
	RcfTransform *transform = NULL;
	AnomalyPoint point = {0};
	ArrayType  *array;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	if (PG_ARGISNULL(1))
		PG_RETURN_DATUM(PG_GETARG_DATUM(0));
	array = PG_GETARG_ARRAYTYPE_P(1);
	forest = private_forest(PG_GETARG_DATUM(0), &grader, &transform);
	if (ARR_NDIM(array) == 2)
	{
		update_many(forest, grader, transform, array);
		PG_RETURN_BYTEA_P(anomaly_encode_model(forest, grader, transform));
	}
	model_point(fcinfo, 1, forest, &point, CurrentMemoryContext);
	if (!point.has_null)
		learn(forest, grader, transform, point.values);
	PG_RETURN_BYTEA_P(anomaly_encode_model(forest, grader, transform));
}

/* rcf_info(model): what a person wants to know about a model, as jsonb. */
Datum
rcf_info_model(PG_FUNCTION_ARGS)
{
	bytea	   *model = PG_GETARG_BYTEA_PP(0);
	RcfGrader  *grader = NULL;
	RcfTransform *transform = NULL;
	RcfForest  *forest = decode_or_error((const uint8_t *) VARDATA_ANY(model),
										 VARSIZE_ANY_EXHDR(model),
										 CurrentMemoryContext, false, &grader,
										 &transform);
	const RcfParams *p = rcf_params(forest);
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfo(&buf,
					 "{\"format_version\": %d, \"dimensions\": %d, "
					 "\"number_of_trees\": %d, \"sub_sample_size\": %d, "
					 "\"time_decay\": %.15g, \"shingle_size\": %d, "
					 "\"seed\": " INT64_FORMAT ", \"output_after\": %d, "
					 "\"updates\": " UINT64_FORMAT ", \"output_ready\": %s, "
					 "\"encoded_bytes\": %d, \"memory_bytes\": %zu, "
					 "\"bounding_box_cache_fraction\": %s",
					 /* as stored: a version 1 model is written back as the current one */
					 (int) (((const uint8_t *) VARDATA_ANY(model))[4] |
							((const uint8_t *) VARDATA_ANY(model))[5] << 8),
					 p->dims, p->number_of_trees,
					 p->sample_size, p->time_decay, p->shingle_size,
					 (int64) p->seed, p->output_after,
					 (uint64) rcf_updates(forest),
					 rcf_output_ready(forest) ? "true" : "false",
					 (int) VARSIZE_ANY_EXHDR(model), rcf_bytes(forest),
					 /* the shortest form that reads back the same, as float8 prints */
					 float8out_internal(p->bounding_box_cache_fraction));
	if (grader)
	{
		const RcfGraderParams *g = rcf_grader_params(grader);

		appendStringInfo(&buf,
						 ", \"grader\": {\"z_factor\": %.15g, \"score_floor\": %.15g, "
						 "\"suppress\": %d, \"score_horizon\": %.15g, "
						 "\"cusum_drift\": %.15g, \"cusum_threshold\": %.15g}",
						 g->z_factor, g->score_floor, g->suppress, g->horizon,
						 g->cusum_drift, g->cusum_threshold);
		rcf_grader_free(grader);
	}
	if (transform)
	{
		const RcfTransformParams *t = rcf_transform_params(transform);

		appendStringInfo(&buf,
						 ", \"transform\": {\"method\": \"%s\", \"decay\": %.15g, "
						 "\"clip\": %.15g, \"weights\": [",
						 rcf_transform_method_name(t->method), t->decay, t->clip);
		for (int i = 0; i < t->dims; i++)
			appendStringInfo(&buf, "%s%.15g", i > 0 ? ", " : "",
							 rcf_transform_weight(transform, i));
		appendStringInfoString(&buf, "]}");
		rcf_transform_free(transform);
	}
	appendStringInfoChar(&buf, '}');
	rcf_free(forest);
	PG_RETURN_JSONB_P(DatumGetJsonbP(DirectFunctionCall1(jsonb_in,
														 CStringGetDatum(buf.data))));
}

/*
 * rcf_detect(model, point, feature_names): the graded detection of a point
 * against a stored model, which is not changed.  A model without grader
 * state (none so far) gets a fresh grader, which grades nothing until it has
 * seen enough scores.
 */
Datum
rcf_detect_model(PG_FUNCTION_ARGS)
{
	ModelCall	mc;
	ModelCache *cache;
	const RcfParams *params;
	RcfGrade	grade;
	Jsonb	   *explanation = NULL;
	List	   *names;

	if (!model_call(fcinfo, &mc))
		PG_RETURN_NULL();
	cache = mc.cache;
	params = rcf_params(mc.forest);
	names = names_arg(fcinfo, mc.forest);
	if (cache->grader == NULL)
		cache->grader = default_grader(params, cache->context);
	reserve_buffers(cache, params);
	rcf_grader_assess_tf(cache->grader, mc.forest, cache->transform,
						 mc.point->values, &grade, cache->expected);
	if (grade.is_anomaly)
		explanation = explain_point(&mc, names);
	return anomaly_detection_datum(fcinfo, &grade, cache->expected,
								   params->dims, explanation);
}

/*
 * rcf_set_grading(model, z_factor, ..., cusum_threshold): the model with
 * other grading parameters (detect()'s, in its order), so a model trained by
 * rcf_train (which grades with the defaults) can grade as a detect() call
 * with other settings would.  The forest and the grader's statistics of the
 * score stream are kept; a model without a grader gets a new one.
 */
Datum
rcf_set_grading_model(PG_FUNCTION_ARGS)
{
	RcfForest  *forest;
	RcfGrader  *grader = NULL;
	RcfTransform *transform = NULL;
	RcfGraderParams gp;
	NullableDatum args[ANOMALY_GRADER_ARGS];
	const char *err;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	for (int i = 0; i < ANOMALY_GRADER_ARGS; i++)
	{
		args[i].isnull = PG_ARGISNULL(i + 1);
		args[i].value = args[i].isnull ? (Datum) 0 : PG_GETARG_DATUM(i + 1);
	}
	anomaly_grader_params(&gp, args);
	forest = private_forest(PG_GETARG_DATUM(0), &grader, &transform);
	if (grader == NULL)
	{
		RcfAllocator allocator = {anomaly_context_alloc, anomaly_context_free,
		CurrentMemoryContext};

		grader = rcf_grader_create(&gp, rcf_params(forest), &allocator);
		if (grader == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("out of memory")));
	}
	else if ((err = rcf_grader_set_params(grader, &gp)) != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s", err)));
	PG_RETURN_BYTEA_P(anomaly_encode_model(forest, grader, transform));
}

/*
 * rcf_set_box_cache(model, fraction): the model whose forest keeps that
 * fraction of its bounding boxes (bounding_box_cache_fraction, 0 .. 1),
 * and the model's memory with it (rcf_info's memory_bytes): less memory,
 * more time per point; scores, explanations and imputations do not change.
 * The fraction is stored with the model and kept by rcf_update.  A setter
 * rather than another argument of rcf_train, whose ten overloads would
 * each need one more, and it serves models trained or updated already.
 */
Datum
rcf_set_box_cache_model(PG_FUNCTION_ARGS)
{
	bytea	   *model;
	double		fraction;
	RcfForest  *forest;
	RcfGrader  *grader = NULL;
	RcfTransform *transform = NULL;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	if (PG_ARGISNULL(1))
		anomaly_null_param("fraction");
	fraction = PG_GETARG_FLOAT8(1);
	anomaly_check_box_cache_fraction("fraction", fraction);
	model = PG_GETARG_BYTEA_PP(0);
	forest = decode_boxes_or_error((const uint8_t *) VARDATA_ANY(model),
								   VARSIZE_ANY_EXHDR(model), CurrentMemoryContext,
								   false, &grader, &transform, fraction);
	PG_RETURN_BYTEA_P(anomaly_encode_model(forest, grader, transform));
}
