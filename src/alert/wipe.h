/*
 * wipe.h
 *	  Freeing strings that may hold a secret (a key, a token, a signature):
 *	  overwritten first with explicit_bzero, so that no copy lingers in
 *	  freed memory.
 *
 * Header only: used by code built into the server and, as frontend code,
 * into the unit tests and fuzzers.  Include postgres.h (or postgres_fe.h
 * outside a server) first.
 */
#ifndef ANOMALY_WIPE_H
#define ANOMALY_WIPE_H

/* Overwrites and pfrees a NUL-terminated string (NULL is fine). */
static inline void
alert_free_wiped(char *s)
{
	if (s != NULL)
	{
		explicit_bzero(s, strlen(s));
		pfree(s);
	}
}

#endif							/* ANOMALY_WIPE_H */
