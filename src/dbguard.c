/*
 * dbguard.c
 *	  Keeping our background workers off a database that a command needs
 *	  to itself, and telling the launcher about a new installation.
 *
 * DROP DATABASE, ALTER DATABASE ... RENAME / SET TABLESPACE and CREATE
 * DATABASE ... TEMPLATE fail ("is being accessed by other users") while
 * another process is connected to the database; a plain DROP DATABASE
 * waits five seconds for them and gives up, and only WITH (FORCE) ends
 * them (and only when the caller may signal them: ours run as the
 * bootstrap superuser).  So before such a command runs, this hook holds
 * our workers off the database in the registry (the launcher starts no
 * scheduler there, and the schedulers exit), asks those connected to it
 * to exit, and waits (ten seconds at most) until they have; when the
 * command ends, failed or not, the hold is lifted.  Only a caller who owns
 * the database (or a superuser) can hold our workers off it.  TimescaleDB's loader
 * stops its schedulers before the same commands.
 *
 * After DROP DATABASE, the replication origins of its detectors (which are
 * cluster-wide) are dropped.  After CREATE EXTENSION anomaly, the launcher is asked to look at this
 * database when the transaction commits, so that a first detector gets its
 * worker at once.  Installed only when the library is preloaded.
 */
#include "postgres.h"

#include <signal.h>

#include "access/xact.h"
#include "commands/dbcommands.h"
#include "commands/defrem.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "postmaster/bgworker.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "tcop/utility.h"
#include "utils/resowner.h"
#include "utils/acl.h"

#include "detect/detect.h"
#include "registry.h"
#include "subxact.h"

static ProcessUtility_hook_type prev_process_utility = NULL;

/*
 * Signals (SIGTERM) our workers connected to a database; returns how many
 * there were.
 */
static int
signal_db_workers(Oid dboid)
{
	pid_t	   *pids;
	int			npids = 0;
	int			nsignalled = 0;

	pids = palloc(sizeof(pid_t) * ProcGlobal->allProcCount);
	LWLockAcquire(ProcArrayLock, LW_SHARED);
	for (uint32 i = 0; i < ProcGlobal->allProcCount; i++)
	{
		PGPROC	   *proc = &ProcGlobal->allProcs[i];

		if (proc->pid != 0 && proc->pid != MyProcPid && proc->databaseId == dboid)
			pids[npids++] = proc->pid;
	}
	LWLockRelease(ProcArrayLock);

	for (int i = 0; i < npids; i++)
	{
		const char *type = GetBackgroundWorkerTypeByPid(pids[i]);

		if (type != NULL && strncmp(type, "anomaly ", 8) == 0)
		{
			(void) kill(pids[i], SIGTERM);
			nsignalled++;
		}
	}
	pfree(pids);
	return nsignalled;
}

/* The database a command needs to itself, InvalidOid when none. */
static Oid
database_needed_alone(Node *parsetree)
{
	const char *dbname = NULL;
	ListCell   *lc;

	switch (nodeTag(parsetree))
	{
		case T_DropdbStmt:
			dbname = ((DropdbStmt *) parsetree)->dbname;
			break;
		case T_RenameStmt:
			if (((RenameStmt *) parsetree)->renameType == OBJECT_DATABASE)
				dbname = ((RenameStmt *) parsetree)->subname;
			break;
		case T_AlterDatabaseStmt:
			foreach(lc, ((AlterDatabaseStmt *) parsetree)->options)
			{
				DefElem    *opt = lfirst_node(DefElem, lc);

				if (strcmp(opt->defname, "tablespace") == 0)
					dbname = ((AlterDatabaseStmt *) parsetree)->dbname;
			}
			break;
		case T_CreatedbStmt:
			foreach(lc, ((CreatedbStmt *) parsetree)->options)
			{
				DefElem    *opt = lfirst_node(DefElem, lc);

				if (strcmp(opt->defname, "template") == 0 && opt->arg != NULL)
					dbname = defGetString(opt);
			}
			break;
		default:
			break;
	}
	if (dbname == NULL)
		return InvalidOid;
	return get_database_oid(dbname, true);
}

/*
 * Drops the replication origins of a dropped database's detectors.  The
 * database's files are already gone: an error here must not abort the
 * DROP's transaction, so it is a warning (and the origins stay).
 */
static void
drop_origins_of(void *arg)
{
	detect_drop_origins_of(*(Oid *) arg);
}

static void
drop_origins(Oid dboid)
{
	ErrorData  *edata = anomaly_try_subxact(drop_origins_of, &dboid);

	if (edata)
	{
		ereport(WARNING,
				(errmsg("could not drop the replication origins of the dropped database's detectors: %s",
						edata->message),
				 errhint("Drop the origins named anomaly_%u_* with pg_replication_origin_drop().",
						 dboid)));
		FreeErrorData(edata);
	}
}

/* Runs the command: the hook installed before ours, else PostgreSQL's. */
static void
next_process_utility(PlannedStmt *pstmt, const char *queryString,
					 bool readOnlyTree, ProcessUtilityContext context,
					 ParamListInfo params, QueryEnvironment *queryEnv,
					 DestReceiver *dest, QueryCompletion *qc)
{
	if (prev_process_utility)
		prev_process_utility(pstmt, queryString, readOnlyTree, context,
							 params, queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
								params, queryEnv, dest, qc);
}

/* The ProcessUtility hook. */
static void
dbguard_process_utility(PlannedStmt *pstmt, const char *queryString,
						bool readOnlyTree, ProcessUtilityContext context,
						ParamListInfo params, QueryEnvironment *queryEnv,
						DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *parsetree = pstmt->utilityStmt;
	Oid			dboid = database_needed_alone(parsetree);

	if (IsA(parsetree, CreateExtensionStmt) &&
		strcmp(((CreateExtensionStmt *) parsetree)->extname, "anomaly") == 0)
		registry_request_at_commit();

	/*
	 * Only for a caller who may run the command (the database's owner or a
	 * superuser; CREATE DATABASE ... TEMPLATE of a database that is not a
	 * template needs the same): nobody else can stop our workers.
	 */
	if (OidIsValid(dboid) && dboid != MyDatabaseId &&
		pg_database_ownercheck(dboid, GetUserId()))
	{
		registry_hold(dboid, true);
		PG_TRY();
		{
			/* ten seconds for them to finish their rounds' rollback */
			for (int waited = 0; signal_db_workers(dboid) > 0 && waited < 10000; waited += 20)
			{
				CHECK_FOR_INTERRUPTS();
				pg_usleep(20000L);
			}
			next_process_utility(pstmt, queryString, readOnlyTree, context,
								 params, queryEnv, dest, qc);
			/* the slots went with the database; the origins are cluster-wide */
			if (IsA(parsetree, DropdbStmt))
				drop_origins(dboid);
		}
		PG_FINALLY();
		{
			registry_hold(dboid, false);
		}
		PG_END_TRY();
		return;
	}

	next_process_utility(pstmt, queryString, readOnlyTree, context,
						 params, queryEnv, dest, qc);
}

/* See registry.h. */
void
registry_install_utility_hook(void)
{
	prev_process_utility = ProcessUtility_hook;
	ProcessUtility_hook = dbguard_process_utility;
}
