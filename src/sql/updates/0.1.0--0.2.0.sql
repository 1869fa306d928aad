-- anomaly 0.1.0 -> 0.2.0: what 0.2.0 changed in 0.1.0's tables, types and
-- function signatures.
--
-- The update script anomaly--0.1.0--0.2.0.sql is this delta followed by
-- every part of src/sql/*.sql (the functions, views, aggregates, triggers,
-- policies, comments and grants, all written to be run again: CREATE OR
-- REPLACE, policies dropped and created again, grants that state the whole
-- truth); the Makefile builds it.  So this file holds only what those parts
-- cannot do: new tables and columns, functions whose arguments changed
-- (dropped here, created again by the parts) and renamed functions.  The upgrade test
-- (test/t/090_upgrade.pl) compares the result with a fresh install catalog
-- by catalog.
--
-- 0.2.0 is the security release (CHANGELOG.md): owners on destinations,
-- rules and detector failures with row level security, the alert management
-- functions switching user in C instead of SECURITY DEFINER, credential
-- bindings, and EXECUTE revoked from PUBLIC on internal helpers.

\echo Use "ALTER EXTENSION anomaly UPDATE" to load this file. \quit

-- ---------------------------------------------------------------------------
-- Tables: owners, the superuser-only error details.
--
-- Objects made under 0.1.0 had no owner.  A destination goes to the role
-- that created it (created_by) while that role exists; a rule to its
-- detector's owner, else its first destination's owner; a recorded failure
-- to its detector's owner.  What has no such role left belongs to the role
-- running the update (a superuser), which can be seen and changed only by
-- superusers.

ALTER TABLE destinations
	ADD COLUMN owner regrole NOT NULL DEFAULT pg_catalog.to_regrole(current_user);
UPDATE destinations d
SET owner = r.oid::regrole
FROM pg_catalog.pg_roles r
WHERE r.rolname OPERATOR(pg_catalog.=) d.created_by;

ALTER TABLE alert_rules
	ADD COLUMN owner regrole NOT NULL DEFAULT pg_catalog.to_regrole(current_user);
-- message templates (issue 17), after owner as in a fresh install
ALTER TABLE alert_rules
	ADD COLUMN subject_template text,
	ADD COLUMN body_template text,
	ADD COLUMN templates jsonb NOT NULL DEFAULT '{}';
UPDATE alert_rules r
SET owner = coalesce(
	(SELECT x.owner FROM detectors x WHERE x.name OPERATOR(pg_catalog.=) r.detector),
	(SELECT d.owner FROM destinations d WHERE d.name OPERATOR(pg_catalog.=) r.destinations[1]),
	r.owner);

ALTER TABLE detector_failures ADD COLUMN owner regrole;
UPDATE detector_failures f
SET owner = x.owner
FROM detectors x
WHERE x.name OPERATOR(pg_catalog.=) f.detector;

CREATE TABLE delivery_errors (
	outbox_id bigint PRIMARY KEY,
	destination text NOT NULL,
	at timestamptz NOT NULL DEFAULT now(),
	detail text NOT NULL
);
COMMENT ON TABLE delivery_errors IS 'full delivery errors (response bodies, addresses) by outbox id: superusers only';

-- Functions whose arguments changed.
DROP FUNCTION _render(text, jsonb, text, jsonb, text);
DROP FUNCTION _record(bigint[], text[], text[], integer[]);
DROP FUNCTION create_alert_rule(text, text, text, text[], double precision, double precision, interval, interval, text[], text, boolean, interval);

-- Transforms (issue 13): random_cut_forest, random_cut_forest_with_explanation
-- and detect() take transform, transform_decay and transform_weights (last):
-- a new signature, so the old functions are dropped and created again.  The
-- KDA functions keep their behaviour by default; detect() gets the defaults
-- chosen by the validation protocol (bench/README.md): shingle_size 8,
-- z_factor 4, cusum_threshold 0 (off), transform 'normalize' with
-- transform_decay 0.0001.
DROP FUNCTION random_cut_forest(double precision[], integer, integer, bigint, integer, bigint);
DROP FUNCTION random_cut_forest(record, integer, integer, bigint, integer, bigint);
DROP FUNCTION random_cut_forest_with_explanation(double precision[], integer, integer, bigint, integer, boolean, bigint, text[]);
DROP FUNCTION random_cut_forest_with_explanation(record, integer, integer, bigint, integer, boolean, bigint, text[]);
DROP FUNCTION detect(double precision[], integer, integer, bigint, integer, bigint, double precision, double precision, double precision, double precision, double precision, double precision, integer, double precision, text, text[], double precision, double precision);
DROP FUNCTION detect(record, integer, integer, bigint, integer, bigint, double precision, double precision, double precision, double precision, double precision, double precision, integer, double precision, text, text[], double precision, double precision);

-- Internal helpers are prefixed with _ (so \df anomaly.* shows what users
-- call apart): the type's I/O functions and rcf_train's support functions.
-- Their C symbols keep their names.
ALTER FUNCTION rcf_in(cstring) RENAME TO _rcf_in;
ALTER FUNCTION rcf_out(rcf) RENAME TO _rcf_out;
ALTER FUNCTION rcf_recv(internal) RENAME TO _rcf_recv;
ALTER FUNCTION rcf_send(rcf) RENAME TO _rcf_send;
ALTER FUNCTION rcf_train_transfn(internal, double precision[]) RENAME TO _rcf_train_transfn;
ALTER FUNCTION rcf_train_transfn(internal, double precision[], integer) RENAME TO _rcf_train_transfn;
ALTER FUNCTION rcf_train_transfn(internal, double precision[], integer, integer) RENAME TO _rcf_train_transfn;
ALTER FUNCTION rcf_train_transfn(internal, double precision[], integer, integer, bigint) RENAME TO _rcf_train_transfn;
ALTER FUNCTION rcf_train_transfn(internal, double precision[], integer, integer, bigint, integer) RENAME TO _rcf_train_transfn;
ALTER FUNCTION rcf_train_transfn(internal, double precision[], integer, integer, bigint, integer, bigint) RENAME TO _rcf_train_transfn;
ALTER FUNCTION rcf_train_finalfn(internal) RENAME TO _rcf_train_finalfn;

COMMENT ON EVENT TRIGGER anomaly_drop_slots IS 'drops the detectors'' replication slots with the extension';

-- ---------------------------------------------------------------------------
-- ROWTIME: each score carries its row's event time (the detector's
-- time_column, else the commit time).  Scores written by 0.1.0 have none.
ALTER TABLE scores ADD COLUMN rowtime timestamptz;

-- History: a detector created with {"start": "all"} scores the stored rows
-- first; its progress is here.
ALTER TABLE detectors ADD COLUMN backfill jsonb;

-- The settings a detector's expressions run under (src/detect/settings.c),
-- whoever's session runs its rounds.  0.1.0 ran them under the settings of
-- each round's session; a detector of 0.1.0 keeps those of the session
-- running the update (the database's and the role's defaults, as a
-- worker's round had them).  The names are settings.c's.
ALTER TABLE detectors ADD COLUMN settings jsonb;
UPDATE detectors SET settings = (
	SELECT pg_catalog.jsonb_object_agg(n, pg_catalog.current_setting(n))
	FROM pg_catalog.unnest(ARRAY['DateStyle', 'IntervalStyle', 'TimeZone',
		'timezone_abbreviations', 'extra_float_digits', 'bytea_output', 'xmlbinary',
		'xmloption', 'array_nulls', 'quote_all_identifiers', 'lc_monetary', 'lc_numeric',
		'lc_time', 'default_text_search_config', 'standard_conforming_strings',
		'transform_null_equals']) AS n);
ALTER TABLE detectors ALTER COLUMN settings SET NOT NULL;

-- A transaction too large for one round is consumed over several rounds
-- (src/detect/reader.c): its commit LSN and the rows of it consumed.
ALTER TABLE detectors ADD COLUMN partial_commit_lsn pg_lsn;
ALTER TABLE detectors ADD COLUMN partial_rows bigint NOT NULL DEFAULT 0;

-- Windowed detectors ({"window": ...}, src/detect/window_agg.c): per
-- detector, the watermark and counters; per accepted row still in a window
-- that is open, its values (as text, by column number) until every window it
-- belongs to is scored.  Both are written in the transaction that writes
-- the detector's progress: they are part of it.
CREATE TABLE detector_windows (
	detector_id bigint PRIMARY KEY REFERENCES detectors (id) ON DELETE CASCADE,
	max_event_time timestamptz,		-- the latest event time accepted
	watermark timestamptz,			-- max_event_time - allowed_lateness: windows ending at or before it are scored
	next_seq bigint NOT NULL DEFAULT 1,	-- arrival order of the next accepted row
	rows_buffered bigint NOT NULL DEFAULT 0,
	windows_scored bigint NOT NULL DEFAULT 0,
	late_rows bigint NOT NULL DEFAULT 0,	-- rows that came after their window was scored
	last_late_at timestamptz,
	stagger_window interval,		-- stagger: the window the rows' window_start were found with
	closed_with text				-- the window options the last round closed windows with
);
COMMENT ON TABLE detector_windows IS 'watermark and counters of windowed detectors';
CREATE TABLE detector_window_rows (
	detector_id bigint NOT NULL REFERENCES detectors (id) ON DELETE CASCADE,
	seq bigint NOT NULL,
	partition_key text,
	rowtime timestamptz NOT NULL,
	commit_lsn pg_lsn,
	commit_time timestamptz,
	row_data jsonb NOT NULL,		-- the row's values as text, by column number
	window_start timestamptz,		-- stagger: the start of the key's window holding the row
	window_opens boolean NOT NULL DEFAULT false,	-- stagger: the row opened that window
	PRIMARY KEY (detector_id, seq)
);
CREATE INDEX detector_window_rows_time_idx ON detector_window_rows (detector_id, rowtime);
-- Stagger windows (window_agg.c): the rows of the windows that close, and
-- those to delete, by window start; each key's windows by their first row.
CREATE INDEX detector_window_rows_stagger_idx ON detector_window_rows (detector_id, window_opens, window_start)
	WHERE window_start IS NOT NULL;
CREATE INDEX detector_window_rows_opens_idx ON detector_window_rows (detector_id, partition_key)
	WHERE window_opens;
COMMENT ON TABLE detector_window_rows IS 'rows of windowed detectors in windows not yet scored';

SELECT pg_catalog.pg_extension_config_dump('detector_windows', '');
SELECT pg_catalog.pg_extension_config_dump('detector_window_rows', '');

-- The sender shares each round between the destinations with due rows
-- (deliver.c): it reads each destination's due rows in order.
DROP INDEX outbox_destination_idx;
CREATE INDEX outbox_destination_idx ON outbox (destination, next_attempt_at, id);
