/*
 * models.c
 *	  A detector's models as values: export_detector_models() gives every
 *	  partition key's model (anomaly.rcf) as of the last committed round,
 *	  import_detector_models() seeds another detector's keys with them.
 *	  Scale-out resharding moves a key to another node with its model, so
 *	  that its scores continue instead of warming up again (see
 *	  docs/scale-out.md).
 *
 * Both lock the detector's row FOR UPDATE, as the management functions
 * do: a round in progress finishes first, and none starts until the
 * caller's transaction ends (rounds skip a locked row).  So the stored
 * forests plus the journal are the whole state, and what an import writes
 * is what the next round reads.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/tuplestore.h"

#include "anomaly.h"
#include "detect/detect.h"
#include "detect/round_internal.h"
#include "compat.h"

PG_FUNCTION_INFO_V1(anomaly_export_detector_models);
PG_FUNCTION_INFO_V1(anomaly_import_detector_models);

/*
 * Locks detector `name`'s row (in the sys context), checks that the caller
 * may manage it, and reads its definition into def.
 */
static void
lock_and_read(const char *name, Oid caller, DetectorDef *def)
{
	bool		isnull;
	int64		id;
	Oid			owner;
	bool		locked;

	detect_spi_exec("SELECT id, owner FROM anomaly.detectors"
					" WHERE name OPERATOR(pg_catalog.=) $1 FOR UPDATE", 1,
					(Oid[]) {TEXTOID}, (Datum[]) {CStringGetTextDatum(name)}, NULL, false,
					SPI_OK_SELECT);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("detector \"%s\" does not exist", name)));
	id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	owner = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	if (!has_privs_of_role(caller, owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be the owner of detector \"%s\"", name),
				 errdetail("It belongs to role %s.", GetUserNameFromId(owner, true))));
	if (!detect_read_def(id, false, def, &locked))
		elog(ERROR, "detector \"%s\" vanished while locked", name);
}

/* qsort comparator of C strings. */
static int
cmp_cstring(const void *a, const void *b)
{
	return strcmp(*(char *const *) a, *(char *const *) b);
}

/*
 * Raises when a partition key is given twice (the result would depend on
 * the order).  Sorted, not compared pairwise: the arrays are the caller's,
 * of any length, and this runs before anything else is checked.
 */
static void
check_unique_keys(Datum *kd, bool *kn, int nk)
{
	char	  **keys = palloc(sizeof(char *) * Max(nk, 1));
	int			n = 0;
	bool		null_seen = false;

	for (int i = 0; i < nk; i++)
	{
		if (kn[i])
		{
			if (null_seen)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("partition key NULL is given twice")));
			null_seen = true;
			continue;
		}
		keys[n++] = TextDatumGetCString(kd[i]);
	}
	CHECK_FOR_INTERRUPTS();
	qsort(keys, n, sizeof(char *), cmp_cstring);
	for (int i = 1; i < n; i++)
		if (strcmp(keys[i - 1], keys[i]) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("partition key %s is given twice", quote_literal_cstr(keys[i]))));
	for (int i = 0; i < n; i++)
		pfree(keys[i]);
	pfree(keys);
}

/*
 * export_detector_models(detector text)
 *	  RETURNS TABLE (partition_key text, model rcf, points bigint)
 *
 * The forests in this process's memory are brought to the last committed
 * round (replaying the journal onto the stored ones, exactly as a round
 * does) and stored, then read back: the values are the models the next
 * round would start from.
 */
Datum
anomaly_export_detector_models(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *name;
	Oid			caller = GetUserId();
	DetectSys	su;
	DetectorDef def;
	DetectorCache *dc;
	MemoryContext outer = CurrentMemoryContext;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("detector must not be null")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	InitMaterializedSRF(fcinfo, 0);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	detect_sys_enter(&su);
	lock_and_read(name, caller, &def);

	dc = detect_get_cache(def.id);
	detect_prepare_forest_plans();
	if (!dc->current || dc->token != def.round_token || dc->forests == NULL)
	{
		detect_cache_init(dc);
		detect_replay_journal(dc, &def);
		dc->token = def.round_token;
		dc->current = true;
	}
	detect_store_all_forests(dc, &def);

	detect_spi_exec("SELECT partition_key, model, points FROM anomaly.detector_forests"
					" WHERE detector_id OPERATOR(pg_catalog.=) $1"
					" ORDER BY partition_key COLLATE \"C\" NULLS FIRST", 1,
					(Oid[]) {INT8OID}, (Datum[]) {Int64GetDatum(def.id)}, NULL, false,
					SPI_OK_SELECT);
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		Datum		values[3];
		bool		nulls[3];

		struct varlena *stored;
		struct varlena *model;

		for (int c = 0; c < 3; c++)
			values[c] = SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, c + 1,
									  &nulls[c]);

		/*
		 * Models are stored out of line: the value returned is the model
		 * itself, not a pointer into detector_forests' TOAST table, which
		 * later rounds rewrite.  The tuplestore copies it; one model at a
		 * time is held here.
		 */
		stored = (struct varlena *) DatumGetPointer(values[1]);
		model = pg_detoast_datum_packed(stored);
		values[1] = PointerGetDatum(model);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		if (model != stored)
			pfree(model);
	}
	detect_sys_leave(&su);
	SPI_finish();
	MemoryContextSwitchTo(outer);
	/* this session does not run the detector: free its forests */
	detect_forget(def.id);
	return (Datum) 0;
}

/*
 * import_detector_models(detector text, partition_keys text[], models rcf[],
 *						  replace boolean DEFAULT false) RETURNS bigint
 *
 * Stores each model as the forest of its key, as of the detector's last
 * round (so that no journal point is replayed onto it), and makes every
 * process drop the forests it holds in memory (a new round_token).  A key
 * that already has a model (stored or in the journal) is refused unless
 * replace: its learning would be lost.  Returns the models stored.
 */
Datum
anomaly_import_detector_models(PG_FUNCTION_ARGS)
{
	char	   *name;
	Oid			caller = GetUserId();
	DetectSys	su;
	DetectorDef def;
	ArrayType  *keys;
	ArrayType  *models;
	Datum	   *kd,
			   *md;
	bool	   *kn,
			   *mn;
	int			nk,
				nm;
	bool		replace;
	Oid			rcf_type;
	int16		typlen;
	bool		typbyval;
	char		typalign;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2) || PG_ARGISNULL(3))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("detector, partition_keys, models and replace must not be null")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	keys = PG_GETARG_ARRAYTYPE_P(1);
	models = PG_GETARG_ARRAYTYPE_P(2);
	replace = PG_GETARG_BOOL(3);
	if (ARR_NDIM(keys) > 1 || ARR_NDIM(models) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("partition_keys and models must be one-dimensional arrays")));
	deconstruct_array(keys, TEXTOID, -1, false, TYPALIGN_INT, &kd, &kn, &nk);
	get_typlenbyvalalign(ARR_ELEMTYPE(models), &typlen, &typbyval, &typalign);
	deconstruct_array(models, ARR_ELEMTYPE(models), typlen, typbyval, typalign, &md, &mn, &nm);
	if (nk != nm)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("partition_keys has %d elements and models %d", nk, nm),
				 errhint("Give one model per partition key, in the same order.")));
	for (int i = 0; i < nm; i++)
		if (mn[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("models must not contain nulls")));
	check_unique_keys(kd, kn, nk);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	detect_sys_enter(&su);
	rcf_type = detect_anomaly_type("rcf");
	if (ARR_ELEMTYPE(models) != rcf_type)
		elog(ERROR, "models must be an array of anomaly.rcf");
	lock_and_read(name, caller, &def);

	for (int i = 0; i < nk; i++)
	{
		Datum		args[2];
		char		nulls[2] = "  ";
		int64		points = detect_check_model(&def, (struct varlena *) DatumGetPointer(md[i]));

		args[0] = Int64GetDatum(def.id);
		args[1] = kn[i] ? (Datum) 0 : kd[i];
		nulls[1] = kn[i] ? 'n' : ' ';
		if (!replace)
		{
			detect_spi_exec("SELECT 1 WHERE EXISTS (SELECT FROM anomaly.detector_forests"
							"  WHERE detector_id OPERATOR(pg_catalog.=) $1"
							"  AND partition_key IS NOT DISTINCT FROM $2)"
							" OR EXISTS (SELECT FROM anomaly.detector_journal j,"
							"  pg_catalog.unnest(j.keys) AS k(key)"
							"  WHERE j.detector_id OPERATOR(pg_catalog.=) $1"
							"  AND k.key IS NOT DISTINCT FROM $2)", 2,
							(Oid[]) {INT8OID, TEXTOID}, args, nulls, false, SPI_OK_SELECT);
			if (SPI_processed > 0)
				ereport(ERROR,
						(errcode(ERRCODE_UNIQUE_VIOLATION),
						 errmsg("detector \"%s\" already has a model for partition key %s", name,
								kn[i] ? "NULL" : quote_literal_cstr(TextDatumGetCString(kd[i]))),
						 errhint("Pass replace => true to overwrite it (what it learned is lost).")));
		}
		detect_store_seeded_forest(def.id, args[1], kn[i], md[i], def.batch_seq, points);
	}
	if (nk > 0)
		detect_spi_exec("UPDATE anomaly.detectors SET round_token = $2"
						" WHERE id OPERATOR(pg_catalog.=) $1", 2, (Oid[]) {INT8OID, INT8OID},
						(Datum[]) {Int64GetDatum(def.id), Int64GetDatum(detect_new_token())},
						NULL, false, SPI_OK_UPDATE);
	detect_sys_leave(&su);
	SPI_finish();
	detect_forget(def.id);
	PG_RETURN_INT64(nk);
}
