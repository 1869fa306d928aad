/*
 * window_agg.h
 *	  Windowed detectors (window_agg.c): tumbling, hopping and stagger
 *	  windows over an event time, whose aggregate features are scored when
 *	  the watermark passes their end (private to src/detect).
 */
#ifndef ANOMALY_WINDOW_AGG_H
#define ANOMALY_WINDOW_AGG_H

#include "postgres.h"

#include "utils/jsonb.h"
#include "utils/relcache.h"

#include "detect/round_internal.h"

/* A detector's windows, from its options (microseconds). */
typedef struct DetectWindowSpec
{
	int64		size;			/* "window" */
	int64		slide;			/* "slide", default the size (tumbling) */
	bool		stagger;		/* "stagger": each key's windows open at its rows */
	int64		lateness;		/* "allowed_lateness", default 0 */
	char	   *late_rows;		/* "late_rows": qualified table name, or NULL */
} DetectWindowSpec;

/* At most this many windows hold one row (window / slide). */
#define DETECT_WINDOW_MAX_OVERLAP 1000

/*
 * Options (options.c calls these while it checks a definition as the
 * owner): an interval option in microseconds (no months; positive, or
 * non-negative when zero_ok), its canonical text, and the late_rows table.
 */
extern int64 detect_window_interval(const char *option, JsonbValue *v, bool zero_ok);
extern char *detect_window_interval_text(int64 usecs);
extern char *detect_window_check_late_rows(const char *name, Relation source);
extern char *detect_window_late_rows(DetectorDef *def);

/* The aggregate statement of a windowed detector's features. */
extern char *detect_window_eval_sql(const char *relname, int nfeatures, char **features);

/* A copy of def whose evaluation is per row: key, filter, source key. */
extern DetectorDef *detect_window_row_def(DetectorDef *def);

/*
 * The writes of a windowed detector's round, in place of
 * detect_write_round_as_origin: buffers the accepted rows, counts (and
 * routes) the late ones, scores the windows the watermark closed, and
 * writes everything with the round's progress.  w->es holds the rows'
 * evaluation by detect_window_row_def.
 */
extern void detect_window_round(RoundWrite *w);

#endif							/* ANOMALY_WINDOW_AGG_H */
