/*
 * round.c
 *	  One round of detection: read a detector's slot, turn the new rows into
 *	  features as the detector's owner, score them with one Random Cut Forest
 *	  per partition key (score first, then learn), and write the scores, the
 *	  forests' journal and the progress, all in the caller's transaction.
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
