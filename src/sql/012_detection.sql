CREATE OR REPLACE FUNCTION detect(
	point double precision[],
	number_of_trees integer DEFAULT 100,
	sub_sample_size integer DEFAULT 256,
	time_decay bigint DEFAULT 100000,
	shingle_size integer DEFAULT 8,
	seed bigint DEFAULT 42,
	z_factor double precision DEFAULT 4,
	score_floor double precision DEFAULT 0.8,
	ignore_near_expected_above double precision DEFAULT 0,
	ignore_near_expected_below double precision DEFAULT 0,
	ignore_near_expected_above_ratio double precision DEFAULT 0,
	ignore_near_expected_below_ratio double precision DEFAULT 0,
	suppress integer DEFAULT 100,
	score_horizon double precision DEFAULT 3000,
	missing text DEFAULT 'skip',
	feature_names text[] DEFAULT NULL,
	cusum_drift double precision DEFAULT 2,
	cusum_threshold double precision DEFAULT 0,
	transform text DEFAULT 'normalize',
	transform_decay double precision DEFAULT 0.0001,
	transform_weights double precision[] DEFAULT NULL)
RETURNS detection
AS 'MODULE_PATHNAME', 'rcf_window_detect'
LANGUAGE C WINDOW IMMUTABLE PARALLEL SAFE;

CREATE OR REPLACE FUNCTION detect(
	point record,
	number_of_trees integer DEFAULT 100,
	sub_sample_size integer DEFAULT 256,
	time_decay bigint DEFAULT 100000,
	shingle_size integer DEFAULT 8,
	seed bigint DEFAULT 42,
	z_factor double precision DEFAULT 4,
	score_floor double precision DEFAULT 0.8,
	ignore_near_expected_above double precision DEFAULT 0,
	ignore_near_expected_below double precision DEFAULT 0,
	ignore_near_expected_above_ratio double precision DEFAULT 0,
	ignore_near_expected_below_ratio double precision DEFAULT 0,
	suppress integer DEFAULT 100,
	score_horizon double precision DEFAULT 3000,
	missing text DEFAULT 'skip',
	feature_names text[] DEFAULT NULL,
	cusum_drift double precision DEFAULT 2,
	cusum_threshold double precision DEFAULT 0,
	transform text DEFAULT 'normalize',
	transform_decay double precision DEFAULT 0.0001,
	transform_weights double precision[] DEFAULT NULL)
RETURNS detection
AS 'MODULE_PATHNAME', 'rcf_window_detect'
LANGUAGE C WINDOW IMMUTABLE PARALLEL SAFE;

COMMENT ON FUNCTION detect(double precision[], integer, integer, bigint, integer, bigint, double precision, double precision, double precision, double precision, double precision, double precision, integer, double precision, text, text[], double precision, double precision, text, double precision, double precision[])
IS 'graded anomaly detection over a window: Random Cut Forest score, thresholded into a grade';
COMMENT ON FUNCTION detect(record, integer, integer, bigint, integer, bigint, double precision, double precision, double precision, double precision, double precision, double precision, integer, double precision, text, text[], double precision, double precision, text, double precision, double precision[])
IS 'graded anomaly detection over the numeric columns of a row';
