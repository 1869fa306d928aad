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
sift_down(RcfTree *tree, int i)
{
	float	   *w = tree->heap_weight;
	uint16_t   *leaf = tree->heap_leaf;
	int			size = tree->heap_size;
	float		moving = w[i];
	uint16_t	moving_leaf = leaf[i];

	for (;;)
	{
		int			child = 2 * i + 1;

		if (child >= size)
			break;
		if (child + 1 < size && w[child + 1] > w[child])
			child++;
		if (w[child] <= moving)
			break;
		w[i] = w[child];
		leaf[i] = leaf[child];
		i = child;
	}
	w[i] = moving;
	leaf[i] = moving_leaf;
}

/* Adds an entry to a heap that is not full. */
void
rcf_sampler_push(RcfTree *tree, float weight, int leaf)
{
	float	   *w = tree->heap_weight;
	int			i = tree->heap_size++;

	while (i > 0)
	{
		int			parent = (i - 1) / 2;

		if (w[parent] >= weight)
			break;
		w[i] = w[parent];
		tree->heap_leaf[i] = tree->heap_leaf[parent];
		i = parent;
	}
	w[i] = weight;
	tree->heap_leaf[i] = (uint16_t) leaf;
}

/* Replaces the heaviest entry (the one just evicted) by a new one. */
void
rcf_sampler_replace_top(RcfTree *tree, float weight, int leaf)
{
	tree->heap_weight[0] = weight;
	tree->heap_leaf[0] = (uint16_t) leaf;
	sift_down(tree, 0);
}

/*
 * Adds delta to every weight.  Float addition is monotone, so the heap
 * order still holds afterwards.
 */
void
rcf_sampler_shift(RcfTree *tree, float delta)
{
	for (int i = 0; i < tree->heap_size; i++)
		tree->heap_weight[i] += delta;
}

/* Checks the heap order and bounds. */
const char *
rcf_sampler_check(const RcfTree *tree, int capacity)
{
	const float *w = tree->heap_weight;

	if (tree->heap_size < 0 || tree->heap_size > capacity)
		return "sampler size out of range";
	for (int i = 0; i < tree->heap_size; i++)
	{
		if (!isfinite(w[i]))
			return "sampler weight is not finite";
		if (i > 0 && w[(i - 1) / 2] < w[i])
			return "sampler heap order violated";
	}
	return NULL;
}
