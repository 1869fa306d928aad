/*
 * subxact.c
 *	  Running a piece of work in an internal subtransaction, as PL/pgSQL's
 *	  exception blocks do, so that its error rolls back only that work and
 *	  is left to the caller to report (usually as a warning): dropping what
 *	  is left of a detector, a round of process(), an alert's source row.
 */
#include "postgres.h"

#include "access/xact.h"
#include "utils/memutils.h"
#include "utils/resowner.h"

#include "subxact.h"

/*
 * Runs fn(arg) in a subtransaction.  Returns NULL when it committed, or
 * its error (in the caller's memory context) once it is rolled back.
 * Either way the caller's memory context and resource owner are current
 * again.
 */
ErrorData *
anomaly_try_subxact(void (*fn) (void *arg), void *arg)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	ErrorData  *volatile edata = NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		fn(arg);
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = owner;
	return edata;
}
