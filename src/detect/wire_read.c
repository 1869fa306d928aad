/*
 * wire_read.c
 *	  Parsing relation and row messages of the detector wire format, with
 *	  no PostgreSQL header (see wire_read.h; wire.c is the backend's side).
 */
#include "detect/wire_read.h"

#include <string.h>

/* Reads one column of a relation message into a and checks it. */
static DwStatus
parse_attr(DwReader *r, DwAttr *a, int *bad_len)
{
	uint8_t		flags;
	uint16_t	len;
	uint8_t		align;
	uint32_t	typmod;
	uint8_t		namelen;
	const uint8_t *name;

	if (!dw_take_u8(r, &flags) || !dw_take_u16(r, &len) ||
		!dw_take_u8(r, &align) || !dw_take_u32(r, &a->typid) ||
		!dw_take_u32(r, &typmod) || !dw_take_u8(r, &namelen))
		return DW_TRUNCATED;
	a->dropped = (flags & DW_ATTFLAG_DROPPED) != 0;
	a->byval = (flags & DW_ATTFLAG_BYVAL) != 0;
	a->len = (int16_t) len;
	a->align = (char) align;
	a->typmod = (int32_t) typmod;
	/* The name must fit with its NUL: it becomes a NameData. */
	if (namelen >= DW_NAME_MAX)
		return DW_BAD_NAME_LENGTH;
	if (!dw_take(r, namelen, &name))
		return DW_TRUNCATED;
	memcpy(a->name, name, namelen);
	a->name[namelen] = '\0';

	/*
	 * A value is read by its length: positive (a fixed-length image, by
	 * value only when a Datum holds it), -1 (varlena) or -2 (C string).
	 */
	if (a->len == 0 || a->len < -2 ||
		(a->byval && (a->len <= 0 || a->len > DW_DATUM_SIZE)))
	{
		*bad_len = a->len;
		return DW_BAD_ATTLEN;
	}
	return DW_OK;
}

/* Parses a relation message body into rel (see wire_read.h). */
DwStatus
dw_parse_relation(DwReader *r, DwRelation *rel, DwAllocZero alloc,
				  void *alloc_arg, int *bad_len)
{
	uint16_t	natts;

	rel->atts = NULL;
	if (!dw_take_u32(r, &rel->relid) || !dw_take_u16(r, &natts))
		return DW_TRUNCATED;
	rel->natts = natts;

	/*
	 * A column takes DW_ATTR_MIN_BYTES at least: a count the message cannot
	 * hold is refused before it is allocated for (else eight bytes would
	 * ask for 65,535 columns, 5.5 MB).
	 */
	if ((size_t) (r->end - r->p) / DW_ATTR_MIN_BYTES < natts)
		return DW_TRUNCATED;
	rel->atts = alloc(sizeof(DwAttr) * (natts > 0 ? natts : 1), alloc_arg);
	if (rel->atts == NULL)
		return DW_NO_MEMORY;
	for (int i = 0; i < rel->natts; i++)
	{
		DwStatus	st = parse_attr(r, &rel->atts[i], bad_len);

		if (st != DW_OK)
			return st;
	}
	return DW_OK;
}

/* Parses the values of a row message body (see wire_read.h). */
DwStatus
dw_parse_row_values(DwReader *r, const DwRelation *rel, uint8_t *status,
					DwValue *vals)
{
	const uint8_t *st;

	if (!dw_take(r, rel->natts, &st))
		return DW_TRUNCATED;
	for (int i = 0; i < rel->natts; i++)
	{
		const DwAttr *a = &rel->atts[i];
		uint32_t	len;

		status[i] = st[i];
		vals[i].data = NULL;
		vals[i].len = 0;
		if (st[i] != DW_ATT_VALUE)
		{
			if (st[i] != DW_ATT_NULL && st[i] != DW_ATT_UNCHANGED)
				return DW_BAD_VALUE_STATUS;
			continue;
		}
		if (a->len > 0)
			len = (uint32_t) a->len;
		else
		{
			/* Varlena payload or C string: its length comes first. */
			if (!dw_take_u32(r, &len))
				return DW_TRUNCATED;
			if (len > DW_MAX_VALUE_LEN)
				return DW_TRUNCATED;
		}
		if (!dw_take(r, len, &vals[i].data))
			return DW_TRUNCATED;
		vals[i].len = len;
	}
	return DW_OK;
}
