/*
 * pump.c
 *	  What fills each column of a detector's destination table (KDA's
 *	  pump into a DESTINATION_SQL_STREAM): a score field, a column of the
 *	  source row, a feature, or the column's own default.  create_detector
 *	  and alter_detector check a destination with it (options.c), and each
 *	  round writes with it (write.c), so both read a table the same way.
 *
 * By name, in this order:
 *	 1. a score field (detect_dest_columns) or one of KDA's names for one
 *		(ANOMALY_EXPLANATION for explanation), ignoring case, so that
 *		ANOMALY_SCORE, "ANOMALY_SCORE" and anomaly_score are the same;
 *	 2. a column of the source, by its exact name, else ignoring case when
 *		only one source column matches so;
 *	 3. a feature, by its name (feature_names, or the expression itself),
 *		the same way.
 * A column that is generated or an identity column fills itself; a column
 * that matches nothing must have a default.  Anything else could only
 * ever be NULL, which is what a user who misspelt a column would get
 * without a word: it is an error.
 */
#include "postgres.h"

#include "access/tupdesc.h"
#include "catalog/pg_attribute.h"
#include "catalog/pg_type.h"
#include "nodes/pg_list.h"
#include "parser/parse_coerce.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

#include "detect/detect.h"

/* KDA's output column names that are not ours. */
static const struct
{
	const char *name;
	const char *ours;
}			kda_aliases[] = {
	{"anomaly_explanation", "explanation"},
};

/* The index in detect_dest_columns of score field `name`, or -1. */
static int
score_field(const char *name)
{
	for (int c = 0; c < DETECT_DEST_NCOLUMNS; c++)
		if (pg_strcasecmp(name, detect_dest_columns[c].name) == 0)
			return c;
	for (int a = 0; a < lengthof(kda_aliases); a++)
		if (pg_strcasecmp(name, kda_aliases[a].name) == 0)
			return score_field(kda_aliases[a].ours);
	return -1;
}

/*
 * The live source attribute named `name` (exactly, else ignoring case when
 * unique), or NULL.
 */
static Form_pg_attribute
source_column(TupleDesc source, const char *name)
{
	Form_pg_attribute folded = NULL;
	int			nfolded = 0;

	for (int i = 0; i < source->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(source, i);

		if (att->attisdropped)
			continue;
		if (strcmp(NameStr(att->attname), name) == 0)
			return att;
		if (pg_strcasecmp(NameStr(att->attname), name) == 0)
		{
			folded = att;
			nfolded++;
		}
	}
	return nfolded == 1 ? folded : NULL;
}

/* The index of the feature named `name` (the same way), or -1. */
static int
feature_index(List *feature_names, const char *name)
{
	int			folded = -1;
	int			nfolded = 0;
	ListCell   *lc;

	foreach(lc, feature_names)
	{
		const char *f = lfirst(lc);

		if (strcmp(f, name) == 0)
			return foreach_current_index(lc);
		if (pg_strcasecmp(f, name) == 0)
		{
			folded = foreach_current_index(lc);
			nfolded++;
		}
	}
	return nfolded == 1 ? folded : -1;
}

/*
 * Maps every live column of destination `dest` (named `dest_name` in
 * messages; `detector` is NULL while the detector is being defined) to
 * what fills it, checking that each value's type casts to the column's on
 * assignment.  Returns the number of entries in *out, in column order.
 * ERRCODE_UNDEFINED_COLUMN for a column nothing fills, and for a
 * destination without anomaly_score; ERRCODE_DATATYPE_MISMATCH for a
 * type that does not cast.
 */
int
detect_dest_map(TupleDesc dest, const char *dest_name, const char *detector,
				TupleDesc source, List *feature_names, DestFill **out)
{
	DestFill   *map = palloc0(sizeof(DestFill) * Max(dest->natts, 1));
	int			n = 0;
	bool		has_score = false;
	char	   *whose = detector ? psprintf(" of detector \"%s\"", detector) : "";

	for (int i = 0; i < dest->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(dest, i);
		const char *name = NameStr(att->attname);
		DestFill   *f = &map[n];
		Form_pg_attribute src;
		int			c;

		if (att->attisdropped)
			continue;
		f->attnum = att->attnum;
		f->name = pstrdup(name);
		if (att->attgenerated || att->attidentity)
			f->kind = DEST_FILL_SELF;
		else if ((c = score_field(name)) >= 0)
		{
			f->kind = DEST_FILL_SCORE;
			f->index = c;
			f->type = detect_dest_columns[c].type;
			has_score |= strcmp(detect_dest_columns[c].name, "anomaly_score") == 0;
		}
		else if ((src = source_column(source, name)) != NULL)
		{
			f->kind = DEST_FILL_SOURCE;
			f->index = src->attnum;
			f->type = src->atttypid;
			f->source_name = pstrdup(NameStr(src->attname));
		}
		else if ((c = feature_index(feature_names, name)) >= 0)
		{
			f->kind = DEST_FILL_FEATURE;
			f->index = c;
			f->type = FLOAT8OID;
		}
		else if (att->atthasdef)
			f->kind = DEST_FILL_SELF;
		else
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("column \"%s\" of destination table %s%s cannot be filled",
							name, dest_name, whose),
					 errdetail("It names no score field, no column of the source and no feature, and has no default: it would always be NULL."),
					 errhint("Rename it to a column of the source, a feature name or a score field "
							 "(anomaly_score, anomaly_explanation, rowtime, ...), give it a DEFAULT, or drop it.")));
		if (f->kind != DEST_FILL_SELF &&
			!can_coerce_type(1, &f->type, &att->atttypid, COERCION_ASSIGNMENT))
			ereport(ERROR,
					(errcode(ERRCODE_DATATYPE_MISMATCH),
					 errmsg("column \"%s\" of destination table %s%s is of type %s, which %s does not cast to",
							name, dest_name, whose, format_type_be(att->atttypid),
							format_type_be(f->type)),
					 errhint("Use type %s for column \"%s\" (or a type %s casts to on assignment), or drop the column.",
							 format_type_be(f->type), name, format_type_be(f->type))));
		n++;
	}
	if (!has_score)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("destination table %s%s has no column \"anomaly_score\"", dest_name, whose),
				 errhint("A destination table needs at least an anomaly_score column (double precision).")));
	*out = map;
	return n;
}
