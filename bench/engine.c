/*
 * engine.c
 *	  Benchmark of the Random Cut Forest engine alone.
 *
 *	  bench/engine --dims D --shingle S --trees T --samples N --points P
 *				   [--seed X] [--time-decay L] [--box-cache-fraction F]
 *				   [--input FILE] [--grade] [--transform METHOD]
 *				   [--compare-transform METHOD] [--compare-box-cache F1,...]
 *
 * Feeds a warm-up of sample_size * 4 records, then P records of a noisy
 * seasonal series, each scored then learned (rcf_process).  Timing is taken
 * over batches of 1000 records; the median batch gives the steady-state
 * cost per record.  Prints one machine-readable line:
 *
 *	  us_per_point=<median> bytes_per_forest=<arena bytes> ... grade=0|1
 *	  cpu_us_per_point=<median>
 *
 * bytes_per_forest is rcf_bytes at the end: the arena and, with shingling,
 * the record store, which only grows, so it is the most over the run.
 *
 * cpu_us_per_point is the median over the same batches of the process's
 * CPU time, which time spent waiting for a core on a shared machine does
 * not inflate; compare builds by it there.
 *
 * With --grade every record goes through the grader instead, with its
 * default parameters (rcf_grader_process with learn: score, grade, the
 * expected value when the point fires, then learn), as detect() does; the
 * checksum is then the sum of the raw scores plus the sum of the grades.
 *
 * With --transform METHOD (none, weighted, subtract_ma, difference,
 * normalize, normalize_difference) every record is transformed first
 * (rcf.h's transforms, decay 1 / samples), as detect(transform => ...)
 * does; alone or with --grade.
 *
 * --compare-transform METHOD measures in one run what grading and a
 * transform cost: three forests (raw rcf_process; the grader; the grader
 * with the transform) learn the same records, timed batch by batch in
 * turn so that a busy machine slows all three alike.  It prints a line per
 * variant (variant=raw|grade|grade_transform ...) and then
 *
 *	  engine_transform method=M ratio_grade=<grade/raw>
 *	  ratio_grade_transform=<grade_transform/raw>
 *	  ratio_transform=<grade_transform/grade> target=1.3 pass=yes|no
 *
 * by CPU time per record; pass says whether grading and the transform
 * together cost at most 1.3 times the raw engine.
 *
 * --box-cache-fraction F sets the forest's bounding_box_cache_fraction
 * (default 1).  --compare-box-cache F1,F2,... measures the memory and time
 * of several fractions in one run: forests differing only in it learn the
 * same records, timed batch by batch in turn, and print one line each,
 *
 *	  engine_box_cache fraction=F bytes_per_forest=<most over the run>
 *	  cpu_us_per_point=<median> us_per_point=<median> ratio=<cpu / first's>
 *	  ... checksum=<equal for all: scores do not depend on the fraction>
 *
 * With --input FILE the records are read from FILE instead, one per line,
 * values separated by commas (the number of values of the first line is the
 * number of dimensions), all loaded before timing starts.  Every line is fed,
 * with no warm-up apart, so --points is the number of lines, and the line
 * also carries rows_per_s=, the rate over the whole file, and cpu_seconds=,
 * the process's CPU time over it, for comparison with the SQL window
 * function on the same rows.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <math.h>

#include "rcf/rcf.h"
#include "rcf/grade.h"
#include "bench_util.h"

#define BATCH 1000

/* The options, for bench_usage(). */
#define USAGE "--dims D --shingle S --trees T --samples N --points P [--seed X] [--time-decay L] [--box-cache-fraction F] [--input FILE] [--grade] [--transform METHOD] [--compare-transform METHOD] [--compare-box-cache F1,F2,...]"

/*
 * One record through the forest alone, or through the grader too; through
 * the transform first when there is one.
 */
static double
process(RcfForest *forest, RcfGrader *grader, RcfTransform *transform,
		const double *rec, double *expected)
{
	RcfGrade	g;

	if (grader == NULL)
	{
		double		x[RCF_MAX_DIMENSIONS];
		double		score;

		if (transform == NULL)
			return rcf_process(forest, rec);
		rcf_transform_apply(transform, rec, x);
		score = rcf_process(forest, x);
		rcf_transform_learn(transform, rec);
		return score;
	}
	rcf_grader_process_tf(grader, forest, transform, rec, true, &g, expected);
	return g.score + g.grade;
}

static int
cmp_double(const void *a, const void *b)
{
	double		x = *(const double *) a;
	double		y = *(const double *) b;

	return (x > y) - (x < y);
}

static void
make_record(double *rec, int dims, long i, uint64_t *s)
{
	for (int d = 0; d < dims; d++)
		rec[d] = 10.0 * sin(2 * M_PI * (i + 7 * d) / 288.0) +
			3.0 * sin(2 * M_PI * i / 2016.0) + noise(s) +
			((i % 9973) == 0 ? 25.0 : 0.0);
}

/* A transform of method name for these parameters; exits on a bad name. */
static RcfTransform *
make_transform(const char *name, const RcfParams *params)
{
	RcfTransformParams tp;
	int			m = rcf_transform_method_parse(name);
	RcfTransform *t;

	if (m < 0)
	{
		fprintf(stderr, "unknown transform \"%s\"\n", name);
		exit(2);
	}
	rcf_transform_params_default(&tp, params->dims, params->sample_size);
	tp.method = (RcfTransformMethod) m;
	t = rcf_transform_create(&tp, NULL, NULL);
	if (t == NULL)
	{
		fprintf(stderr, "could not create the transform\n");
		exit(1);
	}
	return t;
}

/*
 * --compare-transform: raw, grader, grader with transform over the same
 * records, batch by batch in turn.  Returns the exit status.
 */
static int
compare_transform(const RcfParams *params, const RcfGraderParams *gparams,
				  const char *method, long points)
{
	static const char *const names[3] = {"raw", "grade", "grade_transform"};
	RcfForest  *forest[3];
	RcfGrader  *grader[3] = {NULL, NULL, NULL};
	RcfTransform *transform[3] = {NULL, NULL, NULL};
	uint64_t	seeds[3];
	double		checksum[3] = {0, 0, 0};
	long		nbatches = points / BATCH;
	double	   *cpu[3];
	double	   *wall[3];
	double		median_cpu[3];
	long		warm = (long) params->sample_size * 4 + params->shingle_size;
	double	   *rec = malloc(sizeof(double) * params->dims);
	double	   *expected = malloc(sizeof(double) * params->dims);

	for (int v = 0; v < 3; v++)
	{
		forest[v] = rcf_create(params, NULL);
		if (v > 0)
			grader[v] = rcf_grader_create(gparams, params, NULL);
		if (v == 2)
			transform[v] = make_transform(method, params);
		if (forest[v] == NULL || (v > 0 && grader[v] == NULL))
		{
			fprintf(stderr, "could not create the forest or the grader\n");
			return 1;
		}
		seeds[v] = 88172645463325252ULL;
		cpu[v] = malloc(sizeof(double) * nbatches);
		wall[v] = malloc(sizeof(double) * nbatches);
		for (long i = 0; i < warm; i++)
		{
			make_record(rec, params->dims, i, &seeds[v]);
			checksum[v] += process(forest[v], grader[v], transform[v], rec, expected);
		}
	}
	for (long b = 0; b < nbatches; b++)
	{
		for (int v = 0; v < 3; v++)
		{
			double		t0 = now_us();
			double		c0 = cpu_seconds();

			for (long i = 0; i < BATCH; i++)
			{
				make_record(rec, params->dims, warm + b * BATCH + i, &seeds[v]);
				checksum[v] += process(forest[v], grader[v], transform[v], rec, expected);
			}
			wall[v][b] = (now_us() - t0) / BATCH;
			cpu[v][b] = (cpu_seconds() - c0) * 1e6 / BATCH;
		}
	}
	for (int v = 0; v < 3; v++)
	{
		qsort(cpu[v], nbatches, sizeof(double), cmp_double);
		qsort(wall[v], nbatches, sizeof(double), cmp_double);
		median_cpu[v] = cpu[v][nbatches / 2];
		printf("engine_variant variant=%s method=%s us_per_point=%.3f cpu_us_per_point=%.3f dims=%d shingle=%d trees=%d samples=%d points=%ld checksum=%.6f\n",
			   names[v], v == 2 ? method : "none", wall[v][nbatches / 2],
			   median_cpu[v], params->dims, params->shingle_size,
			   params->number_of_trees, params->sample_size,
			   nbatches * BATCH, checksum[v]);
	}
	printf("engine_transform method=%s ratio_grade=%.3f ratio_grade_transform=%.3f ratio_transform=%.3f target=1.3 pass=%s\n",
		   method, median_cpu[1] / median_cpu[0], median_cpu[2] / median_cpu[0],
		   median_cpu[2] / median_cpu[1],
		   median_cpu[2] / median_cpu[0] <= 1.3 ? "yes" : "no");
	for (int v = 0; v < 3; v++)
	{
		rcf_free(forest[v]);
		rcf_grader_free(grader[v]);
		rcf_transform_free(transform[v]);
		free(cpu[v]);
		free(wall[v]);
	}
	free(rec);
	free(expected);
	return 0;
}

/*
 * --compare-box-cache F1,F2,...: forests that differ only in their
 * bounding_box_cache_fraction learn the same records, batch by batch in
 * turn, so that a busy machine slows all alike.  One line per fraction:
 * its largest rcf_bytes over the run, CPU and wall time per record
 * (medians over batches) and the CPU time's ratio to the first fraction's;
 * the checksums (sums of the scores) must be equal.  Returns the exit
 * status.
 */
#define MAX_FRACTIONS 8
static int
compare_box_cache(const RcfParams *params, const char *list, long points)
{
	RcfForest  *forest[MAX_FRACTIONS];
	double		fraction[MAX_FRACTIONS];
	uint64_t	seeds[MAX_FRACTIONS];
	double		checksum[MAX_FRACTIONS];
	size_t		peak[MAX_FRACTIONS];
	double	   *cpu[MAX_FRACTIONS];
	double	   *wall[MAX_FRACTIONS];
	double		median_cpu[MAX_FRACTIONS];
	long		nbatches = points / BATCH;
	long		warm = (long) params->sample_size * 4 + params->shingle_size;
	double	   *rec = malloc(sizeof(double) * params->dims);
	int			n = 0;
	bool		same = true;

	for (const char *at = list; *at && n < MAX_FRACTIONS;)
	{
		char	   *end;

		fraction[n++] = strtod(at, &end);
		if (end == at || (*end != ',' && *end != '\0'))
		{
			fprintf(stderr, "--compare-box-cache takes fractions separated by commas\n");
			return 2;
		}
		at = *end == ',' ? end + 1 : end;
	}
	for (int v = 0; v < n; v++)
	{
		RcfParams	p = *params;

		p.bounding_box_cache_fraction = fraction[v];
		if (rcf_params_check(&p) != NULL || (forest[v] = rcf_create(&p, NULL)) == NULL)
		{
			fprintf(stderr, "could not create a forest of fraction %g: %s\n", fraction[v],
					rcf_params_check(&p) ? rcf_params_check(&p) : "out of memory");
			return 2;
		}
		seeds[v] = 88172645463325252ULL;
		checksum[v] = 0.0;
		cpu[v] = malloc(sizeof(double) * nbatches);
		wall[v] = malloc(sizeof(double) * nbatches);
		for (long i = 0; i < warm; i++)
		{
			make_record(rec, params->dims, i, &seeds[v]);
			checksum[v] += rcf_process(forest[v], rec);
		}
		peak[v] = rcf_bytes(forest[v]);
	}
	for (long b = 0; b < nbatches; b++)
	{
		for (int v = 0; v < n; v++)
		{
			double		t0 = now_us();
			double		c0 = cpu_seconds();

			for (long i = 0; i < BATCH; i++)
			{
				make_record(rec, params->dims, warm + b * BATCH + i, &seeds[v]);
				checksum[v] += rcf_process(forest[v], rec);
			}
			wall[v][b] = (now_us() - t0) / BATCH;
			cpu[v][b] = (cpu_seconds() - c0) * 1e6 / BATCH;
			if (rcf_bytes(forest[v]) > peak[v])
				peak[v] = rcf_bytes(forest[v]);
		}
	}
	for (int v = 0; v < n; v++)
	{
		qsort(cpu[v], nbatches, sizeof(double), cmp_double);
		qsort(wall[v], nbatches, sizeof(double), cmp_double);
		median_cpu[v] = cpu[v][nbatches / 2];
		same &= checksum[v] == checksum[0];
		printf("engine_box_cache fraction=%g bytes_per_forest=%zu cpu_us_per_point=%.3f us_per_point=%.3f ratio=%.3f dims=%d shingle=%d trees=%d samples=%d points=%ld checksum=%.6f\n",
			   fraction[v], peak[v], median_cpu[v], wall[v][nbatches / 2],
			   median_cpu[v] / median_cpu[0], params->dims, params->shingle_size,
			   params->number_of_trees, params->sample_size, nbatches * BATCH,
			   checksum[v]);
		rcf_free(forest[v]);
		free(cpu[v]);
		free(wall[v]);
	}
	free(rec);
	if (!same)
	{
		fprintf(stderr, "the fractions' scores differ\n");
		return 1;
	}
	return 0;
}

/*
 * Reads FILE into *data, one record of *dims values per line; returns the
 * number of records, or -1 after printing why.  *dims == 0 on entry means
 * the first line decides.
 */
static long
read_input(const char *path, int *dims, double **data)
{
	FILE	   *f = fopen(path, "r");
	char		line[65536];
	double		vals[RCF_MAX_DIMENSIONS];
	long		n = 0;
	long		cap = 0;
	long		lineno = 0;

	*data = NULL;
	if (f == NULL)
	{
		fprintf(stderr, "could not open \"%s\": %s\n", path, strerror(errno));
		return -1;
	}
	while (fgets(line, sizeof(line), f) != NULL)
	{
		char	   *p = line;
		char	   *end;
		int			d = 0;

		lineno++;
		if (line[strspn(line, " \t\r\n")] == '\0')
			continue;
		for (;;)
		{
			if (d == RCF_MAX_DIMENSIONS)
				goto bad;
			vals[d] = strtod(p, &end);
			if (end == p)
				goto bad;
			d++;
			p = end + strspn(end, " \t\r\n");
			if (*p == '\0')
				break;
			if (*p++ != ',')
				goto bad;
		}
		if (*dims == 0)
			*dims = d;
		if (d != *dims)
			goto bad;
		if (n == cap)
		{
			cap = cap ? cap * 2 : 65536;
			*data = realloc(*data, sizeof(double) * cap * d);
			if (*data == NULL)
			{
				fprintf(stderr, "out of memory reading \"%s\"\n", path);
				fclose(f);
				return -1;
			}
		}
		memcpy(*data + n * d, vals, sizeof(double) * d);
		n++;
	}
	fclose(f);
	if (n == 0)
	{
		fprintf(stderr, "\"%s\" holds no records\n", path);
		return -1;
	}
	return n;

bad:
	if (*dims > 0)
		fprintf(stderr, "%s:%ld: expected %d comma-separated numbers\n",
				path, lineno, *dims);
	else
		fprintf(stderr, "%s:%ld: expected comma-separated numbers\n",
				path, lineno);
	fclose(f);
	return -1;
}

int
main(int argc, char **argv)
{
	RcfParams	params;
	int			dims = 1;
	long		points = 100000;
	RcfForest  *forest;
	double	   *rec;
	double	   *batches;
	double	   *cpu_batches;
	long		nbatches;
	long		warm;
	uint64_t	s = 88172645463325252ULL;
	double		checksum = 0.0;
	const char *input = NULL;
	double	   *data = NULL;
	int			dims_given = 0;
	double		t_all;
	double		cpu_all;
	int			grade = 0;
	RcfGraderParams gparams;
	RcfGrader  *grader = NULL;
	double	   *expected;
	const char *tmethod = NULL;
	const char *compare = NULL;
	const char *compare_boxes = NULL;
	RcfTransform *transform = NULL;

	rcf_params_default(&params, 1);
	rcf_grader_params_default(&gparams);
	for (int i = 1; i < argc; i++)
	{
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (strcmp(a, "--grade") == 0)
		{
			grade = 1;
			continue;
		}
		if (v == NULL)
			bench_usage(argv[0], USAGE);
		if (bench_forest_option(&params, a, v))
			;					/* read into params */
		else if (strcmp(a, "--dims") == 0)
			dims = dims_given = atoi(v);
		else if (strcmp(a, "--points") == 0)
			points = atol(v);
		else if (strcmp(a, "--input") == 0)
			input = v;
		else if (strcmp(a, "--transform") == 0)
			tmethod = v;
		else if (strcmp(a, "--compare-transform") == 0)
			compare = v;
		else if (strcmp(a, "--compare-box-cache") == 0)
			compare_boxes = v;
		else
			bench_usage(argv[0], USAGE);
		i++;
	}
	if (input != NULL)
	{
		dims = dims_given;
		points = read_input(input, &dims, &data);
		if (points < 0)
			return 2;
	}
	params.dims = dims;
	if (rcf_params_check(&params) || (input == NULL && points < BATCH))
	{
		fprintf(stderr, "invalid parameters: %s\n",
				rcf_params_check(&params) ? rcf_params_check(&params) : "points");
		return 2;
	}

	if (compare_boxes != NULL)
	{
		if (input != NULL || compare != NULL || grade || tmethod != NULL)
			bench_usage(argv[0], USAGE);
		return compare_box_cache(&params, compare_boxes, points);
	}
	if (compare != NULL)
	{
		if (input != NULL)
			bench_usage(argv[0], USAGE);
		return compare_transform(&params, &gparams, compare, points);
	}
	forest = rcf_create(&params, NULL);
	if (tmethod != NULL)
		transform = make_transform(tmethod, &params);
	if (grade)
		grader = rcf_grader_create(&gparams, &params, NULL);
	if (forest == NULL || (grade && grader == NULL))
	{
		fprintf(stderr, "could not create the forest or the grader\n");
		return 1;
	}
	rec = malloc(sizeof(double) * dims);
	expected = malloc(sizeof(double) * dims);
	nbatches = points / BATCH;
	batches = malloc(sizeof(double) * (nbatches + 1));
	cpu_batches = malloc(sizeof(double) * (nbatches + 1));

	if (input != NULL)
	{
		/* Every record timed, warm-up included; batches for the median. */
		long		i = 0;

		t_all = now_us();
		cpu_all = cpu_seconds();
		for (long b = 0; b < nbatches; b++)
		{
			double		t0 = now_us();

			for (long end = i + BATCH; i < end; i++)
				checksum += process(forest, grader, transform, data + i * dims, expected);
			batches[b] = (now_us() - t0) / BATCH;
		}
		for (; i < points; i++)
			checksum += process(forest, grader, transform, data + i * dims, expected);
		t_all = now_us() - t_all;
		cpu_all = cpu_seconds() - cpu_all;
		if (nbatches == 0)
			batches[nbatches++] = t_all / points;
		qsort(batches, nbatches, sizeof(double), cmp_double);
		printf("us_per_point=%.3f rows_per_s=%.1f seconds=%.3f cpu_seconds=%.3f bytes_per_forest=%zu dims=%d shingle=%d trees=%d samples=%d points=%ld checksum=%.6f grade=%d transform=%s\n",
			   batches[nbatches / 2], points / (t_all / 1e6), t_all / 1e6,
			   cpu_all, rcf_bytes(forest), dims, params.shingle_size,
			   params.number_of_trees, params.sample_size, points, checksum,
			   grade, tmethod ? tmethod : "none");
		goto done;
	}

	warm = (long) params.sample_size * 4 + params.shingle_size;
	for (long i = 0; i < warm; i++)
	{
		make_record(rec, dims, i, &s);
		checksum += process(forest, grader, transform, rec, expected);
	}
	for (long b = 0; b < nbatches; b++)
	{
		double		t0 = now_us();
		double		c0 = cpu_seconds();

		for (long i = 0; i < BATCH; i++)
		{
			make_record(rec, dims, warm + b * BATCH + i, &s);
			checksum += process(forest, grader, transform, rec, expected);
		}
		batches[b] = (now_us() - t0) / BATCH;
		cpu_batches[b] = (cpu_seconds() - c0) * 1e6 / BATCH;
	}
	qsort(batches, nbatches, sizeof(double), cmp_double);
	qsort(cpu_batches, nbatches, sizeof(double), cmp_double);
	printf("us_per_point=%.3f bytes_per_forest=%zu dims=%d shingle=%d trees=%d samples=%d points=%ld checksum=%.6f grade=%d cpu_us_per_point=%.3f transform=%s\n",
		   batches[nbatches / 2], rcf_bytes(forest), dims, params.shingle_size,
		   params.number_of_trees, params.sample_size, nbatches * BATCH, checksum,
		   grade, cpu_batches[nbatches / 2], tmethod ? tmethod : "none");
done:
	rcf_grader_free(grader);
	rcf_transform_free(transform);
	rcf_free(forest);
	free(expected);
	free(data);
	free(rec);
	free(batches);
	free(cpu_batches);
	return 0;
}
