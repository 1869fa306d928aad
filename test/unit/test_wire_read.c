/*
 * test_wire_read.c
 *	  The detector wire reader (src/detect/wire_read.c) on messages written
 *	  here as detect.h lays them out: every column kind, every truncation
 *	  (each prefix of a message is refused, and with SANITIZE=1 ASan checks
 *	  that no byte past it is read), and each invalid field.
 */
#include <stdlib.h>

#include "detect/wire_read.h"
#include "unit.h"

/* A message under construction. */
typedef struct Msg
{
	uint8_t		b[4096];
	size_t		len;
} Msg;

static void
put_le(Msg *m, uint64_t v, int n)
{
	for (int i = 0; i < n; i++)
		m->b[m->len++] = (uint8_t) (v >> (8 * i));
}

static void
put_bytes(Msg *m, const void *p, size_t n)
{
	memcpy(m->b + m->len, p, n);
	m->len += n;
}

/* One column of a relation body. */
static void
put_attr(Msg *m, int flags, int len, uint32_t typid, const char *name)
{
	put_le(m, (uint64_t) flags, 1);
	put_le(m, (uint16_t) len, 2);
	put_le(m, 'i', 1);
	put_le(m, typid, 4);
	put_le(m, (uint32_t) -1, 4);
	put_le(m, strlen(name), 1);
	put_bytes(m, name, strlen(name));
}

/* calloc, counting the bytes asked for in *arg when it is given. */
static void *
alloc_zero(size_t n, void *arg)
{
	if (arg != NULL)
		*(size_t *) arg += n;
	return calloc(1, n);
}

/* Parses the first n bytes of m as a relation body, from an exact copy. */
static DwStatus
relation(const Msg *m, size_t n, DwRelation *rel, int *bad_len)
{
	uint8_t    *copy = malloc(n ? n : 1);
	DwReader	r;
	DwStatus	st;

	memcpy(copy, m->b, n);
	r.p = copy;
	r.end = copy + n;
	memset(rel, 0, sizeof(*rel));
	st = dw_parse_relation(&r, rel, alloc_zero, NULL, bad_len);
	if (st == DW_OK && r.p != r.end)
		st = DW_NO_MEMORY;		/* "did not consume it all": fails the test */
	free(copy);
	return st;
}

/* One column as a relation of its own; its status and bad_len. */
static DwStatus
one_attr(int flags, int len, const char *name, int *bad_len)
{
	Msg			m = {{0}, 0};
	DwRelation	rel;
	DwStatus	st;

	put_le(&m, 16384, 4);
	put_le(&m, 1, 2);
	put_attr(&m, flags, len, 23, name);
	*bad_len = 12345;
	st = relation(&m, m.len, &rel, bad_len);
	free(rel.atts);
	return st;
}

int
main(void)
{
	Msg			rm = {{0}, 0};
	Msg			vm = {{0}, 0};
	DwRelation	rel;
	int			bad_len = 0;
	bool		all_truncated = true;
	uint8_t		status[6];
	DwValue		vals[6];
	char		name63[64];
	const uint8_t uuid[16] = {0xa0, 0xee, 0xbc, 0x99, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};

	/* Little-endian integers. */
	{
		const uint8_t b[8] = {0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x88};
		DwReader	r = {b, b + 8};
		uint16_t	u16 = 0;
		uint32_t	u32 = 0;
		uint64_t	u64 = 0;

		UNIT_OK(dw_take_u16(&r, &u16) && u16 == 0x0201, "u16");
		UNIT_OK(dw_take_u32(&r, &u32) && u32 == 0x06050403, "u32");
		UNIT_OK(!dw_take_u32(&r, &u32) && r.p == b + 6, "u32 past the end: refused, reader unchanged");
		r.p = b;
		UNIT_OK(dw_take_u64(&r, &u64) && u64 == 0x8807060504030201ULL, "u64");
		UNIT_OK(!dw_take_u8(&r, status) && r.p == r.end, "u8 at the end: refused");
	}

	/* int4 by value, text, a dropped column, uuid, a C string, bool. */
	put_le(&rm, 16384, 4);
	put_le(&rm, 6, 2);
	put_attr(&rm, DW_ATTFLAG_BYVAL, 4, 23, "n");
	put_attr(&rm, 0, -1, 25, "note");
	put_attr(&rm, DW_ATTFLAG_DROPPED | DW_ATTFLAG_BYVAL, 4, 0, "........pg.dropped.3........");
	put_attr(&rm, 0, 16, 2950, "id");
	put_attr(&rm, 0, -2, 2275, "c");
	put_attr(&rm, DW_ATTFLAG_BYVAL, 1, 16, "flag");
	UNIT_EQ_INT(relation(&rm, rm.len, &rel, &bad_len), DW_OK, "relation of six columns");
	UNIT_EQ_INT(rel.relid, 16384, "relid");
	UNIT_EQ_INT(rel.natts, 6, "natts");
	UNIT_OK(rel.atts[0].byval && rel.atts[0].len == 4 && rel.atts[0].typid == 23 &&
			rel.atts[0].typmod == -1 && rel.atts[0].align == 'i', "int4 column");
	UNIT_EQ_STR(rel.atts[1].name, "note", "text column's name");
	UNIT_OK(rel.atts[2].dropped && !rel.atts[1].dropped, "dropped flag");
	UNIT_OK(!rel.atts[3].byval && rel.atts[3].len == 16, "uuid column");
	UNIT_EQ_INT(rel.atts[4].len, -2, "C string column");
	for (size_t n = 0; n < rm.len; n++)
	{
		DwRelation	part;

		if (relation(&rm, n, &part, &bad_len) != DW_TRUNCATED)
		{
			all_truncated = false;
			unit_diag("prefix of %zu bytes", n);
		}
		free(part.atts);
	}
	UNIT_OK(all_truncated, "every prefix of the relation is truncated");

	/*
	 * A column count the message cannot hold is refused before allocating:
	 * 65,535 columns in 12 bytes asked for 5.5 MB (found fuzzing: the
	 * wire target spent most of its time in the kernel zeroing them).
	 */
	{
		Msg			m = {{0}, 0};
		DwRelation	big;
		DwReader	r;
		size_t		asked = 0;

		put_le(&m, 1, 4);
		put_le(&m, 65535, 2);
		put_attr(&m, 0, 4, 23, "");
		r.p = m.b;
		r.end = m.b + m.len;
		UNIT_EQ_INT(dw_parse_relation(&r, &big, alloc_zero, &asked, &bad_len), DW_TRUNCATED,
					"65,535 columns in one column's bytes");
		UNIT_OK(asked == 0 && big.atts == NULL, "nothing allocated for them");

		/* Exactly enough bytes for the count: allocated, then read. */
		m.len = 0;
		put_le(&m, 1, 4);
		put_le(&m, 2, 2);
		put_attr(&m, 0, 4, 23, "");
		put_attr(&m, 0, 8, 20, "");
		r.p = m.b;
		r.end = m.b + m.len;
		UNIT_EQ_INT(dw_parse_relation(&r, &big, alloc_zero, &asked, &bad_len), DW_OK,
					"two columns with empty names (13 bytes each)");
		UNIT_EQ_INT(asked, 2 * sizeof(DwAttr), "allocated for two columns");
		free(big.atts);
	}

	/* Column checks. */
	memset(name63, 'x', 63);
	name63[63] = '\0';
	UNIT_EQ_INT(one_attr(0, 4, name63, &bad_len), DW_OK, "a 63-byte name");
	{
		Msg			m = {{0}, 0};
		DwRelation	r64;
		char		name64[65];

		memset(name64, 'x', 64);
		name64[64] = '\0';
		put_le(&m, 1, 4);
		put_le(&m, 1, 2);
		put_attr(&m, 0, 4, 23, name64);
		UNIT_EQ_INT(relation(&m, m.len, &r64, &bad_len), DW_BAD_NAME_LENGTH, "a 64-byte name");
		free(r64.atts);
	}
	UNIT_EQ_INT(one_attr(0, 0, "z", &bad_len), DW_BAD_ATTLEN, "length 0");
	UNIT_EQ_INT(bad_len, 0, "length 0 reported");
	UNIT_EQ_INT(one_attr(0, -3, "z", &bad_len), DW_BAD_ATTLEN, "length -3");
	UNIT_EQ_INT(bad_len, -3, "length -3 reported");
	UNIT_EQ_INT(one_attr(DW_ATTFLAG_BYVAL, DW_DATUM_SIZE + 1, "z", &bad_len), DW_BAD_ATTLEN,
				"by value longer than a Datum");
	UNIT_EQ_INT(one_attr(DW_ATTFLAG_BYVAL, -1, "z", &bad_len), DW_BAD_ATTLEN, "varlena by value");
	UNIT_EQ_INT(one_attr(DW_ATTFLAG_BYVAL, DW_DATUM_SIZE, "z", &bad_len), DW_OK, "int8 by value");
	UNIT_EQ_INT(one_attr(0, 32767, "z", &bad_len), DW_OK, "a long fixed-length column");

	/* A row of the six columns: value, value, NULL, value, value, unchanged. */
	put_bytes(&vm, (uint8_t[]) {1, 1, 0, 1, 1, 2}, 6);
	put_le(&vm, 42, 4);
	put_le(&vm, 5, 4);
	put_bytes(&vm, "hello", 5);
	put_bytes(&vm, uuid, 16);
	put_le(&vm, 3, 4);
	put_bytes(&vm, "abc", 3);
	{
		uint8_t    *copy = malloc(vm.len);
		DwReader	r;

		memcpy(copy, vm.b, vm.len);
		r.p = copy;
		r.end = copy + vm.len;
		UNIT_EQ_INT(dw_parse_row_values(&r, &rel, status, vals), DW_OK, "row");
		UNIT_OK(r.p == r.end, "the row is read to its end");
		UNIT_OK(vals[0].data == copy + 6 && vals[0].len == 4 && vals[0].data[0] == 42, "int4 value");
		UNIT_OK(vals[1].len == 5 && memcmp(vals[1].data, "hello", 5) == 0, "text value");
		UNIT_OK(status[2] == DW_ATT_NULL && vals[2].data == NULL, "NULL");
		UNIT_OK(vals[3].len == 16 && memcmp(vals[3].data, uuid, 16) == 0, "uuid value");
		UNIT_OK(vals[4].len == 3 && memcmp(vals[4].data, "abc", 3) == 0, "C string value");
		UNIT_OK(status[5] == DW_ATT_UNCHANGED && vals[5].data == NULL, "unchanged TOASTed value");
		free(copy);
	}
	all_truncated = true;
	for (size_t n = 0; n < vm.len; n++)
	{
		uint8_t    *copy = malloc(n ? n : 1);
		DwReader	r;

		memcpy(copy, vm.b, n);
		r.p = copy;
		r.end = copy + n;
		if (dw_parse_row_values(&r, &rel, status, vals) != DW_TRUNCATED)
		{
			all_truncated = false;
			unit_diag("row prefix of %zu bytes", n);
		}
		free(copy);
	}
	UNIT_OK(all_truncated, "every prefix of the row is truncated");

	/* An unknown status; a length past the allocation limit. */
	{
		Msg			m = {{0}, 0};
		DwReader	r;

		put_bytes(&m, (uint8_t[]) {0, 3, 0, 0, 0, 0}, 6);
		r.p = m.b;
		r.end = m.b + m.len;
		UNIT_EQ_INT(dw_parse_row_values(&r, &rel, status, vals), DW_BAD_VALUE_STATUS, "status 3");

		m.len = 0;
		put_bytes(&m, (uint8_t[]) {0, 1, 0, 0, 0, 0}, 6);
		put_le(&m, (uint64_t) DW_MAX_VALUE_LEN + 1, 4);
		put_bytes(&m, "xx", 2);
		r.p = m.b;
		r.end = m.b + m.len;
		UNIT_EQ_INT(dw_parse_row_values(&r, &rel, status, vals), DW_TRUNCATED,
					"a varlena longer than an allocation may be");

		m.len = 0;
		put_bytes(&m, (uint8_t[]) {0, 1, 0, 0, 0, 0}, 6);
		put_le(&m, 0xffffffffu, 4);
		r.p = m.b;
		r.end = m.b + m.len;
		UNIT_EQ_INT(dw_parse_row_values(&r, &rel, status, vals), DW_TRUNCATED,
					"a length of 2^32 - 1 does not wrap the reader");
	}
	free(rel.atts);
	return unit_done();
}
