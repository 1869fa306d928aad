/*
 * evaluate.c
 *	  The feature, filter and partition expressions of a round: the decoded
 *	  rows as composites of the source's row type (detect_row_to_composite,
 *	  convert_value), and their evaluation in the owner's context.
 *
 * Feature expressions are evaluated for a whole round at once, over the
 * rows as an array of the source's row type, in the detector owner's
 * context (sysctx.c: as the owner, with SECURITY_RESTRICTED_OPERATION and
 * the owner's pinned search_path, in a subtransaction whose settings are
 * thrown away).  When that fails the rows are split in halves until the
 * failing rows are found; those are recorded in detector_failures.  The
 * rest of a round runs in the sys context, whose SQL is schema-qualified.
 */
#include "postgres.h"

#include <float.h>
#include <math.h>

#include "access/detoast.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "access/xlog_internal.h"
#include "access/xlogutils.h"
#include "catalog/namespace.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "lib/ilist.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "replication/decode.h"
#include "replication/logical.h"
#include "replication/origin.h"
#include "replication/slot.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "common/hashfn.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/pg_lsn.h"
#include "utils/regproc.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/typcache.h"

#include "anomaly.h"
#include "detect/detect.h"
#include "detect/round_internal.h"

/* ---------------------------------------------------------------------
 * Rows to features
 */

/* Checks that the source still has the columns the detector was defined on. */
static void
check_source(DetectorDef *def, Relation rel)
{
	TupleDesc	desc = RelationGetDescr(rel);
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	int			depth = 0;
	int			field = 0;
	int			attnum = 0;
	char	   *name = NULL;
	Oid			typid = InvalidOid;

	if (rel->rd_rel->relkind != RELKIND_RELATION &&
		rel->rd_rel->relkind != RELKIND_PARTITIONED_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("source \"%s\" of detector \"%s\" is no longer a table",
						def->source_name, def->name)));
	if (pg_class_aclcheck(def->source, def->owner, ACL_SELECT) != ACLCHECK_OK &&
		pg_attribute_aclcheck_all(def->source, def->owner, ACL_SELECT, ACLMASK_ALL) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for table %s", def->source_name),
				 errdetail("The owner of detector \"%s\", role %s, may no longer read it.",
						   def->name, GetUserNameFromId(def->owner, true))));
	if (check_enable_rls(def->source, def->owner, true) == RLS_ENABLED)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("table %s has row-level security for the owner of detector \"%s\"",
						def->source_name, def->name),
				 errdetail("A detector reads every row; it cannot apply row security policies.")));

	/* source_columns is [[attnum, name, type oid], ...] */
	it = JsonbIteratorInit(&def->source_columns->root);
	while ((tok = JsonbIteratorNext(&it, &v, false)) != WJB_DONE)
	{
		if (tok == WJB_BEGIN_ARRAY)
		{
			depth++;
			field = 0;
			continue;
		}
		if (tok == WJB_END_ARRAY)
		{
			if (depth == 2)
			{
				Form_pg_attribute att;

				if (attnum < 1 || attnum > desc->natts ||
					(att = TupleDescAttr(desc, attnum - 1))->attisdropped)
					ereport(ERROR,
							(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
							 errmsg("source table %s of detector \"%s\" was altered: column \"%s\" was dropped",
									def->source_name, def->name, name ? name : "?"),
							 errhint("alter_detector() adopts the table as it is now; drop_detector() removes the detector.")));
				if (att->atttypid != typid)
					ereport(ERROR,
							(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
							 errmsg("source table %s of detector \"%s\" was altered: column \"%s\" changed type from %s to %s",
									def->source_name, def->name, NameStr(att->attname),
									format_type_be(typid), format_type_be(att->atttypid)),
							 errhint("alter_detector() adopts the table as it is now; drop_detector() removes the detector.")));
			}
			depth--;
			continue;
		}
		if (depth == 2 && (tok == WJB_ELEM))
		{
			if (field == 0 && v.type == jbvNumeric)
				attnum = DatumGetInt32(DirectFunctionCall1(numeric_int4, NumericGetDatum(v.val.numeric)));
			else if (field == 1 && v.type == jbvString)
				name = pnstrdup(v.val.string.val, v.val.string.len);
			else if (field == 2 && v.type == jbvNumeric)
				typid = DatumGetObjectId(DirectFunctionCall1(numeric_int8, NumericGetDatum(v.val.numeric)));
			field++;
		}
	}
}

/* A value to convert (convert_as_owner). */
typedef struct ConvertCall
{
	Datum		value;
	Oid			from;
	Form_pg_attribute to;
	Datum		out;
} ConvertCall;

/*
 * Through the old type's output and the new type's input: in the owner
 * context, since both may run code of the types' owners (a domain's CHECK).
 */
static void
convert_as_owner(void *arg)
{
	ConvertCall *c = (ConvertCall *) arg;
	Oid			outfn;
	Oid			infn;
	Oid			ioparam;
	bool		isvarlena;
	char	   *text;

	if (!SearchSysCacheExists1(TYPEOID, ObjectIdGetDatum(c->from)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("column \"%s\" was written with a type that no longer exists",
						NameStr(c->to->attname))));
	getTypeOutputInfo(c->from, &outfn, &isvarlena);
	text = OidOutputFunctionCall(outfn, c->value);
	getTypeInputInfo(c->to->atttypid, &infn, &ioparam);
	c->out = OidInputFunctionCall(infn, text, ioparam, c->to->atttypmod);
}

/*
 * Converts a value of a column whose type changed since the row was
 * written (the detector was altered to the table's new shape), as the
 * detector's owner.  Returns NULL on success, else the error message.
 */
static char *
convert_value(DetectorDef *def, Datum value, Oid from, Form_pg_attribute to,
			  Datum *out)
{
	ConvertCall c;
	ErrorData  *err;

	c.value = value;
	c.from = from;
	c.to = to;
	c.out = (Datum) 0;
	err = detect_try_as_owner(def->owner, def->search_path, def->settings,
							  convert_as_owner, &c,
							  CurrentMemoryContext);
	if (err)
		return psprintf("column \"%s\" changed type and its old value cannot be converted: %s",
						NameStr(to->attname), err->message);
	*out = c.out;
	return NULL;
}

/*
 * Rebuilds row i as a value of the source's current row type.  The
 * detector's definition matches the table (check_source); a row written
 * before an ALTER TABLE that changed a column's type has its value
 * converted, and a value that cannot be is the row's failure (*error).
 */
Datum
detect_row_to_composite(DetectorDef *def, RoundData *rd, int64 i, TupleDesc cur,
				 Datum *values, bool *nulls, char **error)
{
	RoundRow   *row = &rd->row[i];
	DwRelation *h = &rd->rels[row->rel];
	DwReader	r;
	Datum	   *hv = palloc(sizeof(Datum) * Max(h->natts, 1));
	uint8	   *hs = palloc(Max(h->natts, 1));
	HeapTuple	tup;

	*error = NULL;
	r.p = row->data;
	r.end = row->data + row->len;
	dw_read_row_values(&r, h, hv, hs);
	for (int a = 0; a < cur->natts; a++)
	{
		Form_pg_attribute att = TupleDescAttr(cur, a);

		values[a] = (Datum) 0;
		nulls[a] = true;
		if (att->attisdropped || a >= h->natts || h->atts[a].dropped ||
			hs[a] != DW_ATT_VALUE)
			continue;
		if (h->atts[a].typid != att->atttypid)
		{
			*error = convert_value(def, hv[a], h->atts[a].typid, att, &values[a]);
			if (*error)
			{
				/* An empty row stands in for it; it is not scored. */
				for (int b = 0; b < cur->natts; b++)
					nulls[b] = true;
				break;
			}
		}
		else
			values[a] = hv[a];
		nulls[a] = false;
	}
	tup = heap_form_tuple(cur, values, nulls);
	return HeapTupleGetDatum(tup);
}

/*
 * The evaluation statement of a detector (define.c checks it), or with
 * key_only its source key's, which runs under other settings
 * (eval_as_owner).
 */
char *
detect_eval_sql(const char *relname, int nfeatures, char **features,
				const char *partition_by, const char *filter, int nkeys,
				char **keys, bool key_only)
{
	StringInfoData sql;
	const char *alias = quote_identifier(relname);

	initStringInfo(&sql);
	appendStringInfoString(&sql, "SELECT ");
	if (!key_only)
	{
		for (int i = 0; i < nfeatures; i++)
			appendStringInfo(&sql, "(\n%s\n)::pg_catalog.float8,\n", features[i]);
		if (partition_by && partition_by[0])
			appendStringInfo(&sql, "(\n%s\n)::pg_catalog.text,\n", partition_by);
		else
			appendStringInfoString(&sql, "NULL::pg_catalog.text, ");
		if (filter && filter[0])
			appendStringInfo(&sql, "(\n%s\n)::pg_catalog.bool", filter);
		else
			appendStringInfoString(&sql, "true");
	}
	else if (nkeys > 0)
	{
		appendStringInfoString(&sql, "pg_catalog.jsonb_build_object(");
		for (int i = 0; i < nkeys; i++)
			appendStringInfo(&sql, "%s%s, %s.%s", i > 0 ? ", " : "",
							 quote_literal_cstr(keys[i]), alias, quote_identifier(keys[i]));
		appendStringInfoChar(&sql, ')');
	}
	else
		appendStringInfo(&sql, "pg_catalog.to_jsonb(%s)", alias);
	appendStringInfo(&sql, "\nFROM pg_catalog.unnest($1) AS %s", alias);
	return sql.data;
}

/* Copies the result rows of an evaluation of rows [lo, hi). */
static void
take_results(EvalState *es, int lo, int hi)
{
	int			nf = es->def->nfeatures;
	MemoryContext old = MemoryContextSwitchTo(es->cxt);

	if (SPI_processed != (uint64) (hi - lo))
		elog(ERROR, "feature evaluation returned " UINT64_FORMAT " rows for %d",
			 SPI_processed, hi - lo);
	for (int i = lo; i < hi; i++)
	{
		RowResult  *rr = &es->res[i];
		HeapTuple	t = SPI_tuptable->vals[i - lo];
		TupleDesc	td = SPI_tuptable->tupdesc;
		bool		isnull;
		Datum		d;

		rr->ok = true;
		rr->values = palloc(sizeof(double) * Max(nf, 1));
		rr->nulls = palloc(sizeof(bool) * Max(nf, 1));
		rr->has_null = false;
		for (int f = 0; f < nf; f++)
		{
			d = SPI_getbinval(t, td, f + 1, &isnull);
			rr->nulls[f] = isnull;
			if (isnull)
			{
				rr->has_null = true;
				rr->values[f] = 0;
			}
			else
				rr->values[f] = DatumGetFloat8(d);
		}
		d = SPI_getbinval(t, td, nf + 1, &isnull);
		/* measured before it is decompressed: it may be gigabytes */
		if (!isnull && toast_raw_datum_size(d) - VARHDRSZ > DETECT_MAX_KEY_BYTES)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("partition key of %zu bytes is longer than the %d bytes a partition key may have",
							toast_raw_datum_size(d) - VARHDRSZ, DETECT_MAX_KEY_BYTES),
					 errhint("Make partition_by give a shorter key, for example md5() of it.")));
		rr->key = isnull ? NULL : TextDatumGetCString(d);
		d = SPI_getbinval(t, td, nf + 2, &isnull);
		rr->filtered = isnull || !DatumGetBool(d);
		/* the source key is the key plan's (eval_as_owner) */
	}
	MemoryContextSwitchTo(old);
}

/* One evaluation of rows [lo, hi) (eval_as_owner). */
typedef struct EvalCall
{
	EvalState  *es;
	SPIPlanPtr	plan;
	Datum		arg;
	int			lo;
	int			hi;
	bool		key_only;
} EvalCall;

/*
 * Runs the evaluation plan and takes its results, in the owner context
 * (under the detector's settings).  The source keys are then taken again
 * from the key plan under fixed settings (settings.c): they are JSON the
 * extension makes of the key columns, which rows are found by again (an
 * alert's source row, a user's join), so a float key must not be cut by
 * the creator's extra_float_digits, and a timestamptz key must not change
 * with a TimeZone given to the detector afterwards.
 */
static void
eval_as_owner(void *arg)
{
	EvalCall   *c = (EvalCall *) arg;
	int			rc;
	int			nest;
	MemoryContext old;

	if (!c->key_only)
	{
		rc = detect_owner_spi_execute_plan(c->plan, &c->arg, NULL, false, 0);
		if (rc != SPI_OK_SELECT)
			elog(ERROR, "feature evaluation failed (%d)", rc);
		take_results(c->es, c->lo, c->hi);
		SPI_freetuptable(SPI_tuptable);
	}
	nest = detect_settings_pin_fixed();
	rc = detect_owner_spi_execute_plan(c->es->key_plan, &c->arg, NULL, false, 0);
	AtEOXact_GUC(false, nest);
	if (rc != SPI_OK_SELECT || SPI_processed != (uint64) (c->hi - c->lo))
		elog(ERROR, "source key evaluation failed (%d)", rc);
	old = MemoryContextSwitchTo(c->es->cxt);
	for (int i = c->lo; i < c->hi; i++)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[i - c->lo], SPI_tuptable->tupdesc, 1,
									  &isnull);

		c->es->res[i].source_key = isnull ? (Datum) 0 : PointerGetDatum(DatumGetJsonbPCopy(d));
	}
	MemoryContextSwitchTo(old);
	SPI_freetuptable(SPI_tuptable);
}

/*
 * Evaluates plan over rows [lo, hi) as the owner.  Returns NULL on
 * success, else the error (in es->cxt).
 */
static ErrorData *
try_eval(EvalState *es, SPIPlanPtr plan, int lo, int hi, bool key_only)
{
	ArrayType  *arr;
	EvalCall	c;
	ErrorData  *err;

	arr = construct_array(es->rows + lo, hi - lo, es->elem_type, -1, false, TYPALIGN_DOUBLE);
	c.es = es;
	c.plan = plan;
	c.arg = PointerGetDatum(arr);
	c.lo = lo;
	c.hi = hi;
	c.key_only = key_only;
	err = detect_try_as_owner(es->def->owner, es->def->search_path, es->def->settings,
							  eval_as_owner, &c,
							  es->cxt);
	pfree(arr);
	return err;
}

/* Evaluates rows [lo, hi), splitting the range to isolate failing rows. */
void
detect_eval_range(EvalState *es, int lo, int hi)
{
	ErrorData  *err;

	if (lo >= hi)
		return;
	err = try_eval(es, es->plan, lo, hi, false);
	if (err == NULL)
		return;
	/* A failure that no row can cause (a dropped column...) stops the round. */
	if (detect_error_is_permanent(err->sqlerrcode) &&
		ERRCODE_TO_CATEGORY(err->sqlerrcode) != ERRCODE_DATA_EXCEPTION)
	{
		if (err->sqlerrcode == ERRCODE_UNDEFINED_COLUMN ||
			err->sqlerrcode == ERRCODE_UNDEFINED_FUNCTION ||
			err->sqlerrcode == ERRCODE_UNDEFINED_TABLE ||
			err->sqlerrcode == ERRCODE_INSUFFICIENT_PRIVILEGE ||
			err->sqlerrcode == ERRCODE_DATATYPE_MISMATCH ||
			err->sqlerrcode == ERRCODE_SYNTAX_ERROR ||
			err->sqlerrcode == ERRCODE_UNDEFINED_OBJECT)
			ReThrowError(err);
	}
	if (hi - lo == 1)
	{
		RowResult  *rr = &es->res[lo];
		MemoryContext old = MemoryContextSwitchTo(es->cxt);

		rr->ok = false;
		rr->error = pstrdup(err->message ? err->message : "unknown error");
		rr->sqlstate = pstrdup(unpack_sql_state(err->sqlerrcode));
		MemoryContextSwitchTo(old);
		es->nfailed++;
		FreeErrorData(err);
		/* The key alone, to say which row it was. */
		err = try_eval(es, es->key_plan, lo, hi, true);
		if (err)
			FreeErrorData(err);
		return;
	}
	FreeErrorData(err);
	detect_eval_range(es, lo, lo + (hi - lo) / 2);
	detect_eval_range(es, lo + (hi - lo) / 2, hi);
}

/* Checks one feature value as the window functions do; NULL when fine. */
char *
detect_bad_value(double v, int position)
{
	if (isnan(v))
		return psprintf("feature %d is NaN", position);
	if (isinf(v))
		return psprintf("feature %d is infinite", position);
	if (fabs(v) > FLT_MAX)
		return psprintf("feature %d is out of range for the forest (%g)", position, v);
	return NULL;
}

/* Opens the detector's source table, or raises the error for its loss. */
Relation
detect_open_source(DetectorDef *def)
{
	Relation	rel = try_table_open(def->source, AccessShareLock);

	if (rel == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("source table %s of detector \"%s\" was dropped",
						def->source_name, def->name),
				 errhint("drop_detector() removes the detector.")));
	check_source(def, rel);
	return rel;
}

/* What prepare_as_owner prepares. */
typedef struct PrepareCall
{
	EvalState  *es;
	const char *relname;
} PrepareCall;

/*
 * Prepares the evaluation plans in the owner context: parsing resolves
 * names with the owner's search_path and may already run code (a literal
 * of a type with its own input function).
 */
static void
prepare_as_owner(void *arg)
{
	PrepareCall *c = (PrepareCall *) arg;
	EvalState  *es = c->es;
	DetectorDef *def = es->def;
	Oid			argtype = es->array_type;
	char	   *sql;

	sql = detect_eval_sql(c->relname, def->nfeatures, def->features,
						  def->partition_by, def->filter, def->nkeys, def->key_columns, false);
	es->plan = detect_owner_spi_prepare(sql, 1, &argtype);
	sql = detect_eval_sql(c->relname, 0, NULL, NULL, NULL,
						  def->nkeys, def->key_columns, true);
	es->key_plan = detect_owner_spi_prepare(sql, 1, &argtype);
}

/* Prepares the evaluation plans, as the owner. */
void
detect_prepare_eval(EvalState *es, Relation rel)
{
	PrepareCall c;

	c.es = es;
	c.relname = RelationGetRelationName(rel);
	detect_as_owner(es->def->owner, es->def->search_path, es->def->settings,
					prepare_as_owner, &c);
}
