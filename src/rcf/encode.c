/*
 * encode.c
 *	  The byte form of a forest, and its validating decoder.
 *
 * Layout, format version 2 (little-endian; "varint" is unsigned LEB128):
 *
 *	 header		u32 magic "RCFM", u16 version, u16 flags, u32 CRC-32C of
 *				everything after this field, then of the flags if any is
 *				set (so that a model without flags has the checksum it
 *				had before flags existed).  Flag 1: the parameters are
 *				followed by the bounding_box_cache_fraction, set only
 *				below 1, the default; no other flag exists (version 1:
 *				the field is reserved, 0)
 *	 params		u32 dims, shingle_size, number_of_trees, sample_size,
 *				output_after; f64 time_decay; u64 seed (as in version 1,
 *				so rcf_model_peek_params reads both); with flag 1, f64
 *				bounding_box_cache_fraction, 0 <= f < 1, not -0
 *	 counters	varint updates; varint inserted - weight_base.  inserted,
 *				the points offered, is updates - shingle_size + 1 (or 0).
 *	 shingle	f32[dims * shingle_size], oldest record first
 *	 points		with shingle_size > 1: varint record count, then the
 *				records of the shared store that some leaf's point covers,
 *				in store order (a point is the offset of its first record,
 *				its name); with shingle_size 1: varint point count, then
 *				the distinct points of all leaves, in the order the trees
 *				first name them in preorder (a point's name is its place).
 *				One bit stream: per column (a record's value, or a point's
 *				position) 4 bits of scale (0: float order; 1 + s: decimal
 *				integers of s places), then column by column its Rice k
 *				(6 bits) and each value as the zigzag difference from the
 *				one before in its column.
 *	 trees		per tree: u64 rng state; varint sampler size; then, if the
 *				tree is not empty, one bit stream (write_tree):
 *				- its leaves' points: their number less one (in the bits
 *				  sample_size - 1 needs), the smallest name (in the bits
 *				  the number of names needs), the Rice k (6 bits) and each
 *				  next name as its distance above the one before, less one;
 *				- its internal nodes in preorder: the cut's dimension (in
 *				  the bits D - 1 needs) and the cut as its place in float
 *				  order at or above the smallest value of the node's points
 *				  in that dimension and below the largest (truncated
 *				  binary).  The decoder routes the points down the cuts as
 *				  it reads them; a node reached by one point is a leaf;
 *				- its sampler: the largest weight in float order (32 bits),
 *				  the Rice k (6 bits), then per leaf in preorder its mass
 *				  less one (Rice, k 0) and its entries' weights as their
 *				  distances below the largest in float order, smallest
 *				  first (one of all is 0).  The heap's layout is not kept:
 *				  the decoder rebuilds it (sampler.c's order is total).
 *				Leaf masses are the sampler's counts; boxes are recomputed.
 *	 sections	varint count of optional sections, then per section varint
 *				kind, varint length, payload.  Kind 2 is the grader
 *				(grade.c); kind 1, the grader's layout before its CUSUM,
 *				is still read in version 1; kind 3 is the transform
 *				(transform.c), whose dims must be the forest's, never of
 *				method none (no section is written then).  At most one section of
 *				each concern, the grader's first.
 *
 * A Rice code with k writes v as v >> k in unary (ones, then a zero) and
 * the low k bits, or, from a quotient of 16 up, 16 ones and v in a 6-bit
 * width and its bits below the leading one (put_rice).  Bit streams are
 * least significant bit first and end at a byte, padded with zero bits.
 * The decoder refuses anything another encoder could not have written the
 * same: bounds, order, padding, escapes without need.
 *
 * What the reference model (1 value, shingle 8, 50 trees, 256 samples)
 * spends, after 10,000 / 100,000 updates (bench/model_size): records 29.6 /
 * 189.2 KB, leaves' names 11.0 / 15.4 KB, dimensions and cuts 39.1 / 39.1
 * KB, samplers 38.3 / 37.7 KB, the rest 0.5 KB.  Before the tree's points
 * were routed, a leaf named its point (22.4 / 25.6 KB) and the shape took a
 * bit per node; before entries were written per leaf, each heap position
 * named its leaf (12.8 KB) and weights were distances below their heap
 * parent.  Routing costs decode time: a node's points are gathered and
 * split once per level (the reference model: 1.25 ms against 0.86 ms when
 * first measured; 0.96 ms since a node's values are gathered four at a
 * time with their range and the boxes computed in place, tree.c).
 *
 * Version 1 (still read; written before the shared store) differs in:
 * counters as u64 updates, inserted, weight_base; points as varint count,
 * varint run count, per run varint gap (from the end of the previous run),
 * varint length, f32[length * dims], then per point in order of sequence
 * number a varint sequence number delta (a point with sequence number s is
 * the records s .. s + shingle_size - 1); per tree, after the rng state and
 * the sampler size, f32 weights in heap order (the heap is kept, and must
 * be one), a varint point index per sampler entry, then the tree in
 * preorder: varint 2 * point + 1 for a leaf, or varint 2 * dim followed by
 * f32 cut for an internal node.
 */
#include <stdlib.h>
#ifdef __SSE__
#include <xmmintrin.h>
#endif

#include "rcf_internal.h"
#include "grade.h"
#include "le_bytes.h"

#define RCF_MAGIC		0x4D464352u	/* "RCFM" little-endian */
#define HEADER_SIZE		12
#define RCF_FLAG_BOX_CACHE	0x0001	/* the fraction follows the params */

/*
 * CRC-32C, reflected polynomial 0x82F63B78, eight bytes per step with eight
 * tables ("slicing by 8"): the checksum covers every byte of a model, so it
 * is a good part of the decoding time.  The tables are constants (generated
 * at build time by gen_crc32c_table.c into build/gen/): detector threads
 * decode at the same time, and nothing is filled at run time.  PostgreSQL's pg_crc32c is the same CRC,
 * but src/rcf/ links without PostgreSQL (unit tests, fuzzing, benchmarks).
 */
#include "crc32c_table.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <nmmintrin.h>
#define RCF_CRC_HW 1

/*
 * The same CRC with the processor's CRC32 instruction (SSE 4.2), several
 * times faster than the tables; used when the processor has it.
 */
__attribute__((target("sse4.2")))
static uint32_t
crc32c_hw(uint32_t crc, const uint8_t *p, size_t len)
{
	uint64_t	c = crc;

	while (len >= 8)
	{
		uint64_t	v;

		memcpy(&v, p, 8);
		c = _mm_crc32_u64(c, v);
		p += 8;
		len -= 8;
	}
	while (len--)
		c = _mm_crc32_u8((uint32_t) c, *p++);
	return (uint32_t) c;
}
#endif

uint32_t
rcf_crc32c(uint32_t crc, const void *data, size_t len)
{
	const uint8_t *p = data;

#ifdef RCF_CRC_HW
	if (__builtin_cpu_supports("sse4.2"))
		return ~crc32c_hw(~crc, p, len);
#endif
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
 * The checksum of a model: its content after the header, then the header's
 * flags when any is set, so that a flipped flag is a checksum error too
 * while a model without flags keeps the checksum of the format before them.
 */
static uint32_t
content_crc(const uint8_t *content, size_t len, uint16_t flags)
{
	uint32_t	crc = rcf_crc32c(0, content, len);
	uint8_t		f[2] = {(uint8_t) (flags & 0xFF), (uint8_t) (flags >> 8)};

	return flags ? rcf_crc32c(crc, f, 2) : crc;
}

/*
 * A writer that only counts when buf is NULL, so the same code measures and
 * writes.  Past the end of buf it goes on counting without writing, so that
 * one pass into a buffer that is too small still tells the size.
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
	if (w->buf && !w->overflow)
	{
		if (w->pos + n > w->cap)
			w->overflow = true;
		else
			memcpy(w->buf + w->pos, src, n);
	}
	w->pos += n;
}

/* Writes the low n bytes of v, least significant first. */
static void
put_le(Writer *w, uint64_t v, int n)
{
	uint8_t		b[8];

	rcf_le_put(b, v, n);
	put_bytes(w, b, n);
}

static void
put_u16(Writer *w, uint16_t v)
{
	put_le(w, v, 2);
}

static void
put_u32(Writer *w, uint32_t v)
{
	put_le(w, v, 4);
}

static void
put_u64(Writer *w, uint64_t v)
{
	put_le(w, v, 8);
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

/*
 * Writes an optional section's kind and length and makes room for its n
 * bytes: where the section's own encoder writes them, or NULL when the
 * writer only measures or has run out of room.
 */
static uint8_t *
put_section(Writer *w, uint64_t kind, size_t n)
{
	uint8_t    *at = NULL;

	put_varint(w, kind);
	put_varint(w, n);
	if (w->buf && !w->overflow && w->pos + n <= w->cap)
		at = w->buf + w->pos;
	else if (w->buf)
		w->overflow = true;
	w->pos += n;
	return at;
}

/*
 * Floats as ordered integers: a < b as floats (neither NaN) exactly when
 * float_ord(a) < float_ord(b), with -0 just below +0.  Cuts and weights are
 * written as distances in this order, which the neighbours they lie
 * between bound, and records as differences from the record before.
 */
static inline uint32_t
float_ord(float f)
{
	uint32_t	u;

	memcpy(&u, &f, 4);
	/* Without a branch (the decoder's cuts make it a coin toss): ~u or u | 2^31. */
	return u ^ ((uint32_t) ((int32_t) u >> 31) | 0x80000000u);
}

static inline float
float_unord(uint32_t o)
{
	/* o & (2^31 - 1) or ~o, without a branch. */
	uint32_t	u = o ^ (~(uint32_t) ((int32_t) o >> 31) | 0x80000000u);
	float		f;

	memcpy(&f, &u, 4);
	return f;
}

/* The order of a bound, either zero taken as -0 (the lowest). */
static inline uint32_t
bound_ord(float f)
{
	uint32_t	o = float_ord(f);

	/* +0 is just above -0 (a comparison of integers: no branch). */
	return o - (o == 0x80000000u);
}

static inline uint64_t
zigzag(int64_t v)
{
	return ((uint64_t) v << 1) ^ (uint64_t) (v >> 63);
}

static inline int64_t
unzigzag(uint64_t v)
{
	return (int64_t) (v >> 1) ^ -(int64_t) (v & 1);
}

/* Bits needed to write x (0 for 0). */
static inline int
bit_width(uint64_t x)
{
	return x ? 64 - __builtin_clzll(x) : 0;
}

/* A bit stream over a Writer, least significant bit first. */
typedef struct BitWriter
{
	Writer	   *w;
	uint64_t	acc;
	int			n;
} BitWriter;

/* Writes the low n (at most 40) bits of v. */
static inline void
put_bits(BitWriter *b, uint64_t v, int n)
{
	b->acc |= v << b->n;
	b->n += n;
	while (b->n >= 8)
	{
		uint8_t		byte = (uint8_t) b->acc;

		put_bytes(b->w, &byte, 1);
		b->acc >>= 8;
		b->n -= 8;
	}
}

/* Ends the stream at a byte boundary, padding with zero bits. */
static void
put_bits_end(BitWriter *b)
{
	if (b->n > 0)
		put_bits(b, 0, 8 - b->n);
}

/*
 * A number below 2^34: its width in 6 bits, then its bits below the
 * leading one.
 */
static inline void
put_gamma(BitWriter *b, uint64_t v)
{
	int			w = bit_width(v);

	put_bits(b, (uint64_t) w, 6);
	if (w > 1)
		put_bits(b, v & ((UINT64_C(1) << (w - 1)) - 1), w - 1);
}

/*
 * A number v below n in a truncated binary code: with k = bit_width(n - 1)
 * and u = 2^k - n, v below u in k - 1 bits, any other as k - 1 bits at or
 * above u and one bit more, so that a range that is not a power of two
 * costs less than k bits on average (nothing for n <= 1).
 */
static inline void
put_trunc(BitWriter *b, uint64_t v, uint64_t n)
{
	int			k;
	uint64_t	u;

	if (n <= 1)
		return;
	k = bit_width(n - 1);
	u = (UINT64_C(1) << k) - n;
	if (v < u)
		put_bits(b, v, k - 1);
	else
	{
		put_bits(b, u + ((v - u) >> 1), k - 1);
		put_bits(b, (v - u) & 1, 1);
	}
}

/*
 * A Rice code for the differences of records and weights: a value v below
 * 2^34 as q = v >> k in unary (q one bits, then a zero) and its low k bits,
 * or, for a quotient of RICE_ESCAPE or more, RICE_ESCAPE one bits and v in
 * put_gamma's code.  The writer picks k for each stream from its values'
 * widths (rice_choose) and writes it first, in 6 bits.  Compared with
 * put_gamma alone this saves the six bits of width on nearly every value;
 * a k adapted value by value saved no more and made the decoder wait on
 * its running state (a fifth of the decode time).
 */
#define RICE_ESCAPE 16
#define RICE_MAX_K	34

typedef struct Rice
{
	int			k;
} Rice;

/*
 * The k that writes values of these widths (hist[w]: how many) smallest,
 * the smallest such k on a tie; 0 for no values.  The decoder checks every
 * stream's k with this, so it costs O(widths): twice the bits, in integers,
 * from sums of the counts below and above each k.  Per value of width w:
 * k + 1 bits if w <= k; from quotients of 16 up (w - 1 - k >= 4) escaped,
 * RICE_ESCAPE + 6 + w - 1; else k + 1 and quotients 2^(w-1-k) to twice
 * that, counted as 1.5 times the lower bound.
 */
static int
rice_choose(const uint64_t *hist)
{
	uint64_t	upto[RICE_MAX_K + 2];	/* values of width below w */
	uint64_t	escaped[RICE_MAX_K + 2];	/* twice the escapes' bits, w and up */
	uint64_t	best_bits = UINT64_MAX;
	int			best = 0;

	upto[0] = 0;
	for (int w = 0; w <= RICE_MAX_K; w++)
		upto[w + 1] = upto[w] + hist[w];
	escaped[RICE_MAX_K + 1] = 0;
	for (int w = RICE_MAX_K; w >= 0; w--)
		escaped[w] = escaped[w + 1] + hist[w] * 2 * (RICE_ESCAPE + 6 + w - 1);
	for (int k = 0; k <= RICE_MAX_K; k++)
	{
		uint64_t	bits = upto[k + 1] * 2 * (k + 1);

		for (int w = k + 1; w <= k + 4 && w <= RICE_MAX_K; w++)
			bits += hist[w] * (2 * (k + 1) + 3 * (UINT64_C(1) << (w - 1 - k)));
		if (k + 5 <= RICE_MAX_K)
			bits += escaped[k + 5];
		if (bits < best_bits)
		{
			best = k;
			best_bits = bits;
		}
	}
	return best;
}

static void
put_rice(BitWriter *b, const Rice *rc, uint64_t v)
{
	int			k = rc->k;
	uint64_t	q = v >> k;

	if (q < RICE_ESCAPE)
	{
		/* q ones, a zero, then the low k bits (at most 34 bits). */
		put_bits(b, (UINT64_C(1) << q) - 1, (int) q + 1);
		put_bits(b, v & ((UINT64_C(1) << k) - 1), k);
	}
	else
	{
		put_bits(b, (UINT64_C(1) << RICE_ESCAPE) - 1, RICE_ESCAPE);
		put_gamma(b, v);
	}
}

/*
 * What the writer needs to name a leaf's point: with a shared store, which
 * records survive (as compaction would keep them) and the rank of each;
 * without, a hash table of the distinct points by value, so that a point
 * several trees hold is written once.
 */
typedef struct PointNames
{
	uint64_t   *live;			/* shared: a bit per record in use */
	uint32_t   *before;			/* shared: records kept before each word */
	uint32_t	nrecords;		/* shared: records written */
	uint32_t   *slots;			/* not shared: hash table, index + 1 or 0 */
	uint32_t	mask;			/* its size - 1 */
	const float **values;		/* not shared: the distinct points */
	uint32_t	npoints;
} PointNames;

/* Size of the distinct points' hash table: a power of two >= 2 * leaves. */
static uint32_t
hash_size(const RcfParams *p)
{
	uint64_t	want = 2 * (uint64_t) p->number_of_trees * p->sample_size;
	uint32_t	size = 1;

	while (size < want)
		size <<= 1;
	return size;
}

/* Bytes of write_forest's temporary buffer (limits.c follows this). */
size_t
rcf_encode_scratch(const RcfParams *p, uint32_t rec_used)
{
	size_t		N = (size_t) p->sample_size;
	size_t		names;

	if (p->shingle_size > 1)
		names = rcf_store_compact_scratch(rec_used);
	else
		names = sizeof(uint32_t) * hash_size(p) +
			sizeof(float *) * (size_t) p->number_of_trees * N;
	return names + sizeof(int16_t) * 2 * N + sizeof(uint16_t) * N +
		sizeof(int16_t) * N +	/* order */
		sizeof(float) * (N - 1) * (2 * (size_t) p->dims * p->shingle_size + 1);	/* boxes */
}

/* Hash of a point's bits (FNV-1a over its values). */
static uint32_t
point_hash(const float *v, int d)
{
	uint32_t	h = 2166136261u;

	for (int i = 0; i < d; i++)
	{
		uint32_t	x;

		memcpy(&x, &v[i], 4);
		h = (h ^ x) * 16777619u;
		h ^= h >> 15;
	}
	return h;
}

/*
 * The number by which a leaf's point is written: its record's rank in the
 * written store, or its index among the distinct points (added if new).
 */
static uint32_t
point_name(PointNames *pn, const RcfForest *forest, const RcfTree *tree,
		   int leaf)
{
	const float *v;
	uint32_t	h;

	if (forest->shared)
		return rcf_record_rank(pn->live, pn->before, tree->leaf_loc[leaf]);
	v = rcf_leaf_point(forest, tree, leaf);
	for (h = point_hash(v, forest->D) & pn->mask;; h = (h + 1) & pn->mask)
	{
		uint32_t	s = pn->slots[h];

		if (s == 0)
		{
			pn->values[pn->npoints] = v;
			pn->slots[h] = ++pn->npoints;
			return pn->npoints - 1;
		}
		if (memcmp(pn->values[s - 1], v, forest->D * sizeof(float)) == 0)
			return s - 1;
	}
}

/*
 * Numbers the distinct points of a tree's leaves in preorder, the order in
 * which write_tree names them.
 */
static void
name_points(PointNames *pn, const RcfForest *forest, const RcfTree *tree,
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
			(void) point_name(pn, forest, tree, RCF_LEAF_IDX(ref));
		else
		{
			stack[top++] = tree->nodes[ref].child[RCF_RIGHT];
			stack[top++] = tree->nodes[ref].child[RCF_LEFT];
		}
	}
}

/*
 * The next point written after *i (records in use of a shared store, in
 * store order, or the distinct points), advancing *i; NULL at the end.
 */
static const float *
next_point(const RcfForest *forest, const PointNames *pn, uint32_t *i)
{
	if (!forest->shared)
		return *i < pn->npoints ? pn->values[(*i)++] : NULL;
	for (; *i < forest->rec_used; (*i)++)
		if (pn->live[*i / 64] & (UINT64_C(1) << (*i % 64)))
			return forest->records + (size_t) (*i)++ * forest->params.dims;
	return NULL;
}

/*
 * A value x * 10^s rounded to an integer, and whether that integer gives x
 * back, bit for bit, as the decoder computes it (decimal_value).  Data
 * with a few decimals (prices, sensor readings) is exactly such a value
 * for a small s, and its differences as integers are far smaller than in
 * float order.
 */
#define DECIMAL_MAX		9
#define DECIMAL_LIMIT	4294967296.0	/* |integers| below 2^32: differences
										 * below 2^33, as put_rice takes */

static const double pow10_table[DECIMAL_MAX + 1] = {
	1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9
};

static inline float
decimal_value(int64_t k, int s)
{
	return (float) ((double) k / pow10_table[s]);
}

static inline int64_t
decimal(float x, int s)
{
	return (int64_t) llrint((double) x * pow10_table[s]);
}

static inline bool
decimal_exact(float x, int s)
{
	double		k = (double) x * pow10_table[s];
	float		back;

	if (!(fabs(k) < DECIMAL_LIMIT))
		return false;
	back = decimal_value((int64_t) llrint(k), s);
	return memcmp(&back, &x, sizeof(float)) == 0;
}

/*
 * The written points as the writer has them (forest and pn: next_point)
 * or as the decoder has read them (n points at values, stride apart), so
 * that both choose a column's scale with the same code.
 */
typedef struct PointSeq
{
	const RcfForest *forest;
	const PointNames *pn;
	const float *values;
	size_t		stride;
	uint64_t	n;
} PointSeq;

static inline const float *
seq_next(const PointSeq *q, uint32_t *i)
{
	if (q->values == NULL)
		return next_point(q->forest, q->pn, i);
	return *i < q->n ? q->values + (size_t) (*i)++ * q->stride : NULL;
}

/*
 * How column d of the written points is written: 0 for differences in
 * float order, or 1 + s for differences of decimal(x, s), with the
 * smallest s that gives every value back, when that costs fewer bits.
 * The decoder checks each column's scale with this.
 */
static uint8_t
point_scale(const PointSeq *q, int d)
{
	const float *v;
	const float *prev = NULL;
	uint32_t	i = 0;
	int			s = 0;
	uint64_t	float_bits = 0;
	uint64_t	decimal_bits = 0;

	while ((v = seq_next(q, &i)) != NULL)
	{
		while (s <= DECIMAL_MAX && !decimal_exact(v[d], s))
			s++;
		if (s > DECIMAL_MAX)
			return 0;
	}
	/* A finer scale keeps the values a coarser one gave back: check. */
	i = 0;
	while ((v = seq_next(q, &i)) != NULL)
	{
		int64_t		diff;

		if (!decimal_exact(v[d], s))
			return 0;
		diff = decimal(v[d], s) - (prev ? decimal(prev[d], s) : 0);
		decimal_bits += bit_width(zigzag(diff));
		float_bits += bit_width(zigzag((int64_t) float_ord(v[d]) -
									   (int64_t) (prev ? float_ord(prev[d]) : float_ord(0.0f))));
		prev = v;
	}
	return decimal_bits < float_bits ? (uint8_t) (s + 1) : 0;
}

/* What the writer writes for weight i > 0: its distance below its parent. */
static inline uint64_t
weight_step(const RcfTree *tree, int i)
{
	return zigzag((int64_t) float_ord(tree->heap_weight[(i - 1) / 2]) -
				  (int64_t) float_ord(tree->heap_weight[i]));
}

/*
 * The difference written for column d of point v after prev (NULL for
 * the first point), with scale (point_scale).
 */
static inline uint64_t
column_step(const float *v, const float *prev, int d, uint8_t scale)
{
	if (scale > 0)
		return zigzag(decimal(v[d], scale - 1) -
					  (prev ? decimal(prev[d], scale - 1) : 0));
	return zigzag((int64_t) float_ord(v[d]) -
				  (int64_t) (prev ? float_ord(prev[d]) : float_ord(0.0f)));
}

/*
 * Sorts n names in place: by insertion when few, else by bytes from the
 * lowest (a stable counting pass per byte the largest needs, through tmp,
 * n more): a third of the encoding's time went to qsort.
 */
static void
sort_names(uint32_t *v, int n, uint32_t *tmp)
{
	uint32_t	largest = 0;

	if (n < 32)
	{
		for (int i = 1; i < n; i++)
			for (int j = i; j > 0 && v[j - 1] > v[j]; j--)
			{
				uint32_t	x = v[j - 1];

				v[j - 1] = v[j];
				v[j] = x;
			}
		return;
	}
	for (int i = 0; i < n; i++)
		largest |= v[i];
	for (int shift = 0; shift < 32 && (largest >> shift) != 0; shift += 8)
	{
		int			count[257] = {0};

		for (int i = 0; i < n; i++)
			count[((v[i] >> shift) & 0xFF) + 1]++;
		for (int b = 0; b < 256; b++)
			count[b + 1] += count[b];
		for (int i = 0; i < n; i++)
			tmp[count[(v[i] >> shift) & 0xFF]++] = v[i];
		memcpy(v, tmp, sizeof(uint32_t) * n);
	}
}

/*
 * Writes a tree as one bit stream, so that the decoder can route the
 * tree's points down its cuts instead of reading which leaf holds which:
 *
 * - its leaves' points: their number less one (in the bits the sample
 *   size needs), then their names in increasing order, the first in the
 *   bits nrefs needs and each next as its distance above the one before,
 *   less one (Rice);
 * - each internal node in preorder as its cut's dimension (in the bits the
 *   point's dimensions need) and the cut's place in float order in the
 *   node's box in that dimension: at or above the smallest value, below
 *   the largest (truncated binary).  The decoder knows the node's points,
 *   so that range, and splits them by the cut; a node with one point is a
 *   leaf (a tree's leaves hold distinct points).  Coding the dimension and
 *   the cut together, as one place among all dimensions' ranges, was 1%
 *   larger and needed the whole box of every node while decoding;
 * - the sampler: the largest weight in float order (32 bits), the Rice k,
 *   then per leaf in preorder its mass less one (Rice, k 0) and the
 *   distances in float order of its entries' weights below the largest,
 *   smallest first.  The heap's layout is not kept: the decoder rebuilds
 *   it (sampler.c orders entries totally, so its top is the same).
 *
 * Returns false if a cut does not split its node's box, or an entry's
 * leaf is not in the tree or a leaf has no entry (rcf_check refuses such
 * forests; the encoding cannot hold them).
 */
static bool
write_tree(Writer *w, const RcfForest *forest, const RcfTree *tree,
		   PointNames *pn, uint64_t nrefs, int16_t *stack, uint16_t *leafno,
		   int16_t *order, float *boxes, uint32_t *names, uint32_t *dist,
		   uint16_t *first)
{
	BitWriter	b = {w, 0, 0};
	int			D = forest->D;
	int			dbits = bit_width((uint64_t) D - 1);
	int			top = 0;
	int			ninternal = 0;
	int			nleaves = 0;
	uint32_t	top_ord = 0;
	Rice		rc = {0};
	Rice		rc_mass = {0};
	uint64_t	hist[RICE_MAX_K + 1] = {0};

	if (tree->root == RCF_NIL)
		return true;
	memset(leafno, 0xFF, sizeof(uint16_t) * forest->N);
	stack[top++] = tree->root;
	while (top > 0)
	{
		int16_t		ref = stack[--top];

		if (RCF_IS_LEAF(ref))
		{
			names[nleaves] = point_name(pn, forest, tree, RCF_LEAF_IDX(ref));
			leafno[RCF_LEAF_IDX(ref)] = (uint16_t) nleaves++;
		}
		else
		{
			const RcfNode *n = &tree->nodes[ref];

			order[ninternal++] = ref;
			stack[top++] = n->child[RCF_RIGHT];
			stack[top++] = n->child[RCF_LEFT];
		}
	}

	/* The leaves' points, as a set. */
	sort_names(names, nleaves, names + forest->N);
	put_bits(&b, (uint64_t) nleaves - 1, bit_width((uint64_t) forest->N - 1));
	put_bits(&b, names[0], nrefs > 0 ? bit_width(nrefs - 1) : 0);
	for (int i = 1; i < nleaves; i++)
		hist[bit_width(names[i] - names[i - 1] - 1)]++;
	rc.k = rice_choose(hist);
	put_bits(&b, (uint64_t) rc.k, 6);
	for (int i = 1; i < nleaves; i++)
		put_rice(&b, &rc, names[i] - names[i - 1] - 1);

	/* Cuts, in preorder, each within its node's box in its dimension. */
	rcf_tree_boxes(forest, tree, order, ninternal, boxes);
	for (int k = 0; k < ninternal; k++)
	{
		const RcfNode *n = &tree->nodes[order[k]];
		const float *box = boxes + (size_t) order[k] * 2 * D;
		uint32_t	lo = bound_ord(box[n->dim]);
		uint32_t	hi = bound_ord(box[D + n->dim]);
		uint32_t	c = float_ord(n->cut);

		if (!(lo <= c && c < hi))
			return false;
		put_bits(&b, n->dim, dbits);
		put_trunc(&b, c - lo, hi - lo);
	}

	/* The sampler: entries grouped by leaf in preorder. */
	memset(first, 0, sizeof(uint16_t) * (nleaves + 1));
	for (int i = 0; i < tree->heap_size; i++)
	{
		uint32_t	o = float_ord(tree->heap_weight[i]);

		if (tree->heap_leaf[i] >= forest->N ||
			leafno[tree->heap_leaf[i]] >= nleaves)
			return false;
		if (o > top_ord)
			top_ord = o;
		first[leafno[tree->heap_leaf[i]] + 1]++;
	}
	for (int k = 0; k < nleaves; k++)
		first[k + 1] += first[k];
	for (int i = 0; i < tree->heap_size; i++)
		dist[first[leafno[tree->heap_leaf[i]]]++] =
			top_ord - float_ord(tree->heap_weight[i]);
	/* first[k] is now where leaf k's entries end: sort each (few). */
	for (int k = 0; k < nleaves; k++)
		for (int i = (k > 0 ? first[k - 1] : 0) + 1; i < first[k]; i++)
			for (int j = i; j > (k > 0 ? first[k - 1] : 0) && dist[j - 1] > dist[j]; j--)
			{
				uint32_t	x = dist[j - 1];

				dist[j - 1] = dist[j];
				dist[j] = x;
			}
	memset(hist, 0, sizeof(hist));
	for (int i = 0; i < tree->heap_size; i++)
		hist[bit_width(dist[i])]++;
	rc.k = rice_choose(hist);
	put_bits(&b, top_ord, 32);
	put_bits(&b, (uint64_t) rc.k, 6);
	for (int k = 0, at = 0; k < nleaves; k++)
	{
		/* A leaf no entry holds cannot be written (rcf_check refuses it). */
		if (first[k] == at)
			return false;
		put_rice(&b, &rc_mass, (uint64_t) (first[k] - at) - 1);
		for (; at < first[k]; at++)
			put_rice(&b, &rc, dist[at]);
	}
	put_bits_end(&b);
	return true;
}

/*
 * Writes (or with w->buf NULL, measures) the whole encoding, in the current
 * format version.  Returns false if temporary memory could not be had.
 */
static bool
write_forest(Writer *w, const RcfForest *forest, const RcfGrader *grader,
			 const RcfTransform *transform)
{
	const RcfParams *p = &forest->params;
	int			dims = p->dims;
	int			S = p->shingle_size;
	PointNames	pn;
	int16_t    *stack;
	uint16_t   *leafno;
	int16_t    *order;
	float	   *boxes;
	uint32_t   *names;
	uint32_t   *dist;
	uint16_t   *first;
	uint64_t	nrefs;
	bool		ok = true;
	size_t		crc_from;
	size_t		temp_size = rcf_encode_scratch(p, forest->rec_used);
	char	   *temp;
	uint16_t	flags = p->bounding_box_cache_fraction < 1.0 ? RCF_FLAG_BOX_CACHE : 0;

	temp = forest->allocator.alloc(forest->allocator.ctx, temp_size);
	if (temp == NULL)
		return false;
	memset(&pn, 0, sizeof(pn));
	if (forest->shared)
	{
		size_t		words = ((size_t) forest->rec_used + 63) / 64;

		pn.live = (uint64_t *) temp;
		pn.before = (uint32_t *) (pn.live + words);
		stack = (int16_t *) (pn.before + words);
		memset(pn.live, 0, words * sizeof(uint64_t));
		for (int t = 0; t < p->number_of_trees; t++)
		{
			const RcfTree *tree = &forest->trees[t];

			/* Leaves from leaf_hw up were never used (rcf_check). */
			for (int i = 0; i < tree->leaf_hw; i++)
				if (tree->leaf_mass[i] > 0)
					for (uint32_t r = tree->leaf_loc[i]; r < tree->leaf_loc[i] + (uint32_t) S; r++)
						pn.live[r / 64] |= UINT64_C(1) << (r % 64);
		}
		for (size_t k = 0; k < words; k++)
		{
			pn.before[k] = pn.nrecords;
			pn.nrecords += (uint32_t) __builtin_popcountll(pn.live[k]);
		}
	}
	else
	{
		uint32_t	hsize = hash_size(p);

		pn.slots = (uint32_t *) temp;
		pn.mask = hsize - 1;
		pn.values = (const float **) (pn.slots + hsize);
		stack = (int16_t *) (pn.values + (size_t) p->number_of_trees * forest->N);
		memset(pn.slots, 0, sizeof(uint32_t) * hsize);
	}
	leafno = (uint16_t *) (stack + 2 * forest->N);
	order = (int16_t *) (leafno + forest->N);
	boxes = (float *) (order + forest->N);
	/*
	 * A tree's names (and sort_names' N more, for N >= 32) are written
	 * before its boxes are computed, its distances after its cuts: both
	 * fit where the boxes go ((N - 1) * (2D + 1) >= 3 * (N - 1) >= N,
	 * and >= 2N for N >= 3).  The stack, done with by
	 * then, holds where each leaf's entries end.
	 */
	names = dist = (uint32_t *) boxes;
	first = (uint16_t *) stack;
	if (!forest->shared)
	{
		/*
		 * Number the distinct points before writing any, in the order the
		 * trees will name them (tree by tree, in preorder), so that a
		 * decoded forest, whose leaves lie elsewhere, encodes the same.
		 */
		for (int t = 0; t < p->number_of_trees; t++)
			name_points(&pn, forest, &forest->trees[t], stack);
		nrefs = pn.npoints;
	}
	else
		nrefs = pn.nrecords >= (uint32_t) S ? pn.nrecords - (uint32_t) S + 1 : 0;

	put_u32(w, RCF_MAGIC);
	put_u16(w, RCF_FORMAT_VERSION);
	put_u16(w, flags);
	put_u32(w, 0);				/* CRC, filled in at the end */
	crc_from = w->pos;

	put_u32(w, (uint32_t) p->dims);
	put_u32(w, (uint32_t) p->shingle_size);
	put_u32(w, (uint32_t) p->number_of_trees);
	put_u32(w, (uint32_t) p->sample_size);
	put_u32(w, (uint32_t) p->output_after);
	put_f64(w, p->time_decay);
	put_u64(w, p->seed);
	if (flags & RCF_FLAG_BOX_CACHE)
		put_f64(w, p->bounding_box_cache_fraction);
	/* inserted follows from updates (rcf_check holds them to it). */
	put_varint(w, forest->updates);
	put_varint(w, forest->inserted - forest->weight_base);
	for (int k = 0; k < S; k++)
	{
		int			r = (forest->shingle_next + k) % S;

		for (int i = 0; i < dims; i++)
			put_f32(w, forest->shingle[(size_t) r * dims + i]);
	}

	/*
	 * Points: the records in use, in store order, or the distinct points.
	 * Each column (a value of a record, a position of a point) first says
	 * how its values are written (point_scale); then column by column,
	 * its Rice k and each value as its difference from the one before in
	 * its column.
	 */
	{
		BitWriter	b = {w, 0, 0};
		const float *prev = NULL;
		const float *v;
		int			width = forest->shared ? dims : forest->D;
		uint8_t		scale[RCF_MAX_DIMENSIONS];
		uint32_t	i;

		PointSeq	seq = {forest, &pn, NULL, 0, 0};

		put_varint(w, forest->shared ? pn.nrecords : pn.npoints);
		for (int d = 0; d < width; d++)
		{
			scale[d] = point_scale(&seq, d);
			put_bits(&b, scale[d], 4);
		}
		for (int d = 0; d < width; d++)
		{
			Rice		rc = {0};
			uint64_t	hist[RICE_MAX_K + 1] = {0};

			prev = NULL;
			i = 0;
			while ((v = next_point(forest, &pn, &i)) != NULL)
			{
				hist[bit_width(column_step(v, prev, d, scale[d]))]++;
				prev = v;
			}
			rc.k = rice_choose(hist);
			put_bits(&b, (uint64_t) rc.k, 6);
			prev = NULL;
			i = 0;
			while ((v = next_point(forest, &pn, &i)) != NULL)
			{
				put_rice(&b, &rc, column_step(v, prev, d, scale[d]));
				prev = v;
			}
		}
		put_bits_end(&b);
	}

	for (int t = 0; t < p->number_of_trees && ok; t++)
	{
		const RcfTree *tree = &forest->trees[t];

		put_u64(w, tree->rng);
		put_varint(w, (uint64_t) tree->heap_size);
		ok = write_tree(w, forest, tree, &pn, nrefs, stack, leafno, order, boxes,
						names, dist, first);
	}
	if (transform && rcf_transform_params(transform)->method == RCF_TRANSFORM_NONE)
		transform = NULL;		/* no section: the bytes of older versions */
	put_varint(w, (grader ? 1 : 0) + (transform ? 1 : 0));
	if (grader)
	{
		uint8_t    *at = put_section(w, RCF_SECTION_GRADER,
									 rcf_grader_encoded_size(grader));

		if (at)
			rcf_grader_encode(grader, at);
	}
	if (transform)
	{
		uint8_t    *at = put_section(w, RCF_SECTION_TRANSFORM,
									 rcf_transform_encoded_size(transform));

		if (at)
			rcf_transform_encode(transform, at);
	}

	if (w->buf && !w->overflow)
	{
		uint32_t	crc = content_crc(w->buf + crc_from, w->pos - crc_from, flags);

		for (int i = 0; i < 4; i++)
			w->buf[crc_from - 4 + i] = (uint8_t) (crc >> (8 * i));
	}
	forest->allocator.free(forest->allocator.ctx, temp);
	return ok;
}

size_t
rcf_model_encoded_size_tf(const RcfForest *forest, const RcfGrader *grader,
						  const RcfTransform *transform)
{
	return rcf_model_encode_into(forest, grader, transform, NULL, 0);
}

size_t
rcf_model_encode_tf(const RcfForest *forest, const RcfGrader *grader,
					const RcfTransform *transform, uint8_t *buf, size_t size)
{
	size_t		n = rcf_model_encode_into(forest, grader, transform, buf, size);

	return n <= size ? n : 0;	/* more than size: it did not fit */
}

size_t
rcf_model_encode_into(const RcfForest *forest, const RcfGrader *grader,
					  const RcfTransform *transform, uint8_t *buf, size_t cap)
{
	Writer		w = {buf, 0, cap, false};

	if (!write_forest(&w, forest, grader, transform))
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

/* Reads n bytes, least significant first; 0 past the end (need() notes it). */
static inline uint64_t
get_le(Reader *r, int n)
{
	const uint8_t *p;

	if (!need(r, n))
		return 0;
	p = r->buf + r->pos;
	r->pos += n;
	return rcf_le_get(&p, n);
}

static uint16_t
get_u16(Reader *r)
{
	return (uint16_t) get_le(r, 2);
}

static inline uint32_t
get_u32(Reader *r)
{
	return (uint32_t) get_le(r, 4);
}

static uint64_t
get_u64(Reader *r)
{
	return get_le(r, 8);
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
		/* A last byte of 0 after others: a longer form than the writer's. */
		if (shift > 0 && b == 0)
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

/* A bit stream over a Reader, least significant bit first. */
typedef struct BitReader
{
	Reader	   *r;
	uint64_t	acc;
	int			n;
} BitReader;

/*
 * Makes the accumulator hold at least n (at most 56) bits where the input
 * has them, eight bytes at a time where it can; fails the reader where it
 * has not.
 */
static inline __attribute__((always_inline)) void
fill_bits_to(BitReader *b, int n, bool soft)
{
	if (b->n < n)
	{
		const uint8_t *p = b->r->buf + b->r->pos;

		if (b->r->status == RCF_DECODE_OK && b->r->len - b->r->pos >= 8)
		{
			int			take = (63 - b->n) / 8;
			uint64_t	word;

			/* Eight bytes, least significant first, in one load. */
			memcpy(&word, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
			word = __builtin_bswap64(word);
#endif
			if (take < 8)
				word &= (UINT64_C(1) << (8 * take)) - 1;
			b->acc |= word << b->n;
			b->n += 8 * take;
			b->r->pos += take;
		}
		else
		{
			while (b->n < n)
			{
				if (soft ? b->r->status != RCF_DECODE_OK || b->r->pos >= b->r->len :
					!need(b->r, 1))
					return;
				b->acc |= (uint64_t) b->r->buf[b->r->pos++] << b->n;
				b->n += 8;
			}
		}
	}
}

/*
 * fill_bits where the caller needs at most n bits but may need fewer: near
 * the end of the input it takes what there is without failing the reader.
 */
static inline __attribute__((always_inline)) void
fill_bits_soft(BitReader *b, int n)
{
	fill_bits_to(b, n, true);
}

static inline __attribute__((always_inline)) void
fill_bits(BitReader *b, int n)
{
	fill_bits_to(b, n, false);
}

/* Reads n (at most 40) bits; 0 once the reader has failed. */
static inline uint64_t
get_bits(BitReader *b, int n)
{
	uint64_t	v;

	fill_bits(b, n);
	if (b->n < n)
		return 0;
	v = n == 0 ? 0 : b->acc & ((UINT64_C(1) << n) - 1);
	b->acc >>= n;
	b->n -= n;
	return v;
}

/*
 * Ends a stream: the bytes read ahead go back, and the padding up to the
 * byte boundary must be zero.
 */
static void
get_bits_end(BitReader *b)
{
	b->r->pos -= (size_t) (b->n / 8);
	if (b->acc & ((UINT64_C(1) << (b->n % 8)) - 1))
		fail(b->r, RCF_DECODE_CORRUPT, "a bit stream has stray bits");
	b->acc = 0;
	b->n = 0;
}

/* get_trunc near the end of the input: bit by bit. */
static uint64_t
get_trunc_slow(BitReader *b, int k, uint64_t u)
{
	uint64_t	x = get_bits(b, k - 1);

	if (x < u)
		return x;
	return u + (((x - u) << 1) | get_bits(b, 1));
}

/*
 * Reads what put_trunc wrote (always below n, 0 for n <= 1).  Inlined: the
 * decoder reads three of these per leaf.
 */
static inline __attribute__((always_inline)) uint64_t
get_trunc(BitReader *b, uint64_t n)
{
	int			k;
	uint64_t	u;

	if (n <= 1)
		return 0;
	k = bit_width(n - 1);
	u = (UINT64_C(1) << k) - n;
	fill_bits_soft(b, k);
	if (b->n >= k)
	{
		/*
		 * Both parts at hand: take them from the accumulator at once,
		 * without a branch on which (it would be a coin toss).
		 */
		uint64_t	low = b->acc & ((UINT64_C(1) << (k - 1)) - 1);
		int			more = low >= u;
		uint64_t	v = more ?
			u + (((low - u) << 1) | ((b->acc >> (k - 1)) & 1)) : low;

		b->acc >>= k - 1 + more;
		b->n -= k - 1 + more;
		return v;
	}
	return get_trunc_slow(b, k, u);
}

/* Reads what put_gamma wrote. */
static inline uint64_t
get_gamma(BitReader *b)
{
	int			w = (int) get_bits(b, 6);

	if (w > 34)
	{
		fail(b->r, RCF_DECODE_CORRUPT, "a number is encoded in too many bits");
		return 0;
	}
	if (w <= 1)
		return (uint64_t) w;
	return (UINT64_C(1) << (w - 1)) | get_bits(b, w - 1);
}

/* get_rice for an escape, or near the end of the input. */
static uint64_t
get_rice_slow(BitReader *b, const Rice *rc)
{
	int			k = rc->k;
	uint64_t	v;
	int			q = 0;

	while (q < RICE_ESCAPE && get_bits(b, 1))
		q++;
	if (q < RICE_ESCAPE)
		return ((uint64_t) q << k) | get_bits(b, k);
	v = get_gamma(b);
	if ((v >> k) < RICE_ESCAPE && b->r->status == RCF_DECODE_OK)
		fail(b->r, RCF_DECODE_CORRUPT, "a number is escaped without need");
	return v;
}

/*
 * Reads what put_rice wrote.  An escaped value must need the escape, so
 * that every value has one encoding.  With the whole code at hand (at
 * most 16 + 1 + 34 bits) it is taken from the accumulator at once.
 */
static inline __attribute__((always_inline)) uint64_t
get_rice(BitReader *b, const Rice *rc)
{
	int			k = rc->k;

	fill_bits_soft(b, RICE_ESCAPE + 1 + k);
	if (b->n >= RICE_ESCAPE + 1 + k)
	{
		int			q = __builtin_ctzll(~b->acc);

		if (q < RICE_ESCAPE)
		{
			uint64_t	v = ((uint64_t) q << k) |
				((b->acc >> (q + 1)) & ((UINT64_C(1) << k) - 1));

			b->acc >>= q + 1 + k;
			b->n -= q + 1 + k;
			return v;
		}
	}
	return get_rice_slow(b, rc);
}

/* Reads a stream's k (rice_choose); fails r on one out of range. */
static inline void
get_rice_k(BitReader *b, Rice *rc)
{
	rc->k = (int) get_bits(b, 6);
	if (rc->k > RICE_MAX_K)
	{
		fail(b->r, RCF_DECODE_CORRUPT, "a number is encoded in too many bits");
		rc->k = 0;
	}
}

/*
 * Widths of the values read from a Rice stream: hist[w] counts those of w
 * bits (a value of a corrupt stream may be as wide as 38 bits).
 */
#define WIDTHS		40

/* get_rice, counting the value's width in hist. */
static inline __attribute__((always_inline)) uint64_t
get_rice_counted(BitReader *b, const Rice *rc, uint64_t *hist)
{
	uint64_t	v = get_rice(b, rc);

	hist[bit_width(v)]++;
	return v;
}

/*
 * Fails r unless a stream's k is the one the writer picks for the values
 * read (rice_choose): any other k writes the same values in other bits.
 */
static void
check_rice_k(Reader *r, const Rice *rc, const uint64_t *hist)
{
	if (r->status != RCF_DECODE_OK)
		return;
	for (int w = RICE_MAX_K + 1; w < WIDTHS; w++)
		if (hist[w] != 0)
		{
			fail(r, RCF_DECODE_CORRUPT, "a number is encoded in too many bits");
			return;
		}
	if (rc->k != rice_choose(hist))
		fail(r, RCF_DECODE_CORRUPT,
			 "a bit stream's Rice parameter is not the one its values call for");
}

/*
 * A float written as its difference in float order from `before`; it must
 * land on a finite float.  Its width goes to hist.
 */
static inline float
get_float_delta(BitReader *b, const Rice *rc, uint32_t before, const char *detail,
				uint64_t *hist)
{
	int64_t		o = (int64_t) before + unzigzag(get_rice_counted(b, rc, hist));
	float		f;

	if (o < 0 || o > (int64_t) UINT32_MAX)
	{
		fail(b->r, RCF_DECODE_CORRUPT, detail);
		return 0.0f;
	}
	f = float_unord((uint32_t) o);
	if (!isfinite(f))
	{
		fail(b->r, RCF_DECODE_CORRUPT, detail);
		return 0.0f;
	}
	return f;
}

/*
 * The tree readers of both versions build a tree in preorder from a stream
 * of leaves and cuts; these add one of each, or fail r (and return false)
 * when the stream is already bad or the item cannot belong to this forest.
 */

/* Adds a leaf holding point (of nrefs) as tree's next leaf; *ref is its reference. */
static inline __attribute__((always_inline)) bool
read_leaf(Reader *r, RcfForest *forest, RcfTree *tree, uint64_t point,
		  uint64_t nrefs, uint32_t *leaf_ref, int16_t *preorder, int *nleaves,
		  int16_t *ref)
{
	int16_t		leaf;

	if (r->status != RCF_DECODE_OK)
		return false;
	if (point >= nrefs)
	{
		fail(r, RCF_DECODE_CORRUPT, "a leaf refers to a missing point");
		return false;
	}
	if (*nleaves >= forest->N)
	{
		fail(r, RCF_DECODE_CORRUPT, "a tree has more leaves than its sample size");
		return false;
	}
	leaf = rcf_tree_leaf_alloc(forest, tree);
	leaf_ref[leaf] = (uint32_t) point;
	preorder[(*nleaves)++] = leaf;
	tree->leaf_mass[leaf] = 0;
	*ref = RCF_LEAF_REF(leaf);
	return true;
}

/* Adds a cut (dimension dim at value cut) as tree's next internal node. */
static inline __attribute__((always_inline)) bool
read_cut(Reader *r, RcfForest *forest, RcfTree *tree, uint64_t dim,
		 float cut, int16_t *order, int *ninternal, int16_t *ref)
{
	int16_t		node;

	if (r->status != RCF_DECODE_OK)
		return false;
	if (dim >= (uint64_t) forest->D || !isfinite(cut))
	{
		fail(r, RCF_DECODE_CORRUPT, "a cut has an invalid dimension or value");
		return false;
	}
	if (*ninternal >= forest->N - 1)
	{
		fail(r, RCF_DECODE_CORRUPT, "a tree has more nodes than its sample size allows");
		return false;
	}
	node = rcf_tree_node_alloc(forest, tree);
	order[(*ninternal)++] = node;
	tree->nodes[node].dim = (uint16_t) dim;
	tree->nodes[node].cut = cut;
	tree->nodes[node].child[0] = tree->nodes[node].child[1] = RCF_NIL;
	*ref = node;
	return true;
}

/* Hangs ref where the stack said: the root (dest < 0) or a node's child. */
static inline void
link_node(RcfTree *tree, int32_t dest, int16_t ref)
{
	if (dest < 0)
		tree->root = ref;
	else
		tree->nodes[dest / 2].child[dest % 2] = ref;
}

/* gather_range one value at a time. */
static inline void
gather_range_scalar(const float *col, size_t stride, const uint32_t *in,
					int from, int to, float *vals, float *lo, float *hi)
{
	float		mn,
				mx;

	mn = mx = vals[from] = col[(size_t) in[from] * stride];
	for (int i = from + 1; i < to; i++)
	{
		float		v = col[(size_t) in[i] * stride];

		vals[i] = v;
		mn = v < mn ? v : mn;
		mx = v > mx ? v : mx;
	}
	*lo = mn;
	*hi = mx;
}

/*
 * Gathers the values col[in[i] * stride] of from <= i < to (at least one,
 * finite floats) into vals[i], and finds their smallest and largest (which
 * zero is which when both are there does not matter: bound_ord takes them
 * alike).  From 4 values, four at a time in registers: the decoder waits
 * on the range, and a vector load of floats just stored one by one would
 * wait for the stores (the range of the values gathered first, then read
 * back, took a fifth more of the routing's time).
 */
static inline void
gather_range(const float *col, size_t stride, const uint32_t *in, int from,
			 int to, float *vals, float *lo, float *hi)
{
#ifdef __SSE__
	__m128		a,
				b,
				x;
	int			i;

	if (to - from < 4)
	{
		gather_range_scalar(col, stride, in, from, to, vals, lo, hi);
		return;
	}
#define GATHER4(at) \
	_mm_set_ps(col[(size_t) in[(at) + 3] * stride], col[(size_t) in[(at) + 2] * stride], \
			   col[(size_t) in[(at) + 1] * stride], col[(size_t) in[at] * stride])
	a = b = GATHER4(from);
	_mm_storeu_ps(vals + from, a);
	for (i = from + 4; i + 4 <= to; i += 4)
	{
		x = GATHER4(i);
		_mm_storeu_ps(vals + i, x);
		a = _mm_min_ps(a, x);
		b = _mm_max_ps(b, x);
	}
	/* The last four once more (the same values to the same places). */
	x = GATHER4(to - 4);
	_mm_storeu_ps(vals + to - 4, x);
#undef GATHER4
	a = _mm_min_ps(a, x);
	b = _mm_max_ps(b, x);
	a = _mm_min_ps(a, _mm_shuffle_ps(a, a, _MM_SHUFFLE(1, 0, 3, 2)));
	b = _mm_max_ps(b, _mm_shuffle_ps(b, b, _MM_SHUFFLE(1, 0, 3, 2)));
	a = _mm_min_ps(a, _mm_shuffle_ps(a, a, _MM_SHUFFLE(2, 3, 0, 1)));
	b = _mm_max_ps(b, _mm_shuffle_ps(b, b, _MM_SHUFFLE(2, 3, 0, 1)));
	*lo = _mm_cvtss_f32(a);
	*hi = _mm_cvtss_f32(b);
#else
	gather_range_scalar(col, stride, in, from, to, vals, lo, hi);
#endif
}

/*
 * Reads one tree of format version 2 (write_tree): its leaves' points,
 * routed down the cuts as they are read, then its sampler's entries into
 * the heap arrays (in no heap order yet) and the leaves' masses.  A leaf's
 * point (below nrefs) goes to leaf_ref[leaf], the leaves in preorder to
 * preorder[] and the internal nodes to order[]; the caller gives the
 * leaves their points and the nodes their boxes.  values holds the point
 * named i at values + i * stride.  names, spare and vals have room for
 * the sample size, and stack for twice that.
 */
static void
read_tree_v2(Reader *r, RcfForest *forest, RcfTree *tree, uint64_t nrefs,
			 const float *values, size_t stride,
			 int32_t *stack, int16_t *order, int *ninternal,
			 uint32_t *leaf_ref, int16_t *preorder, int *nleaves,
			 uint32_t *names, uint32_t *spare, float *vals)
{
	BitReader	b = {r, 0, 0};
	int			D = forest->D;
	int			dbits = bit_width((uint64_t) D - 1);
	int			N = forest->N;
	int			top = 0;
	int			count;
	Rice		rc = {0};
	Rice		rc_mass = {0};
	uint64_t	hist[WIDTHS] = {0};
	uint32_t	top_ord;
	int			filled = 0;
	bool		top_seen = false;

	*ninternal = 0;
	*nleaves = 0;
	if (tree->heap_size == 0)
		return;

	/* The leaves' points: strictly increasing names below nrefs. */
	count = (int) get_bits(&b, bit_width((uint64_t) N - 1)) + 1;
	if (count > tree->heap_size)
	{
		fail(r, RCF_DECODE_CORRUPT, "a tree has more leaves than its sampler has points");
		return;
	}
	names[0] = (uint32_t) get_bits(&b, nrefs > 0 ? bit_width(nrefs - 1) : 0);
	get_rice_k(&b, &rc);
	if (names[0] >= nrefs)
		fail(r, RCF_DECODE_CORRUPT, "a leaf refers to a missing point");
	for (int i = 1; i < count && r->status == RCF_DECODE_OK; i++)
	{
		/* In 64 bits: a distance past nrefs must not wrap around. */
		uint64_t	name = (uint64_t) names[i - 1] + 1 + get_rice_counted(&b, &rc, hist);

		if (name >= nrefs)
			fail(r, RCF_DECODE_CORRUPT, "a leaf refers to a missing point");
		names[i] = (uint32_t) name;
	}
	check_rice_k(r, &rc, hist);
	if (r->status != RCF_DECODE_OK)
		return;

	/*
	 * The tree in preorder, each node with the points that reach it: one
	 * point makes a leaf; more, an internal node whose cut, read within
	 * their range in its dimension, splits them.  A node's points are
	 * buf[from .. to - 1] for buf names or spare, and its children's go
	 * to the other one.  The node at hand is (span, dest); a right child
	 * waits on the stack, in pairs: span is to << 14 | from << 1 | (buf
	 * is spare), counts below 2^13, and dest is where the node hangs (-1
	 * for the root, else 2 * parent + side).  A left child is at hand
	 * next, without the stack.  Most nodes hold few points: a few have
	 * their values gathered and their range found in one loop.
	 */
	{
		int32_t		span = count << 14;
		int32_t		dest = -1;

		for (;;)
		{
			int			to = span >> 14;
			int			from = (span >> 1) & 0x1FFF;
			const uint32_t *in = (span & 1) ? spare : names;
			uint32_t   *out = (span & 1) ? names : spare;
			int			n = to - from;
			int16_t		ref;
			int			dim;
			const float *col;
			float		vmin,
						vmax,
						cut;
			uint32_t	lo,
						hi;
			int			left,
						right;

			if (n == 1)
			{
				if (!read_leaf(r, forest, tree, in[from], nrefs, leaf_ref,
							   preorder, nleaves, &ref))
					return;
				link_node(tree, dest, ref);
				if (top == 0)
					break;
				dest = stack[--top];
				span = stack[--top];
				continue;
			}
			dim = (int) get_bits(&b, dbits);
			if (r->status != RCF_DECODE_OK)
				return;
			if (dim >= D)
			{
				fail(r, RCF_DECODE_CORRUPT, "a cut has an invalid dimension or value");
				return;
			}
			col = values + dim;
			gather_range(col, stride, in, from, to, vals, &vmin, &vmax);
			lo = bound_ord(vmin);
			hi = bound_ord(vmax);
			if (lo >= hi)
			{
				/* No cut splits them: equal values, or a wrong dimension. */
				fail(r, RCF_DECODE_CORRUPT, "cut does not separate the children");
				return;
			}
			cut = float_unord(lo + (uint32_t) get_trunc(&b, hi - lo));
			if (!read_cut(r, forest, tree, (uint64_t) dim, cut, order,
						  ninternal, &ref))
				return;
			link_node(tree, dest, ref);

			/*
			 * Points at or below the cut go left, filling out from the
			 * bottom, the others from the top; both sides get some, as the
			 * cut is at or above the smallest value, below the largest.
			 * Without branches (which way a point goes is a coin toss):
			 * each point is written to both sides' next places, which are
			 * free, and only one side moves.
			 */
			left = from;
			right = to - 1;
			for (int i = from; i < to; i++)
			{
				uint32_t	x = in[i];
				int			up = vals[i] > cut;

				out[left] = x;
				out[right] = x;
				left += !up;
				right -= up;
			}
			if (left == from || left == to)
			{
				fail(r, RCF_DECODE_CORRUPT, "cut does not separate the children");
				return;
			}
			stack[top++] = (to << 14) | (left << 1) | (out == spare);
			stack[top++] = 2 * ref + 1;
			span = (left << 14) | (from << 1) | (out == spare);
			dest = 2 * ref;
		}
	}
	if (r->status != RCF_DECODE_OK)
		return;

	/* The sampler's entries, leaf by leaf; the largest weight is one. */
	top_ord = (uint32_t) get_bits(&b, 32);
	get_rice_k(&b, &rc);
	memset(hist, 0, sizeof(hist));
	for (int k = 0; k < *nleaves && r->status == RCF_DECODE_OK; k++)
	{
		int16_t		leaf = preorder[k];
		uint64_t	mass = get_rice(&b, &rc_mass) + 1;
		uint64_t	prev = 0;

		if (r->status != RCF_DECODE_OK)
			return;
		if (mass > (uint64_t) (tree->heap_size - filled))
		{
			fail(r, RCF_DECODE_CORRUPT, "a sampler's size does not match its leaves");
			return;
		}
		for (uint64_t m = 0; m < mass; m++)
		{
			uint64_t	d = get_rice_counted(&b, &rc, hist);
			float		wt;

			if (r->status != RCF_DECODE_OK)
				return;
			if (d < prev || d > top_ord)
			{
				fail(r, RCF_DECODE_CORRUPT, "a sampler weight is out of range");
				return;
			}
			prev = d;
			top_seen |= d == 0;
			wt = float_unord(top_ord - (uint32_t) d);
			/* Far beyond any real weight, and safe from overflow. */
			if (!(fabsf(wt) <= 1e30f))
			{
				fail(r, RCF_DECODE_CORRUPT, "a sampler weight is out of range");
				return;
			}
			tree->heap_weight[filled] = wt;
			tree->heap_leaf[filled++] = (uint16_t) leaf;
		}
		tree->leaf_mass[leaf] = (uint16_t) mass;
	}
	if (r->status != RCF_DECODE_OK)
		return;
	if (filled != tree->heap_size)
	{
		fail(r, RCF_DECODE_CORRUPT, "a sampler's size does not match its leaves");
		return;
	}
	if (!top_seen)
	{
		fail(r, RCF_DECODE_CORRUPT, "a sampler weight is out of range");
		return;
	}
	check_rice_k(r, &rc, hist);
	get_bits_end(&b);
}

/* What set_leaf_points needs to give a tree's leaves their points. */
typedef struct LeafPoints
{
	RcfForest  *forest;
	int			version;
	const uint32_t *ptloc;		/* v1 shared: each point's offset */
	const float *points;		/* unshared: point values */
	uint64_t   *covered;		/* v2 shared: a bit per record held */
	uint8_t    *referenced;		/* per point: held by some leaf */
	uint32_t	next_new;		/* v2 unshared: the number a new point takes */
	const uint32_t *leaf_ref;
	const int16_t *preorder;
} LeafPoints;

/* Sets bits from .. from + n - 1 (n at most 64) of a bit set. */
static inline void
set_bits(uint64_t *bits, uint32_t from, uint32_t n)
{
	uint32_t	at = from % 64;
	uint64_t	mask = n == 64 ? ~UINT64_C(0) : (UINT64_C(1) << n) - 1;

	bits[from / 64] |= mask << at;
	if (at + n > 64)
		bits[from / 64 + 1] |= mask >> (64 - at);
}

/*
 * Gives the nleaves leaves of a tree just read their points.  Without a
 * shared store, version 2 numbers the distinct points in the order the
 * trees name them (tree by tree, leaves in preorder: name_points), so a
 * point first named here must take the next number; false if not, since
 * the same model could then be written in more than one way.
 */
static bool
set_leaf_points(void *arg, RcfTree *tree, int nleaves)
{
	LeafPoints *lp = arg;
	RcfForest  *forest = lp->forest;
	uint32_t	S = (uint32_t) forest->params.shingle_size;

	for (int k = 0; k < nleaves; k++)
	{
		int16_t		leaf = lp->preorder[k];
		uint32_t	ref = lp->leaf_ref[leaf];

		if (forest->shared)
		{
			tree->leaf_loc[leaf] = lp->version == 1 ? lp->ptloc[ref] : ref;
			if (lp->covered)
				set_bits(lp->covered, ref, S);
		}
		else
		{
			if (lp->version == 2 && !lp->referenced[ref])
			{
				if (ref != lp->next_new)
					return false;
				lp->next_new++;
			}
			memcpy(tree->points + (size_t) leaf * forest->D,
				   lp->points + (size_t) ref * forest->D, sizeof(float) * forest->D);
		}
		if (lp->referenced)
			lp->referenced[ref] = 1;
	}
	return true;
}

/*
 * Slots of the table in which the decoder looks for equal points of a
 * version 2 model without a shared store: a power of two, at least twice
 * their number.
 */
static size_t
distinct_slots(uint64_t npoints)
{
	size_t		size = 2;

	while (size < 2 * npoints)
		size <<= 1;
	return size;
}

/*
 * Whether the n points of d values at values are distinct, bit for bit:
 * the writer lists each distinct point once (point_name), so a model that
 * lists one twice, for trees that hold it, encodes differently.  slots
 * has distinct_slots(n) entries.
 */
static bool
points_distinct(const float *values, int d, uint64_t n, uint32_t *slots)
{
	uint32_t	mask = (uint32_t) distinct_slots(n) - 1;

	memset(slots, 0, sizeof(uint32_t) * (mask + 1));
	for (uint64_t i = 0; i < n; i++)
	{
		const float *v = values + i * d;
		uint32_t	h;

		for (h = point_hash(v, d) & mask;; h = (h + 1) & mask)
		{
			uint32_t	s = slots[h];

			if (s == 0)
			{
				slots[h] = (uint32_t) i + 1;
				break;
			}
			if (memcmp(values + (size_t) (s - 1) * d, v, sizeof(float) * d) == 0)
				return false;
		}
	}
	return true;
}

/* One run of consecutive records in a version 1 input. */
typedef struct Run
{
	uint64_t	start;
	uint64_t	length;
	size_t		offset;			/* of its first value in the input */
} Run;

/*
 * Bytes of rcf_model_decode's temporary buffer for a model of this version
 * with npoints points (version 1: live points; 2: distinct points without
 * a shared store, records with one) and nruns record runs (version 1).
 * limits.c bounds it from the parameters.
 */
size_t
rcf_decode_scratch(const RcfParams *p, int version, uint64_t npoints,
				   uint64_t nruns)
{
	size_t		N = (size_t) p->sample_size;
	size_t		D = (size_t) p->dims * p->shingle_size;
	bool		shared = p->shingle_size > 1;
	size_t		boxes = (N - 1) * (2 * D + 1);
	size_t		per_tree;
	size_t		points;

	/* Before they hold boxes, the boxes' floats hold read_tree_v2's spare and vals. */
	if (boxes < 2 * N)
		boxes = 2 * N;
	per_tree = sizeof(uint32_t) * N +	/* entries, or names */
		sizeof(int32_t) * 2 * N +	/* stack */
		sizeof(float) * boxes +	/* boxes, counts */
		sizeof(int16_t) * N +	/* order */
		sizeof(uint32_t) * N +	/* leaf_ref */
		sizeof(int16_t) * N;	/* preorder */

	if (version == 1)
		points = (shared ? sizeof(uint32_t) : sizeof(float) * D) * (npoints + 1) +
			sizeof(Run) * (nruns + 1) +
			sizeof(uint32_t) * (npoints + 1) +	/* leaf_of */
			sizeof(uint8_t) * (npoints + 1);	/* referenced */
	else if (shared)
		points = sizeof(uint64_t) * ((npoints + 63) / 64 + 1);
	else
		points = sizeof(float) * D * (npoints + 1) + sizeof(uint8_t) * (npoints + 1) +
			sizeof(uint32_t) * distinct_slots(npoints);	/* points_distinct */
	return per_tree + points;
}

/*
 * Reads one tree in preorder.  Children references are filled through a
 * stack of destinations: stack entries are 2 * node + side, or -1 for the
 * root.  A leaf's reference (below nrefs) goes to leaf_ref[leaf], and the
 * leaves in preorder to preorder[]; the caller gives them their points.
 */
static void
read_tree(Reader *r, RcfForest *forest, RcfTree *tree, uint64_t nrefs,
		  int32_t *stack, int16_t *order, int *ninternal,
		  uint32_t *leaf_ref, int16_t *preorder, int *nleaves)
{
	int			top = 0;

	*ninternal = 0;
	*nleaves = 0;
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
			if (!read_leaf(r, forest, tree, v >> 1, nrefs, leaf_ref, preorder,
						   nleaves, &ref))
				return;
		}
		else
		{
			float		cut = get_f32(r);

			if (!read_cut(r, forest, tree, v >> 1, cut, order, ninternal, &ref))
				return;
			stack[top++] = 2 * ref + 1;
			stack[top++] = 2 * ref;
		}
		link_node(tree, dest, ref);
	}
}

/* Reads a float that must be finite. */
static inline float
get_finite(Reader *r, const char *detail)
{
	float		f = get_f32(r);

	if (r->status == RCF_DECODE_OK && !isfinite(f))
		fail(r, RCF_DECODE_CORRUPT, detail);
	return f;
}

/*
 * Sizes the shared store for `records` records read from a model, with a
 * quarter more room for the points to come.
 */
static bool
store_for_decode(RcfForest *forest, uint64_t records)
{
	uint64_t	want = records + records / 4 + (uint64_t) forest->params.shingle_size;
	uint64_t	max = rcf_store_max_records(&forest->params);

	if (want < forest->rec_cap)
		return true;
	return rcf_store_resize(forest, (uint32_t) (want < max ? want : max));
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
	return rcf_model_decode_boxes(buf, len, allocator, grader_out,
								  transform_out, RCF_BOX_CACHE_STORED,
								  status, detail);
}

RcfForest *
rcf_model_decode_boxes(const uint8_t *buf, size_t len,
					   const RcfAllocator *allocator, RcfGrader **grader_out,
					   RcfTransform **transform_out, double box_cache_fraction,
					   RcfDecodeStatus *status, const char **detail)
{
	Reader		r = {buf, 0, len, RCF_DECODE_OK, NULL};
	RcfGrader  *grader = NULL;
	RcfTransform *transform = NULL;
	RcfParams	p;
	RcfForest  *forest = NULL;
	uint32_t	version;
	uint16_t	flags;
	uint32_t	crc;
	uint64_t	updates,
				inserted,
				weight_base;
	uint64_t	npoints = 0,	/* v1: live points; v2: distinct points or
								 * records */
				nruns = 0,
				nrefs;
	Run		   *runs = NULL;
	char	   *temp = NULL;
	float	   *points = NULL;	/* v1 and v2 unshared: point values */
	uint32_t   *ptloc = NULL;	/* v1 shared: each point's offset */
	uint32_t   *leaf_of = NULL; /* v1: a point's leaf in the current tree */
	uint8_t    *referenced = NULL;	/* per point: held by some leaf */
	uint64_t   *covered = NULL; /* v2 shared: a bit per record held */
	uint32_t   *slots = NULL;	/* v2 unshared: points_distinct's table */
	uint32_t   *entry = NULL;
	int32_t    *stack = NULL;
	int16_t    *order = NULL;
	float	   *boxes = NULL;
	uint32_t   *leaf_ref = NULL;
	int16_t    *preorder = NULL;
	uint32_t   *spare = NULL;
	LeafPoints	lp;
	bool		shared;
	int			S;
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
	if (version != 1 && version != RCF_FORMAT_VERSION)
	{
		fail(&r, RCF_DECODE_BAD_VERSION, "the format version is not supported");
		goto done;
	}
	flags = get_u16(&r);
	if (version == 1 && flags != 0)
	{
		fail(&r, RCF_DECODE_BAD_FORMAT, "a reserved header field is not zero");
		goto done;
	}
	if (flags & ~RCF_FLAG_BOX_CACHE)
	{
		fail(&r, RCF_DECODE_BAD_FORMAT, "a header flag this version does not know is set");
		goto done;
	}
	crc = get_u32(&r);
	if (content_crc(buf + HEADER_SIZE, len - HEADER_SIZE, flags) != crc)
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
	p.bounding_box_cache_fraction = 1.0;
	if (flags & RCF_FLAG_BOX_CACHE)
	{
		/* The default, 1, is written as no flag; -0 as 0. */
		p.bounding_box_cache_fraction = get_f64(&r);
		if (r.status == RCF_DECODE_OK &&
			!(p.bounding_box_cache_fraction >= 0.0 && p.bounding_box_cache_fraction < 1.0 &&
			  !signbit(p.bounding_box_cache_fraction)))
		{
			fail(&r, RCF_DECODE_CORRUPT,
				 "the bounding box cache fraction is not one an encoder writes");
			goto done;
		}
	}
	if (r.status != RCF_DECODE_OK)
		goto done;
	/* The ranges SQL accepts (rcf.h), so no model asks for a bigger forest. */
	if ((err = rcf_model_params_check(&p)) != NULL)
	{
		fail(&r, RCF_DECODE_CORRUPT, "the forest parameters are out of range");
		goto done;
	}
	/* The caller's choice of boxes instead, which changes no score. */
	if (box_cache_fraction != RCF_BOX_CACHE_STORED)
	{
		if (!(box_cache_fraction >= 0.0 && box_cache_fraction <= 1.0))
		{
			fail(&r, RCF_DECODE_BAD_FORMAT,
				 "the bounding box cache fraction asked for is out of range");
			goto done;
		}
		p.bounding_box_cache_fraction = box_cache_fraction;
	}
	S = p.shingle_size;
	shared = S > 1;
	if (version == 1)
	{
		updates = get_u64(&r);
		inserted = get_u64(&r);
		weight_base = get_u64(&r);
	}
	else
	{
		uint64_t	back;

		updates = get_varint(&r);
		inserted = updates >= (uint64_t) S ? updates - (uint64_t) S + 1 : 0;
		back = get_varint(&r);
		weight_base = inserted - back;
		if (back > inserted)
			weight_base = inserted + 1; /* refused below */
	}
	if (r.status != RCF_DECODE_OK)
		goto done;
	if ((inserted > 0 && updates != inserted + S - 1) ||
		(inserted == 0 && updates >= (uint64_t) S) ||
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
		forest->shingle[i] = get_finite(&r, "a shingle value is not finite");
	forest->shingle_next = 0;
	if (r.status != RCF_DECODE_OK)
		goto done;

	/* Points: how many, then the temporary buffer they size. */
	if (version == 1)
	{
		npoints = get_count(&r, (uint64_t) p.number_of_trees * p.sample_size + 1,
							"there are more points than the samplers can hold");
		nruns = get_count(&r, npoints + 1, "there are more record runs than points");
		if (r.status == RCF_DECODE_OK && (npoints > 0) != (nruns > 0))
			fail(&r, RCF_DECODE_CORRUPT, "points and record runs disagree");
	}
	else if (shared)
		npoints = get_count(&r, (uint64_t) p.number_of_trees * p.sample_size * S + 1,
							"there are more records than the samplers can hold");
	else
		npoints = get_count(&r, (uint64_t) p.number_of_trees * p.sample_size + 1,
							"there are more points than the samplers can hold");
	if (r.status != RCF_DECODE_OK)
		goto done;
	{
		size_t		N = forest->N;
		size_t		D = forest->D;
		char	   *at;

		temp = forest->allocator.alloc(forest->allocator.ctx,
									   rcf_decode_scratch(&p, (int) version, npoints, nruns));
		if (temp == NULL)
		{
			fail(&r, RCF_DECODE_NO_MEMORY, "out of memory while decoding");
			goto done;
		}
		/* The 8-byte-aligned arrays first. */
		at = temp;
		if (version == 1)
		{
			runs = (Run *) at;
			at += sizeof(Run) * (nruns + 1);
		}
		else if (shared)
		{
			covered = (uint64_t *) at;
			memset(covered, 0, sizeof(uint64_t) * ((npoints + 63) / 64 + 1));
			at += sizeof(uint64_t) * ((npoints + 63) / 64 + 1);
		}
		if (!shared || version == 1)
		{
			if (shared)
			{
				ptloc = (uint32_t *) at;
				at += sizeof(uint32_t) * (npoints + 1);
			}
			else
			{
				points = (float *) at;
				at += sizeof(float) * D * (npoints + 1);
				if (version == 2)
				{
					slots = (uint32_t *) at;
					at += sizeof(uint32_t) * distinct_slots(npoints);
				}
			}
			if (version == 1)
			{
				leaf_of = (uint32_t *) at;
				at += sizeof(uint32_t) * (npoints + 1);
				for (uint64_t i = 0; i <= npoints; i++)
					leaf_of[i] = UINT32_MAX;
			}
		}
		entry = (uint32_t *) at;
		at += sizeof(uint32_t) * N;
		leaf_ref = (uint32_t *) at;
		at += sizeof(uint32_t) * N;
		stack = (int32_t *) at;
		at += sizeof(int32_t) * 2 * N;
		boxes = (float *) at;
		spare = (uint32_t *) at;	/* and vals: see rcf_decode_scratch */
		at += sizeof(float) * ((N - 1) * (2 * D + 1) > 2 * N ?
							   (N - 1) * (2 * D + 1) : 2 * N);
		order = (int16_t *) at;
		at += sizeof(int16_t) * N;
		preorder = (int16_t *) at;
		at += sizeof(int16_t) * N;
		if (!shared || version == 1)
		{
			referenced = (uint8_t *) at;
			memset(referenced, 0, npoints + 1);
		}
	}

	lp.forest = forest;
	lp.version = (int) version;
	lp.ptloc = ptloc;
	lp.points = points;
	lp.covered = covered;
	lp.referenced = referenced;
	lp.next_new = 0;
	lp.leaf_ref = leaf_ref;
	lp.preorder = preorder;

	if (version == 1)
	{
		uint64_t	end = 0;
		uint64_t	total = 0;

		for (uint64_t i = 0; i < nruns && r.status == RCF_DECODE_OK; i++)
		{
			uint64_t	gap = get_varint(&r);
			uint64_t	length = get_varint(&r);

			if (r.status != RCF_DECODE_OK)
				break;
			if ((i > 0 && gap == 0) || length == 0 || gap > inserted ||
				length > inserted + S || end + gap + length > updates ||
				(total += length) > npoints * S)
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
				(void) get_finite(&r, "a point value is not finite");
			end = runs[i].start + length;
		}
		if (r.status != RCF_DECODE_OK)
			goto done;

		/* With a shared store, the runs one after the other are its records. */
		if (shared)
		{
			uint32_t	at = 0;

			if (!store_for_decode(forest, total))
			{
				fail(&r, RCF_DECODE_NO_MEMORY, "out of memory for the record store");
				goto done;
			}
			for (uint64_t i = 0; i < nruns; i++)
			{
				size_t		n = runs[i].length * p.dims;

				memcpy(forest->records + (size_t) at * p.dims, buf + runs[i].offset,
					   n * sizeof(float));
				runs[i].offset = at;	/* now the run's first record */
				at += (uint32_t) runs[i].length;
			}
			forest->rec_used = at;
		}
	}
	if (version == 1)
	{
		uint64_t	seq = 0;
		uint64_t	run = 0;

		for (uint64_t i = 0; i < npoints; i++)
		{
			uint64_t	delta = get_varint(&r);

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
			if (shared)
				ptloc[i] = (uint32_t) (runs[run].offset + (seq - runs[run].start));
			else
			{
				const uint8_t *src = buf + runs[run].offset +
					(size_t) (seq - runs[run].start) * 4 * p.dims;

				memcpy(points + i * forest->D, src, sizeof(float) * forest->D);
			}
		}
		nrefs = npoints;
	}
	else
	{
		BitReader	b = {&r, 0, 0};
		int			width = shared ? p.dims : forest->D;
		float	   *values;

		uint8_t		scale[RCF_MAX_DIMENSIONS];

		/* At least a bit a value: refuse a count the data cannot hold. */
		if (!need(&r, (npoints * width + 7) / 8))
			goto done;
		if (shared)
		{
			if (!store_for_decode(forest, npoints))
			{
				fail(&r, RCF_DECODE_NO_MEMORY, "out of memory for the record store");
				goto done;
			}
			values = forest->records;
		}
		else
			values = points;
		for (int d = 0; d < width; d++)
		{
			scale[d] = (uint8_t) get_bits(&b, 4);
			if (scale[d] > DECIMAL_MAX + 1)
				fail(&r, RCF_DECODE_CORRUPT, "a point column has an unknown scale");
		}
		/* Column by column, each with its own Rice k. */
		for (int d = 0; d < width && r.status == RCF_DECODE_OK; d++)
		{
			Rice		rc = {0};
			uint64_t	hist[WIDTHS] = {0};
			float	   *col = values + d;

			/* Whether the scale is the writer's (for scale 0: below). */
			bool		scale_ok = scale[d] > 0;

			get_rice_k(&b, &rc);

			if (scale[d] > 0)
			{
				int64_t		k = 0;
				int			s = scale[d] - 1;
				int			reached = 0;
				uint64_t	float_bits = 0;
				uint64_t	decimal_bits = 0;
				uint32_t	before = float_ord(0.0f);
				bool		ok;

				for (uint64_t i = 0; i < npoints && r.status == RCF_DECODE_OK; i++)
				{
					k += unzigzag(get_rice_counted(&b, &rc, hist));
					if (!(k > -(int64_t) DECIMAL_LIMIT && k < (int64_t) DECIMAL_LIMIT))
					{
						fail(&r, RCF_DECODE_CORRUPT, "a point value is out of range");
						break;
					}
					col[i * width] = decimal_value(k, s);
					/*
					 * Other integers near k may give the same float: k must
					 * be decimal(x, s), x * 10^s rounded to the nearest (an
					 * even one on a tie), tested without llrint's call (the
					 * difference of two doubles within a factor 2 is exact).
					 */
					{
						double		off = (double) col[i * width] * pow10_table[s] - (double) k;

						ok = fabs(off) < 0.5 || (fabs(off) == 0.5 && (k & 1) == 0);
					}
					if (!ok)
					{
						fail(&r, RCF_DECODE_CORRUPT,
							 "a point value is written as another integer than its own");
						break;
					}

					/*
					 * point_scale, as the values come (calling it after
					 * would take two more passes of roundings and divisions
					 * per value): every value gives itself back with scale
					 * s, as just checked, so its search for the smallest s
					 * that does stops at s at the latest; the bits of the
					 * integers' differences are the Rice values' widths.
					 */
					while (reached < s && !decimal_exact(col[i * width], reached))
						reached++;
					float_bits += bit_width(zigzag((int64_t) float_ord(col[i * width]) -
												   (int64_t) before));
					before = float_ord(col[i * width]);
				}
				for (int w = 0; w < WIDTHS; w++)
					decimal_bits += hist[w] * w;
				scale_ok = reached == s && decimal_bits < float_bits;
			}
			else
			{
				uint32_t	before = float_ord(0.0f);

				for (uint64_t i = 0; i < npoints && r.status == RCF_DECODE_OK; i++)
				{
					col[i * width] = get_float_delta(&b, &rc, before,
													 "a point value is not finite", hist);
					before = float_ord(col[i * width]);
				}
			}
			check_rice_k(&r, &rc, hist);
			if (r.status == RCF_DECODE_OK && scale[d] == 0)
			{
				PointSeq	seq = {NULL, NULL, values, (size_t) width, npoints};

				scale_ok = point_scale(&seq, d) == 0;
			}
			if (r.status == RCF_DECODE_OK && !scale_ok)
				fail(&r, RCF_DECODE_CORRUPT,
					 "a point column's scale is not the one its values call for");
		}
		if (r.status != RCF_DECODE_OK)
			goto done;
		get_bits_end(&b);
		if (shared)
		{
			forest->rec_used = (uint32_t) npoints;
			/* A point is a record and the S - 1 after it. */
			nrefs = npoints >= (uint64_t) S ? npoints - S + 1 : 0;
		}
		else
		{
			if (!points_distinct(points, forest->D, npoints, slots))
			{
				fail(&r, RCF_DECODE_CORRUPT, "two points are written with the same values");
				goto done;
			}
			nrefs = npoints;
		}
	}
	if (r.status != RCF_DECODE_OK)
		goto done;

	/* Trees. */
	for (int t = 0; t < p.number_of_trees; t++)
	{
		RcfTree    *tree = &forest->trees[t];
		uint64_t	size;
		int			ninternal;
		int			nleaves;
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
		if (version == 1)
		{
			if (!need(&r, 4 * size))
				goto done;
			for (uint64_t i = 0; i < size; i++)
			{
				/* Far beyond any real weight, and safe from overflow. */
				tree->heap_weight[i] = get_f32(&r);
				if (!(fabsf(tree->heap_weight[i]) <= 1e30f))
					fail(&r, RCF_DECODE_CORRUPT, "a sampler weight is out of range");
			}
			/* Each entry's point, before the tree. */
			for (uint64_t i = 0; i < size; i++)
				entry[i] = (uint32_t) get_count(&r, npoints,
												"a sampler refers to a missing point");
			if (r.status != RCF_DECODE_OK)
				goto done;
			read_tree(&r, forest, tree, nrefs, stack, order, &ninternal,
					  leaf_ref, preorder, &nleaves);
			if (r.status != RCF_DECODE_OK)
				goto done;
			(void) set_leaf_points(&lp, tree, nleaves);
		}
		else
		{
			/* At least a weight and a bit per leaf. */
			if (!need(&r, size > 0 ? 4 + size / 8 : 0))
				goto done;
			read_tree_v2(&r, forest, tree, nrefs,
						 shared ? forest->records : points,
						 shared ? (size_t) p.dims : (size_t) forest->D,
						 stack, order, &ninternal, leaf_ref, preorder,
						 &nleaves, entry, spare, (float *) (spare + forest->N));
			if (r.status != RCF_DECODE_OK)
				goto done;
			if (!set_leaf_points(&lp, tree, nleaves))
			{
				fail(&r, RCF_DECODE_CORRUPT,
					 "points are not numbered in the order the trees name them");
				goto done;
			}
		}

		/* Leaf masses are the sampler's counts of each leaf. */
		if (version == 1)
		{
			/* Map each point to the leaf holding it; leaf_of is unset between trees. */
			for (int k = 0; k < nleaves; k++)
			{
				uint32_t	ref = leaf_ref[preorder[k]];

				if (leaf_of[ref] != UINT32_MAX)
				{
					fail(&r, RCF_DECODE_CORRUPT, "two leaves of a tree hold the same point");
					goto done;
				}
				leaf_of[ref] = (uint32_t) preorder[k];
			}
			for (int i = 0; i < tree->heap_size; i++)
			{
				uint32_t	leaf = leaf_of[entry[i]];

				if (leaf == UINT32_MAX)
				{
					fail(&r, RCF_DECODE_CORRUPT, "a sampled point is missing from its tree");
					goto done;
				}
				tree->heap_leaf[i] = (uint16_t) leaf;
				tree->leaf_mass[leaf]++;
			}
			for (int k = 0; k < nleaves; k++)
				leaf_of[leaf_ref[preorder[k]]] = UINT32_MAX;
		}
		for (int k = 0; k < nleaves; k++)
		{
			if (tree->leaf_mass[preorder[k]] == 0)
			{
				fail(&r, RCF_DECODE_CORRUPT, "a leaf holds a point its sampler does not have");
				goto done;
			}
		}
		/* Leaf counts, cuts against the children's boxes, cached boxes. */
		if (!rcf_tree_finish(forest, tree, order, ninternal, boxes, version > 1))
		{
			fail(&r, RCF_DECODE_CORRUPT, "cut does not separate the children");
			goto done;
		}
		/*
		 * Version 1 keeps a heap, which must be one; version 2 keeps no
		 * layout.  Either is then rebuilt in the sampler's total order.
		 */
		if (version == 1 && (err = rcf_sampler_check(tree, forest->N)) != NULL)
		{
			fail(&r, RCF_DECODE_CORRUPT, err);
			goto done;
		}
		rcf_sampler_heapify(forest, tree);
		if ((err = rcf_sampler_check(tree, forest->N)) != NULL)
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
				/* The writer leaves out a transform of method none. */
				if (rcf_transform_params(transform)->method == RCF_TRANSFORM_NONE)
				{
					fail(&r, RCF_DECODE_CORRUPT,
						 "a transform section of method none is never written");
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
			/*
			 * The layout before the CUSUM was only ever written in version
			 * 1 (0.1.0 already wrote kind 2): in version 2 it would be a
			 * second form of a grader with the CUSUM off.
			 */
			if (kind == RCF_SECTION_GRADER_V1 && version != 1)
			{
				fail(&r, RCF_DECODE_CORRUPT,
					 "a grader section of the layout before the CUSUM is only read in format version 1");
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

	/* Nothing is written that no leaf holds. */
	if (referenced)
	{
		for (uint64_t i = 0; i < npoints; i++)
			if (!referenced[i])
			{
				fail(&r, RCF_DECODE_CORRUPT, "a point is not referred to by any sampler");
				goto done;
			}
	}
	if (covered)
	{
		/* A word at a time: all its 64 records, or the ones below npoints. */
		for (uint64_t i = 0; i < npoints; i += 64)
		{
			uint64_t	want = npoints - i >= 64 ? ~UINT64_C(0) :
				(UINT64_C(1) << (npoints - i)) - 1;

			if ((covered[i / 64] & want) != want)
			{
				fail(&r, RCF_DECODE_CORRUPT, "a record is not held by any point");
				goto done;
			}
		}
	}

	rcf_store_adopt_tail(forest);

	/*
	 * Masses, boxes and free lists are right by construction, and cuts and
	 * heaps were checked above: that is all of rcf_check, which the fuzzer
	 * runs on every forest that decodes.
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
	uint16_t	version;
	uint16_t	flags;

	if (len < HEADER_SIZE || get_u32(&r) != RCF_MAGIC)
		return -1;
	version = get_u16(&r);
	if (version != 1 && version != RCF_FORMAT_VERSION)
		return -1;
	flags = get_u16(&r);
	r.pos = HEADER_SIZE;
	params->dims = (int) get_u32(&r);
	params->shingle_size = (int) get_u32(&r);
	params->number_of_trees = (int) get_u32(&r);
	params->sample_size = (int) get_u32(&r);
	params->output_after = (int) get_u32(&r);
	params->time_decay = get_f64(&r);
	params->seed = get_u64(&r);
	params->bounding_box_cache_fraction = 1.0;
	if (version != 1 && (flags & RCF_FLAG_BOX_CACHE))
		params->bounding_box_cache_fraction = get_f64(&r);
	return r.status == RCF_DECODE_OK ? 0 : -1;
}
