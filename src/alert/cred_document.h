/*
 * cred_document.h
 *	  Reading the AWS credential documents of the ECS container endpoint and
 *	  the EC2 instance metadata service (small JSON objects) with
 *	  PostgreSQL's JSON parser; the fuzzer (test/fuzz/fuzz_credentials.c) and
 *	  the unit tests link the code that credentials.c runs on a document,
 *	  built as frontend code with libpgcommon.
 *
 * A document comes from whatever answers at the endpoint, so it is
 * untrusted: it is parsed as JSON, only the string values of the keys below
 * at the top level are kept, and no part of it goes into an error message.
 */
#ifndef ANOMALY_CRED_DOCUMENT_H
#define ANOMALY_CRED_DOCUMENT_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

/*
 * The string values of a document's keys AccessKeyId, SecretAccessKey,
 * Token and Expiration, escapes decoded, palloc'd; NULL where the key is
 * absent or its value is not a string.  The first occurrence of a key
 * counts.
 */
typedef struct CredDocument
{
	char	   *access_key_id;
	char	   *secret_access_key;
	char	   *token;
	char	   *expiration;
} CredDocument;

/*
 * Reads doc (NUL-terminated) into out.  False, with out empty and a reason
 * in error (never a part of the document), when doc is not valid JSON, not
 * an object, or a value read has a control character.
 */
extern bool cred_document_read(const char *doc, CredDocument *out,
							   char *error, size_t errlen);

/* Overwrites and frees the values of a document read. */
extern void cred_document_clear(CredDocument *doc);

/*
 * An ISO 8601 UTC time ("2024-01-01T00:00:00Z") as seconds since the epoch;
 * 0 when s is NULL or not such a time.  Each field is 1 to 9 digits (no
 * sign, no blank); what follows the seconds is ignored; fields out of range
 * are normalised as timegm() does (-1 when the result does not fit).
 */
extern time_t cred_parse_expiration(const char *s);

#endif							/* ANOMALY_CRED_DOCUMENT_H */
