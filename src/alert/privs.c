/*
 * privs.c
 *	  Who the alert layer's SQL runs as.
 *
 * The management functions (create_destination, create_alert_rule, ...) are
 * not SECURITY DEFINER: each is declared LANGUAGE C with the entry point
 * anomaly_alert_entry below, which notes the caller (GetUserId(), the role
 * the function was really called by, also inside another SECURITY DEFINER
 * function or a restricted operation), then switches to the function's
 * owner (the extension's owner) with a pinned search_path and a settings
 * nest that is thrown away afterwards, and calls the internal function
 * anomaly._<name>(caller, args...), which only the owner may execute.  So
 * the internal functions know whom to check, and no caller can claim to be
 * someone else.
 *
 * anomaly._row_to_jsonb() converts a trigger's row as the table's owner
 * under SECURITY_RESTRICTED_OPERATION: to_jsonb() calls casts and output
 * functions that users define, which must never run as the extension owner.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_class.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

#include "alert/alert.h"
#include "compat.h"
#include "pinned.h"

PG_FUNCTION_INFO_V1(anomaly_alert_entry);
PG_FUNCTION_INFO_V1(anomaly_alert_row_to_jsonb);

/*
 * Enters owner's context: its user id, a new nest with a pinned search_path
 * (and the settings that would print its statements off: pinned.c).
 */
static void
sys_enter(AlertSys *sys, Oid owner, int extra_sec, const char *path)
{
	GetUserIdAndSecContext(&sys->save_user, &sys->save_sec);
	SetUserIdAndSecContext(owner, sys->save_sec | SECURITY_LOCAL_USERID_CHANGE | extra_sec);
	sys->guc_nest = NewGUCNestLevel();
	anomaly_pin_settings(path, GUC_ACTION_SAVE);
}

/*
 * Runs what follows as owner (the extension's owner) with the search_path
 * of the extension's functions.
 */
void
alert_sys_enter(AlertSys *sys, Oid owner)
{
	sys_enter(sys, owner, 0, "pg_catalog, anomaly, pg_temp");
}

/*
 * Runs what follows as role, under SECURITY_RESTRICTED_OPERATION, with
 * search_path pg_catalog, pg_temp: for code of a user's (casts, output
 * functions, policies) that must not run as the extension's owner.
 */
void
alert_sys_enter_restricted(AlertSys *sys, Oid role)
{
	sys_enter(sys, role, SECURITY_RESTRICTED_OPERATION, "pg_catalog, pg_temp");
}

/*
 * Back to the caller: settings made meanwhile are discarded (an error on
 * the way unwinds both through transaction abort).
 */
void
alert_sys_leave(AlertSys *sys)
{
	AtEOXact_GUC(false, sys->guc_nest);
	SetUserIdAndSecContext(sys->save_user, sys->save_sec);
}

/*
 * Entry point of the alert layer's management functions: calls
 * anomaly._<name>(caller oid, the same arguments) as the function's owner
 * and returns its result.
 */
Datum
anomaly_alert_entry(PG_FUNCTION_ARGS)
{
	Oid			caller = GetUserId();
	Oid			fn = fcinfo->flinfo->fn_oid;
	HeapTuple	tp;
	Form_pg_proc proc;
	Oid			owner;
	Oid			rettype;
	int			nargs;
	Oid		   *types;
	Datum	   *values;
	char	   *nulls;
	StringInfoData sql;
	AlertSys	sys;
	Datum		result = (Datum) 0;
	bool		isnull = true;
	int			i;
	int			rc;

	tp = SearchSysCache1(PROCOID, ObjectIdGetDatum(fn));
	if (!HeapTupleIsValid(tp))
		elog(ERROR, "cache lookup failed for function %u", fn);
	proc = (Form_pg_proc) GETSTRUCT(tp);
	owner = proc->proowner;
	rettype = proc->prorettype;
	nargs = proc->pronargs;
	types = palloc(sizeof(Oid) * (nargs + 1));
	values = palloc(sizeof(Datum) * (nargs + 1));
	nulls = palloc(nargs + 2);
	types[0] = OIDOID;
	values[0] = ObjectIdGetDatum(caller);
	nulls[0] = ' ';
	initStringInfo(&sql);
	appendStringInfo(&sql, "SELECT anomaly.%s($1",
					 quote_identifier(psprintf("_%s", NameStr(proc->proname))));
	for (i = 0; i < nargs; i++)
	{
		types[i + 1] = proc->proargtypes.values[i];
		values[i + 1] = PG_ARGISNULL(i) ? (Datum) 0 : PG_GETARG_DATUM(i);
		nulls[i + 1] = PG_ARGISNULL(i) ? 'n' : ' ';
		appendStringInfo(&sql, ", $%d", i + 2);
	}
	nulls[nargs + 1] = '\0';
	appendStringInfoChar(&sql, ')');
	ReleaseSysCache(tp);

	alert_sys_enter(&sys, owner);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	rc = SPI_execute_with_args(sql.data, nargs + 1, types, values, nulls, false, 1);
	if (rc != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "%s failed: %s", sql.data, SPI_result_code_string(rc));
	if (rettype != VOIDOID)
	{
		int16		typlen;
		bool		typbyval;

		result = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		get_typlenbyval(rettype, &typlen, &typbyval);
		if (!isnull)
			result = SPI_datumTransfer(result, typbyval, typlen);
	}
	SPI_finish();
	alert_sys_leave(&sys);

	if (rettype == VOIDOID)
		PG_RETURN_VOID();
	if (isnull)
		PG_RETURN_NULL();
	return result;
}

/*
 * SQL: anomaly._row_to_jsonb(tab oid, r anyelement) -> jsonb: to_jsonb(r)
 * as the owner of table tab, under SECURITY_RESTRICTED_OPERATION, in a
 * settings nest thrown away afterwards.  Owner only (alert_trigger()).
 */
Datum
anomaly_alert_row_to_jsonb(PG_FUNCTION_ARGS)
{
	Oid			rel = PG_GETARG_OID(0);
	Oid			argtype = get_fn_expr_argtype(fcinfo->flinfo, 1);
	HeapTuple	tp;
	Oid			relowner;
	AlertSys	sys;
	Datum		value = PG_GETARG_DATUM(1);
	Datum		result;
	bool		isnull;
	int			rc;

	if (PG_ARGISNULL(1))
		PG_RETURN_NULL();
	tp = SearchSysCache1(RELOID, ObjectIdGetDatum(rel));
	if (!HeapTupleIsValid(tp))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", rel)));
	relowner = ((Form_pg_class) GETSTRUCT(tp))->relowner;
	ReleaseSysCache(tp);

	sys_enter(&sys, relowner, SECURITY_RESTRICTED_OPERATION, "pg_catalog, pg_temp");
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	rc = SPI_execute_with_args("SELECT pg_catalog.to_jsonb($1)", 1, &argtype, &value,
							   NULL, false, 1);
	if (rc != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "to_jsonb of the row failed: %s", SPI_result_code_string(rc));
	result = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (!isnull)
		result = SPI_datumTransfer(result, false, -1);
	SPI_finish();
	alert_sys_leave(&sys);
	if (isnull)
		PG_RETURN_NULL();
	PG_RETURN_DATUM(result);
}
