-- The detectors' tables are in schema/050_detect.sql; admins read their
-- own rows (its policies), only the extension's code writes.
REVOKE ALL ON detectors, detector_forests, detector_journal, detector_failures FROM PUBLIC;
REVOKE ALL ON detector_windows, detector_window_rows FROM PUBLIC;
GRANT SELECT ON detectors, detector_failures TO anomaly_admin;

-- An admin sees the detectors, and the failures (rejected rows' keys and
-- values), of the roles whose privileges they have; superusers see all.
-- The extension's own code reads and writes these as the superuser.  Run
-- by the install and by every update: each policy is dropped and created
-- again, so its one definition is here.
ALTER TABLE detectors ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS detectors_of_owner ON detectors;
CREATE POLICY detectors_of_owner ON detectors FOR SELECT TO anomaly_admin
	USING (pg_catalog.pg_has_role(owner::pg_catalog.oid, 'USAGE'));
ALTER TABLE detector_failures ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS detector_failures_of_owner ON detector_failures;
CREATE POLICY detector_failures_of_owner ON detector_failures FOR SELECT TO anomaly_admin
	USING (owner IS NOT NULL AND pg_catalog.pg_has_role(owner::pg_catalog.oid, 'USAGE'));

-- ---------------------------------------------------------------------------
-- Management.  Each checks the caller: create_detector needs SELECT on the
-- source table; the others need to be the detector's owner (or a member of
-- it) or a superuser.  Expressions are checked when given, as the caller,
-- and later always run as the detector's owner.

CREATE OR REPLACE FUNCTION create_detector(
	name text,
	source regclass,
	features text[],
	partition_by text DEFAULT NULL,
	filter text DEFAULT NULL,
	options jsonb DEFAULT '{}')
RETURNS void
AS 'MODULE_PATHNAME', 'anomaly_create_detector'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION create_detector(text, regclass, text[], text, text, jsonb)
IS 'starts scoring the rows committed to a table from now on: one Random Cut Forest per partition key';

CREATE OR REPLACE FUNCTION alter_detector(
	name text,
	features text[] DEFAULT NULL,
	partition_by text DEFAULT NULL,
	filter text DEFAULT NULL,
	options jsonb DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'anomaly_alter_detector'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION alter_detector(text, text[], text, text, jsonb)
IS 'changes a detector (NULL: unchanged; '''' removes partition_by or filter); new features, partitioning or forest parameters reset its models';

CREATE OR REPLACE FUNCTION pause_detector(name text)
RETURNS void
AS 'MODULE_PATHNAME', 'anomaly_pause_detector'
LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION pause_detector(text)
IS 'stops scoring; rows committed meanwhile are scored after resume (the slot keeps their WAL)';

CREATE OR REPLACE FUNCTION resume_detector(name text)
RETURNS void
AS 'MODULE_PATHNAME', 'anomaly_resume_detector'
LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION resume_detector(text)
IS 'resumes a paused or failed detector where it stopped';

CREATE OR REPLACE FUNCTION reset_detector(name text)
RETURNS void
AS 'MODULE_PATHNAME', 'anomaly_reset_detector'
LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION reset_detector(text)
IS 'forgets the learned models and counters; recreates a lost slot (rows committed before are then not scored)';

CREATE OR REPLACE FUNCTION drop_detector(name text, if_exists boolean DEFAULT false)
RETURNS void
AS 'MODULE_PATHNAME', 'anomaly_drop_detector'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION drop_detector(text, boolean)
IS 'drops a detector, its models and its replication slot (its scores stay)';

CREATE OR REPLACE FUNCTION process(detector text DEFAULT NULL, max_rows integer DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'anomaly_process'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION process(text, integer)
IS 'one round of detection in this transaction (for pg_cron): returns the rows consumed';

REVOKE ALL ON FUNCTION create_detector(text, regclass, text[], text, text, jsonb),
	alter_detector(text, text[], text, text, jsonb), pause_detector(text),
	resume_detector(text), reset_detector(text), drop_detector(text, boolean),
	process(text, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION create_detector(text, regclass, text[], text, text, jsonb),
	alter_detector(text, text[], text, text, jsonb), pause_detector(text),
	resume_detector(text), reset_detector(text), drop_detector(text, boolean),
	process(text, integer) TO anomaly_admin;

-- One decoded message of the output plugin as JSON (the relation message
-- before a row lets its values be shown).
CREATE OR REPLACE FUNCTION _wire_describe(message bytea, relation bytea DEFAULT NULL)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'anomaly_wire_describe'
LANGUAGE C STABLE;
REVOKE ALL ON FUNCTION _wire_describe(bytea, bytea) FROM PUBLIC;

-- Where this database's detectors score: "system identifier:database
-- OID:extension OID" (detectors.home; the alert rules' trigger compares).
CREATE OR REPLACE FUNCTION _detector_home()
RETURNS text
AS 'MODULE_PATHNAME', 'anomaly_detector_home'
LANGUAGE C STABLE;
REVOKE ALL ON FUNCTION _detector_home() FROM PUBLIC;

CREATE OR REPLACE FUNCTION _drop_orphan_slots()
RETURNS integer
AS 'MODULE_PATHNAME', 'anomaly_detect_drop_orphans'
LANGUAGE C VOLATILE;
REVOKE ALL ON FUNCTION _drop_orphan_slots() FROM PUBLIC;

-- DROP EXTENSION drops the detectors' slots: the event trigger
-- anomaly_drop_slots (schema/051_drop_slots.sql) calls this, which loads the
-- library, whose object access hook does it when the extension is really
-- dropped.
CREATE OR REPLACE FUNCTION _ddl_guard()
RETURNS event_trigger
AS 'MODULE_PATHNAME', 'anomaly_detect_ddl_guard'
LANGUAGE C;
REVOKE ALL ON FUNCTION _ddl_guard() FROM PUBLIC;

-- What each detector's open round is doing, from shared memory (when the
-- library is preloaded): detector_status shows it with the catalog.  Rows
-- of the detectors whose owner's privileges the caller has.
CREATE OR REPLACE FUNCTION detector_progress(
	OUT detector_id bigint, OUT pid integer, OUT phase text,
	OUT round_started timestamptz, OUT base_seq bigint, OUT round_rows bigint,
	OUT round_scored bigint, OUT read_lsn pg_lsn, OUT oldest_commit timestamptz,
	OUT caught_up boolean, OUT bytes_per_s float8, OUT rows_per_s float8,
	OUT memory_bytes bigint)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'anomaly_detector_progress'
LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION detector_progress() IS 'the open round and the catch-up rates of each detector, from shared memory (detector_status shows them)';
REVOKE ALL ON FUNCTION detector_progress() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION detector_progress() TO anomaly_admin;
-- Seeding: a detector's forest for one partition key from a stored model
-- (rcf_train's output), so that the key starts warm (src/detect/seed.c).
CREATE OR REPLACE FUNCTION seed_detector(detector text, partition_key text, model rcf)
RETURNS bigint
AS 'MODULE_PATHNAME', 'anomaly_seed_detector'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION seed_detector(text, text, rcf)
IS 'replaces the forest of one partition key (NULL: the NULL key) of a detector by a model with its parameters; returns the points the model learned';
REVOKE ALL ON FUNCTION seed_detector(text, text, rcf) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION seed_detector(text, text, rcf) TO anomaly_admin;

-- ---------------------------------------------------------------------------
-- Status: one row per detector, with its slot.

-- Each admin sees the detectors of the roles whose privileges they have
-- (superusers: all); a security barrier, so that a caller's function in
-- WHERE cannot see the other rows first.
CREATE OR REPLACE VIEW detector_status WITH (security_barrier) AS
SELECT d.name,
	d.source_name AS source,
	(c.oid IS NOT NULL) AS source_exists,
	pg_catalog.pg_get_userbyid(d.owner) AS owner,
	CASE WHEN d.state = 'active' AND s.active_pid IS NULL AND w.note IS NOT NULL
		THEN 'waiting' ELSE d.state
	END AS state,
	d.rows_scored OPERATOR(pg_catalog.+) CASE WHEN p.pid IS NOT NULL AND p.base_seq = d.batch_seq
		THEN p.round_scored ELSE 0 END AS rows_scored,
	d.rows_filtered,
	d.rows_failed,
	d.rows_per_s,
	d.last_commit_lsn,
	d.last_commit_time,
	d.progress_lsn,
	CASE WHEN pg_catalog.pg_is_in_recovery() THEN NULL
		ELSE greatest(pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), d.progress_lsn), 0)
	END AS lag_bytes,
	CASE WHEN NOT pg_catalog.pg_is_in_recovery()
			AND pg_catalog.pg_current_wal_lsn() <= d.progress_lsn THEN interval '0'
		ELSE greatest(pg_catalog.now() - greatest(p.oldest_commit, d.caught_up_at,
			d.last_commit_time, d.created_at), interval '0')
	END AS lag_time,
	d.last_batch_at,
	d.slot_name,
	s.active AS slot_active,
	s.active_pid AS worker_pid,
	s.wal_status AS slot_wal_status,
	CASE WHEN pg_catalog.pg_is_in_recovery() THEN NULL
		ELSE pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), s.restart_lsn)
	END AS retained_bytes,
	d.last_error,
	d.last_error_at,
	CASE WHEN d.state = 'active' AND s.active_pid IS NULL AND w.note IS NOT NULL
		THEN concat_ws('; ', w.note, d.note) ELSE d.note
	END AS note,
	d.generation,
	d.created_at,
	p.phase AS round_phase,
	p.round_started AS round_started_at,
	CASE WHEN p.detector_id IS NULL THEN NULL
		ELSE greatest(p.round_rows OPERATOR(pg_catalog.-) p.round_scored, 0)
	END AS pending_rows,
	CASE WHEN pg_catalog.pg_is_in_recovery() THEN NULL
		ELSE greatest(pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(),
			greatest(p.read_lsn, d.progress_lsn)), 0)
	END AS pending_bytes,
	p.bytes_per_s AS catchup_bytes_per_s,
	p.rows_per_s AS catchup_rows_per_s,
	CASE WHEN p.detector_id IS NULL OR pg_catalog.pg_is_in_recovery() THEN NULL
		ELSE pg_catalog.make_interval(secs =>
			CASE WHEN p.round_rows OPERATOR(pg_catalog.<=) p.round_scored THEN 0
				ELSE (p.round_rows OPERATOR(pg_catalog.-) p.round_scored) OPERATOR(pg_catalog./) p.rows_per_s
			END OPERATOR(pg_catalog.+)
			CASE WHEN pg_catalog.pg_current_wal_lsn() OPERATOR(pg_catalog.<=) greatest(p.read_lsn, d.progress_lsn)
				THEN 0
				ELSE pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(),
					greatest(p.read_lsn, d.progress_lsn))::pg_catalog.float8 OPERATOR(pg_catalog./) p.bytes_per_s
			END)
	END AS eta,
	CASE WHEN s.active THEN p.memory_bytes END AS worker_memory,
	-- windowed detectors: watermark, windows scored, late rows, rows waiting
	(SELECT pg_catalog.jsonb_build_object('watermark', dw.watermark,
		'max_event_time', dw.max_event_time, 'windows_scored', dw.windows_scored,
		'late_rows', dw.late_rows, 'last_late_at', dw.last_late_at,
		'rows_buffered', dw.rows_buffered)
	 FROM detector_windows dw WHERE dw.detector_id = d.id) AS windows
FROM detectors d
CROSS JOIN anomaly._worker_note('detector') w(note)
LEFT JOIN pg_catalog.pg_class c ON c.oid = d.source
LEFT JOIN pg_catalog.pg_replication_slots s ON s.slot_name = d.slot_name
	AND s.database = pg_catalog.current_database()
LEFT JOIN detector_progress() p ON p.detector_id = d.id
WHERE pg_catalog.pg_has_role(d.owner::pg_catalog.oid, 'USAGE');
COMMENT ON VIEW detector_status IS 'state, throughput, progress, lag and slot of each detector';
GRANT SELECT ON detector_status TO anomaly_admin;
