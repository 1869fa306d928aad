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
#include "miscadmin.h"
#include "utils/guc.h"

#include "alert/alert.h"
#include "anomaly.h"
#include "detect/detect.h"
#include "registry.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

/* Called when the library is loaded. */
void
_PG_init(void)
{
	/*
	 * A cap on one forest's memory, which otherwise any role sizes with its
	 * arguments (or with a crafted model's header): superuser-only, so that
	 * only an administrator can let a query take more.
	 */
	DefineCustomIntVariable("anomaly.max_forest_memory",
							"The most memory one forest may take.",
							"Checked when a forest is created (window functions, rcf_train, "
							"detect(), detectors) and before a model is decoded, against "
							"the forest's bound from its parameters.",
							&anomaly_max_forest_memory,
							65536, 64, MAX_KILOBYTES,
							PGC_SUSET, GUC_UNIT_KB,
							NULL, NULL, NULL);
	anomaly_alert_init();
	anomaly_detect_init();
	registry_install_detect_hook();

	/* The workers, and what they need, only when preloaded. */
	if (process_shared_preload_libraries_in_progress)
	{
		registry_shmem_init();
		registry_install_utility_hook();
		anomaly_launcher_register();
	}

	/* Every layer has defined its settings: reserve the prefix for them. */
	MarkGUCPrefixReserved("anomaly");
}
