/*
 * store.c
 *	  The shared record store of a shingled forest: each input record once,
 *	  however many points (and trees) hold it.
 *
 * A shingled point is shingle_size consecutive records; the store keeps
 * records in the order they were appended, and a point is the offset of its
 * first record.  A point offered right after one already stored (within
 * shingle_size - 1 records of it) shares the records they have in common,
 * so a run of sampled points costs one record each, as in the AWS library's
 * PointStore.
 *
 * Nothing counts references: when the array is full, compaction marks the
 * records some leaf's point covers, moves them down in order, and
 * renumbers every leaf's offset (O(trees * sample_size * shingle_size),
 * once per many appends).  The marks live in the store's own block, after
 * the records (3/16 byte per record), so that compaction allocates nothing.
 * If compaction leaves less than an eighth free the array grows to what is
 * wanted plus a quarter (RCF_STORE_FREE_DIV, RCF_STORE_GROW_DIV), up to the
 * most that leaves can ever hold plus half, so that the memory bound
 * (limits.c) is known in advance.  The slack is kept small because the
 * records are most of a shingled forest: on bench/engine's reference
 * forest (shingle 8, 50 trees) 63,000 records are live after 100,000
 * points; a slack of an eighth compacts every few thousand points, at
 * O(trees * sample_size * shingle_size) each, under 1 % of the time.  Growing is the only
 * allocation after rcf_create; rcf_reserve does it ahead of time for a
 * caller that learns where it must not allocate (a detector's threads).
 */
#include "rcf_internal.h"

#ifndef RCF_STORE_FREE_DIV
#define RCF_STORE_FREE_DIV	8	/* grow if less than 1/8 is free */
#define RCF_STORE_GROW_DIV	4	/* to what is wanted and 1/4 more */
#endif

/*
 * Records every leaf and the point being offered can cover at once, when
 * no two points overlap.
 */
static uint64_t
store_live_max(const RcfParams *params)
{
	return ((uint64_t) params->number_of_trees * params->sample_size + 1) *
		(uint64_t) params->shingle_size;
}

/* The largest array the store ever allocates, in records. */
uint32_t
rcf_store_max_records(const RcfParams *params)
{
	uint64_t	live = store_live_max(params);

	return (uint32_t) (live + live / 2);
}

/* The array a new forest starts with: room for a few points' records. */
uint32_t
rcf_store_initial_records(const RcfParams *params)
{
	uint64_t	n = (uint64_t) params->shingle_size * 16;
	uint64_t	max = rcf_store_max_records(params);

	return (uint32_t) (n < max ? n : max);
}

/* Bytes of the marks compaction takes over `records` records. */
size_t
rcf_store_compact_scratch(uint32_t records)
{
	size_t		words = ((size_t) records + 63) / 64;

	return words * (sizeof(uint64_t) + sizeof(uint32_t));
}

/* Bytes of the store's block for `records` records: records, then marks. */
size_t
rcf_store_block_size(const RcfParams *params, uint32_t records)
{
	size_t		values = sizeof(float) * (size_t) params->dims * records;

	/* Rounded up so that the marks are 8-byte aligned. */
	values = (values + 7) & ~(size_t) 7;
	return values + rcf_store_compact_scratch(records);
}

/* Drops the records no leaf refers to. */
static void
store_compact(RcfForest *forest)
{
	int			S = forest->params.shingle_size;
	int			dims = forest->params.dims;
	uint32_t	used = forest->rec_used;
	size_t		words = ((size_t) used + 63) / 64;
	uint64_t   *live = forest->rec_live;
	uint32_t   *before = (uint32_t *) (live + ((size_t) forest->rec_cap + 63) / 64);
	uint32_t	kept = 0;

	memset(live, 0, words * sizeof(uint64_t));
	for (int t = 0; t < forest->params.number_of_trees; t++)
	{
		const RcfTree *tree = &forest->trees[t];

		for (int i = 0; i < forest->N; i++)
		{
			if (tree->leaf_mass[i] == 0)
				continue;
			for (uint32_t r = tree->leaf_loc[i]; r < tree->leaf_loc[i] + (uint32_t) S; r++)
				live[r / 64] |= UINT64_C(1) << (r % 64);
		}
	}
	for (size_t w = 0; w < words; w++)
	{
		before[w] = kept;
		kept += (uint32_t) __builtin_popcountll(live[w]);
	}
	/* Records only move down, so one pass in order moves each safely. */
	for (uint32_t r = 0, to = 0; r < used; r++)
	{
		if (!(live[r / 64] & (UINT64_C(1) << (r % 64))))
			continue;
		if (to != r)
			memcpy(forest->records + (size_t) to * dims,
				   forest->records + (size_t) r * dims, dims * sizeof(float));
		to++;
	}
	for (int t = 0; t < forest->params.number_of_trees; t++)
	{
		RcfTree    *tree = &forest->trees[t];

		for (int i = 0; i < forest->N; i++)
			if (tree->leaf_mass[i] > 0)
				tree->leaf_loc[i] = rcf_record_rank(live, before, tree->leaf_loc[i]);
	}

	/* The last point still ends the store only if all its records stayed. */
	if (forest->last_valid)
	{
		for (uint32_t r = forest->last_loc; r < forest->last_loc + (uint32_t) S; r++)
			if (!(live[r / 64] & (UINT64_C(1) << (r % 64))))
				forest->last_valid = false;
		if (forest->last_valid)
			forest->last_loc = rcf_record_rank(live, before, forest->last_loc);
	}
	forest->rec_used = kept;
}

/*
 * Moves the records into an array of `records` records (at least
 * rec_used).  Returns false, changing nothing, if it cannot be allocated.
 */
bool
rcf_store_resize(RcfForest *forest, uint32_t records)
{
	size_t		rec_bytes = sizeof(float) * (size_t) forest->params.dims;
	size_t		block = rcf_store_block_size(&forest->params, records);
	char	   *bigger;

	bigger = forest->allocator.alloc(forest->allocator.ctx, block);
	if (bigger == NULL)
		return false;
	if (forest->rec_used > 0)
		memcpy(bigger, forest->records, rec_bytes * forest->rec_used);
	if (forest->records)
		forest->allocator.free(forest->allocator.ctx, forest->records);
	forest->records = (float *) bigger;
	forest->rec_live = (uint64_t *) (bigger + block - rcf_store_compact_scratch(records));
	forest->rec_cap = records;
	forest->bytes = forest->arena_bytes + block;
	return true;
}

/*
 * Makes room for `count` more records: compacts when full, grows when
 * compaction leaves less than an eighth free, unless rcf_reserve promised
 * no allocation (forest->reserved).  Returns false if there is still no
 * room because memory ran out; the forest is unchanged then, but for
 * records dropped by compaction, which nothing referred to.
 */
bool
rcf_store_reserve(RcfForest *forest, uint32_t count)
{
	uint32_t	max = rcf_store_max_records(&forest->params);
	uint64_t	want;

	if ((uint64_t) forest->rec_used + count <= forest->rec_cap)
		return true;
	store_compact(forest);
	want = (uint64_t) forest->rec_used + count;
	if (want <= (uint64_t) forest->rec_cap - forest->rec_cap / RCF_STORE_FREE_DIV ||
		(forest->reserved > 0 && want <= forest->rec_cap))
		return true;
	if (forest->reserved > 0)
		return false;			/* cannot happen after rcf_reserve */
	/* What is live, not the old size, sets the new one: more than 7/8 of it. */
	want += want / RCF_STORE_GROW_DIV;
	if (want > max)
		want = max;
	if (want > forest->rec_cap && rcf_store_resize(forest, (uint32_t) want))
		return true;
	return (uint64_t) forest->rec_used + count <= forest->rec_cap;
}

/*
 * Stores `point`, offered at sequence number seq, and returns its offset.
 * It shares the records it has in common with the last point appended when
 * that one was offered less than shingle_size points before.  The caller
 * has reserved shingle_size records.
 */
uint32_t
rcf_store_append(RcfForest *forest, const float *point, uint64_t seq)
{
	int			S = forest->params.shingle_size;
	int			dims = forest->params.dims;
	uint32_t	loc;
	int			first;			/* the point's first record not stored */

	if (forest->last_valid && seq - forest->last_seq < (uint64_t) S &&
		forest->last_loc + (uint32_t) S == forest->rec_used)
	{
		loc = forest->last_loc + (uint32_t) (seq - forest->last_seq);
		first = S - (int) (seq - forest->last_seq);
	}
	else
	{
		loc = forest->rec_used;
		first = 0;
	}
	memcpy(forest->records + (size_t) forest->rec_used * dims,
		   point + (size_t) first * dims, sizeof(float) * (size_t) (S - first) * dims);
	forest->rec_used = loc + (uint32_t) S;
	forest->last_loc = loc;
	forest->last_seq = seq;
	forest->last_valid = true;
	return loc;
}

/*
 * Makes sure the next `updates` calls of rcf_update allocate nothing:
 * after compaction, room for every record they can append, or for the
 * most records leaves can hold and one more point, when that is less (then
 * compaction, which allocates nothing, always makes room).
 */
int
rcf_reserve(RcfForest *forest, uint64_t updates)
{
	const RcfParams *p = &forest->params;
	uint64_t	S = (uint64_t) p->shingle_size;
	uint64_t	live_max = ((uint64_t) p->number_of_trees * p->sample_size + 1) * S;
	uint64_t	want;

	forest->reserved = updates;
	if (!forest->shared)
		return 0;
	if (updates > live_max)
		updates = live_max;
	if ((uint64_t) forest->rec_used + updates * S <= forest->rec_cap)
		return 0;
	store_compact(forest);
	want = (uint64_t) forest->rec_used + updates * S;
	if (want > live_max)
		want = live_max;
	if (want <= forest->rec_cap)
		return 0;
	want += want / RCF_STORE_GROW_DIV;
	if (want > rcf_store_max_records(p))
		want = rcf_store_max_records(p);
	if (rcf_store_resize(forest, (uint32_t) want))
		return 0;
	forest->reserved = 0;
	return -1;
}

/*
 * After decoding: the records a store read from a model ends with are those
 * of one of the last shingle_size points offered when its last records
 * agree with the oldest of the shingle's, and the next point shares them as
 * it would have in the forest that was encoded (so that a decoded forest
 * goes on as that one would, store and all).  Otherwise nothing is shared.
 */
void
rcf_store_adopt_tail(RcfForest *forest)
{
	int			S = forest->params.shingle_size;
	int			dims = forest->params.dims;

	forest->last_valid = false;
	if (!forest->shared || forest->inserted == 0 || forest->rec_used < (uint32_t) S)
		return;
	for (int k = 0; k < S && (uint64_t) k < forest->inserted; k++)
	{
		/* Point inserted - 1 - k ends with the shingle's S - k oldest records. */
		const float *tail = forest->records +
			(size_t) (forest->rec_used - (uint32_t) (S - k)) * dims;
		bool		same = true;

		for (int j = 0; j < S - k && same; j++)
		{
			int			r = (forest->shingle_next + j) % S;

			same = memcmp(tail + (size_t) j * dims,
						  forest->shingle + (size_t) r * dims,
						  sizeof(float) * dims) == 0;
		}
		if (same)
		{
			forest->last_valid = true;
			forest->last_loc = forest->rec_used - (uint32_t) S;
			forest->last_seq = forest->inserted - 1 - (uint64_t) k;
			return;
		}
	}
}
