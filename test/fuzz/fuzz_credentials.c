/*
 * fuzz_credentials.c
 *	  libFuzzer target for reading AWS credential documents of the ECS
 *	  container endpoint and the EC2 instance metadata service
 *	  (src/alert/cred_document.c, the code credentials.c runs on them, on
 *	  PostgreSQL's JSON parser from the frontend libpgcommon).
 *
 * The first byte chooses: odd, the rest is given to the time parser
 * directly; 2 (bit 1 set), the rest is cut into four values that are
 * written into a document, escaped in ways the other bits choose, and read
 * back; otherwise the rest is a document, read as take_document() does
 * (four fields, then the expiry time of the Expiration field).
 *
 * Checked: a refused document leaves nothing behind and its message quotes
 * nothing of it; a value read has no control character; in a document with
 * no escape, a value stands in it as "key", blanks, ':', blanks, '"',
 * value, '"'; in a flat document (one object, no array, each key once) the
 * values are what strstr() on "\"key\"" finds (the flat reader used
 * before, kept here as the reference); written values come back as they
 * were, escapes decoded; a well-formed time in range parses to the seconds
 * that a calendar computation gives; and UBSan checks the arithmetic.
 */
#include <ctype.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alert/cred_document.h"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The value by strstr() on "\"key\"": the flat reader, the reference. */
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

static const char *const keys[] = {"AccessKeyId", "SecretAccessKey", "Token", "Expiration"};

/* The value read for keys[i]. */
static const char *
got(const CredDocument *d, int i)
{
	const char *v[] = {d->access_key_id, d->secret_access_key, d->token, d->expiration};

	return v[i];
}

/* How many times needle stands in s. */
static int
count(const char *s, const char *needle)
{
	int			n = 0;

	for (s = strstr(s, needle); s != NULL; s = strstr(s + 1, needle))
		n++;
	return n;
}

/* Whether some "key" in doc is followed by blanks, ':', blanks and "v". */
static bool
stands_as_value(const char *doc, const char *key, const char *v)
{
	size_t		keylen = strlen(key);
	size_t		vlen = strlen(v);

	for (const char *p = strstr(doc, key); p != NULL; p = strstr(p + 1, key))
	{
		const char *q = p + keylen;

		if (p == doc || p[-1] != '"' || *q++ != '"')
			continue;
		while (isspace((unsigned char) *q))
			q++;
		if (*q++ != ':')
			continue;
		while (isspace((unsigned char) *q))
			q++;
		if (*q == '"' && strncmp(q + 1, v, vlen) == 0 && q[1 + vlen] == '"')
			return true;
	}
	return false;
}

/*
 * Whether a refusal's message is one of those cred_document.c writes, which
 * quote nothing of the document.
 */
static bool
known_error(const char *error)
{
	char		want[80];
	int			end = -1;

	(void) sscanf(error, "the document is not valid JSON (at byte %*u)%n", &end);
	if (end > 0 && error[end] == '\0')
		return true;
	for (int i = -1; i < 4; i++)
	{
		if (i < 0)
			snprintf(want, sizeof(want), "the document is not a JSON object");
		else
			snprintf(want, sizeof(want), "the document's %s has a control character", keys[i]);
		if (strcmp(error, want) == 0)
			return true;
	}
	return false;
}

/* Reads doc and checks the answer against the document itself. */
static void
check_document(const char *doc)
{
	CredDocument d;
	char		error[256];
	bool		escapes = strchr(doc, '\\') != NULL;
	bool		flat = !escapes && count(doc, "{") == 1 && strchr(doc, '[') == NULL;

	memset(error, 0, sizeof(error));
	if (!cred_document_read(doc, &d, error, sizeof(error)))
	{
		if (!known_error(error))
			abort();
		for (int i = 0; i < 4; i++)
			if (got(&d, i) != NULL)
				abort();
		return;
	}
	for (int i = 0; i < 4; i++)
	{
		const char *v = got(&d, i);
		char		pat[32];

		for (const char *c = v; c != NULL && *c != '\0'; c++)
			if ((unsigned char) *c < 0x20 || *c == 0x7f)
				abort();
		if (v != NULL && !escapes && !stands_as_value(doc, keys[i], v))
			abort();
		snprintf(pat, sizeof(pat), "\"%s\"", keys[i]);
		if (flat && count(doc, pat) == 1)
		{
			size_t		rlen = 0;
			const char *ref = reference_value(doc, keys[i], &rlen);

			if ((ref == NULL) != (v == NULL) ||
				(v != NULL && (strlen(v) != rlen || memcmp(v, ref, rlen) != 0)))
				abort();
		}
	}
	if (d.expiration != NULL)
		check_time(d.expiration);
	cred_document_clear(&d);
}

/*
 * Writes v (len bytes) as a JSON string at out, escaping what must be and,
 * as the bits of *sel choose, other characters too; returns the end.
 */
static char *
write_string(char *out, const uint8_t *v, size_t len, uint32_t *sel)
{
	*out++ = '"';
	for (size_t i = 0; i < len; i++)
	{
		int			c = v[i];
		int			how = *sel & 3;

		*sel = *sel * 1103515245u + 12345u;
		if (c == '"' || c == '\\')
			out += sprintf(out, "\\%c", c);
		else if (c < 0x20 || how == 0)
			out += sprintf(out, "\\u%04x", c);
		else if (c == '/' && how == 1)
			out += sprintf(out, "\\/");
		else if (c == '\n' && how == 2)
			out += sprintf(out, "\\n");
		else
			*out++ = (char) c;
	}
	*out++ = '"';
	return out;
}

/*
 * Cuts data into four values at 0xff bytes (each byte kept to 1..127:
 * outside a server escapes decode to UTF-8, and NUL is refused), writes
 * them as a document and checks that they are read back.
 */
static void
check_round_trip(const uint8_t *data, size_t size, uint32_t sel)
{
	uint8_t    *vals[4];
	size_t		lens[4] = {0, 0, 0, 0};
	bool		control[4] = {false, false, false, false};
	char	   *doc = malloc(16 * size + 256);
	char	   *out = doc;
	int			k = 0;
	CredDocument d;
	char		error[256];
	bool		ok;
	bool		any_control = false;

	for (int i = 0; i < 4; i++)
		vals[i] = malloc(size + 1);
	for (size_t i = 0; i < size; i++)
	{
		if (data[i] == 0xff && k < 3)
			k++;
		else
		{
			uint8_t		c = data[i] & 0x7f;

			if (c == 0)
				c = 'x';
			control[k] |= c < 0x20 || c == 0x7f;
			vals[k][lens[k]++] = c;
		}
	}
	out += sprintf(out, "{\"Code\": \"Success\"");
	for (int i = 0; i < 4; i++)
	{
		out += sprintf(out, ", \"%s\": ", keys[i]);
		out = write_string(out, vals[i], lens[i], &sel);
		any_control |= control[i];
	}
	out += sprintf(out, "}");
	*out = '\0';
	ok = cred_document_read(doc, &d, error, sizeof(error));
	if (ok == any_control)
		abort();
	for (int i = 0; ok && i < 4; i++)
	{
		const char *v = got(&d, i);

		if (v == NULL || strlen(v) != lens[i] || memcmp(v, vals[i], lens[i]) != 0)
			abort();
	}
	if (ok)
		cred_document_clear(&d);
	for (int i = 0; i < 4; i++)
		free(vals[i]);
	free(doc);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	   *doc;

	if (size < 1)
		return 0;
	if ((data[0] & 3) == 2)
	{
		check_round_trip(data + 1, size - 1, data[0] * 2654435761u);
		return 0;
	}
	doc = malloc(size);
	memcpy(doc, data + 1, size - 1);
	doc[size - 1] = '\0';
	if (data[0] & 1)
		check_time(doc);
	else
		check_document(doc);
	(void) cred_parse_expiration(NULL);
	free(doc);
	return 0;
}
