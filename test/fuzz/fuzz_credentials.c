/*
 * fuzz_credentials.c
 *	  libFuzzer target for reading AWS credential documents of the ECS
 *	  container endpoint and the EC2 instance metadata service
 *	  (src/alert/cred_document.c, the code credentials.c runs on them).
 *
 * The first byte chooses: even, the rest is a document, read as
 * take_document() does (four fields, then the expiry time of the
 * Expiration field); odd, the rest is given to the time parser directly.
 *
 * Checked: a value lies inside the document, after "key", blanks, ':',
 * blanks and '"', and ends at the first '"'; it is what strstr() on the
 * built pattern finds (the reading before the extraction, kept here as the
 * reference); a well-formed time in range parses to the seconds that a
 * calendar computation gives; and UBSan checks the arithmetic.
 */
#include <ctype.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alert/cred_document.h"
#include "fuzz_span.h"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The value by strstr() on "\"key\"": the reference. */
static const char *
reference_value(const char *doc, const char *key, size_t *len)
{
	size_t		keylen = strlen(key);
	char	   *pat = malloc(keylen + 3);
	const char *p;
	const char *end;

	snprintf(pat, keylen + 3, "\"%s\"", key);
	p = strstr(doc, pat);
	free(pat);
	if (p == NULL)
		return NULL;
	p += keylen + 2;
	while (isspace((unsigned char) *p))
		p++;
	if (*p++ != ':')
		return NULL;
	while (isspace((unsigned char) *p))
		p++;
	if (*p++ != '"')
		return NULL;
	end = strchr(p, '"');
	if (end == NULL)
		return NULL;
	*len = (size_t) (end - p);
	return p;
}

/* Days from 1970-01-01 to y-m-d of the proleptic Gregorian calendar. */
static int64_t
days_from_civil(int64_t y, int m, int d)
{
	int64_t		era;
	int64_t		yoe,
				doy,
				doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

/* Checks the time parser on s: well-formed times must come out exactly. */
static void
check_time(const char *s)
{
	static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	time_t		t = cred_parse_expiration(s);
	int			f[6];
	bool		digits = strlen(s) >= 19;

	/* "YYYY-MM-DDThh:mm:ss" with every field a plain number in range */
	for (int i = 0; digits && i < 19; i++)
	{
		char		want = "0000-00-00T00:00:00"[i];

		if (want == '0' ? !isdigit((unsigned char) s[i]) : s[i] != want)
			digits = false;
	}
	/* The seconds end there (a longer number is another case). */
	if (!digits || isdigit((unsigned char) s[19]))
		return;
	for (int i = 0, at = 0; i < 6; i++)
	{
		int			n = i == 0 ? 4 : 2;

		f[i] = 0;
		for (int k = 0; k < n; k++)
			f[i] = f[i] * 10 + (s[at + k] - '0');
		at += n + 1;
	}
	if (f[0] < 1970 || f[1] < 1 || f[1] > 12 || f[2] < 1 ||
		f[2] > mdays[f[1] - 1] || f[3] > 23 || f[4] > 59 || f[5] > 59)
		return;
	if ((int64_t) t != days_from_civil(f[0], f[1], f[2]) * 86400 +
		f[3] * 3600 + f[4] * 60 + f[5])
		abort();
}

/* Reads key from doc and checks the answer; a malloc'd copy or NULL. */
static char *
value(const char *doc, const char *key)
{
	size_t		dlen = strlen(doc);
	size_t		len;
	const char *v = fuzz_find(cred_json_string, reference_value, doc, key, &len);

	if (v == NULL)
		return NULL;
	if (v < doc + strlen(key) + 4 || v + len + 1 > doc + dlen)
		abort();
	if (v[-1] != '"' || v[len] != '"' || memchr(v, '"', len) != NULL)
		abort();
	return fuzz_copy_span(v, len);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const keys[] = {"AccessKeyId", "SecretAccessKey", "Token", "Expiration"};
	char	   *doc;
	char	   *v[4];

	if (size < 1)
		return 0;
	doc = malloc(size);
	memcpy(doc, data + 1, size - 1);
	doc[size - 1] = '\0';
	if (data[0] & 1)
	{
		check_time(doc);
		free(doc);
		return 0;
	}
	for (int i = 0; i < 4; i++)
		v[i] = value(doc, keys[i]);
	if (v[3] != NULL)
		check_time(v[3]);
	(void) cred_parse_expiration(NULL);
	for (int i = 0; i < 4; i++)
		free(v[i]);
	free(doc);
	return 0;
}
