/*
 * sampler.c
 *	  Time-decayed weighted reservoir sampling, one per tree.
 *
 * A point offered at sequence number s gets the weight
 * -lambda * s + ln(-ln u) with u uniform in (0, 1); the sampler keeps the
 * sample_size points of smallest weight in a max-heap, so the heap's top is
 * the point to evict when a lighter one arrives.  This is the reference
 * library's sampler: recent points are favoured by exp(lambda * age).
 *
 * Entries are ordered by weight and, between equal weights, by their
 * leaf's point (its place in the shared store, which keeps the order the
 * points came in, or its values): a total order, so that the top, the
 * only entry the forest reads, does not depend on how the heap is laid
 * out.  A decoded sampler is rebuilt from its entries (the encoding keeps
 * no layout) and then evicts exactly what the encoded one would have.
 */
#include "rcf_internal.h"

/*
 * Whether entry (wa, la) comes after (wb, lb) in the sampler's order:
 * heavier, or as heavy with a greater point.  Two entries of one leaf are
 * alike, whichever goes first.
 */
static inline bool
heavier(const RcfForest *forest, const RcfTree *tree, float wa, int la,
		float wb, int lb)
{
	if (wa != wb)
		return wa > wb;
	if (la == lb)
		return false;
	if (tree->leaf_loc)
		return tree->leaf_loc[la] > tree->leaf_loc[lb];
	return memcmp(rcf_leaf_point(forest, tree, la), rcf_leaf_point(forest, tree, lb),
				  sizeof(float) * forest->D) > 0;
}

/* Restores the heap order from position i downwards. */
static void
sift_down(const RcfForest *forest, RcfTree *tree, int i)
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
		if (child + 1 < size &&
			heavier(forest, tree, w[child + 1], leaf[child + 1], w[child], leaf[child]))
			child++;
		if (!heavier(forest, tree, w[child], leaf[child], moving, moving_leaf))
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
rcf_sampler_push(const RcfForest *forest, RcfTree *tree, float weight, int leaf)
{
	float	   *w = tree->heap_weight;
	int			i = tree->heap_size++;

	while (i > 0)
	{
		int			parent = (i - 1) / 2;

		if (!heavier(forest, tree, weight, leaf, w[parent], tree->heap_leaf[parent]))
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
rcf_sampler_replace_top(const RcfForest *forest, RcfTree *tree, float weight,
						int leaf)
{
	tree->heap_weight[0] = weight;
	tree->heap_leaf[0] = (uint16_t) leaf;
	sift_down(forest, tree, 0);
}

/*
 * Orders heap_size entries put in any order into a heap (the decoder's,
 * once the leaves hold their points).  Floyd's construction, each entry
 * sunk "bottom-up": down the path of heavier children to the bottom (the
 * choice of child needs no branch), then back up to where the entry
 * belongs, which is near the bottom for most entries.  It compares about
 * half as often as sift_down, whose comparisons are coin tosses here.
 */
void
rcf_sampler_heapify(const RcfForest *forest, RcfTree *tree)
{
	float	   *w = tree->heap_weight;
	uint16_t   *leaf = tree->heap_leaf;
	int			size = tree->heap_size;

	for (int i = size / 2 - 1; i >= 0; i--)
	{
		float		moving = w[i];
		uint16_t	moving_leaf = leaf[i];
		int			j = i;

		while (2 * j + 2 < size)
		{
			int			c = 2 * j + 1;

			j = c + heavier(forest, tree, w[c + 1], leaf[c + 1], w[c], leaf[c]);
		}
		if (2 * j + 1 < size)
			j = 2 * j + 1;
		/* Back up to the first entry on the path at least as heavy. */
		while (j > i && heavier(forest, tree, moving, moving_leaf, w[j], leaf[j]))
			j = (j - 1) / 2;
		/* The path's entries from i + 1 up move one step up. */
		while (j > i)
		{
			float		x = w[j];
			uint16_t	xl = leaf[j];

			w[j] = moving;
			leaf[j] = moving_leaf;
			moving = x;
			moving_leaf = xl;
			j = (j - 1) / 2;
		}
		w[i] = moving;
		leaf[i] = moving_leaf;
	}
}

/*
 * Adds delta to every weight.  Float addition is monotone, so weights stay
 * in order, but two may round to one value, which the order between their
 * points then decides: the heap is rebuilt (rarely: once per
 * RCF_REBASE_SPAN / lambda points).
 */
void
rcf_sampler_shift(const RcfForest *forest, RcfTree *tree, float delta)
{
	for (int i = 0; i < tree->heap_size; i++)
		tree->heap_weight[i] += delta;
	rcf_sampler_heapify(forest, tree);
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
