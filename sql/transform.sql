-- Transforms (issue 13): detect(), the KDA window functions, rcf_train and
-- stored models with transform => 'none' | 'weighted' | 'subtract_ma' |
-- 'difference' | 'normalize' | 'normalize_difference'.
\getenv abs_srcdir PG_ABS_SRCDIR
\set noise_setup :abs_srcdir '/sql/include/noise_setup.sql'
\i :noise_setup
\set try_sql :abs_srcdir '/sql/include/try_sql.sql'
\i :try_sql

-- Four features in other units: a (the signal, a spike of 4 at 2000), b in
-- millions, c constant, d in thousandths.
CREATE TABLE mixed AS
SELECT t, noise(t) + CASE WHEN t = 2000 THEN 4 ELSE 0 END AS a,
       1e6 + 1000 * noise(t + 100000) AS b,
       5.0::float8 AS c,
       0.001 * noise(t + 200000) AS d
FROM generate_series(1, 2500) t;

-- Bad parameters: clear errors.
SELECT state, message, hint FROM try_sql($$SELECT anomaly.detect(ARRAY[1.0], transform => 'Normalize') OVER (ORDER BY 1)$$);
SELECT state, message, hint FROM try_sql($$SELECT anomaly.detect(ARRAY[1.0], transform => 'log') OVER (ORDER BY 1)$$);
SELECT state, message, hint FROM try_sql($$SELECT anomaly.detect(ARRAY[1.0], transform => NULL) OVER (ORDER BY 1)$$);
SELECT state, message, hint FROM try_sql($$SELECT anomaly.detect(ARRAY[1.0], transform => 'normalize', transform_decay => 0) OVER (ORDER BY 1)$$);
SELECT state, message, hint FROM try_sql($$SELECT anomaly.detect(ARRAY[1.0], transform => 'normalize', transform_decay => 'NaN') OVER (ORDER BY 1)$$);
SELECT state, message, hint FROM try_sql($$SELECT anomaly.detect(ARRAY[1.0, 2.0], transform => 'weighted', transform_weights => ARRAY[1.0]) OVER (ORDER BY 1)$$);
SELECT state, message, hint FROM try_sql($$SELECT anomaly.detect(ARRAY[1.0], transform => 'weighted', transform_weights => ARRAY[-1.0]) OVER (ORDER BY 1)$$);
SELECT state, message, hint FROM try_sql($$SELECT anomaly.detect(ARRAY[1.0], transform => 'weighted', transform_weights => ARRAY['NaN'::float8]) OVER (ORDER BY 1)$$);
SELECT state, message, hint FROM try_sql($$SELECT anomaly.detect(ARRAY[1.0], transform => 'weighted', transform_weights => ARRAY[NULL::float8]) OVER (ORDER BY 1)$$);
SELECT state, message, hint FROM try_sql($$SELECT anomaly.detect(ARRAY[1.0], transform => 'none', transform_weights => ARRAY[2.0]) OVER (ORDER BY 1)$$);
SELECT state, message, hint FROM try_sql($$SELECT anomaly.random_cut_forest(ARRAY[1.0], transform => 'nope') OVER (ORDER BY 1)$$);
SELECT state, message, hint FROM try_sql($$SELECT anomaly.rcf_train(ARRAY[1.0], 10, 10, 100, 1, 1, 'nope')$$);
SELECT state, message, hint FROM try_sql($$SELECT anomaly.rcf_train(ARRAY[1.0], 10, 10, 100, 1, 1, 'normalize', 1.5)$$);
-- A NaN value is refused with or without a transform.
SELECT state, message, hint FROM try_sql($$SELECT anomaly.detect(ARRAY['NaN'::float8], transform => 'normalize') OVER (ORDER BY 1)$$);

-- The defaults, bit for bit: detect()'s are those the validation protocol
-- chose (bench/README.md), every parameter given explicitly below; the KDA
-- window functions keep KDA's ('none').
SELECT count(*) FILTER (WHERE x::text IS DISTINCT FROM y::text) AS detect_mismatches,
       count(*) FILTER (WHERE s1 IS DISTINCT FROM s2) AS score_mismatches,
       count(*) FILTER (WHERE (x).is_anomaly) AS detect_anomalies
FROM (SELECT anomaly.detect(ARRAY[a, b]) OVER w AS x,
             anomaly.detect(ARRAY[a, b], number_of_trees => 100, sub_sample_size => 256,
                            time_decay => 100000, shingle_size => 8, seed => 42, z_factor => 4,
                            score_floor => 0.8, ignore_near_expected_above => 0,
                            ignore_near_expected_below => 0, ignore_near_expected_above_ratio => 0,
                            ignore_near_expected_below_ratio => 0, suppress => 100,
                            score_horizon => 3000, missing => 'skip', feature_names => NULL,
                            cusum_drift => 2, cusum_threshold => 0, transform => 'normalize',
                            transform_decay => 0.0001, transform_weights => NULL) OVER w AS y,
             anomaly.random_cut_forest(ARRAY[a, b], 30, 64) OVER w AS s1,
             anomaly.random_cut_forest(ARRAY[a, b], 30, 64, transform => 'none') OVER w AS s2
      FROM mixed WINDOW w AS (ORDER BY t)) s;

-- Every transform on the four features (a constant one among them), shingle
-- 4: no NaN or infinite score, grade or expected value; where the spike in
-- the small feature a fires.  With 'none' the features in large units
-- drown it.
SELECT m AS transform,
       count(*) FILTER (WHERE NOT ((d).anomaly_score BETWEEN 0 AND 1e6)
                        OR NOT ((d).anomaly_grade BETWEEN 0 AND 1)) AS not_finite,
       count(*) FILTER (WHERE EXISTS (SELECT 1 FROM unnest((d).expected) e
                                     WHERE NOT (e BETWEEN -1e300 AND 1e300))) AS bad_expected,
       bool_or((d).is_anomaly AND t BETWEEN 2000 AND 2003) AS spike_found
FROM (SELECT m, t, anomaly.detect(ARRAY[a, b, c, d], 50, 128, shingle_size => 4, transform => m)
                      OVER (PARTITION BY m ORDER BY t) AS d
      FROM mixed, unnest(ARRAY['none', 'weighted', 'subtract_ma', 'difference', 'normalize',
                               'normalize_difference']) m) s
GROUP BY m ORDER BY m;

-- Weights: a weight of 0 hides a feature from the forest; with weights
-- (1, 0, 0, 0) the scores are those of the first feature alone.
SELECT count(*) FILTER (WHERE x IS DISTINCT FROM y) AS mismatches
FROM (SELECT anomaly.random_cut_forest(ARRAY[a, b, c, d], 30, 64, transform => 'weighted',
                                       transform_weights => ARRAY[1, 0, 0, 0]) OVER w AS x,
             anomaly.random_cut_forest(ARRAY[a, 0, 0, 0], 30, 64) OVER w AS y
      FROM mixed WINDOW w AS (ORDER BY t)) s;

-- The expected values of the spike are in the caller's units: near 0 for
-- a, near a million for b, 5 for the constant c.
SELECT abs((d).expected[1]) < 1 AS a_near_0, abs((d).expected[2] - 1e6) < 1000 AS b_near_1e6,
       (d).expected[3] = 5 AS c_is_5, abs((d).expected[4]) < 0.001 AS d_near_0
FROM (SELECT t, anomaly.detect(ARRAY[a, b, c, d], 50, 128, shingle_size => 4, transform => 'normalize')
                  OVER (ORDER BY t) AS d FROM mixed) s
WHERE t = 2000;

-- A constant feature alone, then a change of it: finite scores, no NaN.
SELECT count(*) FILTER (WHERE (d).anomaly_score = 'NaN') AS nan_scores,
       count(*) FILTER (WHERE (d).is_anomaly AND t < 400) AS fired_while_constant,
       max((d).anomaly_score) FILTER (WHERE t < 400) AS max_score_while_constant,
       bool_or((d).is_anomaly AND t >= 400) AS change_fires
FROM (SELECT t, anomaly.detect(ARRAY[CASE WHEN t >= 400 THEN 6.0 ELSE 5.0 END], 30, 64,
                               transform => m) OVER (PARTITION BY m ORDER BY t) AS d
      FROM generate_series(1, 600) t, unnest(ARRAY['normalize', 'normalize_difference']) m) s;

-- The KDA window functions with a transform see what detect() sees.
SELECT count(*) FILTER (WHERE s IS DISTINCT FROM (d).anomaly_score) AS mismatches,
       count(*) FILTER (WHERE e IS NULL) AS no_explanation
FROM (SELECT anomaly.random_cut_forest(ARRAY[a, b], 30, 64, 100000, 2, 7, transform => 'subtract_ma',
                                       transform_decay => 0.01) OVER w AS s,
             anomaly.random_cut_forest_with_explanation(ARRAY[a, b], 30, 64, 100000, 2, false, 7,
                                                        transform => 'subtract_ma', transform_decay => 0.01) OVER w AS e,
             anomaly.detect(ARRAY[a, b], 30, 64, 100000, 2, 7, transform => 'subtract_ma',
                            transform_decay => 0.01) OVER w AS d
      FROM mixed WINDOW w AS (ORDER BY t)) s;

-- Missing values with a transform: 'previous' and 'impute' work in the
-- caller's units.
SELECT policy, count(*) AS rows, count(d) AS results,
       bool_and(d IS NULL OR NOT EXISTS (SELECT 1 FROM unnest((d).expected) e WHERE e = 'NaN')) AS finite
FROM (SELECT 'previous' AS policy, t, anomaly.detect(ARRAY[a, CASE WHEN t % 50 = 0 THEN NULL ELSE b END], 30, 64,
                                                  missing => 'previous', transform => 'normalize') OVER (ORDER BY t) AS d
      FROM mixed WHERE t <= 1000
      UNION ALL
      SELECT 'impute', t, anomaly.detect(ARRAY[a, CASE WHEN t % 50 = 0 THEN NULL ELSE b END], 30, 64,
                                         missing => 'impute', transform => 'normalize') OVER (ORDER BY t)
      FROM mixed WHERE t <= 1000) s
GROUP BY policy ORDER BY policy;

-- A model trained with a transform: rcf_detect of the next point equals
-- detect() over all the points, and rcf_info shows the transform.
CREATE TABLE mt AS
SELECT anomaly.rcf_train(ARRAY[a, b, d], 50, 128, 100000, 4, 7, 'normalize_difference', 0.01,
                         ARRAY[1, 0.5, 2] ORDER BY t) AS model
FROM mixed WHERE t < 2000;
SELECT anomaly.rcf_detect(model, ARRAY[a, b, d])::text = w::text AS equal, (w).is_anomaly
FROM mt, mixed, (SELECT t AS wt, anomaly.detect(ARRAY[a, b, d], 50, 128, 100000, 4, 7,
                                                transform => 'normalize_difference', transform_decay => 0.01,
                                                transform_weights => ARRAY[1, 0.5, 2]) OVER (ORDER BY t) AS w
                 FROM mixed) x
WHERE t = 2000 AND wt = 2000;
SELECT anomaly.rcf_score(model, ARRAY[a, b, d]) = (w).anomaly_score AS score_equal
FROM mt, mixed, (SELECT t AS wt, anomaly.detect(ARRAY[a, b, d], 50, 128, 100000, 4, 7,
                                                transform => 'normalize_difference', transform_decay => 0.01,
                                                transform_weights => ARRAY[1, 0.5, 2]) OVER (ORDER BY t) AS w
                 FROM mixed) x
WHERE t = 2000 AND wt = 2000;
SELECT anomaly.rcf_info(model) -> 'transform' AS transform FROM mt;
-- rcf_update continues the transform: training on the first 1500 points
-- and updating with the next 499 gives the same model.
SELECT anomaly.rcf_update(m1, (SELECT array_agg(ARRAY[a, b, d] ORDER BY t) FROM mixed WHERE t BETWEEN 1500 AND 1999))::text
       = (SELECT model::text FROM mt) AS same_model
FROM (SELECT anomaly.rcf_train(ARRAY[a, b, d], 50, 128, 100000, 4, 7, 'normalize_difference', 0.01,
                               ARRAY[1, 0.5, 2] ORDER BY t) AS m1
      FROM mixed WHERE t < 1500) s;
-- rcf_set_grading keeps the transform.
SELECT anomaly.rcf_info(anomaly.rcf_set_grading(model, z_factor => 4)) -> 'transform' -> 'method' AS method FROM mt;

-- A model stored before transforms existed (encoded by the engine of
-- commit f90745a: 2 features, 3 trees, 16 samples, a grader, 200 points)
-- decodes unchanged, is written back in the current format (version 2, its
-- next update re-encodes it) scoring the same, and scores and grades as
-- that engine did (score 2.3878417828656304, grade 0.80633559344458883
-- for the point (5, 103)).
CREATE TABLE old_model AS SELECT 'UkNGTQEAAADBYqXmAgAAAAEAAAADAAAAEAAAAAQAAAAAAAAAAGr4QCoAAAAAAAAAyAAAAAAAAADIAAAAAAAAAAAAAAAAAAAAyLZpPwAA0EIwJwYCc+skPwAAyEKmpDc/AADKQgICKiZkPwAA0EIdmm4/AADSQgYBuUByPwAA0kIDAYnmPj8AAMxCAwGJ0do+AADUQgIBw4EQPgAAzEIGAVejB78AAMxCAQFxETC/AADQQgIBlx9fvwAAyEIBATKcc78AAMxCAwGlBH+/AADUQgEBEHx1vwAAykIFAbGaIb8AAMhCAQFW4O2+AADMQggBfUjPPgAA0EIDAredOj8AAMpC0S1LPwAAzEIEAZj4fD8AAMhCBQG89GY/AADUQgEBp2lMPwAAykIMAieju74AAMhCJULqvgAAykICAf0qM78AANBCAwEDO2y/AADKQgcBHVlrvwAAzEICA1sRQ78AANJC3IoxvwAA1EI8Ph6/AADIQgQBJJQpvgAA0kIDAekQbT4AAMxCAQEiINc+AADQQgEBIZIXPwAA1EIDAgfyWz8AAM5CpuxnPwAA0EICAXKYfT8AAMhCAgEWnXw/AADOQgoBVDKbPgAAyEIJAfZaI78AAM5CAQEVQke/AADSQgIBEtttvwAAykIPAp9Zr74AAM5CquZ8vgAA0EICAQWITj0AAMhCAQJAyH0+AADMQvnGrz4AAM5CAwErlS4/AADIQgYBAwEHBAQDBwIDAgQCBgIJBAEFBgINAQMECAMBAQUEAgIEAQMDCwoCAxABAwIBBBDTUTGHlFzzEB4eJ8CgUC7Aa5c/wL9nOsCpXS/A61FBwHBNW8D2xJPA38hiwC6CQsBWs0jAcmBZwMDSRsBjT6LA3FmWwGE9ocAiJgQMAiMpIBUIHxYYGQ8QAtjhykICc7LIQgCzrTM+LU0ANQ2mvQBepWy/UzMrAidvzkIAIqAGPwDYsfG+EQAnD5i+Hz9FAKEnPr8ZAIwx3z4AKL2cPTEA8tHUPiFBAhzs0UIAFAdnPwVHCR150XOYJbQWECj7EcAYBBzAISwSwGhSJ8CPlCbAe+8VwEYhGcAnpG/AucqFwNzbKMA+XWTAgcUiwKL8tcBTqTPABMDTwCCkm8ATBy4FLQ0oLycKJAYlAB4RADaC0L4CasLJQhUCQMPMQhsCF6TQQk9RAnzrzEICCsjLQgKu78hCAPGwZT8AyycqPwFfAEJZfT8nSSMAmVaiPgAMnXM+D1sLAoQozkIAG/NXP11LAjer0kI9DdHKR+ex/h1+EB7BF8AgxifAF6sqwC/hQMA/hDPAUj03wGthMMCt80LA9EpowFGSQ8AV/GLA3Zt9wP2ePMCMbHvAwEtXwIkk18AXGwMBKyoaCR0LFCEOEhwsAnRc0EIC2PrPQgA4Wzm/AB1ycr8XNQDPYBU+AgEpy0IC2OPIQgCIX22+AEtSIL8dO1kvVQJ6MspCAyUAlHWXvhNXAurp00IAKssRPjcHABeMKjw5AI1EKD9DKQECmAEAAAAAAAAIQJqZmZmZmek/AAAAAABwp0AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAEAAABkAAAAIAAAAG9/HKonPO8/qHYHKo/ioz/EAAAAAAAAAAAAAAAAAAAAAQAAAFMS7mL5CO4/AAAAAAAAAAAAAAAAAAAAQAAAAAAAAChAAAAAAAAAAABTEu5i+QjuPw=='::anomaly.rcf AS model;
SELECT anomaly.rcf_info(model) ? 'transform' AS has_transform,
       anomaly.rcf_info(model) -> 'updates' AS updates,
       anomaly.rcf_info(model) -> 'format_version' AS stored_version,
       anomaly.rcf_info(anomaly.rcf_update(model, ARRAY[[NULL, NULL]]::float8[])) -> 'format_version' AS written_version,
       (anomaly.rcf_detect(anomaly.rcf_update(model, ARRAY[[NULL, NULL]]::float8[]), ARRAY[5, 103])).anomaly_score = 2.3878417828656304 AS rewritten_same_score,
       (anomaly.rcf_detect(model, ARRAY[5, 103])).anomaly_score = 2.3878417828656304 AS same_score,
       (anomaly.rcf_detect(model, ARRAY[5, 103])).anomaly_grade = 0.80633559344458883 AS same_grade
FROM old_model;

-- Detectors: the transform options, checked when the detector is created.
CREATE TABLE tf_src (id bigserial PRIMARY KEY, k int, a float8, b float8);
SELECT state, message, hint FROM try_sql($$SELECT anomaly.create_detector('tf_bad', 'tf_src', ARRAY['a'], options => '{"transform": "Normalize"}')$$);
SELECT state, message, hint FROM try_sql($$SELECT anomaly.create_detector('tf_bad', 'tf_src', ARRAY['a'], options => '{"transform": 1}')$$);
SELECT state, message, hint FROM try_sql($$SELECT anomaly.create_detector('tf_bad', 'tf_src', ARRAY['a'], options => '{"transform": "normalize", "transform_decay": 2}')$$);
SELECT state, message, hint FROM try_sql($$SELECT anomaly.create_detector('tf_bad', 'tf_src', ARRAY['a', 'b'], options => '{"transform": "weighted", "transform_weights": [1]}')$$);
SELECT state, message, hint FROM try_sql($$SELECT anomaly.create_detector('tf_bad', 'tf_src', ARRAY['a'], options => '{"transform": "weighted", "transform_weights": ["x"]}')$$);
SELECT state, message, hint FROM try_sql($$SELECT anomaly.create_detector('tf_bad', 'tf_src', ARRAY['a'], options => '{"transform": "none", "transform_weights": [2]}')$$);
SELECT count(*) AS created FROM anomaly.detectors WHERE name = 'tf_bad';

-- A detector with a transform scores, grades and expects as detect() with
-- it over the same rows of each key in commit order, over several rounds.
SELECT anomaly.create_detector('tf_det', 'tf_src', ARRAY['a', 'b'], partition_by => 'k',
	options => '{"number_of_trees": 20, "sub_sample_size": 32, "shingle_size": 2, "seed": 7,
	             "transform": "normalize", "transform_decay": 0.05, "transform_weights": [1, 0.25]}') IS NOT NULL AS created;
SELECT options -> 'transform' AS transform, options -> 'transform_decay' AS decay,
       options -> 'transform_weights' AS weights
FROM anomaly.detectors WHERE name = 'tf_det';
INSERT INTO tf_src (k, a, b) SELECT t % 2, noise(t), 1e6 + 1000 * noise(t + 7) FROM generate_series(1, 300) t;
SELECT anomaly.process('tf_det') AS consumed;
INSERT INTO tf_src (k, a, b) VALUES (0, 5, 1e6), (1, 0, 1e6 + 8000), (0, 5, 5);
INSERT INTO tf_src (k, a, b) SELECT t % 2, noise(t + 1000), 1e6 + 1000 * noise(t + 2000) FROM generate_series(1, 100) t;
SELECT anomaly.process('tf_det') AS consumed;
SELECT count(*) AS compared,
	count(*) FILTER (WHERE s.anomaly_score IS DISTINCT FROM w.score) AS different,
	count(*) FILTER (WHERE s.anomaly_score IS DISTINCT FROM (w.d).anomaly_score
	                    OR s.anomaly_grade IS DISTINCT FROM (w.d).anomaly_grade
	                    OR s.is_anomaly IS DISTINCT FROM (w.d).is_anomaly
	                    OR s.expected IS DISTINCT FROM (w.d).expected) AS different_detections,
	count(*) FILTER (WHERE s.is_anomaly) > 0 AS some_anomalies,
	count(s.expected) > 0 AS some_expected
FROM anomaly.scores s
JOIN (SELECT r.id,
		anomaly.random_cut_forest(ARRAY[r.a, r.b], 20, 32, 100000, 2, 7, 'normalize', 0.05, ARRAY[1, 0.25])
			OVER (PARTITION BY r.k ORDER BY s2.commit_lsn, r.id) AS score,
		anomaly.detect(ARRAY[r.a, r.b], 20, 32, 100000, 2, 7, transform => 'normalize',
		               transform_decay => 0.05, transform_weights => ARRAY[1, 0.25])
			OVER (PARTITION BY r.k ORDER BY s2.commit_lsn, r.id) AS d
	FROM tf_src r
	JOIN anomaly.scores s2 ON s2.detector = 'tf_det' AND (s2.source_key->>'id')::bigint = r.id) w
	ON (s.source_key->>'id')::bigint = w.id
WHERE s.detector = 'tf_det';
SELECT anomaly.drop_detector('tf_det');

-- A detector stored before transforms (0.1.0: no "transform" key) meant
-- none, and keeps that meaning when altered: its options are normalized
-- again with transform none, no transform_decay, and its models are kept.
SELECT anomaly.create_detector('tf_old', 'tf_src', ARRAY['a'],
	options => '{"shingle_size": 1, "z_factor": 3, "cusum_threshold": 12, "transform": "none"}') IS NOT NULL AS created;
UPDATE anomaly.detectors SET options = options - 'transform' WHERE name = 'tf_old';
SELECT generation AS before FROM anomaly.detectors WHERE name = 'tf_old' \gset
SELECT anomaly.alter_detector('tf_old', options => '{"retention": "7 days"}') IS NOT NULL AS altered;
SELECT options -> 'transform' AS transform, options ? 'transform_decay' AS has_decay,
       options -> 'shingle_size' AS shingle, generation = :before AS models_kept
FROM anomaly.detectors WHERE name = 'tf_old';
-- Without options a detector gets the new defaults, written out.
SELECT anomaly.alter_detector('tf_old', options => '{"shingle_size": null, "z_factor": null, "cusum_threshold": null, "transform": null}') IS NOT NULL AS altered;
SELECT options -> 'transform' AS transform, options -> 'transform_decay' AS decay,
       options -> 'shingle_size' AS shingle, options -> 'z_factor' AS z_factor,
       options -> 'cusum_threshold' AS cusum_threshold, generation = :before AS models_kept
FROM anomaly.detectors WHERE name = 'tf_old';
SELECT anomaly.drop_detector('tf_old');
DROP TABLE mixed, mt, old_model, tf_src;
DROP FUNCTION noise(integer), try_sql(text);
