/*
 * define.c
 *	  Checking a detector's definition for create_detector and
 *	  alter_detector: its name, source, expressions (checked in the owner's
 *	  context, as they will run) and statement; its options are checked and
 *	  normalized by options.c.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "access/xlog.h"
#include "access/xact.h"
#include "catalog/catalog.h"
#include "catalog/pg_authid.h"
#include "catalog/indexing.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_index.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "parser/parse_coerce.h"
#include "parser/parser.h"
#include "replication/origin.h"
#include "replication/slot.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/float.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/pg_lsn.h"
#include "utils/plancache.h"
#include "utils/regproc.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/resowner.h"
#include "utils/syscache.h"

#include "anomaly.h"
#include "detect/detect.h"
#include "detect/options.h"
#include "detect/window_agg.h"

/* ---------------------------------------------------------------------
 * Checks
 */

void
detect_check_name(const char *name)
{
	int			len = strlen(name);
	bool		ok = len > 0 && len <= 63 && isalnum((unsigned char) name[0]);

	for (int i = 1; ok && i < len; i++)
	{
		char		c = name[i];

		ok = isalnum((unsigned char) c) || c == '_' || c == '.' || c == ':' || c == '-';
	}
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_NAME),
				 errmsg("invalid detector name \"%s\"", name),
				 errdetail("A detector name has 1 to 63 characters: letters, digits, and _ . : - after the first.")));
}

/* The caller may read the whole table, without row security. */
static void
check_can_read(Oid relid, Oid role)
{
	if (pg_class_aclcheck(relid, role, ACL_SELECT) != ACLCHECK_OK &&
		pg_attribute_aclcheck_all(relid, role, ACL_SELECT, ACLMASK_ALL) != ACLCHECK_OK)
		aclcheck_error(ACLCHECK_NO_PRIV, OBJECT_TABLE, get_rel_name(relid));
	if (check_enable_rls(relid, role, true) == RLS_ENABLED)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("table \"%s\" has row-level security for role %s",
						get_rel_name(relid), GetUserNameFromId(role, false)),
				 errdetail("A detector reads every row; it cannot apply row security policies.")));
}

/*
 * Opens the source and checks what kind of table it is: a table, or a
 * partitioned table whose partitions' rows are read as its own (the
 * privileges checked are those on it, as for a query on it).
 */
Relation
detect_open_source_for_definition(Oid relid)
{
	Relation	rel = table_open(relid, AccessShareLock);

	if (rel->rd_rel->relkind != RELKIND_RELATION &&
		rel->rd_rel->relkind != RELKIND_PARTITIONED_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not a table", RelationGetRelationName(rel))));
	if (rel->rd_rel->relpersistence != RELPERSISTENCE_PERMANENT)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("\"%s\" is a temporary or unlogged table", RelationGetRelationName(rel)),
				 errdetail("Only tables written to the WAL can be decoded.")));
	if (IsCatalogRelation(rel))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("\"%s\" is a system catalog", RelationGetRelationName(rel))));
	return rel;
}

/* One expression must parse alone as exactly one value. */
static void
check_expression(const char *what, const char *expr)
{
	List	   *volatile stmts = NIL;
	SelectStmt *sel;
	MemoryContext cxt = CurrentMemoryContext;

	if (expr == NULL || expr[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be empty", what)));
	PG_TRY();
	{
		stmts = raw_parser(psprintf("SELECT (\n%s\n)", expr), RAW_PARSE_DEFAULT);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		ereport(ERROR,
				(errcode(ERRCODE_SYNTAX_ERROR),
				 errmsg("%s is not a valid SQL expression: %s", what, expr),
				 errdetail("%s", edata->message)));
	}
	PG_END_TRY();
	sel = list_length(stmts) == 1 ?
		(SelectStmt *) ((RawStmt *) linitial(stmts))->stmt : NULL;
	if (sel == NULL || !IsA(sel, SelectStmt) || sel->op != SETOP_NONE ||
		list_length(sel->targetList) != 1 || sel->fromClause || sel->whereClause ||
		sel->groupClause || sel->havingClause || sel->windowClause ||
		sel->sortClause || sel->limitCount || sel->limitOffset ||
		sel->withClause || sel->intoClause || sel->distinctClause ||
		sel->lockingClause || sel->valuesLists)
		ereport(ERROR,
				(errcode(ERRCODE_SYNTAX_ERROR),
				 errmsg("%s must be one SQL expression: %s", what, expr)));
}

/* The caller's search_path, as an explicit list of schemas. */
static char *
pinned_search_path(void)
{
	StringInfoData buf;
	ListCell   *lc;
	List	   *path = fetch_search_path(false);

	initStringInfo(&buf);
	foreach(lc, path)
	{
		Oid			nsp = lfirst_oid(lc);
		char	   *name = get_namespace_name(nsp);

		if (name == NULL || isTempNamespace(nsp))
			continue;
		if (buf.len > 0)
			appendStringInfoString(&buf, ", ");
		appendStringInfoString(&buf, quote_identifier(name));
	}
	if (buf.len == 0)
		appendStringInfoString(&buf, "pg_catalog");
	return buf.data;
}

/* [[attnum, name, type], ...] of the table's live columns. */
static char *
source_columns_json(Relation rel)
{
	TupleDesc	desc = RelationGetDescr(rel);
	StringInfoData buf;
	bool		first = true;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '[');
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->attisdropped)
			continue;
		if (!first)
			appendStringInfoString(&buf, ", ");
		first = false;
		appendStringInfo(&buf, "[%d, ", att->attnum);
		escape_json(&buf, NameStr(att->attname));
		appendStringInfo(&buf, ", %u]", att->atttypid);
	}
	appendStringInfoChar(&buf, ']');
	return buf.data;
}

/* Names of the primary key columns (0 when none). */
static int
primary_key_columns(Relation rel, char ***out)
{
	Oid			pk = RelationGetPrimaryKeyIndex(rel);
	HeapTuple	tup;
	Form_pg_index idx;
	int			n;

	*out = NULL;
	if (!OidIsValid(pk))
		return 0;
	tup = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(pk));
	if (!HeapTupleIsValid(tup))
		return 0;
	idx = (Form_pg_index) GETSTRUCT(tup);
	n = idx->indnkeyatts;
	*out = palloc(sizeof(char *) * Max(n, 1));
	for (int i = 0; i < n; i++)
		(*out)[i] = pstrdup(NameStr(TupleDescAttr(RelationGetDescr(rel),
												  idx->indkey.values[i] - 1)->attname));
	ReleaseSysCache(tup);
	return n;
}

/* Error context: which expression was being checked. */
static void
expression_context(void *arg)
{
	errcontext("while checking %s", (const char *) arg);
}

/*
 * Prepares sql (one parameter: an array of the source's row type) and
 * checks its shape: natts columns, no aggregate, window or set-returning
 * function.
 */
static void
check_query(const char *sql, Oid argtype, int natts, bool aggregate)
{
	SPIPlanPtr	plan = detect_owner_spi_prepare(sql, 1, &argtype);
	List	   *sources;
	CachedPlanSource *ps;
	ListCell   *lc;

	sources = SPI_plan_get_plan_sources(plan);
	ps = list_length(sources) == 1 ? (CachedPlanSource *) linitial(sources) : NULL;
	if (ps == NULL || ps->resultDesc == NULL || ps->resultDesc->natts != natts)
		ereport(ERROR,
				(errcode(ERRCODE_SYNTAX_ERROR),
				 errmsg("detector expressions must each be one SQL expression")));
	foreach(lc, ps->query_list)
	{
		Query	   *q = lfirst_node(Query, lc);

		if ((q->hasAggs && !aggregate) || q->hasWindowFuncs)
			ereport(ERROR,
					(errcode(ERRCODE_GROUPING_ERROR),
					 errmsg("detector expressions cannot use aggregate or window functions"),
					 aggregate ? 0 : errhint("Aggregates are features of windowed detectors (the window option).")));
		/* One row per window: the features aggregate the window's rows. */
		if (aggregate && !q->hasAggs)
			ereport(ERROR,
					(errcode(ERRCODE_GROUPING_ERROR),
					 errmsg("the features of a windowed detector must be aggregates of the window's rows"),
					 errhint("For example avg(price), count(*) or max(price) - min(price).")));
		if (q->hasTargetSRFs)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("detector expressions cannot use set-returning functions")));
	}
	/* Permissions are checked when a plan starts: run it on no rows. */
	{
		Datum		empty = PointerGetDatum(construct_empty_array(get_element_type(argtype)));
		int			rc = detect_owner_spi_execute_plan(plan, &empty, NULL, true, 0);

		if (rc != SPI_OK_SELECT)
			elog(ERROR, "SPI_execute_plan failed: %s", SPI_result_code_string(rc));
	}
	SPI_freeplan(plan);
}

/*
 * Checks the expressions, each alone then all together, by preparing the
 * evaluation statement as the current user with the current search_path.
 */
static void
check_statement(Relation rel, Definition *def)
{
	Oid			argtype = get_array_type(rel->rd_rel->reltype);
	const char *relname = RelationGetRelationName(rel);
	ErrorContextCallback cb;
	char	   *what;

	cb.callback = expression_context;
	cb.previous = error_context_stack;
	error_context_stack = &cb;
	for (int i = 0; i < def->nfeatures + 2; i++)
	{
		char	   *expr;
		char	   *cast;

		if (i < def->nfeatures)
		{
			what = psprintf("feature %d", i + 1);
			expr = def->features[i];
			cast = "pg_catalog.float8";
		}
		else if (i == def->nfeatures)
		{
			what = "partition_by";
			expr = def->partition_by;
			cast = "pg_catalog.text";
		}
		else
		{
			what = "filter";
			expr = def->filter;
			cast = "pg_catalog.bool";
		}
		if (expr == NULL)
			continue;
		cb.arg = psprintf("%s \"%s\"", what, expr);
		check_expression(what, expr);
		check_query(psprintf("SELECT (\n%s\n)::%s FROM pg_catalog.unnest($1) AS %s",
							 expr, cast, quote_identifier(relname)), argtype, 1,
					def->windowed && i < def->nfeatures);
	}
	cb.arg = "the detector's expressions together";
	if (def->windowed)
	{
		/* Features over a window's rows; key and filter over each row. */
		check_query(detect_window_eval_sql(relname, def->nfeatures, def->features),
					argtype, def->nfeatures, true);
		check_query(detect_eval_sql(relname, 0, NULL, def->partition_by, def->filter,
									def->nkeys, def->keys, false),
					argtype, 2, false);
	}
	else
		check_query(detect_eval_sql(relname, def->nfeatures, def->features,
									def->partition_by, def->filter, def->nkeys, def->keys, false),
					argtype, def->nfeatures + 2, false);
	cb.arg = "the detector's source key";
	check_query(detect_eval_sql(relname, 0, NULL, NULL, NULL, def->nkeys, def->keys, true),
				argtype, 1, false);
	error_context_stack = cb.previous;
}

/* C strings of a text[] argument, which must have no NULL. */
int
detect_text_array_arg(ArrayType *arr, const char *what, char ***out)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n;

	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("%s must be a one-dimensional array", what)));
	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	*out = palloc(sizeof(char *) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("%s must not contain NULL", what)));
		(*out)[i] = TextDatumGetCString(elems[i]);
	}
	return n;
}

/*
 * Fills def for table rel and checks everything as the current user:
 * read access, expressions, options.
 */
static void
define(Relation rel, Definition *def, Jsonb *options)
{
	Oid			relid = RelationGetRelid(rel);

	if (def->nfeatures == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a detector needs at least one feature")));
	if (def->nfeatures > RCF_MAX_DIMENSIONS)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("a detector has at most %d features", RCF_MAX_DIMENSIONS)));
	if (def->partition_by && def->partition_by[0] == '\0')
		def->partition_by = NULL;
	if (def->filter && def->filter[0] == '\0')
		def->filter = NULL;
	check_can_read(relid, GetUserId());
	def->options = detect_normalize_options(options, rel, def->nfeatures, def->features,
									 &def->start_all, &def->windowed);
	def->nkeys = primary_key_columns(rel, &def->keys);
	def->search_path = pinned_search_path();
	def->source_columns = source_columns_json(rel);
	def->source_name = quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
												  RelationGetRelationName(rel));
	check_statement(rel, def);
}

/*
 * define() in the owner context, as the expressions will run: opens the
 * source (closing it again, its lock kept) and checks everything.
 */
void
detect_define_as_owner(void *arg)
{
	DefineCall *c = (DefineCall *) arg;
	Relation	rel = detect_open_source_for_definition(c->relid);

	define(rel, c->def, c->options);
	table_close(rel, NoLock);
}

/* Builds a text[] datum. */
Datum
detect_cstrings_to_array(char **strs, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		d[i] = CStringGetTextDatum(strs[i]);
	return PointerGetDatum(construct_array(d, n, TEXTOID, -1, false, TYPALIGN_INT));
}
