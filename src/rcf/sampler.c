/*
 * sampler.c
 *	  Time-decayed weighted reservoir sampling, one per tree.
 *
 * A point offered at sequence number s gets the weight
 * -lambda * s + ln(-ln u) with u uniform in (0, 1); the sampler keeps the
 * sample_size points of smallest weight in a max-heap, so the heap's top is
 * the point to evict when a lighter one arrives.  This is the reference
 * library's sampler: recent points are favoured by exp(lambda * age).
 */
#include "rcf_internal.h"

/* Restores the heap order from position i downwards. */
static void
sift_down(RcfSample *heap, int size, int i)
{
	RcfSample	moving = heap[i];

	for (;;)
	{
		int			child = 2 * i + 1;

		if (child >= size)
			break;
		if (child + 1 < size && heap[child + 1].weight > heap[child].weight)
			child++;
		if (heap[child].weight <= moving.weight)
			break;
		heap[i] = heap[child];
		i = child;
	}
	heap[i] = moving;
}

/* Adds an entry to a heap that is not full. */
void
rcf_sampler_push(RcfTree *tree, float weight, uint32_t leaf)
{
	RcfSample  *heap = tree->heap;
	int			i = tree->heap_size++;

	while (i > 0)
	{
		int			parent = (i - 1) / 2;

		if (heap[parent].weight >= weight)
			break;
		heap[i] = heap[parent];
		i = parent;
	}
	heap[i].weight = weight;
	heap[i].leaf = leaf;
}

/* Replaces the heaviest entry (the one just evicted) by a new one. */
void
rcf_sampler_replace_top(RcfTree *tree, float weight, uint32_t leaf)
{
	tree->heap[0].weight = weight;
	tree->heap[0].leaf = leaf;
	sift_down(tree->heap, tree->heap_size, 0);
}

/*
 * Adds delta to every weight.  Float addition is monotone, so the heap
 * order still holds afterwards.
 */
void
rcf_sampler_shift(RcfTree *tree, float delta)
{
	for (int i = 0; i < tree->heap_size; i++)
		tree->heap[i].weight += delta;
}

/* Checks the heap order and bounds. */
const char *
rcf_sampler_check(const RcfTree *tree, int capacity)
{
	if (tree->heap_size < 0 || tree->heap_size > capacity)
		return "sampler size out of range";
	for (int i = 0; i < tree->heap_size; i++)
	{
		if (!isfinite(tree->heap[i].weight))
			return "sampler weight is not finite";
		if (i > 0 && tree->heap[(i - 1) / 2].weight < tree->heap[i].weight)
			return "sampler heap order violated";
	}
	return NULL;
}
