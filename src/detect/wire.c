/*
 * wire.c
 *	  The detector wire format (version 1): little-endian writers, a
 *	  bounds-checked reader, and anomaly._wire_describe(bytea), which turns
 *	  one message into JSON for tests and for people reading a slot with
 *	  pg_logical_slot_peek_binary_changes.
 *
 * The format itself is described in detect.h.
 */
#include "postgres.h"

#include "access/tupmacs.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/pg_lsn.h"
#include "utils/timestamp.h"

#include "detect/detect.h"
#include "compat.h"

PG_FUNCTION_INFO_V1(anomaly_wire_describe);

void
dw_put_u8(StringInfo out, uint8 v)
{
	appendStringInfoCharMacro(out, (char) v);
}

void
dw_put_u16(StringInfo out, uint16 v)
{
	uint8		b[2] = {v & 0xff, v >> 8};

	appendBinaryStringInfo(out, (char *) b, 2);
}

void
dw_put_u32(StringInfo out, uint32 v)
{
	uint8		b[4];

	for (int i = 0; i < 4; i++)
		b[i] = (v >> (8 * i)) & 0xff;
	appendBinaryStringInfo(out, (char *) b, 4);
}

void
dw_put_u64(StringInfo out, uint64 v)
{
	uint8		b[8];

	for (int i = 0; i < 8; i++)
		b[i] = (v >> (8 * i)) & 0xff;
	appendBinaryStringInfo(out, (char *) b, 8);
}

/* The reader's limits are the server's (see wire_read.h). */
StaticAssertDecl(DW_NAME_MAX == NAMEDATALEN, "DW_NAME_MAX is not NAMEDATALEN");
StaticAssertDecl(DW_DATUM_SIZE == sizeof(Datum), "DW_DATUM_SIZE is not sizeof(Datum)");
StaticAssertDecl(DW_MAX_VALUE_LEN == MaxAllocSize - VARHDRSZ - 1,
				 "DW_MAX_VALUE_LEN is not MaxAllocSize - VARHDRSZ - 1");

/* Raises the error for a message shorter than its content. */
static void
dw_truncated(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_DATA_CORRUPTED),
			 errmsg("truncated anomaly decoding message")));
}

/* Raises the error a parse of wire_read.c found, if any. */
static void
dw_check(DwStatus st, int bad_len)
{
	switch (st)
	{
		case DW_OK:
			return;
		case DW_TRUNCATED:
			dw_truncated();
			break;
		case DW_BAD_NAME_LENGTH:
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("invalid column name length in anomaly decoding message")));
			break;
		case DW_BAD_ATTLEN:
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("invalid column length %d in anomaly decoding message", bad_len)));
			break;
		case DW_BAD_VALUE_STATUS:
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("invalid value status in anomaly decoding message")));
			break;
		case DW_NO_MEMORY:
			/* Our allocator raises its own error first. */
			break;
	}
	elog(ERROR, "unexpected anomaly wire reader status %d", (int) st);
}

const uint8 *
dw_get_bytes(DwReader *r, Size n)
{
	const uint8 *p;

	if (!dw_take(r, n, &p))
		dw_truncated();
	return p;
}

uint8
dw_get_u8(DwReader *r)
{
	uint8_t		v;

	if (!dw_take_u8(r, &v))
		dw_truncated();
	return v;
}

uint16
dw_get_u16(DwReader *r)
{
	uint16_t	v;

	if (!dw_take_u16(r, &v))
		dw_truncated();
	return v;
}

uint32
dw_get_u32(DwReader *r)
{
	uint32_t	v;

	if (!dw_take_u32(r, &v))
		dw_truncated();
	return v;
}

uint64
dw_get_u64(DwReader *r)
{
	uint64_t	v;

	if (!dw_take_u64(r, &v))
		dw_truncated();
	return v;
}

/* The parser's allocator: zeroed memory in a memory context. */
static void *
dw_alloc_zero(size_t n, void *cxt)
{
	return MemoryContextAllocZero((MemoryContext) cxt, n);
}

/* Parses a relation message body into rel, allocating in cxt. */
void
dw_read_relation(DwReader *r, DwRelation *rel, MemoryContext cxt)
{
	int			bad_len = 0;

	dw_check(dw_parse_relation(r, rel, dw_alloc_zero, cxt, &bad_len), bad_len);
}

/* Reads the values of a row message into values/status (see detect.h). */
void
dw_read_row_values(DwReader *r, const DwRelation *rel, Datum *values,
				   uint8 *status)
{
	DwValue		local[32];
	DwValue    *vals = rel->natts <= lengthof(local) ? local :
		palloc(sizeof(DwValue) * rel->natts);

	dw_check(dw_parse_row_values(r, rel, status, vals), 0);
	for (int i = 0; i < rel->natts; i++)
	{
		const DwAttr *a = &rel->atts[i];
		const uint8 *b = vals[i].data;
		uint32		len = vals[i].len;

		values[i] = (Datum) 0;
		if (status[i] != DW_ATT_VALUE)
			continue;
		if (a->len > 0)
		{
			if (a->byval)
			{
				DwByvalImage u;

				memcpy(&u, b, a->len);
				values[i] = fetch_att(&u, true, a->len);
			}
			else
			{
				char	   *copy = palloc(a->len);

				memcpy(copy, b, a->len);
				values[i] = PointerGetDatum(copy);
			}
		}
		else if (a->len == -1)
		{
			struct varlena *v = palloc(VARHDRSZ + len);

			SET_VARSIZE(v, VARHDRSZ + len);
			memcpy(VARDATA(v), b, len);
			values[i] = PointerGetDatum(v);
		}
		else
		{
			char	   *s = palloc(len + 1);

			memcpy(s, b, len);
			s[len] = '\0';
			values[i] = CStringGetDatum(s);
		}
	}
	if (vals != local)
		pfree(vals);
}

/* Appends "key": value pairs to a JSON object under construction. */
static void
json_key(StringInfo buf, bool *first, const char *key)
{
	if (!*first)
		appendStringInfoString(buf, ", ");
	*first = false;
	escape_json(buf, key);
	appendStringInfoString(buf, ": ");
}

/*
 * anomaly._wire_describe(message bytea) RETURNS jsonb: one message of the
 * output plugin as JSON.  Row values are shown with their type's output
 * function when the message carries a relation description for them (the
 * second argument, the preceding 'R' message), else as lengths.
 */
Datum
anomaly_wire_describe(PG_FUNCTION_ARGS)
{
	bytea	   *msg = PG_GETARG_BYTEA_PP(0);
	bytea	   *relmsg = PG_ARGISNULL(1) ? NULL : PG_GETARG_BYTEA_PP(1);
	DwReader	r;
	StringInfoData buf;
	bool		first = true;
	uint8		version;
	char		kind;

	r.p = (const uint8 *) VARDATA_ANY(msg);
	r.end = r.p + VARSIZE_ANY_EXHDR(msg);
	version = dw_get_u8(&r);
	if (version != DETECT_WIRE_VERSION)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
				 errmsg("unsupported anomaly decoding message version %d", version)));
	kind = (char) dw_get_u8(&r);

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	json_key(&buf, &first, "version");
	appendStringInfo(&buf, "%d", version);
	json_key(&buf, &first, "kind");
	switch (kind)
	{
		case DW_BEGIN:
			{
				XLogRecPtr	commit_lsn = dw_get_u64(&r);
				XLogRecPtr	end_lsn = dw_get_u64(&r);
				TimestampTz t = (TimestampTz) dw_get_u64(&r);
				uint32		xid = dw_get_u32(&r);

				appendStringInfoString(&buf, "\"begin\"");
				json_key(&buf, &first, "commit_lsn");
				appendStringInfo(&buf, "\"%X/%X\"", LSN_FORMAT_ARGS(commit_lsn));
				json_key(&buf, &first, "end_lsn");
				appendStringInfo(&buf, "\"%X/%X\"", LSN_FORMAT_ARGS(end_lsn));
				json_key(&buf, &first, "commit_time_set");
				appendStringInfoString(&buf, t != 0 ? "true" : "false");
				json_key(&buf, &first, "xid_set");
				appendStringInfoString(&buf, xid != 0 ? "true" : "false");
				break;
			}
		case DW_COMMIT:
			{
				XLogRecPtr	commit_lsn = dw_get_u64(&r);

				appendStringInfoString(&buf, "\"commit\"");
				json_key(&buf, &first, "commit_lsn");
				appendStringInfo(&buf, "\"%X/%X\"", LSN_FORMAT_ARGS(commit_lsn));
				break;
			}
		case DW_RELATION:
			{
				DwRelation	rel;

				dw_read_relation(&r, &rel, CurrentMemoryContext);
				appendStringInfoString(&buf, "\"relation\"");
				json_key(&buf, &first, "relation");
				escape_json(&buf, get_rel_name(rel.relid) ? get_rel_name(rel.relid) : "?");
				json_key(&buf, &first, "columns");
				appendStringInfoChar(&buf, '[');
				for (int i = 0; i < rel.natts; i++)
				{
					if (i > 0)
						appendStringInfoString(&buf, ", ");
					if (rel.atts[i].dropped)
						appendStringInfoString(&buf, "null");
					else
					{
						appendStringInfoChar(&buf, '[');
						escape_json(&buf, rel.atts[i].name);
						appendStringInfoString(&buf, ", ");
						escape_json(&buf, format_type_with_typemod(rel.atts[i].typid,
																   rel.atts[i].typmod));
						appendStringInfoChar(&buf, ']');
					}
				}
				appendStringInfoChar(&buf, ']');
				break;
			}
		case DW_INSERT:
		case DW_UPDATE:
			{
				Oid			relid = dw_get_u32(&r);
				int			natts = dw_get_u16(&r);
				DwRelation	rel;
				Datum	   *values;
				uint8	   *status;

				appendStringInfoString(&buf, kind == DW_INSERT ? "\"insert\"" : "\"update\"");
				json_key(&buf, &first, "relation");
				escape_json(&buf, get_rel_name(relid) ? get_rel_name(relid) : "?");
				if (relmsg == NULL)
				{
					json_key(&buf, &first, "natts");
					appendStringInfo(&buf, "%d", natts);
					break;
				}
				else
				{
					DwReader	rr;

					rr.p = (const uint8 *) VARDATA_ANY(relmsg);
					rr.end = rr.p + VARSIZE_ANY_EXHDR(relmsg);
					if (dw_get_u8(&rr) != DETECT_WIRE_VERSION || dw_get_u8(&rr) != DW_RELATION)
						ereport(ERROR,
								(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
								 errmsg("the second argument must be a relation message")));
					dw_read_relation(&rr, &rel, CurrentMemoryContext);
					if (rel.relid != relid || rel.natts != natts)
						ereport(ERROR,
								(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
								 errmsg("the relation message does not describe this row")));
				}
				values = palloc(sizeof(Datum) * Max(natts, 1));
				status = palloc(Max(natts, 1));
				dw_read_row_values(&r, &rel, values, status);
				json_key(&buf, &first, "values");
				appendStringInfoChar(&buf, '{');
				{
					bool		f2 = true;

					for (int i = 0; i < natts; i++)
					{
						Oid			out;
						bool		isvarlena;

						if (rel.atts[i].dropped)
							continue;
						json_key(&buf, &f2, rel.atts[i].name);
						if (status[i] == DW_ATT_NULL)
							appendStringInfoString(&buf, "null");
						else if (status[i] == DW_ATT_UNCHANGED)
							appendStringInfoString(&buf, "\"(unchanged toast)\"");
						else
						{
							getTypeOutputInfo(rel.atts[i].typid, &out, &isvarlena);
							escape_json(&buf, OidOutputFunctionCall(out, values[i]));
						}
					}
				}
				appendStringInfoChar(&buf, '}');
				break;
			}
		default:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
					 errmsg("unknown anomaly decoding message kind %d", kind)));
	}
	if (r.p != r.end)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
				 errmsg("trailing bytes in anomaly decoding message")));
	appendStringInfoChar(&buf, '}');
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data)));
}
