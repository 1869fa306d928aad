/*
 * test_grade.c
 *	  The grader on generated streams: the single-score test and the CUSUM
 *	  of standardized scores, and how often stationary noise fires.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "forests.h"
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

/* A forest and a grader over it, fed together. */
typedef struct Graded
{
	RcfForest  *forest;
	RcfGrader  *grader;
} Graded;

/* The forest of p, and a grader of gp over it. */
static Graded
graded_create(const RcfParams *p, const RcfGraderParams *gp)
{
	Graded		t;

	t.forest = rcf_create(p, NULL);
	t.grader = rcf_grader_create(gp, p, NULL);
	return t;
}

/* Grades the one-value record x, and learns it. */
static RcfGrade
graded_feed(Graded *t, double x)
{
	RcfGrade	grade;

	rcf_grader_process(t->grader, t->forest, &x, true, &grade, NULL);
	return grade;
}

/* Frees the grader, then its forest. */
static void
graded_free(Graded *t)
{
	rcf_grader_free(t->grader);
	rcf_free(t->forest);
}

/*
 * Feeds n points of Gaussian noise whose level moves by shift deviations
 * at point change: no single value of the new level stands out, but the
 * scores stay moderately high for a while.  Shingle 4; a strict z_factor
 * (6), so that single scores rarely fire; CUSUM threshold h (0: off).
 */
static Run
run_stream(int n, int change, double shift, double h, uint64_t seed)
{
	RcfParams	p = forest_params(1, 4, 50, 256);
	RcfGraderParams gp;
	Graded		t;
	uint64_t	s = seed;
	Run			r = {0, -1, 0};

	p.seed = seed;
	rcf_grader_params_default(&gp);
	gp.z_factor = 6.0;
	gp.cusum_threshold = h;
	t = graded_create(&p, &gp);
	for (int i = 0; i < n; i++)
	{
		RcfGrade	grade = graded_feed(&t, (i >= change ? shift : 0.0) + gauss(&s));

		if (!grade.is_anomaly)
			continue;
		if (i < change)
			r.fired_before++;
		else if (r.first_after < 0)
			r.first_after = i - change;
		r.sustained += grade.sustained;
	}
	graded_free(&t);
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
	RcfParams	p = forest_params(1, 1, 50, 256);
	RcfGraderParams gp;
	Graded		t;
	uint64_t	s = 77;

	rcf_grader_params_default(&gp);
	t = graded_create(&p, &gp);
	for (int i = 0; i < n; i++)
	{
		RcfGrade	grade = graded_feed(&t, gauss(&s));

		fired += grade.is_anomaly;
		sustained += grade.sustained && grade.is_anomaly;
		bad += !(grade.grade >= 0.0 && grade.grade <= 1.0 &&
				 (grade.grade > 0.0) == grade.is_anomaly);
	}
	UNIT_OK(bad == 0, "grades lie in [0, 1], above 0 exactly when firing (%d exceptions)", bad);
	UNIT_OK(fired <= n / 100, "stationary noise: %d firings in %d points (%d by the CUSUM)",
			fired, n, sustained);
	graded_free(&t);
}

/*
 * New parameters keep the score statistics: the threshold of the same point
 * moves linearly with z_factor; bad parameters are refused and change
 * nothing.
 */
static void
test_set_params(void)
{
	RcfParams	p = forest_params(1, 1, 30, 256);
	RcfGraderParams gp;
	Graded		t;
	RcfGrader  *g;
	RcfGrade	r3,
				r4,
				r5,
				again;
	uint64_t	s = 5;
	double		x = 0.0;

	rcf_grader_params_default(&gp);
	t = graded_create(&p, &gp);
	g = t.grader;
	for (int i = 0; i < 3000; i++)
	{
		x = gauss(&s);
		graded_feed(&t, x);
	}
	rcf_grader_assess(g, t.forest, &x, &r3, NULL);
	gp.z_factor = 4.0;
	UNIT_OK(rcf_grader_set_params(g, &gp) == NULL, "z_factor 4 accepted");
	rcf_grader_assess(g, t.forest, &x, &r4, NULL);
	gp.z_factor = 5.0;
	UNIT_OK(rcf_grader_set_params(g, &gp) == NULL, "z_factor 5 accepted");
	rcf_grader_assess(g, t.forest, &x, &r5, NULL);
	UNIT_OK(r4.threshold > r3.threshold &&
			fabs((r5.threshold - r4.threshold) - (r4.threshold - r3.threshold)) < 1e-9,
			"the threshold moves linearly with z_factor (%.6f, %.6f, %.6f)",
			r3.threshold, r4.threshold, r5.threshold);
	gp.z_factor = -1.0;
	UNIT_OK(rcf_grader_set_params(g, &gp) != NULL, "a negative z_factor is refused");
	rcf_grader_assess(g, t.forest, &x, &again, NULL);
	UNIT_OK(again.threshold == r5.threshold, "and changes nothing");
	UNIT_OK(rcf_grader_params(g)->z_factor == 5.0, "the grader keeps z_factor 5");
	graded_free(&t);
}

/*
 * Feeds noise with one spike of +8 deviations at point `at` (shingle 8,
 * z_factor 4, the default forest, warm-up `warmup`); true if the spike, or
 * one of the next 4 points (it stays in the shingle), fires.
 */
static bool
spike_caught(int at, int warmup, uint64_t seed)
{
	RcfParams	p = forest_params(1, 8, 100, 256);
	RcfGraderParams gp;
	Graded		t;
	uint64_t	s = seed;
	bool		caught = false;

	p.seed = seed;
	rcf_grader_params_default(&gp);
	gp.z_factor = 4.0;
	if (warmup >= 0)
		gp.warmup = warmup;
	t = graded_create(&p, &gp);
	for (int i = 0; i < at + 5; i++)
	{
		RcfGrade	grade = graded_feed(&t, 100.0 + gauss(&s) + (i == at ? 8.0 : 0.0));

		if (i >= at && grade.is_anomaly)
			caught = true;
	}
	graded_free(&t);
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
