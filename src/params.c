/*
 * params.c
 *	  Forest parameters from SQL arguments, checked against KDA's limits
 *	  (rcf.h's model ranges) and against anomaly.max_forest_memory, and
 *	  forests allocated in PostgreSQL memory contexts.
 */
#include "postgres.h"

#include "utils/builtins.h"
#include "utils/memutils.h"

#include "anomaly.h"

/* anomaly.max_forest_memory, in kB (defined in anomaly.c). */
int			anomaly_max_forest_memory = 65536;

/* Raises the error for a NULL parameter. */
void
anomaly_null_param(const char *name)
{
	ereport(ERROR,
			(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
			 errmsg("%s must not be null", name),
			 errhint("Omit the argument to use its default.")));
}

/* Raises the error for an integer parameter out of its range. */
static void
check_range(const char *name, int64 value, int64 min, int64 max)
{
	if (value < min || value > max)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be between " INT64_FORMAT " and " INT64_FORMAT,
						name, min, max),
				 errdetail("%s is " INT64_FORMAT ".", name, value)));
}

/*
 * Fills params from the SQL arguments of random_cut_forest and friends.
 * Every argument is checked here, so that the engine's own check can only
 * fail on the number of dimensions.  box_cache_fraction (checked by the
 * caller; 1 where SQL has no such argument) is part of the memory check: a
 * detector that keeps fewer boxes may have forests that would not fit with
 * every box.
 */
void
anomaly_forest_params(RcfParams *params, int dims,
					  Datum number_of_trees, bool trees_null,
					  Datum sub_sample_size, bool samples_null,
					  Datum time_decay, bool decay_null,
					  Datum shingle_size, bool shingle_null,
					  Datum seed, bool seed_null,
					  double box_cache_fraction)
{
	int64		decay;
	const char *err;

	rcf_params_default(params, dims);
	if (trees_null)
		anomaly_null_param("number_of_trees");
	if (samples_null)
		anomaly_null_param("sub_sample_size");
	if (decay_null)
		anomaly_null_param("time_decay");
	if (shingle_null)
		anomaly_null_param("shingle_size");
	if (seed_null)
		anomaly_null_param("seed");

	params->number_of_trees = DatumGetInt32(number_of_trees);
	check_range("number_of_trees", params->number_of_trees,
				RCF_MODEL_MIN_TREES, RCF_MODEL_MAX_TREES);
	params->sample_size = DatumGetInt32(sub_sample_size);
	check_range("sub_sample_size", params->sample_size,
				RCF_MODEL_MIN_SAMPLES, RCF_MODEL_MAX_SAMPLES);
	decay = DatumGetInt64(time_decay);
	if (decay <= params->sample_size)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("time_decay must be greater than sub_sample_size"),
				 errdetail("time_decay is " INT64_FORMAT " and sub_sample_size is %d.",
						   decay, params->sample_size),
				 errhint("The sampler keeps points from about the last time_decay records; it cannot keep more than it sees.")));
	params->time_decay = (double) decay;
	params->shingle_size = DatumGetInt32(shingle_size);
	check_range("shingle_size", params->shingle_size,
				RCF_MODEL_MIN_SHINGLE, RCF_MODEL_MAX_SHINGLE);
	params->seed = (uint64_t) DatumGetInt64(seed);
	params->bounding_box_cache_fraction = box_cache_fraction;

	if ((int64) dims * params->shingle_size > RCF_MODEL_MAX_DIMENSIONS)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("a point has at most %d values after shingling",
						RCF_MODEL_MAX_DIMENSIONS),
				 errdetail("The point has %d values and shingle_size is %d.",
						   dims, params->shingle_size)));

	err = rcf_params_check(params);
	if (err)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid forest parameters: %s", err)));

	/* Every forest SQL makes (and every detector's) passes here. */
	anomaly_check_forest_memory(params);
}

/* Formats a number of bytes as pg_size_pretty does. */
static char *
pretty_size(uint64 bytes)
{
	Datum		pretty = DirectFunctionCall1(pg_size_pretty,
										   Int64GetDatum((int64) Min(bytes, (uint64) PG_INT64_MAX)));

	return text_to_cstring(DatumGetTextPP(pretty));
}

/*
 * Refuses a forest whose memory bound (rcf_forest_memory: its arena and the
 * engine's largest temporary buffer for it) is above
 * anomaly.max_forest_memory.  Called before anything of the forest is
 * allocated: by anomaly_forest_params for every forest created from SQL
 * arguments or detector options, and before a stored model is decoded.
 */
void
anomaly_check_forest_memory(const RcfParams *params)
{
	uint64		need = (uint64) rcf_forest_memory(params);
	uint64		limit = (uint64) anomaly_max_forest_memory * 1024;

	if (need > limit)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("forest would need %s, more than anomaly.max_forest_memory (%s)",
						pretty_size(need), pretty_size(limit)),
				 errdetail("number_of_trees is %d, sub_sample_size %d, dimensions %d and shingle_size %d.",
						   params->number_of_trees, params->sample_size,
						   params->dims, params->shingle_size),
				 errhint("Use fewer trees, a smaller sub_sample_size or fewer values per point, or ask a superuser to raise anomaly.max_forest_memory.")));
}

/*
 * The same check for a stored model, from the parameters in its header,
 * before it is decoded (a few bytes of header can ask for gigabytes), to
 * be decoded with bounding_box_cache_fraction box_cache_fraction, or with
 * its own (RCF_BOX_CACHE_STORED).  Parameters out of the model ranges are
 * left to the decoder to report.
 */
void
anomaly_check_model_memory(const uint8_t *bytes, size_t len,
						   double box_cache_fraction)
{
	RcfParams	params;

	if (rcf_model_peek_params(bytes, len, &params) == 0 &&
		rcf_model_params_check(&params) == NULL)
	{
		if (box_cache_fraction != RCF_BOX_CACHE_STORED)
			params.bounding_box_cache_fraction = box_cache_fraction;
		anomaly_check_forest_memory(&params);
	}
}

/*
 * Refuses a bounding_box_cache_fraction outside 0 .. 1 (or NaN), naming
 * the argument or option `name`.
 */
void
anomaly_check_box_cache_fraction(const char *name, double fraction)
{
	if (!(fraction >= 0.0 && fraction <= 1.0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be between 0 and 1", name),
				 errdetail("%s is %g.", name, fraction),
				 errhint("1 keeps every bounding box the engine would (the fastest); 0 keeps none (the least memory).")));
}

/* Allocator hooks that put engine memory into a memory context. */
void *
anomaly_context_alloc(void *ctx, size_t size)
{
	return MemoryContextAllocExtended((MemoryContext) ctx, size,
									  MCXT_ALLOC_HUGE);
}

/*
 * The same, returning NULL when memory runs out, for callers that report
 * the engine's failure themselves (decoding a stored model, a detector's
 * forests); and zeroed.
 */
void *
anomaly_context_alloc_no_oom(void *ctx, size_t size)
{
	return MemoryContextAllocExtended((MemoryContext) ctx, size,
									  MCXT_ALLOC_HUGE | MCXT_ALLOC_NO_OOM);
}

void *
anomaly_context_alloc_zero_no_oom(void *ctx, size_t size)
{
	return MemoryContextAllocExtended((MemoryContext) ctx, size,
									  MCXT_ALLOC_HUGE | MCXT_ALLOC_NO_OOM | MCXT_ALLOC_ZERO);
}

void
anomaly_context_free(void *ctx, void *ptr)
{
	pfree(ptr);
}

/*
 * Creates a forest whose arena lives in `context`.  The arena is sized by
 * the parameters alone, so it is checked before anything is allocated.
 */
RcfForest *
anomaly_forest_create(const RcfParams *params, MemoryContext context)
{
	RcfAllocator allocator;
	size_t		size = rcf_arena_size(params);
	RcfForest  *forest;

	if (size > MaxAllocHugeSize / 2)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("forest would need %zu bytes of memory", size),
				 errhint("Use fewer trees, a smaller sub_sample_size or a smaller shingle_size.")));
	allocator.alloc = anomaly_context_alloc;
	allocator.free = anomaly_context_free;
	allocator.ctx = context;
	forest = rcf_create(params, &allocator);
	if (forest == NULL)
		elog(ERROR, "could not create a forest with valid parameters");
	return forest;
}
