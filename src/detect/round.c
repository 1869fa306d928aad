/*
 * round.c
 *	  One round of detection: read a detector's slot, turn the new rows into
 *	  features as the detector's owner, score them with one Random Cut Forest
 *	  per partition key (score first, then learn), and write the scores, the
 *	  forests' journal and the progress, all in the caller's transaction.
 *	  The pieces are in reader.c, evaluate.c, forests.c and write.c; here
 *	  are the round itself, adopting a detector restored from a dump before
 *	  its round, and the hooks run after the round's commit or abort.
 *
 * Exactly once.  The detector's row holds last_commit_lsn, the commit LSN
 * of the last source transaction consumed; a round drops every decoded
 * transaction at or below it, and writes the new value with the scores.
 * The slot is moved (confirmed) only to a position that is committed in
 * the detector's row: by the worker right after its commit, and by
 * process() at the start of the next call.  After a crash the slot may be
 * behind the row; the rows it sends again are dropped by the LSN check.
 */
#include "postgres.h"

#include <float.h>
#include <math.h>

#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "access/xlog_internal.h"
#include "access/xlogutils.h"
#include "catalog/namespace.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "lib/ilist.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "replication/decode.h"
#include "replication/logical.h"
#include "replication/origin.h"
#include "replication/slot.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "common/hashfn.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/pg_lsn.h"
#include "utils/regproc.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/typcache.h"

#include "anomaly.h"
#include "detect/detect.h"
#include "detect/round_internal.h"

/* ---------------------------------------------------------------------
 * Restored detectors
 */

/*
 * Adopts a detector restored from a dump (its home is another cluster,
 * database or installation of the extension): a new slot here, named for
 * this database, with progress starting at it, since the stored LSNs are
 * another WAL's; the recorded source columns are matched again by name
 * (attribute numbers change through a dump); models, journal and counters
 * stay.  The note says so in detector_status.  While a pg_restore session
 * is connected to this database nothing is done: the source table's rows
 * may still be arriving, and they are not new rows (note_wait: the note
 * says so, a write in the caller's transaction).
 */
DetectAdoptResult
detect_adopt(int64 id, bool note_wait)
{
	DetectSys	su;
	char	   *home = detect_home();
	char	   *name;
	char		slot[NAMEDATALEN];
	Oid			t1[1] = {INT8OID};
	Datum		a1[1] = {Int64GetDatum(id)};
	bool		at_home;
	XLogRecPtr	start;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	detect_sys_enter(&su);
	/* Not read-only: an adoption earlier in this transaction must show. */
	detect_spi_exec("SELECT home, name FROM anomaly.detectors WHERE id OPERATOR(pg_catalog.=) $1",
					1, t1, a1, NULL, false, SPI_OK_SELECT);
	if (SPI_processed == 0)
	{
		detect_sys_leave(&su);
		SPI_finish();
		return ADOPT_MISSING;
	}
	at_home = strcmp(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1), home) == 0;
	name = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	if (at_home)
	{
		detect_sys_leave(&su);
		SPI_finish();
		return ADOPT_HOME;
	}

	detect_spi_exec("SELECT pid FROM pg_catalog.pg_stat_activity WHERE datid OPERATOR(pg_catalog.=) $1"
					" AND application_name OPERATOR(pg_catalog.=) 'pg_restore'"
					" AND pid OPERATOR(pg_catalog.<>) pg_catalog.pg_backend_pid()"
					" ORDER BY pid LIMIT 1",
					1, (Oid[]) {OIDOID}, (Datum[]) {ObjectIdGetDatum(MyDatabaseId)}, NULL,
					true, SPI_OK_SELECT);
	if (SPI_processed > 0)
	{
		if (note_wait)
			detect_spi_exec("UPDATE anomaly.detectors SET note = $2 WHERE id OPERATOR(pg_catalog.=) $1"
							" AND (note IS NULL OR note OPERATOR(pg_catalog.<>) $2)", 2, (Oid[]) {INT8OID, TEXTOID},
							(Datum[]) {Int64GetDatum(id),
							CStringGetTextDatum(psprintf("restored from a dump; waits for pg_restore (PID %s) to disconnect before it starts",
														 SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1)))},
							NULL, false, SPI_OK_UPDATE);
		detect_sys_leave(&su);
		SPI_finish();
		return ADOPT_WAIT;
	}
	if (TransactionIdIsValid(GetTopTransactionIdIfAny()))
		ereport(ERROR,
				(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
				 errmsg("detector \"%s\" was restored from a dump and needs a replication slot in this database", name),
				 errdetail("A logical replication slot cannot be created in a transaction that has already written."),
				 errhint("Call anomaly.process() in a transaction of its own.")));

	/* One adopter at a time; the first may have done it meanwhile. */
	(void) detect_lock(DETECT_LOCK_ADOPT, true);
	detect_spi_exec("SELECT home FROM anomaly.detectors WHERE id OPERATOR(pg_catalog.=) $1",
					1, t1, a1, NULL, false, SPI_OK_SELECT);
	if (SPI_processed == 0 ||
		strcmp(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1), home) == 0)
	{
		detect_sys_leave(&su);
		SPI_finish();
		return SPI_processed == 0 ? ADOPT_MISSING : ADOPT_HOME;
	}

	if (MyReplicationSlot != NULL)
		detect_release();
	detect_object_name(slot, sizeof(slot), MyDatabaseId, id);
	detect_drop_slot(slot, true);
	detect_create_slot(slot);
	(void) detect_origin(slot, true);
	start = detect_slot_confirmed(slot);

	{
		Oid			types[5] = {INT8OID, TEXTOID, NAMEOID, PG_LSNOID, INT8OID};
		Datum		args[5];

		args[0] = Int64GetDatum(id);
		args[1] = CStringGetTextDatum(home);
		args[2] = DirectFunctionCall1(namein, CStringGetDatum(slot));
		args[3] = LSNGetDatum(start);
		args[4] = Int64GetDatum(detect_new_token());
		detect_spi_exec("UPDATE anomaly.detectors d SET home = $2, slot_name = $3,"
						" progress_lsn = $4, last_commit_lsn = '0/0', caught_up_at = NULL,"
						" round_token = $5, error_count = 0,"
						/* a backfill's snapshot means nothing in another cluster */
						" backfill = CASE WHEN NOT (backfill OPERATOR(pg_catalog.->>) 'done')::pg_catalog.bool"
						"   THEN backfill OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_object('done', true,"
						"     'finished_at', pg_catalog.now(), 'interrupted', 'restored from a dump')"
						"   ELSE backfill END,"
						" source_name = COALESCE((SELECT pg_catalog.format('%I.%I', n.nspname, c.relname)"
						"   FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n"
						"     ON n.oid OPERATOR(pg_catalog.=) c.relnamespace"
						"   WHERE c.oid OPERATOR(pg_catalog.=) d.source::pg_catalog.oid), d.source_name),"
						" source_columns = COALESCE((SELECT pg_catalog.jsonb_agg(CASE"
						"     WHEN a.attnum IS NULL THEN pg_catalog.jsonb_build_array(0,"
						"       e OPERATOR(pg_catalog.->>) 1, (e OPERATOR(pg_catalog.->>) 2)::pg_catalog.int8)"
						"     WHEN (e OPERATOR(pg_catalog.->>) 2)::pg_catalog.int8 OPERATOR(pg_catalog.<) 16384"
						"       THEN pg_catalog.jsonb_build_array(a.attnum, e OPERATOR(pg_catalog.->>) 1,"
						"         (e OPERATOR(pg_catalog.->>) 2)::pg_catalog.int8)"
						"     ELSE pg_catalog.jsonb_build_array(a.attnum, e OPERATOR(pg_catalog.->>) 1,"
						"       a.atttypid::pg_catalog.int8) END ORDER BY x.ord)"
						"   FROM pg_catalog.jsonb_array_elements(d.source_columns) WITH ORDINALITY AS x(e, ord)"
						"   LEFT JOIN pg_catalog.pg_attribute a"
						"     ON a.attrelid OPERATOR(pg_catalog.=) d.source::pg_catalog.oid"
						"     AND a.attname::pg_catalog.text OPERATOR(pg_catalog.=) (e OPERATOR(pg_catalog.->>) 1)"
						"     AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped), '[]'),"
						" note = pg_catalog.concat('restored from a dump; adopted on ', pg_catalog.now(),"
						"   ' with a new replication slot starting at ', $4,"
						"   ': models and counters kept, rows committed before then are not scored')"
						" WHERE id OPERATOR(pg_catalog.=) $1", 5, types, args, NULL, false, SPI_OK_UPDATE);
	}
	detect_sys_leave(&su);
	SPI_finish();
	detect_forget(id);
	ereport(LOG,
			(errmsg("detector \"%s\" was restored from a dump: it now reads replication slot \"%s\" from %X/%X",
					name, slot, LSN_FORMAT_ARGS(start))));
	return ADOPT_DONE;
}

/* ---------------------------------------------------------------------
 * The round
 */

/* The part of a round after the row is locked and the source opened. */
static DetectRoundResult
run_round(DetectorCache *dc, DetectorDef *def, MemoryContext rcxt,
		  int max_rows, int64 *rows_out)
{
	Relation	rel;
	RoundData	rd;
	EvalState	es;
	RoundWrite	w;
	XLogRecPtr	end_lsn = InvalidXLogRecPtr;
	TimestampTz started = GetCurrentTimestamp();
	TimestampTz t_decoded;
	TimestampTz t_evaluated;
	bool		caught_up;
	int64		n;

	/*
	 * The source is checked before anything else, but not kept open while
	 * decoding: its cache entry must then be built from the catalog as of
	 * each decoded transaction, not as of now.
	 */
	rel = detect_open_source(def);
	table_close(rel, NoLock);

	/* Forests in memory must be those of the last committed round. */
	if (!dc->current || dc->token != def->round_token || dc->forests == NULL)
	{
		detect_cache_init(dc);
		detect_replay_journal(dc, def);
		dc->token = def->round_token;
		dc->current = true;
	}
	if (!detect_open_decoding(dc, def))
		return ROUND_BUSY;

	memset(&rd, 0, sizeof(rd));
	rd.cxt = rcxt;
	rd.skip_upto = def->last_commit_lsn;
	rd.cur_rel = -1;
	dc->current = false;		/* until this round's writes are done */
	caught_up = detect_decode_rows(dc, &rd, max_rows, &end_lsn);
	t_decoded = GetCurrentTimestamp();
	n = rd.rows;
	*rows_out = rd.rows + rd.skipped_rows;
	if (rd.skipped_rows > 0)
		ereport(LOG,
				(errmsg("detector \"%s\" skipped " INT64_FORMAT " rows of transactions it had already scored",
						def->name, rd.skipped_rows),
				 errdetail("The replication slot was behind the detector's progress, as after a crash.")));
	rel = table_open(def->source, NoLock);

	memset(&es, 0, sizeof(es));
	es.def = def;
	es.cxt = rcxt;
	if (n > 0)
	{
		TupleDesc	cur = RelationGetDescr(rel);
		Datum	   *values = palloc(sizeof(Datum) * Max(cur->natts, 1));
		bool	   *nulls = palloc(sizeof(bool) * Max(cur->natts, 1));
		char	  **errors;
		bool		any_error = false;

		if (n > INT_MAX / 2)
			elog(ERROR, "too many rows in one round");
		es.elem_type = rel->rd_rel->reltype;
		es.array_type = get_array_type(es.elem_type);
		if (!OidIsValid(es.array_type))
			elog(ERROR, "row type of %s has no array type", def->source_name);
		errors = palloc_extended(sizeof(char *) * n, MCXT_ALLOC_HUGE);

		es.rows = palloc_extended(sizeof(Datum) * n, MCXT_ALLOC_HUGE);
		for (int64 i = 0; i < n; i++)
		{
			es.rows[i] = detect_row_to_composite(def, &rd, i, cur, values, nulls, &errors[i]);
			any_error |= errors[i] != NULL;
		}
		es.res = palloc_extended(sizeof(RowResult) * n, MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
		detect_prepare_eval(&es, rel);
		detect_eval_range(&es, 0, (int) n);
		for (int64 i = 0; any_error && i < n; i++)
		{
			if (errors[i] == NULL)
				continue;
			if (es.res[i].ok)
				es.nfailed++;
			es.res[i].ok = false;
			es.res[i].error = errors[i];
			es.res[i].sqlstate = pstrdup("22P02");
			es.res[i].source_key = (Datum) 0;
		}
	}

	memset(&w, 0, sizeof(w));
	w.dc = dc;
	w.def = def;
	w.rd = &rd;
	w.es = &es;
	w.n = n;
	w.consumed = *rows_out;
	w.caught_up = caught_up;
	w.end_lsn = end_lsn;
	w.started = started;
	t_evaluated = GetCurrentTimestamp();
	detect_write_round_as_origin(&w);
	table_close(rel, NoLock);
	elog(DEBUG1, "detector \"%s\": round of " INT64_FORMAT " rows: decode %.1f ms, evaluate %.1f ms, score %.1f ms, write %.1f ms",
		 def->name, n, (double) (t_decoded - started) / 1000.0,
		 (double) (t_evaluated - t_decoded) / 1000.0,
		 (double) (w.scored - t_evaluated) / 1000.0,
		 (double) (GetCurrentTimestamp() - w.scored) / 1000.0);

	dc->current = true;
	dc->confirm_lsn = end_lsn;
	return caught_up ? ROUND_CAUGHT_UP : ROUND_MORE;
}

DetectRoundResult
detect_round(int64 id, int max_rows, bool keep_context, int64 *rows_out)
{
	MemoryContext outer = CurrentMemoryContext;
	MemoryContext rcxt;
	DetectSys	sc;
	DetectorDef def;
	bool		locked;
	DetectRoundResult result;

	*rows_out = 0;
	if (detect_adopt(id, true) == ADOPT_WAIT)
		return ROUND_CAUGHT_UP;
	if (max_rows <= 0)
		max_rows = detect_batch_rows;
	rcxt = AllocSetContextCreate(outer, "anomaly round", ALLOCSET_DEFAULT_SIZES);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	detect_sys_enter(&sc);
	MemoryContextSwitchTo(rcxt);

	if (!detect_read_def(id, true, &def, &locked))
		result = locked ? ROUND_BUSY : ROUND_STOP;
	else if (strcmp(def.state, "active") != 0)
		result = ROUND_STOP;
	else
	{
		DetectorCache *dc = detect_get_cache(id);

		detect_prepare_forest_plans();
		if (def.backfill)
			result = detect_backfill_round(dc, &def, rcxt, max_rows, rows_out);
		else
			result = run_round(dc, &def, rcxt, max_rows, rows_out);
		if (!keep_context)
			detect_release_decoding(dc);
	}

	detect_sys_leave(&sc);
	SPI_finish();
	MemoryContextSwitchTo(outer);
	MemoryContextDelete(rcxt);
	return result;
}

void
detect_after_commit(void)
{
	if (detect_slot_owner && detect_slot_owner->holds_slot)
	{
		detect_confirm_slot(detect_slot_owner->confirm_lsn);
		detect_slot_owner->confirm_lsn = InvalidXLogRecPtr;
	}
}

void
detect_after_abort(void)
{
	DetectorCache *dc;

	detect_release();
	for (dc = detect_caches; dc; dc = dc->next)
		dc->current = false;
}
