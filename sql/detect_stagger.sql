-- Stagger windows ({"window": ..., "stagger": true}, KDA's WINDOWED BY
-- STAGGER): definition checks; each key's windows open at its rows, out of
-- step with the other keys'; late rows (in a closed window, between two
-- windows of their key, or opening a window already past the watermark);
-- alter_detector between stagger and tumbling windows; the windows stored
-- with the buffered rows (window_start, window_opens: what a round reads
-- instead of replaying the buffer) and the window they were found with
-- (detector_windows.stagger_window), through alter, reset and drop.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS anomaly;
RESET client_min_messages;

CREATE TABLE stag_ticks (
	id bigserial PRIMARY KEY,
	ticker text,
	price float8,
	ts timestamptz
);
CREATE TABLE stag_late (LIKE stag_ticks);

-- Definitions that are refused.
SELECT anomaly.create_detector('st', 'stag_ticks', ARRAY['count(*)'], options => '{"stagger": true}');
SELECT anomaly.create_detector('st', 'stag_ticks', ARRAY['count(*)'],
	options => '{"window": "1 minute", "stagger": true, "slide": "30 seconds"}');
SELECT anomaly.create_detector('st', 'stag_ticks', ARRAY['count(*)'],
	options => '{"window": "1 minute", "stagger": "yes"}');
SELECT anomaly.create_detector('st', 'stag_ticks', ARRAY['price'],
	options => '{"window": "1 minute", "stagger": true}');

-- stagger false is the default: not stored.
SELECT anomaly.create_detector('st', 'stag_ticks', ARRAY['count(*)'],
	options => '{"window": "1 minute", "stagger": false}');
SELECT options ? 'stagger' AS has_stagger FROM anomaly.detectors WHERE name = 'st';
SELECT anomaly.drop_detector('st');

-- One minute per ticker from its first tick, 10 seconds of lateness.
SELECT anomaly.create_detector('st', 'stag_ticks',
	ARRAY['count(*)', 'sum(price)'], partition_by => 'ticker',
	options => '{"window": "1 minute", "stagger": true, "time_column": "ts",
		"allowed_lateness": "10 seconds", "late_rows": "stag_late",
		"number_of_trees": 20, "sub_sample_size": 16, "seed": 3}');
SELECT options->'window' AS window, options->'slide' AS slide, options->'stagger' AS stagger
FROM anomaly.detectors WHERE name = 'st';
-- The buffer of st: each row's window, and the window size they hold.
CREATE TEMP VIEW st_buffer AS
SELECT r.partition_key AS key, r.rowtime, r.window_start, r.window_opens AS opens, w.stagger_window
FROM anomaly.detector_window_rows r JOIN anomaly.detectors d ON d.id = r.detector_id
	JOIN anomaly.detector_windows w ON w.detector_id = d.id
WHERE d.name = 'st' ORDER BY r.seq;

-- A opens [10:00:05, 10:01:05), B [10:00:40, 10:01:40); A's tick at
-- 10:01:10 opens its next window, the one at 10:01:03 (out of order) joins
-- the first, still open: the watermark is 10:01:00.
INSERT INTO stag_ticks (ticker, price, ts) VALUES
	('A', 1, '2026-03-01 10:00:05+00'), ('B', 10, '2026-03-01 10:00:40+00'),
	('A', 2, '2026-03-01 10:00:50+00'), ('A', 4, '2026-03-01 10:01:00+00'),
	('B', 20, '2026-03-01 10:01:10+00'), ('A', 8, '2026-03-01 10:01:10+00'),
	('A', 16, '2026-03-01 10:01:03+00');
SELECT anomaly.process('st');
SELECT count(*) AS scored FROM anomaly.scores WHERE detector = 'st';

-- B's tick at 10:01:20 moves the watermark to 10:01:10: A's first window
-- closes.  Late: A at 10:01:04 (its window is closed), A at 10:01:08
-- (between A's windows), B at 10:00:30 (before B's open window), C at
-- 10:00:00 (before the window C's first tick opened at 10:00:55) and D at
-- 09:59:00 (its window would end before the watermark).
INSERT INTO stag_ticks (ticker, price, ts) VALUES
	('B', 40, '2026-03-01 10:01:20+00'), ('A', 32, '2026-03-01 10:01:04+00'),
	('A', 64, '2026-03-01 10:01:08+00'), ('B', 80, '2026-03-01 10:00:30+00'),
	('C', 1, '2026-03-01 10:00:55+00'), ('C', 2, '2026-03-01 10:00:00+00'),
	('D', 1, '2026-03-01 09:59:00+00');
SELECT anomaly.process('st');
SELECT partition_key, source_key, features, rowtime FROM anomaly.scores
WHERE detector = 'st' ORDER BY rowtime, partition_key;
SELECT ticker, price, ts FROM stag_late ORDER BY id;
-- A's closed window keeps its opening row (10:00:05) for a window more;
-- its other rows are gone.
SELECT * FROM st_buffer;
SELECT windows->'late_rows' AS late, windows->'windows_scored' AS scored,
	windows->'watermark' AS watermark, rows_failed
FROM anomaly.detector_status WHERE name = 'st';

-- B at 10:02:00 opens B's second window; A at 10:02:30 moves the
-- watermark to 10:02:20: B's first, A's second and C's first close.
INSERT INTO stag_ticks (ticker, price, ts) VALUES
	('B', 1, '2026-03-01 10:02:00+00'), ('A', 128, '2026-03-01 10:02:30+00');
SELECT anomaly.process('st');
SELECT partition_key, source_key, features, rowtime FROM anomaly.scores
WHERE detector = 'st' ORDER BY rowtime, partition_key;

-- C's first window closed a round ago: a tick in it is late, although a
-- window it opened would still be open (the window's first row is kept
-- until the watermark is a window past its end, for this).
INSERT INTO stag_ticks (ticker, price, ts) VALUES ('C', 4, '2026-03-01 10:01:30+00');
SELECT anomaly.process('st');
SELECT windows->'late_rows' AS late FROM anomaly.detector_status WHERE name = 'st';
-- A's first window (10:00:05) is forgotten: the watermark is a window
-- past its end.  C's first (10:00:55) is kept, for its late tick above.
SELECT * FROM st_buffer;

-- Stagger off: the rows of the open windows (A's at 10:02:30, B's at
-- 10:02:00) are regrouped into tumbling minutes, which close as the
-- watermark passes them.
SELECT anomaly.alter_detector('st', options => '{"stagger": false}');
SELECT options ? 'stagger' AS has_stagger FROM anomaly.detectors WHERE name = 'st';
INSERT INTO stag_ticks (ticker, price, ts) VALUES
	('A', 256, '2026-03-01 10:02:50+00'), ('A', 512, '2026-03-01 10:03:40+00');
SELECT anomaly.process('st');
SELECT partition_key, source_key, features FROM anomaly.scores
WHERE detector = 'st' AND rowtime > '2026-03-01 10:02:20+00' ORDER BY rowtime, partition_key;
-- Tumbling: the rows' stagger windows are cleared.
SELECT * FROM st_buffer;

-- Stagger on again: A's open minute (10:03:40) becomes a stagger window
-- from that tick; a tick at 10:04:30 joins it, one at 10:05:00 closes it.
SELECT anomaly.alter_detector('st', options => '{"stagger": true}');
INSERT INTO stag_ticks (ticker, price, ts) VALUES
	('A', 1024, '2026-03-01 10:04:30+00'), ('A', 2048, '2026-03-01 10:05:00+00');
SELECT anomaly.process('st');
SELECT partition_key, source_key, features FROM anomaly.scores
WHERE detector = 'st' AND rowtime > '2026-03-01 10:03:00+00' ORDER BY rowtime, partition_key;
-- Found again from the buffered rows: A's at 10:03:40 opened a window.
SELECT * FROM st_buffer;
-- A slide next to stagger is refused on alter too.
SELECT anomaly.alter_detector('st', options => '{"slide": "20 seconds"}');

-- Every window scored before the first alter_detector equals the same
-- aggregates over the stagger windows, found by SQL (docs/detectors.md),
-- of the ticks that were not late.
WITH RECURSIVE ticks AS (
	SELECT * FROM stag_ticks
	WHERE id NOT IN (SELECT id FROM stag_late) AND ts < '2026-03-01 10:02:40+00'),
opener AS (
	(SELECT DISTINCT ON (ticker) ticker, id, ts AS window_start FROM ticks ORDER BY ticker, id)
	UNION ALL
	SELECT o.ticker, n.id, n.ts FROM opener o CROSS JOIN LATERAL (
		SELECT t.id, t.ts FROM ticks t
		WHERE t.ticker = o.ticker AND t.id > o.id AND t.ts >= o.window_start + interval '1 minute'
		ORDER BY t.id LIMIT 1) n),
w AS (
	SELECT t.ticker, o.window_start,
		ARRAY[count(*)::float8, sum(t.price ORDER BY t.id)] AS f
	FROM ticks t JOIN LATERAL (
		SELECT max(window_start) AS window_start FROM opener o
		WHERE o.ticker = t.ticker AND o.window_start <= t.ts) o ON true
	GROUP BY 1, 2)
SELECT w.ticker, w.window_start, w.f, s.features = w.f AS same
FROM w LEFT JOIN anomaly.scores s ON s.detector = 'st' AND s.partition_key = w.ticker
	AND (s.source_key->>'window_start')::timestamptz = w.window_start
WHERE w.window_start + interval '1 minute' <= '2026-03-01 10:02:20+00'
ORDER BY w.window_start, w.ticker;

-- A longer window: the buffered rows' windows are found again with it.
-- The opening row kept at 10:03:40 (of a 1-minute window already scored) is
-- dropped rather than grouped again and scored a second time (it was, with
-- the tick at 10:05:00, until session 9), so A's tick at 10:05:00 opens a
-- 2-minute window, which the tick at 10:06:50 joins: nothing closes yet.
SELECT anomaly.alter_detector('st', options => '{"window": "2 minutes", "slide": "2 minutes"}');
INSERT INTO stag_ticks (ticker, price, ts) VALUES ('A', 1, '2026-03-01 10:06:50+00');
SELECT anomaly.process('st');
SELECT * FROM st_buffer;
SELECT source_key, features FROM anomaly.scores
WHERE detector = 'st' AND rowtime > '2026-03-01 10:05:00+00' ORDER BY rowtime, partition_key;
-- reset_detector keeps the buffer and its windows: a tick at 10:06:55
-- joins the same window.
SELECT anomaly.reset_detector('st');
INSERT INTO stag_ticks (ticker, price, ts) VALUES ('A', 2, '2026-03-01 10:06:55+00');
SELECT anomaly.process('st');
SELECT * FROM st_buffer;

-- drop_detector drops the buffer with the detector.
CREATE TEMP TABLE st_id AS SELECT id FROM anomaly.detectors WHERE name = 'st';
SELECT anomaly.drop_detector('st');
SELECT count(*) AS buffered FROM anomaly.detector_window_rows WHERE detector_id IN (SELECT id FROM st_id);
SELECT count(*) AS windows FROM anomaly.detector_windows WHERE detector_id IN (SELECT id FROM st_id);
DROP VIEW st_buffer;
DROP TABLE stag_ticks, stag_late;

-- alter_detector changing the window: the buffered rows form windows of the
-- new size, and those that ended before the last watermark are scored too
-- (they were lost: closing started from the last watermark); the opening
-- rows of windows already scored are dropped, not scored a second time.
CREATE TABLE regroup_ticks (id bigserial PRIMARY KEY, k text, ts timestamptz);
SELECT anomaly.create_detector('rg', 'regroup_ticks', ARRAY['count(*)'], partition_by => 'k',
	options => '{"window": "1 minute", "stagger": true, "time_column": "ts",
		"number_of_trees": 5, "sub_sample_size": 16}');
-- a shorter window: [10:00:00, 10:00:20) ended before the watermark 10:00:30
INSERT INTO regroup_ticks (k, ts) VALUES ('A', '2026-03-01 10:00:00+00'), ('A', '2026-03-01 10:00:30+00');
SELECT anomaly.process('rg');
SELECT anomaly.alter_detector('rg', options => '{"window": "20 seconds", "slide": null}');
INSERT INTO regroup_ticks (k, ts) VALUES ('A', '2026-03-01 10:00:45+00');
SELECT anomaly.process('rg');
SELECT rowtime AS window_end, features FROM anomaly.scores WHERE detector = 'rg' ORDER BY 1;
-- a longer window: [10:01:00, 10:01:20) is scored, its opening row kept;
-- with 2 minutes it would have taken the tick at 10:01:30 in with it
INSERT INTO regroup_ticks (k, ts) VALUES ('A', '2026-03-01 10:01:00+00'), ('A', '2026-03-01 10:01:30+00');
SELECT anomaly.process('rg');
SELECT anomaly.alter_detector('rg', options => '{"window": "2 minutes", "slide": null}');
INSERT INTO regroup_ticks (k, ts) VALUES ('A', '2026-03-01 10:04:00+00');
SELECT anomaly.process('rg');
SELECT rowtime AS window_end, features FROM anomaly.scores WHERE detector = 'rg' ORDER BY 1;
SELECT sum((features[1])::int) AS rows_in_windows, (SELECT count(*) FROM regroup_ticks) - 1 AS rows_closed
FROM anomaly.scores WHERE detector = 'rg';
-- tumbling windows alike: [10:00:00, 10:00:20) of a 20-second window
-- ended before the watermark of the 1-minute window's last round
SELECT anomaly.alter_detector('rg', options => '{"stagger": false, "window": "1 minute", "slide": "1 minute"}');
INSERT INTO regroup_ticks (k, ts) VALUES ('B', '2026-03-01 10:05:05+00'), ('B', '2026-03-01 10:05:50+00');
SELECT anomaly.process('rg');
SELECT anomaly.alter_detector('rg', options => '{"window": "20 seconds", "slide": "20 seconds"}');
INSERT INTO regroup_ticks (k, ts) VALUES ('B', '2026-03-01 10:06:30+00');
SELECT anomaly.process('rg');
SELECT rowtime AS window_end, features FROM anomaly.scores
WHERE detector = 'rg' AND partition_key = 'B' ORDER BY 1;
SELECT anomaly.drop_detector('rg');
DROP TABLE regroup_ticks;
