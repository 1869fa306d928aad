/*
 * worker.c
 *	  The sender background worker, and waking it at commit.
 *
 * Registered by anomaly_alert_init() when the library is preloaded.  It
 * connects to anomaly.sender_database and loops: one delivery round per
 * transaction (anomaly.sender_batch rows), then, when the round was not
 * full, sleeps on its latch until the next row is due, anomaly.sender_naptime
 * at most.  A transaction that queues a notification sets the worker's latch
 * when it commits, so a new alert is sent at once.  SIGHUP reloads the
 * settings; SIGTERM ends the worker (its open round rolls back: the rows stay
 * queued).  An error in a round is logged and the round retried after a nap.
 */
#include "postgres.h"

#include "access/xact.h"
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
#include "compat.h"

PG_FUNCTION_INFO_V1(anomaly_alert_wake_sender);

/* Shared state: where the running sender's latch is. */
typedef struct AlertSenderShared
{
	slock_t		mutex;
	pid_t		pid;
	Latch	   *latch;
} AlertSenderShared;

static AlertSenderShared *sender_shared = NULL;
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
	RequestAddinShmemSpace(MAXALIGN(sizeof(AlertSenderShared)));
}

/* Creates or attaches the shared state. */
static void
alert_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	sender_shared = ShmemInitStruct("anomaly alert sender", sizeof(AlertSenderShared), &found);
	if (!found)
	{
		SpinLockInit(&sender_shared->mutex);
		sender_shared->pid = 0;
		sender_shared->latch = NULL;
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

/* Sets the sender's latch if one is running. */
static void
wake_sender_now(void)
{
	Latch	   *latch;

	if (sender_shared == NULL)
		return;
	SpinLockAcquire(&sender_shared->mutex);
	latch = sender_shared->latch;
	SpinLockRelease(&sender_shared->mutex);
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

/* Forgets this process as the sender (on exit). */
static void
sender_detach(int code, Datum arg)
{
	if (sender_shared == NULL)
		return;
	SpinLockAcquire(&sender_shared->mutex);
	if (sender_shared->pid == MyProcPid)
	{
		sender_shared->pid = 0;
		sender_shared->latch = NULL;
	}
	SpinLockRelease(&sender_shared->mutex);
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
	SPI_execute("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'anomaly')",
				true, 1);
	installed = SPI_processed == 1 &&
		DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();

	if (installed && purge)
	{
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		SPI_execute("SELECT anomaly.purge_alert_history()", false, 0);
		SPI_finish();
	}
	if (installed && alert_sender_enabled)
	{
		alert_deliver_round(alert_sender_batch, 0, &res);
		claimed = res.claimed;
		if (res.claimed > 0)
			elog(DEBUG1, "anomaly sender: %d claimed, %d sent, %d retried, %d dead, %d deferred",
				 res.claimed, res.sent, res.retried, res.dead, res.deferred);

		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		SPI_execute("SELECT (extract(epoch FROM min(next_attempt_at) - clock_timestamp()) * 1000)::int8"
					" FROM anomaly.outbox", true, 1);
		if (SPI_processed == 1)
		{
			Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

			if (!isnull)
				*wait_ms = Max(DatumGetInt64(d), 0);
		}
		SPI_finish();
	}

	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
	return claimed;
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
	BackgroundWorkerInitializeConnection(alert_sender_database, NULL, 0);
	pgstat_report_appname("anomaly alert sender");

	/* every statement of the sender runs with nothing a user could plant */
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_SESSION);

	if (sender_shared != NULL)
	{
		SpinLockAcquire(&sender_shared->mutex);
		sender_shared->pid = MyProcPid;
		sender_shared->latch = MyLatch;
		SpinLockRelease(&sender_shared->mutex);
		before_shmem_exit(sender_detach, (Datum) 0);
	}
	elog(LOG, "anomaly alert sender started for database \"%s\"", alert_sender_database);

	loop_cxt = AllocSetContextCreate(TopMemoryContext, "anomaly sender loop",
									 ALLOCSET_DEFAULT_SIZES);
	for (;;)
	{
		volatile long wait_ms = -1;
		long		round_wait = -1;
		volatile int claimed = 0;
		volatile bool failed = false;

		CHECK_FOR_INTERRUPTS();
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
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 wait_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
