/*
 * cred_document.h
 *	  Reading the AWS credential documents of the ECS container endpoint and
 *	  the EC2 instance metadata service (small flat JSON objects), with no
 *	  PostgreSQL header: the fuzzer (test/fuzz/fuzz_credentials.c) and the
 *	  unit tests link the code that credentials.c runs on a document.
 *
 * A document comes from whatever answers at the endpoint, so it is
 * untrusted: these functions only read it (a NUL-terminated string) and
 * return pointers into it.
 */
#ifndef ANOMALY_CRED_DOCUMENT_H
#define ANOMALY_CRED_DOCUMENT_H

#include <stddef.h>
#include <time.h>

/*
 * The string value of "key" in doc: after the first "key" (quoted), blanks,
 * ':', blanks and '"', up to the next '"'.  A pointer into doc and its
 * length in *len, or NULL.  Escapes are not decoded (AWS's key ids, secrets,
 * tokens and times contain none).
 */
extern const char *cred_json_string(const char *doc, const char *key,
									size_t *len);

/*
 * An ISO 8601 UTC time ("2024-01-01T00:00:00Z") as seconds since the epoch;
 * 0 when s is NULL or not such a time.  Each field is 1 to 9 digits (no
 * sign, no blank); what follows the seconds is ignored; fields out of range
 * are normalised as timegm() does (-1 when the result does not fit).
 */
extern time_t cred_parse_expiration(const char *s);

#endif							/* ANOMALY_CRED_DOCUMENT_H */
