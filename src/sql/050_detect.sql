-- Detectors: every committed row of a table, scored as it is committed
-- (KDA's stream and pump).  The management functions and process() are C
-- (src/detect/); these are their tables.  Nothing here is for users to
-- write: the functions keep the invariants (see docs/detectors.md).

-- One row per detector: its definition, its progress (written in the same
-- transaction as its scores), and its counters.
CREATE TABLE detectors (
	id bigint PRIMARY KEY,			-- names the slot and origin: anomaly_<db oid>_<id>
	name text NOT NULL UNIQUE
		CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,62}$'),
	source regclass NOT NULL,		-- the table (survives renames; dumped by name)
	source_name text NOT NULL,		-- qualified name when created, altered or restored
	features text[] NOT NULL,
	partition_by text,
	filter text,
	options jsonb NOT NULL,			-- normalized: every option present
	owner regrole NOT NULL,			-- expressions run as this role (dumped by name)
	search_path text NOT NULL,		-- the creator's, pinned for expressions
	source_columns jsonb NOT NULL,	-- [[attnum, name, type oid], ...] when defined
	key_columns text[],				-- primary key columns, NULL: whole row
	slot_name name NOT NULL UNIQUE,
	home text NOT NULL,				-- system id:database oid:extension oid where the slot is;
									-- another value: restored from a dump, to adopt
	state text NOT NULL DEFAULT 'active'
		CHECK (state IN ('active', 'paused', 'failed')),
	generation integer NOT NULL DEFAULT 1,	-- +1 when the models are reset
	batch_seq bigint NOT NULL DEFAULT 0,	-- rounds committed
	round_token bigint NOT NULL DEFAULT 0,	-- new at every round: are cached models current?
	progress_lsn pg_lsn NOT NULL,			-- WAL read and processed up to here
	last_commit_lsn pg_lsn NOT NULL DEFAULT '0/0',	-- last source transaction consumed
	last_commit_time timestamptz,
	rows_scored bigint NOT NULL DEFAULT 0,
	rows_filtered bigint NOT NULL DEFAULT 0,
	rows_failed bigint NOT NULL DEFAULT 0,
	rows_per_s double precision,
	last_batch_at timestamptz,
	caught_up_at timestamptz,
	checkpoint_seq bigint NOT NULL DEFAULT 0,	-- journal entries up to here are in the stored models
	checkpoint_at timestamptz,					-- when forests were last stored
	journal_points bigint NOT NULL DEFAULT 0,	-- points in the journal after checkpoint_seq
	last_error text,
	last_error_at timestamptz,
	error_count integer NOT NULL DEFAULT 0,
	note text,						-- what happened to it that is not an error (restored...)
	created_at timestamptz NOT NULL DEFAULT now(),
	created_by name NOT NULL DEFAULT session_user,
	-- {"start": "all"}: the scoring of the rows stored before creation and
	-- its progress (see src/detect/backfill.c); NULL: none
	backfill jsonb
);
COMMENT ON TABLE detectors IS 'continuous detectors: definition, progress and counters (managed by create_detector and friends)';

-- The models, one per partition key, as of a journal position: the model
-- holds every journal point up to (journal_seq, journal_pos).
CREATE TABLE detector_forests (
	detector_id bigint NOT NULL REFERENCES detectors (id) ON DELETE CASCADE,
	partition_key text,
	model rcf NOT NULL,
	journal_seq bigint NOT NULL,
	journal_pos integer NOT NULL,
	points bigint NOT NULL,
	updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX detector_forests_key_idx
	ON detector_forests (detector_id, partition_key) NULLS NOT DISTINCT;
ALTER TABLE detector_forests ALTER COLUMN model SET STORAGE EXTERNAL;
COMMENT ON TABLE detector_forests IS 'stored detector models (anomaly.rcf) per partition key';

-- The points learned by each round since the last checkpoint, in order:
-- with detector_forests, enough to rebuild every model exactly.
CREATE TABLE detector_journal (
	detector_id bigint NOT NULL REFERENCES detectors (id) ON DELETE CASCADE,
	seq bigint NOT NULL,
	keys text[] NOT NULL,
	points double precision[] NOT NULL,
	PRIMARY KEY (detector_id, seq)
);
ALTER TABLE detector_journal ALTER COLUMN keys SET STORAGE EXTERNAL;
ALTER TABLE detector_journal ALTER COLUMN points SET STORAGE EXTERNAL;
COMMENT ON TABLE detector_journal IS 'points learned by detectors since their last model checkpoint';

-- Rows a detector could not score: a feature, the partition key or the
-- filter raised an error for them.
CREATE TABLE detector_failures (
	id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	detector text NOT NULL,
	source_key jsonb,
	commit_lsn pg_lsn,
	commit_time timestamptz,
	sqlstate text,
	reason text NOT NULL,
	failed_at timestamptz NOT NULL DEFAULT now(),
	owner regrole					-- the detector's owner: who may see the row
);
CREATE INDEX detector_failures_detector_idx ON detector_failures (detector, id);
COMMENT ON TABLE detector_failures IS 'rows detectors could not score, with the reason';

-- A row of anomaly.scores as process() passes a batch of them.
CREATE TYPE _score_row AS (
	partition_key text,
	source_key jsonb,
	commit_lsn pg_lsn,
	commit_time timestamptz,
	features double precision[],
	anomaly_score double precision,
	anomaly_grade double precision,
	is_anomaly boolean,
	expected double precision[],
	explanation jsonb
);

-- pg_dump keeps detectors, their models and their failures (and
-- anomaly.scores, see 030): a restored detector adopts its new database on
-- its next round (a new slot, from then on), see docs/detectors.md.
SELECT pg_catalog.pg_extension_config_dump('detectors', '');
SELECT pg_catalog.pg_extension_config_dump('detector_forests', '');
SELECT pg_catalog.pg_extension_config_dump('detector_journal', '');
SELECT pg_catalog.pg_extension_config_dump('detector_failures', '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('@extschema@.detector_failures', 'id')::regclass, '');

REVOKE ALL ON detectors, detector_forests, detector_journal, detector_failures FROM PUBLIC;
GRANT SELECT ON detectors, detector_failures TO anomaly_admin;

-- An admin sees the detectors, and the failures (rejected rows' keys and
-- values), of the roles whose privileges they have; superusers see all.
-- The extension's own code reads and writes these as the superuser.
ALTER TABLE detectors ENABLE ROW LEVEL SECURITY;
CREATE POLICY detectors_of_owner ON detectors FOR SELECT TO anomaly_admin
	USING (pg_catalog.pg_has_role(owner::pg_catalog.oid, 'USAGE'));
ALTER TABLE detector_failures ENABLE ROW LEVEL SECURITY;
CREATE POLICY detector_failures_of_owner ON detector_failures FOR SELECT TO anomaly_admin
	USING (owner IS NOT NULL AND pg_catalog.pg_has_role(owner::pg_catalog.oid, 'USAGE'));

-- ---------------------------------------------------------------------------
-- Management.  Each checks the caller: create_detector needs SELECT on the
-- source table; the others need to be the detector's owner (or a member of
-- it) or a superuser.  Expressions are checked when given, as the caller,
-- and later always run as the detector's owner.

CREATE FUNCTION create_detector(
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

CREATE FUNCTION alter_detector(
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

CREATE FUNCTION pause_detector(name text)
RETURNS void
AS 'MODULE_PATHNAME', 'anomaly_pause_detector'
LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION pause_detector(text)
IS 'stops scoring; rows committed meanwhile are scored after resume (the slot keeps their WAL)';

CREATE FUNCTION resume_detector(name text)
RETURNS void
AS 'MODULE_PATHNAME', 'anomaly_resume_detector'
LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION resume_detector(text)
IS 'resumes a paused or failed detector where it stopped';

CREATE FUNCTION reset_detector(name text)
RETURNS void
AS 'MODULE_PATHNAME', 'anomaly_reset_detector'
LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION reset_detector(text)
IS 'forgets the learned models and counters; recreates a lost slot (rows committed before are then not scored)';

CREATE FUNCTION drop_detector(name text, if_exists boolean DEFAULT false)
RETURNS void
AS 'MODULE_PATHNAME', 'anomaly_drop_detector'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION drop_detector(text, boolean)
IS 'drops a detector, its models and its replication slot (its scores stay)';

CREATE FUNCTION process(detector text DEFAULT NULL, max_rows integer DEFAULT NULL)
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
CREATE FUNCTION _wire_describe(message bytea, relation bytea DEFAULT NULL)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'anomaly_wire_describe'
LANGUAGE C STABLE;
REVOKE ALL ON FUNCTION _wire_describe(bytea, bytea) FROM PUBLIC;

CREATE FUNCTION _drop_orphan_slots()
RETURNS integer
AS 'MODULE_PATHNAME', 'anomaly_detect_drop_orphans'
LANGUAGE C VOLATILE;
REVOKE ALL ON FUNCTION _drop_orphan_slots() FROM PUBLIC;

-- DROP EXTENSION drops the detectors' slots: this trigger loads the library,
-- whose object access hook does it when the extension is really dropped.
CREATE FUNCTION _ddl_guard()
RETURNS event_trigger
AS 'MODULE_PATHNAME', 'anomaly_detect_ddl_guard'
LANGUAGE C;
REVOKE ALL ON FUNCTION _ddl_guard() FROM PUBLIC;
CREATE EVENT TRIGGER anomaly_drop_slots ON ddl_command_start
	WHEN TAG IN ('DROP EXTENSION', 'DROP SCHEMA', 'DROP OWNED')
	EXECUTE FUNCTION _ddl_guard();
COMMENT ON EVENT TRIGGER anomaly_drop_slots IS 'drops the detectors'' replication slots with the extension';

-- ---------------------------------------------------------------------------
-- Status: one row per detector, with its slot.

-- Each admin sees the detectors of the roles whose privileges they have
-- (superusers: all); a security barrier, so that a caller's function in
-- WHERE cannot see the other rows first.
CREATE VIEW detector_status WITH (security_barrier) AS
SELECT d.name,
	d.source_name AS source,
	(c.oid IS NOT NULL) AS source_exists,
	pg_catalog.pg_get_userbyid(d.owner) AS owner,
	CASE WHEN d.state = 'active' AND s.active_pid IS NULL AND w.note IS NOT NULL
		THEN 'waiting' ELSE d.state
	END AS state,
	d.rows_scored,
	d.rows_filtered,
	d.rows_failed,
	d.rows_per_s,
	d.last_commit_lsn,
	d.last_commit_time,
	d.progress_lsn,
	CASE WHEN pg_catalog.pg_is_in_recovery() THEN NULL
		ELSE greatest(pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), d.progress_lsn), 0)
	END AS lag_bytes,
	CASE WHEN d.caught_up_at IS NULL THEN NULL
		WHEN NOT pg_catalog.pg_is_in_recovery()
			AND pg_catalog.pg_current_wal_lsn() <= d.progress_lsn THEN interval '0'
		ELSE greatest(pg_catalog.now() - d.caught_up_at, interval '0')
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
	d.created_at
FROM detectors d
CROSS JOIN anomaly._worker_note('detector') w(note)
LEFT JOIN pg_catalog.pg_class c ON c.oid = d.source
LEFT JOIN pg_catalog.pg_replication_slots s ON s.slot_name = d.slot_name
	AND s.database = pg_catalog.current_database()
WHERE pg_catalog.pg_has_role(d.owner::pg_catalog.oid, 'USAGE');
COMMENT ON VIEW detector_status IS 'state, throughput, progress, lag and slot of each detector';
GRANT SELECT ON detector_status TO anomaly_admin;
