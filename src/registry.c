/*
 * registry.c
 *	  The databases our background workers serve, in shared memory.
 *
 * The launcher connects to no database: this registry is how it learns
 * about what happens in them.  A database's entry says whether the
 * extension is installed there (as its scheduler found), why a worker is
 * missing (a note for anomaly.detector_status and delivery_status),
 * whether a command that needs the database to itself holds our workers
 * off (dbguard.c), and where its sender's latch is.  A backend that
 * installs the extension or creates a detector requests a look at its
 * database, so that the launcher needs no frequent probing.
 *
 * One LWLock guards it; every access is a few loads and stores.
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/dbcommands.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"

#include "alert/alert.h"
#include "detect/detect.h"
#include "registry.h"

/* Databases the registry can describe; more are not served (logged). */
#define REGISTRY_MAX_DBS 1024

typedef struct RegistryDb
{
	Oid			dboid;			/* InvalidOid: free entry */
	RegistryDbState state;
	TimestampTz probed_at;
	bool		requested;
	TimestampTz held_until;		/* 0: not held */
	pid_t		sender_pid;
	Latch	   *sender_latch;
	char		note[REGW_COUNT][REGISTRY_NOTE_LEN];
} RegistryDb;

typedef struct Registry
{
	LWLock	   *lock;
	Latch	   *launcher_latch;
	int			ndbs;
	RegistryDb	dbs[REGISTRY_MAX_DBS];
} Registry;

static Registry *registry = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;
static bool request_at_commit = false;
static bool xact_callback_registered = false;

/* Asks for the shared memory and the lock. */
static void
registry_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(Registry)));
	RequestNamedLWLockTranche("anomaly registry", 1);
}

/* Creates or attaches the registry. */
static void
registry_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	registry = ShmemInitStruct("anomaly registry", sizeof(Registry), &found);
	if (!found)
	{
		memset(registry, 0, sizeof(Registry));
		registry->lock = &(GetNamedLWLockTranche("anomaly registry"))->lock;
	}
	LWLockRelease(AddinShmemInitLock);
}

/* See registry.h. */
void
registry_shmem_init(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = registry_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = registry_shmem_startup;
}

bool
registry_attached(void)
{
	return registry != NULL;
}

/* The entry of a database (lock held), created if asked and possible. */
static RegistryDb *
find_db(Oid dboid, bool create)
{
	RegistryDb *free_entry = NULL;

	for (int i = 0; i < registry->ndbs; i++)
	{
		if (registry->dbs[i].dboid == dboid)
			return &registry->dbs[i];
		if (registry->dbs[i].dboid == InvalidOid && free_entry == NULL)
			free_entry = &registry->dbs[i];
	}
	if (!create)
		return NULL;
	if (free_entry == NULL && registry->ndbs < REGISTRY_MAX_DBS)
		free_entry = &registry->dbs[registry->ndbs++];
	if (free_entry != NULL)
	{
		memset(free_entry, 0, sizeof(*free_entry));
		free_entry->dboid = dboid;
	}
	return free_entry;
}

/* Clears the launcher's latch pointer when it exits. */
static void
launcher_detach(int code, Datum arg)
{
	LWLockAcquire(registry->lock, LW_EXCLUSIVE);
	if (registry->launcher_latch == MyLatch)
		registry->launcher_latch = NULL;
	LWLockRelease(registry->lock);
}

void
registry_set_launcher(void)
{
	LWLockAcquire(registry->lock, LW_EXCLUSIVE);
	registry->launcher_latch = MyLatch;
	LWLockRelease(registry->lock);
	before_shmem_exit(launcher_detach, (Datum) 0);
}

/* Marks a database requested and wakes the launcher. */
static void
request_now(Oid dboid)
{
	RegistryDb *db;
	Latch	   *latch;

	LWLockAcquire(registry->lock, LW_EXCLUSIVE);
	db = find_db(dboid, true);
	if (db != NULL)
		db->requested = true;
	latch = registry->launcher_latch;
	LWLockRelease(registry->lock);
	if (latch != NULL)
		SetLatch(latch);
}

/* At commit of a transaction that asked for it, request a look. */
static void
registry_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (request_at_commit && registry != NULL)
				request_now(MyDatabaseId);
			request_at_commit = false;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			request_at_commit = false;
			break;
		default:
			break;
	}
}

void
registry_request_at_commit(void)
{
	if (registry == NULL)
		return;
	if (!xact_callback_registered)
	{
		RegisterXactCallback(registry_xact_callback, NULL);
		xact_callback_registered = true;
	}
	request_at_commit = true;
}

bool
registry_launcher_view(Oid dboid, RegistryDbState *state, TimestampTz *probed_at,
					   bool *held, bool *requested)
{
	RegistryDb *db;

	LWLockAcquire(registry->lock, LW_EXCLUSIVE);
	db = find_db(dboid, true);
	if (db != NULL)
	{
		*state = db->state;
		*probed_at = db->probed_at;
		*held = db->held_until != 0 && GetCurrentTimestamp() < db->held_until;
		*requested = db->requested;
		db->requested = false;
	}
	LWLockRelease(registry->lock);
	return db != NULL;
}

void
registry_forget_others(const Oid *keep, int nkeep)
{
	LWLockAcquire(registry->lock, LW_EXCLUSIVE);
	for (int i = 0; i < registry->ndbs; i++)
	{
		RegistryDb *db = &registry->dbs[i];
		bool		kept = false;

		if (db->dboid == InvalidOid)
			continue;
		for (int k = 0; k < nkeep && !kept; k++)
			kept = (keep[k] == db->dboid);
		if (!kept && db->held_until == 0 && db->sender_pid == 0)
			db->dboid = InvalidOid;
	}
	LWLockRelease(registry->lock);
}

void
registry_set_state(Oid dboid, RegistryDbState state)
{
	RegistryDb *db;

	LWLockAcquire(registry->lock, LW_EXCLUSIVE);
	db = find_db(dboid, true);
	if (db != NULL)
	{
		db->state = state;
		db->probed_at = GetCurrentTimestamp();
	}
	LWLockRelease(registry->lock);
}

void
registry_set_note(Oid dboid, RegistryWorker which, const char *note)
{
	RegistryDb *db;

	LWLockAcquire(registry->lock, LW_EXCLUSIVE);
	db = find_db(dboid, note != NULL);
	if (db != NULL)
		strlcpy(db->note[which], note ? note : "", REGISTRY_NOTE_LEN);
	LWLockRelease(registry->lock);
}

bool
registry_get_note(Oid dboid, RegistryWorker which, char *buf, size_t size)
{
	RegistryDb *db;
	bool		found = false;

	LWLockAcquire(registry->lock, LW_SHARED);
	db = find_db(dboid, false);
	if (db != NULL && db->note[which][0] != '\0')
	{
		strlcpy(buf, db->note[which], size);
		found = true;
	}
	LWLockRelease(registry->lock);
	return found;
}

void
registry_hold(Oid dboid, bool on)
{
	RegistryDb *db;
	Latch	   *latch;

	LWLockAcquire(registry->lock, LW_EXCLUSIVE);
	db = find_db(dboid, on);
	/* a backend that dies while holding lets go after ten minutes */
	if (db != NULL)
	{
		db->held_until = on ? TimestampTzPlusMilliseconds(GetCurrentTimestamp(), 600000) : 0;
		/* let go: its scheduler comes back at once, not at the next look */
		if (!on)
			db->requested = true;
	}
	latch = registry->launcher_latch;
	LWLockRelease(registry->lock);
	if (!on && latch != NULL)
		SetLatch(latch);
}

bool
registry_held(Oid dboid)
{
	RegistryDb *db;
	bool		held = false;

	if (registry == NULL)
		return false;
	LWLockAcquire(registry->lock, LW_SHARED);
	db = find_db(dboid, false);
	if (db != NULL && db->held_until != 0)
		held = GetCurrentTimestamp() < db->held_until;
	LWLockRelease(registry->lock);
	return held;
}

/* Forgets this process as its database's sender (on exit). */
static void
sender_detach(int code, Datum arg)
{
	registry_release_sender(MyDatabaseId);
}

bool
registry_claim_sender(Oid dboid)
{
	RegistryDb *db;
	bool		claimed = false;

	LWLockAcquire(registry->lock, LW_EXCLUSIVE);
	db = find_db(dboid, true);
	if (db != NULL && db->sender_pid == 0)
	{
		db->sender_pid = MyProcPid;
		db->sender_latch = MyLatch;
		claimed = true;
	}
	LWLockRelease(registry->lock);
	if (claimed)
		before_shmem_exit(sender_detach, (Datum) 0);
	return claimed;
}

void
registry_release_sender(Oid dboid)
{
	RegistryDb *db;

	LWLockAcquire(registry->lock, LW_EXCLUSIVE);
	db = find_db(dboid, false);
	if (db != NULL && db->sender_pid == MyProcPid)
	{
		db->sender_pid = 0;
		db->sender_latch = NULL;
	}
	LWLockRelease(registry->lock);
}

Latch *
registry_sender_latch(Oid dboid)
{
	RegistryDb *db;
	Latch	   *latch = NULL;

	if (registry == NULL)
		return NULL;
	LWLockAcquire(registry->lock, LW_SHARED);
	db = find_db(dboid, false);
	if (db != NULL)
		latch = db->sender_latch;
	LWLockRelease(registry->lock);
	return latch;
}

bool
registry_db_allowed(const char *restriction, const char *dbname)
{
	char	   *raw;
	List	   *names;
	ListCell   *lc;
	bool		allowed = false;

	if (restriction == NULL || restriction[0] == '\0')
		return true;
	raw = pstrdup(restriction);
	if (!SplitGUCList(raw, ',', &names))
		return false;			/* the check hook refuses such a value */
	foreach(lc, names)
	{
		if (strcmp((char *) lfirst(lc), dbname) == 0)
			allowed = true;
	}
	list_free(names);
	pfree(raw);
	return allowed;
}

const char *
registry_service_note(RegistryWorker which, const char **hint)
{
	static char buf[REGISTRY_NOTE_LEN + 64];
	const char *restriction = which == REGW_DETECTOR ? detect_database : alert_sender_database;
	const char *setting = which == REGW_DETECTOR ? "anomaly.detector_database" : "anomaly.sender_database";

	if (registry == NULL)
	{
		snprintf(buf, sizeof(buf), "anomaly is not in shared_preload_libraries");
		*hint = which == REGW_DETECTOR ?
			"Add anomaly to shared_preload_libraries and restart the server, or call anomaly.process() periodically (for example from pg_cron)." :
			"Add anomaly to shared_preload_libraries and restart the server, or call anomaly.deliver() periodically (for example from pg_cron).";
		return buf;
	}
	if (which == REGW_DETECTOR && detect_max_workers == 0)
	{
		*hint = "Set anomaly.detector_workers above 0 and reload, or call anomaly.process() periodically.";
		return "anomaly.detector_workers is 0";
	}
	if (which == REGW_SENDER && !alert_sender_enabled)
	{
		*hint = "Set anomaly.sender_enabled = on and reload, or call anomaly.deliver() periodically.";
		return "anomaly.sender_enabled is off";
	}
	if (!registry_db_allowed(restriction, get_database_name(MyDatabaseId)))
	{
		snprintf(buf, sizeof(buf), "%s does not name this database", setting);
		*hint = which == REGW_DETECTOR ?
			"Add this database to anomaly.detector_database (a comma-separated list; empty: every database) and reload, or call anomaly.process() periodically." :
			"Add this database to anomaly.sender_database (a comma-separated list; empty: every database) and reload, or call anomaly.deliver() periodically.";
		return buf;
	}
	if (registry_get_note(MyDatabaseId, which, buf, sizeof(buf)))
	{
		*hint = which == REGW_DETECTOR ?
			"Raise max_worker_processes (restart) or anomaly.detector_workers (reload), or call anomaly.process() periodically." :
			"Raise max_worker_processes (restart), or call anomaly.deliver() periodically.";
		return buf;
	}
	*hint = NULL;
	return NULL;
}

PG_FUNCTION_INFO_V1(anomaly_worker_note);

/*
 * anomaly._worker_note(kind): why no worker of this kind ('detector' or
 * 'sender') can serve this database, NULL when one can; for the status
 * views.
 */
Datum
anomaly_worker_note(PG_FUNCTION_ARGS)
{
	char	   *kind = text_to_cstring(PG_GETARG_TEXT_PP(0));
	const char *hint;
	const char *note;

	if (strcmp(kind, "detector") == 0)
		note = registry_service_note(REGW_DETECTOR, &hint);
	else if (strcmp(kind, "sender") == 0)
		note = registry_service_note(REGW_SENDER, &hint);
	else
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown kind of worker \"%s\"", kind),
				 errhint("Use 'detector' or 'sender'.")));
	if (note == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(psprintf("no worker: %s", note)));
}

/*
 * The detect layer's view of the above (detect_service_hook): asks the
 * launcher to look at this database at commit, and says why no worker can
 * serve it.
 */
static const char *
detect_service(const char **hint)
{
	registry_request_at_commit();
	return registry_service_note(REGW_DETECTOR, hint);
}

/* Lets the detect layer ask; from _PG_init. */
void
registry_install_detect_hook(void)
{
	detect_service_hook = detect_service;
}
