/*
 * make_seeds.c
 *	  Writes valid encodings of small forests, the fuzzer's seed corpus.
 *	  Each file starts with the mode byte fuzz_decode.c expects.
 */
#include <stdio.h>
#include <stdlib.h>
#include <math.h>

#include "rcf/rcf.h"
#include "rcf/grade.h"

int
main(int argc, char **argv)
{
	const int	configs[][5] = {
		/* dims, shingle, trees, samples (10 at least: rcf.h's model ranges), points */
		{1, 1, 1, 10, 0}, {1, 1, 1, 10, 3}, {1, 1, 2, 12, 50}, {2, 3, 3, 12, 40},
		{3, 1, 2, 16, 200}, {1, 4, 2, 10, 2}, {2, 2, 4, 10, 500},
		/* 16 values a point or more: partial box caching (rcf_internal.h) */
		{16, 1, 2, 24, 300}, {2, 8, 2, 32, 400},
	};

	if (argc != 2)
	{
		fprintf(stderr, "usage: %s DIR\n", argv[0]);
		return 2;
	}
	for (size_t c = 0; c < sizeof(configs) / sizeof(configs[0]); c++)
	{
		RcfParams	p;
		RcfForest  *f;
		RcfTransform *t = NULL;
		double		x[16];
		size_t		n;
		uint8_t    *buf;
		char		path[4096];
		FILE	   *out;

		rcf_params_default(&p, configs[c][0]);
		p.shingle_size = configs[c][1];
		p.number_of_trees = configs[c][2];
		p.sample_size = configs[c][3];
		p.time_decay = 100;
		/* Some seeds keep fewer boxes (a flag and the fraction in the header). */
		if (c == 4 || c == 8)
			p.bounding_box_cache_fraction = c == 4 ? 0.0 : 0.3;
		f = rcf_create(&p, NULL);
		for (int i = 0; i < configs[c][4]; i++)
		{
			/* The wide seeds get more distinct points: subtrees large enough to cache. */
			for (int d = 0; d < configs[c][0]; d++)
				x[d] = floor(5 * sin(i * 0.3 + d)) + (c >= 7 ? (i * 7 + d) % 11 : 0);
			rcf_update(f, x);
		}
		/*
		 * Every other seed carries a grader section (kind 2): with the
		 * default CUSUM, or (seed 3) with a low drift and a high threshold,
		 * so that its state is not zero, or (seed 5) with it off.
		 */
		if (c % 2 == 1)
		{
			RcfGraderParams gp;
			RcfGrader  *g;

			rcf_grader_params_default(&gp);
			gp.short_window = 3;
			if (c == 3)
			{
				gp.cusum_drift = 0.5;
				gp.cusum_threshold = 1000.0;
				gp.warmup = 0;
			}
			else if (c == 5)
				gp.cusum_threshold = 0.0;
			g = rcf_grader_create(&gp, &p, NULL);
			/* Seeds 1 and 5 also carry a transform section (kind 3). */
			if (c == 1 || c == 5)
			{
				RcfTransformParams tp;

				rcf_transform_params_default(&tp, p.dims, p.sample_size);
				tp.method = c == 1 ? RCF_TRANSFORM_NORMALIZE : RCF_TRANSFORM_NORMALIZE_DIFFERENCE;
				t = rcf_transform_create(&tp, NULL, NULL);
			}
			for (int i = 0; i < configs[c][4]; i++)
			{
				RcfGrade	grade;

				for (int d = 0; d < configs[c][0]; d++)
					x[d] = floor(5 * cos(i * 0.2 + d));
				rcf_grader_process_tf(g, f, t, x, true, &grade, NULL);
			}
			n = rcf_model_encoded_size_tf(f, g, t);
			buf = malloc(n);
			rcf_model_encode_tf(f, g, t, buf, n);
			rcf_grader_free(g);
			rcf_transform_free(t);
			t = NULL;
		}
		else
		{
			n = rcf_encoded_size(f);
			buf = malloc(n);
			rcf_encode(f, buf, n);
		}
		/* Modes 0, 1, and 1 + 2 + 4 * 16 (decoded again at fraction 16/63). */
		for (int mode = 0; mode < 3; mode++)
		{
			snprintf(path, sizeof(path), "%s/seed-%zu-%d", argv[1], c, mode);
			out = fopen(path, "wb");
			if (!out)
				return 1;
			fputc(mode < 2 ? mode : 1 + 2 + 4 * 16, out);
			fwrite(buf, 1, n, out);
			fclose(out);
		}
		free(buf);
		rcf_free(f);
	}
	return 0;
}
