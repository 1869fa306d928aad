/*
 * options.c
 *	  Checking a detector's definition for create_detector and
 *	  alter_detector: its name, source, expressions (checked in the owner's
 *	  context, as they will run), destination table, and its options,
 *	  normalized to the JSON stored in anomaly.detectors.
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
					argtype, 3, false);
	}
	else
		check_query(detect_eval_sql(relname, def->nfeatures, def->features,
									def->partition_by, def->filter, def->nkeys, def->keys, false),
					argtype, def->nfeatures + 3, false);
	error_context_stack = cb.previous;
}

/* ---------------------------------------------------------------------
 * Options
 */

static void option_error(const char *name, const char *want);

static const char *option_names[] = {
	"number_of_trees", "sub_sample_size", "time_decay", "shingle_size", "seed",
	"operations", "retention", "with_explanation", "with_directionality",
	"feature_names", "grade", "z_factor", "score_floor",
	"ignore_near_expected_above", "ignore_near_expected_below",
	"ignore_near_expected_above_ratio", "ignore_near_expected_below_ratio",
	"suppress", "score_horizon", "cusum_drift", "cusum_threshold", "destination",
	"transform", "transform_decay", "transform_weights", "time_column", "start",
	"window", "slide", "allowed_lateness", "late_rows", NULL
};

/*
 * The grader's options, in anomaly_grader_params' order, with detect()'s
 * defaults (issue 13's: z_factor 4, CUSUM off).
 */
static const char *grader_option_names[] = {
	"z_factor", "score_floor", "ignore_near_expected_above", "ignore_near_expected_below",
	"ignore_near_expected_above_ratio", "ignore_near_expected_below_ratio",
	"suppress", "score_horizon", "cusum_drift", "cusum_threshold"
};
static const double grader_option_defaults[] = {4, 0.8, 0, 0, 0, 0, 100, 3000, 2, 0};

#define NUM_GRADER_OPTIONS ANOMALY_GRADER_ARGS

/* A number of a JSON value. */
static double
json_number(const char *name, JsonbValue *v)
{
	if (v->type != jbvNumeric)
		option_error(name, "a number");
	return DatumGetFloat8(DirectFunctionCall1(numeric_float8, NumericGetDatum(v->val.numeric)));
}

static void
option_error(const char *name, const char *want)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("option \"%s\" must be %s", name, want)));
}

/* Integer value of a numeric JSON value. */
static int64
json_int(const char *name, JsonbValue *v)
{
	Datum		d;

	if (v->type != jbvNumeric)
		option_error(name, "an integer");
	d = DirectFunctionCall1(numeric_int8, NumericGetDatum(v->val.numeric));
	if (!DatumGetBool(DirectFunctionCall2(numeric_eq, NumericGetDatum(v->val.numeric),
										  DirectFunctionCall1(int8_numeric, d))))
		option_error(name, "an integer");
	return DatumGetInt64(d);
}

/* The numbers of a JSON array, as a float8[] (palloc'd). */
static ArrayType *
json_numbers(const char *name, JsonbValue *v)
{
	List	   *out = NIL;
	Datum	   *elems;
	int			n = 0;
	ListCell   *lc;

	if (v->type == jbvBinary)
	{
		JsonbIterator *it = JsonbIteratorInit(v->val.binary.data);
		JsonbValue	e;
		JsonbIteratorToken tok;
		bool		array = false;

		while ((tok = JsonbIteratorNext(&it, &e, true)) != WJB_DONE)
		{
			if (tok == WJB_BEGIN_ARRAY)
				array = true;
			else if (tok == WJB_ELEM)
			{
				double	   *d = palloc(sizeof(double));

				if (e.type != jbvNumeric)
					option_error(name, "an array of numbers");
				*d = json_number(name, &e);
				out = lappend(out, d);
			}
			else if (tok == WJB_BEGIN_OBJECT)
				option_error(name, "an array of numbers");
		}
		if (!array)
			option_error(name, "an array of numbers");
	}
	else
		option_error(name, "an array of numbers");
	elems = palloc(sizeof(Datum) * Max(list_length(out), 1));
	foreach(lc, out)
		elems[n++] = Float8GetDatum(*(double *) lfirst(lc));
	return construct_array(elems, n, FLOAT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE);
}

/* Strings of a JSON array (or of a single string). */
static List *
json_strings(const char *name, JsonbValue *v)
{
	List	   *out = NIL;

	if (v->type == jbvString)
		return list_make1(pnstrdup(v->val.string.val, v->val.string.len));
	if (v->type == jbvBinary)
	{
		JsonbIterator *it = JsonbIteratorInit(v->val.binary.data);
		JsonbValue	e;
		JsonbIteratorToken tok;
		bool		array = false;

		while ((tok = JsonbIteratorNext(&it, &e, true)) != WJB_DONE)
		{
			if (tok == WJB_BEGIN_ARRAY)
				array = true;
			else if (tok == WJB_ELEM)
			{
				if (e.type != jbvString)
					option_error(name, "an array of strings");
				out = lappend(out, pnstrdup(e.val.string.val, e.val.string.len));
			}
			else if (tok == WJB_BEGIN_OBJECT)
				option_error(name, "an array of strings");
		}
		if (array)
			return out;
	}
	option_error(name, "an array of strings");
	return NIL;
}

/*
 * Checks a "destination" table as the current user (the detector's owner):
 * it exists, is a plain permanent or unlogged table, each of its columns is
 * filled (pump.c: a score field, a column of source table `source`, a
 * feature, or its default) with a value of a type that casts to it, and
 * the user may insert into the columns filled.  Returns its qualified,
 * quoted name.
 */
static char *
check_destination(const char *name, Relation source, List *features, bool windowed)
{
	Oid			user = GetUserId();
	RangeVar   *rv;
	Oid			relid;
	Relation	rel;
	bool		table_priv;
	char	   *qualified;
	DestFill   *map;
	int			nmap;

	if (name[0] == '\0')
		option_error("destination", "the name of a table, as \"schema.table\"");
	rv = makeRangeVarFromNameList(stringToQualifiedNameList(name));
	relid = RangeVarGetRelid(rv, AccessShareLock, true);
	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("destination table \"%s\" does not exist", name),
				 errhint("Create it first, with an anomaly_score column (double precision) and any of "
						 "the source's columns, the features, and detector, partition_key, source_key, "
						 "commit_lsn, commit_time, rowtime, features, anomaly_grade, explanation "
						 "(or anomaly_explanation) and scored_at.")));
	rel = table_open(relid, NoLock);
	qualified = quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
										   RelationGetRelationName(rel));
	if (rel->rd_rel->relkind != RELKIND_RELATION)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("destination \"%s\" is not a table", name),
				 errhint("The destination must be a plain table (not a view, a partitioned or a foreign table).")));
	if (rel->rd_rel->relpersistence == RELPERSISTENCE_TEMP)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("destination \"%s\" is a temporary table", name),
				 errdetail("Scores are written by other sessions.")));
	if (IsCatalogRelation(rel))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("destination \"%s\" is a system catalog", name)));
	nmap = detect_dest_map(RelationGetDescr(rel), qualified, NULL,
						   windowed ? CreateTemplateTupleDesc(0) : RelationGetDescr(source),
						   features, &map);
	table_priv = pg_class_aclcheck(relid, user, ACL_INSERT) == ACLCHECK_OK;
	for (int m = 0; m < nmap && !table_priv; m++)
		if (map[m].kind != DEST_FILL_SELF &&
			pg_attribute_aclcheck(relid, map[m].attnum, user, ACL_INSERT) != ACLCHECK_OK)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("permission denied for table %s", qualified),
					 errdetail("Role %s must be allowed to INSERT into the destination: the detector writes its scores as that role.",
							   GetUserNameFromId(user, false))));
	table_close(rel, NoLock);
	return qualified;
}

/*
 * Checks a "time_column": a column of the source of type timestamp with or
 * without time zone.  Returns its name.
 */
static char *
check_time_column(const char *name, Relation source)
{
	AttrNumber	attnum = get_attnum(RelationGetRelid(source), name);
	Oid			type = attnum == InvalidAttrNumber ? InvalidOid :
		get_atttype(RelationGetRelid(source), attnum);

	if (attnum == InvalidAttrNumber || attnum < 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("time_column \"%s\" is not a column of \"%s\"", name,
						RelationGetRelationName(source))));
	if (type != TIMESTAMPTZOID && type != TIMESTAMPOID)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("time_column \"%s\" is of type %s", name, format_type_be(type)),
				 errhint("The time column must be of type timestamp with time zone, or timestamp (taken as UTC).")));
	return pstrdup(name);
}

/*
 * Checks options and returns them normalized (every option, with its
 * default) as JSON text.
 */
static char *
normalize_options(Jsonb *options, Relation rel, int nfeatures, char **features,
				  bool *start_all, bool *windowed)
{
	int64		window = 0;
	int64		slide = 0;
	int64		lateness = 0;
	char	   *late_rows = NULL;
	int64		trees = 100,
				samples = 256,
				decay = 100000,
				shingle = 8,
				seed = 42;
	bool		ins = true,
				upd = false,
				explain = false,
				direction = false,
				grade = true;
	double		gvalues[NUM_GRADER_OPTIONS];
	char	   *retention = pstrdup("30 days");
	char	   *destination = NULL;
	char	   *time_column = NULL;
	List	   *names = NIL;
	RcfParams	params;
	StringInfoData buf;
	ListCell   *lc;
	char	   *transform = pstrdup("normalize");
	bool		tdecay_null = true;
	double		tdecay = 0.0;
	ArrayType  *tweights = NULL;
	AnomalyTransformSpec tspec;

	*start_all = false;
	memcpy(gvalues, grader_option_defaults, sizeof(gvalues));
	if (options != NULL)
	{
		JsonbIterator *it;
		JsonbValue	v;
		JsonbIteratorToken tok;
		char	   *key = NULL;

		if (!JB_ROOT_IS_OBJECT(options))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("options must be a JSON object")));
		it = JsonbIteratorInit(&options->root);
		while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		{
			if (tok == WJB_KEY)
			{
				bool		known = false;

				key = pnstrdup(v.val.string.val, v.val.string.len);
				for (int i = 0; option_names[i]; i++)
					known |= strcmp(option_names[i], key) == 0;
				if (!known)
					ereport(ERROR,
							(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							 errmsg("unknown detector option \"%s\"", key),
							 errhint("Options are number_of_trees, sub_sample_size, time_decay, shingle_size, seed, "
									 "operations, retention, with_explanation, with_directionality, feature_names, "
									 "grade, z_factor, score_floor, ignore_near_expected_above, "
									 "ignore_near_expected_below, ignore_near_expected_above_ratio, "
									 "ignore_near_expected_below_ratio, suppress, score_horizon, cusum_drift, "
									 "cusum_threshold, destination, transform, transform_decay, "
									 "transform_weights, time_column, start, window, slide, "
									 "allowed_lateness and late_rows.")));
				continue;
			}
			if (tok != WJB_VALUE)
				continue;
			if (v.type == jbvNull)
			{
				if (strcmp(key, "retention") == 0)
					retention = NULL;
				continue;		/* the default */
			}
			if (strcmp(key, "number_of_trees") == 0)
				trees = json_int(key, &v);
			else if (strcmp(key, "sub_sample_size") == 0)
				samples = json_int(key, &v);
			else if (strcmp(key, "time_decay") == 0)
				decay = json_int(key, &v);
			else if (strcmp(key, "shingle_size") == 0)
				shingle = json_int(key, &v);
			else if (strcmp(key, "seed") == 0)
				seed = json_int(key, &v);
			else if (strcmp(key, "with_explanation") == 0 ||
					 strcmp(key, "with_directionality") == 0 ||
					 strcmp(key, "grade") == 0)
			{
				if (v.type != jbvBool)
					option_error(key, "true or false");
				if (strcmp(key, "grade") == 0)
					grade = v.val.boolean;
				else if (key[5] == 'e')
					explain = v.val.boolean;
				else
					direction = v.val.boolean;
			}
			else if (strcmp(key, "retention") == 0)
			{
				if (v.type != jbvString)
					option_error(key, "an interval such as \"30 days\", or null to keep everything");
				retention = pnstrdup(v.val.string.val, v.val.string.len);
				{
					Interval   *iv = DatumGetIntervalP(DirectFunctionCall3(interval_in,
																		   CStringGetDatum(retention),
																		   ObjectIdGetDatum(InvalidOid),
																		   Int32GetDatum(-1)));

					if (iv->month < 0 || iv->day < 0 || iv->time < 0 ||
						(iv->month == 0 && iv->day == 0 && iv->time == 0))
						option_error(key, "a positive interval");
				}
			}
			else if (strcmp(key, "operations") == 0)
			{
				List	   *ops = json_strings(key, &v);

				ins = upd = false;
				foreach(lc, ops)
				{
					char	   *op = lfirst(lc);

					if (strcmp(op, "insert") == 0)
						ins = true;
					else if (strcmp(op, "update") == 0)
						upd = true;
					else
						option_error(key, "a list of \"insert\" and \"update\"");
				}
				if (!ins && !upd)
					option_error(key, "a non-empty list of \"insert\" and \"update\"");
			}
			else if (strcmp(key, "z_factor") == 0 || strcmp(key, "score_floor") == 0 ||
					 strncmp(key, "ignore_near_expected_", 21) == 0 ||
					 strcmp(key, "suppress") == 0 || strcmp(key, "score_horizon") == 0 ||
					 strncmp(key, "cusum_", 6) == 0)
			{
				for (int i = 0; i < NUM_GRADER_OPTIONS; i++)
					if (strcmp(key, grader_option_names[i]) == 0)
						gvalues[i] = strcmp(key, "suppress") == 0 ?
							(double) json_int(key, &v) : json_number(key, &v);
			}
			else if (strcmp(key, "transform") == 0)
			{
				if (v.type != jbvString)
					option_error(key, "the name of a transform");
				transform = pnstrdup(v.val.string.val, v.val.string.len);
			}
			else if (strcmp(key, "transform_decay") == 0)
			{
				tdecay = json_number(key, &v);
				tdecay_null = false;
			}
			else if (strcmp(key, "transform_weights") == 0)
				tweights = json_numbers(key, &v);
			else if (strcmp(key, "destination") == 0)
			{
				if (v.type != jbvString)
					option_error(key, "the name of a table, as \"schema.table\"");
				destination = pnstrdup(v.val.string.val, v.val.string.len);
			}
			else if (strcmp(key, "start") == 0)
			{
				if (v.type != jbvString ||
					(strncmp(v.val.string.val, "now", v.val.string.len) != 0 &&
					 strncmp(v.val.string.val, "all", v.val.string.len) != 0) ||
					v.val.string.len != 3)
					option_error(key, "\"now\" (the rows committed from now on) or \"all\" (the rows stored, then those)");
				*start_all = v.val.string.val[0] == 'a';
			}
			else if (strcmp(key, "window") == 0)
				window = detect_window_interval(key, &v, false);
			else if (strcmp(key, "slide") == 0)
				slide = detect_window_interval(key, &v, false);
			else if (strcmp(key, "allowed_lateness") == 0)
				lateness = detect_window_interval(key, &v, true);
			else if (strcmp(key, "late_rows") == 0)
			{
				if (v.type != jbvString || v.val.string.len == 0)
					option_error(key, "the name of a table, as \"schema.table\"");
				late_rows = pnstrdup(v.val.string.val, v.val.string.len);
			}
			else if (strcmp(key, "time_column") == 0)
			{
				if (v.type != jbvString)
					option_error(key, "the name of a timestamp column of the source");
				time_column = check_time_column(pnstrdup(v.val.string.val, v.val.string.len), rel);
			}
			else if (strcmp(key, "feature_names") == 0)
			{
				names = json_strings(key, &v);
				if (list_length(names) != nfeatures)
					ereport(ERROR,
							(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							 errmsg("feature_names must have one name per feature"),
							 errdetail("There are %d features and %d names.", nfeatures,
									   list_length(names))));
			}
		}
	}

	*windowed = window > 0;
	if (window == 0 && (slide || lateness || late_rows))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("options slide, allowed_lateness and late_rows need a window"),
				 errhint("Add a window, such as \"window\": \"1 minute\".")));
	if (window > 0)
	{
		if (slide == 0)
			slide = window;
		if (slide > window)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("option \"slide\" must not be longer than the window"),
					 errdetail("Every row belongs to a window: windows overlap (hop) or touch (tumble).")));
		if (window / slide > DETECT_WINDOW_MAX_OVERLAP)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("a row would belong to more than %d windows", DETECT_WINDOW_MAX_OVERLAP),
					 errhint("Use a longer slide.")));
		if (*start_all)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("a windowed detector cannot start with the stored rows"),
					 errdetail("History is read in key order, not in event time order."),
					 errhint("Score the stored rows' windows with date_bin() and the window functions (docs/detectors.md).")));
		if (late_rows)
			late_rows = detect_window_check_late_rows(late_rows, rel);
	}

	/* Checked once every option is known: the features' names fill it too. */
	if (destination)
	{
		List	   *fnames = names;

		if (fnames == NIL)
			for (int i = 0; i < nfeatures; i++)
				fnames = lappend(fnames, features[i]);
		/* A window's result has no source row: no source column fills it. */
		destination = check_destination(destination, rel, fnames, window > 0);
	}

	if (trees < INT_MIN || trees > INT_MAX || samples < INT_MIN || samples > INT_MAX ||
		shingle < INT_MIN || shingle > INT_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("forest parameters are out of range")));
	anomaly_forest_params(&params, nfeatures,
						  Int32GetDatum((int32) trees), false,
						  Int32GetDatum((int32) samples), false,
						  Int64GetDatum(decay), false,
						  Int32GetDatum((int32) shingle), false,
						  Int64GetDatum(seed), false);
	{
		NullableDatum gargs[NUM_GRADER_OPTIONS];
		RcfGraderParams gp;

		for (int i = 0; i < NUM_GRADER_OPTIONS; i++)
		{
			gargs[i].isnull = false;
			if (i == 6)
			{
				if (gvalues[i] < INT_MIN || gvalues[i] > INT_MAX)
					option_error("suppress", "an integer between 0 and 1000000");
				gargs[i].value = Int32GetDatum((int32) gvalues[i]);
			}
			else
				gargs[i].value = Float8GetDatum(gvalues[i]);
		}
		anomaly_grader_params(&gp, gargs);
	}
	/*
	 * detect()'s default decay, written out with a transform; a detector
	 * stored without one (transform none, or older) keeps its meaning.
	 */
	if (tdecay_null && strcmp(transform, "none") != 0)
	{
		tdecay = ANOMALY_TRANSFORM_DEFAULT_DECAY;
		tdecay_null = false;
	}
	anomaly_transform_spec(&tspec, transform, tdecay_null, tdecay, tweights,
						   nfeatures, params.sample_size);

	initStringInfo(&buf);
	appendStringInfo(&buf, "{\"number_of_trees\": " INT64_FORMAT ", \"sub_sample_size\": " INT64_FORMAT
					 ", \"time_decay\": " INT64_FORMAT ", \"shingle_size\": " INT64_FORMAT
					 ", \"seed\": " INT64_FORMAT ", \"operations\": [%s%s%s]",
					 trees, samples, decay, shingle, seed,
					 ins ? "\"insert\"" : "", ins && upd ? ", " : "", upd ? "\"update\"" : "");
	appendStringInfoString(&buf, ", \"retention\": ");
	if (retention)
		escape_json(&buf, retention);
	else
		appendStringInfoString(&buf, "null");
	appendStringInfo(&buf, ", \"with_explanation\": %s, \"with_directionality\": %s, \"grade\": %s",
					 explain ? "true" : "false", direction ? "true" : "false",
					 grade ? "true" : "false");
	for (int i = 0; i < NUM_GRADER_OPTIONS; i++)
		appendStringInfo(&buf, ", \"%s\": %s", grader_option_names[i],
						 float8out_internal(gvalues[i]));
	/*
	 * transform_decay with a transform (above), transform_weights only when
	 * given: their default follows the features.
	 */
	appendStringInfoString(&buf, ", \"transform\": ");
	escape_json(&buf, transform);
	if (!tdecay_null)
		appendStringInfo(&buf, ", \"transform_decay\": %s",
						 float8out_internal(tdecay));
	if (tspec.weights)
	{
		appendStringInfoString(&buf, ", \"transform_weights\": [");
		for (int i = 0; i < nfeatures; i++)
			appendStringInfo(&buf, "%s%s", i > 0 ? ", " : "",
							 float8out_internal(tspec.weights[i]));
		appendStringInfoChar(&buf, ']');
	}
	if (destination)
	{
		appendStringInfoString(&buf, ", \"destination\": ");
		escape_json(&buf, destination);
	}
	if (*start_all)
		appendStringInfoString(&buf, ", \"start\": \"all\"");
	if (time_column)
	{
		appendStringInfoString(&buf, ", \"time_column\": ");
		escape_json(&buf, time_column);
	}
	if (window > 0)
	{
		appendStringInfo(&buf, ", \"window\": \"%s\", \"slide\": \"%s\", \"allowed_lateness\": \"%s\"",
						 detect_window_interval_text(window), detect_window_interval_text(slide),
						 detect_window_interval_text(lateness));
		if (late_rows)
		{
			appendStringInfoString(&buf, ", \"late_rows\": ");
			escape_json(&buf, late_rows);
		}
	}
	appendStringInfoString(&buf, ", \"feature_names\": [");
	for (int i = 0; i < nfeatures; i++)
	{
		if (i > 0)
			appendStringInfoString(&buf, ", ");
		escape_json(&buf, names ? (char *) list_nth(names, i) : features[i]);
	}
	appendStringInfoString(&buf, "]}");
	return buf.data;
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
	def->options = normalize_options(options, rel, def->nfeatures, def->features,
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
