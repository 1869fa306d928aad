-- hotspots(): KDA's HOTSPOTS as a window function.  KDA's result shape on
-- points whose hotspots are known exactly, two Gaussian clusters found in
-- uniform noise (KDA's own example: window 1000, scan radius 0.2, 17
-- points), the sliding window, the row form, partitions, NULLs, and every
-- parameter out of KDA's ranges.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS anomaly;
RESET client_min_messages;
\set SHOW_CONTEXT never

-- Points on a line, radius 1, at least 3 points: {0, 0.5, 1} (3 points over
-- a length of 1: density 3), {10, 10.9} (too few), {20 .. 21.5} (4 points
-- over 1.5).  Each row gets the hotspots of the rows so far, densest first.
SELECT i, x, anomaly.hotspots(ARRAY[x], 100, 1.0, 3) OVER (ORDER BY i)
FROM unnest(ARRAY[20.0, 0.0, 10.0, 0.5, 20.5, 10.9, 1.0, 21.0, 21.5]::float8[])
	WITH ORDINALITY AS t(x, i);

-- Neighbours are within the radius by Euclidean distance: (0,0) and
-- (0.8,0.8) are 1.13 apart, no hotspot; (0.6,0.7) between them joins all
-- three.  Sides narrower than the radius count as the radius: 3 / (1 * 1).
SELECT i, anomaly.hotspots(p, 100, 1.0, 2) OVER (ORDER BY i)
FROM (VALUES (1, ARRAY[0, 0]::float8[]), (2, ARRAY[0.8, 0.8]), (3, ARRAY[0.6, 0.7])) AS t(i, p);

-- Two Gaussian clusters (sigma 0.05 around (2,2) and (7,7)) and uniform
-- noise over [0,10]^2, 3,000 points generated deterministically.
CREATE TABLE hs_points (i int PRIMARY KEY, x float8, y float8, is_hot boolean);
SELECT setseed(0.25);
INSERT INTO hs_points
SELECT i,
	CASE WHEN u < 0.3 THEN 2 + 0.05 * g1 WHEN u < 0.6 THEN 7 + 0.05 * g1 ELSE 10 * v1 END,
	CASE WHEN u < 0.3 THEN 2 + 0.05 * g2 WHEN u < 0.6 THEN 7 + 0.05 * g2 ELSE 10 * v2 END,
	u < 0.6
FROM (SELECT i, u, v1, v2,
		sqrt(-2 * ln(1 - a)) * cos(2 * pi() * b) AS g1,
		sqrt(-2 * ln(1 - a)) * sin(2 * pi() * b) AS g2
	  FROM (SELECT i, random() AS u, random() AS v1, random() AS v2,
				random() AS a, random() AS b
			FROM generate_series(1, 3000) AS i ORDER BY i) AS r) AS s;

CREATE TEMP TABLE hs_result AS
SELECT i, anomaly.hotspots(ARRAY[x, y], 1000, 0.2, 17) OVER (ORDER BY i) AS r
FROM hs_points;

-- The last row's hotspots: exactly the two clusters, each box around its
-- centre, far denser than the noise (400 points over 100: 4 per unit).
SELECT h.ord,
	round((h.v->'minValues'->>0)::numeric, 1) AS min_x,
	round((h.v->'maxValues'->>0)::numeric, 1) AS max_x,
	round((h.v->'minValues'->>1)::numeric, 1) AS min_y,
	round((h.v->'maxValues'->>1)::numeric, 1) AS max_y,
	(h.v->>'density')::float8 > 1000 AS dense
FROM hs_result, jsonb_array_elements(r->'hotspots') WITH ORDINALITY AS h(v, ord)
WHERE i = 3000
ORDER BY min_x;

-- From row 100 on, every row sees both clusters and nothing else.
SELECT count(*) FILTER (WHERE jsonb_array_length(r->'hotspots') = 2) AS two,
	count(*) FILTER (WHERE jsonb_array_length(r->'hotspots') <> 2) AS other
FROM hs_result WHERE i >= 100;

-- KDA's keys and types, in every hotspot of every row.
SELECT count(*) AS hotspots_checked,
	bool_and(jsonb_typeof(h->'density') = 'number'
		AND jsonb_array_length(h->'minValues') = 2
		AND jsonb_array_length(h->'maxValues') = 2
		AND (SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(h) AS k)
			= ARRAY['density', 'maxValues', 'minValues']) AS kda_shape
FROM hs_result, jsonb_array_elements(r->'hotspots') AS h;

-- The row form reads the numeric columns (is_hot is ignored) and agrees
-- with the array form on every row.
SELECT count(*) AS rows, count(*) FILTER (WHERE a IS DISTINCT FROM b) AS differ
FROM (SELECT anomaly.hotspots(ARRAY[x, y], 1000, 0.2, 17) OVER w AS a,
			 anomaly.hotspots(ROW(x, y, is_hot), 1000, 0.2, 17) OVER w AS b
	  FROM hs_points WINDOW w AS (ORDER BY i)) AS t;

-- The window slides: 150 points at one place, then 150 spread far apart;
-- with a window of 100 the hotspot is gone once the last close point left.
SELECT min(i) FILTER (WHERE jsonb_array_length(r->'hotspots') = 0 AND i > 150) AS first_without,
	max(i) FILTER (WHERE jsonb_array_length(r->'hotspots') = 1) AS last_with
FROM (SELECT i, anomaly.hotspots(ARRAY[CASE WHEN i <= 150 THEN 0 ELSE i * 10 END]::float8[], 100, 0.5, 2)
		OVER (ORDER BY i) AS r
	  FROM generate_series(1, 300) AS i) AS t;

-- Partitions have their own windows.
SELECT k, i, anomaly.hotspots(ARRAY[x], 100, 0.5, 2) OVER (PARTITION BY k ORDER BY i)
FROM (VALUES ('a', 1, 0.0), ('b', 2, 0.1), ('a', 3, 0.2), ('b', 4, 5.0)) AS t(k, i, x)
ORDER BY k, i;

-- A NULL point, or one with a NULL value, gets NULL and stays out.
SELECT i, anomaly.hotspots(p, 100, 1.0, 2) OVER (ORDER BY i)
FROM (VALUES (1, ARRAY[0]::float8[]), (2, NULL), (3, ARRAY[NULL]::float8[]), (4, ARRAY[0.5])) AS t(i, p);

-- KDA's ranges: windowSize 100 .. 1000, scanRadius > 0,
-- minimumNumberOfPointsInAHotspot 2 .. windowSize; no defaults, no NULLs.
SELECT anomaly.hotspots(ARRAY[1.0], 99, 1, 2) OVER (ORDER BY 1);
SELECT anomaly.hotspots(ARRAY[1.0], 1001, 1, 2) OVER (ORDER BY 1);
SELECT anomaly.hotspots(ARRAY[1.0], 100, 0, 2) OVER (ORDER BY 1);
SELECT anomaly.hotspots(ARRAY[1.0], 100, -1, 2) OVER (ORDER BY 1);
SELECT anomaly.hotspots(ARRAY[1.0], 100, 'NaN', 2) OVER (ORDER BY 1);
SELECT anomaly.hotspots(ARRAY[1.0], 100, 'Infinity', 2) OVER (ORDER BY 1);
SELECT anomaly.hotspots(ARRAY[1.0], 100, 1, 1) OVER (ORDER BY 1);
SELECT anomaly.hotspots(ARRAY[1.0], 100, 1, 101) OVER (ORDER BY 1);
SELECT anomaly.hotspots(ARRAY[1.0], 1000, 1, 1000) OVER (ORDER BY 1) IS NOT NULL AS largest_accepted;
SELECT anomaly.hotspots(ARRAY[1.0], NULL, 1, 2) OVER (ORDER BY 1);
SELECT anomaly.hotspots(ARRAY[1.0], 100, NULL, 2) OVER (ORDER BY 1);
SELECT anomaly.hotspots(ARRAY[1.0], 100, 1, NULL) OVER (ORDER BY 1);
SELECT anomaly.hotspots(ARRAY[1.0]) OVER (ORDER BY 1);
SELECT anomaly.hotspots(ARRAY[]::float8[], 100, 1, 2) OVER (ORDER BY 1);
SELECT anomaly.hotspots(ARRAY['NaN']::float8[], 100, 1, 2) OVER (ORDER BY 1);

-- Every point has the first point's number of values.
SELECT anomaly.hotspots(p, 100, 1, 2) OVER (ORDER BY i)
FROM (VALUES (1, ARRAY[0, 0]::float8[]), (2, ARRAY[0]::float8[])) AS t(i, p);

-- The window must be ordered; a frame is ignored, with a notice.
SELECT anomaly.hotspots(ARRAY[x], 100, 1, 2) OVER () FROM generate_series(1, 3) AS x;
SELECT count(*) FILTER (WHERE a IS DISTINCT FROM b) AS differ, count(b) AS n
FROM (SELECT anomaly.hotspots(ARRAY[x, y], 1000, 0.2, 17) OVER (ORDER BY i) AS a,
			 anomaly.hotspots(ARRAY[x, y], 1000, 0.2, 17)
				OVER (ORDER BY i ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) AS b
	  FROM hs_points WHERE i <= 500) AS t;
SELECT anomaly.hotspots(ARRAY[1.0], 100, 1, 2);

DROP TABLE hs_points;
