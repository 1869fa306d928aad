/*
 * fuzz_wire.c
 *	  libFuzzer target for the detector wire format reader
 *	  (src/detect/wire_read.c, the code a round and _wire_describe() run).
 *
 * An input is a stream of messages as a round takes them from the slot,
 * each framed by a little-endian u16 length (test/fuzz/seeds/wire/ holds
 * real transactions of the output plugin in this framing).  The target
 * reads them as collect_write() and row_to_composite() do: a relation
 * message describes the rows that follow, a row is read against the last
 * relation when its relid and column count match.
 *
 * Besides ASan/UBSan's checks on every byte the reader touches, what is
 * parsed must be consistent with the bytes: the reader never leaves the
 * message, every value lies inside it, in order and without overlap, a
 * fixed-length value is exactly its column's length, every column passes
 * the checks the backend relies on, and writing what was parsed back in
 * the format of detect.h gives exactly the bytes the reader consumed.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "detect/wire_read.h"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A growable byte buffer for re-encoding, the writer side of the check. */
typedef struct Out
{
	uint8_t    *b;
	size_t		len;
	size_t		cap;
} Out;

static void
put(Out *o, const void *p, size_t n)
{
	if (n == 0)
		return;
	if (o->len + n > o->cap)
	{
		o->cap = (o->len + n) * 2 + 64;
		o->b = realloc(o->b, o->cap);
		if (o->b == NULL)
			abort();
	}
	memcpy(o->b + o->len, p, n);
	o->len += n;
}

static void
put_le(Out *o, uint64_t v, int n)
{
	for (int i = 0; i < n; i++)
	{
		uint8_t		c = (uint8_t) (v >> (8 * i));

		put(o, &c, 1);
	}
}

static void *
alloc_zero(size_t n, void *arg)
{
	(void) arg;
	return calloc(1, n);
}

/* The relation that the rows which follow refer to, as a round keeps it. */
static DwRelation cur;
static bool have_cur;

static uint32_t
le(const uint8_t *p, int n)
{
	uint32_t	v = 0;

	for (int i = n - 1; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

/*
 * Checks a parsed relation against the bytes [from, to) it came from, read
 * field by field as detect.h lays them out.
 */
static void
check_relation(const DwRelation *rel, const uint8_t *from, const uint8_t *to)
{
	size_t		at = 6;

	if (rel->relid != le(from, 4) || rel->natts != (int) le(from + 4, 2))
		abort();
	for (int i = 0; i < rel->natts; i++)
	{
		const DwAttr *a = &rel->atts[i];
		const uint8_t *f = from + at;
		size_t		namelen;

		if ((size_t) (to - from) < at + 13)
			abort();
		namelen = f[12];
		if ((size_t) (to - from) < at + 13 + namelen)
			abort();
		if (a->dropped != ((f[0] & DW_ATTFLAG_DROPPED) != 0) ||
			a->byval != ((f[0] & DW_ATTFLAG_BYVAL) != 0) ||
			a->len != (int16_t) le(f + 1, 2) ||
			a->align != (char) f[3] ||
			a->typid != le(f + 4, 4) ||
			a->typmod != (int32_t) le(f + 8, 4))
			abort();
		/* What the backend relies on: a NameData, a readable length. */
		if (namelen >= DW_NAME_MAX || a->name[namelen] != '\0' ||
			memcmp(a->name, f + 13, namelen) != 0)
			abort();
		if (!(a->len > 0 || a->len == -1 || a->len == -2))
			abort();
		if (a->byval && (a->len < 1 || a->len > DW_DATUM_SIZE))
			abort();
		at += 13 + namelen;
	}
	if (at != (size_t) (to - from))
		abort();
}

/* Checks a parsed row against the bytes [from, to) of its body. */
static void
check_row(const DwRelation *rel, const uint8_t *status, const DwValue *vals,
		  const uint8_t *from, const uint8_t *to)
{
	const uint8_t *next = from + rel->natts;
	Out			o = {0};
	uint64_t	sum = 0;

	put(&o, status, rel->natts);
	if (memcmp(status, from, rel->natts) != 0)
		abort();
	for (int i = 0; i < rel->natts; i++)
	{
		const DwAttr *a = &rel->atts[i];

		if (status[i] > DW_ATT_UNCHANGED)
			abort();
		if (status[i] != DW_ATT_VALUE)
		{
			if (vals[i].data != NULL || vals[i].len != 0)
				abort();
			continue;
		}
		if (a->len > 0)
		{
			if (vals[i].len != (uint32_t) a->len || vals[i].data != next)
				abort();
		}
		else
		{
			if (vals[i].len > DW_MAX_VALUE_LEN || vals[i].data != next + 4)
				abort();
			put_le(&o, vals[i].len, 4);
		}
		if (vals[i].data < from || vals[i].data + vals[i].len > to)
			abort();
		/* Read every byte as wire.c's copy does (ASan checks the range). */
		if (a->byval)
		{
			uint8_t		image[8] = {0};

			memcpy(image, vals[i].data, vals[i].len);
			sum += image[0];
		}
		for (uint32_t k = 0; k < vals[i].len; k++)
			sum += vals[i].data[k];
		put(&o, vals[i].data, vals[i].len);
		next = vals[i].data + vals[i].len;
	}
	if (o.len != (size_t) (to - from) ||
		(o.len > 0 && memcmp(o.b, from, o.len) != 0))
		abort();
	if (sum == UINT64_MAX)
		abort();				/* keeps the reads */
	free(o.b);
}

/* Reads one message as a round does. */
static void
one_message(const uint8_t *msg, size_t len)
{
	DwReader	r = {msg, msg + len};
	uint8_t		version;
	uint8_t		kind;
	uint64_t	u64;
	uint32_t	u32;
	uint16_t	u16;

	if (!dw_take_u8(&r, &version) || version != DETECT_WIRE_VERSION ||
		!dw_take_u8(&r, &kind))
		return;
	switch (kind)
	{
		case DW_BEGIN:
			(void) (dw_take_u64(&r, &u64) && dw_take_u64(&r, &u64) &&
					dw_take_u64(&r, &u64) && dw_take_u32(&r, &u32));
			break;
		case DW_COMMIT:
			(void) dw_take_u64(&r, &u64);
			break;
		case DW_RELATION:
			{
				DwRelation	rel;
				int			bad_len = 0;
				const uint8_t *from = r.p;
				DwStatus	st;

				memset(&rel, 0, sizeof(rel));
				st = dw_parse_relation(&r, &rel, alloc_zero, NULL, &bad_len);
				if (r.p < from || r.p > r.end)
					abort();
				if (st == DW_OK)
				{
					check_relation(&rel, from, r.p);
					if (have_cur)
						free(cur.atts);
					cur = rel;
					have_cur = true;
				}
				else
				{
					/* 1 to 8 is a valid length, by value or not. */
					if (st == DW_BAD_ATTLEN &&
						bad_len >= 1 && bad_len <= DW_DATUM_SIZE)
						abort();
					if (st != DW_TRUNCATED && st != DW_BAD_NAME_LENGTH &&
						st != DW_BAD_ATTLEN)
						abort();
					free(rel.atts);
				}
				break;
			}
		case DW_INSERT:
		case DW_UPDATE:
			{
				uint8_t    *status;
				DwValue    *vals;
				const uint8_t *from;
				DwStatus	st;

				if (!dw_take_u32(&r, &u32) || !dw_take_u16(&r, &u16))
					return;
				if (!have_cur || cur.relid != u32 || cur.natts != u16)
					return;
				status = malloc(cur.natts ? cur.natts : 1);
				vals = malloc(sizeof(DwValue) * (cur.natts ? cur.natts : 1));
				from = r.p;
				st = dw_parse_row_values(&r, &cur, status, vals);
				if (r.p < from || r.p > r.end)
					abort();
				if (st == DW_OK)
					check_row(&cur, status, vals, from, r.p);
				else if (st != DW_TRUNCATED && st != DW_BAD_VALUE_STATUS)
					abort();
				free(status);
				free(vals);
				break;
			}
		default:
			break;
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	have_cur = false;
	while (size >= 2)
	{
		size_t		len = data[0] | (data[1] << 8);
		uint8_t    *msg;

		data += 2;
		size -= 2;
		if (len > size)
			len = size;
		/* A copy of exactly the message, so that ASan sees its end. */
		msg = malloc(len ? len : 1);
		memcpy(msg, data, len);
		one_message(msg, len);
		free(msg);
		data += len;
		size -= len;
	}
	if (have_cur)
		free(cur.atts);
	have_cur = false;
	return 0;
}
