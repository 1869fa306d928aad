/*
 * bgworker.c
 *	  Filling and registering the extension's background workers, so that
 *	  the launcher, the schedulers, the senders and the detector workers agree on
 *	  everything but their entry point, type and restart policy.
 */
#include "postgres.h"

#include "bgworker.h"
#include "miscadmin.h"
#include "utils/guc.h"

#include "pinned.h"

/* Describes one of our workers; see bgworker.h. */
void
anomaly_bgworker_init(BackgroundWorker *worker, const char *function_name,
					  const char *type, int restart_time)
{
	memset(worker, 0, sizeof(*worker));
	worker->bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker->bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker->bgw_restart_time = restart_time;
	snprintf(worker->bgw_library_name, BGW_MAXLEN, "anomaly");
	snprintf(worker->bgw_function_name, BGW_MAXLEN, "%s", function_name);
	snprintf(worker->bgw_name, BGW_MAXLEN, "%s", type);
	snprintf(worker->bgw_type, BGW_MAXLEN, "%s", type);
}

/*
 * Registers a long-lived worker at postmaster start; see bgworker.h.  Not
 * under pg_upgrade (-b): its servers must not decode, deliver or write while
 * the catalogs are moved, as pg_cron and PostgreSQL's logical launcher also
 * hold back.
 */
void
anomaly_bgworker_register_static(const char *function_name, const char *type)
{
	BackgroundWorker worker;

	if (IsBinaryUpgrade)
		return;
	anomaly_bgworker_init(&worker, function_name, type, 5);
	RegisterBackgroundWorker(&worker);
}

/*
 * Connects a worker to database dboid as the bootstrap superuser, with the
 * search_path pinned: the connection takes the database's settings, which
 * its owner sets (ALTER DATABASE ... SET search_path), and nothing found
 * through a path a non-superuser planted may run as superuser; nor do its
 * statements go to the log through debug_print_plan and friends (pinned.c).
 */
void
anomaly_bgworker_connect(Oid dboid)
{
	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	anomaly_pin_settings("pg_catalog, pg_temp", GUC_ACTION_SET);
}
