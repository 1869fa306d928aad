-- Detectors: definition checks, one round of detection with process(),
-- equality with the window function, failures, filters, NULLs, alter,
-- pause, resume, reset, drop, the output plugin's wire format, and
-- privileges.  The background workers serve anomaly.detector_database, not
-- this database, so every round here is a process() call.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS anomaly;
RESET client_min_messages;

-- The messages a detector's slot holds for one relation, as the output
-- plugin wrote them (peeked, so the detector still reads them), each
-- decoded by _wire_describe with the relation message before it; without
-- the LSNs, which differ from run to run.
CREATE FUNCTION det_wire(detector text, rel regclass) RETURNS TABLE (n bigint, message jsonb)
LANGUAGE sql AS $$
	WITH c AS (
		SELECT row_number() OVER () AS n, data
		FROM pg_logical_slot_peek_binary_changes(
			(SELECT d.slot_name FROM anomaly.detectors d WHERE d.name = det_wire.detector), NULL, NULL,
			'relations', rel::oid::text))
	SELECT n, anomaly._wire_describe(data,
			(SELECT data FROM c r WHERE r.n < c.n AND get_byte(r.data, 1) = 82 ORDER BY r.n DESC LIMIT 1))
		- 'commit_lsn' - 'end_lsn'
	FROM c ORDER BY n
$$;

CREATE TABLE det_rides (
	id bigserial PRIMARY KEY,
	zone int,
	fare float8,
	distance float8,
	note text
);

-- Definitions that are refused.
SELECT anomaly.create_detector('bad name!', 'det_rides', ARRAY['fare']);
SELECT anomaly.create_detector('d_r', 'det_rides', ARRAY[]::text[]);
SELECT anomaly.create_detector('d_r', 'det_rides', ARRAY['d_nope']);
SELECT anomaly.create_detector('d_r', 'det_rides', ARRAY['fare', NULL]);
SELECT anomaly.create_detector('d_r', 'det_rides', ARRAY['sum(fare)']);
SELECT anomaly.create_detector('d_r', 'det_rides', ARRAY['generate_series(1, 2)']);
SELECT anomaly.create_detector('d_r', 'det_rides', ARRAY['fare) FROM pg_authid --']);
SELECT anomaly.create_detector('d_r', 'det_rides', ARRAY['1; DROP TABLE det_rides']);
SELECT anomaly.create_detector('d_r', 'det_rides', ARRAY['note = ''x''']);
SELECT anomaly.create_detector('d_r', 'det_rides', ARRAY['fare'], partition_by => 'd_nope');
SELECT anomaly.create_detector('d_r', 'det_rides', ARRAY['fare'], filter => 'fare');
SELECT anomaly.create_detector('d_r', 'det_rides', ARRAY['fare'], options => '{"trees": 5}');
SELECT anomaly.create_detector('d_r', 'det_rides', ARRAY['fare'], options => '{"number_of_trees": 0}');
SELECT anomaly.create_detector('d_r', 'det_rides', ARRAY['fare'], options => '{"number_of_trees": 1.5}');
SELECT anomaly.create_detector('d_r', 'det_rides', ARRAY['fare'], options => '{"operations": ["delete"]}');
SELECT anomaly.create_detector('d_r', 'det_rides', ARRAY['fare'], options => '{"feature_names": ["a", "b"]}');
SELECT anomaly.create_detector('d_r', 'det_rides', ARRAY['fare'], options => '{"retention": "-1 day"}');
SELECT anomaly.create_detector('d_r', 'det_rides', ARRAY['fare'], options => '{"z_factor": 0}');
SELECT anomaly.create_detector('d_r', 'det_rides', ARRAY['fare'], options => '{"grade": "yes"}');
SELECT anomaly.create_detector('d_r', 'det_rides', ARRAY['fare'], options => '{"bounding_box_cache_fraction": 1.5}');
SELECT anomaly.create_detector('d_r', 'det_rides', ARRAY['fare'], options => '[1]');
CREATE UNLOGGED TABLE det_unlogged (v float8);
SELECT anomaly.create_detector('d_r', 'det_unlogged', ARRAY['v']);
CREATE TABLE det_parted (k int, v float8) PARTITION BY LIST (k);
-- A partitioned table is a source (its partitions' rows, as its own).
SELECT anomaly.create_detector('d_parted', 'det_parted', ARRAY['v']);
SELECT source, state FROM anomaly.detector_status WHERE name = 'd_parted';
-- The output plugin sends a partition's rows as the parent's: its relid,
-- its columns, values mapped by name (det_parted_2 has another column
-- order and a dropped column); a table not attached is not sent.
CREATE TABLE det_parted_1 PARTITION OF det_parted FOR VALUES IN (1);
CREATE TABLE det_parted_2 (v float8, junk int, k int);
ALTER TABLE det_parted_2 DROP COLUMN junk;
ALTER TABLE det_parted ATTACH PARTITION det_parted_2 FOR VALUES IN (2);
CREATE TABLE det_parted_3 (k int, v float8);
BEGIN;
INSERT INTO det_parted VALUES (2, 0.5), (1, 1.5);
INSERT INTO det_parted_2 (k, v) VALUES (2, 2.5);
INSERT INTO det_parted_3 VALUES (3, 3.5);
COMMIT;
SET output_plugin_libraries = pgoutput, test_decoding, anomaly;
SELECT * FROM det_wire('d_parted', 'det_parted');
RESET output_plugin_libraries;
SELECT anomaly.drop_detector('d_parted');
CREATE VIEW det_view AS SELECT * FROM det_rides;
SELECT anomaly.create_detector('d_r', 'det_view', ARRAY['fare']);
-- The slot must be created before the transaction writes.
BEGIN;
INSERT INTO det_rides (zone) VALUES (0);
SELECT anomaly.create_detector('d_r', 'det_rides', ARRAY['fare']);
ROLLBACK;
SELECT count(*) AS detectors FROM anomaly.detectors;

-- A detector: two features (an expression among them), a partition key, a
-- filter; its forests keep no bounding box (the least memory: the scores
-- below are those of every box kept).
SELECT anomaly.create_detector('d_rides', 'det_rides', ARRAY['fare', 'distance / 2'],
	partition_by => 'zone', filter => 'fare >= 0',
	options => '{"number_of_trees": 20, "sub_sample_size": 32, "seed": 7, "bounding_box_cache_fraction": 0}');
SELECT anomaly.create_detector('d_rides', 'det_rides', ARRAY['fare']);
SELECT name, source, source_exists, owner, state, rows_scored, slot_active, slot_wal_status,
	lag_bytes >= 0 AS lag_known, last_error
FROM anomaly.detector_status;
-- Before its first round: no round known, lag counted from its creation.
SELECT round_phase, pending_rows, eta, catchup_rows_per_s, worker_memory,
	lag_time IS NOT NULL AS lag_defined
FROM anomaly.detector_status;
SELECT features, partition_by, filter, options, key_columns, search_path
FROM anomaly.detectors WHERE name = 'd_rides';

-- Rows: many in one transaction, one filtered out, one with a NULL feature,
-- a rolled-back transaction, and an outlier.
INSERT INTO det_rides (zone, fare, distance)
	SELECT g % 3, 10 + g % 7, 4 + g % 5 FROM generate_series(1, 300) g;
INSERT INTO det_rides (zone, fare, distance) VALUES (1, -5, 1);
INSERT INTO det_rides (zone, fare, distance) VALUES (2, 10, NULL);
BEGIN;
INSERT INTO det_rides (zone, fare, distance) SELECT 0, 99, 99 FROM generate_series(1, 50);
ROLLBACK;
INSERT INTO det_rides (zone, fare, distance) VALUES (1, 500, 500);
INSERT INTO det_rides (zone, fare, distance)
	SELECT g % 3, 10 + g % 7, 4 + g % 5 FROM generate_series(1, 30) g;

-- Whole transactions per round: max_rows 100 still takes the first 300.
SELECT anomaly.process('d_rides', max_rows => 100) AS consumed;
SELECT anomaly.process() AS consumed;
SELECT anomaly.process() AS consumed;
-- Caught up: no round open, nothing pending (process() let the slot go).
SELECT name, round_phase, pending_rows, round_started_at, (eta IS NULL OR eta < interval '1 second') AS no_time_left,
	worker_memory
FROM anomaly.detector_status WHERE name = 'd_rides';
SELECT rows_scored, rows_filtered, rows_failed, last_commit_lsn > '0/0' AS progressed,
	batch_seq > 0 AS rounds
FROM anomaly.detectors WHERE name = 'd_rides';

-- One score per committed row that passes the filter, none for the
-- rolled-back ones, and each equal to the window function over the same
-- rows in commit order: a detector without those options has detect()'s
-- defaults (shingle 8, normalize), to the bit.
SELECT count(*) AS scores, count(DISTINCT source_key) AS rows,
	count(*) FILTER (WHERE anomaly_score IS NULL) AS null_scores
FROM anomaly.scores WHERE detector = 'd_rides';
SELECT count(*) AS compared,
	count(*) FILTER (WHERE s.anomaly_score IS DISTINCT FROM w.score) AS different,
	count(*) FILTER (WHERE s.anomaly_grade IS DISTINCT FROM (w.d).anomaly_grade) AS different_grades,
	count(*) FILTER (WHERE s.is_anomaly IS DISTINCT FROM (w.d).is_anomaly) AS different_decisions,
	count(*) FILTER (WHERE s.expected IS DISTINCT FROM (w.d).expected) AS different_expected,
	count(*) FILTER (WHERE s.anomaly_grade > 0) AS graded,
	count(*) FILTER (WHERE s.is_anomaly) AS anomalies,
	count(s.expected) AS with_expected
FROM anomaly.scores s
JOIN (SELECT r.id,
		anomaly.random_cut_forest(ARRAY[r.fare, r.distance / 2], 20, 32, 100000, 8, 7,
			transform => 'normalize', transform_decay => 0.0001)
			OVER (PARTITION BY r.zone ORDER BY s2.commit_lsn, r.id) AS score,
		anomaly.detect(ARRAY[r.fare, r.distance / 2], number_of_trees => 20, sub_sample_size => 32, seed => 7)
			OVER (PARTITION BY r.zone ORDER BY s2.commit_lsn, r.id) AS d
	FROM det_rides r
	JOIN anomaly.scores s2 ON s2.detector = 'd_rides' AND (s2.source_key->>'id')::bigint = r.id
	WHERE r.fare >= 0) w
	ON (s.source_key->>'id')::bigint = w.id
WHERE s.detector = 'd_rides';
SELECT partition_key, features, anomaly_score > 2 AS anomalous, anomaly_grade > 0.5 AS graded
FROM anomaly.scores WHERE detector = 'd_rides'
ORDER BY anomaly_score DESC NULLS LAST LIMIT 1;
SELECT partition_key, features, anomaly_score
FROM anomaly.scores WHERE detector = 'd_rides' AND anomaly_score IS NULL;
-- Its forests, kept without boxes (the scores above are every box's), are
-- stored so.
SELECT count(*) > 0 AS stored, min(anomaly.rcf_info(f.model) ->> 'bounding_box_cache_fraction') AS fraction,
	max(anomaly.rcf_info(f.model) ->> 'bounding_box_cache_fraction') AS same_for_all
FROM anomaly.detector_forests f JOIN anomaly.detectors d ON d.id = f.detector_id
WHERE d.name = 'd_rides';
-- Changing the fraction resets no forest (each takes it when next loaded).
CREATE TEMP TABLE before_alter AS
SELECT d.generation, count(f.*) AS stored FROM anomaly.detectors d
LEFT JOIN anomaly.detector_forests f ON f.detector_id = d.id WHERE d.name = 'd_rides' GROUP BY 1;
SELECT anomaly.alter_detector('d_rides', options => '{"bounding_box_cache_fraction": 0.5}');
SELECT d.generation = b.generation AS same_generation, count(f.*) = b.stored AS same_forests,
	d.options -> 'bounding_box_cache_fraction' AS fraction
FROM anomaly.detectors d LEFT JOIN anomaly.detector_forests f ON f.detector_id = d.id, before_alter b
WHERE d.name = 'd_rides' GROUP BY d.generation, b.generation, b.stored, d.options;
SELECT anomaly.alter_detector('d_rides', options => '{"bounding_box_cache_fraction": 0}');
DROP TABLE before_alter;
-- Scores are written in commit order, rows in transaction order.
SELECT bool_and(ok) AS ordered FROM (
	SELECT (commit_lsn, (source_key->>'id')::bigint) >
		lag((commit_lsn, (source_key->>'id')::bigint)) OVER (ORDER BY id) IS NOT FALSE AS ok
	FROM anomaly.scores WHERE detector = 'd_rides') o;

-- Rows whose features cannot be computed are recorded, the rest scored.
CREATE TABLE det_text (id int PRIMARY KEY, v text, d float8);
SELECT anomaly.create_detector('d_text', 'det_text', ARRAY['v::float8', '1 / d'],
	options => '{"number_of_trees": 5, "sub_sample_size": 10, "with_explanation": true, "with_directionality": true}');
INSERT INTO det_text VALUES (1, '1', 1), (2, 'x', 1), (3, '2', 0), (4, NULL, 2), (5, 'NaN', 1),
	(6, '3', 4);
SELECT anomaly.process('d_text') AS consumed;
SELECT source_key, features, anomaly_score, explanation
FROM anomaly.scores WHERE detector = 'd_text' ORDER BY id;
SELECT detector, source_key, sqlstate, reason
FROM anomaly.detector_failures WHERE detector = 'd_text' ORDER BY id;
SELECT name, state, rows_scored, rows_failed FROM anomaly.detector_status WHERE name = 'd_text';

-- Updates count when the options say so: the new row is scored.
CREATE TABLE det_upd (id int PRIMARY KEY, v float8, big text);
SELECT anomaly.create_detector('d_upd', 'det_upd', ARRAY['v', 'length(big)'],
	options => '{"operations": ["insert", "update"], "number_of_trees": 5, "sub_sample_size": 10}');
SELECT anomaly.create_detector('d_ins', 'det_upd', ARRAY['v'],
	options => '{"number_of_trees": 5, "sub_sample_size": 10}');
INSERT INTO det_upd VALUES (1, 1, 'x'),
	(2, 2, (SELECT string_agg(md5(g::text), '') FROM generate_series(1, 4000) g));
UPDATE det_upd SET v = v + 10;
DELETE FROM det_upd WHERE id = 1;
SELECT anomaly.process('d_upd') AS consumed, anomaly.process('d_ins') AS consumed_ins;
-- The update of row 2 leaves its big TOASTed value unchanged: WAL does not
-- carry it, so that feature is NULL (and so is the score).
SELECT detector, source_key, features FROM anomaly.scores
WHERE detector IN ('d_upd', 'd_ins') ORDER BY detector, id;
SELECT anomaly.drop_detector('d_upd');
SELECT anomaly.drop_detector('d_ins');

-- alter_detector: a new filter keeps the models; new features reset them.
SELECT generation FROM anomaly.detectors WHERE name = 'd_rides';
SELECT anomaly.alter_detector('d_rides', filter => 'fare >= 10');
SELECT generation, filter FROM anomaly.detectors WHERE name = 'd_rides';
SELECT anomaly.alter_detector('d_rides', filter => 'nope > 1');
SELECT anomaly.alter_detector('d_rides', features => ARRAY['fare']);
SELECT generation, features, options->'feature_names' AS names
FROM anomaly.detectors WHERE name = 'd_rides';
SELECT count(*) AS stored_models FROM anomaly.detector_forests f
JOIN anomaly.detectors d ON d.id = f.detector_id WHERE d.name = 'd_rides';
SELECT anomaly.alter_detector('d_nope', filter => 'true');

-- pause, resume, reset.
SELECT anomaly.pause_detector('d_rides');
INSERT INTO det_rides (zone, fare, distance) VALUES (0, 11, 5);
SELECT anomaly.process('d_rides') AS consumed;
SELECT anomaly.resume_detector('d_rides');
SELECT anomaly.process('d_rides') AS consumed;
SELECT anomaly.reset_detector('d_rides');
SELECT generation, rows_scored, state FROM anomaly.detectors WHERE name = 'd_rides';

-- A source column that changes type stops the detector with a clear error.
INSERT INTO det_text VALUES (7, '4', 1);
ALTER TABLE det_text ALTER COLUMN d TYPE numeric;
SELECT anomaly.process('d_text') AS consumed;
SELECT state, last_error FROM anomaly.detectors WHERE name = 'd_text';
-- alter_detector adopts the table as it is; rows written before the change
-- are converted to the new type.
SELECT anomaly.alter_detector('d_text', features => ARRAY['v::float8', 'd']);
SELECT anomaly.resume_detector('d_text');
INSERT INTO det_text VALUES (8, '5', 2.5);
SELECT anomaly.process('d_text') AS consumed;
SELECT source_key, features FROM anomaly.scores
WHERE detector = 'd_text' AND (source_key->>'id')::int >= 7 ORDER BY id;
SELECT state, rows_scored, rows_failed FROM anomaly.detectors WHERE name = 'd_text';
SELECT anomaly.drop_detector('d_text');

-- The output plugin, read directly (superusers may list it).  The slot starts
-- after the row the last process() consumed: it moved when that call committed.
SET output_plugin_libraries = pgoutput, test_decoding, anomaly;
INSERT INTO det_rides (zone, fare, distance, note) VALUES (2, 12.5, 3, 'hello'), (NULL, 13, 2, NULL);
SELECT * FROM det_wire('d_rides', 'det_rides');
\set VERBOSITY terse
SELECT count(*) FROM pg_logical_slot_peek_binary_changes(
	(SELECT slot_name FROM anomaly.detectors WHERE name = 'd_rides'), NULL, NULL,
	'proto_version', '2');
SELECT count(*) FROM pg_logical_slot_peek_binary_changes(
	(SELECT slot_name FROM anomaly.detectors WHERE name = 'd_rides'), NULL, NULL,
	'colour', 'blue');
\set VERBOSITY default
RESET output_plugin_libraries;
SELECT anomaly._wire_describe('\x0242'::bytea);
SELECT anomaly._wire_describe('\x0142'::bytea);

-- Privileges.
CREATE ROLE det_alice;
CREATE ROLE det_bob;
GRANT anomaly_admin TO det_alice;
CREATE TABLE det_secret (id int PRIMARY KEY, v float8);
CREATE TABLE det_seen (who text);
GRANT INSERT ON det_seen TO det_alice;
GRANT SELECT ON det_rides TO det_alice;
CREATE FUNCTION det_whoami() RETURNS float8 LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO det_seen VALUES (current_user);
	RETURN 1;
END
$$;
-- Only anomaly_admin (and superusers) may manage detectors.
SELECT p.proname, has_function_privilege('det_bob', p.oid, 'EXECUTE') AS bob,
	has_function_privilege('det_alice', p.oid, 'EXECUTE') AS alice
FROM pg_proc p
WHERE p.pronamespace = 'anomaly'::regnamespace
  AND p.proname IN ('create_detector', 'alter_detector', 'pause_detector', 'resume_detector',
	'reset_detector', 'drop_detector', 'process', '_wire_describe', '_drop_orphan_slots')
ORDER BY 1;
SELECT has_table_privilege('det_bob', 'anomaly.detectors', 'SELECT') AS bob_reads_detectors,
	has_table_privilege('det_alice', 'anomaly.detectors', 'SELECT') AS alice_reads_detectors,
	has_table_privilege('det_alice', 'anomaly.detectors', 'UPDATE') AS alice_updates_detectors;
SET ROLE det_alice;
SELECT anomaly.create_detector('d_sneaky', 'det_secret', ARRAY['v']);
SELECT anomaly.create_detector('d_sneaky', 'det_rides', ARRAY['(SELECT v FROM det_secret LIMIT 1)']);
SELECT anomaly.create_detector('d_alices', 'det_rides', ARRAY['det_whoami()'],
	filter => 'zone = 2', options => '{"number_of_trees": 5, "sub_sample_size": 10}');
UPDATE anomaly.detectors SET owner = 10;
INSERT INTO anomaly.detector_forests VALUES (1, 'x', NULL, 0, 0, 0);
SELECT anomaly.drop_detector('d_rides');
SELECT anomaly.process('d_rides');
-- An admin sees only the detectors of roles whose privileges they have.
SELECT name, owner, state FROM anomaly.detector_status ORDER BY name;
RESET ROLE;
INSERT INTO det_rides (zone, fare, distance) VALUES (2, 10, 5), (1, 10, 5);
SELECT anomaly.process('d_alices') AS consumed;
SELECT who, count(*) FROM det_seen GROUP BY who;
-- The owner may no longer read the table: the detector stops.
REVOKE SELECT ON det_rides FROM det_alice;
INSERT INTO det_rides (zone, fare, distance) VALUES (2, 10, 5);
SELECT anomaly.process('d_alices') AS consumed;
SELECT state, last_error FROM anomaly.detectors WHERE name = 'd_alices';

-- A destination table (KDA's DESTINATION_SQL_STREAM): each round also
-- inserts its scores there, in the same transaction, as the detector's
-- owner, into the columns the table has among those of anomaly.scores.
CREATE TABLE det_src (id int PRIMARY KEY, zone int, v float8);
CREATE TABLE det_dest (id bigserial PRIMARY KEY, detector text, partition_key varchar(10),
	source_key jsonb, commit_lsn pg_lsn, commit_time timestamptz, features float8[],
	anomaly_score float8, anomaly_grade float8, is_anomaly bool, expected float8[],
	explanation jsonb, scored_at timestamptz, note text DEFAULT 'mine');
CREATE TABLE det_dest_min (anomaly_score float8, features text);
CREATE TABLE det_dest_noscore (detector text, features float8[]);
CREATE TABLE det_dest_badtype (anomaly_score float8, commit_lsn int);
CREATE VIEW det_dest_view AS SELECT * FROM det_dest_min;
GRANT SELECT ON det_src TO det_alice;
-- Destinations that are refused.
SELECT anomaly.create_detector('d_dest', 'det_src', ARRAY['v'], options => '{"destination": "det_nope"}');
SELECT anomaly.create_detector('d_dest', 'det_src', ARRAY['v'], options => '{"destination": 5}');
SELECT anomaly.create_detector('d_dest', 'det_src', ARRAY['v'], options => '{"destination": "public.det_dest_noscore"}');
SELECT anomaly.create_detector('d_dest', 'det_src', ARRAY['v'], options => '{"destination": "det_dest_badtype"}');
SELECT anomaly.create_detector('d_dest', 'det_src', ARRAY['v'], options => '{"destination": "det_dest_view"}');
SET ROLE det_alice;
SELECT anomaly.create_detector('d_dest', 'det_src', ARRAY['v'], options => '{"destination": "det_dest"}');
RESET ROLE;
GRANT INSERT ON det_dest TO det_alice;
GRANT USAGE ON SEQUENCE det_dest_id_seq TO det_alice;
SET ROLE det_alice;
SELECT anomaly.create_detector('d_dest', 'det_src', ARRAY['v'], partition_by => 'zone',
	options => '{"destination": "det_dest", "number_of_trees": 5, "sub_sample_size": 10, "with_explanation": true}');
RESET ROLE;
SELECT options->'destination' AS destination FROM anomaly.detectors WHERE name = 'd_dest';
INSERT INTO det_src SELECT g, g % 2, g % 5 FROM generate_series(1, 40) g;
BEGIN;
INSERT INTO det_src VALUES (41, 0, 1);
ROLLBACK;
INSERT INTO det_src VALUES (42, 1, 100), (43, NULL, 2);
SELECT anomaly.process('d_dest') AS consumed;
-- The same rows as in anomaly.scores, the owner's default for the rest.
SELECT (SELECT count(*) FROM anomaly.scores WHERE detector = 'd_dest') AS scores,
	count(*) AS destination_rows, count(*) FILTER (WHERE note = 'mine') AS defaults,
	count(explanation) AS explained
FROM det_dest;
SELECT count(*) AS different FROM (
	(SELECT detector, partition_key, source_key, commit_lsn, commit_time, features,
		anomaly_score, anomaly_grade, is_anomaly, expected, explanation, scored_at
	 FROM anomaly.scores WHERE detector = 'd_dest'
	 EXCEPT ALL
	 SELECT detector, partition_key::text, source_key, commit_lsn, commit_time, features,
		anomaly_score, anomaly_grade, is_anomaly, expected, explanation, scored_at FROM det_dest)
	UNION ALL
	(SELECT detector, partition_key::text, source_key, commit_lsn, commit_time, features,
		anomaly_score, anomaly_grade, is_anomaly, expected, explanation, scored_at FROM det_dest
	 EXCEPT ALL
	 SELECT detector, partition_key, source_key, commit_lsn, commit_time, features,
		anomaly_score, anomaly_grade, is_anomaly, expected, explanation, scored_at
	 FROM anomaly.scores WHERE detector = 'd_dest')) d;
-- alter_detector changes the destination (checked again, as the owner)
-- and removes it.
SELECT anomaly.alter_detector('d_dest', options => '{"destination": "det_dest_min"}');
GRANT INSERT ON det_dest_min TO det_alice;
SELECT anomaly.alter_detector('d_dest', options => '{"destination": "det_dest_min"}');
SELECT generation, options->'destination' AS destination FROM anomaly.detectors WHERE name = 'd_dest';
INSERT INTO det_src VALUES (44, 0, 3);
SELECT anomaly.process('d_dest') AS consumed;
SELECT anomaly_score IS NOT NULL AS scored, features FROM det_dest_min;
SELECT anomaly.alter_detector('d_dest', options => '{"destination": null}');
SELECT options ? 'destination' AS has_destination FROM anomaly.detectors WHERE name = 'd_dest';
INSERT INTO det_src VALUES (45, 0, 3);
SELECT anomaly.process('d_dest') AS consumed;
SELECT (SELECT count(*) FROM det_dest) AS dest_rows, (SELECT count(*) FROM det_dest_min) AS min_rows,
	(SELECT count(*) FROM anomaly.scores WHERE detector = 'd_dest') AS scores;
-- The scores a round writes fire the alert rules in the same transaction
-- (the statement trigger on anomaly.scores sees every row of the round).
SELECT anomaly.create_destination('det_chan', 'notify', '{"channel": "det_alerts"}');
SELECT anomaly.create_alert_rule('det_any', detector => 'd_dest', destination => 'det_chan',
	min_score => 0, for_duration => '0', group_by => '{partition_key}');
INSERT INTO det_src VALUES (146, 0, 1), (147, 1, 2), (148, 0, 3);
SELECT anomaly.process('d_dest') AS consumed;
SELECT e.group_key, e.status, s.detector, (s.source_key->>'id')::int AS first_row,
	e.last_score_id - e.first_score_id AS later_scores
FROM anomaly.alert_episodes e JOIN anomaly.scores s ON s.id = e.first_score_id
WHERE e.rule = 'det_any' ORDER BY e.group_key::text;
SELECT anomaly.drop_alert_rule('det_any');
SELECT anomaly.drop_destination('det_chan', force => true);
-- The owner loses INSERT on the destination: the detector stops, nothing
-- of the round is written.
SELECT anomaly.alter_detector('d_dest', options => '{"destination": "det_dest"}');
REVOKE INSERT ON det_dest FROM det_alice;
INSERT INTO det_src VALUES (46, 0, 3);
SELECT anomaly.process('d_dest') AS consumed;
SELECT state, last_error FROM anomaly.detector_status WHERE name = 'd_dest';
SELECT (SELECT count(*) FROM det_dest) AS dest_rows,
	(SELECT count(*) FROM anomaly.scores WHERE detector = 'd_dest') AS scores;
-- Given INSERT back, it resumes where it stopped.
GRANT INSERT ON det_dest TO det_alice;
SELECT anomaly.resume_detector('d_dest');
SELECT anomaly.process('d_dest') AS consumed;
SELECT (SELECT count(*) FROM det_dest) AS dest_rows,
	(SELECT count(*) FROM anomaly.scores WHERE detector = 'd_dest') AS scores;
-- The destination dropped: the detector stops with a clear error.
DROP TABLE det_dest_min CASCADE;
SELECT anomaly.alter_detector('d_dest', options => '{"destination": "det_dest_min"}');
DROP TABLE det_dest;
INSERT INTO det_src VALUES (47, 0, 3);
SELECT anomaly.process('d_dest') AS consumed;
SELECT state, last_error FROM anomaly.detector_status WHERE name = 'd_dest';
SELECT anomaly.drop_detector('d_dest');

-- A destination as a pump (KDA's stock-ticker example): each column is
-- filled by name with a score field (KDA's names accepted, case ignored),
-- a column of the source row, a feature, or its own default; ROWTIME is
-- the source's time_column (a timestamp taken as UTC).
CREATE TABLE det_ticks (id int PRIMARY KEY, ticker text, price numeric(10,2),
	change float8, at timestamp);
CREATE TABLE det_pump (ticker varchar(8), price numeric, change float8,
	"ANOMALY_SCORE" float8, ANOMALY_EXPLANATION jsonb, ROWTIME timestamptz, spread float8,
	n bigint GENERATED ALWAYS AS IDENTITY, note text DEFAULT 'pumped');
CREATE TABLE det_pump_unfillable (ticker text, anomaly_score float8, volume int);
CREATE TABLE det_pump_badtype (anomaly_score float8, ticker int);
-- A column nothing fills, or whose value does not cast, is refused.
SELECT anomaly.create_detector('d_pump', 'det_ticks', ARRAY['price', 'abs(change)'],
	options => '{"destination": "det_pump_unfillable"}');
SELECT anomaly.create_detector('d_pump', 'det_ticks', ARRAY['price', 'abs(change)'],
	options => '{"destination": "det_pump_badtype"}');
-- spread is a feature only by its name.
SELECT anomaly.create_detector('d_pump', 'det_ticks', ARRAY['price', 'abs(change)'],
	options => '{"destination": "det_pump"}');
SELECT anomaly.create_detector('d_pump', 'det_ticks', ARRAY['price', 'abs(change)'],
	options => '{"destination": "det_pump", "time_column": "nope"}');
SELECT anomaly.create_detector('d_pump', 'det_ticks', ARRAY['price', 'abs(change)'],
	options => '{"destination": "det_pump", "time_column": "ticker"}');
SELECT anomaly.create_detector('d_pump', 'det_ticks', ARRAY['price', 'abs(change)'],
	options => '{"destination": "det_pump", "time_column": "at", "feature_names": ["p", "spread"],
		"with_explanation": true, "number_of_trees": 5, "sub_sample_size": 10}');
SELECT options->'time_column' AS time_column FROM anomaly.detectors WHERE name = 'd_pump';
INSERT INTO det_ticks SELECT g, CASE WHEN g % 2 = 0 THEN 'AMZN' ELSE 'TBV' END,
	10 + g % 7, g % 3 - 1, timestamp '2026-01-01 00:00' + g * interval '1 minute'
FROM generate_series(1, 30) g;
INSERT INTO det_ticks VALUES (31, NULL, NULL, 5, NULL);
SELECT anomaly.process('d_pump') AS consumed;
-- Every row filled: source columns as they are, the features, the score
-- and explanation, ROWTIME from "at", the defaults for the rest.
SELECT count(*) AS rows, count(*) FILTER (WHERE p.ticker = t.ticker AND p.price = t.price
		AND p.change = t.change) AS same_source,
	count(*) FILTER (WHERE p.spread = abs(t.change)) AS same_feature,
	count(*) FILTER (WHERE p."ANOMALY_SCORE" = s.anomaly_score
		AND p.anomaly_explanation = s.explanation) AS same_score,
	count(*) FILTER (WHERE p.rowtime = t.at AT TIME ZONE 'UTC' AND s.rowtime = p.rowtime) AS same_rowtime,
	count(DISTINCT p.n) AS identities, count(*) FILTER (WHERE note = 'pumped') AS defaults
FROM det_pump p
JOIN det_ticks t ON t.ticker = p.ticker AND t.price = p.price AND t.change = p.change
JOIN anomaly.scores s ON s.detector = 'd_pump' AND (s.source_key->>'id')::int = t.id;
-- The row with a NULL feature has no score; it is pumped all the same.
SELECT ticker, price, change, "ANOMALY_SCORE", rowtime, spread FROM det_pump WHERE price IS NULL;
-- Without a time column, ROWTIME is the commit time.
SELECT count(*) AS scores, count(*) FILTER (WHERE rowtime = commit_time) AS rowtime_is_commit_time
FROM anomaly.scores WHERE detector = 'd_dest';
-- A column added later that nothing fills stops the detector, nothing
-- of the round written; dropping it again lets it resume.
ALTER TABLE det_pump ADD COLUMN volume int;
INSERT INTO det_ticks VALUES (32, 'AMZN', 12, 1, '2026-01-02');
SELECT anomaly.process('d_pump') AS consumed;
SELECT state, last_error FROM anomaly.detector_status WHERE name = 'd_pump';
SELECT anomaly.alter_detector('d_pump', options => '{"destination": "det_pump"}');
ALTER TABLE det_pump DROP COLUMN volume;
SELECT anomaly.resume_detector('d_pump');
SELECT anomaly.process('d_pump') AS consumed;
SELECT count(*) AS rows, count(*) FILTER (WHERE rowtime = '2026-01-02 00:00+00') AS late_row
FROM det_pump;
SELECT anomaly.drop_detector('d_pump');

-- bounding_box_cache_fraction: a stored forest is decoded with the fraction
-- the detector has when it is next loaded; at every fraction the scores are
-- those of every box kept (the window function's), to the bit.
CREATE TABLE det_frac (id bigserial PRIMARY KEY, v float8);
SELECT anomaly.create_detector('d_frac', 'det_frac', ARRAY['v', 'v * v'],
	options => '{"number_of_trees": 10, "sub_sample_size": 32, "seed": 3, "shingle_size": 2,
		"bounding_box_cache_fraction": 0}');
INSERT INTO det_frac (v) SELECT sin(g) * 10 + g % 7 FROM generate_series(1, 150) g;
SELECT anomaly.process() AS consumed;
SELECT anomaly.alter_detector('d_frac', options => '{"bounding_box_cache_fraction": 0.5}');
INSERT INTO det_frac (v) SELECT sin(g) * 10 + g % 5 FROM generate_series(151, 300) g;
SELECT anomaly.process() AS consumed;
SELECT anomaly.rcf_info(model) ->> 'bounding_box_cache_fraction' AS fraction, count(*) AS keys
FROM anomaly.export_detector_models('d_frac') GROUP BY 1;
SELECT anomaly.alter_detector('d_frac', options => '{"bounding_box_cache_fraction": 1}');
INSERT INTO det_frac (v) SELECT CASE WHEN g = 400 THEN 90 ELSE sin(g) * 10 + g % 3 END
	FROM generate_series(301, 450) g;
SELECT anomaly.process() AS consumed;
SELECT count(*) AS compared,
	count(*) FILTER (WHERE s.anomaly_score IS DISTINCT FROM w.score) AS different,
	max(s.anomaly_score) > 2 AS spike_seen
FROM anomaly.scores s
JOIN (SELECT id, anomaly.random_cut_forest(ARRAY[v, v * v], 10, 32, 100000, 2, 3,
			transform => 'normalize', transform_decay => 0.0001) OVER (ORDER BY id) AS score
	FROM det_frac) w ON (s.source_key->>'id')::bigint = w.id
WHERE s.detector = 'd_frac';
-- The forests in memory were laid out again at the round after each
-- change (alter_detector makes every process reload them): their models
-- carry the last fraction.
SELECT anomaly.rcf_info(model) ->> 'bounding_box_cache_fraction' AS fraction, count(*) AS keys
FROM anomaly.export_detector_models('d_frac') GROUP BY 1;
-- The forest memory check counts the fraction: a forest too large for
-- anomaly.max_forest_memory with every box fits with none.
SET anomaly.max_forest_memory = '4MB';
SELECT anomaly.create_detector('d_frac_big', 'det_frac', ARRAY['v'], options => '{"number_of_trees": 100}');
SELECT anomaly.create_detector('d_frac_big', 'det_frac', ARRAY['v'],
	options => '{"number_of_trees": 100, "bounding_box_cache_fraction": 0}') IS NOT NULL AS created;
RESET anomaly.max_forest_memory;
SELECT anomaly.drop_detector('d_frac_big');
SELECT anomaly.drop_detector('d_frac');
DROP TABLE det_frac;

-- A feature name given in feature_names is at most 63 bytes, as a column's
-- (a feature fills the destination column of its name); an unnamed
-- feature is named by its expression, of any length, and keeps that name
-- when the detector is altered.
SELECT anomaly.create_detector('d_names', 'det_rides', ARRAY['fare'],
	options => jsonb_build_object('feature_names', jsonb_build_array(repeat('n', 64))));
SELECT anomaly.create_detector('d_names', 'det_rides', ARRAY['fare', 'distance'],
	options => jsonb_build_object('feature_names', jsonb_build_array('fare', repeat('é', 32))));
SELECT anomaly.create_detector('d_names', 'det_rides',
	ARRAY['greatest(fare, 0.0) + least(distance, 0.0) * 0.0 + coalesce(zone, 0) * 0.0'],
	options => '{"number_of_trees": 5, "sub_sample_size": 10}') IS NOT NULL AS created;
SELECT octet_length(options->'feature_names'->>0) AS name_bytes FROM anomaly.detectors WHERE name = 'd_names';
SELECT anomaly.alter_detector('d_names', options => '{"number_of_trees": 6}');
SELECT anomaly.alter_detector('d_names',
	options => jsonb_build_object('feature_names', jsonb_build_array(repeat('é', 31) || 'n')));
SELECT octet_length(options->'feature_names'->>0) AS name_bytes, options->'number_of_trees' AS trees
FROM anomaly.detectors WHERE name = 'd_names';
SELECT anomaly.drop_detector('d_names');

-- drop_detector drops the slot; scores stay.
SELECT count(*) AS slots FROM pg_replication_slots
WHERE slot_name LIKE 'anomaly\_%' AND database = current_database();
SELECT anomaly.drop_detector('d_alices');
SELECT anomaly.drop_detector('d_rides');
SELECT anomaly.drop_detector('d_rides');
SELECT anomaly.drop_detector('d_rides', if_exists => true);
SELECT count(*) AS slots FROM pg_replication_slots
WHERE slot_name LIKE 'anomaly\_%' AND database = current_database();
SELECT count(*) AS origins FROM pg_replication_origin
WHERE roname LIKE 'anomaly\_' || (SELECT oid FROM pg_database WHERE datname = current_database()) || '\_%';
SELECT count(*) > 0 AS scores_kept FROM anomaly.scores WHERE detector = 'd_rides';

DROP FUNCTION det_whoami(), det_wire(text, regclass);
DROP TABLE det_rides, det_text, det_upd, det_unlogged, det_parted, det_parted_3, det_secret, det_seen, det_src,
	det_dest_noscore, det_dest_badtype CASCADE;
DROP OWNED BY det_alice, det_bob;
DROP ROLE det_alice, det_bob;
