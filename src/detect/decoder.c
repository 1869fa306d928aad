/*
 * decoder.c
 *	  The logical-decoding output plugin "anomaly": the new rows of the
 *	  configured tables, in the compact wire format of detect.h.
 *
 * Options (all optional):
 *	  proto_version		'1' (the only version)
 *	  relations			comma-separated table OIDs; rows of other tables are
 *						not sent.  Absent: every table.
 *	  operations		'insert' (default), 'update', or 'insert,update'
 *	  skip_origins		comma-separated replication origin ids whose
 *						changes are not decoded at all (the detectors' own
 *						writes)
 *
 * Transactions with no row to send produce no output.  Values that are
 * TOASTed are sent detoasted; the unchanged TOASTed values of an UPDATE,
 * which WAL does not carry, are sent as "unchanged".
 */
#include "postgres.h"

#include "access/detoast.h"
#include "access/htup_details.h"
#include "access/tupmacs.h"
#include "catalog/pg_type.h"
#include "replication/logical.h"
#include "replication/origin.h"
#include "replication/output_plugin.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/varlena.h"

#include "detect/detect.h"

extern void _PG_output_plugin_init(OutputPluginCallbacks *cb);

typedef struct DecoderState
{
	MemoryContext row_context;	/* reset after each row */
	Oid		   *relids;			/* NULL: every relation */
	int			nrelids;
	bool		inserts;
	bool		updates;
	RepOriginId *skip_origins;
	int			nskip;

	/* per transaction */
	bool		began;
	Oid		   *described;		/* relations described in this xact */
	int			ndescribed;
	int			maxdescribed;
} DecoderState;

static void dec_startup(LogicalDecodingContext *ctx, OutputPluginOptions *opt,
						bool is_init);
static void dec_shutdown(LogicalDecodingContext *ctx);
static void dec_begin(LogicalDecodingContext *ctx, ReorderBufferTXN *txn);
static void dec_commit(LogicalDecodingContext *ctx, ReorderBufferTXN *txn,
					   XLogRecPtr commit_lsn);
static void dec_change(LogicalDecodingContext *ctx, ReorderBufferTXN *txn,
					   Relation relation, ReorderBufferChange *change);
static bool dec_filter_origin(LogicalDecodingContext *ctx, RepOriginId origin_id);

void
_PG_output_plugin_init(OutputPluginCallbacks *cb)
{
	cb->startup_cb = dec_startup;
	cb->begin_cb = dec_begin;
	cb->change_cb = dec_change;
	cb->commit_cb = dec_commit;
	cb->filter_by_origin_cb = dec_filter_origin;
	cb->shutdown_cb = dec_shutdown;
}

/* Parses a comma-separated list of unsigned integers. */
static int
parse_id_list(const char *name, const char *value, uint32 **out, uint32 max)
{
	char	   *copy = pstrdup(value);
	List	   *items;
	ListCell   *lc;
	int			n = 0;

	if (!SplitIdentifierString(copy, ',', &items))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid value for option \"%s\": \"%s\"", name, value)));
	*out = palloc(sizeof(uint32) * Max(list_length(items), 1));
	foreach(lc, items)
	{
		char	   *s = (char *) lfirst(lc);
		char	   *end;
		unsigned long v;

		errno = 0;
		v = strtoul(s, &end, 10);
		if (*s == '\0' || *end != '\0' || errno != 0 || v > max)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid value for option \"%s\": \"%s\"", name, s)));
		(*out)[n++] = (uint32) v;
	}
	return n;
}

static void
dec_startup(LogicalDecodingContext *ctx, OutputPluginOptions *opt, bool is_init)
{
	DecoderState *st = palloc0(sizeof(DecoderState));
	ListCell   *lc;

	st->row_context = AllocSetContextCreate(ctx->context,
											"anomaly decoder row",
											ALLOCSET_DEFAULT_SIZES);
	st->inserts = true;
	st->updates = false;
	opt->output_type = OUTPUT_PLUGIN_BINARY_OUTPUT;
	opt->receive_rewrites = false;
	ctx->output_plugin_private = st;

	if (is_init)
		return;

	foreach(lc, ctx->output_plugin_options)
	{
		DefElem    *elem = (DefElem *) lfirst(lc);
		char	   *value = elem->arg ? strVal(elem->arg) : "";

		if (strcmp(elem->defname, "proto_version") == 0)
		{
			if (strcmp(value, "1") != 0)
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("anomaly decoding protocol version %s is not supported", value),
						 errhint("This server sends version %d.", DETECT_WIRE_VERSION)));
		}
		else if (strcmp(elem->defname, "relations") == 0)
		{
			uint32	   *ids;

			st->nrelids = parse_id_list("relations", value, &ids, PG_UINT32_MAX);
			st->relids = (Oid *) ids;
		}
		else if (strcmp(elem->defname, "operations") == 0)
		{
			char	   *copy = pstrdup(value);
			List	   *items;
			ListCell   *lc2;

			if (!SplitIdentifierString(copy, ',', &items) || items == NIL)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("invalid value for option \"operations\": \"%s\"", value)));
			st->inserts = st->updates = false;
			foreach(lc2, items)
			{
				char	   *op = (char *) lfirst(lc2);

				if (strcmp(op, "insert") == 0)
					st->inserts = true;
				else if (strcmp(op, "update") == 0)
					st->updates = true;
				else
					ereport(ERROR,
							(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							 errmsg("unknown operation \"%s\"", op),
							 errhint("Operations are \"insert\" and \"update\".")));
			}
		}
		else if (strcmp(elem->defname, "skip_origins") == 0)
		{
			uint32	   *ids;

			st->nskip = parse_id_list("skip_origins", value, &ids, PG_UINT16_MAX);
			st->skip_origins = palloc(sizeof(RepOriginId) * Max(st->nskip, 1));
			for (int i = 0; i < st->nskip; i++)
				st->skip_origins[i] = (RepOriginId) ids[i];
		}
		else
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("option \"%s\" is not known to the anomaly output plugin",
							elem->defname)));
	}
}

static void
dec_shutdown(LogicalDecodingContext *ctx)
{
	DecoderState *st = ctx->output_plugin_private;

	if (st)
		MemoryContextDelete(st->row_context);
}

/* Changes of the listed origins are not even queued. */
static bool
dec_filter_origin(LogicalDecodingContext *ctx, RepOriginId origin_id)
{
	DecoderState *st = ctx->output_plugin_private;

	for (int i = 0; i < st->nskip; i++)
		if (st->skip_origins[i] == origin_id)
			return true;
	return false;
}

/* Nothing is sent until the transaction has a row to send. */
static void
dec_begin(LogicalDecodingContext *ctx, ReorderBufferTXN *txn)
{
	DecoderState *st = ctx->output_plugin_private;

	st->began = false;
	st->ndescribed = 0;
}

/* Sends the begin message of txn. */
static void
send_begin(LogicalDecodingContext *ctx, ReorderBufferTXN *txn)
{
	OutputPluginPrepareWrite(ctx, false);
	dw_put_u8(ctx->out, DETECT_WIRE_VERSION);
	dw_put_u8(ctx->out, DW_BEGIN);
	dw_put_u64(ctx->out, txn->final_lsn);
	dw_put_u64(ctx->out, txn->end_lsn);
	dw_put_u64(ctx->out, (uint64) txn->xact_time.commit_time);
	dw_put_u32(ctx->out, txn->xid);
	OutputPluginWrite(ctx, false);
}

static void
dec_commit(LogicalDecodingContext *ctx, ReorderBufferTXN *txn,
		   XLogRecPtr commit_lsn)
{
	DecoderState *st = ctx->output_plugin_private;

	if (!st->began)
		return;
	OutputPluginPrepareWrite(ctx, true);
	dw_put_u8(ctx->out, DETECT_WIRE_VERSION);
	dw_put_u8(ctx->out, DW_COMMIT);
	dw_put_u64(ctx->out, commit_lsn);
	OutputPluginWrite(ctx, true);
	st->began = false;
}

/* Sends the description of relation as this transaction sees it. */
static void
send_relation(LogicalDecodingContext *ctx, Relation relation)
{
	TupleDesc	desc = RelationGetDescr(relation);

	OutputPluginPrepareWrite(ctx, false);
	dw_put_u8(ctx->out, DETECT_WIRE_VERSION);
	dw_put_u8(ctx->out, DW_RELATION);
	dw_put_u32(ctx->out, RelationGetRelid(relation));
	dw_put_u16(ctx->out, (uint16) desc->natts);
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		uint8		flags = 0;
		int			namelen = strlen(NameStr(att->attname));

		if (att->attisdropped)
			flags |= DW_ATTFLAG_DROPPED;
		if (att->attbyval)
			flags |= DW_ATTFLAG_BYVAL;
		dw_put_u8(ctx->out, flags);
		dw_put_u16(ctx->out, (uint16) att->attlen);
		dw_put_u8(ctx->out, (uint8) att->attalign);
		dw_put_u32(ctx->out, att->atttypid);
		dw_put_u32(ctx->out, (uint32) att->atttypmod);
		dw_put_u8(ctx->out, (uint8) namelen);
		appendBinaryStringInfo(ctx->out, NameStr(att->attname), namelen);
	}
	OutputPluginWrite(ctx, false);
}

/* True when rows of relid are sent. */
static bool
wanted_relation(DecoderState *st, Oid relid)
{
	if (st->relids == NULL)
		return true;
	for (int i = 0; i < st->nrelids; i++)
		if (st->relids[i] == relid)
			return true;
	return false;
}

static void
dec_change(LogicalDecodingContext *ctx, ReorderBufferTXN *txn,
		   Relation relation, ReorderBufferChange *change)
{
	DecoderState *st = ctx->output_plugin_private;
	Oid			relid = RelationGetRelid(relation);
	TupleDesc	desc;
	HeapTuple	tuple;
	Datum	   *values;
	bool	   *isnull;
	uint8	   *status;
	char		kind;
	bool		described = false;
	MemoryContext old;

	switch (change->action)
	{
		case REORDER_BUFFER_CHANGE_INSERT:
			if (!st->inserts)
				return;
			kind = DW_INSERT;
			break;
		case REORDER_BUFFER_CHANGE_UPDATE:
			if (!st->updates)
				return;
			kind = DW_UPDATE;
			break;
		default:
			return;
	}
	if (!wanted_relation(st, relid) || change->data.tp.newtuple == NULL)
		return;

	if (!st->began)
	{
		send_begin(ctx, txn);
		st->began = true;
	}
	for (int i = 0; i < st->ndescribed; i++)
		if (st->described[i] == relid)
			described = true;
	if (!described)
	{
		send_relation(ctx, relation);
		if (st->ndescribed == st->maxdescribed)
		{
			st->maxdescribed = Max(4, st->maxdescribed * 2);
			st->described = st->described == NULL ?
				MemoryContextAlloc(ctx->context, sizeof(Oid) * st->maxdescribed) :
				repalloc(st->described, sizeof(Oid) * st->maxdescribed);
		}
		st->described[st->ndescribed++] = relid;
	}

	old = MemoryContextSwitchTo(st->row_context);
	desc = RelationGetDescr(relation);
	tuple = &change->data.tp.newtuple->tuple;
	values = palloc(sizeof(Datum) * Max(desc->natts, 1));
	isnull = palloc(sizeof(bool) * Max(desc->natts, 1));
	status = palloc(Max(desc->natts, 1));
	heap_deform_tuple(tuple, desc, values, isnull);

	OutputPluginPrepareWrite(ctx, true);
	dw_put_u8(ctx->out, DETECT_WIRE_VERSION);
	dw_put_u8(ctx->out, (uint8) kind);
	dw_put_u32(ctx->out, relid);
	dw_put_u16(ctx->out, (uint16) desc->natts);
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (isnull[i] || att->attisdropped)
			status[i] = DW_ATT_NULL;
		else if (att->attlen == -1 &&
				 VARATT_IS_EXTERNAL_ONDISK(DatumGetPointer(values[i])))
			status[i] = DW_ATT_UNCHANGED;
		else
			status[i] = DW_ATT_VALUE;
	}
	appendBinaryStringInfo(ctx->out, (char *) status, desc->natts);
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (status[i] != DW_ATT_VALUE)
			continue;
		if (att->attlen > 0)
		{
			if (att->attbyval)
			{
				union
				{
					char		c;
					int16		s;
					int32		i;
					Datum		d;
				}			u;

				store_att_byval(&u, values[i], att->attlen);
				appendBinaryStringInfo(ctx->out, (char *) &u, att->attlen);
			}
			else
				appendBinaryStringInfo(ctx->out, DatumGetPointer(values[i]),
									   att->attlen);
		}
		else if (att->attlen == -1)
		{
			struct varlena *v = (struct varlena *) DatumGetPointer(values[i]);

			if (VARATT_IS_EXTERNAL(v) || VARATT_IS_COMPRESSED(v))
				v = detoast_attr(v);
			dw_put_u32(ctx->out, (uint32) VARSIZE_ANY_EXHDR(v));
			appendBinaryStringInfo(ctx->out, VARDATA_ANY(v), VARSIZE_ANY_EXHDR(v));
		}
		else
		{
			const char *s = DatumGetCString(values[i]);
			uint32		len = strlen(s);

			dw_put_u32(ctx->out, len);
			appendBinaryStringInfo(ctx->out, s, len);
		}
	}
	OutputPluginWrite(ctx, true);
	MemoryContextSwitchTo(old);
	MemoryContextReset(st->row_context);
}
