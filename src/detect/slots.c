/*
 * slots.c
 *	  The detectors' logical replication slots and replication origins:
 *	  naming, creation, dropping (with the detector, with DROP EXTENSION, and
 *	  orphans left by an aborted create_detector).
 *
 * A detector with id N in the database with OID D has a slot and a
 * replication origin both named "anomaly_D_N".  The slot is created before
 * any write of create_detector's transaction (logical slots cannot be
 * created after one) and is not transactional: when that transaction aborts
 * the slot stays behind, and the scheduler or anomaly.process() drops slots
 * with no detector (detect_drop_orphan_slots).
 *
 * Slots are dropped when the detector is dropped and when the extension is
 * dropped (the object access hook below, which the ddl_command_start event
 * trigger makes sure is loaded).  An anomaly worker that holds the slot is
 * asked to stop first.
 */
#include "postgres.h"

#include <signal.h>

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "access/xlogutils.h"
#include "catalog/objectaccess.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_replication_origin.h"
#include "catalog/pg_type.h"
#include "commands/event_trigger.h"
#include "commands/extension.h"
#include "utils/acl.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "replication/logical.h"
#include "replication/origin.h"
#include "replication/slot.h"
#include "storage/lmgr.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/varlena.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/resowner.h"

#include "subxact.h"
#include "detect/detect.h"
#include "compat.h"

PG_FUNCTION_INFO_V1(anomaly_detect_ddl_guard);
PG_FUNCTION_INFO_V1(anomaly_detect_drop_orphans);

static object_access_hook_type prev_object_access_hook = NULL;

void
detect_object_name(char *buf, size_t size, Oid dboid, int64 id)
{
	snprintf(buf, size, "anomaly_%u_" INT64_FORMAT, dboid, id);
}

/* The slot's confirmed position. */
XLogRecPtr
detect_slot_confirmed(const char *name)
{
	ReplicationSlot *s;
	XLogRecPtr	lsn = InvalidXLogRecPtr;

	LWLockAcquire(ReplicationSlotControlLock, LW_SHARED);
	s = SearchNamedReplicationSlot(name, false);
	if (s)
	{
		SpinLockAcquire(&s->mutex);
		lsn = s->data.confirmed_flush;
		SpinLockRelease(&s->mutex);
	}
	LWLockRelease(ReplicationSlotControlLock);
	return lsn;
}

/* Error context of a slot's creation: what the wait was for. */
static void
create_slot_context(void *arg)
{
	errcontext("creating logical replication slot \"%s\" for a detector"
			   " (it waits until the transactions running when it started have ended)",
			   (const char *) arg);
}

/*
 * Transactions with an xid running now, other than ours (prepared ones
 * included), and the PID of one of them (0: only prepared ones).  The
 * slot's creation waits for them.
 */
static int
running_writers(pid_t *pid)
{
	int			n = 0;

	*pid = 0;
	LWLockAcquire(ProcArrayLock, LW_SHARED);
	for (uint32 i = 0; i < ProcGlobal->allProcCount; i++)
	{
		PGPROC	   *proc = &ProcGlobal->allProcs[i];
		TransactionId xid = *((volatile TransactionId *) &proc->xid);

		/* prepared transactions count too (their PGPROC has no pid) */
		if (proc == MyProc || !TransactionIdIsValid(xid))
			continue;
		n++;
		if (*pid == 0)
			*pid = proc->pid;
	}
	LWLockRelease(ProcArrayLock);
	return n;
}

/*
 * Creates a persistent logical slot using our output plugin, as
 * pg_create_logical_replication_slot does.  Waits for running transactions
 * with an xid to finish (that is how a consistent start point is found):
 * a NOTICE says so first, and lock_timeout and statement_timeout end the
 * wait (it waits on those transactions' locks).
 */
void
detect_create_slot(const char *slot_name)
{
	LogicalDecodingContext *ctx;
	ErrorContextCallback errcb;
	pid_t		pid;
	int			nwriters;

	if (MyReplicationSlot != NULL)
		elog(ERROR, "cannot create a detector's slot while holding a slot");
	if (wal_level < WAL_LEVEL_LOGICAL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("detectors need wal_level = logical"),
				 errdetail("wal_level is \"%s\"; a detector reads the committed rows of its table through logical decoding.",
						   GetConfigOption("wal_level", false, false)),
				 errhint("Set wal_level = logical in postgresql.conf and restart the server; until then, score tables with the window functions or anomaly.detect().")));
	CheckLogicalDecodingRequirements();
	if (TransactionIdIsValid(GetTopTransactionIdIfAny()))
		ereport(ERROR,
				(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
				 errmsg("a detector cannot be created in a transaction that has already written"),
				 errdetail("Its logical replication slot must be created before any write of the transaction."),
				 errhint("Call create_detector() in its own transaction, or before other statements that write.")));

	nwriters = running_writers(&pid);
	if (nwriters > 0)
		ereport(NOTICE,
				(errmsg("waiting for %d running transaction%s to end before the detector's slot can start",
						nwriters, nwriters == 1 ? "" : "s"),
				 pid != 0 ?
				 errdetail("A logical replication slot starts where no transaction that has written is running; one of them is in the process with PID %d.",
						   (int) pid) :
				 errdetail("A logical replication slot starts where no transaction that has written is running; they are prepared transactions."),
				 errhint("End those transactions (or prepared ones: pg_prepared_xacts); set lock_timeout to give up after a while.")));

	errcb.callback = create_slot_context;
	errcb.arg = unconstify(char *, slot_name);
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;
	compat_replication_slot_create(slot_name, true, RS_EPHEMERAL, false);
	PG_TRY();
	{
		ctx = CreateInitDecodingContext(DETECT_PLUGIN_NAME, NIL, false,
										InvalidXLogRecPtr,
										XL_ROUTINE(.page_read = read_local_xlog_page,
												   .segment_open = wal_segment_open,
												   .segment_close = wal_segment_close),
										NULL, NULL, NULL);
		DecodingContextFindStartpoint(ctx);
		FreeDecodingContext(ctx);
		ReplicationSlotPersist();
	}
	PG_CATCH();
	{
		/* Releasing an ephemeral slot drops it. */
		if (MyReplicationSlot != NULL)
			ReplicationSlotRelease();
		PG_RE_THROW();
	}
	PG_END_TRY();
	error_context_stack = errcb.previous;
	ReplicationSlotRelease();
}

/* The PID holding a slot, 0 when none; see detect.h. */
pid_t
detect_slot_holder(const char *slot_name, bool *exists)
{
	ReplicationSlot *s;
	pid_t		pid = 0;

	LWLockAcquire(ReplicationSlotControlLock, LW_SHARED);
	s = SearchNamedReplicationSlot(slot_name, false);
	if (exists)
		*exists = (s != NULL);
	if (s)
	{
		SpinLockAcquire(&s->mutex);
		pid = s->active_pid;
		SpinLockRelease(&s->mutex);
	}
	LWLockRelease(ReplicationSlotControlLock);
	return pid;
}

/*
 * Drops a slot.  When an anomaly detector worker holds it, the worker is
 * asked to exit (SIGTERM) and we wait for it; anybody else holding it is
 * an error, after a few seconds of patience.
 */
void
detect_drop_slot(const char *slot_name, bool missing_ok)
{
	int			waited_ms = 0;

	for (;;)
	{
		bool		exists;
		pid_t		pid = detect_slot_holder(slot_name, &exists);

		if (!exists)
		{
			if (!missing_ok)
				ereport(ERROR,
						(errcode(ERRCODE_UNDEFINED_OBJECT),
						 errmsg("replication slot \"%s\" does not exist", slot_name)));
			return;
		}
		if (pid == 0)
			break;
		if (pid == MyProcPid)
		{
			/*
			 * Our own round holds it: the caller releases it first
			 * (detect_release), as ReplicationSlotDrop wants of its callers;
			 * slots.c does not call up into the round.
			 */
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_IN_USE),
					 errmsg("replication slot \"%s\" is in use by this session", slot_name),
					 errhint("Release the slot before dropping it.")));
		}
		if (waited_ms >= 30000)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_IN_USE),
					 errmsg("replication slot \"%s\" is in use by the process with PID %d",
							slot_name, (int) pid),
					 errhint("Stop the process that reads the slot, then try again.")));
		{
			const char *type = GetBackgroundWorkerTypeByPid(pid);

			if (type != NULL && strcmp(type, DETECTOR_BGW_TYPE) == 0)
				(void) kill(pid, SIGTERM);
			else if (waited_ms >= 5000)
				ereport(ERROR,
						(errcode(ERRCODE_OBJECT_IN_USE),
						 errmsg("replication slot \"%s\" is in use by the process with PID %d",
								slot_name, (int) pid),
						 errhint("Stop the process that reads the slot, then try again.")));
		}
		CHECK_FOR_INTERRUPTS();
		pg_usleep(10000L);
		waited_ms += 10;
	}
	ReplicationSlotDrop(slot_name, true);
}

/* Names of the slots of this database's detectors. */
static List *
detector_slot_names(void)
{
	char		prefix[64];
	size_t		plen;
	List	   *names = NIL;

	snprintf(prefix, sizeof(prefix), "anomaly_%u_", MyDatabaseId);
	plen = strlen(prefix);
	LWLockAcquire(ReplicationSlotControlLock, LW_SHARED);
	for (int i = 0; i < max_replication_slots; i++)
	{
		ReplicationSlot *s = &ReplicationSlotCtl->replication_slots[i];

		if (!s->in_use)
			continue;
		if (strncmp(NameStr(s->data.name), prefix, plen) == 0 &&
			s->data.database == MyDatabaseId)
			names = lappend(names, pstrdup(NameStr(s->data.name)));
	}
	LWLockRelease(ReplicationSlotControlLock);
	return names;
}

/* Drops the replication origins of a database's detectors; see detect.h. */
void
detect_drop_origins_of(Oid dboid)
{
	ListCell   *lc;
	char		prefix[64];
	size_t		plen;
	Relation	rel;
	SysScanDesc scan;
	HeapTuple	tup;
	List	   *origins = NIL;

	snprintf(prefix, sizeof(prefix), "anomaly_%u_", dboid);
	plen = strlen(prefix);
	rel = table_open(ReplicationOriginRelationId, AccessShareLock);
	scan = systable_beginscan(rel, InvalidOid, false, NULL, 0, NULL);
	while (HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		bool		isnull;
		Datum		d = heap_getattr(tup, Anum_pg_replication_origin_roname,
									 RelationGetDescr(rel), &isnull);
		char	   *name;

		if (isnull)
			continue;
		name = TextDatumGetCString(d);
		if (strncmp(name, prefix, plen) == 0)
			origins = lappend(origins, name);
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	foreach(lc, origins)
		replorigin_drop_by_name((char *) lfirst(lc), true, false);
}

/* Drops every slot and replication origin of this database's detectors. */
void
detect_drop_all_slots(void)
{
	ListCell   *lc;

	foreach(lc, detector_slot_names())
		detect_drop_slot((char *) lfirst(lc), true);
	detect_drop_origins_of(MyDatabaseId);
}

/*
 * Drops an orphaned slot in a subtransaction; a reader that is not ours
 * keeps it, with a warning.
 */
static void
drop_orphan(void *name)
{
	detect_drop_slot((const char *) name, true);
}

static bool
try_drop_orphan(const char *name)
{
	ErrorData  *edata = anomaly_try_subxact(drop_orphan, (void *) name);

	if (edata == NULL)
		return true;
	ereport(WARNING,
			(errmsg("could not drop orphaned replication slot \"%s\": %s",
					name, edata->message)));
	FreeErrorData(edata);
	return false;
}

/*
 * Drops the slots of this database named like a detector's that no
 * detector owns, unless a create_detector is running (it holds the
 * lock taken here).  Returns how many.
 */
int
detect_drop_orphan_slots(void)
{
	List	   *names = detector_slot_names();
	List	   *orphans = NIL;
	ListCell   *lc;
	char		prefix[64];
	size_t		plen;
	int			n = 0;
	bool		isnull;
	DetectSys	sys;

	if (names == NIL)
		return 0;
	snprintf(prefix, sizeof(prefix), "anomaly_%u_", MyDatabaseId);
	plen = strlen(prefix);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	detect_sys_enter(&sys);

	/*
	 * create_detector holds this lock from before it creates its slot until
	 * its transaction ends: while we hold it, a slot without a detector is
	 * an orphan.
	 */
	if (!detect_lock(DETECT_LOCK_CREATE, false))
	{
		detect_sys_leave(&sys);
		SPI_finish();
		return 0;
	}
	foreach(lc, names)
	{
		char	   *name = (char *) lfirst(lc);
		char	   *end;
		int64		id;
		Datum		args[1];
		Oid			types[1] = {INT8OID};

		errno = 0;
		id = strtoll(name + plen, &end, 10);
		if (*end != '\0' || errno != 0)
			continue;
		args[0] = Int64GetDatum(id);
		detect_spi_exec("SELECT NOT EXISTS (SELECT 1 FROM anomaly.detectors"
						" WHERE id OPERATOR(pg_catalog.=) $1)",
						1, types, args, NULL, false, SPI_OK_SELECT);
		if (SPI_processed == 1)
		{
			Datum		d = SPI_getbinval(SPI_tuptable->vals[0],
										  SPI_tuptable->tupdesc, 1, &isnull);

			if (!isnull && DatumGetBool(d))
			{
				MemoryContext old = MemoryContextSwitchTo(CurTransactionContext);

				orphans = lappend(orphans, pstrdup(name));
				MemoryContextSwitchTo(old);
			}
		}
	}
	detect_sys_leave(&sys);
	SPI_finish();
	foreach(lc, orphans)
		n += try_drop_orphan((char *) lfirst(lc)) ? 1 : 0;
	return n;
}

/* Looks up (or creates) the replication origin of this name. */
uint16
detect_origin(const char *name, bool create)
{
	RepOriginId id = replorigin_by_name(name, true);

	if (id == InvalidRepOriginId && create)
		id = replorigin_create(name);
	return id;
}

/*
 * The object access hook: when our extension is about to be dropped, drop
 * the detectors' slots and origins.  Every drop hook of a DROP runs before
 * anything is deleted, so the catalog is still whole here.
 */
static void
detect_object_access(ObjectAccessType access, Oid classId, Oid objectId,
					 int subId, void *arg)
{
	if (prev_object_access_hook)
		prev_object_access_hook(access, classId, objectId, subId, arg);

	if (access == OAT_DROP && classId == ExtensionRelationId &&
		IsTransactionState())
	{
		Oid			ours = get_extension_oid("anomaly", true);

		if (OidIsValid(ours) && ours == objectId)
			detect_drop_all_slots();
	}
}

void
detect_install_hooks(void)
{
	prev_object_access_hook = object_access_hook;
	object_access_hook = detect_object_access;
}

/*
 * Stops the detector workers of this database and waits (10 s at most) for
 * them to let their slots go.  Quietly gives up on the ones that do not.
 */
static void
stop_detector_workers(void)
{
	ListCell   *lc;

	foreach(lc, detector_slot_names())
	{
		const char *name = (const char *) lfirst(lc);

		for (int waited_ms = 0; waited_ms < 10000; waited_ms += 10)
		{
			pid_t		pid = detect_slot_holder(name, NULL);
			const char *type;

			if (pid == 0 || pid == MyProcPid)
				break;
			type = GetBackgroundWorkerTypeByPid(pid);
			if (type == NULL || strcmp(type, DETECTOR_BGW_TYPE) != 0)
				break;
			(void) kill(pid, SIGTERM);
			CHECK_FOR_INTERRUPTS();
			pg_usleep(10000L);
		}
	}
}

/*
 * True if stmt is a DROP EXTENSION naming this extension, by a role that
 * may drop it (the trigger runs before DROP checks that: anybody's DROP
 * EXTENSION anomaly must not stop the workers).
 */
static bool
drops_this_extension(Node *stmt)
{
	ListCell   *lc;
	Oid			ours;

	if (stmt == NULL || !IsA(stmt, DropStmt) ||
		((DropStmt *) stmt)->removeType != OBJECT_EXTENSION)
		return false;
	ours = get_extension_oid("anomaly", true);
	if (!OidIsValid(ours) || !compat_extension_ownercheck(ours, GetUserId()))
		return false;
	foreach(lc, ((DropStmt *) stmt)->objects)
		if (strcmp(strVal(lfirst(lc)), "anomaly") == 0)
			return true;
	return false;
}

/*
 * anomaly._ddl_guard(): the ddl_command_start event trigger of DROP
 * EXTENSION and friends.  Calling it loads this library, whose object
 * access hook then drops the detectors' slots if the command drops the
 * extension.  Before a DROP EXTENSION anomaly takes its locks, the
 * detector workers are stopped: a round holds row locks on the
 * destinations while it writes scores, and DROP locks the scores table
 * before the destinations one, so the two could deadlock and the DROP
 * fail (the object access hook comes too late: DROP has its locks by
 * then).
 */
Datum
anomaly_detect_ddl_guard(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_EVENT_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("anomaly._ddl_guard() must be called as an event trigger")));
	if (drops_this_extension(((EventTriggerData *) fcinfo->context)->parsetree))
		stop_detector_workers();
	PG_RETURN_VOID();
}

/* anomaly._drop_orphan_slots(): the orphan sweep, callable from SQL. */
Datum
anomaly_detect_drop_orphans(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT32(detect_drop_orphan_slots());
}
