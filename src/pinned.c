/*
 * pinned.c
 *	  The settings pinned wherever the extension runs as a role that is not
 *	  its caller: the bootstrap superuser's context of the detectors
 *	  (detect/sysctx.c), the extension's owner in the alert layer
 *	  (alert/privs.c), and the background workers' sessions (bgworker.c).
 *
 * search_path, so that nothing a non-superuser planted is found.  And the
 * settings that print the tree of every statement parsed, rewritten or
 * planned: any role may turn debug_print_parse, debug_print_rewritten and
 * debug_print_plan on, and with client_min_messages = log the trees reach
 * the client, with the statement's parameters folded into the plan as
 * constants.  Inside the extension's own code that showed a member of
 * anomaly_admin what it may not read: another admin's payloads and the
 * response bodies of their deliveries (anomaly.delivery_errors is for
 * superusers), through deliver().
 *
 * And standard_conforming_strings, which anyone may turn off for a session
 * (and a database's owner for the database): then the literals of the
 * extension's SQL and PL/pgSQL read differently ('\s' as 's' in a check of
 * an e-mail address, '\x00' as a NUL that stops a function from compiling).
 *
 * And extra_float_digits, anyone's too: a float8 written as text or JSON
 * (an alert's score in its payload, a source row's numbers) kept one digit
 * at -15.  1 (PostgreSQL's default) writes the shortest text that reads
 * back as the same value.
 *
 * And TimeZone, DateStyle and IntervalStyle, anyone's too (and a database
 * owner's for the workers): they changed what the extension's own SQL
 * computes and writes as a role that is not its caller.  A retention
 * interval read as text under IntervalStyle = sql_standard by another
 * admin's process() ('-0 days 1 hour' as minus one hour: every score of the
 * detector deleted), now() - interval across a daylight saving change, and
 * an alert payload's timestamps and its row's timestamptz and interval
 * columns written in whatever zone and style the round's session had.  UTC
 * and ISO, as the fixed values of detect/settings.c; a detector's
 * expressions still run under its own captured settings (sysctx.c sets them
 * in the owner context's nest, over these).
 *
 * The three SECURITY DEFINER functions pin the same settings in their SET
 * clauses (src/sql/04x).
 */
#include "postgres.h"

#include "pinned.h"

/* Each setting and its value while the extension's own statements run. */
static const char *const pinned_settings[][2] = {
	/* what prints them */
	{"debug_print_parse", "off"},
	{"debug_print_rewritten", "off"},
	{"debug_print_plan", "off"},
	/* what changes how their text is read */
	{"standard_conforming_strings", "on"},
	/* how the numbers they write are written */
	{"extra_float_digits", "1"},
	/* how times and intervals are computed, written and read */
	{"TimeZone", "UTC"},
	{"DateStyle", "ISO, YMD"},
	{"IntervalStyle", "postgres"},
};

void
anomaly_pin_settings(const char *path, GucAction action)
{
	(void) set_config_option("search_path", path, PGC_USERSET, PGC_S_SESSION,
							 action, true, 0, false);
	for (int i = 0; i < lengthof(pinned_settings); i++)
		(void) set_config_option(pinned_settings[i][0], pinned_settings[i][1],
								 PGC_USERSET, PGC_S_SESSION, action, true, 0, false);
}
