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
	const char *err = rcf_params_check(params);

	if (err)
		return err;
	if (params->number_of_trees < RCF_MODEL_MIN_TREES ||
		params->number_of_trees > RCF_MODEL_MAX_TREES)
		return "number_of_trees is out of range";
	if (params->sample_size < RCF_MODEL_MIN_SAMPLES ||
		params->sample_size > RCF_MODEL_MAX_SAMPLES)
		return "sub_sample_size is out of range";
	if (params->shingle_size < RCF_MODEL_MIN_SHINGLE ||
		params->shingle_size > RCF_MODEL_MAX_SHINGLE)
		return "shingle_size is out of range";
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

/*
 * The layout of encode.c's Run (a record run being decoded), for its size
 * only: the decoder's temporary buffer holds one per run.
 */
typedef struct RunSize
{
	uint64_t	start;
	uint64_t	length;
	size_t		offset;
} RunSize;

/*
 * Bytes of the temporary buffer write_forest (encode.c) allocates to encode
 * a forest: a point pointer, a live-slot entry and a slot index per slot,
 * and a stack of two int16 per sample.  rcf_check takes about as much, and
 * besides one tree's boxes, leaf counts and node order (forest.c).
 */
static size_t
encode_scratch(size_t capacity, size_t N, size_t D, size_t box_slots)
{
	size_t		check = sizeof(float *) * capacity +
		2 * sizeof(uint32_t) * capacity + sizeof(uint32_t) * N +
		sizeof(float) * (N - 1) * (2 * D + 1) +
		sizeof(int16_t) * (N - 1 + box_slots);
	size_t		encode = sizeof(float *) * capacity +
		sizeof(uint32_t) * 2 * capacity + sizeof(int16_t) * 2 * N;

	return encode > check ? encode : check;
}

/*
 * Bytes of the temporary buffer rcf_model_decode (encode.c) allocates, at
 * the most points and record runs a model with this capacity can hold (the
 * decoder refuses more points than capacity - 1 and more runs than points):
 * per point its values, a run and a leaf index; per sample two slots, two
 * stack entries and an order entry; and one tree's boxes and leaf counts
 * (rcf_tree_finish).
 */
static size_t
decode_scratch(size_t capacity, size_t N, size_t D)
{
	size_t		points = capacity;	/* nlive + 1 */
	size_t		runs = capacity;	/* nruns + 1 */

	return sizeof(float) * D * points +
		sizeof(RunSize) * runs +
		sizeof(uint32_t) * points +
		sizeof(uint32_t) * 2 * N +
		sizeof(int32_t) * 2 * N +
		sizeof(float) * (N - 1) * (2 * D + 1) +
		sizeof(int16_t) * N;
}

/* The arena plus the larger of the two temporary buffers. */
size_t
rcf_forest_memory(const RcfParams *params)
{
	size_t		N = (size_t) params->sample_size;
	size_t		D = (size_t) params->dims * params->shingle_size;
	size_t		capacity = (size_t) params->number_of_trees * N + 1;
	size_t		enc = encode_scratch(capacity, N, D, rcf_box_pool_size(params));
	size_t		dec = decode_scratch(capacity, N, D);

	return rcf_arena_size(params) + (enc > dec ? enc : dec);
}
