/*
 * rcf_internal.h
 *	  Random Cut Forest engine: data layout shared by the engine's files and
 *	  by the model (de)serialiser.  Not part of the public interface.
 *
 * Everything a forest owns lives in one arena, addressed through the
 * pointers below, except the shared record store (below), which grows.
 * Trees refer to their nodes and leaves by small integers: a child
 * reference is an int16_t that is >= 0 for an internal node and -(leaf + 1)
 * for a leaf, which keeps a node at 10 bytes (packed: a node's cut is read
 * unaligned, which x86 and ARMv8 do at no cost).  Leaves, sampler
 * entries and box slots are kept as parallel arrays of the narrowest types
 * their ranges need (a leaf's mass and a sampler entry's leaf are at most
 * the sample size, 4096), so that no entry carries padding.
 *
 * Points.  With shingle_size 1 a leaf holds its point's values itself, so
 * that the descent reaches them with no further indirection (scoring is
 * bound by cache misses); a point held by several trees is a copy in each,
 * which costs no more than a reference once the trees' samples differ.
 * With shingle_size > 1 consecutive points overlap in all but one record,
 * so the forest keeps one store of records shared by all trees (store.c,
 * after the AWS library's PointStore): a point is the offset of its first
 * record there, and a leaf holds that offset.  The store grows when needed
 * and is compacted when full: the records no leaf refers to are dropped and
 * the offsets renumbered.  No sequence number or reference count is kept:
 * nothing but the encoding needs one, and the encoding writes the store.
 *
 * Bounding boxes, in one of four ways (forest->box_mode), chosen by the
 * points' size and by params.bounding_box_cache_fraction, the user's choice
 * of memory against time (the AWS library's boundingBoxCacheFraction; 1,
 * the default, leaves it to the engine):
 *
 * - RCF_BOXES_NONE, points of one value: no box is kept.  Every point of a
 *   left subtree is at most its parent's cut and every point of the right
 *   one above it, so a subtree's box is its leftmost and rightmost leaves'
 *   values, found by following child[0] or child[1] down; and going up a
 *   path, the parent's box is the child's grown on the sibling's side only,
 *   by the sibling's outermost leaf (one such walk per level).  The values
 *   are the same floats a cached box would hold, so scores are identical.
 *   This drops a quarter of a forest of KDA's defaults.
 *
 * - RCF_BOXES_ALL, points of 2 to RCF_BOX_PARTIAL_MIN_DIMS - 1 values at
 *   fraction 1: every internal node caches its box, at its own index.
 *
 * - RCF_BOXES_PARTIAL, wider points, where boxes are most of a forest's
 *   memory, or any points of 2 values or more at a fraction below 1: boxes
 *   are cached only for internal nodes whose subtree holds at least
 *   forest->box_min_leaves leaves (RCF_BOX_MIN_LEAVES; with a fraction,
 *   3 * sample_size / pool - 1, forest.c), in a pool of sample_size *
 *   RCF_BOX_POOL_NUM / RCF_BOX_POOL_DIV boxes per tree (with a fraction,
 *   that share of the sample_size - 1 internal nodes, never more)
 *   (node_box[node] is its slot); any other node's box is recomputed from
 *   its subtree when needed, which gives the same values, since a box is
 *   the exact minimum and maximum of its points.  The tree keeps its leaves
 *   in their left-to-right order (leaf_order, with rcf_leaf_pos), in which
 *   every subtree's leaves are a run: a box not cached is the minimum and
 *   maximum over an array of points, four dimensions at a time in
 *   registers, with no walk down the subtree (a walk is a chain of
 *   dependent loads and mispredicts at every node).  Walking up a path,
 *   the run of the parent is the child's grown by the sibling's leaf count
 *   on the sibling's side, so each leaf below the lowest cached ancestor is
 *   read once.  Keeping the order costs a move of up to sample_size
 *   entries per insertion or deletion, which a tree sees for about
 *   sample_size / time_decay of the points.
 *
 *   Measured on bench/engine after 100,000 points (CPU per point, builds
 *   alternated, a shared two-core machine): for points of 16 values
 *   (2 x shingle 8, 50 trees) caching from 8 leaves in a pool of 3/8 of
 *   the sample size (before: from 3 leaves by a walk, pool 3/4) takes
 *   2,182,400 -> 1,609,600 bytes at 1.02x the time; 16 x 1, 100 trees,
 *   4,715,632 -> 3,570,032 at 1.0-1.1x.  For the reference forest (1 value,
 *   shingle 8, 50 trees: 1,410,120 bytes with every box cached) partial
 *   caching saves memory only at a cost in time far beyond issue 14's
 *   limit of 1.05x: from 8 leaves 1,013,320
 *   bytes at 1.40x, from 16 (pool 1/4) 907,720 at 1.5x, from 32 (pool 1/8)
 *   802,120 at about 1.7x; a box of 8 values is cheap to read, and the
 *   order and counts (2 KB a tree) eat much of the saving.  Hence
 *   RCF_BOX_PARTIAL_MIN_DIMS 16.  The pool rarely runs out (83 of 96 at
 *   most, measured); when it does, the node stays uncached and its box
 *   costs a longer run.  The constants can be set at build time (-D) to
 *   measure other choices; set RCF_BOX_PARTIAL_MIN_DIMS above 1024 to cache
 *   every box always.
 *
 * - RCF_BOXES_WALK, points of 2 values or more at a fraction whose pool
 *   holds no box (0): no box, and neither the leaves' order nor the leaf
 *   counts that runs need; a box is the minimum and maximum of its
 *   subtree's points, found by walking the subtree (tree.c, walk_grow).
 *   The least memory: the reference forest keeps per tree only its nodes,
 *   leaf masses and offsets, and sampler (5.5 KB), 594,120 bytes with its
 *   store after 100,000 points, against 1,410,120 at fraction 1 and
 *   670,936 with the order and counts of partial caching kept (which is
 *   what a pool of no box would cost: 1.5 KB a tree).
 *
 *   Measured with bench/engine --compare-box-cache after 100,000 points
 *   (CPU per point against fraction 1 in the same run, medians of 3):
 *   the reference forest 1,410,120 / 1,115,720 / 904,520 / 778,920 /
 *   594,120 bytes at fractions 1 / 0.5 / 0.25 / 0.1 / 0, at 1 / 1.40 /
 *   1.47 / 1.59 / 3.1 times the time; 5 values, 100 trees, 2,011,232 /
 *   1,729,632 / 1,460,832 / 1,300,832 / 990,432 at 1 / 1.43 / 1.49 / 1.51
 *   / 3.1.  Of the pools, at the end of the reference run, 98 of 127, 59
 *   of 63 and 25 of 25 boxes were in use.  A walk takes about twice a run
 *   of the same points: it is a chain of dependent loads; listing the
 *   leaves first without branches, then taking their points four
 *   dimensions at a time, was slower still.
 */
#ifndef RCF_INTERNAL_H
#define RCF_INTERNAL_H

#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "rcf.h"

#define RCF_NIL				INT16_MIN	/* no node: empty tree, end of list */
#define RCF_NO_BOX			UINT16_MAX	/* a node without a cached box */
#ifndef RCF_BOX_MIN_LEAVES
#define RCF_BOX_MIN_LEAVES	8
#endif
#ifndef RCF_BOX_PARTIAL_MIN_DIMS
#define RCF_BOX_PARTIAL_MIN_DIMS	16	/* fewer dimensions: every box cached */
#endif
#ifndef RCF_BOX_POOL_NUM
#define RCF_BOX_POOL_NUM	3	/* pool = sample_size * NUM / DIV */
#define RCF_BOX_POOL_DIV	8
#endif
#ifndef RCF_BOX_FRACTION_SPREAD
#define RCF_BOX_FRACTION_SPREAD	3	/* box_min_leaves: see forest.c */
#endif
#define RCF_BOXES_NONE		0
#define RCF_BOXES_ALL		1
#define RCF_BOXES_PARTIAL	2
#define RCF_BOXES_WALK		3
#define RCF_IS_LEAF(ref)	((ref) < 0)
#define RCF_LEAF_REF(idx)	((int16_t) (-(idx) - 1))
#define RCF_LEAF_IDX(ref)	(-(ref) - 1)
#define RCF_LEFT			0
#define RCF_RIGHT			1

/*
 * Weights are stored as float relative to a base sequence number; once
 * lambda * (seq - base) passes this, every weight is shifted so that float
 * precision never erodes the time decay.
 */
#define RCF_REBASE_SPAN		16.0

/* A hint to start loading memory that is read soon; nothing elsewhere. */
#if defined(__GNUC__) || defined(__clang__)
#define RCF_PREFETCH(addr)	__builtin_prefetch(addr)
#else
#define RCF_PREFETCH(addr)	((void) (addr))
#endif

/* Trees whose descents are interleaved when scoring. */
#define RCF_DESCEND_GROUP	4

/*
 * Internal node: points with x[dim] <= cut go left.  While the node is on
 * the free list, child[0] links to the next free node.
 */
#if defined(__GNUC__) || defined(__clang__)
#define RCF_PACKED			__attribute__((packed))
#else
#define RCF_PACKED
#endif

typedef struct RCF_PACKED RcfNode
{
	float		cut;
	uint16_t	dim;
	int16_t		child[2];		/* [0] left, [1] right */
} RcfNode;

/*
 * A tree.  Leaf i is one distinct point of the tree's sample (mass > 1 for
 * duplicates); its values are points[i * D ..], or with a shared store the
 * D values at record leaf_loc[i] (rcf_leaf_point).  A free leaf's first
 * value or leaf_loc holds the next free leaf (rcf_leaf_next).  The sampler is a max-heap by weight of
 * sample_size entries, heap_weight[i] and heap_leaf[i], the leaf holding
 * the sampled point.
 */
typedef struct RcfTree
{
	/* What scoring reads, first, so that it shares one cache line. */
	RcfNode    *nodes;			/* sample_size - 1 */
	float	   *boxes;			/* box_slots boxes: min[D] then max[D] */
	float	   *points;			/* per leaf: its point's D values, or NULL */
	uint32_t   *leaf_loc;		/* per leaf: its point in the store, or NULL */
	uint16_t   *leaf_mass;		/* sample_size */
	int32_t		heap_size;		/* = mass of the tree */
	int16_t		root;

	int16_t		free_node;
	int16_t		free_leaf;
	int16_t		node_hw;		/* nodes from here up never used yet */
	int16_t		leaf_hw;		/* leaves from here up never used yet */
	uint16_t	box_nfree;		/* entries on the stack of free box slots */
	uint16_t   *leaf_count;		/* per node: leaves in its subtree */

	/*
	 * Per node: its cached box, or RCF_NO_BOX; then (rcf_box_free) the
	 * stack of unused box slots.
	 */
	uint16_t   *node_box;

	/*
	 * The leaves left to right (partial caching: a subtree's leaves are a
	 * run of it); then (rcf_leaf_pos) each leaf's place there.
	 */
	uint16_t   *leaf_order;
	float	   *heap_weight;	/* sample_size */
	uint16_t   *heap_leaf;		/* sample_size */
	uint64_t	rng;			/* splitmix64 state */

	/*
	 * Cache that spares the two logarithms of a weight for most points: a
	 * draw u <= reject_below is certain to lose against the heap's top
	 * until sequence number reject_until.  Derived state, never stored.
	 */
	double		reject_below;
	uint64_t	reject_until;
} RcfTree;

struct RcfForest
{
	RcfParams	params;
	int			D;				/* point dimensions = dims * shingle_size */
	int			N;				/* sample size */
	double		lambda;
	RcfAllocator allocator;
	size_t		bytes;

	RcfTree    *trees;
	int			box_mode;		/* RCF_BOXES_NONE, _ALL or _PARTIAL */
	bool		box_partial;	/* box_mode == RCF_BOXES_PARTIAL */
	bool		box_pooled;		/* partial, with a pool: node_box exists */
	int			box_slots;		/* cached boxes per tree */
	int			box_min_leaves; /* partial: leaves of a node with a box */

	/*
	 * The shared record store (shingle_size > 1 only): rec_used records of
	 * dims values in an array of rec_cap records, allocated apart from the
	 * arena.  The last point appended starts at last_loc and was offered at
	 * sequence number last_seq; a following point that overlaps it shares
	 * its records.  last_valid is false when there is none, or compaction
	 * dropped some of its records.
	 */
	bool		shared;
	bool		last_valid;		/* (fields ordered so that none pads) */
	uint32_t	last_loc;
	float	   *records;		/* the block: records, then rec_live */
	uint64_t   *rec_live;		/* compaction's marks and counts */
	uint32_t	rec_cap;
	uint32_t	rec_used;
	uint64_t	last_seq;
	size_t		arena_bytes;	/* the arena; bytes adds the store */
	uint64_t	reserved;		/* updates left that rcf_reserve made room
								 * for: the store must not grow */

	/* Shingle: ring of the last shingle_size records, as float. */
	float	   *shingle;
	int			shingle_next;	/* index of the oldest record */

	uint64_t	updates;		/* records seen */
	uint64_t	inserted;		/* full points offered to the samplers */
	uint64_t	weight_base;	/* sequence number that weights are relative
								 * to */

	/* Scratch space, so that no call allocates. */
	float	   *query;			/* D */
	float	   *evicted;		/* D: a point being deleted */
	double	   *query_d;		/* the same as double, for box arithmetic */
	int16_t    *path;			/* sample_size * RCF_DESCEND_GROUP */
	int16_t    *stack;			/* sample_size: subtree walks */
	float	   *box_lo;			/* D: a box being computed */
	float	   *box_hi;			/* D */
	float	   *accept_weight;	/* number_of_trees */
	double	   *attr_high;		/* D */
	double	   *attr_low;		/* D */
	double	   *log2_table;		/* log2(m + 1) for m = 0 .. sample_size */
};

/* splitmix64: small state, good quality, and trivially serialised. */
static inline uint64_t
rcf_rng_next(uint64_t *state)
{
	uint64_t	z = (*state += UINT64_C(0x9E3779B97F4A7C15));

	z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
	return z ^ (z >> 31);
}

/*
 * The free leaf after `leaf` on its tree's free list, kept in what a free
 * leaf does not use: its offset in the store, or the bits of its first
 * value.
 */
static inline int16_t
rcf_leaf_next(const RcfTree *tree, int leaf, int D)
{
	int32_t		v;

	if (tree->leaf_loc)
		return (int16_t) (uint16_t) tree->leaf_loc[leaf];
	memcpy(&v, tree->points + (size_t) leaf * D, sizeof(v));
	return (int16_t) v;
}

static inline void
rcf_set_leaf_next(RcfTree *tree, int leaf, int D, int16_t next)
{
	int32_t		v = next;

	if (tree->leaf_loc)
		tree->leaf_loc[leaf] = (uint16_t) next;
	else
		memcpy(tree->points + (size_t) leaf * D, &v, sizeof(v));
}

/* Uniform in [0, 1). */
static inline double
rcf_rng_unit(uint64_t *state)
{
	return (double) (rcf_rng_next(state) >> 11) * (1.0 / 9007199254740992.0);
}

/* Uniform in the open interval (0, 1), for logarithms. */
static inline double
rcf_rng_open_unit(uint64_t *state)
{
	return ((double) (rcf_rng_next(state) >> 11) + 0.5) *
		(1.0 / 9007199254740992.0);
}

static inline float *
rcf_leaf_point(const RcfForest *forest, const RcfTree *tree, int leaf)
{
	if (tree->leaf_loc)
		return forest->records + (size_t) tree->leaf_loc[leaf] * forest->params.dims;
	return tree->points + (size_t) leaf * forest->D;
}

/* Partial caching: the stack of unused box slots, box_nfree of them. */
static inline uint16_t *
rcf_box_free(const RcfForest *forest, const RcfTree *tree)
{
	return tree->node_box + forest->N - 1;
}

/* Partial caching: where each leaf is in tree->leaf_order. */
static inline uint16_t *
rcf_leaf_pos(const RcfForest *forest, const RcfTree *tree)
{
	return tree->leaf_order + forest->N;
}

/*
 * The cached box of a node, or NULL if it has none.  With every box cached
 * a node's box is at its own index, found with no load.
 */
static inline float *
rcf_node_box(const RcfForest *forest, const RcfTree *tree, int node)
{
	uint16_t	b;

	if (forest->box_mode == RCF_BOXES_ALL)
		return tree->boxes + (size_t) node * 2 * forest->D;
	if (!forest->box_pooled)
		return NULL;
	b = tree->node_box[node];

	if (b == RCF_NO_BOX)
		return NULL;
	return tree->boxes + (size_t) b * 2 * forest->D;
}

/*
 * Records before `loc` that are marked in `live` (a bit per record), given
 * the marked records before each 64-bit word: where a record kept by
 * compaction, or written by the encoder, lands.
 */
static inline uint32_t
rcf_record_rank(const uint64_t *live, const uint32_t *before, uint32_t loc)
{
	uint64_t	word = live[loc / 64] & ((UINT64_C(1) << (loc % 64)) - 1);

	return before[loc / 64] + (uint32_t) __builtin_popcountll(word);
}

/* forest.c */
extern int	rcf_box_mode(const RcfParams *params);
extern size_t rcf_box_pool_size(const RcfParams *params);
extern RcfForest *rcf_create_boxes(const RcfParams *params,
								   const RcfAllocator *allocator, int box_mode);

/* tree.c */
extern void rcf_tree_init(RcfForest *forest, RcfTree *tree);
extern int16_t rcf_tree_insert(RcfForest *forest, RcfTree *tree,
							   const float *q, uint32_t loc);
extern bool rcf_tree_delete(RcfForest *forest, RcfTree *tree, int16_t leaf);
extern double rcf_trees_score(const RcfForest *forest, const float *q,
							  const double *qd);
extern double rcf_tree_attribution(const RcfForest *forest,
								   const RcfTree *tree, const float *q,
								   const double *qd,
								   double *high, double *low);
extern const char *rcf_tree_check(const RcfForest *forest,
								  const RcfTree *tree, float *temp);
extern const float *rcf_tree_impute_leaf(const RcfForest *forest,
										 const RcfTree *tree, const float *q,
										 const bool *missing);
extern int16_t rcf_tree_node_alloc(const RcfForest *forest, RcfTree *tree);
extern int16_t rcf_tree_leaf_alloc(const RcfForest *forest, RcfTree *tree);
extern void rcf_tree_boxes(const RcfForest *forest, const RcfTree *tree,
						   const int16_t *order, int ninternal, float *temp);
extern bool rcf_tree_finish(const RcfForest *forest, RcfTree *tree,
							const int16_t *order, int ninternal,
							float *temp, bool cuts_known);

/* sampler.c */
extern void rcf_sampler_push(const RcfForest *forest, RcfTree *tree,
							 float weight, int leaf);
extern void rcf_sampler_replace_top(const RcfForest *forest, RcfTree *tree,
									float weight, int leaf);
extern void rcf_sampler_heapify(const RcfForest *forest, RcfTree *tree);
extern void rcf_sampler_shift(const RcfForest *forest, RcfTree *tree,
							  float delta);
extern const char *rcf_sampler_check(const RcfTree *tree, int capacity);

/* encode.c */
extern size_t rcf_encode_scratch(const RcfParams *params, uint32_t rec_used);
extern size_t rcf_decode_scratch(const RcfParams *params, int version,
								 uint64_t npoints, uint64_t nruns);

/* store.c */
extern uint32_t rcf_store_max_records(const RcfParams *params);
extern uint32_t rcf_store_initial_records(const RcfParams *params);
extern size_t rcf_store_compact_scratch(uint32_t records);
extern size_t rcf_store_block_size(const RcfParams *params, uint32_t records);
extern bool rcf_store_reserve(RcfForest *forest, uint32_t count);
extern uint32_t rcf_store_append(RcfForest *forest, const float *point,
								 uint64_t seq);
extern bool rcf_store_resize(RcfForest *forest, uint32_t records);
extern void rcf_store_adopt_tail(RcfForest *forest);

#endif							/* RCF_INTERNAL_H */
