-- The stored model anomaly.rcf: training, scoring, explaining, updating,
-- and round trips through text and binary.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS anomaly;
RESET client_min_messages;
SET extra_float_digits = 0;

CREATE TABLE series AS
SELECT t, round((10 * sin(t / 8.0) + (t % 5) * 0.2)::numeric, 3)::float8 AS v,
       (t % 13)::float8 AS w
FROM generate_series(1, 1201) t;

-- Train on rows 1..1200; shingle 4 so the shingle buffer matters too.
CREATE TABLE models AS
SELECT 'plain' AS name, anomaly.rcf_train(ARRAY[v, w] ORDER BY t) AS m FROM series WHERE t <= 1200
UNION ALL
SELECT 'shingled', anomaly.rcf_train(ARRAY[v, w], 40, 128, 5000, 4, 7 ORDER BY t) FROM series WHERE t <= 1200;

SELECT name, info - 'encoded_bytes' - 'memory_bytes' AS info
FROM (SELECT name, anomaly.rcf_info(m) AS info FROM models) s ORDER BY name;

-- Scoring row 1201 against the model equals the window function on rows 1..1201.
SELECT name, model_score = window_score AS equal
FROM (SELECT name, anomaly.rcf_score(m, ARRAY[v, w]) AS model_score FROM models, series WHERE t = 1201) a,
     (SELECT anomaly.random_cut_forest(ARRAY[v, w]) OVER (ORDER BY t) AS window_score,
             anomaly.random_cut_forest(ARRAY[v, w], 40, 128, 5000, 4, 7) OVER (ORDER BY t) AS shingled_score, t
      FROM series) b
WHERE b.t = 1201 AND name = 'plain'
UNION ALL
SELECT name, model_score = shingled_score
FROM (SELECT name, anomaly.rcf_score(m, ARRAY[v, w]) AS model_score FROM models, series WHERE t = 1201) a,
     (SELECT anomaly.random_cut_forest(ARRAY[v, w], 40, 128, 5000, 4, 7) OVER (ORDER BY t) AS shingled_score, t
      FROM series) b
WHERE b.t = 1201 AND name = 'shingled';

-- rcf_score does not learn: the same score twice, and the model is unchanged.
SELECT anomaly.rcf_score(m, ARRAY[100.0, 1.0]) = anomaly.rcf_score(m, ARRAY[100.0, 1.0]) AS repeatable
FROM models WHERE name = 'plain';

-- rcf_update by row 1201 equals training on rows 1..1201.
SELECT name, anomaly.rcf_update(m, ARRAY[v, w])::text = retrained::text AS equal
FROM models, series,
     (SELECT anomaly.rcf_train(ARRAY[v, w], 40, 128, 5000, 4, 7 ORDER BY t) AS retrained FROM series) r
WHERE t = 1201 AND name = 'shingled';

-- Updating with a two-dimensional array equals updating point by point.
SELECT anomaly.rcf_update(m, ARRAY[[1.0, 2.0], [3.0, 4.0]])::text =
       anomaly.rcf_update(anomaly.rcf_update(m, ARRAY[1.0, 2.0]), ARRAY[3.0, 4.0])::text AS equal
FROM models WHERE name = 'plain';

-- A NULL point is not learned; a NULL value in a point gives a NULL score.
SELECT anomaly.rcf_update(m, NULL)::text = m::text AS unchanged,
       anomaly.rcf_score(m, ARRAY[1.0, NULL]) IS NULL AS null_score
FROM models WHERE name = 'plain';

-- Training skips NULL points; no rows give no model.
SELECT anomaly.rcf_train(ARRAY[v, w] ORDER BY t)::text =
       (SELECT anomaly.rcf_train(CASE WHEN t % 10 = 0 THEN NULL ELSE ARRAY[v, w] END ORDER BY t)::text
        FROM series WHERE t <= 1200) AS skips_nulls
FROM series WHERE t <= 1200 AND t % 10 <> 0;
SELECT anomaly.rcf_train(ARRAY[v] ORDER BY t) IS NULL AS no_model FROM series WHERE false;

-- Explanation of a point against a model, in KDA's shape.
SELECT e -> 'v' ->> 'DIRECTION' AS direction, (e -> 'v' ->> 'ATTRIBUTION_SCORE')::float8 > 1 AS explains
FROM (SELECT anomaly.rcf_explain(m, ARRAY[60.0, 5.0], ARRAY['v', 'w']) AS e FROM models WHERE name = 'plain') s;
SELECT jsonb_object_keys(anomaly.rcf_explain(m, ARRAY[1.0, 5.0])) AS key FROM models WHERE name = 'plain' ORDER BY 1;

-- Text round trip: the copy scores exactly as the original, now and after more updates.
SELECT name, anomaly.rcf_score(m::text::anomaly.rcf, ARRAY[50.0, 3.0]) = anomaly.rcf_score(m, ARRAY[50.0, 3.0]) AS same,
       anomaly.rcf_score(anomaly.rcf_update(m::text::anomaly.rcf, ARRAY[5.0, 5.0]), ARRAY[6.0, 6.0]) =
       anomaly.rcf_score(anomaly.rcf_update(m, ARRAY[5.0, 5.0]), ARRAY[6.0, 6.0]) AS same_after_update
FROM models ORDER BY name;

-- Binary round trip through COPY (FORMAT binary): send, then receive.
\copy models TO 'results/anomaly_models.bin' (FORMAT binary)
CREATE TABLE models_copy (LIKE models);
\copy models_copy FROM 'results/anomaly_models.bin' (FORMAT binary)
SELECT name, c.m::text = m.m::text AS identical FROM models m JOIN models_copy c USING (name) ORDER BY name;

-- Scoring many rows against one stored model.
SELECT count(*), count(*) FILTER (WHERE s > 0) AS scored
FROM (SELECT anomaly.rcf_score(m, ARRAY[v, w]) AS s FROM models, series WHERE name = 'plain') x;

-- rcf_set_box_cache: the fraction of the forest's bounding boxes kept.
-- Less memory, the same scores and explanations; rcf_update and the text
-- form keep the fraction; 1 gives back the model's bytes as they were.
WITH base AS (SELECT m FROM models WHERE name = 'shingled'),
	 p AS (SELECT ARRAY[v, w] AS x FROM series WHERE t = 1201)
SELECT f, i ->> 'bounding_box_cache_fraction' AS fraction,
	   (i ->> 'memory_bytes')::int8 < (anomaly.rcf_info(base.m) ->> 'memory_bytes')::int8 AS smaller,
	   anomaly.rcf_score(b.m, p.x) = anomaly.rcf_score(base.m, p.x) AS same_score,
	   anomaly.rcf_explain(b.m, p.x) = anomaly.rcf_explain(base.m, p.x) AS same_explanation,
	   anomaly.rcf_info(anomaly.rcf_update(b.m, p.x)) ->> 'bounding_box_cache_fraction' AS after_update,
	   anomaly.rcf_score(anomaly.rcf_update(b.m, p.x), p.x) =
		 anomaly.rcf_score(anomaly.rcf_update(base.m, p.x), p.x) AS same_after_update,
	   anomaly.rcf_info(b.m::text::anomaly.rcf) = i AS text_round_trip,
	   anomaly.rcf_set_box_cache(b.m, 1)::text = base.m::text AS back_to_default
FROM base, p,
	 LATERAL (SELECT f, anomaly.rcf_set_box_cache(base.m, f) AS m
			  FROM unnest(ARRAY[1, 0.5, 0.1, 0]::float8[]) f) b,
	 LATERAL anomaly.rcf_info(b.m) i
ORDER BY f DESC;
SELECT anomaly.rcf_set_box_cache(m, 1.5) FROM models WHERE name = 'plain';
SELECT anomaly.rcf_set_box_cache(m, 'NaN') FROM models WHERE name = 'plain';
SELECT anomaly.rcf_set_box_cache(m, NULL) FROM models WHERE name = 'plain';
SELECT anomaly.rcf_set_box_cache(NULL, 0) IS NULL AS null_model;

-- Errors.
SELECT anomaly.rcf_score(m, ARRAY[1.0]) FROM models WHERE name = 'plain';
SELECT anomaly.rcf_score(m, ARRAY['NaN'::float8, 1.0]) FROM models WHERE name = 'plain';
SELECT anomaly.rcf_explain(m, ARRAY[1.0, 2.0], ARRAY['only one']) FROM models WHERE name = 'plain';
SELECT anomaly.rcf_update(m, ARRAY[[1.0, 2.0, 3.0]]) FROM models WHERE name = 'plain';
SELECT anomaly.rcf_train(ARRAY[v], 0 ORDER BY t) FROM series;
SELECT anomaly.rcf_train(ARRAY[v], 100, 256, 100, 1 ORDER BY t) FROM series;
SELECT anomaly.rcf_train(CASE WHEN t < 3 THEN ARRAY[v] ELSE ARRAY[v, w] END ORDER BY t) FROM series;

-- rcf_train without ORDER BY warns (once per query, even over many groups),
-- from its second point on: one point needs no order.
SELECT anomaly.rcf_info(anomaly.rcf_train(ARRAY[v, w])) ->> 'updates' AS unordered FROM series WHERE t <= 10;
SELECT t % 3 AS g, anomaly.rcf_info(anomaly.rcf_train(ARRAY[v])) ->> 'updates' AS n
FROM series WHERE t <= 9 GROUP BY t % 3 ORDER BY g;
SELECT anomaly.rcf_train(ARRAY[v]) IS NOT NULL AS one_point FROM series WHERE t = 1;
SELECT anomaly.rcf_train(ARRAY[v] ORDER BY t) IS NOT NULL AS ordered FROM series WHERE t <= 10;
-- An ordered subquery still warns: the aggregate cannot know its input's order.
SELECT anomaly.rcf_train(ARRAY[v]) IS NOT NULL AS sorted_subquery FROM (SELECT v FROM series WHERE t <= 10 ORDER BY t) s;
