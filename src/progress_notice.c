/*
 * progress_notice.c
 *	  Opt-in progress NOTICEs of long window-function and rcf_train runs
 *	  (anomaly.progress_interval).
 *
 * Why NOTICEs.  PostgreSQL 15's progress views (pg_stat_progress_*) are fed
 * by pgstat_progress_start_command with one of a fixed set of commands
 * (VACUUM, ANALYZE, CLUSTER, CREATE INDEX, BASE BACKUP, COPY): an extension
 * cannot add its own, and borrowing one (a window function showing as a
 * COPY in pg_stat_progress_copy) would mislead every monitoring tool that
 * reads those views.  A view over shared memory of our own would need the
 * library preloaded, which the window functions and rcf_train do not.  A
 * NOTICE needs nothing: psql shows it as the query runs, drivers pass it
 * on, log_min_messages = notice puts it in the server log, and it costs
 * nothing when off (the default).
 */
#include "postgres.h"

#include "utils/timestamp.h"

#include "anomaly.h"

int			anomaly_progress_interval = 0;

void
anomaly_progress_start(AnomalyProgress *p, const char *what, const char *done)
{
	p->what = what;
	p->done = done;
	p->rows = 0;
	p->started = GetCurrentTimestamp();
	p->next = p->started + (TimestampTz) anomaly_progress_interval * USECS_PER_SEC;
}

void
anomaly_progress_report(AnomalyProgress *p)
{
	TimestampTz now;
	double		secs;

	if (anomaly_progress_interval <= 0)
		return;
	now = GetCurrentTimestamp();
	if (p->started == 0)
		anomaly_progress_start(p, p->what, p->done);
	if (now < p->next)
		return;
	secs = (double) (now - p->started) / USECS_PER_SEC;
	ereport(NOTICE,
			(errmsg("%s: " INT64_FORMAT " rows %s in %.0f s (%.0f rows/s)",
					p->what, p->rows, p->done, secs,
					secs > 0 ? p->rows / secs : 0.0)));
	p->next = now + (TimestampTz) anomaly_progress_interval * USECS_PER_SEC;
}
