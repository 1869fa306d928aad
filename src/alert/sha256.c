/*
 * sha256.c
 *	  SHA-256 and HMAC-SHA256 through PostgreSQL's cryptohash and hmac APIs.
 *
 * Built into the server library and, with FRONTEND defined, into the
 * standalone unit tests (linked with libpgcommon and libpgport).  See
 * sha256.h for the failure rule.
 */
#ifdef FRONTEND
#include "postgres_fe.h"
#else
#include "postgres.h"
#endif

#include "alert/sha256.h"

/* The failure rule of sha256.h: no digest is ever returned half made. */
static void
digest_failed(const char *what, const char *why)
{
#ifdef FRONTEND
	fprintf(stderr, "%s failed: %s\n", what, why ? why : "out of memory");
	abort();
#else
	ereport(ERROR,
			(errcode(ERRCODE_INTERNAL_ERROR),
			 errmsg("%s failed: %s", what, why ? why : "out of memory")));
#endif
}

/* Starts a SHA-256 hash. */
void
anomaly_sha256_init(AnomalySha256Ctx *ctx)
{
	ctx->ctx = pg_cryptohash_create(PG_SHA256);
	if (ctx->ctx == NULL)
		digest_failed("SHA-256", NULL);
	if (pg_cryptohash_init(ctx->ctx) < 0)
		digest_failed("SHA-256", pg_cryptohash_error(ctx->ctx));
}

/* Hashes len more bytes. */
void
anomaly_sha256_update(AnomalySha256Ctx *ctx, const void *data, size_t len)
{
	if (pg_cryptohash_update(ctx->ctx, data, len) < 0)
		digest_failed("SHA-256", pg_cryptohash_error(ctx->ctx));
}

/* Writes the digest and frees the context. */
void
anomaly_sha256_final(AnomalySha256Ctx *ctx, uint8 digest[ANOMALY_SHA256_DIGEST_LEN])
{
	if (pg_cryptohash_final(ctx->ctx, digest, ANOMALY_SHA256_DIGEST_LEN) < 0)
		digest_failed("SHA-256", pg_cryptohash_error(ctx->ctx));
	pg_cryptohash_free(ctx->ctx);
	ctx->ctx = NULL;
}

/* SHA-256 of one buffer. */
void
anomaly_sha256(const void *data, size_t len, uint8 digest[ANOMALY_SHA256_DIGEST_LEN])
{
	AnomalySha256Ctx ctx;

	anomaly_sha256_init(&ctx);
	anomaly_sha256_update(&ctx, data, len);
	anomaly_sha256_final(&ctx, digest);
}

/* Starts an HMAC-SHA256 with a key (PostgreSQL copies what it needs). */
void
anomaly_hmac_sha256_init(AnomalyHmacSha256Ctx *ctx, const void *key, size_t key_len)
{
	ctx->ctx = pg_hmac_create(PG_SHA256);
	if (ctx->ctx == NULL)
		digest_failed("HMAC-SHA256", NULL);
	if (pg_hmac_init(ctx->ctx, key, key_len) < 0)
		digest_failed("HMAC-SHA256", pg_hmac_error(ctx->ctx));
}

/* MACs len more bytes. */
void
anomaly_hmac_sha256_update(AnomalyHmacSha256Ctx *ctx, const void *data, size_t len)
{
	if (pg_hmac_update(ctx->ctx, data, len) < 0)
		digest_failed("HMAC-SHA256", pg_hmac_error(ctx->ctx));
}

/* Writes the MAC and frees the context (which wipes the key it held). */
void
anomaly_hmac_sha256_final(AnomalyHmacSha256Ctx *ctx, uint8 mac[ANOMALY_SHA256_DIGEST_LEN])
{
	if (pg_hmac_final(ctx->ctx, mac, ANOMALY_SHA256_DIGEST_LEN) < 0)
		digest_failed("HMAC-SHA256", pg_hmac_error(ctx->ctx));
	pg_hmac_free(ctx->ctx);
	ctx->ctx = NULL;
}

/*
 * HMAC-SHA256 of one buffer.  mac may be the key's own buffer: the key is
 * consumed by init, before the MAC is written.
 */
void
anomaly_hmac_sha256(const void *key, size_t key_len, const void *data, size_t len,
					uint8 mac[ANOMALY_SHA256_DIGEST_LEN])
{
	AnomalyHmacSha256Ctx ctx;

	anomaly_hmac_sha256_init(&ctx, key, key_len);
	anomaly_hmac_sha256_update(&ctx, data, len);
	anomaly_hmac_sha256_final(&ctx, mac);
}

/* Lower-case hex of bytes, NUL-terminated. */
void
anomaly_hex_encode(const uint8 *bytes, size_t len, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < len; i++)
	{
		*out++ = digits[bytes[i] >> 4];
		*out++ = digits[bytes[i] & 0xF];
	}
	*out = '\0';
}
