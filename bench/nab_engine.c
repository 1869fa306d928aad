/*
 * nab_engine.c
 *	  Runs the engine (and optionally the grader) over NAB series directly,
 *	  without SQL, to study detection quality quickly.
 *
 *	  bench/nab_engine --nab DIR --out DIR [--mode raw|grade|score|fscore]
 *				[--shingle S] [--trees T] [--samples N] [--time-decay L]
 *				[--seed X] [--tod W] [grader options: --z-factor,
 *				--score-floor, --horizon, --short-window, --suppress, --warmup,
 *				--cusum-drift, --cusum-threshold (rcf_grader_set_option)]
 *				[--extra K --extra-kind noise|nab --extra-units mixed|same]
 *				[--transform METHOD --transform-decay D --transform-clip C]
 *				[--lags L] [--blocks M --block-len D [--block-point 1]]
 *				[--lma W] [--coarse 1] [--derived-weight W]
 *
 * A data file may hold several value columns after the timestamp: each is
 * a feature (NAB's files have one).  --extra K appends K features that
 * carry no signal about the file's labels, for the multi-feature bench
 * (bench/README): "noise", Gaussian noise with the standard deviation of
 * the file's first feature; or "nab", the values of unrelated NAB series
 * (the files half the corpus further on in name order, repeated when
 * shorter).  With --extra-units mixed (the default) extra feature j is in
 * other units than the series: multiplied by 1000 for even j, by 0.001
 * for odd j; "same" leaves them as they are.  --transform applies one of
 * the engine's transforms (rcf.h) to every feature in grade mode, with
 * the decay 1 / samples unless --transform-decay says otherwise.  Everything is deterministic:
 * the noise of a file depends on the file's name and j only.
 *
 * Context features (bench/README, "Fourth study"), per feature of the
 * file and extras: --lags L puts x[t-L+1..t] into the record itself (with
 * --shingle 1 it stands for the forest's shingle of L, normalized per lag);
 * --blocks M --block-len D adds M values of older context, block k (1..M)
 * being the mean of the D values that end D * (k - 1) before the oldest
 * lag (--block-point 1: that end value alone, a dilated shingle); --lma W
 * adds x minus the mean of its last W values (rows before the first count
 * as the first); --season 1 the mean of the last L values minus that of
 * the L values ending at the last row 24 hours or more before (0 while
 * there is none).  --derived-weight scales the derived values' transform
 * weight.  --coarse 1 sends the blocks instead to a second forest (shingle
 * 1, the M means of D values ending at t, t - D, ...), graded by its own
 * grader with the same parameters: the grade written is the larger of the
 * two, so either firing is a detection.
 *
 * Writes OUT/<category>/<file>.csv with timestamp,anomaly_score as NAB's
 * scorer expects.  In raw mode the score is s / (1 + s); in grade mode it
 * is the grader's anomaly grade.  Score mode writes the raw forest score
 * (10 significant digits, not in [0, 1]: not for NAB's scorer) of the
 * grading run, for studying graders offline on the same scores: the forest
 * does not depend on the grader.  Fscore mode writes, per point, the
 * forest's attribution of the (transformed) point before it is learned:
 * its total, then per feature the part due to that feature (above and
 * below, summed over the shingle), as timestamp,anomaly_score,feature_1,..
 * (bench/grader_sim.py's per-feature graders read them).
 */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "rcf/rcf.h"
#include "rcf/grade.h"

typedef struct Options
{
	const char *nab;
	const char *out;
	int			grade;
	int			nms;			/* z mode: non-maximum suppression window */
	double		tod;			/* weight of time-of-day features; 0: none */
	int			diff;			/* add the first difference as a feature */
	double		dow;			/* weight of day-of-week features; 0: none */
	double		zfloor;
	int			extra;			/* extra features, for the multi-feature bench */
	int			extra_nab;		/* extras from other NAB series, not noise */
	int			extra_mixed;	/* extras in other units (x1000, x0.001) */
	int			transform;		/* RcfTransformMethod */
	double		transform_decay;	/* 0: the default for the forest */
	double		transform_clip;	/* 0: the default */
	int			lags;			/* >0: the point holds x[t-lags+1..t] itself */
	int			blocks;			/* context: blocks of block_len points */
	int			block_len;
	int			block_point;	/* a block is its newest value, not its mean */
	int			lma;			/* >0: x - mean of the last lma points */
	int			coarse;			/* the blocks go to a second forest */
	int			season;			/* add the change from one day before */
	double		derived_weight; /* transform weight of derived features */
	char	  **files;			/* the corpus, category/file, in name order */
	int			nfiles;
	RcfParams	params;
	RcfGraderParams grader;
} Options;

/* The options that are a number, and the field of Options each sets. */
typedef enum NumberKind
{
	NUMBER_INT,
	NUMBER_DOUBLE,
	NUMBER_UINT64
} NumberKind;

typedef struct NumberOption
{
	const char *name;
	NumberKind	kind;
	size_t		offset;			/* of the field in Options */
} NumberOption;

static const NumberOption number_options[] = {
	{"--dow", NUMBER_DOUBLE, offsetof(Options, dow)},
	{"--diff", NUMBER_INT, offsetof(Options, diff)},
	{"--extra", NUMBER_INT, offsetof(Options, extra)},
	{"--transform-decay", NUMBER_DOUBLE, offsetof(Options, transform_decay)},
	{"--transform-clip", NUMBER_DOUBLE, offsetof(Options, transform_clip)},
	{"--lags", NUMBER_INT, offsetof(Options, lags)},
	{"--blocks", NUMBER_INT, offsetof(Options, blocks)},
	{"--block-len", NUMBER_INT, offsetof(Options, block_len)},
	{"--block-point", NUMBER_INT, offsetof(Options, block_point)},
	{"--lma", NUMBER_INT, offsetof(Options, lma)},
	{"--season", NUMBER_INT, offsetof(Options, season)},
	{"--coarse", NUMBER_INT, offsetof(Options, coarse)},
	{"--derived-weight", NUMBER_DOUBLE, offsetof(Options, derived_weight)},
	{"--tod", NUMBER_DOUBLE, offsetof(Options, tod)},
	{"--nms", NUMBER_INT, offsetof(Options, nms)},
	{"--zfloor", NUMBER_DOUBLE, offsetof(Options, zfloor)},
	{"--shingle", NUMBER_INT, offsetof(Options, params.shingle_size)},
	{"--trees", NUMBER_INT, offsetof(Options, params.number_of_trees)},
	{"--samples", NUMBER_INT, offsetof(Options, params.sample_size)},
	{"--time-decay", NUMBER_DOUBLE, offsetof(Options, params.time_decay)},
	{"--seed", NUMBER_UINT64, offsetof(Options, params.seed)},
};

/*
 * Reads option a, with value v, into its field of o when it is one of
 * number_options: true if it is.
 */
static bool
read_number_option(Options *o, const char *a, const char *v)
{
	for (size_t i = 0; i < sizeof(number_options) / sizeof(number_options[0]); i++)
	{
		const NumberOption *n = &number_options[i];
		char	   *field = (char *) o + n->offset;

		if (strcmp(a, n->name) != 0)
			continue;
		if (n->kind == NUMBER_INT)
			*(int *) field = atoi(v);
		else if (n->kind == NUMBER_DOUBLE)
			*(double *) field = atof(v);
		else
			*(uint64_t *) field = strtoull(v, NULL, 10);
		return true;
	}
	return false;
}

/* A data file in memory: its timestamps and its value columns. */
typedef struct Series
{
	long		n;
	int			cols;
	char	  (*ts)[64];
	double	   *v;				/* n * cols, row-major */
} Series;

#define MAX_COLS 64

/* Reads DIR/data/<name>; 0, or -1 when it cannot be read. */
static int
series_load(const char *nab, const char *name, Series *s)
{
	char		path[4096];
	char		line[8192];
	FILE	   *in;
	long		cap = 1024;

	memset(s, 0, sizeof(Series));
	snprintf(path, sizeof(path), "%s/data/%s", nab, name);
	in = fopen(path, "r");
	if (!in)
		return -1;
	if (fgets(line, sizeof(line), in))
	{
		for (char *c = line; *c; c++)
			s->cols += *c == ',';
	}
	if (s->cols < 1 || s->cols > MAX_COLS)
	{
		fclose(in);
		errno = EINVAL;
		return -1;
	}
	s->ts = malloc(cap * sizeof(*s->ts));
	s->v = malloc(cap * s->cols * sizeof(double));
	while (fgets(line, sizeof(line), in))
	{
		char	   *c = strchr(line, ',');

		if (!c)
			continue;
		if (s->n == cap)
		{
			cap *= 2;
			s->ts = realloc(s->ts, cap * sizeof(*s->ts));
			s->v = realloc(s->v, cap * s->cols * sizeof(double));
		}
		*c = 0;
		{
			size_t		len = strlen(line);

			if (len >= sizeof(s->ts[0]))
				len = sizeof(s->ts[0]) - 1;
			memcpy(s->ts[s->n], line, len);
			s->ts[s->n][len] = 0;
		}
		for (int j = 0; j < s->cols; j++)
		{
			s->v[s->n * s->cols + j] = c ? strtod(c + 1, NULL) : 0.0;
			c = c ? strchr(c + 1, ',') : NULL;
		}
		s->n++;
	}
	fclose(in);
	return 0;
}

static void
series_free(Series *s)
{
	free(s->ts);
	free(s->v);
}

/* splitmix64: the bench's deterministic noise. */
static uint64_t
mix64(uint64_t *state)
{
	uint64_t	z = (*state += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* A standard normal deviate (Box-Muller). */
static double
gauss(uint64_t *state)
{
	double		u = ((mix64(state) >> 11) + 0.5) / 9007199254740992.0;
	double		w = ((mix64(state) >> 11) + 0.5) / 9007199254740992.0;

	return sqrt(-2.0 * log(u)) * cos(2 * M_PI * w);
}

/*
 * Fills extra (n * o->extra values) with the extra features of file index
 * fi, whose first feature is series s: see the header.
 */
static void
make_extras(const Options *o, int fi, const Series *s, double *extra)
{
	double		sum = 0,
				sum2 = 0,
				sd;

	for (long r = 0; r < s->n; r++)
	{
		sum += s->v[r * s->cols];
		sum2 += s->v[r * s->cols] * s->v[r * s->cols];
	}
	sd = s->n > 1 ? sqrt(fmax(0.0, (sum2 - sum * sum / s->n) / (s->n - 1))) : 1.0;
	for (int j = 0; j < o->extra; j++)
	{
		double		unit = !o->extra_mixed ? 1.0 : j % 2 == 0 ? 1000.0 : 0.001;

		if (o->extra_nab)
		{
			Series		other;
			int			k = (fi + o->nfiles / 2 + j) % o->nfiles;

			if (k == fi)
				k = (k + 1) % o->nfiles;
			if (series_load(o->nab, o->files[k], &other) != 0 || other.n == 0)
			{
				fprintf(stderr, "cannot read %s\n", o->files[k]);
				exit(1);
			}
			for (long r = 0; r < s->n; r++)
				extra[r * o->extra + j] = unit * other.v[(r % other.n) * other.cols];
			series_free(&other);
		}
		else
		{
			uint64_t	state = 0x5eed0000ULL + (uint64_t) j;

			for (const char *c = o->files[fi]; *c; c++)
				state = state * 131 + (unsigned char) *c;
			for (long r = 0; r < s->n; r++)
				extra[r * o->extra + j] = unit * sd * gauss(&state);
		}
	}
}

/*
 * Fscore mode: writes "timestamp,score" 's rest for one point before it is
 * learned: the forest's score of the (transformed) point, then per feature
 * the part of it the forest attributes to that feature (rcf_attribution,
 * above and below, summed over the shingle's records), so that graders of
 * per-feature scores can be studied offline (bench/grader_sim.py).
 */
static void
write_feature_scores(FILE *out, RcfForest *forest, const RcfTransform *t,
					 const double *x, int dims)
{
	double		y[RCF_MAX_DIMENSIONS];
	static double high[RCF_MAX_DIMENSIONS],
				low[RCF_MAX_DIMENSIONS];
	int			S = rcf_params(forest)->shingle_size;
	double		total;

	if (t)
		rcf_transform_apply(t, x, y);
	else
		memcpy(y, x, dims * sizeof(double));
	total = rcf_attribution(forest, y, high, low);
	fprintf(out, ",%.10g", total);
	for (int j = 0; j < dims; j++)
	{
		double		f = 0.0;

		for (int p = 0; p < S; p++)
			f += high[p * dims + j] + low[p * dims + j];
		fprintf(out, ",%.10g", f);
	}
}

/*
 * The features before any derived from them (the file's columns and the
 * extras), row-major, with prefix sums for the means of blocks of rows.
 */
typedef struct Context
{
	long		n;
	int			F;
	double	   *v;				/* n * F */
	double	   *prefix;			/* (n + 1) * F: sums of the rows before */
	long	   *day_ago;		/* --season: the last row 24 h or more
								 * before each row; -1 if none */
} Context;

/* Feature j at row r; rows before the first are the first. */
static double
ctx_value(const Context *c, long r, int j)
{
	return c->v[(r < 0 ? 0 : r) * c->F + j];
}

/* Mean of feature j over rows a..b (a <= b), clamped to the rows there are. */
static double
ctx_mean(const Context *c, long a, long b, int j)
{
	if (b < 0)
		return ctx_value(c, 0, j);
	if (a < 0)
		a = 0;
	return (c->prefix[(b + 1) * c->F + j] - c->prefix[a * c->F + j]) / (b - a + 1);
}

/* Seconds since 1970 of "YYYY-MM-DD HH:MM:SS" (civil calendar, UTC). */
static double
timestamp_seconds(const char *ts)
{
	int			y = 0,
				mo = 1,
				dd = 1,
				hh = 0,
				mi = 0,
				ss = 0;
	long		days;

	sscanf(ts, "%d-%d-%d %d:%d:%d", &y, &mo, &dd, &hh, &mi, &ss);
	y -= mo <= 2;
	days = 365L * y + y / 4 - y / 100 + y / 400 +
		(153 * (mo + (mo > 2 ? -3 : 9)) + 2) / 5 + dd - 719469;
	return days * 86400.0 + hh * 3600.0 + mi * 60.0 + ss;
}

/*
 * Values the main forest's record holds per base feature: the feature
 * itself and its lags, the context blocks unless they go to the coarse
 * forest, the difference from the long moving average.
 */
static int
group_size(const Options *o)
{
	return (o->lags > 1 ? o->lags : 1) + (o->coarse ? 0 : o->blocks) +
		(o->lma > 0 ? 1 : 0) + (o->season ? 1 : 0);
}

/*
 * Fills x with the main forest's record at row r for every base feature
 * (group_size values each; see the header's --lags, --blocks, --lma), and
 * weight (may be NULL) with each value's transform weight.  Block k
 * (1..blocks) ends block_len * (k - 1) rows before the oldest lag: with
 * --lags 8 --block-len 8 block 1 is x[t-15..t-8] (or x[t-8] with
 * --block-point 1), block 7 reaches back to x[t-63].
 */
static int
build_record(const Options *o, const Context *c, long r, double *x,
			 double *weight)
{
	int			L = o->lags > 1 ? o->lags : 1;
	int			d = 0;
	double		dw = o->derived_weight > 0 ? o->derived_weight : 1.0;

	for (int j = 0; j < c->F; j++)
	{
		for (int k = 0; k < L; k++)
		{
			if (weight)
				weight[d] = 1.0;
			x[d++] = ctx_value(c, r - k, j);
		}
		for (int k = 1; !o->coarse && k <= o->blocks; k++)
		{
			long		end = r - L - (long) o->block_len * (k - 1);

			if (weight)
				weight[d] = dw;
			x[d++] = o->block_point ? ctx_value(c, end, j) :
				ctx_mean(c, end - o->block_len + 1, end, j);
		}
		if (o->lma > 0)
		{
			if (weight)
				weight[d] = dw;
			x[d++] = ctx_value(c, r, j) - ctx_mean(c, r - o->lma + 1, r, j);
		}
		if (o->season)
		{
			long		p = c->day_ago[r];

			if (weight)
				weight[d] = dw;
			x[d++] = p < 0 ? 0.0 : ctx_mean(c, r - L + 1, r, j) -
				ctx_mean(c, p - L + 1, p, j);
		}
	}
	return d;
}

/*
 * Fills x with the coarse forest's record at row r: per base feature the
 * means of the last `blocks` blocks of block_len rows, the newest ending
 * at r (the series at a coarser scale, shingled).
 */
static int
build_coarse(const Options *o, const Context *c, long r, double *x)
{
	int			d = 0;

	for (int j = 0; j < c->F; j++)
		for (int k = 0; k < o->blocks; k++)
		{
			long		end = r - (long) o->block_len * k;

			x[d++] = ctx_mean(c, end - o->block_len + 1, end, j);
		}
	return d;
}

/* Scores file fi of the corpus. */
static int
run_file(const Options *o, int fi)
{
	const char *name = o->files[fi];
	char		path[4096];
	FILE	   *out;
	Series		ser;
	double	   *extra = NULL;
	RcfForest  *forest;
	RcfGrader  *grader = NULL;
	RcfTransform *transform = NULL;
	RcfForest  *cforest = NULL;	/* --coarse: the second forest */
	RcfGrader  *cgrader = NULL;
	RcfTransform *ctransform = NULL;
	int			cdims = 0;
	Context		ctx;
	double		weights[RCF_MAX_DIMENSIONS];
	double		hist[4096] = {0};
	long		n_seen = 0;
	double		prev = 0.0;
	double		lo = 0,
				hi = 0;
	long		row = 0;
	int			dims;
	int			base;			/* features before the clock's */

	if (series_load(o->nab, name, &ser) != 0)
		return -1;
	snprintf(path, sizeof(path), "%s/%s", o->out, name);
	*strrchr(path, '/') = 0;
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/%s", o->out, name);
	out = fopen(path, "w");
	if (!out)
	{
		series_free(&ser);
		return -1;
	}
	if (o->extra > 0)
	{
		extra = malloc(ser.n * o->extra * sizeof(double));
		make_extras(o, fi, &ser, extra);
	}
	ctx.n = ser.n;
	ctx.F = ser.cols + o->extra;
	ctx.v = malloc(ser.n * ctx.F * sizeof(double));
	ctx.prefix = malloc((ser.n + 1) * ctx.F * sizeof(double));
	for (int j = 0; j < ctx.F; j++)
		ctx.prefix[j] = 0.0;
	for (long r = 0; r < ser.n; r++)
		for (int j = 0; j < ctx.F; j++)
		{
			double		v = j < ser.cols ? ser.v[r * ser.cols + j] :
				extra[r * o->extra + j - ser.cols];

			ctx.v[r * ctx.F + j] = v;
			ctx.prefix[(r + 1) * ctx.F + j] = ctx.prefix[r * ctx.F + j] + v;
		}
	ctx.day_ago = malloc((ser.n + 1) * sizeof(long));
	{
		long		p = -1;
		double	   *secs = malloc((ser.n + 1) * sizeof(double));

		for (long r = 0; r < ser.n; r++)
			secs[r] = timestamp_seconds(ser.ts[r]);
		for (long r = 0; r < ser.n; r++)
		{
			while (p + 1 < r && secs[p + 1] <= secs[r] - 86400.0)
				p++;
			ctx.day_ago[r] = p;
		}
		free(secs);
	}
	base = ctx.F * group_size(o) + (o->diff ? 1 : 0);
	dims = base + (o->tod > 0 ? (o->dow > 0 ? 4 : 2) : 0);
	for (int i = 0; i < dims; i++)
		weights[i] = 1.0;
	if (ser.n > 0)
	{
		double		scratch[RCF_MAX_DIMENSIONS];

		build_record(o, &ctx, 0, scratch, weights);
	}
	if (o->coarse && o->blocks > 0)
		cdims = ctx.F * o->blocks;
	if ((long) dims * o->params.shingle_size > RCF_MAX_DIMENSIONS ||
		cdims > RCF_MAX_DIMENSIONS)
	{
		fprintf(stderr, "too many features\n");
		exit(2);
	}
	{
		RcfParams	fp = o->params;

		fp.dims = dims;
		forest = rcf_create(&fp, NULL);
		if (o->grade)
			grader = rcf_grader_create(&o->grader, &fp, NULL);
		if (o->grade && o->transform != RCF_TRANSFORM_NONE)
		{
			RcfTransformParams tp;

			rcf_transform_params_default(&tp, dims, fp.sample_size);
			tp.method = (RcfTransformMethod) o->transform;
			if (o->transform_decay > 0)
				tp.decay = o->transform_decay;
			if (o->transform_clip > 0)
				tp.clip = o->transform_clip;
			transform = rcf_transform_create(&tp, weights, NULL);
			if (!transform)
			{
				fprintf(stderr, "invalid transform parameters\n");
				exit(2);
			}
		}
		if (cdims > 0)
		{
			RcfParams	cp = o->params;

			/* The coarse forest: its own shingle of blocks, graded alike. */
			cp.dims = cdims;
			cp.shingle_size = 1;
			cforest = rcf_create(&cp, NULL);
			cgrader = rcf_grader_create(&o->grader, &cp, NULL);
			if (o->transform != RCF_TRANSFORM_NONE)
			{
				RcfTransformParams tp;

				rcf_transform_params_default(&tp, cdims, cp.sample_size);
				tp.method = (RcfTransformMethod) o->transform;
				if (o->transform_decay > 0)
					tp.decay = o->transform_decay;
				if (o->transform_clip > 0)
					tp.clip = o->transform_clip;
				ctransform = rcf_transform_create(&tp, NULL, NULL);
			}
			if (!cforest || !cgrader ||
				(o->transform != RCF_TRANSFORM_NONE && !ctransform) || !o->grade)
			{
				fprintf(stderr, "invalid coarse forest parameters\n");
				exit(2);
			}
		}
		if (!forest || (o->grade && !grader))
		{
			fprintf(stderr, "invalid parameters\n");
			exit(2);
		}
	}
	if (o->grade == 5)
	{
		fprintf(out, "timestamp,anomaly_score");
		for (int j = 0; j < dims; j++)
			fprintf(out, ",feature_%d", j + 1);
		fprintf(out, "\n");
	}
	else
		fprintf(out, "timestamp,anomaly_score\n");
	for (long r = 0; r < ser.n; r++)
	{
		const char *line = ser.ts[r];
		double		x[RCF_MAX_DIMENSIONS];
		double		s;
		int			d = build_record(o, &ctx, r, x, NULL);

		if (o->diff)
		{
			x[d++] = row > 0 ? x[0] - prev : 0.0;
			prev = x[0];
		}
		if (o->tod > 0)
		{
			int			hh = 0,
						mi = 0;
			double		dayfrac;

			sscanf(line + 11, "%d:%d", &hh, &mi);
			dayfrac = (hh * 60 + mi) / 1440.0;
			/* Scale the clock to the series: the spread seen so far. */
			n_seen++;
			if (n_seen == 1)
				lo = hi = x[0];
			lo = x[0] < lo ? x[0] : lo;
			hi = x[0] > hi ? x[0] : hi;
			x[base] = o->tod * (hi - lo) * sin(2 * M_PI * dayfrac);
			x[base + 1] = o->tod * (hi - lo) * cos(2 * M_PI * dayfrac);
			if (o->dow > 0)
			{
				int			y = 0,
							mo = 0,
							dd = 0;
				long		days;
				double		weekfrac;

				sscanf(line, "%d-%d-%d", &y, &mo, &dd);
				/* Days since 1970-01-01 (civil calendar), then the week. */
				y -= mo <= 2;
				days = 365L * y + y / 4 - y / 100 + y / 400 +
					(153 * (mo + (mo > 2 ? -3 : 9)) + 2) / 5 + dd - 719469;
				weekfrac = ((days % 7) + dayfrac) / 7.0;
				x[base + 2] = o->dow * (hi - lo) * sin(2 * M_PI * weekfrac);
				x[base + 3] = o->dow * (hi - lo) * cos(2 * M_PI * weekfrac);
			}
		}
		if (grader)
		{
			RcfGrade	g;

			if (o->grade == 5)
				fprintf(out, "%s", line);
			if (o->grade == 5)
				write_feature_scores(out, forest, transform, x, dims);
			rcf_grader_process_tf(grader, forest, transform, x, true, &g, NULL);
			s = g.grade;
			if (cforest)
			{
				double		cx[RCF_MAX_DIMENSIONS];
				RcfGrade	cg;

				build_coarse(o, &ctx, r, cx);
				rcf_grader_process_tf(cgrader, cforest, ctransform, cx, true,
									  &cg, NULL);
				if (cg.grade > s)
					s = cg.grade;
			}
			if (o->grade == 5)
			{
				fprintf(out, "\n");
				continue;
			}
			if (o->grade == 4)
			{
				fprintf(out, "%s,%.10g\n", line, g.score);
				continue;
			}
			if (o->grade >= 2)
			{
				double		z = o->grade == 3 ? g.grade / (1.0001 - g.grade) :
					o->zfloor < 0 ? g.score :
					(g.score > o->zfloor ? g.deviation : 0.0);
				double		m = 0.0;

				for (int k = 1; k <= o->nms && k <= row; k++)
					if (hist[(row - k) % 4096] > m)
						m = hist[(row - k) % 4096];
				hist[row % 4096] = z;
				s = z > m ? z / (1.0 + z) : 0.0;
				if (s < 0)
					s = 0;
			}
			row++;
		}
		else
		{
			s = rcf_process(forest, x);
			s = s / (1.0 + s);
		}
		fprintf(out, "%s,%.6f\n", line, s);
	}
	free(extra);
	free(ctx.v);
	free(ctx.prefix);
	free(ctx.day_ago);
	rcf_grader_free(cgrader);
	rcf_transform_free(ctransform);
	rcf_free(cforest);
	series_free(&ser);
	rcf_grader_free(grader);
	rcf_transform_free(transform);
	rcf_free(forest);
	fclose(out);
	return 0;
}

/* qsort order of the corpus: byte order of category/file. */
static int
cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *) a, *(char *const *) b);
}

/* Lists DIR/data/<category>/<file>.csv into o->files, sorted. */
static void
list_corpus(Options *o)
{
	char		path[4096];
	DIR		   *top,
			   *d;
	struct dirent *c,
			   *e;
	int			cap = 64;

	o->files = malloc(cap * sizeof(char *));
	snprintf(path, sizeof(path), "%s/data", o->nab);
	top = opendir(path);
	if (!top)
		return;
	while ((c = readdir(top)) != NULL)
	{
		if (c->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/data/%s", o->nab, c->d_name);
		d = opendir(path);
		if (!d)
			continue;
		while ((e = readdir(d)) != NULL)
		{
			size_t		n = strlen(e->d_name);

			if (n > 4 && !strcmp(e->d_name + n - 4, ".csv"))
			{
				if (o->nfiles == cap)
					o->files = realloc(o->files, (cap *= 2) * sizeof(char *));
				o->files[o->nfiles] = malloc(strlen(c->d_name) + n + 2);
				sprintf(o->files[o->nfiles++], "%s/%s", c->d_name, e->d_name);
			}
		}
		closedir(d);
	}
	closedir(top);
	qsort(o->files, o->nfiles, sizeof(char *), cmp_names);
}

int
main(int argc, char **argv)
{
	Options		o;

	memset(&o, 0, sizeof(o));
	rcf_params_default(&o.params, 1);
	rcf_grader_params_default(&o.grader);
	o.extra_mixed = 1;
	for (int i = 1; i + 1 < argc; i += 2)
	{
		const char *a = argv[i];
		const char *v = argv[i + 1];

		if (!strcmp(a, "--nab"))
			o.nab = v;
		else if (!strcmp(a, "--out"))
			o.out = v;
		else if (!strcmp(a, "--mode"))
			o.grade = !strcmp(v, "grade") ? 1 : !strcmp(v, "z") ? 2 :
				!strcmp(v, "gnms") ? 3 : !strcmp(v, "score") ? 4 :
				!strcmp(v, "fscore") ? 5 : 0;
		else if (!strcmp(a, "--extra-kind"))
			o.extra_nab = !strcmp(v, "nab");
		else if (!strcmp(a, "--extra-units"))
			o.extra_mixed = strcmp(v, "same") != 0;
		else if (!strcmp(a, "--transform"))
		{
			o.transform = rcf_transform_method_parse(v);
			if (o.transform < 0)
			{
				fprintf(stderr, "unknown transform %s\n", v);
				return 2;
			}
		}
		else if (read_number_option(&o, a, v))
			;					/* read into its field */
		else if (rcf_grader_set_option(&o.grader, a + 2, v) != 0)
		{
			fprintf(stderr, "unknown option %s\n", a);
			return 2;
		}
	}
	if (!o.nab || !o.out || rcf_params_check(&o.params))
	{
		fprintf(stderr, "usage: %s --nab DIR --out DIR [options]\n", argv[0]);
		return 2;
	}
	mkdir(o.out, 0755);
	list_corpus(&o);
	for (int i = 0; i < o.nfiles; i++)
		if (run_file(&o, i) != 0)
			fprintf(stderr, "failed: %s: %s\n", o.files[i], strerror(errno));
	return 0;
}
