/*
 * worker.c
 *	  Settings of the detectors, their scheduling, and the detector workers.
 *
 * With shared_preload_libraries = 'anomaly', the scheduler of each database
 * where the extension is installed (src/launcher.c) calls detect_schedule()
 * every second: it starts one dynamic worker for each active detector that
 * has none (at most anomaly.detector_workers in the database), and once a
 * minute drops the slots of aborted create_detector calls and applies the
 * detectors' retention.
 *
 * Taking turns.  With more active detectors than anomaly.detector_workers,
 * a worker that has had its detector for anomaly.detector_time_slice is
 * asked to give it up (SIGUSR2) after its round, one worker at a time, and
 * the detector that has waited longest gets the slot: every detector is
 * served, none by a worker of its own.  The worker asked is one of the
 * owner with the most workers, so one admin's detectors cannot keep
 * another's from running.
 *
 * A detector worker holds its detector's slot and a decoding context for as
 * long as it runs, and loops: one round per transaction (round.c), then it
 * confirms the slot up to what the round committed.  When caught up it
 * sleeps anomaly.detector_naptime.  An error rolls the round back, is
 * recorded in the detector's row, and the worker retries with backoff; an
 * error no retry can fix (source dropped or altered, privileges, slot
 * lost), or anomaly.detector_max_retries errors in a row, mark the detector
 * failed and the worker exits: no crash loop.  The worker exits when the
 * detector is paused, failed or dropped; SIGTERM (drop_detector, DROP
 * EXTENSION) ends it at once, its round rolled back.
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "replication/slot.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "bgworker.h"
#include "detect/detect.h"

char	   *detect_database = NULL;
int			detect_max_workers = 8;
int			detect_naptime_ms = 100;
int			detect_batch_rows = 10000;
int			detect_xact_rows = 2000000;
int			detect_time_slice_ms = 30000;
int			detect_max_per_owner = 0;
int			detect_memory_limit_mb = 512;
int			detect_checkpoint_rows = 200000;
int			detect_checkpoint_timeout_s = 60;
int			detect_max_retries = 5;
int			detect_threads = 2;
int			detect_window_memory_limit_mb = 256;
DetectServiceFn detect_service_hook = NULL;

PGDLLEXPORT void anomaly_detect_worker_main(Datum arg);

void
anomaly_detect_init(void)
{
	DefineCustomStringVariable("anomaly.detector_database",
							   "Databases whose detectors the background workers run (comma-separated; empty: every database with the extension).",
							   NULL, &detect_database, "",
							   PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("anomaly.detector_workers",
							"Detector workers that may run at once (0: none; use anomaly.process()).",
							NULL, &detect_max_workers, 8, 0, 1000, PGC_SIGHUP, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("anomaly.detector_naptime",
							"How long an idle detector worker sleeps between rounds.",
							NULL, &detect_naptime_ms, 100, 1, 60000, PGC_SIGHUP,
							GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("anomaly.detector_batch_rows",
							"Rows a detector round reads at most (whole transactions).",
							NULL, &detect_batch_rows, 10000, 1, 10000000, PGC_SUSET, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("anomaly.max_detectors_per_owner",
							"Detectors one role may own in a database (0: no limit); superusers are not limited.",
							"Each detector holds a replication slot, which max_replication_slots bounds "
							"for every database together.",
							&detect_max_per_owner, 0, 0, 100000, PGC_SIGHUP, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("anomaly.detector_time_slice",
							"How long a detector keeps a worker while other detectors wait for one.",
							"With more active detectors than anomaly.detector_workers they take turns.",
							&detect_time_slice_ms, 30000, 100, 3600000, PGC_SIGHUP,
							GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("anomaly.detector_transaction_rows",
							"Rows of one transaction a detector round takes at most; the rest go to the next rounds.",
							"Each part decodes the transaction again: a higher value takes fewer "
							"decodings and more memory.",
							&detect_xact_rows, 2000000, 100, INT_MAX, PGC_SUSET, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("anomaly.detector_memory_limit",
							"Memory for the forests of one detector in one process; others are stored and evicted.",
							NULL, &detect_memory_limit_mb, 512, 1, INT_MAX / 1024, PGC_SUSET,
							GUC_UNIT_MB, NULL, NULL, NULL);
	DefineCustomIntVariable("anomaly.detector_threads",
							"Threads that score one detector round's partition keys.",
							"Each partition key's forest is scored by one thread at a time; "
							"a detector without partition_by uses one.",
							&detect_threads, 2, 1, DETECT_MAX_THREADS, PGC_SUSET, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("anomaly.detector_checkpoint_rows",
							"Points learned over which a detector stores each of its forests, a few per round.",
							NULL, &detect_checkpoint_rows, 200000, 1, INT_MAX, PGC_SUSET, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("anomaly.detector_checkpoint_timeout",
							"Time over which a detector stores each of its forests, a few per round.",
							NULL, &detect_checkpoint_timeout_s, 60, 1, 86400, PGC_SUSET,
							GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("anomaly.window_memory_limit",
							"Memory for the rows of the windows a windowed detector's round closes.",
							"A round whose closing windows hold more fails with an error.",
							&detect_window_memory_limit_mb, 256, 1, 1024, PGC_SUSET,
							GUC_UNIT_MB, NULL, NULL, NULL);
	DefineCustomIntVariable("anomaly.detector_max_retries",
							"Errors in a row after which a detector is marked failed.",
							NULL, &detect_max_retries, 5, 1, 1000, PGC_SUSET, 0,
							NULL, NULL, NULL);

	detect_install_hooks();
}

/* ---------------------------------------------------------------------
 * Scheduling the detector workers of this database
 */

typedef struct Launched
{
	int64		id;
	Oid			owner;
	BackgroundWorkerHandle *handle;
	TimestampTz started;
	TimestampTz stopped;		/* when its last worker was seen stopped */
	int			starts;			/* starts in a row that did not last */
	bool		seen;
	bool		yielding;		/* its worker was asked to give it up */
	TimestampTz yield_asked;	/* when */
	bool		waiting;		/* wants a worker in this pass */
} Launched;

static bool
start_worker(int64 id, Launched *l)
{
	BackgroundWorker worker;

	anomaly_bgworker_init(&worker, "anomaly_detect_worker_main",
						  DETECTOR_BGW_TYPE, BGW_NEVER_RESTART);
	snprintf(worker.bgw_name, BGW_MAXLEN, DETECTOR_BGW_TYPE " " INT64_FORMAT, id);
	worker.bgw_main_arg = Int64GetDatum(id);
	memcpy(worker.bgw_extra, &MyDatabaseId, sizeof(Oid));
	worker.bgw_notify_pid = MyProcPid;
	if (!RegisterDynamicBackgroundWorker(&worker, &l->handle))
	{
		l->handle = NULL;
		return false;
	}
	l->started = GetCurrentTimestamp();
	l->starts++;
	return true;
}

/*
 * The active detectors (ids and slot names, in cxt), with housekeeping
 * once a minute.  An error (the extension being dropped under us) is
 * logged and gives an empty list.
 */
static int
list_active(MemoryContext cxt, int64 **active, Oid **owners, char ***slots,
			TimestampTz *last_housekeeping)
{
	volatile int nactive = 0;
	MemoryContext outer = CurrentMemoryContext;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PG_TRY();
	{
		PushActiveSnapshot(GetTransactionSnapshot());
		if (OidIsValid(get_extension_oid("anomaly", true)) &&
			SPI_connect() == SPI_OK_CONNECT)
		{
			TimestampTz now;
			DetectSys	sys;

			pgstat_report_activity(STATE_RUNNING, "listing detectors");
			detect_sys_enter(&sys);
			detect_spi_exec("SELECT id, owner FROM anomaly.detectors"
							" WHERE state OPERATOR(pg_catalog.=) 'active' ORDER BY id",
							0, NULL, NULL, NULL, true, SPI_OK_SELECT);
			{
				MemoryContext old = MemoryContextSwitchTo(cxt);
				int			n = 0;

				*active = palloc(sizeof(int64) * Max(SPI_processed, 1));
				*owners = palloc(sizeof(Oid) * Max(SPI_processed, 1));
				*slots = palloc(sizeof(char *) * Max(SPI_processed, 1));
				for (uint64 i = 0; i < SPI_processed; i++)
				{
					bool		isnull;
					char		name[NAMEDATALEN];

					(*active)[n] = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i],
															   SPI_tuptable->tupdesc, 1, &isnull));
					(*owners)[n] = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[i],
																  SPI_tuptable->tupdesc, 2, &isnull));

					/*
					 * This database's name for the slot: a detector restored
					 * from another database still names that one's until
					 * its first round adopts it.
					 */
					detect_object_name(name, sizeof(name), MyDatabaseId, (*active)[n]);
					(*slots)[n] = pstrdup(name);
					n++;
				}
				nactive = n;
				MemoryContextSwitchTo(old);
			}
			detect_sys_leave(&sys);
			SPI_finish();
			now = GetCurrentTimestamp();
			if (TimestampDifferenceExceeds(*last_housekeeping, now, 60000))
			{
				pgstat_report_activity(STATE_RUNNING, "detector housekeeping");
				(void) detect_drop_orphan_slots();
				detect_apply_retention();
				*last_housekeeping = now;
			}
		}
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		HOLD_INTERRUPTS();
		MemoryContextSwitchTo(outer);
		EmitErrorReport();
		FlushErrorState();
		AbortCurrentTransaction();
		RESUME_INTERRUPTS();
		nactive = 0;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(outer);
	pgstat_report_activity(STATE_IDLE, NULL);
	return nactive;
}

/* The detectors this database's scheduler has started workers for. */
static Launched *launched = NULL;
static int	nlaunched = 0;
static int	maxlaunched = 0;
static TimestampTz last_housekeeping = 0;
static MemoryContext schedule_cxt = NULL;

/* Whether a launched detector's worker is still running. */
static bool
launched_running(Launched *l)
{
	pid_t		pid;

	return l->handle != NULL && GetBackgroundWorkerPid(l->handle, &pid) != BGWH_STOPPED;
}

/* Workers running for detectors of owner. */
static int
owner_running(Oid owner)
{
	int			n = 0;

	for (int i = 0; i < nlaunched; i++)
		if (launched[i].owner == owner && launched_running(&launched[i]))
			n++;
	return n;
}

/*
 * The waiting detector to start next: the one that has waited longest
 * (never served first), of the owner with the fewest workers among those
 * that have waited as long.  By waiting time first: preferring an owner
 * with fewer workers first gave the slot, turn after turn, to the one
 * detector of an owner whose other workers were busy.  NULL when none
 * waits.
 */
static Launched *
next_waiting(void)
{
	Launched   *best = NULL;
	int			best_owner = 0;

	for (int i = 0; i < nlaunched; i++)
	{
		Launched   *l = &launched[i];
		int			n;

		if (!l->waiting)
			continue;
		n = owner_running(l->owner);
		if (best == NULL || l->stopped < best->stopped ||
			(l->stopped == best->stopped && n < best_owner))
		{
			best = l;
			best_owner = n;
		}
	}
	return best;
}

/*
 * Asks one worker to give its detector up when detectors wait: one that
 * has had it for a time slice, of the owner with the most workers, the
 * longest running.  One at a time: none while one asked less than a time
 * slice ago is still in its round (a worker gives up only between rounds,
 * and a round may take long: one stuck in it must not stop the turns).
 */
static void
ask_to_yield(TimestampTz now)
{
	Launched   *victim = NULL;
	int			victim_owner = 0;
	pid_t		pid;

	for (int i = 0; i < nlaunched; i++)
		if (launched[i].yielding && launched_running(&launched[i]) &&
			!TimestampDifferenceExceeds(launched[i].yield_asked, now, detect_time_slice_ms))
			return;
	for (int i = 0; i < nlaunched; i++)
	{
		Launched   *l = &launched[i];
		int			n;

		if (!launched_running(l) || l->yielding ||
			!TimestampDifferenceExceeds(l->started, now, detect_time_slice_ms))
			continue;
		n = owner_running(l->owner);
		if (victim == NULL || n > victim_owner ||
			(n == victim_owner && l->started < victim->started))
		{
			victim = l;
			victim_owner = n;
		}
	}
	if (victim != NULL &&
		GetBackgroundWorkerPid(victim->handle, &pid) == BGWH_STARTED &&
		kill(pid, SIGUSR2) == 0)
	{
		victim->yielding = true;
		victim->yield_asked = now;
	}
}

/* One pass of this database's scheduler; see detect.h. */
const char *
detect_schedule(void)
{
	static char note[200];
	int64	   *active = NULL;
	Oid		   *owners = NULL;
	char	  **slots = NULL;
	int			nactive;
	int			unstarted = 0;
	int			limited = 0;
	int			running = 0;
	TimestampTz now;

	if (schedule_cxt == NULL)
		schedule_cxt = AllocSetContextCreate(TopMemoryContext, "anomaly detector schedule",
											 ALLOCSET_DEFAULT_SIZES);
	MemoryContextReset(schedule_cxt);

	nactive = list_active(schedule_cxt, &active, &owners, &slots, &last_housekeeping);

	/* Which detectors want a worker. */
	now = GetCurrentTimestamp();
	for (int i = 0; i < nlaunched; i++)
	{
		launched[i].seen = false;
		launched[i].waiting = false;
	}
	for (int a = 0; a < nactive; a++)
	{
		Launched   *l = NULL;

		for (int i = 0; i < nlaunched; i++)
			if (launched[i].id == active[a])
				l = &launched[i];
		if (l == NULL)
		{
			if (nlaunched == maxlaunched)
			{
				maxlaunched = Max(8, maxlaunched * 2);
				launched = launched ?
					repalloc(launched, sizeof(Launched) * maxlaunched) :
					MemoryContextAlloc(TopMemoryContext, sizeof(Launched) * maxlaunched);
			}
			l = &launched[nlaunched++];
			memset(l, 0, sizeof(*l));
			l->id = active[a];
		}
		l->seen = true;
		l->owner = owners[a];
		if (launched_running(l))
			continue;
		if (l->handle)
		{
			pfree(l->handle);
			l->handle = NULL;
			l->stopped = now;
			/* A worker that gave its turn up did not fail: no backoff. */
			if (l->yielding)
				l->starts = 0;
			l->yielding = false;
		}
		/* Held by someone (a worker of an earlier scheduler, process()). */
		if (detect_slot_holder(slots[a], NULL) != 0)
			continue;
		/* Back off a worker that keeps stopping: 1 s, 2 s ... 60 s. */
		if (l->starts > 0 &&
			!TimestampDifferenceExceeds(l->started, now,
										Min(60000, 1000 * (1 << Min(l->starts - 1, 6)))))
			continue;
		l->waiting = true;
	}

	/* Start the waiting ones while workers are free, fairest first. */
	for (int i = 0; i < nlaunched; i++)
		if (launched_running(&launched[i]))
			running++;
	for (;;)
	{
		Launched   *l = next_waiting();

		if (l == NULL)
			break;
		l->waiting = false;
		if (running >= detect_max_workers)
		{
			limited++;
			continue;
		}
		if (!start_worker(l->id, l))
		{
			unstarted++;
			ereport(LOG,
					(errmsg("anomaly: could not start a worker for detector " INT64_FORMAT,
							l->id),
					 errhint("Raise max_worker_processes.")));
			continue;
		}
		running++;
	}
	if (limited > 0)
		ask_to_yield(now);

	/* Forget detectors that are no longer active. */
	for (int i = 0; i < nlaunched;)
	{
		if (!launched[i].seen && !launched_running(&launched[i]))
		{
			if (launched[i].handle)
				pfree(launched[i].handle);
			launched[i] = launched[--nlaunched];
		}
		else
			i++;
	}

	if (unstarted > 0)
	{
		snprintf(note, sizeof(note),
				 "no free background worker slot (max_worker_processes = %d)",
				 max_worker_processes);
		return note;
	}
	if (limited > 0)
	{
		snprintf(note, sizeof(note),
				 "%d active detectors take turns on the %d anomaly.detector_workers of this database",
				 nactive, detect_max_workers);
		return note;
	}
	return NULL;
}

/* Stops the workers this scheduler started; see detect.h. */
void
detect_unschedule(void)
{
	for (int i = 0; i < nlaunched; i++)
		if (launched_running(&launched[i]))
			TerminateBackgroundWorker(launched[i].handle);
}

/* ---------------------------------------------------------------------
 * A detector worker
 */

/* Set by SIGUSR2: the scheduler gives this detector's turn to another. */
static volatile sig_atomic_t yield_requested = false;

/* SIGUSR2: give the detector up after the round under way. */
static void
handle_yield(SIGNAL_ARGS)
{
	int			save_errno = errno;

	yield_requested = true;
	SetLatch(MyLatch);
	errno = save_errno;
}

/* Sleeps ms on the latch, handling reloads. */
static void
nap(long ms)
{
	(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					 ms, PG_WAIT_EXTENSION);
	ResetLatch(MyLatch);
	CHECK_FOR_INTERRUPTS();
	if (ConfigReloadPending)
	{
		ConfigReloadPending = false;
		ProcessConfigFile(PGC_SIGHUP);
	}
}

void
anomaly_detect_worker_main(Datum arg)
{
	int64		id = DatumGetInt64(arg);
	Oid			dboid;
	volatile int errors = 0;
	volatile int busy = 0;
	char		appname[64];

	memcpy(&dboid, MyBgworkerEntry->bgw_extra, sizeof(Oid));
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	pqsignal(SIGUSR2, handle_yield);
	BackgroundWorkerUnblockSignals();
	/* as the other workers: the sys context pins its settings again */
	anomaly_bgworker_connect(dboid);
	snprintf(appname, sizeof(appname), "anomaly detector " INT64_FORMAT, id);
	pgstat_report_appname(appname);

	for (;;)
	{
		DetectRoundResult r = ROUND_CAUGHT_UP;
		int64		rows = 0;
		char	   *locked = NULL;
		MemoryContext cxt = CurrentMemoryContext;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		/* Between rounds: the last one is committed and its slot moved. */
		if (yield_requested)
			break;

		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		PushActiveSnapshot(GetTransactionSnapshot());
		pgstat_report_activity(STATE_RUNNING, "detector round");
		PG_TRY();
		{
			r = detect_round(id, detect_batch_rows, true, &rows, &locked);
			PopActiveSnapshot();
			CommitTransactionCommand();
			detect_after_commit();
		}
		PG_CATCH();
		{
			ErrorData  *edata;
			bool		permanent;

			HOLD_INTERRUPTS();
			MemoryContextSwitchTo(TopMemoryContext);
			edata = CopyErrorData();
			EmitErrorReport();
			FlushErrorState();
			AbortCurrentTransaction();
			detect_after_abort();
			RESUME_INTERRUPTS();
			MemoryContextSwitchTo(cxt);

			permanent = detect_error_is_permanent(edata->sqlerrcode);
			errors++;
			StartTransactionCommand();
			PushActiveSnapshot(GetTransactionSnapshot());
			detect_record_error(id, edata->message, unpack_sql_state(edata->sqlerrcode),
								permanent);
			PopActiveSnapshot();
			CommitTransactionCommand();
			FreeErrorData(edata);
			pgstat_report_activity(STATE_IDLE, NULL);
			if (permanent || errors >= detect_max_retries)
				break;
			nap(Min(60000L, 1000L << Min(errors - 1, 6)));
			continue;
		}
		PG_END_TRY();
		pgstat_report_activity(STATE_IDLE, NULL);
		errors = 0;

		if (r == ROUND_STOP)
			break;
		if (r == ROUND_BUSY)
		{
			/* Another worker has it: leave it to that one. */
			if (++busy > 50)
				break;
			nap(detect_naptime_ms * 5L);
			continue;
		}
		busy = 0;
		if (r == ROUND_LOCKED)
		{
			/*
			 * A table of the detector is locked (the round said so in the
			 * note and the log, and let go of everything with its
			 * transaction): try again a little later.
			 */
			nap(detect_naptime_ms * 5L);
			continue;
		}
		if (r == ROUND_CAUGHT_UP)
			nap(detect_naptime_ms);
	}
	detect_release();
	proc_exit(0);
}
