/*
 * tree.c
 *	  Random cut trees: insert, delete, score and attribution.
 *
 * A tree holds the distinct points of one sampler.  Each internal node keeps
 * the exact bounding box of its subtree, so scoring never visits more than
 * the path from the root to one leaf.  Insert and delete follow the
 * reference algorithm (Guha et al. 2016, and the AWS library): the new
 * internal node goes at the highest level on the path whose random cut,
 * drawn over the box grown by the new point, separates the point; deleting
 * a leaf replaces its parent by its sibling.
 *
 * Points are float; box and probability arithmetic is done in double.
 */
#include "rcf_internal.h"

#ifdef __SSE2__
#include <emmintrin.h>
#endif

/* Free-list links are stored as uint32_t in leaves; recover the int16_t. */
static inline int16_t
leaf_link(uint32_t v)
{
	return (int16_t) (uint16_t) v;
}

/* Allocates an internal node from the free list. */
static int16_t
node_alloc(RcfTree *tree)
{
	int16_t		node = tree->free_node;

	tree->free_node = tree->nodes[node].next_free;
	return node;
}

/* Returns an internal node to the free list. */
static void
node_release(RcfTree *tree, int16_t node)
{
	tree->nodes[node].next_free = tree->free_node;
	tree->free_node = node;
}

/* Allocates a leaf from the free list. */
static int16_t
leaf_alloc(RcfTree *tree)
{
	int16_t		leaf = tree->free_leaf;

	tree->free_leaf = leaf_link(tree->leaves[leaf].slot);
	return leaf;
}

/* Returns a leaf to the free list. */
static void
leaf_release(RcfTree *tree, int16_t leaf)
{
	tree->leaves[leaf].slot = (uint32_t) (uint16_t) tree->free_leaf;
	tree->leaves[leaf].mass = 0;
	tree->free_leaf = leaf;
}

/*
 * Puts every node and leaf on its free list.  The lists hold indexes as
 * int16_t; RCF_NIL ends them.
 */
void
rcf_tree_init(RcfForest *forest, RcfTree *tree)
{
	int			n = forest->N;

	tree->root = RCF_NIL;
	tree->heap_size = 0;
	tree->free_node = RCF_NIL;
	for (int i = n - 2; i >= 0; i--)
	{
		memset(&tree->nodes[i], 0, sizeof(RcfNode));
		tree->nodes[i].next_free = tree->free_node;
		tree->free_node = (int16_t) i;
	}
	tree->free_leaf = RCF_NIL;
	for (int i = n - 1; i >= 0; i--)
	{
		tree->leaves[i].mass = 0;
		tree->leaves[i].slot = (uint32_t) (uint16_t) tree->free_leaf;
		tree->free_leaf = (int16_t) i;
	}
}

static inline bool
points_equal(const float *a, const float *b, int d)
{
	for (int i = 0; i < d; i++)
		if (a[i] != b[i])
			return false;
	return true;
}

/* The minimum corner of a child's box: the point itself for a leaf. */
static inline const float *
child_min(const RcfForest *forest, const RcfTree *tree, int16_t ref)
{
	if (RCF_IS_LEAF(ref))
		return rcf_leaf_point(forest, tree, RCF_LEAF_IDX(ref));
	return rcf_node_box(forest, tree, ref);
}

/* The maximum corner of a child's box. */
static inline const float *
child_max(const RcfForest *forest, const RcfTree *tree, int16_t ref)
{
	if (RCF_IS_LEAF(ref))
		return rcf_leaf_point(forest, tree, RCF_LEAF_IDX(ref));
	return rcf_node_box(forest, tree, ref) + forest->D;
}

/*
 * Draws a random cut over the box [lo, hi] grown to include q: a dimension
 * with probability proportional to its range, and a value uniform within
 * that range.  The value is rounded down to a float strictly below the
 * grown box's upper bound in that dimension, so that the cut always splits
 * the grown box into two non-empty sides.  Returns false only when the
 * grown box is a single point.
 */
static bool
random_cut(const float *lo, const float *hi, const float *q, int d,
		   uint64_t *rng, uint16_t *cut_dim, float *cut_value)
{
	double		total = 0.0;
	double		r;
	int			dim = -1;
	double		low = 0.0,
				high = 0.0;
	float		cut;

	for (int i = 0; i < d; i++)
	{
		double		a = lo[i] < q[i] ? lo[i] : q[i];
		double		b = hi[i] > q[i] ? hi[i] : q[i];

		total += b - a;
	}
	r = rcf_rng_unit(rng) * total;
	if (!(total > 0.0))
		return false;

	for (int i = 0; i < d; i++)
	{
		double		a = lo[i] < q[i] ? lo[i] : q[i];
		double		b = hi[i] > q[i] ? hi[i] : q[i];
		double		range = b - a;

		if (range <= 0.0)
			continue;
		dim = i;
		low = a;
		high = b;
		if (r < range)
			break;
		r -= range;
	}
	/* Rounding may leave r past the last range: the cut then falls there. */
	if (r > high - low)
		r = high - low;

	cut = (float) (low + r);
	if ((double) cut > low + r)
		cut = nextafterf(cut, -INFINITY);
	if ((double) cut >= high)
		cut = nextafterf((float) high, -INFINITY);
	if ((double) cut < low)
		cut = (float) low;
	*cut_dim = (uint16_t) dim;
	*cut_value = cut;
	return true;
}

/* True if the box [lo, hi] contains q. */
static inline bool
box_contains(const float *lo, const float *hi, const float *q, int d)
{
	for (int i = 0; i < d; i++)
		if (q[i] < lo[i] || q[i] > hi[i])
			return false;
	return true;
}

/*
 * True if q lies on the surface of the box [lo, hi] that contains it, that
 * is, if the box might shrink without q.
 */
static inline bool
box_touches(const float *lo, const float *hi, const float *q, int d)
{
	for (int i = 0; i < d; i++)
		if (q[i] == lo[i] || q[i] == hi[i])
			return true;
	return false;
}

/* Grows the box [lo, hi] to include q. */
static inline void
box_extend(float *lo, float *hi, const float *q, int d)
{
	for (int i = 0; i < d; i++)
	{
		if (q[i] < lo[i])
			lo[i] = q[i];
		if (q[i] > hi[i])
			hi[i] = q[i];
	}
}

/*
 * Recomputes the box of an internal node from its children.  Returns true
 * if it changed.
 */
static bool
box_refresh(const RcfForest *forest, RcfTree *tree, int16_t node)
{
	int			d = forest->D;
	const RcfNode *n = &tree->nodes[node];
	const float *lmin = child_min(forest, tree, n->child[RCF_LEFT]);
	const float *lmax = child_max(forest, tree, n->child[RCF_LEFT]);
	const float *rmin = child_min(forest, tree, n->child[RCF_RIGHT]);
	const float *rmax = child_max(forest, tree, n->child[RCF_RIGHT]);
	float	   *box = rcf_node_box(forest, tree, node);
	bool		changed = false;

	for (int i = 0; i < d; i++)
	{
		float		lo = lmin[i] < rmin[i] ? lmin[i] : rmin[i];
		float		hi = lmax[i] > rmax[i] ? lmax[i] : rmax[i];

		if (box[i] != lo || box[d + i] != hi)
		{
			box[i] = lo;
			box[d + i] = hi;
			changed = true;
		}
	}
	return changed;
}

/*
 * Distance of q outside the box [lo, hi], summed over dimensions, and the
 * sum of the box's ranges (returned in *range).  This is the inner loop of
 * scoring, so it runs two dimensions at a time with SSE2 (part of every
 * x86-64) and without branches, which would mispredict on every level.  The
 * portable version adds in the same order, so both give identical results.
 */
static inline double
box_gap(const float *lo, const float *hi, const double *q, int d,
		double *range)
{
	int			i = 0;
	double		g0,
				g1,
				r0,
				r1;
#ifdef __SSE2__
	__m128d		g = _mm_setzero_pd();
	__m128d		r = _mm_setzero_pd();
	__m128d		zero = _mm_setzero_pd();
	double		lanes[2];

	for (; i + 1 < d; i += 2)
	{
		__m128d		l = _mm_cvtps_pd(_mm_castsi128_ps(_mm_loadl_epi64((const __m128i *) (lo + i))));
		__m128d		h = _mm_cvtps_pd(_mm_castsi128_ps(_mm_loadl_epi64((const __m128i *) (hi + i))));
		__m128d		x = _mm_loadu_pd(q + i);
		__m128d		below = _mm_max_pd(_mm_sub_pd(l, x), zero);
		__m128d		above = _mm_max_pd(_mm_sub_pd(x, h), zero);

		g = _mm_add_pd(g, _mm_add_pd(below, above));
		r = _mm_add_pd(r, _mm_sub_pd(h, l));
	}
	_mm_storeu_pd(lanes, g);
	g0 = lanes[0];
	g1 = lanes[1];
	_mm_storeu_pd(lanes, r);
	r0 = lanes[0];
	r1 = lanes[1];
#else
	g0 = g1 = r0 = r1 = 0.0;
	for (; i + 1 < d; i += 2)
	{
		double		below0 = (double) lo[i] - q[i];
		double		above0 = q[i] - (double) hi[i];
		double		below1 = (double) lo[i + 1] - q[i + 1];
		double		above1 = q[i + 1] - (double) hi[i + 1];

		g0 += (below0 > 0.0 ? below0 : 0.0) + (above0 > 0.0 ? above0 : 0.0);
		g1 += (below1 > 0.0 ? below1 : 0.0) + (above1 > 0.0 ? above1 : 0.0);
		r0 += (double) hi[i] - (double) lo[i];
		r1 += (double) hi[i + 1] - (double) lo[i + 1];
	}
#endif
	if (i < d)
	{
		double		below = (double) lo[i] - q[i];
		double		above = q[i] - (double) hi[i];

		g0 += (below > 0.0 ? below : 0.0) + (above > 0.0 ? above : 0.0);
		r0 += (double) hi[i] - (double) lo[i];
	}
	*range = r0 + r1;
	return g0 + g1;
}

/* Exported forms of the allocators and of box_refresh, for the decoder. */
int16_t
rcf_tree_node_alloc(RcfTree *tree)
{
	return node_alloc(tree);
}

int16_t
rcf_tree_leaf_alloc(RcfTree *tree)
{
	return leaf_alloc(tree);
}

/*
 * Computes a decoded node's box from its children (whose boxes are already
 * known) and checks that its cut separates them.  Returns false if not.
 */
bool
rcf_tree_build_box(const RcfForest *forest, RcfTree *tree, int16_t node)
{
	int			d = forest->D;
	const RcfNode *n = &tree->nodes[node];
	const float *lmin = child_min(forest, tree, n->child[RCF_LEFT]);
	const float *lmax = child_max(forest, tree, n->child[RCF_LEFT]);
	const float *rmin = child_min(forest, tree, n->child[RCF_RIGHT]);
	const float *rmax = child_max(forest, tree, n->child[RCF_RIGHT]);
	float	   *box = rcf_node_box(forest, tree, node);

	if (!(lmax[n->dim] <= n->cut && rmin[n->dim] > n->cut))
		return false;
	for (int i = 0; i < d; i++)
	{
		box[i] = lmin[i] < rmin[i] ? lmin[i] : rmin[i];
		box[d + i] = lmax[i] > rmax[i] ? lmax[i] : rmax[i];
	}
	return true;
}

/*
 * Follows the cuts from the root to the leaf that q falls in, recording
 * the internal nodes passed in forest->path.  Returns the leaf reference
 * (or RCF_NIL for an empty tree) and sets *depth to the leaf's depth.
 */
static int16_t
descend(const RcfForest *forest, const RcfTree *tree, const float *q,
		int *depth)
{
	int16_t		ref = tree->root;
	int			level = 0;

	while (ref >= 0)
	{
		const RcfNode *n = &tree->nodes[ref];

		forest->path[level++] = ref;
		/* Indexing by the comparison keeps the loop free of branches. */
		ref = n->child[q[n->dim] > n->cut];
	}
	*depth = level;
	return ref;
}

/*
 * Inserts point q, known by `slot`, and returns the leaf that holds it: if
 * the tree already holds an equal point, that leaf, whose mass grows (it
 * keeps its own slot); otherwise a new leaf.
 */
int16_t
rcf_tree_insert(RcfForest *forest, RcfTree *tree, const float *q,
				uint32_t slot)
{
	int			d = forest->D;
	int			depth;
	int16_t		ref;
	int16_t		leaf;
	const float *leaf_point;
	int16_t		target;
	int			target_level;
	int			inside_level;
	uint16_t	cut_dim = 0;
	float		cut_value = 0.0f;
	int16_t		node;
	RcfNode    *n;
	float	   *box;

	if (tree->root == RCF_NIL)
	{
		leaf = leaf_alloc(tree);
		tree->leaves[leaf].slot = slot;
		tree->leaves[leaf].mass = 1;
		memcpy(rcf_leaf_point(forest, tree, leaf), q, d * sizeof(float));
		tree->root = RCF_LEAF_REF(leaf);
		return leaf;
	}

	ref = descend(forest, tree, q, &depth);
	leaf_point = rcf_leaf_point(forest, tree, RCF_LEAF_IDX(ref));
	if (points_equal(leaf_point, q, d))
	{
		tree->leaves[RCF_LEAF_IDX(ref)].mass++;
		return RCF_LEAF_IDX(ref);
	}

	/*
	 * Walk back up.  At the leaf the grown box is {leaf, q}, and any cut
	 * over it separates the two; above, a cut separates q only if it falls
	 * between q and the node's box.  The highest separating level wins.
	 * Once q lies inside a box no cut higher up can separate it.
	 */
	random_cut(leaf_point, leaf_point, q, d, &tree->rng, &cut_dim, &cut_value);
	target = ref;
	target_level = depth;
	inside_level = -1;
	for (int level = depth - 1; level >= 0; level--)
	{
		int16_t		p = forest->path[level];
		const float *pbox = rcf_node_box(forest, tree, p);
		uint16_t	cd;
		float		cv;

		if (box_contains(pbox, pbox + d, q, d))
		{
			inside_level = level;
			break;
		}
		random_cut(pbox, pbox + d, q, d, &tree->rng, &cd, &cv);
		if ((q[cd] <= cv && pbox[cd] > cv) ||
			(q[cd] > cv && pbox[d + cd] <= cv))
		{
			target = p;
			target_level = level;
			cut_dim = cd;
			cut_value = cv;
		}
	}

	leaf = leaf_alloc(tree);
	tree->leaves[leaf].slot = slot;
	tree->leaves[leaf].mass = 1;
	memcpy(rcf_leaf_point(forest, tree, leaf), q, d * sizeof(float));

	node = node_alloc(tree);
	n = &tree->nodes[node];
	n->dim = cut_dim;
	n->cut = cut_value;
	if (q[cut_dim] <= cut_value)
	{
		n->child[RCF_LEFT] = RCF_LEAF_REF(leaf);
		n->child[RCF_RIGHT] = target;
	}
	else
	{
		n->child[RCF_LEFT] = target;
		n->child[RCF_RIGHT] = RCF_LEAF_REF(leaf);
	}
	box = rcf_node_box(forest, tree, node);
	memcpy(box, child_min(forest, tree, target), d * sizeof(float));
	memcpy(box + d, child_max(forest, tree, target), d * sizeof(float));
	box_extend(box, box + d, q, d);

	if (target_level == 0)
		tree->root = node;
	else
	{
		RcfNode    *parent = &tree->nodes[forest->path[target_level - 1]];

		if (parent->child[RCF_LEFT] == target)
			parent->child[RCF_LEFT] = node;
		else
			parent->child[RCF_RIGHT] = node;
	}

	/* Boxes from inside_level up already contain q. */
	for (int level = target_level - 1; level > inside_level; level--)
	{
		float	   *pbox = rcf_node_box(forest, tree, forest->path[level]);

		box_extend(pbox, pbox + d, q, d);
	}
	return leaf;
}

/*
 * Removes one copy of the point that `leaf` holds.  Returns false if the
 * descent to that point does not reach the leaf, which means the forest is
 * corrupt.
 */
bool
rcf_tree_delete(RcfForest *forest, RcfTree *tree, int16_t leaf)
{
	/* A copy: the leaf may be freed before the boxes above are refreshed. */
	float	   *q = forest->evicted;
	int			depth;
	int16_t		ref;
	int16_t		parent;
	int16_t		sibling;

	if (tree->root == RCF_NIL || leaf < 0 || leaf >= forest->N)
		return false;
	memcpy(q, rcf_leaf_point(forest, tree, leaf), forest->D * sizeof(float));
	ref = descend(forest, tree, q, &depth);
	if (ref != RCF_LEAF_REF(leaf) || tree->leaves[leaf].mass == 0)
		return false;

	if (--tree->leaves[leaf].mass > 0)
		return true;

	leaf_release(tree, leaf);
	if (depth == 0)
	{
		tree->root = RCF_NIL;
		return true;
	}

	parent = forest->path[depth - 1];
	sibling = tree->nodes[parent].child[RCF_LEFT] == ref ?
		tree->nodes[parent].child[RCF_RIGHT] : tree->nodes[parent].child[RCF_LEFT];
	if (depth == 1)
		tree->root = sibling;
	else
	{
		RcfNode    *g = &tree->nodes[forest->path[depth - 2]];

		if (g->child[RCF_LEFT] == parent)
			g->child[RCF_LEFT] = sibling;
		else
			g->child[RCF_RIGHT] = sibling;
	}
	node_release(tree, parent);

	/*
	 * Boxes above can only shrink, and only where q lay on their surface;
	 * stop at the first box that does not change.
	 */
	for (int level = depth - 2; level >= 0; level--)
	{
		int16_t		node = forest->path[level];
		const float *box = rcf_node_box(forest, tree, node);

		if (!box_touches(box, box + forest->D, q, forest->D) ||
			!box_refresh(forest, tree, node))
			break;
	}
	return true;
}

/*
 * Follows the cuts of several trees at once.  Each descent is a chain of
 * dependent loads; interleaving independent chains lets the processor
 * overlap their cache misses, which is most of the cost of scoring.  Paths
 * go to forest->path + k * sample_size.
 */
static void
descend_group(const RcfForest *forest, const RcfTree *trees, int count,
			  const float *q, int16_t *refs, int *depths)
{
	bool		active = false;

	for (int k = 0; k < count; k++)
	{
		refs[k] = trees[k].root;
		depths[k] = 0;
		active |= refs[k] >= 0;
	}
	while (active)
	{
		active = false;
		for (int k = 0; k < count; k++)
		{
			int16_t		ref = refs[k];

			if (ref >= 0)
			{
				const RcfNode *n = &trees[k].nodes[ref];

				forest->path[k * forest->N + depths[k]++] = ref;
				ref = n->child[q[n->dim] > n->cut];
				refs[k] = ref;
				if (ref >= 0)
					active = true;
				else
				{
					/*
					 * What scoring reads next, the leaf's point and the box
					 * above it, loads while the other trees descend.
					 */
					RCF_PREFETCH(rcf_leaf_point(forest, &trees[k], RCF_LEAF_IDX(ref)));
					RCF_PREFETCH(rcf_node_box(forest, &trees[k],
											  forest->path[k * forest->N + depths[k] - 1]));
				}
			}
		}
	}
}

/*
 * Expected inverse depth of q in one tree (its anomaly score), given the
 * leaf q falls in and the path to it; normalised by log2(mass + 1) as the
 * reference library does.
 */
static double
score_from_leaf(const RcfForest *forest, const RcfTree *tree, const float *q,
				const double *qd, int16_t ref, int depth, const int16_t *path)
{
	int			d = forest->D;
	const RcfLeaf *leaf = &tree->leaves[RCF_LEAF_IDX(ref)];
	double		score;

	if (points_equal(rcf_leaf_point(forest, tree, RCF_LEAF_IDX(ref)), q, d))
	{
		double		m = leaf->mass;

		score = (1.0 - m / (2.0 * tree->heap_size)) /
			(depth + forest->log2_table[leaf->mass]);
	}
	else
		score = 1.0 / (depth + 1);

	/* Once q is inside a box it is inside every box above: stop. */
	for (int level = depth - 1; level >= 0; level--)
	{
		const float *box = rcf_node_box(forest, tree, path[level]);
		double		range;
		double		gap = box_gap(box, box + d, qd, d, &range);
		double		p;

		if (gap == 0.0)
			break;
		p = gap / (range + gap);
		score = p / (level + 1) + (1.0 - p) * score;
	}
	return score * forest->log2_table[tree->heap_size];
}

/* Sum over all trees of their scores of q. */
double
rcf_trees_score(const RcfForest *forest, const float *q, const double *qd)
{
	int			T = forest->params.number_of_trees;
	double		total = 0.0;
	int16_t		refs[RCF_DESCEND_GROUP];
	int			depths[RCF_DESCEND_GROUP];

	for (int t = 0; t < T; t += RCF_DESCEND_GROUP)
	{
		int			count = T - t < RCF_DESCEND_GROUP ? T - t : RCF_DESCEND_GROUP;
		const RcfTree *trees = &forest->trees[t];

		descend_group(forest, trees, count, q, refs, depths);
		for (int k = 0; k < count; k++)
		{
			if (refs[k] == RCF_NIL)
				continue;
			total += score_from_leaf(forest, &trees[k], q, qd, refs[k],
									 depths[k], forest->path + k * forest->N);
		}
	}
	return total;
}

/*
 * The tree's score of q split by dimension and direction; adds into high
 * and low (D entries each) and returns the score.
 */
double
rcf_tree_attribution(const RcfForest *forest, const RcfTree *tree,
					 const float *q, const double *qd,
					 double *high, double *low)
{
	int			d = forest->D;
	int			depth;
	int16_t		ref;
	const RcfLeaf *leaf;
	const float *lp;
	double		mass = tree->heap_size;
	double		norm = forest->log2_table[tree->heap_size];
	double		score;
	double	   *h = forest->attr_high;
	double	   *l = forest->attr_low;

	if (tree->root == RCF_NIL)
		return 0.0;
	ref = descend(forest, tree, q, &depth);
	leaf = &tree->leaves[RCF_LEAF_IDX(ref)];
	lp = rcf_leaf_point(forest, tree, RCF_LEAF_IDX(ref));
	if (points_equal(lp, q, d))
	{
		double		m = leaf->mass;

		score = (1.0 - m / (2.0 * mass)) /
			(depth + forest->log2_table[leaf->mass]);
		for (int i = 0; i < d; i++)
			h[i] = l[i] = score / (2.0 * d);
	}
	else
	{
		double		total = 0.0;

		score = 1.0 / (depth + 1);
		for (int i = 0; i < d; i++)
			total += fabs((double) q[i] - (double) lp[i]);
		for (int i = 0; i < d; i++)
		{
			double		diff = (double) q[i] - (double) lp[i];

			h[i] = diff > 0 ? score * diff / total : 0.0;
			l[i] = diff < 0 ? -score * diff / total : 0.0;
		}
	}

	for (int level = depth - 1; level >= 0; level--)
	{
		const float *box = rcf_node_box(forest, tree, forest->path[level]);
		double		range;
		double		gap = box_gap(box, box + d, qd, d, &range);
		double		p;
		double		unseen = 1.0 / (level + 1);

		if (gap == 0.0)
			break;
		range += gap;
		p = gap / range;
		for (int i = 0; i < d; i++)
		{
			double		x = q[i];
			double		above = x > box[d + i] ? x - box[d + i] : 0.0;
			double		below = x < box[i] ? box[i] - x : 0.0;

			h[i] = (1.0 - p) * h[i] + unseen * above / range;
			l[i] = (1.0 - p) * l[i] + unseen * below / range;
		}
		score = p * unseen + (1.0 - p) * score;
	}

	for (int i = 0; i < d; i++)
	{
		high[i] += h[i] * norm;
		low[i] += l[i] * norm;
	}
	return score * norm;
}

/*
 * Checks the tree: reachable nodes form a proper binary tree over the
 * leaves, every cached box is exactly the box of its subtree, every cut
 * separates its children, masses add up to the sampler's size, and the
 * free lists hold exactly the unused entries.  Counts each leaf's mass into
 * refs[slot] so the caller can check the slots' reference counts, and
 * checks that leaves with one slot hold one point: slot_point[slot] is the
 * first such leaf's values seen by any tree.
 */
const char *
rcf_tree_check(const RcfForest *forest, const RcfTree *tree, uint32_t *refs,
			   const float **slot_point)
{
	int			d = forest->D;
	int			n = forest->N;
	int16_t    *stack = forest->path;
	int			top = 0;
	int			internal = 0;
	int			leaves = 0;
	long		mass = 0;
	int			free_count;
	int16_t		f;

	if (tree->root != RCF_NIL)
		stack[top++] = tree->root;
	while (top > 0)
	{
		int16_t		ref = stack[--top];

		if (RCF_IS_LEAF(ref))
		{
			int			idx = RCF_LEAF_IDX(ref);

			if (idx >= n)
				return "leaf index out of range";
			if (tree->leaves[idx].mass == 0)
				return "reachable leaf has zero mass";
			if (tree->leaves[idx].slot >= forest->capacity)
				return "leaf refers to a slot out of range";
			if (slot_point[tree->leaves[idx].slot] == NULL)
				slot_point[tree->leaves[idx].slot] = rcf_leaf_point(forest, tree, idx);
			else if (memcmp(slot_point[tree->leaves[idx].slot],
							rcf_leaf_point(forest, tree, idx), d * sizeof(float)) != 0)
				return "leaves of one slot hold different points";
			mass += tree->leaves[idx].mass;
			refs[tree->leaves[idx].slot] += tree->leaves[idx].mass;
			leaves++;
		}
		else
		{
			const RcfNode *node;
			const float *box;
			const float *lmin,
					   *lmax,
					   *rmin,
					   *rmax;

			if (ref >= n - 1)
				return "node index out of range";
			if (++internal > n - 1)
				return "more internal nodes than the sample size allows";
			node = &tree->nodes[ref];
			if (node->dim >= d)
				return "cut dimension out of range";
			if (!isfinite(node->cut))
				return "cut value is not finite";
			if (top + 2 > n)
				return "tree deeper than its size";
			box = rcf_node_box(forest, tree, ref);
			lmin = child_min(forest, tree, node->child[RCF_LEFT]);
			lmax = child_max(forest, tree, node->child[RCF_LEFT]);
			rmin = child_min(forest, tree, node->child[RCF_RIGHT]);
			rmax = child_max(forest, tree, node->child[RCF_RIGHT]);
			if ((!RCF_IS_LEAF(node->child[RCF_LEFT]) && node->child[RCF_LEFT] >= n - 1) ||
				(!RCF_IS_LEAF(node->child[RCF_RIGHT]) && node->child[RCF_RIGHT] >= n - 1) ||
				(RCF_IS_LEAF(node->child[RCF_LEFT]) && RCF_LEAF_IDX(node->child[RCF_LEFT]) >= n) ||
				(RCF_IS_LEAF(node->child[RCF_RIGHT]) && RCF_LEAF_IDX(node->child[RCF_RIGHT]) >= n))
				return "child reference out of range";
			for (int i = 0; i < d; i++)
			{
				float		lo = lmin[i] < rmin[i] ? lmin[i] : rmin[i];
				float		hi = lmax[i] > rmax[i] ? lmax[i] : rmax[i];

				if (box[i] != lo || box[d + i] != hi)
					return "cached box differs from the box of its subtree";
			}
			if (!(lmax[node->dim] <= node->cut && rmin[node->dim] > node->cut))
				return "cut does not separate the children";
			stack[top++] = node->child[RCF_RIGHT];
			stack[top++] = node->child[RCF_LEFT];
		}
	}
	if (leaves > 0 && internal != leaves - 1)
		return "internal node count is not leaf count minus one";
	if (mass != tree->heap_size)
		return "leaf masses do not add up to the sample size";

	free_count = 0;
	for (f = tree->free_node; f != RCF_NIL; f = tree->nodes[f].next_free)
	{
		if (f < 0 || f >= n - 1 || ++free_count > n - 1)
			return "node free list is corrupt";
	}
	if (free_count + internal != n - 1)
		return "nodes leaked from the free list";
	free_count = 0;
	for (f = tree->free_leaf; f != RCF_NIL; f = leaf_link(tree->leaves[f].slot))
	{
		if (f < 0 || f >= n || ++free_count > n)
			return "leaf free list is corrupt";
	}
	if (free_count + leaves != n)
		return "leaves leaked from the free list";
	return NULL;
}

/*
 * The leaf a tree would hold q in if the dimensions flagged in `missing`
 * were unknown: cuts on known dimensions route q as usual; at a cut on a
 * missing dimension q goes to the side whose box lies nearer to it in the
 * known dimensions (L1 distance), so the leaf is a sampled point that
 * agrees with q where q is known.  With nothing known, the side with the
 * tighter box, the denser region, wins.  Returns the leaf's point.
 */
const float *
rcf_tree_impute_leaf(const RcfForest *forest, const RcfTree *tree,
					 const float *q, const bool *missing)
{
	int			d = forest->D;
	int16_t		ref = tree->root;

	if (ref == RCF_NIL)
		return NULL;
	while (ref >= 0)
	{
		const RcfNode *n = &tree->nodes[ref];

		if (!missing[n->dim])
			ref = n->child[q[n->dim] > n->cut];
		else
		{
			double		dist[2] = {0.0, 0.0};
			double		span[2] = {0.0, 0.0};

			for (int side = 0; side < 2; side++)
			{
				const float *lo = child_min(forest, tree, n->child[side]);
				const float *hi = child_max(forest, tree, n->child[side]);

				for (int i = 0; i < d; i++)
				{
					span[side] += (double) hi[i] - lo[i];
					if (missing[i])
						continue;
					if (q[i] < lo[i])
						dist[side] += (double) lo[i] - q[i];
					else if (q[i] > hi[i])
						dist[side] += (double) q[i] - hi[i];
				}
			}
			if (dist[0] != dist[1])
				ref = n->child[dist[1] < dist[0]];
			else
				ref = n->child[span[1] < span[0]];
		}
	}
	return rcf_leaf_point(forest, tree, RCF_LEAF_IDX(ref));
}
