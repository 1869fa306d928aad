/*
 * sha256.c
 *	  SHA-256 as specified in FIPS 180-4 and HMAC as specified in RFC 2104.
 *
 * Written for the anomaly extension's alert layer; see sha256.h for why it
 * exists.  Plain C99, no PostgreSQL headers, no global mutable state.
 */
#include "alert/sha256.h"

#include <string.h>

/*
 * FIPS 180-4 section 4.2.2: the first 32 bits of the fractional parts of
 * the cube roots of the first 64 primes.
 */
static const uint32_t sha256_k[64] = {
	0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5,
	0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
	0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3,
	0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
	0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc,
	0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
	0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
	0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
	0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
	0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
	0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3,
	0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
	0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5,
	0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
	0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208,
	0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2
};

/*
 * FIPS 180-4 section 5.3.3: initial hash value, the first 32 bits of the
 * fractional parts of the square roots of the first 8 primes.
 */
static const uint32_t sha256_h0[8] = {
	0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
	0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19
};

#define ROTR32(x, n)	(((x) >> (n)) | ((x) << (32 - (n))))

/* The six logical functions of FIPS 180-4 section 4.1.2. */
#define CH(x, y, z)		(((x) & (y)) ^ (~(x) & (z)))
#define MAJ(x, y, z)	(((x) & (y)) ^ ((x) & (z)) ^ ((y) & (z)))
#define BSIG0(x)		(ROTR32(x, 2) ^ ROTR32(x, 13) ^ ROTR32(x, 22))
#define BSIG1(x)		(ROTR32(x, 6) ^ ROTR32(x, 11) ^ ROTR32(x, 25))
#define SSIG0(x)		(ROTR32(x, 7) ^ ROTR32(x, 18) ^ ((x) >> 3))
#define SSIG1(x)		(ROTR32(x, 17) ^ ROTR32(x, 19) ^ ((x) >> 10))

/*
 * Read a big-endian 32-bit word byte by byte, so the code does not depend on
 * host byte order or on unaligned loads.
 */
static uint32_t
load_be32(const uint8_t *p)
{
	return ((uint32_t) p[0] << 24) | ((uint32_t) p[1] << 16) |
		((uint32_t) p[2] << 8) | (uint32_t) p[3];
}

/* Store a 32-bit word big-endian, the byte order SHA-256 output uses. */
static void
store_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t) (v >> 24);
	p[1] = (uint8_t) (v >> 16);
	p[2] = (uint8_t) (v >> 8);
	p[3] = (uint8_t) v;
}

/*
 * Process one 64-byte block (FIPS 180-4 section 6.2.2): expand the message
 * schedule, run the 64 rounds, add into the running hash value.
 */
static void
sha256_compress(uint32_t state[8], const uint8_t block[ANOMALY_SHA256_BLOCK_LEN])
{
	uint32_t	w[64];
	uint32_t	a,
				b,
				c,
				d,
				e,
				f,
				g,
				h;
	int			t;

	for (t = 0; t < 16; t++)
		w[t] = load_be32(block + 4 * t);
	for (t = 16; t < 64; t++)
		w[t] = SSIG1(w[t - 2]) + w[t - 7] + SSIG0(w[t - 15]) + w[t - 16];

	a = state[0];
	b = state[1];
	c = state[2];
	d = state[3];
	e = state[4];
	f = state[5];
	g = state[6];
	h = state[7];

	for (t = 0; t < 64; t++)
	{
		uint32_t	t1 = h + BSIG1(e) + CH(e, f, g) + sha256_k[t] + w[t];
		uint32_t	t2 = BSIG0(a) + MAJ(a, b, c);

		h = g;
		g = f;
		f = e;
		e = d + t1;
		d = c;
		c = b;
		b = a;
		a = t1 + t2;
	}

	state[0] += a;
	state[1] += b;
	state[2] += c;
	state[3] += d;
	state[4] += e;
	state[5] += f;
	state[6] += g;
	state[7] += h;

	/* The schedule is derived from the message, which may be key material. */
	anomaly_secure_zero(w, sizeof(w));
}

/* Start a new SHA-256 computation. */
void
anomaly_sha256_init(AnomalySha256Ctx *ctx)
{
	memcpy(ctx->state, sha256_h0, sizeof(ctx->state));
	ctx->total_len = 0;
	ctx->buf_len = 0;
	memset(ctx->buf, 0, sizeof(ctx->buf));
}

/*
 * Feed len bytes.  Whole blocks are compressed straight from the caller's
 * buffer; only a partial tail is copied into the context.
 */
void
anomaly_sha256_update(AnomalySha256Ctx *ctx, const void *data, size_t len)
{
	const uint8_t *p = (const uint8_t *) data;

	if (len == 0)
		return;
	ctx->total_len += (uint64_t) len;

	if (ctx->buf_len > 0)
	{
		size_t		want = ANOMALY_SHA256_BLOCK_LEN - ctx->buf_len;
		size_t		take = len < want ? len : want;

		memcpy(ctx->buf + ctx->buf_len, p, take);
		ctx->buf_len += take;
		p += take;
		len -= take;
		if (ctx->buf_len < ANOMALY_SHA256_BLOCK_LEN)
			return;
		sha256_compress(ctx->state, ctx->buf);
		ctx->buf_len = 0;
	}

	while (len >= ANOMALY_SHA256_BLOCK_LEN)
	{
		sha256_compress(ctx->state, p);
		p += ANOMALY_SHA256_BLOCK_LEN;
		len -= ANOMALY_SHA256_BLOCK_LEN;
	}

	if (len > 0)
	{
		memcpy(ctx->buf, p, len);
		ctx->buf_len = len;
	}
}

/*
 * Pad (FIPS 180-4 section 5.1.1: a 1 bit, zeros, then the 64-bit message
 * length in bits), compress the last block(s) and write the digest.  The
 * context is wiped afterwards; reuse needs a new init.
 */
void
anomaly_sha256_final(AnomalySha256Ctx *ctx, uint8_t digest[ANOMALY_SHA256_DIGEST_LEN])
{
	uint64_t	bit_len = ctx->total_len * 8;
	int			i;

	ctx->buf[ctx->buf_len++] = 0x80;
	if (ctx->buf_len > ANOMALY_SHA256_BLOCK_LEN - 8)
	{
		/* No room for the length in this block: it goes in one more. */
		memset(ctx->buf + ctx->buf_len, 0, ANOMALY_SHA256_BLOCK_LEN - ctx->buf_len);
		sha256_compress(ctx->state, ctx->buf);
		ctx->buf_len = 0;
	}
	memset(ctx->buf + ctx->buf_len, 0, ANOMALY_SHA256_BLOCK_LEN - 8 - ctx->buf_len);
	store_be32(ctx->buf + ANOMALY_SHA256_BLOCK_LEN - 8, (uint32_t) (bit_len >> 32));
	store_be32(ctx->buf + ANOMALY_SHA256_BLOCK_LEN - 4, (uint32_t) bit_len);
	sha256_compress(ctx->state, ctx->buf);

	for (i = 0; i < 8; i++)
		store_be32(digest + 4 * i, ctx->state[i]);

	anomaly_secure_zero(ctx, sizeof(*ctx));
}

/* One-shot SHA-256 of a buffer. */
void
anomaly_sha256(const void *data, size_t len, uint8_t digest[ANOMALY_SHA256_DIGEST_LEN])
{
	AnomalySha256Ctx ctx;

	anomaly_sha256_init(&ctx);
	anomaly_sha256_update(&ctx, data, len);
	anomaly_sha256_final(&ctx, digest);
}

/*
 * Start an HMAC (RFC 2104): a key longer than the block is replaced by its
 * hash, then padded with zeros to the block size; the inner hash starts with
 * key XOR ipad (0x36), and key XOR opad (0x5c) is kept for the outer hash.
 */
void
anomaly_hmac_sha256_init(AnomalyHmacSha256Ctx *ctx, const void *key, size_t key_len)
{
	uint8_t		k[ANOMALY_SHA256_BLOCK_LEN];
	uint8_t		ikey[ANOMALY_SHA256_BLOCK_LEN];
	int			i;

	memset(k, 0, sizeof(k));
	if (key_len > ANOMALY_SHA256_BLOCK_LEN)
		anomaly_sha256(key, key_len, k);
	else if (key_len > 0)
		memcpy(k, key, key_len);

	for (i = 0; i < ANOMALY_SHA256_BLOCK_LEN; i++)
	{
		ikey[i] = k[i] ^ 0x36;
		ctx->okey[i] = k[i] ^ 0x5c;
	}

	anomaly_sha256_init(&ctx->inner);
	anomaly_sha256_update(&ctx->inner, ikey, sizeof(ikey));

	anomaly_secure_zero(k, sizeof(k));
	anomaly_secure_zero(ikey, sizeof(ikey));
}

/* Feed message bytes to an HMAC. */
void
anomaly_hmac_sha256_update(AnomalyHmacSha256Ctx *ctx, const void *data, size_t len)
{
	anomaly_sha256_update(&ctx->inner, data, len);
}

/* Finish an HMAC: H(key XOR opad || H(key XOR ipad || message)). */
void
anomaly_hmac_sha256_final(AnomalyHmacSha256Ctx *ctx, uint8_t mac[ANOMALY_SHA256_DIGEST_LEN])
{
	uint8_t		inner_digest[ANOMALY_SHA256_DIGEST_LEN];
	AnomalySha256Ctx outer;

	anomaly_sha256_final(&ctx->inner, inner_digest);

	anomaly_sha256_init(&outer);
	anomaly_sha256_update(&outer, ctx->okey, sizeof(ctx->okey));
	anomaly_sha256_update(&outer, inner_digest, sizeof(inner_digest));
	anomaly_sha256_final(&outer, mac);

	anomaly_secure_zero(inner_digest, sizeof(inner_digest));
	anomaly_secure_zero(ctx, sizeof(*ctx));
}

/* One-shot HMAC-SHA256. */
void
anomaly_hmac_sha256(const void *key, size_t key_len,
					const void *data, size_t len,
					uint8_t mac[ANOMALY_SHA256_DIGEST_LEN])
{
	AnomalyHmacSha256Ctx ctx;

	anomaly_hmac_sha256_init(&ctx, key, key_len);
	anomaly_hmac_sha256_update(&ctx, data, len);
	anomaly_hmac_sha256_final(&ctx, mac);
}

/* Lower-case hex, the form SigV4 uses for hashes and signatures. */
void
anomaly_hex_encode(const uint8_t *bytes, size_t len, char *out)
{
	static const char digits[] = "0123456789abcdef";
	size_t		i;

	for (i = 0; i < len; i++)
	{
		out[2 * i] = digits[bytes[i] >> 4];
		out[2 * i + 1] = digits[bytes[i] & 0x0f];
	}
	out[2 * len] = '\0';
}

/*
 * Zero memory through a volatile pointer: a plain memset of a buffer that is
 * never read again may be removed by the optimiser, leaving key material on
 * the stack or heap.
 */
void
anomaly_secure_zero(void *p, size_t len)
{
	volatile unsigned char *vp = (volatile unsigned char *) p;

	while (len-- > 0)
		*vp++ = 0;
}
