/*
 * template_sql.c
 *	  The alert templates' SQL functions: rendering a template over a
 *	  notification's payload, and listing the fields a template uses.
 *
 * The parser is src/alert/template.c; here a field's path is looked up in
 * the payload (jsonb), name by name.  A string is inserted as it is, a
 * number or boolean as JSON writes it, an object or array as compact JSON,
 * and null or a missing field as nothing.  Nothing is evaluated: a value is
 * appended to the output and never parsed again.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

#include "alert/template.h"
#include "compat.h"

PG_FUNCTION_INFO_V1(anomaly_alert_render_template);
PG_FUNCTION_INFO_V1(anomaly_alert_template_fields);

/* Longest rendered text; more is cut (at a character boundary). */
#define RENDERED_MAX_BYTES 262144

typedef struct RenderState
{
	StringInfoData out;
	Jsonb	   *payload;
	bool		full;			/* RENDERED_MAX_BYTES reached */
} RenderState;

/* Appends n bytes, up to the limit. */
static void
append_limited(RenderState *st, const char *s, size_t n)
{
	size_t		room;

	if (st->full)
		return;
	room = RENDERED_MAX_BYTES - st->out.len;
	if (n > room)
	{
		n = pg_mbcliplen(s, (int) n, (int) room);
		st->full = true;
	}
	appendBinaryStringInfo(&st->out, s, (int) n);
}

static void
render_text(void *ctx, const char *s, size_t n)
{
	append_limited((RenderState *) ctx, s, n);
}

/*
 * Appends the text of one JSON value (see the header comment).  The text
 * made for a number, an object or an array is freed at once: a template
 * may name one large value thousands of times.
 */
static void
append_value(RenderState *st, JsonbValue *v)
{
	char	   *s;

	switch (v->type)
	{
		case jbvString:
			append_limited(st, v->val.string.val, v->val.string.len);
			return;
		case jbvNumeric:
			s = DatumGetCString(DirectFunctionCall1(numeric_out,
													NumericGetDatum(v->val.numeric)));
			break;
		case jbvBool:
			s = v->val.boolean ? "true" : "false";
			append_limited(st, s, strlen(s));
			return;
		case jbvBinary:
			s = JsonbToCString(NULL, v->val.binary.data, v->val.binary.len);
			break;
		default:
			return;				/* null */
	}
	append_limited(st, s, strlen(s));
	pfree(s);
}

/*
 * Looks path up in the payload and appends its value, if any; nothing once
 * the output is full (no value is looked up or written out for nothing).
 */
static void
render_field(void *ctx, const char *path, size_t n)
{
	RenderState *st = ctx;
	JsonbContainer *container = &st->payload->root;
	JsonbValue	v;
	size_t		i = 0;

	if (st->full || !JsonContainerIsObject(container))
		return;
	for (;;)
	{
		size_t		j = i;

		while (j < n && path[j] != '.')
			j++;
		if (getKeyJsonValueFromContainer(container, path + i, (int) (j - i), &v) == NULL)
			return;
		if (j == n)
			break;
		if (v.type != jbvBinary || !JsonContainerIsObject(v.val.binary.data))
			return;
		container = v.val.binary.data;
		i = j + 1;
	}
	append_value(st, &v);
}

/* Raises a template's syntax error, pointing at its offset. */
static void
syntax_error(const char *err, text *tmpl, size_t where)
{
	char	   *s = text_to_cstring(tmpl);
	int			chars = pg_mbstrlen_with_len(s, (int) where);

	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid alert template: %s", err),
			 errdetail("At character %d of the template.", chars + 1),
			 errhint("A template is text with placeholders such as {{score}}, {{detector}} or {{row.price}}; nothing else is interpreted.")));
}

/*
 * SQL: anomaly._render_template(template text, payload jsonb) -> text.
 * Owner only (alert rules' notifications).
 */
Datum
anomaly_alert_render_template(PG_FUNCTION_ARGS)
{
	text	   *tmpl = PG_GETARG_TEXT_PP(0);
	static const TemplateOps ops = {render_text, render_field};
	RenderState st;
	const char *err;
	size_t		where;

	st.payload = PG_GETARG_JSONB_P(1);
	st.full = false;
	initStringInfo(&st.out);
	err = template_walk(VARDATA_ANY(tmpl), VARSIZE_ANY_EXHDR(tmpl), &ops, &st,
						&where);
	if (err != NULL)
		syntax_error(err, tmpl, where);
	PG_RETURN_TEXT_P(cstring_to_text_with_len(st.out.data, st.out.len));
}

/* Collects a field's path. */
static void
collect_field(void *ctx, const char *path, size_t n)
{
	ArrayBuildState *astate = *(ArrayBuildState **) ctx;
	Datum		d = PointerGetDatum(cstring_to_text_with_len(path, (int) n));

	*(ArrayBuildState **) ctx = accumArrayResult(astate, d, false, TEXTOID,
												 CurrentMemoryContext);
}

/*
 * SQL: anomaly._template_fields(template text) -> text[]: the paths of the
 * template's placeholders, in order (an empty array when none); raises the
 * syntax error of an invalid template.  Owner only (create_alert_rule).
 */
Datum
anomaly_alert_template_fields(PG_FUNCTION_ARGS)
{
	text	   *tmpl = PG_GETARG_TEXT_PP(0);
	static const TemplateOps ops = {NULL, collect_field};
	ArrayBuildState *astate = NULL;
	const char *err;
	size_t		where;

	err = template_walk(VARDATA_ANY(tmpl), VARSIZE_ANY_EXHDR(tmpl), &ops, &astate,
						&where);
	if (err != NULL)
		syntax_error(err, tmpl, where);
	if (astate == NULL)
		PG_RETURN_ARRAYTYPE_P(construct_empty_array(TEXTOID));
	PG_RETURN_DATUM(makeArrayResult(astate, CurrentMemoryContext));
}
