-- Windowed detectors (the window option): definition checks, windows scored
-- by process() once the watermark passes their end, late rows counted and
-- routed, equality with the same aggregates over date_bin scored by the
-- window functions; and seed_detector(): a key's forest from a stored model.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS anomaly;
RESET client_min_messages;

CREATE TABLE win_ticks (
	id bigserial PRIMARY KEY,
	ticker text,
	price float8,
	ts timestamptz
);
CREATE TABLE win_late (LIKE win_ticks);

-- Definitions that are refused.
SELECT anomaly.create_detector('w', 'win_ticks', ARRAY['sum(price)']);
SELECT anomaly.create_detector('w', 'win_ticks', ARRAY['price'], options => '{"window": "1 minute"}');
SELECT anomaly.create_detector('w', 'win_ticks', ARRAY['avg(price)', 'price'], options => '{"window": "1 minute"}');
SELECT anomaly.create_detector('w', 'win_ticks', ARRAY['avg(price) OVER ()'], options => '{"window": "1 minute"}');
SELECT anomaly.create_detector('w', 'win_ticks', ARRAY['avg(price)'], filter => 'count(*) > 1', options => '{"window": "1 minute"}');
SELECT anomaly.create_detector('w', 'win_ticks', ARRAY['avg(price)'], options => '{"window": "1 month"}');
SELECT anomaly.create_detector('w', 'win_ticks', ARRAY['avg(price)'], options => '{"window": "-1 minute"}');
SELECT anomaly.create_detector('w', 'win_ticks', ARRAY['avg(price)'], options => '{"window": 60}');
SELECT anomaly.create_detector('w', 'win_ticks', ARRAY['avg(price)'], options => '{"window": "1 minute", "slide": "2 minutes"}');
SELECT anomaly.create_detector('w', 'win_ticks', ARRAY['avg(price)'], options => '{"window": "1 minute", "slide": "1 millisecond"}');
SELECT anomaly.create_detector('w', 'win_ticks', ARRAY['avg(price)'], options => '{"slide": "1 minute"}');
SELECT anomaly.create_detector('w', 'win_ticks', ARRAY['avg(price)'], options => '{"window": "1 minute", "start": "all"}');
SELECT anomaly.create_detector('w', 'win_ticks', ARRAY['avg(price)'], options => '{"window": "1 minute", "late_rows": "win_nope"}');
SELECT anomaly.create_detector('w', 'win_ticks', ARRAY['avg(price)'], options => '{"window": "1 minute", "late_rows": "anomaly.detectors"}');
SELECT anomaly.create_detector('w', 'win_ticks', ARRAY['avg(price)'], options => '{"window": "1 minute", "allowed_lateness": "-1 second"}');

-- A tumbling minute per ticker, 5 seconds of allowed lateness.
SELECT anomaly.create_detector('w', 'win_ticks',
	ARRAY['count(*)', 'avg(price)', 'max(price) - min(price)'], partition_by => 'ticker',
	options => '{"window": "1 minute", "time_column": "ts", "allowed_lateness": "5 seconds",
		"late_rows": "win_late", "number_of_trees": 20, "sub_sample_size": 16, "seed": 3}');
SELECT options->'window' AS window, options->'slide' AS slide,
	options->'allowed_lateness' AS lateness, options->'late_rows' AS late_rows
FROM anomaly.detectors WHERE name = 'w';

-- Twelve minutes of ticks, two tickers, a tick every 6 seconds (the last
-- of each minute 2 seconds late, within the allowed lateness).
INSERT INTO win_ticks (ticker, price, ts)
SELECT t, 100 + 5 * sin(g) + CASE WHEN g = 70 AND t = 'A' THEN 40 ELSE 0 END,
	timestamptz '2026-03-01 10:00:00+00' + g * interval '6 seconds'
		- CASE WHEN g % 10 = 9 THEN interval '2 seconds' ELSE interval '0' END
FROM generate_series(0, 119) g, (VALUES ('A'), ('B')) v(t)
ORDER BY g, t;
SELECT anomaly.process('w');
-- Eleven windows per ticker are closed (the twelfth ends after the watermark).
SELECT partition_key, count(*), min(rowtime), max(rowtime), sum((source_key->>'rows')::int)
FROM anomaly.scores WHERE detector = 'w' GROUP BY 1 ORDER BY 1;
SELECT windows->'watermark' AS watermark, windows->'windows_scored' AS scored,
	windows->'late_rows' AS late, windows->'rows_buffered' AS buffered
FROM anomaly.detector_status WHERE name = 'w';

-- A late tick (its window ended long ago) and one in the open window.
INSERT INTO win_ticks (ticker, price, ts) VALUES
	('A', 1, '2026-03-01 10:03:30+00'), ('B', 2, '2026-03-01 10:11:59+00');
SELECT anomaly.process('w');
SELECT windows->'late_rows' AS late, windows->'rows_buffered' AS buffered,
	rows_failed FROM anomaly.detector_status WHERE name = 'w';
SELECT ticker, price, ts FROM win_late;
-- Ticks of the next minutes close the twelfth window.
INSERT INTO win_ticks (ticker, price, ts) VALUES ('A', 100, '2026-03-01 10:13:00+00');
SELECT anomaly.process('w');

-- Every window equals the same aggregates over date_bin of the ticks that
-- were not late, scored per ticker in window order by detect() with its
-- defaults (the detector's), to the bit.
WITH ref AS (
	SELECT ticker, date_bin('1 minute', ts, timestamptz '2000-01-01 00:00:00+00') AS ws,
		ARRAY[count(*)::float8, avg(price ORDER BY id), max(price) - min(price)] AS f
	FROM win_ticks WHERE id NOT IN (SELECT id FROM win_late)
	GROUP BY 1, 2),
scored AS (
	SELECT ref.*, anomaly.detect(f, number_of_trees => 20, sub_sample_size => 16, seed => 3) OVER (PARTITION BY ticker ORDER BY ws) AS d
	FROM ref),
got AS (
	SELECT partition_key, (source_key->>'window_start')::timestamptz AS ws, features,
		anomaly_score, anomaly_grade, expected
	FROM anomaly.scores WHERE detector = 'w')
SELECT count(*) AS windows,
	count(*) FILTER (WHERE g.features = s.f AND g.anomaly_score = (s.d).anomaly_score
		AND g.anomaly_grade = (s.d).anomaly_grade
		AND g.expected IS NOT DISTINCT FROM (s.d).expected) AS equal,
	count(*) FILTER (WHERE (s.d).anomaly_grade > 0) AS graded
FROM scored s JOIN got g ON g.partition_key = s.ticker AND g.ws = s.ws;
-- The one reference window not scored is A's open one (10:13).
SELECT count(*) AS unscored_reference_windows FROM (
	SELECT ticker, date_bin('1 minute', ts, timestamptz '2000-01-01 00:00:00+00') AS ws
	FROM win_ticks WHERE id NOT IN (SELECT id FROM win_late) GROUP BY 1, 2) r
WHERE NOT EXISTS (SELECT 1 FROM anomaly.scores c WHERE c.detector = 'w'
	AND c.partition_key = r.ticker AND (c.source_key->>'window_start')::timestamptz = r.ws);

-- The most anomalous window: B's last, with the tick at price 2.
SELECT partition_key, source_key->>'window_start' AS window_start, features
FROM anomaly.scores WHERE detector = 'w' ORDER BY anomaly_score DESC, id LIMIT 1;

-- A hopping window: one minute every 30 seconds over the same ticks.
SELECT anomaly.create_detector('w_hop', 'win_ticks', ARRAY['count(*)', 'max(price)'],
	options => '{"window": "1 minute", "slide": "30 seconds", "time_column": "ts"}');
INSERT INTO win_ticks (ticker, price, ts) VALUES
	('A', 1, '2026-03-01 11:00:10+00'), ('A', 2, '2026-03-01 11:00:40+00'),
	('A', 3, '2026-03-01 11:01:10+00'), ('A', 4, '2026-03-01 11:02:00+00');
SELECT anomaly.process('w_hop');
SELECT source_key->>'window_start' AS window_start, source_key->>'window_end' AS window_end,
	features, rowtime = (source_key->>'window_end')::timestamptz AS rowtime_is_end
FROM anomaly.scores WHERE detector = 'w_hop' ORDER BY rowtime;

-- A column added while a window is open: the window's earlier rows have
-- it NULL (as a row detector reads them), the later ones their value; the
-- features can use it once alter_detector adopted the table.
CREATE TABLE win_alter (id bigserial PRIMARY KEY, a float8, ts timestamptz);
SELECT anomaly.create_detector('w_alter', 'win_alter', ARRAY['count(*)', 'sum(a)'],
	options => '{"window": "1 minute", "time_column": "ts"}');
INSERT INTO win_alter (a, ts) VALUES (1, '2026-03-01 12:00:10+00'), (2, '2026-03-01 12:00:20+00');
SELECT anomaly.process('w_alter');
ALTER TABLE win_alter ADD COLUMN c text;
INSERT INTO win_alter (a, c, ts) VALUES (4, 'x', '2026-03-01 12:00:30+00');
SELECT anomaly.alter_detector('w_alter', features => ARRAY['count(*)', 'sum(a)', 'count(c)']);
INSERT INTO win_alter (a, c, ts) VALUES (8, 'y', '2026-03-01 12:00:40+00'), (16, 'z', '2026-03-01 12:01:30+00');
SELECT anomaly.process('w_alter');
SELECT source_key->>'window_start' AS window_start, features FROM anomaly.scores WHERE detector = 'w_alter';
SELECT rows_failed, last_error FROM anomaly.detector_status WHERE name = 'w_alter';
SELECT anomaly.drop_detector('w_alter');
DROP TABLE win_alter;

-- The rows of a dropped detector's windows go with it.
SELECT anomaly.drop_detector('w_hop');
SELECT count(*) FROM anomaly.detector_window_rows r
WHERE NOT EXISTS (SELECT 1 FROM anomaly.detectors d WHERE d.id = r.detector_id);

-- seed_detector: a key starts from a trained model.
CREATE TABLE seed_src (id bigserial PRIMARY KEY, k text, v float8);
SELECT anomaly.create_detector('s', 'seed_src', ARRAY['v'], partition_by => 'k',
	options => '{"number_of_trees": 20, "sub_sample_size": 16, "seed": 5, "grade": false,
		"shingle_size": 1, "transform": "none"}');
CREATE TABLE seed_models AS
SELECT anomaly.rcf_train(ARRAY[g % 10]::float8[], 20, 16, 100000, 1, 5 ORDER BY g) AS good,
	anomaly.rcf_train(ARRAY[g % 10]::float8[], 30, 16, 100000, 1, 5 ORDER BY g) AS trees,
	anomaly.rcf_train(ARRAY[g % 10]::float8[], 20, 16, 100000, 1, 6 ORDER BY g) AS seed,
	anomaly.rcf_train(ARRAY[g % 10, g]::float8[], 20, 16, 100000, 1, 5 ORDER BY g) AS dims
FROM generate_series(1, 100) g;
SELECT anomaly.seed_detector('s', 'x', trees) FROM seed_models;
SELECT anomaly.seed_detector('s', 'x', seed) FROM seed_models;
SELECT anomaly.seed_detector('s', 'x', dims) FROM seed_models;
SELECT anomaly.seed_detector('nope', 'x', good) FROM seed_models;
SELECT anomaly.seed_detector('s', 'x', NULL);
SELECT anomaly.seed_detector('s', 'x', good) FROM seed_models;
INSERT INTO seed_src (k, v) VALUES ('x', 5), ('x', 50), ('y', 5);
SELECT anomaly.process('s');
-- x scores as the model does (score, then learn); y, not seeded, starts cold.
SELECT c.partition_key, c.features, c.anomaly_score > 0 AS warm,
	c.anomaly_score = CASE WHEN c.features[1] = 5 THEN anomaly.rcf_score(m.good, ARRAY[5.0])
		ELSE anomaly.rcf_score(anomaly.rcf_update(m.good, ARRAY[5.0]), ARRAY[50.0]) END AS as_model
FROM anomaly.scores c, seed_models m WHERE c.detector = 's' ORDER BY c.id;
SELECT note LIKE 'forest of key ''x'' seeded from a model of 100 points%' AS noted
FROM anomaly.detectors WHERE name = 's';

SELECT anomaly.drop_detector('s');
SELECT anomaly.drop_detector('w');
DROP TABLE win_ticks, win_late, seed_src, seed_models;
