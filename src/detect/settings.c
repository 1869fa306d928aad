/*
 * settings.c
 *	  The settings a detector's expressions run under: its creator's,
 *	  captured when it is defined and kept in anomaly.detectors.settings,
 *	  never those of the session that runs a round.
 *
 * A round runs in whatever session calls process() or in a detector
 * worker, whose settings come from postgresql.conf, the database's ALTER
 * DATABASE ... SET (its owner's to write, no superuser), the role's, and
 * the caller's own SET.  The owner's expressions give other values under
 * other settings: a timestamptz as text (a partition key) under another
 * TimeZone or DateStyle is another key, so another forest, with the
 * entity's history split between the two; a float as text is cut by
 * extra_float_digits; extract(hour FROM ts) moves with TimeZone; a literal
 * reads differently under standard_conforming_strings.  So every setting
 * below that changes what an expression computes is captured from the
 * session that creates the detector (alter_detector keeps them), may be
 * given in the options ({"settings": {"TimeZone": "UTC"}}), and is set in
 * the owner context's own GUC nest (sysctx.c) whoever runs the round.
 *
 * The same table holds fixed values for the text conversions the
 * extension itself makes and reads back in another session (a windowed
 * detector's buffered rows, a backfill's last key): those are pinned to
 * them (detect_settings_pin_fixed), so text written under one session's
 * settings reads back the same in another's.  A name missing from a
 * stored set of settings (written by an older version) gets its fixed
 * value too: never the session's.
 */
#include "postgres.h"

#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

#include "detect/detect.h"

/*
 * Each setting that changes what an expression computes or how its text
 * reads, with the fixed value of the extension's own conversions.  The
 * update from 0.1.0 (src/sql/updates/0.1.0--0.2.0.sql) lists the same
 * names for the detectors it updates.
 */
static const char *const detector_settings[][2] = {
	/* dates, times and intervals as text, and read from text */
	{"DateStyle", "ISO, YMD"},
	{"IntervalStyle", "postgres"},
	{"TimeZone", "UTC"},
	{"timezone_abbreviations", "Default"},
	/* floats as text */
	{"extra_float_digits", "1"},
	/* other types as text */
	{"bytea_output", "hex"},
	{"xmlbinary", "base64"},
	{"xmloption", "content"},
	{"array_nulls", "on"},
	{"quote_all_identifiers", "off"},
	/* locale-dependent formatting: money, to_char */
	{"lc_monetary", "C"},
	{"lc_numeric", "C"},
	{"lc_time", "C"},
	/* to_tsvector(text) and friends without a configuration */
	{"default_text_search_config", "pg_catalog.simple"},
	/* how an expression's text is parsed */
	{"standard_conforming_strings", "on"},
	{"transform_null_equals", "off"},
};

StaticAssertDecl(lengthof(detector_settings) == DETECT_NSETTINGS,
				 "DETECT_NSETTINGS counts the rows of detector_settings");

/* The index of a setting's name (case-insensitive, as GUC names), or -1. */
static int
setting_index(const char *name, int len)
{
	for (int i = 0; i < DETECT_NSETTINGS; i++)
		if (strlen(detector_settings[i][0]) == (size_t) len &&
			pg_strncasecmp(detector_settings[i][0], name, len) == 0)
			return i;
	return -1;
}

/* A JSON value of a setting as text: a string, a number or a boolean. */
static char *
json_setting_text(const char *name, JsonbValue *v)
{
	switch (v->type)
	{
		case jbvString:
			return pnstrdup(v->val.string.val, v->val.string.len);
		case jbvNumeric:
			return DatumGetCString(DirectFunctionCall1(numeric_out,
													   NumericGetDatum(v->val.numeric)));
		case jbvBool:
			return pstrdup(v->val.boolean ? "on" : "off");
		default:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("setting \"%s\" must be a string, a number or a boolean", name)));
	}
	return NULL;				/* keep the compiler quiet */
}

/*
 * Reads a settings object into s->values (by the table's order; names not
 * in the table: an error when strict, else skipped).
 */
static void
read_settings(Jsonb *j, DetectSettings *s, bool strict)
{
	JsonbIterator *it;
	JsonbValue	k;
	JsonbValue	v;
	JsonbIteratorToken tok;

	if (!JB_ROOT_IS_OBJECT(j))
	{
		if (strict)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("option \"settings\" must be an object of settings and their values"),
					 errhint("For example {\"settings\": {\"TimeZone\": \"UTC\"}}.")));
		return;
	}
	it = JsonbIteratorInit(&j->root);
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		int			i;
		char	   *name;

		if (tok != WJB_KEY)
			continue;
		name = pnstrdup(k.val.string.val, k.val.string.len);
		tok = JsonbIteratorNext(&it, &v, true);
		Assert(tok == WJB_VALUE);
		i = setting_index(k.val.string.val, k.val.string.len);
		if (i < 0)
		{
			if (strict)
			{
				StringInfoData names;

				initStringInfo(&names);
				for (int n = 0; n < DETECT_NSETTINGS; n++)
					appendStringInfo(&names, "%s%s", n > 0 ? ", " : "", detector_settings[n][0]);
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("\"%s\" is not a setting a detector keeps", name),
						 errdetail("A detector's expressions run under its own %s.", names.data)));
			}
			continue;
		}
		if (v.type == jbvNull)
			continue;
		s->values[i] = json_setting_text(detector_settings[i][0], &v);
	}
}

DetectSettings *
detect_settings_parse(Jsonb *stored)
{
	DetectSettings *s = palloc0(sizeof(DetectSettings));

	if (stored != NULL)
		read_settings(stored, s, false);
	return s;
}

/*
 * The settings of a definition: given (the options' "settings" object, or
 * NULL), else stored (alter_detector: the detector's, or NULL), else
 * fallback (NULL: the current session's).  Each given value is checked as
 * SET would check it.  Returns the JSON text of every setting.
 */
char *
detect_settings_define(Jsonb *given, Jsonb *stored, Jsonb *fallback)
{
	DetectSettings old;
	DetectSettings new;
	DetectSettings session;
	StringInfoData buf;

	memset(&old, 0, sizeof(old));
	memset(&new, 0, sizeof(new));
	memset(&session, 0, sizeof(session));
	if (fallback != NULL)
		read_settings(fallback, &session, false);
	if (stored != NULL)
		read_settings(stored, &old, false);
	if (given != NULL)
		read_settings(given, &new, true);
	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	for (int i = 0; i < DETECT_NSETTINGS; i++)
	{
		const char *name = detector_settings[i][0];
		const char *value = new.values[i];

		if (value != NULL)
			(void) set_config_option(name, value, PGC_USERSET, PGC_S_SESSION,
									 GUC_ACTION_SET, false, ERROR, false);
		else if (old.values[i] != NULL)
			value = old.values[i];
		else if (session.values[i] != NULL)
			value = session.values[i];
		else
			value = GetConfigOption(name, false, false);
		if (i > 0)
			appendStringInfoString(&buf, ", ");
		escape_json(&buf, name);
		appendStringInfoString(&buf, ": ");
		escape_json(&buf, value);
	}
	appendStringInfoChar(&buf, '}');
	return buf.data;
}

/* Error context: which setting was being applied. */
static void
apply_context(void *arg)
{
	errcontext("while applying the detector's setting %s", (const char *) arg);
}

/*
 * Sets every setting of the table to s's value (its fixed one when s has
 * none, or s is NULL) in the current GUC nest, which the caller opened
 * and throws away.
 */
void
detect_settings_apply(const DetectSettings *s)
{
	ErrorContextCallback cb;

	cb.callback = apply_context;
	cb.previous = error_context_stack;
	error_context_stack = &cb;
	for (int i = 0; i < DETECT_NSETTINGS; i++)
	{
		const char *value = s && s->values[i] ? s->values[i] : detector_settings[i][1];
		const char *cur = GetConfigOption(detector_settings[i][0], false, false);

		/* Equal already (the common case): no check hook runs again. */
		if (cur != NULL && strcmp(cur, value) == 0)
			continue;
		cb.arg = (void *) detector_settings[i][0];
		(void) set_config_option(detector_settings[i][0], value, PGC_USERSET,
								 PGC_S_SESSION, GUC_ACTION_SAVE, true, ERROR, false);
	}
	error_context_stack = cb.previous;
}

int
detect_settings_pin_fixed(void)
{
	int			nest = NewGUCNestLevel();

	detect_settings_apply(NULL);
	return nest;
}

/*
 * Splits a create_detector or alter_detector options argument into the
 * options proper and their "settings" object (*settings: NULL when none).
 */
Jsonb *
detect_settings_split_options(Jsonb *options, Jsonb **settings)
{
	Datum		key = CStringGetTextDatum("settings");
	Datum		field;

	*settings = NULL;
	if (options == NULL || !JB_ROOT_IS_OBJECT(options))
		return options;
	field = DirectFunctionCall2(jsonb_exists, JsonbPGetDatum(options), key);
	if (!DatumGetBool(field))
		return options;
	*settings = DatumGetJsonbP(DirectFunctionCall2(jsonb_object_field,
												   JsonbPGetDatum(options), key));
	if (JB_ROOT_IS_SCALAR(*settings))
	{
		JsonbValue	v;

		/* null: none given */
		if (JsonbExtractScalar(&(*settings)->root, &v) && v.type == jbvNull)
			*settings = NULL;
	}
	return DatumGetJsonbP(DirectFunctionCall2(jsonb_delete, JsonbPGetDatum(options), key));
}
