/*
 * store.c
 *	  The forest's point store: one copy of each point that some tree's
 *	  sampler refers to, with a reference count per slot.
 *
 * Trees and samplers hold slot numbers, never copies.  The store has room
 * for number_of_trees * sample_size points plus the one being offered, which
 * is the most that can be referred to at once.
 */
#include "rcf_internal.h"

/* Marks every slot free, lowest slot on top of the stack. */
void
rcf_store_init(RcfForest *forest)
{
	forest->nfree = forest->capacity;
	for (uint32_t i = 0; i < forest->capacity; i++)
	{
		forest->refcount[i] = 0;
		forest->free_slots[i] = forest->capacity - 1 - i;
	}
}

/*
 * Copies a point into a free slot, with no references yet.  The sequence
 * number lets the serialiser store shingled points as the records they
 * overlap in, instead of one full copy each.  The caller
 * guarantees a free slot exists (see the capacity above).
 */
uint32_t
rcf_store_add(RcfForest *forest, const float *point, uint64_t seq)
{
	uint32_t	slot = forest->free_slots[--forest->nfree];

	memcpy(forest->points + (size_t) slot * forest->D, point,
		   forest->D * sizeof(float));
	forest->refcount[slot] = 0;
	forest->slot_seq[slot] = seq;
	return slot;
}

/* Frees a slot that no sampler refers to any more. */
void
rcf_store_release(RcfForest *forest, uint32_t slot)
{
	forest->free_slots[forest->nfree++] = slot;
}
