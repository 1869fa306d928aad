/*
 * sysctx.c
 *	  Who runs what in the detectors: the one place where they change user.
 *
 * Two contexts, and nothing else in src/detect calls SetUserIdAndSecContext
 * or SPI directly:
 *
 * - The sys context (detect_sys_enter .. detect_sys_leave): the extension's
 *   own SQL on its own tables, as the bootstrap superuser, with search_path
 *   'pg_catalog, pg_temp' (and the settings that would print its statements
 *   off: pinned.c) pinned in a GUC nest of its own that is thrown away on
 *   leaving.  Every SQL string run there is schema-qualified,
 *   operators and casts included, and goes through detect_spi_*, which
 *   refuse to run anywhere else.
 *
 * - The owner context (detect_as_owner / detect_try_as_owner, entered only
 *   from the sys context): anything a user controls (feature, filter and
 *   partition expressions, casts, domain checks, operators, triggers on a
 *   destination table) runs as the detector's owner with
 *   SECURITY_RESTRICTED_OPERATION, the owner's pinned search_path, in a
 *   subtransaction and a GUC nest both ended before the sys context goes
 *   on: whatever the user's code set (set_config(..., false) included) is
 *   thrown away, so the sys context finds its own pinned search_path again.
 *   The nest also holds the detector's settings (settings.c: its
 *   creator's DateStyle, TimeZone, extra_float_digits...), so that its
 *   expressions compute the same values whoever's session runs the round.
 *   Its SPI goes through detect_owner_spi_*, which refuse to run outside
 *   it.  Nothing it queues can fire later as another role: PostgreSQL
 *   refuses to defer a trigger under SECURITY_RESTRICTED_OPERATION, and
 *   its other triggers fire before the statement that queued them ends.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_extension.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/varlena.h"

#include "detect/detect.h"
#include "pinned.h"

/* The sys context's search_path. */
#define DETECT_SYS_SEARCH_PATH "pg_catalog, pg_temp"

/* Owner contexts entered and not yet left (they always unwind: PG_CATCH). */
static int	owner_depth = 0;

/* True in the sys context: the bootstrap superuser, the pinned path. */
static bool
in_sys(void)
{
	return owner_depth == 0 && GetUserId() == BOOTSTRAP_SUPERUSERID &&
		namespace_search_path != NULL &&
		strcmp(namespace_search_path, DETECT_SYS_SEARCH_PATH) == 0;
}

/* Raises unless in the sys context. */
void
detect_require_sys(const char *what)
{
	if (!in_sys())
		elog(ERROR, "anomaly: %s outside the detectors' superuser context", what);
}

/* Raises unless in an owner context. */
static void
require_owner(const char *what)
{
	if (owner_depth == 0 || !InSecurityRestrictedOperation())
		elog(ERROR, "anomaly: %s outside a detector owner's context", what);
}

/*
 * Lets this session load our library as an output plugin, for the current
 * GUC nest level.  Servers with the output_plugin_libraries setting only
 * load the libraries it lists; our own code naming our own library is
 * allowed, whatever the setting says for replication users.
 */
void
detect_allow_plugin(void)
{
	const char *cur = GetConfigOption("output_plugin_libraries", true, false);
	char	   *copy;
	List	   *names;
	ListCell   *lc;

	if (cur == NULL)
		return;
	copy = pstrdup(cur);
	if (SplitDirectoriesString(copy, ',', &names))
	{
		foreach(lc, names)
			if (strcmp((char *) lfirst(lc), DETECT_PLUGIN_NAME) == 0)
				return;
	}
	(void) set_config_option("output_plugin_libraries",
							 cur[0] ? psprintf("%s, %s", cur, DETECT_PLUGIN_NAME) : DETECT_PLUGIN_NAME,
							 PGC_SUSET, PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
}

/*
 * Switches to the bootstrap superuser with the pinned search_path.  Not
 * from an owner context: a detector's expressions cannot call the
 * functions that manage or run detectors.
 */
void
detect_sys_enter(DetectSys *sys)
{
	if (owner_depth > 0)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("detector functions cannot be called from a detector's expressions or destination")));
	GetUserIdAndSecContext(&sys->save_user, &sys->save_sec);
	SetUserIdAndSecContext(BOOTSTRAP_SUPERUSERID,
						   sys->save_sec | SECURITY_LOCAL_USERID_CHANGE);
	sys->guc_nest = NewGUCNestLevel();
	anomaly_pin_settings(DETECT_SYS_SEARCH_PATH, GUC_ACTION_SAVE);
	detect_allow_plugin();
}

/* Back to the caller's user and settings: the sys nest is thrown away. */
void
detect_sys_leave(DetectSys *sys)
{
	AtEOXact_GUC(false, sys->guc_nest);
	SetUserIdAndSecContext(sys->save_user, sys->save_sec);
}

/*
 * Runs fn(arg) as `owner` with its search_path and settings (see the
 * file's comment).  With errcxt NULL an error is raised again once the
 * subtransaction is rolled back; else it is returned, copied into errcxt,
 * and NULL means success.
 */
static ErrorData *
run_as_owner(Oid owner, const char *search_path, const DetectSettings *settings,
			 DetectOwnerFn fn, void *arg, MemoryContext errcxt)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner resowner = CurrentResourceOwner;
	ErrorData  *volatile err = NULL;
	volatile bool inside = true;
	volatile bool in_fn = false;
	Oid			save_user;
	int			save_sec;

	detect_require_sys("running a detector owner's code");
	GetUserIdAndSecContext(&save_user, &save_sec);
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	owner_depth++;
	PG_TRY();
	{
		int			nest;

		SetUserIdAndSecContext(owner, save_sec | SECURITY_LOCAL_USERID_CHANGE |
							   SECURITY_RESTRICTED_OPERATION);
		nest = NewGUCNestLevel();
		(void) set_config_option("search_path", search_path,
								 PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
		detect_settings_apply(settings);
		in_fn = true;
		fn(arg);
		AtEOXact_GUC(false, nest);
		SetUserIdAndSecContext(save_user, save_sec);
		owner_depth--;
		inside = false;
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = resowner;
	}
	PG_CATCH();
	{
		if (inside)
			owner_depth--;
		MemoryContextSwitchTo(errcxt ? errcxt : cxt);
		err = CopyErrorData();
		FlushErrorState();
		/* Restores the sys user and settings (AbortSubTransaction). */
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = resowner;
	}
	PG_END_TRY();
	detect_require_sys("back from a detector owner's code");

	/*
	 * A cancel, a shutdown, or running out of resources is not the rows'
	 * fault, nor a setting that no longer applies (a text search
	 * configuration dropped): raised again even for a caller that takes
	 * errors.
	 */
	if (err != NULL &&
		(errcxt == NULL || !in_fn ||
		 ERRCODE_TO_CATEGORY(err->sqlerrcode) == ERRCODE_OPERATOR_INTERVENTION ||
		 ERRCODE_TO_CATEGORY(err->sqlerrcode) == ERRCODE_INSUFFICIENT_RESOURCES))
		ReThrowError(err);
	return err;
}

void
detect_as_owner(Oid owner, const char *search_path, const DetectSettings *settings,
				DetectOwnerFn fn, void *arg)
{
	(void) run_as_owner(owner, search_path, settings, fn, arg, NULL);
}

ErrorData *
detect_try_as_owner(Oid owner, const char *search_path, const DetectSettings *settings,
					DetectOwnerFn fn, void *arg, MemoryContext errcxt)
{
	Assert(errcxt != NULL);
	return run_as_owner(owner, search_path, settings, fn, arg, errcxt);
}

/* ---------------------------------------------------------------------
 * SPI, checked: the detect_spi_* functions run only in the sys context, the
 * detect_owner_spi_* ones only in an owner context; both share the calls
 * below.
 */

/* SPI_execute_with_args that raises unless the result is `expect`. */
static void
spi_exec(const char *sql, int nargs, Oid *types, Datum *values,
		 const char *nulls, bool read_only, int expect)
{
	int			rc = SPI_execute_with_args(sql, nargs, types, values, nulls,
										   read_only, 0);

	if (rc != expect)
		elog(ERROR, "SPI_execute_with_args failed (%d): %s", rc, sql);
}

/* SPI_prepare that raises on failure. */
static SPIPlanPtr
spi_prepare(const char *sql, int nargs, Oid *types)
{
	SPIPlanPtr	plan = SPI_prepare(sql, nargs, types);

	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed (%s): %s",
			 SPI_result_code_string(SPI_result), sql);
	return plan;
}

void
detect_spi_exec(const char *sql, int nargs, Oid *types, Datum *values,
				const char *nulls, bool read_only, int expect)
{
	detect_require_sys("SQL");
	spi_exec(sql, nargs, types, values, nulls, read_only, expect);
}

SPIPlanPtr
detect_spi_prepare(const char *sql, int nargs, Oid *types)
{
	detect_require_sys("SQL");
	return spi_prepare(sql, nargs, types);
}

int
detect_spi_execute_plan(SPIPlanPtr plan, Datum *values, const char *nulls,
						bool read_only, long count)
{
	detect_require_sys("SQL");
	return SPI_execute_plan(plan, values, nulls, read_only, count);
}

Portal
detect_spi_cursor_open(SPIPlanPtr plan, Datum *values, const char *nulls,
					   bool read_only)
{
	detect_require_sys("SQL");
	return SPI_cursor_open(NULL, plan, values, nulls, read_only);
}

void
detect_owner_spi_exec(const char *sql, int nargs, Oid *types, Datum *values,
					  const char *nulls, bool read_only, int expect)
{
	require_owner("SQL");
	spi_exec(sql, nargs, types, values, nulls, read_only, expect);
}

SPIPlanPtr
detect_owner_spi_prepare(const char *sql, int nargs, Oid *types)
{
	require_owner("SQL");
	return spi_prepare(sql, nargs, types);
}

int
detect_owner_spi_execute_plan(SPIPlanPtr plan, Datum *values,
							  const char *nulls, bool read_only, long count)
{
	require_owner("SQL");
	return SPI_execute_plan(plan, values, nulls, read_only, count);
}

/*
 * Takes one of the detectors' catalog locks until the end of the
 * transaction; without wait, returns false when another holds it.
 */
bool
detect_lock(DetectLock which, bool wait)
{
	Oid			ext = get_extension_oid("anomaly", false);

	if (wait)
	{
		LockDatabaseObject(ExtensionRelationId, ext, (uint16) which, ExclusiveLock);
		return true;
	}
	return ConditionalLockDatabaseObject(ExtensionRelationId, ext, (uint16) which,
										 ExclusiveLock);
}
