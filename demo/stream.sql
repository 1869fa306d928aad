-- The streaming part of the demo: the same taxi rides, committed slice by
-- slice into a table that a detector watches, with an alert rule that sends
-- to a webhook and to SNS (both local stand-ins).  Run with psql variables
--   webhook_url   the webhook receiver's URL
--   topic_arn     the SNS topic (the endpoint and AWS keys are in postgresql.conf)
--   min_grade     the alert rule's threshold on the grade

-- The stream: what an application would write, one row per zone and
-- 10 minutes.  The primary key becomes the scores' source_key, so every
-- alert says which row raised it.
CREATE TABLE rides_live (
	ts timestamptz NOT NULL,
	zone text NOT NULL,
	rides integer NOT NULL,
	PRIMARY KEY (zone, ts)
);

-- Two destinations.  Neither holds a secret: the SNS endpoint and the AWS
-- keys are superuser-only settings in postgresql.conf.
SELECT anomaly.create_destination('ops-webhook', 'webhook',
	jsonb_build_object('url', :'webhook_url', 'description', 'demo: local webhook receiver'));
SELECT anomaly.create_destination('ops-sns', 'sns',
	jsonb_build_object('topic_arn', :'topic_arn', 'description', 'demo: local SNS stand-in'));

-- The detector: one forest per zone, with detect()'s defaults (the last 8
-- readings as a shingle, normalized, z_factor 4), graded as detect() grades.
-- The feature is a preprocessing expression, as a KDA preprocessing Lambda
-- would have been: the 10-minute count as rides per hour.
SELECT anomaly.create_detector('taxi', 'rides_live',
	features => ARRAY['rides * 6.0'],
	partition_by => 'zone',
	options => '{"with_explanation": true,
				 "with_directionality": true, "feature_names": ["rides_per_hour"]}');

-- One alert rule, to both destinations, on the grade.  A graded anomaly is
-- one reading (the grader mutes the following ones unless they are clearly
-- stronger), so an episode resolves at the next reading: no "resolved"
-- notifications.
SELECT anomaly.create_alert_rule('taxi-unusual', detector => 'taxi',
	destinations => ARRAY['ops-webhook', 'ops-sns'],
	min_grade => :min_grade, severity => 'warning', send_resolved => false);

-- Commits one simulated day as `slices` transactions, spread over `secs`
-- seconds of wall clock from the epoch time t0: compressed real time.
CREATE PROCEDURE stream_day(day timestamptz, t0 double precision, secs double precision,
							slices integer DEFAULT 12)
LANGUAGE plpgsql
AS $$
DECLARE
	step interval := interval '1 day' / slices;
	s timestamptz;
BEGIN
	FOR k IN 0 .. slices - 1 LOOP
		s := day + k * step;
		INSERT INTO rides_live SELECT * FROM taxi_rides(s, s + step);
		COMMIT;
		PERFORM pg_sleep(greatest(0, t0 + (k + 1) * secs / slices
									 - extract(epoch FROM clock_timestamp())));
	END LOOP;
END
$$;
