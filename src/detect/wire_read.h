/*
 * wire_read.h
 *	  Reading the detector wire format (see detect.h): the byte-level parsing
 *	  of relation and row messages, with no PostgreSQL header.
 *
 * The messages are written by our output plugin and read back by a round,
 * but anomaly._wire_describe() reads any bytea, so every read is bounds
 * checked and every field a later step relies on is validated here.  The
 * code has no PostgreSQL header so that the fuzzer (test/fuzz/fuzz_wire.c)
 * and the unit tests link exactly the code the server runs; wire.c wraps it
 * into the ereport-raising functions the rest of the backend calls.
 *
 * Nothing here allocates except through the caller's allocator, and no
 * function keeps a pointer to its input beyond what it returns.
 */
#ifndef ANOMALY_WIRE_READ_H
#define ANOMALY_WIRE_READ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---------------------------------------------------------------------
 * Wire format, version 1 (decoder.c writes it, wire_read.c parses it).
 *
 * Every message: u8 version (1), u8 kind, then the body.  Integers are
 * little-endian; value images are the server's own (a consumer on another
 * machine would need the same architecture, which logical decoding of a
 * server's own WAL guarantees).
 *
 *	'B' begin	u64 commit_lsn, u64 end_lsn, i64 commit_time, u32 xid
 *	'R' relation	u32 relid, u16 natts, natts x {u8 flags (1 dropped,
 *				2 by value), i16 attlen, u8 attalign, u32 typid,
 *				i32 typmod, u8 namelen, name bytes}
 *	'I' insert / 'U' update (new tuple)
 *				u32 relid, u16 natts, natts x u8 status (0 NULL,
 *				1 value, 2 unchanged TOASTed value), then per value:
 *				attlen > 0: attlen bytes (the datum's image);
 *				attlen -1: u32 length + the varlena's payload;
 *				attlen -2: u32 length + the C string, without its NUL
 *	'C' commit	u64 commit_lsn
 *	'P' passed	(nothing more) a row the reader asked to pass over: the
 *				first rows of a transaction it consumed in an earlier
 *				round (detect_decoder_resume); sent only to our reader
 *
 * A 'B' is sent before the first row of a transaction and a 'C' after its
 * last; transactions without rows of the configured relations send
 * nothing.  An 'R' precedes the first row of each relation in each
 * transaction, describing the relation as of that transaction.
 * ---------------------------------------------------------------------
 */
#define DETECT_WIRE_VERSION		1
#define DETECT_PLUGIN_NAME		"anomaly"

#define DW_BEGIN		'B'
#define DW_RELATION		'R'
#define DW_INSERT		'I'
#define DW_UPDATE		'U'
#define DW_COMMIT		'C'
#define DW_PASSED		'P'

#define DW_ATT_NULL		0
#define DW_ATT_VALUE	1
#define DW_ATT_UNCHANGED 2

#define DW_ATTFLAG_DROPPED	1
#define DW_ATTFLAG_BYVAL	2

/* NAMEDATALEN; wire.c asserts that they are equal. */
#define DW_NAME_MAX		64

/* sizeof(Datum), the longest by-value column (wire.c asserts it too). */
#define DW_DATUM_SIZE	((int) sizeof(uintptr_t))

/*
 * The longest value a row message may carry: MaxAllocSize - VARHDRSZ - 1,
 * so that the varlena or C string made of it can be allocated (wire.c
 * asserts the equality).
 */
#define DW_MAX_VALUE_LEN	((uint32_t) 0x3fffffff - 4 - 1)

/* A bounds-checked reader over one message. */
typedef struct DwReader
{
	const uint8_t *p;
	const uint8_t *end;
} DwReader;

/* One column of a relation message. */
typedef struct DwAttr
{
	bool		dropped;
	bool		byval;
	int16_t		len;
	char		align;
	uint32_t	typid;
	int32_t		typmod;
	char		name[DW_NAME_MAX];
} DwAttr;

typedef struct DwRelation
{
	uint32_t	relid;
	int			natts;
	DwAttr	   *atts;
} DwRelation;

/* Where one value of a row message lies in the message (status 1 only). */
typedef struct DwValue
{
	const uint8_t *data;
	uint32_t	len;
} DwValue;

/* What a parse found wrong; wire.c turns each into its error message. */
typedef enum DwStatus
{
	DW_OK = 0,
	DW_TRUNCATED,				/* shorter than its content */
	DW_BAD_NAME_LENGTH,			/* column name of NAMEDATALEN bytes or more */
	DW_BAD_ATTLEN,				/* column length impossible for its kind */
	DW_BAD_VALUE_STATUS,		/* value status other than 0, 1 or 2 */
	DW_NO_MEMORY				/* the allocator returned NULL */
} DwStatus;

/*
 * Zeroed memory for n bytes (n > 0), or NULL; the backend's raises an error
 * instead of returning NULL.
 */
typedef void *(*DwAllocZero) (size_t n, void *arg);

/*
 * Takes n bytes: *out points at them and the reader moves past them.  False,
 * with the reader unchanged, when fewer remain.
 */
static inline bool
dw_take(DwReader *r, size_t n, const uint8_t **out)
{
	if ((size_t) (r->end - r->p) < n)
		return false;
	*out = r->p;
	r->p += n;
	return true;
}

/* Little-endian integers; false when the message ends first. */
static inline bool
dw_take_u8(DwReader *r, uint8_t *v)
{
	const uint8_t *b;

	if (!dw_take(r, 1, &b))
		return false;
	*v = b[0];
	return true;
}

static inline bool
dw_take_u16(DwReader *r, uint16_t *v)
{
	const uint8_t *b;

	if (!dw_take(r, 2, &b))
		return false;
	*v = (uint16_t) (b[0] | (b[1] << 8));
	return true;
}

static inline bool
dw_take_u32(DwReader *r, uint32_t *v)
{
	const uint8_t *b;
	uint32_t	x = 0;

	if (!dw_take(r, 4, &b))
		return false;
	for (int i = 3; i >= 0; i--)
		x = (x << 8) | b[i];
	*v = x;
	return true;
}

static inline bool
dw_take_u64(DwReader *r, uint64_t *v)
{
	const uint8_t *b;
	uint64_t	x = 0;

	if (!dw_take(r, 8, &b))
		return false;
	for (int i = 7; i >= 0; i--)
		x = (x << 8) | b[i];
	*v = x;
	return true;
}

/* The fewest bytes a column of a relation message takes (an empty name). */
#define DW_ATTR_MIN_BYTES	13

/*
 * Parses a relation message body (after version and kind) into rel, its
 * column array from alloc (rel->atts is NULL when the parse stopped before
 * allocating it); *bad_len holds the offending length for DW_BAD_ATTLEN.
 * A column count that the rest of the message cannot hold is DW_TRUNCATED
 * before anything is allocated.
 */
extern DwStatus dw_parse_relation(DwReader *r, DwRelation *rel,
								  DwAllocZero alloc, void *alloc_arg,
								  int *bad_len);

/*
 * Parses the values of a row message body (after relid and natts) laid out
 * like rel: status[i] and, for status 1, vals[i] (both arrays of
 * rel->natts entries).  A value of a fixed-length column is exactly its
 * attlen bytes; a varlena or C string is at most DW_MAX_VALUE_LEN.
 */
extern DwStatus dw_parse_row_values(DwReader *r, const DwRelation *rel,
									uint8_t *status, DwValue *vals);

#endif							/* ANOMALY_WIRE_READ_H */
