/*
 * encode.c
 *	  The byte form of a forest, and its validating decoder.
 *
 * Layout (little-endian; "varint" is unsigned LEB128):
 *
 *	 header		u32 magic "RCFM", u16 version, u16 reserved (0),
 *				u32 CRC-32C of everything after this field
 *	 params		u32 dims, shingle_size, number_of_trees, sample_size,
 *				output_after; f64 time_decay; u64 seed
 *	 counters	u64 updates, inserted, weight_base
 *	 shingle	f32[dims * shingle_size], oldest record first
 *	 points		varint count; then runs of consecutive records:
 *				varint run count, and per run varint gap (from the end of
 *				the previous run), varint length, f32[length * dims];
 *				then per point, in order of sequence number, varint
 *				sequence number delta.  A point with sequence number s is
 *				the records s .. s + shingle_size - 1, so shingled points,
 *				which overlap, are stored once per record, not per point.
 *	 trees		per tree: u64 rng state; varint sampler size; f32 weights
 *				in heap order; varint point index per entry; the tree in
 *				preorder: varint 2 * slot + 1 for a leaf, or varint
 *				2 * dim followed by f32 cut for an internal node.  Leaf
 *				masses are the sampler's counts; boxes are recomputed.
 *	 sections	varint count of optional sections, then per section varint
 *				kind, varint length, payload.  Kind 2 is the grader
 *				(grade.c); kind 1, the grader's layout before its CUSUM,
 *				is still read; kind 3 is the transform (transform.c),
 *				whose dims must be the forest's.  At most one section of
 *				each concern, the grader's first.
 */
#include <stdlib.h>

#include "rcf_internal.h"
#include "grade.h"

#define RCF_MAGIC		0x4D464352u	/* "RCFM" little-endian */
#define HEADER_SIZE		12

/*
 * CRC-32C, reflected polynomial 0x82F63B78, eight bytes per step with eight
 * tables ("slicing by 8"): the checksum covers every byte of a model, so it
 * is a good part of the decoding time.  The tables are constants (generated
 * by gen_crc32c_table.py): detector threads decode at the same time, and
 * nothing is filled at run time.  PostgreSQL's pg_crc32c is the same CRC,
 * but src/rcf/ links without PostgreSQL (unit tests, fuzzing, benchmarks).
 */
#include "crc32c_table.h"

uint32_t
rcf_crc32c(uint32_t crc, const void *data, size_t len)
{
	const uint8_t *p = data;

	crc = ~crc;
	while (len >= 8)
	{
		uint32_t	lo = crc ^ ((uint32_t) p[0] | ((uint32_t) p[1] << 8) |
								((uint32_t) p[2] << 16) | ((uint32_t) p[3] << 24));
		uint32_t	hi = (uint32_t) p[4] | ((uint32_t) p[5] << 8) |
			((uint32_t) p[6] << 16) | ((uint32_t) p[7] << 24);

		crc = crc_table[7][lo & 0xFF] ^ crc_table[6][(lo >> 8) & 0xFF] ^
			crc_table[5][(lo >> 16) & 0xFF] ^ crc_table[4][lo >> 24] ^
			crc_table[3][hi & 0xFF] ^ crc_table[2][(hi >> 8) & 0xFF] ^
			crc_table[1][(hi >> 16) & 0xFF] ^ crc_table[0][hi >> 24];
		p += 8;
		len -= 8;
	}
	while (len--)
		crc = crc_table[0][(crc ^ *p++) & 0xFF] ^ (crc >> 8);
	return ~crc;
}

/*
 * A writer that only counts when buf is NULL, so the same code measures and
 * writes.
 */
typedef struct Writer
{
	uint8_t    *buf;
	size_t		pos;
	size_t		cap;
	bool		overflow;
} Writer;

static void
put_bytes(Writer *w, const void *src, size_t n)
{
	if (w->buf)
	{
		if (w->pos + n > w->cap)
		{
			w->overflow = true;
			return;
		}
		memcpy(w->buf + w->pos, src, n);
	}
	w->pos += n;
}

static void
put_u16(Writer *w, uint16_t v)
{
	uint8_t		b[2] = {(uint8_t) v, (uint8_t) (v >> 8)};

	put_bytes(w, b, 2);
}

static void
put_u32(Writer *w, uint32_t v)
{
	uint8_t		b[4];

	for (int i = 0; i < 4; i++)
		b[i] = (uint8_t) (v >> (8 * i));
	put_bytes(w, b, 4);
}

static void
put_u64(Writer *w, uint64_t v)
{
	uint8_t		b[8];

	for (int i = 0; i < 8; i++)
		b[i] = (uint8_t) (v >> (8 * i));
	put_bytes(w, b, 8);
}

static void
put_f32(Writer *w, float f)
{
	uint32_t	v;

	memcpy(&v, &f, 4);
	put_u32(w, v);
}

static void
put_f64(Writer *w, double f)
{
	uint64_t	v;

	memcpy(&v, &f, 8);
	put_u64(w, v);
}

static void
put_varint(Writer *w, uint64_t v)
{
	uint8_t		b[10];
	int			n = 0;

	do
	{
		b[n] = (uint8_t) (v & 0x7F);
		v >>= 7;
		if (v)
			b[n] |= 0x80;
		n++;
	} while (v);
	put_bytes(w, b, n);
}

/* Orders live slots by sequence number. */
static const uint64_t *sort_seq;

static int
cmp_slot_seq(const void *a, const void *b)
{
	uint64_t	x = sort_seq[*(const uint32_t *) a];
	uint64_t	y = sort_seq[*(const uint32_t *) b];

	return (x > y) - (x < y);
}

/* Writes a tree in preorder, with an explicit stack. */
static void
write_tree(Writer *w, const RcfTree *tree, const uint32_t *slot_index,
		   int16_t *stack)
{
	int			top = 0;

	if (tree->root == RCF_NIL)
		return;
	stack[top++] = tree->root;
	while (top > 0)
	{
		int16_t		ref = stack[--top];

		if (RCF_IS_LEAF(ref))
			put_varint(w, 2 * (uint64_t) slot_index[rcf_leaf_slot(tree, RCF_LEAF_IDX(ref))] + 1);
		else
		{
			const RcfNode *n = &tree->nodes[ref];

			put_varint(w, 2 * (uint64_t) n->dim);
			put_f32(w, n->cut);
			stack[top++] = n->child[RCF_RIGHT];
			stack[top++] = n->child[RCF_LEFT];
		}
	}
}

/*
 * Writes (or with w->buf NULL, measures) the whole encoding.  Returns false
 * if temporary memory could not be had.
 */
static bool
write_forest(Writer *w, const RcfForest *forest, const RcfGrader *grader,
			 const RcfTransform *transform)
{
	const RcfParams *p = &forest->params;
	int			dims = p->dims;
	int			S = p->shingle_size;
	uint32_t	cap = forest->capacity;
	const float **slot_point;
	uint32_t   *live;
	uint32_t   *slot_index;
	int16_t    *stack;
	uint32_t	nlive = 0;
	size_t		crc_from;
	size_t		temp_size = sizeof(float *) * (size_t) cap +
		sizeof(uint32_t) * 2 * (size_t) cap +
		sizeof(int16_t) * 2 * (size_t) forest->N;
	char	   *temp;

	temp = forest->allocator.alloc(forest->allocator.ctx, temp_size);
	if (temp == NULL)
		return false;
	slot_point = (const float **) temp;
	live = (uint32_t *) (slot_point + cap);
	slot_index = live + cap;
	stack = (int16_t *) (slot_index + cap);

	/* A point's values, from any leaf that holds it. */
	for (int t = 0; t < p->number_of_trees; t++)
	{
		const RcfTree *tree = &forest->trees[t];

		for (int i = 0; i < forest->N; i++)
			if (tree->leaf_mass[i] > 0)
				slot_point[rcf_leaf_slot(tree, i)] = rcf_leaf_point(forest, tree, i);
	}
	for (uint32_t s = 0; s < cap; s++)
		if (rcf_refcount(forest, s) > 0)
			live[nlive++] = s;
	sort_seq = forest->slot_seq;
	qsort(live, nlive, sizeof(uint32_t), cmp_slot_seq);
	for (uint32_t i = 0; i < nlive; i++)
		slot_index[live[i]] = i;

	put_u32(w, RCF_MAGIC);
	put_u16(w, RCF_FORMAT_VERSION);
	put_u16(w, 0);
	put_u32(w, 0);				/* CRC, filled in at the end */
	crc_from = w->pos;

	put_u32(w, (uint32_t) p->dims);
	put_u32(w, (uint32_t) p->shingle_size);
	put_u32(w, (uint32_t) p->number_of_trees);
	put_u32(w, (uint32_t) p->sample_size);
	put_u32(w, (uint32_t) p->output_after);
	put_f64(w, p->time_decay);
	put_u64(w, p->seed);
	put_u64(w, forest->updates);
	put_u64(w, forest->inserted);
	put_u64(w, forest->weight_base);
	for (int k = 0; k < S; k++)
	{
		int			r = (forest->shingle_next + k) % S;

		for (int i = 0; i < dims; i++)
			put_f32(w, forest->shingle[(size_t) r * dims + i]);
	}

	/* Points: runs of records covering every live point's window. */
	put_varint(w, nlive);
	{
		uint64_t	nruns = 0;
		uint64_t	end = 0;	/* one past the last record written */

		for (uint32_t i = 0; i < nlive; i++)
		{
			uint64_t	s = forest->slot_seq[live[i]];

			if (nruns == 0 || s > end)
				nruns++;
			if (s + S > end)
				end = s + S;
		}
		put_varint(w, nruns);

		end = 0;
		for (uint32_t i = 0; i < nlive;)
		{
			uint64_t	start = forest->slot_seq[live[i]];
			uint64_t	stop = start + S;
			uint32_t	j = i + 1;

			while (j < nlive && forest->slot_seq[live[j]] <= stop)
			{
				if (forest->slot_seq[live[j]] + S > stop)
					stop = forest->slot_seq[live[j]] + S;
				j++;
			}
			put_varint(w, start - end);
			put_varint(w, stop - start);
			/* Each record comes from the first point that holds it. */
			for (uint64_t r = start, k = i; r < stop; r++)
			{
				const float *pt;

				while (forest->slot_seq[live[k]] + S <= r)
					k++;
				pt = slot_point[live[k]] +
					(size_t) (r - forest->slot_seq[live[k]]) * dims;
				for (int d = 0; d < dims; d++)
					put_f32(w, pt[d]);
			}
			end = stop;
			i = j;
		}
		for (uint32_t i = 0; i < nlive; i++)
			put_varint(w, forest->slot_seq[live[i]] -
					   (i > 0 ? forest->slot_seq[live[i - 1]] : 0));
	}

	for (int t = 0; t < p->number_of_trees; t++)
	{
		const RcfTree *tree = &forest->trees[t];

		put_u64(w, tree->rng);
		put_varint(w, (uint64_t) tree->heap_size);
		for (int i = 0; i < tree->heap_size; i++)
			put_f32(w, tree->heap_weight[i]);
		for (int i = 0; i < tree->heap_size; i++)
			put_varint(w, slot_index[rcf_leaf_slot(tree, tree->heap_leaf[i])]);
		write_tree(w, tree, slot_index, stack);
	}
	if (transform && rcf_transform_params(transform)->method == RCF_TRANSFORM_NONE)
		transform = NULL;		/* no section: the bytes of older versions */
	put_varint(w, (grader ? 1 : 0) + (transform ? 1 : 0));
	if (grader)
	{
		size_t		n = rcf_grader_encoded_size(grader);

		put_varint(w, RCF_SECTION_GRADER);
		put_varint(w, n);
		if (w->buf && w->pos + n <= w->cap)
			rcf_grader_encode(grader, w->buf + w->pos);
		else if (w->buf)
			w->overflow = true;
		w->pos += n;
	}
	if (transform)
	{
		size_t		n = rcf_transform_encoded_size(transform);

		put_varint(w, RCF_SECTION_TRANSFORM);
		put_varint(w, n);
		if (w->buf && w->pos + n <= w->cap)
			rcf_transform_encode(transform, w->buf + w->pos);
		else if (w->buf)
			w->overflow = true;
		w->pos += n;
	}

	if (w->buf && !w->overflow)
	{
		uint32_t	crc = rcf_crc32c(0, w->buf + crc_from, w->pos - crc_from);

		for (int i = 0; i < 4; i++)
			w->buf[crc_from - 4 + i] = (uint8_t) (crc >> (8 * i));
	}
	forest->allocator.free(forest->allocator.ctx, temp);
	return true;
}

size_t
rcf_model_encoded_size_tf(const RcfForest *forest, const RcfGrader *grader,
						  const RcfTransform *transform)
{
	Writer		w = {NULL, 0, 0, false};

	if (!write_forest(&w, forest, grader, transform))
		return 0;
	return w.pos;
}

size_t
rcf_model_encode_tf(const RcfForest *forest, const RcfGrader *grader,
					const RcfTransform *transform, uint8_t *buf, size_t size)
{
	Writer		w = {buf, 0, size, false};

	if (!write_forest(&w, forest, grader, transform) || w.overflow)
		return 0;
	return w.pos;
}

size_t
rcf_model_encoded_size(const RcfForest *forest, const RcfGrader *grader)
{
	return rcf_model_encoded_size_tf(forest, grader, NULL);
}

size_t
rcf_model_encode(const RcfForest *forest, const RcfGrader *grader,
				 uint8_t *buf, size_t size)
{
	return rcf_model_encode_tf(forest, grader, NULL, buf, size);
}

size_t
rcf_encoded_size(const RcfForest *forest)
{
	return rcf_model_encoded_size(forest, NULL);
}

size_t
rcf_encode(const RcfForest *forest, uint8_t *buf, size_t size)
{
	return rcf_model_encode(forest, NULL, buf, size);
}

RcfForest *
rcf_decode(const uint8_t *buf, size_t len, const RcfAllocator *allocator,
		   RcfDecodeStatus *status, const char **detail)
{
	RcfGrader  *grader = NULL;
	RcfForest  *forest = rcf_model_decode(buf, len, allocator, &grader,
										  status, detail);

	rcf_grader_free(grader);
	return forest;
}

/* A bounds-checked reader; the first failure sticks. */
typedef struct Reader
{
	const uint8_t *buf;
	size_t		pos;
	size_t		len;
	RcfDecodeStatus status;
	const char *detail;
} Reader;

static inline bool
need(Reader *r, size_t n)
{
	if (r->status != RCF_DECODE_OK)
		return false;
	if (n > r->len - r->pos)
	{
		r->status = RCF_DECODE_TRUNCATED;
		r->detail = "the data ends early";
		return false;
	}
	return true;
}

static void
fail(Reader *r, RcfDecodeStatus status, const char *detail)
{
	if (r->status == RCF_DECODE_OK)
	{
		r->status = status;
		r->detail = detail;
	}
}

static uint16_t
get_u16(Reader *r)
{
	uint16_t	v;

	if (!need(r, 2))
		return 0;
	v = (uint16_t) (r->buf[r->pos] | (r->buf[r->pos + 1] << 8));
	r->pos += 2;
	return v;
}

static inline uint32_t
get_u32(Reader *r)
{
	uint32_t	v = 0;

	if (!need(r, 4))
		return 0;
	for (int i = 0; i < 4; i++)
		v |= (uint32_t) r->buf[r->pos + i] << (8 * i);
	r->pos += 4;
	return v;
}

static uint64_t
get_u64(Reader *r)
{
	uint64_t	v = 0;

	if (!need(r, 8))
		return 0;
	for (int i = 0; i < 8; i++)
		v |= (uint64_t) r->buf[r->pos + i] << (8 * i);
	r->pos += 8;
	return v;
}

static inline float
get_f32(Reader *r)
{
	uint32_t	v = get_u32(r);
	float		f;

	memcpy(&f, &v, 4);
	return f;
}

static double
get_f64(Reader *r)
{
	uint64_t	v = get_u64(r);
	double		f;

	memcpy(&f, &v, 8);
	return f;
}

/* Reads a varint of at most 64 bits; longer encodings are corrupt. */
static inline uint64_t
get_varint(Reader *r)
{
	uint64_t	v = 0;

	for (int shift = 0; shift < 64; shift += 7)
	{
		uint8_t		b;

		if (!need(r, 1))
			return 0;
		b = r->buf[r->pos++];
		if (shift == 63 && (b & 0x7E))
			break;
		v |= (uint64_t) (b & 0x7F) << shift;
		if (!(b & 0x80))
			return v;
	}
	fail(r, RCF_DECODE_CORRUPT, "a number is encoded in too many bytes");
	return 0;
}

/* Reads a varint that must be below limit. */
static uint64_t
get_count(Reader *r, uint64_t limit, const char *detail)
{
	uint64_t	v = get_varint(r);

	if (r->status == RCF_DECODE_OK && v >= limit)
	{
		fail(r, RCF_DECODE_CORRUPT, detail);
		return 0;
	}
	return v;
}

/* One run of consecutive records in the input. */
typedef struct Run
{
	uint64_t	start;
	uint64_t	length;
	size_t		offset;			/* of its first value in the input */
} Run;

/*
 * Reads one tree in preorder.  Children references are filled through a
 * stack of destinations: stack entries are 2 * node + side, or -1 for the
 * root.
 */
static void
read_tree(Reader *r, RcfForest *forest, RcfTree *tree, uint32_t nlive,
		  const float *points, int32_t *stack, int16_t *order, int *ninternal)
{
	int			N = forest->N;
	int			D = forest->D;
	int			top = 0;
	int			leaves = 0;

	*ninternal = 0;
	if (tree->heap_size == 0)
		return;
	stack[top++] = -1;
	while (top > 0 && r->status == RCF_DECODE_OK)
	{
		int32_t		dest = stack[--top];
		uint64_t	v = get_varint(r);
		int16_t		ref;

		if (r->status != RCF_DECODE_OK)
			return;
		if (v & 1)
		{
			uint64_t	slot = v >> 1;
			int16_t		leaf;

			if (slot >= nlive)
			{
				fail(r, RCF_DECODE_CORRUPT, "a leaf refers to a missing point");
				return;
			}
			if (++leaves > N)
			{
				fail(r, RCF_DECODE_CORRUPT, "a tree has more leaves than its sample size");
				return;
			}
			leaf = rcf_tree_leaf_alloc(tree);
			rcf_set_leaf_slot(tree, leaf, (uint32_t) slot);
			tree->leaf_mass[leaf] = 0;
			memcpy(rcf_leaf_point(forest, tree, leaf), points + (size_t) slot * D,
				   D * sizeof(float));
			ref = RCF_LEAF_REF(leaf);
		}
		else
		{
			uint64_t	dim = v >> 1;
			float		cut = get_f32(r);
			int16_t		node;

			if (r->status != RCF_DECODE_OK)
				return;
			if (dim >= (uint64_t) D || !isfinite(cut))
			{
				fail(r, RCF_DECODE_CORRUPT, "a cut has an invalid dimension or value");
				return;
			}
			if (*ninternal >= N - 1)
			{
				fail(r, RCF_DECODE_CORRUPT, "a tree has more nodes than its sample size allows");
				return;
			}
			node = rcf_tree_node_alloc(tree);
			order[(*ninternal)++] = node;
			tree->nodes[node].dim = (uint16_t) dim;
			tree->nodes[node].cut = cut;
			tree->nodes[node].child[0] = tree->nodes[node].child[1] = RCF_NIL;
			stack[top++] = 2 * node + 1;
			stack[top++] = 2 * node;
			ref = node;
		}
		if (dest < 0)
			tree->root = ref;
		else
			tree->nodes[dest / 2].child[dest % 2] = ref;
	}
}

RcfForest *
rcf_model_decode(const uint8_t *buf, size_t len, const RcfAllocator *allocator,
				 RcfGrader **grader_out, RcfDecodeStatus *status,
				 const char **detail)
{
	return rcf_model_decode_tf(buf, len, allocator, grader_out, NULL,
							   status, detail);
}

RcfForest *
rcf_model_decode_tf(const uint8_t *buf, size_t len,
					const RcfAllocator *allocator, RcfGrader **grader_out,
					RcfTransform **transform_out, RcfDecodeStatus *status,
					const char **detail)
{
	Reader		r = {buf, 0, len, RCF_DECODE_OK, NULL};
	RcfGrader  *grader = NULL;
	RcfTransform *transform = NULL;
	RcfParams	p;
	RcfForest  *forest = NULL;
	uint32_t	version;
	uint32_t	crc;
	uint64_t	updates,
				inserted,
				weight_base;
	uint64_t	nlive,
				nruns;
	Run		   *runs = NULL;
	char	   *temp = NULL;
	uint32_t   *leaf_of = NULL;
	uint32_t   *tree_slots = NULL;
	uint32_t   *entry_slot = NULL;
	float	   *points = NULL;
	int32_t    *stack = NULL;
	int16_t    *order = NULL;
	float	   *boxes = NULL;
	const char *err;

	if (len < HEADER_SIZE)
	{
		fail(&r, len == 0 ? RCF_DECODE_BAD_FORMAT : RCF_DECODE_TRUNCATED,
			 "the data is shorter than a header");
		goto done;
	}
	if (get_u32(&r) != RCF_MAGIC)
	{
		fail(&r, RCF_DECODE_BAD_FORMAT, "the data does not start with the model marker");
		goto done;
	}
	version = get_u16(&r);
	if (version != RCF_FORMAT_VERSION)
	{
		fail(&r, RCF_DECODE_BAD_VERSION, "the format version is not supported");
		goto done;
	}
	if (get_u16(&r) != 0)
	{
		fail(&r, RCF_DECODE_BAD_FORMAT, "a reserved header field is not zero");
		goto done;
	}
	crc = get_u32(&r);
	if (rcf_crc32c(0, buf + HEADER_SIZE, len - HEADER_SIZE) != crc)
	{
		fail(&r, RCF_DECODE_BAD_CHECKSUM, "the checksum does not match the content");
		goto done;
	}

	/* Parameters: checked before the arena they size is allocated. */
	p.dims = (int) get_u32(&r);
	p.shingle_size = (int) get_u32(&r);
	p.number_of_trees = (int) get_u32(&r);
	p.sample_size = (int) get_u32(&r);
	p.output_after = (int) get_u32(&r);
	p.time_decay = get_f64(&r);
	p.seed = get_u64(&r);
	if (r.status != RCF_DECODE_OK)
		goto done;
	/* The ranges SQL accepts (rcf.h), so no model asks for a bigger forest. */
	if ((err = rcf_model_params_check(&p)) != NULL)
	{
		fail(&r, RCF_DECODE_CORRUPT, "the forest parameters are out of range");
		goto done;
	}
	updates = get_u64(&r);
	inserted = get_u64(&r);
	weight_base = get_u64(&r);
	if (r.status != RCF_DECODE_OK)
		goto done;
	if ((inserted > 0 && updates != inserted + p.shingle_size - 1) ||
		(inserted == 0 && updates >= (uint64_t) p.shingle_size) ||
		weight_base > inserted || inserted > (UINT64_C(1) << 62))
	{
		fail(&r, RCF_DECODE_CORRUPT, "the update counters are inconsistent");
		goto done;
	}

	/*
	 * The arena is now bounded by valid parameters, but still check the
	 * input is at least as long as its smallest possible content: a few
	 * bytes per tree.
	 */
	if ((uint64_t) p.number_of_trees * 9 > len - r.pos)
	{
		fail(&r, RCF_DECODE_TRUNCATED, "the data is too short for its number of trees");
		goto done;
	}
	forest = rcf_create(&p, allocator);
	if (forest == NULL)
	{
		fail(&r, RCF_DECODE_NO_MEMORY, "out of memory for the forest");
		goto done;
	}
	forest->updates = updates;
	forest->inserted = inserted;
	forest->weight_base = weight_base;
	for (int i = 0; i < forest->D; i++)
	{
		forest->shingle[i] = get_f32(&r);
		if (r.status == RCF_DECODE_OK && !isfinite(forest->shingle[i]))
			fail(&r, RCF_DECODE_CORRUPT, "a shingle value is not finite");
	}
	forest->shingle_next = 0;
	if (r.status != RCF_DECODE_OK)
		goto done;

	/* Points. */
	nlive = get_count(&r, (uint64_t) forest->capacity,
					  "there are more points than the samplers can hold");
	nruns = get_count(&r, nlive + 1, "there are more record runs than points");
	if (r.status != RCF_DECODE_OK)
		goto done;
	if ((nlive > 0) != (nruns > 0))
	{
		fail(&r, RCF_DECODE_CORRUPT, "points and record runs disagree");
		goto done;
	}
	{
		size_t		temp_size = sizeof(float) * (size_t) forest->D * (nlive + 1) +
			sizeof(Run) * (nruns + 1) +
			sizeof(uint32_t) * (nlive + 1) +
			sizeof(uint32_t) * 2 * (size_t) forest->N +
			sizeof(int32_t) * 2 * (size_t) forest->N +
			sizeof(float) * (size_t) (forest->N - 1) * (2 * (size_t) forest->D + 1) +
			sizeof(int16_t) * (size_t) forest->N;

		temp = forest->allocator.alloc(forest->allocator.ctx, temp_size);
		if (temp == NULL)
		{
			fail(&r, RCF_DECODE_NO_MEMORY, "out of memory while decoding");
			goto done;
		}
		runs = (Run *) temp;
		points = (float *) (runs + nruns + 1);
		leaf_of = (uint32_t *) (points + (size_t) forest->D * (nlive + 1));
		for (uint64_t i = 0; i <= nlive; i++)
			leaf_of[i] = UINT32_MAX;
		tree_slots = leaf_of + nlive + 1;
		entry_slot = tree_slots + forest->N;
		stack = (int32_t *) (entry_slot + forest->N);
		boxes = (float *) (stack + 2 * forest->N);
		order = (int16_t *) (boxes + (size_t) (forest->N - 1) * (2 * (size_t) forest->D + 1));
	}
	{
		uint64_t	end = 0;

		for (uint64_t i = 0; i < nruns && r.status == RCF_DECODE_OK; i++)
		{
			uint64_t	gap = get_varint(&r);
			uint64_t	length = get_varint(&r);

			if (r.status != RCF_DECODE_OK)
				break;
			if ((i > 0 && gap == 0) || length == 0 || gap > inserted ||
				length > inserted + p.shingle_size || end + gap + length > updates)
			{
				fail(&r, RCF_DECODE_CORRUPT, "a record run is out of range");
				break;
			}
			runs[i].start = end + gap;
			runs[i].length = length;
			runs[i].offset = r.pos;
			if (!need(&r, length * 4 * (uint64_t) p.dims))
				break;
			for (uint64_t k = 0; k < length * p.dims; k++)
			{
				if (!isfinite(get_f32(&r)))
				{
					fail(&r, RCF_DECODE_CORRUPT, "a point value is not finite");
					break;
				}
			}
			end = runs[i].start + length;
		}
	}
	if (r.status != RCF_DECODE_OK)
		goto done;
	{
		uint64_t	seq = 0;
		uint64_t	run = 0;
		int			S = p.shingle_size;

		for (uint64_t i = 0; i < nlive; i++)
		{
			uint64_t	delta = get_varint(&r);
			float	   *pt;
			const uint8_t *src;

			if (r.status != RCF_DECODE_OK)
				goto done;
			if ((i > 0 && delta == 0) || delta > inserted || seq + delta >= inserted)
			{
				fail(&r, RCF_DECODE_CORRUPT, "a point's sequence number is out of range");
				goto done;
			}
			seq += delta;
			while (run < nruns && runs[run].start + runs[run].length < seq + S)
				run++;
			if (run == nruns || seq < runs[run].start)
			{
				fail(&r, RCF_DECODE_CORRUPT, "a point's records are missing");
				goto done;
			}
			forest->slot_seq[i] = seq;
			pt = points + (size_t) i * forest->D;
			src = buf + runs[run].offset + (size_t) (seq - runs[run].start) * 4 * p.dims;
			for (int k = 0; k < forest->D; k++)
			{
				uint32_t	v = (uint32_t) src[4 * k] | ((uint32_t) src[4 * k + 1] << 8) |
					((uint32_t) src[4 * k + 2] << 16) | ((uint32_t) src[4 * k + 3] << 24);

				memcpy(&pt[k], &v, 4);
			}
		}
	}

	/* Trees. */
	for (int t = 0; t < p.number_of_trees; t++)
	{
		RcfTree    *tree = &forest->trees[t];
		uint64_t	size;
		int			ninternal;
		uint64_t	expect = inserted < (uint64_t) forest->N ? inserted : (uint64_t) forest->N;

		tree->rng = get_u64(&r);
		size = get_varint(&r);
		if (r.status != RCF_DECODE_OK)
			goto done;
		if (size != expect)
		{
			fail(&r, RCF_DECODE_CORRUPT, "a sampler's size does not match the points seen");
			goto done;
		}
		tree->heap_size = (int32_t) size;
		if (!need(&r, 4 * size))
			goto done;
		for (uint64_t i = 0; i < size; i++)
		{
			/* Far beyond any real weight, and safe from overflow. */
			tree->heap_weight[i] = get_f32(&r);
			if (!(fabsf(tree->heap_weight[i]) <= 1e30f))
				fail(&r, RCF_DECODE_CORRUPT, "a sampler weight is out of range");
		}

		/* Points for now; made leaves below, once the tree is read. */
		for (uint64_t i = 0; i < size; i++)
			entry_slot[i] = (uint32_t) get_count(&r, nlive,
												 "a sampler refers to a missing point");
		if (r.status != RCF_DECODE_OK)
			goto done;
		read_tree(&r, forest, tree, (uint32_t) nlive, points, stack, order, &ninternal);
		if (r.status != RCF_DECODE_OK)
			goto done;

		/*
		 * Leaf masses are the sampler's counts of each point: map each point
		 * to the leaf holding it, by walking the tree.  leaf_of is all unset
		 * between trees; only this tree's entries are reset afterwards.
		 */
		{
			int			top = 0;
			int			nleaves = 0;

			if (tree->root != RCF_NIL)
				stack[top++] = tree->root;
			while (top > 0)
			{
				int16_t		ref = (int16_t) stack[--top];

				if (RCF_IS_LEAF(ref))
				{
					uint32_t	slot = rcf_leaf_slot(tree, RCF_LEAF_IDX(ref));

					if (leaf_of[slot] != UINT32_MAX)
					{
						fail(&r, RCF_DECODE_CORRUPT, "two leaves of a tree hold the same point");
						goto done;
					}
					leaf_of[slot] = (uint32_t) RCF_LEAF_IDX(ref);
					tree_slots[nleaves++] = slot;
				}
				else
				{
					stack[top++] = tree->nodes[ref].child[0];
					stack[top++] = tree->nodes[ref].child[1];
				}
			}
			for (int i = 0; i < tree->heap_size; i++)
			{
				uint32_t	slot = entry_slot[i];
				uint32_t	leaf = leaf_of[slot];

				if (leaf == UINT32_MAX)
				{
					fail(&r, RCF_DECODE_CORRUPT, "a sampled point is missing from its tree");
					goto done;
				}
				tree->heap_leaf[i] = (uint16_t) leaf;
				tree->leaf_mass[leaf]++;
				rcf_set_refcount(forest, slot, rcf_refcount(forest, slot) + 1);
			}
			for (int i = 0; i < nleaves; i++)
			{
				if (tree->leaf_mass[leaf_of[tree_slots[i]]] == 0)
				{
					fail(&r, RCF_DECODE_CORRUPT, "a leaf holds a point its sampler does not have");
					goto done;
				}
				leaf_of[tree_slots[i]] = UINT32_MAX;
			}
		}
		/* Leaf counts, cuts against the children's boxes, cached boxes. */
		if (!rcf_tree_finish(forest, tree, order, ninternal, boxes))
		{
			fail(&r, RCF_DECODE_CORRUPT, "cut does not separate the children");
			goto done;
		}
		err = rcf_sampler_check(tree, forest->N);
		if (err)
		{
			fail(&r, RCF_DECODE_CORRUPT, err);
			goto done;
		}
	}
	{
		uint64_t	nsections = get_count(&r, 3, "the data holds more sections than this version knows");

		for (uint64_t i = 0; i < nsections && r.status == RCF_DECODE_OK; i++)
		{
			uint64_t	kind = get_varint(&r);
			uint64_t	length = get_varint(&r);
			const char *gdetail;

			if (r.status != RCF_DECODE_OK)
				break;
			if (kind == RCF_SECTION_TRANSFORM && transform != NULL)
			{
				fail(&r, RCF_DECODE_CORRUPT, "the data holds two transform sections");
				break;
			}
			if (kind == RCF_SECTION_TRANSFORM)
			{
				if (!need(&r, length))
					break;
				transform = rcf_transform_decode(buf + r.pos, length, p.dims,
												 allocator, &gdetail);
				if (transform == NULL)
				{
					fail(&r, RCF_DECODE_CORRUPT, gdetail);
					break;
				}
				r.pos += length;
				continue;
			}
			/* The grader's section comes first, as rcf_model_encode writes. */
			if ((kind != RCF_SECTION_GRADER && kind != RCF_SECTION_GRADER_V1) ||
				grader != NULL || transform != NULL)
			{
				fail(&r, RCF_DECODE_CORRUPT, "the data holds sections this version does not know");
				break;
			}
			if (!need(&r, length))
				break;
			grader = rcf_grader_decode((int) kind, buf + r.pos, length,
									   allocator, &gdetail);
			if (grader == NULL)
			{
				fail(&r, RCF_DECODE_CORRUPT, gdetail);
				break;
			}
			r.pos += length;
		}
	}
	if (r.status != RCF_DECODE_OK)
		goto done;
	if (r.pos != len)
	{
		fail(&r, RCF_DECODE_BAD_FORMAT, "there are bytes after the end of the model");
		goto done;
	}

	/* Slots beyond the live ones are free, the lowest on top of the stack. */
	forest->nfree = 0;
	forest->free_slot = RCF_NO_SLOT;
	for (uint32_t s = forest->capacity; s-- > 0;)
	{
		if (s >= nlive)
		{
			rcf_set_refcount(forest, s, 0);
			forest->slot_seq[s] = forest->free_slot;
			forest->free_slot = s;
			forest->nfree++;
		}
		else if (rcf_refcount(forest, s) == 0)
		{
			fail(&r, RCF_DECODE_CORRUPT, "a point is not referred to by any sampler");
			goto done;
		}
	}
	/*
	 * Masses, reference counts, boxes and free lists are right by
	 * construction, and cuts and heaps were checked above: that is all of
	 * rcf_check, which the fuzzer runs on every forest that decodes.
	 */

done:
	if (temp)
		forest->allocator.free(forest->allocator.ctx, temp);
	if (r.status != RCF_DECODE_OK)
	{
		rcf_free(forest);
		forest = NULL;
		rcf_grader_free(grader);
		grader = NULL;
		rcf_transform_free(transform);
		transform = NULL;
	}
	if (grader_out)
		*grader_out = grader;
	else
		rcf_grader_free(grader);
	if (transform_out)
		*transform_out = transform;
	else
		rcf_transform_free(transform);
	*status = r.status;
	*detail = r.detail;
	return forest;
}

/* The checksum stored in an encoding's header, checking nothing. */
uint32_t
rcf_model_stored_crc(const uint8_t *buf, size_t len)
{
	Reader		r = {buf, 8, len, RCF_DECODE_OK, NULL};

	return len < HEADER_SIZE ? 0 : get_u32(&r);
}

/* Reads the parameters from an encoding's header, checking nothing else. */
int
rcf_model_peek_params(const uint8_t *buf, size_t len, RcfParams *params)
{
	Reader		r = {buf, 0, len, RCF_DECODE_OK, NULL};

	if (len < HEADER_SIZE || get_u32(&r) != RCF_MAGIC ||
		get_u16(&r) != RCF_FORMAT_VERSION)
		return -1;
	r.pos = HEADER_SIZE;
	params->dims = (int) get_u32(&r);
	params->shingle_size = (int) get_u32(&r);
	params->number_of_trees = (int) get_u32(&r);
	params->sample_size = (int) get_u32(&r);
	params->output_after = (int) get_u32(&r);
	params->time_decay = get_f64(&r);
	params->seed = get_u64(&r);
	return r.status == RCF_DECODE_OK ? 0 : -1;
}
