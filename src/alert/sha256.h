/*
 * sha256.h
 *	  SHA-256 (FIPS 180-4) and HMAC-SHA256 (RFC 2104), plain C99.
 *
 * The alert layer signs AWS requests (SigV4) and webhook bodies with these.
 * They are written here rather than taken from OpenSSL so that the signing
 * code has no dependency beyond libc and can be unit-tested on its own; they
 * are not meant to be fast or side-channel hardened beyond what HMAC needs.
 *
 * Every function works on caller-owned state only: no globals, so they are
 * safe to call from several threads at once on different contexts.
 *
 * The exported names carry an "anomaly_" prefix because PostgreSQL loads
 * extension libraries with RTLD_GLOBAL and generic names such as
 * "sha256_init" could collide with another library's.
 */
#ifndef ANOMALY_SHA256_H
#define ANOMALY_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define ANOMALY_SHA256_BLOCK_LEN	64	/* bytes per compression block */
#define ANOMALY_SHA256_DIGEST_LEN	32	/* bytes of output */
#define ANOMALY_SHA256_HEX_LEN		64	/* hex characters of output */

/* Streaming SHA-256 state; treat the fields as private. */
typedef struct AnomalySha256Ctx
{
	uint32_t	state[8];		/* H0..H7 */
	uint64_t	total_len;		/* bytes hashed so far */
	size_t		buf_len;		/* bytes waiting in buf */
	uint8_t		buf[ANOMALY_SHA256_BLOCK_LEN];
} AnomalySha256Ctx;

/* Streaming HMAC-SHA256 state; treat the fields as private. */
typedef struct AnomalyHmacSha256Ctx
{
	AnomalySha256Ctx inner;
	/* key XOR opad, kept until final */
	uint8_t		okey[ANOMALY_SHA256_BLOCK_LEN];
} AnomalyHmacSha256Ctx;

extern void anomaly_sha256_init(AnomalySha256Ctx *ctx);
extern void anomaly_sha256_update(AnomalySha256Ctx *ctx,
								  const void *data, size_t len);
extern void anomaly_sha256_final(AnomalySha256Ctx *ctx,
								 uint8_t digest[ANOMALY_SHA256_DIGEST_LEN]);
extern void anomaly_sha256(const void *data, size_t len,
						   uint8_t digest[ANOMALY_SHA256_DIGEST_LEN]);

extern void anomaly_hmac_sha256_init(AnomalyHmacSha256Ctx *ctx,
									 const void *key, size_t key_len);
extern void anomaly_hmac_sha256_update(AnomalyHmacSha256Ctx *ctx,
									   const void *data, size_t len);
extern void anomaly_hmac_sha256_final(AnomalyHmacSha256Ctx *ctx,
									  uint8_t mac[ANOMALY_SHA256_DIGEST_LEN]);
extern void anomaly_hmac_sha256(const void *key, size_t key_len,
								const void *data, size_t len,
								uint8_t mac[ANOMALY_SHA256_DIGEST_LEN]);

/*
 * Write 2*len lower-case hex digits of bytes[0..len) to out, then a NUL;
 * out must have room for 2*len+1 characters.
 */
extern void anomaly_hex_encode(const uint8_t *bytes, size_t len, char *out);

/* Overwrite memory in a way the compiler may not drop (for key material). */
extern void anomaly_secure_zero(void *p, size_t len);

#endif							/* ANOMALY_SHA256_H */
