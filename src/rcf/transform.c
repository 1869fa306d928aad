/*
 * transform.c
 *	  Per-feature transforms of input records before the forest sees them,
 *	  with discounted running statistics, and their inverse.
 *
 * A Random Cut Forest cuts a dimension with probability proportional to
 * its range, so a feature in large units drowns the others, and a level
 * that drifts keeps moving the points away from what the trees hold.  As
 * in the thresholded forest of AWS (its TransformMethod), each value of a
 * record can be rescaled before shingling:
 *
 *	 none					x
 *	 weighted				w x
 *	 subtract_ma			w (x - mean)
 *	 difference				w (x - previous x)
 *	 normalize				w clip((x - mean) / scale)
 *	 normalize_difference	w clip((d - mean of d) / scale of d),
 *							d = x - previous x
 *
 * with mean and scale discounted over roughly 1 / decay records and w a
 * per-feature weight.  A record is transformed with the statistics of the
 * records before it, then learned by them, so scoring a record and then
 * learning it gives the same result however the two are interleaved with
 * encoding.  The first record has no previous one: its difference is 0
 * and, having no mean yet, it is its own mean.
 *
 * The statistics are a discounted (West) variant of Welford's algorithm:
 * mean and sum of squared deviations are updated from the deviation of the
 * new value, never as a difference of large sums, so they stay exact for
 * values with a large offset and never go negative.  A record that would
 * make a statistic overflow is not learned by it (documented, not an
 * error), so no statistic is ever infinite or NaN, and every output is
 * finite: a division by a zero scale (a constant feature) cannot happen,
 * since the scale has a floor, and an overflowing quotient is clipped.
 *
 * Inversion maps the forest's expected values back into the caller's
 * units with the same statistics.  Clipping is not inverted (the forest
 * never expects a clipped value for long), and a feature of weight 0,
 * which the forest does not see, "expects" its actual value.
 */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rcf.h"
#include "le_bytes.h"

/*
 * The floor of a scale: relative to the mean's magnitude (a feature that
 * varies in its ninth digit is constant for a forest holding floats) and
 * absolute (a feature constantly 0).
 */
#define SCALE_RELATIVE_FLOOR	1e-9
#define SCALE_ABSOLUTE_FLOOR	1e-300

/* Discounted mean and variance of one stream of values. */
typedef struct RcfStat
{
	double		weight;			/* discounted count */
	double		mean;
	double		m2;				/* discounted sum of squared deviations */
} RcfStat;

typedef struct RcfFeature
{
	double		weight;			/* the caller's weight w */
	double		previous;		/* the last record's value */
	RcfStat		level;			/* of x */
	RcfStat		diff;			/* of x - previous x */
} RcfFeature;

struct RcfTransform
{
	RcfTransformParams params;
	RcfAllocator allocator;
	uint64_t	count;			/* records learned */
	RcfFeature	feature[];		/* params.dims of them */
};

static const char *const method_names[] = {
	[RCF_TRANSFORM_NONE] = "none",
	[RCF_TRANSFORM_WEIGHTED] = "weighted",
	[RCF_TRANSFORM_SUBTRACT_MA] = "subtract_ma",
	[RCF_TRANSFORM_DIFFERENCE] = "difference",
	[RCF_TRANSFORM_NORMALIZE] = "normalize",
	[RCF_TRANSFORM_NORMALIZE_DIFFERENCE] = "normalize_difference",
};

const char *
rcf_transform_method_name(RcfTransformMethod method)
{
	if ((int) method < 0 || method > RCF_TRANSFORM_NORMALIZE_DIFFERENCE)
		return NULL;
	return method_names[method];
}

int
rcf_transform_method_parse(const char *name)
{
	for (int m = 0; m <= RCF_TRANSFORM_NORMALIZE_DIFFERENCE; m++)
		if (strcmp(name, method_names[m]) == 0)
			return m;
	return -1;
}

/*
 * AWS ties the decay of its transform statistics to the forest's sample
 * size (1 / sample_size): the statistics then remember about as many
 * records as a tree holds.
 */
void
rcf_transform_params_default(RcfTransformParams *params, int dims,
							 int sample_size)
{
	memset(params, 0, sizeof(RcfTransformParams));
	params->method = RCF_TRANSFORM_NONE;
	params->dims = dims;
	params->decay = sample_size > 1 ? 1.0 / sample_size : 0.5;
	params->clip = RCF_TRANSFORM_DEFAULT_CLIP;
}

const char *
rcf_transform_params_check(const RcfTransformParams *params)
{
	if ((int) params->method < 0 ||
		params->method > RCF_TRANSFORM_NORMALIZE_DIFFERENCE)
		return "transform is not a known method";
	if (params->dims < 1 || params->dims > RCF_MAX_DIMENSIONS)
		return "transform dimensions are out of range";
	if (!(params->decay >= RCF_TRANSFORM_MIN_DECAY && params->decay < 1.0))
		return "transform_decay must be at least 1e-9 and less than 1";
	if (!(params->clip >= 1.0 && params->clip <= RCF_TRANSFORM_MAX_CLIP))
		return "transform_clip must be between 1 and 1e6";
	return NULL;
}

const char *
rcf_transform_weight_check(double weight)
{
	if (!(weight >= 0.0 && weight <= RCF_TRANSFORM_MAX_WEIGHT))
		return "transform weights must be between 0 and 1e6";
	return NULL;
}

size_t
rcf_transform_bytes(int dims)
{
	return sizeof(RcfTransform) + sizeof(RcfFeature) * (size_t) dims;
}

/* A zeroed transform of dims features that keeps its allocator. */
static RcfTransform *
transform_alloc(int dims, const RcfAllocator *allocator)
{
	return rcf_allocator_new(allocator, rcf_transform_bytes(dims),
							 offsetof(RcfTransform, allocator));
}

RcfTransform *
rcf_transform_create(const RcfTransformParams *params, const double *weights,
					 const RcfAllocator *allocator)
{
	RcfTransform *t;

	if (rcf_transform_params_check(params))
		return NULL;
	if (weights)
		for (int i = 0; i < params->dims; i++)
			if (rcf_transform_weight_check(weights[i]))
				return NULL;
	t = transform_alloc(params->dims, allocator);
	if (t == NULL)
		return NULL;
	t->params = *params;
	for (int i = 0; i < params->dims; i++)
		t->feature[i].weight = weights ? weights[i] : 1.0;
	return t;
}

void
rcf_transform_free(RcfTransform *transform)
{
	if (transform != NULL)
		rcf_allocator_free(&transform->allocator, transform);
}

const RcfTransformParams *
rcf_transform_params(const RcfTransform *transform)
{
	return &transform->params;
}

double
rcf_transform_weight(const RcfTransform *transform, int i)
{
	return transform->feature[i].weight;
}

uint64_t
rcf_transform_count(const RcfTransform *transform)
{
	return transform->count;
}

/* Folds x into s, discounting the past by keep; unchanged on overflow. */
static void
stat_update(RcfStat *s, double keep, double x)
{
	double		weight = s->weight * keep + 1.0;
	double		delta = x - s->mean;
	double		mean = s->mean + delta / weight;
	double		m2 = s->m2 * keep + delta * (x - mean);

	if (!isfinite(delta) || !isfinite(mean) || !isfinite(m2))
		return;
	s->weight = weight;
	s->mean = mean;
	s->m2 = m2 > 0.0 ? m2 : 0.0;
}

/* The scale of a normalized value: the deviation, with a floor. */
static double
stat_scale(const RcfStat *s)
{
	double		sd = s->weight > 0.0 ? sqrt(s->m2 / s->weight) : 0.0;
	double		floor = SCALE_RELATIVE_FLOOR * fabs(s->mean);

	if (floor < SCALE_ABSOLUTE_FLOOR)
		floor = SCALE_ABSOLUTE_FLOOR;
	return sd > floor ? sd : floor;
}

/* (v - mean) / scale, clipped to [-clip, clip]; finite for finite v. */
static double
normalized(double v, double mean, double scale, double clip)
{
	double		t = (v - mean) / scale;

	if (t > clip)
		return clip;
	if (t < -clip)
		return -clip;
	if (t != t)					/* only if v - mean overflowed both ways */
		return 0.0;
	return t;
}

/* The value fed to the statistics of differences, and to the forest. */
static inline double
difference(const RcfTransform *t, const RcfFeature *f, double x)
{
	return t->count == 0 ? 0.0 : x - f->previous;
}

void
rcf_transform_apply(const RcfTransform *t, const double *input, double *out)
{
	int			dims = t->params.dims;
	double		clip = t->params.clip;

	for (int i = 0; i < dims; i++)
	{
		const RcfFeature *f = &t->feature[i];
		double		x = input[i];
		double		y;

		switch (t->params.method)
		{
			case RCF_TRANSFORM_NONE:
				out[i] = x;
				continue;
			case RCF_TRANSFORM_WEIGHTED:
				y = x;
				break;
			case RCF_TRANSFORM_SUBTRACT_MA:
				y = t->count == 0 ? 0.0 : x - f->level.mean;
				break;
			case RCF_TRANSFORM_DIFFERENCE:
				y = difference(t, f, x);
				break;
			case RCF_TRANSFORM_NORMALIZE:
				y = t->count == 0 ? 0.0 :
					normalized(x, f->level.mean, stat_scale(&f->level), clip);
				break;
			case RCF_TRANSFORM_NORMALIZE_DIFFERENCE:
				y = t->count == 0 ? 0.0 :
					normalized(difference(t, f, x), f->diff.mean,
							   stat_scale(&f->diff), clip);
				break;
			default:
				y = 0.0;
				break;
		}
		y *= f->weight;
		/* Differences of huge values can overflow; the forest gets a bound. */
		if (!isfinite(y))
			y = y > 0.0 ? DBL_MAX : (y < 0.0 ? -DBL_MAX : 0.0);
		out[i] = y;
	}
}

void
rcf_transform_learn(RcfTransform *t, const double *input)
{
	double		keep = 1.0 - t->params.decay;

	if (t->params.method == RCF_TRANSFORM_NONE)
	{
		t->count++;
		return;
	}
	for (int i = 0; i < t->params.dims; i++)
	{
		RcfFeature *f = &t->feature[i];
		double		x = input[i];
		double		d = difference(t, f, x);

		if (!isfinite(x))
			continue;			/* callers refuse these; learn nothing */
		stat_update(&f->level, keep, x);
		if (isfinite(d))
			stat_update(&f->diff, keep, d);
		f->previous = x;
	}
	t->count++;
}

void
rcf_transform_invert(const RcfTransform *t, const double *values,
					 const double *input, double *out)
{
	int			dims = t->params.dims;

	for (int i = 0; i < dims; i++)
	{
		const RcfFeature *f = &t->feature[i];
		double		v = values[i];
		double		base;
		double		x;

		if (t->params.method == RCF_TRANSFORM_NONE)
		{
			out[i] = v;
			continue;
		}
		if (f->weight == 0.0)
		{
			out[i] = input[i];
			continue;
		}
		v /= f->weight;
		/* With nothing learned, the record is its own mean and previous. */
		base = t->count == 0 ? input[i] : 0.0;
		switch (t->params.method)
		{
			case RCF_TRANSFORM_WEIGHTED:
				x = v;
				break;
			case RCF_TRANSFORM_SUBTRACT_MA:
				x = v + (t->count == 0 ? base : f->level.mean);
				break;
			case RCF_TRANSFORM_DIFFERENCE:
				x = v + (t->count == 0 ? base : f->previous);
				break;
			case RCF_TRANSFORM_NORMALIZE:
				x = t->count == 0 ? base :
					f->level.mean + v * stat_scale(&f->level);
				break;
			case RCF_TRANSFORM_NORMALIZE_DIFFERENCE:
				x = t->count == 0 ? base :
					f->previous + f->diff.mean + v * stat_scale(&f->diff);
				break;
			default:
				x = v;
				break;
		}
		if (!isfinite(x))
			x = x > 0.0 ? DBL_MAX : (x < 0.0 ? -DBL_MAX : 0.0);
		out[i] = x;
	}
}

int
rcf_transform_last_input(const RcfTransform *t, double *record)
{
	if (t->count == 0 || t->params.method == RCF_TRANSFORM_NONE)
		return -1;
	for (int i = 0; i < t->params.dims; i++)
		record[i] = t->feature[i].previous;
	return 0;
}

int
rcf_transform_impute(const RcfTransform *t, RcfForest *forest,
					 const double *input, const bool *missing,
					 double *expected)
{
	int			dims;
	double		known[RCF_MAX_DIMENSIONS] = {0};
	double		x[RCF_MAX_DIMENSIONS];

	if (t == NULL || t->params.method == RCF_TRANSFORM_NONE)
		return rcf_impute(forest, input, missing, expected);
	dims = t->params.dims;
	/* Missing values are unknown: any finite stand-in, which impute ignores. */
	for (int i = 0; i < dims; i++)
		known[i] = missing[i] ? 0.0 : input[i];
	rcf_transform_apply(t, known, x);
	if (rcf_impute(forest, x, missing, expected) != 0)
		return -1;
	rcf_transform_invert(t, expected, known, x);
	for (int i = 0; i < dims; i++)
		expected[i] = missing[i] ? x[i] : input[i];
	return 0;
}

#define TRANSFORM_FIXED		(5 * 8)
#define TRANSFORM_PER_DIM	(8 * 8)

size_t
rcf_transform_encoded_size(const RcfTransform *t)
{
	return TRANSFORM_FIXED + TRANSFORM_PER_DIM * (size_t) t->params.dims;
}

/*
 * Layout (section kind RCF_SECTION_TRANSFORM): u64 method, u64 dims,
 * f64 decay, f64 clip, u64 count; per feature f64 weight, previous,
 * level weight, level mean, level m2, diff weight, diff mean, diff m2.
 */
void
rcf_transform_encode(const RcfTransform *t, uint8_t *p)
{
	p = rcf_le_put_u64(p, (uint64_t) t->params.method);
	p = rcf_le_put_u64(p, (uint64_t) t->params.dims);
	p = rcf_le_put_f64(p, t->params.decay);
	p = rcf_le_put_f64(p, t->params.clip);
	p = rcf_le_put_u64(p, t->count);
	for (int i = 0; i < t->params.dims; i++)
	{
		const RcfFeature *f = &t->feature[i];

		p = rcf_le_put_f64(p, f->weight);
		p = rcf_le_put_f64(p, f->previous);
		p = rcf_le_put_f64(p, f->level.weight);
		p = rcf_le_put_f64(p, f->level.mean);
		p = rcf_le_put_f64(p, f->level.m2);
		p = rcf_le_put_f64(p, f->diff.weight);
		p = rcf_le_put_f64(p, f->diff.mean);
		p = rcf_le_put_f64(p, f->diff.m2);
	}
}

/* True if a decoded statistic could have come from stat_update. */
static bool
stat_valid(const RcfStat *s, double max_weight, uint64_t count)
{
	return isfinite(s->weight) && s->weight >= 0.0 &&
		s->weight <= max_weight && s->weight <= (double) count &&
		isfinite(s->mean) && isfinite(s->m2) && s->m2 >= 0.0 &&
		(s->weight > 0.0 || (s->mean == 0.0 && s->m2 == 0.0));
}

RcfTransform *
rcf_transform_decode(const uint8_t *buf, size_t len, int dims,
					 const RcfAllocator *allocator, const char **detail)
{
	const uint8_t *p = buf;
	RcfTransformParams q;
	uint64_t	method,
				ndims;
	RcfTransform *t;
	double		max_weight;

	*detail = "the transform section is malformed";
	if (len < TRANSFORM_FIXED)
		return NULL;
	method = rcf_le_get_u64(&p);
	ndims = rcf_le_get_u64(&p);
	memset(&q, 0, sizeof(q));
	q.decay = rcf_le_get_f64(&p);
	q.clip = rcf_le_get_f64(&p);
	if (method > RCF_TRANSFORM_NORMALIZE_DIFFERENCE || ndims != (uint64_t) dims)
	{
		*detail = "the transform's method or dimensions are out of range";
		return NULL;
	}
	q.method = (RcfTransformMethod) method;
	q.dims = dims;
	if (len != TRANSFORM_FIXED + TRANSFORM_PER_DIM * (size_t) dims)
	{
		*detail = "the transform section's length does not match its dimensions";
		return NULL;
	}
	if (rcf_transform_params_check(&q))
	{
		*detail = "the transform's parameters are out of range";
		return NULL;
	}
	t = transform_alloc(dims, allocator);
	if (t == NULL)
	{
		*detail = "out of memory for the transform";
		return NULL;
	}
	t->params = q;
	t->count = rcf_le_get_u64(&p);
	/* A discounted count stays below 1 / decay (plus rounding). */
	max_weight = 1.0 / q.decay + 1.0;
	for (int i = 0; i < dims; i++)
	{
		RcfFeature *f = &t->feature[i];

		f->weight = rcf_le_get_f64(&p);
		f->previous = rcf_le_get_f64(&p);
		f->level.weight = rcf_le_get_f64(&p);
		f->level.mean = rcf_le_get_f64(&p);
		f->level.m2 = rcf_le_get_f64(&p);
		f->diff.weight = rcf_le_get_f64(&p);
		f->diff.mean = rcf_le_get_f64(&p);
		f->diff.m2 = rcf_le_get_f64(&p);
		if (rcf_transform_weight_check(f->weight) || !isfinite(f->previous) ||
			!stat_valid(&f->level, max_weight, t->count) ||
			!stat_valid(&f->diff, max_weight, t->count))
		{
			*detail = "the transform's state is inconsistent";
			rcf_transform_free(t);
			return NULL;
		}
	}
	*detail = NULL;
	return t;
}
