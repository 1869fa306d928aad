/*
 * test_cred_document.c
 *	  Reading the AWS credential documents of ECS and IMDS
 *	  (src/alert/cred_document.c): fields and expiry times of real-looking
 *	  documents, what is refused, and the time parser's integer overflow
 *	  (found while writing the fuzz target; its regression seed is
 *	  test/fuzz/seeds/credentials/regress-year-overflow).
 */
#include <stdlib.h>

#include "alert/cred_document.h"
#include "unit.h"

/* Checks the value of one field: want, or NULL for none. */
static void
check_field(const char *doc, const char *key, const char *want, const char *what)
{
	UNIT_FINDS(cred_json_string, doc, key, want, "%s: %s%s", what, want ? "" : "no ", key);
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
	 * Only the first quoted occurrence counts (a flat reader, not JSON): a
	 * value equal to the key name hides the key that follows.
	 */
	check_field("{\"Note\": \"Token\", \"Token\": \"b\"}", "Token", NULL, "key name as a value");

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
