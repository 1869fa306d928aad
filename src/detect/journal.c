/*
 * journal.c
 *	  How a detector's forests survive its process: every round's learned
 *	  points go to detector_journal, forests are stored a few per round
 *	  (checkpoints spread over rounds, the longest waiting first) and the
 *	  journal is cut behind them; a process whose memory is stale replays the
 *	  journal onto the stored forests (forests.c keeps and stores them).
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "lib/ilist.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/timestamp.h"

#include "anomaly.h"
#include "detect/detect.h"
#include "detect/round_internal.h"

/* Orders forests by the first round they learned in since stored. */
static int
cmp_dirty_from(const void *a, const void *b)
{
	int64		x = (*(ForestEntry *const *) a)->dirty_from;
	int64		y = (*(ForestEntry *const *) b)->dirty_from;

	return (x > y) - (x < y);
}

/* True when position (seq, pos) comes after what entry holds. */
static inline bool
after(ForestEntry *e, int64 seq, int32 pos)
{
	return seq > e->as_seq || (seq == e->as_seq && pos > e->as_pos);
}

/* The columns of detect_replay_journal's statement. */
enum
{
	JOURNAL_SEQ = 1,
	JOURNAL_KEYS,
	JOURNAL_POINTS
};

/*
 * Rebuilds the forests in memory from the stored ones and the journal:
 * every journal point after a forest's stored position is learned again.
 */
void
detect_replay_journal(DetectorCache *dc, DetectorDef *def)
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
			int64		seq = DatumGetInt64(SPI_getbinval(tt->vals[r], tt->tupdesc,
														  JOURNAL_SEQ, &isnull));
			ArrayType  *keys = DatumGetArrayTypeP(SPI_getbinval(tt->vals[r], tt->tupdesc,
																JOURNAL_KEYS, &isnull));
			ArrayType  *points = DatumGetArrayTypeP(SPI_getbinval(tt->vals[r], tt->tupdesc,
																  JOURNAL_POINTS, &isnull));
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
				ForestEntry *e = detect_get_forest(dc, def, key);

				if (after(e, seq, i + 1))
				{
					detect_reserve_forest(dc, def, e, 1);
					if (e->grader)
					{
						RcfGrade	grade;

						rcf_grader_assess_tf(e->grader, e->forest, e->transform,
											 pv + (Size) i * dims, &grade, NULL);
						rcf_grader_learn_tf(e->grader, e->forest, e->transform,
											pv + (Size) i * dims, &grade);
					}
					else
						detect_forest_learn(e, pv + (Size) i * dims);
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
	detect_store_batch();
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
bool
detect_spread_checkpoint(DetectorCache *dc, DetectorDef *def, int64 seq, int npoints,
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
		detect_store_forest(def, dirty[i]);
	detect_store_batch();
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
 * Stores every forest in memory that learned since it was last stored, so
 * that detector_forests alone holds the models of the last round.
 */
void
detect_store_all_forests(DetectorCache *dc, DetectorDef *def)
{
	int			n;
	ForestEntry **dirty = waiting_forests(dc, &n);

	for (int i = 0; i < n; i++)
		detect_store_forest(def, dirty[i]);
	detect_store_batch();
	pfree(dirty);
}

