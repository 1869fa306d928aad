/*
 * options.c
 *	  A detector's options (the JSON of create_detector and alter_detector):
 *	  one table of them (options_list.h: name, type, range, default, help,
 *	  check) that reading, the error hint and the normalized JSON stored in
 *	  anomaly.detectors all follow.
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
	char	  **features;		/* their expressions */
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
static void check_fraction(const char *name, OptionValue *v, OptionContext *cx);

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

/*
 * "retention": a positive interval of at most 1000 years.  Every detector's
 * is applied in one statement (definition.c), as now() - retention: one
 * past the calendar ('170000000 years') failed it, and with it every
 * admin's process() and the scheduler's pass that starts the workers.
 */
static void
check_retention(const char *name, OptionValue *v, OptionContext *cx)
{
	Interval   *iv = DatumGetIntervalP(DirectFunctionCall3(interval_in,
														   CStringGetDatum(v->s),
														   ObjectIdGetDatum(InvalidOid),
														   Int32GetDatum(-1)));
	Interval   *most = DatumGetIntervalP(DirectFunctionCall3(interval_in,
															 CStringGetDatum("1000 years"),
															 ObjectIdGetDatum(InvalidOid),
															 Int32GetDatum(-1)));

	if (iv->month < 0 || iv->day < 0 || iv->time < 0 ||
		(iv->month == 0 && iv->day == 0 && iv->time == 0) ||
		DatumGetInt32(DirectFunctionCall2(interval_cmp, IntervalPGetDatum(iv),
										  IntervalPGetDatum(most))) > 0)
		option_error(name, "a positive interval of at most 1000 years");
}

/*
 * "feature_names": one per feature, each at most FEATURE_NAME_MAX bytes, as
 * a column name (a feature fills a destination's column of its name) and
 * the keys of every score's explanation.  A feature without a name is
 * named by its expression, of whatever length: the stored options hold
 * that name, and alter_detector reads them back here.
 */
static void
check_feature_names(const char *name, OptionValue *v, OptionContext *cx)
{
	ListCell   *lc;

	if (list_length(v->strs) != cx->nfeatures)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("feature_names must have one name per feature"),
				 errdetail("There are %d features and %d names.", cx->nfeatures,
						   list_length(v->strs))));
	foreach(lc, v->strs)
	{
		const char *s = lfirst(lc);
		int			i = foreach_current_index(lc);
		size_t		len = strlen(s);

		if (len > FEATURE_NAME_MAX && strcmp(s, cx->features[i]) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("feature name %d is too long", i + 1),
					 errdetail("A feature name is at most %d bytes; this one has %zu.",
							   FEATURE_NAME_MAX, len)));
	}
}

/* "bounding_box_cache_fraction": 0 .. 1. */
static void
check_fraction(const char *name, OptionValue *v, OptionContext *cx)
{
	if (!(v->f >= 0.0 && v->f <= 1.0))
		option_error(name, option_table[OPT_BOX_CACHE].help);
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
char *
detect_normalize_options(Jsonb *options, Relation rel, int nfeatures, char **features,
						 bool *start_all, bool *windowed)
{
	OptionValue vals[NUM_OPTIONS];
	OptionContext cx = {rel, nfeatures, features, false};
	RcfParams	params;
	AnomalyTransformSpec tspec;
	ArrayType  *tweights = NULL;
	int64		window,
				slide,
				lateness;
	char	   *late_rows;
	bool		stagger;

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
	stagger = vals[OPT_STAGGER].set && vals[OPT_STAGGER].b;
	/* false is the default: not stored, so that options stay canonical */
	vals[OPT_STAGGER].set = stagger;
	*windowed = window > 0;
	if (window == 0 && (slide || lateness || late_rows || stagger))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("options slide, stagger, allowed_lateness and late_rows need a window"),
				 errhint("Add a window, such as \"window\": \"1 minute\".")));
	if (window > 0)
	{
		/*
		 * A stagger window starts at its key's row: there is no slide.  The
		 * slide a tumbling detector stored (the window) is let through, so
		 * that alter_detector can turn stagger on.
		 */
		if (stagger && slide != 0 && slide != window)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("option \"slide\" cannot be used with stagger windows"),
					 errdetail("A key's stagger window opens at the event time of its first row that is in no open window of the key; windows do not hop."),
					 errhint("Leave slide out, or set it to null.")));
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
						  Int64GetDatum(vals[OPT_SEED].i), false,
						  vals[OPT_BOX_CACHE].set ? vals[OPT_BOX_CACHE].f : 1.0);
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

