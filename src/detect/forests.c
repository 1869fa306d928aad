/*
 * forests.c
 *	  The forests of a detector between rounds: the per-process cache and its
 *	  eviction under anomaly.detector_memory_limit, loading (models read
 *	  ahead for the keys to come) and storing (in batches).  The journal and
 *	  the checkpoints are in journal.c, scoring with the forests in score.c.
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
#include "storage/proc.h"
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

DetectorCache *detect_caches = NULL;
RoundPlans	detect_plans;

/* Forests waiting to be stored together (see detect_store_forest). */
#define BATCH_FORESTS	256
#define BATCH_BYTES		(8 * 1024 * 1024)

/*
 * Keys of one detector's forests held for the current transaction: the
 * batch of forests to store and the models read ahead.  What an error left
 * belongs to an aborted transaction (lxid) and counts as empty.
 */
typedef struct KeySet
{
	MemoryContext cxt;			/* the keys and what they hold */
	LocalTransactionId lxid;	/* of the transaction they belong to */
	int64		detector_id;
	HTAB	   *keys;			/* ForestKey first in each entry */
} KeySet;

typedef struct StoreBatch
{
	KeySet		set;			/* reset when written */
	char	   *detector_name;
	int			n;
	Size		bytes;
	Datum		key[BATCH_FORESTS];
	bool		key_null[BATCH_FORESTS];
	Datum		model[BATCH_FORESTS];
	Datum		seq[BATCH_FORESTS];
	Datum		pos[BATCH_FORESTS];
	Datum		points[BATCH_FORESTS];
} StoreBatch;

static StoreBatch *batch = NULL;

static void batch_reset(void);

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

/*
 * A table keyed by ForestKey (a partition key, or none) in cxt: the forests
 * of a detector, a batch to store and the models read ahead all look keys
 * up alike.
 */
static HTAB *
forest_key_table(const char *name, long size, Size entrysize, MemoryContext cxt)
{
	HASHCTL		ctl;

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(ForestKey);
	ctl.entrysize = entrysize;
	ctl.hash = forest_key_hash;
	ctl.match = forest_key_match;
	ctl.hcxt = cxt;
	return hash_create(name, size, &ctl,
					   HASH_ELEM | HASH_FUNCTION | HASH_COMPARE | HASH_CONTEXT);
}

/*
 * Empties the key set that container (a struct of size bytes whose first
 * member is a KeySet) holds, for this transaction; makes the container on
 * first use (container NULL).  Returns the container.
 */
static void *
keyset_reset(void *container, Size size, const char *name, long nkeys,
			 Size entrysize)
{
	KeySet	   *set = container;

	if (set == NULL)
	{
		set = MemoryContextAllocZero(TopMemoryContext, size);
		set->cxt = AllocSetContextCreate(TopMemoryContext, "anomaly forest keys",
										 ALLOCSET_DEFAULT_SIZES);
	}
	MemoryContextReset(set->cxt);
	set->keys = forest_key_table(name, nkeys, entrysize, set->cxt);
	set->lxid = MyProc->lxid;
	set->detector_id = 0;
	return set;
}

/* True when set holds keys of detector id in this transaction. */
static bool
keyset_current(const KeySet *set, int64 id)
{
	return set->lxid == MyProc->lxid && set->detector_id == id;
}

DetectorCache *
detect_get_cache(int64 id)
{
	DetectorCache *dc;

	for (dc = detect_caches; dc; dc = dc->next)
		if (dc->id == id)
			return dc;
	dc = MemoryContextAllocZero(TopMemoryContext, sizeof(DetectorCache));
	dc->id = id;
	dc->next = detect_caches;
	detect_caches = dc;
	return dc;
}

/*
 * The allocator of a cache's forests (ctx: its ArenaPool).  Each block
 * carries its size in front, so that a freed forest arena is recognized
 * and kept for the next forest, while every other block (records, a
 * grader, scratch) goes back to the context.  A reused arena holds the
 * last forest's bytes: the engine sets everything it reads when it creates
 * or decodes a forest, as it must under malloc's garbage too.
 */
#define POOL_HEADER MAXALIGN(sizeof(Size))

static void *
pool_alloc(void *ctx, size_t size)
{
	ArenaPool  *pool = ctx;
	char	   *block;

	if (size == pool->arena && pool->nfree > 0)
		return pool->free[--pool->nfree];
	block = MemoryContextAllocExtended(pool->cxt, POOL_HEADER + size,
									   MCXT_ALLOC_HUGE | MCXT_ALLOC_NO_OOM);
	if (block == NULL)
		return NULL;
	*(Size *) block = size;
	return block + POOL_HEADER;
}

static void
pool_free(void *ctx, void *ptr)
{
	ArenaPool  *pool = ctx;
	char	   *block = (char *) ptr - POOL_HEADER;

	if (*(Size *) block == pool->arena && pool->nfree < ARENA_POOL_MAX)
		pool->free[pool->nfree++] = ptr;
	else
		pfree(block);
}

/* Sets the size of the arenas a cache's pool keeps, dropping others. */
static void
pool_set_arena(ArenaPool *pool, Size arena)
{
	if (pool->arena == arena)
		return;
	while (pool->nfree > 0)
		pfree((char *) pool->free[--pool->nfree] - POOL_HEADER);
	pool->arena = arena;
}

/* Frees every forest of dc; its memory is no longer current. */
static void
cache_clear(DetectorCache *dc)
{
	if (dc->cxt)
		MemoryContextDelete(dc->cxt);
	dc->cxt = NULL;
	memset(&dc->pool, 0, sizeof(dc->pool));
	/* Forests waiting to be stored are as stale as those in memory. */
	if (batch != NULL && batch->n > 0 && batch->set.detector_id == dc->id)
		batch_reset();
	dc->forests = NULL;
	dlist_init(&dc->lru);
	dc->bytes = 0;
	dc->store_credit = 0.0;
	dc->current = false;
}

void
detect_cache_init(DetectorCache *dc)
{
	cache_clear(dc);
	dc->cxt = AllocSetContextCreate(TopMemoryContext, "anomaly detector forests",
									ALLOCSET_DEFAULT_SIZES);
	dc->pool.cxt = dc->cxt;
	dc->forests = forest_key_table("anomaly detector forests", 256,
								   sizeof(ForestEntry), dc->cxt);
	dlist_init(&dc->lru);
}

void
detect_forget(int64 id)
{
	DetectorCache *dc;

	for (dc = detect_caches; dc; dc = dc->next)
		if (dc->id == id)
			cache_clear(dc);
}

/* Prepares the plans that load and store forests. */
void
detect_prepare_forest_plans(void)
{
	Oid			t2[2] = {INT8OID, TEXTOID};
	Oid			t6[6];

	detect_plans.rcf_type = detect_anomaly_type("rcf");
	detect_plans.load_key = detect_spi_prepare("SELECT model, journal_seq, journal_pos FROM anomaly.detector_forests"
										" WHERE detector_id OPERATOR(pg_catalog.=) $1"
										" AND partition_key OPERATOR(pg_catalog.=) $2", 2, t2);
	detect_plans.load_null = detect_spi_prepare("SELECT model, journal_seq, journal_pos FROM anomaly.detector_forests"
										 " WHERE detector_id OPERATOR(pg_catalog.=) $1"
										 " AND partition_key IS NULL", 1, t2);
	t2[1] = TEXTARRAYOID;
	detect_plans.load_many = detect_spi_prepare("SELECT partition_key, model, journal_seq, journal_pos"
										 " FROM anomaly.detector_forests"
										 " WHERE detector_id OPERATOR(pg_catalog.=) $1"
										 " AND partition_key OPERATOR(pg_catalog.=) ANY ($2)", 2, t2);
	detect_plans.rcf_array_type = get_array_type(detect_plans.rcf_type);
	if (!OidIsValid(detect_plans.rcf_array_type))
		elog(ERROR, "type anomaly.rcf has no array type");
	t6[0] = INT8OID;
	t6[1] = TEXTARRAYOID;
	t6[2] = detect_plans.rcf_array_type;
	t6[3] = INT8ARRAYOID;
	t6[4] = INT4ARRAYOID;
	t6[5] = INT8ARRAYOID;
	detect_plans.store_many = detect_spi_prepare("INSERT INTO anomaly.detector_forests AS f"
								   " (detector_id, partition_key, model, journal_seq, journal_pos, points, updated_at)"
								   " SELECT $1, u.k, u.m, u.s, u.p, u.n, pg_catalog.now()"
								   " FROM ROWS FROM (pg_catalog.unnest($2), pg_catalog.unnest($3), pg_catalog.unnest($4),"
								   " pg_catalog.unnest($5), pg_catalog.unnest($6)) AS u(k, m, s, p, n)"
								   " ON CONFLICT (detector_id, partition_key) DO UPDATE SET"
								   " model = excluded.model, journal_seq = excluded.journal_seq,"
								   " journal_pos = excluded.journal_pos, points = excluded.points,"
								   " updated_at = excluded.updated_at", 6, t6);
}

/*
 * The buffer models are encoded into before they are stored: kept for the
 * process's life, it grows to the largest model and saves measuring each
 * model before writing it (one encoding pass instead of two).
 */
static struct varlena *encode_buf = NULL;
static Size encode_cap = 0;

/* Encodes entry's forest into encode_buf; returns the model's size. */
static size_t
encode_forest(DetectorDef *def, ForestEntry *e)
{
	for (;;)
	{
		size_t		size = rcf_model_encode_into(e->forest, e->grader, e->transform,
												 encode_buf ? (uint8_t *) VARDATA(encode_buf) : NULL,
												 encode_cap);

		if (size == 0 || size > MaxAllocSize - VARHDRSZ)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("a forest of detector \"%s\" is too large to store (%zu bytes)",
							def->name, size)));
		if (encode_buf && size <= encode_cap)
		{
			SET_VARSIZE(encode_buf, VARHDRSZ + size);
			return size;
		}
		/* Too small: room for this model and some growth, then again. */
		if (encode_buf)
			pfree(encode_buf);
		encode_buf = NULL;
		encode_cap = Min(size + size / 4 + 1024, MaxAllocSize - VARHDRSZ);
		encode_buf = MemoryContextAlloc(TopMemoryContext, VARHDRSZ + encode_cap);
	}
}

/*
 * Forests stored together.  A detector partitioned by many keys stores a
 * forest at nearly every key switch (the one evicted for the next), and one
 * statement per forest costs more than encoding it; so stores wait in a
 * batch, written by one statement per few hundred forests.  Nothing outside
 * this file sees a batch: every function here that stores forests writes
 * the batch before it returns, and a forest is loaded only after the batch
 * holding its key is written.  A batch left by an error belongs to an
 * aborted transaction and is dropped (lxid), and so is one whose forests'
 * cache is cleared.
 */

/* Empties the batch without writing it. */
static void
batch_reset(void)
{
	batch = keyset_reset(batch, sizeof(StoreBatch), "anomaly forests to store",
						 BATCH_FORESTS, sizeof(ForestKey));
	batch->detector_name = NULL;
	batch->n = 0;
	batch->bytes = 0;
}

/* Writes the batch to detector_forests, then empties it. */
void
detect_store_batch(void)
{
	int			dims[1];
	int			lbs[1] = {1};
	Datum		args[6];
	int16		typlen;
	bool		typbyval;
	char		typalign;
	int			rc;

	if (batch == NULL || batch->n == 0)
		return;
	if (batch->set.lxid != MyProc->lxid)
	{
		batch_reset();
		return;
	}
	dims[0] = batch->n;
	get_typlenbyvalalign(detect_plans.rcf_type, &typlen, &typbyval, &typalign);
	args[0] = Int64GetDatum(batch->set.detector_id);
	args[1] = PointerGetDatum(construct_md_array(batch->key, batch->key_null, 1, dims, lbs,
												 TEXTOID, -1, false, TYPALIGN_INT));
	args[2] = PointerGetDatum(construct_md_array(batch->model, NULL, 1, dims, lbs,
												 detect_plans.rcf_type, typlen, typbyval,
												 typalign));
	args[3] = PointerGetDatum(construct_array(batch->seq, batch->n, INT8OID, 8,
											  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[4] = PointerGetDatum(construct_array(batch->pos, batch->n, INT4OID, 4, true,
											  TYPALIGN_INT));
	args[5] = PointerGetDatum(construct_array(batch->points, batch->n, INT8OID, 8,
											  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	rc = detect_spi_execute_plan(detect_plans.store_many, args, NULL, false, 0);
	if (rc != SPI_OK_INSERT || SPI_processed != (uint64) batch->n)
		elog(ERROR, "could not store the forests of detector \"%s\" (%d)",
			 batch->detector_name, rc);
	for (int i = 1; i < 6; i++)
		pfree(DatumGetPointer(args[i]));
	batch_reset();
}

/* True when the batch holds a forest of partition key k. */
static bool
batch_has(const ForestKey *k)
{
	return batch != NULL && batch->n > 0 && batch->set.lxid == MyProc->lxid &&
		hash_search(batch->set.keys, k, HASH_FIND, NULL) != NULL;
}

/* Stores entry's forest in detector_forests, in the batch. */
void
detect_store_forest(DetectorDef *def, ForestEntry *e)
{
	size_t		size = encode_forest(def, e);
	MemoryContext old;
	ForestKey	k;
	bool		found;
	struct varlena *model;

	if (batch == NULL || batch->set.lxid != MyProc->lxid)
		batch_reset();
	/* A key stored twice in a batch would be one row updated twice. */
	if (batch->n > 0 && (batch->set.detector_id != def->id || batch_has(&e->key)))
		detect_store_batch();
	old = MemoryContextSwitchTo(batch->set.cxt);
	if (batch->n == 0)
	{
		batch->set.detector_id = def->id;
		batch->detector_name = pstrdup(def->name);
	}
	model = palloc(VARHDRSZ + size);
	memcpy(model, encode_buf, VARHDRSZ + size);
	k.isnull = e->key.isnull;
	k.str = k.isnull ? NULL : pstrdup(e->key.str);
	(void) hash_search(batch->set.keys, &k, HASH_ENTER, &found);
	batch->key[batch->n] = k.isnull ? (Datum) 0 : CStringGetTextDatum(k.str);
	batch->key_null[batch->n] = k.isnull;
	batch->model[batch->n] = PointerGetDatum(model);
	batch->seq[batch->n] = Int64GetDatum(e->as_seq);
	batch->pos[batch->n] = Int32GetDatum(e->as_pos);
	batch->points[batch->n] = Int64GetDatum((int64) rcf_updates(e->forest));
	MemoryContextSwitchTo(old);
	batch->n++;
	batch->bytes += VARHDRSZ + size;
	e->dirty = false;
	if (batch->n == BATCH_FORESTS || batch->bytes >= BATCH_BYTES)
		detect_store_batch();
}

/* Removes entry from memory, storing it first if it learned anything. */
static void
evict_forest(DetectorCache *dc, DetectorDef *def, ForestEntry *e)
{
	const char *key = e->key.str;

	if (e->dirty)
		detect_store_forest(def, e);
	dlist_delete(&e->lru);
	dc->bytes -= e->bytes;
	rcf_free(e->forest);
	if (e->grader)
		rcf_grader_free(e->grader);
	rcf_transform_free(e->transform);
	hash_search(dc->forests, &e->key, HASH_REMOVE, NULL);
	if (key)
		pfree((void *) key);
}

/* True when a stored transform (NULL: none) is the one spec describes. */
static bool
same_transform(const RcfTransform *t, const AnomalyTransformSpec *spec)
{
	const RcfTransformParams *p;

	if (t == NULL)
		return spec->params.method == RCF_TRANSFORM_NONE;
	p = rcf_transform_params(t);
	if (p->method != spec->params.method || p->dims != spec->params.dims ||
		p->decay != spec->params.decay || p->clip != spec->params.clip)
		return false;
	for (int i = 0; i < p->dims; i++)
		if (rcf_transform_weight(t, i) != (spec->weights ? spec->weights[i] : 1.0))
			return false;
	return true;
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
 * Models read ahead.  Rows are scored grouped by key, so the keys a round
 * will load are known in advance: they are read by one statement for a few
 * hundred keys (Prefetch) instead of one each, which is most of the cost
 * of a key switch when forests are small.  A key read ahead and not found
 * has no stored model.  detect_get_forest takes (and removes) a key's entry; only
 * keys neither in memory nor waiting in the batch are read ahead, so an
 * entry cannot go stale before it is taken.  Entries belong to one call of
 * detect_score_rows (lxid guards against one left by an error).
 */
typedef struct PrefetchEntry
{
	ForestKey	key;			/* hash key: must be first */
	struct varlena *model;		/* NULL: none stored */
	int64		seq;
	int32		pos;
} PrefetchEntry;

typedef struct Prefetch
{
	KeySet		set;			/* PrefetchEntry; reset with each read */
	double		avg_bytes;		/* of the models read so far, to size reads */
} Prefetch;

static Prefetch *prefetch = NULL;

/* Drops what was read ahead. */
static void
read_ahead_reset(void)
{
	bool		first = (prefetch == NULL);

	prefetch = keyset_reset(prefetch, sizeof(Prefetch), "anomaly forests read ahead",
							256, sizeof(PrefetchEntry));
	if (first)
		prefetch->avg_bytes = 4096.0;
}

/* Drops what was read ahead, if anything was (the end of a round's scoring). */
void
detect_read_ahead_done(void)
{
	if (prefetch != NULL)
		read_ahead_reset();
}

/*
 * Takes key k's entry, read ahead: true and *model (NULL if none is
 * stored), *seq, *pos set, or false when k was not read ahead.  *model is
 * in the read-ahead context, valid until the next read.
 */
static bool
prefetch_take(DetectorDef *def, const ForestKey *k, struct varlena **model,
			  int64 *seq, int32 *pos)
{
	PrefetchEntry *pe;

	if (prefetch == NULL || !keyset_current(&prefetch->set, def->id))
		return false;
	pe = hash_search(prefetch->set.keys, k, HASH_FIND, NULL);
	if (pe == NULL)
		return false;
	*model = pe->model;
	*seq = pe->seq;
	*pos = pe->pos;
	(void) hash_search(prefetch->set.keys, k, HASH_REMOVE, NULL);
	return true;
}

/*
 * Reads ahead the models of the keys of rows order[from..n) that are not
 * in memory, not waiting in the batch and not the NULL key: as many keys
 * as make about BATCH_BYTES of models by the sizes read so far, at most
 * BATCH_FORESTS.
 */
void
detect_read_ahead(DetectorCache *dc, DetectorDef *def, RowResult *res,
			  const int64 *order, int64 from, int64 n)
{
	Datum	   *keys;
	int			nkeys = 0;
	int			want;
	const char *last = NULL;
	Datum		args[2];
	int			rc;
	MemoryContext old;

	read_ahead_reset();
	prefetch->set.detector_id = def->id;
	want = (int) Max(1.0, Min((double) BATCH_FORESTS, BATCH_BYTES / prefetch->avg_bytes));
	old = MemoryContextSwitchTo(prefetch->set.cxt);
	keys = palloc(sizeof(Datum) * want);
	for (int64 o = from; o < n && nkeys < want; o++)
	{
		ForestKey	k;
		PrefetchEntry *pe;
		bool		found;

		k.str = res[order[o]].key;
		k.isnull = (k.str == NULL);
		if (k.isnull || (last && strcmp(last, k.str) == 0))
			continue;
		last = k.str;
		if (hash_search(dc->forests, &k, HASH_FIND, NULL) != NULL || batch_has(&k))
			continue;
		k.str = pstrdup(k.str);
		pe = hash_search(prefetch->set.keys, &k, HASH_ENTER, &found);
		pe->model = NULL;
		pe->seq = 0;
		pe->pos = 0;
		keys[nkeys++] = CStringGetTextDatum(k.str);
	}
	MemoryContextSwitchTo(old);
	if (nkeys == 0)
		return;
	args[0] = Int64GetDatum(def->id);
	args[1] = PointerGetDatum(construct_array(keys, nkeys, TEXTOID, -1, false, TYPALIGN_INT));
	rc = detect_spi_execute_plan(detect_plans.load_many, args, NULL, false, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "could not load the forests of detector \"%s\"", def->name);
	if (SPI_processed > 0)
	{
		double		bytes = 0.0;

		old = MemoryContextSwitchTo(prefetch->set.cxt);
		for (uint64 i = 0; i < SPI_processed; i++)
		{
			bool		isnull;
			ForestKey	k;
			PrefetchEntry *pe;

			k.str = TextDatumGetCString(detect_spi_value(i, 1, &isnull));
			k.isnull = false;
			pe = hash_search(prefetch->set.keys, &k, HASH_FIND, NULL);
			if (pe == NULL)
				elog(ERROR, "detector \"%s\" read a forest it did not ask for", def->name);
			pe->model = pg_detoast_datum_copy((struct varlena *) DatumGetPointer(detect_spi_value(i, 2, &isnull)));
			pe->seq = DatumGetInt64(detect_spi_value(i, 3, &isnull));
			pe->pos = DatumGetInt32(detect_spi_value(i, 4, &isnull));
			bytes += VARSIZE_ANY(pe->model);
		}
		MemoryContextSwitchTo(old);
		prefetch->avg_bytes = Max(256.0, bytes / SPI_processed);
	}
	SPI_freetuptable(SPI_tuptable);
}

/* True when key's forest is neither in memory nor read ahead. */
bool
detect_forest_unread(DetectorCache *dc, DetectorDef *def, const char *key)
{
	ForestKey	k = {key, key == NULL};

	if (hash_search(dc->forests, &k, HASH_FIND, NULL) != NULL)
		return false;
	return prefetch == NULL || !keyset_current(&prefetch->set, def->id) ||
		hash_search(prefetch->set.keys, &k, HASH_FIND, NULL) == NULL;
}

/*
 * The forest of partition key `key` (NULL: the NULL key): from memory, else
 * from detector_forests, else new.  May evict others to stay under the
 * memory limit.
 */
ForestEntry *
detect_get_forest(DetectorCache *dc, DetectorDef *def, const char *key)
{
	ForestKey	k;
	ForestEntry *e;
	bool		found;
	Size		limit = (Size) detect_memory_limit_mb * 1024 * 1024;
	Size		need = rcf_arena_size(&def->params);
	Datum		args[2];
	int			rc;
	MemoryContext old;
	struct varlena *model = NULL;	/* the stored model, if any */
	int64		seq = 0;
	int32		pos = 0;

	k.str = key;
	k.isnull = (key == NULL);
	e = hash_search(dc->forests, &k, HASH_FIND, NULL);
	if (e)
	{
		dlist_move_tail(&dc->lru, &e->lru);
		return e;
	}

	/* An evicted forest's arena goes to the pool, for this one. */
	pool_set_arena(&dc->pool, need);
	while (dc->bytes + need > limit && !dlist_is_empty(&dc->lru))
		evict_forest(dc, def, dlist_head_element(ForestEntry, lru, &dc->lru));

	if (!prefetch_take(def, &k, &model, &seq, &pos))
	{
		/* Its last state may still wait in the batch. */
		if (batch_has(&k))
			detect_store_batch();
		args[0] = Int64GetDatum(def->id);
		if (key)
		{
			args[1] = CStringGetTextDatum(key);
			rc = detect_spi_execute_plan(detect_plans.load_key, args, NULL, false, 1);
		}
		else
			rc = detect_spi_execute_plan(detect_plans.load_null, args, NULL, false, 1);
		if (rc != SPI_OK_SELECT)
			elog(ERROR, "could not load a forest of detector \"%s\"", def->name);
		if (SPI_processed > 0)
		{
			bool		isnull;

			model = (struct varlena *) DatumGetPointer(detect_spi_value(0, 1, &isnull));
			model = pg_detoast_datum_packed(model);
			seq = DatumGetInt64(detect_spi_value(0, 2, &isnull));
			pos = DatumGetInt32(detect_spi_value(0, 3, &isnull));
		}
	}

	old = MemoryContextSwitchTo(dc->cxt);
	k.str = key ? pstrdup(key) : NULL;
	MemoryContextSwitchTo(old);
	e = hash_search(dc->forests, &k, HASH_ENTER, &found);
	Assert(!found);
	e->key = k;
	e->forest = NULL;
	e->grader = NULL;
	e->transform = NULL;
	e->dirty = false;
	e->dirty_from = 0;
	e->as_seq = 0;
	e->as_pos = 0;
	dlist_push_tail(&dc->lru, &e->lru);

	PG_TRY();
	{
		if (model != NULL)
		{
			RcfAllocator alloc = {pool_alloc, pool_free, &dc->pool};
			RcfDecodeStatus status;
			const char *detail = NULL;

			/* With the detector's fraction, which may have changed since. */
			e->forest = rcf_model_decode_boxes((const uint8_t *) VARDATA_ANY(model),
											   VARSIZE_ANY_EXHDR(model), &alloc, &e->grader,
											   &e->transform,
											   def->params.bounding_box_cache_fraction,
											   &status, &detail);
			if (e->forest == NULL)
				ereport(ERROR,
						(errcode(status == RCF_DECODE_NO_MEMORY ? ERRCODE_OUT_OF_MEMORY : ERRCODE_DATA_CORRUPTED),
						 errmsg("stored forest of detector \"%s\" cannot be decoded", def->name),
						 errdetail("The decoder reports: %s.", detail ? detail : "unknown")));
			if (!same_params(rcf_params(e->forest), &def->params) ||
				(def->grade != (e->grader != NULL)) ||
				!same_transform(e->transform, &def->tspec))
				ereport(ERROR,
						(errcode(ERRCODE_DATA_CORRUPTED),
						 errmsg("stored forest of detector \"%s\" has other parameters than the detector",
								def->name)));
			e->as_seq = seq;
			e->as_pos = pos;
		}
		else
		{
			/*
			 * Not zeroed, as a reused arena is not: the engine sets what it
			 * reads (the shingle of a new forest is zeros until it fills).
			 */
			RcfAllocator falloc = {pool_alloc, pool_free, &dc->pool};

			if (rcf_arena_size(&def->params) > MaxAllocHugeSize / 2)
				ereport(ERROR,
						(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
						 errmsg("a forest of detector \"%s\" would need %zu bytes of memory",
								def->name, rcf_arena_size(&def->params))));
			e->forest = rcf_create(&def->params, &falloc);
			if (e->forest == NULL)
				ereport(ERROR,
						(errcode(ERRCODE_OUT_OF_MEMORY),
						 errmsg("could not create a forest for detector \"%s\"", def->name)));
			if (def->grade)
			{
				RcfAllocator alloc = {anomaly_context_alloc_no_oom, anomaly_context_free, dc->cxt};

				e->grader = rcf_grader_create(&def->gparams, &def->params, &alloc);
				if (e->grader == NULL)
					ereport(ERROR,
							(errcode(ERRCODE_OUT_OF_MEMORY),
							 errmsg("could not create a grader for detector \"%s\"", def->name)));
			}
			if (def->tspec.params.method != RCF_TRANSFORM_NONE)
			{
				RcfAllocator alloc = {anomaly_context_alloc_no_oom, anomaly_context_free, dc->cxt};

				e->transform = rcf_transform_create(&def->tspec.params,
													def->tspec.weights, &alloc);
				if (e->transform == NULL)
					ereport(ERROR,
							(errcode(ERRCODE_OUT_OF_MEMORY),
							 errmsg("could not create a transform for detector \"%s\"", def->name)));
			}
		}
	}
	PG_CATCH();
	{
		if (e->forest)
			rcf_free(e->forest);
		if (e->grader)
			rcf_grader_free(e->grader);
		rcf_transform_free(e->transform);
		dlist_delete(&e->lru);
		hash_search(dc->forests, &k, HASH_REMOVE, NULL);
		PG_RE_THROW();
	}
	PG_END_TRY();
	e->bytes = rcf_bytes(e->forest);
	dc->bytes += e->bytes;
	return e;
}

/* An entry without a grader learns a point: its forest, then its transform. */
void
detect_forest_learn(ForestEntry *e, const double *values)
{
	double		xbuf[RCF_MAX_DIMENSIONS];

	if (e->transform == NULL)
	{
		rcf_update(e->forest, values);
		return;
	}
	rcf_transform_apply(e->transform, values, xbuf);
	rcf_update(e->forest, xbuf);
	rcf_transform_learn(e->transform, values);
}

/*
 * Makes sure the next `updates` points e learns allocate nothing (they may
 * be learned on the detector's threads), and counts what its forest holds
 * now: with shingling its record store grows as it learns.
 */
void
detect_reserve_forest(DetectorCache *dc, DetectorDef *def, ForestEntry *e,
			   int64 updates)
{
	if (rcf_reserve(e->forest, (uint64_t) updates) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory for a forest of detector \"%s\"", def->name)));
	dc->bytes -= e->bytes;
	e->bytes = rcf_bytes(e->forest);
	dc->bytes += e->bytes;
}

/* ---------------------------------------------------------------------
 * Models moving between detectors (models.c: import)
 */

/*
 * Checks that model (an anomaly.rcf value) decodes and was built with def's
 * forest parameters, grading and transform, as detect_get_forest would check it
 * when loaded; returns the points it learned.
 */
int64
detect_check_model(DetectorDef *def, struct varlena *model)
{
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext, "anomaly model check",
											  ALLOCSET_DEFAULT_SIZES);
	RcfAllocator alloc = {anomaly_context_alloc_no_oom, anomaly_context_free, cxt};
	RcfGrader  *grader = NULL;
	RcfTransform *transform = NULL;
	RcfForest  *forest;
	RcfDecodeStatus status;
	const char *detail = NULL;
	int64		points;

	model = pg_detoast_datum_packed(model);
	anomaly_check_model_memory((const uint8_t *) VARDATA_ANY(model), VARSIZE_ANY_EXHDR(model),
							   RCF_BOX_CACHE_STORED);
	forest = rcf_model_decode_tf((const uint8_t *) VARDATA_ANY(model), VARSIZE_ANY_EXHDR(model),
								 &alloc, &grader, &transform, &status, &detail);
	if (forest == NULL)
		ereport(ERROR,
				(errcode(status == RCF_DECODE_NO_MEMORY ? ERRCODE_OUT_OF_MEMORY : ERRCODE_DATA_CORRUPTED),
				 errmsg("model for detector \"%s\" cannot be decoded", def->name),
				 errdetail("The decoder reports: %s.", detail ? detail : "unknown")));
	if (!same_params(rcf_params(forest), &def->params) ||
		def->grade != (grader != NULL) || !same_transform(transform, &def->tspec))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("model has other parameters than detector \"%s\"", def->name),
				 errdetail("Its forest, grading and transform must be those of the detector's options.")));
	points = (int64) rcf_updates(forest);
	MemoryContextDelete(cxt);
	return points;
}
