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
 *
 * Partitions.  A row of a partition whose ancestor (a partitioned table)
 * is in "relations" is sent as a row of that ancestor: its values mapped
 * to the ancestor's columns by name, under the ancestor's OID and relation
 * message, as publish_via_partition_root does for publications.  The
 * ancestors are those of the decoded transaction's catalog snapshot, so a
 * partition counts from the transaction that attached it and stops with
 * the one that detached it.
 */
#include "postgres.h"

#include "access/attmap.h"
#include "access/detoast.h"
#include "access/htup_details.h"
#include "access/tupmacs.h"
#include "catalog/partition.h"
#include "catalog/pg_type.h"
#include "replication/logical.h"
#include "replication/origin.h"
#include "replication/output_plugin.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/varlena.h"

#include "detect/detect.h"
#include "compat.h"

/* Found by name (dlsym) when a slot decodes with plugin anomaly: exported. */
extern PGDLLEXPORT void _PG_output_plugin_init(OutputPluginCallbacks *cb);

typedef struct DecoderState
{
	MemoryContext row_context;	/* reset after each row */
	Oid		   *relids;			/* NULL: every relation */
	int			nrelids;
	bool		inserts;
	bool		updates;
	RepOriginId *skip_origins;
	int			nskip;

	/*
	 * Set by our reader only (detect_decoder_resume): rows of the
	 * transaction committed at resume_lsn up to resume_rows are sent as
	 * 'P', without their values; rows after a split ('drop_rest') are not
	 * sent at all.
	 */
	XLogRecPtr	resume_lsn;
	int64		resume_rows;
	bool		drop_rest;

	/* per transaction */
	bool		began;
	int64		xact_rows;		/* rows of it sent so far, 'P' included */
	Oid		   *described;		/* relations described in this xact */
	int			ndescribed;
	int			maxdescribed;
} DecoderState;

/*
 * What a partition's rows are sent as: the partition's ancestors, and the
 * column map to the ancestor chosen last.  Entries live as long as the
 * backend and are rebuilt after a relcache invalidation of their relation
 * (ATTACH, DETACH and ALTER send one); decoding executes the invalidations
 * of the transactions it decodes, in WAL order.
 */
typedef struct PartitionEntry
{
	Oid			relid;			/* hash key */
	bool		valid;
	int			nancestors;
	Oid		   *ancestors;		/* nearest first */
	Oid			map_to;			/* ancestor the map is for, or InvalidOid */
	AttrMap    *map;			/* NULL: same layout */
} PartitionEntry;

static HTAB *partition_cache = NULL;

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
	st->xact_rows = 0;
	st->drop_rest = false;
}

/*
 * Our reader's request for the next transactions decoded: the first
 * `rows` rows of the one committed at lsn were consumed already, so they
 * come as 'P' (their values are neither detoasted nor copied).
 */
void
detect_decoder_resume(LogicalDecodingContext *ctx, XLogRecPtr lsn, int64 rows)
{
	DecoderState *st = ctx->output_plugin_private;

	st->resume_lsn = lsn;
	st->resume_rows = rows;
}

/* Our reader split the current transaction: its other rows are not sent. */
void
detect_decoder_drop_rest(LogicalDecodingContext *ctx)
{
	DecoderState *st = ctx->output_plugin_private;

	st->drop_rest = true;
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

/* Relcache invalidation: the entry (or every entry) is rebuilt when next used. */
static void
partition_cache_invalidate(Datum arg, Oid relid)
{
	HASH_SEQ_STATUS seq;
	PartitionEntry *e;

	if (partition_cache == NULL)
		return;
	if (OidIsValid(relid))
	{
		e = hash_search(partition_cache, &relid, HASH_FIND, NULL);
		if (e)
			e->valid = false;
		return;
	}
	hash_seq_init(&seq, partition_cache);
	while ((e = hash_seq_search(&seq)) != NULL)
		e->valid = false;
}

/* The cache entry of partition relid, with its ancestors current. */
static PartitionEntry *
partition_entry(Oid relid)
{
	PartitionEntry *e;
	bool		found;

	if (partition_cache == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(Oid);
		ctl.entrysize = sizeof(PartitionEntry);
		ctl.hcxt = CacheMemoryContext;
		partition_cache = hash_create("anomaly decoder partitions", 64, &ctl,
									  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
		CacheRegisterRelcacheCallback(partition_cache_invalidate, (Datum) 0);
	}
	e = hash_search(partition_cache, &relid, HASH_ENTER, &found);
	if (!found)
	{
		e->ancestors = NULL;
		e->map = NULL;
		e->valid = false;
	}
	if (!e->valid)
	{
		List	   *ancestors = get_partition_ancestors(relid);
		ListCell   *lc;
		int			n = 0;

		if (e->ancestors)
			pfree(e->ancestors);
		if (e->map)
			free_attrmap(e->map);
		e->map = NULL;
		e->map_to = InvalidOid;
		e->ancestors = MemoryContextAlloc(CacheMemoryContext,
										  sizeof(Oid) * Max(list_length(ancestors), 1));
		foreach(lc, ancestors)
			e->ancestors[n++] = lfirst_oid(lc);
		e->nancestors = n;
		list_free(ancestors);
		e->valid = true;
	}
	return e;
}

/*
 * The relation the rows of partition `relation` are sent as: its farthest
 * ancestor in the relations option, or InvalidOid.  *map gets the column
 * map from the partition to it (NULL when the layouts are the same).
 */
static Oid
partition_target(DecoderState *st, Relation relation, AttrMap **map)
{
	PartitionEntry *e;
	Oid			target = InvalidOid;

	*map = NULL;
	if (st->relids == NULL || !relation->rd_rel->relispartition)
		return InvalidOid;
	e = partition_entry(RelationGetRelid(relation));
	for (int i = 0; i < e->nancestors; i++)
		if (wanted_relation(st, e->ancestors[i]))
			target = e->ancestors[i];
	if (!OidIsValid(target))
		return InvalidOid;
	if (e->map_to != target)
	{
		Relation	ancestor = RelationIdGetRelation(target);
		MemoryContext old;

		if (!RelationIsValid(ancestor))
			elog(ERROR, "could not open relation with OID %u", target);
		if (e->map)
			free_attrmap(e->map);
		old = MemoryContextSwitchTo(CacheMemoryContext);
		e->map = compat_build_attrmap_by_name_if_req(RelationGetDescr(relation),
											  RelationGetDescr(ancestor));
		MemoryContextSwitchTo(old);
		RelationClose(ancestor);
		e->map_to = target;
	}
	*map = e->map;
	return target;
}

static void
dec_change(LogicalDecodingContext *ctx, ReorderBufferTXN *txn,
		   Relation relation, ReorderBufferChange *change)
{
	DecoderState *st = ctx->output_plugin_private;
	Oid			relid = RelationGetRelid(relation);
	Relation	target = relation;
	AttrMap    *map = NULL;
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
	if (change->data.tp.newtuple == NULL)
		return;
	if (!wanted_relation(st, relid))
	{
		Oid			ancestor = partition_target(st, relation, &map);

		if (!OidIsValid(ancestor))
			return;
		target = RelationIdGetRelation(ancestor);
		if (!RelationIsValid(target))
			elog(ERROR, "could not open relation with OID %u", ancestor);
		relid = ancestor;
	}

	if (st->drop_rest)
		goto done;
	if (!st->began)
	{
		send_begin(ctx, txn);
		st->began = true;
	}
	st->xact_rows++;
	if (txn->final_lsn == st->resume_lsn && st->xact_rows <= st->resume_rows)
	{
		OutputPluginPrepareWrite(ctx, true);
		dw_put_u8(ctx->out, DETECT_WIRE_VERSION);
		dw_put_u8(ctx->out, DW_PASSED);
		OutputPluginWrite(ctx, true);
		goto done;
	}
	for (int i = 0; i < st->ndescribed; i++)
		if (st->described[i] == relid)
			described = true;
	if (!described)
	{
		send_relation(ctx, target);
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
	heap_deform_tuple(tuple, desc, values, isnull);
	if (target != relation)
	{
		/* The partition's values, in the ancestor's columns. */
		TupleDesc	tdesc = RelationGetDescr(target);
		Datum	   *tvalues = palloc(sizeof(Datum) * Max(tdesc->natts, 1));
		bool	   *tisnull = palloc(sizeof(bool) * Max(tdesc->natts, 1));

		for (int i = 0; i < tdesc->natts; i++)
		{
			AttrNumber from = map ? map->attnums[i] : i + 1;

			tvalues[i] = (Datum) 0;
			tisnull[i] = true;
			if (from > 0 && from <= desc->natts && !TupleDescAttr(tdesc, i)->attisdropped)
			{
				tvalues[i] = values[from - 1];
				tisnull[i] = isnull[from - 1];
			}
		}
		desc = tdesc;
		values = tvalues;
		isnull = tisnull;
	}
	status = palloc(Max(desc->natts, 1));

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
				DwByvalImage u;

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
done:
	if (target != relation)
		RelationClose(target);
}
