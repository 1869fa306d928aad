/*
 * tree.c
 *	  Random cut trees: insert, delete, score and attribution.
 *
 * A tree holds the distinct points of one sampler.  An internal node with
 * many leaves below keeps the exact bounding box of its subtree; a smaller
 * one's box is the union of its few points, recomputed when needed from
 * the run of its leaves in the tree's left-to-right order (see
 * rcf_internal.h), so scoring visits the path from the root to one leaf and
 * the few points beside its lowest levels.  Insert and delete follow the
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

/*
 * Allocates an internal node: the last one freed, else the lowest never
 * used (which gets its box slot, or none, now: a new forest touches only
 * the nodes it uses, so that a young forest costs little memory and time).
 */
static int16_t
node_alloc(const RcfForest *forest, RcfTree *tree)
{
	int16_t		node = tree->free_node;

	if (node != RCF_NIL)
	{
		tree->free_node = tree->nodes[node].child[0];
		return node;
	}
	node = tree->node_hw++;
	if (forest->box_pooled)
		tree->node_box[node] = RCF_NO_BOX;
	return node;
}

/*
 * Returns a node's cached box, if any, to the pool.  Without a pool, every
 * node keeps the box at its own index.
 */
static void
box_release(const RcfForest *forest, RcfTree *tree, int16_t node)
{
	if (forest->box_pooled && tree->node_box[node] != RCF_NO_BOX)
	{
		rcf_box_free(forest, tree)[tree->box_nfree++] = tree->node_box[node];
		tree->node_box[node] = RCF_NO_BOX;
	}
}

/* Returns an internal node, and its box, to the free lists. */
static void
node_release(const RcfForest *forest, RcfTree *tree, int16_t node)
{
	box_release(forest, tree, node);
	tree->nodes[node].child[0] = tree->free_node;
	tree->free_node = node;
}

/* Allocates a leaf: the last one freed, else the lowest never used. */
static int16_t
leaf_alloc(const RcfForest *forest, RcfTree *tree)
{
	int16_t		leaf = tree->free_leaf;

	if (leaf == RCF_NIL)
		return tree->leaf_hw++;
	tree->free_leaf = rcf_leaf_next(tree, leaf, forest->D);
	return leaf;
}

/* Returns a leaf to the free list. */
static void
leaf_release(const RcfForest *forest, RcfTree *tree, int16_t leaf)
{
	rcf_set_leaf_next(tree, leaf, forest->D, tree->free_leaf);
	tree->leaf_mass[leaf] = 0;
	tree->free_leaf = leaf;
}

/*
 * Gives a new leaf point q: its offset in the shared store, or a copy of
 * its values.
 */
static void
leaf_set_point(const RcfForest *forest, RcfTree *tree, int16_t leaf,
			   const float *q, uint32_t loc)
{
	if (tree->leaf_loc)
		tree->leaf_loc[leaf] = loc;
	else
		memcpy(tree->points + (size_t) leaf * forest->D, q,
			   forest->D * sizeof(float));
}

/*
 * Empties a tree: no node or leaf used yet (they are handed out from the
 * lowest index up, then from the free lists), every box slot in the pool.
 * Only the leaf masses are written, which checks and scans read for every
 * leaf; a free-list link is a node's child[0], or what a free leaf does not
 * use, and RCF_NIL ends a list.  The box pool is a stack with the lowest
 * slot on top.
 */
void
rcf_tree_init(RcfForest *forest, RcfTree *tree)
{
	tree->root = RCF_NIL;
	tree->heap_size = 0;
	tree->free_node = RCF_NIL;
	tree->free_leaf = RCF_NIL;
	tree->node_hw = 0;
	tree->leaf_hw = 0;
	memset(tree->leaf_mass, 0, sizeof(uint16_t) * forest->N);
	tree->box_nfree = 0;
	if (forest->box_partial)
	{
		tree->box_nfree = (uint16_t) forest->box_slots;
		for (int i = 0; i < forest->box_slots; i++)
			rcf_box_free(forest, tree)[i] = (uint16_t) (forest->box_slots - 1 - i);
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

/* Leaves (distinct points) in the subtree at ref. */
static inline int
subtree_leaves(const RcfTree *tree, int16_t ref)
{
	return RCF_IS_LEAF(ref) ? 1 : tree->leaf_count[ref];
}

/* The leftmost (side 0) or rightmost (side 1) leaf of the subtree at ref. */
static inline int
edge_leaf(const RcfTree *tree, int16_t ref, int side)
{
	while (ref >= 0)
		ref = tree->nodes[ref].child[side];
	return RCF_LEAF_IDX(ref);
}

/*
 * Partial caching keeps the leaves in their left-to-right order, in which
 * every subtree's leaves are a run (tree->leaf_order, with each leaf's
 * place in rcf_leaf_pos).  Puts `leaf` at place `at` among the n leaves
 * listed, moving the later ones up; insertions and deletions are rare next
 * to scoring (a tree takes about sample_size / time_decay of the points).
 */
static void
order_insert(const RcfForest *forest, RcfTree *tree, int leaf, int at, int n)
{
	uint16_t   *order = tree->leaf_order;

	memmove(order + at + 1, order + at, (n - at) * sizeof(uint16_t));
	order[at] = (uint16_t) leaf;
	for (int k = at; k <= n; k++)
		rcf_leaf_pos(forest, tree)[order[k]] = (uint16_t) k;
}

/* Takes `leaf` out of the order of n leaves. */
static void
order_remove(const RcfForest *forest, RcfTree *tree, int leaf, int n)
{
	uint16_t   *order = tree->leaf_order;
	int			at = rcf_leaf_pos(forest, tree)[leaf];

	memmove(order + at, order + at + 1, (n - at - 1) * sizeof(uint16_t));
	for (int k = at; k < n - 1; k++)
		rcf_leaf_pos(forest, tree)[order[k]] = (uint16_t) k;
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

/* Copies d values; a call to memcpy would cost more than the copy. */
static inline void
box_copy(float *to, const float *from, int d)
{
	int			i = 0;

#ifdef __SSE2__
	for (; i + 3 < d; i += 4)
		_mm_storeu_ps(to + i, _mm_loadu_ps(from + i));
#endif
	for (; i < d; i++)
		to[i] = from[i];
}

/*
 * Grows the box [lo, hi] to include q.  The comparisons keep the box's
 * value on ties, as minps/maxps do with the box as second operand, so that
 * the vector and scalar forms give the same floats (down to the sign of a
 * zero); without branches, which would mispredict on every new point.
 */
static inline void
box_extend(float *lo, float *hi, const float *q, int d)
{
	int			i = 0;

#ifdef __SSE2__
	for (; i + 3 < d; i += 4)
	{
		__m128		x = _mm_loadu_ps(q + i);

		_mm_storeu_ps(lo + i, _mm_min_ps(x, _mm_loadu_ps(lo + i)));
		_mm_storeu_ps(hi + i, _mm_max_ps(x, _mm_loadu_ps(hi + i)));
	}
#endif
	for (; i < d; i++)
	{
		lo[i] = q[i] < lo[i] ? q[i] : lo[i];
		hi[i] = q[i] > hi[i] ? q[i] : hi[i];
	}
}

/* Grows the box [lo, hi] to include the box [blo, bhi], as box_extend. */
static inline void
box_union(float *lo, float *hi, const float *blo, const float *bhi, int d)
{
	int			i = 0;

#ifdef __SSE2__
	for (; i + 3 < d; i += 4)
	{
		_mm_storeu_ps(lo + i, _mm_min_ps(_mm_loadu_ps(blo + i), _mm_loadu_ps(lo + i)));
		_mm_storeu_ps(hi + i, _mm_max_ps(_mm_loadu_ps(bhi + i), _mm_loadu_ps(hi + i)));
	}
#endif
	for (; i < d; i++)
	{
		lo[i] = blo[i] < lo[i] ? blo[i] : lo[i];
		hi[i] = bhi[i] > hi[i] ? bhi[i] : hi[i];
	}
}

/*
 * With points of one value (RCF_BOXES_NONE), the leftmost (side 0, the
 * smallest value) or the rightmost (side 1, the largest) leaf's point of the
 * subtree at ref: every value left of a cut is at most the cut, every value
 * right of it above.
 */
static inline const float *
subtree_end(const RcfTree *tree, int16_t ref, int side)
{
	while (ref >= 0)
		ref = tree->nodes[ref].child[side];
	return tree->points + RCF_LEAF_IDX(ref);
}

/*
 * Partial caching: grows the box [lo, hi] by the points of the `count`
 * leaves from place `first` of the left-to-right order.  A run of the order
 * is an array, so the points' loads do not wait on one another (a walk
 * down the subtree would, and mispredict at every node); four dimensions
 * at a time, over all the points, the box stays in registers.  Each
 * dimension still takes the points in order, so the values (down to the
 * sign of a zero) are those of box_extend point by point.
 */
static inline void
run_grow(const RcfForest *forest, const RcfTree *tree, int first, int count,
		 float *lo, float *hi)
{
	const uint16_t *order = tree->leaf_order + first;
	int			d = forest->D;
	const float *base = tree->leaf_loc ? forest->records : tree->points;
	const uint32_t *loc = tree->leaf_loc;
	size_t		stride = tree->leaf_loc ? (size_t) forest->params.dims : (size_t) d;
	int			i = 0;

#ifdef __SSE2__
	for (; i + 3 < d; i += 4)
	{
		__m128		l = _mm_loadu_ps(lo + i);
		__m128		h = _mm_loadu_ps(hi + i);

		for (int k = 0; k < count; k++)
		{
			size_t		at = loc ? loc[order[k]] : order[k];
			__m128		x = _mm_loadu_ps(base + at * stride + i);

			l = _mm_min_ps(x, l);
			h = _mm_max_ps(x, h);
		}
		_mm_storeu_ps(lo + i, l);
		_mm_storeu_ps(hi + i, h);
	}
#endif
	for (; i < d; i++)
	{
		float		l = lo[i];
		float		h = hi[i];

		for (int k = 0; k < count; k++)
		{
			size_t		at = loc ? loc[order[k]] : order[k];
			float		x = base[at * stride + i];

			l = x < l ? x : l;
			h = x > h ? x : h;
		}
		lo[i] = l;
		hi[i] = h;
	}
}

/*
 * Partial caching: grows [lo, hi] by the subtree at ref, from its cached
 * box when it has one, else from its leaves' run.
 */
static void
subtree_grow(const RcfForest *forest, const RcfTree *tree, int16_t ref,
			 float *lo, float *hi)
{
	int			d = forest->D;
	const float *box;

	if (RCF_IS_LEAF(ref))
		box_extend(lo, hi, rcf_leaf_point(forest, tree, RCF_LEAF_IDX(ref)), d);
	else if ((box = rcf_node_box(forest, tree, ref)) != NULL)
		box_union(lo, hi, box, box + d, d);
	else
		run_grow(forest, tree, rcf_leaf_pos(forest, tree)[edge_leaf(tree, ref, RCF_LEFT)],
				 tree->leaf_count[ref], lo, hi);
}

/*
 * The next leaf, left to right, of the subtree a walk started at, or -1
 * after the last: a walk that goes down left children first, with the right
 * ones waiting on stack.
 */
static inline int
leaf_walk_next(const RcfTree *tree, int16_t *stack, int *top)
{
	int16_t		ref;

	if (*top == 0)
		return -1;
	ref = stack[--*top];
	while (ref >= 0)
	{
		stack[(*top)++] = tree->nodes[ref].child[RCF_RIGHT];
		ref = tree->nodes[ref].child[RCF_LEFT];
	}
	return RCF_LEAF_IDX(ref);
}

/*
 * Starts leaf_walk_next's walk of the subtree at ref (a node or a leaf;
 * RCF_NIL: an empty tree's root, no leaf); returns its top.
 */
static inline int
leaf_walk_start(int16_t ref, int16_t *stack)
{
	if (ref == RCF_NIL)
		return 0;
	stack[0] = ref;
	return 1;
}

/*
 * No box kept (RCF_BOXES_WALK): grows the box [lo, hi] by every point of
 * the subtree at ref, walked left to right with forest->stack: the points
 * of a run of the leaves' order (run_grow), in the same order, so the same
 * values, without the order and the counts a run needs.  A walk is a chain
 * of dependent loads (about twice the time of a run, measured); listing
 * the leaves first without branches, then taking their points four
 * dimensions at a time, was slower still.
 */
static void
walk_grow(const RcfForest *forest, const RcfTree *tree, int16_t ref,
		  float *lo, float *hi)
{
	int16_t    *stack = forest->stack;
	int			top = leaf_walk_start(ref, stack);
	int			leaf;

	while ((leaf = leaf_walk_next(tree, stack, &top)) >= 0)
		box_extend(lo, hi, rcf_leaf_point(forest, tree, leaf), forest->D);
}

/*
 * Grows the box [lo, hi] to include every point of the subtree at ref.
 */
static void
extend_subtree(const RcfForest *forest, const RcfTree *tree, int16_t ref,
			   float *lo, float *hi)
{
	int			d = forest->D;

	if (forest->box_mode == RCF_BOXES_NONE)
	{
		box_extend(lo, hi, subtree_end(tree, ref, RCF_LEFT), 1);
		box_extend(lo, hi, subtree_end(tree, ref, RCF_RIGHT), 1);
	}
	else if (forest->box_mode == RCF_BOXES_PARTIAL)
		subtree_grow(forest, tree, ref, lo, hi);
	else if (forest->box_mode == RCF_BOXES_WALK)
		walk_grow(forest, tree, ref, lo, hi);
	else if (RCF_IS_LEAF(ref))
		box_extend(lo, hi, rcf_leaf_point(forest, tree, RCF_LEAF_IDX(ref)), d);
	else
	{
		const float *box = rcf_node_box(forest, tree, ref);

		box_union(lo, hi, box, box + d, d);
	}
}

/*
 * The corners of a child's box when it is at hand, a leaf's point or a
 * cached box; false if the box must be computed from the subtree.
 */
static inline bool
known_box(const RcfForest *forest, const RcfTree *tree, int16_t ref,
		  const float **lo, const float **hi)
{
	if (RCF_IS_LEAF(ref))
	{
		*lo = *hi = rcf_leaf_point(forest, tree, RCF_LEAF_IDX(ref));
		return true;
	}
	*lo = rcf_node_box(forest, tree, ref);
	if (*lo == NULL)
		return false;
	*hi = *lo + forest->D;
	return true;
}

/* Sets [lo, hi] to the box of the two children of internal node `node`. */
static void
children_box(const RcfForest *forest, const RcfTree *tree, int16_t node,
			 float *lo, float *hi)
{
	int			d = forest->D;
	const RcfNode *n = &tree->nodes[node];
	const float *llo,
			   *lhi,
			   *rlo,
			   *rhi;

	if (known_box(forest, tree, n->child[RCF_LEFT], &llo, &lhi) &&
		known_box(forest, tree, n->child[RCF_RIGHT], &rlo, &rhi))
	{
		for (int i = 0; i < d; i++)
		{
			lo[i] = llo[i] < rlo[i] ? llo[i] : rlo[i];
			hi[i] = lhi[i] > rhi[i] ? lhi[i] : rhi[i];
		}
		return;
	}
	for (int i = 0; i < d; i++)
	{
		lo[i] = INFINITY;
		hi[i] = -INFINITY;
	}
	extend_subtree(forest, tree, n->child[RCF_LEFT], lo, hi);
	extend_subtree(forest, tree, n->child[RCF_RIGHT], lo, hi);
}

/*
 * Gives a node a cached box, if the pool has one left, and fills it from
 * the subtree; nothing otherwise (the box is then recomputed when needed).
 */
static void
box_cache(const RcfForest *forest, RcfTree *tree, int16_t node)
{
	float	   *box;

	if (tree->box_nfree == 0)
		return;
	tree->node_box[node] = rcf_box_free(forest, tree)[--tree->box_nfree];
	box = rcf_node_box(forest, tree, node);
	children_box(forest, tree, node, box, box + forest->D);
}

/*
 * Where a path's current node's leaves lie in the left-to-right order
 * (partial caching): places first..last, or first < 0 if not known (above
 * a cached box, which needed no run).
 */
typedef struct LeafSpan
{
	int			first;
	int			last;
} LeafSpan;

/*
 * parent_box for a parent without a cached box: the child's box grown by
 * its sibling's subtree, in the scratch box forest->box_lo/box_hi: the
 * sibling's leaves are the run next to the child's, on its side.  Moves
 * *span to the parent.
 */
static inline void
uncached_parent_box(const RcfForest *forest, const RcfTree *tree,
					int16_t parent, int16_t child,
					const float **lo, const float **hi, LeafSpan *span)
{
	int			d = forest->D;
	const RcfNode *n = &tree->nodes[parent];
	int			left = n->child[RCF_LEFT] == child; /* the child is the left one */
	int16_t		sibling = n->child[left];
	float	   *blo = forest->box_lo;
	float	   *bhi = forest->box_hi;
	int			count;
	int			first;

	if (*lo != blo)
	{
		box_copy(blo, *lo, d);
		box_copy(bhi, *hi, d);
		*lo = blo;
		*hi = bhi;
	}

	/*
	 * A leaf is a run of one: no branch on what the sibling is, which
	 * would mispredict at every other level.  (A sibling with a cached box
	 * under a parent without one is left by a full pool only, and its run
	 * gives the same values.)
	 */
	count = tree->leaf_count[sibling < 0 ? 0 : sibling];
	count = sibling < 0 ? 1 : count;
	if (span->first >= 0)
	{
		first = left ? span->last + 1 : span->first - count;
		span->first = left ? span->first : first;
		span->last = left ? span->last + count : span->last;
	}
	else
	{
		int			own = subtree_leaves(tree, child);

		first = rcf_leaf_pos(forest, tree)[edge_leaf(tree, sibling, RCF_LEFT)];
		span->first = left ? first - own : first;
		span->last = span->first + own + count - 1;
	}
	run_grow(forest, tree, first, count, blo, bhi);
}

/*
 * parent_box with no box kept (RCF_BOXES_WALK): the child's box grown by
 * its sibling's points, in the scratch box forest->box_lo/box_hi.
 */
static void
walk_parent_box(const RcfForest *forest, const RcfTree *tree, int16_t parent,
				int16_t child, const float **lo, const float **hi)
{
	int			d = forest->D;
	const RcfNode *n = &tree->nodes[parent];
	float	   *blo = forest->box_lo;
	float	   *bhi = forest->box_hi;

	if (*lo != blo)
	{
		box_copy(blo, *lo, d);
		box_copy(bhi, *hi, d);
		*lo = blo;
		*hi = bhi;
	}
	walk_grow(forest, tree, n->child[n->child[RCF_LEFT] == child], blo, bhi);
}

/*
 * With one value a point (RCF_BOXES_NONE): whether q lies in the box of the
 * parent of `child` on q's path, from the child's box [lo, hi] alone.  q
 * went to the child's side of the parent's cut and the sibling's points lie
 * beyond it, so the parent's box reaches past q on the sibling's side and
 * holds q exactly when the child's box does on the other side; no walk to
 * the sibling's outermost leaf is needed to know.
 */
static inline bool
parent_holds_1d(const RcfTree *tree, int16_t parent, int16_t child,
				float lo, float hi, float q)
{
	if (tree->nodes[parent].child[RCF_LEFT] == child)
		return !(lo > q);
	return !(hi < q);
}

/*
 * parent_box for the modes that keep boxes, or walk for them: the
 * parent's cached box, or one computed in scratch space.  Apart, so that
 * one value a point (parent_box's own case, and KDA's defaults) takes none
 * of its registers.
 */
#if defined(__GNUC__) || defined(__clang__)
__attribute__((noinline))
#endif
static void
parent_box_kept(const RcfForest *forest, const RcfTree *tree, int16_t parent,
				int16_t child, const float **lo, const float **hi, LeafSpan *span)
{
	const float *box = rcf_node_box(forest, tree, parent);

	if (box == NULL)
	{
		if (forest->box_mode == RCF_BOXES_WALK)
			walk_parent_box(forest, tree, parent, child, lo, hi);
		else
			uncached_parent_box(forest, tree, parent, child, lo, hi, span);
		return;
	}
	span->first = -1;
	*lo = box;
	*hi = box + forest->D;
}

/*
 * The box of the parent of `child` on a path, given the box [*lo, *hi] of
 * `child` itself: the parent's cached box, or one computed in scratch
 * space.  Updates *lo and *hi, and with partial caching *span.
 */
static inline void
parent_box(const RcfForest *forest, const RcfTree *tree, int16_t parent,
		   int16_t child, const float **lo, const float **hi, LeafSpan *span)
{
	if (forest->box_mode == RCF_BOXES_NONE)
	{
		/*
		 * One value a point: the sibling's points all lie beyond the
		 * child's, on its side of the cut, so only that end of the box
		 * grows, to the sibling's outermost point.  The pointers stay on
		 * leaf points, which nothing moves while the path is walked.
		 */
		const RcfNode *n = &tree->nodes[parent];

		if (n->child[RCF_LEFT] == child)
			*hi = subtree_end(tree, n->child[RCF_RIGHT], RCF_RIGHT);
		else
			*lo = subtree_end(tree, n->child[RCF_LEFT], RCF_LEFT);
		return;
	}
	parent_box_kept(forest, tree, parent, child, lo, hi, span);
}

/*
 * Recomputes the cached box of an internal node from its children.  Returns
 * true if it changed.
 */
static bool
box_refresh(const RcfForest *forest, RcfTree *tree, int16_t node)
{
	int			d = forest->D;
	float	   *lo = forest->box_lo;
	float	   *hi = forest->box_hi;
	float	   *box = rcf_node_box(forest, tree, node);
	const RcfNode *n = &tree->nodes[node];
	const float *llo,
			   *lhi,
			   *rlo,
			   *rhi;
	bool		changed = false;

	/* Both children's boxes at hand (always, with every box cached). */
	if (known_box(forest, tree, n->child[RCF_LEFT], &llo, &lhi) &&
		known_box(forest, tree, n->child[RCF_RIGHT], &rlo, &rhi))
	{
		for (int i = 0; i < d; i++)
		{
			float		l = llo[i] < rlo[i] ? llo[i] : rlo[i];
			float		h = lhi[i] > rhi[i] ? lhi[i] : rhi[i];

			if (box[i] != l || box[d + i] != h)
			{
				box[i] = l;
				box[d + i] = h;
				changed = true;
			}
		}
		return changed;
	}
	children_box(forest, tree, node, lo, hi);
	for (int i = 0; i < d; i++)
	{
		if (box[i] != lo[i] || box[d + i] != hi[i])
		{
			box[i] = lo[i];
			box[d + i] = hi[i];
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
rcf_tree_node_alloc(const RcfForest *forest, RcfTree *tree)
{
	return node_alloc(forest, tree);
}

int16_t
rcf_tree_leaf_alloc(const RcfForest *forest, RcfTree *tree)
{
	return leaf_alloc(forest, tree);
}

/*
 * The box of every internal node of a tree, bottom up, into temp (node i's
 * at temp + i * 2D), and its leaf count into the node.  `order` lists the
 * ninternal reachable nodes with parents before children.  With
 * check_cuts, returns the first node whose cut does not separate its
 * children; else -1 (cuts are not read).
 */
static int
all_boxes(const RcfForest *forest, const RcfTree *tree, const int16_t *order,
		  int ninternal, float *temp, uint16_t *counts, bool check_cuts)
{
	int			d = forest->D;

	for (int k = ninternal - 1; k >= 0; k--)
	{
		int16_t		node = order[k];
		const RcfNode *n = &tree->nodes[node];
		const float *cmin[2];
		const float *cmax[2];
		float	   *box = temp + (size_t) node * 2 * d;
		int			leaves = 0;
		int			i = 0;

		for (int side = 0; side < 2; side++)
		{
			/*
			 * Both of a leaf's point and a node's box are found, and one
			 * chosen by masks, not by a branch (which the compiler would
			 * make of a conditional): whether a child is a leaf is a coin
			 * toss.  The one not chosen is unused, and in bounds: for a
			 * node, the point is rcf_leaf_point's of leaf 0 at offset 0.
			 */
			int			c = n->child[side];
			int			leaf = c >> 15;	/* all ones for a leaf, else 0 */
			uintptr_t	m = (uintptr_t) (intptr_t) leaf;
			const float *pt = tree->leaf_loc ?
				forest->records + (size_t) (tree->leaf_loc[~c & leaf] & (uint32_t) leaf) *
				forest->params.dims :
				tree->points + (size_t) (~c & leaf) * d;
			const float *cbox = temp + (size_t) (c & ~leaf) * 2 * d;

			cmin[side] = (const float *) (((uintptr_t) pt & m) | ((uintptr_t) cbox & ~m));
			cmax[side] = (const float *) (((uintptr_t) pt & m) |
										  ((uintptr_t) (cbox + d) & ~m));
			leaves += (counts[c & ~leaf] & ~leaf) | (leaf & 1);
		}
		if (check_cuts &&
			!(cmax[RCF_LEFT][n->dim] <= n->cut && cmin[RCF_RIGHT][n->dim] > n->cut))
			return node;
#ifdef __SSE2__
		/* The same choices as below: minps and maxps take b unless a < b, a > b. */
		for (; i + 4 <= d; i += 4)
		{
			_mm_storeu_ps(box + i, _mm_min_ps(_mm_loadu_ps(cmin[0] + i),
											  _mm_loadu_ps(cmin[1] + i)));
			_mm_storeu_ps(box + d + i, _mm_max_ps(_mm_loadu_ps(cmax[0] + i),
												  _mm_loadu_ps(cmax[1] + i)));
		}
#endif
		for (; i < d; i++)
		{
			box[i] = cmin[0][i] < cmin[1][i] ? cmin[0][i] : cmin[1][i];
			box[d + i] = cmax[0][i] > cmax[1][i] ? cmax[0][i] : cmax[1][i];
		}
		counts[node] = (uint16_t) leaves;
	}
	return -1;
}

/*
 * The exact box of every internal node into temp (node i's at temp + i * 2D),
 * from the leaves up, whatever the cuts: the encoding writes a cut as its
 * place between the children's boxes.  temp is as for rcf_tree_finish.
 */
void
rcf_tree_boxes(const RcfForest *forest, const RcfTree *tree,
			   const int16_t *order, int ninternal, float *temp)
{
	uint16_t   *counts = (uint16_t *) (temp + (size_t) (forest->N - 1) * 2 * forest->D);

	(void) all_boxes(forest, tree, order, ninternal, temp, counts, false);
}

/* Lists a tree's leaves left to right (partial caching). */
static void
leaf_order_build(const RcfForest *forest, RcfTree *tree)
{
	int16_t    *stack = forest->stack;
	int			top = leaf_walk_start(tree->root, stack);
	int			n = 0;
	int			leaf;

	while ((leaf = leaf_walk_next(tree, stack, &top)) >= 0)
	{
		tree->leaf_order[n] = (uint16_t) leaf;
		rcf_leaf_pos(forest, tree)[leaf] = (uint16_t) n;
		n++;
	}
}

/*
 * Completes a decoded tree: leaf counts, cuts checked against the boxes of
 * the children, and cached boxes: with every box cached, computed in
 * place; else for the largest subtrees (parents first, while the pool
 * lasts), from temp.  `order` lists the reachable internal nodes in
 * preorder; temp has room for (sample_size - 1) * (2D + 1) floats.  Returns
 * false if a cut does not separate its children.  With cuts_known, the
 * caller chose each cut between its children's points (format 2), so
 * that no cut is checked, and without boxes to keep nothing is computed.
 */
bool
rcf_tree_finish(const RcfForest *forest, RcfTree *tree, const int16_t *order,
				int ninternal, float *temp, bool cuts_known)
{
	int			d = forest->D;
	uint16_t   *counts = (uint16_t *) (temp + (size_t) (forest->N - 1) * 2 * d);
	float	   *boxes = forest->box_mode == RCF_BOXES_ALL ? tree->boxes : temp;

	if (!(cuts_known && (forest->box_mode == RCF_BOXES_NONE ||
						 forest->box_mode == RCF_BOXES_WALK)) &&
		all_boxes(forest, tree, order, ninternal, boxes, counts, !cuts_known) >= 0)
		return false;
	if (forest->box_mode != RCF_BOXES_PARTIAL)
		return true;
	for (int k = 0; k < ninternal; k++)
		tree->leaf_count[order[k]] = counts[order[k]];
	leaf_order_build(forest, tree);
	for (int k = 0; k < ninternal && tree->box_nfree > 0; k++)
	{
		int16_t		node = order[k];

		if (tree->leaf_count[node] >= forest->box_min_leaves)
		{
			tree->node_box[node] = rcf_box_free(forest, tree)[--tree->box_nfree];
			memcpy(rcf_node_box(forest, tree, node), temp + (size_t) node * 2 * d,
				   2 * d * sizeof(float));
		}
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
 * Inserts point q, at offset `loc` in the shared store if there is one, and
 * returns the leaf that holds it: if the tree already holds an equal point,
 * that leaf, whose mass grows (it keeps its own offset); otherwise a new
 * leaf.
 */
int16_t
rcf_tree_insert(RcfForest *forest, RcfTree *tree, const float *q,
				uint32_t loc)
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
	const float *lo;
	const float *hi;
	int16_t		child;
	LeafSpan	span = {-1, -1};

	if (tree->root == RCF_NIL)
	{
		leaf = leaf_alloc(forest, tree);
		leaf_set_point(forest, tree, leaf, q, loc);
		tree->leaf_mass[leaf] = 1;
		tree->root = RCF_LEAF_REF(leaf);
		if (forest->box_partial)
			order_insert(forest, tree, leaf, 0, 0);
		return leaf;
	}

	ref = descend(forest, tree, q, &depth);
	leaf_point = rcf_leaf_point(forest, tree, RCF_LEAF_IDX(ref));
	if (points_equal(leaf_point, q, d))
	{
		tree->leaf_mass[RCF_LEAF_IDX(ref)]++;
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
	lo = hi = leaf_point;
	child = ref;
	if (forest->box_partial)
		span.first = span.last = rcf_leaf_pos(forest, tree)[RCF_LEAF_IDX(ref)];
	for (int level = depth - 1; level >= 0; level--)
	{
		int16_t		p = forest->path[level];
		uint16_t	cd;
		float		cv;

		if (forest->box_mode == RCF_BOXES_NONE &&
			parent_holds_1d(tree, p, child, *lo, *hi, q[0]))
		{
			inside_level = level;
			break;
		}
		parent_box(forest, tree, p, child, &lo, &hi, &span);
		child = p;
		if (box_contains(lo, hi, q, d))
		{
			inside_level = level;
			break;
		}
		random_cut(lo, hi, q, d, &tree->rng, &cd, &cv);
		if ((q[cd] <= cv && lo[cd] > cv) ||
			(q[cd] > cv && hi[cd] <= cv))
		{
			target = p;
			target_level = level;
			cut_dim = cd;
			cut_value = cv;
		}
	}

	leaf = leaf_alloc(forest, tree);
	leaf_set_point(forest, tree, leaf, q, loc);
	tree->leaf_mass[leaf] = 1;

	/* The new leaf goes just before or after the target's run. */
	if (forest->box_partial)
	{
		int			at = q[cut_dim] <= cut_value ?
			rcf_leaf_pos(forest, tree)[edge_leaf(tree, target, RCF_LEFT)] :
			rcf_leaf_pos(forest, tree)[edge_leaf(tree, target, RCF_RIGHT)] + 1;

		order_insert(forest, tree, leaf, at, subtree_leaves(tree, tree->root));
	}

	node = node_alloc(forest, tree);
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

	if (forest->box_mode == RCF_BOXES_NONE || forest->box_mode == RCF_BOXES_WALK)
		return leaf;
	if (forest->box_mode == RCF_BOXES_ALL)
	{
		/* Every box is cached: the new one is the target's grown by q. */
		float	   *box = rcf_node_box(forest, tree, node);
		const float *tlo = NULL;
		const float *thi = NULL;

		(void) known_box(forest, tree, target, &tlo, &thi);
		memcpy(box, tlo, d * sizeof(float));
		memcpy(box + d, thi, d * sizeof(float));
		box_extend(box, box + d, q, d);
		/* Boxes from inside_level up already contain q. */
		for (int level = target_level - 1; level > inside_level; level--)
		{
			float	   *abox = rcf_node_box(forest, tree, forest->path[level]);

			box_extend(abox, abox + d, q, d);
		}
		return leaf;
	}

	if (forest->box_pooled)
		tree->node_box[node] = RCF_NO_BOX;
	tree->leaf_count[node] = (uint16_t) (subtree_leaves(tree, target) + 1);
	if (tree->leaf_count[node] >= forest->box_min_leaves)
		box_cache(forest, tree, node);

	/*
	 * Every node above gains a leaf; cached boxes from inside_level up
	 * already contain q.  A node that reaches the caching size gets its box
	 * now, computed from the subtree, which holds q already.
	 */
	for (int level = target_level - 1; level >= 0; level--)
	{
		int16_t		a = forest->path[level];
		float	   *abox = rcf_node_box(forest, tree, a);

		tree->leaf_count[a]++;
		if (abox)
		{
			if (level > inside_level)
				box_extend(abox, abox + d, q, d);
		}
		else if (tree->leaf_count[a] >= forest->box_min_leaves)
			box_cache(forest, tree, a);
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
	if (ref != RCF_LEAF_REF(leaf) || tree->leaf_mass[leaf] == 0)
		return false;

	if (--tree->leaf_mass[leaf] > 0)
		return true;

	if (forest->box_partial)
		order_remove(forest, tree, leaf, subtree_leaves(tree, tree->root));
	leaf_release(forest, tree, leaf);
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
	node_release(forest, tree, parent);
	if (forest->box_mode == RCF_BOXES_NONE || forest->box_mode == RCF_BOXES_WALK)
		return true;

	/* Every node above loses a leaf; below the caching size, its box. */
	for (int level = depth - 2; level >= 0 && forest->box_partial; level--)
	{
		int16_t		node = forest->path[level];

		if (--tree->leaf_count[node] < forest->box_min_leaves)
			box_release(forest, tree, node);
	}

	/*
	 * Cached boxes above can only shrink, and only where q lay on their
	 * surface; stop at the first that does not change, since the boxes
	 * above it do not either.  Uncached boxes need nothing.
	 */
	for (int level = depth - 2; level >= 0; level--)
	{
		int16_t		node = forest->path[level];
		const float *box = rcf_node_box(forest, tree, node);

		if (box == NULL)
			continue;
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
					 * above it, loads while the other trees descend.  (An
					 * uncached box is NULL; prefetching it does nothing.)
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
	const float *lo = rcf_leaf_point(forest, tree, RCF_LEAF_IDX(ref));
	const float *hi = lo;
	int16_t		child = ref;
	double		score;
	LeafSpan	span;

	/* The mass is read only here: most points differ from their leaf. */
	if (points_equal(lo, q, d))
	{
		int			mass = tree->leaf_mass[RCF_LEAF_IDX(ref)];
		double		m = mass;

		score = (1.0 - m / (2.0 * tree->heap_size)) /
			(depth + forest->log2_table[mass]);
	}
	else
		score = 1.0 / (depth + 1);

	/* Once q is inside a box it is inside every box above: stop. */
	if (forest->box_mode == RCF_BOXES_NONE)
	{
		/*
		 * One value a point.  q went to the child's side of the parent's
		 * cut, and the sibling's points all lie beyond the cut, so the
		 * parent's box grows only away from q: q is outside it exactly when
		 * it is outside the child's box on the near side, which needs no
		 * walk.  Only then is the sibling's outermost point looked up, for
		 * the box's range; box_gap gives the values it would give from a
		 * cached box.
		 */
		float		vlo = *lo;
		float		vhi = *hi;

		for (int level = depth - 1; level >= 0; level--)
		{
			const RcfNode *n = &tree->nodes[path[level]];
			double		range;
			double		gap;
			double		p;

			if (parent_holds_1d(tree, path[level], child, vlo, vhi, q[0]))
				break;
			if (n->child[RCF_LEFT] == child)
				vhi = *subtree_end(tree, n->child[RCF_RIGHT], RCF_RIGHT);
			else
				vlo = *subtree_end(tree, n->child[RCF_LEFT], RCF_LEFT);
			child = path[level];
			gap = box_gap(&vlo, &vhi, qd, 1, &range);
			p = gap / (range + gap);
			score = p / (level + 1) + (1.0 - p) * score;
		}
		return score * forest->log2_table[tree->heap_size];
	}
	if (forest->box_mode == RCF_BOXES_ALL)
	{
		for (int level = depth - 1; level >= 0; level--)
		{
			const float *box = tree->boxes + (size_t) path[level] * 2 * d;
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
	span.first = span.last = -1;
	if (forest->box_partial)
		span.first = span.last = rcf_leaf_pos(forest, tree)[RCF_LEAF_IDX(ref)];
	for (int level = depth - 1; level >= 0; level--)
	{
		double		range;
		double		gap;
		double		p;

		parent_box(forest, tree, path[level], child, &lo, &hi, &span);
		child = path[level];
		gap = box_gap(lo, hi, qd, d, &range);

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
	int			leaf_mass;
	const float *lp;
	const float *lo;
	const float *hi;
	int16_t		child;
	double		mass = tree->heap_size;
	double		norm = forest->log2_table[tree->heap_size];
	double		score;
	double	   *h = forest->attr_high;
	double	   *l = forest->attr_low;
	LeafSpan	span = {-1, -1};

	if (tree->root == RCF_NIL)
		return 0.0;
	ref = descend(forest, tree, q, &depth);
	leaf_mass = tree->leaf_mass[RCF_LEAF_IDX(ref)];
	lp = rcf_leaf_point(forest, tree, RCF_LEAF_IDX(ref));
	if (points_equal(lp, q, d))
	{
		double		m = leaf_mass;

		score = (1.0 - m / (2.0 * mass)) /
			(depth + forest->log2_table[leaf_mass]);
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

	lo = hi = lp;
	child = ref;
	if (forest->box_partial)
		span.first = span.last = rcf_leaf_pos(forest, tree)[RCF_LEAF_IDX(ref)];
	for (int level = depth - 1; level >= 0; level--)
	{
		double		range;
		double		gap;
		double		p;
		double		unseen = 1.0 / (level + 1);

		if (forest->box_mode == RCF_BOXES_NONE &&
			parent_holds_1d(tree, forest->path[level], child, *lo, *hi, q[0]))
			break;
		parent_box(forest, tree, forest->path[level], child, &lo, &hi, &span);
		child = forest->path[level];
		gap = box_gap(lo, hi, qd, d, &range);
		if (gap == 0.0)
			break;
		range += gap;
		p = gap / range;
		for (int i = 0; i < d; i++)
		{
			double		x = q[i];
			double		above = x > hi[i] ? x - hi[i] : 0.0;
			double		below = x < lo[i] ? lo[i] - x : 0.0;

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
 * leaves, every cut separates its children, every node's leaf count is
 * right, every cached box is exactly the box of its subtree and belongs to
 * a node of the caching size, masses add up to the sampler's size, and the
 * free lists hold exactly the unused nodes, leaves and boxes.  Counts each
 * leaf's mass into refs[slot] so the caller can check the slots' reference
 * counts, and checks that leaves with one slot hold one point: slot_point
 * [slot] is the first such leaf's values seen by any tree.  temp has room
 * for (sample_size - 1) * (2D + 1) floats and sample_size - 1 + box_slots
 * int16_t after them.
 */
const char *
rcf_tree_check(const RcfForest *forest, const RcfTree *tree, float *temp)
{
	int			d = forest->D;
	int			n = forest->N;
	int16_t    *stack = forest->path;
	uint16_t   *counts = (uint16_t *) (temp + (size_t) (n - 1) * 2 * d);
	int16_t    *order = (int16_t *) (temp + (size_t) (n - 1) * (2 * d + 1));
	int16_t    *box_user = order + (n - 1);
	int			top = 0;
	int			internal = 0;
	int			leaves = 0;
	int			boxes_used = 0;
	long		mass = 0;
	int			free_count;
	int16_t		f;

	for (int b = 0; b < forest->box_slots; b++)
		box_user[b] = -1;
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
			if (tree->leaf_mass[idx] == 0)
				return "reachable leaf has zero mass";
			if (tree->leaf_loc &&
				(uint64_t) tree->leaf_loc[idx] + forest->params.shingle_size >
				forest->rec_used)
				return "a leaf refers to records beyond the store";
			mass += tree->leaf_mass[idx];
			leaves++;
		}
		else
		{
			const RcfNode *node;
			uint16_t	b;

			if (ref >= n - 1)
				return "node index out of range";
			if (internal >= n - 1)
				return "more internal nodes than the sample size allows";
			order[internal++] = ref;
			node = &tree->nodes[ref];
			if (node->dim >= d)
				return "cut dimension out of range";
			if (!isfinite(node->cut))
				return "cut value is not finite";
			if (top + 2 > n)
				return "tree deeper than its size";
			if ((!RCF_IS_LEAF(node->child[RCF_LEFT]) && node->child[RCF_LEFT] >= n - 1) ||
				(!RCF_IS_LEAF(node->child[RCF_RIGHT]) && node->child[RCF_RIGHT] >= n - 1) ||
				(RCF_IS_LEAF(node->child[RCF_LEFT]) && RCF_LEAF_IDX(node->child[RCF_LEFT]) >= n) ||
				(RCF_IS_LEAF(node->child[RCF_RIGHT]) && RCF_LEAF_IDX(node->child[RCF_RIGHT]) >= n))
				return "child reference out of range";
			b = forest->box_pooled ? tree->node_box[ref] : RCF_NO_BOX;
			if (b != RCF_NO_BOX)
			{
				if (b >= forest->box_slots)
					return "cached box out of range";
				if (box_user[b] >= 0)
					return "two nodes share a cached box";
				box_user[b] = ref;
				boxes_used++;
			}
			stack[top++] = node->child[RCF_RIGHT];
			stack[top++] = node->child[RCF_LEFT];
		}
	}
	if (leaves > 0 && internal != leaves - 1)
		return "internal node count is not leaf count minus one";
	if (mass != tree->heap_size)
		return "leaf masses do not add up to the sample size";

	if (all_boxes(forest, tree, order, internal, temp, counts, true) >= 0)
		return "cut does not separate the children";
	for (int k = 0; k < internal; k++)
	{
		int16_t		node = order[k];
		const float *box = rcf_node_box(forest, tree, node);
		const float *exact = temp + (size_t) node * 2 * d;

		if (forest->box_partial)
		{
			if (tree->leaf_count[node] != counts[node])
				return "a node's leaf count is wrong";
			if (box == NULL)
				continue;
			if (counts[node] < forest->box_min_leaves)
				return "a cached box belongs to a node below the caching size";
		}
		if (box == NULL)
			continue;
		for (int i = 0; i < 2 * d; i++)
			if (box[i] != exact[i])
				return "cached box differs from the box of its subtree";
	}

	/* The leaves' order is left to right: each walk meets them in it. */
	if (forest->box_partial)
	{
		int			next = 0;
		int			leaf;

		top = leaf_walk_start(tree->root, stack);
		while ((leaf = leaf_walk_next(tree, stack, &top)) >= 0)
		{
			if (tree->leaf_order[next] != leaf ||
				rcf_leaf_pos(forest, tree)[leaf] != next)
				return "the leaves' left-to-right order is wrong";
			next++;
		}
	}

	free_count = 0;
	if (tree->node_hw < 0 || tree->node_hw > n - 1 ||
		tree->leaf_hw < 0 || tree->leaf_hw > n)
		return "a tree's count of used nodes or leaves is out of range";
	for (f = tree->free_node; f != RCF_NIL; f = tree->nodes[f].child[0])
	{
		if (f < 0 || f >= tree->node_hw || ++free_count > n - 1)
			return "node free list is corrupt";
		if (forest->box_pooled && tree->node_box[f] != RCF_NO_BOX)
			return "a free node holds a box slot";
	}
	if (free_count + internal != tree->node_hw)
		return "nodes leaked from the free list";
	free_count = 0;
	for (f = tree->free_leaf; f != RCF_NIL; f = rcf_leaf_next(tree, f, d))
	{
		if (f < 0 || f >= tree->leaf_hw || ++free_count > n)
			return "leaf free list is corrupt";
	}
	if (free_count + leaves != tree->leaf_hw)
		return "leaves leaked from the free list";
	for (int i = tree->leaf_hw; i < n; i++)
		if (tree->leaf_mass[i] != 0)
			return "a leaf never used has a mass";
	if (!forest->box_partial)
		return NULL;
	if (tree->box_nfree + boxes_used != forest->box_slots)
		return "cached boxes leaked from the pool";
	for (int i = 0; i < tree->box_nfree; i++)
	{
		uint16_t	b = rcf_box_free(forest, tree)[i];

		if (b >= forest->box_slots || box_user[b] != -1)
			return "the free box pool is corrupt";
		box_user[b] = -2;
	}
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
				float	   *lo = forest->box_lo;
				float	   *hi = forest->box_hi;

				for (int i = 0; i < d; i++)
				{
					lo[i] = INFINITY;
					hi[i] = -INFINITY;
				}
				extend_subtree(forest, tree, n->child[side], lo, hi);

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
