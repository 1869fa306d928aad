/*
 * round_internal.h
 *	  What the files of a detection round share (private to src/detect):
 *	  a detector's definition as read by a round, the forests kept between
 *	  rounds, the rows a round decodes and their evaluation results.
 */
#ifndef ANOMALY_ROUND_INTERNAL_H
#define ANOMALY_ROUND_INTERNAL_H

#include "postgres.h"

#include "executor/spi.h"
#include "lib/ilist.h"
#include "replication/logical.h"
#include "utils/array.h"
#include "utils/hsearch.h"
#include "utils/jsonb.h"

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
	DetectSettings *settings;	/* its expressions' (settings.c) */
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
	XLogRecPtr	partial_lsn;	/* a transaction consumed in part, or 0 */
	int64		partial_rows;	/* its rows consumed */
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
	AnomalyTransformSpec tspec; /* method none: no transform */
	char	   *destination;	/* qualified name of the user table, or NULL */
	char	   *time_column;	/* the source's event time (ROWTIME), or NULL */
	char	   *backfill;		/* the backfill's state while it runs, or NULL */
	char	   *window;			/* windowed (window_agg.c): its options, or NULL */
	char	   *note;			/* the note of detector_status, or NULL */
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
	RcfTransform *transform;	/* NULL when its transform is none */
	Size		bytes;
	int64		as_seq;			/* includes journal points up to here */
	int32		as_pos;
	bool		dirty;			/* learned since stored */
	int64		dirty_from;		/* while dirty: the first round it learned in */
	dlist_node	lru;
} ForestEntry;

/*
 * Forest memory between evicting one forest and loading the next
 * (forests.c): a forest's arena is the same size for every key of a
 * detector, so an evicted forest's arena is handed to the next instead of
 * being freed and faulted in afresh.
 */
#define ARENA_POOL_MAX 1
typedef struct ArenaPool
{
	MemoryContext cxt;			/* the cache's: where blocks come from */
	Size		arena;			/* size of the blocks kept (a forest's arena) */
	int			nfree;
	void	   *free[ARENA_POOL_MAX];
} ArenaPool;

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
	ArenaPool	pool;			/* allocator of the forests in cxt */

	/* decoding kept between rounds (the worker) */
	MemoryContext decoding_cxt;
	LogicalDecodingContext *ctx;
	char	   *decoding_sig;
	bool		holds_slot;
	XLogRecPtr	confirm_lsn;	/* to confirm once the round committed */
	bool		redecode;		/* decode again from the slot next round */

	struct DetectorCache *next;
} DetectorCache;

/* Every detector this process keeps state for (forests.c). */
extern DetectorCache *detect_caches;
/* Whose slot we hold (reader.c). */
extern DetectorCache *detect_slot_owner;

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
	int64		row_bytes;		/* bytes of the rows kept, as decoded */
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

	/*
	 * A transaction too large for one round (DETECT_XACT_ROWS): the part of
	 * it consumed before this round (resume_*), and where this round stops
	 * in it (split_*).  Rows of a transaction come in the same order each
	 * time it is decoded, so a count of rows is a position in it.
	 */
	XLogRecPtr	resume_lsn;
	int64		resume_rows;
	int64		resumed_rows;	/* rows passed over to resume */
	int64		xact_rows;		/* rows of the current transaction so far */
	int64		xact_kept;		/* of which kept by this round */
	int64		xact_bytes;		/* their bytes */
	bool		split;
	XLogRecPtr	split_lsn;
	int64		split_rows;		/* rows of it consumed after this round */
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
	bool		has_rowtime;	/* a window's result: rowtime is its end */
	TimestampTz rowtime;
} RowResult;

/* Plans of one round (SPI, freed with it). */
typedef struct RoundPlans
{
	SPIPlanPtr	load_key;
	SPIPlanPtr	load_null;
	SPIPlanPtr	load_many;		/* models of several keys (forests.c) */
	SPIPlanPtr	store_many;		/* a batch of forests (forests.c) */
	Oid			rcf_type;
	Oid			rcf_array_type;
} RoundPlans;

extern RoundPlans detect_plans;

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

	/* what scoring found (detect_score_rows) */
	int64		seq;			/* this round's batch_seq */
	int64	   *out;			/* rows that get a score row */
	int			nout;
	int64		filtered;
	ArrayBuildState *jkeys;		/* the journal entry */
	ArrayBuildState *jpoints;
	int			npoints;
} RoundWrite;

/* The definition (definition.c) */
extern Datum detect_spi_value(int row, int col, bool *isnull);
extern char *detect_spi_text(int row, int col);
extern int	detect_text_array_to_cstrings(Datum d, char ***out);
extern bool detect_read_def(int64 id, bool lock, DetectorDef *def,
							bool *locked);
extern Oid	detect_anomaly_type(const char *name);

/* Forests (forests.c) */
extern DetectorCache *detect_get_cache(int64 id);
extern void detect_cache_init(DetectorCache *dc);
extern void detect_prepare_forest_plans(void);
extern ForestEntry *detect_get_forest(DetectorCache *dc, DetectorDef *def,
									  const char *key);
extern void detect_forest_learn(ForestEntry *e, const double *values);
extern void detect_reserve_forest(DetectorCache *dc, DetectorDef *def,
								  ForestEntry *e, int64 updates);
extern bool detect_forest_unread(DetectorCache *dc, DetectorDef *def,
								 const char *key);
extern void detect_read_ahead_done(void);
extern void detect_read_ahead(DetectorCache *dc, DetectorDef *def,
							  RowResult *res, const int64 *order,
							  int64 from, int64 n);
extern void detect_store_forest(DetectorDef *def, ForestEntry *e);
extern void detect_store_batch(void);
extern int64 detect_check_model(DetectorDef *def, struct varlena *model);

/* The journal and spread checkpoints (journal.c) */
extern void detect_replay_journal(DetectorCache *dc, DetectorDef *def);
extern bool detect_spread_checkpoint(DetectorCache *dc, DetectorDef *def,
									 int64 seq, int npoints, TimestampTz now,
									 ArrayBuildState *jkeys,
									 ArrayBuildState *jpoints,
									 int64 *journal_points,
									 int64 *checkpoint_seq);
extern void detect_store_all_forests(DetectorCache *dc, DetectorDef *def);

/* Scoring a round's rows (score.c) */
extern int	detect_score_rows(DetectorCache *dc, DetectorDef *def,
							  EvalState *es, int64 lo, int64 hi, int64 seq,
							  int64 *out,
							  int64 *filtered, ArrayBuildState **jkeys,
							  ArrayBuildState **jpoints, int *npoints);

/* seed.c */
extern void detect_store_seeded_forest(int64 id, Datum key, bool key_null, Datum model,
									   int64 batch_seq, int64 points);

/* Reading the slot (reader.c) */
extern bool detect_open_decoding(DetectorCache *dc, DetectorDef *def);
extern bool detect_decode_rows(DetectorCache *dc, RoundData *rd, int max_rows,
							   XLogRecPtr *end);
extern void detect_release_decoding(DetectorCache *dc);
extern void detect_confirm_slot(XLogRecPtr lsn);

/* Evaluation (evaluate.c) */
extern Relation detect_open_source(DetectorDef *def);
extern Datum detect_row_to_composite(DetectorDef *def, RoundData *rd, int64 i,
									 TupleDesc cur, Datum *values, bool *nulls,
									 char **error);
extern void detect_prepare_eval(EvalState *es, Relation rel);
extern void detect_eval_range(EvalState *es, int lo, int hi);
extern char *detect_bad_value(double v, int position);

/* History (backfill.c) */
extern DetectRoundResult detect_backfill_round(DetectorCache *dc, DetectorDef *def,
											   MemoryContext rcxt, int max_rows,
											   int64 *rows_out);

/* Writes (write.c) */
extern void detect_write_round_as_origin(RoundWrite *w);
extern void detect_score_and_write_round(RoundWrite *w);

#endif							/* ANOMALY_ROUND_INTERNAL_H */
