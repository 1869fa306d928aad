/*
 * sns_parse.h
 *	  Reading Amazon SNS's responses to Publish (XML), with no PostgreSQL
 *	  header: the fuzzer (test/fuzz/fuzz_sns.c) and the unit tests link the
 *	  code that sns.c runs on a response body.
 *
 * The body comes from whatever answers at the SNS endpoint, so it is
 * untrusted: these functions only search it (it is a NUL-terminated string,
 * cut at its first NUL), never write it, and return pointers into it.
 */
#ifndef ANOMALY_SNS_PARSE_H
#define ANOMALY_SNS_PARSE_H

#include <stdbool.h>
#include <stddef.h>

/*
 * The text between the first "<tag>" of xml and the first "</tag>" after
 * it: a pointer into xml and its length in *len, or NULL when either is
 * missing.  No XML is decoded: an SNS error document's Code and Message
 * are plain text, and the caller only shows them.
 */
extern const char *sns_xml_element(const char *xml, const char *tag,
								   size_t *len);

/* Whether an HTTP 200 body is a PublishResponse carrying a MessageId. */
extern bool sns_publish_succeeded(const char *body);

/* Whether an SNS error code is worth retrying (throttling, outages). */
extern bool sns_transient_code(const char *code);

#endif							/* ANOMALY_SNS_PARSE_H */
