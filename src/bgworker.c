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
 * What a worker's transactions are, whatever the database's settings say:
 * its owner (no superuser) sets them with ALTER DATABASE ... SET, and
 * default_transaction_read_only = on there failed every round of every
 * detector in the database, and every delivery, each naptime; a lock_timeout
 * of a millisecond failed a round on any wait, and enough of them marked the
 * detector failed.  The workers' transactions are read-write and read
 * committed (what their statements are written for), their waits bounded by
 * SIGTERM and their own limits.
 */
static const char *const worker_settings[][2] = {
	{"default_transaction_read_only", "off"},
	{"default_transaction_isolation", "read committed"},
	{"default_transaction_deferrable", "off"},
	{"lock_timeout", "0"},
	{"statement_timeout", "0"},
};

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
	for (int i = 0; i < lengthof(worker_settings); i++)
		(void) set_config_option(worker_settings[i][0], worker_settings[i][1],
								 PGC_SUSET, PGC_S_SESSION, GUC_ACTION_SET, true, 0, false);
}
