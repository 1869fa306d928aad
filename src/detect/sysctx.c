/*
 * sysctx.c
 *	  Catalog work of the detectors as the bootstrap superuser.
 *
 * The management functions and rounds check the caller themselves, then
 * read and write the extension's tables as the bootstrap superuser with a
 * search_path of pg_catalog only, so that nothing a user put on their path
 * can run.  Both the catalog code and the rounds go through here.
 */
#include "postgres.h"

#include "catalog/pg_authid.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/guc.h"

#include "detect/detect.h"

/* Switches to the bootstrap superuser with a safe search_path. */
void
detect_sys_enter(DetectSys *sys)
{
	GetUserIdAndSecContext(&sys->save_user, &sys->save_sec);
	SetUserIdAndSecContext(BOOTSTRAP_SUPERUSERID,
						   sys->save_sec | SECURITY_LOCAL_USERID_CHANGE);
	sys->guc_nest = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp",
							 PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	detect_allow_plugin();
}

/* Back to the caller's user and settings. */
void
detect_sys_leave(DetectSys *sys)
{
	AtEOXact_GUC(true, sys->guc_nest);
	SetUserIdAndSecContext(sys->save_user, sys->save_sec);
}

/* SPI_execute_with_args that raises unless the result is `expect`. */
void
detect_spi_exec(const char *sql, int nargs, Oid *types, Datum *values,
				const char *nulls, bool read_only, int expect)
{
	int			rc = SPI_execute_with_args(sql, nargs, types, values, nulls,
										   read_only, 0);

	if (rc != expect)
		elog(ERROR, "SPI_execute_with_args failed (%d): %s", rc, sql);
}
