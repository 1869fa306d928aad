/*
 * episode_lock.c
 *	  The lock that serializes the evaluations of one alert episode (a rule
 *	  and a group key, by their fingerprint): an advisory lock that no SQL
 *	  function can take.
 *
 * pg_advisory_lock() and its kin take advisory locks whose fourth field is
 * 1 (one bigint key) or 2 (two int4 keys), and need no privilege: any role
 * may take any of them.  _evaluate_rules() took pg_advisory_xact_lock() on
 * a hash of the episode's fingerprint, which any role can work out (the
 * rule's name is in every reference a notify destination sends, and a
 * group key is often a guess away), and a role holding that lock stalled
 * the detector's rounds: in a worker, for ever, its slot keeping the WAL.
 * The same tag with a fourth field of 3 is out of SQL's reach, and waits
 * and shows in pg_locks as any advisory lock does.
 */
#include "postgres.h"

#include "common/hashfn.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/lock.h"
#include "utils/builtins.h"

#include "alert/alert.h"
#include "compat.h"

/* The fourth field of the tag: neither of those SQL's functions use. */
#define EPISODE_LOCK_FIELD4 3

PG_FUNCTION_INFO_V1(anomaly_alert_lock_episode);

/*
 * SQL: anomaly._lock_episode(fingerprint text): the episode's lock, held
 * until the transaction (or the subtransaction that took it) ends.
 */
Datum
anomaly_alert_lock_episode(PG_FUNCTION_ARGS)
{
	text	   *fp = PG_GETARG_TEXT_PP(0);
	uint64		h = hash_bytes_extended((const unsigned char *) VARDATA_ANY(fp),
										VARSIZE_ANY_EXHDR(fp), 0);
	LOCKTAG		tag;

	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, (uint32) (h >> 32), (uint32) h,
						 EPISODE_LOCK_FIELD4);
	(void) LockAcquire(&tag, ExclusiveLock, false, false);
	PG_RETURN_VOID();
}
