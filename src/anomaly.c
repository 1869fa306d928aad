/*
 * anomaly.c
 *	  Module entry point of the anomaly extension.
 *
 * The SQL functions work without shared_preload_libraries; background
 * workers and settings are registered here as those parts arrive.
 */
#include "postgres.h"

#include "fmgr.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

/* Called when the library is loaded. */
void
_PG_init(void)
{
}
