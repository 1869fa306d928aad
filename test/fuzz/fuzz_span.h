/*
 * fuzz_span.h
 *	  What the fuzz targets of the parsers that answer with a span of their
 *	  input (sns_xml_element in src/alert/sns_parse.c, cred_json_string in
 *	  src/alert/cred_document.c) check alike: that the parser gives the span
 *	  the reference implementation gives, and a copy of it to check further.
 */
#ifndef FUZZ_SPAN_H
#define FUZZ_SPAN_H

#include <stdlib.h>
#include <string.h>

/* Aborts unless the parser's span (got, len) is the reference's (ref, rlen). */
static inline void
fuzz_same_span(const char *got, size_t len, const char *ref, size_t rlen)
{
	if (got != ref || (got != NULL && len != rlen))
		abort();
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
