/*
 * allocator.c
 *	  The engines' objects (graders, transforms, hotspot detectors) from an
 *	  RcfAllocator, or from malloc when none is given; see rcf.h.
 */
#include <stdlib.h>
#include <string.h>

#include "rcf.h"

/* A new object that keeps its allocator (see rcf.h). */
void *
rcf_allocator_new(const RcfAllocator *allocator, size_t size, size_t allocator_at)
{
	char	   *p = allocator ? allocator->alloc(allocator->ctx, size) : malloc(size);

	if (p == NULL)
		return NULL;
	memset(p, 0, size);
	if (allocator != NULL)
		memcpy(p + allocator_at, allocator, sizeof(RcfAllocator));
	return p;
}

/* Frees p (see rcf.h). */
void
rcf_allocator_free(const RcfAllocator *allocator, void *p)
{
	if (p == NULL)
		return;
	if (allocator->free)
		allocator->free(allocator->ctx, p);
	else
		free(p);
}
