/*
 * sigv4.c
 *	  AWS Signature Version 4 signing (AWS4-HMAC-SHA256, Authorization header).
 *
 * The steps are those of AWS's "Create a signed AWS API request":
 *
 *	1. canonical request =
 *		 method \n canonical URI \n canonical query \n canonical headers \n
 *		 signed headers \n hex(SHA256(body))
 *	2. string to sign =
 *		 "AWS4-HMAC-SHA256" \n amz-date \n scope \n hex(SHA256(canonical request))
 *	   where scope = yyyymmdd/region/service/aws4_request
 *	3. signing key = HMAC chain "AWS4"+secret -> yyyymmdd -> region -> service
 *	   -> "aws4_request"; signature = hex(HMAC(signing key, string to sign))
 *	4. Authorization = "AWS4-HMAC-SHA256 Credential=<key id>/<scope>,
 *	   SignedHeaders=<signed headers>, Signature=<signature>"
 *
 * sigv4.h documents the canonicalisation rules and what the input means.
 * Everything here allocates with palloc (StringInfo buffers) and frees on
 * every path; memory that runs out raises an ERROR (exits outside a server)
 * instead of a status.  Inputs are
 * bounded (SIGV4_MAX_*) before anything is allocated, so output sizes are
 * bounded too.  Secret-derived bytes are wiped before their memory is
 * released.
 */
#ifdef FRONTEND
#include "postgres_fe.h"
#else
#include "postgres.h"
#endif

#include "lib/stringinfo.h"

#include "alert/sigv4.h"
#include "alert/sha256.h"
#include "alert/wipe.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define SIGV4_ALGORITHM		"AWS4-HMAC-SHA256"
#define SIGV4_TERMINATOR	"aws4_request"
#define SIGV4_DATE_HEADER	"X-Amz-Date"
#define SIGV4_TOKEN_HEADER	"X-Amz-Security-Token"

/* One request header after canonicalisation of its name and value. */
typedef struct CanonHeader
{
	char	   *name;			/* lower case */
	char	   *value;			/* trimmed, spaces collapsed, folds as ',' */
	size_t		order;			/* input position: keeps duplicates in order */
} CanonHeader;

/* One query parameter, already AWS-encoded. */
typedef struct QueryPair
{
	char	   *name;
	char	   *value;
} QueryPair;

/* ---------------------------------------------------------------- */
/* Small string helpers                                             */
/* ---------------------------------------------------------------- */

/*
 * The buffers are StringInfos: they grow by palloc, which raises an ERROR in
 * a server (exits outside one) when memory runs out, so a buffer is never
 * half written.  These two hand one over and drop one.
 */

/* Hands over a buffer's string (palloc'd); the buffer is empty afterwards. */
static char *
sb_finish(StringInfo sb)
{
	char	   *s = sb->data;

	sb->data = NULL;
	sb->len = sb->maxlen = 0;
	return s;
}

/* Drops a buffer, wiping it first since it may hold a session token. */
static void
sb_free(StringInfo sb)
{
	if (sb->data != NULL)
	{
		explicit_bzero(sb->data, sb->maxlen);
		pfree(sb->data);
	}
	sb->data = NULL;
	sb->len = sb->maxlen = 0;
}

/* pfree that accepts NULL, for arrays filled part way. */
static void
release(void *p)
{
	if (p != NULL)
		pfree(p);
}

/* palloc'd copy of n bytes plus a NUL. */
static char *
copy_bytes(const char *s, size_t n)
{
	char	   *p = palloc(n + 1);

	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

/*
 * strlen bounded by limit: returns limit + 1 if the string is longer, so
 * over-long input is refused without scanning all of it.
 */
static size_t
bounded_len(const char *s, size_t limit)
{
	size_t		n = 0;

	while (n <= limit && s[n] != '\0')
		n++;
	return n;
}

/* ASCII-only lower-casing; header names are ASCII and locale must not matter. */
static char
ascii_lower(char c)
{
	return (c >= 'A' && c <= 'Z') ? (char) (c - 'A' + 'a') : c;
}

/* ASCII case-insensitive string equality. */
static bool
ascii_caseeq(const char *a, const char *b)
{
	while (*a != '\0' && *b != '\0')
	{
		if (ascii_lower(*a) != ascii_lower(*b))
			return false;
		a++;
		b++;
	}
	return *a == *b;
}

/* ASCII digit test that, unlike isdigit(), ignores the locale. */
static bool
is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

/* ASCII letter or digit, locale-independent. */
static bool
is_alnum(unsigned char c)
{
	return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* RFC 3986 unreserved characters: the only ones SigV4 leaves unencoded. */
static bool
is_unreserved(unsigned char c)
{
	return is_alnum(c) || c == '-' || c == '_' || c == '.' || c == '~';
}

/* RFC 9110 token character (header names, methods). */
static bool
is_tchar(unsigned char c)
{
	return is_alnum(c) || (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* Value of a hex digit, or -1. */
static int
hex_value(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Append one byte percent-encoded unless it is unreserved (or a kept '/'). */
static void
sb_encode_byte(StringInfo sb, unsigned char c, bool keep_slash)
{
	static const char hexdig[] = "0123456789ABCDEF";

	if (is_unreserved(c) || (keep_slash && c == '/'))
		appendStringInfoChar(sb, (char) c);
	else
	{
		char		esc[3];

		esc[0] = '%';
		esc[1] = hexdig[c >> 4];
		esc[2] = hexdig[c & 0x0f];
		appendBinaryStringInfo(sb, esc, 3);
	}
}

/* Append n bytes percent-encoded with AWS's rules. */
static void
sb_encode(StringInfo sb, const char *s, size_t n, bool keep_slash)
{
	size_t		i;

	/* Worst case every byte triples; reserve once. */
	enlargeStringInfo(sb, (int) (n * 3));
	for (i = 0; i < n; i++)
		sb_encode_byte(sb, (unsigned char) s[i], keep_slash);
}

/* ---------------------------------------------------------------- */
/* Input validation                                                 */
/* ---------------------------------------------------------------- */

/*
 * Check YYYYMMDD'T'HHMMSS'Z' including the calendar (month lengths, leap
 * years), because a bad date would silently produce a signature AWS rejects
 * with a confusing error.
 */
static bool
valid_amz_date(const char *d)
{
	static const int mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	int			i;
	int			year,
				month,
				day,
				hour,
				minute,
				second,
				maxday;

	if (bounded_len(d, SIGV4_AMZ_DATE_LEN) != SIGV4_AMZ_DATE_LEN)
		return false;
	for (i = 0; i < SIGV4_AMZ_DATE_LEN; i++)
	{
		unsigned char c = (unsigned char) d[i];

		if (i == 8)
		{
			if (c != 'T')
				return false;
		}
		else if (i == 15)
		{
			if (c != 'Z')
				return false;
		}
		else if (!is_digit(c))
			return false;
	}
#define DIGITS2(p) (((p)[0] - '0') * 10 + ((p)[1] - '0'))
	year = DIGITS2(d) * 100 + DIGITS2(d + 2);
	month = DIGITS2(d + 4);
	day = DIGITS2(d + 6);
	hour = DIGITS2(d + 9);
	minute = DIGITS2(d + 11);
	second = DIGITS2(d + 13);
#undef DIGITS2
	if (month < 1 || month > 12 || day < 1)
		return false;
	maxday = mdays[month - 1];
	if (month == 2 &&
		((year % 4 == 0 && year % 100 != 0) || year % 400 == 0))
		maxday = 29;
	if (day > maxday)
		return false;
	return hour <= 23 && minute <= 59 && second <= 59;
}

/*
 * Region and service go into the credential scope, which is '/'-separated
 * and appears inside the Authorization header, so they are kept to a
 * conservative character set.
 */
static SigV4Status
check_scope_part(const char *s)
{
	size_t		n = bounded_len(s, SIGV4_MAX_SCOPE_PART_LEN);
	size_t		i;

	if (n > SIGV4_MAX_SCOPE_PART_LEN)
		return SIGV4_ERR_TOO_LONG;
	if (n == 0)
		return SIGV4_ERR_BAD_SCOPE;
	for (i = 0; i < n; i++)
	{
		unsigned char c = (unsigned char) s[i];

		if (!is_alnum(c) && c != '-' && c != '_' && c != '.')
			return SIGV4_ERR_BAD_SCOPE;
	}
	return SIGV4_OK;
}

/*
 * The key id is written into "Credential=<id>/...", so it must not contain
 * separators; secret and token must be printable ASCII without spaces (the
 * token is sent as a header value, so CR/LF would allow header injection).
 */
static SigV4Status
check_credentials(const SigV4Credentials *cred)
{
	size_t		n,
				i;

	n = bounded_len(cred->access_key_id, SIGV4_MAX_KEY_ID_LEN);
	if (n > SIGV4_MAX_KEY_ID_LEN)
		return SIGV4_ERR_TOO_LONG;
	if (n == 0)
		return SIGV4_ERR_BAD_CREDENTIALS;
	for (i = 0; i < n; i++)
	{
		unsigned char c = (unsigned char) cred->access_key_id[i];

		if (!is_alnum(c) && c != '-' && c != '_' && c != '.')
			return SIGV4_ERR_BAD_CREDENTIALS;
	}

	n = bounded_len(cred->secret_access_key, SIGV4_MAX_SECRET_LEN);
	if (n > SIGV4_MAX_SECRET_LEN)
		return SIGV4_ERR_TOO_LONG;
	if (n == 0)
		return SIGV4_ERR_BAD_CREDENTIALS;
	for (i = 0; i < n; i++)
	{
		unsigned char c = (unsigned char) cred->secret_access_key[i];

		if (c < 0x21 || c > 0x7e)
			return SIGV4_ERR_BAD_CREDENTIALS;
	}

	if (cred->session_token != NULL)
	{
		n = bounded_len(cred->session_token, SIGV4_MAX_TOKEN_LEN);
		if (n > SIGV4_MAX_TOKEN_LEN)
			return SIGV4_ERR_TOO_LONG;
		for (i = 0; i < n; i++)
		{
			unsigned char c = (unsigned char) cred->session_token[i];

			if (c < 0x21 || c > 0x7e)
				return SIGV4_ERR_BAD_CREDENTIALS;
		}
	}
	return SIGV4_OK;
}

/* The method must be an HTTP token (RFC 9110), e.g. "GET". */
static SigV4Status
check_method(const char *method)
{
	size_t		n = bounded_len(method, SIGV4_MAX_METHOD_LEN);
	size_t		i;

	if (n > SIGV4_MAX_METHOD_LEN)
		return SIGV4_ERR_TOO_LONG;
	if (n == 0)
		return SIGV4_ERR_BAD_METHOD;
	for (i = 0; i < n; i++)
		if (!is_tchar((unsigned char) method[i]))
			return SIGV4_ERR_BAD_METHOD;
	return SIGV4_OK;
}

/* ---------------------------------------------------------------- */
/* Canonical URI                                                    */
/* ---------------------------------------------------------------- */

/*
 * Canonical URI for services other than S3: remove "." and ".." segments
 * (RFC 3986 section 5.2.4), drop empty segments (the test suite's
 * normalize-path cases turn "//example//" into "/example/"), then encode
 * each remaining segment.  A trailing slash, or a final "." or "..", leaves
 * a trailing slash as RFC 3986 does.  The segments are tracked as offsets
 * into the path, in an array bounded by the number of slashes.
 */
static SigV4Status
canon_path_normalised(const char *path, size_t len, StringInfo out)
{
	size_t		nslash = 0;
	size_t	   *seg_start;
	size_t	   *seg_len;
	size_t		nseg = 0;
	size_t		pos;
	size_t		i;
	bool		trailing = false;

	for (i = 0; i < len; i++)
		if (path[i] == '/')
			nslash++;

	seg_start = palloc(sizeof(size_t) * (nslash + 1));
	seg_len = palloc(sizeof(size_t) * (nslash + 1));

	/* path[0] is '/'; each segment runs from after a '/' to the next one. */
	pos = 1;
	while (pos <= len)
	{
		size_t		end = pos;
		size_t		n;
		bool		last;

		while (end < len && path[end] != '/')
			end++;
		n = end - pos;
		last = (end >= len);

		if (n == 0 || (n == 1 && path[pos] == '.'))
			trailing = last;
		else if (n == 2 && path[pos] == '.' && path[pos + 1] == '.')
		{
			if (nseg > 0)
				nseg--;
			trailing = last;
		}
		else
		{
			seg_start[nseg] = pos;
			seg_len[nseg] = n;
			nseg++;
			trailing = false;
		}
		pos = end + 1;
	}

	if (nseg == 0)
		appendStringInfoChar(out, '/');
	else
	{
		for (i = 0; i < nseg; i++)
		{
			appendStringInfoChar(out, '/');
			sb_encode(out, path + seg_start[i], seg_len[i], false);
		}
		if (trailing)
			appendStringInfoChar(out, '/');
	}

	release(seg_start);
	release(seg_len);
	return SIGV4_OK;
}

/*
 * Canonical URI for S3: the path as sent, except that bytes not allowed
 * unescaped are encoded; existing %XX escapes are kept (hex upper-cased, as
 * AWS's encoder writes them) so an already encoded key is not encoded twice.
 */
static SigV4Status
canon_path_s3(const char *path, size_t len, StringInfo out)
{
	size_t		i;

	if (len == 0)
		appendStringInfoChar(out, '/');
	for (i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) path[i];

		if (c == '%' && i + 2 < len &&
			hex_value((unsigned char) path[i + 1]) >= 0 &&
			hex_value((unsigned char) path[i + 2]) >= 0)
		{
			char		esc[3];

			esc[0] = '%';
			esc[1] = (char) (path[i + 1] >= 'a' ? path[i + 1] - 'a' + 'A' : path[i + 1]);
			esc[2] = (char) (path[i + 2] >= 'a' ? path[i + 2] - 'a' + 'A' : path[i + 2]);
			appendBinaryStringInfo(out, esc, 3);
			i += 2;
		}
		else
			sb_encode_byte(out, c, true);
	}
	return SIGV4_OK;
}

/*
 * Validate the path and write its canonical form.  '?' and '#' cannot be
 * part of a wire path (the caller passed the query or a fragment by
 * mistake), and control characters cannot appear in a request line.
 */
static SigV4Status
canon_path(const char *path, bool s3, StringInfo out)
{
	size_t		len = bounded_len(path, SIGV4_MAX_PATH_LEN);
	size_t		i;

	if (len > SIGV4_MAX_PATH_LEN)
		return SIGV4_ERR_TOO_LONG;
	if (len > 0 && path[0] != '/')
		return SIGV4_ERR_BAD_PATH;
	for (i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) path[i];

		if (c < 0x20 || c == 0x7f || c == '?' || c == '#')
			return SIGV4_ERR_BAD_PATH;
	}

	if (s3)
		return canon_path_s3(path, len, out);
	if (len == 0)
	{
		appendStringInfoChar(out, '/');
		return SIGV4_OK;
	}
	return canon_path_normalised(path, len, out);
}

/* ---------------------------------------------------------------- */
/* Canonical query string                                           */
/* ---------------------------------------------------------------- */

/*
 * Percent-decode s[0..n) and re-encode it with AWS's rules into a palloc'd
 * string.  Decoding first means "%7e", "%7E" and "~" all come out as "~", so
 * a query the caller already encoded is not encoded twice.
 */
static SigV4Status
reencode_component(const char *s, size_t n, char **out)
{
	StringInfoData sb;
	size_t		i;

	initStringInfo(&sb);
	for (i = 0; i < n; i++)
	{
		unsigned char c = (unsigned char) s[i];

		if (c == '%')
		{
			int			hi,
						lo;

			if (i + 2 >= n)
			{
				sb_free(&sb);
				return SIGV4_ERR_BAD_QUERY;
			}
			hi = hex_value((unsigned char) s[i + 1]);
			lo = hex_value((unsigned char) s[i + 2]);
			if (hi < 0 || lo < 0)
			{
				sb_free(&sb);
				return SIGV4_ERR_BAD_QUERY;
			}
			c = (unsigned char) (hi * 16 + lo);
			i += 2;
		}
		sb_encode_byte(&sb, c, false);
	}
	*out = sb_finish(&sb);
	return SIGV4_OK;
}

/* Sort order of query parameters: by encoded name, then encoded value. */
static int
query_pair_cmp(const void *a, const void *b)
{
	const QueryPair *pa = (const QueryPair *) a;
	const QueryPair *pb = (const QueryPair *) b;
	int			c = strcmp(pa->name, pb->name);

	if (c != 0)
		return c;
	return strcmp(pa->value, pb->value);
}

/*
 * Canonical query string: split on '&' (empty pieces ignored), split each
 * piece at its first '=' (no '=' means an empty value, written "name="),
 * re-encode both sides, sort, and join as name=value with '&'.
 */
static SigV4Status
canon_query(const char *query, StringInfo out)
{
	size_t		len;
	size_t		npieces = 1;
	size_t		npairs = 0;
	QueryPair  *pairs;
	SigV4Status st = SIGV4_OK;
	size_t		pos;
	size_t		i;

	if (query == NULL)
		return SIGV4_OK;
	len = bounded_len(query, SIGV4_MAX_QUERY_LEN);
	if (len > SIGV4_MAX_QUERY_LEN)
		return SIGV4_ERR_TOO_LONG;
	if (len == 0)
		return SIGV4_OK;

	for (i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) query[i];

		if (c < 0x20 || c == 0x7f || c == '#')
			return SIGV4_ERR_BAD_QUERY;
		if (c == '&')
			npieces++;
	}

	pairs = palloc0(npieces * sizeof(QueryPair));

	pos = 0;
	while (pos <= len && st == SIGV4_OK)
	{
		size_t		end = pos;
		size_t		eq;

		while (end < len && query[end] != '&')
			end++;
		if (end > pos)
		{
			eq = pos;
			while (eq < end && query[eq] != '=')
				eq++;
			st = reencode_component(query + pos, eq - pos, &pairs[npairs].name);
			if (st == SIGV4_OK)
			{
				size_t		vstart = (eq < end) ? eq + 1 : end;

				st = reencode_component(query + vstart, end - vstart,
										&pairs[npairs].value);
				if (st != SIGV4_OK)
				{
					release(pairs[npairs].name);
					pairs[npairs].name = NULL;
				}
				else
					npairs++;
			}
		}
		pos = end + 1;
	}

	if (st == SIGV4_OK)
	{
		qsort(pairs, npairs, sizeof(QueryPair), query_pair_cmp);
		for (i = 0; i < npairs; i++)
		{
			if (i > 0)
				appendStringInfoChar(out, '&');
			appendStringInfoString(out, pairs[i].name);
			appendStringInfoChar(out, '=');
			appendStringInfoString(out, pairs[i].value);
		}
	}

	for (i = 0; i < npairs; i++)
	{
		release(pairs[i].name);
		release(pairs[i].value);
	}
	release(pairs);
	return st;
}

/* ---------------------------------------------------------------- */
/* Canonical headers                                                */
/* ---------------------------------------------------------------- */

/*
 * Canonical form of one header value: leading and trailing spaces/tabs
 * removed, inner runs collapsed to one space.  A line fold (LF or CRLF then
 * a space or tab) ends one value and starts another, joined with ',' as the
 * test suite's multi-line case requires; empty folded lines add nothing.
 * Any other CR, LF or control character is refused, since the value is also
 * what goes on the wire and a bare newline would inject a header.
 */
static SigV4Status
canon_header_value(const char *value, size_t len, char **out)
{
	StringInfoData sb;
	bool		piece_has_content = false;
	bool		pending_space = false;
	bool		pending_comma = false;
	size_t		i;

	initStringInfo(&sb);
	for (i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) value[i];

		if (c == '\r')
		{
			if (i + 1 < len && value[i + 1] == '\n')
			{
				i++;
				c = '\n';
			}
			else
				goto bad;
		}
		if (c == '\n')
		{
			if (i + 1 < len && (value[i + 1] == ' ' || value[i + 1] == '\t'))
			{
				pending_comma = true;
				pending_space = false;
				piece_has_content = false;
				continue;
			}
			goto bad;
		}
		if (c == ' ' || c == '\t')
		{
			if (piece_has_content)
				pending_space = true;
			continue;
		}
		if (c < 0x20 || c == 0x7f)
			goto bad;

		if (pending_comma)
		{
			if (sb.len > 0)
				appendStringInfoChar(&sb, ',');
			pending_comma = false;
		}
		else if (pending_space)
			appendStringInfoChar(&sb, ' ');
		pending_space = false;
		piece_has_content = true;
		appendStringInfoChar(&sb, (char) c);
	}
	*out = sb_finish(&sb);
	return SIGV4_OK;

bad:
	sb_free(&sb);
	return SIGV4_ERR_BAD_HEADER;
}

/* Sort order of headers: by lower-case name, then by input position. */
static int
canon_header_cmp(const void *a, const void *b)
{
	const CanonHeader *ha = (const CanonHeader *) a;
	const CanonHeader *hb = (const CanonHeader *) b;
	int			c = strcmp(ha->name, hb->name);

	if (c != 0)
		return c;
	return (ha->order > hb->order) - (ha->order < hb->order);
}

/*
 * Canonicalise one header into *h: name checked as an HTTP token and
 * lower-cased, value canonicalised.  *total accumulates the input size so the
 * whole header set is bounded.
 */
static SigV4Status
canon_one_header(const char *name, const char *value, size_t order,
				 size_t *total, CanonHeader *h)
{
	size_t		nlen,
				vlen,
				i;
	SigV4Status st;

	if (name == NULL || value == NULL)
		return SIGV4_ERR_NULL_ARG;
	nlen = bounded_len(name, SIGV4_MAX_HEADER_NAME_LEN);
	vlen = bounded_len(value, SIGV4_MAX_HEADER_VALUE_LEN);
	if (nlen > SIGV4_MAX_HEADER_NAME_LEN || vlen > SIGV4_MAX_HEADER_VALUE_LEN)
		return SIGV4_ERR_TOO_LONG;
	*total += nlen + vlen;
	if (*total > SIGV4_MAX_HEADERS_TOTAL)
		return SIGV4_ERR_TOO_LONG;
	if (nlen == 0)
		return SIGV4_ERR_BAD_HEADER;
	for (i = 0; i < nlen; i++)
		if (!is_tchar((unsigned char) name[i]))
			return SIGV4_ERR_BAD_HEADER;

	h->order = order;
	h->name = copy_bytes(name, nlen);
	for (i = 0; i < nlen; i++)
		h->name[i] = ascii_lower(h->name[i]);

	st = canon_header_value(value, vlen, &h->value);
	if (st != SIGV4_OK)
	{
		release(h->name);
		h->name = NULL;
	}
	return st;
}

/*
 * Build the canonical headers block ("name:value\n" per distinct name, in
 * sorted order, duplicates joined with ',') and the signed headers list
 * ("a;b;c"), and check the headers SigV4 cares about: Host present,
 * X-Amz-Date equal to the signing date, X-Amz-Security-Token equal to the
 * session token.
 */
static SigV4Status
build_headers(CanonHeader *hs, size_t n, const char *amz_date,
			  const char *token, StringInfo canon, StringInfo signed_hdrs)
{
	StringInfoData merged;
	bool		have_host = false;
	size_t		i = 0;

	qsort(hs, n, sizeof(CanonHeader), canon_header_cmp);

	initStringInfo(&merged);
	while (i < n)
	{
		size_t		j = i;

		merged.len = 0;
		appendStringInfoString(&merged, "");
		for (j = i; j < n && strcmp(hs[j].name, hs[i].name) == 0; j++)
		{
			if (j > i)
				appendStringInfoChar(&merged, ',');
			appendStringInfoString(&merged, hs[j].value);
		}

		if (strcmp(hs[i].name, "host") == 0)
			have_host = true;
		else if (strcmp(hs[i].name, "x-amz-date") == 0 &&
				 strcmp(merged.data, amz_date) != 0)
		{
			sb_free(&merged);
			return SIGV4_ERR_DATE_MISMATCH;
		}
		else if (strcmp(hs[i].name, "x-amz-security-token") == 0 &&
				 token != NULL && strcmp(merged.data, token) != 0)
		{
			sb_free(&merged);
			return SIGV4_ERR_TOKEN_MISMATCH;
		}

		appendStringInfoString(canon, hs[i].name);
		appendStringInfoChar(canon, ':');
		appendBinaryStringInfo(canon, merged.data, merged.len);
		appendStringInfoChar(canon, '\n');

		if (signed_hdrs->len > 0)
			appendStringInfoChar(signed_hdrs, ';');
		appendStringInfoString(signed_hdrs, hs[i].name);

		i = j;
	}
	sb_free(&merged);

	if (!have_host)
		return SIGV4_ERR_NO_HOST;
	return SIGV4_OK;
}

/* ---------------------------------------------------------------- */
/* Signing                                                          */
/* ---------------------------------------------------------------- */

/*
 * Derive the signing key (HMAC chain over date, region, service and the
 * terminator, keyed first by "AWS4" + secret) and return the hex HMAC of the
 * string to sign.  All intermediate keys are wiped.
 */
static void
compute_signature(const char *secret, const char *date8, const char *region,
				  const char *service, const char *sts, size_t sts_len,
				  char out_hex[SIGV4_HEX_LEN + 1])
{
	char		kinit[4 + SIGV4_MAX_SECRET_LEN];
	uint8_t		k[ANOMALY_SHA256_DIGEST_LEN];
	uint8_t		sig[ANOMALY_SHA256_DIGEST_LEN];
	size_t		slen = strlen(secret);

	/*
	 * Each step may write its output over its own key: HMAC init consumes
	 * the key before the MAC is written.
	 */
	memcpy(kinit, "AWS4", 4);
	memcpy(kinit + 4, secret, slen);
	anomaly_hmac_sha256(kinit, 4 + slen, date8, 8, k);
	anomaly_hmac_sha256(k, sizeof(k), region, strlen(region), k);
	anomaly_hmac_sha256(k, sizeof(k), service, strlen(service), k);
	anomaly_hmac_sha256(k, sizeof(k), SIGV4_TERMINATOR, strlen(SIGV4_TERMINATOR), k);
	anomaly_hmac_sha256(k, sizeof(k), sts, sts_len, sig);
	anomaly_hex_encode(sig, sizeof(sig), out_hex);

	explicit_bzero(kinit, sizeof(kinit));
	explicit_bzero(k, sizeof(k));
	explicit_bzero(sig, sizeof(sig));
}

/*
 * Split "a;b;c" into a NULL-free array of n pointers into one palloc'd copy;
 * names[0] owns the copy (see sigv4_result_free).
 */
static SigV4Status
split_signed_headers(const char *signed_hdrs, char ***names_out, size_t *n_out)
{
	size_t		n = 1;
	size_t		i,
				k;
	char	   *copy;
	char	  **names;
	size_t		len = strlen(signed_hdrs);

	for (i = 0; i < len; i++)
		if (signed_hdrs[i] == ';')
			n++;
	copy = copy_bytes(signed_hdrs, len);
	names = palloc(sizeof(char *) * n);
	names[0] = copy;
	k = 1;
	for (i = 0; i < len; i++)
	{
		if (copy[i] == ';')
		{
			copy[i] = '\0';
			names[k++] = copy + i + 1;
		}
	}
	*names_out = names;
	*n_out = n;
	return SIGV4_OK;
}

/* Check every argument of sigv4_sign() that can be checked up front. */
static SigV4Status
check_arguments(const SigV4Request *request, const SigV4Credentials *cred,
				const char *region, const char *service, const char *amz_date,
				unsigned int flags)
{
	SigV4Status st;

	if (request == NULL || cred == NULL || region == NULL || service == NULL ||
		amz_date == NULL || request->method == NULL || request->path == NULL ||
		cred->access_key_id == NULL || cred->secret_access_key == NULL ||
		(request->nheaders > 0 && request->headers == NULL) ||
		(request->body_len > 0 && request->body == NULL))
		return SIGV4_ERR_NULL_ARG;
	if ((flags & ~(unsigned int) (SIGV4_FLAG_S3_PATH | SIGV4_FLAG_UNSIGNED_TOKEN)) != 0)
		return SIGV4_ERR_BAD_FLAGS;
	if (request->nheaders > SIGV4_MAX_HEADERS)
		return SIGV4_ERR_TOO_LONG;
	if (!valid_amz_date(amz_date))
		return SIGV4_ERR_BAD_DATE;
	if ((st = check_scope_part(region)) != SIGV4_OK)
		return st;
	if ((st = check_scope_part(service)) != SIGV4_OK)
		return st;
	if ((st = check_credentials(cred)) != SIGV4_OK)
		return st;
	return check_method(request->method);
}

/*
 * Sign a request; see sigv4.h for the contract.  Builds the canonical
 * request, string to sign, signature and Authorization value into *result.
 */
SigV4Status
sigv4_sign(const SigV4Request *request, const SigV4Credentials *credentials,
		   const char *region, const char *service, const char *amz_date,
		   unsigned int flags, SigV4Result *result)
{
	SigV4Status st;
	const char *token;
	bool		unsigned_token = (flags & SIGV4_FLAG_UNSIGNED_TOKEN) != 0;
	bool		have_date_header = false;
	bool		have_token_header = false;
	CanonHeader *hs = NULL;
	size_t		nhs = 0;
	size_t		total = 0;
	size_t		i;
	StringInfoData uri,
				query,
				canon_hdrs,
				signed_hdrs,
				creq,
				sts,
				authz;
	uint8_t		digest[ANOMALY_SHA256_DIGEST_LEN];
	char		creq_hash[SIGV4_HEX_LEN + 1];
	char		date8[9];

	if (result == NULL)
		return SIGV4_ERR_NULL_ARG;
	memset(result, 0, sizeof(*result));

	st = check_arguments(request, credentials, region, service, amz_date, flags);
	if (st != SIGV4_OK)
		return st;
	token = credentials->session_token;
	if (token != NULL && token[0] == '\0')
		token = NULL;

	initStringInfo(&uri);
	initStringInfo(&query);
	initStringInfo(&canon_hdrs);
	initStringInfo(&signed_hdrs);
	initStringInfo(&creq);
	initStringInfo(&sts);
	initStringInfo(&authz);

	st = canon_path(request->path, (flags & SIGV4_FLAG_S3_PATH) != 0, &uri);
	if (st != SIGV4_OK)
		goto done;
	st = canon_query(request->query, &query);
	if (st != SIGV4_OK)
		goto done;

	/*
	 * Headers: the caller's, plus X-Amz-Date and a signed session token when
	 * the caller did not give them.  Authorization cannot be signed (it is
	 * what we produce), so passing it is an error rather than silently
	 * signing a stale value.
	 */
	for (i = 0; i < request->nheaders; i++)
	{
		const char *name = request->headers[i].name;

		if (name == NULL || request->headers[i].value == NULL)
		{
			st = SIGV4_ERR_NULL_ARG;
			goto done;
		}
		if (ascii_caseeq(name, "authorization"))
		{
			st = SIGV4_ERR_BAD_HEADER;
			goto done;
		}
		if (ascii_caseeq(name, SIGV4_DATE_HEADER))
			have_date_header = true;
		if (ascii_caseeq(name, SIGV4_TOKEN_HEADER))
			have_token_header = true;
	}
	if (have_token_header && token != NULL && unsigned_token)
	{
		st = SIGV4_ERR_TOKEN_MISMATCH;
		goto done;
	}

	hs = palloc0((request->nheaders + SIGV4_MAX_EXTRA_HEADERS) * sizeof(CanonHeader));
	for (i = 0; i < request->nheaders; i++)
	{
		st = canon_one_header(request->headers[i].name, request->headers[i].value,
							  i, &total, &hs[nhs]);
		if (st != SIGV4_OK)
			goto done;
		nhs++;
	}

	if (!have_date_header)
	{
		result->extra_headers[result->nextra].name = SIGV4_DATE_HEADER;
		result->extra_headers[result->nextra].value =
			copy_bytes(amz_date, strlen(amz_date));
		result->nextra++;
		st = canon_one_header(SIGV4_DATE_HEADER, amz_date, nhs, &total, &hs[nhs]);
		if (st != SIGV4_OK)
			goto done;
		nhs++;
	}
	if (token != NULL && !have_token_header)
	{
		result->extra_headers[result->nextra].name = SIGV4_TOKEN_HEADER;
		result->extra_headers[result->nextra].value =
			copy_bytes(token, strlen(token));
		result->nextra++;
		if (!unsigned_token)
		{
			st = canon_one_header(SIGV4_TOKEN_HEADER, token, nhs, &total, &hs[nhs]);
			if (st != SIGV4_OK)
				goto done;
			nhs++;
		}
	}

	st = build_headers(hs, nhs, amz_date, token, &canon_hdrs, &signed_hdrs);
	if (st != SIGV4_OK)
		goto done;

	/* Payload hash; the body is hashed in place, never copied. */
	anomaly_sha256(request->body_len > 0 ? request->body : "",
				   request->body_len, digest);
	anomaly_hex_encode(digest, sizeof(digest), result->payload_hash);

	/* 1. Canonical request. */
	appendStringInfoString(&creq, request->method);
	appendStringInfoChar(&creq, '\n');
	appendBinaryStringInfo(&creq, uri.data, uri.len);
	appendStringInfoChar(&creq, '\n');
	if (query.len > 0)
		appendBinaryStringInfo(&creq, query.data, query.len);
	appendStringInfoChar(&creq, '\n');
	if (canon_hdrs.len > 0)
		appendBinaryStringInfo(&creq, canon_hdrs.data, canon_hdrs.len);
	appendStringInfoChar(&creq, '\n');
	appendBinaryStringInfo(&creq, signed_hdrs.data, signed_hdrs.len);
	appendStringInfoChar(&creq, '\n');
	appendStringInfoString(&creq, result->payload_hash);

	/* 2. String to sign. */
	memcpy(date8, amz_date, 8);
	date8[8] = '\0';
	anomaly_sha256(creq.data, creq.len, digest);
	anomaly_hex_encode(digest, sizeof(digest), creq_hash);
	appendStringInfoString(&sts, SIGV4_ALGORITHM "\n");
	appendStringInfoString(&sts, amz_date);
	appendStringInfoChar(&sts, '\n');
	appendStringInfoString(&sts, date8);
	appendStringInfoChar(&sts, '/');
	appendStringInfoString(&sts, region);
	appendStringInfoChar(&sts, '/');
	appendStringInfoString(&sts, service);
	appendStringInfoString(&sts, "/" SIGV4_TERMINATOR "\n");
	appendStringInfoString(&sts, creq_hash);

	/* 3. Signature. */
	compute_signature(credentials->secret_access_key, date8, region, service,
					  sts.data, sts.len, result->signature);

	/* 4. Authorization header value. */
	appendStringInfoString(&authz, SIGV4_ALGORITHM " Credential=");
	appendStringInfoString(&authz, credentials->access_key_id);
	appendStringInfoChar(&authz, '/');
	appendStringInfoString(&authz, date8);
	appendStringInfoChar(&authz, '/');
	appendStringInfoString(&authz, region);
	appendStringInfoChar(&authz, '/');
	appendStringInfoString(&authz, service);
	appendStringInfoString(&authz, "/" SIGV4_TERMINATOR ", SignedHeaders=");
	appendBinaryStringInfo(&authz, signed_hdrs.data, signed_hdrs.len);
	appendStringInfoString(&authz, ", Signature=");
	appendStringInfoString(&authz, result->signature);

	st = split_signed_headers(signed_hdrs.data, &result->signed_header_names,
							  &result->nsigned);
	if (st != SIGV4_OK)
		goto done;
	result->canonical_request = sb_finish(&creq);
	result->string_to_sign = sb_finish(&sts);
	result->authorization = sb_finish(&authz);
	result->signed_headers = sb_finish(&signed_hdrs);

done:
	if (hs != NULL)
	{
		for (i = 0; i < nhs; i++)
		{
			release(hs[i].name);
			alert_free_wiped(hs[i].value);
		}
		release(hs);
	}
	sb_free(&uri);
	sb_free(&query);
	sb_free(&canon_hdrs);
	sb_free(&signed_hdrs);
	sb_free(&creq);
	sb_free(&sts);
	sb_free(&authz);
	explicit_bzero(digest, sizeof(digest));
	if (st != SIGV4_OK)
		sigv4_result_free(result);
	return st;
}

/*
 * Free everything in a result and leave it empty.  Strings are wiped first:
 * the canonical request and the extra headers may contain the session token.
 */
void
sigv4_result_free(SigV4Result *result)
{
	size_t		i;

	if (result == NULL)
		return;
	alert_free_wiped(result->canonical_request);
	alert_free_wiped(result->string_to_sign);
	alert_free_wiped(result->authorization);
	alert_free_wiped(result->signed_headers);
	if (result->signed_header_names != NULL)
	{
		/* names[0] owns the single buffer all the names point into */
		if (result->nsigned > 0)
			release(result->signed_header_names[0]);
		release(result->signed_header_names);
	}
	for (i = 0; i < result->nextra && i < SIGV4_MAX_EXTRA_HEADERS; i++)
		alert_free_wiped(result->extra_headers[i].value);
	memset(result, 0, sizeof(*result));
}

/* Fixed descriptions: they never quote input, which may hold secrets. */
const char *
sigv4_strerror(SigV4Status status)
{
	switch (status)
	{
		case SIGV4_OK:
			return "success";
		case SIGV4_ERR_NULL_ARG:
			return "required argument is missing";
		case SIGV4_ERR_TOO_LONG:
			return "input exceeds its size limit";
		case SIGV4_ERR_BAD_METHOD:
			return "invalid HTTP method";
		case SIGV4_ERR_BAD_PATH:
			return "invalid request path";
		case SIGV4_ERR_BAD_QUERY:
			return "invalid query string";
		case SIGV4_ERR_BAD_HEADER:
			return "invalid request header";
		case SIGV4_ERR_NO_HOST:
			return "request has no Host header";
		case SIGV4_ERR_BAD_DATE:
			return "invalid signing date (expected YYYYMMDDTHHMMSSZ)";
		case SIGV4_ERR_DATE_MISMATCH:
			return "X-Amz-Date header differs from the signing date";
		case SIGV4_ERR_BAD_SCOPE:
			return "invalid region or service name";
		case SIGV4_ERR_BAD_CREDENTIALS:
			return "malformed credentials";
		case SIGV4_ERR_TOKEN_MISMATCH:
			return "X-Amz-Security-Token header conflicts with the session token";
		case SIGV4_ERR_BAD_FLAGS:
			return "unknown signing flags";
		case SIGV4_ERR_NO_MEMORY:
			return "out of memory";
	}
	return "unknown error";
}

/* ---------------------------------------------------------------- */
/* Encoding helpers for callers                                     */
/* ---------------------------------------------------------------- */

/* Percent-encode a byte string with AWS's rules; see sigv4.h. */
SigV4Status
sigv4_uri_encode(const char *in, size_t len, int keep_slash, char **out)
{
	StringInfoData sb;

	if (out == NULL)
		return SIGV4_ERR_NULL_ARG;
	*out = NULL;
	if (in == NULL && len > 0)
		return SIGV4_ERR_NULL_ARG;
	if (len > SIGV4_MAX_FORM_VALUE_LEN)
		return SIGV4_ERR_TOO_LONG;
	initStringInfo(&sb);
	sb_encode(&sb, in, len, keep_slash != 0);
	*out = sb_finish(&sb);
	return SIGV4_OK;
}

/*
 * Build an AWS Query API form body; see sigv4.h.  Pairs stay in the caller's
 * order: the body is hashed as sent, so no canonical order is needed.
 */
SigV4Status
sigv4_form_encode(const SigV4Pair *pairs, size_t npairs, char **out,
				  size_t *out_len)
{
	StringInfoData sb;
	size_t		i;

	if (out == NULL)
		return SIGV4_ERR_NULL_ARG;
	*out = NULL;
	if (out_len != NULL)
		*out_len = 0;
	if (pairs == NULL && npairs > 0)
		return SIGV4_ERR_NULL_ARG;
	if (npairs > SIGV4_MAX_FORM_PAIRS)
		return SIGV4_ERR_TOO_LONG;

	initStringInfo(&sb);
	for (i = 0; i < npairs; i++)
	{
		const char *value = pairs[i].value != NULL ? pairs[i].value : "";
		size_t		nlen,
					vlen;

		if (pairs[i].name == NULL)
		{
			sb_free(&sb);
			return SIGV4_ERR_NULL_ARG;
		}
		nlen = bounded_len(pairs[i].name, SIGV4_MAX_FORM_NAME_LEN);
		vlen = bounded_len(value, SIGV4_MAX_FORM_VALUE_LEN);
		if (nlen > SIGV4_MAX_FORM_NAME_LEN || vlen > SIGV4_MAX_FORM_VALUE_LEN)
		{
			sb_free(&sb);
			return SIGV4_ERR_TOO_LONG;
		}
		if (i > 0)
			appendStringInfoChar(&sb, '&');
		sb_encode(&sb, pairs[i].name, nlen, false);
		appendStringInfoChar(&sb, '=');
		sb_encode(&sb, value, vlen, false);
	}
	if (out_len != NULL)
		*out_len = sb.len;
	*out = sb_finish(&sb);
	return SIGV4_OK;
}
