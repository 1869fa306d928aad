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
 *
 * Forest state.  Forests live in memory between rounds (under
 * anomaly.detector_memory_limit per detector).  Each round appends the
 * points it learned, in order, to detector_journal; a forest evicted from
 * memory, and a few more each round (checkpoints spread over rounds), are
 * stored in detector_forests with the journal position they include, and
 * the journal keeps the rounds after checkpoint_seq, which some forest in
 * memory has not stored yet.  A process that finds its memory
 * stale (another process ran a round, the round aborted, a restart) drops
 * it and replays the journal onto the stored forests, which gives exactly
 * the forests a process without interruption would have.  The row's
 * round_token, new at every round, tells whether memory is current.
 *
 * Feature expressions are evaluated for a whole round at once, over the
 * rows as an array of the source's row type, in the detector owner's
 * context (sysctx.c: as the owner, with SECURITY_RESTRICTED_OPERATION and
 * the owner's pinned search_path, in a subtransaction whose settings are
 * thrown away).  When that fails the rows are split in halves until the
 * failing rows are found; those are recorded in detector_failures.  The
 * rest of a round runs in the sys context, whose SQL is schema-qualified.
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

/* ---------------------------------------------------------------------
 * A detector's definition and progress, as read at the start of a round.
 */
typedef struct DetectorDef
{
	int64		id;
	char	   *name;
	Oid			source;
	char	   *source_name;
	int			nfeatures;
	char	  **features;
	List	   *feature_names;	/* C strings */
	char	   *partition_by;
	char	   *filter;
	Oid			owner;
	char	   *search_path;
	Jsonb	   *source_columns;
	int			nkeys;
	char	  **key_columns;
	char	   *slot_name;
	char	   *state;
	int64		batch_seq;
	int64		round_token;
	bool		row_is_ours;	/* last updated by this transaction */
	XLogRecPtr	progress_lsn;
	XLogRecPtr	last_commit_lsn;
	int64		checkpoint_seq;
	TimestampTz checkpoint_at;
	int64		journal_points;
	double		rows_per_s;
	bool		rows_per_s_null;
	TimestampTz last_batch_at;
	RcfParams	params;
	bool		inserts;
	bool		updates;
	bool		with_explanation;
	bool		with_directionality;
	bool		grade;
	RcfGraderParams gparams;
	char	   *destination;	/* qualified name of the user table, or NULL */
} DetectorDef;

/* The partition key of a forest (isnull: the NULL key). */
typedef struct ForestKey
{
	const char *str;
	bool		isnull;
} ForestKey;

typedef struct ForestEntry
{
	ForestKey	key;			/* hash key: must be first */
	RcfForest  *forest;
	RcfGrader  *grader;			/* NULL when the detector does not grade */
	Size		bytes;
	int64		as_seq;			/* includes journal points up to here */
	int32		as_pos;
	bool		dirty;			/* learned since stored */
	int64		dirty_from;		/* while dirty: the first round it learned in */
	dlist_node	lru;
} ForestEntry;

/* What a process keeps about a detector between rounds. */
typedef struct DetectorCache
{
	int64		id;
	int64		token;			/* round_token the forests are current for */
	bool		current;
	MemoryContext cxt;			/* forests, keys */
	HTAB	   *forests;
	dlist_head	lru;
	Size		bytes;
	double		store_credit;	/* forests due to be stored (see write_round) */

	/* decoding kept between rounds (the worker) */
	MemoryContext decoding_cxt;
	LogicalDecodingContext *ctx;
	char	   *decoding_sig;
	bool		holds_slot;
	XLogRecPtr	confirm_lsn;	/* to confirm once the round committed */

	struct DetectorCache *next;
} DetectorCache;

static DetectorCache *caches = NULL;
static DetectorCache *slot_owner = NULL;	/* whose slot we hold */

/* One decoded row, kept as the bytes of its message. */
typedef struct RoundRow
{
	XLogRecPtr	commit_lsn;
	TimestampTz commit_time;
	int			rel;			/* index into RoundData.rels */
	char		kind;
	const uint8 *data;			/* the message after relid and natts */
	uint32		len;
} RoundRow;

/* Everything one round decodes. */
typedef struct RoundData
{
	MemoryContext cxt;
	XLogRecPtr	skip_upto;		/* transactions at or below: consumed */
	int64		rows;			/* rows kept */
	int64		skipped_rows;	/* rows of consumed transactions */
	RoundRow   *row;
	int64		maxrows;
	DwRelation *rels;
	StringInfoData *relmsgs;	/* raw bodies, to recognise repeats */
	int			nrels;
	int			maxrels;
	int			cur_rel;		/* last relation message of this xact */
	bool		in_xact;
	bool		skip_xact;
	XLogRecPtr	cur_commit_lsn;
	TimestampTz cur_commit_time;
	XLogRecPtr	last_commit_lsn;	/* highest commit consumed */
	TimestampTz last_commit_time;
} RoundData;

/* Feature values of one row after evaluation. */
typedef struct RowResult
{
	bool		ok;
	bool		filtered;
	bool		has_null;
	double	   *values;
	bool	   *nulls;			/* per feature */
	char	   *key;			/* NULL: the NULL key */
	Datum		source_key;		/* jsonb, or 0 */
	double		score;
	double		grade;
	bool		is_anomaly;
	double	   *expected;		/* the grader's expected values, or NULL */
	Jsonb	   *explanation;
	char	   *error;
	char	   *sqlstate;
} RowResult;

/* Plans of one round (SPI, freed with it). */
typedef struct RoundPlans
{
	SPIPlanPtr	load_key;
	SPIPlanPtr	load_null;
	SPIPlanPtr	store;
	Oid			rcf_type;
} RoundPlans;

static RoundPlans plans;

static Oid	anomaly_type(const char *name);

/* ---------------------------------------------------------------------
 * Small helpers
 */

static Datum
spi_value(int row, int col, bool *isnull)
{
	return SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col,
						 isnull);
}

static char *
spi_text(int row, int col)
{
	bool		isnull;
	Datum		d = spi_value(row, col, &isnull);

	return isnull ? NULL : TextDatumGetCString(d);
}

/* Text array datum to C strings (NULL elements allowed as NULL). */
static int
text_array_to_cstrings(Datum d, char ***out)
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
	" round_token, progress_lsn, last_commit_lsn, checkpoint_seq," \
	" checkpoint_at, journal_points, rows_per_s, last_batch_at," \
	" " OPT("number_of_trees") "::pg_catalog.int4, " OPT("sub_sample_size") "::pg_catalog.int4," \
	" " OPT("time_decay") "::pg_catalog.int8, " OPT("shingle_size") "::pg_catalog.int4," \
	" " OPT("seed") "::pg_catalog.int8, " OPS " OPERATOR(pg_catalog.?) 'insert'," \
	" " OPS " OPERATOR(pg_catalog.?) 'update', " OPT("with_explanation") "::pg_catalog.bool," \
	" " OPT("with_directionality") "::pg_catalog.bool," \
	" ARRAY(SELECT pg_catalog.jsonb_array_elements_text(options OPERATOR(pg_catalog.->) 'feature_names'))," \
	" " OPT("destination") "," \
	" xmin, COALESCE(" OPT("grade") "::pg_catalog.bool, false)," \
	" " OPT("z_factor") "::pg_catalog.float8, " OPT("score_floor") "::pg_catalog.float8," \
	" " OPT("ignore_near_expected_above") "::pg_catalog.float8," \
	" " OPT("ignore_near_expected_below") "::pg_catalog.float8," \
	" " OPT("ignore_near_expected_above_ratio") "::pg_catalog.float8," \
	" " OPT("ignore_near_expected_below_ratio") "::pg_catalog.float8," \
	" " OPT("suppress") "::pg_catalog.float8::pg_catalog.int4, " OPT("score_horizon") "::pg_catalog.float8," \
	" COALESCE(" OPT("cusum_drift") "::pg_catalog.float8, 2)," \
	" COALESCE(" OPT("cusum_threshold") "::pg_catalog.float8, 12)"

/*
 * Reads detector id's row into def (in CurrentMemoryContext).  lock:
 * FOR UPDATE SKIP LOCKED; returns false when the row is missing or locked
 * (*locked tells which).
 */
static bool
read_def(int64 id, bool lock, DetectorDef *def, bool *locked)
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
	def->name = spi_text(0, col++);
	NEXT();
	def->source = DatumGetObjectId(d);
	def->source_name = spi_text(0, col++);
	NEXT();
	def->nfeatures = text_array_to_cstrings(d, &def->features);
	def->partition_by = spi_text(0, col++);
	def->filter = spi_text(0, col++);
	NEXT();
	def->owner = DatumGetObjectId(d);
	def->search_path = spi_text(0, col++);
	NEXT();
	def->source_columns = DatumGetJsonbPCopy(d);
	NEXT();
	if (!isnull)
		def->nkeys = text_array_to_cstrings(d, &def->key_columns);
	def->slot_name = pstrdup(NameStr(*DatumGetName(SPI_getbinval(tup, td, col++, &isnull))));
	def->state = spi_text(0, col++);
	NEXT();
	def->batch_seq = DatumGetInt64(d);
	NEXT();
	def->round_token = DatumGetInt64(d);
	NEXT();
	def->progress_lsn = DatumGetLSN(d);
	NEXT();
	def->last_commit_lsn = DatumGetLSN(d);
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
		int			n = text_array_to_cstrings(d, &names);

		def->feature_names = NIL;
		for (int i = 0; i < n; i++)
			def->feature_names = lappend(def->feature_names, names[i]);
		if (n != def->nfeatures)
			def->feature_names = NIL;
	}
	def->destination = spi_text(0, col++);
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
#undef NEXT
	if (rcf_params_check(&def->params) != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("detector \"%s\" has invalid forest parameters: %s",
						def->name, rcf_params_check(&def->params))));
	return true;
}

/* ---------------------------------------------------------------------
 * Caches and forests
 */

static uint32
forest_key_hash(const void *key, Size keysize)
{
	const ForestKey *k = key;

	if (k->isnull)
		return 0x5bd1e995;
	return hash_bytes((const unsigned char *) k->str, strlen(k->str));
}

static int
forest_key_match(const void *a, const void *b, Size keysize)
{
	const ForestKey *x = a;
	const ForestKey *y = b;

	if (x->isnull || y->isnull)
		return (x->isnull && y->isnull) ? 0 : 1;
	return strcmp(x->str, y->str);
}

static DetectorCache *
get_cache(int64 id)
{
	DetectorCache *dc;

	for (dc = caches; dc; dc = dc->next)
		if (dc->id == id)
			return dc;
	dc = MemoryContextAllocZero(TopMemoryContext, sizeof(DetectorCache));
	dc->id = id;
	dc->next = caches;
	caches = dc;
	return dc;
}

/* Frees every forest of dc; its memory is no longer current. */
static void
cache_clear(DetectorCache *dc)
{
	if (dc->cxt)
		MemoryContextDelete(dc->cxt);
	dc->cxt = NULL;
	dc->forests = NULL;
	dlist_init(&dc->lru);
	dc->bytes = 0;
	dc->store_credit = 0.0;
	dc->current = false;
}

static void
cache_init(DetectorCache *dc)
{
	HASHCTL		ctl;

	cache_clear(dc);
	dc->cxt = AllocSetContextCreate(TopMemoryContext, "anomaly detector forests",
									ALLOCSET_DEFAULT_SIZES);
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(ForestKey);
	ctl.entrysize = sizeof(ForestEntry);
	ctl.hash = forest_key_hash;
	ctl.match = forest_key_match;
	ctl.hcxt = dc->cxt;
	dc->forests = hash_create("anomaly detector forests", 256, &ctl,
							  HASH_ELEM | HASH_FUNCTION | HASH_COMPARE | HASH_CONTEXT);
	dlist_init(&dc->lru);
}

void
detect_forget(int64 id)
{
	DetectorCache *dc;

	for (dc = caches; dc; dc = dc->next)
		if (dc->id == id)
			cache_clear(dc);
}

static void *
forest_alloc(void *ctx, size_t size)
{
	return MemoryContextAllocExtended((MemoryContext) ctx, size,
									  MCXT_ALLOC_HUGE | MCXT_ALLOC_NO_OOM);
}

static void *
forest_alloc_zero(void *ctx, size_t size)
{
	return MemoryContextAllocExtended((MemoryContext) ctx, size,
									  MCXT_ALLOC_HUGE | MCXT_ALLOC_NO_OOM | MCXT_ALLOC_ZERO);
}

static void
forest_free(void *ctx, void *ptr)
{
	pfree(ptr);
}

/* Prepares the plans that load and store forests. */
static void
prepare_forest_plans(void)
{
	Oid			t2[2] = {INT8OID, TEXTOID};
	Oid			t6[6];

	plans.rcf_type = anomaly_type("rcf");
	plans.load_key = detect_spi_prepare("SELECT model, journal_seq, journal_pos FROM anomaly.detector_forests"
										" WHERE detector_id OPERATOR(pg_catalog.=) $1"
										" AND partition_key OPERATOR(pg_catalog.=) $2", 2, t2);
	plans.load_null = detect_spi_prepare("SELECT model, journal_seq, journal_pos FROM anomaly.detector_forests"
										 " WHERE detector_id OPERATOR(pg_catalog.=) $1"
										 " AND partition_key IS NULL", 1, t2);
	t6[0] = INT8OID;
	t6[1] = TEXTOID;
	t6[2] = plans.rcf_type;
	t6[3] = INT8OID;
	t6[4] = INT4OID;
	t6[5] = INT8OID;
	plans.store = detect_spi_prepare("INSERT INTO anomaly.detector_forests AS f"
							  " (detector_id, partition_key, model, journal_seq, journal_pos, points, updated_at)"
							  " VALUES ($1, $2, $3, $4, $5, $6, pg_catalog.now())"
							  " ON CONFLICT (detector_id, partition_key) DO UPDATE SET"
							  " model = excluded.model, journal_seq = excluded.journal_seq,"
							  " journal_pos = excluded.journal_pos, points = excluded.points,"
							  " updated_at = excluded.updated_at", 6, t6);
}

/* Stores entry's forest in detector_forests. */
static void
store_forest(DetectorDef *def, ForestEntry *e)
{
	size_t		size = rcf_model_encoded_size(e->forest, e->grader);
	struct varlena *model;
	Datum		args[6];
	char		nulls[6] = "      ";
	int			rc;

	if (size == 0 || size > MaxAllocSize - VARHDRSZ)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("a forest of detector \"%s\" is too large to store (%zu bytes)",
						def->name, size)));
	model = palloc(VARHDRSZ + size);
	SET_VARSIZE(model, VARHDRSZ + size);
	if (rcf_model_encode(e->forest, e->grader, (uint8_t *) VARDATA(model), size) != size)
		elog(ERROR, "could not encode a forest of detector \"%s\"", def->name);
	args[0] = Int64GetDatum(def->id);
	if (e->key.isnull)
	{
		args[1] = (Datum) 0;
		nulls[1] = 'n';
	}
	else
		args[1] = CStringGetTextDatum(e->key.str);
	args[2] = PointerGetDatum(model);
	args[3] = Int64GetDatum(e->as_seq);
	args[4] = Int32GetDatum(e->as_pos);
	args[5] = Int64GetDatum((int64) rcf_updates(e->forest));
	rc = detect_spi_execute_plan(plans.store, args, nulls, false, 0);
	if (rc != SPI_OK_INSERT)
		elog(ERROR, "could not store a forest of detector \"%s\" (%d)", def->name, rc);
	pfree(model);
	e->dirty = false;
}

/* Orders forests by the first round they learned in since stored. */
static int
cmp_dirty_from(const void *a, const void *b)
{
	int64		x = (*(ForestEntry *const *) a)->dirty_from;
	int64		y = (*(ForestEntry *const *) b)->dirty_from;

	return (x > y) - (x < y);
}

/* Removes entry from memory, storing it first if it learned anything. */
static void
evict_forest(DetectorCache *dc, DetectorDef *def, ForestEntry *e)
{
	const char *key = e->key.str;

	if (e->dirty)
		store_forest(def, e);
	dlist_delete(&e->lru);
	dc->bytes -= e->bytes;
	rcf_free(e->forest);
	if (e->grader)
		rcf_grader_free(e->grader);
	hash_search(dc->forests, &e->key, HASH_REMOVE, NULL);
	if (key)
		pfree((void *) key);
}

/* True when a stored forest was built with def's parameters. */
static bool
same_params(const RcfParams *a, const RcfParams *b)
{
	return a->dims == b->dims && a->shingle_size == b->shingle_size &&
		a->number_of_trees == b->number_of_trees &&
		a->sample_size == b->sample_size && a->time_decay == b->time_decay &&
		a->seed == b->seed;
}

/*
 * The forest of partition key `key` (NULL: the NULL key): from memory, else
 * from detector_forests, else new.  May evict others to stay under the
 * memory limit.
 */
static ForestEntry *
get_forest(DetectorCache *dc, DetectorDef *def, const char *key)
{
	ForestKey	k;
	ForestEntry *e;
	bool		found;
	Size		limit = (Size) detect_memory_limit_mb * 1024 * 1024;
	Size		need = rcf_arena_size(&def->params);
	Datum		args[2];
	int			rc;
	MemoryContext old;

	k.str = key;
	k.isnull = (key == NULL);
	e = hash_search(dc->forests, &k, HASH_FIND, NULL);
	if (e)
	{
		dlist_move_tail(&dc->lru, &e->lru);
		return e;
	}

	while (dc->bytes + need > limit && !dlist_is_empty(&dc->lru))
		evict_forest(dc, def, dlist_head_element(ForestEntry, lru, &dc->lru));

	args[0] = Int64GetDatum(def->id);
	if (key)
	{
		args[1] = CStringGetTextDatum(key);
		rc = detect_spi_execute_plan(plans.load_key, args, NULL, false, 1);
	}
	else
		rc = detect_spi_execute_plan(plans.load_null, args, NULL, false, 1);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "could not load a forest of detector \"%s\"", def->name);

	old = MemoryContextSwitchTo(dc->cxt);
	k.str = key ? pstrdup(key) : NULL;
	MemoryContextSwitchTo(old);
	e = hash_search(dc->forests, &k, HASH_ENTER, &found);
	Assert(!found);
	e->key = k;
	e->forest = NULL;
	e->grader = NULL;
	e->dirty = false;
	e->dirty_from = 0;
	e->as_seq = 0;
	e->as_pos = 0;
	dlist_push_tail(&dc->lru, &e->lru);

	PG_TRY();
	{
		if (SPI_processed > 0)
		{
			bool		isnull;
			struct varlena *model = (struct varlena *) DatumGetPointer(spi_value(0, 1, &isnull));
			RcfAllocator alloc = {forest_alloc, forest_free, dc->cxt};
			RcfDecodeStatus status;
			const char *detail = NULL;

			model = pg_detoast_datum_packed(model);
			e->forest = rcf_model_decode((const uint8_t *) VARDATA_ANY(model),
										 VARSIZE_ANY_EXHDR(model), &alloc, &e->grader,
										 &status, &detail);
			if (e->forest == NULL)
				ereport(ERROR,
						(errcode(status == RCF_DECODE_NO_MEMORY ? ERRCODE_OUT_OF_MEMORY : ERRCODE_DATA_CORRUPTED),
						 errmsg("stored forest of detector \"%s\" cannot be decoded", def->name),
						 errdetail("The decoder reports: %s.", detail ? detail : "unknown")));
			if (!same_params(rcf_params(e->forest), &def->params) ||
				(def->grade != (e->grader != NULL)))
				ereport(ERROR,
						(errcode(ERRCODE_DATA_CORRUPTED),
						 errmsg("stored forest of detector \"%s\" has other parameters than the detector",
								def->name)));
			e->as_seq = DatumGetInt64(spi_value(0, 2, &isnull));
			e->as_pos = DatumGetInt32(spi_value(0, 3, &isnull));
		}
		else
		{
			/*
			 * Zeroed memory: the engine leaves the shingle of a new forest
			 * unset until it is full, and the decoder refuses a stored
			 * forest whose shingle holds non-finite garbage.
			 */
			RcfAllocator zalloc = {forest_alloc_zero, forest_free, dc->cxt};

			if (rcf_arena_size(&def->params) > MaxAllocHugeSize / 2)
				ereport(ERROR,
						(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
						 errmsg("a forest of detector \"%s\" would need %zu bytes of memory",
								def->name, rcf_arena_size(&def->params))));
			e->forest = rcf_create(&def->params, &zalloc);
			if (e->forest == NULL)
				ereport(ERROR,
						(errcode(ERRCODE_OUT_OF_MEMORY),
						 errmsg("could not create a forest for detector \"%s\"", def->name)));
			if (def->grade)
			{
				RcfAllocator alloc = {forest_alloc, forest_free, dc->cxt};

				e->grader = rcf_grader_create(&def->gparams, &def->params, &alloc);
				if (e->grader == NULL)
					ereport(ERROR,
							(errcode(ERRCODE_OUT_OF_MEMORY),
							 errmsg("could not create a grader for detector \"%s\"", def->name)));
			}
		}
	}
	PG_CATCH();
	{
		if (e->forest)
			rcf_free(e->forest);
		if (e->grader)
			rcf_grader_free(e->grader);
		dlist_delete(&e->lru);
		hash_search(dc->forests, &k, HASH_REMOVE, NULL);
		PG_RE_THROW();
	}
	PG_END_TRY();
	e->bytes = rcf_bytes(e->forest);
	dc->bytes += e->bytes;
	return e;
}

/* True when position (seq, pos) comes after what entry holds. */
static inline bool
after(ForestEntry *e, int64 seq, int32 pos)
{
	return seq > e->as_seq || (seq == e->as_seq && pos > e->as_pos);
}

/*
 * Rebuilds the forests in memory from the stored ones and the journal:
 * every journal point after a forest's stored position is learned again.
 */
static void
replay_journal(DetectorCache *dc, DetectorDef *def)
{
	Oid			types[2] = {INT8OID, INT8OID};
	Datum		args[2] = {Int64GetDatum(def->id), Int64GetDatum(def->checkpoint_seq)};
	SPIPlanPtr	plan;
	Portal		portal;
	int			dims = def->nfeatures;

	plan = detect_spi_prepare("SELECT seq, keys, points FROM anomaly.detector_journal"
							  " WHERE detector_id OPERATOR(pg_catalog.=) $1"
							  " AND seq OPERATOR(pg_catalog.>) $2 ORDER BY seq", 2, types);
	portal = detect_spi_cursor_open(plan, args, NULL, false);
	for (;;)
	{
		SPITupleTable *tt;
		uint64		n;

		SPI_cursor_fetch(portal, true, 16);
		n = SPI_processed;
		tt = SPI_tuptable;
		if (n == 0)
			break;
		for (uint64 r = 0; r < n; r++)
		{
			bool		isnull;
			int64		seq = DatumGetInt64(SPI_getbinval(tt->vals[r], tt->tupdesc, 1, &isnull));
			ArrayType  *keys = DatumGetArrayTypeP(SPI_getbinval(tt->vals[r], tt->tupdesc, 2, &isnull));
			ArrayType  *points = DatumGetArrayTypeP(SPI_getbinval(tt->vals[r], tt->tupdesc, 3, &isnull));
			Datum	   *kd;
			bool	   *kn;
			int			nk;
			double	   *pv;

			deconstruct_array(keys, TEXTOID, -1, false, TYPALIGN_INT, &kd, &kn, &nk);
			if (ARR_HASNULL(points) || ArrayGetNItems(ARR_NDIM(points), ARR_DIMS(points)) != nk * dims)
				ereport(ERROR,
						(errcode(ERRCODE_DATA_CORRUPTED),
						 errmsg("journal entry " INT64_FORMAT " of detector \"%s\" is inconsistent",
								seq, def->name)));
			pv = (double *) ARR_DATA_PTR(points);
			for (int i = 0; i < nk; i++)
			{
				char	   *key = kn[i] ? NULL : TextDatumGetCString(kd[i]);
				ForestEntry *e = get_forest(dc, def, key);

				if (after(e, seq, i + 1))
				{
					if (e->grader)
					{
						RcfGrade	grade;

						rcf_grader_assess(e->grader, e->forest, pv + (Size) i * dims, &grade, NULL);
						rcf_grader_learn(e->grader, e->forest, pv + (Size) i * dims, &grade);
					}
					else
						rcf_update(e->forest, pv + (Size) i * dims);
					e->as_seq = seq;
					e->as_pos = i + 1;
					if (!e->dirty)
						e->dirty_from = seq;
					e->dirty = true;
				}
				if (key)
					pfree(key);
			}
		}
		SPI_freetuptable(tt);
	}
	SPI_cursor_close(portal);
}

/*
 * The forests in memory that learned since they were stored, those that
 * have waited longest first; *n is set to how many.
 */
static ForestEntry **
waiting_forests(DetectorCache *dc, int *n)
{
	dlist_iter	it;
	ForestEntry **dirty;

	dirty = palloc(sizeof(ForestEntry *) * Max(hash_get_num_entries(dc->forests), 1));
	*n = 0;
	dlist_foreach(it, &dc->lru)
	{
		ForestEntry *e = dlist_container(ForestEntry, lru, it.cur);

		if (e->dirty)
			dirty[(*n)++] = e;
	}
	qsort(dirty, *n, sizeof(ForestEntry *), cmp_dirty_from);
	return dirty;
}

/* ---------------------------------------------------------------------
 * Decoding
 */

static void
collect_prepare(LogicalDecodingContext *ctx, XLogRecPtr lsn, TransactionId xid,
				bool last_write)
{
	resetStringInfo(ctx->out);
}

/* Takes one message of the output plugin. */
static void
collect_write(LogicalDecodingContext *ctx, XLogRecPtr lsn, TransactionId xid,
			  bool last_write)
{
	RoundData  *rd = (RoundData *) ctx->output_writer_private;
	DwReader	r;
	char		kind;
	MemoryContext old;

	if (rd == NULL)
		elog(ERROR, "anomaly decoding output without a round");
	r.p = (const uint8 *) ctx->out->data;
	r.end = r.p + ctx->out->len;
	if (dw_get_u8(&r) != DETECT_WIRE_VERSION)
		elog(ERROR, "unexpected anomaly decoding message version");
	kind = (char) dw_get_u8(&r);
	old = MemoryContextSwitchTo(rd->cxt);
	switch (kind)
	{
		case DW_BEGIN:
			rd->cur_commit_lsn = dw_get_u64(&r);
			(void) dw_get_u64(&r);
			rd->cur_commit_time = (TimestampTz) dw_get_u64(&r);
			rd->in_xact = true;
			rd->skip_xact = rd->cur_commit_lsn <= rd->skip_upto;
			rd->cur_rel = -1;
			break;
		case DW_RELATION:
			{
				Size		len = r.end - r.p;
				int			i;

				for (i = rd->nrels - 1; i >= 0; i--)
					if (rd->relmsgs[i].len == len &&
						memcmp(rd->relmsgs[i].data, r.p, len) == 0)
						break;
				if (i < 0)
				{
					if (rd->nrels == rd->maxrels)
					{
						rd->maxrels = Max(4, rd->maxrels * 2);
						rd->rels = rd->rels ? repalloc(rd->rels, sizeof(DwRelation) * rd->maxrels) :
							palloc(sizeof(DwRelation) * rd->maxrels);
						rd->relmsgs = rd->relmsgs ? repalloc(rd->relmsgs, sizeof(StringInfoData) * rd->maxrels) :
							palloc(sizeof(StringInfoData) * rd->maxrels);
					}
					i = rd->nrels++;
					initStringInfo(&rd->relmsgs[i]);
					appendBinaryStringInfo(&rd->relmsgs[i], (const char *) r.p, len);
					dw_read_relation(&r, &rd->rels[i], rd->cxt);
				}
				rd->cur_rel = i;
				break;
			}
		case DW_INSERT:
		case DW_UPDATE:
			{
				RoundRow   *row;
				Oid			relid = dw_get_u32(&r);
				int			natts = dw_get_u16(&r);
				Size		len = r.end - r.p;
				uint8	   *copy;

				if (rd->cur_rel < 0 || rd->rels[rd->cur_rel].relid != relid ||
					rd->rels[rd->cur_rel].natts != natts)
					elog(ERROR, "anomaly decoding row without its relation");
				if (rd->skip_xact)
				{
					rd->skipped_rows++;
					break;
				}
				if (rd->rows == rd->maxrows)
				{
					rd->maxrows = Max(1024, rd->maxrows * 2);
					rd->row = rd->row ? repalloc_huge(rd->row, sizeof(RoundRow) * rd->maxrows) :
						palloc(sizeof(RoundRow) * rd->maxrows);
				}
				row = &rd->row[rd->rows++];
				copy = palloc(Max(len, 1));
				memcpy(copy, r.p, len);
				row->commit_lsn = rd->cur_commit_lsn;
				row->commit_time = rd->cur_commit_time;
				row->rel = rd->cur_rel;
				row->kind = kind;
				row->data = copy;
				row->len = len;
				break;
			}
		case DW_COMMIT:
			if (!rd->skip_xact && rd->in_xact)
			{
				rd->last_commit_lsn = rd->cur_commit_lsn;
				rd->last_commit_time = rd->cur_commit_time;
			}
			rd->in_xact = false;
			break;
		default:
			elog(ERROR, "unknown anomaly decoding message kind %d", kind);
	}
	MemoryContextSwitchTo(old);
}

/* The origins whose changes the decoder skips: every detector's here. */
static char *
skip_origins_option(void)
{
	StringInfoData buf;
	char		prefix[64];

	initStringInfo(&buf);
	snprintf(prefix, sizeof(prefix), "anomaly_%u_%%", MyDatabaseId);
	detect_spi_exec("SELECT pg_catalog.string_agg(roident::pg_catalog.text, ',')"
					" FROM pg_catalog.pg_replication_origin"
					" WHERE roname OPERATOR(pg_catalog.~~) $1",
			 1, (Oid[]) {TEXTOID}, (Datum[]) {CStringGetTextDatum(prefix)}, NULL,
			 true, SPI_OK_SELECT);
	{
		char	   *s = spi_text(0, 1);

		appendStringInfoString(&buf, s ? s : "");
	}
	return buf.data;
}

/* Releases the decoding context and the slot kept for dc. */
static void
release_decoding(DetectorCache *dc)
{
	if (dc->ctx)
	{
		LogicalDecodingContext *ctx = dc->ctx;

		dc->ctx = NULL;
		ctx->output_writer_private = NULL;
		FreeDecodingContext(ctx);
	}
	/* decoding_sig and the options live in decoding_cxt */
	if (dc->decoding_cxt)
		MemoryContextDelete(dc->decoding_cxt);
	dc->decoding_cxt = NULL;
	dc->decoding_sig = NULL;
	if (dc->holds_slot && MyReplicationSlot != NULL)
		ReplicationSlotRelease();
	dc->holds_slot = false;
	dc->confirm_lsn = InvalidXLogRecPtr;
	if (slot_owner == dc)
		slot_owner = NULL;
}

void
detect_release(void)
{
	DetectorCache *dc;

	for (dc = caches; dc; dc = dc->next)
		release_decoding(dc);
	if (MyReplicationSlot != NULL)
		ReplicationSlotRelease();
	slot_owner = NULL;
}

/* Moves the slot we hold to lsn when that is ahead of it. */
static void
confirm_slot(XLogRecPtr lsn)
{
	XLogRecPtr	confirmed;

	if (MyReplicationSlot == NULL || XLogRecPtrIsInvalid(lsn))
		return;
	SpinLockAcquire(&MyReplicationSlot->mutex);
	confirmed = MyReplicationSlot->data.confirmed_flush;
	SpinLockRelease(&MyReplicationSlot->mutex);
	if (lsn <= confirmed)
		return;
	LogicalConfirmReceivedLocation(lsn);
	ReplicationSlotMarkDirty();
	ReplicationSlotsComputeRequiredXmin(false);
	ReplicationSlotsComputeRequiredLSN();
}

/*
 * Makes sure we hold dc's slot with a decoding context for def.  Returns
 * false when somebody else holds the slot.
 */
static bool
open_decoding(DetectorCache *dc, DetectorDef *def)
{
	StringInfoData sig;
	List	   *options;
	bool		exists;
	pid_t		holder = 0;
	ReplicationSlot *s;
	MemoryContext old;

	initStringInfo(&sig);
	appendStringInfo(&sig, "%u/%s%s", def->source,
					 def->inserts ? "insert," : "", def->updates ? "update" : "");
	if (dc->ctx && dc->decoding_sig && strcmp(dc->decoding_sig, sig.data) == 0)
		return true;
	release_decoding(dc);
	if (MyReplicationSlot != NULL)
		detect_release();

	LWLockAcquire(ReplicationSlotControlLock, LW_SHARED);
	s = SearchNamedReplicationSlot(def->slot_name, false);
	exists = (s != NULL);
	if (s)
	{
		SpinLockAcquire(&s->mutex);
		holder = s->active_pid;
		SpinLockRelease(&s->mutex);
	}
	LWLockRelease(ReplicationSlotControlLock);
	if (!exists)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("replication slot \"%s\" of detector \"%s\" does not exist",
						def->slot_name, def->name),
				 errhint("reset_detector() creates a new slot; rows committed meanwhile are not scored.")));
	if (holder != 0 && holder != MyProcPid)
		return false;

	ReplicationSlotAcquire(def->slot_name, true);
	dc->holds_slot = true;
	slot_owner = dc;
	if (MyReplicationSlot->data.invalidated_at != InvalidXLogRecPtr ||
		XLogRecPtrIsInvalid(MyReplicationSlot->data.restart_lsn))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("replication slot \"%s\" of detector \"%s\" was invalidated (its WAL was removed)",
						def->slot_name, def->name),
				 errhint("reset_detector() creates a new slot; rows committed meanwhile are not scored. "
						 "Raise max_slot_wal_keep_size to keep more WAL for slow detectors.")));
	/* The slot may be behind what is committed (crash): catch it up. */
	if (!def->row_is_ours)
		confirm_slot(def->progress_lsn);

	dc->decoding_cxt = AllocSetContextCreate(TopMemoryContext, "anomaly detector decoding",
											 ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(dc->decoding_cxt);
	options = list_make3(makeDefElem("proto_version", (Node *) makeString(pstrdup("1")), -1),
						 makeDefElem("relations", (Node *) makeString(psprintf("%u", def->source)), -1),
						 makeDefElem("operations",
									 (Node *) makeString(pstrdup(def->inserts && def->updates ? "insert,update" :
																 def->updates ? "update" : "insert")), -1));
	{
		char	   *skip = skip_origins_option();

		MemoryContextSwitchTo(dc->decoding_cxt);
		if (skip[0] != '\0')
			options = lappend(options, makeDefElem("skip_origins",
												   (Node *) makeString(pstrdup(skip)), -1));
	}
	dc->ctx = CreateDecodingContext(InvalidXLogRecPtr, options, false,
									XL_ROUTINE(.page_read = read_local_xlog_page,
											   .segment_open = wal_segment_open,
											   .segment_close = wal_segment_close),
									collect_prepare, collect_write, NULL);
	XLogBeginRead(dc->ctx->reader, MyReplicationSlot->data.restart_lsn);
	dc->decoding_sig = MemoryContextStrdup(dc->decoding_cxt, sig.data);
	MemoryContextSwitchTo(old);
	return true;
}

/*
 * Flushes the WAL inserted so far and returns the flushed position, where a
 * round stops decoding.  Decoding reads flushed WAL only, and waits on a
 * record that is not wholly flushed: with synchronous_commit off the WAL
 * writer flushes whole pages, often ending mid-record, and only every
 * wal_writer_delay, so a round could wait for it (up to 200 ms by default)
 * and leave rows committed meanwhile to the next round.  One flush per
 * round; nothing to do when commits are synchronous.
 */
static XLogRecPtr
flush_for_decoding(void)
{
	XLogRecPtr	upto = GetXLogInsertRecPtr();
	uint64		offset = XLogSegmentOffset(upto, wal_segment_size);

	/*
	 * When the last record ended at a page boundary, the insert position
	 * lies past the next page's header, which is not written yet: asking
	 * to flush that far fails ("xlog flush request ... is not satisfied").
	 * What was inserted ends at the boundary itself.
	 */
	if (offset == SizeOfXLogLongPHD)
		upto -= SizeOfXLogLongPHD;
	else if (offset % XLOG_BLCKSZ == SizeOfXLogShortPHD && offset > XLOG_BLCKSZ)
		upto -= SizeOfXLogShortPHD;
	XLogFlush(upto);
	return GetFlushRecPtr(NULL);
}

/*
 * Decodes until the WAL flushed when we started is read, or max_rows rows
 * were kept (always at a transaction boundary).  Returns true when caught
 * up.
 */
static bool
decode_rows(DetectorCache *dc, RoundData *rd, int max_rows, XLogRecPtr *end)
{
	LogicalDecodingContext *ctx = dc->ctx;
	XLogRecPtr	end_of_wal = flush_for_decoding();
	bool		caught_up = true;

	MemoryContext old;

	ctx->output_writer_private = rd;
	InvalidateSystemCaches();
	/* The reader allocates its buffers lazily, where it is called from. */
	old = MemoryContextSwitchTo(ctx->context);
	PG_TRY();
	{
		while (ctx->reader->EndRecPtr < end_of_wal)
		{
			char	   *errm = NULL;
			XLogRecord *record = XLogReadRecord(ctx->reader, &errm);

			if (errm)
				ereport(ERROR,
						(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
						 errmsg("could not read WAL for detector: %s", errm)));
			if (record != NULL)
			{
				LogicalDecodingProcessRecord(ctx, ctx->reader);

				/*
				 * Decoding a transaction runs (and ends) subtransactions,
				 * which leave CurrentMemoryContext at our transaction's
				 * context: the reader, which outlives it, must keep
				 * allocating in its own.
				 */
				MemoryContextSwitchTo(ctx->context);
			}
			if (rd->rows + rd->skipped_rows >= max_rows)
			{
				caught_up = ctx->reader->EndRecPtr >= end_of_wal;
				break;
			}
			CHECK_FOR_INTERRUPTS();
		}
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(old);
		ctx->output_writer_private = NULL;
		InvalidateSystemCaches();
		PG_RE_THROW();
	}
	PG_END_TRY();
	MemoryContextSwitchTo(old);
	ctx->output_writer_private = NULL;
	InvalidateSystemCaches();
	*end = ctx->reader->EndRecPtr;
	return caught_up;
}

/* ---------------------------------------------------------------------
 * Rows to features
 */

/* Checks that the source still has the columns the detector was defined on. */
static void
check_source(DetectorDef *def, Relation rel)
{
	TupleDesc	desc = RelationGetDescr(rel);
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	int			depth = 0;
	int			field = 0;
	int			attnum = 0;
	char	   *name = NULL;
	Oid			typid = InvalidOid;

	if (rel->rd_rel->relkind != RELKIND_RELATION &&
		rel->rd_rel->relkind != RELKIND_PARTITIONED_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("source \"%s\" of detector \"%s\" is no longer a table",
						def->source_name, def->name)));
	if (pg_class_aclcheck(def->source, def->owner, ACL_SELECT) != ACLCHECK_OK &&
		pg_attribute_aclcheck_all(def->source, def->owner, ACL_SELECT, ACLMASK_ALL) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for table %s", def->source_name),
				 errdetail("The owner of detector \"%s\", role %s, may no longer read it.",
						   def->name, GetUserNameFromId(def->owner, true))));
	if (check_enable_rls(def->source, def->owner, true) == RLS_ENABLED)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("table %s has row-level security for the owner of detector \"%s\"",
						def->source_name, def->name),
				 errdetail("A detector reads every row; it cannot apply row security policies.")));

	/* source_columns is [[attnum, name, type oid], ...] */
	it = JsonbIteratorInit(&def->source_columns->root);
	while ((tok = JsonbIteratorNext(&it, &v, false)) != WJB_DONE)
	{
		if (tok == WJB_BEGIN_ARRAY)
		{
			depth++;
			field = 0;
			continue;
		}
		if (tok == WJB_END_ARRAY)
		{
			if (depth == 2)
			{
				Form_pg_attribute att;

				if (attnum < 1 || attnum > desc->natts ||
					(att = TupleDescAttr(desc, attnum - 1))->attisdropped)
					ereport(ERROR,
							(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
							 errmsg("source table %s of detector \"%s\" was altered: column \"%s\" was dropped",
									def->source_name, def->name, name ? name : "?"),
							 errhint("alter_detector() adopts the table as it is now; drop_detector() removes the detector.")));
				if (att->atttypid != typid)
					ereport(ERROR,
							(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
							 errmsg("source table %s of detector \"%s\" was altered: column \"%s\" changed type from %s to %s",
									def->source_name, def->name, NameStr(att->attname),
									format_type_be(typid), format_type_be(att->atttypid)),
							 errhint("alter_detector() adopts the table as it is now; drop_detector() removes the detector.")));
			}
			depth--;
			continue;
		}
		if (depth == 2 && (tok == WJB_ELEM))
		{
			if (field == 0 && v.type == jbvNumeric)
				attnum = DatumGetInt32(DirectFunctionCall1(numeric_int4, NumericGetDatum(v.val.numeric)));
			else if (field == 1 && v.type == jbvString)
				name = pnstrdup(v.val.string.val, v.val.string.len);
			else if (field == 2 && v.type == jbvNumeric)
				typid = DatumGetObjectId(DirectFunctionCall1(numeric_int8, NumericGetDatum(v.val.numeric)));
			field++;
		}
	}
}

/* A value to convert (convert_as_owner). */
typedef struct ConvertCall
{
	Datum		value;
	Oid			from;
	Form_pg_attribute to;
	Datum		out;
} ConvertCall;

/*
 * Through the old type's output and the new type's input: in the owner
 * context, since both may run code of the types' owners (a domain's CHECK).
 */
static void
convert_as_owner(void *arg)
{
	ConvertCall *c = (ConvertCall *) arg;
	Oid			outfn;
	Oid			infn;
	Oid			ioparam;
	bool		isvarlena;
	char	   *text;

	if (!SearchSysCacheExists1(TYPEOID, ObjectIdGetDatum(c->from)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("column \"%s\" was written with a type that no longer exists",
						NameStr(c->to->attname))));
	getTypeOutputInfo(c->from, &outfn, &isvarlena);
	text = OidOutputFunctionCall(outfn, c->value);
	getTypeInputInfo(c->to->atttypid, &infn, &ioparam);
	c->out = OidInputFunctionCall(infn, text, ioparam, c->to->atttypmod);
}

/*
 * Converts a value of a column whose type changed since the row was
 * written (the detector was altered to the table's new shape), as the
 * detector's owner.  Returns NULL on success, else the error message.
 */
static char *
convert_value(DetectorDef *def, Datum value, Oid from, Form_pg_attribute to,
			  Datum *out)
{
	ConvertCall c;
	ErrorData  *err;

	c.value = value;
	c.from = from;
	c.to = to;
	c.out = (Datum) 0;
	err = detect_try_as_owner(def->owner, def->search_path, convert_as_owner, &c,
							  CurrentMemoryContext);
	if (err)
		return psprintf("column \"%s\" changed type and its old value cannot be converted: %s",
						NameStr(to->attname), err->message);
	*out = c.out;
	return NULL;
}

/*
 * Rebuilds row i as a value of the source's current row type.  The
 * detector's definition matches the table (check_source); a row written
 * before an ALTER TABLE that changed a column's type has its value
 * converted, and a value that cannot be is the row's failure (*error).
 */
static Datum
row_to_composite(DetectorDef *def, RoundData *rd, int64 i, TupleDesc cur,
				 Datum *values, bool *nulls, char **error)
{
	RoundRow   *row = &rd->row[i];
	DwRelation *h = &rd->rels[row->rel];
	DwReader	r;
	Datum	   *hv = palloc(sizeof(Datum) * Max(h->natts, 1));
	uint8	   *hs = palloc(Max(h->natts, 1));
	HeapTuple	tup;

	*error = NULL;
	r.p = row->data;
	r.end = row->data + row->len;
	dw_read_row_values(&r, h, hv, hs);
	for (int a = 0; a < cur->natts; a++)
	{
		Form_pg_attribute att = TupleDescAttr(cur, a);

		values[a] = (Datum) 0;
		nulls[a] = true;
		if (att->attisdropped || a >= h->natts || h->atts[a].dropped ||
			hs[a] != DW_ATT_VALUE)
			continue;
		if (h->atts[a].typid != att->atttypid)
		{
			*error = convert_value(def, hv[a], h->atts[a].typid, att, &values[a]);
			if (*error)
			{
				/* An empty row stands in for it; it is not scored. */
				for (int b = 0; b < cur->natts; b++)
					nulls[b] = true;
				break;
			}
		}
		else
			values[a] = hv[a];
		nulls[a] = false;
	}
	tup = heap_form_tuple(cur, values, nulls);
	return HeapTupleGetDatum(tup);
}

/* The evaluation statement of a detector (catalog.c checks it). */
char *
detect_eval_sql(const char *relname, int nfeatures, char **features,
				const char *partition_by, const char *filter, int nkeys,
				char **keys, bool key_only)
{
	StringInfoData sql;
	const char *alias = quote_identifier(relname);

	initStringInfo(&sql);
	appendStringInfoString(&sql, "SELECT ");
	if (!key_only)
	{
		for (int i = 0; i < nfeatures; i++)
			appendStringInfo(&sql, "(\n%s\n)::pg_catalog.float8,\n", features[i]);
		if (partition_by && partition_by[0])
			appendStringInfo(&sql, "(\n%s\n)::pg_catalog.text,\n", partition_by);
		else
			appendStringInfoString(&sql, "NULL::pg_catalog.text, ");
		if (filter && filter[0])
			appendStringInfo(&sql, "(\n%s\n)::pg_catalog.bool,\n", filter);
		else
			appendStringInfoString(&sql, "true, ");
	}
	if (nkeys > 0)
	{
		appendStringInfoString(&sql, "pg_catalog.jsonb_build_object(");
		for (int i = 0; i < nkeys; i++)
			appendStringInfo(&sql, "%s%s, %s.%s", i > 0 ? ", " : "",
							 quote_literal_cstr(keys[i]), alias, quote_identifier(keys[i]));
		appendStringInfoChar(&sql, ')');
	}
	else
		appendStringInfo(&sql, "pg_catalog.to_jsonb(%s)", alias);
	appendStringInfo(&sql, "\nFROM pg_catalog.unnest($1) AS %s", alias);
	return sql.data;
}

/* Evaluation state of a round. */
typedef struct EvalState
{
	DetectorDef *def;
	Oid			array_type;
	Oid			elem_type;
	Datum	   *rows;			/* composite datums */
	RowResult  *res;
	SPIPlanPtr	plan;
	SPIPlanPtr	key_plan;
	MemoryContext cxt;			/* where results go */
	int			nfailed;
} EvalState;

/* Copies the result rows of an evaluation of rows [lo, hi). */
static void
take_results(EvalState *es, int lo, int hi)
{
	int			nf = es->def->nfeatures;
	MemoryContext old = MemoryContextSwitchTo(es->cxt);

	if (SPI_processed != (uint64) (hi - lo))
		elog(ERROR, "feature evaluation returned " UINT64_FORMAT " rows for %d",
			 SPI_processed, hi - lo);
	for (int i = lo; i < hi; i++)
	{
		RowResult  *rr = &es->res[i];
		HeapTuple	t = SPI_tuptable->vals[i - lo];
		TupleDesc	td = SPI_tuptable->tupdesc;
		bool		isnull;
		Datum		d;

		rr->ok = true;
		rr->values = palloc(sizeof(double) * Max(nf, 1));
		rr->nulls = palloc(sizeof(bool) * Max(nf, 1));
		rr->has_null = false;
		for (int f = 0; f < nf; f++)
		{
			d = SPI_getbinval(t, td, f + 1, &isnull);
			rr->nulls[f] = isnull;
			if (isnull)
			{
				rr->has_null = true;
				rr->values[f] = 0;
			}
			else
				rr->values[f] = DatumGetFloat8(d);
		}
		d = SPI_getbinval(t, td, nf + 1, &isnull);
		rr->key = isnull ? NULL : TextDatumGetCString(d);
		d = SPI_getbinval(t, td, nf + 2, &isnull);
		rr->filtered = isnull || !DatumGetBool(d);
		d = SPI_getbinval(t, td, nf + 3, &isnull);
		rr->source_key = isnull ? (Datum) 0 : PointerGetDatum(DatumGetJsonbPCopy(d));
	}
	MemoryContextSwitchTo(old);
}

/* One evaluation of rows [lo, hi) (eval_as_owner). */
typedef struct EvalCall
{
	EvalState  *es;
	SPIPlanPtr	plan;
	Datum		arg;
	int			lo;
	int			hi;
	bool		key_only;
} EvalCall;

/* Runs the evaluation plan and takes its results, in the owner context. */
static void
eval_as_owner(void *arg)
{
	EvalCall   *c = (EvalCall *) arg;
	int			rc;

	rc = detect_owner_spi_execute_plan(c->plan, &c->arg, NULL, false, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "feature evaluation failed (%d)", rc);
	if (c->key_only)
	{
		MemoryContext old = MemoryContextSwitchTo(c->es->cxt);
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		c->es->res[c->lo].source_key = isnull ? (Datum) 0 : PointerGetDatum(DatumGetJsonbPCopy(d));
		MemoryContextSwitchTo(old);
	}
	else
		take_results(c->es, c->lo, c->hi);
	SPI_freetuptable(SPI_tuptable);
}

/*
 * Evaluates plan over rows [lo, hi) as the owner.  Returns NULL on
 * success, else the error (in es->cxt).
 */
static ErrorData *
try_eval(EvalState *es, SPIPlanPtr plan, int lo, int hi, bool key_only)
{
	ArrayType  *arr;
	EvalCall	c;
	ErrorData  *err;

	arr = construct_array(es->rows + lo, hi - lo, es->elem_type, -1, false, TYPALIGN_DOUBLE);
	c.es = es;
	c.plan = plan;
	c.arg = PointerGetDatum(arr);
	c.lo = lo;
	c.hi = hi;
	c.key_only = key_only;
	err = detect_try_as_owner(es->def->owner, es->def->search_path, eval_as_owner, &c,
							  es->cxt);
	pfree(arr);
	return err;
}

/* Evaluates rows [lo, hi), splitting the range to isolate failing rows. */
static void
eval_range(EvalState *es, int lo, int hi)
{
	ErrorData  *err;

	if (lo >= hi)
		return;
	err = try_eval(es, es->plan, lo, hi, false);
	if (err == NULL)
		return;
	/* A failure that no row can cause (a dropped column...) stops the round. */
	if (detect_error_is_permanent(err->sqlerrcode) &&
		ERRCODE_TO_CATEGORY(err->sqlerrcode) != ERRCODE_DATA_EXCEPTION)
	{
		if (err->sqlerrcode == ERRCODE_UNDEFINED_COLUMN ||
			err->sqlerrcode == ERRCODE_UNDEFINED_FUNCTION ||
			err->sqlerrcode == ERRCODE_UNDEFINED_TABLE ||
			err->sqlerrcode == ERRCODE_INSUFFICIENT_PRIVILEGE ||
			err->sqlerrcode == ERRCODE_DATATYPE_MISMATCH ||
			err->sqlerrcode == ERRCODE_SYNTAX_ERROR ||
			err->sqlerrcode == ERRCODE_UNDEFINED_OBJECT)
			ReThrowError(err);
	}
	if (hi - lo == 1)
	{
		RowResult  *rr = &es->res[lo];
		MemoryContext old = MemoryContextSwitchTo(es->cxt);

		rr->ok = false;
		rr->error = pstrdup(err->message ? err->message : "unknown error");
		rr->sqlstate = pstrdup(unpack_sql_state(err->sqlerrcode));
		MemoryContextSwitchTo(old);
		es->nfailed++;
		FreeErrorData(err);
		/* The key alone, to say which row it was. */
		err = try_eval(es, es->key_plan, lo, hi, true);
		if (err)
			FreeErrorData(err);
		return;
	}
	FreeErrorData(err);
	eval_range(es, lo, lo + (hi - lo) / 2);
	eval_range(es, lo + (hi - lo) / 2, hi);
}

/* Checks one feature value as the window functions do; NULL when fine. */
static char *
bad_value(double v, int position)
{
	if (isnan(v))
		return psprintf("feature %d is NaN", position);
	if (isinf(v))
		return psprintf("feature %d is infinite", position);
	if (fabs(v) > FLT_MAX)
		return psprintf("feature %d is out of range for the forest (%g)", position, v);
	return NULL;
}

/* ---------------------------------------------------------------------
 * The round
 */

static Oid
anomaly_type(const char *name)
{
	Oid			nsp = get_namespace_oid("anomaly", false);
	Oid			t = GetSysCacheOid2(TYPENAMENSP, Anum_pg_type_oid,
									CStringGetDatum(name), ObjectIdGetDatum(nsp));

	if (!OidIsValid(t))
		elog(ERROR, "type anomaly.%s does not exist", name);
	return t;
}

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
	{"scored_at", TIMESTAMPTZOID}
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
	SC_SCORED_AT
};

StaticAssertDecl(SC_SCORED_AT + 1 == DETECT_DEST_NCOLUMNS,
				 "one value per destination column");

/* What the score rows of a round share. */
typedef struct ScoreSource
{
	DetectorDef *def;
	RoundData  *rd;
	EvalState  *es;
	Datum		detector;		/* text */
	TimestampTz scored_at;
} ScoreSource;

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
			return LSNGetDatum(ss->rd->row[i].commit_lsn);
		case SC_COMMIT_TIME:
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

/*
 * Inserts the round's scores into the destination table, in the owner
 * context: its triggers, defaults, constraints, casts and row security are
 * the owner's and the table owner's code, and run as the detector's owner.
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
	Datum	   *composites;
	Oid			row_type;
	Oid			types[3];
	Datum		args[3];
	RangeVar   *rv;
	Oid			relid;
	Relation	rel;
	TupleDesc	desc;
	bool		table_priv;
	bool		has_score = false;
	StringInfoData cols;
	StringInfoData exprs;
	StringInfoData sql;

	row_type = anomaly_type("_score_row");
	rv = makeRangeVarFromNameList(stringToQualifiedNameList(def->destination));
	relid = RangeVarGetRelid(rv, RowExclusiveLock, true);
	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("destination table %s of detector \"%s\" does not exist",
						def->destination, def->name),
				 errhint("alter_detector() with options '{\"destination\": null}' stops writing to it.")));
	rel = table_open(relid, NoLock);
	desc = RelationGetDescr(rel);
	if (rel->rd_rel->relkind != RELKIND_RELATION)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("destination %s of detector \"%s\" is no longer a table",
						def->destination, def->name)));
	table_priv = pg_class_aclcheck(relid, def->owner, ACL_INSERT) == ACLCHECK_OK;
	initStringInfo(&cols);
	initStringInfo(&exprs);
	for (int c = 0; c < DETECT_DEST_NCOLUMNS; c++)
	{
		const char *name = detect_dest_columns[c].name;
		AttrNumber	attnum = InvalidAttrNumber;

		for (int i = 0; i < desc->natts; i++)
		{
			Form_pg_attribute att = TupleDescAttr(desc, i);

			if (!att->attisdropped && strcmp(NameStr(att->attname), name) == 0)
				attnum = att->attnum;
		}
		if (attnum == InvalidAttrNumber)
			continue;
		if (!table_priv &&
			pg_attribute_aclcheck(relid, attnum, def->owner, ACL_INSERT) != ACLCHECK_OK)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("permission denied for table %s", def->destination),
					 errdetail("The owner of detector \"%s\", role %s, may no longer insert into its destination.",
							   def->name, GetUserNameFromId(def->owner, true))));
		has_score |= strcmp(name, "anomaly_score") == 0;
		if (cols.len > 0)
		{
			appendStringInfoString(&cols, ", ");
			appendStringInfoString(&exprs, ", ");
		}
		appendStringInfoString(&cols, quote_identifier(name));
		if (strcmp(name, "detector") == 0)
			appendStringInfoString(&exprs, "$1");
		else if (strcmp(name, "scored_at") == 0)
			appendStringInfoString(&exprs, "$3");
		else
			appendStringInfo(&exprs, "r.%s", name);
	}
	table_close(rel, NoLock);
	if (!has_score)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("destination table %s of detector \"%s\" has no column \"anomaly_score\"",
						def->destination, def->name)));

	types[0] = TEXTOID;
	types[1] = get_array_type(row_type);
	types[2] = TIMESTAMPTZOID;
	/* _score_row: the columns between detector and scored_at */
	row_desc = lookup_rowtype_tupdesc_copy(row_type, -1);
	if (row_desc->natts != SC_SCORED_AT - SC_PARTITION_KEY)
		elog(ERROR, "type anomaly._score_row does not match the score columns");
	composites = palloc_extended(sizeof(Datum) * n, MCXT_ALLOC_HUGE);
	for (int r = 0; r < n; r++)
	{
		Datum		v[SC_SCORED_AT - SC_PARTITION_KEY];
		bool		nl[SC_SCORED_AT - SC_PARTITION_KEY];

		for (int c = SC_PARTITION_KEY; c < SC_SCORED_AT; c++)
			v[c - SC_PARTITION_KEY] = score_value(ss, rows[r], c, &nl[c - SC_PARTITION_KEY]);
		composites[r] = HeapTupleGetDatum(heap_form_tuple(row_desc, v, nl));
	}
	args[0] = ss->detector;
	args[1] = PointerGetDatum(construct_array(composites, n, row_type, -1, false, TYPALIGN_DOUBLE));
	args[2] = TimestampTzGetDatum(ss->scored_at);
	initStringInfo(&sql);
	appendStringInfo(&sql, "INSERT INTO %s (%s) SELECT %s FROM pg_catalog.unnest($2) AS r",
					 def->destination, cols.data, exprs.data);
	detect_owner_spi_exec(sql.data, 3, types, args, NULL, false, SPI_OK_INSERT);
}

/*
 * Writes the scores of a round into the detector's destination table too,
 * as the owner (like the expressions), in the round's transaction: the
 * columns the table has among detect_dest_columns, by name.
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
	detect_as_owner(ss->def->owner, ss->def->search_path, destination_as_owner, &call);
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
		states[k] = CStringGetTextDatum(rr->sqlstate ? rr->sqlstate : "XX000");
		reasons[k] = CStringGetTextDatum(rr->error ? rr->error : "unknown");
		k++;
	}
	dims[0] = k;
	args[0] = CStringGetTextDatum(def->name);
	args[1] = PointerGetDatum(construct_md_array(keys, keynulls, 1, dims, lbs, JSONBOID, -1, false, TYPALIGN_INT));
	args[2] = PointerGetDatum(construct_array(lsns, k, PG_LSNOID, sizeof(XLogRecPtr), FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[3] = PointerGetDatum(construct_array(times, k, TIMESTAMPTZOID, sizeof(TimestampTz), FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
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

/* True when two results have the same partition key. */
static bool
cmp_by_key_same(const RowResult *a, const RowResult *b)
{
	if (a->key == NULL || b->key == NULL)
		return a->key == NULL && b->key == NULL;
	return strcmp(a->key, b->key) == 0;
}

/* Orders rows by partition key, then by their order in the round. */
static RowResult *sort_results;

static int
cmp_by_key(const void *a, const void *b)
{
	int64		i = *(const int64 *) a;
	int64		j = *(const int64 *) b;
	const char *ki = sort_results[i].key;
	const char *kj = sort_results[j].key;
	int			c;

	if (ki == NULL || kj == NULL)
		c = (ki == NULL ? 0 : 1) - (kj == NULL ? 0 : 1);
	else
		c = strcmp(ki, kj);
	if (c != 0)
		return c;
	return (i > j) - (i < j);
}

/* One partition key's rows of a wave, scored by one thread. */
typedef struct ScoreTask
{
	ForestEntry *e;
	int64		lo;				/* range of ScoreWave.order */
	int64		hi;
} ScoreTask;

/*
 * Rows scored together on the detector's threads: several partition keys,
 * each a task.  The threads only write the results of their own rows.
 */
typedef struct ScoreWave
{
	DetectorDef *def;
	RowResult  *res;
	const int64 *order;
	ScoreTask  *tasks;
	int			ntasks;
	int64		lo;				/* the wave's range of order */
	int64		hi;
	Size		bytes;			/* of its forests, which must stay in memory */
	double	   *attr;			/* per row of the wave: high[D], low[D] */
	double	   *expected;		/* per row of the round: dims values */
} ScoreWave;

/* Where row o of a wave keeps its attribution: high[D], then low[D]. */
static inline double *
wave_attr(const ScoreWave *w, int64 o, int total)
{
	return w->attr + (o - w->lo) * 2 * total;
}

/*
 * Scores then learns one task's rows in order.  Runs on any of the
 * detector's threads: engine calls only (see threads.c).
 */
static void
score_task(void *arg, int t)
{
	ScoreWave  *w = (ScoreWave *) arg;
	const ScoreTask *task = &w->tasks[t];
	ForestEntry *e = task->e;
	int			dims = w->def->nfeatures;
	int			total = dims * w->def->params.shingle_size;

	for (int64 o = task->lo; o < task->hi; o++)
	{
		RowResult  *rr = &w->res[w->order[o]];

		if (w->def->with_explanation)
		{
			double	   *high = wave_attr(w, o, total);

			rr->score = rcf_attribution(e->forest, rr->values, high, high + total);
		}
		if (e->grader)
		{
			RcfGrade	grade;
			double	   *expected = w->expected + o * dims;

			rcf_grader_assess(e->grader, e->forest, rr->values, &grade, expected);
			rr->score = grade.score;
			rr->grade = grade.grade;
			rr->is_anomaly = grade.is_anomaly;
			rr->expected = grade.has_expected ? expected : NULL;
			rcf_grader_learn(e->grader, e->forest, rr->values, &grade);
		}
		else
		{
			/*
			 * The score itself, not the attribution's sum: they differ in the
			 * last bits, and scores must equal the window function's.
			 */
			rr->score = rcf_score(e->forest, rr->values);
			rcf_update(e->forest, rr->values);
		}
	}
}

/*
 * Scores a wave's tasks on the detector's threads, then, in this thread
 * and in the rows' order, does what needs PostgreSQL: explanations,
 * journal arrays, the forests' journal positions.
 */
static void
run_wave(ScoreWave *w, EvalState *es, int64 seq, ArrayBuildState **jkeys,
		 ArrayBuildState **jpoints, int *npoints)
{
	DetectorDef *def = w->def;
	int			dims = def->nfeatures;
	int			total = dims * def->params.shingle_size;

	/* Threads pay off only when there is some work for each. */
	detect_run_tasks(score_task, w, w->ntasks,
					 w->hi - w->lo >= 64 ? detect_threads : 1);

	for (int t = 0; t < w->ntasks; t++)
	{
		ForestEntry *e = w->tasks[t].e;

		for (int64 o = w->tasks[t].lo; o < w->tasks[t].hi; o++)
		{
			RowResult  *rr = &w->res[w->order[o]];

			if (def->with_explanation)
			{
				MemoryContext old = MemoryContextSwitchTo(es->cxt);
				double	   *high = wave_attr(w, o, total);

				rr->explanation = anomaly_explanation(e->forest, high, high + total,
													  dims, def->with_directionality,
													  def->feature_names);
				MemoryContextSwitchTo(old);
			}
			(*npoints)++;
			e->as_seq = seq;
			e->as_pos = *npoints;
			if (!e->dirty)
				e->dirty_from = seq;
			e->dirty = true;
			*jkeys = accumArrayResult(*jkeys, rr->key ? CStringGetTextDatum(rr->key) : (Datum) 0,
									  rr->key == NULL, TEXTOID, CurrentMemoryContext);
			for (int f = 0; f < dims; f++)
				*jpoints = accumArrayResult(*jpoints, Float8GetDatum(rr->values[f]), false,
											FLOAT8OID, CurrentMemoryContext);
		}
	}
	w->ntasks = 0;
	w->bytes = 0;
	w->lo = w->hi;
}

/*
 * Scores the evaluated rows, then learns them; fills out[] with the indexes
 * of the rows that get a score row (in the rows' order) and returns how
 * many.  Only the order within a partition key matters to the forests, so
 * rows are scored grouped by key (a forest stays in the CPU's cache for all
 * its rows of the round), and the keys are spread over threads in waves of
 * forests that fit in memory together.
 */
static int
score_rows(DetectorCache *dc, DetectorDef *def, EvalState *es,
		   int64 n, int64 seq, int64 *out, int64 *filtered,
		   ArrayBuildState **jkeys, ArrayBuildState **jpoints, int *npoints)
{
	int			dims = def->nfeatures;
	int			total = dims * def->params.shingle_size;
	int64	   *order = palloc_extended(sizeof(int64) * Max(n, 1), MCXT_ALLOC_HUGE);
	int64		norder = 0;
	int			nout = 0;
	Size		limit = (Size) detect_memory_limit_mb * 1024 * 1024;
	Size		need = rcf_arena_size(&def->params);
	int64		attr_rows = PG_INT64_MAX;
	ScoreWave	w;

	/* Which rows are scored, and which of those are learned. */
	for (int64 i = 0; i < n; i++)
	{
		RowResult  *rr = &es->res[i];

		if (!rr->ok)
			continue;
		if (rr->filtered)
		{
			(*filtered)++;
			continue;
		}
		if (!rr->has_null)
		{
			char	   *bad = NULL;

			for (int f = 0; f < dims && bad == NULL; f++)
				bad = bad_value(rr->values[f], f + 1);
			if (bad)
			{
				rr->ok = false;
				rr->error = bad;
				rr->sqlstate = pstrdup("22023");
				es->nfailed++;
				continue;
			}
			order[norder++] = i;
		}
	}

	sort_results = es->res;
	qsort(order, norder, sizeof(int64), cmp_by_key);
	sort_results = NULL;

	memset(&w, 0, sizeof(w));
	w.def = def;
	w.res = es->res;
	w.order = order;
	w.tasks = palloc(sizeof(ScoreTask) * Max(norder, 1));
	if (def->grade)
		w.expected = MemoryContextAllocExtended(es->cxt, sizeof(double) * dims * Max(norder, 1),
												MCXT_ALLOC_HUGE);
	if (def->with_explanation)
	{
		/* Attributions wait for their explanation: bound what a wave holds. */
		attr_rows = Max(1, (64 * 1024 * 1024) / (2 * total * sizeof(double)));
		w.attr = palloc(sizeof(double) * 2 * total * Min(attr_rows, Max(norder, 1)));
	}

	for (int64 o = 0; o < norder; o++)
	{
		RowResult  *rr = &es->res[order[o]];
		bool		new_key = (o == 0 || !cmp_by_key_same(&es->res[order[o - 1]], rr));

		/*
		 * A wave ends before a forest that might evict one of its own, and
		 * when its attributions would take too much memory.
		 */
		if (w.ntasks > 0 &&
			((new_key && w.bytes + need > limit) || o - w.lo >= attr_rows))
		{
			ForestEntry *e = w.tasks[w.ntasks - 1].e;

			run_wave(&w, es, seq, jkeys, jpoints, npoints);
			if (!new_key)
			{
				/* The key goes on in the next wave. */
				w.tasks[w.ntasks++] = (ScoreTask) {e, o, o};
				w.bytes += e->bytes;
			}
		}
		if (new_key)
		{
			ForestEntry *e = get_forest(dc, def, rr->key);

			w.tasks[w.ntasks++] = (ScoreTask) {e, o, o};
			w.bytes += e->bytes;
		}
		w.tasks[w.ntasks - 1].hi = o + 1;
		w.hi = o + 1;
	}
	if (w.ntasks > 0)
		run_wave(&w, es, seq, jkeys, jpoints, npoints);

	for (int64 i = 0; i < n; i++)
	{
		RowResult  *rr = &es->res[i];

		if (rr->ok && !rr->filtered)
			out[nout++] = i;
	}
	return nout;
}

/* Opens the detector's source table, or raises the error for its loss. */
static Relation
open_source(DetectorDef *def)
{
	Relation	rel = try_table_open(def->source, AccessShareLock);

	if (rel == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("source table %s of detector \"%s\" was dropped",
						def->source_name, def->name),
				 errhint("drop_detector() removes the detector.")));
	check_source(def, rel);
	return rel;
}

/* What prepare_as_owner prepares. */
typedef struct PrepareCall
{
	EvalState  *es;
	const char *relname;
} PrepareCall;

/*
 * Prepares the evaluation plans in the owner context: parsing resolves
 * names with the owner's search_path and may already run code (a literal
 * of a type with its own input function).
 */
static void
prepare_as_owner(void *arg)
{
	PrepareCall *c = (PrepareCall *) arg;
	EvalState  *es = c->es;
	DetectorDef *def = es->def;
	Oid			argtype = es->array_type;
	char	   *sql;

	sql = detect_eval_sql(c->relname, def->nfeatures, def->features,
						  def->partition_by, def->filter, def->nkeys, def->key_columns, false);
	es->plan = detect_owner_spi_prepare(sql, 1, &argtype);
	sql = detect_eval_sql(c->relname, 0, NULL, NULL, NULL,
						  def->nkeys, def->key_columns, true);
	es->key_plan = detect_owner_spi_prepare(sql, 1, &argtype);
}

/* Prepares the evaluation plans, as the owner. */
static void
prepare_eval(EvalState *es, Relation rel)
{
	PrepareCall c;

	c.es = es;
	c.relname = RelationGetRelationName(rel);
	detect_as_owner(es->def->owner, es->def->search_path, prepare_as_owner, &c);
}

/* What the write phase of a round needs. */
typedef struct RoundWrite
{
	DetectorCache *dc;
	DetectorDef *def;
	RoundData  *rd;
	EvalState  *es;
	int64		n;
	int64		consumed;
	bool		caught_up;
	XLogRecPtr	end_lsn;
	TimestampTz started;
	TimestampTz scored;			/* set when the rows are scored */
} RoundWrite;

/*
 * Forests are stored a few per round, the longest waiting first, at a pace
 * that stores each of them about every half of detector_checkpoint_rows
 * points and of detector_checkpoint_timeout: storing all at once would
 * stall one round for as long as a hundred forests take to encode and
 * write.  The journal keeps the rounds some forest in memory still needs:
 * this round's entry is written unless every forest holding its points is
 * stored, and entries no forest needs any more are cut.  Past the whole of
 * detector_checkpoint_rows every forest is stored, as a bound, and so are a
 * new detector's first forests.  Updates *journal_points and
 * *checkpoint_seq; returns whether any forest was stored.
 */
static bool
spread_checkpoint(DetectorCache *dc, DetectorDef *def, int64 seq, int npoints,
				  TimestampTz now, ArrayBuildState *jkeys,
				  ArrayBuildState *jpoints, int64 *journal_points,
				  int64 *checkpoint_seq)
{
	bool		store_all;
	int			ndirty;
	ForestEntry **dirty = waiting_forests(dc, &ndirty);
	double		share = 0.0;
	int			max_store;
	int64		needed_after = seq;

	store_all = (def->journal_points + npoints >= detect_checkpoint_rows) ||
		(npoints > 0 && def->checkpoint_at == 0);
	if (npoints > 0)
		share = 2.0 * npoints / detect_checkpoint_rows;
	if (def->last_batch_at != 0)
		share = Max(share, 2.0 * (double) (now - def->last_batch_at) /
					USECS_PER_SEC / detect_checkpoint_timeout_s);
	/* Whole forests: the fractions add up over rounds. */
	dc->store_credit = Min(dc->store_credit + Min(share, 1.0) * ndirty, ndirty);
	max_store = store_all ? ndirty : (int) floor(dc->store_credit);
	dc->store_credit = Max(dc->store_credit - max_store, 0.0);

	if (npoints > 0 && max_store < ndirty)
	{
		Oid			t4[4] = {INT8OID, INT8OID, TEXTARRAYOID, FLOAT8ARRAYOID};
		Datum		a4[4];

		a4[0] = Int64GetDatum(def->id);
		a4[1] = Int64GetDatum(seq);
		a4[2] = makeArrayResult(jkeys, CurrentMemoryContext);
		a4[3] = makeArrayResult(jpoints, CurrentMemoryContext);
		detect_spi_exec("INSERT INTO anomaly.detector_journal (detector_id, seq, keys, points)"
						" VALUES ($1, $2, $3, $4)", 4, t4, a4, NULL, false, SPI_OK_INSERT);
		*journal_points += npoints;
	}

	/* The journal is needed from the oldest round a forest left waits for. */
	for (int i = 0; i < max_store; i++)
		store_forest(def, dirty[i]);
	if (max_store < ndirty)
		needed_after = dirty[max_store]->dirty_from - 1;
	pfree(dirty);

	if (needed_after > *checkpoint_seq)
	{
		Oid			t2[2] = {INT8OID, INT8OID};
		Datum		a2[2] = {Int64GetDatum(def->id), Int64GetDatum(needed_after)};
		Datum		deleted;
		bool		isnull;

		detect_spi_exec("WITH d AS (DELETE FROM anomaly.detector_journal"
						" WHERE detector_id OPERATOR(pg_catalog.=) $1"
						" AND seq OPERATOR(pg_catalog.<=) $2"
						" RETURNING pg_catalog.cardinality(keys) AS n)"
						" SELECT pg_catalog.sum(n)::pg_catalog.int8 FROM d",
						2, t2, a2, NULL, false, SPI_OK_SELECT);
		deleted = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1,
								&isnull);
		if (!isnull)
			*journal_points -= DatumGetInt64(deleted);
		*checkpoint_seq = needed_after;
	}
	return max_store > 0;
}

/*
 * Scores the evaluated rows and writes everything of the round: scores,
 * failures, journal, stored forests, and the detector's row.
 */
static void
write_round(RoundWrite *w)
{
	DetectorCache *dc = w->dc;
	DetectorDef *def = w->def;
	RoundData  *rd = w->rd;
	EvalState  *es = w->es;
	int64		n = w->n;
	int64		seq = def->batch_seq + 1;
	int64		filtered = 0;
	int			npoints = 0;
	int			nout = 0;
	ArrayBuildState *jkeys = NULL;
	ArrayBuildState *jpoints = NULL;
	int64	   *out = n > 0 ? palloc_extended(sizeof(int64) * n, MCXT_ALLOC_HUGE) : NULL;
	TimestampTz now;
	bool		stored;
	int64		journal_points = def->journal_points;
	int64		checkpoint_seq = def->checkpoint_seq;
	bool		write_row;
	int64		token = detect_new_token();

	if (n > 0)
		nout = score_rows(dc, def, es, n, seq, out, &filtered,
						  &jkeys, &jpoints, &npoints);
	w->scored = GetCurrentTimestamp();
	{
		ScoreSource ss;

		ss.def = def;
		ss.rd = rd;
		ss.es = es;
		ss.detector = CStringGetTextDatum(def->name);
		ss.scored_at = GetCurrentTimestamp();
		write_scores(&ss, out, nout);
		write_destination(&ss, out, nout);
	}
	write_failures(def, rd, es, n);

	now = GetCurrentTimestamp();
	stored = spread_checkpoint(dc, def, seq, npoints, now, jkeys, jpoints,
							   &journal_points, &checkpoint_seq);
	write_row = w->consumed > 0 || stored || checkpoint_seq != def->checkpoint_seq ||
		def->row_is_ours ||
		def->last_batch_at == 0 ||
		TimestampDifferenceExceeds(def->last_batch_at, now, 1000);

	if (write_row)
	{
		Oid			t[15] = {INT8OID, INT8OID, INT8OID, PG_LSNOID, PG_LSNOID,
			TIMESTAMPTZOID, INT8OID, INT8OID, INT8OID, FLOAT8OID,
		TIMESTAMPTZOID, TIMESTAMPTZOID, INT8OID, INT8OID, TIMESTAMPTZOID};
		Datum		a[15];
		char		nl[16] = "               ";
		double		rate = 0;

		if (def->last_batch_at != 0)
		{
			double		secs = (double) (now - def->last_batch_at) / USECS_PER_SEC;

			rate = (double) nout / Max(secs, 0.001);
			if (!def->rows_per_s_null)
				rate = 0.7 * def->rows_per_s + 0.3 * rate;
		}
		a[0] = Int64GetDatum(def->id);
		a[1] = Int64GetDatum(seq);
		a[2] = Int64GetDatum(token);
		a[3] = LSNGetDatum(w->end_lsn);
		a[4] = LSNGetDatum(rd->last_commit_lsn);
		if (XLogRecPtrIsInvalid(rd->last_commit_lsn))
			nl[4] = nl[5] = 'n';
		a[5] = TimestampTzGetDatum(rd->last_commit_time);
		a[6] = Int64GetDatum(nout);
		a[7] = Int64GetDatum(filtered);
		a[8] = Int64GetDatum(es->nfailed);
		a[9] = Float8GetDatum(rate);
		if (def->last_batch_at == 0)
			nl[9] = 'n';
		a[10] = TimestampTzGetDatum(now);
		a[11] = TimestampTzGetDatum(w->started);
		if (!w->caught_up)
			nl[11] = 'n';
		a[12] = Int64GetDatum(journal_points);
		a[13] = Int64GetDatum(checkpoint_seq);
		a[14] = TimestampTzGetDatum(stored ? now : def->checkpoint_at);
		if (!stored && def->checkpoint_at == 0)
			nl[14] = 'n';
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
						" error_count = 0"
						" WHERE id OPERATOR(pg_catalog.=) $1", 15, t, a, nl, false, SPI_OK_UPDATE);
		if (SPI_processed != 1)
			elog(ERROR, "detector " INT64_FORMAT " vanished during its round", def->id);
		dc->token = token;
	}
	else
		dc->token = def->round_token;
}

/* Runs write_round with the detector's replication origin on our WAL. */
static void
write_round_as_origin(RoundWrite *w)
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
	rel = open_source(def);
	table_close(rel, NoLock);

	/* Forests in memory must be those of the last committed round. */
	if (!dc->current || dc->token != def->round_token || dc->forests == NULL)
	{
		cache_init(dc);
		replay_journal(dc, def);
		dc->token = def->round_token;
		dc->current = true;
	}
	if (!open_decoding(dc, def))
		return ROUND_BUSY;

	memset(&rd, 0, sizeof(rd));
	rd.cxt = rcxt;
	rd.skip_upto = def->last_commit_lsn;
	rd.cur_rel = -1;
	dc->current = false;		/* until this round's writes are done */
	caught_up = decode_rows(dc, &rd, max_rows, &end_lsn);
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
			es.rows[i] = row_to_composite(def, &rd, i, cur, values, nulls, &errors[i]);
			any_error |= errors[i] != NULL;
		}
		es.res = palloc_extended(sizeof(RowResult) * n, MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
		prepare_eval(&es, rel);
		eval_range(&es, 0, (int) n);
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
	write_round_as_origin(&w);
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

	if (!read_def(id, true, &def, &locked))
		result = locked ? ROUND_BUSY : ROUND_STOP;
	else if (strcmp(def.state, "active") != 0)
		result = ROUND_STOP;
	else
	{
		DetectorCache *dc = get_cache(id);

		prepare_forest_plans();
		result = run_round(dc, &def, rcxt, max_rows, rows_out);
		if (!keep_context)
			release_decoding(dc);
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
	if (slot_owner && slot_owner->holds_slot)
	{
		confirm_slot(slot_owner->confirm_lsn);
		slot_owner->confirm_lsn = InvalidXLogRecPtr;
	}
}

void
detect_after_abort(void)
{
	DetectorCache *dc;

	detect_release();
	for (dc = caches; dc; dc = dc->next)
		dc->current = false;
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
 * Deletes each detector's scores and failures older than its retention,
 * oldest first, a bounded number per call.
 */
void
detect_apply_retention(void)
{
	DetectSys	sc;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	detect_sys_enter(&sc);
	detect_spi_exec("WITH d AS (SELECT name, " OPT("retention") "::pg_catalog.interval AS keep"
					"   FROM anomaly.detectors WHERE " OPT("retention") " IS NOT NULL),"
					" old AS (SELECT s.id FROM d, LATERAL (SELECT id, scored_at FROM anomaly.scores"
					"   WHERE detector OPERATOR(pg_catalog.=) d.name ORDER BY id LIMIT 10000) s"
					"   WHERE s.scored_at OPERATOR(pg_catalog.<)"
					"     (pg_catalog.now() OPERATOR(pg_catalog.-) d.keep))"
					" DELETE FROM anomaly.scores"
					" WHERE id OPERATOR(pg_catalog.=) ANY (SELECT id FROM old)",
					0, NULL, NULL, NULL, false, SPI_OK_DELETE);
	detect_spi_exec("WITH d AS (SELECT name, " OPT("retention") "::pg_catalog.interval AS keep"
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
