/*
 * sha256.h
 *	  SHA-256 and HMAC-SHA256 for the alert layer, through PostgreSQL's
 *	  common/cryptohash.h and common/hmac.h.
 *
 * The alert layer signs AWS requests (SigV4) and webhook bodies.  The
 * hashing is PostgreSQL's (OpenSSL underneath when PostgreSQL was built with
 * it); these wrappers only give the signer, which also runs outside a server
 * (unit tests, linked with libpgcommon), a one-call form and one failure
 * rule: a failure of the library (out of memory, a refused digest) raises an
 * ERROR in a server and aborts a standalone program, so a caller never
 * signs with a half-computed digest.
 *
 * Include postgres.h (or postgres_fe.h outside a server) first.
 */
#ifndef ANOMALY_SHA256_H
#define ANOMALY_SHA256_H

#include "common/cryptohash.h"
#include "common/hmac.h"
#include "common/sha2.h"

#define ANOMALY_SHA256_DIGEST_LEN	PG_SHA256_DIGEST_LENGTH /* bytes of output */
#define ANOMALY_SHA256_HEX_LEN		(2 * PG_SHA256_DIGEST_LENGTH)	/* hex digits */

/* Streaming SHA-256: a PostgreSQL hash context, freed by final. */
typedef struct AnomalySha256Ctx
{
	pg_cryptohash_ctx *ctx;
} AnomalySha256Ctx;

/* Streaming HMAC-SHA256: a PostgreSQL HMAC context, freed by final. */
typedef struct AnomalyHmacSha256Ctx
{
	pg_hmac_ctx *ctx;
} AnomalyHmacSha256Ctx;

extern void anomaly_sha256_init(AnomalySha256Ctx *ctx);
extern void anomaly_sha256_update(AnomalySha256Ctx *ctx,
								  const void *data, size_t len);
extern void anomaly_sha256_final(AnomalySha256Ctx *ctx,
								 uint8 digest[ANOMALY_SHA256_DIGEST_LEN]);
extern void anomaly_sha256(const void *data, size_t len,
						   uint8 digest[ANOMALY_SHA256_DIGEST_LEN]);

extern void anomaly_hmac_sha256_init(AnomalyHmacSha256Ctx *ctx,
									 const void *key, size_t key_len);
extern void anomaly_hmac_sha256_update(AnomalyHmacSha256Ctx *ctx,
									   const void *data, size_t len);
extern void anomaly_hmac_sha256_final(AnomalyHmacSha256Ctx *ctx,
									  uint8 mac[ANOMALY_SHA256_DIGEST_LEN]);
extern void anomaly_hmac_sha256(const void *key, size_t key_len,
								const void *data, size_t len,
								uint8 mac[ANOMALY_SHA256_DIGEST_LEN]);

/*
 * Write 2*len lower-case hex digits of bytes[0..len) to out, then a NUL;
 * out must have room for 2*len+1 characters.  (PostgreSQL 15's hex_encode is
 * in the server only, not in libpgcommon; the server code uses it.)
 */
extern void anomaly_hex_encode(const uint8 *bytes, size_t len, char *out);

#endif							/* ANOMALY_SHA256_H */
