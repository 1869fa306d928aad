/*
 * bulk.c
 *	  Inserting many rows into a plain table at once, the way COPY FROM does:
 *	  the table AM's multi-insert, then the index entries, constraints and
 *	  triggers (row triggers, and statement triggers with their transition
 *	  tables) as an INSERT statement would run them.
 *
 * A round writes thousands of score rows; an SPI INSERT ... SELECT over an
 * array of composites parses, plans, unnests and projects every row before
 * inserting it one at a time.  Here the caller fills each row's values
 * directly; columns it does not give get their defaults (an identity
 * column its sequence's next value), evaluated as INSERT would.
 *
 * The caller opens the table with RowExclusiveLock and checks privileges;
 * this runs no permission check and no row-level security.  It is for the
 * extension's own tables only, in the sys context (sysctx.c): their
 * triggers are the extension's (only a superuser can add one), so they may
 * fire there.  A user's table (a detector's destination) is written with
 * SQL in the owner's context instead, where its triggers run as the owner.
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/dependency.h"
#include "catalog/pg_class.h"
#include "commands/extension.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "nodes/makefuncs.h"
#include "rewrite/rewriteHandler.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "detect/detect.h"
#include "compat.h"

/* Rows buffered before they are written (as COPY FROM). */
#define BULK_BATCH_ROWS 1000

struct DetectBulk
{
	Relation	rel;
	EState	   *estate;
	ResultRelInfo *rri;
	TransitionCaptureState *capture;
	BulkInsertState bistate;
	CommandId	cid;
	int			natts;
	ExprState **defaults;		/* per attribute: NULL when given or none */
	bool	   *given;
	TupleTableSlot **slots;
	int			nslots;			/* created */
	int			used;			/* filled, not yet written */
	int64		written;
};

/*
 * Starts inserting into rel (open, locked RowExclusiveLock by the caller).
 * given[a] tells whether the caller fills attribute a + 1; the others get
 * their defaults.
 */
DetectBulk *
detect_bulk_begin(Relation rel, const bool *given)
{
	DetectBulk *b = palloc0(sizeof(DetectBulk));
	TupleDesc	desc = RelationGetDescr(rel);
	RangeTblEntry *rte;
	MemoryContext old;

	if (rel->rd_rel->relkind != RELKIND_RELATION)
		elog(ERROR, "bulk insert into \"%s\", which is not a plain table",
			 RelationGetRelationName(rel));
	detect_require_sys("bulk insert");
	if (getExtensionOfObject(RelationRelationId, RelationGetRelid(rel)) !=
		get_extension_oid("anomaly", false))
		elog(ERROR, "bulk insert into \"%s\", which is not a table of the extension",
			 RelationGetRelationName(rel));
	b->rel = rel;
	b->natts = desc->natts;
	b->estate = CreateExecutorState();
	b->cid = GetCurrentCommandId(true);
	b->estate->es_output_cid = b->cid;
	b->estate->es_snapshot = GetActiveSnapshot();

	rte = makeNode(RangeTblEntry);
	rte->rtekind = RTE_RELATION;
	rte->relid = RelationGetRelid(rel);
	rte->relkind = rel->rd_rel->relkind;
	rte->rellockmode = RowExclusiveLock;
	compat_exec_init_range_table(b->estate, list_make1(rte));
	b->rri = makeNode(ResultRelInfo);
	ExecInitResultRelation(b->estate, b->rri, 1);
	ExecOpenIndices(b->rri, false);

	old = MemoryContextSwitchTo(b->estate->es_query_cxt);
	b->given = palloc(sizeof(bool) * Max(b->natts, 1));
	b->defaults = palloc0(sizeof(ExprState *) * Max(b->natts, 1));
	for (int a = 0; a < b->natts; a++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, a);

		b->given[a] = given[a];
		if (given[a] || att->attisdropped)
			continue;
		if (att->attgenerated)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("table \"%s\" has a generated column, \"%s\", which detectors cannot fill",
							RelationGetRelationName(rel), NameStr(att->attname)),
					 errhint("Compute the value in a trigger instead.")));
		{
			Node	   *expr = build_column_default(rel, a + 1);

			if (expr)
				b->defaults[a] = ExecPrepareExpr((Expr *) expr, b->estate);
		}
	}
	b->slots = palloc0(sizeof(TupleTableSlot *) * BULK_BATCH_ROWS);
	MemoryContextSwitchTo(old);

	/* After triggers, and the transition tables of statement triggers. */
	AfterTriggerBeginQuery();
	b->capture = MakeTransitionCaptureState(rel->trigdesc, RelationGetRelid(rel),
											CMD_INSERT);
	ExecBSInsertTriggers(b->estate, b->rri);
	b->bistate = GetBulkInsertState();
	return b;
}

/*
 * The slot for the next row: the caller sets tts_values / tts_isnull of the
 * given attributes, then calls detect_bulk_add.
 */
TupleTableSlot *
detect_bulk_slot(DetectBulk *b)
{
	TupleTableSlot *slot;

	if (b->used == b->nslots)
	{
		MemoryContext old = MemoryContextSwitchTo(b->estate->es_query_cxt);

		b->slots[b->nslots++] = table_slot_create(b->rel, NULL);
		MemoryContextSwitchTo(old);
	}
	slot = b->slots[b->used];
	ExecClearTuple(slot);
	return slot;
}

/* Writes the buffered rows, their index entries and their row triggers. */
static void
bulk_flush(DetectBulk *b)
{
	ResultRelInfo *rri = b->rri;

	if (b->used == 0)
		return;
	table_multi_insert(b->rel, b->slots, b->used, b->cid, 0, b->bistate);
	for (int i = 0; i < b->used; i++)
	{
		List	   *recheck = NIL;

		if (rri->ri_NumIndices > 0)
			recheck = compat_insert_index_tuples(rri, b->slots[i], b->estate,
											false, false, NULL, NIL);
		ExecARInsertTriggers(b->estate, rri, b->slots[i], recheck, b->capture);
		list_free(recheck);
		ExecClearTuple(b->slots[i]);
	}
	b->written += b->used;
	b->used = 0;
	ResetPerTupleExprContext(b->estate);
}

/*
 * Completes the row in the slot detect_bulk_slot gave (defaults, BEFORE ROW
 * triggers, constraints) and buffers it.
 */
void
detect_bulk_add(DetectBulk *b, TupleTableSlot *slot)
{
	ExprContext *econtext = GetPerTupleExprContext(b->estate);
	ResultRelInfo *rri = b->rri;

	Assert(slot == b->slots[b->used]);
	for (int a = 0; a < b->natts; a++)
	{
		if (b->given[a])
			continue;
		if (b->defaults[a])
			slot->tts_values[a] = ExecEvalExpr(b->defaults[a], econtext,
											   &slot->tts_isnull[a]);
		else
		{
			slot->tts_values[a] = (Datum) 0;
			slot->tts_isnull[a] = true;
		}
	}
	ExecStoreVirtualTuple(slot);
	if (rri->ri_TrigDesc && rri->ri_TrigDesc->trig_insert_before_row)
	{
		if (!ExecBRInsertTriggers(b->estate, rri, slot))
		{
			ExecClearTuple(slot);
			return;				/* the trigger skipped the row */
		}
	}
	if (b->rel->rd_att->constr)
		ExecConstraints(rri, slot, b->estate);
	/* The slot must no longer point into the caller's memory. */
	ExecMaterializeSlot(slot);
	b->used++;
	if (b->used == BULK_BATCH_ROWS)
		bulk_flush(b);
}

/*
 * Writes what is buffered, fires the statement's AFTER triggers, and frees
 * the state.  Returns the rows inserted.
 */
int64
detect_bulk_end(DetectBulk *b)
{
	int64		written;

	bulk_flush(b);
	FreeBulkInsertState(b->bistate);
	ExecASInsertTriggers(b->estate, b->rri, b->capture);
	AfterTriggerEndQuery(b->estate);
	for (int i = 0; i < b->nslots; i++)
		ExecDropSingleTupleTableSlot(b->slots[i]);
	ExecCloseResultRelations(b->estate);	/* and its indexes */
	ExecCloseRangeTableRelations(b->estate);
	written = b->written;
	FreeExecutorState(b->estate);
	pfree(b);
	return written;
}
