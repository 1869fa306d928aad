/*
 * test_grade.c
 *	  The grader on generated streams: the single-score test and the CUSUM
 *	  of standardized scores, and how often stationary noise fires.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "noise.h"
#include "unit.h"
#include "rcf/rcf.h"
#include "rcf/grade.h"

typedef struct Run
{
	int			fired_before;	/* firings before the change */
	int			first_after;	/* points after the change to the first
								 * firing; -1: none */
	int			sustained;		/* firings by the CUSUM */
} Run;

/*
 * Feeds n points of Gaussian noise whose level moves by shift deviations
 * at point change: no single value of the new level stands out, but the
 * scores stay moderately high for a while.  Shingle 4; a strict z_factor
 * (6), so that single scores rarely fire; CUSUM threshold h (0: off).
 */
static Run
run_stream(int n, int change, double shift, double h, uint64_t seed)
{
	RcfParams	p;
	RcfGraderParams gp;
	RcfForest  *f;
	RcfGrader  *g;
	uint64_t	s = seed;
	Run			r = {0, -1, 0};

	rcf_params_default(&p, 1);
	p.number_of_trees = 50;
	p.shingle_size = 4;
	p.seed = seed;
	rcf_grader_params_default(&gp);
	gp.z_factor = 6.0;
	gp.cusum_threshold = h;
	f = rcf_create(&p, NULL);
	g = rcf_grader_create(&gp, &p, NULL);
	for (int i = 0; i < n; i++)
	{
		RcfGrade	grade;
		double		x = (i >= change ? shift : 0.0) + gauss(&s);

		rcf_grader_process(g, f, &x, true, &grade, NULL);
		if (!grade.is_anomaly)
			continue;
		if (i < change)
			r.fired_before++;
		else if (r.first_after < 0)
			r.first_after = i - change;
		r.sustained += grade.sustained;
	}
	rcf_grader_free(g);
	rcf_free(f);
	return r;
}

/*
 * A level shift of one deviation raises the scores moderately for many
 * points: with the CUSUM, it is caught within 300 points for every seed;
 * without, for at most 3 of 5 (measured: 2).
 */
static void
test_cusum_catches_sustained_change(void)
{
	int			caught_on = 0,
				caught_off = 0,
				sustained = 0;

	for (uint64_t seed = 1; seed <= 5; seed++)
	{
		Run			off = run_stream(4000, 3000, 1.0, 0.0, seed);
		Run			on = run_stream(4000, 3000, 1.0, 12.0, seed);

		UNIT_OK(off.sustained == 0, "seed %d: no CUSUM firing with the CUSUM off",
				(int) seed);
		caught_on += on.first_after >= 0 && on.first_after < 300;
		caught_off += off.first_after >= 0 && off.first_after < 300;
		sustained += on.sustained > 0;
		unit_diag("seed %d: first firing after the change %d (CUSUM off: %d);"
				  " before it %d (off: %d)", (int) seed, on.first_after,
				  off.first_after, on.fired_before, off.fired_before);
	}
	UNIT_OK(caught_on == 5, "with the CUSUM, the shift is caught within 300 points for %d of 5 seeds",
			caught_on);
	UNIT_OK(caught_off <= 3, "without, for %d of 5 seeds", caught_off);
	UNIT_OK(sustained >= 4, "the CUSUM fired for %d of 5 seeds", sustained);
}

/*
 * Stationary noise fires rarely with the defaults: under 1% of points
 * (the documented rate), CUSUM included.
 */
static void
test_stationary_rate(void)
{
	int			n = 20000;
	int			fired = 0,
				sustained = 0,
				bad = 0;
	RcfParams	p;
	RcfGraderParams gp;
	RcfForest  *f;
	RcfGrader  *g;
	uint64_t	s = 77;

	rcf_params_default(&p, 1);
	p.number_of_trees = 50;
	rcf_grader_params_default(&gp);
	f = rcf_create(&p, NULL);
	g = rcf_grader_create(&gp, &p, NULL);
	for (int i = 0; i < n; i++)
	{
		RcfGrade	grade;
		double		x = gauss(&s);

		rcf_grader_process(g, f, &x, true, &grade, NULL);
		fired += grade.is_anomaly;
		sustained += grade.sustained && grade.is_anomaly;
		bad += !(grade.grade >= 0.0 && grade.grade <= 1.0 &&
				 (grade.grade > 0.0) == grade.is_anomaly);
	}
	UNIT_OK(bad == 0, "grades lie in [0, 1], above 0 exactly when firing (%d exceptions)", bad);
	UNIT_OK(fired <= n / 100, "stationary noise: %d firings in %d points (%d by the CUSUM)",
			fired, n, sustained);
	rcf_grader_free(g);
	rcf_free(f);
}

/*
 * New parameters keep the score statistics: the threshold of the same point
 * moves linearly with z_factor; bad parameters are refused and change
 * nothing.
 */
static void
test_set_params(void)
{
	RcfParams	p;
	RcfGraderParams gp;
	RcfForest  *f;
	RcfGrader  *g;
	RcfGrade	r3,
				r4,
				r5,
				again;
	uint64_t	s = 5;
	double		x = 0.0;

	rcf_params_default(&p, 1);
	p.number_of_trees = 30;
	rcf_grader_params_default(&gp);
	f = rcf_create(&p, NULL);
	g = rcf_grader_create(&gp, &p, NULL);
	for (int i = 0; i < 3000; i++)
	{
		RcfGrade	grade;

		x = gauss(&s);
		rcf_grader_process(g, f, &x, true, &grade, NULL);
	}
	rcf_grader_assess(g, f, &x, &r3, NULL);
	gp.z_factor = 4.0;
	UNIT_OK(rcf_grader_set_params(g, &gp) == NULL, "z_factor 4 accepted");
	rcf_grader_assess(g, f, &x, &r4, NULL);
	gp.z_factor = 5.0;
	UNIT_OK(rcf_grader_set_params(g, &gp) == NULL, "z_factor 5 accepted");
	rcf_grader_assess(g, f, &x, &r5, NULL);
	UNIT_OK(r4.threshold > r3.threshold &&
			fabs((r5.threshold - r4.threshold) - (r4.threshold - r3.threshold)) < 1e-9,
			"the threshold moves linearly with z_factor (%.6f, %.6f, %.6f)",
			r3.threshold, r4.threshold, r5.threshold);
	gp.z_factor = -1.0;
	UNIT_OK(rcf_grader_set_params(g, &gp) != NULL, "a negative z_factor is refused");
	rcf_grader_assess(g, f, &x, &again, NULL);
	UNIT_OK(again.threshold == r5.threshold, "and changes nothing");
	UNIT_OK(rcf_grader_params(g)->z_factor == 5.0, "the grader keeps z_factor 5");
	rcf_grader_free(g);
	rcf_free(f);
}

/*
 * Feeds noise with one spike of +8 deviations at point `at` (shingle 8,
 * z_factor 4, the default forest, warm-up `warmup`); true if the spike, or
 * one of the next 4 points (it stays in the shingle), fires.
 */
static bool
spike_caught(int at, int warmup, uint64_t seed)
{
	RcfParams	p;
	RcfGraderParams gp;
	RcfForest  *f;
	RcfGrader  *g;
	uint64_t	s = seed;
	bool		caught = false;

	rcf_params_default(&p, 1);
	p.shingle_size = 8;
	p.seed = seed;
	rcf_grader_params_default(&gp);
	gp.z_factor = 4.0;
	if (warmup >= 0)
		gp.warmup = warmup;
	f = rcf_create(&p, NULL);
	g = rcf_grader_create(&gp, &p, NULL);
	for (int i = 0; i < at + 5; i++)
	{
		RcfGrade	grade;
		double		x = 100.0 + gauss(&s) + (i == at ? 8.0 : 0.0);

		rcf_grader_process(g, f, &x, true, &grade, NULL);
		if (i >= at && grade.is_anomaly)
			caught = true;
	}
	rcf_grader_free(g);
	rcf_free(f);
	return caught;
}

/*
 * The first spike soon after the forest's warm-up (sample_size / 4 = 64
 * points) fires with the default warm-up of the grader: 20 points after
 * it, for most seeds.  With the warm-up of 32 that the grader had before,
 * it cannot: its scores are still being learned.
 */
static void
test_first_spike_after_warmup(void)
{
	int			caught = 0,
				caught_old = 0;

	for (uint64_t seed = 1; seed <= 10; seed++)
	{
		caught += spike_caught(64 + 20, -1, seed);
		caught_old += spike_caught(64 + 20, 32, seed);
	}
	UNIT_OK(caught >= 7, "a spike 20 points after the forest's warm-up fires for %d of 10 seeds",
			caught);
	UNIT_OK(caught_old == 0, "with a warm-up of 32 scores, for %d of 10", caught_old);
}

int
main(void)
{
	test_cusum_catches_sustained_change();
	test_stationary_rate();
	test_set_params();
	test_first_spike_after_warmup();
	return unit_done();
}
