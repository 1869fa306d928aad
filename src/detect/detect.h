/*
 * detect.h
 *	  Continuous detectors: the logical-decoding output plugin, its wire
 *	  format, the detector catalog, one round of detection, and the
 *	  background workers.
 *
 * Layering, bottom to top.  A file calls only files of its own layer or
 * below, never up; where a lower file needs something done above it, it
 * raises an error and its caller does it first (as ReplicationSlotDrop
 * wants a slot released by its caller):
 *
 *	 1. wire.c, wire_read.c  the wire format (decoder.c, the output plugin,
 *							 writes it)
 *		sysctx.c			 who runs what: the only place that changes user
 *		settings.c			 the settings the owner's code runs under
 *		bulk.c, threads.c	 many rows into a table; the engine's threads
 *		pump.c				 what fills each column of a destination
 *	 2. slots.c				 replication slots and origins
 *	 3. definition.c		 a detector's definition as a round reads it,
 *							 errors, tokens, retention, its home
 *	 4. forests.c			 forest cache, eviction, loading and storing
 *		journal.c			 the journal, its replay, spread checkpoints
 *		score.c				 a round's rows scored in waves of threads
 *		reader.c			 decoding a batch from the slot
 *		evaluate.c			 feature, filter and partition expressions
 *		write.c				 score rows, destination, the detector's row
 *	 5. backfill.c			 rounds that score the rows stored before the
 *							 detector was created
 *		window_agg.c		 a windowed detector's round: rows buffered
 *							 per window, windows scored past the watermark
 *		round.c				 one round, adoption after restore, the
 *							 commit/abort hooks (round_internal.h: what
 *							 the files of 3-5 share)
 *	 6. catalog.c			 the management API and anomaly.process
 *		seed.c				 seed_detector: a key's forest from a model
 *		define.c			 checking a new definition
 *		options.c			 a detector's options: one table, read, normalized
 *		worker.c			 scheduling (detect_schedule) and the workers
 *
 * Within layer 4: write calls score, score and journal call forests,
 * forests calls evaluate, reader uses the forest cache; none calls back.
 * The settings (detect_* variables) are defined by worker.c and read by
 * every layer: data, not calls.
 *
 * Data flow:
 *
 *	 WAL ── decoder.c (output plugin "anomaly", wire format v1)
 *		 ── round.c (reads a detector's slot with the C decoding API,
 *					  evaluates features as the owner, scores, writes scores,
 *					  forest journal and progress in ONE transaction, then
 *					  advances the slot)
 *		 ── progress.c (what an open round is doing, in shared memory,
 *					  for detector_status)
 *		 ── worker.c (launcher + one worker per active detector) or
 *			anomaly.process() from SQL (pg_cron).
 *
 * Exactly once: a round skips source transactions whose commit LSN is at or
 * below the detector's stored last_commit_lsn, and stores the new
 * last_commit_lsn in the transaction that writes the scores.  The slot is
 * only ever moved to a position that is already committed in the catalog,
 * so a crash can make the slot go back (rows are then skipped) but never
 * ahead of the scores.
 */
#ifndef ANOMALY_DETECT_H
#define ANOMALY_DETECT_H

#include "postgres.h"

#include "access/xlogdefs.h"
#include "datatype/timestamp.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "access/tupdesc.h"
#include "lib/stringinfo.h"
#include "nodes/pg_list.h"
#include "utils/jsonb.h"
#include "utils/relcache.h"

/* The wire format and its reader (no PostgreSQL header: fuzzed alone). */
#include "detect/wire_read.h"

/*
 * The image of a pass-by-value column in a row message: attlen bytes as
 * store_att_byval writes them (decoder.c) and fetch_att reads them back
 * (wire.c), in the server's byte order.
 */
typedef union DwByvalImage
{
	char		c;
	int16		s;
	int32		i;
	Datum		d;
} DwByvalImage;

/*
 * The output plugin's requests from our reader (decoder.c): pass over the
 * first rows of the transaction committed at lsn (sent as 'P'), and send
 * no more rows of the current transaction.
 */
struct LogicalDecodingContext;
extern void detect_decoder_resume(struct LogicalDecodingContext *ctx,
								  XLogRecPtr lsn, int64 rows);
extern void detect_decoder_drop_rest(struct LogicalDecodingContext *ctx);

/* Little-endian writers (wire.c). */
extern void dw_put_u8(StringInfo out, uint8 v);
extern void dw_put_u16(StringInfo out, uint16 v);
extern void dw_put_u32(StringInfo out, uint32 v);
extern void dw_put_u64(StringInfo out, uint64 v);

/*
 * The reader (wire.c over wire_read.c): each raises ERRCODE_DATA_CORRUPTED
 * for a message shorter than its content.
 */
extern uint8 dw_get_u8(DwReader *r);
extern uint16 dw_get_u16(DwReader *r);
extern uint32 dw_get_u32(DwReader *r);
extern uint64 dw_get_u64(DwReader *r);
extern const uint8 *dw_get_bytes(DwReader *r, Size n);

/* Parses a relation message body (after version and kind). */
extern void dw_read_relation(DwReader *r, DwRelation *rel, MemoryContext cxt);

/*
 * Reads the values of a row message body (after relid and natts) into
 * datums laid out like `rel`: values[i] / status[i] for i < rel->natts.
 * Values are copied into CurrentMemoryContext, properly aligned.
 */
extern void dw_read_row_values(DwReader *r, const DwRelation *rel,
							   Datum *values, uint8 *status);

/* ---------------------------------------------------------------------
 * Settings (worker.c)
 * ---------------------------------------------------------------------
 */
extern char *detect_database;
extern int	detect_max_workers;
extern int	detect_naptime_ms;
extern int	detect_batch_rows;
extern int	detect_memory_limit_mb;
extern int	detect_checkpoint_rows;
extern int	detect_checkpoint_timeout_s;
extern int	detect_max_retries;
extern int	detect_threads;
extern int	detect_window_memory_limit_mb;

/* Registers the detectors' settings and hooks. */
extern void anomaly_detect_init(void);

/*
 * One pass of a database's scheduler: starts a worker for each active
 * detector that has none.  Returns why some detector has no worker (for
 * detector_status), NULL when none lacks one.
 */
extern const char *detect_schedule(void);

/* Stops the detector workers detect_schedule() started. */
extern void detect_unschedule(void);

/*
 * Set by the glue (src/registry.c): asks for a worker for this database
 * when the transaction commits, and returns why none can serve it (NULL:
 * one will) with a hint.  NULL hook: nobody to ask.
 */
typedef const char *(*DetectServiceFn) (const char **hint);
extern DetectServiceFn detect_service_hook;

/* ---------------------------------------------------------------------
 * Threads for the engine's work of a round (threads.c)
 * ---------------------------------------------------------------------
 */
#define DETECT_MAX_THREADS		64

/* A task: engine code only, never a PostgreSQL function (threads.c). */
typedef void (*DetectTaskFn) (void *arg, int task);

/* Runs fn(arg, t) for t < ntasks on up to nthreads threads; returns how many ran. */
extern int	detect_run_tasks(DetectTaskFn fn, void *arg, int ntasks, int nthreads);

/*
 * The bgw_type of detector workers: worker.c starts them with it and
 * slots.c recognises them by it (pg_stat_activity shows it as their
 * backend_type).
 */
#define DETECTOR_BGW_TYPE "anomaly detector"

/* ---------------------------------------------------------------------
 * Slots and origins (slots.c)
 * ---------------------------------------------------------------------
 */

/* "anomaly_<database oid>_<detector id>": the slot's and the origin's name. */
extern void detect_object_name(char *buf, size_t size, Oid dboid, int64 id);

/*
 * The PID holding a slot, 0 when none or no such slot; *exists (when not
 * NULL) says whether the slot exists at all.
 */
extern pid_t detect_slot_holder(const char *slot_name, bool *exists);

/* Creates the detector's logical slot (before any write of the xact). */
extern void detect_create_slot(const char *slot_name);

/*
 * Drops a slot, asking an anomaly worker that holds it to let go first.
 * missing_ok: no error when there is no such slot.  A slot this session
 * holds is an error: the caller releases it first (detect_release).
 */
extern void detect_drop_slot(const char *slot_name, bool missing_ok);

/* Drops every slot and origin of detectors of this database. */
extern void detect_drop_all_slots(void);

/*
 * Drops the replication origins of the detectors of database dboid (they
 * are cluster-wide: after DROP DATABASE, nothing else would).
 */
extern void detect_drop_origins_of(Oid dboid);

/* Drops slots "anomaly_<this db>_<id>" whose detector does not exist. */
extern int	detect_drop_orphan_slots(void);

/* The slot's confirmed position (InvalidXLogRecPtr: no such slot). */
extern XLogRecPtr detect_slot_confirmed(const char *name);

/* The replication origin's id, creating it when missing. */
extern uint16 detect_origin(const char *name, bool create);

/* Installs the object access hook that drops slots with the extension. */
extern void detect_install_hooks(void);

/* ---------------------------------------------------------------------
 * Rounds (round.c; reader.c, evaluate.c, write.c, forests.c where noted)
 * ---------------------------------------------------------------------
 */

/* How a round ended. */
typedef enum DetectRoundResult
{
	ROUND_CAUGHT_UP,			/* read everything flushed when it started */
	ROUND_MORE,					/* stopped at the row limit: more to read */
	ROUND_BUSY,					/* someone else holds the detector or slot */
	ROUND_LOCKED,				/* a table of the detector is locked: skipped */
	ROUND_STOP					/* detector gone, paused or failed */
} DetectRoundResult;

/*
 * Runs one round for detector `id` inside the current transaction, reading
 * at most max_rows rows (<= 0: the batch size).  keep_context: keep the
 * decoding context (and the slot) between rounds, as the worker does.
 * *rows gets the rows consumed (scored, skipped or failed).  why_locked NULL:
 * the round waits for the locks it needs, as any statement; otherwise it
 * takes those that a non-superuser can hold (on the source, destination
 * and late_rows tables) only when they are free, and when one is not,
 * returns ROUND_LOCKED having read nothing, with *why_locked saying which
 * (the detector's note says so too).
 */
extern DetectRoundResult detect_round(int64 id, int max_rows,
									  bool keep_context, int64 *rows,
									  char **why_locked);

/*
 * Locks the source against writers and returns the starting state of a
 * backfill (backfill.c) as JSON; *lsn: transactions committed at or below
 * it are the backfill's, the slot's are those after.
 */
extern void detect_backfill_check_lock(Oid relid, Oid owner);
extern char *detect_backfill_begin(Oid relid, Oid owner, XLogRecPtr *lsn);

/* After the round's transaction committed: move the slot to its progress. */
extern void detect_after_commit(void);

/* After the round's transaction aborted: forget state derived from it. */
extern void detect_after_abort(void);

/*
 * The slot this session holds moves to its last round's progress after the
 * current transaction commits, unless a rollback to a savepoint undoes the
 * round (reader.c; for process(), whose rounds commit with the caller).
 */
extern void detect_confirm_after_commit(void);

/* Releases the slot and the decoding context kept between rounds (reader.c). */
extern void detect_release(void);

/*
 * The statement that evaluates a detector's expressions over $1, an array
 * of the source's row type aliased as the table's name: features as
 * float8, the partition key as text, the filter as bool; with key_only,
 * the source key as jsonb alone (evaluated under fixed settings).
 * evaluate.c.
 */
extern char *detect_eval_sql(const char *relname, int nfeatures, char **features,
							 const char *partition_by, const char *filter,
							 int nkeys, char **keys, bool key_only);

/*
 * The score fields: the columns of anomaly.scores a round fills, by name,
 * with the type of the value inserted into each (assignment casts apply).
 * A destination table gets them too, with the source row's columns and
 * the features (pump.c).  write.c.
 */
typedef struct DetectDestColumn
{
	const char *name;
	Oid			type;
} DetectDestColumn;

#define DETECT_DEST_NCOLUMNS 13
extern const DetectDestColumn detect_dest_columns[DETECT_DEST_NCOLUMNS];

/* What fills a column of a destination table (pump.c). */
typedef enum DestFillKind
{
	DEST_FILL_SELF,				/* its default, identity or generation */
	DEST_FILL_SCORE,			/* score field `index` of detect_dest_columns */
	DEST_FILL_SOURCE,			/* the source row's attribute `index` */
	DEST_FILL_FEATURE			/* feature `index` (from 0) */
} DestFillKind;

typedef struct DestFill
{
	AttrNumber	attnum;			/* in the destination */
	const char *name;			/* the destination column's name */
	DestFillKind kind;
	int			index;
	Oid			type;			/* of the value (not SELF) */
	const char *source_name;	/* SOURCE: the source column's name */
} DestFill;

/*
 * Maps each live column of a destination to what fills it; raises an
 * error for a column nothing fills, a value whose type does not cast to
 * its column's, and a destination without anomaly_score.  detector: NULL
 * while it is being defined.  feature_names: C strings.
 */
extern int	detect_dest_map(TupleDesc dest, const char *dest_name,
							const char *detector, TupleDesc source,
							List *feature_names, DestFill **out);

/*
 * bulk.c: many rows into one of the extension's plain tables at once
 * (multi-insert, indexes, constraints, triggers with transition tables;
 * no permission check, no row security).  given[a]: the caller fills
 * attribute a + 1 of each slot; the others get their defaults.
 */
typedef struct DetectBulk DetectBulk;

extern DetectBulk *detect_bulk_begin(Relation rel, const bool *given);
extern TupleTableSlot *detect_bulk_slot(DetectBulk *bulk);
extern void detect_bulk_add(DetectBulk *bulk, TupleTableSlot *slot);
extern int64 detect_bulk_end(DetectBulk *bulk);

/* ---------------------------------------------------------------------
 * Progress of open rounds, in shared memory (progress.c); every call is a
 * no-op when the library was not preloaded or no round is open here.
 * ---------------------------------------------------------------------
 */
typedef enum DetectPhase
{
	DETECT_PHASE_IDLE,
	DETECT_PHASE_DECODING,
	DETECT_PHASE_EVALUATING,
	DETECT_PHASE_SCORING,
	DETECT_PHASE_WRITING
} DetectPhase;

/* Reserves the shared entries (from _PG_init, when preloaded). */
extern void detect_progress_shmem_init(void);

/* A round of detector id starts, from batch_seq base_seq, reading at start_lsn. */
extern void detect_progress_begin(int64 id, Oid owner, int64 base_seq,
								  XLogRecPtr start_lsn);
extern void detect_progress_phase(DetectPhase phase);

/* rows decoded so far; oldest_commit: commit time of the first (0: none yet). */
extern void detect_progress_decoded(int64 rows, XLogRecPtr read_lsn,
									TimestampTz oldest_commit);

/* Rows scored so far (add: scored more). */
extern void detect_progress_scored(int64 scored, bool add);
extern void detect_progress_memory(void);

/* The round's work is done; caught_up: it read all WAL there was. */
extern void detect_progress_finish(bool caught_up);

/* The round is over (committed or not). */
extern void detect_progress_end(bool committed);

/* Rows between two reports of a round's progress; rows evaluated at once. */
#define DETECT_PROGRESS_ROWS	4096

/*
 * A round stops taking transactions once it holds this many bytes of
 * decoded rows (reader.c): a bound on its memory where rows are large.
 */
#define DETECT_ROUND_BYTES		((int64) 64 * 1024 * 1024)

/*
 * A single transaction whose kept rows reach DETECT_ROUND_BYTES or
 * anomaly.detector_transaction_rows rows is split: the round takes that
 * much of it and the next rounds the rest (reader.c).  Each part decodes
 * the transaction again, so the row bound is high by default: a bulk load
 * of small rows is split seldom.
 */
extern int	detect_xact_rows;
extern int	detect_time_slice_ms;
extern int	detect_max_per_owner;
#define DETECT_CHUNK_ROWS		10000

/*
 * The longest partition key (bytes of text).  A key is stored in
 * detector_forests' unique index, whose entries hold about 2.7 kB at most
 * even compressed, and kept in memory with every row of its round: a longer
 * one fails its row instead of every checkpoint of the detector.
 */
#define DETECT_MAX_KEY_BYTES	2048

/* ---------------------------------------------------------------------
 * Who runs what (sysctx.c): the only place that changes user.
 *
 * The sys context: the extension's own SQL as the bootstrap superuser,
 * search_path 'pg_catalog, pg_temp', every name, operator and cast in its
 * SQL schema-qualified; its settings are thrown away on leaving.  SQL runs
 * there only through detect_spi_*, which raise anywhere else.
 *
 * The owner context, entered only from the sys context through
 * detect_as_owner / detect_try_as_owner: everything a user controls, as the
 * detector's owner with SECURITY_RESTRICTED_OPERATION and the owner's
 * pinned search_path, in a subtransaction and a GUC nest thrown away
 * afterwards.  SQL runs there only through detect_owner_spi_*.
 * ---------------------------------------------------------------------
 */
typedef struct DetectSys
{
	Oid			save_user;
	int			save_sec;
	int			guc_nest;
} DetectSys;

extern void detect_sys_enter(DetectSys *sys);
extern void detect_require_sys(const char *what);

/* Allows our library as an output plugin at the current GUC nest level. */
extern void detect_allow_plugin(void);

/*
 * Locks of the detectors' catalog, held to the end of the transaction: on
 * the extension's own object, which no role but its owner can lock from
 * SQL (an advisory lock could be taken by anyone and block every
 * create_detector).
 */
typedef enum DetectLock
{
	DETECT_LOCK_CREATE = 1,		/* create_detector; the orphan slot sweep */
	DETECT_LOCK_ADOPT = 2		/* adopting restored detectors */
} DetectLock;

extern bool detect_lock(DetectLock which, bool wait);
extern void detect_sys_leave(DetectSys *sys);
/*
 * An SPI argument list built one argument at a time, so that no caller
 * counts positions in a null-flag string: detect_arg() appends $n+1.
 */
#define DETECT_MAX_ARGS 24
typedef struct DetectArgs
{
	int			n;
	Oid			types[DETECT_MAX_ARGS];
	Datum		values[DETECT_MAX_ARGS];
	char		nulls[DETECT_MAX_ARGS + 1];
} DetectArgs;

static inline void
detect_args_init(DetectArgs *a)
{
	a->n = 0;
	a->nulls[0] = '\0';
}

/* Appends an argument of type type: value, or NULL when isnull. */
static inline void
detect_arg(DetectArgs *a, Oid type, Datum value, bool isnull)
{
	if (a->n >= DETECT_MAX_ARGS)
		elog(ERROR, "too many SPI arguments");
	a->types[a->n] = type;
	a->values[a->n] = isnull ? (Datum) 0 : value;
	a->nulls[a->n] = isnull ? 'n' : ' ';
	a->n++;
	a->nulls[a->n] = '\0';
}

extern void detect_spi_exec(const char *sql, int nargs, Oid *types,
							Datum *values, const char *nulls, bool read_only,
							int expect);
extern SPIPlanPtr detect_spi_prepare(const char *sql, int nargs, Oid *types);
extern int	detect_spi_execute_plan(SPIPlanPtr plan, Datum *values,
									const char *nulls, bool read_only, long count);
extern Portal detect_spi_cursor_open(SPIPlanPtr plan, Datum *values,
												 const char *nulls, bool read_only);

/*
 * The settings a detector's expressions run under (settings.c): its
 * creator's, kept in anomaly.detectors.settings, set in the owner
 * context's GUC nest; NULL values take the fixed ones of the extension's
 * own text conversions.
 */
#define DETECT_NSETTINGS 16
typedef struct DetectSettings
{
	const char *values[DETECT_NSETTINGS];	/* by settings.c's table */
} DetectSettings;

/* A detector's stored settings (NULL: none stored, the fixed values). */
extern DetectSettings *detect_settings_parse(Jsonb *stored);

/*
 * The JSON of a definition's settings: each one given (checked), else
 * stored, else fallback's, else the current session's.
 */
extern char *detect_settings_define(Jsonb *given, Jsonb *stored, Jsonb *fallback);

/* Sets them (NULL: the fixed values) in the current GUC nest. */
extern void detect_settings_apply(const DetectSettings *s);

/*
 * Enters a GUC nest with the fixed values, for text the extension writes
 * and reads back in another session; the caller leaves it with
 * AtEOXact_GUC(false, nest).
 */
extern int	detect_settings_pin_fixed(void);

/* The options without their "settings" object, which goes to *settings. */
extern Jsonb *detect_settings_split_options(Jsonb *options, Jsonb **settings);

/* Code run in an owner context. */
typedef void (*DetectOwnerFn) (void *arg);

/*
 * Runs fn(arg) as owner, with its search_path and settings; an error is
 * raised again after the rollback.
 */
extern void detect_as_owner(Oid owner, const char *search_path,
							const DetectSettings *settings,
							DetectOwnerFn fn, void *arg);

/* The same, but returns the error (copied into errcxt), NULL on success. */
extern ErrorData *detect_try_as_owner(Oid owner, const char *search_path,
									  const DetectSettings *settings,
									  DetectOwnerFn fn, void *arg,
									  MemoryContext errcxt);

extern void detect_owner_spi_exec(const char *sql, int nargs, Oid *types,
								  Datum *values, const char *nulls,
								  bool read_only, int expect);
extern SPIPlanPtr detect_owner_spi_prepare(const char *sql, int nargs, Oid *types);
extern int	detect_owner_spi_execute_plan(SPIPlanPtr plan, Datum *values,
										  const char *nulls, bool read_only,
										  long count);


/*
 * Restored detectors (detect_home: definition.c; detect_adopt: round.c).  A detector's row records its home: the
 * system identifier, database and extension where its slot is.  A row
 * with another home came from pg_dump/pg_restore (or pg_upgrade): before
 * its next round it gets a slot here, starting now, and keeps its models.
 */
typedef enum DetectAdoptResult
{
	ADOPT_HOME,					/* at home here: nothing to do */
	ADOPT_DONE,					/* restored, adopted now */
	ADOPT_WAIT,					/* restored, but pg_restore is still at work here */
	ADOPT_MISSING				/* no such detector */
} DetectAdoptResult;

/* The home of the detectors of this database. */
extern char *detect_home(void);

/*
 * Adopts detector id when it was restored from elsewhere.  Must be called
 * before the transaction writes (it may create a slot); not inside SPI.
 * note_wait: when it must wait for pg_restore, say so in its note (a
 * write).
 */
extern DetectAdoptResult detect_adopt(int64 id, bool note_wait);

/*
 * The definition (definition.c): errors, tokens, retention.
 */

/* Records an error for detector id (in the caller's transaction). */
extern void detect_record_error(int64 id, const char *message,
								const char *sqlstate, bool fatal);

/* True for errors that no retry can fix (source altered, privileges...). */
extern bool detect_error_is_permanent(int sqlerrcode);

/* Deletes rows older than each detector's retention. */
extern void detect_apply_retention(void);

/* The worker's in-memory state for detector id is stale: drop it (forests.c). */
extern void detect_forget(int64 id);

/* A random, non-zero 64-bit token (detectors.round_token). */
extern int64 detect_new_token(void);

#endif							/* ANOMALY_DETECT_H */
