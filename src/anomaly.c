/*
 * anomaly.c
 *	  Module entry point of the anomaly extension.
 *
 * The SQL functions work without shared_preload_libraries.  Each layer that
 * has settings or background workers registers them here; workers only when
 * the library is preloaded.
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/guc.h"

#include "alert/alert.h"
#include "detect/detect.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

/* Called when the library is loaded. */
void
_PG_init(void)
{
	anomaly_alert_init();
	anomaly_detect_init();

	/* Every layer has defined its settings: reserve the prefix for them. */
	MarkGUCPrefixReserved("anomaly");
}
