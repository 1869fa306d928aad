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
	-- a transaction too large for one round is consumed over several: its
	-- commit LSN and how many of its rows are consumed (src/detect/reader.c)
	partial_commit_lsn pg_lsn,
	partial_rows bigint NOT NULL DEFAULT 0,
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
	backfill jsonb,
	-- the settings its expressions run under: its creator's DateStyle,
	-- TimeZone, extra_float_digits... (see src/detect/settings.c)
	settings jsonb NOT NULL
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

-- pg_dump keeps detectors, their models and their failures (and
-- anomaly.scores, see 030): a restored detector adopts its new database on
-- its next round (a new slot, from then on), see docs/detectors.md.
SELECT pg_catalog.pg_extension_config_dump('detectors', '');
SELECT pg_catalog.pg_extension_config_dump('detector_forests', '');
SELECT pg_catalog.pg_extension_config_dump('detector_journal', '');
SELECT pg_catalog.pg_extension_config_dump('detector_failures', '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('@extschema@.detector_failures', 'id')::regclass, '');
SELECT pg_catalog.pg_extension_config_dump('detector_windows', '');
SELECT pg_catalog.pg_extension_config_dump('detector_window_rows', '');
