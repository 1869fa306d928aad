/*
 * registry.h
 *	  Which databases the background workers serve, in shared memory: the
 *	  launcher's latch, per database whether the extension is installed,
 *	  its scheduler and sender, why a worker is missing, and whether a
 *	  command that needs the database to itself (DROP DATABASE...) holds
 *	  our workers off.  Present only when the library is preloaded.
 */
#ifndef ANOMALY_REGISTRY_H
#define ANOMALY_REGISTRY_H

#include "storage/latch.h"

/* What the launcher knows of a database. */
typedef enum RegistryDbState
{
	REGDB_UNKNOWN = 0,			/* not probed yet, or asked to look again */
	REGDB_SERVED,				/* a scheduler runs there */
	REGDB_ABSENT				/* probed: the extension is not installed */
} RegistryDbState;

/* Which worker a note is about. */
typedef enum RegistryWorker
{
	REGW_DETECTOR = 0,
	REGW_SENDER,
	REGW_COUNT
} RegistryWorker;

#define REGISTRY_NOTE_LEN 128

/* Installs the shared memory hooks; from _PG_init while preloading. */
extern void registry_shmem_init(void);

/* Whether the registry exists (the library was preloaded). */
extern bool registry_attached(void);

/* The launcher announces itself (its latch is set by requests). */
extern void registry_set_launcher(void);

/*
 * Asks the launcher to look at this database at once (the extension was
 * installed, a detector created...), when the current transaction commits.
 */
extern void registry_request_at_commit(void);

/*
 * The launcher's side: the state of a database, creating its entry;
 * whether it was requested since the last call (which clears it).
 * false when the registry is full.
 */
extern bool registry_launcher_view(Oid dboid, RegistryDbState *state,
								   TimestampTz *probed_at, bool *held,
								   bool *requested);

/* Forgets the databases not in keep[] (dropped ones). */
extern void registry_forget_others(const Oid *keep, int nkeep);

/* Sets a database's state (probed_at = now). */
extern void registry_set_state(Oid dboid, RegistryDbState state);

/* Sets (note non-NULL) or clears a database's note for one kind of worker. */
extern void registry_set_note(Oid dboid, RegistryWorker which, const char *note);

/* Copies a database's note into buf; false when there is none. */
extern bool registry_get_note(Oid dboid, RegistryWorker which, char *buf, size_t size);

/* Holds our workers off a database (on) or lets them back (off). */
extern void registry_hold(Oid dboid, bool on);
extern bool registry_held(Oid dboid);

/*
 * The sender of a database: claim (false: another one runs), forget
 * (at exit), and its latch for waking it.
 */
extern bool registry_claim_sender(Oid dboid);
extern void registry_release_sender(Oid dboid);
extern Latch *registry_sender_latch(Oid dboid);

/*
 * Whether a database is named by a restriction setting (a comma-separated
 * list of database names; empty: every database).
 */
extern bool registry_db_allowed(const char *restriction, const char *dbname);

/*
 * Why no worker of this kind can serve the current database ("anomaly is
 * not in shared_preload_libraries"...), NULL when one can (or is about
 * to); *hint says how to fix it.
 */
extern const char *registry_service_note(RegistryWorker which, const char **hint);

/* Lets create_detector ask for a worker and report why none serves it. */
extern void registry_install_detect_hook(void);

/* Registers the launcher (launcher.c); while preloading. */
extern void anomaly_launcher_register(void);

/* The utility hook that keeps our workers off a database being dropped. */
extern void registry_install_utility_hook(void);

#endif							/* ANOMALY_REGISTRY_H */
