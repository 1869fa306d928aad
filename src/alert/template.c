/*
 * template.c
 *	  Alert message templates (see template.h): the parser.
 *
 * One pass over the bytes.  Text between placeholders is handed over in
 * runs; a placeholder's path is checked name by name and handed over with
 * the surrounding spaces trimmed.  Bytes other than the delimiters are
 * never interpreted, so a value cannot become part of the template: values
 * are appended by the caller, after parsing, and never parsed again.
 */
#include "alert/template.h"

/* First byte of a name. */
static bool
name_start(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}

/* Any other byte of a name. */
static bool
name_char(char c)
{
	return name_start(c) || (c >= '0' && c <= '9') || c == '$';
}

/*
 * Checks a path: names separated by single dots.  Returns NULL or the
 * error.
 */
static const char *
check_path(const char *p, size_t n)
{
	size_t		i = 0;

	if (n == 0)
		return "empty placeholder";
	if (n > TEMPLATE_MAX_PATH)
		return "placeholder path too long";
	for (;;)
	{
		if (i >= n || !name_start(p[i]))
			return "a placeholder holds only names separated by dots, each starting with a letter or \"_\"";
		while (i < n && name_char(p[i]))
			i++;
		if (i == n)
			return NULL;
		if (p[i] != '.')
			return "a placeholder holds only names separated by dots, each starting with a letter or \"_\"";
		i++;
	}
}

const char *
template_walk(const char *tmpl, size_t len, const TemplateOps *ops, void *ctx,
			  size_t *where)
{
	size_t		i = 0;
	size_t		run = 0;		/* start of the pending text */

	*where = 0;
	if (len > TEMPLATE_MAX_BYTES)
		return "template too long (at most 16384 bytes)";
	while (i < len)
	{
		size_t		open,
					start,
					end,
					close;
		const char *err;

		if (tmpl[i] == '\0')
		{
			*where = i;
			return "template contains a zero byte";
		}
		if (!(tmpl[i] == '{' && i + 1 < len && tmpl[i + 1] == '{'))
		{
			i++;
			continue;
		}

		/* a placeholder: hand over the text before it */
		open = i;
		if (open > run && ops->text)
			ops->text(ctx, tmpl + run, open - run);
		i += 2;
		while (i < len && tmpl[i] == ' ')
			i++;
		start = i;
		while (i < len && tmpl[i] != '}' && tmpl[i] != '{' && tmpl[i] != ' ' &&
			   tmpl[i] != '\0')
			i++;
		end = i;
		while (i < len && tmpl[i] == ' ')
			i++;
		close = i;
		if (close + 1 >= len || tmpl[close] != '}' || tmpl[close + 1] != '}')
		{
			*where = open;
			for (size_t j = close; j + 1 < len; j++)
				if (tmpl[j] == '}' && tmpl[j + 1] == '}')
					return "a placeholder holds only names separated by dots, such as {{score}} or {{row.price}}";
			return "\"{{\" without a matching \"}}\"";
		}
		if ((err = check_path(tmpl + start, end - start)) != NULL)
		{
			*where = open;
			return err;
		}
		if (ops->field)
			ops->field(ctx, tmpl + start, end - start);
		i = close + 2;
		run = i;
	}
	if (len > run && ops->text)
		ops->text(ctx, tmpl + run, len - run);
	return NULL;
}
