/*
 * seed.c
 *	  anomaly.seed_detector(detector, partition_key, model): a detector's
 *	  forest for one partition key becomes a stored model (rcf_train's
 *	  output, or a model taken from another detector), so that the key
 *	  starts warm instead of scoring 0 until its forest has seen a quarter
 *	  of its sample size.
 *
 * The model must have the detector's forest parameters (dimensions =
 * features, number_of_trees, sub_sample_size, time_decay, shingle_size,
 * seed) and transform; it replaces what the key had learned.  Its grader,
 * if any, is replaced by a new one with the detector's grading options (or
 * dropped when the detector does not grade): grading starts from the
 * seeded scores.  The forest is stored as the key's checkpoint covering
 * every journal round so far, and the detector's round token changes, so
 * a worker holding the detector's forests in memory loads them again
 * before its next round.  The caller must own the detector (or have its
 * owner's privileges); nothing the caller controls is evaluated: the model
 * is only decoded, with the detector's own memory bounds since its
 * parameters must be the detector's.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "anomaly.h"
#include "detect/detect.h"
#include "detect/round_internal.h"
#include "compat.h"

PG_FUNCTION_INFO_V1(anomaly_seed_detector);

static void *
seed_alloc(void *ctx, size_t size)
{
	return MemoryContextAllocExtended((MemoryContext) ctx, size,
									  MCXT_ALLOC_HUGE | MCXT_ALLOC_NO_OOM | MCXT_ALLOC_ZERO);
}

static void
seed_free(void *ctx, void *ptr)
{
	pfree(ptr);
}

/* Raises the error for a parameter of the model that is not the detector's. */
static void
check_param(const char *detector, const char *name, double model, double want)
{
	if (model != want)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the model does not fit detector \"%s\"", detector),
				 errdetail("The model has %s %.17g, the detector %.17g.", name, model, want),
				 errhint("Train it with the detector's parameters: rcf_train(point, number_of_trees, "
						 "sub_sample_size, time_decay, shingle_size, seed).")));
}

/*
 * Stores a key's forest (model) for detector id as a checkpoint that covers
 * every journal entry written so far (journal_seq batch_seq, whole): a
 * replay skips every point journalled for the key until then.  Replaces the
 * key's stored forest, if any.  For seed_detector and
 * import_detector_models; inside SPI, as the extension.
 */
void
detect_store_seeded_forest(int64 id, Datum key, bool key_null, Datum model,
						   int64 batch_seq, int64 points)
{
	detect_spi_exec("INSERT INTO anomaly.detector_forests"
					" (detector_id, partition_key, model, journal_seq, journal_pos, points, updated_at)"
					" VALUES ($1, $2, $3, $4, 2147483647, $5, pg_catalog.now())"
					" ON CONFLICT (detector_id, partition_key) DO UPDATE SET"
					" model = excluded.model, journal_seq = excluded.journal_seq,"
					" journal_pos = excluded.journal_pos, points = excluded.points,"
					" updated_at = excluded.updated_at", 5,
					(Oid[]) {INT8OID, TEXTOID, detect_anomaly_type("rcf"), INT8OID, INT8OID},
					(Datum[]) {Int64GetDatum(id), key, model, Int64GetDatum(batch_seq),
					Int64GetDatum(points)},
					key_null ? " n   " : NULL, false, SPI_OK_INSERT);
}

/* The model's transform must be the detector's. */
static void
check_transform(const DetectorDef *def, const RcfTransform *t)
{
	const AnomalyTransformSpec *spec = &def->tspec;
	const RcfTransformParams *p;
	bool		same;

	if (t == NULL)
		same = spec->params.method == RCF_TRANSFORM_NONE;
	else
	{
		p = rcf_transform_params(t);
		same = p->method == spec->params.method && p->dims == spec->params.dims &&
			p->decay == spec->params.decay && p->clip == spec->params.clip;
		for (int i = 0; same && i < p->dims; i++)
			same = rcf_transform_weight(t, i) == (spec->weights ? spec->weights[i] : 1.0);
	}
	if (!same)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the model does not fit detector \"%s\"", def->name),
				 errdetail("Its transform (method, decay or weights) is not the detector's.")));
}

Datum
anomaly_seed_detector(PG_FUNCTION_ARGS)
{
	char	   *name;
	char	   *key;
	struct varlena *model;
	MemoryContext cxt;
	DetectSys	su;
	DetectorDef def;
	bool		locked;
	bool		isnull;
	int64		id;
	Oid			owner;
	RcfAllocator alloc;
	RcfForest  *forest;
	RcfGrader  *grader = NULL;
	RcfTransform *transform = NULL;
	RcfDecodeStatus status;
	const char *detail = NULL;
	const RcfParams *mp;
	struct varlena *stored;
	int64		points;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("the detector and the model must not be NULL"),
				 errhint("A NULL partition_key seeds the forest of the NULL key.")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	key = PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1));
	model = PG_GETARG_VARLENA_PP(2);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	detect_sys_enter(&su);
	/* The row lock waits for a round in progress and holds the next. */
	detect_spi_exec("SELECT id, owner FROM anomaly.detectors WHERE name OPERATOR(pg_catalog.=) $1 FOR UPDATE",
					1, (Oid[]) {TEXTOID}, (Datum[]) {CStringGetTextDatum(name)}, NULL, false,
					SPI_OK_SELECT);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("detector \"%s\" does not exist", name)));
	id = DatumGetInt64(detect_spi_value(0, 1, &isnull));
	owner = DatumGetObjectId(detect_spi_value(0, 2, &isnull));
	if (!has_privs_of_role(su.save_user, owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be the owner of detector \"%s\"", name),
				 errdetail("It belongs to role %s.", GetUserNameFromId(owner, true))));
	if (!detect_read_def(id, false, &def, &locked))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("detector \"%s\" does not exist", name)));

	cxt = AllocSetContextCreate(CurrentMemoryContext, "anomaly seed", ALLOCSET_DEFAULT_SIZES);
	alloc.alloc = seed_alloc;
	alloc.free = seed_free;
	alloc.ctx = cxt;
	/* Kept with the detector's bounding_box_cache_fraction, not the model's. */
	anomaly_check_model_memory((const uint8_t *) VARDATA_ANY(model), VARSIZE_ANY_EXHDR(model),
							   def.params.bounding_box_cache_fraction);
	forest = rcf_model_decode_boxes((const uint8_t *) VARDATA_ANY(model), VARSIZE_ANY_EXHDR(model),
									&alloc, &grader, &transform,
									def.params.bounding_box_cache_fraction, &status, &detail);
	if (forest == NULL)
		ereport(ERROR,
				(errcode(status == RCF_DECODE_NO_MEMORY ? ERRCODE_OUT_OF_MEMORY : ERRCODE_DATA_CORRUPTED),
				 errmsg("the model cannot be decoded"),
				 errdetail("The decoder reports: %s.", detail ? detail : "unknown")));
	mp = rcf_params(forest);
	check_param(name, "dimensions (features)", mp->dims, def.params.dims);
	check_param(name, "shingle_size", mp->shingle_size, def.params.shingle_size);
	check_param(name, "number_of_trees", mp->number_of_trees, def.params.number_of_trees);
	check_param(name, "sub_sample_size", mp->sample_size, def.params.sample_size);
	check_param(name, "time_decay", mp->time_decay, def.params.time_decay);
	if (mp->seed != def.params.seed)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the model does not fit detector \"%s\"", name),
				 errdetail("The model has seed " UINT64_FORMAT ", the detector " UINT64_FORMAT ".",
						   (uint64) mp->seed, (uint64) def.params.seed)));
	check_transform(&def, transform);

	/* The detector's own grader, new. */
	if (grader)
		rcf_grader_free(grader);
	grader = NULL;
	if (def.grade)
	{
		grader = rcf_grader_create(&def.gparams, &def.params, &alloc);
		if (grader == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("could not create a grader for detector \"%s\"", name)));
	}
	stored = (struct varlena *) anomaly_encode_model(forest, grader, transform);
	points = (int64) rcf_updates(forest);

	detect_store_seeded_forest(id, key ? CStringGetTextDatum(key) : (Datum) 0, key == NULL,
							   PointerGetDatum(stored), def.batch_seq, points);
	detect_spi_exec("UPDATE anomaly.detectors SET round_token = $2,"
					" note = pg_catalog.concat('forest of key ', pg_catalog.quote_nullable($3),"
					"   ' seeded from a model of ', $4::pg_catalog.int8, ' points on ', pg_catalog.now())"
					" WHERE id OPERATOR(pg_catalog.=) $1", 4,
					(Oid[]) {INT8OID, INT8OID, TEXTOID, INT8OID},
					(Datum[]) {Int64GetDatum(id), Int64GetDatum(detect_new_token()),
					key ? CStringGetTextDatum(key) : (Datum) 0, Int64GetDatum(points)},
					key ? NULL : "  n ", false, SPI_OK_UPDATE);
	if (grader)
		rcf_grader_free(grader);
	MemoryContextDelete(cxt);
	detect_sys_leave(&su);
	SPI_finish();
	detect_forget(id);
	PG_RETURN_INT64(points);
}
