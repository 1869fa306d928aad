/*
 * catalog.c
 *	  Detector management from SQL: create_detector, alter_detector,
 *	  pause/resume/reset/drop_detector, and process(), one round of
 *	  detection for pg_cron.
 *
 * These functions are SECURITY INVOKER C functions: they check the caller
 * (GetUserId()) themselves, then write the catalog in the sys context (the
 * bootstrap superuser, a pinned search_path: sysctx.c).  The catalog
 * tables are not writable by anyone else, so the owner recorded for a
 * detector is always the role that created it, and its expressions
 * (checked here in that role's owner context, as they will run) always run
 * as that role.
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

PG_FUNCTION_INFO_V1(anomaly_create_detector);
PG_FUNCTION_INFO_V1(anomaly_alter_detector);
PG_FUNCTION_INFO_V1(anomaly_pause_detector);
PG_FUNCTION_INFO_V1(anomaly_resume_detector);
PG_FUNCTION_INFO_V1(anomaly_reset_detector);
PG_FUNCTION_INFO_V1(anomaly_drop_detector);
PG_FUNCTION_INFO_V1(anomaly_process);

/*
 * The options that shape the models, as a jsonb array (sys context SQL):
 * when they change, the models are reset.
 */
#define PO(o, k) o " OPERATOR(pg_catalog.->) '" k "'"
#define PARAMS_ARRAY(o) \
	"pg_catalog.jsonb_build_array(" PO(o, "number_of_trees") ", " PO(o, "sub_sample_size") "," \
	" " PO(o, "time_decay") ", " PO(o, "shingle_size") ", " PO(o, "seed") ", " PO(o, "grade") "," \
	" " PO(o, "z_factor") ", " PO(o, "score_floor") ", " PO(o, "ignore_near_expected_above") "," \
	" " PO(o, "ignore_near_expected_below") ", " PO(o, "ignore_near_expected_above_ratio") "," \
	" " PO(o, "ignore_near_expected_below_ratio") ", " PO(o, "suppress") "," \
	" " PO(o, "score_horizon") ", " PO(o, "cusum_drift") ", " PO(o, "cusum_threshold") ")"

/* The definition parts that create and alter check. */
typedef struct Definition
{
	int			nfeatures;
	char	  **features;
	char	   *partition_by;	/* NULL: none */
	char	   *filter;			/* NULL: none */
	char	   *options;		/* normalized JSON text */
	char	   *search_path;
	char	   *source_columns;
	int			nkeys;
	char	  **keys;
	char	   *source_name;
} Definition;

/* ---------------------------------------------------------------------
 * SPI as the bootstrap superuser
 */
/* ---------------------------------------------------------------------
 * Checks
 */

static void
check_name(const char *name)
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
static Relation
open_source_for_definition(Oid relid)
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
check_query(const char *sql, Oid argtype, int natts)
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

		if (q->hasAggs || q->hasWindowFuncs)
			ereport(ERROR,
					(errcode(ERRCODE_GROUPING_ERROR),
					 errmsg("detector expressions cannot use aggregate or window functions")));
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
							 expr, cast, quote_identifier(relname)), argtype, 1);
	}
	cb.arg = "the detector's expressions together";
	check_query(detect_eval_sql(relname, def->nfeatures, def->features,
								def->partition_by, def->filter, def->nkeys, def->keys, false),
				argtype, def->nfeatures + 3);
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
	"suppress", "score_horizon", "cusum_drift", "cusum_threshold", "destination", NULL
};

/* The grader's options, in anomaly_grader_params' order, with detect()'s defaults. */
static const char *grader_option_names[] = {
	"z_factor", "score_floor", "ignore_near_expected_above", "ignore_near_expected_below",
	"ignore_near_expected_above_ratio", "ignore_near_expected_below_ratio",
	"suppress", "score_horizon", "cusum_drift", "cusum_threshold"
};
static const double grader_option_defaults[] = {3, 0.8, 0, 0, 0, 0, 100, 3000, 2, 12};

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
 * it exists, is a plain permanent or unlogged table, has anomaly_score,
 * the columns it has among detect_dest_columns accept their values, and
 * the user may insert into them.  Returns its qualified, quoted name.
 */
static char *
check_destination(const char *name)
{
	Oid			user = GetUserId();
	RangeVar   *rv;
	Oid			relid;
	Relation	rel;
	TupleDesc	desc;
	bool		table_priv;
	bool		has_score = false;
	char	   *qualified;

	if (name[0] == '\0')
		option_error("destination", "the name of a table, as \"schema.table\"");
	rv = makeRangeVarFromNameList(stringToQualifiedNameList(name));
	relid = RangeVarGetRelid(rv, AccessShareLock, true);
	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("destination table \"%s\" does not exist", name),
				 errhint("Create it first, with an anomaly_score column (double precision) and any of "
						 "detector, partition_key, source_key, commit_lsn, commit_time, features, "
						 "anomaly_grade, explanation and scored_at.")));
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
	desc = RelationGetDescr(rel);
	table_priv = pg_class_aclcheck(relid, user, ACL_INSERT) == ACLCHECK_OK;
	for (int c = 0; c < DETECT_DEST_NCOLUMNS; c++)
	{
		const DetectDestColumn *dc = &detect_dest_columns[c];
		Form_pg_attribute att = NULL;
		Oid			src = dc->type;

		for (int i = 0; i < desc->natts; i++)
		{
			Form_pg_attribute a = TupleDescAttr(desc, i);

			if (!a->attisdropped && strcmp(NameStr(a->attname), dc->name) == 0)
				att = a;
		}
		if (att == NULL)
			continue;
		has_score |= strcmp(dc->name, "anomaly_score") == 0;
		if (!can_coerce_type(1, &src, &att->atttypid, COERCION_ASSIGNMENT))
			ereport(ERROR,
					(errcode(ERRCODE_DATATYPE_MISMATCH),
					 errmsg("column \"%s\" of destination table %s is of type %s, which %s does not cast to",
							dc->name, qualified, format_type_be(att->atttypid),
							format_type_be(dc->type)),
					 errhint("Use type %s for column \"%s\" (or a type %s casts to on assignment), or drop the column.",
							 format_type_be(dc->type), dc->name, format_type_be(dc->type))));
		if (!table_priv &&
			pg_attribute_aclcheck(relid, att->attnum, user, ACL_INSERT) != ACLCHECK_OK)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("permission denied for table %s", qualified),
					 errdetail("Role %s must be allowed to INSERT into the destination: the detector writes its scores as that role.",
							   GetUserNameFromId(user, false))));
	}
	if (!has_score)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("destination table %s has no column \"anomaly_score\"", qualified),
				 errhint("A destination table needs at least an anomaly_score column (double precision).")));
	table_close(rel, NoLock);
	return qualified;
}

/*
 * Checks options and returns them normalized (every option, with its
 * default) as JSON text.
 */
static char *
normalize_options(Jsonb *options, int nfeatures, char **features)
{
	int64		trees = 100,
				samples = 256,
				decay = 100000,
				shingle = 1,
				seed = 42;
	bool		ins = true,
				upd = false,
				explain = false,
				direction = false,
				grade = true;
	double		gvalues[NUM_GRADER_OPTIONS];
	char	   *retention = pstrdup("30 days");
	char	   *destination = NULL;
	List	   *names = NIL;
	RcfParams	params;
	StringInfoData buf;
	ListCell   *lc;

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
									 "cusum_threshold and destination.")));
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
			else if (strcmp(key, "destination") == 0)
			{
				if (v.type != jbvString)
					option_error(key, "the name of a table, as \"schema.table\"");
				destination = check_destination(pnstrdup(v.val.string.val, v.val.string.len));
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
	if (destination)
	{
		appendStringInfoString(&buf, ", \"destination\": ");
		escape_json(&buf, destination);
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
static int
text_array_arg(ArrayType *arr, const char *what, char ***out)
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
	def->options = normalize_options(options, def->nfeatures, def->features);
	def->nkeys = primary_key_columns(rel, &def->keys);
	def->search_path = pinned_search_path();
	def->source_columns = source_columns_json(rel);
	def->source_name = quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
												  RelationGetRelationName(rel));
	check_statement(rel, def);
}

/* What define_as_owner checks. */
typedef struct DefineCall
{
	Oid			relid;			/* the source */
	Definition *def;
	Jsonb	   *options;
} DefineCall;

/*
 * define() in the owner context, as the expressions will run: opens the
 * source (closing it again, its lock kept) and checks everything.
 */
static void
define_as_owner(void *arg)
{
	DefineCall *c = (DefineCall *) arg;
	Relation	rel = open_source_for_definition(c->relid);

	define(rel, c->def, c->options);
	table_close(rel, NoLock);
}

/* Builds a text[] datum. */
static Datum
cstrings_to_array(char **strs, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		d[i] = CStringGetTextDatum(strs[i]);
	return PointerGetDatum(construct_array(d, n, TEXTOID, -1, false, TYPALIGN_INT));
}

/* ---------------------------------------------------------------------
 * create_detector
 */
Datum
anomaly_create_detector(PG_FUNCTION_ARGS)
{
	char	   *name;
	Oid			relid;
	Definition	def;
	Relation	rel;
	DetectSys			su;
	int64		id;
	char		slot[NAMEDATALEN];
	Oid			owner = GetUserId();

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("name, source and features must not be null")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	check_name(name);
	relid = PG_GETARG_OID(1);
	memset(&def, 0, sizeof(def));
	def.nfeatures = text_array_arg(PG_GETARG_ARRAYTYPE_P(2), "features", &def.features);
	def.partition_by = PG_ARGISNULL(3) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(3));
	def.filter = PG_ARGISNULL(4) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(4));

	rel = open_source_for_definition(relid);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	/* Checked in the caller's owner context, with the caller's search_path. */
	{
		DefineCall	dc;
		char	   *path = pstrdup(namespace_search_path);

		dc.relid = relid;
		dc.def = &def;
		dc.options = PG_ARGISNULL(5) ? NULL : PG_GETARG_JSONB_P(5);
		detect_sys_enter(&su);
		detect_as_owner(owner, path, define_as_owner, &dc);
	}
	/* One creation at a time: ids are max + 1, and orphans are swept. */
	(void) detect_lock(DETECT_LOCK_CREATE, true);
	detect_spi_exec("SELECT 1 FROM anomaly.detectors WHERE name OPERATOR(pg_catalog.=) $1", 1,
			  (Oid[]) {TEXTOID}, (Datum[]) {CStringGetTextDatum(name)}, NULL, false, SPI_OK_SELECT);
	if (SPI_processed > 0)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("detector \"%s\" already exists", name)));
	detect_spi_exec("SELECT COALESCE(pg_catalog.max(id), 0) OPERATOR(pg_catalog.+) 1 FROM anomaly.detectors",
			  0, NULL, NULL, NULL, false, SPI_OK_SELECT);
	{
		bool		isnull;

		id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	}
	detect_object_name(slot, sizeof(slot), MyDatabaseId, id);
	/* A slot left by an aborted creation of the same id. */
	detect_drop_slot(slot, true);
	detect_create_slot(slot);
	(void) detect_origin(slot, true);

	{
		Oid			types[15] = {INT8OID, TEXTOID, OIDOID, TEXTOID, TEXTARRAYOID, TEXTOID,
			TEXTOID, JSONBOID, OIDOID, TEXTOID, JSONBOID, TEXTARRAYOID, NAMEOID, PG_LSNOID,
		TEXTOID};
		Datum		args[15];
		char		nulls[16] = "               ";

		args[0] = Int64GetDatum(id);
		args[1] = CStringGetTextDatum(name);
		args[2] = ObjectIdGetDatum(relid);
		args[3] = CStringGetTextDatum(def.source_name);
		args[4] = cstrings_to_array(def.features, def.nfeatures);
		args[5] = def.partition_by ? CStringGetTextDatum(def.partition_by) : (Datum) 0;
		nulls[5] = def.partition_by ? ' ' : 'n';
		args[6] = def.filter ? CStringGetTextDatum(def.filter) : (Datum) 0;
		nulls[6] = def.filter ? ' ' : 'n';
		args[7] = DirectFunctionCall1(jsonb_in, CStringGetDatum(def.options));
		args[8] = ObjectIdGetDatum(owner);
		args[9] = CStringGetTextDatum(def.search_path);
		args[10] = DirectFunctionCall1(jsonb_in, CStringGetDatum(def.source_columns));
		args[11] = def.nkeys > 0 ? cstrings_to_array(def.keys, def.nkeys) : (Datum) 0;
		nulls[11] = def.nkeys > 0 ? ' ' : 'n';
		args[12] = DirectFunctionCall1(namein, CStringGetDatum(slot));
		args[13] = LSNGetDatum(detect_slot_confirmed(slot));
		args[14] = CStringGetTextDatum(detect_home());
		detect_spi_exec("INSERT INTO anomaly.detectors (id, name, source, source_name, features,"
				  " partition_by, filter, options, owner, search_path, source_columns,"
				  " key_columns, slot_name, progress_lsn, home)"
				  " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
				  15, types, args, nulls, false, SPI_OK_INSERT);
	}
	detect_sys_leave(&su);
	SPI_finish();
	table_close(rel, AccessShareLock);
	PG_RETURN_VOID();
}

/* ---------------------------------------------------------------------
 * The others: lock the row, check the caller, change it.
 */

typedef struct Existing
{
	int64		id;
	Oid			owner;
	Oid			source;
	char	   *slot;
	char	   *state;
	char	   *name;
} Existing;

/*
 * Finds and locks detector `name` (inside su_enter), checks that the
 * caller may manage it.  Returns false when missing and missing_ok.
 */
static bool
lock_detector(const char *name, Oid caller, bool missing_ok, Existing *ex)
{
	bool		isnull;
	HeapTuple	t;
	TupleDesc	td;

	detect_spi_exec("SELECT id, owner, source, slot_name::pg_catalog.text, state FROM anomaly.detectors"
			  " WHERE name OPERATOR(pg_catalog.=) $1 FOR UPDATE", 1,
			  (Oid[]) {TEXTOID}, (Datum[]) {CStringGetTextDatum(name)}, NULL, false, SPI_OK_SELECT);
	if (SPI_processed == 0)
	{
		if (missing_ok)
			return false;
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("detector \"%s\" does not exist", name)));
	}
	t = SPI_tuptable->vals[0];
	td = SPI_tuptable->tupdesc;
	ex->id = DatumGetInt64(SPI_getbinval(t, td, 1, &isnull));
	ex->owner = DatumGetObjectId(SPI_getbinval(t, td, 2, &isnull));
	ex->source = DatumGetObjectId(SPI_getbinval(t, td, 3, &isnull));
	ex->slot = SPI_getvalue(t, td, 4);
	ex->state = SPI_getvalue(t, td, 5);
	ex->name = pstrdup(name);
	if (!has_privs_of_role(caller, ex->owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be the owner of detector \"%s\"", name),
				 errdetail("It belongs to role %s.", GetUserNameFromId(ex->owner, true))));
	return true;
}

/* ---------------------------------------------------------------------
 * alter_detector
 */
Datum
anomaly_alter_detector(PG_FUNCTION_ARGS)
{
	char	   *name;
	Oid			caller = GetUserId();
	Existing	ex;
	DetectSys			su;
	Definition	def;
	char	  **old_features;
	int			old_n;
	char	   *old_partition;
	char	   *old_filter;
	char	   *old_params;
	char	   *new_params;
	Jsonb	   *merged;
	char	   *caller_path;
	bool		reset;
	HeapTuple	t;
	TupleDesc	td;
	bool		isnull;
	Datum		d;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("name must not be null")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	caller_path = pstrdup(namespace_search_path);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	detect_sys_enter(&su);
	lock_detector(name, caller, false, &ex);
	detect_spi_exec("SELECT features, partition_by, filter,"
			  " pg_catalog.jsonb_strip_nulls(CASE WHEN $2 AND NOT ($3 OPERATOR(pg_catalog.?) 'feature_names')"
			  "   THEN options OPERATOR(pg_catalog.-) 'feature_names'::pg_catalog.text ELSE options END"
			  "   OPERATOR(pg_catalog.||) $3),"
			  " " PARAMS_ARRAY("options") "::pg_catalog.text"
			  " FROM anomaly.detectors WHERE id OPERATOR(pg_catalog.=) $1", 3,
			  (Oid[]) {INT8OID, BOOLOID, JSONBOID},
			  (Datum[]) {Int64GetDatum(ex.id), BoolGetDatum(!PG_ARGISNULL(1)),
	PG_ARGISNULL(4) ? DirectFunctionCall1(jsonb_in, CStringGetDatum("{}")) : PG_GETARG_DATUM(4)},
			  NULL, false, SPI_OK_SELECT);
	t = SPI_tuptable->vals[0];
	td = SPI_tuptable->tupdesc;
	d = SPI_getbinval(t, td, 1, &isnull);
	{
		ArrayType  *a = DatumGetArrayTypeP(d);

		old_n = text_array_arg(a, "features", &old_features);
	}
	old_partition = SPI_getvalue(t, td, 2);
	old_filter = SPI_getvalue(t, td, 3);
	merged = DatumGetJsonbPCopy(SPI_getbinval(t, td, 4, &isnull));
	old_params = SPI_getvalue(t, td, 5);

	memset(&def, 0, sizeof(def));
	if (PG_ARGISNULL(1))
	{
		def.nfeatures = old_n;
		def.features = old_features;
	}
	else
		def.nfeatures = text_array_arg(PG_GETARG_ARRAYTYPE_P(1), "features", &def.features);
	def.partition_by = PG_ARGISNULL(2) ? old_partition : text_to_cstring(PG_GETARG_TEXT_PP(2));
	def.filter = PG_ARGISNULL(3) ? old_filter : text_to_cstring(PG_GETARG_TEXT_PP(3));

	/*
	 * Checked in the owner's context, who runs them, with the caller's
	 * search_path (which becomes the detector's).
	 */
	if (!SearchSysCacheExists1(RELOID, ObjectIdGetDatum(ex.source)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("source table of detector \"%s\" was dropped", name)));
	{
		DefineCall	dc;

		dc.relid = ex.source;
		dc.def = &def;
		dc.options = merged;
		detect_as_owner(ex.owner, caller_path, define_as_owner, &dc);
	}

	detect_spi_exec("SELECT " PARAMS_ARRAY("o") "::pg_catalog.text"
			  " FROM (SELECT $1::pg_catalog.jsonb AS o) s",
			  1, (Oid[]) {JSONBOID}, (Datum[]) {DirectFunctionCall1(jsonb_in, CStringGetDatum(def.options))},
			  NULL, false, SPI_OK_SELECT);
	new_params = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	reset = strcmp(old_params, new_params) != 0 || def.nfeatures != old_n ||
		(def.partition_by == NULL) != (old_partition == NULL) ||
		(def.partition_by && strcmp(def.partition_by, old_partition) != 0);
	for (int i = 0; !reset && i < old_n; i++)
		reset = strcmp(old_features[i], def.features[i]) != 0;

	{
		Oid			types[11] = {INT8OID, TEXTARRAYOID, TEXTOID, TEXTOID, JSONBOID, TEXTOID,
		JSONBOID, TEXTARRAYOID, TEXTOID, BOOLOID, INT8OID};
		Datum		args[11];
		char		nulls[12] = "           ";

		args[0] = Int64GetDatum(ex.id);
		args[1] = cstrings_to_array(def.features, def.nfeatures);
		args[2] = def.partition_by ? CStringGetTextDatum(def.partition_by) : (Datum) 0;
		nulls[2] = def.partition_by ? ' ' : 'n';
		args[3] = def.filter ? CStringGetTextDatum(def.filter) : (Datum) 0;
		nulls[3] = def.filter ? ' ' : 'n';
		args[4] = DirectFunctionCall1(jsonb_in, CStringGetDatum(def.options));
		args[5] = CStringGetTextDatum(def.search_path);
		args[6] = DirectFunctionCall1(jsonb_in, CStringGetDatum(def.source_columns));
		args[7] = def.nkeys > 0 ? cstrings_to_array(def.keys, def.nkeys) : (Datum) 0;
		nulls[7] = def.nkeys > 0 ? ' ' : 'n';
		args[8] = CStringGetTextDatum(def.source_name);
		args[9] = BoolGetDatum(reset);
		args[10] = Int64GetDatum(detect_new_token());
		detect_spi_exec("UPDATE anomaly.detectors SET features = $2, partition_by = $3, filter = $4,"
				  " options = $5, search_path = $6, source_columns = $7, key_columns = $8,"
				  " source_name = $9,"
				  " generation = generation OPERATOR(pg_catalog.+) CASE WHEN $10 THEN 1 ELSE 0 END,"
				  " round_token = CASE WHEN $10 THEN $11 ELSE round_token END,"
				  " checkpoint_seq = CASE WHEN $10 THEN batch_seq ELSE checkpoint_seq END,"
				  " journal_points = CASE WHEN $10 THEN 0 ELSE journal_points END"
				  " WHERE id OPERATOR(pg_catalog.=) $1", 11, types, args, nulls, false, SPI_OK_UPDATE);
		if (reset)
		{
			detect_spi_exec("DELETE FROM anomaly.detector_forests WHERE detector_id OPERATOR(pg_catalog.=) $1", 1,
					  (Oid[]) {INT8OID}, (Datum[]) {Int64GetDatum(ex.id)}, NULL, false, SPI_OK_DELETE);
			detect_spi_exec("DELETE FROM anomaly.detector_journal WHERE detector_id OPERATOR(pg_catalog.=) $1", 1,
					  (Oid[]) {INT8OID}, (Datum[]) {Int64GetDatum(ex.id)}, NULL, false, SPI_OK_DELETE);
		}
	}
	detect_sys_leave(&su);
	SPI_finish();
	detect_forget(ex.id);
	PG_RETURN_VOID();
}

/*
 * Adopts detector `name` if it was restored, when the caller may manage it
 * (the caller's own checks report a missing detector or a wrong owner).
 */
static void
adopt_by_name(const char *name, Oid caller)
{
	DetectSys	su;
	int64		id = 0;
	bool		found = false;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	detect_sys_enter(&su);
	detect_spi_exec("SELECT id, owner FROM anomaly.detectors WHERE name OPERATOR(pg_catalog.=) $1", 1,
					(Oid[]) {TEXTOID}, (Datum[]) {CStringGetTextDatum(name)}, NULL, true,
					SPI_OK_SELECT);
	if (SPI_processed > 0)
	{
		bool		isnull;

		id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		found = has_privs_of_role(caller,
								  DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0],
																 SPI_tuptable->tupdesc, 2, &isnull)));
	}
	detect_sys_leave(&su);
	SPI_finish();
	if (found && detect_adopt(id, false) == ADOPT_WAIT)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_IN_USE),
				 errmsg("detector \"%s\" was restored from a dump and pg_restore is still running", name),
				 errhint("Try again when the restore is complete.")));
}

/* ---------------------------------------------------------------------
 * pause, resume
 */
static void
set_state(const char *name, const char *state)
{
	Oid			caller = GetUserId();
	DetectSys			su;
	Existing	ex;

	if (strcmp(state, "active") == 0)
		adopt_by_name(name, caller);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	detect_sys_enter(&su);
	lock_detector(name, caller, false, &ex);
	if (strcmp(state, "active") == 0)
	{
		bool		exists;
		ReplicationSlot *s;
		bool		invalid = false;

		LWLockAcquire(ReplicationSlotControlLock, LW_SHARED);
		s = SearchNamedReplicationSlot(ex.slot, false);
		exists = s != NULL;
		if (s)
			invalid = s->data.invalidated_at != InvalidXLogRecPtr ||
				XLogRecPtrIsInvalid(s->data.restart_lsn);
		LWLockRelease(ReplicationSlotControlLock);
		if (!exists || invalid)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("replication slot \"%s\" of detector \"%s\" %s",
							ex.slot, name, exists ? "was invalidated" : "does not exist"),
					 errhint("reset_detector() creates a new slot; rows committed meanwhile are not scored.")));
		if (!SearchSysCacheExists1(RELOID, ObjectIdGetDatum(ex.source)))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_TABLE),
					 errmsg("source table of detector \"%s\" was dropped", name),
					 errhint("drop_detector() removes the detector.")));
	}
	detect_spi_exec("UPDATE anomaly.detectors SET state = $2,"
			  " error_count = CASE WHEN $2 OPERATOR(pg_catalog.=) 'active' THEN 0 ELSE error_count END"
			  " WHERE id OPERATOR(pg_catalog.=) $1", 2, (Oid[]) {INT8OID, TEXTOID},
			  (Datum[]) {Int64GetDatum(ex.id), CStringGetTextDatum(state)}, NULL, false, SPI_OK_UPDATE);
	detect_sys_leave(&su);
	SPI_finish();
}

Datum
anomaly_pause_detector(PG_FUNCTION_ARGS)
{
	set_state(text_to_cstring(PG_GETARG_TEXT_PP(0)), "paused");
	PG_RETURN_VOID();
}

Datum
anomaly_resume_detector(PG_FUNCTION_ARGS)
{
	set_state(text_to_cstring(PG_GETARG_TEXT_PP(0)), "active");
	PG_RETURN_VOID();
}

/* ---------------------------------------------------------------------
 * reset_detector
 */
Datum
anomaly_reset_detector(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	Oid			caller = GetUserId();
	DetectSys			su;
	Existing	ex;
	bool		isnull;
	char	   *slot;
	Oid			owner;
	ReplicationSlot *s;
	bool		exists;
	bool		invalid = false;

	adopt_by_name(name, caller);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	detect_sys_enter(&su);
	detect_spi_exec("SELECT slot_name::pg_catalog.text, owner FROM anomaly.detectors WHERE name OPERATOR(pg_catalog.=) $1", 1,
			  (Oid[]) {TEXTOID}, (Datum[]) {CStringGetTextDatum(name)}, NULL, false, SPI_OK_SELECT);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("detector \"%s\" does not exist", name)));
	slot = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	owner = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	if (!has_privs_of_role(caller, owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be the owner of detector \"%s\"", name)));

	/* A lost slot is made again, before this transaction writes. */
	LWLockAcquire(ReplicationSlotControlLock, LW_SHARED);
	s = SearchNamedReplicationSlot(slot, false);
	exists = s != NULL;
	if (s)
		invalid = s->data.invalidated_at != InvalidXLogRecPtr ||
			XLogRecPtrIsInvalid(s->data.restart_lsn);
	LWLockRelease(ReplicationSlotControlLock);
	if (invalid)
		detect_drop_slot(slot, true);
	if (!exists || invalid)
		detect_create_slot(slot);

	lock_detector(name, caller, false, &ex);
	detect_spi_exec("UPDATE anomaly.detectors SET generation = generation OPERATOR(pg_catalog.+) 1, round_token = $2,"
			  " checkpoint_seq = batch_seq, checkpoint_at = NULL, journal_points = 0,"
			  " rows_scored = 0, rows_filtered = 0, rows_failed = 0, rows_per_s = NULL,"
			  " error_count = 0, last_error = NULL, last_error_at = NULL,"
			  " progress_lsn = GREATEST(progress_lsn, $3),"
			  " state = CASE WHEN state OPERATOR(pg_catalog.=) 'failed' THEN 'active' ELSE state END"
			  " WHERE id OPERATOR(pg_catalog.=) $1", 3, (Oid[]) {INT8OID, INT8OID, PG_LSNOID},
			  (Datum[]) {Int64GetDatum(ex.id), Int64GetDatum(detect_new_token()),
	LSNGetDatum(detect_slot_confirmed(slot))}, NULL, false, SPI_OK_UPDATE);
	detect_spi_exec("DELETE FROM anomaly.detector_forests WHERE detector_id OPERATOR(pg_catalog.=) $1", 1,
			  (Oid[]) {INT8OID}, (Datum[]) {Int64GetDatum(ex.id)}, NULL, false, SPI_OK_DELETE);
	detect_spi_exec("DELETE FROM anomaly.detector_journal WHERE detector_id OPERATOR(pg_catalog.=) $1", 1,
			  (Oid[]) {INT8OID}, (Datum[]) {Int64GetDatum(ex.id)}, NULL, false, SPI_OK_DELETE);
	detect_sys_leave(&su);
	SPI_finish();
	detect_forget(ex.id);
	PG_RETURN_VOID();
}

/* ---------------------------------------------------------------------
 * drop_detector
 */
Datum
anomaly_drop_detector(PG_FUNCTION_ARGS)
{
	char	   *name;
	bool		if_exists = !PG_ARGISNULL(1) && PG_GETARG_BOOL(1);
	Oid			caller = GetUserId();
	DetectSys			su;
	Existing	ex;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("name must not be null")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	detect_sys_enter(&su);
	if (!lock_detector(name, caller, if_exists, &ex))
	{
		ereport(NOTICE,
				(errmsg("detector \"%s\" does not exist, skipping", name)));
		detect_sys_leave(&su);
		SPI_finish();
		PG_RETURN_VOID();
	}
	detect_spi_exec("DELETE FROM anomaly.detectors WHERE id OPERATOR(pg_catalog.=) $1", 1,
			  (Oid[]) {INT8OID}, (Datum[]) {Int64GetDatum(ex.id)}, NULL, false, SPI_OK_DELETE);
	detect_sys_leave(&su);
	SPI_finish();
	detect_forget(ex.id);

	/*
	 * The slot and origin of this database: a detector restored from
	 * another database of this cluster, not adopted yet, still names that
	 * database's.
	 */
	{
		char		slot[NAMEDATALEN];

		detect_object_name(slot, sizeof(slot), MyDatabaseId, ex.id);
		replorigin_drop_by_name(slot, true, false);
		/* slots.c does not release our own round's slot: we do. */
		if (MyReplicationSlot != NULL &&
			strcmp(NameStr(MyReplicationSlot->data.name), slot) == 0)
			detect_release();
		detect_drop_slot(slot, true);
	}
	PG_RETURN_VOID();
}

/* ---------------------------------------------------------------------
 * process(detector, max_rows)
 */
Datum
anomaly_process(PG_FUNCTION_ARGS)
{
	char	   *only = PG_ARGISNULL(0) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(0));
	int64		limit = PG_ARGISNULL(1) ? PG_INT64_MAX : PG_GETARG_INT32(1);
	Oid			caller = GetUserId();
	DetectSys			su;
	int64		total = 0;
	int			n;
	int64	   *ids;
	char	  **names;
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;

	if (limit <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_rows must be positive")));
	if (RecoveryInProgress())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("detectors cannot run during recovery")));

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	detect_sys_enter(&su);
	detect_spi_exec("SELECT id, name, owner, state FROM anomaly.detectors"
			  " WHERE $1::pg_catalog.text IS NULL OR name OPERATOR(pg_catalog.=) $1 ORDER BY name", 1,
			  (Oid[]) {TEXTOID}, (Datum[]) {only ? CStringGetTextDatum(only) : (Datum) 0},
			  only ? NULL : "n", false, SPI_OK_SELECT);
	if (only && SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("detector \"%s\" does not exist", only)));
	n = 0;
	ids = MemoryContextAlloc(cxt, sizeof(int64) * Max(SPI_processed, 1));
	names = MemoryContextAlloc(cxt, sizeof(char *) * Max(SPI_processed, 1));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		HeapTuple	t = SPI_tuptable->vals[i];
		TupleDesc	td = SPI_tuptable->tupdesc;
		Oid			owner_id = DatumGetObjectId(SPI_getbinval(t, td, 3, &isnull));
		char	   *state = SPI_getvalue(t, td, 4);

		if (!has_privs_of_role(caller, owner_id))
		{
			if (only)
				ereport(ERROR,
						(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
						 errmsg("must be the owner of detector \"%s\"", only)));
			continue;
		}
		if (strcmp(state, "active") != 0)
		{
			if (only)
				ereport(NOTICE,
						(errmsg("detector \"%s\" is %s", only, state)));
			continue;
		}
		ids[n] = DatumGetInt64(SPI_getbinval(t, td, 1, &isnull));
		names[n] = MemoryContextStrdup(cxt, SPI_getvalue(t, td, 2));
		n++;
	}
	detect_sys_leave(&su);
	SPI_finish();

	/*
	 * Restored detectors get their slot first: slots cannot be created once
	 * this transaction has written.
	 */
	if (!TransactionIdIsValid(GetTopTransactionIdIfAny()))
	{
		int			kept = 0;
		int			nwaiting = 0;
		int64	   *waiting = MemoryContextAlloc(cxt, sizeof(int64) * Max(n, 1));

		for (int i = 0; i < n; i++)
		{
			if (detect_adopt(ids[i], false) == ADOPT_WAIT)
			{
				ereport(NOTICE,
						(errmsg("detector \"%s\" was restored from a dump and waits for pg_restore to finish",
								names[i])));
				waiting[nwaiting++] = ids[i];
				continue;
			}
			ids[kept] = ids[i];
			names[kept] = names[i];
			kept++;
		}
		n = kept;
		/* Their notes are writes: after every slot was made. */
		for (int i = 0; i < nwaiting; i++)
			(void) detect_adopt(waiting[i], true);
	}

	/* Housekeeping: slots of aborted creations, old scores. */
	if (superuser())
		(void) detect_drop_orphan_slots();
	detect_apply_retention();

	for (int i = 0; i < n; i++)
	{
		int64		left = limit;

		BeginInternalSubTransaction(NULL);
		MemoryContextSwitchTo(cxt);
		PG_TRY();
		{
			DetectRoundResult r;

			do
			{
				int64		rows = 0;
				int			batch = (int) Min(left, (int64) detect_batch_rows);

				r = detect_round(ids[i], batch, true, &rows);
				total += rows;
				left -= rows;
			} while (r == ROUND_MORE && left > 0);
			if (r == ROUND_BUSY)
				ereport(NOTICE,
						(errmsg("detector \"%s\" is being processed by another process, skipped",
								names[i])));
			detect_release();
			ReleaseCurrentSubTransaction();
			MemoryContextSwitchTo(cxt);
			CurrentResourceOwner = owner;
		}
		PG_CATCH();
		{
			ErrorData  *edata;

			MemoryContextSwitchTo(cxt);
			edata = CopyErrorData();
			FlushErrorState();
			RollbackAndReleaseCurrentSubTransaction();
			MemoryContextSwitchTo(cxt);
			CurrentResourceOwner = owner;
			detect_after_abort();
			detect_record_error(ids[i], edata->message, unpack_sql_state(edata->sqlerrcode),
								detect_error_is_permanent(edata->sqlerrcode));
			ereport(WARNING,
					(errcode(edata->sqlerrcode),
					 errmsg("detector \"%s\": %s", names[i], edata->message),
					 edata->detail ? errdetail_internal("%s", edata->detail) : 0,
					 edata->hint ? errhint("%s", edata->hint) : 0));
			FreeErrorData(edata);
		}
		PG_END_TRY();
	}
	PG_RETURN_INT64(total);
}
