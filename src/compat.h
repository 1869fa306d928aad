/*
 * compat.h
 *	  The PostgreSQL APIs that differ between the majors 14 to 18, behind
 *	  PG_VERSION_NUM gates, so that the rest of the code calls one form.
 *
 * Only 15 is built and tested here; the branches for 14, 16, 17 and 18 are
 * written from those versions' public headers and are prepared, not
 * verified (README.md, "PostgreSQL versions").  Each wrapper takes the
 * arguments of 15's form and passes what the other majors added with the
 * value that keeps 15's behaviour.
 *
 * Include after postgres.h and the headers of the APIs used.
 */
#ifndef ANOMALY_COMPAT_H
#define ANOMALY_COMPAT_H

#include "fmgr.h"

/*
 * Symbols: the library is built with -fvisibility=hidden, and only what
 * PostgreSQL looks up by name is exported: the magic block, _PG_init, the
 * SQL-callable functions with their info records, and the background
 * workers' entry points (bgw_function_name is found with dlsym) and the
 * logical decoding output plugin's _PG_output_plugin_init.  From 16
 * on PGDLLEXPORT is visibility("default") and PG_FUNCTION_INFO_V1 declares
 * the function with it; before, PGDLLEXPORT is empty on Linux (the Makefile
 * defines it) and the macro does not mark the function, so it is redefined
 * here to do so.
 */
#if PG_VERSION_NUM < 160000
#undef PG_FUNCTION_INFO_V1
#define PG_FUNCTION_INFO_V1(funcname) \
extern PGDLLEXPORT Datum funcname(PG_FUNCTION_ARGS); \
extern PGDLLEXPORT const Pg_finfo_record *CppConcat(pg_finfo_, funcname)(void); \
const Pg_finfo_record * \
CppConcat(pg_finfo_, funcname)(void) \
{ \
	static const Pg_finfo_record anomaly_finfo = {1}; \
	return &anomaly_finfo; \
} \
extern int	no_such_variable
#endif

/* Declared by fmgr.h from 16 on. */
extern PGDLLEXPORT void _PG_init(void);

/* ---- executor (bulk.c) ----------------------------------------------- */

#ifdef EXECUTOR_H

/*
 * 16 added the permission infos (RTEPermissionInfo) beside the range table;
 * our range table entry asks for no check, so there are none.
 */
static inline void
compat_exec_init_range_table(EState *estate, List *range_table)
{
#if PG_VERSION_NUM >= 160000
	ExecInitRangeTable(estate, range_table, NIL);
#else
	ExecInitRangeTable(estate, range_table);
#endif
}

/* 16 added onlySummarizing: false inserts into every index, as before. */
static inline List *
compat_insert_index_tuples(ResultRelInfo *rri, TupleTableSlot *slot, EState *estate,
						   bool update, bool no_dup_err, bool *spec_conflict,
						   List *arbiter_indexes)
{
#if PG_VERSION_NUM >= 160000
	return ExecInsertIndexTuples(rri, slot, estate, update, no_dup_err,
								 spec_conflict, arbiter_indexes, false);
#else
	return ExecInsertIndexTuples(rri, slot, estate, update, no_dup_err,
								 spec_conflict, arbiter_indexes);
#endif
}
#endif							/* EXECUTOR_H */

/* ---- tuple conversion (decoder.c) -------------------------------------- */

#ifdef ATTMAP_H
/* 16 added missing_ok: false raises on a missing column, as 15 does. */
static inline AttrMap *
compat_build_attrmap_by_name_if_req(TupleDesc indesc, TupleDesc outdesc)
{
#if PG_VERSION_NUM >= 160000
	return build_attrmap_by_name_if_req(indesc, outdesc, false);
#else
	return build_attrmap_by_name_if_req(indesc, outdesc);
#endif
}
#endif							/* ATTMAP_H */

/* ---- replication slots (slots.c, reader.c) ------------------------------ */

#ifdef SLOT_H
/*
 * 17 added failover and synced (a slot of ours is neither synchronised to
 * standbys nor a synchronised copy); 14 has no two_phase.
 */
static inline void
compat_replication_slot_create(const char *name, bool db_specific,
							   ReplicationSlotPersistency persistency, bool two_phase)
{
#if PG_VERSION_NUM >= 170000
	ReplicationSlotCreate(name, db_specific, persistency, two_phase, false, false);
#elif PG_VERSION_NUM >= 150000
	ReplicationSlotCreate(name, db_specific, persistency, two_phase);
#else
	Assert(!two_phase);
	ReplicationSlotCreate(name, db_specific, persistency);
#endif
}

/* 18 added error_if_invalid: true refuses an invalidated slot. */
static inline void
compat_replication_slot_acquire(const char *name, bool nowait)
{
#if PG_VERSION_NUM >= 180000
	ReplicationSlotAcquire(name, nowait, true);
#else
	ReplicationSlotAcquire(name, nowait);
#endif
}
#endif							/* SLOT_H */

/* ---- ownership (slots.c) ------------------------------------------------ */

#ifdef ACL_H
/* 16 folded the per-kind owner checks into object_ownercheck. */
static inline bool
compat_extension_ownercheck(Oid extoid, Oid roleid)
{
#if PG_VERSION_NUM >= 160000
	return object_ownercheck(ExtensionRelationId, extoid, roleid);
#else
	return pg_extension_ownercheck(extoid, roleid);
#endif
}
#endif							/* ACL_H */

/* ---- settings, shared memory, random numbers (14) ------------------------- */

#if PG_VERSION_NUM < 150000
/* 15 renamed it and made it also drop the placeholders it warns about. */
#define MarkGUCPrefixReserved(prefix) EmitWarningsOnPlaceholders(prefix)
#endif

/*
 * 15 added shmem_request_hook, where shared memory must be requested; 14
 * requests it directly in _PG_init.  A file calls ANOMALY_REQUEST_SHMEM(fn)
 * in its init: on 15 and later fn is installed as the hook, on 14 it runs.
 */
#if PG_VERSION_NUM >= 150000
#define ANOMALY_HAVE_SHMEM_REQUEST_HOOK 1
#endif

/* A uniform double in [0, 1): pg_prng from 15 on, random() on 14. */
#if PG_VERSION_NUM >= 150000
#include "common/pg_prng.h"
#define compat_random_double() pg_prng_double(&pg_global_prng_state)
#else
#define compat_random_double() ((double) random() / ((double) PG_INT32_MAX + 1.0))
#endif

/* ---- window functions (window.c) ---------------------------------------- */

#ifdef WINDOWAPI_H
/*
 * The leading fields of nodeWindowAgg.c's WindowObjectData, which is
 * private to that file: a window function may read its WindowAggState from
 * them.  The layout (node tag, then the state) is the same in 14 to 18 and
 * has been since window functions appeared in 8.4; the node tag is checked
 * before use (compat_window_object_ok).
 */
typedef struct CompatWindowObjectHead
{
	NodeTag		type;
	struct WindowAggState *winstate;
} CompatWindowObjectHead;

static inline bool
compat_window_object_ok(WindowObject winobj)
{
	return winobj != NULL && IsA(winobj, WindowObjectData);
}

static inline struct WindowAggState *
compat_window_state(WindowObject winobj)
{
	return ((CompatWindowObjectHead *) winobj)->winstate;
}
#endif							/* WINDOWAPI_H */

#endif							/* ANOMALY_COMPAT_H */
