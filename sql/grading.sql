-- Graded anomalies: detect() over a window and rcf_detect() on stored models.
\getenv abs_srcdir PG_ABS_SRCDIR
\set noise_setup :abs_srcdir '/sql/include/noise_setup.sql'
\i :noise_setup

-- Three kinds of change, each after 2000 points of noise: a spike at 2500,
-- a level shift from 3000, a change of variance from 4000.
CREATE TABLE kinds AS
SELECT t,
       noise(t) + CASE WHEN t = 2500 THEN 8 ELSE 0 END AS spike,
       noise(t) + CASE WHEN t >= 3000 THEN 6 ELSE 0 END AS shift,
       noise(t) * CASE WHEN t >= 4000 THEN 8 ELSE 1 END AS variance
FROM generate_series(1, 5000) t;

SELECT 'spike' AS kind, min(t) AS first_graded, max((d).anomaly_grade) > 0 AS graded
FROM (SELECT t, anomaly.detect(ARRAY[spike]) OVER (ORDER BY t) AS d FROM kinds) s
WHERE (d).anomaly_grade > 0 AND t >= 2500
UNION ALL
SELECT 'level shift', min(t), max((d).anomaly_grade) > 0
FROM (SELECT t, anomaly.detect(ARRAY[shift]) OVER (ORDER BY t) AS d FROM kinds) s
WHERE (d).anomaly_grade > 0 AND t >= 3000
UNION ALL
SELECT 'variance', min(t), max((d).anomaly_grade) > 0
FROM (SELECT t, anomaly.detect(ARRAY[variance]) OVER (ORDER BY t) AS d FROM kinds) s
WHERE (d).anomaly_grade > 0 AND t >= 4000;

-- Stationary noise: the share of non-zero grades stays small (under 1%).
SELECT count(*) FILTER (WHERE (d).anomaly_grade > 0) < 50 AS rare, count(*) AS points
FROM (SELECT anomaly.detect(ARRAY[noise(t)]) OVER (ORDER BY t) AS d
      FROM generate_series(1, 5000) t) s;

-- The fields of a firing: grade in (0, 1], score above the threshold,
-- an expected value near the usual level, and an explanation.
SELECT (d).is_anomaly, (d).anomaly_grade > 0 AND (d).anomaly_grade <= 1 AS grade_in_range,
       (d).anomaly_score > (d).threshold AS above_threshold,
       abs((d).expected[1]) < 1 AS expected_near_usual,
       (d).explanation -> 'spike' ->> 'DIRECTION' AS direction,
       (d).confidence > 0 AS confident
FROM (SELECT t, anomaly.detect(ARRAY[spike], feature_names => ARRAY['spike']) OVER (ORDER BY t) AS d FROM kinds) s
WHERE t = 2500;

-- A constant stream and then a tiny change: without a margin it pages,
-- with ignore_near_expected it does not (the reference library's issue 400).
-- With a shingle the expected value of the new level can lie a hair above
-- it (10.0100002 for 10.01), so a ratio margin is given on both sides.
CREATE TABLE flat AS SELECT t, CASE WHEN t >= 1500 THEN 10.01 ELSE 10.0 END AS v
FROM generate_series(1, 2000) t;
SELECT count(*) FILTER (WHERE (d).is_anomaly) > 0 AS pages
FROM (SELECT anomaly.detect(ARRAY[v]) OVER (ORDER BY t) AS d FROM flat) s;
SELECT count(*) FILTER (WHERE (d).is_anomaly) AS pages
FROM (SELECT anomaly.detect(ARRAY[v], ignore_near_expected_above => 0.05,
                            ignore_near_expected_below => 0.05) OVER (ORDER BY t) AS d FROM flat) s;
SELECT count(*) FILTER (WHERE (d).is_anomaly) AS pages
FROM (SELECT anomaly.detect(ARRAY[v], ignore_near_expected_above_ratio => 0.01,
                            ignore_near_expected_below_ratio => 0.01) OVER (ORDER BY t) AS d FROM flat) s;

-- Missing values: skip gives NULL and learns nothing; zero, previous and
-- impute fill the value in.
CREATE TABLE holes AS
SELECT t, CASE WHEN t % 100 = 0 THEN NULL ELSE 5 + noise(t) END AS a, 3 + noise(t + 7) AS b
FROM generate_series(1, 2000) t;
SELECT policy, count(*) FILTER (WHERE d IS NULL) AS null_rows,
       count(*) FILTER (WHERE t % 100 = 0 AND (d).anomaly_score IS NOT NULL) AS filled_rows
FROM (SELECT 'skip' AS policy, t, anomaly.detect(ARRAY[a, b], missing => 'skip') OVER (ORDER BY t) AS d FROM holes
      UNION ALL
      SELECT 'zero', t, anomaly.detect(ARRAY[a, b], missing => 'zero') OVER (ORDER BY t) FROM holes
      UNION ALL
      SELECT 'previous', t, anomaly.detect(ARRAY[a, b], missing => 'previous') OVER (ORDER BY t) FROM holes
      UNION ALL
      SELECT 'impute', t, anomaly.detect(ARRAY[a, b], missing => 'impute') OVER (ORDER BY t) FROM holes) s
GROUP BY policy ORDER BY policy;
-- Zeros are far from 5: they page; imputed values are not.
SELECT policy, count(*) FILTER (WHERE (d).is_anomaly AND t % 100 = 0) > 0 AS pages_on_holes
FROM (SELECT 'zero' AS policy, t, anomaly.detect(ARRAY[a, b], missing => 'zero') OVER (ORDER BY t) AS d FROM holes
      UNION ALL
      SELECT 'impute', t, anomaly.detect(ARRAY[a, b], missing => 'impute') OVER (ORDER BY t) FROM holes) s
GROUP BY policy ORDER BY policy;

-- Stored models: training then rcf_detect of the next point equals detect()
-- over all the points.  rcf_train given detect()'s forest defaults (shingle
-- 8, normalize; transform_decay omitted is detect()'s 0.0001) grades with
-- detect()'s grader defaults (z_factor 4, CUSUM off).
CREATE TABLE m AS SELECT anomaly.rcf_train(ARRAY[spike], 100, 256, 100000, 8, 42, 'normalize' ORDER BY t) AS model
FROM kinds WHERE t < 2500;
SELECT anomaly.rcf_detect(model, ARRAY[spike])::text = w::text AS equal,
       (w).is_anomaly
FROM m, kinds, (SELECT t AS wt, anomaly.detect(ARRAY[spike]) OVER (ORDER BY t) AS w FROM kinds) x
WHERE t = 2500 AND wt = 2500;
SELECT anomaly.rcf_info(model) -> 'grader' AS grader FROM m;

-- Sustained change: the CUSUM of standardized scores.  Gaussian noise
-- (a sum of twelve uniforms) whose level moves by one deviation at 3000,
-- shingle 4, no transform and a strict z_factor: with the CUSUM (0.1.0's
-- default, cusum_threshold 12) some firings come from it, at a score at or
-- below the single-score threshold; with cusum_threshold => 0 (the
-- default) none do.
CREATE TABLE gshift AS
SELECT t, (SELECT sum(noise(t * 12 + i)) FROM generate_series(0, 11) i)
          + CASE WHEN t >= 3000 THEN 1 ELSE 0 END AS v
FROM generate_series(1, 4000) t;
SELECT cusum, count(*) FILTER (WHERE t < 3000) AS firings_before,
       min(t) FILTER (WHERE t >= 3000) AS first_after,
       count(*) FILTER (WHERE (d).anomaly_score <= (d).threshold) AS by_cusum,
       bool_and((d).anomaly_grade > 0 AND (d).anomaly_grade <= 1) AS graded
FROM (SELECT 'off' AS cusum, t, anomaly.detect(ARRAY[v], shingle_size => 4, z_factor => 6,
                                               transform => 'none') OVER (ORDER BY t) AS d FROM gshift
      UNION ALL
      SELECT 'on', t, anomaly.detect(ARRAY[v], shingle_size => 4, z_factor => 6, transform => 'none',
                                     cusum_threshold => 12) OVER (ORDER BY t) FROM gshift) s
WHERE (d).is_anomaly GROUP BY cusum ORDER BY cusum;

-- A change of variance (x1.6 from 3000) with shingle 4, no transform and
-- 0.1.0's grading (z_factor 3, CUSUM 12): the CUSUM fires at 3192.  A
-- model trained on the points before it (rcf_train: no transform, the
-- grader's defaults) grades that point as detect() with the same
-- parameters does.
CREATE TABLE gvar AS
SELECT t, (SELECT sum(noise(t * 12 + i)) FROM generate_series(0, 11) i)
          * CASE WHEN t >= 3000 THEN 1.6 ELSE 1 END AS v
FROM generate_series(1, 4000) t;
SELECT t, (d).anomaly_score <= (d).threshold AS by_cusum, (d).anomaly_grade > 0 AS graded
FROM (SELECT t, anomaly.detect(ARRAY[v], shingle_size => 4, transform => 'none', z_factor => 3,
                               cusum_threshold => 12) OVER (ORDER BY t) AS d FROM gvar) s
WHERE (d).is_anomaly AND t >= 3000 ORDER BY t LIMIT 3;
CREATE TABLE mv AS SELECT anomaly.rcf_train(ARRAY[v], 100, 256, 100000, 4, 42 ORDER BY t) AS model
FROM gvar WHERE t < 3192;
SELECT anomaly.rcf_detect(model, ARRAY[v])::text = w::text AS equal, (w).is_anomaly
FROM mv, gvar, (SELECT t AS wt, anomaly.detect(ARRAY[v], shingle_size => 4, transform => 'none') OVER (ORDER BY t) AS w
                FROM gvar) x
WHERE t = 3192 AND wt = 3192;

-- rcf_set_grading: other grading parameters for a stored model.  The
-- score statistics stay (the single-score threshold is mean + z * sd, so
-- it moves linearly with z_factor, and with the defaults it is the model's
-- own); the firing state and the CUSUM start afresh, so turning the CUSUM
-- on does not make 3192 fire as it does in detect() above.
SELECT anomaly.rcf_info(anomaly.rcf_set_grading(model, z_factor => 5, cusum_threshold => 0)) -> 'grader' AS grader
FROM mv;
SELECT abs((d4).threshold - (d3).threshold - ((d5).threshold - (d4).threshold)) < 1e-9 AS linear_in_z,
       (d4).threshold > (d3).threshold AS rises,
       (d4).threshold = (d).threshold AS same_statistics,
       (d).is_anomaly AS fires_by_default, (d0).is_anomaly AS fires_with_fresh_cusum
FROM (SELECT anomaly.rcf_detect(model, ARRAY[v]) AS d,
             anomaly.rcf_detect(anomaly.rcf_set_grading(model, z_factor => 3), ARRAY[v]) AS d3,
             anomaly.rcf_detect(anomaly.rcf_set_grading(model), ARRAY[v]) AS d4,
             anomaly.rcf_detect(anomaly.rcf_set_grading(model, z_factor => 5), ARRAY[v]) AS d5,
             anomaly.rcf_detect(anomaly.rcf_set_grading(model, z_factor => 3, cusum_threshold => 12), ARRAY[v]) AS d0
      FROM mv, gvar WHERE t = 3192) s;
SELECT anomaly.rcf_set_grading(NULL) IS NULL AS null_model;
SELECT anomaly.rcf_set_grading(model, z_factor => 0) FROM mv;
SELECT anomaly.rcf_set_grading(model, z_factor => NULL) FROM mv;
SELECT anomaly.rcf_set_grading(model, cusum_threshold => -1) FROM mv;

-- Errors.
SELECT anomaly.detect(ARRAY[1.0], z_factor => 0) OVER (ORDER BY t) FROM generate_series(1, 1) t;
SELECT anomaly.detect(ARRAY[1.0], score_floor => -1) OVER (ORDER BY t) FROM generate_series(1, 1) t;
SELECT anomaly.detect(ARRAY[1.0], suppress => -1) OVER (ORDER BY t) FROM generate_series(1, 1) t;
SELECT anomaly.detect(ARRAY[1.0], score_horizon => 1) OVER (ORDER BY t) FROM generate_series(1, 1) t;
SELECT anomaly.detect(ARRAY[1.0], ignore_near_expected_above => -1) OVER (ORDER BY t) FROM generate_series(1, 1) t;
SELECT anomaly.detect(ARRAY[1.0], missing => 'guess') OVER (ORDER BY t) FROM generate_series(1, 1) t;
SELECT anomaly.detect(ARRAY[1.0], missing => NULL) OVER (ORDER BY t) FROM generate_series(1, 1) t;
SELECT anomaly.detect(ARRAY[1.0], z_factor => NULL) OVER (ORDER BY t) FROM generate_series(1, 1) t;
SELECT anomaly.detect(ARRAY[1.0], cusum_drift => -1) OVER (ORDER BY t) FROM generate_series(1, 1) t;
SELECT anomaly.detect(ARRAY[1.0], cusum_threshold => -1) OVER (ORDER BY t) FROM generate_series(1, 1) t;
SELECT anomaly.detect(ARRAY[1.0], cusum_threshold => NULL) OVER (ORDER BY t) FROM generate_series(1, 1) t;

-- detect() refuses a window without ORDER BY, and says a frame is ignored.
SELECT anomaly.detect(ARRAY[spike]) OVER () FROM kinds;
SELECT anomaly.detect(ARRAY[spike]) OVER (PARTITION BY t % 2) FROM kinds;
SELECT count(*) FILTER (WHERE a IS DISTINCT FROM b) AS mismatches, count(*) AS n
FROM (SELECT anomaly.detect(ARRAY[spike]) OVER (ORDER BY t) AS a,
             anomaly.detect(ARRAY[spike]) OVER (ORDER BY t ROWS BETWEEN 10 PRECEDING AND 10 FOLLOWING) AS b
      FROM kinds WHERE t <= 500) s;
