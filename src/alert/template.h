/*
 * template.h
 *	  Alert message templates: text with {{field}} placeholders.
 *
 * The language is deliberately tiny, so that a template can do nothing but
 * insert values: a placeholder is "{{", optional spaces, a path of one or
 * more names separated by dots, optional spaces, "}}"; a name is a letter
 * or "_" followed by letters, digits, "_" or "$" (ASCII).  Everything else
 * is copied as it is, "}}" included.  There are no expressions, conditions,
 * loops, calls or escapes: "{{" that does not start a valid placeholder is
 * an error.
 *
 * No PostgreSQL header: the SQL layer supplies the values (src/alert/
 * template_sql.c) and the unit tests a table.
 */
#ifndef ALERT_TEMPLATE_H
#define ALERT_TEMPLATE_H

#include <stdbool.h>
#include <stddef.h>

/* Longest template accepted, in bytes. */
#define TEMPLATE_MAX_BYTES 16384
/* Longest path inside a placeholder, in bytes. */
#define TEMPLATE_MAX_PATH 256

typedef struct TemplateOps
{
	/* Appends n bytes of literal text. */
	void		(*text) (void *ctx, const char *s, size_t n);

	/*
	 * Appends the value at path (n bytes, "name.name..."); appends nothing
	 * for a missing value.
	 */
	void		(*field) (void *ctx, const char *path, size_t n);
} TemplateOps;

/*
 * Walks a template of len bytes, calling ops for its text and fields in
 * order.  Returns NULL, or a static message for a syntax error, with *where
 * set to its byte offset (nothing is promised about what was called before).
 */
extern const char *template_walk(const char *tmpl, size_t len,
								 const TemplateOps *ops, void *ctx,
								 size_t *where);

#endif							/* ALERT_TEMPLATE_H */
