/*
 * cred_document.c
 *	  Reading AWS credential documents of ECS and IMDS (see cred_document.h)
 *	  with PostgreSQL's JSON parser (common/jsonapi.h).
 *
 * Built into the server library and, with FRONTEND defined, into the unit
 * tests and the fuzzer (linked with libpgcommon), as sha256.c is.
 */
#ifdef FRONTEND
#include "postgres_fe.h"
#else
#include "postgres.h"
#endif

#include <ctype.h>
#include <limits.h>

#include "alert/cred_document.h"
#include "alert/wipe.h"
#include "common/jsonapi.h"
#include "mb/pg_wchar.h"

/*
 * The callbacks of the JSON parser return an error code from 16 on; 15's
 * return nothing.
 */
#if PG_VERSION_NUM >= 160000
#define CRED_ACTION JsonParseErrorType
#define CRED_ACTION_DONE JSON_SUCCESS
#else
#define CRED_ACTION void
#define CRED_ACTION_DONE
#endif

/* The keys read, in the order of the fields of CredDocument. */
static const char *const cred_keys[] = {
	"AccessKeyId", "SecretAccessKey", "Token", "Expiration"
};

/* What the parser's callbacks share. */
typedef struct CredParse
{
	CredDocument *out;
	int			depth;			/* objects and arrays open around the value */
	bool		object;			/* the document is an object */
	int			field;			/* the key (cred_keys) of the next value, or -1 */
	int			bad_field;		/* a key whose value had a control character, or -1 */
} CredParse;

/* The field of d for cred_keys[i]. */
static char **
cred_field(CredDocument *d, int i)
{
	char	  **fields[] = {&d->access_key_id, &d->secret_access_key,
	&d->token, &d->expiration};

	StaticAssertStmt(lengthof(fields) == lengthof(cred_keys), "one field a key");
	return fields[i];
}

/* An object opens: the first one is the document's top level. */
static CRED_ACTION
cred_object_start(void *state)
{
	CredParse  *p = state;

	if (p->depth++ == 0)
		p->object = true;
	p->field = -1;
	return CRED_ACTION_DONE;
}

/* An array opens: what follows is no top-level value. */
static CRED_ACTION
cred_array_start(void *state)
{
	CredParse  *p = state;

	p->depth++;
	p->field = -1;
	return CRED_ACTION_DONE;
}

/* An object or array closes. */
static CRED_ACTION
cred_close(void *state)
{
	((CredParse *) state)->depth--;
	return CRED_ACTION_DONE;
}

/*
 * A field starts: a key of the top-level object that is read, and not seen
 * before (the first occurrence counts), takes the value that follows.
 */
static CRED_ACTION
cred_field_start(void *state, char *fname, bool isnull)
{
	CredParse  *p = state;

	p->field = -1;
	for (int i = 0; p->depth == 1 && fname != NULL && i < lengthof(cred_keys); i++)
	{
		if (strcmp(fname, cred_keys[i]) == 0 && *cred_field(p->out, i) == NULL)
			p->field = i;
	}
	if (fname != NULL)
		pfree(fname);
	return CRED_ACTION_DONE;
}

/*
 * A scalar: a string for a field being read is kept, unless it holds an
 * ASCII control character (the values go into HTTP headers, so a decoded
 * "\r\n" must not; tested without ctype.h, whose answer depends on the
 * server's locale); everything else is wiped (any string may be a secret).
 */
static CRED_ACTION
cred_scalar(void *state, char *token, JsonTokenType tokentype)
{
	CredParse  *p = state;
	bool		keep = p->field >= 0 && tokentype == JSON_TOKEN_STRING && token != NULL;

	for (const char *c = token; keep && *c != '\0'; c++)
	{
		if ((unsigned char) *c < 0x20 || *c == 0x7f)
		{
			keep = false;
			if (p->bad_field < 0)
				p->bad_field = p->field;
		}
	}
	if (keep)
		*cred_field(p->out, p->field) = token;
	else
		alert_free_wiped(token);
	p->field = -1;
	return CRED_ACTION_DONE;
}

/* The parser's actions; semstate is set for each document. */
static const JsonSemAction cred_actions = {
	.object_start = cred_object_start,
	.object_end = cred_close,
	.array_start = cred_array_start,
	.array_end = cred_close,
	.object_field_start = cred_field_start,
	.scalar = cred_scalar,
};

/*
 * Runs the parser on doc with the actions of sem; *at is where it stopped.
 * The lexer is overwritten and freed, as its string buffer held the last
 * string read (15 and 16 have no function that frees a lexer).
 */
static JsonParseErrorType
run_parser(const char *doc, size_t len, const JsonSemAction *sem, int *at)
{
	JsonLexContext *lex;
	JsonParseErrorType rc;
	int			encoding;

	/*
	 * Escapes decode to the server's encoding; outside a server, to UTF-8
	 * (the encoding of the endpoints' documents).
	 */
#ifdef FRONTEND
	encoding = PG_UTF8;
#else
	encoding = GetDatabaseEncoding();
#endif
#if PG_VERSION_NUM >= 170000
	lex = makeJsonLexContextCstringLen(NULL, doc, len, encoding, true);
#else
	lex = makeJsonLexContextCstringLen(unconstify(char *, doc), (int) len,
									   encoding, true);
#endif
#if PG_VERSION_NUM >= 170000
	rc = pg_parse_json(lex, sem);
#else
	rc = pg_parse_json(lex, unconstify(JsonSemAction *, sem));
#endif
	*at = (int) (lex->token_start != NULL ? lex->token_start - lex->input : 0);
	if (lex->strval != NULL)
		explicit_bzero(lex->strval->data, lex->strval->maxlen);
#if PG_VERSION_NUM >= 170000
	freeJsonLexContext(lex);
#else
	if (lex->strval != NULL)
	{
		pfree(lex->strval->data);
		pfree(lex->strval);
	}
	pfree(lex);
#endif
	return rc;
}

/*
 * Reads a credential document (see cred_document.h).  The document is
 * checked first with no actions: on an error the parser returns without
 * freeing the key or value it had copied for an action (a value may be a
 * secret), so the actions only run on a document known to parse.
 */
bool
cred_document_read(const char *doc, CredDocument *out, char *error, size_t errlen)
{
	size_t		len = strlen(doc);
	JsonSemAction sem;
	CredParse	p = {.out = out, .field = -1, .bad_field = -1};
	int			at;

	memset(out, 0, sizeof(*out));
	if (len > INT_MAX)
	{
		snprintf(error, errlen, "the document is too long");
		return false;
	}

	/*
	 * No part of the document goes into a message: the parser's own details
	 * quote the token, which may be a secret.
	 */
	if (run_parser(doc, len, &nullSemAction, &at) != JSON_SUCCESS)
	{
		snprintf(error, errlen, "the document is not valid JSON (at byte %d)", at);
		return false;
	}

	sem = cred_actions;
	sem.semstate = &p;
	if (run_parser(doc, len, &sem, &at) != JSON_SUCCESS)
		snprintf(error, errlen, "the document is not valid JSON (at byte %d)", at);
	else if (p.bad_field >= 0)
		snprintf(error, errlen, "the document's %s has a control character",
				 cred_keys[p.bad_field]);
	else if (!p.object)
		snprintf(error, errlen, "the document is not a JSON object");
	else
		return true;
	cred_document_clear(out);
	return false;
}

/* Overwrites and frees the fields read (see cred_document.h). */
void
cred_document_clear(CredDocument *d)
{
	for (int i = 0; i < lengthof(cred_keys); i++)
	{
		alert_free_wiped(*cred_field(d, i));
		*cred_field(d, i) = NULL;
	}
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
