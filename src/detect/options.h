/*
 * options.h
 *	  What catalog.c uses of define.c and options.c: checking a detector's
 *	  definition and normalizing its options (private to src/detect).
 */
#ifndef ANOMALY_DETECT_OPTIONS_H
#define ANOMALY_DETECT_OPTIONS_H

#include "postgres.h"

#include "utils/array.h"
#include "utils/jsonb.h"
#include "utils/relcache.h"

/*
 * The longest name feature_names may give a feature, in bytes: a column
 * name's (NAMEDATALEN - 1), since a feature fills the destination column
 * of its name.
 */
#define FEATURE_NAME_MAX (NAMEDATALEN - 1)

/* The definition parts that create and alter check. */
typedef struct Definition
{
	int			nfeatures;
	char	  **features;
	char	   *partition_by;	/* NULL: none */
	char	   *filter;			/* NULL: none */
	char	   *options;		/* normalized JSON text */
	char	   *search_path;
	char	   *settings;		/* JSON text (settings.c) */
	char	   *source_columns;
	int			nkeys;
	char	  **keys;
	char	   *source_name;
	bool		start_all;		/* "start": "all": score the stored rows first */
	bool		windowed;		/* "window": features aggregate windows (window_agg.c) */
} Definition;

/* What detect_define_as_owner checks. */
typedef struct DefineCall
{
	Oid			relid;			/* the source */
	Definition *def;
	Jsonb	   *options;
} DefineCall;

extern void detect_check_name(const char *name);
extern Relation detect_open_source_for_definition(Oid relid);
extern int	detect_text_array_arg(ArrayType *arr, const char *what,
								  char ***out);
extern void detect_define_as_owner(void *arg);
extern char *detect_normalize_options(Jsonb *options, Relation rel,
									  int nfeatures, char **features,
									  bool *start_all, bool *windowed);
extern Datum detect_cstrings_to_array(char **strs, int n);

#endif							/* ANOMALY_DETECT_OPTIONS_H */
