/*
 * window_agg.c
 *	  Windowed detectors: the rows of a detector with {"window": ...} are
 *	  grouped, per partition key, into tumbling, hopping or stagger windows
 *	  of their event time (its time_column, else the commit time), and each
 *	  window's aggregate features are scored once the watermark passes its
 *	  end.
 *
 * Windows.  A window is [s, s + window) for every s that is a multiple of
 * slide counted from 2000-01-01 00:00 UTC (date_bin's arithmetic, origin
 * PostgreSQL's epoch); slide = window makes them tumbling.  With
 * {"stagger": true} (KDA's WINDOWED BY STAGGER) a key's windows instead
 * start at its rows (see "Stagger windows" below).  The watermark
 * is the largest event time accepted minus allowed_lateness; a window is
 * closed, and scored, when its end is at or below the watermark.  A row is
 * late when a window it belongs to is already closed: it is not in any
 * window (a window's content never changes once scored), it is counted in
 * detector_windows.late_rows (detector_status.windows) and, with the
 * late_rows option, inserted into that table as the owner.
 *
 * Aggregates.  Features are aggregate expressions over the window's rows,
 * evaluated by PostgreSQL itself, so any aggregate works (count(*),
 * avg(price), max(price) - min(price), percentile_cont(...) WITHIN GROUP,
 * an owner's own aggregate).  The statement is the row detectors' one with
 * aggregates: SELECT (feature)::float8, ... FROM unnest($1) AS <table>, $1
 * the window's rows, in the order they were committed (and written within
 * a transaction).  That is what makes a window equal, to the bit, to the
 * same expressions over a date_bin GROUP BY of the same rows aggregated in
 * the same order (docs/detectors.md).  Incremental partial aggregates
 * would restrict the aggregates to a fixed set, each with its own
 * arithmetic; keeping the rows costs storage for the open windows only.
 *
 * Exactly once.  The partial state of the open windows is their rows:
 * anomaly.detector_window_rows holds each accepted row (its values as
 * text, by column number; for stagger windows, the window it is in) until
 * every window it belongs to is scored, and anomaly.detector_windows the
 * watermark.  Both are written in the round's
 * transaction, with the scores and the detector's last_commit_lsn: after a
 * crash, the rows of transactions already consumed are skipped as for a
 * row detector, and the others are buffered again from the same state.
 * Which rows are late, and which windows close, depend only on the rows in
 * commit order, never on how they were cut into rounds.
 *
 * Kept by column number, a row survives columns added to (or dropped from)
 * the source while its windows are open: a column it did not have is NULL,
 * as for a row detector; a column whose type changed (after alter_detector)
 * is read through its text, as evaluate.c converts rows.
 *
 * Security.  The values' text is made by their types' output functions
 * (C functions of the types, trusted) under fixed settings (DateStyle,
 * TimeZone, extra_float_digits...: detect_settings_pin_fixed), and turned back
 * into values by the input functions, under the same settings, in the
 * owner's context, where the aggregates run, with
 * SECURITY_RESTRICTED_OPERATION (sysctx.c).  The buffer is readable by
 * superusers only.
 */
#include "postgres.h"

#include <math.h>

#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "parser/parse_coerce.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/pg_lsn.h"
#include "utils/regproc.h"
#include "utils/rel.h"
#include "utils/timestamp.h"
#include "utils/typcache.h"

#include "detect/detect.h"
#include "detect/round_internal.h"
#include "detect/window_agg.h"

/* ---------------------------------------------------------------------
 * Options
 */

int64
detect_window_interval(const char *option, JsonbValue *v, bool zero_ok)
{
	char	   *text;
	Interval   *iv;
	int64		usecs;

	if (v->type != jbvString)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"%s\" must be an interval such as \"1 minute\"", option)));
	text = pnstrdup(v->val.string.val, v->val.string.len);
	iv = DatumGetIntervalP(DirectFunctionCall3(interval_in, CStringGetDatum(text),
											   ObjectIdGetDatum(InvalidOid),
											   Int32GetDatum(-1)));
	if (iv->month != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"%s\" cannot contain months or years", option),
				 errdetail("Windows are counted in fixed lengths of time, as date_bin() counts them.")));
	if (pg_mul_s64_overflow((int64) iv->day, USECS_PER_DAY, &usecs) ||
		pg_add_s64_overflow(usecs, iv->time, &usecs) ||
		usecs > (int64) 3650 * USECS_PER_DAY)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"%s\" is out of range", option),
				 errdetail("A window's intervals are at most 3650 days.")));
	if (usecs < 0 || (usecs == 0 && !zero_ok))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"%s\" must be a %s interval", option,
						zero_ok ? "non-negative" : "positive")));
	return usecs;
}

/*
 * The canonical text of an interval of usecs microseconds, HH:MM:SS[.ffffff]:
 * what interval_in reads back the same whatever IntervalStyle is.
 */
char *
detect_window_interval_text(int64 usecs)
{
	int64		secs = usecs / USECS_PER_SEC;
	int64		frac = usecs % USECS_PER_SEC;
	char	   *s = psprintf("%02d:%02d:%02d", (int) (secs / 3600),
							 (int) ((secs / 60) % 60), (int) (secs % 60));

	if (frac != 0)
		s = psprintf("%s.%06d", s, (int) frac);
	return s;
}

/*
 * Checks the late_rows table as the current user (the detector's owner):
 * the late rows are inserted into it as they are, column by column
 * (CREATE TABLE late (LIKE source) fits).  Returns its qualified name.
 */
char *
detect_window_check_late_rows(const char *name, Relation source)
{
	RangeVar   *rv = makeRangeVarFromNameList(stringToQualifiedNameList(name));
	Oid			relid = RangeVarGetRelid(rv, AccessShareLock, true);
	Oid			argtype = get_array_type(source->rd_rel->reltype);
	char	   *qualified;
	SPIPlanPtr	plan;

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("late_rows table \"%s\" does not exist", name),
				 errhint("Create it with the source's columns: CREATE TABLE ... (LIKE %s).",
						 RelationGetRelationName(source))));
	if (get_rel_relkind(relid) != RELKIND_RELATION)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("late_rows \"%s\" is not a table", name)));
	if (get_rel_persistence(relid) == RELPERSISTENCE_TEMP)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("late_rows \"%s\" is a temporary table", name),
				 errdetail("Late rows are written by other sessions.")));
	qualified = quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
										   get_rel_name(relid));
	/* Its columns take the source's, and the caller may insert: prepare it. */
	plan = detect_owner_spi_prepare(psprintf("INSERT INTO %s SELECT * FROM pg_catalog.unnest($1)",
											 qualified), 1, &argtype);
	if (pg_class_aclcheck(relid, GetUserId(), ACL_INSERT) != ACLCHECK_OK)
		aclcheck_error(ACLCHECK_NO_PRIV, OBJECT_TABLE, get_rel_name(relid));
	SPI_freeplan(plan);
	return qualified;
}

char *
detect_window_eval_sql(const char *relname, int nfeatures, char **features)
{
	StringInfoData sql;

	initStringInfo(&sql);
	appendStringInfoString(&sql, "SELECT ");
	for (int i = 0; i < nfeatures; i++)
		appendStringInfo(&sql, "%s(\n%s\n)::pg_catalog.float8", i > 0 ? ",\n" : "",
						 features[i]);
	appendStringInfo(&sql, "\nFROM pg_catalog.unnest($1) AS %s", quote_identifier(relname));
	return sql.data;
}

DetectorDef *
detect_window_row_def(DetectorDef *def)
{
	DetectorDef *rowdef = palloc(sizeof(DetectorDef));

	*rowdef = *def;
	rowdef->nfeatures = 0;
	rowdef->features = NULL;
	return rowdef;
}

/* The window options of a detector's options (JSON text). */
static void
read_spec(DetectorDef *def, DetectWindowSpec *ws)
{
	Jsonb	   *opts = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(def->window)));
	const char *names[5] = {"window", "slide", "allowed_lateness", "late_rows", "stagger"};

	memset(ws, 0, sizeof(*ws));
	for (int i = 0; i < 5; i++)
	{
		JsonbValue *v = getKeyJsonValueFromContainer(&opts->root, names[i],
													 strlen(names[i]), NULL);

		if (v == NULL || v->type == jbvNull)
			continue;
		if (i == 3)
		{
			if (v->type == jbvString)
				ws->late_rows = pnstrdup(v->val.string.val, v->val.string.len);
			continue;
		}
		if (i == 4)
		{
			ws->stagger = v->type == jbvBool && v->val.boolean;
			continue;
		}
		/* Checked again: the options are the owner's to write. */
		*(i == 0 ? &ws->size : i == 1 ? &ws->slide : &ws->lateness) =
			detect_window_interval(names[i], v, i == 2);
	}
	if (ws->size == 0)
		elog(ERROR, "detector \"%s\" has no window", def->name);
	if (ws->slide == 0 || ws->stagger)
		ws->slide = ws->size;
	if (ws->slide > ws->size || ws->size / ws->slide > DETECT_WINDOW_MAX_OVERLAP)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("detector \"%s\" has an invalid slide", def->name)));
}

/* The late_rows table of a windowed detector (qualified), or NULL. */
char *
detect_window_late_rows(DetectorDef *def)
{
	DetectWindowSpec ws;

	read_spec(def, &ws);
	return ws.late_rows;
}

/* ---------------------------------------------------------------------
 * Window arithmetic (microseconds since 2000-01-01 00:00 UTC)
 */

/* The largest multiple of step at or below t. */
static int64
floor_to(int64 t, int64 step)
{
	int64		r = t % step;

	return r < 0 ? t - r - step : t - r;
}

/* The end of the first window that holds t: it is late when that is closed. */
static int64
first_end(const DetectWindowSpec *ws, int64 t)
{
	return floor_to(t - ws->size, ws->slide) + ws->slide + ws->size;
}

/* ---------------------------------------------------------------------
 * State
 */

typedef struct WindowState
{
	bool		any;			/* a row was ever accepted */
	TimestampTz max_time;
	TimestampTz watermark;
	int64		next_seq;
	int64		buffered;
	int64		scored;
	int64		late;
	bool		exists;
	bool		stagger_set;	/* the rows' window_start are set... */
	int64		stagger_window; /* ...for stagger windows of this size */
	char	   *closed_with;	/* window options of the last round, or NULL */
} WindowState;

static void
load_state(int64 id, WindowState *st)
{
	Oid			t[1] = {INT8OID};
	Datum		a[1] = {Int64GetDatum(id)};
	bool		isnull;
	Datum		d;

	memset(st, 0, sizeof(*st));
	st->next_seq = 1;
	detect_spi_exec("SELECT max_event_time, watermark, next_seq, rows_buffered, stagger_window,"
					" closed_with"
					" FROM anomaly.detector_windows WHERE detector_id OPERATOR(pg_catalog.=) $1",
					1, t, a, NULL, false, SPI_OK_SELECT);
	if (SPI_processed == 0)
		return;
	st->exists = true;
	st->max_time = DatumGetTimestampTz(detect_spi_value(0, 1, &isnull));
	st->any = !isnull;
	st->watermark = DatumGetTimestampTz(detect_spi_value(0, 2, &isnull));
	st->next_seq = DatumGetInt64(detect_spi_value(0, 3, &isnull));
	st->buffered = DatumGetInt64(detect_spi_value(0, 4, &isnull));
	d = detect_spi_value(0, 5, &isnull);
	st->stagger_set = !isnull;
	if (!isnull)
	{
		Interval   *iv = DatumGetIntervalP(d);

		st->stagger_window = iv->day * USECS_PER_DAY + iv->time;
	}
	d = detect_spi_value(0, 6, &isnull);
	st->closed_with = isnull ? NULL : TextDatumGetCString(d);
}

static void
save_state(int64 id, const WindowState *st, int64 scored, int64 late)
{
	Oid			t[9] = {INT8OID, TIMESTAMPTZOID, TIMESTAMPTZOID, INT8OID, INT8OID,
	INT8OID, INT8OID, INTERVALOID, TEXTOID};
	Datum		a[9];
	char		nl[10] = "         ";
	Interval   *iv = palloc0(sizeof(Interval));

	a[0] = Int64GetDatum(id);
	a[1] = TimestampTzGetDatum(st->max_time);
	a[2] = TimestampTzGetDatum(st->watermark);
	if (!st->any)
		nl[1] = nl[2] = 'n';
	a[3] = Int64GetDatum(st->next_seq);
	a[4] = Int64GetDatum(st->buffered);
	a[5] = Int64GetDatum(scored);
	a[6] = Int64GetDatum(late);
	iv->day = (int32) (st->stagger_window / USECS_PER_DAY);
	iv->time = st->stagger_window % USECS_PER_DAY;
	a[7] = IntervalPGetDatum(iv);
	if (!st->stagger_set)
		nl[7] = 'n';
	a[8] = st->closed_with ? CStringGetTextDatum(st->closed_with) : (Datum) 0;
	if (!st->closed_with)
		nl[8] = 'n';
	detect_spi_exec("INSERT INTO anomaly.detector_windows AS w (detector_id, max_event_time, watermark,"
					" next_seq, rows_buffered, windows_scored, late_rows, last_late_at, stagger_window,"
					" closed_with)"
					" VALUES ($1, $2, $3, $4, $5, $6, $7,"
					"  CASE WHEN $7 OPERATOR(pg_catalog.>) 0 THEN pg_catalog.now() END, $8, $9)"
					" ON CONFLICT (detector_id) DO UPDATE SET max_event_time = $2, watermark = $3,"
					" next_seq = $4, rows_buffered = $5, stagger_window = $8, closed_with = $9,"
					" windows_scored = w.windows_scored OPERATOR(pg_catalog.+) $6,"
					" late_rows = w.late_rows OPERATOR(pg_catalog.+) $7,"
					" last_late_at = CASE WHEN $7 OPERATOR(pg_catalog.>) 0 THEN pg_catalog.now()"
					"   ELSE w.last_late_at END",
					9, t, a, nl, false, SPI_OK_INSERT);
}

/* ---------------------------------------------------------------------
 * Buffered rows
 */

typedef struct BufRow
{
	int64		seq;
	char	   *key;			/* NULL: the NULL key */
	TimestampTz t;
	XLogRecPtr	lsn;
	TimestampTz ctime;
	bool		ctime_null;
	Datum		data;			/* jsonb: the values' text by column number */
	bool		has_wstart;		/* stagger: the start of its window... */
	int64		wstart;
	bool		opens;			/* ...which it opened */
} BufRow;

/* One row in one window (closing windows). */
typedef struct Member
{
	int64		start;
	const BufRow *row;
} Member;

/*
 * A row's values as a JSON array of their text by column number (null for
 * NULL, dropped and missing columns), by the types' output functions.  The
 * caller pins the settings (detect_settings_pin_fixed): rows are written
 * and read back in different sessions, whose owners may change DateStyle,
 * extra_float_digits and the like in between.
 */
static Datum
row_values_json(Datum composite)
{
	HeapTupleHeader th = DatumGetHeapTupleHeader(composite);
	TupleDesc	desc = lookup_rowtype_tupdesc(HeapTupleHeaderGetTypeId(th),
											  HeapTupleHeaderGetTypMod(th));
	HeapTupleData tuple;
	Datum	   *values = palloc(sizeof(Datum) * Max(desc->natts, 1));
	bool	   *nulls = palloc(sizeof(bool) * Max(desc->natts, 1));
	StringInfoData buf;

	tuple.t_len = HeapTupleHeaderGetDatumLength(th);
	ItemPointerSetInvalid(&tuple.t_self);
	tuple.t_tableOid = InvalidOid;
	tuple.t_data = th;
	heap_deform_tuple(&tuple, desc, values, nulls);
	initStringInfo(&buf);
	appendStringInfoChar(&buf, '[');
	for (int a = 0; a < desc->natts; a++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, a);

		if (a > 0)
			appendStringInfoString(&buf, ", ");
		if (att->attisdropped || nulls[a])
			appendStringInfoString(&buf, "null");
		else
		{
			Oid			outfn;
			bool		varlena;

			getTypeOutputInfo(att->atttypid, &outfn, &varlena);
			escape_json(&buf, OidOutputFunctionCall(outfn, values[a]));
		}
	}
	appendStringInfoChar(&buf, ']');
	ReleaseTupleDesc(desc);
	return DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data));
}

/*
 * A buffered row as a value of the source's current row type: each column
 * through its type's input function (run by the caller as the owner, with
 * the settings pinned).
 */
static Datum
row_from_json(Datum data, TupleDesc desc, Datum *values, bool *nulls)
{
	Jsonb	   *j = DatumGetJsonbP(data);
	JsonbIterator *it = JsonbIteratorInit(&j->root);
	JsonbValue	v;
	JsonbIteratorToken tok;
	int			a = 0;

	for (int i = 0; i < desc->natts; i++)
		nulls[i] = true;
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok != WJB_ELEM)
			continue;
		if (a < desc->natts && v.type == jbvString &&
			!TupleDescAttr(desc, a)->attisdropped)
		{
			Form_pg_attribute att = TupleDescAttr(desc, a);
			Oid			infn;
			Oid			ioparam;

			getTypeInputInfo(att->atttypid, &infn, &ioparam);
			values[a] = OidInputFunctionCall(infn, pnstrdup(v.val.string.val, v.val.string.len),
											 ioparam, att->atttypmod);
			nulls[a] = false;
		}
		a++;
	}
	return HeapTupleGetDatum(heap_form_tuple(desc, values, nulls));
}

/* Inserts the round's accepted rows. */
static void
insert_rows(int64 id, BufRow *rows, int n)
{
	Datum	   *seqs,
			   *keys,
			   *times,
			   *lsns,
			   *ctimes,
			   *datas,
			   *wstarts,
			   *opens;
	bool	   *keynull,
			   *ctnull,
			   *wsnull;
	int			dims[1] = {n};
	int			lbs[1] = {1};
	Oid			t[9] = {INT8OID, INT8ARRAYOID, TEXTARRAYOID, TIMESTAMPTZARRAYOID,
		PG_LSNARRAYOID, TIMESTAMPTZARRAYOID, JSONBARRAYOID, TIMESTAMPTZARRAYOID,
	BOOLARRAYOID};
	Datum		a[9];

	if (n == 0)
		return;
	seqs = palloc(sizeof(Datum) * n);
	keys = palloc(sizeof(Datum) * n);
	times = palloc(sizeof(Datum) * n);
	lsns = palloc(sizeof(Datum) * n);
	ctimes = palloc(sizeof(Datum) * n);
	datas = palloc(sizeof(Datum) * n);
	keynull = palloc(sizeof(bool) * n);
	ctnull = palloc(sizeof(bool) * n);
	wstarts = palloc(sizeof(Datum) * n);
	opens = palloc(sizeof(Datum) * n);
	wsnull = palloc(sizeof(bool) * n);
	for (int i = 0; i < n; i++)
	{
		wsnull[i] = !rows[i].has_wstart;
		wstarts[i] = TimestampTzGetDatum(rows[i].wstart);
		opens[i] = BoolGetDatum(rows[i].opens);
		seqs[i] = Int64GetDatum(rows[i].seq);
		keynull[i] = rows[i].key == NULL;
		keys[i] = keynull[i] ? (Datum) 0 : CStringGetTextDatum(rows[i].key);
		times[i] = TimestampTzGetDatum(rows[i].t);
		lsns[i] = LSNGetDatum(rows[i].lsn);
		ctnull[i] = rows[i].ctime_null;
		ctimes[i] = TimestampTzGetDatum(rows[i].ctime);
		datas[i] = rows[i].data;
	}
	a[0] = Int64GetDatum(id);
	a[1] = PointerGetDatum(construct_array(seqs, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	a[2] = PointerGetDatum(construct_md_array(keys, keynull, 1, dims, lbs, TEXTOID, -1, false, TYPALIGN_INT));
	a[3] = PointerGetDatum(construct_array(times, n, TIMESTAMPTZOID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	a[4] = PointerGetDatum(construct_array(lsns, n, PG_LSNOID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	a[5] = PointerGetDatum(construct_md_array(ctimes, ctnull, 1, dims, lbs, TIMESTAMPTZOID, 8,
											  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	a[6] = PointerGetDatum(construct_array(datas, n, JSONBOID, -1, false, TYPALIGN_INT));
	a[7] = PointerGetDatum(construct_md_array(wstarts, wsnull, 1, dims, lbs, TIMESTAMPTZOID, 8,
											  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	a[8] = PointerGetDatum(construct_array(opens, n, BOOLOID, 1, true, TYPALIGN_CHAR));
	detect_spi_exec("INSERT INTO anomaly.detector_window_rows"
					" (detector_id, seq, partition_key, rowtime, commit_lsn, commit_time, row_data,"
					" window_start, window_opens)"
					" SELECT $1, u.* FROM ROWS FROM (pg_catalog.unnest($2), pg_catalog.unnest($3),"
					" pg_catalog.unnest($4), pg_catalog.unnest($5), pg_catalog.unnest($6),"
					" pg_catalog.unnest($7), pg_catalog.unnest($8), pg_catalog.unnest($9)) AS u",
					9, t, a, NULL, false, SPI_OK_INSERT);
}

/*
 * The buffered rows that plan selects (with arguments a, nl), by seq, for
 * the windows that close (seq, partition_key, rowtime, commit_lsn,
 * commit_time, row_data, and window_start when selected).  They are all held in memory, with a Member per
 * window a row is in (overlap of them): their size is bounded by
 * anomaly.window_memory_limit, read a batch at a time, so that a window
 * (or many closing at once) too large fails the round with an error that
 * says so instead of asking for gigabytes, or for more than an array holds
 * (a window's rows become one array).
 */
static BufRow *
read_rows(DetectorDef *def, SPIPlanPtr plan, Datum *a, const char *nl,
		  int64 overlap, int *n)
{
	Portal		portal;
	BufRow	   *rows;
	int64		max = 64;
	int64		count = 0;
	Size		bytes = 0;
	Size		limit = (Size) detect_window_memory_limit_mb * 1024 * 1024;

	portal = detect_spi_cursor_open(plan, a, nl, false);
	rows = palloc(sizeof(BufRow) * max);
	for (;;)
	{
		SPITupleTable *tt;
		uint64		got;

		SPI_cursor_fetch(portal, true, 256);
		got = SPI_processed;
		tt = SPI_tuptable;
		if (got == 0)
			break;
		for (uint64 r = 0; r < got; r++)
		{
			BufRow	   *b;
			bool		isnull;
			Datum		d;

			if (count >= max)
			{
				max *= 2;
				rows = repalloc_huge(rows, sizeof(BufRow) * max);
			}
			b = &rows[count++];
			b->seq = DatumGetInt64(SPI_getbinval(tt->vals[r], tt->tupdesc, 1, &isnull));
			d = SPI_getbinval(tt->vals[r], tt->tupdesc, 2, &isnull);
			b->key = isnull ? NULL : TextDatumGetCString(d);
			b->t = DatumGetTimestampTz(SPI_getbinval(tt->vals[r], tt->tupdesc, 3, &isnull));
			b->lsn = DatumGetLSN(SPI_getbinval(tt->vals[r], tt->tupdesc, 4, &isnull));
			if (isnull)
				b->lsn = InvalidXLogRecPtr;
			b->ctime = DatumGetTimestampTz(SPI_getbinval(tt->vals[r], tt->tupdesc, 5, &isnull));
			b->ctime_null = isnull;
			b->data = PointerGetDatum(DatumGetJsonbPCopy(SPI_getbinval(tt->vals[r], tt->tupdesc,
																	   6, &isnull)));
			b->has_wstart = false;
			b->opens = false;
			if (tt->tupdesc->natts >= 7)
			{
				d = SPI_getbinval(tt->vals[r], tt->tupdesc, 7, &isnull);
				b->has_wstart = !isnull;
				b->wstart = isnull ? 0 : DatumGetTimestampTz(d);
			}
			bytes += sizeof(BufRow) + sizeof(Member) * overlap +
				VARSIZE(DatumGetPointer(b->data)) + (b->key ? strlen(b->key) + 1 : 0);
			if (bytes > limit)
				ereport(ERROR,
						(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
						 errmsg("the windows of detector \"%s\" that close hold more rows than anomaly.window_memory_limit (%d MB)",
								def->name, detect_window_memory_limit_mb),
						 errdetail("A window's rows are held in memory, as one array, when it is scored."),
						 errhint("Use a shorter window or a larger slide, or ask a superuser to raise anomaly.window_memory_limit; drop_detector() and create_detector() start again without the buffered rows.")));
		}
		SPI_freetuptable(tt);
	}
	SPI_cursor_close(portal);
	*n = (int) count;
	return rows;
}

/* The buffered rows with lo <= rowtime < hi (lo_any: no lower bound). */
static BufRow *
read_rows_between(DetectorDef *def, bool lo_any, TimestampTz lo, TimestampTz hi,
				  int64 overlap, int *n)
{
	Oid			t[3] = {INT8OID, TIMESTAMPTZOID, TIMESTAMPTZOID};
	Datum		a[3] = {Int64GetDatum(def->id), TimestampTzGetDatum(lo), TimestampTzGetDatum(hi)};
	char		nl[4] = "   ";
	SPIPlanPtr	plan;
	BufRow	   *rows;

	if (lo_any)
		nl[1] = 'n';
	plan = detect_spi_prepare("SELECT seq, partition_key, rowtime, commit_lsn, commit_time, row_data"
							  " FROM anomaly.detector_window_rows WHERE detector_id OPERATOR(pg_catalog.=) $1"
							  " AND ($2 IS NULL OR rowtime OPERATOR(pg_catalog.>=) $2)"
							  " AND rowtime OPERATOR(pg_catalog.<) $3 ORDER BY seq",
							  3, t);
	rows = read_rows(def, plan, a, nl, overlap, n);
	SPI_freeplan(plan);
	return rows;
}

/* Deletes the rows every window of which is scored: rowtime < cut. */
static int64
delete_rows(int64 id, TimestampTz cut)
{
	Oid			t[2] = {INT8OID, TIMESTAMPTZOID};
	Datum		a[2] = {Int64GetDatum(id), TimestampTzGetDatum(cut)};

	detect_spi_exec("DELETE FROM anomaly.detector_window_rows WHERE detector_id OPERATOR(pg_catalog.=) $1"
					" AND rowtime OPERATOR(pg_catalog.<) $2", 2, t, a, NULL, false, SPI_OK_DELETE);
	return (int64) SPI_processed;
}

/* ---------------------------------------------------------------------
 * Closing windows
 */

static int
cmp_key(const char *a, const char *b)
{
	if (a == NULL)
		return b == NULL ? 0 : -1;
	if (b == NULL)
		return 1;
	return strcmp(a, b);
}

/* By window start, then partition key (NULL first), then arrival. */
static int
cmp_member(const void *x, const void *y)
{
	const Member *a = x;
	const Member *b = y;
	int			c;

	if (a->start != b->start)
		return a->start < b->start ? -1 : 1;
	c = cmp_key(a->row->key, b->row->key);
	if (c != 0)
		return c;
	return a->row->seq < b->row->seq ? -1 : a->row->seq > b->row->seq ? 1 : 0;
}

/* An evaluation of one window's features (eval_window_as_owner). */
typedef struct WindowEval
{
	DetectorDef *def;
	SPIPlanPtr	plan;
	Oid			rowtype;
	TupleDesc	desc;			/* the source's, now */
	Oid			elem_array;
	const Member *members;
	int			n;
	MemoryContext cxt;			/* where values go */
	double	   *values;
	bool	   *nulls;
	bool		has_null;
	const char *relname;
} WindowEval;

/* Prepares the aggregate statement as the owner. */
static void
prepare_window_as_owner(void *arg)
{
	WindowEval *we = (WindowEval *) arg;
	DetectorDef *def = we->def;

	we->plan = detect_owner_spi_prepare(detect_window_eval_sql(we->relname, def->nfeatures,
															   def->features),
										1, &we->elem_array);
}

/*
 * The window's rows back from their text, by the row type's input
 * functions, and its features: as the owner.
 */
static void
eval_window_as_owner(void *arg)
{
	WindowEval *we = (WindowEval *) arg;
	int			nf = we->def->nfeatures;
	Datum	   *rows = palloc(sizeof(Datum) * we->n);
	TupleDesc	desc = we->desc;
	Datum	   *values = palloc(sizeof(Datum) * Max(desc->natts, 1));
	bool	   *nulls = palloc(sizeof(bool) * Max(desc->natts, 1));
	Datum		arr;
	int			rc;
	int			nest;

	/* the conversion under the settings the rows were written with */
	nest = detect_settings_pin_fixed();
	for (int i = 0; i < we->n; i++)
		rows[i] = row_from_json(we->members[i].row->data, desc, values, nulls);
	AtEOXact_GUC(false, nest);
	arr = PointerGetDatum(construct_array(rows, we->n, we->rowtype, -1, false, TYPALIGN_DOUBLE));
	rc = detect_owner_spi_execute_plan(we->plan, &arr, NULL, false, 0);
	if (rc != SPI_OK_SELECT || SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_GROUPING_ERROR),
				 errmsg("the features of a windowed detector must give one row per window"),
				 errdetail("They gave " UINT64_FORMAT ".", SPI_processed)));
	we->has_null = false;
	for (int f = 0; f < nf; f++)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, f + 1, &isnull);

		we->nulls[f] = isnull;
		we->values[f] = isnull ? 0 : DatumGetFloat8(d);
		we->has_null |= isnull;
	}
	SPI_freetuptable(SPI_tuptable);
}

/* {"window_start": ..., "window_end": ..., "rows": n}: what identifies a window. */
static Datum
window_key(int64 start, int64 end, int n)
{
	char		b1[MAXDATELEN + 1];
	char		b2[MAXDATELEN + 1];
	int			utc = 0;

	JsonEncodeDateTime(b1, TimestampTzGetDatum(start), TIMESTAMPTZOID, &utc);
	JsonEncodeDateTime(b2, TimestampTzGetDatum(end), TIMESTAMPTZOID, &utc);
	return DirectFunctionCall1(jsonb_in,
							   CStringGetDatum(psprintf("{\"window_start\": \"%s\", \"window_end\": \"%s\", \"rows\": %d}",
														b1, b2, n)));
}

/* ---------------------------------------------------------------------
 * The round
 */

/* What the round hands to write.c: failed and filtered rows, then windows. */
typedef struct Out
{
	RoundData	rd;
	EvalState	es;
	int64		n;
	int64		max;
} Out;

static int64
out_add(Out *o)
{
	if (o->n >= o->max)
	{
		o->max = Max(16, o->max * 2);
		o->rd.row = repalloc_huge(o->rd.row, sizeof(RoundRow) * o->max);
		o->es.res = repalloc_huge(o->es.res, sizeof(RowResult) * o->max);
		o->es.rows = repalloc_huge(o->es.rows, sizeof(Datum) * o->max);
	}
	memset(&o->rd.row[o->n], 0, sizeof(RoundRow));
	memset(&o->es.res[o->n], 0, sizeof(RowResult));
	o->es.rows[o->n] = (Datum) 0;
	return o->n++;
}

/* Inserts the late rows into the late_rows table, as the owner. */
typedef struct LateCall
{
	const char *table;
	Oid			elem_type;
	Datum	   *rows;
	int			n;
} LateCall;

static void
late_as_owner(void *arg)
{
	LateCall   *c = (LateCall *) arg;
	Oid			argtype = get_array_type(c->elem_type);
	Datum		arr = PointerGetDatum(construct_array(c->rows, c->n, c->elem_type, -1,
													  false, TYPALIGN_DOUBLE));

	detect_owner_spi_exec(psprintf("INSERT INTO %s SELECT * FROM pg_catalog.unnest($1)", c->table),
						  1, &argtype, &arr, NULL, false, SPI_OK_INSERT);
}

/*
 * Scores the closing windows whose members are m (nm of them, any order):
 * each window's rows, in arrival order, are aggregated as the owner and
 * the window added to o as a point; *nwindows counts the windows scored.
 */
static void
score_windows(DetectorDef *def, const DetectWindowSpec *ws, Member *m, int64 nm,
			  Out *o, int64 *nwindows)
{
	WindowEval	we;
	Relation	rel = table_open(def->source, AccessShareLock);
	Datum		empty_row = (Datum) 0;

	qsort(m, nm, sizeof(Member), cmp_member);

	memset(&we, 0, sizeof(we));
	we.def = def;
	we.rowtype = rel->rd_rel->reltype;
	we.desc = RelationGetDescr(rel);
	we.elem_array = get_array_type(we.rowtype);
	we.relname = RelationGetRelationName(rel);
	we.cxt = CurrentMemoryContext;
	if (nm > 0)
		detect_as_owner(def->owner, def->search_path, def->settings,
						prepare_window_as_owner, &we);
	for (int64 lo = 0, hi; lo < nm; lo = hi)
	{
		int64		j;
		RowResult  *rr;
		ErrorData  *err;
		XLogRecPtr	lsn = InvalidXLogRecPtr;
		TimestampTz ctime = 0;

		for (hi = lo + 1; hi < nm && m[hi].start == m[lo].start &&
			 cmp_key(m[hi].row->key, m[lo].row->key) == 0; hi++)
			;
		for (int64 k = lo; k < hi; k++)
			if (m[k].row->lsn > lsn)
			{
				lsn = m[k].row->lsn;
				ctime = m[k].row->ctime;
			}
		j = out_add(o);
		rr = &o->es.res[j];
		o->rd.row[j].commit_lsn = lsn;
		o->rd.row[j].commit_time = ctime;
		o->rd.row[j].rel = -1;
		if (empty_row == (Datum) 0)
		{
			TupleDesc	desc = RelationGetDescr(rel);
			Datum	   *v = palloc0(sizeof(Datum) * Max(desc->natts, 1));
			bool	   *nl = palloc(sizeof(bool) * Max(desc->natts, 1));

			memset(nl, true, sizeof(bool) * Max(desc->natts, 1));
			empty_row = HeapTupleGetDatum(heap_form_tuple(desc, v, nl));
		}
		o->es.rows[j] = empty_row;
		rr->key = m[lo].row->key;
		rr->source_key = window_key(m[lo].start, m[lo].start + ws->size, (int) (hi - lo));
		rr->has_rowtime = true;
		rr->rowtime = m[lo].start + ws->size;
		rr->values = palloc(sizeof(double) * Max(def->nfeatures, 1));
		rr->nulls = palloc(sizeof(bool) * Max(def->nfeatures, 1));
		we.members = &m[lo];
		we.n = (int) (hi - lo);
		we.values = rr->values;
		we.nulls = rr->nulls;
		err = detect_try_as_owner(def->owner, def->search_path, def->settings,
								  eval_window_as_owner, &we,
								  CurrentMemoryContext);
		if (err)
		{
			/* What no window can cause stops the round, as for rows. */
			if (detect_error_is_permanent(err->sqlerrcode) &&
				ERRCODE_TO_CATEGORY(err->sqlerrcode) != ERRCODE_DATA_EXCEPTION &&
				err->sqlerrcode != ERRCODE_GROUPING_ERROR)
				ReThrowError(err);
			rr->ok = false;
			rr->error = pstrdup(err->message ? err->message : "unknown error");
			rr->sqlstate = pstrdup(unpack_sql_state(err->sqlerrcode));
			o->es.nfailed++;
			FreeErrorData(err);
			continue;
		}
		rr->ok = true;
		rr->has_null = we.has_null;
		(*nwindows)++;
	}
	table_close(rel, NoLock);
}

/* ---------------------------------------------------------------------
 * Stagger windows
 *
 * A key's stagger windows are [s, s + window) where s is the event time of
 * the first row of the key (in commit order) that was in no window of the
 * key.  Each buffered row carries the start of the window it joined
 * (detector_window_rows.window_start) and whether it opened it
 * (window_opens), written with the row in the round's transaction; so the
 * key's windows are its opening rows, and a round reads only the windows of
 * the keys of its new rows (stagger_load_keys), then the rows of the windows
 * that close (stagger_close), by index.  A closed window's opening row is
 * kept until the watermark is a window past its end: until then it is what
 * makes a row of that window late (a row before the end of its key's last
 * window, in no open window, is late, and once the watermark is a window
 * past that end every such row is late anyway), see stagger_delete.
 *
 * The rows' windows are found once more from the buffered rows, replayed in
 * seq order (stagger_replay: a row joins the window of its key that holds
 * it, else opens one), when the options they were found with changed:
 * detector_windows.stagger_window is the window size they hold, NULL when
 * none (stagger turned on by alter_detector, or a new window; turning
 * stagger off clears them).  That is what every round did before the
 * windows were stored, and it gives back the windows the rows opened, since
 * a window's first row comes before its other rows and windows are dropped
 * from the buffer oldest first; rows buffered under other options form the
 * windows they would have opened, as tumbling windows regroup rows after a
 * new slide.
 */

/* A partition key (or none) as a hash key. */
typedef struct StaggerKeyId
{
	bool		isnull;
	const char *str;
} StaggerKeyId;

typedef struct StaggerWindow
{
	int64		start;
	int64		n;				/* members, by seq (stagger_replay only) */
	int64		max;
	int64	   *seqs;
} StaggerWindow;

typedef struct StaggerKey
{
	StaggerKeyId id;
	int64		n;				/* windows */
	int64		max;
	StaggerWindow *w;
	struct StaggerKey *next;	/* every key */
} StaggerKey;

typedef struct StaggerKeys
{
	HTAB	   *hash;
	StaggerKey *first;
} StaggerKeys;

static uint32
stagger_key_hash(const void *key, Size keysize)
{
	const StaggerKeyId *k = key;

	if (k->isnull)
		return 0x2545f491;
	return hash_bytes((const unsigned char *) k->str, strlen(k->str));
}

static int
stagger_key_match(const void *a, const void *b, Size keysize)
{
	const StaggerKeyId *x = a;
	const StaggerKeyId *y = b;

	if (x->isnull || y->isnull)
		return (x->isnull && y->isnull) ? 0 : 1;
	return strcmp(x->str, y->str);
}

/* An empty set of keys, in the current memory context. */
static StaggerKeys *
stagger_keys_new(void)
{
	StaggerKeys *keys = palloc0(sizeof(StaggerKeys));
	HASHCTL		ctl;

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(StaggerKeyId);
	ctl.entrysize = sizeof(StaggerKey);
	ctl.hash = stagger_key_hash;
	ctl.match = stagger_key_match;
	ctl.hcxt = CurrentMemoryContext;
	keys->hash = hash_create("anomaly stagger windows", 64, &ctl,
							 HASH_ELEM | HASH_FUNCTION | HASH_COMPARE | HASH_CONTEXT);
	return keys;
}

/* The windows of key (NULL: the NULL key), made empty on first use. */
static StaggerKey *
stagger_key(StaggerKeys *keys, const char *key)
{
	StaggerKeyId id;
	StaggerKey *k;
	bool		found;

	id.isnull = key == NULL;
	id.str = key ? key : "";
	k = hash_search(keys->hash, &id, HASH_ENTER, &found);
	if (!found)
	{
		k->id.str = pstrdup(id.str);
		k->n = 0;
		k->max = 0;
		k->w = NULL;
		k->next = keys->first;
		keys->first = k;
	}
	return k;
}

/* The window of k that holds t: the latest that starts at or before it. */
static StaggerWindow *
stagger_find(StaggerKey *k, int64 t, int64 size)
{
	StaggerWindow *best = NULL;

	for (int i = 0; i < k->n; i++)
		if (k->w[i].start <= t && (best == NULL || k->w[i].start > best->start))
			best = &k->w[i];
	return best && t < best->start + size ? best : NULL;
}

/* Whether t is before the end of a window of k. */
static bool
stagger_before_end(StaggerKey *k, int64 t, int64 size)
{
	for (int i = 0; i < k->n; i++)
		if (t < k->w[i].start + size)
			return true;
	return false;
}

/*
 * arr (NULL at first), holding n elements of elem bytes in room for *max,
 * with room for one more: the stagger code's growing arrays.
 */
static void *
room_for_one(void *arr, int64 n, int64 *max, Size elem)
{
	if (n < *max)
		return arr;
	*max = Max(8, *max * 2);
	return arr ? repalloc_huge(arr, elem * *max) :
		palloc_extended(elem * *max, MCXT_ALLOC_HUGE);
}

static StaggerWindow *
stagger_open(StaggerKey *k, int64 start)
{
	StaggerWindow *w;

	k->w = room_for_one(k->w, k->n, &k->max, sizeof(StaggerWindow));
	w = &k->w[k->n++];
	w->start = start;
	w->n = 0;
	w->max = 0;
	w->seqs = NULL;
	return w;
}

static void
stagger_add(StaggerWindow *w, int64 seq)
{
	w->seqs = room_for_one(w->seqs, w->n, &w->max, sizeof(int64));
	w->seqs[w->n++] = seq;
}

static Datum
int8_array(int64 *v, int64 n)
{
	Datum	   *d = palloc_extended(sizeof(Datum) * Max(n, 1), MCXT_ALLOC_HUGE);

	for (int64 i = 0; i < n; i++)
		d[i] = Int64GetDatum(v[i]);
	return PointerGetDatum(construct_array(d, (int) n, INT8OID, 8, FLOAT8PASSBYVAL,
										   TYPALIGN_DOUBLE));
}

/* Rows written by one statement when the buffered rows' windows are found again. */
#define STAGGER_WRITE_BATCH 65536

/* Writes the windows found for n buffered rows: seqs, starts, opens. */
static void
stagger_write(DetectorDef *def, int64 *seqs, Datum *starts, Datum *opens, int n)
{
	Oid			t[4] = {INT8OID, INT8ARRAYOID, TIMESTAMPTZARRAYOID, BOOLARRAYOID};
	Datum		a[4];

	a[0] = Int64GetDatum(def->id);
	a[1] = int8_array(seqs, n);
	a[2] = PointerGetDatum(construct_array(starts, n, TIMESTAMPTZOID, 8, FLOAT8PASSBYVAL,
										   TYPALIGN_DOUBLE));
	a[3] = PointerGetDatum(construct_array(opens, n, BOOLOID, 1, true, TYPALIGN_CHAR));
	detect_spi_exec("UPDATE anomaly.detector_window_rows r SET window_start = u.s, window_opens = u.o"
					" FROM ROWS FROM (pg_catalog.unnest($2), pg_catalog.unnest($3), pg_catalog.unnest($4))"
					" AS u (q, s, o)"
					" WHERE r.detector_id OPERATOR(pg_catalog.=) $1 AND r.seq OPERATOR(pg_catalog.=) u.q",
					4, t, a, NULL, false, SPI_OK_UPDATE);
	if (SPI_processed != (uint64) n)
		elog(ERROR, "detector \"%s\": " UINT64_FORMAT " of %d buffered rows given their stagger window",
			 def->name, SPI_processed, n);
	pfree(DatumGetPointer(a[1]));
	pfree(DatumGetPointer(a[2]));
	pfree(DatumGetPointer(a[3]));
}

/*
 * The windows of all the buffered rows, replayed in seq order: a row joins
 * the window of its key that holds it, else opens one at its event time.
 * Rows buffered by a tumbling or hopping detector (alter_detector turned
 * stagger on) form stagger windows alike.  The rows are read a batch at a
 * time and only their seq is kept (each key's text once), about 16 bytes a
 * buffered row, counted against anomaly.window_memory_limit as the closing
 * windows' rows are, so that a buffer of hundreds of millions of rows fails
 * the round with an error that says so rather than asking for gigabytes.
 * Each row's window is then written into its window_start and window_opens,
 * a batch of rows at a time.
 */
static StaggerKeys *
stagger_replay(DetectorDef *def, int64 size)
{
	StaggerKeys *keys = stagger_keys_new();
	Oid			t[1] = {INT8OID};
	Datum		a[1] = {Int64GetDatum(def->id)};
	SPIPlanPtr	plan;
	Portal		portal;
	MemoryContext batch;
	Size		bytes = 0;
	Size		limit = (Size) detect_window_memory_limit_mb * 1024 * 1024;
	int64		nrows = 0;
	int64	   *seqs;
	Datum	   *starts;
	Datum	   *opens;
	int			n = 0;

	batch = AllocSetContextCreate(CurrentMemoryContext, "anomaly stagger batch",
								  ALLOCSET_DEFAULT_SIZES);
	plan = detect_spi_prepare("SELECT seq, partition_key, rowtime FROM anomaly.detector_window_rows"
							  " WHERE detector_id OPERATOR(pg_catalog.=) $1 ORDER BY seq",
							  1, t);
	portal = detect_spi_cursor_open(plan, a, NULL, false);
	for (;;)
	{
		SPITupleTable *tt;
		uint64		got;

		SPI_cursor_fetch(portal, true, 4096);
		got = SPI_processed;
		tt = SPI_tuptable;
		if (got == 0)
			break;
		for (uint64 r = 0; r < got; r++)
		{
			HeapTuple	tup = tt->vals[r];
			bool		isnull;
			int64		seq = DatumGetInt64(SPI_getbinval(tup, tt->tupdesc, 1, &isnull));
			Datum		key = SPI_getbinval(tup, tt->tupdesc, 2, &isnull);
			char	   *keystr = NULL;
			long		nkeys = hash_get_num_entries(keys->hash);
			StaggerKey *k;
			StaggerWindow *w;
			int64		rt;

			if (!isnull)
			{
				MemoryContext old = MemoryContextSwitchTo(batch);

				keystr = TextDatumGetCString(key);
				MemoryContextSwitchTo(old);
			}
			k = stagger_key(keys, keystr);
			rt = DatumGetTimestampTz(SPI_getbinval(tup, tt->tupdesc, 3, &isnull));
			w = stagger_find(k, rt, size);
			stagger_add(w ? w : stagger_open(k, rt), seq);
			nrows++;

			/* A seq array doubles as it grows: count two slots a row. */
			bytes += 2 * sizeof(int64);
			if (hash_get_num_entries(keys->hash) > nkeys)
				bytes += sizeof(StaggerKey) + 64 + (keystr ? strlen(keystr) + 1 : 0);
			if (bytes > limit)
				ereport(ERROR,
						(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
						 errmsg("the buffered rows of stagger detector \"%s\" need more memory than anomaly.window_memory_limit (%d MB)",
								def->name, detect_window_memory_limit_mb),
						 errdetail("The buffered rows' keys and times are replayed to find their stagger windows when the window options change."),
						 errhint("Use a shorter window, or ask a superuser to raise anomaly.window_memory_limit; drop_detector() and create_detector() start again without the buffered rows.")));
		}
		SPI_freetuptable(tt);
		MemoryContextReset(batch);
	}
	SPI_cursor_close(portal);
	SPI_freeplan(plan);
	MemoryContextDelete(batch);
	if (nrows == 0)
		return keys;

	/* Each row's window, into the buffer, a batch at a time. */
	seqs = palloc(sizeof(int64) * STAGGER_WRITE_BATCH);
	starts = palloc(sizeof(Datum) * STAGGER_WRITE_BATCH);
	opens = palloc(sizeof(Datum) * STAGGER_WRITE_BATCH);
	for (StaggerKey *k = keys->first; k; k = k->next)
		for (int i = 0; i < k->n; i++)
			for (int64 j = 0; j < k->w[i].n; j++)
			{
				seqs[n] = k->w[i].seqs[j];
				starts[n] = TimestampTzGetDatum(k->w[i].start);
				opens[n] = BoolGetDatum(j == 0);
				if (++n == STAGGER_WRITE_BATCH)
				{
					stagger_write(def, seqs, starts, opens, n);
					n = 0;
				}
			}
	if (n > 0)
		stagger_write(def, seqs, starts, opens, n);
	return keys;
}

/*
 * The stored windows of the keys in keys (made by the caller for the
 * round's rows): their opening rows' window_start, open or closed, as long
 * as their opening row is buffered.
 */
static void
stagger_load_keys(DetectorDef *def, StaggerKeys *keys)
{
	Datum	   *names;
	int			n = 0;
	bool		null_key = false;

	names = palloc(sizeof(Datum) * Max(hash_get_num_entries(keys->hash), 1));
	for (StaggerKey *k = keys->first; k; k = k->next)
	{
		if (k->id.isnull)
			null_key = true;
		else
			names[n++] = CStringGetTextDatum(k->id.str);
	}
	for (int pass = 0; pass < 2; pass++)
	{
		Oid			t[2] = {INT8OID, TEXTARRAYOID};
		Datum		a[2];

		if (pass == 0 && n == 0)
			continue;
		if (pass == 1 && !null_key)
			break;
		a[0] = Int64GetDatum(def->id);
		a[1] = pass == 0 ? PointerGetDatum(construct_array(names, n, TEXTOID, -1, false,
														   TYPALIGN_INT)) : (Datum) 0;
		detect_spi_exec(pass == 0 ?
						"SELECT partition_key, window_start FROM anomaly.detector_window_rows"
						" WHERE detector_id OPERATOR(pg_catalog.=) $1 AND window_opens"
						" AND partition_key OPERATOR(pg_catalog.=) ANY ($2)" :
						"SELECT partition_key, window_start FROM anomaly.detector_window_rows"
						" WHERE detector_id OPERATOR(pg_catalog.=) $1 AND window_opens"
						" AND partition_key IS NULL",
						pass == 0 ? 2 : 1, t, a, NULL, false, SPI_OK_SELECT);
		for (uint64 r = 0; r < SPI_processed; r++)
		{
			bool		isnull;
			Datum		key = detect_spi_value(r, 1, &isnull);
			StaggerKey *k = stagger_key(keys, isnull ? NULL : TextDatumGetCString(key));
			Datum		start = detect_spi_value(r, 2, &isnull);

			if (isnull)
				elog(ERROR, "detector \"%s\": a stagger window's opening row has no window_start",
					 def->name);
			stagger_open(k, DatumGetTimestampTz(start));
		}
	}
}

/*
 * Whether a row of key k at event time t is late, the watermark being
 * watermark (any: a row was accepted before); if not, the row joins the
 * window *win (opened for it if need be: *opened).  Late: in a window
 * already closed, or in none and before the end of one of the key's windows
 * (a key's windows do not overlap), or opening a window that would already
 * be closed.
 */
static bool
stagger_accept(StaggerKey *k, int64 t, int64 size, bool any, TimestampTz watermark,
			   StaggerWindow **win, bool *opened)
{
	StaggerWindow *w = stagger_find(k, t, size);

	if (any)
	{
		if (w != NULL ? w->start + size <= watermark :
			stagger_before_end(k, t, size) || t + size <= watermark)
			return false;
	}
	*opened = w == NULL;
	*win = w ? w : stagger_open(k, t);
	return true;
}

/*
 * Scores the stagger windows whose end passed from before (before_any:
 * there was one) to watermark: the buffered rows whose window_start is
 * in that range, a window per key and start.
 */
static void
stagger_close(DetectorDef *def, const DetectWindowSpec *ws,
			  bool before_any, TimestampTz before, TimestampTz watermark,
			  Out *o, int64 *nwindows)
{
	Oid			t[3] = {INT8OID, TIMESTAMPTZOID, TIMESTAMPTZOID};
	Datum		a[3];
	SPIPlanPtr	plan;
	BufRow	   *rows;
	int			nrows;
	Member	   *m;

	a[0] = Int64GetDatum(def->id);
	a[1] = TimestampTzGetDatum(before_any ? before - ws->size : DT_NOBEGIN);
	a[2] = TimestampTzGetDatum(watermark - ws->size);
	plan = detect_spi_prepare("SELECT seq, partition_key, rowtime, commit_lsn, commit_time, row_data,"
							  " window_start FROM anomaly.detector_window_rows"
							  " WHERE detector_id OPERATOR(pg_catalog.=) $1"
							  " AND window_opens OPERATOR(pg_catalog.=) ANY ('{false,true}')"
							  " AND window_start OPERATOR(pg_catalog.>) $2"
							  " AND window_start OPERATOR(pg_catalog.<=) $3 ORDER BY seq",
							  3, t);
	rows = read_rows(def, plan, a, NULL, 1, &nrows);
	SPI_freeplan(plan);
	if (nrows == 0)
		return;
	m = palloc_extended(sizeof(Member) * nrows, MCXT_ALLOC_HUGE);
	for (int r = 0; r < nrows; r++)
	{
		m[r].start = rows[r].wstart;
		m[r].row = &rows[r];
	}
	score_windows(def, ws, m, nrows, o, nwindows);
}

/*
 * Deletes the rows of closed stagger windows: all but the first (whose
 * event time is the window's start) once closed, that one too a window
 * later.  Returns the rows deleted.
 */
static int64
stagger_delete(int64 id, const DetectWindowSpec *ws, TimestampTz watermark)
{
	Oid			t[3] = {INT8OID, TIMESTAMPTZOID, BOOLOID};
	Datum		a[3];
	int64		n = 0;

	for (int first = 0; first < 2; first++)
	{
		a[0] = Int64GetDatum(id);
		a[1] = TimestampTzGetDatum(watermark - (first ? 2 : 1) * ws->size);
		a[2] = BoolGetDatum(first);
		detect_spi_exec("DELETE FROM anomaly.detector_window_rows WHERE detector_id OPERATOR(pg_catalog.=) $1"
						" AND window_opens OPERATOR(pg_catalog.=) $3"
						" AND window_start OPERATOR(pg_catalog.<=) $2",
						3, t, a, NULL, false, SPI_OK_DELETE);
		n += (int64) SPI_processed;
	}
	return n;
}

/*
 * Deletes the opening rows of the stagger windows already scored (found
 * with windows of size, ended at or before watermark): they are kept a
 * window longer only to tell late rows, and once the window options change
 * each would be grouped again as an unscored row and scored twice.
 * Returns the rows deleted.
 */
static int64
stagger_forget_scored(int64 id, int64 size, TimestampTz watermark)
{
	Oid			t[2] = {INT8OID, TIMESTAMPTZOID};
	Datum		a[2] = {Int64GetDatum(id), TimestampTzGetDatum(watermark - size)};

	detect_spi_exec("DELETE FROM anomaly.detector_window_rows WHERE detector_id OPERATOR(pg_catalog.=) $1"
					" AND window_opens AND window_start OPERATOR(pg_catalog.<=) $2",
					2, t, a, NULL, false, SPI_OK_DELETE);
	return (int64) SPI_processed;
}

/* Forgets the buffered rows' stagger windows (stagger turned off). */
static void
stagger_clear(int64 id)
{
	Oid			t[1] = {INT8OID};
	Datum		a[1] = {Int64GetDatum(id)};

	detect_spi_exec("UPDATE anomaly.detector_window_rows SET window_start = NULL, window_opens = false"
					" WHERE detector_id OPERATOR(pg_catalog.=) $1 AND window_start IS NOT NULL",
					1, t, a, NULL, false, SPI_OK_UPDATE);
}

void
detect_window_round(RoundWrite *w)
{
	DetectorDef *def = w->def;
	RoundData  *rd = w->rd;
	EvalState  *es = w->es;
	DetectWindowSpec ws;
	WindowState st;
	WindowState before;
	AttrNumber	time_attnum = InvalidAttrNumber;
	Oid			time_type = InvalidOid;
	BufRow	   *acc;
	int			nacc = 0;
	Datum	   *late;
	int			nlate = 0;
	int64		nwindows = 0;
	Out			o;
	StaggerKeys *keys = NULL;
	RoundWrite	w2;
	int			nest;
	char	   *spec;
	bool		regrouped;
	bool		from_start;

	/* No row: nothing moves the watermark. */
	if (w->n == 0)
	{
		detect_write_round_as_origin(w);
		return;
	}
	read_spec(def, &ws);
	load_state(def->id, &st);

	/*
	 * Window options other than the last round's (alter_detector): the
	 * buffered rows form other windows, and those that end before the last
	 * watermark would never be scored if windows were closed from there, so
	 * they are closed from the start.  A buffered tumbling or stagger row is
	 * in no scored window once the scored stagger windows' opening rows are
	 * dropped; a hopping row may have been in scored windows of the old
	 * options too.
	 */
	spec = psprintf("%s " INT64_FORMAT " " INT64_FORMAT,
					ws.stagger ? "stagger" : "window", ws.size, ws.slide);
	regrouped = st.closed_with != NULL && strcmp(st.closed_with, spec) != 0;
	if (st.stagger_set && st.any &&
		(!ws.stagger || st.stagger_window != ws.size))
		st.buffered -= stagger_forget_scored(def->id, st.stagger_window, st.watermark);
	st.closed_with = spec;
	before = st;
	from_start = !before.any || regrouped;
	if (ws.stagger && (!st.stagger_set || st.stagger_window != ws.size))
	{
		/* Found with other options, or never: found again. */
		keys = stagger_replay(def, ws.size);
		st.stagger_set = true;
		st.stagger_window = ws.size;
	}
	else if (ws.stagger)
	{
		/* The stored windows of the keys of the round's rows. */
		keys = stagger_keys_new();
		for (int64 i = 0; i < w->n; i++)
			if (es->res[i].ok && !es->res[i].filtered)
				stagger_key(keys, es->res[i].key);
		stagger_load_keys(def, keys);
	}
	else if (st.stagger_set)
	{
		stagger_clear(def->id);
		st.stagger_set = false;
		st.stagger_window = 0;
	}
	if (def->time_column)
	{
		time_attnum = get_attnum(def->source, def->time_column);
		if (time_attnum != InvalidAttrNumber)
			time_type = get_atttype(def->source, time_attnum);
		if (time_type != TIMESTAMPTZOID && time_type != TIMESTAMPOID)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("time column \"%s\" of detector \"%s\" is no longer a timestamp column of %s",
							def->time_column, def->name, def->source_name)));
	}

	memset(&o, 0, sizeof(o));
	o.rd = *rd;
	o.es = *es;
	o.es.def = def;
	o.es.nfailed = 0;
	o.max = 16;
	o.rd.row = palloc(sizeof(RoundRow) * o.max);
	o.es.res = palloc(sizeof(RowResult) * o.max);
	o.es.rows = palloc(sizeof(Datum) * o.max);
	acc = palloc_extended(sizeof(BufRow) * Max(w->n, 1), MCXT_ALLOC_HUGE);
	late = palloc_extended(sizeof(Datum) * Max(w->n, 1), MCXT_ALLOC_HUGE);

	/* Each row, in commit order: failed, filtered, late or accepted. */
	nest = detect_settings_pin_fixed();
	for (int64 i = 0; i < w->n; i++)
	{
		RowResult  *rr = &es->res[i];
		TimestampTz t;
		bool		tnull = false;

		if (rr->ok && !rr->filtered)
		{
			if (time_attnum == InvalidAttrNumber)
				t = rd->row[i].commit_time;
			else
			{
				Datum		d = GetAttributeByNum(DatumGetHeapTupleHeader(es->rows[i]),
												  time_attnum, &tnull);

				t = tnull ? 0 : time_type == TIMESTAMPOID ?
					(TimestampTz) DatumGetTimestamp(d) : DatumGetTimestampTz(d);
			}
			if (!tnull && (TIMESTAMP_NOT_FINITE(t) ||
						   t > END_TIMESTAMP - (int64) 7300 * USECS_PER_DAY ||
						   t < MIN_TIMESTAMP + (int64) 7300 * USECS_PER_DAY))
				tnull = true;
			if (tnull)
			{
				rr->ok = false;
				rr->error = psprintf("the event time (%s) is NULL or out of range: the row has no window",
									 def->time_column ? def->time_column : "commit time");
				rr->sqlstate = pstrdup("22004");
			}
		}
		if (!rr->ok || rr->filtered)
		{
			int64		j = out_add(&o);

			o.rd.row[j] = rd->row[i];
			o.es.res[j] = *rr;
			o.es.res[j].values = NULL;
			o.es.rows[j] = es->rows[i];
			if (!rr->ok)
				o.es.nfailed++;
			continue;
		}
		acc[nacc].has_wstart = false;
		acc[nacc].opens = false;
		if (ws.stagger)
		{
			StaggerWindow *win;
			bool		opened;

			if (!stagger_accept(stagger_key(keys, rr->key), t, ws.size, st.any,
								st.watermark, &win, &opened))
			{
				late[nlate++] = es->rows[i];
				continue;
			}
			acc[nacc].has_wstart = true;
			acc[nacc].wstart = win->start;
			acc[nacc].opens = opened;
		}
		else if (st.any && first_end(&ws, t) <= st.watermark)
		{
			late[nlate++] = es->rows[i];
			continue;
		}
		acc[nacc].seq = st.next_seq++;
		acc[nacc].key = rr->key;
		acc[nacc].t = t;
		acc[nacc].lsn = rd->row[i].commit_lsn;
		acc[nacc].ctime = rd->row[i].commit_time;
		acc[nacc].ctime_null = XLogRecPtrIsInvalid(rd->row[i].commit_lsn);
		acc[nacc].data = row_values_json(es->rows[i]);
		nacc++;

		/*
		 * The watermark follows the event times only as far as the commit
		 * times: whoever may insert into the source chooses a row's time
		 * column, and one row dated centuries ahead made every later row
		 * of every key late, never scored.  Such a row waits in its window
		 * until the commit times reach it.
		 */
		if (t > rd->row[i].commit_time)
			t = rd->row[i].commit_time;
		if (!st.any || t > st.max_time)
			st.max_time = t;
		st.any = true;
		st.watermark = st.max_time - ws.lateness;
	}
	AtEOXact_GUC(false, nest);
	insert_rows(def->id, acc, nacc);
	st.buffered += nacc;

	/* The windows whose end passed from before's watermark to st's. */
	if (ws.stagger)
	{
		if (st.any && (from_start || st.watermark > before.watermark))
		{
			stagger_close(def, &ws, !from_start, before.watermark, st.watermark,
						  &o, &nwindows);
			st.buffered -= stagger_delete(def->id, &ws, st.watermark);
		}
	}
	else if (st.any &&
			 (from_start || floor_to(st.watermark - ws.size, ws.slide) + ws.size > before.watermark))
	{
		int			nrows;
		int64		overlap = Min(ws.size / ws.slide + 1, DETECT_WINDOW_MAX_OVERLAP + 1);
		/* rows after the end of the last closing window are in open ones only */
		BufRow	   *rows = read_rows_between(def, from_start,
											 before.watermark - ws.size + 1,
											 floor_to(st.watermark - ws.size, ws.slide) + ws.size,
											 overlap, &nrows);
		Member	   *m = palloc_extended(sizeof(Member) * Max(nrows, 1) * overlap,
										MCXT_ALLOC_HUGE);
		int64		nm = 0;

		for (int r = 0; r < nrows; r++)
		{
			for (int64 s = floor_to(rows[r].t, ws.slide); s > rows[r].t - ws.size; s -= ws.slide)
			{
				int64		e = s + ws.size;

				if (e <= st.watermark && (from_start || e > before.watermark))
				{
					m[nm].start = s;
					m[nm].row = &rows[r];
					nm++;
				}
			}
		}
		score_windows(def, &ws, m, nm, &o, &nwindows);
		/* Rows all of whose windows are scored now. */
		st.buffered -= delete_rows(def->id, floor_to(st.watermark - ws.size, ws.slide) + ws.slide);
	}

	if (nlate > 0 && ws.late_rows)
	{
		LateCall	c;

		c.table = ws.late_rows;
		c.elem_type = es->elem_type;
		c.rows = late;
		c.n = nlate;
		detect_as_owner(def->owner, def->search_path, def->settings, late_as_owner, &c);
	}
	if (nacc > 0 || nlate > 0 || nwindows > 0 || o.n > 0 || !st.exists)
		save_state(def->id, &st, nwindows, nlate);
	if (nlate > 0)
		ereport(DEBUG1,
				(errmsg("detector \"%s\": %d late rows", def->name, nlate)));

	/* The closed windows are this round's points: scored, then written. */
	w2 = *w;
	w2.rd = &o.rd;
	w2.es = &o.es;
	w2.n = o.n;
	detect_score_and_write_round(&w2);
	es->nfailed = o.es.nfailed;
}
