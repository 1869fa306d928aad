/*
 * worker.c
 *	  The sender background worker, and waking it at commit.
 *
 * Each database's scheduler (src/launcher.c) starts one, through
 * alert_schedule(), when the database has destinations and is named by
 * anomaly.sender_database (empty: every database).  It loops: one delivery round per
 * transaction (anomaly.sender_batch rows), then, when the round was not
 * full, sleeps on its latch until the next row is due, anomaly.sender_naptime
 * at most.  A transaction that queues a notification sets the worker's latch
 * when it commits, so a new alert is sent at once.  SIGHUP reloads the
 * settings; SIGTERM ends the worker (its open round rolls back: the rows stay
 * queued); a cancel cancels the open round, if any.  An error in a round is
 * logged and the round retried after a nap.  It exits when the extension is
 * dropped from its database.
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/dbcommands.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "alert/alert.h"
#include "bgworker.h"
#include "compat.h"

PG_FUNCTION_INFO_V1(anomaly_alert_wake_sender);

/* Shared state: per database, the running sender and its latch. */
typedef struct AlertSenderSlot
{
	Oid			dboid;			/* InvalidOid: free */
	pid_t		pid;
	Latch	   *latch;
} AlertSenderSlot;

/* One slot per possible sender: senders are background workers. */
typedef struct AlertSenderShared
{
	slock_t		mutex;
	int			nslots;			/* max_worker_processes */
	AlertSenderSlot senders[FLEXIBLE_ARRAY_MEMBER];
} AlertSenderShared;

#define SENDER_SHARED_SIZE(n) \
	(offsetof(AlertSenderShared, senders) + sizeof(AlertSenderSlot) * (n))

static AlertSenderShared *sender_shared = NULL;
static BackgroundWorkerHandle *sender_handle = NULL;
#ifdef ANOMALY_HAVE_SHMEM_REQUEST_HOOK
static shmem_request_hook_type prev_shmem_request_hook = NULL;
#endif
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;
static bool wake_at_commit = false;
static bool xact_callback_registered = false;

/* Asks for the shared state. */
static void
alert_shmem_request(void)
{
#ifdef ANOMALY_HAVE_SHMEM_REQUEST_HOOK
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
#endif
	RequestAddinShmemSpace(MAXALIGN(SENDER_SHARED_SIZE(max_worker_processes)));
}

/* Creates or attaches the shared state. */
static void
alert_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	sender_shared = ShmemInitStruct("anomaly alert sender",
									SENDER_SHARED_SIZE(max_worker_processes), &found);
	if (!found)
	{
		memset(sender_shared, 0, SENDER_SHARED_SIZE(max_worker_processes));
		sender_shared->nslots = max_worker_processes;
		SpinLockInit(&sender_shared->mutex);
	}
	LWLockRelease(AddinShmemInitLock);
}

/*
 * Installs the shared memory hooks (from _PG_init, when preloaded).  14 has
 * no request hook: there the space is requested here (compat.h).
 */
void
alert_shmem_init(void)
{
#ifdef ANOMALY_HAVE_SHMEM_REQUEST_HOOK
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = alert_shmem_request;
#else
	alert_shmem_request();
#endif
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = alert_shmem_startup;
}

/* The pid and latch of a database's sender; 0 when none runs. */
static pid_t
sender_of(Oid dboid, Latch **latch)
{
	pid_t		pid = 0;

	if (latch)
		*latch = NULL;
	if (sender_shared == NULL)
		return 0;
	SpinLockAcquire(&sender_shared->mutex);
	for (int i = 0; i < sender_shared->nslots; i++)
		if (sender_shared->senders[i].dboid == dboid)
		{
			pid = sender_shared->senders[i].pid;
			if (latch)
				*latch = sender_shared->senders[i].latch;
			break;
		}
	SpinLockRelease(&sender_shared->mutex);
	return pid;
}

/* Sets this database's sender's latch if one is running. */
static void
wake_sender_now(void)
{
	Latch	   *latch;

	(void) sender_of(MyDatabaseId, &latch);
	if (latch != NULL)
		SetLatch(latch);
}

/* At commit of a transaction that queued notifications, wake the sender. */
static void
alert_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (wake_at_commit)
				wake_sender_now();
			wake_at_commit = false;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			wake_at_commit = false;
			break;
		default:
			break;
	}
}

/* SQL: anomaly._wake_sender(), called whenever a row enters the outbox. */
Datum
anomaly_alert_wake_sender(PG_FUNCTION_ARGS)
{
	if (sender_shared == NULL)
		PG_RETURN_VOID();
	if (!xact_callback_registered)
	{
		RegisterXactCallback(alert_xact_callback, NULL);
		xact_callback_registered = true;
	}
	wake_at_commit = true;
	PG_RETURN_VOID();
}

/* Forgets this process as its database's sender (on exit). */
static void
sender_detach(int code, Datum arg)
{
	SpinLockAcquire(&sender_shared->mutex);
	for (int i = 0; i < sender_shared->nslots; i++)
		if (sender_shared->senders[i].pid == MyProcPid)
			memset(&sender_shared->senders[i], 0, sizeof(AlertSenderSlot));
	SpinLockRelease(&sender_shared->mutex);
}

/* Becomes this database's sender; false when another one is. */
static bool
sender_attach(void)
{
	AlertSenderSlot *free_slot = NULL;
	bool		taken = false;

	SpinLockAcquire(&sender_shared->mutex);
	for (int i = 0; i < sender_shared->nslots; i++)
	{
		AlertSenderSlot *s = &sender_shared->senders[i];

		if (s->dboid == MyDatabaseId)
			taken = true;
		else if (s->dboid == InvalidOid && free_slot == NULL)
			free_slot = s;
	}
	if (!taken && free_slot != NULL)
	{
		free_slot->dboid = MyDatabaseId;
		free_slot->pid = MyProcPid;
		free_slot->latch = MyLatch;
	}
	SpinLockRelease(&sender_shared->mutex);
	if (taken || free_slot == NULL)
		return false;
	before_shmem_exit(sender_detach, (Datum) 0);
	return true;
}

/* See alert.h. */
const char *
alert_schedule(bool allowed)
{
	static char note[160];
	BackgroundWorker worker;
	pid_t		pid;
	bool		wanted = false;
	bool		isnull;

	if (sender_handle != NULL &&
		GetBackgroundWorkerPid(sender_handle, &pid) == BGWH_STOPPED)
	{
		pfree(sender_handle);
		sender_handle = NULL;
	}
	if (!allowed || !alert_sender_enabled)
	{
		if (sender_handle != NULL)
			TerminateBackgroundWorker(sender_handle);
		return NULL;
	}
	if (sender_handle != NULL || sender_of(MyDatabaseId, NULL) != 0)
		return NULL;

	/* A sender only where there is something to send to. */
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute("SELECT EXISTS (SELECT FROM pg_catalog.pg_extension"
					" WHERE extname OPERATOR(pg_catalog.=) 'anomaly')"
					" AND EXISTS (SELECT FROM anomaly.destinations)", true, 1) == SPI_OK_SELECT &&
		SPI_processed == 1)
		wanted = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	if (!wanted)
		return NULL;

	anomaly_bgworker_init(&worker, "anomaly_alert_sender_main",
						  "anomaly alert sender", BGW_NEVER_RESTART);
	worker.bgw_main_arg = ObjectIdGetDatum(MyDatabaseId);
	worker.bgw_notify_pid = MyProcPid;
	if (!RegisterDynamicBackgroundWorker(&worker, &sender_handle))
	{
		sender_handle = NULL;
		ereport(LOG,
				(errmsg("anomaly: could not start the alert sender of database \"%s\"",
						get_database_name(MyDatabaseId)),
				 errhint("Raise max_worker_processes.")));
		snprintf(note, sizeof(note),
				 "no free background worker slot (max_worker_processes = %d)",
				 max_worker_processes);
		return note;
	}
	return NULL;
}

/*
 * One round in its own transaction.  Returns the rows claimed, and sets
 * *wait_ms to how long until the next row is due (-1: none queued, or the
 * extension is not installed in this database).
 */
static int
sender_round(long *wait_ms, bool purge)
{
	AlertRoundResult res;
	int			claimed = 0;
	bool		installed;
	bool		isnull;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "anomaly: delivering alerts");
	*wait_ms = -1;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	SPI_execute("SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_extension"
				" WHERE extname OPERATOR(pg_catalog.=) 'anomaly')",
				true, 1);
	installed = SPI_processed == 1 &&
		DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();

	if (!installed)
	{
		/* the extension was dropped: nothing left to serve here */
		PopActiveSnapshot();
		CommitTransactionCommand();
		ereport(LOG,
				(errmsg("anomaly alert sender of database \"%s\" exits: the extension is not installed",
						get_database_name(MyDatabaseId))));
		proc_exit(0);
	}
	if (purge)
	{
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		SPI_execute("SELECT anomaly.purge_alert_history()", false, 0);
		SPI_finish();
	}
	if (alert_sender_enabled)
	{
		alert_deliver_round(alert_sender_batch, 0, true, &res);
		claimed = res.claimed;
		if (res.claimed > 0 || res.sent > 0 || res.retried > 0 || res.dead > 0)
			elog(DEBUG1, "anomaly sender: %d claimed, %d sent, %d retried, %d dead, %d deferred, %d carried over",
				 res.claimed, res.sent, res.retried, res.dead, res.deferred, res.carried);

		/*
		 * Until a row the claim takes is due: those of a destination whose
		 * probe is in flight wait for it (sender_wait wakes when one ends).
		 */
		*wait_ms = (long) alert_next_due_ms();
	}
	else if (alert_carried_count() > 0)
	{
		/* probes sent before: their outcomes are recorded, nothing new */
		alert_deliver_round(0, 0, true, &res);
	}

	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
	return claimed;
}

/*
 * Interrupts between rounds.  SIGTERM ends the worker; a cancel
 * (pg_cancel_backend) has no round to cancel here, and its error, raised
 * outside a round's error handling, ended the worker, and with it the
 * probes in flight, whose rows then waited for their leases: the worker is
 * in its wait most of the time now that it does not wait for them.
 */
static void
sender_interrupts(void)
{
	QueryCancelPending = false;
	CHECK_FOR_INTERRUPTS();
}

/*
 * Sleeps up to wait_ms, until the latch is set or, with probes carried
 * over (deliver.c), until one of them ends: they are driven every 50 ms.
 */
static void
sender_wait(long wait_ms)
{
	TimestampTz until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), wait_ms);

	for (;;)
	{
		long		slice = wait_ms;
		int			rc;

		if (alert_carried_count() > 0)
			slice = Min(slice, 50);
		rc = WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					   slice, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		if ((rc & WL_LATCH_SET) || alert_carried_count() == 0)
			return;
		if (alert_carried_poll())
			return;
		wait_ms = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), until);
		if (wait_ms <= 0)
			return;
		sender_interrupts();
	}
}

/* Entry point of the sender worker. */
void
anomaly_alert_sender_main(Datum arg)
{
	MemoryContext loop_cxt;
	volatile TimestampTz last_purge = 0;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	anomaly_bgworker_connect(DatumGetObjectId(arg));
	pgstat_report_appname("anomaly alert sender");

	if (!sender_attach())
	{
		/* another sender serves this database (started by an earlier scheduler) */
		proc_exit(0);
	}
	StartTransactionCommand();
	elog(LOG, "anomaly alert sender started for database \"%s\"",
		 get_database_name(MyDatabaseId));
	CommitTransactionCommand();

	loop_cxt = AllocSetContextCreate(TopMemoryContext, "anomaly sender loop",
									 ALLOCSET_DEFAULT_SIZES);
	for (;;)
	{
		volatile long wait_ms = -1;
		long		round_wait = -1;
		volatile int claimed = 0;
		volatile bool failed = false;

		sender_interrupts();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		MemoryContextSwitchTo(loop_cxt);
		PG_TRY();
		{
			bool		purge = TimestampDifferenceExceeds(last_purge, GetCurrentTimestamp(),
														   3600 * 1000);

			claimed = sender_round(&round_wait, purge);
			wait_ms = round_wait;
			if (purge)
				last_purge = GetCurrentTimestamp();
		}
		PG_CATCH();
		{
			MemoryContextSwitchTo(loop_cxt);
			EmitErrorReport();
			FlushErrorState();
			AbortCurrentTransaction();
			failed = true;
		}
		PG_END_TRY();
		MemoryContextSwitchTo(TopMemoryContext);
		MemoryContextReset(loop_cxt);

		/* a full round: more may be due at once */
		if (!failed && claimed >= alert_sender_batch)
			continue;

		if (failed || wait_ms < 0 || wait_ms > alert_sender_naptime_ms)
			wait_ms = alert_sender_naptime_ms;
		if (wait_ms < 10)
			wait_ms = 10;
		sender_wait(wait_ms);
	}
}
