/*
 * progress.c
 *	  What each detector's open round is doing, in shared memory, for
 *	  detector_status: the round's phase, the rows it has decoded and scored
 *	  so far, how far it has read the WAL, the commit time of the oldest
 *	  transaction it holds, the memory of the process running it, and the
 *	  rates at which that detector got through WAL and rows in its past
 *	  rounds (since the server started).
 *
 * The catalog (anomaly.detectors) says what rounds committed; a round of a
 * million rows commits once, at its end, so without this a large
 * transaction showed no progress until then.  One entry per detector,
 * keyed by database and detector id, written only by the process that
 * holds the detector's replication slot (so by one process at a time) and
 * read by anyone under the entry's spinlock.  There are as many entries as
 * max_replication_slots: every detector has a slot.
 *
 * The counters of an open round are not committed: when the round fails
 * its rows are scored again by the next one.  An entry records the
 * batch_seq its round started from; detector_status adds the open round's
 * scored rows to the committed count only while the catalog still shows
 * that batch_seq, so that the moment the round commits they are not
 * counted twice.
 *
 * Only when the library is preloaded (shared memory is reserved at
 * startup): otherwise nothing is recorded and the view's round columns are
 * NULL.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "replication/slot.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/pg_lsn.h"
#include "utils/timestamp.h"

#include "detect/detect.h"
#include "compat.h"

PG_FUNCTION_INFO_V1(anomaly_detector_progress);

/* One detector's progress. */
typedef struct ProgressEntry
{
	slock_t		mutex;
	Oid			dboid;			/* InvalidOid: a free entry */
	int64		id;
	Oid			owner;			/* the detector's owner: who may see it */
	pid_t		pid;			/* process running a round, 0 when none */
	int			phase;			/* DetectPhase */
	int64		base_seq;		/* batch_seq the open round started from */
	TimestampTz round_started;
	TimestampTz decoded_at;		/* when it stopped decoding (0: not yet) */
	XLogRecPtr	start_lsn;		/* where the open round began to read */
	XLogRecPtr	read_lsn;		/* how far it has read */
	int64		rows;			/* rows it has decoded */
	int64		scored;			/* of which scored */
	TimestampTz oldest_commit;	/* commit time of its first transaction */
	bool		caught_up;		/* the last round read all WAL there was */
	double		bytes_per_s;	/* WAL read per second of decoding */
	double		rows_per_s;		/* rows scored (and written) per second of
								 * the rest of a round */
	int64		memory;			/* bytes allocated by the process of the
								 * open round, or of the last one at its end */
	TimestampTz touched;		/* last write: the entry to reuse is the oldest */
} ProgressEntry;

typedef struct ProgressShared
{
	int			nentries;
	ProgressEntry entries[FLEXIBLE_ARRAY_MEMBER];
} ProgressShared;

static ProgressShared *progress = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* The entry of this process's open round, or NULL. */
static ProgressEntry *mine = NULL;
static bool exit_hook_set = false;

static const char *const phase_names[] = {"idle", "decoding", "evaluating", "scoring", "writing"};

StaticAssertDecl(lengthof(phase_names) == DETECT_PHASE_WRITING + 1,
				 "one name per phase");

static Size
progress_size(void)
{
	return add_size(offsetof(ProgressShared, entries),
					mul_size(Max(max_replication_slots, 1), sizeof(ProgressEntry)));
}

/* Asks for the shared entries. */
static void
progress_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(progress_size()));
}

/* Creates or attaches the shared entries. */
static void
progress_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	progress = ShmemInitStruct("anomaly detector progress", progress_size(), &found);
	if (!found)
	{
		memset(progress, 0, progress_size());
		progress->nentries = Max(max_replication_slots, 1);
		for (int i = 0; i < progress->nentries; i++)
			SpinLockInit(&progress->entries[i].mutex);
	}
	LWLockRelease(AddinShmemInitLock);
}

/* Installs the shared memory hooks (from _PG_init, when preloaded). */
void
detect_progress_shmem_init(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = progress_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = progress_shmem_startup;
}

/* A process that dies mid-round leaves no round open behind it. */
static void
progress_on_exit(int code, Datum arg)
{
	detect_progress_end(false);
}

/*
 * The entry of detector id in this database: its own, else a free one,
 * else the one written longest ago (a detector dropped meanwhile).  Entries
 * are claimed under AddinShmemInitLock, taken rarely: once per round.
 */
static ProgressEntry *
find_entry(int64 id)
{
	ProgressEntry *found = NULL;
	ProgressEntry *oldest = NULL;

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	for (int i = 0; i < progress->nentries && found == NULL; i++)
	{
		ProgressEntry *e = &progress->entries[i];

		if (e->dboid == MyDatabaseId && e->id == id)
			found = e;
		else if (e->pid == 0 &&
				 (oldest == NULL || e->dboid == InvalidOid ||
				  (oldest->dboid != InvalidOid && e->touched < oldest->touched)))
			oldest = e;
	}
	if (found == NULL && oldest != NULL)
	{
		found = oldest;
		SpinLockAcquire(&found->mutex);
		memset((char *) found + offsetof(ProgressEntry, dboid), 0,
			   sizeof(ProgressEntry) - offsetof(ProgressEntry, dboid));
		found->dboid = MyDatabaseId;
		found->id = id;
		found->bytes_per_s = -1;
		found->rows_per_s = -1;
		SpinLockRelease(&found->mutex);
	}
	LWLockRelease(AddinShmemInitLock);
	return found;
}

/*
 * Puts an entry (its mutex held) in a phase, of a round run by pid (0 when
 * none), with nothing counted yet.
 */
static void
enter_phase(ProgressEntry *e, pid_t pid, DetectPhase phase, TimestampTz now)
{
	e->pid = pid;
	e->phase = phase;
	e->rows = 0;
	e->scored = 0;
	e->oldest_commit = 0;
	e->touched = now;
}

/* A round of detector id opens here (its slot is ours). */
void
detect_progress_begin(int64 id, Oid owner, int64 base_seq, XLogRecPtr start_lsn)
{
	ProgressEntry *e;
	TimestampTz now = GetCurrentTimestamp();

	if (progress == NULL)
		return;
	/* process() runs rounds back to back in one transaction */
	if (mine != NULL)
		detect_progress_end(true);
	if (!exit_hook_set)
	{
		before_shmem_exit(progress_on_exit, (Datum) 0);
		exit_hook_set = true;
	}
	e = find_entry(id);
	if (e == NULL)
		return;
	SpinLockAcquire(&e->mutex);
	enter_phase(e, MyProcPid, DETECT_PHASE_DECODING, now);
	e->owner = owner;
	e->base_seq = base_seq;
	e->round_started = now;
	e->decoded_at = 0;
	e->start_lsn = start_lsn;
	e->read_lsn = start_lsn;
	SpinLockRelease(&e->mutex);
	mine = e;
	detect_progress_memory();
}

/* The open round moves to phase. */
void
detect_progress_phase(DetectPhase phase)
{
	TimestampTz now;

	if (mine == NULL)
		return;
	now = GetCurrentTimestamp();
	SpinLockAcquire(&mine->mutex);
	if (mine->phase == DETECT_PHASE_DECODING && phase != DETECT_PHASE_DECODING)
		mine->decoded_at = now;
	mine->phase = phase;
	SpinLockRelease(&mine->mutex);
	detect_progress_memory();
}

/* The open round has decoded rows rows and read the WAL to read_lsn. */
void
detect_progress_decoded(int64 rows, XLogRecPtr read_lsn, TimestampTz oldest_commit)
{
	if (mine == NULL)
		return;
	SpinLockAcquire(&mine->mutex);
	mine->rows = rows;
	if (read_lsn > mine->read_lsn)
		mine->read_lsn = read_lsn;
	if (mine->oldest_commit == 0)
		mine->oldest_commit = oldest_commit;
	SpinLockRelease(&mine->mutex);
}

/* The open round has scored scored rows (add: scored more). */
void
detect_progress_scored(int64 scored, bool add)
{
	if (mine == NULL)
		return;
	SpinLockAcquire(&mine->mutex);
	mine->scored = add ? mine->scored + scored : scored;
	SpinLockRelease(&mine->mutex);
}

/*
 * Publishes how much memory this process has allocated (every context
 * under TopMemoryContext; walking them is cheap next to a round's work,
 * and is done at phase changes and every few thousand rows).
 */
void
detect_progress_memory(void)
{
	int64		bytes;

	if (mine == NULL)
		return;
	bytes = (int64) MemoryContextMemAllocated(TopMemoryContext, true);
	SpinLockAcquire(&mine->mutex);
	mine->memory = bytes;
	SpinLockRelease(&mine->mutex);
}

/*
 * The open round's work is done (it commits next): its time and amounts
 * update the detector's rates, weighted averages over the rounds that had
 * work, so that idle rounds do not pull them to zero.  caught_up: it read
 * all WAL there was when it began.
 */
void
detect_progress_finish(bool caught_up)
{
	ProgressEntry *e = mine;
	TimestampTz now = GetCurrentTimestamp();
	double		decode_s;
	double		rest_s;
	double		bytes;

	if (e == NULL)
		return;
	detect_progress_memory();
	SpinLockAcquire(&e->mutex);
	if (e->decoded_at == 0)
		e->decoded_at = now;
	decode_s = (double) (e->decoded_at - e->round_started) / USECS_PER_SEC;
	rest_s = (double) (now - e->decoded_at) / USECS_PER_SEC;
	bytes = (double) (e->read_lsn - e->start_lsn);

	/*
	 * The phases run one after the other, so the time left is the WAL to
	 * read at the one rate plus the rows to score at the other.  Rounds too
	 * short to time say nothing about a rate.
	 */
	if (decode_s >= 0.01 && bytes > 0)
		e->bytes_per_s = e->bytes_per_s < 0 ? bytes / decode_s :
			0.7 * e->bytes_per_s + 0.3 * (bytes / decode_s);
	if (rest_s >= 0.01 && e->scored > 0)
		e->rows_per_s = e->rows_per_s < 0 ? e->scored / rest_s :
			0.7 * e->rows_per_s + 0.3 * (e->scored / rest_s);
	e->caught_up = caught_up;
	SpinLockRelease(&e->mutex);
}

/*
 * Closes this process's open round: committed, or not (then the detector
 * is not known to be caught up).
 */
void
detect_progress_end(bool committed)
{
	ProgressEntry *e = mine;

	TimestampTz now;

	if (e == NULL)
		return;
	mine = NULL;
	now = GetCurrentTimestamp();
	SpinLockAcquire(&e->mutex);
	if (!committed)
		e->caught_up = false;
	enter_phase(e, 0, DETECT_PHASE_IDLE, now);
	SpinLockRelease(&e->mutex);
}

/*
 * anomaly.detector_progress(): the entries of this database's detectors
 * whose owner's privileges the caller has (as detector_status shows them),
 * one row each; none when the library is not preloaded.
 */
Datum
anomaly_detector_progress(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	InitMaterializedSRF(fcinfo, 0);
	if (progress == NULL)
		return (Datum) 0;
	for (int i = 0; i < progress->nentries; i++)
	{
		ProgressEntry *src = &progress->entries[i];
		ProgressEntry e;
		Datum		values[13];
		bool		nulls[13];
		bool		open;

		SpinLockAcquire(&src->mutex);
		memcpy(&e, src, sizeof(e));
		SpinLockRelease(&src->mutex);
		if (e.dboid != MyDatabaseId || !has_privs_of_role(GetUserId(), e.owner))
			continue;
		open = e.pid != 0;
		memset(nulls, 0, sizeof(nulls));
		values[0] = Int64GetDatum(e.id);
		values[1] = Int32GetDatum(e.pid);
		nulls[1] = !open;
		values[2] = CStringGetTextDatum(phase_names[e.phase]);
		values[3] = TimestampTzGetDatum(e.round_started);
		nulls[3] = !open;
		values[4] = Int64GetDatum(e.base_seq);
		nulls[4] = !open;
		values[5] = Int64GetDatum(e.rows);
		values[6] = Int64GetDatum(e.scored);
		values[7] = LSNGetDatum(e.read_lsn);
		nulls[7] = !open;
		values[8] = TimestampTzGetDatum(e.oldest_commit);
		nulls[8] = !open || e.oldest_commit == 0;
		values[9] = BoolGetDatum(e.caught_up);
		values[10] = Float8GetDatum(e.bytes_per_s);
		nulls[10] = e.bytes_per_s < 0;
		values[11] = Float8GetDatum(e.rows_per_s);
		nulls[11] = e.rows_per_s < 0;
		values[12] = Int64GetDatum(e.memory);
		nulls[12] = e.memory == 0;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
