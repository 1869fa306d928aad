/*
 * counting_alloc.h
 *	  A malloc-based allocator for the engines' memory hooks (RcfAllocator
 *	  and HotspotsAllocator take the same two functions and a context), for
 *	  the standalone programs: it counts what the engine asks for (calls, live
 *	  bytes and blocks, the peak of the live bytes, the largest block) and can
 *	  be made to fail.
 */
#ifndef ANOMALY_COUNTING_ALLOC_H
#define ANOMALY_COUNTING_ALLOC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>

typedef struct CountingAlloc
{
	int			calls;			/* alloc calls, refused ones too */
	bool		fail;			/* alloc refuses (returns NULL) */
	size_t		live;			/* bytes allocated and not freed */
	size_t		peak;			/* the most live bytes at any time */
	size_t		largest;		/* the largest block */
	int			blocks;			/* blocks allocated and not freed */
} CountingAlloc;

/*
 * Each block is prefixed by its size, so that free knows what to subtract;
 * 16 bytes keep malloc's alignment.
 */
static inline void *
counting_alloc(void *ctx, size_t size)
{
	CountingAlloc *c = ctx;
	size_t	   *p;

	c->calls++;
	if (c->fail || (p = malloc(size + 16)) == NULL)
		return NULL;
	p[0] = size;
	c->live += size;
	c->blocks++;
	if (c->live > c->peak)
		c->peak = c->live;
	if (size > c->largest)
		c->largest = size;
	return (char *) p + 16;
}

static inline void
counting_free(void *ctx, void *ptr)
{
	CountingAlloc *c = ctx;
	size_t	   *p = (size_t *) ((char *) ptr - 16);

	c->live -= p[0];
	c->blocks--;
	free(p);
}

#endif							/* ANOMALY_COUNTING_ALLOC_H */
