/*
 * subxact.h
 *	  Work in an internal subtransaction whose error the caller reports.
 */
#ifndef ANOMALY_SUBXACT_H
#define ANOMALY_SUBXACT_H

#include "postgres.h"

extern ErrorData *anomaly_try_subxact(void (*fn) (void *arg), void *arg);

#endif							/* ANOMALY_SUBXACT_H */
