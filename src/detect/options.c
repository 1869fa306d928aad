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

/* How an option's JSON value is read (options_list.h). */
typedef enum OptionType
{
	OPTION_INT32,
	OPTION_INT64,
	OPTION_NUMBER,
	OPTION_BOOL,
	OPTION_TEXT,
	OPTION_TEXTS,
	OPTION_NUMBERS
} OptionType;

/* An option's value, as read and as stored in the normalized JSON. */
typedef struct OptionValue
{
	bool		set;			/* stored (given, or its default) */
	bool		isnull;			/* stored as null: a nullable option */
	int64		i;				/* OPTION_INT32, OPTION_INT64 */
	double		f;				/* OPTION_NUMBER */
	bool		b;				/* OPTION_BOOL */
	char	   *s;				/* OPTION_TEXT */
	List	   *strs;			/* OPTION_TEXTS */
	int			n;				/* OPTION_NUMBERS */
	double	   *nums;
} OptionValue;

/* What an option's check may need besides its value. */
typedef struct OptionContext
{
	Relation	source;
	int			nfeatures;
	bool		start_all;
} OptionContext;

typedef void (*OptionCheck) (const char *name, OptionValue *v, OptionContext *cx);

/* One row of options_list.h. */
typedef struct OptionDef
{
	const char *name;
	OptionType	type;
	bool		nullable;
	const char *default_json;
	const char *help;
	OptionCheck check;
} OptionDef;

static void check_operations(const char *name, OptionValue *v, OptionContext *cx);
static void check_retention(const char *name, OptionValue *v, OptionContext *cx);
static void check_feature_names(const char *name, OptionValue *v, OptionContext *cx);
static void check_time_column(const char *name, OptionValue *v, OptionContext *cx);
static void check_start(const char *name, OptionValue *v, OptionContext *cx);

#define DETECTOR_OPTION(id, name, type, nullable, dflt, help, check) OPT_##id,
typedef enum OptionId
{
#include "detect/options_list.h"
	NUM_OPTIONS
} OptionId;
#undef DETECTOR_OPTION

#define DETECTOR_OPTION(id, name, type, nullable, dflt, help, check) \
	{name, type, nullable, dflt, help, check},
static const OptionDef option_table[NUM_OPTIONS] = {
#include "detect/options_list.h"
};
#undef DETECTOR_OPTION

/* The grader's options are these rows, in anomaly_grader_params' order. */
#define FIRST_GRADER_OPTION OPT_Z_FACTOR
StaticAssertDecl(OPT_CUSUM_THRESHOLD - OPT_Z_FACTOR + 1 == ANOMALY_GRADER_ARGS,
				 "the grader's options are the rows from z_factor to cusum_threshold");

static void
option_error(const char *name, const char *want)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("option \"%s\" must be %s", name, want)));
}

/* A number of a JSON value. */
static double
json_number(const char *name, JsonbValue *v)
{
	if (v->type != jbvNumeric)
		option_error(name, "a number");
	return DatumGetFloat8(DirectFunctionCall1(numeric_float8, NumericGetDatum(v->val.numeric)));
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

/*
 * The elements of a JSON array, each checked by its type (jbvNumeric or
 * jbvString); a single string counts as an array of one when
 * string_alone.
 */
static List *
json_elements(const char *name, JsonbValue *v, enum jbvType type, bool string_alone,
			  const char *want)
{
	List	   *out = NIL;

	if (string_alone && v->type == jbvString)
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
				if (e.type != type)
					option_error(name, want);
				out = lappend(out, type == jbvString ?
							  (void *) pnstrdup(e.val.string.val, e.val.string.len) :
							  (void *) DatumGetNumericCopy(NumericGetDatum(e.val.numeric)));
			}
			else if (tok == WJB_BEGIN_OBJECT)
				option_error(name, want);
		}
		if (array)
			return out;
	}
	option_error(name, want);
	return NIL;
}

/* Reads v, the value of option o, by its type; then checks it. */
static void
read_option(const OptionDef *o, JsonbValue *v, OptionValue *out, OptionContext *cx)
{
	memset(out, 0, sizeof(*out));
	out->set = true;
	switch (o->type)
	{
		case OPTION_INT32:
		case OPTION_INT64:
			out->i = json_int(o->name, v);
			break;
		case OPTION_NUMBER:
			out->f = json_number(o->name, v);
			break;
		case OPTION_BOOL:
			if (v->type != jbvBool)
				option_error(o->name, o->help);
			out->b = v->val.boolean;
			break;
		case OPTION_TEXT:
			if (v->type != jbvString)
				option_error(o->name, o->help);
			out->s = pnstrdup(v->val.string.val, v->val.string.len);
			break;
		case OPTION_TEXTS:
			out->strs = json_elements(o->name, v, jbvString, true, o->help);
			break;
		case OPTION_NUMBERS:
			{
				List	   *nums = json_elements(o->name, v, jbvNumeric, false, o->help);
				ListCell   *lc;

				out->nums = palloc(sizeof(double) * Max(list_length(nums), 1));
				foreach(lc, nums)
					out->nums[out->n++] = DatumGetFloat8(DirectFunctionCall1(numeric_float8,
																			 NumericGetDatum(lfirst(lc))));
				break;
			}
	}
	if (o->check)
		o->check(o->name, out, cx);
}

/* Reads option o's default (its JSON text) as if it were given. */
static void
read_default(const OptionDef *o, OptionValue *out, OptionContext *cx)
{
	Jsonb	   *jb = DatumGetJsonbP(DirectFunctionCall1(jsonb_in,
														CStringGetDatum(o->default_json)));
	JsonbValue	v;

	if (JB_ROOT_IS_SCALAR(jb))
		JsonbExtractScalar(&jb->root, &v);
	else
	{
		v.type = jbvBinary;
		v.val.binary.data = &jb->root;
		v.val.binary.len = VARSIZE(jb) - VARHDRSZ;
	}
	read_option(o, &v, out, cx);
}

/* "Options are a, b, ... and z.": the table's names. */
static char *
options_hint(void)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoString(&buf, "Options are ");
	for (int i = 0; i < NUM_OPTIONS; i++)
		appendStringInfo(&buf, "%s%s", i == 0 ? "" : i == NUM_OPTIONS - 1 ? " and " : ", ",
						 option_table[i].name);
	appendStringInfoChar(&buf, '.');
	return buf.data;
}

/* "operations": "insert" and/or "update", stored in that order. */
static void
check_operations(const char *name, OptionValue *v, OptionContext *cx)
{
	bool		ins = false,
				upd = false;
	ListCell   *lc;

	foreach(lc, v->strs)
	{
		char	   *op = lfirst(lc);

		if (strcmp(op, "insert") == 0)
			ins = true;
		else if (strcmp(op, "update") == 0)
			upd = true;
		else
			option_error(name, "a list of \"insert\" and \"update\"");
	}
	if (!ins && !upd)
		option_error(name, "a non-empty list of \"insert\" and \"update\"");
	v->strs = NIL;
	if (ins)
		v->strs = lappend(v->strs, "insert");
	if (upd)
		v->strs = lappend(v->strs, "update");
}

/* "retention": a positive interval. */
static void
check_retention(const char *name, OptionValue *v, OptionContext *cx)
{
	Interval   *iv = DatumGetIntervalP(DirectFunctionCall3(interval_in,
														   CStringGetDatum(v->s),
														   ObjectIdGetDatum(InvalidOid),
														   Int32GetDatum(-1)));

	if (iv->month < 0 || iv->day < 0 || iv->time < 0 ||
		(iv->month == 0 && iv->day == 0 && iv->time == 0))
		option_error(name, "a positive interval");
}

/* "feature_names": one per feature. */
static void
check_feature_names(const char *name, OptionValue *v, OptionContext *cx)
{
	if (list_length(v->strs) != cx->nfeatures)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("feature_names must have one name per feature"),
				 errdetail("There are %d features and %d names.", cx->nfeatures,
						   list_length(v->strs))));
}

/* "start": "now" (stored as nothing: the default) or "all". */
static void
check_start(const char *name, OptionValue *v, OptionContext *cx)
{
	if (strcmp(v->s, "now") != 0 && strcmp(v->s, "all") != 0)
		option_error(name, option_table[OPT_START].help);
	cx->start_all = v->s[0] == 'a';
	v->set = cx->start_all;
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
		option_error("destination", option_table[OPT_DESTINATION].help);
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
 * "time_column": a column of the source of type timestamp with or without
 * time zone.
 */
static void
check_time_column(const char *name, OptionValue *v, OptionContext *cx)
{
	Oid			relid = RelationGetRelid(cx->source);
	AttrNumber	attnum = get_attnum(relid, v->s);
	Oid			type = attnum == InvalidAttrNumber ? InvalidOid :
		get_atttype(relid, attnum);

	if (attnum == InvalidAttrNumber || attnum < 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("time_column \"%s\" is not a column of \"%s\"", v->s,
						RelationGetRelationName(cx->source))));
	if (type != TIMESTAMPTZOID && type != TIMESTAMPOID)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("time_column \"%s\" is of type %s", v->s, format_type_be(type)),
				 errhint("The time column must be of type timestamp with time zone, or timestamp (taken as UTC).")));
}

/* The stored options as JSON text: every option set, by its type. */
static char *
options_json(OptionValue *vals)
{
	StringInfoData buf;
	bool		first = true;
	ListCell   *lc;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	for (int i = 0; i < NUM_OPTIONS; i++)
	{
		const OptionDef *o = &option_table[i];
		OptionValue *v = &vals[i];

		if (!v->set)
			continue;
		if (!first)
			appendStringInfoString(&buf, ", ");
		first = false;
		escape_json(&buf, o->name);
		appendStringInfoString(&buf, ": ");
		if (v->isnull)
		{
			appendStringInfoString(&buf, "null");
			continue;
		}
		switch (o->type)
		{
			case OPTION_INT32:
			case OPTION_INT64:
				appendStringInfo(&buf, INT64_FORMAT, v->i);
				break;
			case OPTION_NUMBER:
				appendStringInfoString(&buf, float8out_internal(v->f));
				break;
			case OPTION_BOOL:
				appendStringInfoString(&buf, v->b ? "true" : "false");
				break;
			case OPTION_TEXT:
				escape_json(&buf, v->s);
				break;
			case OPTION_TEXTS:
				appendStringInfoChar(&buf, '[');
				foreach(lc, v->strs)
				{
					if (lc != list_head(v->strs))
						appendStringInfoString(&buf, ", ");
					escape_json(&buf, lfirst(lc));
				}
				appendStringInfoChar(&buf, ']');
				break;
			case OPTION_NUMBERS:
				appendStringInfoChar(&buf, '[');
				for (int k = 0; k < v->n; k++)
					appendStringInfo(&buf, "%s%s", k > 0 ? ", " : "",
									 float8out_internal(v->nums[k]));
				appendStringInfoChar(&buf, ']');
				break;
		}
	}
	appendStringInfoChar(&buf, '}');
	return buf.data;
}

/* A window option's interval in microseconds (0: not given). */
static int64
window_option(OptionValue *vals, OptionId id, bool zero_ok)
{
	JsonbValue	jv;

	if (!vals[id].set)
		return 0;
	jv.type = jbvString;
	jv.val.string.val = vals[id].s;
	jv.val.string.len = strlen(vals[id].s);
	return detect_window_interval(option_table[id].name, &jv, zero_ok);
}

/*
 * Checks options and returns them normalized (every option, with its
 * default) as JSON text.
 */
static char *
normalize_options(Jsonb *options, Relation rel, int nfeatures, char **features,
				  bool *start_all, bool *windowed)
{
	OptionValue vals[NUM_OPTIONS];
	OptionContext cx = {rel, nfeatures, false};
	RcfParams	params;
	AnomalyTransformSpec tspec;
	ArrayType  *tweights = NULL;
	int64		window,
				slide,
				lateness;
	char	   *late_rows;

	memset(vals, 0, sizeof(vals));
	if (options != NULL)
	{
		JsonbIterator *it;
		JsonbValue	v;
		JsonbIteratorToken tok;
		int			opt = -1;

		if (!JB_ROOT_IS_OBJECT(options))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("options must be a JSON object")));
		it = JsonbIteratorInit(&options->root);
		while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		{
			if (tok == WJB_KEY)
			{
				char	   *key = pnstrdup(v.val.string.val, v.val.string.len);

				for (opt = 0; opt < NUM_OPTIONS; opt++)
					if (strcmp(option_table[opt].name, key) == 0)
						break;
				if (opt == NUM_OPTIONS)
					ereport(ERROR,
							(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							 errmsg("unknown detector option \"%s\"", key),
							 errhint("%s", options_hint())));
				continue;
			}
			if (tok != WJB_VALUE)
				continue;
			if (v.type == jbvNull)
			{
				/* null: the default, or null itself where it means something */
				vals[opt].set = vals[opt].isnull = option_table[opt].nullable;
				continue;
			}
			read_option(&option_table[opt], &v, &vals[opt], &cx);
		}
	}
	for (int i = 0; i < NUM_OPTIONS; i++)
		if (!vals[i].set && !vals[i].isnull && option_table[i].default_json)
			read_default(&option_table[i], &vals[i], &cx);
	*start_all = cx.start_all;

	/* Unnamed features are named by their expressions. */
	if (!vals[OPT_FEATURE_NAMES].set)
	{
		vals[OPT_FEATURE_NAMES].set = true;
		for (int i = 0; i < nfeatures; i++)
			vals[OPT_FEATURE_NAMES].strs = lappend(vals[OPT_FEATURE_NAMES].strs, features[i]);
	}

	/* Windows: their intervals as microseconds, then checked together. */
	window = window_option(vals, OPT_WINDOW, false);
	slide = window_option(vals, OPT_SLIDE, false);
	lateness = window_option(vals, OPT_ALLOWED_LATENESS, true);
	late_rows = vals[OPT_LATE_ROWS].set ? vals[OPT_LATE_ROWS].s : NULL;
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
			vals[OPT_LATE_ROWS].s = detect_window_check_late_rows(late_rows, rel);
		/* Stored with what they default to: the slide, no lateness. */
		vals[OPT_WINDOW].s = detect_window_interval_text(window);
		vals[OPT_SLIDE].set = true;
		vals[OPT_SLIDE].s = detect_window_interval_text(slide);
		vals[OPT_ALLOWED_LATENESS].set = true;
		vals[OPT_ALLOWED_LATENESS].s = detect_window_interval_text(lateness);
	}

	/* Checked once every option is known: the features' names fill it too. */
	if (vals[OPT_DESTINATION].set)
		vals[OPT_DESTINATION].s = check_destination(vals[OPT_DESTINATION].s, rel,
													vals[OPT_FEATURE_NAMES].strs,
													window > 0);

	if (vals[OPT_TREES].i < INT_MIN || vals[OPT_TREES].i > INT_MAX ||
		vals[OPT_SAMPLES].i < INT_MIN || vals[OPT_SAMPLES].i > INT_MAX ||
		vals[OPT_SHINGLE].i < INT_MIN || vals[OPT_SHINGLE].i > INT_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("forest parameters are out of range")));
	anomaly_forest_params(&params, nfeatures,
						  Int32GetDatum((int32) vals[OPT_TREES].i), false,
						  Int32GetDatum((int32) vals[OPT_SAMPLES].i), false,
						  Int64GetDatum(vals[OPT_DECAY].i), false,
						  Int32GetDatum((int32) vals[OPT_SHINGLE].i), false,
						  Int64GetDatum(vals[OPT_SEED].i), false);
	{
		NullableDatum gargs[ANOMALY_GRADER_ARGS];
		RcfGraderParams gp;

		for (int i = 0; i < ANOMALY_GRADER_ARGS; i++)
		{
			OptionValue *v = &vals[FIRST_GRADER_OPTION + i];

			gargs[i].isnull = false;
			if (option_table[FIRST_GRADER_OPTION + i].type == OPTION_INT32)
			{
				if (v->i < INT_MIN || v->i > INT_MAX)
					option_error(option_table[FIRST_GRADER_OPTION + i].name,
								 "an integer between 0 and 1000000");
				gargs[i].value = Int32GetDatum((int32) v->i);
			}
			else
				gargs[i].value = Float8GetDatum(v->f);
		}
		anomaly_grader_params(&gp, gargs);
	}
	/*
	 * detect()'s default decay, written out with a transform; a detector
	 * stored without one (transform none, or older) keeps its meaning.
	 */
	if (!vals[OPT_TRANSFORM_DECAY].set && strcmp(vals[OPT_TRANSFORM].s, "none") != 0)
	{
		vals[OPT_TRANSFORM_DECAY].set = true;
		vals[OPT_TRANSFORM_DECAY].f = ANOMALY_TRANSFORM_DEFAULT_DECAY;
	}
	if (vals[OPT_TRANSFORM_WEIGHTS].set)
	{
		Datum	   *elems = palloc(sizeof(Datum) * Max(vals[OPT_TRANSFORM_WEIGHTS].n, 1));

		for (int i = 0; i < vals[OPT_TRANSFORM_WEIGHTS].n; i++)
			elems[i] = Float8GetDatum(vals[OPT_TRANSFORM_WEIGHTS].nums[i]);
		tweights = construct_array(elems, vals[OPT_TRANSFORM_WEIGHTS].n, FLOAT8OID, 8,
								   FLOAT8PASSBYVAL, TYPALIGN_DOUBLE);
	}
	anomaly_transform_spec(&tspec, vals[OPT_TRANSFORM].s, !vals[OPT_TRANSFORM_DECAY].set,
						   vals[OPT_TRANSFORM_DECAY].f, tweights,
						   nfeatures, params.sample_size);
	return options_json(vals);
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
