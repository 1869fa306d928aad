-- RANDOM_CUT_FOREST as a window function: results, defaults, named
-- arguments, inputs, and every error.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS anomaly;
RESET client_min_messages;
SET extra_float_digits = 0;

-- A seasonal series with one spike at t = 700, in two zones.
CREATE TABLE rides AS
SELECT t, zone,
       round((20 + 8 * sin(2 * pi() * t / 50.0) + (t % 7) * 0.3
              + CASE WHEN t = 700 AND zone = 'a' THEN 40 ELSE 0 END)::numeric, 3)::float8 AS fare,
       (t % 11)::float8 + 3 AS distance,
       'ride ' || t AS note
FROM generate_series(1, 1000) t, (VALUES ('a'), ('b')) z(zone);

-- The spike is the top anomaly of zone a, and stands out.
SELECT t, round(score::numeric, 2) > 2 AS high
FROM (SELECT t, anomaly.random_cut_forest(ARRAY[fare, distance]) OVER (ORDER BY t) AS score
      FROM rides WHERE zone = 'a') s
ORDER BY score DESC LIMIT 1;

-- KDA defaults: 100 trees, 256 samples, time decay 100000, shingle 1 (and seed 42).
SELECT count(*) AS rows, count(*) FILTER (WHERE d <> e) AS mismatches
FROM (SELECT anomaly.random_cut_forest(ARRAY[fare]) OVER w AS d,
             anomaly.random_cut_forest(ARRAY[fare], 100, 256, 100000, 1, 42) OVER w AS e
      FROM rides WINDOW w AS (PARTITION BY zone ORDER BY t)) s;

-- Named notation equals positional.
SELECT count(*) FILTER (WHERE a <> b) AS mismatches
FROM (SELECT anomaly.random_cut_forest(ARRAY[fare], number_of_trees => 30, shingle_size => 2) OVER w AS a,
             anomaly.random_cut_forest(ARRAY[fare], 30, 256, 100000, 2) OVER w AS b
      FROM rides WINDOW w AS (PARTITION BY zone ORDER BY t)) s;

-- Warm-up: the score is 0 for sub_sample_size / 4 points, then positive.
SELECT min(t) FILTER (WHERE score > 0) AS first_scored,
       max(t) FILTER (WHERE score = 0) AS last_zero
FROM (SELECT t, anomaly.random_cut_forest(ARRAY[fare]) OVER (ORDER BY t) AS score
      FROM rides WHERE zone = 'a') s;

-- With shingling, shingle_size - 1 more records are needed first.
SELECT min(t) FILTER (WHERE score > 0) AS first_scored
FROM (SELECT t, anomaly.random_cut_forest(ARRAY[fare], sub_sample_size => 40, shingle_size => 5) OVER (ORDER BY t) AS score
      FROM rides WHERE zone = 'a') s;

-- Partitions are independent: zone b alone scores as within the partitioned query.
SELECT count(*) FILTER (WHERE p.score <> alone.score) AS mismatches
FROM (SELECT t, anomaly.random_cut_forest(ARRAY[fare]) OVER (PARTITION BY zone ORDER BY t) AS score, zone
      FROM rides) p
JOIN (SELECT t, anomaly.random_cut_forest(ARRAY[fare]) OVER (ORDER BY t) AS score
      FROM rides WHERE zone = 'b') alone USING (t)
WHERE p.zone = 'b';

-- The frame does not matter: each row is learned once, in ORDER BY order.
SELECT count(*) FILTER (WHERE a <> b) AS mismatches
FROM (SELECT anomaly.random_cut_forest(ARRAY[fare]) OVER (ORDER BY t) AS a,
             anomaly.random_cut_forest(ARRAY[fare]) OVER (ORDER BY t ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) AS b
      FROM rides WHERE zone = 'a') s;

-- The seed: the same seed repeats exactly, another seed differs.
SELECT count(*) FILTER (WHERE a <> b) AS same_seed_mismatches,
       count(*) FILTER (WHERE a <> c) > 500 AS other_seed_differs
FROM (SELECT anomaly.random_cut_forest(ARRAY[fare], seed => 7) OVER w AS a,
             anomaly.random_cut_forest(ARRAY[fare], seed => 7) OVER w AS b,
             anomaly.random_cut_forest(ARRAY[fare], seed => 8) OVER w AS c
      FROM rides WHERE zone = 'a' WINDOW w AS (ORDER BY t)) s;

-- A row uses its numeric columns in column order and ignores the others.
SELECT count(*) FILTER (WHERE a <> b) AS mismatches
FROM (SELECT anomaly.random_cut_forest(r) OVER (ORDER BY r.t) AS a,
             anomaly.random_cut_forest(ARRAY[r.t, r.fare, r.distance]) OVER (ORDER BY r.t) AS b
      FROM rides r WHERE zone = 'a') s;

-- smallint, integer, bigint, real, double precision and numeric columns all count.
SELECT anomaly.random_cut_forest(ROW(1::smallint, 2::integer, 3::bigint, 4::real, 5::float8, 6::numeric, 'x'::text))
       OVER (ORDER BY t) IS NOT NULL AS six_numeric_columns FROM generate_series(1, 1) t;

-- NULL point or NULL value: NULL score, and the row is not learned.
CREATE TABLE gaps AS SELECT t::numeric AS t, fare FROM rides WHERE zone = 'a';
INSERT INTO gaps VALUES (100.5, NULL);
SELECT t, anomaly.random_cut_forest(ARRAY[fare]) OVER (ORDER BY t) AS score
FROM gaps WHERE t = 100.5;
SELECT t, anomaly.random_cut_forest(CASE WHEN t = 100.5 THEN NULL ELSE ARRAY[fare] END) OVER (ORDER BY t) AS score
FROM gaps WHERE t = 100.5;
SELECT count(*) FILTER (WHERE g.score IS DISTINCT FROM r.score) AS mismatches
FROM (SELECT t, anomaly.random_cut_forest(ARRAY[fare]) OVER (ORDER BY t) AS score FROM gaps) g
JOIN (SELECT t, anomaly.random_cut_forest(ARRAY[fare]) OVER (ORDER BY t) AS score FROM rides WHERE zone = 'a') r USING (t);

-- Explanation: KDA's shape, keys "1", "2", ... or feature_names.
SELECT anomaly.random_cut_forest_with_explanation(ARRAY[fare, distance]) OVER (ORDER BY t) ? '1' AS has_1,
       jsonb_object_keys(anomaly.random_cut_forest_with_explanation(ARRAY[fare, distance]) OVER (ORDER BY t) -> '2') AS keys
FROM rides WHERE zone = 'a' ORDER BY t DESC LIMIT 1;

-- With directionality: DIRECTION and STRENGTH; the spike is fare, HIGH.
SELECT e -> 'fare' ->> 'DIRECTION' AS direction,
       (e -> 'fare' ->> 'STRENGTH')::float8 BETWEEN 0.9 AND 1 AS strong,
       (e -> 'fare' ->> 'ATTRIBUTION_SCORE')::float8 > (e -> 'distance' ->> 'ATTRIBUTION_SCORE')::float8 AS fare_explains_most
FROM (SELECT t, anomaly.random_cut_forest_with_explanation(ARRAY[fare, distance], 100, 256, 100000, 1, true,
                    feature_names => ARRAY['fare', 'distance']) OVER (ORDER BY t) AS e
      FROM rides WHERE zone = 'a') s
WHERE t = 700;

-- The attribution scores add up to the anomaly score (to the 4 printed decimals).
SELECT max(abs(score - attributed)) < 0.0005 AS sums_to_score, count(*) AS rows
FROM (SELECT score, (SELECT sum((v ->> 'ATTRIBUTION_SCORE')::float8) FROM jsonb_each(e) AS x(k, v)) AS attributed
      FROM (SELECT anomaly.random_cut_forest(ARRAY[fare, distance], shingle_size => 3) OVER w AS score,
                   anomaly.random_cut_forest_with_explanation(ARRAY[fare, distance], shingle_size => 3) OVER w AS e
            FROM rides WHERE zone = 'a' WINDOW w AS (ORDER BY t)) s) s2;

-- A row's explanation is keyed by its numeric column names.
SELECT jsonb_object_keys(anomaly.random_cut_forest_with_explanation(r) OVER (ORDER BY r.t)) AS key
FROM rides r WHERE zone = 'a' ORDER BY r.t DESC, key LIMIT 3;

-- A long partition takes one pass in fixed memory.
SELECT count(*), max(score) > 0 AS scored
FROM (SELECT anomaly.random_cut_forest(ARRAY[(t % 97)::float8], number_of_trees => 5, sub_sample_size => 64) OVER (ORDER BY t) AS score
      FROM generate_series(1, 300000) t) s;

-- Any role may use the analysis functions.
CREATE ROLE anomaly_regress_reader;
SET ROLE anomaly_regress_reader;
SELECT round(anomaly.random_cut_forest(ARRAY[(t % 7)::float8], number_of_trees => 10) OVER (ORDER BY t)::numeric, 3) > 0 AS scored
FROM generate_series(1, 100) t ORDER BY t DESC LIMIT 1;
RESET ROLE;
DROP ROLE anomaly_regress_reader;

-- Errors name the parameter and its range.
SELECT anomaly.random_cut_forest(ARRAY[1.0], number_of_trees => 0) OVER (ORDER BY t) FROM generate_series(1, 1) t;
SELECT anomaly.random_cut_forest(ARRAY[1.0], number_of_trees => 1001) OVER (ORDER BY t) FROM generate_series(1, 1) t;
SELECT anomaly.random_cut_forest(ARRAY[1.0], sub_sample_size => 9) OVER (ORDER BY t) FROM generate_series(1, 1) t;
SELECT anomaly.random_cut_forest(ARRAY[1.0], sub_sample_size => 1001) OVER (ORDER BY t) FROM generate_series(1, 1) t;
SELECT anomaly.random_cut_forest(ARRAY[1.0], sub_sample_size => 500, time_decay => 500) OVER (ORDER BY t) FROM generate_series(1, 1) t;
SELECT anomaly.random_cut_forest(ARRAY[1.0], shingle_size => 0) OVER (ORDER BY t) FROM generate_series(1, 1) t;
SELECT anomaly.random_cut_forest(ARRAY[1.0], shingle_size => 31) OVER (ORDER BY t) FROM generate_series(1, 1) t;
SELECT anomaly.random_cut_forest(ARRAY[1.0], number_of_trees => NULL) OVER (ORDER BY t) FROM generate_series(1, 1) t;
SELECT anomaly.random_cut_forest(ARRAY[1.0], seed => NULL) OVER (ORDER BY t) FROM generate_series(1, 1) t;
SELECT anomaly.random_cut_forest((SELECT array_agg(g::float8) FROM generate_series(1, 40) g), shingle_size => 30) OVER (ORDER BY t) FROM generate_series(1, 1) t;

-- Bad points.
SELECT anomaly.random_cut_forest(ARRAY['NaN'::float8]) OVER (ORDER BY t) FROM generate_series(1, 1) t;
SELECT anomaly.random_cut_forest(ARRAY[1, 'Infinity'::float8]) OVER (ORDER BY t) FROM generate_series(1, 1) t;
SELECT anomaly.random_cut_forest(ARRAY[1e300::float8]) OVER (ORDER BY t) FROM generate_series(1, 1) t;
SELECT anomaly.random_cut_forest('{}'::float8[]) OVER (ORDER BY t) FROM generate_series(1, 1) t;
SELECT anomaly.random_cut_forest('{{1,2},{3,4}}'::float8[]) OVER (ORDER BY t) FROM generate_series(1, 1) t;
SELECT anomaly.random_cut_forest(CASE WHEN t = 1 THEN ARRAY[1.0::float8] ELSE ARRAY[1.0, 2.0]::float8[] END) OVER (ORDER BY t)
FROM generate_series(1, 2) t;
SELECT anomaly.random_cut_forest(ROW('a'::text, now())) OVER (ORDER BY t) FROM generate_series(1, 1) t;
SELECT anomaly.random_cut_forest_with_explanation(ARRAY[1.0, 2.0], feature_names => ARRAY['x']) OVER (ORDER BY t) FROM generate_series(1, 1) t;
SELECT anomaly.random_cut_forest_with_explanation(ARRAY[1.0, 2.0], feature_names => ARRAY['x', NULL]) OVER (ORDER BY t) FROM generate_series(1, 1) t;
SELECT anomaly.random_cut_forest_with_explanation(ARRAY[1.0], with_directionality => NULL) OVER (ORDER BY t) FROM generate_series(1, 1) t;

-- A window without ORDER BY is refused: the forest would learn the rows in
-- an arbitrary order.  PARTITION BY alone, or a named window, is no better.
SELECT anomaly.random_cut_forest(ARRAY[fare]) OVER () FROM rides;
SELECT anomaly.random_cut_forest(ARRAY[fare]) OVER (PARTITION BY zone) FROM rides;
SELECT anomaly.random_cut_forest_with_explanation(ARRAY[fare]) OVER w FROM rides WINDOW w AS (PARTITION BY zone);
SELECT anomaly.random_cut_forest(r) OVER () FROM rides r;
-- Refused as soon as a row arrives, even one without a point.
SELECT anomaly.random_cut_forest(NULL::float8[]) OVER () FROM rides WHERE false;
SELECT anomaly.random_cut_forest(NULL::float8[]) OVER () FROM rides LIMIT 1;

-- A frame is ignored, said once per query (not once per partition); the
-- scores are the default frame's.
SELECT count(*) FILTER (WHERE a <> b) AS mismatches, count(*) AS n
FROM (SELECT anomaly.random_cut_forest(ARRAY[fare]) OVER (PARTITION BY zone ORDER BY t) AS a,
             anomaly.random_cut_forest(ARRAY[fare]) OVER (PARTITION BY zone ORDER BY t GROUPS 3 PRECEDING) AS b
      FROM rides) s;
SELECT count(e) AS n FROM (SELECT anomaly.random_cut_forest_with_explanation(ARRAY[fare])
       OVER (ORDER BY t RANGE BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING) AS e FROM rides) s;
-- The default frame written out, or ROWS from the start, is what the
-- function does anyway: no notice.
SELECT count(a) AS n, count(b) AS m FROM (SELECT anomaly.random_cut_forest(ARRAY[fare])
       OVER (ORDER BY t RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS a,
       anomaly.random_cut_forest(ARRAY[fare]) OVER (ORDER BY t ROWS UNBOUNDED PRECEDING) AS b FROM rides) s;
-- A frame that excludes rows is not.
SELECT count(a) AS n FROM (SELECT anomaly.random_cut_forest(ARRAY[fare])
       OVER (ORDER BY t ROWS UNBOUNDED PRECEDING EXCLUDE CURRENT ROW) AS a FROM rides) s;

-- The row form skips a table's identity and serial columns (they count rows,
-- they measure nothing), and any column whose default takes nextval().
CREATE SEQUENCE trip_numbers;
CREATE TABLE trips (id integer GENERATED ALWAYS AS IDENTITY, big bigserial,
                    small smallserial, ref bigint DEFAULT nextval('trip_numbers'),
                    t integer, fare float8, note text, n numeric DEFAULT 1);
INSERT INTO trips (t, fare) SELECT t, fare FROM rides WHERE zone = 'a' ORDER BY t;
SELECT count(*) FILTER (WHERE a <> b) AS mismatches_without_counters, count(*) AS n
FROM (SELECT anomaly.random_cut_forest(r) OVER (ORDER BY r.t) AS a,
             anomaly.random_cut_forest(ARRAY[r.t, r.fare, r.n]) OVER (ORDER BY r.t) AS b
      FROM trips r) s;
-- Column names in the explanation: t, fare and n only.
SELECT array_agg(k ORDER BY k) AS features
FROM (SELECT anomaly.random_cut_forest_with_explanation(r) OVER (ORDER BY r.t) AS e
      FROM trips r ORDER BY r.t LIMIT 1) s, jsonb_object_keys(e) k;
-- To include them, name them: a ROW(...) has no table behind it.
SELECT count(*) FILTER (WHERE a <> b) AS mismatches_with_id, count(*) FILTER (WHERE a <> c) > 0 AS id_changes_scores
FROM (SELECT anomaly.random_cut_forest(ROW(r.id, r.t, r.fare)) OVER (ORDER BY r.t) AS a,
             anomaly.random_cut_forest(ARRAY[r.id, r.t, r.fare]) OVER (ORDER BY r.t) AS b,
             anomaly.random_cut_forest(ARRAY[r.t, r.fare]) OVER (ORDER BY r.t) AS c
      FROM trips r) s;
-- The spike keeps its score: an id column no longer dilutes it.
CREATE TABLE fares (id serial, fare float8);
INSERT INTO fares (fare) SELECT fare FROM rides WHERE zone = 'a' ORDER BY t;
SELECT round(max(a)::numeric, 6) = round(max(b)::numeric, 6) AS spike_score_kept,
       max(a) > max(c) AS id_would_dilute_it
FROM (SELECT anomaly.random_cut_forest(r) OVER (ORDER BY r.id) AS a,
             anomaly.random_cut_forest(ARRAY[r.fare]) OVER (ORDER BY r.id) AS b,
             anomaly.random_cut_forest(ARRAY[r.id, r.fare]) OVER (ORDER BY r.id) AS c
      FROM fares r) s;
CREATE TABLE only_counters (id bigint GENERATED BY DEFAULT AS IDENTITY, label text);
INSERT INTO only_counters (label) VALUES ('x');
SELECT anomaly.random_cut_forest(c) OVER (ORDER BY c.id) FROM only_counters c;
DROP TABLE trips, fares, only_counters;
DROP SEQUENCE trip_numbers;
