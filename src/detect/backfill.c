/*
 * backfill.c
 *	  History (KDA's TRIM_HORIZON): a detector created with
 *	  {"start": "all"} first scores the rows already in its table, in
 *	  primary key order, a batch per round, then goes on with the rows its
 *	  slot decodes, without a gap or a duplicate at the seam.
 *
 * The seam.  create_detector creates the slot (from its consistent point C,
 * every transaction committing after C is decoded), then locks the source
 * in SHARE mode: that waits for every transaction writing it to end, and
 * none can start writing it until create_detector's transaction ends.
 * While it holds the lock it takes L, the WAL insert position, and S, a
 * snapshot.  Every transaction that wrote the source and committed at or
 * before L is seen by S; every one that commits after L is not (it could
 * only take its lock after ours).  So:
 *	 - history is the rows whose inserting transaction S sees, and
 *	 - the stream skips transactions committed at or below L, by the
 *	   exactly-once rule rounds already follow (last_commit_lsn = L).
 * The rows a later transaction inserted are read by the backfill too (it
 * reads the table as it is now) and skipped there by their xmin.
 *
 * Batches are rounds: the same evaluation, scoring and writes (scores,
 * destination, journal, the detector's row) in one transaction, with the
 * backfill's progress (rows scored, the last key read) in the detector's
 * row; the detector's stream waits until the backfill is done.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "access/transam.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/namespace.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "storage/lmgr.h"
#include "storage/proc.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/pg_lsn.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "detect/detect.h"
#include "detect/round_internal.h"

/*
 * Raises unless owner may lock table relid against writers as LOCK TABLE
 * ... IN SHARE MODE lets it (UPDATE, DELETE or TRUNCATE): the lock runs as
 * the superuser and lasts until the caller's transaction ends, so a role
 * that may only read the table must not hold its writers off with it.
 */
void
detect_backfill_check_lock(Oid relid, Oid owner)
{
	if (pg_class_aclmask(relid, owner, ACL_UPDATE | ACL_DELETE | ACL_TRUNCATE,
						 ACLMASK_ANY) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to lock table %s against writers",
						quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
												   get_rel_name(relid))),
				 errdetail("{\"start\": \"all\"} holds writers off the table until the transaction ends, "
						   "which needs UPDATE, DELETE or TRUNCATE on it, as LOCK TABLE ... IN SHARE MODE does."),
				 errhint("Use {\"start\": \"now\"}, or ask the table's owner to create the detector.")));
}

/*
 * Locks the source against writers, and returns the backfill's starting
 * state as JSON (the snapshot S and the position L above); *lsn gets L.
 * Called by create_detector right after it created the slot; owner is the
 * detector's (the caller), who must be allowed to take that lock.
 */
char *
detect_backfill_begin(Oid relid, Oid owner, XLogRecPtr *lsn)
{
	Snapshot	snap;
	StringInfoData buf;

	detect_backfill_check_lock(relid, owner);
	LockRelationOid(relid, ShareLock);
	if (get_rel_relkind(relid) == RELKIND_PARTITIONED_TABLE)
	{
		List	   *parts = find_all_inheritors(relid, ShareLock, NULL);
		ListCell   *lc;

		foreach(lc, parts)
			detect_backfill_check_lock(lfirst_oid(lc), owner);
	}
	*lsn = GetXLogInsertRecPtr();
	snap = GetLatestSnapshot();
	/*
	 * A subtransaction of a transaction running now may write the source
	 * later under an xid below xmax; with the subtransactions listed it is
	 * found, without them (overflowed) it could not be told apart.
	 */
	if (snap->suboverflowed)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot start a detector from the stored rows while a transaction with more than %d subtransactions is running",
						PGPROC_MAX_CACHED_SUBXIDS),
				 errhint("Try again when it has ended, or use {\"start\": \"now\"}.")));
	initStringInfo(&buf);
	appendStringInfo(&buf, "{\"lsn\": \"%X/%X\", \"xmin\": %u, \"xmax\": %u, \"xip\": [",
					 LSN_FORMAT_ARGS(*lsn), snap->xmin, snap->xmax);
	for (int i = 0; i < snap->xcnt; i++)
		appendStringInfo(&buf, "%s%u", i > 0 ? ", " : "", snap->xip[i]);
	for (int i = 0; i < snap->subxcnt; i++)
		appendStringInfo(&buf, "%s%u", i > 0 || snap->xcnt > 0 ? ", " : "", snap->subxip[i]);
	appendStringInfo(&buf, "], \"read\": 0, \"rows\": 0, \"after\": null, \"done\": false,"
					 " \"started_at\": \"%s\"}",
					 JsonEncodeDateTime(NULL, TimestampTzGetDatum(GetCurrentTimestamp()),
										TIMESTAMPTZOID, NULL));
	return buf.data;
}

/* The backfill's state, as stored. */
typedef struct Backfill
{
	TransactionId xmin;
	TransactionId xmax;
	TransactionId *xip;
	int			nxip;
	Datum		after;			/* jsonb: the last key read, or 0 */
} Backfill;

/* An integer member of the state. */
static uint32
state_uint(Jsonb *state, const char *key)
{
	JsonbValue	k;
	JsonbValue *v;

	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	v = findJsonbValueFromContainer(&state->root, JB_FOBJECT, &k);
	if (v == NULL || v->type != jbvNumeric)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("the backfill state of a detector has no \"%s\"", key)));
	return (uint32) DatumGetInt64(DirectFunctionCall1(numeric_int8,
													  NumericGetDatum(v->val.numeric)));
}

/* Parses the state written by detect_backfill_begin and the rounds. */
static void
read_state(const char *text, Backfill *b)
{
	Jsonb	   *state = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(text)));
	JsonbValue	k;
	JsonbValue *v;

	b->xmin = state_uint(state, "xmin");
	b->xmax = state_uint(state, "xmax");
	k.type = jbvString;
	k.val.string.val = "xip";
	k.val.string.len = 3;
	v = findJsonbValueFromContainer(&state->root, JB_FOBJECT, &k);
	b->nxip = 0;
	b->xip = NULL;
	if (v != NULL && v->type == jbvBinary)
	{
		JsonbIterator *it = JsonbIteratorInit(v->val.binary.data);
		JsonbValue	e;
		JsonbIteratorToken tok;
		int			max = 16;

		b->xip = palloc(sizeof(TransactionId) * max);
		while ((tok = JsonbIteratorNext(&it, &e, true)) != WJB_DONE)
		{
			if (tok != WJB_ELEM || e.type != jbvNumeric)
				continue;
			if (b->nxip == max)
			{
				max *= 2;
				b->xip = repalloc(b->xip, sizeof(TransactionId) * max);
			}
			b->xip[b->nxip++] = (TransactionId)
				DatumGetInt64(DirectFunctionCall1(numeric_int8, NumericGetDatum(e.val.numeric)));
		}
	}
	k.val.string.val = "after";
	k.val.string.len = 5;
	v = findJsonbValueFromContainer(&state->root, JB_FOBJECT, &k);
	b->after = (v == NULL || v->type == jbvNull) ? (Datum) 0 :
		JsonbPGetDatum(JsonbValueToJsonb(v));
}

/* Did the backfill's snapshot see transaction xid as committed? */
static bool
seen_by_snapshot(const Backfill *b, TransactionId xid)
{
	if (!TransactionIdIsNormal(xid))
		return true;			/* frozen, or bootstrap */
	if (TransactionIdPrecedes(xid, b->xmin))
		return true;
	if (!TransactionIdPrecedes(xid, b->xmax))
		return false;
	for (int i = 0; i < b->nxip; i++)
		if (TransactionIdEquals(xid, b->xip[i]))
			return false;
	return true;
}

/* The columns of read_sql's statement. */
enum
{
	READ_ROW = 1,				/* the whole row */
	READ_XMIN,
	READ_KEY					/* its primary key, as jsonb */
};

/* One batch read (read_as_owner). */
typedef struct ReadCall
{
	DetectorDef *def;
	const char *sql;
	Datum		after;
	int			limit;
	MemoryContext cxt;			/* where the rows go */
	Datum	   *rows;			/* composites */
	TransactionId *xmins;
	Datum	   *keys;			/* jsonb */
	int			n;
} ReadCall;

/*
 * Reads the next rows of the source as the owner (their privileges and
 * expressions are the owner's), copying them into c->cxt.  The last key
 * read is kept as JSON text and read back by the next round, in another
 * session: both under the fixed settings (settings.c), so that a float or
 * an interval key reads back as it was (not cut by one session's
 * extra_float_digits, or read in another IntervalStyle).
 */
static void
read_as_owner(void *arg)
{
	ReadCall   *c = (ReadCall *) arg;
	DetectArgs	a;
	MemoryContext old;
	int			nest;

	detect_args_init(&a);
	detect_arg(&a, JSONBOID, c->after, c->after == (Datum) 0);
	detect_arg(&a, INT4OID, Int32GetDatum(c->limit), false);
	nest = detect_settings_pin_fixed();
	detect_owner_spi_exec(c->sql, a.n, a.types, a.values, a.nulls, true, SPI_OK_SELECT);
	AtEOXact_GUC(false, nest);
	old = MemoryContextSwitchTo(c->cxt);
	c->n = (int) SPI_processed;
	c->rows = palloc(sizeof(Datum) * Max(c->n, 1));
	c->xmins = palloc(sizeof(TransactionId) * Max(c->n, 1));
	c->keys = palloc(sizeof(Datum) * Max(c->n, 1));
	for (int i = 0; i < c->n; i++)
	{
		HeapTuple	t = SPI_tuptable->vals[i];
		TupleDesc	td = SPI_tuptable->tupdesc;
		bool		isnull;

		c->rows[i] = PointerGetDatum(PG_DETOAST_DATUM_COPY(SPI_getbinval(t, td, READ_ROW, &isnull)));
		c->xmins[i] = DatumGetTransactionId(SPI_getbinval(t, td, READ_XMIN, &isnull));
		c->keys[i] = PointerGetDatum(PG_DETOAST_DATUM_COPY(SPI_getbinval(t, td, READ_KEY, &isnull)));
	}
	MemoryContextSwitchTo(old);
}

/*
 * The statement reading the next rows after key $1 (NULL: from the first),
 * at most $2: the whole row, its xmin and its key as jsonb, in key order.
 */
static char *
read_sql(DetectorDef *def)
{
	StringInfoData sql;
	StringInfoData cols;
	StringInfoData after;

	initStringInfo(&sql);
	initStringInfo(&cols);
	initStringInfo(&after);
	for (int i = 0; i < def->nkeys; i++)
	{
		const char *k = quote_identifier(def->key_columns[i]);
		AttrNumber	attnum = get_attnum(def->source, def->key_columns[i]);
		Oid			type = attnum == InvalidAttrNumber ? InvalidOid :
			get_atttype(def->source, attnum);

		if (!OidIsValid(type))
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("primary key column \"%s\" of %s is gone: detector \"%s\" cannot go on with its backfill",
							def->key_columns[i], def->source_name, def->name)));
		appendStringInfo(&cols, "%st.%s", i > 0 ? ", " : "", k);
		appendStringInfo(&after, "%s($1 OPERATOR(pg_catalog.->>) %s)::%s", i > 0 ? ", " : "",
						 quote_literal_cstr(def->key_columns[i]), format_type_be_qualified(type));
	}
	appendStringInfo(&sql, "SELECT t, t.xmin, pg_catalog.jsonb_build_object(");
	for (int i = 0; i < def->nkeys; i++)
		appendStringInfo(&sql, "%s%s, t.%s", i > 0 ? ", " : "",
						 quote_literal_cstr(def->key_columns[i]),
						 quote_identifier(def->key_columns[i]));
	appendStringInfo(&sql, ") FROM %s AS t WHERE $1 IS NULL OR ROW(%s) > ROW(%s)"
					 " ORDER BY %s LIMIT $2",
					 def->source_name, cols.data, after.data, cols.data);
	return sql.data;
}

/*
 * One round of the backfill of detector def: reads up to max_rows rows
 * after the last key read, scores those the snapshot saw, writes them as a
 * round does, and records the progress; when there is nothing left, marks
 * the backfill done (the next round reads the slot).
 */
DetectRoundResult
detect_backfill_round(DetectorCache *dc, DetectorDef *def, MemoryContext rcxt,
					  int max_rows, int64 *rows_out)
{
	Relation	rel;
	Backfill	b;
	ReadCall	c;
	RoundData	rd;
	EvalState	es;
	RoundWrite	w;
	int			n = 0;
	DetectArgs	a;

	rel = detect_open_source(def);
	if (def->nkeys == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("source table %s of detector \"%s\" has no primary key: its backfill cannot go on",
						def->source_name, def->name)));
	if (!dc->current || dc->token != def->round_token || dc->forests == NULL)
	{
		detect_cache_init(dc);
		detect_replay_journal(dc, def);
		dc->token = def->round_token;
		dc->current = true;
	}
	read_state(def->backfill, &b);

	memset(&c, 0, sizeof(c));
	c.def = def;
	c.sql = read_sql(def);
	c.after = b.after;
	c.limit = max_rows;
	c.cxt = rcxt;
	detect_as_owner(def->owner, def->search_path, def->settings, read_as_owner, &c);
	*rows_out = c.n;

	memset(&rd, 0, sizeof(rd));
	rd.cxt = rcxt;
	rd.cur_rel = -1;
	rd.row = palloc0(sizeof(RoundRow) * Max(c.n, 1));
	memset(&es, 0, sizeof(es));
	es.def = def;
	es.cxt = rcxt;
	es.elem_type = rel->rd_rel->reltype;
	es.array_type = get_array_type(es.elem_type);
	es.rows = palloc(sizeof(Datum) * Max(c.n, 1));
	for (int i = 0; i < c.n; i++)
	{
		/* Rows of later transactions come through the slot. */
		if (!seen_by_snapshot(&b, c.xmins[i]))
			continue;
		/* No commit LSN or time is known for them: NULL in their scores. */
		rd.row[n].commit_lsn = InvalidXLogRecPtr;
		rd.row[n].rel = -1;
		es.rows[n++] = c.rows[i];
	}
	rd.rows = n;
	if (n > 0)
	{
		es.res = palloc0(sizeof(RowResult) * n);
		detect_prepare_eval(&es, rel);
		detect_eval_range(&es, 0, n);
	}
	dc->current = false;		/* until this round's writes are done */

	memset(&w, 0, sizeof(w));
	w.dc = dc;
	w.def = def;
	w.rd = &rd;
	w.es = &es;
	w.n = n;
	w.consumed = c.n;
	w.caught_up = false;
	w.end_lsn = InvalidXLogRecPtr;
	w.started = GetCurrentTimestamp();
	w.seq = def->batch_seq + 1;
	detect_score_and_write_round(&w);
	table_close(rel, NoLock);

	/* The progress, in the round's transaction. */
	detect_args_init(&a);
	detect_arg(&a, INT8OID, Int64GetDatum(def->id), false);
	detect_arg(&a, INT8OID, Int64GetDatum(c.n), false);
	detect_arg(&a, INT8OID, Int64GetDatum(n), false);
	detect_arg(&a, JSONBOID, c.n > 0 ? c.keys[c.n - 1] : (Datum) 0, c.n == 0);
	detect_spi_exec("UPDATE anomaly.detectors SET backfill = backfill"
					" OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_object("
					"  'read', (backfill OPERATOR(pg_catalog.->>) 'read')::pg_catalog.int8 OPERATOR(pg_catalog.+) $2,"
					"  'rows', (backfill OPERATOR(pg_catalog.->>) 'rows')::pg_catalog.int8 OPERATOR(pg_catalog.+) $3)"
					" OPERATOR(pg_catalog.||) CASE WHEN $4 IS NULL"
					"  THEN pg_catalog.jsonb_build_object('done', true, 'finished_at', pg_catalog.now())"
					"  ELSE pg_catalog.jsonb_build_object('after', $4) END"
					" WHERE id OPERATOR(pg_catalog.=) $1", a.n, a.types, a.values, a.nulls, false,
					SPI_OK_UPDATE);
	dc->current = true;
	dc->confirm_lsn = InvalidXLogRecPtr;
	if (c.n == 0)
		ereport(LOG,
				(errmsg("detector \"%s\" scored the rows stored before it was created; it goes on with the new ones",
						def->name)));
	return ROUND_MORE;
}
