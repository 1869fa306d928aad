/*
 * options_list.h
 *	  The detector options, one row each.  options.c includes this file with
 *	  DETECTOR_OPTION defined to build its enum and its table; the parser,
 *	  the unknown-option hint and the normalized JSON all read that table,
 *	  so adding an option is adding a row here (and its meaning where it is
 *	  used).
 *
 * DETECTOR_OPTION(id, name, type, nullable, default, help, check)
 *	id			OPT_<id> in options.c
 *	name		the JSON key
 *	type		how the value is read, and its range: OPTION_INT32 and
 *				OPTION_INT64 (integers of that size), OPTION_NUMBER,
 *				OPTION_BOOL, OPTION_TEXT, OPTION_TEXTS (strings, or one
 *				string), OPTION_NUMBERS
 *	nullable	true: null is stored as null; false: null means the default
 *	default		the JSON stored when the option is not given (NULL: nothing
 *				is stored)
 *	help		what an error says the value must be
 *	check		what else the value must be (NULL: its type is enough)
 *
 * The order is the hint's.  The grader's options keep the order of
 * anomaly_grader_params' arguments.  The forest, grader and transform
 * defaults are detect()'s (issue 13's: shingle 8, z_factor 4, CUSUM off,
 * normalize); transform_decay is written out with a transform (options.c).
 * bounding_box_cache_fraction is stored only when given (1, the engine's
 * choice, otherwise): it changes the forests' memory, never a score, so
 * changing it resets no model (catalog.c's PARAMS_ARRAY leaves it out).
 */
DETECTOR_OPTION(TREES, "number_of_trees", OPTION_INT32, false, "100", "an integer", NULL)
DETECTOR_OPTION(SAMPLES, "sub_sample_size", OPTION_INT32, false, "256", "an integer", NULL)
DETECTOR_OPTION(DECAY, "time_decay", OPTION_INT64, false, "100000", "an integer", NULL)
DETECTOR_OPTION(SHINGLE, "shingle_size", OPTION_INT32, false, "8", "an integer", NULL)
DETECTOR_OPTION(SEED, "seed", OPTION_INT64, false, "42", "an integer", NULL)
DETECTOR_OPTION(BOX_CACHE, "bounding_box_cache_fraction", OPTION_NUMBER, false, NULL, "a number between 0 and 1", check_fraction)
DETECTOR_OPTION(OPERATIONS, "operations", OPTION_TEXTS, false, "[\"insert\"]", "an array of strings", check_operations)
DETECTOR_OPTION(RETENTION, "retention", OPTION_TEXT, true, "\"30 days\"", "an interval such as \"30 days\", or null to keep everything", check_retention)
DETECTOR_OPTION(EXPLAIN, "with_explanation", OPTION_BOOL, false, "false", "true or false", NULL)
DETECTOR_OPTION(DIRECTION, "with_directionality", OPTION_BOOL, false, "false", "true or false", NULL)
DETECTOR_OPTION(FEATURE_NAMES, "feature_names", OPTION_TEXTS, false, NULL, "an array of strings", check_feature_names)
DETECTOR_OPTION(GRADE, "grade", OPTION_BOOL, false, "true", "true or false", NULL)
DETECTOR_OPTION(Z_FACTOR, "z_factor", OPTION_NUMBER, false, "4", "a number", NULL)
DETECTOR_OPTION(SCORE_FLOOR, "score_floor", OPTION_NUMBER, false, "0.8", "a number", NULL)
DETECTOR_OPTION(NEAR_ABOVE, "ignore_near_expected_above", OPTION_NUMBER, false, "0", "a number", NULL)
DETECTOR_OPTION(NEAR_BELOW, "ignore_near_expected_below", OPTION_NUMBER, false, "0", "a number", NULL)
DETECTOR_OPTION(NEAR_ABOVE_RATIO, "ignore_near_expected_above_ratio", OPTION_NUMBER, false, "0", "a number", NULL)
DETECTOR_OPTION(NEAR_BELOW_RATIO, "ignore_near_expected_below_ratio", OPTION_NUMBER, false, "0", "a number", NULL)
DETECTOR_OPTION(SUPPRESS, "suppress", OPTION_INT32, false, "100", "an integer", NULL)
DETECTOR_OPTION(SCORE_HORIZON, "score_horizon", OPTION_NUMBER, false, "3000", "a number", NULL)
DETECTOR_OPTION(CUSUM_DRIFT, "cusum_drift", OPTION_NUMBER, false, "2", "a number", NULL)
DETECTOR_OPTION(CUSUM_THRESHOLD, "cusum_threshold", OPTION_NUMBER, false, "0", "a number", NULL)
DETECTOR_OPTION(DESTINATION, "destination", OPTION_TEXT, false, NULL, "the name of a table, as \"schema.table\"", NULL)
DETECTOR_OPTION(TRANSFORM, "transform", OPTION_TEXT, false, "\"normalize\"", "the name of a transform", NULL)
DETECTOR_OPTION(TRANSFORM_DECAY, "transform_decay", OPTION_NUMBER, false, NULL, "a number", NULL)
DETECTOR_OPTION(TRANSFORM_WEIGHTS, "transform_weights", OPTION_NUMBERS, false, NULL, "an array of numbers", NULL)
DETECTOR_OPTION(TIME_COLUMN, "time_column", OPTION_TEXT, false, NULL, "the name of a timestamp column of the source", check_time_column)
DETECTOR_OPTION(START, "start", OPTION_TEXT, false, NULL, "\"now\" (the rows committed from now on) or \"all\" (the rows stored, then those)", check_start)
DETECTOR_OPTION(WINDOW, "window", OPTION_TEXT, false, NULL, "an interval such as \"1 minute\"", NULL)
DETECTOR_OPTION(SLIDE, "slide", OPTION_TEXT, false, NULL, "an interval such as \"1 minute\"", NULL)
DETECTOR_OPTION(STAGGER, "stagger", OPTION_BOOL, false, NULL, "true or false", NULL)
DETECTOR_OPTION(ALLOWED_LATENESS, "allowed_lateness", OPTION_TEXT, false, NULL, "an interval such as \"5 seconds\"", NULL)
DETECTOR_OPTION(LATE_ROWS, "late_rows", OPTION_TEXT, false, NULL, "the name of a table, as \"schema.table\"", NULL)
