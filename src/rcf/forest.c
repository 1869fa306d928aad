/*
 * forest.c
 *	  Random Cut Forest: parameters, the arena, shingling, and the
 *	  score/update cycle over all trees.
 */
#include <stdlib.h>

#include "rcf_internal.h"

#define ARENA_ALIGN 16

/* Fills in KDA's defaults. */
void
rcf_params_default(RcfParams *params, int dims)
{
	params->dims = dims;
	params->shingle_size = 1;
	params->number_of_trees = 100;
	params->sample_size = 256;
	params->time_decay = 100000.0;
	params->seed = 42;
	params->output_after = -1;
	params->bounding_box_cache_fraction = 1.0;
}

/* Checks parameters against the engine's limits. */
const char *
rcf_params_check(const RcfParams *params)
{
	if (params->dims < 1)
		return "dims must be at least 1";
	if (params->shingle_size < 1 || params->shingle_size > RCF_MAX_SHINGLE)
		return "shingle_size must be between 1 and 64";
	if (params->number_of_trees < 1 || params->number_of_trees > RCF_MAX_TREES)
		return "number_of_trees must be between 1 and 1000";
	if (params->sample_size < RCF_MIN_SAMPLES ||
		params->sample_size > RCF_MAX_SAMPLES)
		return "sample_size must be between 2 and 4096";
	if ((long) params->dims * params->shingle_size > RCF_MAX_DIMENSIONS)
		return "dims times shingle_size must be at most 1024";
	if (!(params->time_decay == 0.0 ||
		  (params->time_decay >= 1.0 && params->time_decay <= 1e18)))
		return "time_decay must be 0 (no decay) or between 1 and 1e18";
	if (params->output_after < -1)
		return "output_after must be zero or more";
	/* NaN fails both comparisons. */
	if (!(params->bounding_box_cache_fraction >= 0.0 &&
		  params->bounding_box_cache_fraction <= 1.0))
		return "bounding_box_cache_fraction must be between 0 and 1";
	return NULL;
}

/*
 * Boxes per tree in a given mode: none, the pool, or one per internal node.
 * A pool asked for by bounding_box_cache_fraction holds that share of the
 * internal nodes' boxes, but never more than the engine's own choice for
 * wide points (RCF_BOX_POOL_NUM / RCF_BOX_POOL_DIV), so that a smaller
 * fraction never takes more memory than the default.
 */
static size_t
box_pool_size(const RcfParams *params, int box_mode)
{
	size_t		N = (size_t) params->sample_size;
	size_t		pool = N * RCF_BOX_POOL_NUM / RCF_BOX_POOL_DIV;
	size_t		want;

	switch (box_mode)
	{
		case RCF_BOXES_NONE:
		case RCF_BOXES_WALK:
			return 0;
		case RCF_BOXES_PARTIAL:
			if (params->bounding_box_cache_fraction >= 1.0)
				return pool;
			want = (size_t) (params->bounding_box_cache_fraction * (double) (N - 1));
			if (params->dims * params->shingle_size >= RCF_BOX_PARTIAL_MIN_DIMS &&
				want > pool)
				return pool;
			return want;
		default:
			return N - 1;
	}
}

/*
 * How a forest keeps boxes (see rcf_internal.h): none for points of one
 * value, whose boxes are found at the ends of their subtrees; by subtree
 * size, in a pool, when the parameters ask for fewer boxes
 * (bounding_box_cache_fraction below 1), or by default only where a box is
 * large enough for the savings to outweigh the leaf counts and the pool's
 * bookkeeping, and the time of recomputing; otherwise every internal node
 * has its box, at its own index.
 */
int
rcf_box_mode(const RcfParams *params)
{
	if ((long) params->dims * params->shingle_size == 1)
		return RCF_BOXES_NONE;
	if (params->bounding_box_cache_fraction < 1.0)
		return box_pool_size(params, RCF_BOXES_PARTIAL) > 0 ?
			RCF_BOXES_PARTIAL : RCF_BOXES_WALK;
	if (params->dims * params->shingle_size >= RCF_BOX_PARTIAL_MIN_DIMS &&
		params->sample_size >= RCF_BOX_MIN_LEAVES)
		return RCF_BOXES_PARTIAL;
	return RCF_BOXES_ALL;
}

/* Boxes per tree in the mode rcf_create chooses. */
size_t
rcf_box_pool_size(const RcfParams *params)
{
	return box_pool_size(params, rcf_box_mode(params));
}

/*
 * The fewest leaves of a node whose box partial caching keeps, for a pool
 * of `pool` boxes.  In a random tree of N leaves about 2N / (k + 1)
 * internal nodes have k leaves or more; the size is chosen so that they
 * fill about two thirds of the pool, k = 3N / pool - 1 (for the default
 * pool of 3/8 of N that is 7, next to its measured 8), since the pool
 * runs short on trees less even than random ones, and a node left without
 * a box for want of room costs a longer run to recompute.  With no pool,
 * no node is that large.
 */
static int
box_min_leaves(const RcfParams *params, size_t pool)
{
	size_t		N = (size_t) params->sample_size;
	size_t		k;

	if (params->bounding_box_cache_fraction >= 1.0)
		return RCF_BOX_MIN_LEAVES;
	if (pool == 0)
		return (int) N + 1;
	k = (RCF_BOX_FRACTION_SPREAD * N + pool - 1) / pool - 1;
	return k < 2 ? 2 : (int) k;
}

/* Rounds an arena offset up so that every array is aligned. */
static size_t
align_up(size_t n)
{
	return (n + ARENA_ALIGN - 1) & ~(size_t) (ARENA_ALIGN - 1);
}

/*
 * Lays the forest out in an arena.  With base == NULL only measures; then
 * sets the pointers of `forest` (which lives at the start of the arena).
 */
static size_t
arena_layout(const RcfParams *params, int box_mode, char *base)
{
	size_t		D = (size_t) params->dims * params->shingle_size;
	size_t		N = params->sample_size;
	size_t		T = params->number_of_trees;
	size_t		M = box_pool_size(params, box_mode);
	size_t		partial = box_mode == RCF_BOXES_PARTIAL ? 1 : 0;
	size_t		pooled = partial && M > 0 ? 1 : 0;
	size_t		shared = params->shingle_size > 1 ? 1 : 0;
	size_t		off = 0;
	RcfForest  *forest = (RcfForest *) base;

#define CARVE(field, type, count) \
	do { \
		if (base) \
			field = (type *) (base + off); \
		off = align_up(off + sizeof(type) * (count)); \
	} while (0)

	off = align_up(sizeof(RcfForest));
	CARVE(forest->trees, RcfTree, T);
	for (size_t t = 0; t < T; t++)
	{
		RcfTree    *tree = base ? &forest->trees[t] : NULL;

		CARVE(tree->nodes, RcfNode, N - 1);
		CARVE(tree->leaf_count, uint16_t, partial * (N - 1));
		CARVE(tree->node_box, uint16_t, pooled * (N - 1 + M));
		CARVE(tree->boxes, float, M * 2 * D);
		CARVE(tree->leaf_order, uint16_t, partial * 2 * N);
		CARVE(tree->leaf_mass, uint16_t, N);
		CARVE(tree->points, float, (1 - shared) * N * D);
		CARVE(tree->leaf_loc, uint32_t, shared * N);
		if (base)
		{
			if (!partial)
				tree->leaf_count = tree->leaf_order = NULL;
			if (!pooled)
				tree->node_box = NULL;
			if (M == 0)
				tree->boxes = NULL;
			if (shared)
				tree->points = NULL;
			else
				tree->leaf_loc = NULL;
		}
		CARVE(tree->heap_weight, float, N);
		CARVE(tree->heap_leaf, uint16_t, N);
	}
	CARVE(forest->shingle, float, D);
	CARVE(forest->query, float, D);
	CARVE(forest->evicted, float, D);
	CARVE(forest->query_d, double, D);
	CARVE(forest->path, int16_t, N * RCF_DESCEND_GROUP);
	CARVE(forest->stack, int16_t, N);
	CARVE(forest->box_lo, float, D);
	CARVE(forest->box_hi, float, D);
	CARVE(forest->accept_weight, float, T);
	CARVE(forest->attr_high, double, D);
	CARVE(forest->attr_low, double, D);
	CARVE(forest->log2_table, double, N + 1);
#undef CARVE
	return off;
}

size_t
rcf_arena_size(const RcfParams *params)
{
	return arena_layout(params, rcf_box_mode(params), NULL);
}

static void *
default_alloc(void *ctx, size_t size)
{
	(void) ctx;
	return malloc(size);
}

static void
default_free(void *ctx, void *ptr)
{
	(void) ctx;
	free(ptr);
}

/* Seeds tree t's generator from the forest seed. */
static uint64_t
tree_seed(uint64_t seed, int t)
{
	uint64_t	s = seed ^ (UINT64_C(0xD1B54A32D192ED03) * (uint64_t) (t + 1));

	return rcf_rng_next(&s);
}

RcfForest *
rcf_create(const RcfParams *params, const RcfAllocator *allocator)
{
	return rcf_create_boxes(params, allocator, rcf_box_mode(params));
}

/*
 * rcf_create with the boxes kept in a given way instead of the one chosen
 * for the parameters, so that tests can compare the ways on the same
 * points (RCF_BOXES_NONE only for points of one value).
 */
RcfForest *
rcf_create_boxes(const RcfParams *params, const RcfAllocator *allocator,
				 int box_mode)
{
	RcfAllocator alloc;
	size_t		size;
	char	   *base;
	RcfForest  *forest;

	if (rcf_params_check(params) != NULL)
		return NULL;
	if (box_mode == RCF_BOXES_NONE &&
		(long) params->dims * params->shingle_size != 1)
		return NULL;
	if (allocator)
		alloc = *allocator;
	else
	{
		alloc.alloc = default_alloc;
		alloc.free = default_free;
		alloc.ctx = NULL;
	}

	size = arena_layout(params, box_mode, NULL);
	base = alloc.alloc(alloc.ctx, size);
	if (base == NULL)
		return NULL;
	memset(base, 0, sizeof(RcfForest));
	forest = (RcfForest *) base;
	arena_layout(params, box_mode, base);

	forest->params = *params;
	if (forest->params.output_after < 0)
		forest->params.output_after = params->sample_size / 4;
	if (forest->params.output_after < 1)
		forest->params.output_after = 1;
	forest->D = params->dims * params->shingle_size;
	forest->N = params->sample_size;
	forest->lambda = params->time_decay > 0.0 ? 1.0 / params->time_decay : 0.0;
	forest->allocator = alloc;
	forest->bytes = forest->arena_bytes = size;
	forest->shared = params->shingle_size > 1;
	forest->records = NULL;
	forest->rec_live = NULL;
	forest->reserved = 0;
	forest->rec_cap = forest->rec_used = 0;
	forest->last_valid = false;
	forest->box_mode = box_mode;
	forest->box_partial = forest->box_mode == RCF_BOXES_PARTIAL;
	forest->box_slots = (int) box_pool_size(params, box_mode);
	forest->box_pooled = forest->box_partial && forest->box_slots > 0;
	forest->box_min_leaves = box_min_leaves(params, forest->box_slots);
	/* -0 would be written as itself: a second encoding of the same model. */
	if (forest->params.bounding_box_cache_fraction == 0.0)
		forest->params.bounding_box_cache_fraction = 0.0;

	for (int m = 0; m <= forest->N; m++)
		forest->log2_table[m] = log2(m + 1.0);
	for (int t = 0; t < params->number_of_trees; t++)
	{
		forest->trees[t].rng = tree_seed(params->seed, t);
		forest->trees[t].reject_below = 0.0;
		forest->trees[t].reject_until = 0;
		rcf_tree_init(forest, &forest->trees[t]);
	}
	if (forest->shared &&
		!rcf_store_resize(forest, rcf_store_initial_records(params)))
	{
		alloc.free(alloc.ctx, base);
		return NULL;
	}
	/* A forest encoded before its shingle fills must encode zeros, not garbage. */
	memset(forest->shingle, 0, sizeof(float) * forest->D);
	forest->shingle_next = 0;
	forest->updates = 0;
	forest->inserted = 0;
	forest->weight_base = 0;
	return forest;
}

void
rcf_free(RcfForest *forest)
{
	if (forest == NULL)
		return;
	if (forest->records)
		forest->allocator.free(forest->allocator.ctx, forest->records);
	forest->allocator.free(forest->allocator.ctx, forest);
}

const RcfParams *
rcf_params(const RcfForest *forest)
{
	return &forest->params;
}

size_t
rcf_bytes(const RcfForest *forest)
{
	return forest->bytes;
}

uint64_t
rcf_updates(const RcfForest *forest)
{
	return forest->updates;
}

int
rcf_output_ready(const RcfForest *forest)
{
	return forest->inserted >= (uint64_t) forest->params.output_after;
}

/*
 * Builds in forest->query the point that `input` completes: the last
 * shingle_size - 1 records followed by input, oldest first.
 */
static void
build_query(RcfForest *forest, const double *input)
{
	int			dims = forest->params.dims;
	int			S = forest->params.shingle_size;
	float	   *q = forest->query;

	for (int k = 1; k < S; k++)
	{
		int			r = (forest->shingle_next + k) % S;

		memcpy(q + (size_t) (k - 1) * dims, forest->shingle + (size_t) r * dims,
			   dims * sizeof(float));
	}
	for (int i = 0; i < dims; i++)
		q[(size_t) (S - 1) * dims + i] = (float) input[i];
	for (int i = 0; i < forest->D; i++)
		forest->query_d[i] = q[i];
}

double
rcf_score(RcfForest *forest, const double *input)
{
	if (!rcf_output_ready(forest))
		return 0.0;
	build_query(forest, input);
	return rcf_trees_score(forest, forest->query, forest->query_d) /
		forest->params.number_of_trees;
}

double
rcf_attribution(RcfForest *forest, const double *input,
				double *high, double *low)
{
	double		total = 0.0;
	int			T = forest->params.number_of_trees;
	int			D = forest->D;

	for (int i = 0; i < D; i++)
		high[i] = low[i] = 0.0;
	if (!rcf_output_ready(forest))
		return 0.0;
	build_query(forest, input);
	for (int t = 0; t < T; t++)
		total += rcf_tree_attribution(forest, &forest->trees[t], forest->query,
									  forest->query_d, high, low);
	for (int i = 0; i < D; i++)
	{
		high[i] /= T;
		low[i] /= T;
	}
	return total / T;
}

/*
 * A full sampler accepts u only if decay(seq) + ln(-ln u) < top, that is
 * u > exp(-exp(top - decay(seq))).  That bound falls as seq grows, so the
 * bound for seq + REJECT_SPAN, lowered by a margin far larger than float
 * rounding, rejects safely until then without computing any logarithm.
 */
#define REJECT_SPAN		256
#define REJECT_MARGIN	1e-3

static void
refresh_reject_bound(RcfForest *forest, RcfTree *tree, uint64_t seq)
{
	uint64_t	until = seq + REJECT_SPAN;
	double		decay = -forest->lambda * (double) (until - forest->weight_base);
	double		t = (double) tree->heap_weight[0] - decay + REJECT_MARGIN;

	tree->reject_below = exp(-exp(t));
	tree->reject_until = until;
}

int
rcf_last_record(const RcfForest *forest, double *record)
{
	int			dims = forest->params.dims;
	int			S = forest->params.shingle_size;
	int			newest = (forest->shingle_next + S - 1) % S;

	if (forest->updates == 0)
		return -1;
	for (int i = 0; i < dims; i++)
		record[i] = forest->shingle[(size_t) newest * dims + i];
	return 0;
}

/* Orders doubles, for medians. */
static int
cmp_double(const void *a, const void *b)
{
	double		x = *(const double *) a;
	double		y = *(const double *) b;

	return (x > y) - (x < y);
}

int
rcf_impute(RcfForest *forest, const double *input, const bool *missing,
		   double *expected)
{
	int			T = forest->params.number_of_trees;
	int			dims = forest->params.dims;
	int			last = forest->D - dims;	/* the input's place in the point */
	bool	   *mask;
	int			found = 0;

	if (forest->inserted == 0)
		return -1;
	build_query(forest, input);
	/* The attribution scratch array (D doubles) holds the D flags. */
	mask = (bool *) forest->attr_low;
	memset(mask, 0, forest->D * sizeof(bool));
	for (int i = 0; i < dims; i++)
		mask[last + i] = missing[i];

	for (int i = 0; i < dims; i++)
	{
		double		values[RCF_MAX_TREES];
		int			n = 0;

		expected[i] = input[i];
		if (!missing[i])
			continue;
		for (int t = 0; t < T; t++)
		{
			const float *leaf = rcf_tree_impute_leaf(forest, &forest->trees[t],
													 forest->query, mask);

			if (leaf)
				values[n++] = leaf[last + i];
		}
		if (n == 0)
			continue;
		qsort(values, n, sizeof(double), cmp_double);
		expected[i] = (n % 2) ? values[n / 2] :
			0.5 * (values[n / 2 - 1] + values[n / 2]);
		found++;
	}
	return found > 0 ? 0 : -1;
}

/*
 * Shifts the weight base to seq once the decay term grows large, so that
 * weights stay small enough for float precision.
 */
static void
maybe_rebase(RcfForest *forest, uint64_t seq)
{
	double		span = forest->lambda * (double) (seq - forest->weight_base);

	if (span <= RCF_REBASE_SPAN)
		return;
	for (int t = 0; t < forest->params.number_of_trees; t++)
	{
		rcf_sampler_shift(forest, &forest->trees[t], (float) span);
		forest->trees[t].reject_until = 0;
	}
	forest->weight_base = seq;
}

int
rcf_update(RcfForest *forest, const double *input)
{
	int			dims = forest->params.dims;
	int			S = forest->params.shingle_size;
	int			T = forest->params.number_of_trees;
	int			N = forest->N;
	uint64_t	seq;
	double		decay;
	bool		any = false;
	uint32_t	loc = 0;

	/*
	 * Room for the point's records first, so that running out of memory
	 * leaves the forest as it was (compaction only drops unused records).
	 */
	if (forest->shared && forest->updates + 1 >= (uint64_t) S &&
		!rcf_store_reserve(forest, (uint32_t) S))
		return -1;

	if (forest->reserved > 0)
		forest->reserved--;

	/* Shingle first: the point is the last S records. */
	build_query(forest, input);
	for (int i = 0; i < dims; i++)
		forest->shingle[(size_t) forest->shingle_next * dims + i] = (float) input[i];
	forest->shingle_next = (forest->shingle_next + 1) % S;
	forest->updates++;
	if (forest->updates < (uint64_t) S)
		return 0;

	seq = forest->inserted++;
	maybe_rebase(forest, seq);
	decay = -forest->lambda * (double) (seq - forest->weight_base);

	for (int t = 0; t < T; t++)
	{
		RcfTree    *tree = &forest->trees[t];
		double		u = rcf_rng_open_unit(&tree->rng);
		float		w;

		forest->accept_weight[t] = INFINITY;
		if (tree->heap_size == N)
		{
			if (seq >= tree->reject_until)
				refresh_reject_bound(forest, tree, seq);
			if (u <= tree->reject_below)
				continue;
		}
		w = (float) (decay + log(-log(u)));
		if (tree->heap_size < N || w < tree->heap_weight[0])
		{
			forest->accept_weight[t] = w;
			tree->reject_until = 0;
			any = true;
		}
	}
	if (!any)
		return 0;

	if (forest->shared)
		loc = rcf_store_append(forest, forest->query, seq);
	for (int t = 0; t < T; t++)
	{
		RcfTree    *tree = &forest->trees[t];
		int16_t		leaf;

		if (isinf(forest->accept_weight[t]))
			continue;
		if (tree->heap_size == N)
		{
			rcf_tree_delete(forest, tree, (int16_t) tree->heap_leaf[0]);
			leaf = rcf_tree_insert(forest, tree, forest->query, loc);
			rcf_sampler_replace_top(forest, tree, forest->accept_weight[t], leaf);
		}
		else
		{
			leaf = rcf_tree_insert(forest, tree, forest->query, loc);
			rcf_sampler_push(forest, tree, forest->accept_weight[t], leaf);
		}
	}
	return 0;
}

double
rcf_process(RcfForest *forest, const double *input)
{
	double		score = rcf_score(forest, input);

	rcf_update(forest, input);
	return score;
}

/*
 * Checks the whole forest: each sampler against its tree's leaf masses,
 * each tree, and with a shared store that every leaf's point lies in it.
 */
const char *
rcf_check(const RcfForest *forest)
{
	uint32_t   *entries;
	float	   *temp;
	const char *err = NULL;
	size_t		N = forest->N;
	size_t		size = sizeof(uint32_t) * N +
		sizeof(float) * (N - 1) * (2 * (size_t) forest->D + 1) +
		sizeof(int16_t) * (N - 1 + forest->box_slots);

	entries = forest->allocator.alloc(forest->allocator.ctx, size);
	if (entries == NULL)
		return "out of memory while checking";
	memset(entries, 0, size);
	temp = (float *) (entries + N);

	if (forest->shared &&
		(forest->records == NULL || forest->rec_used > forest->rec_cap ||
		 forest->rec_cap > rcf_store_max_records(&forest->params) ||
		 (forest->last_valid &&
		  (uint64_t) forest->last_loc + forest->params.shingle_size > forest->rec_used)))
		err = "the record store is inconsistent";
	for (int t = 0; t < forest->params.number_of_trees && !err; t++)
	{
		const RcfTree *tree = &forest->trees[t];

		err = rcf_sampler_check(tree, forest->N);
		if (err)
			break;
		for (int i = 0; i < tree->heap_size; i++)
		{
			uint32_t	leaf = tree->heap_leaf[i];

			if (leaf >= (uint32_t) forest->N || tree->leaf_mass[leaf] == 0)
			{
				err = "sampler refers to a leaf not in use";
				break;
			}
			entries[leaf]++;
		}
		for (int i = 0; i < forest->N && !err; i++)
		{
			if (entries[i] != tree->leaf_mass[i])
				err = "a leaf's mass differs from its sampler entries";
			else if (forest->shared && entries[i] > 0 &&
					 (uint64_t) tree->leaf_loc[i] + forest->params.shingle_size >
					 forest->rec_used)
				err = "a leaf refers to records beyond the store";
			entries[i] = 0;
		}
		if (!err)
			err = rcf_tree_check(forest, tree, temp);
	}
	if (!err && forest->inserted > 0 &&
		forest->updates != forest->inserted + forest->params.shingle_size - 1)
		err = "update counters disagree";
	forest->allocator.free(forest->allocator.ctx, entries);
	return err;
}
