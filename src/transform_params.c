/*
 * transform_params.c
 *	  The transform of a forest (src/rcf/transform.c) from SQL arguments or
 *	  detector options: method name, decay and per-feature weights, checked
 *	  with errors that name the parameter.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "utils/array.h"

#include "anomaly.h"

#define TRANSFORM_NAMES "'none', 'weighted', 'subtract_ma', 'difference', 'normalize' and 'normalize_difference'"

/* The method of a transform name; an error for an unknown one. */
RcfTransformMethod
anomaly_transform_method(const char *name)
{
	int			m = rcf_transform_method_parse(name);

	if (m < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown transform \"%s\"", name),
				 errhint("Transforms are " TRANSFORM_NAMES ".")));
	return (RcfTransformMethod) m;
}

/*
 * Fills spec from the arguments: method (a name), decay (decay_null: the
 * default, 1 / sample_size) and weights (NULL: all 1; else one per
 * feature).  Weights and a decay need a method other than none.
 */
void
anomaly_transform_spec(AnomalyTransformSpec *spec, const char *method,
					   bool decay_null, double decay, ArrayType *weights,
					   int dims, int sample_size)
{
	const char *err;

	memset(spec, 0, sizeof(*spec));
	rcf_transform_params_default(&spec->params, dims, sample_size);
	spec->params.method = anomaly_transform_method(method);
	if (!decay_null)
	{
		spec->params.decay = decay;
		if (!(decay >= RCF_TRANSFORM_MIN_DECAY && decay < 1.0))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("transform_decay must be at least 1e-9 and less than 1"),
					 errdetail("transform_decay is %g.", decay),
					 errhint("The statistics remember about 1 / transform_decay records; NULL gives 1 / sub_sample_size.")));
	}
	if (weights)
	{
		Datum	   *elems;
		bool	   *nulls;
		int			n;

		if (ARR_NDIM(weights) > 1)
			ereport(ERROR,
					(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
					 errmsg("transform_weights must be a one-dimensional array")));
		deconstruct_array(weights, FLOAT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE,
						  &elems, &nulls, &n);
		if (n != dims)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("transform_weights must have one weight per feature"),
					 errdetail("There are %d features and %d weights.", dims, n)));
		spec->weights = palloc(sizeof(double) * dims);
		for (int i = 0; i < n; i++)
		{
			if (nulls[i])
				ereport(ERROR,
						(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						 errmsg("transform_weights must not contain NULL")));
			spec->weights[i] = DatumGetFloat8(elems[i]);
			if (rcf_transform_weight_check(spec->weights[i]))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("transform_weights must be between 0 and 1e6"),
						 errdetail("Weight %d is %g.", i + 1, spec->weights[i])));
		}
		if (spec->params.method == RCF_TRANSFORM_NONE)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("transform_weights need a transform other than 'none'"),
					 errhint("Use transform => 'weighted' to scale the features only.")));
	}
	err = rcf_transform_params_check(&spec->params);
	if (err)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid transform parameters: %s", err)));
}

/* The transform of spec in context, or NULL for method none. */
RcfTransform *
anomaly_transform_create(const AnomalyTransformSpec *spec, MemoryContext context)
{
	RcfAllocator allocator;
	RcfTransform *t;

	if (spec->params.method == RCF_TRANSFORM_NONE)
		return NULL;
	allocator.alloc = anomaly_context_alloc;
	allocator.free = anomaly_context_free;
	allocator.ctx = context;
	t = rcf_transform_create(&spec->params, spec->weights, &allocator);
	if (t == NULL)
		elog(ERROR, "could not create a transform with valid parameters");
	return t;
}
