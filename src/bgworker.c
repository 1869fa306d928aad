/*
 * bgworker.c
 *	  Filling and registering the extension's background workers, so that
 *	  the launcher, the schedulers, the senders and the detector workers agree on
 *	  everything but their entry point, type and restart policy.
 */
#include "postgres.h"

#include "bgworker.h"

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

/* Registers a long-lived worker at postmaster start; see bgworker.h. */
void
anomaly_bgworker_register_static(const char *function_name, const char *type)
{
	BackgroundWorker worker;

	anomaly_bgworker_init(&worker, function_name, type, 5);
	RegisterBackgroundWorker(&worker);
}
