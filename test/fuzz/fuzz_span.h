/*
 * fuzz_span.h
 *	  What a fuzz target of a parser that answers with a span of its input
 *	  (sns_xml_element in src/alert/sns_parse.c) checks: that the parser
 *	  gives the span the reference implementation gives, and a copy of it to
 *	  check further.
 */
#ifndef FUZZ_SPAN_H
#define FUZZ_SPAN_H

#include <stdlib.h>
#include <string.h>

/* A parser, or its reference: the span of item name in doc, or NULL. */
typedef const char *(*FuzzFind) (const char *doc, const char *name, size_t *len);

/*
 * Looks name up in doc with the parser and with its reference; aborts unless
 * both give the same span.  Returns it (its length in *len), or NULL.
 */
static inline const char *
fuzz_find(FuzzFind parse, FuzzFind reference, const char *doc, const char *name,
		  size_t *len)
{
	size_t		rlen = 0;
	const char *got;
	const char *ref;

	*len = 0;
	got = parse(doc, name, len);
	ref = reference(doc, name, &rlen);
	if (got != ref || (got != NULL && *len != rlen))
		abort();
	return got;
}

/* A malloc'd copy of the len bytes at p, NUL-terminated. */
static inline char *
fuzz_copy_span(const char *p, size_t len)
{
	char	   *copy = malloc(len + 1);

	memcpy(copy, p, len);
	copy[len] = '\0';
	return copy;
}

#endif							/* FUZZ_SPAN_H */
