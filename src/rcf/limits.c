/*
 * limits.c
 *	  The ranges a model's parameters may take, and the memory a forest
 *	  needs, known from its parameters before anything is allocated.
 *
 * A forest's memory is fixed by its parameters: rcf_create allocates one
 * arena (forest.c, arena_layout), and encoding or decoding it allocates one
 * temporary buffer more while the forest exists (encode.c).  The SQL layer
 * compares rcf_forest_memory with its memory cap before it creates or
 * decodes a forest, so the sizes below must follow those allocations; the
 * unit test test/unit/test_limits.c counts what they really allocate and
 * fails when this file falls behind.
 */
#include "rcf_internal.h"

/* Checks parameters against the model ranges of rcf.h. */
const char *
rcf_model_params_check(const RcfParams *params)
{
	/* in the order they are checked (the first out of range is said) */
	const struct
	{
		int			value;
		int			min;
		int			max;
		const char *err;
	}			ranges[] = {
		{params->number_of_trees, RCF_MODEL_MIN_TREES, RCF_MODEL_MAX_TREES,
		"number_of_trees is out of range"},
		{params->sample_size, RCF_MODEL_MIN_SAMPLES, RCF_MODEL_MAX_SAMPLES,
		"sub_sample_size is out of range"},
		{params->shingle_size, RCF_MODEL_MIN_SHINGLE, RCF_MODEL_MAX_SHINGLE,
		"shingle_size is out of range"},
	};
	const char *err = rcf_params_check(params);

	if (err)
		return err;
	for (size_t i = 0; i < sizeof(ranges) / sizeof(ranges[0]); i++)
		if (ranges[i].value < ranges[i].min || ranges[i].value > ranges[i].max)
			return ranges[i].err;
	if ((long) params->dims * params->shingle_size > RCF_MODEL_MAX_DIMENSIONS)
		return "dimensions times shingle_size is out of range";
	/* SQL takes a whole time_decay above sub_sample_size (params.c). */
	if (!(params->time_decay > params->sample_size &&
		  params->time_decay <= RCF_MODEL_MAX_DECAY))
		return "time_decay is out of range";
	/* What rcf_create makes of the default, sample_size / 4. */
	if (params->output_after < 1 || params->output_after > params->sample_size)
		return "output_after is out of range";
	return NULL;
}

static size_t
max_size(size_t a, size_t b)
{
	return a > b ? a : b;
}

/*
 * The arena, plus the most the forest holds beside it at any moment: with
 * a shared store (store.c), the store at its largest and, at the same
 * time, the temporary buffer of whichever of these is largest: growing the
 * store (the old block and the new), encoding (encode.c,
 * write_forest), checking (forest.c, rcf_check), or decoding (encode.c,
 * rcf_model_decode: its buffer, for the most points a model can hold in
 * either format version, and the store's first array while the decoder
 * swaps it for one that holds the model's records).
 */
size_t
rcf_forest_memory(const RcfParams *params)
{
	size_t		N = (size_t) params->sample_size;
	size_t		D = (size_t) params->dims * params->shingle_size;
	size_t		T = (size_t) params->number_of_trees;
	bool		shared = params->shingle_size > 1;
	uint32_t	max_records = shared ? rcf_store_max_records(params) : 0;
	size_t		store = shared ? rcf_store_block_size(params, max_records) : 0;
	size_t		first = shared ?
		rcf_store_block_size(params, rcf_store_initial_records(params)) : 0;
	size_t		check = sizeof(uint32_t) * N +
		sizeof(float) * (N - 1) * (2 * D + 1) +
		sizeof(int16_t) * (N - 1 + rcf_box_pool_size(params));
	size_t		decode_v1 = rcf_decode_scratch(params, 1, T * N, T * N);
	size_t		decode_v2 = rcf_decode_scratch(params, 2,
											   shared ? T * N * params->shingle_size : T * N, 0);
	size_t		beside = store + max_size(rcf_encode_scratch(params, max_records), check);

	if (shared)
		beside = max_size(beside, 2 * store);
	beside = max_size(beside, first + store + max_size(decode_v1, decode_v2));
	return rcf_arena_size(params) + beside;
}
