
-- What a detector scores for one row: the columns of anomaly.scores between
-- detector and scored_at, the type in which process() passes a batch of
-- them (src/detect/write.c).
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

-- Scores written by detectors (one row per scored source row).  Alert rules
-- read them in the same transaction that writes them.
CREATE TABLE scores (
	id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	detector text NOT NULL,
	LIKE _score_row,
	scored_at timestamptz NOT NULL DEFAULT now(),
	-- KDA's ROWTIME: the source's time_column, else the commit time (0.2.0)
	rowtime timestamptz
);
CREATE INDEX scores_detector_id_idx ON scores (detector, id);
COMMENT ON TABLE scores IS 'anomaly scores of rows consumed by detectors';

-- Scores are the users' data: pg_dump keeps them.
SELECT pg_catalog.pg_extension_config_dump('scores', '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('@extschema@.scores', 'id')::regclass, '');
