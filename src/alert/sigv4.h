/*
 * sigv4.h
 *	  AWS Signature Version 4 (header-based, AWS4-HMAC-SHA256) request signing.
 *
 * Built on PostgreSQL's StringInfo and HMAC (frontend code outside a server:
 * the unit tests link libpgcommon), no global state.  All output is palloc'd
 * in the current memory context and released with sigv4_result_free() /
 * pfree(); running out of memory raises an ERROR (exits outside a server).
 * Include postgres.h (or postgres_fe.h) first.
 *
 * Checked against AWS's official SigV4 test suite (2015-08-30 edition) by
 * test/unit/test_sigv4.c.
 *
 * Typical use by the HTTP sender:
 *
 *		SigV4Pair	hdrs[] = {
 *			{"Host", "sns.eu-west-1.amazonaws.com"},
 *			{"Content-Type", "application/x-www-form-urlencoded; charset=utf-8"},
 *		};
 *		SigV4Request req = {"POST", "/", NULL, hdrs, 2, body, body_len};
 *		SigV4Credentials cred = {key_id, secret, session_token_or_NULL};
 *		SigV4Result res;
 *
 *		if (sigv4_sign(&req, &cred, "eu-west-1", "sns", "20240101T000000Z",
 *					   0, &res) != SIGV4_OK) ...error...
 *		send hdrs, then each res.extra_headers[i], then
 *		"Authorization: " res.authorization
 *		sigv4_result_free(&res);
 *
 * What the signer assumes about its input:
 *
 * - path is the path as it goes on the wire (the request-target before any
 *   '?'), not a decoded path.  For services other than S3 the canonical URI
 *   is that path with dot segments removed, empty segments collapsed, and
 *   each segment URI-encoded once more; because the wire path is already
 *   encoded once, this is AWS's "encode each path segment twice" rule, and a
 *   raw byte such as a space or UTF-8 (as in the test suite) comes out
 *   encoded once.  With SIGV4_FLAG_S3_PATH the path is neither normalised
 *   nor re-encoded: existing %XX escapes are kept and only bytes that are
 *   not allowed unescaped are encoded.
 * - query is the raw query string without the '?', or NULL.  Each name and
 *   value is percent-decoded and re-encoded with AWS's rules (unreserved
 *   characters kept, everything else %XX upper case, space as %20, '+' is a
 *   literal plus), then the pairs are sorted by name, then value.  A '%' not
 *   followed by two hex digits is an error.
 * - headers are name/value pairs; every header given is signed.  Names are
 *   matched case-insensitively, values are trimmed and runs of spaces/tabs
 *   collapsed; repeated names are joined with ',' in the order given; a
 *   value may contain obs-fold line folding (LF or CRLF followed by a space
 *   or tab), and each folded line counts as one more comma-separated value,
 *   as the test suite's get-header-value-multiline case requires.  A Host
 *   header is required.  An Authorization header may not be given.
 * - If no X-Amz-Date header is given, one with amz_date is added and signed;
 *   if one is given it must equal amz_date.
 * - A session token is sent as X-Amz-Security-Token.  By default it is
 *   signed (test suite case post-sts-header-before; what the AWS SDKs do and
 *   what SNS accepts).  With SIGV4_FLAG_UNSIGNED_TOKEN it is added after
 *   signing and left out of the signed headers (case post-sts-header-after).
 *   If the caller already put the header in the list it is signed as given
 *   and must equal the session token.
 */
#ifndef ANOMALY_SIGV4_H
#define ANOMALY_SIGV4_H

#include <stddef.h>

/* Input limits; anything larger is rejected with SIGV4_ERR_TOO_LONG. */
#define SIGV4_MAX_METHOD_LEN		32
#define SIGV4_MAX_PATH_LEN			8192
#define SIGV4_MAX_QUERY_LEN			65536
#define SIGV4_MAX_HEADERS			128
#define SIGV4_MAX_HEADER_NAME_LEN	256
#define SIGV4_MAX_HEADER_VALUE_LEN	16384
#define SIGV4_MAX_HEADERS_TOTAL		65536	/* sum of names and values */
#define SIGV4_MAX_SCOPE_PART_LEN	64	/* region, service */
#define SIGV4_MAX_KEY_ID_LEN		128
#define SIGV4_MAX_SECRET_LEN		256
#define SIGV4_MAX_TOKEN_LEN			16384
#define SIGV4_MAX_FORM_PAIRS		1000
#define SIGV4_MAX_FORM_NAME_LEN		256
#define SIGV4_MAX_FORM_VALUE_LEN	(1024 * 1024)

#define SIGV4_AMZ_DATE_LEN			16	/* YYYYMMDD'T'HHMMSS'Z' */
#define SIGV4_HEX_LEN				64	/* signature and payload hash */
#define SIGV4_MAX_EXTRA_HEADERS		2	/* X-Amz-Date, X-Amz-Security-Token */

/* Flags for sigv4_sign(). */
#define SIGV4_FLAG_S3_PATH			0x01	/* no path normalisation or
											 * re-encoding (Amazon S3) */
#define SIGV4_FLAG_UNSIGNED_TOKEN	0x02	/* add the session token after
											 * signing */

typedef enum SigV4Status
{
	SIGV4_OK = 0,
	SIGV4_ERR_NULL_ARG,			/* a required argument is NULL */
	SIGV4_ERR_TOO_LONG,			/* an input exceeds its limit */
	SIGV4_ERR_BAD_METHOD,		/* method is empty or not an HTTP token */
	SIGV4_ERR_BAD_PATH,			/* path not starting with '/', or with '?',
								 * '#' or control characters */
	SIGV4_ERR_BAD_QUERY,		/* bad percent escape or control character */
	SIGV4_ERR_BAD_HEADER,		/* bad header name or value, or Authorization */
	SIGV4_ERR_NO_HOST,			/* no Host header */
	SIGV4_ERR_BAD_DATE,			/* amz_date not a valid YYYYMMDDTHHMMSSZ */
	SIGV4_ERR_DATE_MISMATCH,	/* X-Amz-Date header differs from amz_date */
	SIGV4_ERR_BAD_SCOPE,		/* region or service empty or bad characters */
	SIGV4_ERR_BAD_CREDENTIALS,	/* key id, secret or token malformed */
	SIGV4_ERR_TOKEN_MISMATCH,	/* X-Amz-Security-Token header differs from the
								 * session token, or is given together with
								 * SIGV4_FLAG_UNSIGNED_TOKEN */
	SIGV4_ERR_BAD_FLAGS,		/* unknown flag bits */
	SIGV4_ERR_NO_MEMORY			/* not returned any more: palloc raises */
} SigV4Status;

/* A name/value pair: a request header, or a form parameter. */
typedef struct SigV4Pair
{
	const char *name;
	const char *value;
} SigV4Pair;

/* The request to sign; nothing here is modified or kept. */
typedef struct SigV4Request
{
	const char *method;			/* "GET", "POST", ... */
	const char *path;			/* wire path, "/" or "" for the root */
	const char *query;			/* raw query without '?', or NULL */
	const SigV4Pair *headers;	/* headers to sign */
	size_t		nheaders;
	const void *body;			/* may be NULL when body_len is 0 */
	size_t		body_len;
} SigV4Request;

/* Credentials; never copied into any output except the session token. */
typedef struct SigV4Credentials
{
	const char *access_key_id;
	const char *secret_access_key;
	const char *session_token;	/* NULL or "" for long-term credentials */
} SigV4Credentials;

/* A header the caller must add to the request (value is palloc'd). */
typedef struct SigV4ExtraHeader
{
	const char *name;			/* static string, e.g. "X-Amz-Date" */
	char	   *value;
} SigV4ExtraHeader;

/* Everything sigv4_sign() produces; release with sigv4_result_free(). */
typedef struct SigV4Result
{
	char	   *canonical_request;
	char	   *string_to_sign;
	char	   *authorization;	/* value of the Authorization header */
	char	   *signed_headers; /* "host;x-amz-date", as in the header */
	char	  **signed_header_names;	/* the same, split; nsigned entries */
	size_t		nsigned;
	/* headers to send besides the caller's own and Authorization */
	SigV4ExtraHeader extra_headers[SIGV4_MAX_EXTRA_HEADERS];
	size_t		nextra;
	char		signature[SIGV4_HEX_LEN + 1];
	char		payload_hash[SIGV4_HEX_LEN + 1];	/* hex SHA-256 of the body */
} SigV4Result;

/*
 * Sign a request.  On SIGV4_OK *result holds palloc'd strings; on any error
 * *result is left empty (all NULL) and nothing needs freeing, although
 * calling sigv4_result_free() on it is harmless.
 */
extern SigV4Status sigv4_sign(const SigV4Request *request,
							  const SigV4Credentials *credentials,
							  const char *region,
							  const char *service,
							  const char *amz_date,
							  unsigned int flags,
							  SigV4Result *result);

/* Release a result; safe on an empty or already freed result, or NULL. */
extern void sigv4_result_free(SigV4Result *result);

/* A short fixed English description of a status (never of input data). */
extern const char *sigv4_strerror(SigV4Status status);

/*
 * Percent-encode len bytes with AWS's rules: A-Z a-z 0-9 - _ . ~ are kept,
 * every other byte becomes %XX with upper-case hex (so space is %20).  With
 * keep_slash, '/' is kept too.  On SIGV4_OK *out is a palloc'd NUL-terminated
 * string.  Inputs longer than SIGV4_MAX_FORM_VALUE_LEN are refused.
 */
extern SigV4Status sigv4_uri_encode(const char *in, size_t len, int keep_slash,
									char **out);

/*
 * Build an application/x-www-form-urlencoded body the way the AWS Query API
 * (SNS Publish) expects it: name=value pairs in the given order, joined with
 * '&', names and values encoded as sigv4_uri_encode() does (space as %20,
 * not '+').  A NULL value is sent as an empty one.  On SIGV4_OK *out is
 * palloc'd and *out_len (if not NULL) its length.
 */
extern SigV4Status sigv4_form_encode(const SigV4Pair *pairs, size_t npairs,
									 char **out, size_t *out_len);

#endif							/* ANOMALY_SIGV4_H */
