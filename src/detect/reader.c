/*
 * reader.c
 *	  Decoding a round's batch from the detector's slot with the C decoding
 *	  API (modelled on PostgreSQL's pg_logical_slot_get_changes_guts), and the
 *	  decoding context and slot kept between rounds.
 */
#include "postgres.h"

#include <float.h>
#include <math.h>

#include "access/htup_details.h"
#include "access/rmgr.h"
#include "access/table.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "access/xlog_internal.h"
#include "access/xlogutils.h"
#include "catalog/namespace.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "lib/ilist.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "replication/decode.h"
#include "replication/logical.h"
#include "replication/origin.h"
#include "replication/slot.h"
#include "storage/standbydefs.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "common/hashfn.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/pg_lsn.h"
#include "utils/regproc.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/typcache.h"

#include "anomaly.h"
#include "detect/detect.h"
#include "detect/round_internal.h"
#include "compat.h"

DetectorCache *detect_slot_owner = NULL;	/* whose slot we hold */

/* ---------------------------------------------------------------------
 * Decoding
 */

static void
collect_prepare(LogicalDecodingContext *ctx, XLogRecPtr lsn, TransactionId xid,
				bool last_write)
{
	resetStringInfo(ctx->out);
}

/* Publishes the rows decoded so far and the read position (progress.c). */
static void
publish_decoded(LogicalDecodingContext *ctx, RoundData *rd)
{
	detect_progress_decoded(rd->rows, ctx->reader->EndRecPtr,
							rd->rows > 0 ? rd->row[0].commit_time : 0);
	if (rd->rows > 0 && rd->rows % (16 * DETECT_PROGRESS_ROWS) == 0)
		detect_progress_memory();
}

/* Takes one message of the output plugin. */
static void
collect_write(LogicalDecodingContext *ctx, XLogRecPtr lsn, TransactionId xid,
			  bool last_write)
{
	RoundData  *rd = (RoundData *) ctx->output_writer_private;
	DwReader	r;
	char		kind;
	MemoryContext old;

	if (rd == NULL)
		elog(ERROR, "anomaly decoding output without a round");
	r.p = (const uint8 *) ctx->out->data;
	r.end = r.p + ctx->out->len;
	if (dw_get_u8(&r) != DETECT_WIRE_VERSION)
		elog(ERROR, "unexpected anomaly decoding message version");
	kind = (char) dw_get_u8(&r);
	old = MemoryContextSwitchTo(rd->cxt);
	switch (kind)
	{
		case DW_BEGIN:
			rd->cur_commit_lsn = dw_get_u64(&r);
			(void) dw_get_u64(&r);
			rd->cur_commit_time = (TimestampTz) dw_get_u64(&r);
			rd->in_xact = true;
			rd->skip_xact = rd->cur_commit_lsn <= rd->skip_upto;
			rd->cur_rel = -1;
			rd->xact_rows = 0;
			rd->xact_kept = 0;
			rd->xact_bytes = 0;
			break;
		case DW_RELATION:
			{
				Size		len = r.end - r.p;
				int			i;

				for (i = rd->nrels - 1; i >= 0; i--)
					if (rd->relmsgs[i].len == len &&
						memcmp(rd->relmsgs[i].data, r.p, len) == 0)
						break;
				if (i < 0)
				{
					if (rd->nrels == rd->maxrels)
					{
						rd->maxrels = Max(4, rd->maxrels * 2);
						rd->rels = rd->rels ? repalloc(rd->rels, sizeof(DwRelation) * rd->maxrels) :
							palloc(sizeof(DwRelation) * rd->maxrels);
						rd->relmsgs = rd->relmsgs ? repalloc(rd->relmsgs, sizeof(StringInfoData) * rd->maxrels) :
							palloc(sizeof(StringInfoData) * rd->maxrels);
					}
					i = rd->nrels++;
					initStringInfo(&rd->relmsgs[i]);
					appendBinaryStringInfo(&rd->relmsgs[i], (const char *) r.p, len);
					dw_read_relation(&r, &rd->rels[i], rd->cxt);
				}
				rd->cur_rel = i;
				break;
			}
		case DW_INSERT:
		case DW_UPDATE:
			{
				RoundRow   *row;
				Oid			relid = dw_get_u32(&r);
				int			natts = dw_get_u16(&r);
				Size		len = r.end - r.p;
				uint8	   *copy;

				if (rd->cur_rel < 0 || rd->rels[rd->cur_rel].relid != relid ||
					rd->rels[rd->cur_rel].natts != natts)
					elog(ERROR, "anomaly decoding row without its relation");
				if (rd->skip_xact)
				{
					rd->skipped_rows++;
					break;
				}
				rd->xact_rows++;
				/* The part of a split transaction consumed before. */
				if (rd->cur_commit_lsn == rd->resume_lsn &&
					rd->xact_rows <= rd->resume_rows)
				{
					rd->resumed_rows++;
					break;
				}
				/* Past where this round stops in it: for the next round. */
				if (rd->split)
					break;

				/*
				 * The rows of one transaction arrive in one call at its
				 * commit, whatever their size: past the bound, the round
				 * takes no more of them and the next rounds decode it again
				 * for the rest.  Checked before a row is kept, so that a
				 * split always leaves rows to the next round.
				 */
				if (rd->xact_bytes >= DETECT_ROUND_BYTES ||
					rd->xact_kept >= detect_xact_rows)
				{
					rd->split = true;
					rd->split_lsn = rd->cur_commit_lsn;
					rd->split_rows = rd->xact_rows - 1;
					detect_decoder_drop_rest(ctx);
					break;
				}
				if (rd->rows == rd->maxrows)
				{
					rd->maxrows = Max(1024, rd->maxrows * 2);
					rd->row = rd->row ? repalloc_huge(rd->row, sizeof(RoundRow) * rd->maxrows) :
						palloc(sizeof(RoundRow) * rd->maxrows);
				}
				row = &rd->row[rd->rows++];
				copy = palloc(Max(len, 1));
				memcpy(copy, r.p, len);
				row->commit_lsn = rd->cur_commit_lsn;
				row->commit_time = rd->cur_commit_time;
				row->rel = rd->cur_rel;
				row->kind = kind;
				row->data = copy;
				row->len = len;
				rd->row_bytes += len;
				rd->xact_kept++;
				rd->xact_bytes += len;
				/* A large transaction's rows show as they arrive. */
				if (rd->rows % DETECT_PROGRESS_ROWS == 0)
					publish_decoded(ctx, rd);
				break;
			}
		case DW_PASSED:
			/* A row of the part consumed before, without its values. */
			if (rd->skip_xact)
				rd->skipped_rows++;
			else
			{
				rd->xact_rows++;
				rd->resumed_rows++;
			}
			break;
		case DW_COMMIT:
			if (!rd->skip_xact && rd->in_xact && !rd->split)
			{
				rd->last_commit_lsn = rd->cur_commit_lsn;
				rd->last_commit_time = rd->cur_commit_time;
			}
			rd->in_xact = false;
			break;
		default:
			elog(ERROR, "unknown anomaly decoding message kind %d", kind);
	}
	MemoryContextSwitchTo(old);
}

/* The origins whose changes the decoder skips: every detector's here. */
static char *
skip_origins_option(void)
{
	StringInfoData buf;
	char		prefix[64];

	initStringInfo(&buf);
	snprintf(prefix, sizeof(prefix), "anomaly_%u_%%", MyDatabaseId);
	detect_spi_exec("SELECT pg_catalog.string_agg(roident::pg_catalog.text, ',')"
					" FROM pg_catalog.pg_replication_origin"
					" WHERE roname OPERATOR(pg_catalog.~~) $1",
			 1, (Oid[]) {TEXTOID}, (Datum[]) {CStringGetTextDatum(prefix)}, NULL,
			 true, SPI_OK_SELECT);
	{
		char	   *s = detect_spi_text(0, 1);

		appendStringInfoString(&buf, s ? s : "");
	}
	return buf.data;
}

/* Releases the decoding context and the slot kept for dc. */
void
detect_release_decoding(DetectorCache *dc)
{
	if (dc->ctx)
	{
		LogicalDecodingContext *ctx = dc->ctx;

		dc->ctx = NULL;
		ctx->output_writer_private = NULL;
		FreeDecodingContext(ctx);
	}
	/* decoding_sig and the options live in decoding_cxt */
	if (dc->decoding_cxt)
		MemoryContextDelete(dc->decoding_cxt);
	dc->decoding_cxt = NULL;
	dc->decoding_sig = NULL;
	if (dc->holds_slot && MyReplicationSlot != NULL)
		ReplicationSlotRelease();
	dc->holds_slot = false;
	dc->confirm_lsn = InvalidXLogRecPtr;
	if (detect_slot_owner == dc)
		detect_slot_owner = NULL;
}

void
detect_release(void)
{
	DetectorCache *dc;

	for (dc = detect_caches; dc; dc = dc->next)
		detect_release_decoding(dc);
	if (MyReplicationSlot != NULL)
		ReplicationSlotRelease();
	detect_slot_owner = NULL;
}

/* Moves the slot we hold to lsn when that is ahead of it. */
void
detect_confirm_slot(XLogRecPtr lsn)
{
	XLogRecPtr	confirmed;

	if (MyReplicationSlot == NULL || XLogRecPtrIsInvalid(lsn))
		return;
	SpinLockAcquire(&MyReplicationSlot->mutex);
	confirmed = MyReplicationSlot->data.confirmed_flush;
	SpinLockRelease(&MyReplicationSlot->mutex);
	if (lsn <= confirmed)
		return;
	LogicalConfirmReceivedLocation(lsn);
	ReplicationSlotMarkDirty();
	ReplicationSlotsComputeRequiredXmin(false);
	ReplicationSlotsComputeRequiredLSN();
}

/* ---------------------------------------------------------------------
 * Confirming after the caller's commit (process())
 *
 * process() runs its rounds in the caller's transaction, so their progress
 * is committed only when the caller commits: the slot may move only then.
 * (Before 0.2.0 it moved at the start of the next call, which read again
 * the WAL the last one had read.)  The slots to move are kept with the
 * subtransaction that recorded them (a rollback to a savepoint forgets
 * them) and moved by a transaction callback after the commit, when nobody
 * else holds them (a worker that does moves them itself).
 */
typedef struct PendingConfirm
{
	NameData	slot;
	XLogRecPtr	lsn;
	SubTransactionId subid;
	struct PendingConfirm *next;
} PendingConfirm;

static PendingConfirm *pending_confirms = NULL;
static bool confirm_callbacks_set = false;

/* Moves one slot nobody holds to lsn; quietly nothing when it is taken. */
static void
confirm_free_slot(const char *name, XLogRecPtr lsn)
{
	MemoryContext cxt = CurrentMemoryContext;

	if (MyReplicationSlot != NULL || detect_slot_holder(name, NULL) != 0)
		return;
	PG_TRY();
	{
		/* nowait: a process that took it meanwhile makes this an error */
		ReplicationSlotAcquire(name, true);
		detect_confirm_slot(lsn);
		ReplicationSlotRelease();
	}
	PG_CATCH();
	{
		/*
		 * Nothing is held when acquiring fails (the error is raised after
		 * its locks are released); the holder moves the slot itself.
		 */
		MemoryContextSwitchTo(cxt);
		FlushErrorState();
		if (MyReplicationSlot != NULL)
			ReplicationSlotRelease();
	}
	PG_END_TRY();
}

static void
confirm_xact_callback(XactEvent event, void *arg)
{
	PendingConfirm *list = pending_confirms;

	if (list == NULL)
		return;
	if (event != XACT_EVENT_COMMIT && event != XACT_EVENT_ABORT &&
		event != XACT_EVENT_PREPARE)
		return;
	pending_confirms = NULL;
	for (PendingConfirm *p = list; p; p = p->next)
		if (event == XACT_EVENT_COMMIT)
			confirm_free_slot(NameStr(p->slot), p->lsn);
	while (list)
	{
		PendingConfirm *next = list->next;

		pfree(list);
		list = next;
	}
}

static void
confirm_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						 SubTransactionId parentSubid, void *arg)
{
	PendingConfirm **link = &pending_confirms;

	while (*link)
	{
		PendingConfirm *p = *link;

		if (p->subid == mySubid && event == SUBXACT_EVENT_COMMIT_SUB)
			p->subid = parentSubid;
		else if (p->subid == mySubid && event == SUBXACT_EVENT_ABORT_SUB)
		{
			*link = p->next;
			pfree(p);
			continue;
		}
		link = &p->next;
	}
}

/*
 * The slot we hold moves to its last round's progress once the current
 * transaction commits (process(): before it lets the slot go).
 */
void
detect_confirm_after_commit(void)
{
	DetectorCache *dc = detect_slot_owner;
	PendingConfirm *p;

	if (dc == NULL)
		return;
	if (!dc->holds_slot || MyReplicationSlot == NULL ||
		XLogRecPtrIsInvalid(dc->confirm_lsn))
		return;
	if (!confirm_callbacks_set)
	{
		RegisterXactCallback(confirm_xact_callback, NULL);
		RegisterSubXactCallback(confirm_subxact_callback, NULL);
		confirm_callbacks_set = true;
	}
	p = MemoryContextAlloc(TopMemoryContext, sizeof(PendingConfirm));
	namestrcpy(&p->slot, NameStr(MyReplicationSlot->data.name));
	p->lsn = dc->confirm_lsn;
	p->subid = GetCurrentSubTransactionId();
	p->next = pending_confirms;
	pending_confirms = p;
}

/*
 * Makes sure we hold dc's slot with a decoding context for def.  Returns
 * false when somebody else holds the slot.
 */
bool
detect_open_decoding(DetectorCache *dc, DetectorDef *def)
{
	StringInfoData sig;
	List	   *options;
	bool		exists;
	pid_t		holder = 0;
	ReplicationSlot *s;
	MemoryContext old;

	initStringInfo(&sig);
	appendStringInfo(&sig, "%u/%s%s", def->source,
					 def->inserts ? "insert," : "", def->updates ? "update" : "");
	if (dc->ctx && dc->decoding_sig && strcmp(dc->decoding_sig, sig.data) == 0 &&
		!dc->redecode)
		return true;
	dc->redecode = false;
	detect_release_decoding(dc);
	if (MyReplicationSlot != NULL)
		detect_release();

	LWLockAcquire(ReplicationSlotControlLock, LW_SHARED);
	s = SearchNamedReplicationSlot(def->slot_name, false);
	exists = (s != NULL);
	if (s)
	{
		SpinLockAcquire(&s->mutex);
		holder = s->active_pid;
		SpinLockRelease(&s->mutex);
	}
	LWLockRelease(ReplicationSlotControlLock);
	if (!exists)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("replication slot \"%s\" of detector \"%s\" does not exist",
						def->slot_name, def->name),
				 errhint("reset_detector() creates a new slot; rows committed meanwhile are not scored.")));
	if (holder != 0 && holder != MyProcPid)
		return false;

	compat_replication_slot_acquire(def->slot_name, true);
	dc->holds_slot = true;
	detect_slot_owner = dc;
	if (MyReplicationSlot->data.invalidated_at != InvalidXLogRecPtr ||
		XLogRecPtrIsInvalid(MyReplicationSlot->data.restart_lsn))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("replication slot \"%s\" of detector \"%s\" was invalidated (its WAL was removed)",
						def->slot_name, def->name),
				 errhint("reset_detector() creates a new slot; rows committed meanwhile are not scored. "
						 "Raise max_slot_wal_keep_size to keep more WAL for slow detectors.")));
	/* The slot may be behind what is committed (crash): catch it up. */
	if (!def->row_is_ours)
		detect_confirm_slot(def->progress_lsn);

	dc->decoding_cxt = AllocSetContextCreate(TopMemoryContext, "anomaly detector decoding",
											 ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(dc->decoding_cxt);
	options = list_make3(makeDefElem("proto_version", (Node *) makeString(pstrdup("1")), -1),
						 makeDefElem("relations", (Node *) makeString(psprintf("%u", def->source)), -1),
						 makeDefElem("operations",
									 (Node *) makeString(pstrdup(def->inserts && def->updates ? "insert,update" :
																 def->updates ? "update" : "insert")), -1));
	{
		char	   *skip = skip_origins_option();

		MemoryContextSwitchTo(dc->decoding_cxt);
		if (skip[0] != '\0')
			options = lappend(options, makeDefElem("skip_origins",
												   (Node *) makeString(pstrdup(skip)), -1));
	}
	dc->ctx = CreateDecodingContext(InvalidXLogRecPtr, options, false,
									XL_ROUTINE(.page_read = read_local_xlog_page,
											   .segment_open = wal_segment_open,
											   .segment_close = wal_segment_close),
									collect_prepare, collect_write, NULL);
	XLogBeginRead(dc->ctx->reader, MyReplicationSlot->data.restart_lsn);

	dc->decoding_sig = MemoryContextStrdup(dc->decoding_cxt, sig.data);
	MemoryContextSwitchTo(old);
	return true;
}

/*
 * Flushes the WAL inserted so far and returns the flushed position, where a
 * round stops decoding.  Decoding reads flushed WAL only, and waits on a
 * record that is not wholly flushed: with synchronous_commit off the WAL
 * writer flushes whole pages, often ending mid-record, and only every
 * wal_writer_delay, so a round could wait for it (up to 200 ms by default)
 * and leave rows committed meanwhile to the next round.  One flush per
 * round; nothing to do when commits are synchronous.
 */
static XLogRecPtr
flush_for_decoding(void)
{
	XLogRecPtr	upto = GetXLogInsertRecPtr();
	uint64		offset = XLogSegmentOffset(upto, wal_segment_size);

	/*
	 * When the last record ended at a page boundary, the insert position
	 * lies past the next page's header, which is not written yet: asking
	 * to flush that far fails ("xlog flush request ... is not satisfied").
	 * What was inserted ends at the boundary itself.
	 */
	if (offset == SizeOfXLogLongPHD)
		upto -= SizeOfXLogLongPHD;
	else if (offset % XLOG_BLCKSZ == SizeOfXLogShortPHD && offset > XLOG_BLCKSZ)
		upto -= SizeOfXLogShortPHD;
	XLogFlush(upto);
	return GetFlushRecPtr(NULL);
}

/*
 * Before the decoder takes the running-transactions record at lsn: a
 * restart point (and catalog xmin) waiting for the slot's confirmation is
 * forgotten, so that the one this record gives replaces it.  PostgreSQL
 * keeps only the first point seen after the last confirmation (a walsender
 * confirms often); a round confirms once, at its end, and with the first
 * point the slot's restart_lsn would stay near where the round began, so
 * that the next process() call decoded the round's WAL again (9 s for
 * 500 MB of other tables' WAL here).  Forgetting a point is always safe
 * (a restart forgets them all); the points themselves are PostgreSQL's.
 */
static void
take_latest_restart_point(XLogRecPtr lsn)
{
	ReplicationSlot *slot = MyReplicationSlot;

	SpinLockAcquire(&slot->mutex);
	if (lsn > slot->data.confirmed_flush)
	{
		slot->candidate_restart_valid = InvalidXLogRecPtr;
		slot->candidate_restart_lsn = InvalidXLogRecPtr;
		slot->candidate_xmin_lsn = InvalidXLogRecPtr;
		slot->candidate_catalog_xmin = InvalidTransactionId;
	}
	SpinLockRelease(&slot->mutex);
}

/*
 * Decodes until the WAL flushed when we started is read, or max_rows rows
 * or DETECT_ROUND_BYTES of them were kept (at a transaction boundary), or
 * a transaction was split (rd->split).  Returns true when caught up.  The
 * bytes bound the round's memory where rows are large (their values are
 * decoded detoasted, and a round holds several copies of each): whoever
 * may insert into the source chooses their size, and how many rows one
 * transaction has.
 */
bool
detect_decode_rows(DetectorCache *dc, RoundData *rd, int max_rows, XLogRecPtr *end)
{
	LogicalDecodingContext *ctx = dc->ctx;
	XLogRecPtr	end_of_wal = flush_for_decoding();
	bool		caught_up = true;
	uint64		nrecords = 0;
	MemoryContext old;

	ctx->output_writer_private = rd;
	detect_decoder_resume(ctx, rd->resume_lsn, rd->resume_rows);
	InvalidateSystemCaches();
	/* The reader allocates its buffers lazily, where it is called from. */
	old = MemoryContextSwitchTo(ctx->context);
	PG_TRY();
	{
		while (ctx->reader->EndRecPtr < end_of_wal)
		{
			char	   *errm = NULL;
			XLogRecord *record = XLogReadRecord(ctx->reader, &errm);

			if (errm)
				ereport(ERROR,
						(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
						 errmsg("could not read WAL for detector: %s", errm)));
			if (record != NULL)
			{
				if (XLogRecGetRmid(ctx->reader) == RM_STANDBY_ID &&
					(XLogRecGetInfo(ctx->reader) & ~XLR_INFO_MASK) == XLOG_RUNNING_XACTS)
					take_latest_restart_point(ctx->reader->ReadRecPtr);
				LogicalDecodingProcessRecord(ctx, ctx->reader);

				/*
				 * Decoding a transaction runs (and ends) subtransactions,
				 * which leave CurrentMemoryContext at our transaction's
				 * context: the reader, which outlives it, must keep
				 * allocating in its own.
				 */
				MemoryContextSwitchTo(ctx->context);
			}
			if (++nrecords % 4096 == 0)
				publish_decoded(ctx, rd);
			if (rd->split)
			{
				caught_up = false;
				break;
			}
			if (rd->rows + rd->skipped_rows >= max_rows ||
				rd->row_bytes >= DETECT_ROUND_BYTES)
			{
				caught_up = ctx->reader->EndRecPtr >= end_of_wal;
				break;
			}
			CHECK_FOR_INTERRUPTS();
		}
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(old);
		ctx->output_writer_private = NULL;
		InvalidateSystemCaches();
		PG_RE_THROW();
	}
	PG_END_TRY();
	MemoryContextSwitchTo(old);
	ctx->output_writer_private = NULL;
	InvalidateSystemCaches();
	*end = ctx->reader->EndRecPtr;
	publish_decoded(ctx, rd);
	return caught_up;
}
