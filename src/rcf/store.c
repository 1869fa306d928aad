/*
 * store.c
 *	  The forest's slots: a number for each point that some tree's sampler
 *	  refers to, with the point's sequence number and a reference count.
 *
 * The values of a point live in the leaves holding it; the slot is what
 * tells the encoder that leaves of different trees hold the same point, so
 * that it is written once.  There are number_of_trees * sample_size slots
 * plus the one being offered, the most that can be referred to at once.
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
 * Takes a free slot for the point offered at sequence number seq, with no
 * references yet.  The caller guarantees a free slot exists (see the
 * capacity above).
 */
uint32_t
rcf_store_add(RcfForest *forest, uint64_t seq)
{
	uint32_t	slot = forest->free_slots[--forest->nfree];

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
