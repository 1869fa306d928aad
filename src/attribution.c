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
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

#include "anomaly.h"

/*
 * Pushes a jsonb string (a key or a value) of a C string, which must live
 * until the object is finished: the pushed value points to it.
 */
static void
push_string(JsonbParseState **state, JsonbIteratorToken token, const char *s)
{
	JsonbValue	v;

	v.type = jbvString;
	v.val.string.val = (char *) s;
	v.val.string.len = strlen(s);
	(void) pushJsonbValue(state, token, &v);
}

/* Pushes "key": "value" with the value printed with four decimals. */
static void
push_decimal(JsonbParseState **state, const char *key, double value)
{
	push_string(state, WJB_KEY, key);
	push_string(state, WJB_VALUE, psprintf("%.4f", value));
}

/*
 * Builds the explanation for the attribution of one point, as jsonb values
 * pushed directly (this runs for every scored row: no text to re-parse).
 * Keys are sorted and a repeated feature name keeps its last entry, as
 * jsonb_in would do with the same text.
 */
Jsonb *
anomaly_explanation(const RcfForest *forest, const double *high,
					const double *low, int dims, bool with_directionality,
					List *names)
{
	const RcfParams *params = rcf_params(forest);
	JsonbParseState *state = NULL;
	JsonbValue *result;

	(void) pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	for (int d = 0; d < dims; d++)
	{
		double		h = 0.0;
		double		l = 0.0;

		for (int s = 0; s < params->shingle_size; s++)
		{
			h += high[s * dims + d];
			l += low[s * dims + d];
		}
		/* the pushed values point to their strings until the end */
		if (names)
			push_string(&state, WJB_KEY, (const char *) list_nth(names, d));
		else
			push_string(&state, WJB_KEY, psprintf("%d", d + 1));
		(void) pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
		if (with_directionality)
		{
			double		strength = (h + l) > 0.0 ? fabs(h - l) / (h + l) : 0.0;

			push_string(&state, WJB_KEY, "DIRECTION");
			push_string(&state, WJB_VALUE, h >= l ? "HIGH" : "LOW");
			push_decimal(&state, "STRENGTH", strength);
		}
		push_decimal(&state, "ATTRIBUTION_SCORE", h + l);
		(void) pushJsonbValue(&state, WJB_END_OBJECT, NULL);
	}
	result = pushJsonbValue(&state, WJB_END_OBJECT, NULL);
	return JsonbValueToJsonb(result);
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
