/*
 * sns_parse.c
 *	  Reading SNS Publish responses (see sns_parse.h).
 */
#include "alert/sns_parse.h"

#include <string.h>

/*
 * The first occurrence in s of open, then tag, then '>' ("<tag>" for open
 * "<", "</tag>" for open "</"), or NULL.  Searches without building the
 * pattern, so that any tag length works and nothing is allocated.
 */
static const char *
find_tag(const char *s, const char *open, const char *tag)
{
	size_t		openlen = strlen(open);
	size_t		taglen = strlen(tag);

	for (s = strstr(s, open); s != NULL; s = strstr(s + 1, open))
	{
		if (strncmp(s + openlen, tag, taglen) == 0 &&
			s[openlen + taglen] == '>')
			return s;
	}
	return NULL;
}

/* The text of the first <tag> element of xml (see sns_parse.h). */
const char *
sns_xml_element(const char *xml, const char *tag, size_t *len)
{
	const char *a = find_tag(xml, "<", tag);
	const char *b;

	if (a == NULL)
		return NULL;
	a += strlen(tag) + 2;
	b = find_tag(a, "</", tag);
	if (b == NULL)
		return NULL;
	*len = (size_t) (b - a);
	return a;
}

/* Whether a 200 body is a successful Publish (see sns_parse.h). */
bool
sns_publish_succeeded(const char *body)
{
	return strstr(body, "<PublishResponse") != NULL &&
		strstr(body, "<MessageId>") != NULL;
}

/* SNS error codes worth retrying. */
bool
sns_transient_code(const char *code)
{
	static const char *const codes[] = {
		"Throttling", "ThrottlingException", "ThrottledException",
		"RequestThrottled", "TooManyRequestsException", "KMSThrottling",
		"KMSThrottlingException", "InternalError", "InternalFailure",
		"ServiceUnavailable", "RequestTimeout", "RequestTimeoutException",
		"ExpiredToken", "ExpiredTokenException", "RequestExpired",
		"KMSInternalException", "EndpointDisabled", NULL
	};

	for (int i = 0; codes[i] != NULL; i++)
		if (strcmp(code, codes[i]) == 0)
			return true;
	return false;
}
