/*
 * write.c
 *	  The writes of a round: score rows, the detector's destination table,
 *	  failures, and the detector's row with the round's progress.
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

const DetectDestColumn detect_dest_columns[DETECT_DEST_NCOLUMNS] = {
	{"detector", TEXTOID},
	{"partition_key", TEXTOID},
	{"source_key", JSONBOID},
	{"commit_lsn", PG_LSNOID},
	{"commit_time", TIMESTAMPTZOID},
	{"features", FLOAT8ARRAYOID},
	{"anomaly_score", FLOAT8OID},
	{"anomaly_grade", FLOAT8OID},
	{"is_anomaly", BOOLOID},
	{"expected", FLOAT8ARRAYOID},
	{"explanation", JSONBOID},
	{"scored_at", TIMESTAMPTZOID},
	{"rowtime", TIMESTAMPTZOID}
};

/* Indexes into detect_dest_columns. */
enum
{
	SC_DETECTOR,
	SC_PARTITION_KEY,
	SC_SOURCE_KEY,
	SC_COMMIT_LSN,
	SC_COMMIT_TIME,
	SC_FEATURES,
	SC_ANOMALY_SCORE,
	SC_ANOMALY_GRADE,
	SC_IS_ANOMALY,
	SC_EXPECTED,
	SC_EXPLANATION,
	SC_SCORED_AT,
	SC_ROWTIME
};

StaticAssertDecl(SC_ROWTIME + 1 == DETECT_DEST_NCOLUMNS,
				 "one value per destination column");

/* What the score rows of a round share. */
typedef struct ScoreSource
{
	DetectorDef *def;
	RoundData  *rd;
	EvalState  *es;
	Datum		detector;		/* text */
	TimestampTz scored_at;
	AttrNumber	time_attnum;	/* the source's time column, or 0 */
	Oid			time_type;
} ScoreSource;

/*
 * Finds the detector's time column in the source's row type (the rows'
 * composites are of it), which must still be a timestamp.
 */
static void
find_time_column(ScoreSource *ss)
{
	DetectorDef *def = ss->def;

	ss->time_attnum = InvalidAttrNumber;
	ss->time_type = InvalidOid;
	if (def->time_column == NULL)
		return;
	ss->time_attnum = get_attnum(def->source, def->time_column);
	if (ss->time_attnum != InvalidAttrNumber)
		ss->time_type = get_atttype(def->source, ss->time_attnum);
	if (ss->time_type != TIMESTAMPTZOID && ss->time_type != TIMESTAMPOID)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("time column \"%s\" of detector \"%s\" is no longer a timestamp column of %s",
						def->time_column, def->name, def->source_name),
				 errhint("alter_detector() with options '{\"time_column\": null}' uses commit times.")));
}

/*
 * The event time of row i (ROWTIME): its time column's value, a timestamp
 * without time zone taken as UTC so that it does not depend on the
 * session's TimeZone; without a time column, its commit time.
 */
static TimestampTz
row_time(const ScoreSource *ss, int64 i, bool *isnull)
{
	Datum		d;

	*isnull = false;
	if (ss->es->res[i].has_rowtime)
		return ss->es->res[i].rowtime;
	if (ss->time_attnum == InvalidAttrNumber)
	{
		*isnull = XLogRecPtrIsInvalid(ss->rd->row[i].commit_lsn);
		return ss->rd->row[i].commit_time;
	}
	d = GetAttributeByNum(DatumGetHeapTupleHeader(ss->es->rows[i]), ss->time_attnum,
						  isnull);
	if (*isnull)
		return 0;
	/* Both are microseconds since 2000-01-01; timestamp's have no zone. */
	return ss->time_type == TIMESTAMPOID ? (TimestampTz) DatumGetTimestamp(d) :
		DatumGetTimestampTz(d);
}

/* A float8[] of n values, NULL where nulls[i] (nulls may be NULL). */
static Datum
float8_array(const double *v, const bool *nulls, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));
	bool	   *dn = palloc(sizeof(bool) * Max(n, 1));
	int			dims[1] = {n};
	int			lbs[1] = {1};

	for (int i = 0; i < n; i++)
	{
		dn[i] = nulls ? nulls[i] : false;
		d[i] = Float8GetDatum(dn[i] ? 0 : v[i]);
	}
	return PointerGetDatum(construct_md_array(d, dn, 1, dims, lbs, FLOAT8OID,
											  sizeof(float8), FLOAT8PASSBYVAL,
											  TYPALIGN_DOUBLE));
}

/*
 * The value of score column c (detect_dest_columns) for row i of the round.
 * A row with a NULL feature has no score, grade nor expected values;
 * without grading, the grade, is_anomaly and expected are NULL.
 */
static Datum
score_value(const ScoreSource *ss, int64 i, int c, bool *isnull)
{
	RowResult  *rr = &ss->es->res[i];
	bool		graded = ss->def->grade && !rr->has_null;

	*isnull = false;
	switch (c)
	{
		case SC_DETECTOR:
			return ss->detector;
		case SC_PARTITION_KEY:
			*isnull = rr->key == NULL;
			return rr->key ? CStringGetTextDatum(rr->key) : (Datum) 0;
		case SC_SOURCE_KEY:
			*isnull = rr->source_key == (Datum) 0;
			return rr->source_key;
		case SC_COMMIT_LSN:
			/* Rows a backfill read were committed at no known point. */
			*isnull = XLogRecPtrIsInvalid(ss->rd->row[i].commit_lsn);
			return LSNGetDatum(ss->rd->row[i].commit_lsn);
		case SC_COMMIT_TIME:
			*isnull = XLogRecPtrIsInvalid(ss->rd->row[i].commit_lsn);
			return TimestampTzGetDatum(ss->rd->row[i].commit_time);
		case SC_FEATURES:
			return float8_array(rr->values, rr->nulls, ss->def->nfeatures);
		case SC_ANOMALY_SCORE:
			*isnull = rr->has_null;
			return Float8GetDatum(rr->score);
		case SC_ANOMALY_GRADE:
			*isnull = !graded;
			return Float8GetDatum(rr->grade);
		case SC_IS_ANOMALY:
			*isnull = !graded;
			return BoolGetDatum(rr->is_anomaly);
		case SC_EXPECTED:
			*isnull = !graded || rr->expected == NULL;
			return *isnull ? (Datum) 0 :
				float8_array(rr->expected, NULL, ss->def->nfeatures);
		case SC_EXPLANATION:
			*isnull = rr->explanation == NULL;
			return PointerGetDatum(rr->explanation);
		case SC_SCORED_AT:
			return TimestampTzGetDatum(ss->scored_at);
		case SC_ROWTIME:
			return TimestampTzGetDatum(row_time(ss, i, isnull));
	}
	elog(ERROR, "unknown score column %d", c);
	return (Datum) 0;
}

/*
 * Writes the score rows of a round into anomaly.scores with one bulk insert
 * (indexes and the alert rules' statement trigger included); rows[] are
 * indexes into the round's rows.
 */
static void
write_scores(const ScoreSource *ss, const int64 *rows, int n)
{
	RangeVar   *rv;
	Relation	rel;
	TupleDesc	desc;
	int		   *column;			/* per attribute: detect_dest_columns index */
	bool	   *given;
	DetectBulk *bulk;
	MemoryContext rowcxt;
	MemoryContext old;

	if (n == 0)
		return;
	rv = makeRangeVar("anomaly", "scores", -1);
	rel = table_openrv(rv, RowExclusiveLock);
	desc = RelationGetDescr(rel);
	column = palloc(sizeof(int) * Max(desc->natts, 1));
	given = palloc0(sizeof(bool) * Max(desc->natts, 1));
	for (int a = 0; a < desc->natts; a++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, a);

		column[a] = -1;
		if (att->attisdropped)
			continue;
		for (int c = 0; c < DETECT_DEST_NCOLUMNS; c++)
			if (strcmp(NameStr(att->attname), detect_dest_columns[c].name) == 0)
			{
				if (att->atttypid != detect_dest_columns[c].type)
					ereport(ERROR,
							(errcode(ERRCODE_DATATYPE_MISMATCH),
							 errmsg("column \"%s\" of anomaly.scores has type %s, expected %s",
									NameStr(att->attname), format_type_be(att->atttypid),
									format_type_be(detect_dest_columns[c].type)),
							 errhint("Reinstall the extension.")));
				column[a] = c;
				given[a] = true;
			}
	}

	bulk = detect_bulk_begin(rel, given);
	rowcxt = AllocSetContextCreate(CurrentMemoryContext, "anomaly score row",
								   ALLOCSET_DEFAULT_SIZES);
	for (int r = 0; r < n; r++)
	{
		TupleTableSlot *slot = detect_bulk_slot(bulk);

		old = MemoryContextSwitchTo(rowcxt);
		for (int a = 0; a < desc->natts; a++)
			if (column[a] >= 0)
				slot->tts_values[a] = score_value(ss, rows[r], column[a],
												  &slot->tts_isnull[a]);
		MemoryContextSwitchTo(old);
		detect_bulk_add(bulk, slot);
		MemoryContextReset(rowcxt);
	}
	MemoryContextDelete(rowcxt);
	detect_bulk_end(bulk);
	table_close(rel, NoLock);
}

/* The rows write_destination writes. */
typedef struct DestinationCall
{
	const ScoreSource *ss;
	const int64 *rows;
	int			n;
} DestinationCall;

/* The feature names of a detector, as pump.c matches them. */
static List *
feature_names(DetectorDef *def)
{
	List	   *names = NIL;

	if (def->feature_names != NIL)
		return def->feature_names;
	for (int f = 0; f < def->nfeatures; f++)
		names = lappend(names, def->features[f]);
	return names;
}

/*
 * Inserts the round's scores into the destination table, in the owner
 * context: its triggers, defaults, constraints, casts and row security are
 * the owner's and the table owner's code, and run as the detector's owner.
 * Each column gets what pump.c maps to it: a score field, the source row's
 * column (which the owner must still be allowed to read) or a feature.
 */
static void
destination_as_owner(void *arg)
{
	DestinationCall *call = (DestinationCall *) arg;
	const ScoreSource *ss = call->ss;
	const int64 *rows = call->rows;
	int			n = call->n;
	DetectorDef *def = ss->def;
	TupleDesc	row_desc;
	TupleDesc	source_desc;
	Datum	   *composites;
	Datum	   *sources;
	Datum	   *times;
	bool	   *time_nulls;
	Oid			row_type;
	Oid			types[5];
	Datum		args[5];
	RangeVar   *rv;
	Oid			relid;
	Relation	rel;
	bool		table_priv;
	bool		source_priv;
	DestFill   *map;
	int			nmap;
	int			dims[1] = {n};
	int			lbs[1] = {1};
	StringInfoData cols;
	StringInfoData exprs;
	StringInfoData sql;

	row_type = detect_anomaly_type("_score_row");
	rv = makeRangeVarFromNameList(stringToQualifiedNameList(def->destination));
	relid = RangeVarGetRelid(rv, RowExclusiveLock, true);
	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("destination table %s of detector \"%s\" does not exist",
						def->destination, def->name),
				 errhint("alter_detector() with options '{\"destination\": null}' stops writing to it.")));
	rel = table_open(relid, NoLock);
	if (rel->rd_rel->relkind != RELKIND_RELATION)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("destination %s of detector \"%s\" is no longer a table",
						def->destination, def->name)));
	/* A window's result has no source row (window_agg.c). */
	source_desc = def->window ? CreateTemplateTupleDesc(0) :
		lookup_rowtype_tupdesc_copy(ss->es->elem_type, -1);
	nmap = detect_dest_map(RelationGetDescr(rel), def->destination, def->name,
						   source_desc, feature_names(def), &map);
	table_close(rel, NoLock);
	table_priv = pg_class_aclcheck(relid, def->owner, ACL_INSERT) == ACLCHECK_OK;
	source_priv = pg_class_aclcheck(def->source, def->owner, ACL_SELECT) == ACLCHECK_OK;
	initStringInfo(&cols);
	initStringInfo(&exprs);
	for (int m = 0; m < nmap; m++)
	{
		DestFill   *f = &map[m];

		if (f->kind == DEST_FILL_SELF)
			continue;
		if (!table_priv &&
			pg_attribute_aclcheck(relid, f->attnum, def->owner, ACL_INSERT) != ACLCHECK_OK)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("permission denied for table %s", def->destination),
					 errdetail("The owner of detector \"%s\", role %s, may no longer insert into its destination.",
							   def->name, GetUserNameFromId(def->owner, true))));
		/* A value goes nowhere its owner could not have read it from. */
		if (f->kind == DEST_FILL_SOURCE && !source_priv &&
			pg_attribute_aclcheck(def->source, f->index, def->owner, ACL_SELECT) != ACLCHECK_OK)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("permission denied for column \"%s\" of table %s",
							f->source_name, def->source_name),
					 errdetail("The owner of detector \"%s\", role %s, may no longer read the column it copies into its destination.",
							   def->name, GetUserNameFromId(def->owner, true))));
		if (cols.len > 0)
		{
			appendStringInfoString(&cols, ", ");
			appendStringInfoString(&exprs, ", ");
		}
		appendStringInfoString(&cols, quote_identifier(f->name));
		switch (f->kind)
		{
			case DEST_FILL_SCORE:
				if (f->index == SC_DETECTOR)
					appendStringInfoString(&exprs, "$1");
				else if (f->index == SC_SCORED_AT)
					appendStringInfoString(&exprs, "$3");
				else if (f->index == SC_ROWTIME)
					appendStringInfoString(&exprs, "u.t");
				else
					appendStringInfo(&exprs, "(u.r).%s",
									 quote_identifier(detect_dest_columns[f->index].name));
				break;
			case DEST_FILL_SOURCE:
				appendStringInfo(&exprs, "(u.s).%s", quote_identifier(f->source_name));
				break;
			case DEST_FILL_FEATURE:
				appendStringInfo(&exprs, "((u.r).features)[%d]", f->index + 1);
				break;
			case DEST_FILL_SELF:
				break;
		}
	}

	types[0] = TEXTOID;
	types[1] = get_array_type(row_type);
	types[2] = TIMESTAMPTZOID;
	types[3] = ss->es->array_type;
	types[4] = TIMESTAMPTZARRAYOID;
	/* _score_row: the columns between detector and scored_at */
	row_desc = lookup_rowtype_tupdesc_copy(row_type, -1);
	if (row_desc->natts != SC_SCORED_AT - SC_PARTITION_KEY)
		elog(ERROR, "type anomaly._score_row does not match the score columns");
	composites = palloc_extended(sizeof(Datum) * n, MCXT_ALLOC_HUGE);
	sources = palloc_extended(sizeof(Datum) * n, MCXT_ALLOC_HUGE);
	times = palloc_extended(sizeof(Datum) * n, MCXT_ALLOC_HUGE);
	time_nulls = palloc_extended(sizeof(bool) * n, MCXT_ALLOC_HUGE);
	for (int r = 0; r < n; r++)
	{
		Datum		v[SC_SCORED_AT - SC_PARTITION_KEY];
		bool		nl[SC_SCORED_AT - SC_PARTITION_KEY];

		for (int c = SC_PARTITION_KEY; c < SC_SCORED_AT; c++)
			v[c - SC_PARTITION_KEY] = score_value(ss, rows[r], c, &nl[c - SC_PARTITION_KEY]);
		composites[r] = HeapTupleGetDatum(heap_form_tuple(row_desc, v, nl));
		sources[r] = ss->es->rows[rows[r]];
		times[r] = TimestampTzGetDatum(row_time(ss, rows[r], &time_nulls[r]));
	}
	args[0] = ss->detector;
	args[1] = PointerGetDatum(construct_array(composites, n, row_type, -1, false, TYPALIGN_DOUBLE));
	args[2] = TimestampTzGetDatum(ss->scored_at);
	args[3] = PointerGetDatum(construct_array(sources, n, ss->es->elem_type, -1, false,
											  TYPALIGN_DOUBLE));
	args[4] = PointerGetDatum(construct_md_array(times, time_nulls, 1, dims, lbs,
												 TIMESTAMPTZOID, sizeof(TimestampTz),
												 FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	/*
	 * Set-returning functions in a target list advance together: row r of
	 * each array makes row r of u.  The source rows stay whole composites
	 * (a FROM-clause unnest would spread them into columns whose names could
	 * clash with ours).
	 */
	initStringInfo(&sql);
	appendStringInfo(&sql, "INSERT INTO %s (%s) SELECT %s FROM (SELECT pg_catalog.unnest($2) AS r,"
					 " pg_catalog.unnest($4) AS s, pg_catalog.unnest($5) AS t) AS u",
					 def->destination, cols.data, exprs.data);
	detect_owner_spi_exec(sql.data, 5, types, args, NULL, false, SPI_OK_INSERT);
}

/*
 * Writes the scores of a round into the detector's destination table too,
 * as the owner (like the expressions), in the round's transaction: its
 * columns by name (pump.c).
 */
static void
write_destination(const ScoreSource *ss, const int64 *rows, int n)
{
	DestinationCall call;

	if (ss->def->destination == NULL || n == 0)
		return;
	call.ss = ss;
	call.rows = rows;
	call.n = n;
	detect_as_owner(ss->def->owner, ss->def->search_path, ss->def->settings,
					destination_as_owner, &call);
}

/* Writes the failures of a round. */
static void
write_failures(DetectorDef *def, RoundData *rd, EvalState *es, int64 n)
{
	int			nf = es->nfailed;
	Datum	   *keys = palloc(sizeof(Datum) * Max(nf, 1));
	bool	   *keynulls = palloc(sizeof(bool) * Max(nf, 1));
	Datum	   *lsns = palloc(sizeof(Datum) * Max(nf, 1));
	Datum	   *times = palloc(sizeof(Datum) * Max(nf, 1));
	bool	   *unknown = palloc(sizeof(bool) * Max(nf, 1));	/* commit */
	Datum	   *states = palloc(sizeof(Datum) * Max(nf, 1));
	Datum	   *reasons = palloc(sizeof(Datum) * Max(nf, 1));
	int			k = 0;
	int			dims[1];
	int			lbs[1] = {1};
	Oid			types[7] = {TEXTOID, JSONBARRAYOID, PG_LSNARRAYOID, TIMESTAMPTZARRAYOID,
	TEXTARRAYOID, TEXTARRAYOID, OIDOID};
	Datum		args[7];

	if (nf == 0)
		return;
	for (int64 i = 0; i < n; i++)
	{
		RowResult  *rr = &es->res[i];

		if (rr->ok)
			continue;
		keys[k] = rr->source_key;
		keynulls[k] = rr->source_key == (Datum) 0;
		lsns[k] = LSNGetDatum(rd->row[i].commit_lsn);
		times[k] = TimestampTzGetDatum(rd->row[i].commit_time);
		unknown[k] = XLogRecPtrIsInvalid(rd->row[i].commit_lsn);
		states[k] = CStringGetTextDatum(rr->sqlstate ? rr->sqlstate : "XX000");
		reasons[k] = CStringGetTextDatum(rr->error ? rr->error : "unknown");
		k++;
	}
	dims[0] = k;
	args[0] = CStringGetTextDatum(def->name);
	args[1] = PointerGetDatum(construct_md_array(keys, keynulls, 1, dims, lbs, JSONBOID, -1, false, TYPALIGN_INT));
	args[2] = PointerGetDatum(construct_md_array(lsns, unknown, 1, dims, lbs, PG_LSNOID,
												 sizeof(XLogRecPtr), FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[3] = PointerGetDatum(construct_md_array(times, unknown, 1, dims, lbs, TIMESTAMPTZOID,
												 sizeof(TimestampTz), FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[4] = PointerGetDatum(construct_array(states, k, TEXTOID, -1, false, TYPALIGN_INT));
	args[5] = PointerGetDatum(construct_array(reasons, k, TEXTOID, -1, false, TYPALIGN_INT));
	args[6] = ObjectIdGetDatum(def->owner);
	/* The owner is kept with each row: who may see it (a row security policy). */
	detect_spi_exec("INSERT INTO anomaly.detector_failures"
					" (detector, source_key, commit_lsn, commit_time, sqlstate, reason, owner)"
					" SELECT $1, u.*, $7 FROM ROWS FROM (pg_catalog.unnest($2), pg_catalog.unnest($3),"
					" pg_catalog.unnest($4), pg_catalog.unnest($5), pg_catalog.unnest($6)) AS u",
					7, types, args, NULL, false, SPI_OK_INSERT);
}

/*
 * Writes everything of a scored round: scores, failures, journal, stored
 * forests, and the detector's row.
 */
static void
write_round(RoundWrite *w)
{
	DetectorCache *dc = w->dc;
	DetectorDef *def = w->def;
	RoundData  *rd = w->rd;
	EvalState  *es = w->es;
	int64		n = w->n;
	int64		seq = w->seq;
	int64		filtered = w->filtered;
	int			npoints = w->npoints;
	int			nout = w->nout;
	ArrayBuildState *jkeys = w->jkeys;
	ArrayBuildState *jpoints = w->jpoints;
	int64	   *out = w->out;
	TimestampTz now;
	bool		stored;
	int64		journal_points = def->journal_points;
	int64		checkpoint_seq = def->checkpoint_seq;
	bool		write_row;
	int64		token = detect_new_token();

	{
		ScoreSource ss;

		ss.def = def;
		ss.rd = rd;
		ss.es = es;
		ss.detector = CStringGetTextDatum(def->name);
		ss.scored_at = GetCurrentTimestamp();
		find_time_column(&ss);
		write_scores(&ss, out, nout);
		write_destination(&ss, out, nout);
	}
	write_failures(def, rd, es, n);

	now = GetCurrentTimestamp();
	stored = detect_spread_checkpoint(dc, def, seq, npoints, now, jkeys, jpoints,
							   &journal_points, &checkpoint_seq);
	write_row = w->consumed > 0 || stored || checkpoint_seq != def->checkpoint_seq ||
		def->row_is_ours ||
		def->last_batch_at == 0 ||
		TimestampDifferenceExceeds(def->last_batch_at, now, 1000);

	if (write_row)
	{
		DetectArgs	a;
		double		rate = 0;
		XLogRecPtr	partial_lsn = InvalidXLogRecPtr;
		int64		partial_rows = 0;

		if (def->last_batch_at != 0)
		{
			double		secs = (double) (now - def->last_batch_at) / USECS_PER_SEC;

			rate = (double) nout / Max(secs, 0.001);
			if (!def->rows_per_s_null)
				rate = 0.7 * def->rows_per_s + 0.3 * rate;
		}
		detect_args_init(&a);
		detect_arg(&a, INT8OID, Int64GetDatum(def->id), false);
		detect_arg(&a, INT8OID, Int64GetDatum(seq), false);
		detect_arg(&a, INT8OID, Int64GetDatum(token), false);
		detect_arg(&a, PG_LSNOID, LSNGetDatum(w->end_lsn), false);
		detect_arg(&a, PG_LSNOID, LSNGetDatum(rd->last_commit_lsn),
				   XLogRecPtrIsInvalid(rd->last_commit_lsn));
		detect_arg(&a, TIMESTAMPTZOID, TimestampTzGetDatum(rd->last_commit_time),
				   XLogRecPtrIsInvalid(rd->last_commit_lsn));
		detect_arg(&a, INT8OID, Int64GetDatum(nout), false);
		detect_arg(&a, INT8OID, Int64GetDatum(filtered), false);
		detect_arg(&a, INT8OID, Int64GetDatum(es->nfailed), false);
		detect_arg(&a, FLOAT8OID, Float8GetDatum(rate), def->last_batch_at == 0);
		detect_arg(&a, TIMESTAMPTZOID, TimestampTzGetDatum(now), false);
		detect_arg(&a, TIMESTAMPTZOID, TimestampTzGetDatum(w->started), !w->caught_up);
		detect_arg(&a, INT8OID, Int64GetDatum(journal_points), false);
		detect_arg(&a, INT8OID, Int64GetDatum(checkpoint_seq), false);
		detect_arg(&a, TIMESTAMPTZOID, TimestampTzGetDatum(stored ? now : def->checkpoint_at),
				   !stored && def->checkpoint_at == 0);
		/* Where this round stopped in a transaction it split, if anywhere. */
		if (rd->split)
		{
			partial_lsn = rd->split_lsn;
			partial_rows = rd->split_rows;
		}
		else if (!XLogRecPtrIsInvalid(def->partial_lsn) &&
				 rd->last_commit_lsn < def->partial_lsn)
		{
			partial_lsn = def->partial_lsn;
			partial_rows = def->partial_rows;
		}
		detect_arg(&a, PG_LSNOID, LSNGetDatum(partial_lsn), XLogRecPtrIsInvalid(partial_lsn));
		detect_arg(&a, INT8OID, Int64GetDatum(partial_rows), false);
		detect_spi_exec("UPDATE anomaly.detectors SET batch_seq = $2, round_token = $3,"
						" progress_lsn = GREATEST(progress_lsn, $4),"
						" last_commit_lsn = GREATEST(last_commit_lsn, $5),"
						" last_commit_time = COALESCE($6, last_commit_time),"
						" rows_scored = rows_scored OPERATOR(pg_catalog.+) $7,"
						" rows_filtered = rows_filtered OPERATOR(pg_catalog.+) $8,"
						" rows_failed = rows_failed OPERATOR(pg_catalog.+) $9,"
						" rows_per_s = COALESCE($10, rows_per_s), last_batch_at = $11,"
						" caught_up_at = COALESCE($12, caught_up_at),"
						" journal_points = $13, checkpoint_seq = $14, checkpoint_at = $15,"
						" partial_commit_lsn = $16, partial_rows = $17,"
						" error_count = 0"
						" WHERE id OPERATOR(pg_catalog.=) $1", a.n, a.types, a.values, a.nulls,
						false, SPI_OK_UPDATE);
		if (SPI_processed != 1)
			elog(ERROR, "detector " INT64_FORMAT " vanished during its round", def->id);
		dc->token = token;
	}
	else
		dc->token = def->round_token;
}

/* Runs write_round with the detector's replication origin on our WAL. */
void
detect_write_round_as_origin(RoundWrite *w)
{
	RepOriginId origin = detect_origin(w->def->slot_name, true);

	replorigin_session_origin = origin;
	PG_TRY();
	{
		write_round(w);
	}
	PG_FINALLY();
	{
		replorigin_session_origin = InvalidRepOriginId;
	}
	PG_END_TRY();
}

/*
 * Scores the rows [0, w->n) of w->es at once, then writes the round: for
 * the rounds that do not score chunk by chunk as they evaluate (a windowed
 * detector's closed windows, a backfill batch).
 */
void
detect_score_and_write_round(RoundWrite *w)
{
	w->out = palloc(sizeof(int64) * Max(w->n, 1));
	w->nout = 0;
	w->filtered = 0;
	w->jkeys = NULL;
	w->jpoints = NULL;
	w->npoints = 0;
	if (w->n > 0)
	{
		detect_progress_phase(DETECT_PHASE_SCORING);
		w->nout = detect_score_rows(w->dc, w->def, w->es, 0, w->n, w->seq, w->out,
									&w->filtered, &w->jkeys, &w->jpoints,
									&w->npoints);
	}
	detect_progress_phase(DETECT_PHASE_WRITING);
	detect_write_round_as_origin(w);
}
