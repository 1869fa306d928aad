/*
 * test_hotspots.c
 *	  The HOTSPOTS engine: parameter ranges, regions found on hand-made and
 *	  generated data, the sliding window, and the grid against a brute-force
 *	  search of every pair.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "counting_alloc.h"
#include "unit.h"
#include "hotspots/hotspots.h"

static CountingAlloc counter;
static const HotspotsAllocator heap = {counting_alloc, counting_free, &counter};

/* xorshift64: uniform in [0, 1). */
static double
uniform(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return (double) (*s >> 11) / 9007199254740992.0;
}

/* Near a standard normal: twelve uniforms less six. */
static double
gauss(uint64_t *s)
{
	double		x = 0.0;

	for (int i = 0; i < 12; i++)
		x += uniform(s);
	return x - 6.0;
}

static HotspotsDetector *
make(int dims, int window, double radius, int min_points)
{
	HotspotsParams p = {dims, window, radius, min_points};

	return hotspots_create(&p, &heap);
}

/*
 * Adds count points of one dimension to d, from 0, step apart; returns the
 * number of hotspots after the last.
 */
static int
add_line(HotspotsDetector *d, double step, int count)
{
	int			n = 0;

	for (int i = 0; i < count; i++)
	{
		double		x = i * step;

		n = hotspots_add(d, &x);
	}
	return n;
}

/* Parameter ranges: each case valid or refused. */
static void
test_params(void)
{
	const struct
	{
		HotspotsParams p;		/* dims, window, radius, minimum */
		bool		valid;
		const char *what;
	}			cases[] = {
		{{2, 100, 0.5, 2}, true, "smallest window, two points"},
		{{2, 1000, 0.5, 1000}, true, "largest window, minimum = window"},
		{{2, 1000, 0.5, 1001}, false, "minimum above the window refused"},
		{{2, 1000, 0.5, 1}, false, "minimum of one refused"},
		{{2, 99, 0.5, 20}, false, "window of 99 refused"},
		{{2, 1001, 0.5, 20}, false, "window of 1001 refused"},
		{{2, 100, 0.0, 20}, false, "radius zero refused"},
		{{2, 100, -1.0, 20}, false, "negative radius refused"},
		{{2, 100, NAN, 20}, false, "NaN radius refused"},
		{{2, 100, INFINITY, 20}, false, "infinite radius refused"},
		{{0, 100, 1.0, 20}, false, "no dimensions refused"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		UNIT_OK((hotspots_params_check(&cases[i].p) == NULL) == cases[i].valid,
				"%s", cases[i].what);
	UNIT_OK(make(0, 100, 1.0, 2) == NULL, "create refuses invalid parameters");
}

/* Points on a line: groups by chains of neighbours, densities by hand. */
static void
test_line(void)
{
	HotspotsDetector *d = make(1, 100, 1.0, 3);
	/* {0, .5, 1}: 3 points over 1; {10, 10.9}: too few; {20 .. 21.5}: 4 over 1.5 */
	double		xs[] = {20.0, 0.0, 10.0, 0.5, 20.5, 10.9, 1.0, 21.0, 21.5};
	int			n = 0;
	const HotspotsRegion *r;

	for (int i = 0; i < 9; i++)
		n = hotspots_add(d, &xs[i]);
	UNIT_EQ_INT(n, 2, "two hotspots on the line");
	r = hotspots_region(d, 0);
	UNIT_EQ_INT(r->count, 3, "densest first: three points");
	UNIT_NEAR(r->density, 3.0, 1e-12, "density 3 / 1");
	UNIT_NEAR(r->min[0], 0.0, 0, "minimum 0");
	UNIT_NEAR(r->max[0], 1.0, 0, "maximum 1");
	r = hotspots_region(d, 1);
	UNIT_EQ_INT(r->count, 4, "then four points");
	UNIT_NEAR(r->density, 4.0 / 1.5, 1e-12, "density 4 / 1.5");
	UNIT_NEAR(r->min[0], 20.0, 0, "minimum 20");
	UNIT_NEAR(r->max[0], 21.5, 0, "maximum 21.5");
	UNIT_OK(hotspots_region(d, 2) == NULL, "no third hotspot");
	UNIT_EQ_INT(hotspots_window_count(d), 9, "nine points in the window");
	hotspots_free(d);

	/* spacing just over the radius: no chain */
	d = make(1, 100, 1.0, 2);
	n = add_line(d, 1.000001, 50);
	UNIT_EQ_INT(n, 0, "points 1.000001 apart never join at radius 1");
	hotspots_free(d);

	/* spacing at the radius: one chain of all */
	d = make(1, 100, 1.0, 2);
	n = add_line(d, 0.75, 50);
	UNIT_EQ_INT(n, 1, "points 0.75 apart form one chain");
	UNIT_EQ_INT(hotspots_region(d, 0)->count, 50, "of all 50 points");
	hotspots_free(d);
}

/* Distance is Euclidean: within the radius on each axis is not enough. */
static void
test_euclidean(void)
{
	HotspotsDetector *d = make(2, 100, 1.0, 2);
	double		a[] = {0.0, 0.0};
	double		b[] = {0.8, 0.8};	/* 1.13 away */
	double		c[] = {0.6, 0.7};	/* 0.92 from a */
	double		same[] = {5.0, 5.0};
	int			n;

	hotspots_add(d, a);
	n = hotspots_add(d, b);
	UNIT_EQ_INT(n, 0, "diagonal 1.13 apart: not neighbours at radius 1");
	n = hotspots_add(d, c);
	UNIT_EQ_INT(n, 1, "a third point between them joins all three");
	UNIT_EQ_INT(hotspots_region(d, 0)->count, 3, "three points");
	UNIT_NEAR(hotspots_region(d, 0)->density, 3.0 / (1.0 * 1.0), 1e-12,
			  "sides narrower than the radius count as the radius");
	hotspots_free(d);

	d = make(2, 100, 0.5, 2);
	for (int i = 0; i < 10; i++)
		n = hotspots_add(d, same);
	UNIT_EQ_INT(n, 1, "ten identical points: one hotspot");
	UNIT_NEAR(hotspots_region(d, 0)->density, 10.0 / 0.25, 1e-12,
			  "identical points: count over radius squared");
	hotspots_free(d);
}

/* Old points leave the window; their hotspot goes with them. */
static void
test_sliding(void)
{
	HotspotsDetector *d = make(1, 100, 0.1, 10);
	int			n = add_line(d, 0.001, 100);
	int			had = 0;

	UNIT_EQ_INT(n, 1, "a full window of close points is one hotspot");
	UNIT_EQ_INT(hotspots_region(d, 0)->count, 100, "of 100 points");
	for (int i = 0; i < 100; i++)
	{
		double		x = 1000.0 + i;

		n = hotspots_add(d, &x);
		if (i == 89)
			had = n == 1 && hotspots_region(d, 0)->count == 10;
		if (i == 90)
			had = had && n == 0;
	}
	UNIT_OK(had, "10 close points left are a hotspot, 9 are not");
	UNIT_EQ_INT(n, 0, "after 100 far points, nothing is left of it");
	UNIT_EQ_INT(hotspots_window_count(d), 100, "the window stays at 100 points");
	hotspots_free(d);
}

/* Two dense clusters in uniform noise (KDA's example, in miniature). */
static void
test_clusters(void)
{
	HotspotsDetector *d = make(2, 1000, 0.2, 17);
	uint64_t	s = 42;
	int			n = 0;
	bool		found_a = false,
				found_b = false;

	for (int i = 0; i < 3000; i++)
	{
		double		p[2];
		double		u = uniform(&s);

		if (u < 0.3)
		{
			p[0] = 2.0 + 0.05 * gauss(&s);
			p[1] = 2.0 + 0.05 * gauss(&s);
		}
		else if (u < 0.6)
		{
			p[0] = 7.0 + 0.05 * gauss(&s);
			p[1] = 7.0 + 0.05 * gauss(&s);
		}
		else
		{
			p[0] = 10.0 * uniform(&s);
			p[1] = 10.0 * uniform(&s);
		}
		n = hotspots_add(d, p);
	}
	UNIT_EQ_INT(n, 2, "two hotspots among noise");
	for (int i = 0; i < n; i++)
	{
		const HotspotsRegion *r = hotspots_region(d, i);
		double		cx = (r->min[0] + r->max[0]) / 2;

		if (fabs(cx - 2.0) < 0.2 && r->min[1] < 2.0 && r->max[1] > 2.0)
			found_a = true;
		if (fabs(cx - 7.0) < 0.2 && r->min[1] < 7.0 && r->max[1] > 7.0)
			found_b = true;
		UNIT_OK(r->count >= 250 && r->count <= 400, "hotspot %d holds %d points",
				i, r->count);
		UNIT_OK(r->density > 500, "hotspot %d density %.1f", i, r->density);
	}
	UNIT_OK(found_a, "a hotspot around (2, 2)");
	UNIT_OK(found_b, "a hotspot around (7, 7)");
	hotspots_free(d);
}

/* Region sizes found by comparing every pair, sorted descending. */
static int
brute_force(const double *pts, int n, int dims, double r, int min_points,
			int *sizes)
{
	int			label[1000];
	int			stack[1000];
	int			nreg = 0;

	for (int i = 0; i < n; i++)
		label[i] = -1;
	for (int i = 0; i < n; i++)
	{
		int			top = 0,
					count = 0;

		if (label[i] >= 0)
			continue;
		label[i] = i;
		stack[top++] = i;
		while (top > 0)
		{
			int			a = stack[--top];

			count++;
			for (int b = 0; b < n; b++)
			{
				double		sum = 0;

				if (label[b] >= 0)
					continue;
				for (int k = 0; k < dims; k++)
					sum += (pts[a * dims + k] - pts[b * dims + k]) *
						(pts[a * dims + k] - pts[b * dims + k]);
				if (sum <= r * r)
				{
					label[b] = i;
					stack[top++] = b;
				}
			}
		}
		if (count >= min_points)
			sizes[nreg++] = count;
	}
	for (int i = 0; i < nreg; i++)
		for (int j = i + 1; j < nreg; j++)
			if (sizes[j] > sizes[i])
			{
				int			t = sizes[i];

				sizes[i] = sizes[j];
				sizes[j] = t;
			}
	return nreg;
}

static int
int_desc(const void *a, const void *b)
{
	return *(const int *) b - *(const int *) a;
}

/* The grid finds what comparing every pair finds. */
static void
test_against_brute_force(void)
{
	int			dims_list[] = {1, 2, 3, 5};

	for (int di = 0; di < 4; di++)
	{
		int			dims = dims_list[di];
		int			window = 200;
		double		radius = dims == 1 ? 0.01 : 0.15 * dims;
		HotspotsDetector *d = make(dims, window, radius, 3);
		static double all[600 * 5];
		uint64_t	s = 7 + dims;
		int			mismatches = 0;

		for (int i = 0; i < 600; i++)
		{
			for (int k = 0; k < dims; k++)
				all[i * dims + k] = (i % 3 == 0 ? 0.3 : 1.0) * uniform(&s) +
					(k == 0 ? 0.0 : -0.5);
		}
		for (int i = 0; i < 600; i++)
		{
			int			n = hotspots_add(d, all + i * dims);

			if (i % 37 == 0 || i == 599)
			{
				int			lo = i + 1 > window ? i + 1 - window : 0;
				int			want[1000],
							got[1000];
				int			m = brute_force(all + lo * dims, i + 1 - lo, dims,
											radius, 3, want);

				for (int j = 0; j < n; j++)
					got[j] = hotspots_region(d, j)->count;
				qsort(got, n, sizeof(int), int_desc);
				if (m != n || memcmp(want, got, sizeof(int) * n) != 0)
					mismatches++;
			}
		}
		UNIT_EQ_INT(mismatches, 0, "%d dimensions: same regions as every pair compared",
					dims);
		hotspots_free(d);
	}
}

/* Huge coordinates stay correct: cells are clamped, distances compared. */
static void
test_extremes(void)
{
	HotspotsDetector *d = make(2, 100, 1.0, 2);
	double		a[] = {1e300, -1e300};
	double		b[] = {1e300, -1e300};
	double		c[] = {-1e300, 1e300};
	int			n;

	hotspots_add(d, a);
	hotspots_add(d, c);
	n = hotspots_add(d, b);
	UNIT_EQ_INT(n, 1, "two equal huge points are one hotspot, the far one is not");
	UNIT_EQ_INT(hotspots_region(d, 0)->count, 2, "of two points");
	hotspots_free(d);

	/* many dimensions: the density stays a finite number */
	{
		HotspotsParams p = {1024, 100, 1e-3, 2};
		HotspotsDetector *big = hotspots_create(&p, &heap);
		double	   *pt = calloc(1024, sizeof(double));

		hotspots_add(big, pt);
		n = hotspots_add(big, pt);
		UNIT_EQ_INT(n, 1, "1024 dimensions: one hotspot");
		UNIT_OK(isfinite(hotspots_region(big, 0)->density),
				"its density (2 / 1e-3^1024) is capped at a finite double");
		free(pt);
		hotspots_free(big);
	}
}

int
main(void)
{
	test_params();
	test_line();
	test_euclidean();
	test_sliding();
	test_clusters();
	test_against_brute_force();
	test_extremes();
	return unit_done();
}
