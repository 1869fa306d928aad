/*
 * hotspots.c
 *	  KDA's HOTSPOTS over a sliding window of points (see hotspots.h).
 *
 * Each call to hotspots_add() finds the window's regions again from
 * scratch: the window changes by one point in, one point out, and either
 * can join or split regions anywhere, so incremental upkeep would buy
 * little for windows of at most 1,000 points.  The work per call is linear
 * in the window plus the number of neighbour pairs looked at:
 *
 *	1. points go into a hash table of grid cells (side scan_radius, on the
 *	   first min(dims, 3) coordinates): two neighbours are at most one cell
 *	   apart on each of those coordinates, so a point's neighbours are among
 *	   the points of the 3^k cells around its own;
 *	2. a union-find joins neighbours, first within each cell, then across
 *	   cells, skipping pairs already in one region; a neighbouring cell whose
 *	   points are all in the point's region is skipped whole, which inside a
 *	   dense region is nearly every cell;
 *	3. regions with enough points become hotspots, with their bounding box
 *	   and density.
 */
#include "hotspots/hotspots.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Coordinates of the grid used for hashing (the rest are only compared). */
#define GRID_DIMS 3

/* Cell coordinates are clamped to this, so a huge value stays an integer. */
#define CELL_LIMIT ((double) (INT64_C(1) << 62))

/* A hotspot while being built, with what sorting needs. */
typedef struct Region
{
	HotspotsRegion pub;
	int			dims;
} Region;

/* One grid cell of the hash table: its coordinates and first point. */
typedef struct Cell
{
	int64_t		key[GRID_DIMS];
	int			first;			/* -1: empty slot of the table */
	bool		unified;		/* all its points in one region */
} Cell;

struct HotspotsDetector
{
	HotspotsParams params;
	HotspotsAllocator allocator;
	int			grid_dims;		/* min(dims, GRID_DIMS) */
	int			nforward;		/* (3^grid_dims - 1) / 2 */
	int			forward[13][GRID_DIMS];	/* offsets to the cells after one */
	int			count;			/* points in the window */
	int			next_slot;		/* where the next point goes */
	double	   *points;			/* window_size * dims, ring buffer */
	int64_t    *cell_of;		/* window_size * GRID_DIMS */
	int		   *chain;			/* next point of the same cell, or -1 */
	int		   *parent;			/* union-find */
	int		   *size;			/* points under each root */
	int		   *region_of;		/* root -> index in regions, or -1 */
	Cell	   *table;
	int		   *occupied;		/* table slots in use, ncells of them */
	int			ncells;
	int			table_mask;		/* table size - 1, a power of two */
	Region	   *regions;
	double	   *bounds;			/* max_regions * 2 * dims */
	int			max_regions;
	int			nregions;
};

const char *
hotspots_params_check(const HotspotsParams *params)
{
	if (params->dims < 1 || params->dims > HOTSPOTS_MAX_DIMENSIONS)
		return "a point must have between 1 and 1024 values";
	if (params->window_size < HOTSPOTS_MIN_WINDOW ||
		params->window_size > HOTSPOTS_MAX_WINDOW)
		return "window_size (windowSize) must be between 100 and 1000";
	if (!(params->scan_radius > 0.0) || !isfinite(params->scan_radius))
		return "scan_radius (scanRadius) must be a finite number greater than zero";
	if (params->min_points < HOTSPOTS_MIN_POINTS ||
		params->min_points > params->window_size)
		return "minimum_number_of_points_in_a_hotspot (minimumNumberOfPointsInAHotspot) must be between 2 and window_size";
	return NULL;
}

/* Smallest power of two holding twice the window (load factor <= 1/2). */
static int
table_size(int window_size)
{
	int			n = 1;

	while (n < 2 * window_size)
		n <<= 1;
	return n;
}

/* The pieces of a detector, laid out in one allocation; returns its size. */
static size_t
layout(const HotspotsParams *p, size_t *offsets)
{
	int			max_regions = p->window_size / p->min_points;
	size_t		sizes[11];
	size_t		total = 0;
	int			w = p->window_size;

	sizes[0] = sizeof(HotspotsDetector);
	sizes[1] = sizeof(double) * (size_t) w * p->dims;
	sizes[2] = sizeof(int64_t) * (size_t) w * GRID_DIMS;
	sizes[3] = sizeof(int) * (size_t) w;
	sizes[4] = sizeof(int) * (size_t) w;
	sizes[5] = sizeof(int) * (size_t) w;
	sizes[6] = sizeof(int) * (size_t) w;
	sizes[7] = sizeof(Cell) * (size_t) table_size(w);
	sizes[8] = sizeof(Region) * (size_t) max_regions;
	sizes[9] = sizeof(double) * (size_t) max_regions * 2 * p->dims;
	sizes[10] = sizeof(int) * (size_t) w;
	for (int i = 0; i < 11; i++)
	{
		if (offsets)
			offsets[i] = total;
		/* keep every piece aligned for doubles and 64-bit integers */
		total += (sizes[i] + 15) & ~(size_t) 15;
	}
	return total;
}

size_t
hotspots_bytes(const HotspotsParams *params)
{
	return layout(params, NULL);
}

HotspotsDetector *
hotspots_create(const HotspotsParams *params, const HotspotsAllocator *allocator)
{
	size_t		offsets[11];
	size_t		total;
	int			combos;
	char	   *base;
	HotspotsDetector *d;

	if (hotspots_params_check(params) != NULL)
		return NULL;
	total = layout(params, offsets);
	base = rcf_allocator_new(allocator, total, offsetof(HotspotsDetector, allocator));
	if (base == NULL)
		return NULL;
	d = (HotspotsDetector *) base;
	d->params = *params;
	d->grid_dims = params->dims < GRID_DIMS ? params->dims : GRID_DIMS;
	/* the neighbouring offsets whose first non-zero step is +1 */
	combos = 1;
	for (int k = 0; k < d->grid_dims; k++)
		combos *= 3;
	d->nforward = 0;
	for (int o = 0; o < combos; o++)
	{
		int			step[GRID_DIMS] = {0, 0, 0};
		int			digits = o;
		int			first = 0;

		for (int k = 0; k < d->grid_dims; k++)
		{
			step[k] = digits % 3 - 1;
			digits /= 3;
			if (first == 0)
				first = step[k];
		}
		if (first > 0)
			memcpy(d->forward[d->nforward++], step, sizeof(step));
	}
	d->points = (double *) (base + offsets[1]);
	d->cell_of = (int64_t *) (base + offsets[2]);
	d->chain = (int *) (base + offsets[3]);
	d->parent = (int *) (base + offsets[4]);
	d->size = (int *) (base + offsets[5]);
	d->region_of = (int *) (base + offsets[6]);
	d->table = (Cell *) (base + offsets[7]);
	d->table_mask = table_size(params->window_size) - 1;
	d->regions = (Region *) (base + offsets[8]);
	d->bounds = (double *) (base + offsets[9]);
	d->occupied = (int *) (base + offsets[10]);
	d->max_regions = params->window_size / params->min_points;
	return d;
}

void
hotspots_free(HotspotsDetector *detector)
{
	if (detector != NULL)
		rcf_allocator_free(&detector->allocator, detector);
}

/* The grid cell of one coordinate: floor(v / r), clamped. */
static int64_t
cell_coordinate(double v, double r)
{
	double		c = floor(v / r);

	if (c > CELL_LIMIT)
		c = CELL_LIMIT;
	else if (c < -CELL_LIMIT)
		c = -CELL_LIMIT;
	return (int64_t) c;
}

/* Hash of a cell's coordinates (a 64-bit multiplicative mix). */
static uint64_t
cell_hash(const int64_t *key, int n)
{
	uint64_t	h = UINT64_C(0x9e3779b97f4a7c15);

	for (int i = 0; i < n; i++)
	{
		h ^= (uint64_t) key[i];
		h *= UINT64_C(0xbf58476d1ce4e5b9);
		h ^= h >> 31;
	}
	return h;
}

/*
 * The table slot of a cell: the one holding it, or (when insert is true)
 * the empty one it goes into; -1 when absent and not inserting.
 */
static int
cell_find(HotspotsDetector *d, const int64_t *key, bool insert)
{
	int			n = d->grid_dims;
	int			i = (int) (cell_hash(key, n) & (uint64_t) d->table_mask);

	for (;;)
	{
		Cell	   *c = &d->table[i];

		if (c->first < 0)
		{
			if (!insert)
				return -1;
			memcpy(c->key, key, sizeof(int64_t) * n);
			return i;
		}
		if (memcmp(c->key, key, sizeof(int64_t) * n) == 0)
			return i;
		i = (i + 1) & d->table_mask;
	}
}

/* Union-find root, halving the path on the way. */
static int
find_root(int *parent, int i)
{
	while (parent[i] != i)
	{
		parent[i] = parent[parent[i]];
		i = parent[i];
	}
	return i;
}

/* Joins two regions, the smaller under the larger. */
static void
join(HotspotsDetector *d, int a, int b)
{
	if (d->size[a] < d->size[b])
	{
		int			t = a;

		a = b;
		b = t;
	}
	d->parent[b] = a;
	d->size[a] += d->size[b];
}

/* True when points a and b are within scan_radius of each other. */
static bool
neighbours(const HotspotsDetector *d, int a, int b)
{
	const double *pa = d->points + (size_t) a * d->params.dims;
	const double *pb = d->points + (size_t) b * d->params.dims;
	double		r2 = d->params.scan_radius * d->params.scan_radius;
	double		sum = 0.0;

	for (int i = 0; i < d->params.dims; i++)
	{
		double		diff = pa[i] - pb[i];

		sum += diff * diff;
		if (sum > r2)
			return false;
	}
	return true;
}

/* Step 1: every point of the window into its cell's chain. */
static void
build_grid(HotspotsDetector *d)
{
	for (int i = 0; i <= d->table_mask; i++)
		d->table[i].first = -1;
	d->ncells = 0;
	for (int s = 0; s < d->count; s++)
	{
		int			c = cell_find(d, d->cell_of + (size_t) s * GRID_DIMS, true);

		if (d->table[c].first < 0)
			d->occupied[d->ncells++] = c;
		d->chain[s] = d->table[c].first;
		d->table[c].first = s;
		d->parent[s] = s;
		d->size[s] = 1;
	}
}

/*
 * Step 2a: joins neighbours within each cell, then marks the cells whose
 * points all ended up in one region (in a dense region, nearly all).
 */
static void
join_within_cells(HotspotsDetector *d)
{
	for (int ci = 0; ci < d->ncells; ci++)
	{
		Cell	   *c = &d->table[d->occupied[ci]];
		int			root;

		for (int s = c->first; s >= 0; s = d->chain[s])
		{
			int			rs = find_root(d->parent, s);

			for (int t = d->chain[s]; t >= 0; t = d->chain[t])
			{
				int			rt = find_root(d->parent, t);

				if (rs != rt && neighbours(d, s, t))
				{
					join(d, rs, rt);
					rs = find_root(d->parent, s);
				}
			}
		}
		root = find_root(d->parent, c->first);
		c->unified = true;
		for (int t = d->chain[c->first]; t >= 0 && c->unified; t = d->chain[t])
			c->unified = find_root(d->parent, t) == root;
	}
}

/*
 * Joins the regions of neighbours between two different cells.  When both
 * cells are unified, one neighbour pair joins all of both, and cells already
 * in one region need no comparison at all.
 */
static void
join_cells(HotspotsDetector *d, const Cell *a, const Cell *b)
{
	bool		both = a->unified && b->unified;

	if (both && find_root(d->parent, a->first) == find_root(d->parent, b->first))
		return;
	for (int s = a->first; s >= 0; s = d->chain[s])
	{
		int			rs = find_root(d->parent, s);

		for (int t = b->first; t >= 0; t = d->chain[t])
		{
			int			rt = find_root(d->parent, t);

			if (rs != rt && neighbours(d, s, t))
			{
				join(d, rs, rt);
				if (both)
					return;
				if (b->unified)
					break;		/* all of b is now in s's region */
				rs = find_root(d->parent, s);
			}
		}
	}
}

/*
 * Step 2b: joins neighbours in different cells, each pair of adjacent
 * cells once (the offsets whose first non-zero step is positive).
 */
static void
join_across_cells(HotspotsDetector *d)
{
	int64_t		key[GRID_DIMS];

	for (int ci = 0; ci < d->ncells; ci++)
	{
		const Cell *c = &d->table[d->occupied[ci]];

		for (int o = 0; o < d->nforward; o++)
		{
			int			cj;

			for (int k = 0; k < d->grid_dims; k++)
				key[k] = c->key[k] + d->forward[o][k];
			if ((cj = cell_find(d, key, false)) >= 0)
				join_cells(d, c, &d->table[cj]);
		}
	}
}

/* Orders hotspots: densest first, then more points, then lower corner. */
static int
region_order(const void *a, const void *b)
{
	const Region *ra = a;
	const Region *rb = b;

	if (ra->pub.density != rb->pub.density)
		return ra->pub.density > rb->pub.density ? -1 : 1;
	if (ra->pub.count != rb->pub.count)
		return ra->pub.count > rb->pub.count ? -1 : 1;
	for (int i = 0; i < ra->dims; i++)
		if (ra->pub.min[i] != rb->pub.min[i])
			return ra->pub.min[i] < rb->pub.min[i] ? -1 : 1;
	return 0;
}

/*
 * Density: points over the bounding box's volume, each side at least
 * scan_radius.  The plain quotient when the volume is a normal double (so
 * that 3 points over a side of 1 give exactly 3); otherwise, with many
 * dimensions, through logarithms, the result kept within a double.
 */
static double
region_density(int count, const double *min, const double *max, int dims,
			   double r)
{
	double		volume = 1.0;
	double		log_density;

	for (int i = 0; i < dims; i++)
	{
		double		side = max[i] - min[i];

		volume *= side > r ? side : r;
	}
	if (isfinite(volume) && volume >= DBL_MIN)
		return count / volume;

	log_density = log((double) count);
	for (int i = 0; i < dims; i++)
	{
		double		side = max[i] - min[i];

		log_density -= log(side > r ? side : r);
	}
	if (log_density >= log(DBL_MAX))
		return DBL_MAX;
	return exp(log_density);
}

/* Step 3: the regions with enough points, their boxes and densities. */
static void
collect_regions(HotspotsDetector *d)
{
	int			dims = d->params.dims;

	d->nregions = 0;
	for (int s = 0; s < d->count; s++)
	{
		d->region_of[s] = -1;
		if (d->parent[s] == s && d->size[s] >= d->params.min_points)
		{
			Region	   *r = &d->regions[d->nregions];
			double	   *lo = d->bounds + (size_t) d->nregions * 2 * dims;

			r->pub.count = d->size[s];
			r->pub.min = lo;
			r->pub.max = lo + dims;
			r->dims = dims;
			for (int i = 0; i < dims; i++)
			{
				lo[i] = INFINITY;
				lo[dims + i] = -INFINITY;
			}
			d->region_of[s] = d->nregions++;
		}
	}
	for (int s = 0; s < d->count; s++)
	{
		int			root = find_root(d->parent, s);
		int			ri = d->region_of[root];
		const double *p;
		double	   *lo;

		if (ri < 0)
			continue;
		p = d->points + (size_t) s * dims;
		lo = d->bounds + (size_t) ri * 2 * dims;
		for (int i = 0; i < dims; i++)
		{
			if (p[i] < lo[i])
				lo[i] = p[i];
			if (p[i] > lo[dims + i])
				lo[dims + i] = p[i];
		}
	}
	for (int i = 0; i < d->nregions; i++)
	{
		Region	   *r = &d->regions[i];

		r->pub.density = region_density(r->pub.count, r->pub.min, r->pub.max,
										dims, d->params.scan_radius);
	}
	qsort(d->regions, d->nregions, sizeof(Region), region_order);
}

int
hotspots_add(HotspotsDetector *d, const double *point)
{
	int			s = d->next_slot;
	int			dims = d->params.dims;
	int64_t    *cell = d->cell_of + (size_t) s * GRID_DIMS;

	memcpy(d->points + (size_t) s * dims, point, sizeof(double) * dims);
	memset(cell, 0, sizeof(int64_t) * GRID_DIMS);
	for (int k = 0; k < d->grid_dims; k++)
		cell[k] = cell_coordinate(point[k], d->params.scan_radius);
	d->next_slot = (s + 1) % d->params.window_size;
	if (d->count < d->params.window_size)
		d->count++;

	build_grid(d);
	join_within_cells(d);
	join_across_cells(d);
	collect_regions(d);
	return d->nregions;
}

const HotspotsRegion *
hotspots_region(const HotspotsDetector *d, int i)
{
	if (i < 0 || i >= d->nregions)
		return NULL;
	return &d->regions[i].pub;
}

int
hotspots_window_count(const HotspotsDetector *d)
{
	return d->count;
}
