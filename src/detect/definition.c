/*
 * definition.c
 *	  A detector's definition as a round reads it, recording a round's
 *	  errors, round tokens and the retention of scores and failures.
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
#include "commands/extension.h"
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
#include "compat.h"
#include "detect/detect.h"
#include "detect/round_internal.h"
#include "subxact.h"

/* ---------------------------------------------------------------------
 * Small helpers
 */

Datum
detect_spi_value(int row, int col, bool *isnull)
{
	return SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col,
						 isnull);
}

char *
detect_spi_text(int row, int col)
{
	bool		isnull;
	Datum		d = detect_spi_value(row, col, &isnull);

	return isnull ? NULL : TextDatumGetCString(d);
}

/* Text array datum to C strings (NULL elements allowed as NULL). */
int
detect_text_array_to_cstrings(Datum d, char ***out)
{
	ArrayType  *arr = DatumGetArrayTypeP(d);
	Datum	   *elems;
	bool	   *nulls;
	int			n;

	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	*out = palloc(sizeof(char *) * Max(n, 1));
	for (int i = 0; i < n; i++)
		(*out)[i] = nulls[i] ? NULL : TextDatumGetCString(elems[i]);
	return n;
}

/* A random, non-zero 64-bit token (detectors.round_token). */
int64
detect_new_token(void)
{
	int64		t;

	if (!pg_strong_random(&t, sizeof(t)))
		t = (int64) GetCurrentTimestamp() ^ ((int64) MyProcPid << 40);
	return t == 0 ? 1 : t;
}

bool
detect_error_is_permanent(int sqlerrcode)
{
	switch (ERRCODE_TO_CATEGORY(sqlerrcode))
	{
		case ERRCODE_SYNTAX_ERROR_OR_ACCESS_RULE_VIOLATION:
		case ERRCODE_FEATURE_NOT_SUPPORTED:
		case ERRCODE_DATA_CORRUPTED:
			return true;
		default:
			break;
	}
	return sqlerrcode == ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE ||
		sqlerrcode == ERRCODE_UNDEFINED_OBJECT ||
		sqlerrcode == ERRCODE_WRONG_OBJECT_TYPE;
}

/* ---------------------------------------------------------------------
 * The definition
 */

/* An option as text, and the options' operations array (sys context SQL). */
#define OPT(key) "(options OPERATOR(pg_catalog.->>) '" key "')"
#define OPS "(options OPERATOR(pg_catalog.->) 'operations')"

#define DEF_COLUMNS \
	"id, name, source, source_name, features, partition_by, filter, owner," \
	" search_path, source_columns, key_columns, slot_name, state, batch_seq," \
	" round_token, progress_lsn, last_commit_lsn, partial_commit_lsn, partial_rows," \
	" checkpoint_seq," \
	" checkpoint_at, journal_points, rows_per_s, last_batch_at," \
	" " OPT("number_of_trees") "::pg_catalog.int4, " OPT("sub_sample_size") "::pg_catalog.int4," \
	" " OPT("time_decay") "::pg_catalog.int8, " OPT("shingle_size") "::pg_catalog.int4," \
	" " OPT("seed") "::pg_catalog.int8," \
	" COALESCE(" OPT("bounding_box_cache_fraction") "::pg_catalog.float8, 1)," \
	" " OPS " OPERATOR(pg_catalog.?) 'insert'," \
	" " OPS " OPERATOR(pg_catalog.?) 'update', " OPT("with_explanation") "::pg_catalog.bool," \
	" " OPT("with_directionality") "::pg_catalog.bool," \
	" ARRAY(SELECT pg_catalog.jsonb_array_elements_text(options OPERATOR(pg_catalog.->) 'feature_names'))," \
	" " OPT("destination") ", " OPT("time_column") "," \
	" CASE WHEN NOT (backfill OPERATOR(pg_catalog.->>) 'done')::pg_catalog.bool THEN backfill::pg_catalog.text END," \
	" xmin, COALESCE(" OPT("grade") "::pg_catalog.bool, false)," \
	" " OPT("z_factor") "::pg_catalog.float8, " OPT("score_floor") "::pg_catalog.float8," \
	" " OPT("ignore_near_expected_above") "::pg_catalog.float8," \
	" " OPT("ignore_near_expected_below") "::pg_catalog.float8," \
	" " OPT("ignore_near_expected_above_ratio") "::pg_catalog.float8," \
	" " OPT("ignore_near_expected_below_ratio") "::pg_catalog.float8," \
	" " OPT("suppress") "::pg_catalog.float8::pg_catalog.int4, " OPT("score_horizon") "::pg_catalog.float8," \
	" COALESCE(" OPT("cusum_drift") "::pg_catalog.float8, 2)," \
	" COALESCE(" OPT("cusum_threshold") "::pg_catalog.float8, 12)," \
	" COALESCE(" OPT("transform") ", 'none'), " OPT("transform_decay") "::pg_catalog.float8," \
	" CASE WHEN pg_catalog.jsonb_typeof(options OPERATOR(pg_catalog.->) 'transform_weights')" \
	" OPERATOR(pg_catalog.=) 'array' THEN ARRAY(SELECT pg_catalog.jsonb_array_elements_text(" \
	"options OPERATOR(pg_catalog.->) 'transform_weights')::pg_catalog.float8) END," \
	" CASE WHEN options OPERATOR(pg_catalog.?) 'window' THEN options::pg_catalog.text END," \
	" settings, note"

/*
 * Reads detector id's row into def (in CurrentMemoryContext).  lock:
 * FOR UPDATE SKIP LOCKED; returns false when the row is missing or locked
 * (*locked tells which).
 */
bool
detect_read_def(int64 id, bool lock, DetectorDef *def, bool *locked)
{
	StringInfoData sql;
	Oid			types[1] = {INT8OID};
	Datum		args[1] = {Int64GetDatum(id)};
	HeapTuple	tup;
	TupleDesc	td;
	bool		isnull;
	Datum		d;
	int			col = 1;

	*locked = false;
	initStringInfo(&sql);
	appendStringInfo(&sql, "SELECT " DEF_COLUMNS " FROM anomaly.detectors WHERE id OPERATOR(pg_catalog.=) $1%s",
					 lock ? " FOR UPDATE SKIP LOCKED" : "");
	detect_spi_exec(sql.data, 1, types, args, NULL, false, SPI_OK_SELECT);
	if (SPI_processed == 0)
	{
		if (lock)
		{
			detect_spi_exec("SELECT 1 FROM anomaly.detectors WHERE id OPERATOR(pg_catalog.=) $1",
					 1, types, args, NULL, true, SPI_OK_SELECT);
			*locked = SPI_processed > 0;
		}
		return false;
	}
	tup = SPI_tuptable->vals[0];
	td = SPI_tuptable->tupdesc;
	memset(def, 0, sizeof(*def));
#define NEXT() (d = SPI_getbinval(tup, td, col++, &isnull))
	NEXT();
	def->id = DatumGetInt64(d);
	def->name = detect_spi_text(0, col++);
	NEXT();
	def->source = DatumGetObjectId(d);
	def->source_name = detect_spi_text(0, col++);
	NEXT();
	def->nfeatures = detect_text_array_to_cstrings(d, &def->features);
	def->partition_by = detect_spi_text(0, col++);
	def->filter = detect_spi_text(0, col++);
	NEXT();
	def->owner = DatumGetObjectId(d);
	def->search_path = detect_spi_text(0, col++);
	NEXT();
	def->source_columns = DatumGetJsonbPCopy(d);
	NEXT();
	if (!isnull)
		def->nkeys = detect_text_array_to_cstrings(d, &def->key_columns);
	def->slot_name = pstrdup(NameStr(*DatumGetName(SPI_getbinval(tup, td, col++, &isnull))));
	def->state = detect_spi_text(0, col++);
	NEXT();
	def->batch_seq = DatumGetInt64(d);
	NEXT();
	def->round_token = DatumGetInt64(d);
	NEXT();
	def->progress_lsn = DatumGetLSN(d);
	NEXT();
	def->last_commit_lsn = DatumGetLSN(d);
	NEXT();
	def->partial_lsn = isnull ? InvalidXLogRecPtr : DatumGetLSN(d);
	NEXT();
	def->partial_rows = DatumGetInt64(d);
	NEXT();
	def->checkpoint_seq = DatumGetInt64(d);
	NEXT();
	def->checkpoint_at = isnull ? 0 : DatumGetTimestampTz(d);
	NEXT();
	def->journal_points = DatumGetInt64(d);
	NEXT();
	def->rows_per_s_null = isnull;
	def->rows_per_s = isnull ? 0 : DatumGetFloat8(d);
	NEXT();
	def->last_batch_at = isnull ? 0 : DatumGetTimestampTz(d);

	rcf_params_default(&def->params, def->nfeatures);
	NEXT();
	def->params.number_of_trees = DatumGetInt32(d);
	NEXT();
	def->params.sample_size = DatumGetInt32(d);
	NEXT();
	def->params.time_decay = (double) DatumGetInt64(d);
	NEXT();
	def->params.shingle_size = DatumGetInt32(d);
	NEXT();
	def->params.seed = (uint64) DatumGetInt64(d);
	NEXT();
	def->params.bounding_box_cache_fraction = DatumGetFloat8(d);
	NEXT();
	def->inserts = !isnull && DatumGetBool(d);
	NEXT();
	def->updates = !isnull && DatumGetBool(d);
	NEXT();
	def->with_explanation = !isnull && DatumGetBool(d);
	NEXT();
	def->with_directionality = !isnull && DatumGetBool(d);
	NEXT();
	{
		char	  **names;
		int			n = detect_text_array_to_cstrings(d, &names);

		def->feature_names = NIL;
		for (int i = 0; i < n; i++)
			def->feature_names = lappend(def->feature_names, names[i]);
		if (n != def->nfeatures)
			def->feature_names = NIL;
	}
	def->destination = detect_spi_text(0, col++);
	def->time_column = detect_spi_text(0, col++);
	def->backfill = detect_spi_text(0, col++);
	NEXT();
	def->row_is_ours = !isnull && TransactionIdIsCurrentTransactionId(DatumGetTransactionId(d));
	NEXT();
	def->grade = DatumGetBool(d);
	if (def->grade)
	{
		NullableDatum gargs[ANOMALY_GRADER_ARGS];

		for (int i = 0; i < ANOMALY_GRADER_ARGS; i++)
			gargs[i].value = SPI_getbinval(tup, td, col++, &gargs[i].isnull);
		anomaly_grader_params(&def->gparams, gargs);
	}
	else
		col += ANOMALY_GRADER_ARGS;
	{
		char	   *method = detect_spi_text(0, col++);
		Datum		tdecay;
		bool		tdecay_null;

		tdecay = SPI_getbinval(tup, td, col++, &tdecay_null);
		NEXT();
		/* Checked again: the options are the owner's to write. */
		anomaly_transform_spec(&def->tspec, method, tdecay_null,
							   tdecay_null ? 0.0 : DatumGetFloat8(tdecay),
							   isnull ? NULL : DatumGetArrayTypeP(d),
							   def->nfeatures, def->params.sample_size);
	}
	def->window = detect_spi_text(0, col++);
	NEXT();
	def->note = detect_spi_text(0, col++);
	def->settings = detect_settings_parse(isnull ? NULL : DatumGetJsonbPCopy(d));
#undef NEXT
	if (rcf_params_check(&def->params) != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("detector \"%s\" has invalid forest parameters: %s",
						def->name, rcf_params_check(&def->params))));
	return true;
}

/* Records an error of detector id (in the caller's transaction). */
void
detect_record_error(int64 id, const char *message, const char *sqlstate,
					bool fatal)
{
	DetectSys	sc;
	Oid			types[5] = {INT8OID, TEXTOID, BOOLOID, INT4OID, TEXTOID};
	Datum		args[5];

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	detect_sys_enter(&sc);
	args[0] = Int64GetDatum(id);
	args[1] = CStringGetTextDatum(message);
	args[2] = BoolGetDatum(fatal);
	args[3] = Int32GetDatum(detect_max_retries);
	args[4] = CStringGetTextDatum(sqlstate ? sqlstate : "XX000");
	detect_spi_exec("UPDATE anomaly.detectors SET last_error = pg_catalog.concat($2, ' (SQLSTATE ', $5, ')'),"
					" last_error_at = pg_catalog.now(),"
					" error_count = error_count OPERATOR(pg_catalog.+) 1,"
					" state = CASE WHEN state OPERATOR(pg_catalog.=) 'active'"
					" AND ($3 OR (error_count OPERATOR(pg_catalog.+) 1) OPERATOR(pg_catalog.>=) $4)"
					" THEN 'failed' ELSE state END"
					" WHERE id OPERATOR(pg_catalog.=) $1", 5, types, args, NULL, false, SPI_OK_UPDATE);
	detect_sys_leave(&sc);
	SPI_finish();
}

/*
 * Each detector's retention as an interval, at most 1000 years (what
 * create_detector accepts; a row from an older version may say more, and
 * now() minus more overflows: see apply_retention).
 */
#define RETENTION_KEEP \
	"LEAST(" OPT("retention") "::pg_catalog.interval," \
	" '1000 years'::pg_catalog.interval) AS keep"

/* detect_apply_retention's statements, for anomaly_try_subxact. */
static void
apply_retention(void *arg)
{
	DetectSys	sc;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	detect_sys_enter(&sc);
	detect_spi_exec("WITH d AS (SELECT name, " RETENTION_KEEP
					"   FROM anomaly.detectors WHERE " OPT("retention") " IS NOT NULL),"
					" old AS (SELECT s.id FROM d, LATERAL (SELECT id, scored_at FROM anomaly.scores"
					"   WHERE detector OPERATOR(pg_catalog.=) d.name ORDER BY id LIMIT 10000) s"
					"   WHERE s.scored_at OPERATOR(pg_catalog.<)"
					"     (pg_catalog.now() OPERATOR(pg_catalog.-) d.keep))"
					" DELETE FROM anomaly.scores"
					" WHERE id OPERATOR(pg_catalog.=) ANY (SELECT id FROM old)",
					0, NULL, NULL, NULL, false, SPI_OK_DELETE);
	detect_spi_exec("WITH d AS (SELECT name, " RETENTION_KEEP
					"   FROM anomaly.detectors WHERE " OPT("retention") " IS NOT NULL),"
					" old AS (SELECT f.id FROM d, LATERAL (SELECT id, failed_at FROM anomaly.detector_failures"
					"   WHERE detector OPERATOR(pg_catalog.=) d.name ORDER BY id LIMIT 10000) f"
					"   WHERE f.failed_at OPERATOR(pg_catalog.<)"
					"     (pg_catalog.now() OPERATOR(pg_catalog.-) d.keep))"
					" DELETE FROM anomaly.detector_failures"
					" WHERE id OPERATOR(pg_catalog.=) ANY (SELECT id FROM old)",
					0, NULL, NULL, NULL, false, SPI_OK_DELETE);
	detect_sys_leave(&sc);
	SPI_finish();
}

/*
 * Deletes each detector's scores and failures older than its retention,
 * oldest first, a bounded number per call.  Every detector's in one
 * statement, run by the scheduler and by every process() call: whatever
 * fails in it (one detector's retention that no longer reads as an
 * interval) costs this pass of retention, with a WARNING, never the
 * caller's rounds or the scheduler's pass.  The error's text may quote
 * another owner's option: only superusers (and so the workers' logs) get
 * it.  LEAST takes interval's own ordering, not an operator by name.
 */
void
detect_apply_retention(void)
{
	ErrorData  *edata = anomaly_try_subxact(apply_retention, NULL);

	if (edata)
	{
		ereport(WARNING,
				(errcode(edata->sqlerrcode),
				 errmsg("detector retention not applied this time"),
				 superuser() ? errdetail("%s", edata->message) : 0));
		FreeErrorData(edata);
	}
}

/* The OID of the extension's type anomaly.<name>. */
Oid
detect_anomaly_type(const char *name)
{
	Oid			nsp = get_namespace_oid("anomaly", false);
	Oid			t = GetSysCacheOid2(TYPENAMENSP, Anum_pg_type_oid,
									CStringGetDatum(name), ObjectIdGetDatum(nsp));

	if (!OidIsValid(t))
		elog(ERROR, "type anomaly.%s does not exist", name);
	return t;
}

/* "system identifier:database OID:extension OID" of this database. */
char *
detect_home(void)
{
	return psprintf(UINT64_FORMAT ":%u:%u", GetSystemIdentifier(), MyDatabaseId,
					get_extension_oid("anomaly", false));
}

PG_FUNCTION_INFO_V1(anomaly_detector_home);

/*
 * anomaly._detector_home() RETURNS text: detect_home for SQL, so that the
 * alert rules' trigger (which skips the scores of detectors not at home)
 * compares with the one definition, from memory rather than the control
 * file.
 */
Datum
anomaly_detector_home(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(detect_home()));
}
