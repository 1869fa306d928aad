/*
 * score.c
 *	  Scoring a round's evaluated rows: grouped by partition key, each key's
 *	  rows scored then learned in order by its forest, several keys at once
 *	  in waves on the detector's threads (threads.c), the forests taken from
 *	  the cache of forests.c.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "anomaly.h"
#include "detect/detect.h"
#include "detect/round_internal.h"

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
	DetectorCache *dc;
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

		double		xbuf[RCF_MAX_DIMENSIONS];
		const double *x = rr->values;

		/* The forest sees the point transformed with the earlier rows' statistics. */
		if (e->transform)
		{
			rcf_transform_apply(e->transform, rr->values, xbuf);
			x = xbuf;
		}
		if (w->def->with_explanation)
		{
			double	   *high = wave_attr(w, o, total);

			rr->score = rcf_attribution(e->forest, x, high, high + total);
		}
		if (e->grader)
		{
			RcfGrade	grade;
			double	   *expected = w->expected + o * dims;

			rcf_grader_assess_tf(e->grader, e->forest, e->transform, rr->values,
								 &grade, expected);
			rr->score = grade.score;
			rr->grade = grade.grade;
			rr->is_anomaly = grade.is_anomaly;
			rr->expected = grade.has_expected ? expected : NULL;
			rcf_grader_learn_tf(e->grader, e->forest, e->transform, rr->values,
								&grade);
		}
		else
		{
			/*
			 * The score itself, not the attribution's sum: they differ in the
			 * last bits, and scores must equal the window function's.
			 */
			rr->score = rcf_score(e->forest, x);
			detect_forest_learn(e, rr->values);
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

	/* The threads must not allocate: room for every row a forest learns. */
	for (int t = 0; t < w->ntasks; t++)
		detect_reserve_forest(w->dc, def, w->tasks[t].e, w->tasks[t].hi - w->tasks[t].lo);

	/* Threads pay off only when there is some work for each. */
	detect_run_tasks(score_task, w, w->ntasks,
					 w->hi - w->lo >= 64 ? detect_threads : 1);
	detect_progress_scored(w->hi - w->lo, true);

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
int
detect_score_rows(DetectorCache *dc, DetectorDef *def, EvalState *es,
		   int64 lo, int64 hi, int64 seq, int64 *out, int64 *filtered,
		   ArrayBuildState **jkeys, ArrayBuildState **jpoints, int *npoints)
{
	int			dims = def->nfeatures;
	int			total = dims * def->params.shingle_size;
	int64		n = hi - lo;
	int64	   *order = palloc_extended(sizeof(int64) * Max(n, 1), MCXT_ALLOC_HUGE);
	int64		norder = 0;
	int			nout = 0;
	Size		limit = (Size) detect_memory_limit_mb * 1024 * 1024;
	Size		need = rcf_arena_size(&def->params);
	int64		attr_rows = PG_INT64_MAX;
	ScoreWave	w;

	/* Which rows are scored, and which of those are learned. */
	for (int64 i = lo; i < hi; i++)
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
				bad = detect_bad_value(rr->values[f], f + 1);
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
	w.dc = dc;
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
			ForestEntry *e;

			if (rr->key != NULL && detect_forest_unread(dc, def, rr->key))
				detect_read_ahead(dc, def, es->res, order, o, norder);
			e = detect_get_forest(dc, def, rr->key);

			w.tasks[w.ntasks++] = (ScoreTask) {e, o, o};
			w.bytes += e->bytes;
		}
		w.tasks[w.ntasks - 1].hi = o + 1;
		w.hi = o + 1;
	}
	if (w.ntasks > 0)
		run_wave(&w, es, seq, jkeys, jpoints, npoints);
	pfree(order);
	pfree(w.tasks);
	if (w.attr)
		pfree(w.attr);
	detect_store_batch();
	detect_read_ahead_done();

	for (int64 i = lo; i < hi; i++)
	{
		RowResult  *rr = &es->res[i];

		if (rr->ok && !rr->filtered)
			out[nout++] = i;
	}
	return nout;
}

