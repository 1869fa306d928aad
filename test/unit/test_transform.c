/*
 * test_transform.c
 *	  Transforms of input records (transform.c): each method against a
 *	  direct computation, inversion, constant and extreme features (never a
 *	  NaN), the encoded form and its validation, and the grader and model
 *	  encoding with a transform.
 */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "noise.h"
#include "unit.h"
#include "rcf/rcf.h"
#include "rcf/grade.h"

static RcfTransform *
make(RcfTransformMethod method, int dims, double decay, const double *w)
{
	RcfTransformParams p;

	rcf_transform_params_default(&p, dims, 256);
	p.method = method;
	if (decay > 0)
		p.decay = decay;
	return rcf_transform_create(&p, w, NULL);
}

static void
test_names_and_params(void)
{
	RcfTransformParams p;

	for (int m = 0; m <= RCF_TRANSFORM_NORMALIZE_DIFFERENCE; m++)
		UNIT_OK(rcf_transform_method_parse(rcf_transform_method_name(m)) == m,
				"method %d round-trips through its name", m);
	UNIT_OK(rcf_transform_method_parse("Normalize") == -1, "names are lower case");
	UNIT_OK(rcf_transform_method_parse("") == -1, "the empty name is unknown");
	UNIT_OK(rcf_transform_method_name(99) == NULL, "no name for method 99");

	rcf_transform_params_default(&p, 3, 256);
	UNIT_OK(p.method == RCF_TRANSFORM_NONE, "the default method is none");
	UNIT_NEAR(p.decay, 1.0 / 256, 0, "the default decay is 1 / sample_size");
	UNIT_OK(rcf_transform_params_check(&p) == NULL, "defaults are valid");
	p.decay = 0.0;
	UNIT_OK(rcf_transform_params_check(&p) != NULL, "decay 0 is refused");
	p.decay = 1.0;
	UNIT_OK(rcf_transform_params_check(&p) != NULL, "decay 1 is refused");
	p.decay = NAN;
	UNIT_OK(rcf_transform_params_check(&p) != NULL, "decay NaN is refused");
	p.decay = 0.01;
	p.clip = NAN;
	UNIT_OK(rcf_transform_params_check(&p) != NULL, "clip NaN is refused");
	p.clip = 0.5;
	UNIT_OK(rcf_transform_params_check(&p) != NULL, "clip below 1 is refused");
	p.clip = 10;
	p.method = 6;
	UNIT_OK(rcf_transform_params_check(&p) != NULL, "method 6 is refused");
	p.method = RCF_TRANSFORM_WEIGHTED;
	{
		double		w[3] = {1, -1, 2};

		UNIT_OK(rcf_transform_create(&p, w, NULL) == NULL, "a negative weight is refused");
		w[1] = NAN;
		UNIT_OK(rcf_transform_create(&p, w, NULL) == NULL, "a NaN weight is refused");
	}
}

/*
 * Every method against its definition, with the discounted mean and
 * deviation computed directly from the weights (1 - decay)^age.
 */
static void
test_methods(void)
{
	const double decay = 0.05;
	const int	n = 200;
	double		xs[200];
	uint64_t	s = 7;

	for (int i = 0; i < n; i++)
		xs[i] = 1000.0 + 10.0 * noise(&s) + (i % 17 == 0 ? 40.0 : 0.0);

	for (int m = 0; m <= RCF_TRANSFORM_NORMALIZE_DIFFERENCE; m++)
	{
		double		w = 0.5;
		RcfTransform *t = make(m, 1, decay, &w);
		double		worst = 0.0,
					worst_inv = 0.0;

		for (int i = 0; i < n; i++)
		{
			double		y,
						want,
						back;
			double		sw = 0,
						sm = 0,
						sv = 0;

			/* Direct statistics of the values (or differences) before i. */
			for (int j = 0; j < i; j++)
			{
				double		v = (m == RCF_TRANSFORM_NORMALIZE_DIFFERENCE) ?
					(j == 0 ? 0.0 : xs[j] - xs[j - 1]) : xs[j];
				double		k = pow(1.0 - decay, i - 1 - j);

				sw += k;
				sm += k * v;
			}
			if (sw > 0)
				sm /= sw;
			for (int j = 0; j < i; j++)
			{
				double		v = (m == RCF_TRANSFORM_NORMALIZE_DIFFERENCE) ?
					(j == 0 ? 0.0 : xs[j] - xs[j - 1]) : xs[j];
				double		k = pow(1.0 - decay, i - 1 - j);

				sv += k * (v - sm) * (v - sm);
			}
			if (sw > 0)
				sv = sqrt(sv / sw);
			switch (m)
			{
				case RCF_TRANSFORM_NONE:
					want = xs[i];
					break;
				case RCF_TRANSFORM_WEIGHTED:
					want = w * xs[i];
					break;
				case RCF_TRANSFORM_SUBTRACT_MA:
					want = i == 0 ? 0 : w * (xs[i] - sm);
					break;
				case RCF_TRANSFORM_DIFFERENCE:
					want = i == 0 ? 0 : w * (xs[i] - xs[i - 1]);
					break;
				case RCF_TRANSFORM_NORMALIZE:
					want = i == 0 ? 0 : w * fmax(-10, fmin(10, (xs[i] - sm) / sv));
					break;
				default:
					want = i == 0 ? 0 :
						w * fmax(-10, fmin(10, (xs[i] - xs[i - 1] - sm) / sv));
					break;
			}
			rcf_transform_apply(t, &xs[i], &y);
			if (fabs(y - want) > worst)
				worst = fabs(y - want);
			/* Unclipped values invert to the input. */
			rcf_transform_invert(t, &y, &xs[i], &back);
			if (fabs(y / w) < 9.99 && fabs(back - xs[i]) > worst_inv)
				worst_inv = fabs(back - xs[i]);
			rcf_transform_learn(t, &xs[i]);
		}
		UNIT_OK(worst < 1e-8, "%s: 200 values as defined (worst error %g)",
				rcf_transform_method_name(m), worst);
		UNIT_OK(worst_inv < 1e-8, "%s: inversion gives the input back (worst error %g)",
				rcf_transform_method_name(m), worst_inv);
		UNIT_OK(rcf_transform_count(t) == (uint64_t) n, "%s: counts records",
				rcf_transform_method_name(m));
		rcf_transform_free(t);
	}
}

/* Constant features, zero weights, extreme values: finite, well-defined. */
static void
test_edges(void)
{
	double		x[3],
				y[3],
				back[3];
	double		w[3] = {1, 1, 0};
	RcfTransform *t;
	bool		finite = true;

	for (int m = RCF_TRANSFORM_NORMALIZE; m <= RCF_TRANSFORM_NORMALIZE_DIFFERENCE; m++)
	{
		t = make(m, 3, 0.01, w);
		for (int i = 0; i < 100; i++)
		{
			x[0] = 5.0;			/* constant */
			x[1] = 0.0;			/* constant zero */
			x[2] = i;			/* weight 0 */
			rcf_transform_apply(t, x, y);
			if (y[0] != 0.0 || y[1] != 0.0 || y[2] != 0.0)
				finite = false;
			rcf_transform_learn(t, x);
		}
		UNIT_OK(finite, "%s: constant features and weight 0 give 0",
				rcf_transform_method_name(m));
		x[0] = 5.5;
		x[1] = -1e-200;
		rcf_transform_apply(t, x, y);
		UNIT_OK(y[0] == 10.0 && y[1] == -10.0,
				"%s: a change of a constant feature clips to +-clip (%g, %g)",
				rcf_transform_method_name(m), y[0], y[1]);
		rcf_transform_invert(t, y, x, back);
		UNIT_OK(back[2] == x[2], "%s: a feature of weight 0 expects its value",
				rcf_transform_method_name(m));
		rcf_transform_free(t);
	}

	/* Values at the ends of the double range, alternating. */
	for (int m = 0; m <= RCF_TRANSFORM_NORMALIZE_DIFFERENCE; m++)
	{
		t = make(m, 1, 0.5, NULL);
		finite = true;
		for (int i = 0; i < 50; i++)
		{
			double		v = (i % 2 ? 1 : -1) * DBL_MAX * (i % 3 ? 1 : 0.5);

			rcf_transform_apply(t, &v, y);
			rcf_transform_invert(t, y, &v, back);
			if (!isfinite(y[0]) || !isfinite(back[0]))
				finite = false;
			rcf_transform_learn(t, &v);
		}
		UNIT_OK(finite, "%s: values near +-DBL_MAX give finite outputs",
				rcf_transform_method_name(m));
		{
			size_t		n = rcf_transform_encoded_size(t);
			uint8_t    *buf = malloc(n);
			const char *detail;
			RcfTransform *u;

			rcf_transform_encode(t, buf);
			u = rcf_transform_decode(buf, n, 1, NULL, &detail);
			UNIT_OK(u != NULL, "%s: statistics after extreme values stay valid (%s)",
					rcf_transform_method_name(m), u ? "ok" : detail);
			rcf_transform_free(u);
			free(buf);
		}
		rcf_transform_free(t);
	}
}

/* The encoded form round-trips, and decoding refuses what is not sound. */
static void
test_encoding(void)
{
	double		w[2] = {1.0, 2.5};
	RcfTransform *t = make(RCF_TRANSFORM_NORMALIZE_DIFFERENCE, 2, 0.02, w);
	RcfTransform *u;
	uint64_t	s = 3;
	size_t		n;
	uint8_t    *buf,
			   *bad;
	const char *detail;
	bool		same = true;
	int			refused = 0,
				flips = 0;

	for (int i = 0; i < 300; i++)
	{
		double		x[2] = {noise(&s), 1e6 + 100 * noise(&s)};

		rcf_transform_learn(t, x);
	}
	n = rcf_transform_encoded_size(t);
	UNIT_OK(n == 40 + 2 * 64, "encoded size is 40 + 64 per feature");
	buf = malloc(n);
	bad = malloc(n);
	rcf_transform_encode(t, buf);
	u = rcf_transform_decode(buf, n, 2, NULL, &detail);
	UNIT_OK(u != NULL, "a transform decodes");
	for (int i = 0; u && i < 100; i++)
	{
		double		x[2] = {noise(&s), 1e6 + 100 * noise(&s)};
		double		a[2],
					b[2];

		rcf_transform_apply(t, x, a);
		rcf_transform_apply(u, x, b);
		if (memcmp(a, b, sizeof(a)) != 0)
			same = false;
		rcf_transform_learn(t, x);
		rcf_transform_learn(u, x);
	}
	UNIT_OK(same, "the decoded transform continues bit for bit");
	rcf_transform_free(u);

	UNIT_OK(rcf_transform_decode(buf, n, 3, NULL, &detail) == NULL,
			"dimensions other than the forest's are refused");
	UNIT_OK(rcf_transform_decode(buf, n - 1, 2, NULL, &detail) == NULL,
			"a truncated section is refused");
	UNIT_OK(rcf_transform_decode(buf, 10, 2, NULL, &detail) == NULL,
			"a section shorter than its fixed part is refused");

	/* A NaN in a mean, a negative m2, an unknown method. */
	{
		double		nan = NAN,
					neg = -1.0;

		memcpy(bad, buf, n);
		memcpy(bad + 40 + 3 * 8, &nan, 8);
		UNIT_OK(rcf_transform_decode(bad, n, 2, NULL, &detail) == NULL,
				"a NaN mean is refused: %s", detail ? detail : "");
		memcpy(bad, buf, n);
		memcpy(bad + 40 + 4 * 8, &neg, 8);
		UNIT_OK(rcf_transform_decode(bad, n, 2, NULL, &detail) == NULL,
				"a negative sum of squares is refused");
		memcpy(bad, buf, n);
		bad[0] = 6;
		UNIT_OK(rcf_transform_decode(bad, n, 2, NULL, &detail) == NULL,
				"method 6 is refused");
	}

	/* Every single-byte change either is refused or decodes to finite state. */
	for (size_t i = 0; i < n; i++)
		for (int bit = 0; bit < 8; bit++)
		{
			memcpy(bad, buf, n);
			bad[i] ^= (uint8_t) (1 << bit);
			flips++;
			u = rcf_transform_decode(bad, n, 2, NULL, &detail);
			if (u == NULL)
			{
				refused++;
				continue;
			}
			{
				double		x[2] = {1.0, 2.0},
							y[2],
							z[2];

				rcf_transform_apply(u, x, y);
				rcf_transform_invert(u, y, x, z);
				if (!isfinite(y[0]) || !isfinite(y[1]) ||
					!isfinite(z[0]) || !isfinite(z[1]))
					refused = -100000;
			}
			rcf_transform_free(u);
		}
	UNIT_OK(refused > 0, "bit flips: %d of %d refused, the rest finite", refused, flips);

	free(buf);
	free(bad);
	rcf_transform_free(t);
}

/*
 * The grader with a transform: none is bit for bit the grader alone; a
 * model with a transform encodes, decodes and continues bit for bit; a
 * model without one has the bytes of rcf_model_encode.
 */
static void
test_grader_and_model(void)
{
	RcfParams	fp;
	RcfGraderParams gp;
	RcfForest  *f1,
			   *f2;
	RcfGrader  *g1,
			   *g2;
	RcfTransform *tnone,
			   *t;
	uint64_t	s = 11;
	bool		same = true,
				finite = true;
	int			fired = 0;

	rcf_params_default(&fp, 2);
	fp.number_of_trees = 30;
	fp.sample_size = 64;
	fp.shingle_size = 2;
	fp.seed = 5;
	rcf_grader_params_default(&gp);
	f1 = rcf_create(&fp, NULL);
	f2 = rcf_create(&fp, NULL);
	g1 = rcf_grader_create(&gp, &fp, NULL);
	g2 = rcf_grader_create(&gp, &fp, NULL);
	tnone = make(RCF_TRANSFORM_NONE, 2, 0, NULL);
	for (int i = 0; i < 400; i++)
	{
		double		x[2] = {noise(&s), 1000 * noise(&s)};
		RcfGrade	a,
					b;
		double		ea[2],
					eb[2];

		rcf_grader_process(g1, f1, x, true, &a, ea);
		rcf_grader_process_tf(g2, f2, tnone, x, true, &b, eb);
		if (memcmp(&a, &b, sizeof(a)) != 0 ||
			(a.has_expected && memcmp(ea, eb, sizeof(ea)) != 0))
			same = false;
	}
	UNIT_OK(same, "transform none grades bit for bit as no transform");
	{
		size_t		n1 = rcf_model_encoded_size(f1, g1);
		size_t		n2 = rcf_model_encoded_size_tf(f2, g2, tnone);
		uint8_t    *b1 = malloc(n1),
				   *b2 = malloc(n2);

		UNIT_OK(n1 == n2 && rcf_model_encode(f1, g1, b1, n1) == n1 &&
				rcf_model_encode_tf(f2, g2, tnone, b2, n2) == n2 &&
				memcmp(b1, b2, n1) == 0,
				"a model with transform none has the bytes of one without");
		free(b1);
		free(b2);
	}
	rcf_free(f1);
	rcf_free(f2);
	rcf_grader_free(g1);
	rcf_grader_free(g2);

	/* Normalize, with a spike in the small feature; encode half way. */
	f1 = rcf_create(&fp, NULL);
	g1 = rcf_grader_create(&gp, &fp, NULL);
	t = make(RCF_TRANSFORM_NORMALIZE, 2, 1.0 / 64, NULL);
	for (int i = 0; i < 300; i++)
	{
		double		x[2] = {noise(&s), 1e6 + 1000 * noise(&s)};
		RcfGrade	a;

		rcf_grader_process_tf(g1, f1, t, x, true, &a, NULL);
	}
	{
		size_t		n = rcf_model_encoded_size_tf(f1, g1, t);
		uint8_t    *b = malloc(n);
		RcfDecodeStatus st;
		const char *detail;
		RcfTransform *u = NULL;

		UNIT_OK(rcf_model_encode_tf(f1, g1, t, b, n) == n, "a model with a transform encodes");
		f2 = rcf_model_decode_tf(b, n, NULL, &g2, &u, &st, &detail);
		UNIT_OK(f2 != NULL && g2 != NULL && u != NULL,
				"and decodes with its grader and transform (%s)", f2 ? "ok" : detail);
		{
			RcfGrader  *g3 = NULL;
			RcfForest  *f3 = rcf_model_decode(b, n, NULL, &g3, &st, &detail);

			UNIT_OK(f3 != NULL, "rcf_model_decode reads it too (the transform dropped)");
			rcf_free(f3);
			rcf_grader_free(g3);
		}
		/* Truncated in the transform section. */
		{
			RcfGrader  *g4 = NULL;
			RcfTransform *u4 = NULL;
			RcfForest  *f4 = rcf_model_decode_tf(b, n - 8, NULL, &g4, &u4, &st, &detail);

			UNIT_OK(f4 == NULL && st != RCF_DECODE_OK, "a truncated model is refused");
			rcf_free(f4);
			rcf_grader_free(g4);
			rcf_transform_free(u4);
		}
		free(b);
		rcf_free(f2);
		rcf_grader_free(g2);
		rcf_transform_free(u);
	}
	/* The decoded pair continues as the original. */
	f2 = NULL;
	{
		size_t		n = rcf_model_encoded_size_tf(f1, g1, t);
		uint8_t    *b = malloc(n);
		RcfDecodeStatus st;
		const char *detail;
		RcfTransform *u = NULL;

		rcf_model_encode_tf(f1, g1, t, b, n);
		f2 = rcf_model_decode_tf(b, n, NULL, &g2, &u, &st, &detail);
		for (int i = 0; i < 200; i++)
		{
			double		x[2] = {noise(&s), 1e6 + 1000 * noise(&s)};
			RcfGrade	a,
						c;
			double		ea[2],
						ec[2];

			if (i == 150)
				x[0] = 3.0;		/* six deviations, in the small feature */
			rcf_grader_process_tf(g1, f1, t, x, true, &a, ea);
			rcf_grader_process_tf(g2, f2, u, x, true, &c, ec);
			if (memcmp(&a, &c, sizeof(a)) != 0 ||
				(a.has_expected && memcmp(ea, ec, sizeof(ea)) != 0))
				same = false;
			if (!isfinite(a.score) || !isfinite(a.grade))
				finite = false;
			if (a.is_anomaly && i >= 150 && i < 153)
			{
				fired++;
				/* Expected values in the caller's units: near 0 and 1e6. */
				if (!(fabs(ea[0]) < 1.0 && fabs(ea[1] - 1e6) < 1000))
					finite = false;
			}
		}
		UNIT_OK(same, "the decoded model continues bit for bit");
		UNIT_OK(finite, "scores are finite and expected values in the caller's units");
		UNIT_OK(fired > 0, "normalize finds a spike in the small feature beside one in units of 1e6");
		free(b);
		rcf_free(f2);
		rcf_grader_free(g2);
		rcf_transform_free(u);
	}
	rcf_free(f1);
	rcf_grader_free(g1);
	rcf_transform_free(t);
	rcf_transform_free(tnone);
}

/* Imputation in the caller's units. */
static void
test_impute(void)
{
	RcfParams	fp;
	RcfForest  *f;
	RcfTransform *t;
	uint64_t	s = 19;
	double		x[2],
				y[2],
				e[2];
	bool		missing[2] = {false, true};

	rcf_params_default(&fp, 2);
	fp.number_of_trees = 30;
	fp.sample_size = 64;
	fp.seed = 2;
	f = rcf_create(&fp, NULL);
	t = make(RCF_TRANSFORM_NORMALIZE, 2, 1.0 / 64, NULL);
	UNIT_OK(rcf_transform_impute(t, f, x, missing, e) == -1,
			"nothing to impute from before anything is learned");
	for (int i = 0; i < 300; i++)
	{
		double		a = noise(&s);

		x[0] = 100 * a;
		x[1] = 5000 + 1000 * a;	/* follows x[0] */
		rcf_transform_apply(t, x, y);
		rcf_update(f, y);
		rcf_transform_learn(t, x);
	}
	x[0] = 40;
	x[1] = -1;
	UNIT_OK(rcf_transform_impute(t, f, x, missing, e) == 0 && e[0] == 40 &&
			fabs(e[1] - 5400) < 150,
			"a missing value is imputed in the caller's units (%g, want near 5400)", e[1]);
	UNIT_OK(rcf_transform_last_input(t, y) == 0 && y[0] != 40,
			"the last input is the last learned");
	rcf_free(f);
	rcf_transform_free(t);
}

int
main(void)
{
	test_names_and_params();
	test_methods();
	test_edges();
	test_encoding();
	test_grader_and_model();
	test_impute();
	return unit_done();
}
