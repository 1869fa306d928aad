/*
 * nab_engine.c
 *	  Runs the engine (and optionally the grader) over NAB series directly,
 *	  without SQL, to study detection quality quickly.
 *
 *	  bench/nab_engine --nab DIR --out DIR [--mode raw|grade|score]
 *				[--shingle S] [--trees T] [--samples N] [--time-decay L]
 *				[--seed X] [--tod W] [grader options: --z-factor,
 *				--score-floor, --horizon, --short-window, --suppress, --warmup,
 *				--cusum-drift, --cusum-threshold (rcf_grader_set_option)]
 *
 * Writes OUT/<category>/<file>.csv with timestamp,anomaly_score as NAB's
 * scorer expects.  In raw mode the score is s / (1 + s); in grade mode it
 * is the grader's anomaly grade.  Score mode writes the raw forest score
 * (10 significant digits, not in [0, 1]: not for NAB's scorer) of the
 * grading run, for studying graders offline on the same scores: the forest
 * does not depend on the grader.
 */
#include <dirent.h>
#include <errno.h>
#include <math.h>
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
	RcfParams	params;
	RcfGraderParams grader;
} Options;

/* Scores one file. */
static int
run_file(const Options *o, const char *category, const char *name)
{
	char		path[4096];
	FILE	   *in,
			   *out;
	char		line[1024];
	RcfForest  *forest;
	RcfGrader  *grader = NULL;
	double		hist[4096] = {0};
	long		n_seen = 0;
	double		prev = 0.0;
	double		lo = 0,
				hi = 0;
	long		row = 0;

	snprintf(path, sizeof(path), "%s/data/%s/%s", o->nab, category, name);
	in = fopen(path, "r");
	if (!in)
		return -1;
	snprintf(path, sizeof(path), "%s/%s", o->out, category);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/%s/%s", o->out, category, name);
	out = fopen(path, "w");
	if (!out)
	{
		fclose(in);
		return -1;
	}
	{
		RcfParams	fp = o->params;

		if (o->tod > 0)
			fp.dims = o->dow > 0 ? 5 : 3;
		if (o->diff)
			fp.dims = 2;
		forest = rcf_create(&fp, NULL);
		if (o->grade)
			grader = rcf_grader_create(&o->grader, &fp, NULL);
	}
	fprintf(out, "timestamp,anomaly_score\n");
	if (!fgets(line, sizeof(line), in))
		line[0] = 0;
	while (fgets(line, sizeof(line), in))
	{
		char	   *comma = strchr(line, ',');
		double		x[5];
		double		s;

		if (!comma)
			continue;
		*comma = 0;
		x[0] = strtod(comma + 1, NULL);
		if (o->diff)
		{
			x[1] = row > 0 ? x[0] - prev : 0.0;
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
			x[1] = o->tod * (hi - lo) * sin(2 * M_PI * dayfrac);
			x[2] = o->tod * (hi - lo) * cos(2 * M_PI * dayfrac);
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
				x[3] = o->dow * (hi - lo) * sin(2 * M_PI * weekfrac);
				x[4] = o->dow * (hi - lo) * cos(2 * M_PI * weekfrac);
			}
		}
		if (grader)
		{
			RcfGrade	g;

			rcf_grader_process(grader, forest, x, true, &g, NULL);
			s = g.grade;
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
	rcf_grader_free(grader);
	rcf_free(forest);
	fclose(in);
	fclose(out);
	return 0;
}

int
main(int argc, char **argv)
{
	Options		o;
	const char *categories[] = {"artificialNoAnomaly", "artificialWithAnomaly",
		"realAWSCloudwatch", "realAdExchange", "realKnownCause",
	"realTraffic", "realTweets"};

	memset(&o, 0, sizeof(o));
	rcf_params_default(&o.params, 1);
	rcf_grader_params_default(&o.grader);
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
				!strcmp(v, "gnms") ? 3 : !strcmp(v, "score") ? 4 : 0;
		else if (!strcmp(a, "--dow"))
			o.dow = atof(v);
		else if (!strcmp(a, "--diff"))
			o.diff = atoi(v);
		else if (!strcmp(a, "--tod"))
			o.tod = atof(v);
		else if (!strcmp(a, "--nms"))
			o.nms = atoi(v);
		else if (!strcmp(a, "--zfloor"))
			o.zfloor = atof(v);
		else if (!strcmp(a, "--shingle"))
			o.params.shingle_size = atoi(v);
		else if (!strcmp(a, "--trees"))
			o.params.number_of_trees = atoi(v);
		else if (!strcmp(a, "--samples"))
			o.params.sample_size = atoi(v);
		else if (!strcmp(a, "--time-decay"))
			o.params.time_decay = atof(v);
		else if (!strcmp(a, "--seed"))
			o.params.seed = strtoull(v, NULL, 10);
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
	for (size_t c = 0; c < sizeof(categories) / sizeof(categories[0]); c++)
	{
		char		path[4096];
		DIR		   *d;
		struct dirent *e;

		snprintf(path, sizeof(path), "%s/data/%s", o.nab, categories[c]);
		d = opendir(path);
		if (!d)
			continue;
		while ((e = readdir(d)) != NULL)
		{
			size_t		n = strlen(e->d_name);

			if (n > 4 && !strcmp(e->d_name + n - 4, ".csv"))
				if (run_file(&o, categories[c], e->d_name) != 0)
					fprintf(stderr, "failed: %s/%s: %s\n", categories[c], e->d_name, strerror(errno));
		}
		closedir(d);
	}
	return 0;
}
