/*
 * hotspots.h
 *	  KDA's HOTSPOTS: dense regions among the last points of a stream.
 *
 * Plain C99 with no PostgreSQL dependency, so that it can be unit-tested on
 * its own.  A detector keeps the last window_size points; after each point
 * it finds the hotspots of that window:
 *
 *	- two points are neighbours when their Euclidean distance is at most
 *	  scan_radius (KDA: "analogous to the epsilon value in DBSCAN");
 *	- a region is a connected group of neighbours (each point reaches every
 *	  other through a chain of neighbours), and it is a hotspot when it holds
 *	  at least min_points points (KDA's minimumNumberOfPointsInAHotspot);
 *	- a hotspot's density is its number of points divided by its size (KDA:
 *	  "the number of records in the hotspot divided by the hotspot size"),
 *	  the size being the volume of its bounding box, where a side narrower
 *	  than scan_radius counts as scan_radius (so that points on a line or at
 *	  one place have a finite density rather than a division by zero).
 *
 * Everything is allocated once, at creation; nothing per point.  Finding
 * neighbours hashes points into a grid of scan_radius cells on the first
 * three coordinates, so a point is compared only with the points of the
 * 3^k cells around it (k = min(dims, 3)), never with the whole window.
 */
#ifndef HOTSPOTS_H
#define HOTSPOTS_H

#include <stdbool.h>
#include <stddef.h>

#include "rcf/rcf.h"

/* KDA's documented ranges. */
#define HOTSPOTS_MIN_WINDOW		100
#define HOTSPOTS_MAX_WINDOW		1000
#define HOTSPOTS_MIN_POINTS		2	/* up to window_size */
#define HOTSPOTS_MAX_DIMENSIONS 1024

typedef struct HotspotsParams
{
	int			dims;
	int			window_size;
	double		scan_radius;	/* finite, > 0 */
	int			min_points;		/* 2 .. window_size */
} HotspotsParams;

/*
 * Memory hooks: the forest's (alloc returns aligned memory or NULL), so that
 * one glue serves both engines.
 */
typedef RcfAllocator HotspotsAllocator;

/* One hotspot: its points, density and bounding box (dims values each). */
typedef struct HotspotsRegion
{
	int			count;
	double		density;
	const double *min;
	const double *max;
} HotspotsRegion;

typedef struct HotspotsDetector HotspotsDetector;

/*
 * Checks parameters; NULL when valid, otherwise a static message naming the
 * parameter (its KDA name in parentheses).
 */
extern const char *hotspots_params_check(const HotspotsParams *params);

/* Bytes a detector with these (valid) parameters allocates. */
extern size_t hotspots_bytes(const HotspotsParams *params);

/* Creates a detector; NULL on invalid parameters or out of memory. */
extern HotspotsDetector *hotspots_create(const HotspotsParams *params,
										 const HotspotsAllocator *allocator);
extern void hotspots_free(HotspotsDetector *detector);

/*
 * Adds a point (dims finite values), dropping the oldest when the window is
 * full, and finds the window's hotspots.  Returns how many there are; they
 * are read with hotspots_region(), densest first (ties: more points first,
 * then lower minimum values), until the next call.
 */
extern int	hotspots_add(HotspotsDetector *detector, const double *point);
extern const HotspotsRegion *hotspots_region(const HotspotsDetector *detector,
											 int i);

/* Points currently in the window. */
extern int	hotspots_window_count(const HotspotsDetector *detector);

#endif							/* HOTSPOTS_H */
