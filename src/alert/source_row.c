/*
 * source_row.c
 *	  The source row of an alert rule's notification, as the rule's owner
 *	  may read it.
 *
 * anomaly._source_row(owner, detector, source_key) looks the scored row up
 * in the detector's source table by its key and returns the columns the
 * rule's owner may SELECT (table or column privilege), as a jsonb object;
 * other columns are never read.  The query runs as the owner under
 * SECURITY_RESTRICTED_OPERATION with row_security on, in a settings nest
 * thrown away afterwards: row level security hides rows from it as from the
 * owner, and the output functions of the row's types run as the owner,
 * never as the extension's owner.
 *
 * The row is the one in the table when the alert is raised (it may have
 * changed since it was scored); a row gone, or no column readable, gives
 * NULL.  The lookup runs in a subtransaction: whatever fails in it (a key
 * that no longer converts to the column's type, a revoked privilege) costs
 * the notification its row, with a WARNING, never the detector's
 * transaction.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/resowner.h"
#include "utils/syscache.h"

#include "alert/alert.h"
#include "compat.h"
#include "subxact.h"

PG_FUNCTION_INFO_V1(anomaly_alert_source_row);

/* Whether owner may SELECT column attnum of rel (or the whole table). */
static bool
readable(Oid rel, AttrNumber attnum, Oid owner, bool table_ok)
{
	return table_ok ||
		pg_attribute_aclcheck(rel, attnum, owner, ACL_SELECT) == ACLCHECK_OK;
}

/*
 * Reads the row: a jsonb datum copied into the caller's memory context (as
 * it came, possibly with a short header: detoast it there), or 0 when
 * there is none to give.  Runs inside the caller's subtransaction, with SPI
 * connected.
 */
static Datum
read_row(Oid owner, text *detector, Jsonb *key)
{
	Oid			argtypes[2] = {TEXTOID, JSONBOID};
	Datum		args[2];
	Oid			rel;
	bool		isnull;
	Datum		keycols;
	Relation	r;
	TupleDesc	desc;
	bool		table_ok;
	StringInfoData cols;
	StringInfoData where;
	ArrayBuildState *names = NULL;
	AlertSys	sys;
	Datum		result = (Datum) 0;
	int			ncols = 0;
	int			rc;

	args[0] = PointerGetDatum(detector);
	rc = SPI_execute_with_args("SELECT source::pg_catalog.oid, key_columns FROM anomaly.detectors WHERE name = $1",
							   1, argtypes, args, NULL, true, 1);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "reading the detector failed: %s", SPI_result_code_string(rc));
	if (SPI_processed != 1)
		return (Datum) 0;		/* scores of no detector: no row */
	rel = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	keycols = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
	if (!isnull)
		keycols = PointerGetDatum(DatumGetArrayTypePCopy(keycols));
	else
		keycols = (Datum) 0;
	if (!SearchSysCacheExists1(RELOID, ObjectIdGetDatum(rel)))
		return (Datum) 0;

	table_ok = pg_class_aclcheck(rel, owner, ACL_SELECT) == ACLCHECK_OK;
	initStringInfo(&cols);
	initStringInfo(&where);
	r = table_open(rel, AccessShareLock);
	desc = RelationGetDescr(r);
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->attisdropped || !readable(rel, att->attnum, owner, table_ok))
			continue;
		appendStringInfo(&cols, "%s%s", ncols++ ? ", " : "",
						 quote_identifier(NameStr(att->attname)));
		names = accumArrayResult(names, CStringGetTextDatum(NameStr(att->attname)),
								 false, TEXTOID, CurrentMemoryContext);
	}
	if (keycols != (Datum) 0)
	{
		Datum	   *keys;
		int			nkeys;

		deconstruct_array(DatumGetArrayTypeP(keycols), TEXTOID, -1, false,
						  TYPALIGN_INT, &keys, NULL, &nkeys);
		for (int k = 0; k < nkeys; k++)
		{
			char	   *name = TextDatumGetCString(keys[k]);
			AttrNumber	attnum = get_attnum(rel, name);

			/* a key the owner may not read finds no row through it */
			if (attnum == InvalidAttrNumber ||
				!readable(rel, attnum, owner, table_ok))
			{
				table_close(r, AccessShareLock);
				return (Datum) 0;
			}
			appendStringInfo(&where, "%s%s = ($1 OPERATOR(pg_catalog.->>) %s)::%s",
							 k ? " AND " : "", quote_identifier(name),
							 quote_literal_cstr(name),
							 format_type_be_qualified(TupleDescAttr(desc, attnum - 1)->atttypid));
		}
	}
	table_close(r, AccessShareLock);
	if (ncols == 0)
		return (Datum) 0;

	if (keycols == (Datum) 0)
	{
		/*
		 * A table without a primary key: the key is the whole row as the
		 * detector saw it; give its readable columns.
		 */
		argtypes[0] = JSONBOID;
		argtypes[1] = TEXTARRAYOID;
		args[0] = JsonbPGetDatum(key);
		args[1] = makeArrayResult(names, CurrentMemoryContext);
		rc = SPI_execute_with_args("SELECT pg_catalog.jsonb_object_agg(e.key, e.value) "
								   "FROM pg_catalog.jsonb_each($1) e WHERE e.key OPERATOR(pg_catalog.=) ANY ($2)",
								   2, argtypes, args, NULL, true, 1);
	}
	else
	{
		char	   *sql = psprintf("SELECT pg_catalog.to_jsonb(t) FROM (SELECT %s FROM %s WHERE %s LIMIT 1) t",
								   cols.data,
								   quote_qualified_identifier(get_namespace_name(get_rel_namespace(rel)),
															  get_rel_name(rel)),
								   where.data);

		argtypes[0] = JSONBOID;
		args[0] = JsonbPGetDatum(key);
		alert_sys_enter_restricted(&sys, owner);
		(void) set_config_option("row_security", "on", PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
		rc = SPI_execute_with_args(sql, 1, argtypes, args, NULL, true, 1);
		alert_sys_leave(&sys);
	}
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "reading the source row failed: %s", SPI_result_code_string(rc));
	if (SPI_processed == 1)
	{
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		if (!isnull)
			result = SPI_datumTransfer(d, false, -1);
	}
	return result;
}

/* read_row's arguments and result, for anomaly_try_subxact. */
typedef struct ReadRowCall
{
	Oid			owner;
	text	   *detector;
	Jsonb	   *key;
	Datum		result;
} ReadRowCall;

static void
read_row_call(void *arg)
{
	ReadRowCall *c = (ReadRowCall *) arg;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	c->result = read_row(c->owner, c->detector, c->key);
	SPI_finish();
}

/*
 * SQL: anomaly._source_row(owner oid, detector text, source_key jsonb) ->
 * jsonb.  Owner only (alert rules' payloads).
 */
Datum
anomaly_alert_source_row(PG_FUNCTION_ARGS)
{
	ReadRowCall c;
	ErrorData  *edata;

	c.owner = PG_GETARG_OID(0);
	c.detector = PG_GETARG_TEXT_PP(1);
	c.key = PG_GETARG_JSONB_P(2);
	c.result = (Datum) 0;
	if (!SearchSysCacheExists1(AUTHOID, ObjectIdGetDatum(c.owner)))
		PG_RETURN_NULL();

	edata = anomaly_try_subxact(read_row_call, &c);
	if (edata)
	{
		ereport(WARNING,
				(errcode(edata->sqlerrcode),
				 errmsg("alert notification sent without its source row: %s",
						edata->message)));
		FreeErrorData(edata);
		c.result = (Datum) 0;
	}

	if (c.result == (Datum) 0)
		PG_RETURN_NULL();
	/* in this context: a short header is expanded here, not in SPI's */
	PG_RETURN_JSONB_P(DatumGetJsonbP(c.result));
}
