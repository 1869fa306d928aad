/*
 * test_template.c
 *	  Alert message templates: placeholders replaced from a table, text
 *	  copied as it is, values never parsed again, and syntax errors.
 */
#include <string.h>

#include "unit.h"
#include "alert/template.h"

typedef struct Out
{
	char		buf[TEMPLATE_MAX_BYTES * 2];	/* more than any test writes */
	size_t		len;
	int			fields;
} Out;

static void
out_text(void *ctx, const char *s, size_t n)
{
	Out		   *o = ctx;

	memcpy(o->buf + o->len, s, n);
	o->len += n;
	o->buf[o->len] = '\0';
}

/* A table of values; a value may itself look like a placeholder. */
static const char *const table[][2] = {
	{"score", "3.25"},
	{"detector", "ticker"},
	{"row.price", "{{row.secret}}"},
	{"row.secret", "s3cret"},
	{"key.zone", "a"},
};

static void
out_field(void *ctx, const char *path, size_t n)
{
	Out		   *o = ctx;

	o->fields++;
	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
		if (strlen(table[i][0]) == n && memcmp(table[i][0], path, n) == 0)
			out_text(ctx, table[i][1], strlen(table[i][1]));
}

static const TemplateOps ops = {out_text, out_field};

/* Renders t; returns the error (NULL when none) and the output in o. */
static const char *
render(const char *t, Out *o, size_t *where)
{
	memset(o, 0, sizeof(*o));
	return template_walk(t, strlen(t), &ops, o, where);
}

static void
expect(const char *t, const char *want, const char *what)
{
	Out			o;
	size_t		where;
	const char *err = render(t, &o, &where);

	UNIT_OK(err == NULL, "%s: no error", what);
	UNIT_EQ_STR(o.buf, want, "%s", what);
}

static void
expect_error(const char *t, size_t at, const char *what)
{
	Out			o;
	size_t		where = 999;
	const char *err = render(t, &o, &where);

	UNIT_OK(err != NULL, "%s: refused", what);
	UNIT_EQ_INT((int) where, (int) at, "%s: error at byte %d", what, (int) at);
}

int
main(void)
{
	Out			o;
	size_t		where;

	expect("", "", "empty template");
	expect("no placeholders at all", "no placeholders at all", "plain text");
	expect("{{score}}", "3.25", "one placeholder");
	expect("Anomaly {{ score }} on {{detector}} ({{key.zone}})",
		   "Anomaly 3.25 on ticker (a)", "spaces inside braces, nested path");
	expect("{{missing}}|{{row.nope}}|", "||", "missing fields render empty");
	expect("price {{row.price}}", "price {{row.secret}}",
		   "a value that looks like a placeholder is not expanded");
	expect("json {\"a\": {\"b\": 1}} }}", "json {\"a\": {\"b\": 1}} }}",
		   "braces and a lone }} are text");
	expect("{{score}}{{score}}", "3.25""3.25", "adjacent placeholders");
	expect("line1\r\nline2 {{detector}}\n", "line1\r\nline2 ticker\n", "line breaks kept");
	expect("ünïcødé {{detector}} ✓", "ünïcødé ticker ✓", "UTF-8 text copied byte for byte");
	expect("{{_x}} {{a$b}} {{A.B_c.d9}}", "  ", "names with _, $, capitals and digits");

	render("{{score}} and {{detector}} and {{key.zone}}", &o, &where);
	UNIT_EQ_INT(o.fields, 3, "three fields looked up");

	/* no code: anything but names and dots is an error */
	expect_error("{{", 0, "open braces at the end");
	expect_error("x {{score", 2, "unclosed placeholder");
	expect_error("x {{score}", 2, "one closing brace");
	expect_error("{{}}", 0, "empty placeholder");
	expect_error("{{ }}", 0, "blank placeholder");
	expect_error("ok {{score + 1}}", 3, "an expression");
	expect_error("{{score|round}}", 0, "a filter");
	expect_error("{{f(x)}}", 0, "a call");
	expect_error("{{row['secret']}}", 0, "a subscript");
	expect_error("{{ row..secret }}", 0, "an empty name");
	expect_error("{{.score}}", 0, "a leading dot");
	expect_error("{{score.}}", 0, "a trailing dot");
	expect_error("{{1abc}}", 0, "a name starting with a digit");
	expect_error("{{#if score}}x{{/if}}", 0, "a block");
	expect_error("{{{score}}}", 0, "triple braces");
	expect_error("{{sc{{ore}}}}", 0, "nested braces");
	expect_error("a {{row.$x}}", 2, "a name starting with $");
	{
		char		zero[] = "ab\0{{score}}";

		UNIT_OK(template_walk(zero, sizeof(zero) - 1, &ops, &o, &where) != NULL,
				"a zero byte is refused");
		UNIT_EQ_INT((int) where, 2, "at its offset");
	}
	{
		static char big[TEMPLATE_MAX_BYTES + 2];
		static char path[TEMPLATE_MAX_PATH + 8];

		memset(big, 'x', TEMPLATE_MAX_BYTES);
		memset(&o, 0, sizeof(o));
		UNIT_OK(template_walk(big, TEMPLATE_MAX_BYTES, &ops, &o, &where) == NULL &&
				o.len == TEMPLATE_MAX_BYTES, "a template of the largest size is copied");
		big[TEMPLATE_MAX_BYTES] = 'x';
		UNIT_OK(template_walk(big, TEMPLATE_MAX_BYTES + 1, &ops, &o, &where) != NULL,
				"a longer template is refused");
		memset(path, 'a', sizeof(path));
		path[0] = '{';
		path[1] = '{';
		path[TEMPLATE_MAX_PATH + 3] = '}';
		path[TEMPLATE_MAX_PATH + 4] = '}';
		path[TEMPLATE_MAX_PATH + 5] = '\0';
		UNIT_OK(render(path, &o, &where) != NULL, "a path over 256 bytes is refused");
	}
	return unit_done();
}
