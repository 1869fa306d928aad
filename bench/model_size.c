/*
 * model_size.c
 *	  Stored size and decode time of the reference configuration's model
 *	  (1 value, shingle 8, 50 trees, 256 samples, time decay 100,000; the
 *	  issue 14 targets), after 10,000 and after 100,000 updates of the
 *	  unit tests' signal (test_encode's size case).
 *
 *	  bench/model_size
 *
 * Prints one line per model:
 *
 *	  signal=<s> updates=<n> encoded_bytes=<n> decode_ms=<best of 21> round_trip=<ok|FAILED>
 *	  records_bound_bytes=<n> cuts_bound_bytes=<n> names_bound_bytes=<n>
 *
 * signal: "float", the unit tests' values as they are (the issue's
 * measure), or "decimal4", the same rounded to 4 decimals as bench/model.sh
 * makes them.
 *
 * round_trip: re-encoding the decoded forest gives the same bytes.
 *
 * *_bound_bytes: what no exact encoding of the model can spend less on
 * (bounds() below; bench/README, "What a stored model cannot go below").
 */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"
#include "rcf/rcf_internal.h"

/* Wall clock, in seconds. */
static double
now(void)
{
	return now_us() / 1e6;
}

/* A float's place in float order: consecutive floats have consecutive places. */
static int64_t
float_place(float x)
{
	int32_t		i;

	memcpy(&i, &x, sizeof(i));
	return i >= 0 ? (int64_t) i : -(int64_t) (i & 0x7fffffff);
}

/*
 * Lower bounds, in bytes, on what any exact encoding of f must spend on two
 * of its parts, given the signal (bench/README "What a stored model cannot
 * go below"):
 *
 * records: every record some leaf's point covers is kept exactly (scores
 * after decoding must equal those before).  Even a decoder that knew the
 * sine exactly could not predict the noise, uniform over a width of 1, so a
 * float32 record x carries log2(1 / ulp(x)) bits; a record rounded to 4
 * decimals, log2(10^4).
 *
 * cuts: a cut is drawn uniformly over its node's range in its dimension,
 * so given the node's points it carries log2 of the number of floats in
 * [min, max) of those points in that dimension (the dimension itself, up to
 * log2(D) bits more, is not counted).  Needs every box cached (fraction 1).
 *
 * names: given the P distinct points that the trees hold (the records say
 * which), a tree with L leaves holds one of C(P, L) sets of them: at least
 * log2 C(P, L) bits, whatever draws the samplers made (masses not counted).
 */
static void
bounds(const RcfForest *f, bool decimals, double *records, double *cuts,
	   double *names)
{
	uint8_t    *covered = calloc(f->rec_used, 1);
	uint8_t    *starts = calloc(f->rec_used, 1);
	double		bits = 0.0;
	double		points = 0.0;
	double		name_bits = 0.0;
	int		   *leaves = calloc(f->params.number_of_trees, sizeof(int));

	for (int t = 0; t < f->params.number_of_trees; t++)
	{
		const RcfTree *tree = &f->trees[t];
		int16_t		stack[512];
		int			top = 0;

		leaves[t] = 0;
		if (tree->heap_size == 0)
			continue;
		stack[top++] = tree->root;
		while (top > 0)
		{
			int16_t		ref = stack[--top];
			const RcfNode *node;
			const float *box;

			if (RCF_IS_LEAF(ref))
			{
				uint32_t	loc = tree->leaf_loc[RCF_LEAF_IDX(ref)];

				leaves[t]++;
				starts[loc] = 1;
				for (int k = 0; k < f->params.shingle_size; k++)
					covered[loc + k] = 1;
				continue;
			}
			node = &tree->nodes[ref];
			box = rcf_node_box(f, tree, ref);
			bits += log2((double) (float_place(box[f->D + node->dim]) -
								   float_place(box[node->dim])));
			stack[top++] = node->child[0];
			stack[top++] = node->child[1];
		}
	}
	*cuts = bits / 8.0;
	bits = 0.0;
	for (uint32_t r = 0; r < f->rec_used; r++)
	{
		float		x = f->records[r];

		if (!covered[r])
			continue;
		if (decimals)
			bits += log2(1e4);
		else
			bits += log2(1.0 / (nextafterf(fabsf(x), INFINITY) - fabsf(x)));
	}
	*records = bits / 8.0;
	for (uint32_t r = 0; r < f->rec_used; r++)
		points += starts[r];
	for (int t = 0; t < f->params.number_of_trees; t++)
		name_bits += (lgamma(points + 1) - lgamma(leaves[t] + 1) -
					  lgamma(points - leaves[t] + 1)) / log(2.0);
	*names = name_bits / 8.0;
	free(covered);
	free(starts);
	free(leaves);
}

/* Encodes f into a malloc'ed buffer. */
static uint8_t *
encode(const RcfForest *f, size_t *len)
{
	uint8_t    *buf;

	*len = rcf_encoded_size(f);
	buf = malloc(*len);
	if (buf == NULL || rcf_encode(f, buf, *len) != *len)
	{
		fprintf(stderr, "model_size: encoding failed\n");
		exit(1);
	}
	return buf;
}

static int
run(bool decimals)
{
	static const int checkpoints[] = {10000, 100000};
	RcfParams	p;
	RcfForest  *f;
	uint64_t	s = 1;
	int			done = 0;

	rcf_params_default(&p, 1);
	p.shingle_size = 8;
	p.number_of_trees = 50;
	f = rcf_create(&p, NULL);
	for (int c = 0; c < 2; c++)
	{
		uint8_t    *buf,
				   *again;
		size_t		len,
					len2;
		double		best = 1e9;
		RcfDecodeStatus status;
		const char *detail;
		RcfForest  *g = NULL;
		double		rec_bound,
					cut_bound,
					name_bound;

		for (; done < checkpoints[c]; done++)
		{
			double		x = 10 * sin(done * 0.05) + noise(&s);

			if (decimals)
				x = round(x * 1e4) / 1e4;

			rcf_update(f, &x);
		}
		buf = encode(f, &len);
		for (int k = 0; k < 21; k++)
		{
			double		t0 = now();

			if (g)
				rcf_free(g);
			g = rcf_decode(buf, len, NULL, &status, &detail);
			if (g == NULL)
			{
				fprintf(stderr, "model_size: decode failed: %s\n", detail);
				return 1;
			}
			if (now() - t0 < best)
				best = now() - t0;
		}
		again = encode(g, &len2);
		bounds(f, decimals, &rec_bound, &cut_bound, &name_bound);
		printf("signal=%s updates=%d encoded_bytes=%zu decode_ms=%.3f round_trip=%s records_bound_bytes=%.0f cuts_bound_bytes=%.0f names_bound_bytes=%.0f\n",
			   decimals ? "decimal4" : "float", done, len, best * 1000.0,
			   len2 == len && memcmp(buf, again, len) == 0 ? "ok" : "FAILED",
			   rec_bound, cut_bound, name_bound);
		rcf_free(g);
		free(buf);
		free(again);
	}
	rcf_free(f);
	return 0;
}

int
main(void)
{
	return run(false) || run(true);
}
