/*
 * launcher.c
 *	  The launcher, and the scheduler of each database it serves.
 *
 * With shared_preload_libraries = 'anomaly' the postmaster starts one
 * launcher.  It connects to no database (only the shared catalogs, like
 * the autovacuum launcher), and every ten seconds, or at once when asked
 * through the registry, reads pg_database: for every database that
 * accepts connections, is not a template and is named by
 * anomaly.detector_database or anomaly.sender_database (empty: every
 * database), it keeps one scheduler running.
 *
 * A scheduler connects to its database.  When the extension is not
 * installed there it says so in the registry and exits: the launcher
 * probes such a database again after a minute, or at once when a backend
 * installs the extension there (registry_request_at_commit).  Otherwise it
 * stays, and every second starts the missing detector workers
 * (detect_schedule) and, when the database has destinations, its alert
 * sender (alert_schedule), and records in the registry why a worker could
 * not be started.  It exits when the extension is dropped, when the
 * settings no longer name its database, or when a command needs the
 * database to itself (dbguard.c).
 *
 * Processes: the launcher, plus per served database one scheduler, one
 * sender when it has destinations and one worker per running detector
 * (at most anomaly.detector_workers), all within max_worker_processes.
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "alert/alert.h"
#include "bgworker.h"
#include "detect/detect.h"
#include "registry.h"

#define SCHEDULER_BGW_TYPE "anomaly scheduler"

/* How often the launcher reads pg_database, and probes a database without the extension. */
#define LAUNCHER_NAPTIME_MS 10000
#define ABSENT_RECHECK_MS 60000
/* A scheduler that stopped is restarted after this long (unless requested). */
#define SCHEDULER_RESTART_MS 5000

PGDLLEXPORT void anomaly_launcher_main(Datum arg);
PGDLLEXPORT void anomaly_scheduler_main(Datum arg);

/* A database as the launcher sees it. */
typedef struct SchedDb
{
	Oid			dboid;
	BackgroundWorkerHandle *handle;
	TimestampTz started;
	bool		seen;
} SchedDb;

/* Registers the launcher; from _PG_init while preloading. */
void
anomaly_launcher_register(void)
{
	anomaly_bgworker_register_static("anomaly_launcher_main", "anomaly launcher");
}

/* Whether a scheduler started by this launcher still runs. */
static bool
sched_running(SchedDb *s)
{
	pid_t		pid;

	return s->handle != NULL && GetBackgroundWorkerPid(s->handle, &pid) != BGWH_STOPPED;
}

/* Starts the scheduler of a database; false when no slot is free. */
static bool
start_scheduler(SchedDb *s, const char *dbname)
{
	BackgroundWorker worker;
	MemoryContext old;
	bool		started;

	anomaly_bgworker_init(&worker, "anomaly_scheduler_main", SCHEDULER_BGW_TYPE,
						  BGW_NEVER_RESTART);
	snprintf(worker.bgw_name, BGW_MAXLEN, SCHEDULER_BGW_TYPE " %s", dbname);
	worker.bgw_main_arg = ObjectIdGetDatum(s->dboid);
	worker.bgw_notify_pid = MyProcPid;
	s->started = GetCurrentTimestamp();
	if (s->handle)
	{
		pfree(s->handle);
		s->handle = NULL;
	}
	/* called in a transaction: the handle must outlive it */
	old = MemoryContextSwitchTo(TopMemoryContext);
	started = RegisterDynamicBackgroundWorker(&worker, &s->handle);
	MemoryContextSwitchTo(old);
	if (!started)
		s->handle = NULL;
	return started;
}

/*
 * One look at pg_database: starts the schedulers that should run and do
 * not.  scheds (in TopMemoryContext) grows as databases appear.
 */
static void
launcher_pass(SchedDb **scheds, int *nscheds, int *maxscheds)
{
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;
	Oid		   *seen_oids = NULL;
	int			nseen = 0;
	int			maxseen = 0;
	TimestampTz now = GetCurrentTimestamp();
	MemoryContext outer = CurrentMemoryContext;	/* outlives the transaction */

	for (int i = 0; i < *nscheds; i++)
		(*scheds)[i].seen = false;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	(void) GetTransactionSnapshot();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while (HeapTupleIsValid(tup = heap_getnext(scan, ForwardScanDirection)))
	{
		Form_pg_database dbform = (Form_pg_database) GETSTRUCT(tup);
		const char *dbname = NameStr(dbform->datname);
		SchedDb    *s = NULL;
		RegistryDbState state;
		TimestampTz probed_at;
		bool		held;
		bool		requested;

		if (!dbform->datallowconn || dbform->datistemplate)
			continue;
		if (!registry_db_allowed(detect_database, dbname) &&
			!registry_db_allowed(alert_sender_database, dbname))
			continue;
		if (nseen == maxseen)
		{
			maxseen = Max(16, maxseen * 2);
			seen_oids = seen_oids ? repalloc(seen_oids, sizeof(Oid) * maxseen) :
				MemoryContextAlloc(outer, sizeof(Oid) * maxseen);
		}
		seen_oids[nseen++] = dbform->oid;

		for (int i = 0; i < *nscheds; i++)
			if ((*scheds)[i].dboid == dbform->oid)
				s = &(*scheds)[i];
		if (s == NULL)
		{
			if (*nscheds == *maxscheds)
			{
				*maxscheds = Max(16, *maxscheds * 2);
				*scheds = *scheds ?
					repalloc(*scheds, sizeof(SchedDb) * *maxscheds) :
					MemoryContextAlloc(TopMemoryContext, sizeof(SchedDb) * *maxscheds);
			}
			s = &(*scheds)[(*nscheds)++];
			memset(s, 0, sizeof(*s));
			s->dboid = dbform->oid;
		}
		s->seen = true;

		if (!registry_launcher_view(s->dboid, &state, &probed_at, &held, &requested))
		{
			ereport(LOG,
					(errmsg("anomaly: too many databases, database \"%s\" is not served",
							dbname)));
			continue;
		}
		if (held || sched_running(s))
			continue;
		if (!requested)
		{
			if (state == REGDB_ABSENT &&
				!TimestampDifferenceExceeds(probed_at, now, ABSENT_RECHECK_MS))
				continue;
			if (s->started != 0 &&
				!TimestampDifferenceExceeds(s->started, now, SCHEDULER_RESTART_MS))
				continue;
		}
		if (start_scheduler(s, dbname))
		{
			registry_set_note(s->dboid, REGW_DETECTOR, NULL);
			registry_set_note(s->dboid, REGW_SENDER, NULL);
		}
		else
		{
			char		note[REGISTRY_NOTE_LEN];

			ereport(LOG,
					(errmsg("anomaly: could not start the scheduler of database \"%s\"", dbname),
					 errhint("Raise max_worker_processes.")));
			snprintf(note, sizeof(note),
					 "no free background worker slot for this database's scheduler (max_worker_processes = %d)",
					 max_worker_processes);
			registry_set_note(s->dboid, REGW_DETECTOR, note);
			registry_set_note(s->dboid, REGW_SENDER, note);
		}
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();

	registry_forget_others(seen_oids, nseen);
	/* Forget the databases gone or excluded whose scheduler stopped. */
	for (int i = 0; i < *nscheds;)
	{
		if (!(*scheds)[i].seen && !sched_running(&(*scheds)[i]))
		{
			if ((*scheds)[i].handle)
				pfree((*scheds)[i].handle);
			(*scheds)[i] = (*scheds)[--(*nscheds)];
		}
		else
			i++;
	}
	if (seen_oids)
		pfree(seen_oids);
}

/* Entry point of the launcher. */
void
anomaly_launcher_main(Datum arg)
{
	SchedDb    *scheds = NULL;
	int			nscheds = 0;
	int			maxscheds = 0;
	MemoryContext loop_cxt;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	/* no database: pg_database is a shared catalog */
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	pgstat_report_appname("anomaly launcher");
	registry_set_launcher();
	loop_cxt = AllocSetContextCreate(TopMemoryContext, "anomaly launcher loop",
									 ALLOCSET_DEFAULT_SIZES);

	for (;;)
	{
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		MemoryContextSwitchTo(loop_cxt);
		launcher_pass(&scheds, &nscheds, &maxscheds);
		MemoryContextSwitchTo(TopMemoryContext);
		MemoryContextReset(loop_cxt);

		/* woken by requests, and by schedulers that stop (bgw_notify_pid) */
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 LAUNCHER_NAPTIME_MS, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}

/*
 * Whether the extension is installed here, and this database's name; and in
 * version, the installed extension's version (empty when not installed).
 */
static bool
scheduler_look(char *dbname, size_t size, char *version, size_t vsize)
{
	bool		installed;
	char	   *name;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	installed = OidIsValid(get_extension_oid("anomaly", true));
	name = get_database_name(MyDatabaseId);
	strlcpy(dbname, name ? name : "", size);
	version[0] = '\0';
	if (installed)
	{
		PushActiveSnapshot(GetTransactionSnapshot());
		if (SPI_connect() == SPI_OK_CONNECT)
		{
			if (SPI_execute("SELECT extversion FROM pg_catalog.pg_extension"
							" WHERE extname OPERATOR(pg_catalog.=) 'anomaly'",
							true, 1) == SPI_OK_SELECT && SPI_processed == 1)
			{
				char	   *v = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);

				strlcpy(version, v ? v : "", vsize);
			}
			SPI_finish();
		}
		PopActiveSnapshot();
	}
	CommitTransactionCommand();
	return installed;
}

/* Entry point of a database's scheduler. */
void
anomaly_scheduler_main(Datum arg)
{
	char		dbname[NAMEDATALEN];
	char		version[NAMEDATALEN];
	bool		mismatch_logged = false;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	anomaly_bgworker_connect(DatumGetObjectId(arg));
	pgstat_report_appname(SCHEDULER_BGW_TYPE);

	for (;;)
	{
		bool		detect_ok;
		bool		send_ok;
		const char *note;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		if (registry_held(MyDatabaseId))
			break;
		if (!scheduler_look(dbname, sizeof(dbname), version, sizeof(version)))
		{
			registry_set_state(MyDatabaseId, REGDB_ABSENT);
			break;
		}
		registry_set_state(MyDatabaseId, REGDB_SERVED);

		/*
		 * A new library under an older install script (the package was
		 * upgraded, ALTER EXTENSION anomaly UPDATE not yet run): its workers
		 * would read catalogs that do not have their columns yet and fail
		 * the detectors.  Nothing runs until the update.
		 */
		if (strcmp(version, ANOMALY_VERSION) != 0)
		{
			if (!mismatch_logged)
				ereport(LOG,
						(errmsg("anomaly workers of database \"%s\" wait for ALTER EXTENSION anomaly UPDATE", dbname),
						 errdetail("The library is version %s, the database's extension version %s.",
								   ANOMALY_VERSION, version)));
			mismatch_logged = true;
			detect_unschedule();
			(void) alert_schedule(false);
			registry_set_note(MyDatabaseId, REGW_DETECTOR, "no worker: waiting for ALTER EXTENSION anomaly UPDATE");
			registry_set_note(MyDatabaseId, REGW_SENDER, "no worker: waiting for ALTER EXTENSION anomaly UPDATE");
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 1000L, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			continue;
		}
		mismatch_logged = false;
		detect_ok = registry_db_allowed(detect_database, dbname);
		send_ok = registry_db_allowed(alert_sender_database, dbname);
		if (!detect_ok && !send_ok)
			break;

		if (detect_ok && detect_max_workers > 0)
			note = detect_schedule();
		else
		{
			detect_unschedule();
			note = NULL;
		}
		registry_set_note(MyDatabaseId, REGW_DETECTOR, note);
		note = alert_schedule(send_ok);
		registry_set_note(MyDatabaseId, REGW_SENDER, note);

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 1000L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
	detect_unschedule();
	(void) alert_schedule(false);
	proc_exit(0);
}
