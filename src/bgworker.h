/*
 * bgworker.h
 *	  The one place where the extension's background workers are described:
 *	  the launcher, the schedulers, the senders and the detector workers.
 */
#ifndef ANOMALY_BGWORKER_H
#define ANOMALY_BGWORKER_H

#include "postmaster/bgworker.h"

/*
 * A worker of the extension with its entry point, type and restart time:
 * shared memory and a database connection, started once recovery ends,
 * named after its type (callers may give a more specific bgw_name).
 */
extern void anomaly_bgworker_init(BackgroundWorker *worker,
								  const char *function_name,
								  const char *type, int restart_time);

/*
 * Registers a worker that the postmaster starts and restarts (after 5
 * seconds) for as long as the server runs; only while preloading.
 */
extern void anomaly_bgworker_register_static(const char *function_name,
											 const char *type);

/*
 * Connects to a database as the bootstrap superuser with search_path
 * pinned to pg_catalog, pg_temp and the other settings of pinned.c (the
 * schedulers, the senders and the detector workers).
 */
extern void anomaly_bgworker_connect(Oid dboid);

#endif							/* ANOMALY_BGWORKER_H */
