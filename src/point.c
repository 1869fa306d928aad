/*
 * point.c
 *	  Points from SQL values: a float8[] or a row, as KDA's CURSOR gave.
 */
#include "postgres.h"

#include <float.h>
#include <math.h>

#include "access/htup_details.h"
#include "access/relation.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "nodes/nodeFuncs.h"
#include "rewrite/rewriteHandler.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/typcache.h"

#include "anomaly.h"

/* Makes room for dims values in point->values. */
static void
point_reserve(AnomalyPoint *point, int dims, MemoryContext context)
{
	if (point->capacity < dims)
	{
		if (point->values)
			pfree(point->values);
		if (point->nulls)
			pfree(point->nulls);
		point->values = MemoryContextAlloc(context, sizeof(double) * dims);
		point->nulls = MemoryContextAlloc(context, sizeof(bool) * dims);
		point->capacity = dims;
	}
	point->dims = dims;
	point->has_null = false;
}

/*
 * Checks one value.  The forest keeps points as real (float4), so a value
 * beyond real's range could not be learned faithfully.
 */
static void
check_value(double v, int position)
{
	if (isnan(v) || isinf(v))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("point value %d is %s", position,
						isnan(v) ? "NaN" : "infinite"),
				 errhint("Filter such rows out or map them to NULL (for example with NULLIF); a point with a NULL value gets a NULL score and is not learned.")));
	if (fabs(v) > FLT_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("point value %d is out of range for the forest", position),
				 errdetail("Points are stored as real; %g is beyond its range.", v)));
}

/* Reads a float8[] into point. */
void
anomaly_point_from_array(AnomalyPoint *point, ArrayType *array,
						 MemoryContext context)
{
	int			n;
	float8	   *data;
	bits8	   *nulls;

	if (ARR_ELEMTYPE(array) != FLOAT8OID)
		elog(ERROR, "expected a double precision array");
	if (ARR_NDIM(array) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("point must be a one-dimensional array"),
				 errdetail("The array has %d dimensions.", ARR_NDIM(array))));
	n = ARR_NDIM(array) == 0 ? 0 : ARR_DIMS(array)[0];
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("point must have at least one value")));
	if (n > RCF_MAX_DIMENSIONS)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("a point has at most %d values", RCF_MAX_DIMENSIONS),
				 errdetail("The point has %d values.", n)));

	point_reserve(point, n, context);
	data = (float8 *) ARR_DATA_PTR(array);
	nulls = ARR_NULLBITMAP(array);
	for (int i = 0; i < n; i++)
	{
		point->nulls[i] = nulls && !(nulls[i / 8] & (1 << (i % 8)));
		if (point->nulls[i])
		{
			point->has_null = true;
			point->values[i] = 0.0;
			continue;
		}
		check_value(*data, i + 1);
		point->values[i] = *data++;
	}
}

/* True for the column types whose values become point values. */
static bool
is_numeric_type(Oid type)
{
	switch (type)
	{
		case INT2OID:
		case INT4OID:
		case INT8OID:
		case FLOAT4OID:
		case FLOAT8OID:
		case NUMERICOID:
			return true;
		default:
			return false;
	}
}

/* Converts a value of one of the types above to double. */
static double
numeric_value(Datum d, Oid type)
{
	switch (type)
	{
		case INT2OID:
			return DatumGetInt16(d);
		case INT4OID:
			return DatumGetInt32(d);
		case INT8OID:
			return (double) DatumGetInt64(d);
		case FLOAT4OID:
			return DatumGetFloat4(d);
		case FLOAT8OID:
			return DatumGetFloat8(d);
		case NUMERICOID:
			return DatumGetFloat8(DirectFunctionCall1(numeric_float8, d));
	}
	elog(ERROR, "unexpected type %u", type);
	return 0.0;
}

/* True when an expression calls nextval() or takes an identity's next value. */
static bool
calls_nextval(Node *node, void *context)
{
	if (node == NULL)
		return false;
	if (IsA(node, NextValueExpr))
		return true;
	if (IsA(node, FuncExpr) && ((FuncExpr *) node)->funcid == F_NEXTVAL)
		return true;
	return expression_tree_walker(node, calls_nextval, context);
}

/*
 * Decides once per row type which columns become point values: the numeric
 * ones, except, for a table's row type, identity columns and columns whose
 * default takes a sequence's next value (serial, bigserial).  Such a column
 * counts rows rather than measuring anything, and an ever-increasing value
 * dilutes every score.  A row built with ROW(...) has no table behind it,
 * so naming the columns that way includes them.
 */
static void
choose_columns(AnomalyPoint *point, TupleDesc desc, Oid type,
			   MemoryContext context)
{
	Oid			relid = get_typ_typrelid(type);
	Relation	rel = NULL;
	int			n = 0;
	int			skipped = 0;

	if (point->row_use)
		pfree(point->row_use);
	point->row_use = MemoryContextAllocZero(context, sizeof(bool) * Max(desc->natts, 1));
	if (OidIsValid(relid))
		rel = relation_open(relid, AccessShareLock);
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		bool		use = !att->attisdropped && is_numeric_type(att->atttypid);

		if (use && rel != NULL && i < RelationGetDescr(rel)->natts)
		{
			Form_pg_attribute relatt = TupleDescAttr(RelationGetDescr(rel), i);

			if (relatt->attidentity != '\0')
				use = false;
			else if (relatt->atthasdef &&
					 calls_nextval(build_column_default(rel, i + 1), NULL))
				use = false;
		}
		point->row_use[i] = use;
		if (use)
			n++;
		else if (!att->attisdropped && is_numeric_type(att->atttypid))
			skipped++;
	}
	if (rel != NULL)
		relation_close(rel, AccessShareLock);
	point->rowtype = type;
	point->row_natts = desc->natts;
	point->row_dims = n;
	point->row_skipped = skipped;
}

/*
 * Reads the numeric columns of a row (smallint, integer, bigint, real,
 * double precision, numeric), in column order, into point; other columns
 * are ignored, as KDA did with a CURSOR, and so are a table's identity and
 * serial columns (see choose_columns).  With names != NULL, also returns
 * the columns' names.
 */
void
anomaly_point_from_record(AnomalyPoint *point, HeapTupleHeader rec,
						  MemoryContext context, List **names)
{
	Oid			type = HeapTupleHeaderGetTypeId(rec);
	int32		typmod = HeapTupleHeaderGetTypMod(rec);
	TupleDesc	desc = lookup_rowtype_tupdesc(type, typmod);
	HeapTupleData tuple;
	Datum	   *values;
	bool	   *isnull;
	int			n;
	int			k = 0;

	/* An anonymous record's typmod names its shape; recheck those always. */
	if (point->rowtype != type || point->row_natts != desc->natts ||
		type == RECORDOID)
		choose_columns(point, desc, type, context);
	n = point->row_dims;
	if (n == 0)
	{
		ReleaseTupleDesc(desc);
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("row has no numeric column"),
				 errdetail("Only smallint, integer, bigint, real, double precision and numeric columns are used, except a table's identity and serial columns."),
				 point->row_skipped > 0 ?
				 errhint("To use an identity or serial column, name the columns: ROW(id, ...) or ARRAY[id, ...]::float8[].") : 0));
	}
	if (n > RCF_MAX_DIMENSIONS)
	{
		ReleaseTupleDesc(desc);
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("a point has at most %d values", RCF_MAX_DIMENSIONS)));
	}

	tuple.t_len = HeapTupleHeaderGetDatumLength(rec);
	ItemPointerSetInvalid(&tuple.t_self);
	tuple.t_tableOid = InvalidOid;
	tuple.t_data = rec;
	values = palloc(sizeof(Datum) * desc->natts);
	isnull = palloc(sizeof(bool) * desc->natts);
	heap_deform_tuple(&tuple, desc, values, isnull);

	point_reserve(point, n, context);
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (!point->row_use[i])
			continue;
		if (names)
		{
			MemoryContext old = MemoryContextSwitchTo(context);

			*names = lappend(*names, pstrdup(NameStr(att->attname)));
			MemoryContextSwitchTo(old);
		}
		point->nulls[k] = isnull[i];
		if (isnull[i])
		{
			point->has_null = true;
			point->values[k++] = 0.0;
			continue;
		}
		point->values[k] = numeric_value(values[i], att->atttypid);
		check_value(point->values[k], k + 1);
		k++;
	}
	pfree(values);
	pfree(isnull);
	ReleaseTupleDesc(desc);
}

/* Every point of one forest must have the same number of values. */
void
anomaly_point_check_dims(const AnomalyPoint *point, int expected)
{
	if (point->dims != expected)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("point has %d values but the forest was built for %d",
						point->dims, expected),
				 errdetail("Every point of a window partition or model must have the same number of values.")));
}
