/*
 * le_bytes.h
 *	  Little-endian fields of the model format's grader and transform
 *	  sections (grade.c, transform.c): each writer returns the position after
 *	  what it wrote, each reader moves *p past what it read.  The callers
 *	  check the sizes first, so these do not.
 */
#ifndef RCF_LE_BYTES_H
#define RCF_LE_BYTES_H

#include <stdint.h>
#include <string.h>

/* Writes the low n bytes of v, least significant first. */
static inline uint8_t *
rcf_le_put(uint8_t *p, uint64_t v, int n)
{
	for (int i = 0; i < n; i++)
		*p++ = (uint8_t) (v >> (8 * i));
	return p;
}

/* Reads n bytes, least significant first. */
static inline uint64_t
rcf_le_get(const uint8_t **p, int n)
{
	uint64_t	v = 0;

	for (int i = 0; i < n; i++)
		v |= (uint64_t) (*p)[i] << (8 * i);
	*p += n;
	return v;
}

static inline uint8_t *
rcf_le_put_u32(uint8_t *p, uint32_t v)
{
	return rcf_le_put(p, v, 4);
}

static inline uint8_t *
rcf_le_put_u64(uint8_t *p, uint64_t v)
{
	return rcf_le_put(p, v, 8);
}

/* A double as the bits of its IEEE 754 binary64 form. */
static inline uint8_t *
rcf_le_put_f64(uint8_t *p, double d)
{
	uint64_t	v;

	memcpy(&v, &d, 8);
	return rcf_le_put(p, v, 8);
}

static inline uint32_t
rcf_le_get_u32(const uint8_t **p)
{
	return (uint32_t) rcf_le_get(p, 4);
}

static inline uint64_t
rcf_le_get_u64(const uint8_t **p)
{
	return rcf_le_get(p, 8);
}

static inline double
rcf_le_get_f64(const uint8_t **p)
{
	uint64_t	v = rcf_le_get(p, 8);
	double		d;

	memcpy(&d, &v, 8);
	return d;
}

#endif							/* RCF_LE_BYTES_H */
