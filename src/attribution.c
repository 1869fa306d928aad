/*
 * attribution.c
 *	  KDA's explanation of a score as jsonb.
 *
 * For each input column: ATTRIBUTION_SCORE, the part of the anomaly score
 * due to that column (the parts add up to the score); with directionality
 * also DIRECTION, HIGH when the column's value lies mostly above what the
 * forest has seen and LOW when below, and STRENGTH, how one-sided that is:
 * |high - low| / (high + low), from 0 (as much above as below) to 1
 * (entirely one way).  KDA never defined STRENGTH; this is our definition.
 * Values are strings with four decimals, as KDA printed them.  With
 * shingling, a column's parts over all positions of the shingle are summed.
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "lib/stringinfo.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/json.h"

#include "anomaly.h"

/* Builds the explanation for the attribution of one point. */
Jsonb *
anomaly_explanation(const RcfForest *forest, const double *high,
					const double *low, int dims, bool with_directionality,
					List *names)
{
	const RcfParams *params = rcf_params(forest);
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	for (int d = 0; d < dims; d++)
	{
		double		h = 0.0;
		double		l = 0.0;
		char		number[16];

		for (int s = 0; s < params->shingle_size; s++)
		{
			h += high[s * dims + d];
			l += low[s * dims + d];
		}
		if (d > 0)
			appendStringInfoString(&buf, ", ");
		if (names)
			escape_json(&buf, (const char *) list_nth(names, d));
		else
		{
			snprintf(number, sizeof(number), "%d", d + 1);
			escape_json(&buf, number);
		}
		appendStringInfoString(&buf, ": {");
		if (with_directionality)
		{
			double		strength = (h + l) > 0.0 ? fabs(h - l) / (h + l) : 0.0;

			appendStringInfo(&buf, "\"DIRECTION\": \"%s\", \"STRENGTH\": \"%.4f\", ",
							 h >= l ? "HIGH" : "LOW", strength);
		}
		appendStringInfo(&buf, "\"ATTRIBUTION_SCORE\": \"%.4f\"}", h + l);
	}
	appendStringInfoChar(&buf, '}');
	return DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data)));
}

/*
 * Checks a feature_names argument against the point's number of values and
 * returns the names as a List of C strings (NULL for a NULL array).
 */
List *
anomaly_feature_names(ArrayType *names, int dims)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	List	   *result = NIL;

	if (names == NULL)
		return NIL;
	if (ARR_NDIM(names) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("feature_names must be a one-dimensional array")));
	deconstruct_array(names, TEXTOID, -1, false, TYPALIGN_INT,
					  &elems, &nulls, &n);
	if (n != dims)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("feature_names must have one name per point value"),
				 errdetail("feature_names has %d entries and the point has %d values.",
						   n, dims)));
	for (int i = 0; i < n; i++)
	{
		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("feature_names must not contain NULL")));
		result = lappend(result, text_to_cstring(DatumGetTextPP(elems[i])));
	}
	return result;
}
