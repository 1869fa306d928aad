-- Graded anomalies: detect() over a window, returning anomaly.detection.

CREATE TYPE detection AS (
	anomaly_score double precision,
	anomaly_grade double precision,
	is_anomaly boolean,
	threshold double precision,
	expected double precision[],
	explanation jsonb,
	confidence double precision
);
COMMENT ON TYPE detection IS 'a graded anomaly: raw score, grade in [0,1], decision, threshold, expected values, explanation, confidence';
