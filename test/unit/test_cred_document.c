/*
 * test_cred_document.c
 *	  Reading the AWS credential documents of ECS and IMDS
 *	  (src/alert/cred_document.c): fields and expiry times of real-looking
 *	  documents, what is refused, and the time parser's integer overflow
 *	  (found while writing the fuzz target; its regression seed is
 *	  test/fuzz/seeds/credentials/regress-year-overflow).  The reading is
 *	  PostgreSQL's JSON parser (frontend libpgcommon).
 */
#include <stdbool.h>
#include <stdlib.h>

#include "alert/cred_document.h"
#include "unit.h"

/*
 * Checks the value read for key in doc (NULL: none, or the document
 * refused).
 */
static void
check_field(const char *doc, const char *key, const char *want, const char *what)
{
	CredDocument d;
	char		error[256];
	bool		ok = cred_document_read(doc, &d, error, sizeof(error));
	const char *got = NULL;

	if (ok && strcmp(key, "AccessKeyId") == 0)
		got = d.access_key_id;
	else if (ok && strcmp(key, "SecretAccessKey") == 0)
		got = d.secret_access_key;
	else if (ok && strcmp(key, "Token") == 0)
		got = d.token;
	else if (ok && strcmp(key, "Expiration") == 0)
		got = d.expiration;
	if (want == NULL)
		UNIT_OK(got == NULL, "%s: no %s", what, key);
	else
		UNIT_EQ_STR(got ? got : "(null)", want, "%s: %s", what, key);
	if (ok)
		cred_document_clear(&d);
}

/*
 * Checks that doc is refused with a message that starts with want and
 * quotes nothing of the document (secret is a part of it that may not
 * show).
 */
static void
check_refused(const char *doc, const char *want, const char *secret, const char *what)
{
	CredDocument d;
	char		error[256] = "";
	bool		ok = cred_document_read(doc, &d, error, sizeof(error));

	UNIT_OK(!ok, "%s: refused", what);
	UNIT_OK(strncmp(error, want, strlen(want)) == 0, "%s: says \"%s\" (got \"%s\")",
			what, want, error);
	UNIT_OK(secret == NULL || strstr(error, secret) == NULL, "%s: no part of the document in \"%s\"",
			what, error);
	UNIT_OK(!ok || d.access_key_id == NULL, "%s: nothing kept", what);
}

int
main(void)
{
	/* As the stand-in (test/servers/sns_standin.py) and ECS write them. */
	const char *flat = "{\"Code\": \"Success\", \"Type\": \"AWS-HMAC\", "
		"\"AccessKeyId\": \"ASIAIMDSEXAMPLEKEY01\", \"SecretAccessKey\": "
		"\"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\", \"Token\": \"\", "
		"\"Expiration\": \"2026-12-01T23:59:59Z\"}";

	/* As EC2 writes them: pretty-printed, a blank before the colon. */
	const char *pretty = "{\n  \"Code\" : \"Success\",\n  \"AccessKeyId\" : \"ASIAPRETTY\",\n"
		"  \"SecretAccessKey\" :\t\"s3cr3t+/==\",\n  \"Expiration\" : \"2028-02-29T23:59:59Z\"\n}";

	check_field(flat, "AccessKeyId", "ASIAIMDSEXAMPLEKEY01", "flat");
	check_field(flat, "SecretAccessKey", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "flat");
	check_field(flat, "Token", "", "flat (empty token)");
	check_field(flat, "Expiration", "2026-12-01T23:59:59Z", "flat");
	check_field(pretty, "AccessKeyId", "ASIAPRETTY", "pretty");
	check_field(pretty, "SecretAccessKey", "s3cr3t+/==", "pretty");
	check_field(pretty, "Token", NULL, "pretty");

	/* Refused: not a string, no colon, unterminated, a key without quotes. */
	check_field("{\"Token\": null}", "Token", NULL, "null value");
	check_field("{\"Token\" \"x\"}", "Token", NULL, "no colon");
	check_field("{\"Token\": \"abc", "Token", NULL, "unterminated");
	check_field("{Token: \"abc\"}", "Token", NULL, "unquoted key");
	check_field("", "Token", NULL, "empty document");
	/* A prefix of the key is not the key. */
	check_field("{\"TokenX\": \"a\", \"Token\": \"b\"}", "Token", "b", "longer key first");

	/*
	 * A JSON parser, not a flat reader: a value equal to a key's name is no
	 * key (the flat reader found "Token" there and refused the document),
	 * nested objects are not the document's keys, the first of two keys
	 * counts, and escapes are decoded.
	 */
	check_field("{\"Note\": \"Token\", \"Token\": \"b\"}", "Token", "b", "key name as a value");
	check_field("{\"Role\": {\"Token\": \"inner\"}, \"Token\": \"outer\"}", "Token", "outer",
				"nested key ignored");
	check_field("{\"Role\": {\"Token\": \"inner\"}}", "Token", NULL, "nested key only");
	check_field("{\"Token\": \"first\", \"Token\": \"second\"}", "Token", "first", "first of two");
	check_field("{\"SecretAccessKey\": \"a\\/b\\\\c\\\"d\\u0041\"}", "SecretAccessKey", "a/b\\c\"dA",
				"escapes decoded");
	check_field("{\"Token\": [\"x\"], \"AccessKeyId\": \"k\"}", "Token", NULL, "array value");
	check_field("{\"Token\": 12}", "Token", NULL, "number value");

	/* Refused, with a reason that quotes nothing of the document. */
	check_refused("{\"SecretAccessKey\": wJalrXUtnFEMI}", "the document is not valid JSON",
				  "wJalr", "unquoted secret");
	check_refused("{\"SecretAccessKey\": \"wJalr\", }", "the document is not valid JSON",
				  "wJalr", "trailing comma");
	check_refused("{\"Token\": \"abc", "the document is not valid JSON", "abc", "unterminated string");
	check_refused("{\"Token\": \"abc\"} x", "the document is not valid JSON", "abc", "trailing bytes");
	check_refused("{\"Token\": \"ab\\u0000c\"}", "the document is not valid JSON", NULL, "escaped NUL");
	check_refused("[\"AccessKeyId\", \"k\"]", "the document is not a JSON object", NULL, "an array");
	check_refused("\"AccessKeyId\"", "the document is not a JSON object", NULL, "a string");
	/* A decoded line break would split the HTTP header the token goes to. */
	check_refused("{\"AccessKeyId\": \"k\", \"Token\": \"tok\\r\\nX-Evil: 1\"}",
				  "the document's Token has a control character", "tok", "escaped CR LF in the token");
	check_refused("{\"AccessKeyId\": \"k\", \"SecretAccessKey\": \"s\\u007f\"}",
				  "the document's SecretAccessKey has a control character", NULL, "DEL in the secret");
	/* The same bytes outside the fields read do not matter. */
	check_field("{\"Code\": \"a\\nb\", \"Token\": \"t\"}", "Token", "t", "control character elsewhere");

	UNIT_EQ_INT(cred_parse_expiration("2024-01-01T00:00:00Z"), 1704067200, "epoch of 2024");
	UNIT_EQ_INT(cred_parse_expiration("2028-02-29T23:59:59Z"), 1835481599, "leap day");
	UNIT_EQ_INT(cred_parse_expiration("2024-1-2T3:4:5Z"), 1704164645, "one-digit fields");
	UNIT_EQ_INT(cred_parse_expiration("2024-01-01T00:00:00"), 1704067200, "no zone letter");
	UNIT_EQ_INT(cred_parse_expiration(NULL), 0, "NULL");
	UNIT_EQ_INT(cred_parse_expiration(""), 0, "empty");
	UNIT_EQ_INT(cred_parse_expiration("bad"), 0, "not a time");
	UNIT_EQ_INT(cred_parse_expiration("2024-01-01"), 0, "date only");
	UNIT_EQ_INT(cred_parse_expiration("2024-01-01 00:00:00Z"), 0, "blank for T");

	/*
	 * Regression: sscanf("%d") took "-2147483648" as the year and
	 * tm_year - 1900 overflowed (UBSan: signed integer overflow; the server
	 * builds with -fwrapv, so there it wrapped).  Fields are now 1 to 9
	 * digits without a sign.
	 */
	UNIT_EQ_INT(cred_parse_expiration("-2147483648-01-01T00:00:00Z"), 0, "negative year refused");
	UNIT_EQ_INT(cred_parse_expiration("2024--2147483648-01T00:00:00Z"), 0, "negative month refused");
	UNIT_EQ_INT(cred_parse_expiration("2147483647-01-01T00:00:00Z"), 0, "ten-digit year refused");
	UNIT_OK(cred_parse_expiration("999999999-12-31T23:59:59Z") != 0, "nine-digit year parses");
	return unit_done();
}
