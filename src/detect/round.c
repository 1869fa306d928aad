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
 * the detector's row: by the worker right after its commit, and for
 * process() by a callback once the caller's transaction commits.  After a crash the slot may be
 * behind the row; the rows it sends again are dropped by the LSN check.
 */
#include "postgres.h"

#include <float.h>
#include <math.h>

#include "access/htup_details.h"
#include "access/relation.h"
#include "access/table.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "access/xlog_internal.h"
#include "access/xlogutils.h"
#include "catalog/namespace.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_class.h"
#include "catalog/pg_inherits.h"
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
#include "storage/lmgr.h"
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
#include "detect/window_agg.h"

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
						" progress_lsn = $4, last_commit_lsn = '0/0', partial_commit_lsn = NULL,"
						" partial_rows = 0, caught_up_at = NULL,"
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
 * Locks that a non-superuser can hold
 *
 * A detector's owner (or whoever else may lock its tables) can hold a lock
 * on them for as long as it likes: LOCK TABLE in a transaction left open,
 * a long ALTER TABLE, a CREATE INDEX on the destination.  A round that
 * waited for it would hold the detector's row meanwhile (deadlocking the
 * owner's own alter_detector in that transaction), and a process() of
 * every detector would wait with it, the other owners' detectors unscored.
 * So the worker and process() of every detector take these locks only
 * when they are free, as autovacuum does: otherwise the round reads
 * nothing, writes only the detector's note, and a later round scores the
 * rows (they stay in the slot).  Only the named process(name) waits, as
 * its caller chose.
 */

/* The note's text while rounds are skipped: start, table, end. */
#define LOCKED_NOTE_START "rounds skipped since "
#define LOCKED_NOTE_END " is locked by another transaction"

/*
 * Locks relation relid and its indexes in mode if nobody holds a
 * conflicting lock (nor waits for one); false when one is taken.  A
 * relation gone counts as free: the round finds it gone and says so.
 */
static bool
lock_if_free(Oid relid, LOCKMODE mode)
{
	Relation	rel;
	List	   *indexes;
	ListCell   *lc;
	bool		ok = true;

	if (!ConditionalLockRelationOid(relid, mode))
		return false;
	rel = try_relation_open(relid, NoLock);
	if (rel == NULL)
		return true;
	indexes = RelationGetIndexList(rel);
	foreach(lc, indexes)
	{
		if (!ConditionalLockRelationOid(lfirst_oid(lc), mode))
		{
			ok = false;
			break;
		}
	}
	list_free(indexes);
	relation_close(rel, NoLock);
	return ok;
}

/* "its <what> schema.name" for a message. */
static char *
locked_table(const char *what, Oid relid, const char *fallback)
{
	char	   *rel = get_rel_name(relid);
	char	   *nsp = get_namespace_name(get_rel_namespace(relid));

	return psprintf("its %s %s", what,
					rel && nsp ? quote_qualified_identifier(nsp, rel) : fallback);
}

/* The table a qualified name (an option of the detector) names, or 0. */
static Oid
option_table(const char *name)
{
	List	   *names = stringToQualifiedNameList(name);

	if (list_length(names) < 2)
		return InvalidOid;
	return RangeVarGetRelid(makeRangeVarFromNameList(names), NoLock, true);
}

/*
 * The rows of the detector's enabled alert rules and of their destinations:
 * the scores' trigger inserts episodes and outbox rows that reference them
 * (FOR KEY SHARE), and their owner's alter_alert_rule, alter_destination or
 * drop_* hold them FOR UPDATE until that transaction ends.  Takes those
 * row locks now, skipping the rows held; returns NULL when it took them
 * all, else what is held.
 */
static char *
lock_alert_rows(DetectorDef *def)
{
	bool		isnull;
	int64		rules;
	int64		dests;

#define RULES_OF \
	"anomaly.alert_rules r WHERE r.detector OPERATOR(pg_catalog.=) $1 AND r.enabled"
#define DESTS_OF \
	"anomaly.destinations x WHERE x.name OPERATOR(pg_catalog.=) ANY (ARRAY(" \
	"SELECT pg_catalog.unnest(r.destinations) FROM " RULES_OF "))"
	detect_spi_exec("SELECT (SELECT pg_catalog.count(*) FROM " RULES_OF ")"
					" OPERATOR(pg_catalog.-) (SELECT pg_catalog.count(*) FROM"
					"   (SELECT FROM " RULES_OF " FOR KEY SHARE OF r SKIP LOCKED) k),"
					" (SELECT pg_catalog.count(*) FROM " DESTS_OF ")"
					" OPERATOR(pg_catalog.-) (SELECT pg_catalog.count(*) FROM"
					"   (SELECT FROM " DESTS_OF " FOR KEY SHARE OF x SKIP LOCKED) k)",
					1, (Oid[]) {TEXTOID}, (Datum[]) {CStringGetTextDatum(def->name)},
					NULL, false, SPI_OK_SELECT);
#undef RULES_OF
#undef DESTS_OF
	rules = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	dests = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	if (rules > 0)
		return pstrdup("one of its alert rules");
	if (dests > 0)
		return pstrdup("a destination of one of its alert rules");
	return NULL;
}

/*
 * Takes, if free, the locks a round needs that a non-superuser can hold:
 * the source table and its indexes (AccessShareLock; a backfill of a
 * partitioned source: its partitions and theirs too), the destination and
 * late_rows tables and their indexes (RowExclusiveLock), and the rows of
 * its alert rules and their destinations.  Returns NULL when it has them
 * all, else which is locked.
 */
static char *
lock_round_tables(DetectorDef *def)
{
	Oid			relid;

	if (!lock_if_free(def->source, AccessShareLock))
		return locked_table("source table", def->source, def->source_name);
	if (def->backfill && get_rel_relkind(def->source) == RELKIND_PARTITIONED_TABLE)
	{
		List	   *parts = find_all_inheritors(def->source, NoLock, NULL);
		ListCell   *lc;

		foreach(lc, parts)
			if (lfirst_oid(lc) != def->source && !lock_if_free(lfirst_oid(lc), AccessShareLock))
				return locked_table("source partition", lfirst_oid(lc), def->source_name);
	}
	if (def->destination &&
		OidIsValid(relid = option_table(def->destination)) &&
		!lock_if_free(relid, RowExclusiveLock))
		return locked_table("destination table", relid, def->destination);
	if (def->window)
	{
		char	   *late = detect_window_late_rows(def);

		if (late && OidIsValid(relid = option_table(late)) &&
			!lock_if_free(relid, RowExclusiveLock))
			return locked_table("late_rows table", relid, late);
	}
	return lock_alert_rows(def);
}

/*
 * Says in the detector's note that its rounds are skipped because what is
 * locked (the note it had is kept after it), and in the server's log; once
 * per episode, while the note does not say so already.  In the round's
 * transaction, whose row lock on the detector is held.
 */
static void
note_locked(DetectorDef *def, const char *what)
{
	if (def->note && strncmp(def->note, LOCKED_NOTE_START, strlen(LOCKED_NOTE_START)) == 0)
		return;
	detect_spi_exec("UPDATE anomaly.detectors SET note = pg_catalog.concat($2,"
					" pg_catalog.to_char(pg_catalog.timezone('UTC', pg_catalog.now()),"
					"   'YYYY-MM-DD HH24:MI:SS'), ' UTC: ', $3,"
					" CASE WHEN note IS NOT NULL THEN '; ' OPERATOR(pg_catalog.||) note END)"
					" WHERE id OPERATOR(pg_catalog.=) $1", 3,
					(Oid[]) {INT8OID, TEXTOID, TEXTOID},
					(Datum[]) {Int64GetDatum(def->id), CStringGetTextDatum(LOCKED_NOTE_START),
					CStringGetTextDatum(psprintf("%s" LOCKED_NOTE_END, what))},
					NULL, false, SPI_OK_UPDATE);
	ereport(LOG,
			(errmsg("detector \"%s\" skips its rounds: %s" LOCKED_NOTE_END,
					def->name, what),
			 errdetail("Its rows wait in its replication slot and are scored once the lock is released; "
					   "the other detectors go on.")));
}

/*
 * Takes the skipped rounds' text off the detector's note (keeping what
 * followed it), and logs that its rounds go on.
 */
static void
note_unlocked(DetectorDef *def)
{
	const char *end;
	const char *rest = NULL;

	if (def->note == NULL ||
		strncmp(def->note, LOCKED_NOTE_START, strlen(LOCKED_NOTE_START)) != 0)
		return;
	end = strstr(def->note, LOCKED_NOTE_END);
	if (end != NULL)
	{
		rest = end + strlen(LOCKED_NOTE_END);
		if (strncmp(rest, "; ", 2) == 0)
			rest += 2;
		if (*rest == '\0')
			rest = NULL;
	}
	detect_spi_exec("UPDATE anomaly.detectors SET note = $2 WHERE id OPERATOR(pg_catalog.=) $1", 2,
					(Oid[]) {INT8OID, TEXTOID},
					(Datum[]) {Int64GetDatum(def->id), rest ? CStringGetTextDatum(rest) : (Datum) 0},
					rest ? NULL : " n", false, SPI_OK_UPDATE);
	def->note = rest ? pstrdup(rest) : NULL;
	ereport(LOG,
			(errmsg("detector \"%s\" resumes its rounds: the lock that held them is released",
					def->name)));
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
	detect_progress_begin(def->id, def->owner, def->batch_seq, dc->ctx->reader->EndRecPtr);

	memset(&rd, 0, sizeof(rd));
	rd.cxt = rcxt;
	rd.skip_upto = def->last_commit_lsn;
	rd.resume_lsn = def->partial_lsn;
	rd.resume_rows = def->partial_rows;
	rd.cur_rel = -1;
	dc->current = false;		/* until this round's writes are done */
	caught_up = detect_decode_rows(dc, &rd, max_rows, &end_lsn);
	if (rd.split)
	{
		/*
		 * The slot may move only up to the split transaction's commit, so
		 * that it is sent again; the next round decodes afresh from there
		 * (the context has read past it).
		 */
		end_lsn = rd.split_lsn;
		dc->redecode = true;
	}
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
	memset(&w, 0, sizeof(w));
	w.seq = def->batch_seq + 1;
	/* windowed: rows are evaluated for their key and filter only */
	if (def->window)
		es.def = detect_window_row_def(def);
	if (n > 0)
	{
		TupleDesc	cur = RelationGetDescr(rel);
		Datum	   *values = palloc(sizeof(Datum) * Max(cur->natts, 1));
		bool	   *nulls = palloc(sizeof(bool) * Max(cur->natts, 1));
		char	  **errors;
		MemoryContext chunkcxt;
		bool		keep_rows = def->destination != NULL || def->time_column != NULL ||
			def->window;

		if (n > INT_MAX / 2)
			elog(ERROR, "too many rows in one round");
		es.elem_type = rel->rd_rel->reltype;
		es.array_type = get_array_type(es.elem_type);
		if (!OidIsValid(es.array_type))
			elog(ERROR, "row type of %s has no array type", def->source_name);
		errors = palloc_extended(sizeof(char *) * n, MCXT_ALLOC_HUGE);
		es.rows = palloc_extended(sizeof(Datum) * n, MCXT_ALLOC_HUGE);
		es.res = palloc_extended(sizeof(RowResult) * n, MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
		w.out = palloc_extended(sizeof(int64) * n, MCXT_ALLOC_HUGE);
		detect_prepare_eval(&es, rel);
		chunkcxt = AllocSetContextCreate(rcxt, "anomaly round chunk", ALLOCSET_DEFAULT_SIZES);

		/*
		 * Chunk by chunk: the rows as composites, their features evaluated,
		 * then scored.  The statement that evaluates a chunk holds all of
		 * its rows several times over (the array argument, the plan, the
		 * result), so a chunk bounds the memory a large transaction takes
		 * (a million rows at once took half a gigabyte), and the scored
		 * rows show in detector_status as the round goes.  A partition
		 * key's rows are scored in their order whatever the chunks, so the
		 * scores are those of one pass.
		 */
		for (int64 lo = 0; lo < n; lo += DETECT_CHUNK_ROWS)
		{
			int64		hi = Min(n, lo + DETECT_CHUNK_ROWS);
			bool		any_error = false;
			MemoryContext old;

			detect_progress_phase(DETECT_PHASE_EVALUATING);
			old = MemoryContextSwitchTo(chunkcxt);
			for (int64 i = lo; i < hi; i++)
			{
				es.rows[i] = detect_row_to_composite(def, &rd, i, cur, values, nulls, &errors[i]);
				if (errors[i] != NULL)
				{
					errors[i] = MemoryContextStrdup(rcxt, errors[i]);
					any_error = true;
				}
				/* The message is not read again; its memory serves the results. */
				pfree((void *) rd.row[i].data);
				rd.row[i].data = NULL;
			}
			MemoryContextSwitchTo(old);
			detect_eval_range(&es, (int) lo, (int) hi);

			/*
			 * The write phase reads the rows again for a destination (the
			 * source's columns) and a time column (ROWTIME): those rows
			 * outlive their chunk.
			 */
			if (keep_rows)
			{
				old = MemoryContextSwitchTo(rcxt);
				for (int64 i = lo; i < hi; i++)
					if (es.rows[i] != (Datum) 0)
						es.rows[i] = PointerGetDatum(PG_DETOAST_DATUM_COPY(es.rows[i]));
				MemoryContextSwitchTo(old);
			}
			for (int64 i = lo; any_error && i < hi; i++)
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
			MemoryContextReset(chunkcxt);

			/* A windowed detector scores its windows, not its rows. */
			if (def->window)
				continue;
			detect_progress_phase(DETECT_PHASE_SCORING);
			w.nout += detect_score_rows(dc, def, &es, lo, hi, w.seq, w.out + w.nout,
										&w.filtered, &w.jkeys, &w.jpoints, &w.npoints);
		}
		MemoryContextDelete(chunkcxt);
	}
	t_evaluated = GetCurrentTimestamp();
	detect_progress_scored(w.nout, false);
	detect_progress_phase(DETECT_PHASE_WRITING);

	w.dc = dc;
	w.def = def;
	w.rd = &rd;
	w.es = &es;
	w.n = n;
	/* Rows passed over to resume a transaction count: the round ends it. */
	w.consumed = *rows_out + rd.resumed_rows;
	w.caught_up = caught_up;
	w.end_lsn = end_lsn;
	w.started = started;
	if (def->window)
		detect_window_round(&w);
	else
		detect_write_round_as_origin(&w);
	table_close(rel, NoLock);
	elog(DEBUG1, "detector \"%s\": round of " INT64_FORMAT " rows: decode %.1f ms, evaluate and score %.1f ms, write %.1f ms",
		 def->name, n, (double) (t_decoded - started) / 1000.0,
		 (double) (t_evaluated - t_decoded) / 1000.0,
		 (double) (GetCurrentTimestamp() - t_evaluated) / 1000.0);

	dc->current = true;
	dc->confirm_lsn = end_lsn;
	detect_progress_finish(caught_up);
	return caught_up ? ROUND_CAUGHT_UP : ROUND_MORE;
}

DetectRoundResult
detect_round(int64 id, int max_rows, bool keep_context, int64 *rows_out,
			 char **why_locked)
{
	MemoryContext outer = CurrentMemoryContext;
	MemoryContext rcxt;
	DetectSys	sc;
	DetectorDef def;
	bool		locked;
	DetectRoundResult result;

	*rows_out = 0;
	if (why_locked)
		*why_locked = NULL;
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
	else if (why_locked != NULL &&
			 (*why_locked = lock_round_tables(&def)) != NULL)
	{
		note_locked(&def, *why_locked);
		*why_locked = MemoryContextStrdup(outer, *why_locked);
		result = ROUND_LOCKED;
	}
	else
	{
		DetectorCache *dc = detect_get_cache(id);

		/* Waiting: the source first, so that the note and log are right. */
		if (why_locked == NULL)
			LockRelationOid(def.source, AccessShareLock);
		note_unlocked(&def);
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
	detect_progress_end(true);
}

void
detect_after_abort(void)
{
	DetectorCache *dc;

	detect_release();
	detect_progress_end(false);
	for (dc = detect_caches; dc; dc = dc->next)
		dc->current = false;
}
