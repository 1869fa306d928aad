/*
 * cred_document.c
 *	  Reading AWS credential documents of ECS and IMDS (see cred_document.h).
 */
#include "alert/cred_document.h"

#include <ctype.h>
#include <stdbool.h>
#include <string.h>

/*
 * The first occurrence of "key" (with its quotes) in s, or NULL; searches
 * without building the pattern, so that any key length works.
 */
static const char *
find_quoted(const char *s, const char *key)
{
	size_t		keylen = strlen(key);

	for (s = strchr(s, '"'); s != NULL; s = strchr(s + 1, '"'))
	{
		if (strncmp(s + 1, key, keylen) == 0 && s[1 + keylen] == '"')
			return s;
	}
	return NULL;
}

/* The string value of "key" in doc (see cred_document.h). */
const char *
cred_json_string(const char *doc, const char *key, size_t *len)
{
	const char *p = find_quoted(doc, key);
	const char *end;

	if (p == NULL)
		return NULL;
	p += strlen(key) + 2;
	while (isspace((unsigned char) *p))
		p++;
	if (*p != ':')
		return NULL;
	p++;
	while (isspace((unsigned char) *p))
		p++;
	if (*p != '"')
		return NULL;
	p++;
	end = strchr(p, '"');
	if (end == NULL)
		return NULL;
	*len = (size_t) (end - p);
	return p;
}

/*
 * Reads a number of 1 to 9 digits at *s into *v, then the separator sep
 * unless it is '\0'.  Nine digits keep every field, and the year less
 * 1900, inside an int: sscanf("%d") took any int, and "-2147483648" as a
 * year overflowed in tm_year - 1900.
 */
static bool
take_field(const char **s, int *v, char sep)
{
	const char *p = *s;
	int			x = 0;
	int			n;

	for (n = 0; n < 9 && isdigit((unsigned char) *p); n++, p++)
		x = x * 10 + (*p - '0');
	if (n == 0 || isdigit((unsigned char) *p))
		return false;
	if (sep != '\0' && *p++ != sep)
		return false;
	*s = p;
	*v = x;
	return true;
}

/* Parses an ISO 8601 UTC time (see cred_document.h). */
time_t
cred_parse_expiration(const char *s)
{
	struct tm	tm;

	memset(&tm, 0, sizeof(tm));
	if (s == NULL ||
		!take_field(&s, &tm.tm_year, '-') || !take_field(&s, &tm.tm_mon, '-') ||
		!take_field(&s, &tm.tm_mday, 'T') || !take_field(&s, &tm.tm_hour, ':') ||
		!take_field(&s, &tm.tm_min, ':') || !take_field(&s, &tm.tm_sec, '\0'))
		return 0;
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	return timegm(&tm);
}
