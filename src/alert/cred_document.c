/*
 * cred_document.c
 *	  Reading AWS credential documents of ECS and IMDS (see cred_document.h).
 */
#include "alert/cred_document.h"

#include <ctype.h>
#include <stdio.h>
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

/* Parses an ISO 8601 UTC time (see cred_document.h). */
time_t
cred_parse_expiration(const char *s)
{
	struct tm	tm;

	memset(&tm, 0, sizeof(tm));
	if (s == NULL || sscanf(s, "%d-%d-%dT%d:%d:%d", &tm.tm_year, &tm.tm_mon,
							&tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec) != 6)
		return 0;
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	return timegm(&tm);
}
