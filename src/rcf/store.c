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

/*
 * Marks every slot free, the lowest first on the list.  The list is threaded
 * through slot_seq, which a free slot does not need.
 */
void
rcf_store_init(RcfForest *forest)
{
	forest->nfree = forest->capacity;
	forest->free_slot = RCF_NO_SLOT;
	for (uint32_t i = forest->capacity; i-- > 0;)
	{
		rcf_set_refcount(forest, i, 0);
		forest->slot_seq[i] = forest->free_slot;
		forest->free_slot = i;
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
	uint32_t	slot = forest->free_slot;

	forest->free_slot = (uint32_t) forest->slot_seq[slot];
	forest->nfree--;
	rcf_set_refcount(forest, slot, 0);
	forest->slot_seq[slot] = seq;
	return slot;
}

/* Frees a slot that no sampler refers to any more. */
void
rcf_store_release(RcfForest *forest, uint32_t slot)
{
	forest->slot_seq[slot] = forest->free_slot;
	forest->free_slot = slot;
	forest->nfree++;
}
