/*
 * catalog.c
 *	  Detector management from SQL: create_detector, alter_detector,
 *	  pause/resume/reset/drop_detector, and process(), one round of
 *	  detection for pg_cron.
 *
 * These functions are SECURITY INVOKER C functions: they check the caller
 * (GetUserId()) themselves, then write the catalog in the sys context (the
 * bootstrap superuser, a pinned search_path: sysctx.c).  The catalog
 * tables are not writable by anyone else, so the owner recorded for a
 * detector is always the role that created it, and its expressions
 * (checked in that role's owner context, as they will run: define.c)
 * always run as that role.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "access/xlog.h"
#include "access/xact.h"
#include "catalog/catalog.h"
#include "catalog/pg_authid.h"
#include "catalog/indexing.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_index.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "parser/parse_coerce.h"
#include "parser/parser.h"
#include "replication/origin.h"
#include "replication/slot.h"
#include "storage/standby.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/float.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/pg_lsn.h"
#include "utils/plancache.h"
#include "utils/regproc.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/resowner.h"
#include "utils/syscache.h"

#include "anomaly.h"
#include "detect/detect.h"
#include "detect/options.h"
#include "compat.h"
#include "subxact.h"

PG_FUNCTION_INFO_V1(anomaly_create_detector);
PG_FUNCTION_INFO_V1(anomaly_alter_detector);
PG_FUNCTION_INFO_V1(anomaly_pause_detector);
PG_FUNCTION_INFO_V1(anomaly_resume_detector);
PG_FUNCTION_INFO_V1(anomaly_reset_detector);
PG_FUNCTION_INFO_V1(anomaly_drop_detector);
PG_FUNCTION_INFO_V1(anomaly_process);

/*
 * The options that shape the models, as a jsonb array (sys context SQL):
 * when they change, the models are reset.
 */
#define PO(o, k) o " OPERATOR(pg_catalog.->) '" k "'"
#define PARAMS_ARRAY(o) \
	"pg_catalog.jsonb_build_array(" PO(o, "number_of_trees") ", " PO(o, "sub_sample_size") "," \
	" " PO(o, "time_decay") ", " PO(o, "shingle_size") ", " PO(o, "seed") ", " PO(o, "grade") "," \
	" " PO(o, "z_factor") ", " PO(o, "score_floor") ", " PO(o, "ignore_near_expected_above") "," \
	" " PO(o, "ignore_near_expected_below") ", " PO(o, "ignore_near_expected_above_ratio") "," \
	" " PO(o, "ignore_near_expected_below_ratio") ", " PO(o, "suppress") "," \
	" " PO(o, "score_horizon") ", " PO(o, "cusum_drift") ", " PO(o, "cusum_threshold") "," \
	" COALESCE(" PO(o, "transform") ", '\"none\"'::pg_catalog.jsonb), " PO(o, "transform_decay") ", " PO(o, "transform_weights") ")"


/* ---------------------------------------------------------------------
 * SPI as the bootstrap superuser
 */
/*
 * Appends the columns of a checked definition as SPI arguments, in the
 * order create_detector and alter_detector write them: features,
 * partition_by, filter, options, search_path, source_columns, key_columns.
 */
static void
definition_args(DetectArgs *a, Definition *def)
{
	detect_arg(a, TEXTARRAYOID, detect_cstrings_to_array(def->features, def->nfeatures), false);
	detect_arg(a, TEXTOID, def->partition_by ? CStringGetTextDatum(def->partition_by) : 0,
			   def->partition_by == NULL);
	detect_arg(a, TEXTOID, def->filter ? CStringGetTextDatum(def->filter) : 0,
			   def->filter == NULL);
	detect_arg(a, JSONBOID, DirectFunctionCall1(jsonb_in, CStringGetDatum(def->options)), false);
	detect_arg(a, TEXTOID, CStringGetTextDatum(def->search_path), false);
	detect_arg(a, JSONBOID, DirectFunctionCall1(jsonb_in, CStringGetDatum(def->source_columns)),
			   false);
	detect_arg(a, TEXTARRAYOID,
			   def->nkeys > 0 ? detect_cstrings_to_array(def->keys, def->nkeys) : 0,
			   def->nkeys == 0);
}

/* Settings as JSON text (detect_settings_define's) to jsonb. */
static Jsonb *
settings_jsonb(const char *json)
{
	return DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(json)));
}

/* A checked definition's settings, as the owner context takes them. */
static DetectSettings *
settings_of(Definition *def)
{
	return detect_settings_parse(settings_jsonb(def->settings));
}

/* ---------------------------------------------------------------------
 * create_detector
 */

/*
 * Each detector holds a replication slot, and max_replication_slots is
 * shared by every database: anomaly.max_detectors_per_owner keeps one
 * role from taking them all.  Called under DETECT_LOCK_CREATE.
 */
static void
check_owner_limit(Oid owner)
{
	int64		owned;
	bool		isnull;

	if (detect_max_per_owner <= 0 || superuser_arg(owner))
		return;
	detect_spi_exec("SELECT pg_catalog.count(*) FROM anomaly.detectors WHERE owner OPERATOR(pg_catalog.=) $1",
					1, (Oid[]) {OIDOID}, (Datum[]) {ObjectIdGetDatum(owner)}, NULL, false,
					SPI_OK_SELECT);
	owned = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	if (owned >= detect_max_per_owner)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("role \"%s\" already owns %lld detectors in this database",
						GetUserNameFromId(owner, false), (long long) owned),
				 errdetail("anomaly.max_detectors_per_owner is %d.", detect_max_per_owner),
				 errhint("Drop a detector, or ask a superuser to raise the setting.")));
}
Datum
anomaly_create_detector(PG_FUNCTION_ARGS)
{
	char	   *name;
	Oid			relid;
	Definition	def;
	Relation	rel;
	DetectSys			su;
	int64		id;
	char		slot[NAMEDATALEN];
	Oid			owner = GetUserId();
	char	   *backfill = NULL;
	XLogRecPtr	backfill_lsn = InvalidXLogRecPtr;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("name, source and features must not be null")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	detect_check_name(name);
	relid = PG_GETARG_OID(1);
	memset(&def, 0, sizeof(def));
	def.nfeatures = detect_text_array_arg(PG_GETARG_ARRAYTYPE_P(2), "features", &def.features);
	def.partition_by = PG_ARGISNULL(3) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(3));
	def.filter = PG_ARGISNULL(4) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(4));

	rel = detect_open_source_for_definition(relid);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	/*
	 * Checked in the caller's owner context, with the caller's search_path
	 * and settings (taken before the sys context pins its own), which
	 * become the detector's.
	 */
	{
		DefineCall	dc;
		char	   *path = pstrdup(namespace_search_path);
		Jsonb	   *given;

		dc.relid = relid;
		dc.def = &def;
		dc.options = detect_settings_split_options(PG_ARGISNULL(5) ? NULL : PG_GETARG_JSONB_P(5),
												   &given);
		def.settings = detect_settings_define(given, NULL, NULL);
		detect_sys_enter(&su);
		detect_as_owner(owner, path, settings_of(&def), detect_define_as_owner, &dc);
	}
	/* One creation at a time: ids are max + 1, and orphans are swept. */
	(void) detect_lock(DETECT_LOCK_CREATE, true);
	detect_spi_exec("SELECT 1 FROM anomaly.detectors WHERE name OPERATOR(pg_catalog.=) $1", 1,
			  (Oid[]) {TEXTOID}, (Datum[]) {CStringGetTextDatum(name)}, NULL, false, SPI_OK_SELECT);
	if (SPI_processed > 0)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("detector \"%s\" already exists", name)));
	check_owner_limit(owner);
	detect_spi_exec("SELECT COALESCE(pg_catalog.max(id), 0) OPERATOR(pg_catalog.+) 1 FROM anomaly.detectors",
			  0, NULL, NULL, NULL, false, SPI_OK_SELECT);
	{
		bool		isnull;

		id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	}
	/* Refused before a slot exists (one left by an error stays until swept). */
	if (def.start_all)
	{
		if (def.nkeys == 0)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("detector \"%s\" cannot start from the stored rows of %s: the table has no primary key",
							name, def.source_name),
					 errdetail("The stored rows are read in primary key order, a batch at a time."),
					 errhint("Add a primary key, or use {\"start\": \"now\"}.")));
		detect_backfill_check_lock(relid, owner);
	}
	detect_object_name(slot, sizeof(slot), MyDatabaseId, id);
	/* A slot left by an aborted creation of the same id. */
	detect_drop_slot(slot, true);
	detect_create_slot(slot);
	(void) detect_origin(slot, true);
	if (def.start_all)
		backfill = detect_backfill_begin(relid, owner, &backfill_lsn);

	{
		DetectArgs	a;

		detect_args_init(&a);
		detect_arg(&a, INT8OID, Int64GetDatum(id), false);
		detect_arg(&a, TEXTOID, CStringGetTextDatum(name), false);
		detect_arg(&a, OIDOID, ObjectIdGetDatum(relid), false);
		detect_arg(&a, TEXTOID, CStringGetTextDatum(def.source_name), false);
		definition_args(&a, &def);
		detect_arg(&a, OIDOID, ObjectIdGetDatum(owner), false);
		detect_arg(&a, NAMEOID, DirectFunctionCall1(namein, CStringGetDatum(slot)), false);
		detect_arg(&a, PG_LSNOID, LSNGetDatum(detect_slot_confirmed(slot)), false);
		detect_arg(&a, TEXTOID, CStringGetTextDatum(detect_home()), false);
		/* With a backfill, the slot's transactions up to its LSN are its. */
		detect_arg(&a, JSONBOID,
				   backfill ? DirectFunctionCall1(jsonb_in, CStringGetDatum(backfill)) : 0,
				   backfill == NULL);
		detect_arg(&a, PG_LSNOID, LSNGetDatum(backfill_lsn), false);
		detect_arg(&a, JSONBOID, JsonbPGetDatum(settings_jsonb(def.settings)), false);
		detect_spi_exec("INSERT INTO anomaly.detectors (id, name, source, source_name, features,"
				  " partition_by, filter, options, search_path, source_columns, key_columns,"
				  " owner, slot_name, progress_lsn, home, backfill, last_commit_lsn, settings)"
				  " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)",
				  a.n, a.types, a.values, a.nulls, false, SPI_OK_INSERT);
	}
	detect_sys_leave(&su);
	SPI_finish();
	table_close(rel, AccessShareLock);

	/* A worker for it at commit; or say why there will be none. */
	if (detect_service_hook != NULL)
	{
		const char *hint = NULL;
		const char *why = detect_service_hook(&hint);

		if (why != NULL)
			ereport(NOTICE,
					(errmsg("no background worker will score detector \"%s\": %s", name, why),
					 hint ? errhint("%s", hint) : 0));
	}
	PG_RETURN_VOID();
}

/* ---------------------------------------------------------------------
 * The others: lock the row, check the caller, change it.
 */

typedef struct Existing
{
	int64		id;
	Oid			owner;
	Oid			source;
	char	   *slot;
	char	   *state;
	char	   *name;
} Existing;

/* The columns of lock_detector's statement. */
enum
{
	LOCK_ID = 1,
	LOCK_OWNER,
	LOCK_SOURCE,
	LOCK_SLOT,
	LOCK_STATE
};

/*
 * Finds and locks detector `name` (inside su_enter), checks that the
 * caller may manage it.  Returns false when missing and missing_ok.
 */
static bool
lock_detector(const char *name, Oid caller, bool missing_ok, Existing *ex)
{
	bool		isnull;
	HeapTuple	t;
	TupleDesc	td;

	detect_spi_exec("SELECT id, owner, source, slot_name::pg_catalog.text, state FROM anomaly.detectors"
			  " WHERE name OPERATOR(pg_catalog.=) $1 FOR UPDATE", 1,
			  (Oid[]) {TEXTOID}, (Datum[]) {CStringGetTextDatum(name)}, NULL, false, SPI_OK_SELECT);
	if (SPI_processed == 0)
	{
		if (missing_ok)
			return false;
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("detector \"%s\" does not exist", name)));
	}
	t = SPI_tuptable->vals[0];
	td = SPI_tuptable->tupdesc;
	ex->id = DatumGetInt64(SPI_getbinval(t, td, LOCK_ID, &isnull));
	ex->owner = DatumGetObjectId(SPI_getbinval(t, td, LOCK_OWNER, &isnull));
	ex->source = DatumGetObjectId(SPI_getbinval(t, td, LOCK_SOURCE, &isnull));
	ex->slot = SPI_getvalue(t, td, LOCK_SLOT);
	ex->state = SPI_getvalue(t, td, LOCK_STATE);
	ex->name = pstrdup(name);
	if (!has_privs_of_role(caller, ex->owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be the owner of detector \"%s\"", name),
				 errdetail("It belongs to role %s.", GetUserNameFromId(ex->owner, true))));
	return true;
}

/* ---------------------------------------------------------------------
 * alter_detector
 */

/* The detector's name, the first argument of alter and drop: not NULL. */
static char *
name_arg(FunctionCallInfo fcinfo)
{
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("name must not be null")));
	return text_to_cstring(PG_GETARG_TEXT_PP(0));
}

/*
 * Deletes what detector id has learned: its stored forests and its journal
 * (alter_detector with a new model, reset_detector).  Inside SPI, as the
 * extension.
 */
static void
forget_learned(int64 id)
{
	detect_spi_exec("DELETE FROM anomaly.detector_forests WHERE detector_id OPERATOR(pg_catalog.=) $1", 1,
					(Oid[]) {INT8OID}, (Datum[]) {Int64GetDatum(id)}, NULL, false, SPI_OK_DELETE);
	detect_spi_exec("DELETE FROM anomaly.detector_journal WHERE detector_id OPERATOR(pg_catalog.=) $1", 1,
					(Oid[]) {INT8OID}, (Datum[]) {Int64GetDatum(id)}, NULL, false, SPI_OK_DELETE);
}

/* The columns of alter_detector's first statement. */
enum
{
	ALTER_FEATURES = 1,
	ALTER_PARTITION_BY,
	ALTER_FILTER,
	ALTER_MERGED,				/* the options, with the new ones */
	ALTER_PARAMS,				/* PARAMS_ARRAY of the old options */
	ALTER_SETTINGS
};
Datum
anomaly_alter_detector(PG_FUNCTION_ARGS)
{
	char	   *name;
	Oid			caller = GetUserId();
	Existing	ex;
	DetectSys			su;
	Definition	def;
	char	  **old_features;
	int			old_n;
	char	   *old_partition;
	char	   *old_filter;
	char	   *old_params;
	char	   *new_params;
	Jsonb	   *merged;
	char	   *caller_path;
	Jsonb	   *caller_settings;
	Jsonb	   *given;
	Jsonb	   *old_settings;
	Jsonb	   *options;
	bool		reset;
	HeapTuple	t;
	TupleDesc	td;
	bool		isnull;
	Datum		d;

	name = name_arg(fcinfo);
	caller_path = pstrdup(namespace_search_path);
	/* taken before the sys context pins its own */
	caller_settings = settings_jsonb(detect_settings_define(NULL, NULL, NULL));
	options = detect_settings_split_options(PG_ARGISNULL(4) ? NULL : PG_GETARG_JSONB_P(4), &given);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	detect_sys_enter(&su);
	lock_detector(name, caller, false, &ex);
	/*
	 * Options stored without a transform (before 0.2.0) meant none, not
	 * today's default: they keep that meaning when normalized again.
	 */
	detect_spi_exec("SELECT features, partition_by, filter,"
			  " pg_catalog.jsonb_strip_nulls('{\"transform\": \"none\"}'::pg_catalog.jsonb OPERATOR(pg_catalog.||)"
			  "   CASE WHEN $2 AND NOT ($3 OPERATOR(pg_catalog.?) 'feature_names')"
			  "   THEN options OPERATOR(pg_catalog.-) 'feature_names'::pg_catalog.text ELSE options END"
			  "   OPERATOR(pg_catalog.||) $3),"
			  " " PARAMS_ARRAY("options") "::pg_catalog.text, settings"
			  " FROM anomaly.detectors WHERE id OPERATOR(pg_catalog.=) $1", 3,
			  (Oid[]) {INT8OID, BOOLOID, JSONBOID},
			  (Datum[]) {Int64GetDatum(ex.id), BoolGetDatum(!PG_ARGISNULL(1)),
	options ? JsonbPGetDatum(options) : DirectFunctionCall1(jsonb_in, CStringGetDatum("{}"))},
			  NULL, false, SPI_OK_SELECT);
	t = SPI_tuptable->vals[0];
	td = SPI_tuptable->tupdesc;
	d = SPI_getbinval(t, td, ALTER_FEATURES, &isnull);
	{
		ArrayType  *a = DatumGetArrayTypeP(d);

		old_n = detect_text_array_arg(a, "features", &old_features);
	}
	old_partition = SPI_getvalue(t, td, ALTER_PARTITION_BY);
	old_filter = SPI_getvalue(t, td, ALTER_FILTER);
	merged = DatumGetJsonbPCopy(SPI_getbinval(t, td, ALTER_MERGED, &isnull));
	old_params = SPI_getvalue(t, td, ALTER_PARAMS);
	d = SPI_getbinval(t, td, ALTER_SETTINGS, &isnull);
	old_settings = isnull ? NULL : DatumGetJsonbPCopy(d);

	memset(&def, 0, sizeof(def));
	if (PG_ARGISNULL(1))
	{
		def.nfeatures = old_n;
		def.features = old_features;
	}
	else
		def.nfeatures = detect_text_array_arg(PG_GETARG_ARRAYTYPE_P(1), "features", &def.features);
	def.partition_by = PG_ARGISNULL(2) ? old_partition : text_to_cstring(PG_GETARG_TEXT_PP(2));
	def.filter = PG_ARGISNULL(3) ? old_filter : text_to_cstring(PG_GETARG_TEXT_PP(3));
	/* The detector keeps its settings but those given. */
	def.settings = detect_settings_define(given, old_settings, caller_settings);

	/*
	 * Checked in the owner's context, who runs them, with the caller's
	 * search_path (which becomes the detector's) and the detector's
	 * settings.
	 */
	if (!SearchSysCacheExists1(RELOID, ObjectIdGetDatum(ex.source)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("source table of detector \"%s\" was dropped", name)));
	{
		DefineCall	dc;

		dc.relid = ex.source;
		dc.def = &def;
		dc.options = merged;
		detect_as_owner(ex.owner, caller_path, settings_of(&def), detect_define_as_owner, &dc);
	}

	detect_spi_exec("SELECT " PARAMS_ARRAY("o") "::pg_catalog.text"
			  " FROM (SELECT $1::pg_catalog.jsonb AS o) s",
			  1, (Oid[]) {JSONBOID}, (Datum[]) {DirectFunctionCall1(jsonb_in, CStringGetDatum(def.options))},
			  NULL, false, SPI_OK_SELECT);
	new_params = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	reset = strcmp(old_params, new_params) != 0 || def.nfeatures != old_n ||
		(def.partition_by == NULL) != (old_partition == NULL) ||
		(def.partition_by && strcmp(def.partition_by, old_partition) != 0);
	for (int i = 0; !reset && i < old_n; i++)
		reset = strcmp(old_features[i], def.features[i]) != 0;
	/* Other settings give the expressions other values: new models too. */
	if (!reset)
		reset = old_settings == NULL ||
			!DatumGetBool(DirectFunctionCall2(jsonb_eq, JsonbPGetDatum(old_settings),
											  JsonbPGetDatum(settings_jsonb(def.settings))));

	/*
	 * A new bounding_box_cache_fraction resets nothing, but a new round_token
	 * makes every process drop the forests it holds and replay the journal
	 * onto the stored ones, decoded with the new fraction: the memory it
	 * asks for is had at the next round, not when a key is next evicted.
	 */
	{
		DetectArgs	a;

		detect_args_init(&a);
		detect_arg(&a, INT8OID, Int64GetDatum(ex.id), false);
		definition_args(&a, &def);
		detect_arg(&a, TEXTOID, CStringGetTextDatum(def.source_name), false);
		detect_arg(&a, BOOLOID, BoolGetDatum(reset), false);
		detect_arg(&a, INT8OID, Int64GetDatum(detect_new_token()), false);
		detect_arg(&a, JSONBOID, JsonbPGetDatum(settings_jsonb(def.settings)), false);
		detect_spi_exec("UPDATE anomaly.detectors SET features = $2, partition_by = $3, filter = $4,"
				  " options = $5, search_path = $6, source_columns = $7, key_columns = $8,"
				  " source_name = $9, settings = $12,"
				  " generation = generation OPERATOR(pg_catalog.+) CASE WHEN $10 THEN 1 ELSE 0 END,"
				  " round_token = CASE WHEN $10 OR NOT (COALESCE(options OPERATOR(pg_catalog.->) 'bounding_box_cache_fraction'::pg_catalog.text, 'null'::pg_catalog.jsonb)"
				  "   OPERATOR(pg_catalog.=) COALESCE($5::pg_catalog.jsonb OPERATOR(pg_catalog.->) 'bounding_box_cache_fraction'::pg_catalog.text, 'null'::pg_catalog.jsonb))"
				  "   THEN $11 ELSE round_token END,"
				  " checkpoint_seq = CASE WHEN $10 THEN batch_seq ELSE checkpoint_seq END,"
				  " journal_points = CASE WHEN $10 THEN 0 ELSE journal_points END"
				  " WHERE id OPERATOR(pg_catalog.=) $1", a.n, a.types, a.values, a.nulls, false,
				  SPI_OK_UPDATE);
		if (reset)
		{
			forget_learned(ex.id);
		}
	}
	detect_sys_leave(&su);
	SPI_finish();
	detect_forget(ex.id);
	PG_RETURN_VOID();
}

/*
 * Adopts detector `name` if it was restored, when the caller may manage it
 * (the caller's own checks report a missing detector or a wrong owner).
 */
static void
adopt_by_name(const char *name, Oid caller)
{
	DetectSys	su;
	int64		id = 0;
	bool		found = false;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	detect_sys_enter(&su);
	/* id and owner: the first columns of lock_detector's */
	detect_spi_exec("SELECT id, owner FROM anomaly.detectors WHERE name OPERATOR(pg_catalog.=) $1", 1,
					(Oid[]) {TEXTOID}, (Datum[]) {CStringGetTextDatum(name)}, NULL, true,
					SPI_OK_SELECT);
	if (SPI_processed > 0)
	{
		bool		isnull;

		id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
										 LOCK_ID, &isnull));
		found = has_privs_of_role(caller,
								  DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0],
																 SPI_tuptable->tupdesc,
																 LOCK_OWNER, &isnull)));
	}
	detect_sys_leave(&su);
	SPI_finish();
	if (found && detect_adopt(id, false) == ADOPT_WAIT)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_IN_USE),
				 errmsg("detector \"%s\" was restored from a dump and pg_restore is still running", name),
				 errhint("Try again when the restore is complete.")));
}

/* ---------------------------------------------------------------------
 * pause, resume
 */
static void
set_state(const char *name, const char *state)
{
	Oid			caller = GetUserId();
	DetectSys			su;
	Existing	ex;

	if (strcmp(state, "active") == 0)
		adopt_by_name(name, caller);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	detect_sys_enter(&su);
	lock_detector(name, caller, false, &ex);
	if (strcmp(state, "active") == 0)
	{
		bool		exists;
		ReplicationSlot *s;
		bool		invalid = false;

		LWLockAcquire(ReplicationSlotControlLock, LW_SHARED);
		s = SearchNamedReplicationSlot(ex.slot, false);
		exists = s != NULL;
		if (s)
			invalid = s->data.invalidated_at != InvalidXLogRecPtr ||
				XLogRecPtrIsInvalid(s->data.restart_lsn);
		LWLockRelease(ReplicationSlotControlLock);
		if (!exists || invalid)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("replication slot \"%s\" of detector \"%s\" %s",
							ex.slot, name, exists ? "was invalidated" : "does not exist"),
					 errhint("reset_detector() creates a new slot; rows committed meanwhile are not scored.")));
		if (!SearchSysCacheExists1(RELOID, ObjectIdGetDatum(ex.source)))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_TABLE),
					 errmsg("source table of detector \"%s\" was dropped", name),
					 errhint("drop_detector() removes the detector.")));
	}
	detect_spi_exec("UPDATE anomaly.detectors SET state = $2,"
			  " error_count = CASE WHEN $2 OPERATOR(pg_catalog.=) 'active' THEN 0 ELSE error_count END"
			  " WHERE id OPERATOR(pg_catalog.=) $1", 2, (Oid[]) {INT8OID, TEXTOID},
			  (Datum[]) {Int64GetDatum(ex.id), CStringGetTextDatum(state)}, NULL, false, SPI_OK_UPDATE);
	detect_sys_leave(&su);
	SPI_finish();
}

Datum
anomaly_pause_detector(PG_FUNCTION_ARGS)
{
	set_state(text_to_cstring(PG_GETARG_TEXT_PP(0)), "paused");
	PG_RETURN_VOID();
}

Datum
anomaly_resume_detector(PG_FUNCTION_ARGS)
{
	set_state(text_to_cstring(PG_GETARG_TEXT_PP(0)), "active");
	PG_RETURN_VOID();
}

/* ---------------------------------------------------------------------
 * reset_detector
 */
Datum
anomaly_reset_detector(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	Oid			caller = GetUserId();
	DetectSys			su;
	Existing	ex;
	bool		isnull;
	char	   *slot;
	Oid			owner;
	ReplicationSlot *s;
	bool		exists;
	bool		invalid = false;

	adopt_by_name(name, caller);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	detect_sys_enter(&su);
	detect_spi_exec("SELECT slot_name::pg_catalog.text, owner FROM anomaly.detectors WHERE name OPERATOR(pg_catalog.=) $1", 1,
			  (Oid[]) {TEXTOID}, (Datum[]) {CStringGetTextDatum(name)}, NULL, false, SPI_OK_SELECT);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("detector \"%s\" does not exist", name)));
	slot = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	owner = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	if (!has_privs_of_role(caller, owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be the owner of detector \"%s\"", name)));

	/* A lost slot is made again, before this transaction writes. */
	LWLockAcquire(ReplicationSlotControlLock, LW_SHARED);
	s = SearchNamedReplicationSlot(slot, false);
	exists = s != NULL;
	if (s)
		invalid = s->data.invalidated_at != InvalidXLogRecPtr ||
			XLogRecPtrIsInvalid(s->data.restart_lsn);
	LWLockRelease(ReplicationSlotControlLock);
	if (invalid)
		detect_drop_slot(slot, true);
	if (!exists || invalid)
		detect_create_slot(slot);

	lock_detector(name, caller, false, &ex);
	detect_spi_exec("UPDATE anomaly.detectors SET generation = generation OPERATOR(pg_catalog.+) 1, round_token = $2,"
			  " checkpoint_seq = batch_seq, checkpoint_at = NULL, journal_points = 0,"
			  " rows_scored = 0, rows_filtered = 0, rows_failed = 0, rows_per_s = NULL,"
			  " error_count = 0, last_error = NULL, last_error_at = NULL,"
			  " progress_lsn = GREATEST(progress_lsn, $3),"
			  " state = CASE WHEN state OPERATOR(pg_catalog.=) 'failed' THEN 'active' ELSE state END"
			  " WHERE id OPERATOR(pg_catalog.=) $1", 3, (Oid[]) {INT8OID, INT8OID, PG_LSNOID},
			  (Datum[]) {Int64GetDatum(ex.id), Int64GetDatum(detect_new_token()),
	LSNGetDatum(detect_slot_confirmed(slot))}, NULL, false, SPI_OK_UPDATE);
	forget_learned(ex.id);
	detect_sys_leave(&su);
	SPI_finish();
	detect_forget(ex.id);
	PG_RETURN_VOID();
}

/* ---------------------------------------------------------------------
 * drop_detector
 */
Datum
anomaly_drop_detector(PG_FUNCTION_ARGS)
{
	char	   *name;
	bool		if_exists = !PG_ARGISNULL(1) && PG_GETARG_BOOL(1);
	Oid			caller = GetUserId();
	DetectSys			su;
	Existing	ex;

	name = name_arg(fcinfo);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	detect_sys_enter(&su);
	if (!lock_detector(name, caller, if_exists, &ex))
	{
		ereport(NOTICE,
				(errmsg("detector \"%s\" does not exist, skipping", name)));
		detect_sys_leave(&su);
		SPI_finish();
		PG_RETURN_VOID();
	}
	detect_spi_exec("DELETE FROM anomaly.detectors WHERE id OPERATOR(pg_catalog.=) $1", 1,
			  (Oid[]) {INT8OID}, (Datum[]) {Int64GetDatum(ex.id)}, NULL, false, SPI_OK_DELETE);
	detect_sys_leave(&su);
	SPI_finish();
	detect_forget(ex.id);

	/*
	 * The slot and origin of this database: a detector restored from
	 * another database of this cluster, not adopted yet, still names that
	 * database's.
	 */
	{
		char		slot[NAMEDATALEN];

		detect_object_name(slot, sizeof(slot), MyDatabaseId, ex.id);
		replorigin_drop_by_name(slot, true, false);
		/* slots.c does not release our own round's slot: we do. */
		if (MyReplicationSlot != NULL &&
			strcmp(NameStr(MyReplicationSlot->data.name), slot) == 0)
			detect_release();
		detect_drop_slot(slot, true);
	}
	PG_RETURN_VOID();
}

/* One detector's rounds in process(), for anomaly_try_subxact. */
typedef struct ProcessCall
{
	int64		id;
	const char *name;
	int64		limit;			/* rows at most */
	bool		wait;			/* wait for the tables' locks (one named detector) */
	int64		rows;			/* rows read */
} ProcessCall;

/* Runs rounds of one detector until it is caught up or the limit is read. */
static void
process_one(void *arg)
{
	ProcessCall *c = (ProcessCall *) arg;
	int64		left = c->limit;
	DetectRoundResult r;
	char	   *locked = NULL;

	do
	{
		int64		rows = 0;
		int			batch = (int) Min(left, (int64) detect_batch_rows);

		r = detect_round(c->id, batch, true, &rows, c->wait ? NULL : &locked);
		c->rows += rows;
		left -= rows;
	} while (r == ROUND_MORE && left > 0);
	if (r == ROUND_BUSY)
		ereport(NOTICE,
				(errmsg("detector \"%s\" is being processed by another process, skipped",
						c->name)));
	if (r == ROUND_LOCKED)
		ereport(NOTICE,
				(errmsg("detector \"%s\" skipped: %s is locked by another transaction",
						c->name, locked),
				 errhint("Its rows are scored by a later call once the lock is released; "
						 "process('%s') waits for it.", c->name)));
	detect_confirm_after_commit();
	detect_release();
	detect_progress_end(true);
}

/* The columns of anomaly_process's list of detectors. */
enum
{
	LIST_ID = 1,
	LIST_NAME,
	LIST_OWNER,
	LIST_STATE
};

/* ---------------------------------------------------------------------
 * process(detector, max_rows)
 */
Datum
anomaly_process(PG_FUNCTION_ARGS)
{
	char	   *only = PG_ARGISNULL(0) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(0));
	int64		limit = PG_ARGISNULL(1) ? PG_INT64_MAX : PG_GETARG_INT32(1);
	Oid			caller = GetUserId();
	DetectSys			su;
	int64		total = 0;
	int			n;
	int64	   *ids;
	char	  **names;
	MemoryContext cxt = CurrentMemoryContext;

	if (limit <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_rows must be positive")));
	if (RecoveryInProgress())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("detectors cannot run during recovery")));

	/*
	 * A slot's restart_lsn moves only to a point where decoding saw the
	 * running transactions logged, and no further back than the start of
	 * any of them: the background writer logs them every 15 s at most, so
	 * after a burst of WAL the slot kept its old restart_lsn and the next
	 * call decoded all that WAL again (3 s for 270 MB of other tables'
	 * WAL, call after call).  Logging them now, as creating a slot does,
	 * and before this transaction writes anything (its own rounds would
	 * hold the point back to its start), gives this call's rounds a point
	 * past every row they score; confirming their progress at commit moves
	 * the slot there (reader.c keeps the latest such point).
	 */
	if (XLogStandbyInfoActive() && !TransactionIdIsValid(GetTopTransactionIdIfAny()))
		(void) LogStandbySnapshot();

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	detect_sys_enter(&su);
	detect_spi_exec("SELECT id, name, owner, state FROM anomaly.detectors"
			  " WHERE $1::pg_catalog.text IS NULL OR name OPERATOR(pg_catalog.=) $1 ORDER BY name", 1,
			  (Oid[]) {TEXTOID}, (Datum[]) {only ? CStringGetTextDatum(only) : (Datum) 0},
			  only ? NULL : "n", false, SPI_OK_SELECT);
	if (only && SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("detector \"%s\" does not exist", only)));
	n = 0;
	ids = MemoryContextAlloc(cxt, sizeof(int64) * Max(SPI_processed, 1));
	names = MemoryContextAlloc(cxt, sizeof(char *) * Max(SPI_processed, 1));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		HeapTuple	t = SPI_tuptable->vals[i];
		TupleDesc	td = SPI_tuptable->tupdesc;
		Oid			owner_id = DatumGetObjectId(SPI_getbinval(t, td, LIST_OWNER, &isnull));
		char	   *state = SPI_getvalue(t, td, LIST_STATE);

		if (!has_privs_of_role(caller, owner_id))
		{
			if (only)
				ereport(ERROR,
						(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
						 errmsg("must be the owner of detector \"%s\"", only)));
			continue;
		}
		if (strcmp(state, "active") != 0)
		{
			if (only)
				ereport(NOTICE,
						(errmsg("detector \"%s\" is %s", only, state)));
			continue;
		}
		ids[n] = DatumGetInt64(SPI_getbinval(t, td, LIST_ID, &isnull));
		names[n] = MemoryContextStrdup(cxt, SPI_getvalue(t, td, LIST_NAME));
		n++;
	}
	detect_sys_leave(&su);
	SPI_finish();

	/*
	 * Restored detectors get their slot first: slots cannot be created once
	 * this transaction has written.
	 */
	if (!TransactionIdIsValid(GetTopTransactionIdIfAny()))
	{
		int			kept = 0;
		int			nwaiting = 0;
		int64	   *waiting = MemoryContextAlloc(cxt, sizeof(int64) * Max(n, 1));

		for (int i = 0; i < n; i++)
		{
			if (detect_adopt(ids[i], false) == ADOPT_WAIT)
			{
				ereport(NOTICE,
						(errmsg("detector \"%s\" was restored from a dump and waits for pg_restore to finish",
								names[i])));
				waiting[nwaiting++] = ids[i];
				continue;
			}
			ids[kept] = ids[i];
			names[kept] = names[i];
			kept++;
		}
		n = kept;
		/* Their notes are writes: after every slot was made. */
		for (int i = 0; i < nwaiting; i++)
			(void) detect_adopt(waiting[i], true);
	}

	/* Housekeeping: slots of aborted creations, old scores. */
	if (superuser())
		(void) detect_drop_orphan_slots();
	detect_apply_retention();

	for (int i = 0; i < n; i++)
	{
		ProcessCall c = {ids[i], names[i], limit, only != NULL, 0};
		ErrorData  *edata = anomaly_try_subxact(process_one, &c);

		total += c.rows;
		if (edata)
		{
			detect_after_abort();

			/*
			 * A lock the caller's lock_timeout gave up on is the caller's
			 * choice, not the detector's error: it does not count towards
			 * anomaly.detector_max_retries.
			 */
			if (edata->sqlerrcode != ERRCODE_LOCK_NOT_AVAILABLE)
				detect_record_error(ids[i], edata->message, unpack_sql_state(edata->sqlerrcode),
									detect_error_is_permanent(edata->sqlerrcode));
			ereport(WARNING,
					(errcode(edata->sqlerrcode),
					 errmsg("detector \"%s\": %s", names[i], edata->message),
					 edata->detail ? errdetail_internal("%s", edata->detail) : 0,
					 edata->hint ? errhint("%s", edata->hint) : 0));
			FreeErrorData(edata);
		}
	}
	PG_RETURN_INT64(total);
}
