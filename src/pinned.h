/*
 * pinned.h
 *	  The settings pinned wherever the extension runs as a role that is not
 *	  its caller (pinned.c).
 */
#ifndef ANOMALY_PINNED_H
#define ANOMALY_PINNED_H

#include "utils/guc.h"

/*
 * Sets search_path to path, turns off the settings that print the trees of
 * the statements run (debug_print_parse, debug_print_rewritten,
 * debug_print_plan), turns standard_conforming_strings on and sets
 * extra_float_digits to 1 (shortest exact), with action:
 * GUC_ACTION_SAVE in a GUC nest the caller opened, GUC_ACTION_SET for a
 * worker's session.
 */
extern void anomaly_pin_settings(const char *path, GucAction action);

#endif							/* ANOMALY_PINNED_H */
