/*
 * fuzz_sns.c
 *	  libFuzzer target for reading SNS Publish responses
 *	  (src/alert/sns_parse.c, the code alert_sns_classify() runs on a body).
 *
 * The first byte chooses the element looked up: odd, a tag taken from the
 * input (up to its first NUL); even, one of the tags the sender reads.
 * The rest is the response body, NUL-terminated as libcurl's buffer is.
 * The body is searched as classify() does: the success test, then Code and
 * Message, then the code's class.
 *
 * Checked: the element lies inside the body, between "<tag>" and the
 * first "</tag>" after it, and is the one that plain strstr() on the built
 * patterns finds (the reading before the extraction, kept here as the
 * reference); the success test agrees with its definition.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alert/sns_parse.h"
#include "fuzz_span.h"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The element by strstr() on "<tag>" and "</tag>": the reference. */
static const char *
reference_element(const char *xml, const char *tag, size_t *len)
{
	size_t		taglen = strlen(tag);
	char	   *open = malloc(taglen + 3);
	char	   *close = malloc(taglen + 4);
	const char *a;
	const char *b = NULL;

	snprintf(open, taglen + 3, "<%s>", tag);
	snprintf(close, taglen + 4, "</%s>", tag);
	a = strstr(xml, open);
	if (a != NULL)
	{
		a += taglen + 2;
		b = strstr(a, close);
	}
	free(open);
	free(close);
	if (b == NULL)
		return NULL;
	*len = (size_t) (b - a);
	return a;
}

/* Looks tag up in body and checks the answer; a malloc'd copy or NULL. */
static char *
element(const char *body, const char *tag)
{
	size_t		blen = strlen(body);
	size_t		taglen = strlen(tag);
	size_t		len;
	const char *a = fuzz_find(sns_xml_element, reference_element, body, tag, &len);

	if (a == NULL)
		return NULL;
	if (a < body + taglen + 2 || a + len + taglen + 3 > body + blen)
		abort();
	if (a[-1] != '>' || a[-(long) taglen - 2] != '<' ||
		memcmp(a - taglen - 1, tag, taglen) != 0)
		abort();
	if (a[len] != '<' || a[len + 1] != '/' ||
		memcmp(a + len + 2, tag, taglen) != 0 || a[len + 2 + taglen] != '>')
		abort();
	return fuzz_copy_span(a, len);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const tags[] = {"Code", "Message", "MessageId", "RequestId"};
	char		tag[65];
	char	   *body;
	const uint8_t *rest;
	size_t		restlen;
	char	   *code;
	char	   *message;
	char	   *other;
	bool		ok;

	if (size < 1)
		return 0;
	rest = data + 1;
	restlen = size - 1;
	if (data[0] & 1)
	{
		const uint8_t *nul = memchr(rest, '\0', restlen < 64 ? restlen : 64);
		size_t		n = nul ? (size_t) (nul - rest) : (restlen < 64 ? restlen : 64);

		memcpy(tag, rest, n);
		tag[n] = '\0';
		rest += n + (nul ? 1 : 0);
		restlen -= n + (nul ? 1 : 0);
	}
	else
		snprintf(tag, sizeof(tag), "%s", tags[(data[0] >> 1) % 4]);

	body = malloc(restlen + 1);
	memcpy(body, rest, restlen);
	body[restlen] = '\0';

	ok = sns_publish_succeeded(body);
	if (ok != (strstr(body, "<PublishResponse") != NULL &&
			   strstr(body, "<MessageId>") != NULL))
		abort();
	code = element(body, "Code");
	message = element(body, "Message");
	if (code != NULL)
		(void) sns_transient_code(code);
	other = element(body, tag);
	free(code);
	free(message);
	free(other);
	free(body);
	return 0;
}
