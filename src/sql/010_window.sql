-- KDA's RANDOM_CUT_FOREST over a window: each row's anomaly score, given
-- before the row is learned.  One forest per window partition, fed in the
-- window's ORDER BY order; the frame is ignored.

CREATE OR REPLACE FUNCTION random_cut_forest(
	point double precision[],
	number_of_trees integer DEFAULT 100,
	sub_sample_size integer DEFAULT 256,
	time_decay bigint DEFAULT 100000,
	shingle_size integer DEFAULT 1,
	seed bigint DEFAULT 42,
	transform text DEFAULT 'none',
	transform_decay double precision DEFAULT NULL,
	transform_weights double precision[] DEFAULT NULL)
RETURNS double precision
AS 'MODULE_PATHNAME', 'rcf_window_score'
LANGUAGE C WINDOW IMMUTABLE PARALLEL SAFE;

CREATE OR REPLACE FUNCTION random_cut_forest(
	point record,
	number_of_trees integer DEFAULT 100,
	sub_sample_size integer DEFAULT 256,
	time_decay bigint DEFAULT 100000,
	shingle_size integer DEFAULT 1,
	seed bigint DEFAULT 42,
	transform text DEFAULT 'none',
	transform_decay double precision DEFAULT NULL,
	transform_weights double precision[] DEFAULT NULL)
RETURNS double precision
AS 'MODULE_PATHNAME', 'rcf_window_score'
LANGUAGE C WINDOW IMMUTABLE PARALLEL SAFE;

COMMENT ON FUNCTION random_cut_forest(double precision[], integer, integer, bigint, integer, bigint, text, double precision, double precision[])
IS 'KDA RANDOM_CUT_FOREST: anomaly score of each row over the window partition';
COMMENT ON FUNCTION random_cut_forest(record, integer, integer, bigint, integer, bigint, text, double precision, double precision[])
IS 'KDA RANDOM_CUT_FOREST over the numeric columns of a row';

-- KDA's RANDOM_CUT_FOREST_WITH_EXPLANATION: the per-column explanation, in
-- KDA's positional order (with_directionality after shingle_size).

CREATE OR REPLACE FUNCTION random_cut_forest_with_explanation(
	point double precision[],
	number_of_trees integer DEFAULT 100,
	sub_sample_size integer DEFAULT 256,
	time_decay bigint DEFAULT 100000,
	shingle_size integer DEFAULT 1,
	with_directionality boolean DEFAULT false,
	seed bigint DEFAULT 42,
	feature_names text[] DEFAULT NULL,
	transform text DEFAULT 'none',
	transform_decay double precision DEFAULT NULL,
	transform_weights double precision[] DEFAULT NULL)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'rcf_window_explain'
LANGUAGE C WINDOW IMMUTABLE PARALLEL SAFE;

CREATE OR REPLACE FUNCTION random_cut_forest_with_explanation(
	point record,
	number_of_trees integer DEFAULT 100,
	sub_sample_size integer DEFAULT 256,
	time_decay bigint DEFAULT 100000,
	shingle_size integer DEFAULT 1,
	with_directionality boolean DEFAULT false,
	seed bigint DEFAULT 42,
	feature_names text[] DEFAULT NULL,
	transform text DEFAULT 'none',
	transform_decay double precision DEFAULT NULL,
	transform_weights double precision[] DEFAULT NULL)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'rcf_window_explain'
LANGUAGE C WINDOW IMMUTABLE PARALLEL SAFE;

COMMENT ON FUNCTION random_cut_forest_with_explanation(double precision[], integer, integer, bigint, integer, boolean, bigint, text[], text, double precision, double precision[])
IS 'KDA RANDOM_CUT_FOREST_WITH_EXPLANATION: per-feature attribution of each row''s score';
COMMENT ON FUNCTION random_cut_forest_with_explanation(record, integer, integer, bigint, integer, boolean, bigint, text[], text, double precision, double precision[])
IS 'KDA RANDOM_CUT_FOREST_WITH_EXPLANATION over the numeric columns of a row';
