-- anomaly 0.1.0: Random Cut Forest anomaly detection, KDA-compatible.
-- Built by the Makefile from src/sql/*.sql, in name order.

\echo Use "CREATE EXTENSION anomaly" to load this file. \quit

-- The analysis functions and types are for every role; what changes state
-- (detectors, destinations, alert rules) is granted separately, to
-- anomaly_admin, and revoked from PUBLIC where it is defined.
GRANT USAGE ON SCHEMA @extschema@ TO PUBLIC;

-- The role that may manage detectors, destinations and alert rules; one
-- cluster-wide role shared by every database that installs the extension.
DO $$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'anomaly_admin') THEN
		CREATE ROLE anomaly_admin NOLOGIN;
	END IF;
END
$$;
COMMENT ON ROLE anomaly_admin IS 'may manage anomaly detectors, alert destinations and rules, and send alerts';
-- KDA's RANDOM_CUT_FOREST over a window: each row's anomaly score, given
-- before the row is learned.  One forest per window partition, fed in the
-- window's ORDER BY order; the frame is ignored.

CREATE FUNCTION random_cut_forest(
	point double precision[],
	number_of_trees integer DEFAULT 100,
	sub_sample_size integer DEFAULT 256,
	time_decay bigint DEFAULT 100000,
	shingle_size integer DEFAULT 1,
	seed bigint DEFAULT 42)
RETURNS double precision
AS 'MODULE_PATHNAME', 'rcf_window_score'
LANGUAGE C WINDOW IMMUTABLE PARALLEL SAFE;

CREATE FUNCTION random_cut_forest(
	point record,
	number_of_trees integer DEFAULT 100,
	sub_sample_size integer DEFAULT 256,
	time_decay bigint DEFAULT 100000,
	shingle_size integer DEFAULT 1,
	seed bigint DEFAULT 42)
RETURNS double precision
AS 'MODULE_PATHNAME', 'rcf_window_score'
LANGUAGE C WINDOW IMMUTABLE PARALLEL SAFE;

COMMENT ON FUNCTION random_cut_forest(double precision[], integer, integer, bigint, integer, bigint)
IS 'KDA RANDOM_CUT_FOREST: anomaly score of each row over the window partition';
COMMENT ON FUNCTION random_cut_forest(record, integer, integer, bigint, integer, bigint)
IS 'KDA RANDOM_CUT_FOREST over the numeric columns of a row';

-- KDA's RANDOM_CUT_FOREST_WITH_EXPLANATION: the per-column explanation, in
-- KDA's positional order (with_directionality after shingle_size).

CREATE FUNCTION random_cut_forest_with_explanation(
	point double precision[],
	number_of_trees integer DEFAULT 100,
	sub_sample_size integer DEFAULT 256,
	time_decay bigint DEFAULT 100000,
	shingle_size integer DEFAULT 1,
	with_directionality boolean DEFAULT false,
	seed bigint DEFAULT 42,
	feature_names text[] DEFAULT NULL)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'rcf_window_explain'
LANGUAGE C WINDOW IMMUTABLE PARALLEL SAFE;

CREATE FUNCTION random_cut_forest_with_explanation(
	point record,
	number_of_trees integer DEFAULT 100,
	sub_sample_size integer DEFAULT 256,
	time_decay bigint DEFAULT 100000,
	shingle_size integer DEFAULT 1,
	with_directionality boolean DEFAULT false,
	seed bigint DEFAULT 42,
	feature_names text[] DEFAULT NULL)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'rcf_window_explain'
LANGUAGE C WINDOW IMMUTABLE PARALLEL SAFE;

COMMENT ON FUNCTION random_cut_forest_with_explanation(double precision[], integer, integer, bigint, integer, boolean, bigint, text[])
IS 'KDA RANDOM_CUT_FOREST_WITH_EXPLANATION: per-feature attribution of each row''s score';
COMMENT ON FUNCTION random_cut_forest_with_explanation(record, integer, integer, bigint, integer, boolean, bigint, text[])
IS 'KDA RANDOM_CUT_FOREST_WITH_EXPLANATION over the numeric columns of a row';

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

CREATE FUNCTION detect(
	point double precision[],
	number_of_trees integer DEFAULT 100,
	sub_sample_size integer DEFAULT 256,
	time_decay bigint DEFAULT 100000,
	shingle_size integer DEFAULT 1,
	seed bigint DEFAULT 42,
	z_factor double precision DEFAULT 3,
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
	cusum_threshold double precision DEFAULT 12)
RETURNS detection
AS 'MODULE_PATHNAME', 'rcf_window_detect'
LANGUAGE C WINDOW IMMUTABLE PARALLEL SAFE;

CREATE FUNCTION detect(
	point record,
	number_of_trees integer DEFAULT 100,
	sub_sample_size integer DEFAULT 256,
	time_decay bigint DEFAULT 100000,
	shingle_size integer DEFAULT 1,
	seed bigint DEFAULT 42,
	z_factor double precision DEFAULT 3,
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
	cusum_threshold double precision DEFAULT 12)
RETURNS detection
AS 'MODULE_PATHNAME', 'rcf_window_detect'
LANGUAGE C WINDOW IMMUTABLE PARALLEL SAFE;

COMMENT ON FUNCTION detect(double precision[], integer, integer, bigint, integer, bigint, double precision, double precision, double precision, double precision, double precision, double precision, integer, double precision, text, text[], double precision, double precision)
IS 'graded anomaly detection over a window: Random Cut Forest score, thresholded into a grade';
COMMENT ON FUNCTION detect(record, integer, integer, bigint, integer, bigint, double precision, double precision, double precision, double precision, double precision, double precision, integer, double precision, text, text[], double precision, double precision)
IS 'graded anomaly detection over the numeric columns of a row';

-- The stored model: a Random Cut Forest as a value (anomaly.rcf), trained
-- by an aggregate and used by scoring functions.

CREATE TYPE rcf;

CREATE FUNCTION rcf_in(cstring) RETURNS rcf
AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION rcf_out(rcf) RETURNS cstring
AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION rcf_recv(internal) RETURNS rcf
AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION rcf_send(rcf) RETURNS bytea
AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE TYPE rcf (
	INPUT = rcf_in,
	OUTPUT = rcf_out,
	RECEIVE = rcf_recv,
	SEND = rcf_send,
	INTERNALLENGTH = VARIABLE,
	ALIGNMENT = int4,
	STORAGE = extended
);
COMMENT ON TYPE rcf IS 'a Random Cut Forest model: parameters, samplers, trees and shingle, ready to continue';

-- rcf_train(point ORDER BY ...) with KDA's parameters as optional trailing
-- arguments, in random_cut_forest's order.  Aggregates take no named or
-- default arguments, hence one aggregate per arity.
CREATE FUNCTION rcf_train_transfn(internal, double precision[])
RETURNS internal AS 'MODULE_PATHNAME' LANGUAGE C PARALLEL SAFE;
CREATE FUNCTION rcf_train_transfn(internal, double precision[], integer)
RETURNS internal AS 'MODULE_PATHNAME' LANGUAGE C PARALLEL SAFE;
CREATE FUNCTION rcf_train_transfn(internal, double precision[], integer, integer)
RETURNS internal AS 'MODULE_PATHNAME' LANGUAGE C PARALLEL SAFE;
CREATE FUNCTION rcf_train_transfn(internal, double precision[], integer, integer, bigint)
RETURNS internal AS 'MODULE_PATHNAME' LANGUAGE C PARALLEL SAFE;
CREATE FUNCTION rcf_train_transfn(internal, double precision[], integer, integer, bigint, integer)
RETURNS internal AS 'MODULE_PATHNAME' LANGUAGE C PARALLEL SAFE;
CREATE FUNCTION rcf_train_transfn(internal, double precision[], integer, integer, bigint, integer, bigint)
RETURNS internal AS 'MODULE_PATHNAME' LANGUAGE C PARALLEL SAFE;
CREATE FUNCTION rcf_train_finalfn(internal)
RETURNS rcf AS 'MODULE_PATHNAME' LANGUAGE C PARALLEL SAFE;

CREATE AGGREGATE rcf_train(point double precision[]) (
	SFUNC = rcf_train_transfn, STYPE = internal,
	FINALFUNC = rcf_train_finalfn, FINALFUNC_MODIFY = READ_ONLY);
CREATE AGGREGATE rcf_train(point double precision[], number_of_trees integer) (
	SFUNC = rcf_train_transfn, STYPE = internal,
	FINALFUNC = rcf_train_finalfn, FINALFUNC_MODIFY = READ_ONLY);
CREATE AGGREGATE rcf_train(point double precision[], number_of_trees integer,
						   sub_sample_size integer) (
	SFUNC = rcf_train_transfn, STYPE = internal,
	FINALFUNC = rcf_train_finalfn, FINALFUNC_MODIFY = READ_ONLY);
CREATE AGGREGATE rcf_train(point double precision[], number_of_trees integer,
						   sub_sample_size integer, time_decay bigint) (
	SFUNC = rcf_train_transfn, STYPE = internal,
	FINALFUNC = rcf_train_finalfn, FINALFUNC_MODIFY = READ_ONLY);
CREATE AGGREGATE rcf_train(point double precision[], number_of_trees integer,
						   sub_sample_size integer, time_decay bigint,
						   shingle_size integer) (
	SFUNC = rcf_train_transfn, STYPE = internal,
	FINALFUNC = rcf_train_finalfn, FINALFUNC_MODIFY = READ_ONLY);
CREATE AGGREGATE rcf_train(point double precision[], number_of_trees integer,
						   sub_sample_size integer, time_decay bigint,
						   shingle_size integer, seed bigint) (
	SFUNC = rcf_train_transfn, STYPE = internal,
	FINALFUNC = rcf_train_finalfn, FINALFUNC_MODIFY = READ_ONLY);

CREATE FUNCTION rcf_score(model rcf, point double precision[])
RETURNS double precision
AS 'MODULE_PATHNAME', 'rcf_score_model' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION rcf_score(rcf, double precision[])
IS 'anomaly score of a point against a stored model, without learning it';

CREATE FUNCTION rcf_explain(model rcf, point double precision[],
							feature_names text[] DEFAULT NULL)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'rcf_explain_model' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION rcf_explain(rcf, double precision[], text[])
IS 'KDA-style explanation of a point''s score against a stored model';

CREATE FUNCTION rcf_update(model rcf, point double precision[])
RETURNS rcf
AS 'MODULE_PATHNAME', 'rcf_update_model' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION rcf_update(rcf, double precision[])
IS 'the model after learning a point, or each row of a two-dimensional array in order';

CREATE FUNCTION rcf_info(model rcf)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'rcf_info_model' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION rcf_info(rcf)
IS 'parameters, dimensions, updates seen and sizes of a stored model';

CREATE FUNCTION rcf_detect(model rcf, point double precision[],
						   feature_names text[] DEFAULT NULL)
RETURNS detection
AS 'MODULE_PATHNAME', 'rcf_detect_model' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION rcf_set_grading(
	model rcf,
	z_factor double precision DEFAULT 3,
	score_floor double precision DEFAULT 0.8,
	ignore_near_expected_above double precision DEFAULT 0,
	ignore_near_expected_below double precision DEFAULT 0,
	ignore_near_expected_above_ratio double precision DEFAULT 0,
	ignore_near_expected_below_ratio double precision DEFAULT 0,
	suppress integer DEFAULT 100,
	score_horizon double precision DEFAULT 3000,
	cusum_drift double precision DEFAULT 2,
	cusum_threshold double precision DEFAULT 12)
RETURNS rcf
AS 'MODULE_PATHNAME', 'rcf_set_grading_model' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION rcf_set_grading(rcf, double precision, double precision, double precision,
	double precision, double precision, double precision, integer, double precision,
	double precision, double precision)
IS 'the model with other grading parameters (detect()''s), keeping its forest and score statistics';

COMMENT ON FUNCTION rcf_detect(rcf, double precision[], text[])
IS 'graded detection of a point against a stored model and its grader state, without learning it';

-- Scores written by detectors (one row per scored source row).  Alert rules
-- read them in the same transaction that writes them.

CREATE TABLE scores (
	id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	detector text NOT NULL,
	partition_key text,
	source_key jsonb,
	commit_lsn pg_lsn,
	commit_time timestamptz,
	features double precision[],
	anomaly_score double precision,
	anomaly_grade double precision,
	is_anomaly boolean,
	expected double precision[],
	explanation jsonb,
	scored_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX scores_detector_id_idx ON scores (detector, id);
COMMENT ON TABLE scores IS 'anomaly scores of rows consumed by detectors';

-- Scores are the users' data: pg_dump keeps them.
SELECT pg_catalog.pg_extension_config_dump('scores', '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('@extschema@.scores', 'id')::regclass, '');
-- Alerts: destinations, alert rules and their episodes, the outbox, dead
-- letters, and delivery counters.  Delivery itself is C (deliver(), the
-- sender worker); everything a transaction writes here is written in that
-- transaction, so an alert is never lost once its cause has committed.
--
-- Nothing in these tables is a secret: destinations name credentials, whose
-- values live in superuser-only settings or the server's environment.

-- Where notifications go.  config is checked per kind by _check_config().
CREATE TABLE destinations (
	name text PRIMARY KEY
		CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$'),
	kind text NOT NULL
		CHECK (kind IN ('sns', 'webhook', 'slack', 'email', 'notify')),
	config jsonb NOT NULL,
	enabled boolean NOT NULL DEFAULT true,
	created_at timestamptz NOT NULL DEFAULT now(),
	created_by name NOT NULL DEFAULT session_user
);
COMMENT ON TABLE destinations IS 'alert destinations (no secrets: credentials are referenced by name)';

-- Alert rules over anomaly.scores.
CREATE TABLE alert_rules (
	name text PRIMARY KEY
		CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$'),
	detector text NOT NULL,
	destinations text[] NOT NULL CHECK (cardinality(destinations) > 0),
	min_grade double precision CHECK (min_grade >= 0 AND min_grade <= 1),
	min_score double precision CHECK (min_score >= 0),
	for_duration interval NOT NULL DEFAULT '0' CHECK (for_duration >= '0'),
	cooldown interval NOT NULL DEFAULT '0' CHECK (cooldown >= '0'),
	group_by text[] NOT NULL DEFAULT '{partition_key}',
	severity text NOT NULL DEFAULT 'warning'
		CHECK (severity IN ('info', 'warning', 'error', 'critical')),
	send_resolved boolean NOT NULL DEFAULT true,
	repeat_interval interval CHECK (repeat_interval > '0'),	-- NULL: notify once per episode
	enabled boolean NOT NULL DEFAULT true,
	created_at timestamptz NOT NULL DEFAULT now(),
	CHECK (min_grade IS NOT NULL OR min_score IS NOT NULL)
);
COMMENT ON TABLE alert_rules IS 'alert rules: when scores of a detector raise alerts, and where they go';

-- One row per alert episode: pending (anomalous, waiting for for_duration),
-- firing, then resolved.  The fingerprint is stable across episodes of the
-- same rule and group.
CREATE TABLE alert_episodes (
	id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	rule text NOT NULL REFERENCES alert_rules (name) ON DELETE CASCADE,
	fingerprint text NOT NULL,
	group_key jsonb NOT NULL,
	status text NOT NULL CHECK (status IN ('pending', 'firing', 'resolved')),
	started_at timestamptz NOT NULL,
	fired_at timestamptz,
	resolved_at timestamptz,
	last_seen_at timestamptz NOT NULL,
	notified boolean NOT NULL DEFAULT false,
	notifications integer NOT NULL DEFAULT 0,	-- firing notifications sent
	last_notified_at timestamptz,
	first_score_id bigint,
	last_score_id bigint,
	peak_score double precision,
	peak_grade double precision
);
CREATE UNIQUE INDEX alert_episodes_open_idx ON alert_episodes (rule, fingerprint)
	WHERE status <> 'resolved';
CREATE INDEX alert_episodes_notified_idx ON alert_episodes (rule, fingerprint, fired_at)
	WHERE notified;
COMMENT ON TABLE alert_episodes IS 'alert episodes (pending, firing, resolved) of the alert rules';

-- The outbox: one row per notification still to deliver.  LOGGED, written
-- in the transaction that raised the alert, deleted when delivered.
CREATE TABLE outbox (
	id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	destination text NOT NULL REFERENCES destinations (name),
	subject text NOT NULL,
	payload jsonb NOT NULL,
	dedup_id text,				-- NULL: 'anomaly-' || id
	attempts integer NOT NULL DEFAULT 0,
	created_at timestamptz NOT NULL DEFAULT now(),
	next_attempt_at timestamptz NOT NULL DEFAULT now(),
	last_attempt_at timestamptz,
	last_error text
);
CREATE INDEX outbox_due_idx ON outbox (next_attempt_at, id);
CREATE INDEX outbox_destination_idx ON outbox (destination);
COMMENT ON TABLE outbox IS 'notifications waiting for delivery (at least once)';

-- Notifications that failed permanently or ran out of attempts.
CREATE TABLE dead_letters (
	id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	outbox_id bigint NOT NULL,
	destination text NOT NULL,
	subject text NOT NULL,
	payload jsonb NOT NULL,
	dedup_id text NOT NULL,
	attempts integer NOT NULL,
	created_at timestamptz NOT NULL,
	failed_at timestamptz NOT NULL DEFAULT now(),
	error text NOT NULL
);
CREATE INDEX dead_letters_destination_idx ON dead_letters (destination, failed_at);
COMMENT ON TABLE dead_letters IS 'notifications that could not be delivered, with the last error';

-- Running totals per destination, updated by each delivery round.
CREATE TABLE delivery_counters (
	destination text PRIMARY KEY,
	sent bigint NOT NULL DEFAULT 0,
	retried bigint NOT NULL DEFAULT 0,
	dead bigint NOT NULL DEFAULT 0,
	last_success_at timestamptz,
	last_error_at timestamptz,
	last_error text
);
COMMENT ON TABLE delivery_counters IS 'delivery totals per destination';

-- pg_dump keeps their rows (and identity counters) with the extension.
SELECT pg_catalog.pg_extension_config_dump('destinations', '');
SELECT pg_catalog.pg_extension_config_dump('alert_rules', '');
SELECT pg_catalog.pg_extension_config_dump('alert_episodes', '');
SELECT pg_catalog.pg_extension_config_dump('outbox', '');
SELECT pg_catalog.pg_extension_config_dump('dead_letters', '');
SELECT pg_catalog.pg_extension_config_dump('delivery_counters', '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('@extschema@.alert_episodes', 'id')::regclass, '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('@extschema@.outbox', 'id')::regclass, '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('@extschema@.dead_letters', 'id')::regclass, '');

REVOKE ALL ON destinations, alert_rules, alert_episodes, outbox, dead_letters,
	delivery_counters FROM PUBLIC;
GRANT SELECT ON destinations, alert_rules, alert_episodes, outbox, dead_letters,
	delivery_counters TO anomaly_admin;

-- ---------------------------------------------------------------------------
-- Configuration checks

-- Raises an error when a config key looks like it holds a secret.
CREATE FUNCTION _reject_secret_keys(config jsonb, what text)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	k text;
BEGIN
	FOR k IN SELECT jsonb_object_keys(config) LOOP
		IF k <> 'credential' AND k <> 'url_credential'
			AND lower(k) ~ '(secret|passw|pwd|token|api_?key|private|auth|cookie|signature_key|access_key)' THEN
			RAISE EXCEPTION '% may not hold a secret: "%"', what, k
				USING ERRCODE = 'invalid_parameter_value',
				HINT = 'Secrets come from the superuser-only setting anomaly.credentials or the '
					'server''s environment (ANOMALY_CREDENTIAL_<NAME>); name one with "credential". '
					'AWS keys come from anomaly.aws_* settings, AWS_* variables or the shared credentials file.';
		END IF;
	END LOOP;
END
$$;

-- "a webhook", "an email": the kind with its article, for messages.
CREATE FUNCTION _a(kind text)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT CASE WHEN kind ~ '^[aeiou]' THEN 'an ' ELSE 'a ' END || kind
$$;

-- Raises an error unless value is a JSON string (when present).
CREATE FUNCTION _config_text(config jsonb, key text, required boolean, kind text)
RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	v text;
BEGIN
	IF NOT config ? key OR jsonb_typeof(config -> key) = 'null' THEN
		IF required THEN
			RAISE EXCEPTION '% destination needs "%"', kind, key
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
		RETURN NULL;
	END IF;
	IF jsonb_typeof(config -> key) <> 'string' THEN
		RAISE EXCEPTION '"%" of % destination must be a string', key, anomaly._a(kind)
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	v := config ->> key;
	IF v = '' OR v ~ '[\x01-\x1f\x7f]' THEN
		RAISE EXCEPTION '"%" of % destination must be non-empty and hold no control character', key, anomaly._a(kind)
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	RETURN v;
END
$$;

-- Raises an error unless value is a whole number from lo to hi (when
-- present); unit names what it counts.
CREATE FUNCTION _config_whole(config jsonb, key text, lo integer, hi integer, unit text)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	n numeric;
BEGIN
	IF NOT config ? key THEN
		RETURN;
	END IF;
	IF jsonb_typeof(config -> key) <> 'number' THEN
		RAISE EXCEPTION '"%" must be a number of %', key, unit
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	n := (config ->> key)::numeric;
	IF n <> trunc(n) OR n < lo OR n > hi THEN
		RAISE EXCEPTION '"%" must be a whole number from % to %', key, lo, hi
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
END
$$;

-- Checks a URL: scheme among schemes, a host, no user or password in it.
CREATE FUNCTION _check_url(url text, schemes text[], key text, kind text)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	m text[];
BEGIN
	m := regexp_match(url, '^([a-z]+)://([^/?#]*)');
	IF m IS NULL OR NOT m[1] = ANY (schemes) THEN
		RAISE EXCEPTION '"%" of % destination must be a % URL', key, anomaly._a(kind),
			array_to_string(schemes, ' or ')
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF m[2] = '' THEN
		RAISE EXCEPTION '"%" of % destination has no host', key, anomaly._a(kind)
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF strpos(m[2], '@') > 0 THEN
		RAISE EXCEPTION '"%" of % destination may not hold a user name or password', key, anomaly._a(kind)
			USING ERRCODE = 'invalid_parameter_value',
			HINT = 'Name the password with "credential"; it comes from anomaly.credentials or the environment.';
	END IF;
	IF url ~ '\s' THEN
		RAISE EXCEPTION '"%" of % destination may not contain white space', key, anomaly._a(kind)
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
END
$$;

-- Checks a destination's config for its kind; returns it unchanged.
CREATE FUNCTION _check_config(kind text, config jsonb)
RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, anomaly, pg_temp
AS $$
DECLARE
	allowed text[];
	k text;
	v text;
	h record;
BEGIN
	IF config IS NULL OR jsonb_typeof(config) <> 'object' THEN
		RAISE EXCEPTION 'destination config must be a JSON object'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	PERFORM _reject_secret_keys(config, 'the config of ' || _a(kind) || ' destination');

	allowed := CASE kind
		WHEN 'sns' THEN ARRAY['topic_arn', 'region', 'message_group_id']
		WHEN 'webhook' THEN ARRAY['url', 'url_credential', 'headers', 'credential', 'signature_header']
		WHEN 'slack' THEN ARRAY['url', 'url_credential', 'channel', 'username', 'icon_emoji']
		WHEN 'email' THEN ARRAY['url', 'from', 'to', 'starttls', 'username', 'credential', 'subject_prefix']
		WHEN 'notify' THEN ARRAY['channel']
	END;
	IF allowed IS NULL THEN
		RAISE EXCEPTION 'unknown destination kind "%"', kind
			USING ERRCODE = 'invalid_parameter_value',
			HINT = 'Kinds are sns, webhook, slack, email and notify.';
	END IF;
	allowed := allowed || ARRAY['rate_limit', 'timeout_ms', 'max_attempts', 'description'];
	FOR k IN SELECT jsonb_object_keys(config) LOOP
		IF NOT k = ANY (allowed) THEN
			RAISE EXCEPTION 'unknown key "%" in the config of % destination', k, _a(kind)
				USING ERRCODE = 'invalid_parameter_value',
				HINT = format('Keys are %s.', array_to_string(allowed, ', '));
		END IF;
	END LOOP;

	IF config ? 'rate_limit' THEN
		IF jsonb_typeof(config -> 'rate_limit') <> 'number' OR (config ->> 'rate_limit')::numeric <= 0 THEN
			RAISE EXCEPTION '"rate_limit" must be a positive number (notifications per second)'
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
	END IF;
	PERFORM _config_whole(config, 'timeout_ms', 100, 600000, 'milliseconds');
	PERFORM _config_whole(config, 'max_attempts', 1, 1000, 'attempts');
	PERFORM _config_text(config, 'description', false, kind);

	IF kind = 'sns' THEN
		v := _config_text(config, 'topic_arn', true, kind);
		IF v !~ '^arn:aws[a-z-]*:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_-]+(\.fifo)?$'
			OR length(split_part(v, ':', 6)) > 256 THEN
			RAISE EXCEPTION '"topic_arn" is not an SNS topic ARN: %', v
				USING ERRCODE = 'invalid_parameter_value',
				HINT = 'An SNS topic ARN looks like arn:aws:sns:eu-west-1:123456789012:name (or name.fifo).';
		END IF;
		v := _config_text(config, 'region', false, kind);
		IF v IS NOT NULL AND v !~ '^[a-z0-9-]{1,32}$' THEN
			RAISE EXCEPTION '"region" is not an AWS region name: %', v
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
		v := _config_text(config, 'message_group_id', false, kind);
		IF v IS NOT NULL THEN
			IF config ->> 'topic_arn' NOT LIKE '%.fifo' THEN
				RAISE EXCEPTION '"message_group_id" applies to FIFO topics only'
					USING ERRCODE = 'invalid_parameter_value';
			END IF;
			IF v !~ '^[\x21-\x7e]{1,128}$' THEN
				RAISE EXCEPTION '"message_group_id" must be 1 to 128 printable ASCII characters'
					USING ERRCODE = 'invalid_parameter_value';
			END IF;
		END IF;
	ELSIF kind IN ('webhook', 'slack') THEN
		v := _config_text(config, 'url', false, kind);
		IF v IS NULL AND _config_text(config, 'url_credential', false, kind) IS NULL THEN
			RAISE EXCEPTION '% destination needs "url" or "url_credential"', kind
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
		IF v IS NOT NULL AND config ? 'url_credential' THEN
			RAISE EXCEPTION '% destination takes "url" or "url_credential", not both', kind
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
		IF v IS NOT NULL THEN
			PERFORM _check_url(v, ARRAY['http', 'https'], 'url', kind);
			IF kind = 'slack' AND v ~* '^https?://hooks\.slack\.com/' THEN
				RAISE EXCEPTION 'a Slack incoming webhook URL is a secret and may not be stored in a destination'
					USING ERRCODE = 'invalid_parameter_value',
					HINT = 'Put the URL in anomaly.credentials or ANOMALY_CREDENTIAL_<NAME> and give that name as "url_credential".';
			END IF;
		END IF;
		IF kind = 'webhook' THEN
			PERFORM _config_text(config, 'credential', false, kind);
			v := _config_text(config, 'signature_header', false, kind);
			IF v IS NOT NULL AND v !~ '^[A-Za-z0-9-]{1,64}$' THEN
				RAISE EXCEPTION '"signature_header" is not a valid header name: %', v
					USING ERRCODE = 'invalid_parameter_value';
			END IF;
			IF config ? 'headers' THEN
				IF jsonb_typeof(config -> 'headers') <> 'object' THEN
					RAISE EXCEPTION '"headers" must be a JSON object of header names and string values'
						USING ERRCODE = 'invalid_parameter_value';
				END IF;
				PERFORM _reject_secret_keys(config -> 'headers', 'webhook headers');
				FOR h IN SELECT * FROM jsonb_each(config -> 'headers') LOOP
					IF h.key !~ '^[A-Za-z0-9!#$%&''*+.^_`|~-]{1,64}$' THEN
						RAISE EXCEPTION 'invalid header name "%"', h.key
							USING ERRCODE = 'invalid_parameter_value';
					END IF;
					IF lower(h.key) IN ('host', 'content-type', 'content-length', 'transfer-encoding',
										'connection', 'proxy-authorization', 'x-api-key', 'api-key') THEN
						RAISE EXCEPTION 'header "%" may not be set in a destination', h.key
							USING ERRCODE = 'invalid_parameter_value';
					END IF;
					IF jsonb_typeof(h.value) <> 'string' OR (h.value #>> '{}') ~ '[\x00-\x1f\x7f]'
						OR length(h.value #>> '{}') > 1024 THEN
						RAISE EXCEPTION 'header "%" must have a string value of at most 1024 characters without control characters', h.key
							USING ERRCODE = 'invalid_parameter_value';
					END IF;
				END LOOP;
			END IF;
		ELSE
			PERFORM _config_text(config, 'channel', false, kind);
			PERFORM _config_text(config, 'username', false, kind);
			PERFORM _config_text(config, 'icon_emoji', false, kind);
		END IF;
	ELSIF kind = 'email' THEN
		v := _config_text(config, 'url', true, kind);
		PERFORM _check_url(v, ARRAY['smtp', 'smtps'], 'url', kind);
		v := _config_text(config, 'from', true, kind);
		IF v !~ '^[^<>@\s,;]+@[^<>@\s,;]+$' THEN
			RAISE EXCEPTION '"from" is not an e-mail address: %', v
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
		IF NOT config ? 'to' OR jsonb_typeof(config -> 'to') <> 'array'
			OR jsonb_array_length(config -> 'to') = 0 THEN
			RAISE EXCEPTION 'email destination needs "to", a non-empty array of addresses'
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
		FOR h IN SELECT value FROM jsonb_array_elements(config -> 'to') LOOP
			IF jsonb_typeof(h.value) <> 'string' OR (h.value #>> '{}') !~ '^[^<>@\s,;]+@[^<>@\s,;]+$' THEN
				RAISE EXCEPTION '"to" holds something that is not an e-mail address: %', h.value
					USING ERRCODE = 'invalid_parameter_value';
			END IF;
		END LOOP;
		v := _config_text(config, 'starttls', false, kind);
		IF v IS NOT NULL AND v NOT IN ('required', 'try', 'none') THEN
			RAISE EXCEPTION '"starttls" must be "required", "try" or "none"'
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
		PERFORM _config_text(config, 'username', false, kind);
		PERFORM _config_text(config, 'credential', false, kind);
		PERFORM _config_text(config, 'subject_prefix', false, kind);
	ELSIF kind = 'notify' THEN
		v := _config_text(config, 'channel', true, kind);
		IF octet_length(v) > 63 THEN
			RAISE EXCEPTION '"channel" must be at most 63 bytes'
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
	END IF;

	FOR k IN SELECT unnest(ARRAY['credential', 'url_credential']) LOOP
		v := config ->> k;
		IF v IS NOT NULL AND v !~ '^[A-Za-z0-9_]{1,63}$' THEN
			RAISE EXCEPTION '"%" must name a credential (letters, digits and underscores)', k
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
	END LOOP;
	RETURN config;
END
$$;

-- ---------------------------------------------------------------------------
-- Destinations

-- Creates a destination after checking its config.
CREATE FUNCTION create_destination(name text, kind text, config jsonb DEFAULT '{}')
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, anomaly, pg_temp
AS $$
BEGIN
	IF name IS NULL OR kind IS NULL THEN
		RAISE EXCEPTION 'destination name and kind may not be NULL'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF name !~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$' THEN
		RAISE EXCEPTION 'invalid destination name "%"', name
			USING ERRCODE = 'invalid_parameter_value',
			HINT = 'Use up to 63 letters, digits, "_", "." or "-", starting with a letter or digit.';
	END IF;
	IF EXISTS (SELECT 1 FROM anomaly.destinations d WHERE d.name = create_destination.name) THEN
		RAISE EXCEPTION 'destination "%" already exists', name
			USING ERRCODE = 'duplicate_object';
	END IF;
	INSERT INTO anomaly.destinations (name, kind, config)
	VALUES (name, kind, anomaly._check_config(kind, config));
END
$$;

-- Changes a destination's config (when given) and whether it is enabled.
CREATE FUNCTION alter_destination(name text, config jsonb DEFAULT NULL, enabled boolean DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, anomaly, pg_temp
AS $$
DECLARE
	d anomaly.destinations;
BEGIN
	SELECT * INTO d FROM anomaly.destinations x WHERE x.name = alter_destination.name FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'destination "%" does not exist', name
			USING ERRCODE = 'undefined_object';
	END IF;
	UPDATE anomaly.destinations x
	SET config = CASE WHEN alter_destination.config IS NULL THEN x.config
					  ELSE anomaly._check_config(d.kind, alter_destination.config) END,
		enabled = coalesce(alter_destination.enabled, x.enabled)
	WHERE x.name = alter_destination.name;
END
$$;

-- Drops a destination.  Queued notifications or rules that use it prevent
-- this unless force, which moves the queue to the dead letters.
CREATE FUNCTION drop_destination(name text, force boolean DEFAULT false)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, anomaly, pg_temp
AS $$
DECLARE
	rules text;
	queued bigint;
BEGIN
	PERFORM 1 FROM anomaly.destinations d WHERE d.name = drop_destination.name FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'destination "%" does not exist', name
			USING ERRCODE = 'undefined_object';
	END IF;
	SELECT string_agg(r.name, ', ' ORDER BY r.name) INTO rules
	FROM anomaly.alert_rules r WHERE drop_destination.name = ANY (r.destinations);
	IF rules IS NOT NULL THEN
		RAISE EXCEPTION 'destination "%" is used by alert rules: %', name, rules
			USING ERRCODE = 'dependent_objects_still_exist',
			HINT = 'Drop those rules first.';
	END IF;
	SELECT count(*) INTO queued FROM anomaly.outbox o WHERE o.destination = drop_destination.name;
	IF queued > 0 AND NOT force THEN
		RAISE EXCEPTION 'destination "%" has % notifications waiting for delivery', name, queued
			USING ERRCODE = 'dependent_objects_still_exist',
			HINT = 'Wait for delivery, or pass force => true to move them to anomaly.dead_letters.';
	END IF;
	WITH gone AS (
		DELETE FROM anomaly.outbox o WHERE o.destination = drop_destination.name RETURNING o.*
	)
	INSERT INTO anomaly.dead_letters (outbox_id, destination, subject, payload, dedup_id,
									  attempts, created_at, error)
	SELECT g.id, g.destination, g.subject, g.payload, coalesce(g.dedup_id, 'anomaly-' || g.id),
		   g.attempts, g.created_at, 'destination dropped'
	FROM gone g;
	DELETE FROM anomaly.delivery_counters c WHERE c.destination = drop_destination.name;
	DELETE FROM anomaly.destinations d WHERE d.name = drop_destination.name;
END
$$;

-- ---------------------------------------------------------------------------
-- The payload (version 1) and the outbox

-- Shrinks a JSON object below max_bytes (as text) while keeping it valid
-- JSON: the largest values are cut into strings and listed in "truncated".
CREATE FUNCTION _fit_json(payload jsonb, max_bytes integer)
RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	p jsonb := payload;
	e record;
	cut text[] := '{}';
	vt text;
	over integer;
	keep integer;
	i integer;
BEGIN
	IF octet_length(p::text) <= max_bytes THEN
		RETURN p;
	END IF;
	IF jsonb_typeof(p) <> 'object' THEN
		p := jsonb_build_object('value', p);
	END IF;
	FOR e IN SELECT key, octet_length(value::text) AS size FROM jsonb_each(p)
			 WHERE octet_length(value::text) > 128 ORDER BY 2 DESC, 1 LOOP
		cut := cut || e.key;
		p := p || jsonb_build_object('truncated', to_jsonb(cut));
		vt := (p -> e.key)::text;
		over := octet_length(p::text) - max_bytes;
		IF over <= 0 THEN
			EXIT;
		END IF;
		-- characters to keep, scaled by the value's bytes per character
		keep := greatest(0, floor(length(vt)::numeric * (octet_length(vt) - over - 16)
								  / greatest(octet_length(vt), 1))::integer);
		i := 0;
		LOOP
			p := jsonb_set(p, ARRAY[e.key], to_jsonb(left(vt, keep)));
			EXIT WHEN octet_length(p::text) <= max_bytes OR keep = 0 OR i > 40;
			keep := keep - greatest(octet_length(p::text) - max_bytes, keep / 8, 1);
			keep := greatest(keep, 0);
			i := i + 1;
		END LOOP;
		EXIT WHEN octet_length(p::text) <= max_bytes;
	END LOOP;
	IF octet_length(p::text) > max_bytes THEN
		p := jsonb_build_object('version', payload -> 'version', 'alert', left(payload ->> 'alert', 64),
								'fingerprint', payload -> 'fingerprint', 'status', payload -> 'status',
								'truncated', true);
	END IF;
	RETURN p;
END
$$;

-- A stable short fingerprint of text.
CREATE FUNCTION _fingerprint(VARIADIC parts text[])
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT left(encode(sha256(convert_to(array_to_string(parts, chr(31), ''), 'UTF8')), 'hex'), 32)
$$;

-- Queues one notification; returns its outbox id.  Wakes the sender at commit.
CREATE FUNCTION _enqueue(destination text, subject text, payload jsonb, dedup_id text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, anomaly, pg_temp
AS $$
DECLARE
	id bigint;
BEGIN
	INSERT INTO anomaly.outbox (destination, subject, payload, dedup_id)
	VALUES (destination, left(subject, 1000), payload, dedup_id)
	RETURNING outbox.id INTO id;
	PERFORM anomaly._wake_sender();
	RETURN id;
END
$$;

-- Checks that a destination exists and is usable for sending; returns its kind.
CREATE FUNCTION _destination_kind(name text)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, anomaly, pg_temp
AS $$
DECLARE
	k text;
BEGIN
	SELECT d.kind INTO k FROM anomaly.destinations d WHERE d.name = _destination_kind.name;
	IF k IS NULL THEN
		RAISE EXCEPTION 'destination "%" does not exist', name
			USING ERRCODE = 'undefined_object';
	END IF;
	RETURN k;
END
$$;

-- Sends an alert from SQL: queues it in this transaction.
CREATE FUNCTION send_alert(destination text, subject text, body jsonb DEFAULT '{}')
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, anomaly, pg_temp
AS $$
DECLARE
	sev text;
BEGIN
	IF subject IS NULL OR subject = '' THEN
		RAISE EXCEPTION 'alert subject may not be empty'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	PERFORM anomaly._destination_kind(destination);
	sev := coalesce(body ->> 'severity', 'info');
	IF sev NOT IN ('info', 'warning', 'error', 'critical') THEN
		sev := 'info';
	END IF;
	RETURN anomaly._enqueue(destination, subject, jsonb_build_object(
		'version', 1,
		'source', 'send_alert',
		'alert', subject,
		'status', coalesce(nullif(body ->> 'status', ''), 'firing'),
		'severity', sev,
		'detector', body -> 'detector',
		'key', body -> 'key',
		'score', body -> 'score',
		'grade', body -> 'grade',
		'explanation', body -> 'explanation',
		'fingerprint', coalesce(body ->> 'fingerprint', anomaly._fingerprint('send_alert', destination, subject)),
		'starts_at', now(),
		'ends_at', NULL,
		'created_at', now(),
		'details', coalesce(body, '{}')));
END
$$;

-- Trigger function: any table can raise alerts.
--   CREATE TRIGGER t AFTER INSERT ON tab FOR EACH ROW
--       EXECUTE FUNCTION anomaly.alert_trigger('destination' [, 'subject' [, 'severity']]);
-- The destination may be a comma-separated list; the row goes in "details".
CREATE FUNCTION alert_trigger()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, anomaly, pg_temp
AS $$
DECLARE
	dests text[];
	dest text;
	subj text;
	sev text;
	rowdata jsonb;
	tab text;
BEGIN
	IF TG_LEVEL <> 'ROW' THEN
		RAISE EXCEPTION 'anomaly.alert_trigger() must be a FOR EACH ROW trigger'
			USING ERRCODE = 'feature_not_supported';
	END IF;
	IF TG_NARGS < 1 THEN
		RAISE EXCEPTION 'anomaly.alert_trigger() needs a destination as its first argument'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	tab := quote_ident(TG_TABLE_SCHEMA) || '.' || quote_ident(TG_TABLE_NAME);
	dests := regexp_split_to_array(TG_ARGV[0], '\s*,\s*');
	subj := CASE WHEN TG_NARGS >= 2 THEN TG_ARGV[1] ELSE TG_OP || ' on ' || tab END;
	sev := CASE WHEN TG_NARGS >= 3 THEN TG_ARGV[2] ELSE 'warning' END;
	IF sev NOT IN ('info', 'warning', 'error', 'critical') THEN
		RAISE EXCEPTION 'invalid severity "%" in trigger %', sev, TG_NAME
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	rowdata := CASE WHEN TG_OP = 'DELETE' THEN to_jsonb(OLD) ELSE to_jsonb(NEW) END;
	FOREACH dest IN ARRAY dests LOOP
		PERFORM anomaly._destination_kind(dest);
		PERFORM anomaly._enqueue(dest, subj, jsonb_build_object(
			'version', 1,
			'source', 'trigger',
			'alert', subj,
			'status', 'firing',
			'severity', sev,
			'detector', NULL,
			'key', jsonb_build_object('table', tab, 'trigger', TG_NAME),
			'score', NULL,
			'grade', NULL,
			'explanation', NULL,
			'fingerprint', anomaly._fingerprint('trigger', tab, TG_NAME, subj),
			'starts_at', now(),
			'ends_at', NULL,
			'created_at', now(),
			'operation', TG_OP,
			'details', rowdata));
	END LOOP;
	IF TG_OP = 'DELETE' THEN
		RETURN OLD;
	END IF;
	RETURN NEW;
END
$$;

-- ---------------------------------------------------------------------------
-- Alert rules

-- Creates an alert rule over the scores of a detector.
CREATE FUNCTION create_alert_rule(
	name text,
	detector text,
	destination text DEFAULT NULL,
	destinations text[] DEFAULT NULL,
	min_grade double precision DEFAULT NULL,
	min_score double precision DEFAULT NULL,
	for_duration interval DEFAULT '0',
	cooldown interval DEFAULT '0',
	group_by text[] DEFAULT '{partition_key}',
	severity text DEFAULT 'warning',
	send_resolved boolean DEFAULT true,
	repeat_interval interval DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, anomaly, pg_temp
AS $$
DECLARE
	dests text[];
	d text;
	g text;
BEGIN
	IF name IS NULL OR detector IS NULL THEN
		RAISE EXCEPTION 'alert rule name and detector may not be NULL'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF name !~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$' THEN
		RAISE EXCEPTION 'invalid alert rule name "%"', name
			USING ERRCODE = 'invalid_parameter_value',
			HINT = 'Use up to 128 letters, digits, "_", ".", ":" or "-", starting with a letter or digit.';
	END IF;
	dests := coalesce(destinations, '{}') || CASE WHEN destination IS NULL THEN '{}'::text[] ELSE ARRAY[destination] END;
	IF cardinality(dests) = 0 THEN
		RAISE EXCEPTION 'alert rule "%" needs a destination', name
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	FOREACH d IN ARRAY dests LOOP
		PERFORM anomaly._destination_kind(d);
	END LOOP;
	IF min_grade IS NULL AND min_score IS NULL THEN
		RAISE EXCEPTION 'alert rule "%" needs min_grade or min_score', name
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF min_grade < 0 OR min_grade > 1 OR min_grade = 'NaN' THEN
		RAISE EXCEPTION 'min_grade must be between 0 and 1'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF min_score < 0 OR min_score = 'NaN' THEN
		RAISE EXCEPTION 'min_score must not be negative'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF for_duration IS NULL OR for_duration < '0' OR cooldown IS NULL OR cooldown < '0' THEN
		RAISE EXCEPTION 'for_duration and cooldown must be non-negative intervals'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF repeat_interval <= '0' THEN
		RAISE EXCEPTION 'repeat_interval must be a positive interval'
			USING ERRCODE = 'invalid_parameter_value',
			HINT = 'Leave it NULL to notify once per episode.';
	END IF;
	IF severity IS NULL OR severity NOT IN ('info', 'warning', 'error', 'critical') THEN
		RAISE EXCEPTION 'invalid severity "%"', severity
			USING ERRCODE = 'invalid_parameter_value',
			HINT = 'Severities are info, warning, error and critical.';
	END IF;
	FOREACH g IN ARRAY coalesce(group_by, '{}') LOOP
		IF g NOT IN ('partition_key', 'source_key') AND g !~ '^source_key\.[A-Za-z0-9_]+$' THEN
			RAISE EXCEPTION 'cannot group alerts by "%"', g
				USING ERRCODE = 'invalid_parameter_value',
				HINT = 'Group by partition_key, source_key or source_key.<field>.';
		END IF;
	END LOOP;
	IF EXISTS (SELECT 1 FROM anomaly.alert_rules r WHERE r.name = create_alert_rule.name) THEN
		RAISE EXCEPTION 'alert rule "%" already exists', name
			USING ERRCODE = 'duplicate_object';
	END IF;
	INSERT INTO anomaly.alert_rules (name, detector, destinations, min_grade, min_score,
									 for_duration, cooldown, group_by, severity, send_resolved,
									 repeat_interval)
	VALUES (name, detector, dests, min_grade, min_score, for_duration, cooldown,
			coalesce(group_by, '{}'), severity, coalesce(send_resolved, true),
			repeat_interval);
END
$$;

-- Drops an alert rule and its episodes.
CREATE FUNCTION drop_alert_rule(name text)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, anomaly, pg_temp
AS $$
BEGIN
	DELETE FROM anomaly.alert_rules r WHERE r.name = drop_alert_rule.name;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'alert rule "%" does not exist', name
			USING ERRCODE = 'undefined_object';
	END IF;
END
$$;

-- The payload of a rule notification.
CREATE FUNCTION _rule_payload(r anomaly.alert_rules, ep anomaly.alert_episodes, s anomaly.scores, status text)
RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, anomaly, pg_temp
AS $$
	SELECT jsonb_build_object(
		'version', 1,
		'source', 'rule',
		'alert', r.name,
		'status', status,
		'severity', r.severity,
		'detector', r.detector,
		'key', ep.group_key,
		'score', s.anomaly_score,
		'grade', s.anomaly_grade,
		'explanation', s.explanation,
		'fingerprint', ep.fingerprint,
		'episode', ep.id,
		'starts_at', ep.started_at,
		'ends_at', ep.resolved_at,
		'commit_time', s.commit_time,
		'scored_at', s.scored_at,
		'score_id', s.id,
		'source_key', s.source_key,
		'peak_score', ep.peak_score,
		'peak_grade', ep.peak_grade,
		'repeat', greatest(ep.notifications - 1, 0),
		'created_at', now())
$$;

-- Queues the notifications of one rule transition to every destination.
CREATE FUNCTION _notify_rule(r anomaly.alert_rules, ep anomaly.alert_episodes, s anomaly.scores, status text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, anomaly, pg_temp
AS $$
DECLARE
	d text;
	payload jsonb := anomaly._rule_payload(r, ep, s, status);
	subj text;
BEGIN
	subj := format('[%s] %s: %s%s', upper(status), r.name, r.detector,
				   CASE WHEN ep.group_key = '{}' THEN ''
						ELSE ' ' || (SELECT string_agg(key || '=' || (value #>> '{}'), ' ' ORDER BY key)
									 FROM jsonb_each(ep.group_key)) END);
	FOREACH d IN ARRAY r.destinations LOOP
		PERFORM anomaly._enqueue(d, subj, payload,
								 'anomaly-' || ep.fingerprint || '-' || ep.id || '-' || status ||
								 CASE WHEN status = 'firing' AND ep.notifications > 1
									  THEN '-' || ep.notifications ELSE '' END);
	END LOOP;
END
$$;

-- AFTER INSERT statement trigger on anomaly.scores: evaluates the rules of
-- the detectors whose scores were inserted, in the same transaction.
CREATE FUNCTION _evaluate_rules()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, anomaly, pg_temp
AS $$
DECLARE
	r anomaly.alert_rules;
	s anomaly.scores;
	ep anomaly.alert_episodes;
	g text;
	gkey jsonb;
	fp text;
	t timestamptz;
	hot boolean;
	cooling boolean;
BEGIN
	IF NOT EXISTS (SELECT 1 FROM anomaly.alert_rules WHERE enabled) THEN
		RETURN NULL;
	END IF;
	FOR r IN SELECT * FROM anomaly.alert_rules ru
			 WHERE ru.enabled AND ru.detector IN (SELECT DISTINCT n.detector FROM new_scores n)
			 ORDER BY ru.name LOOP
		FOR s IN SELECT * FROM new_scores n WHERE n.detector = r.detector ORDER BY n.id LOOP
			gkey := '{}';
			FOREACH g IN ARRAY r.group_by LOOP
				gkey := gkey || jsonb_build_object(g,
					CASE WHEN g = 'partition_key' THEN to_jsonb(s.partition_key)
						 WHEN g = 'source_key' THEN s.source_key
						 ELSE s.source_key -> substr(g, 12) END);
			END LOOP;
			fp := anomaly._fingerprint(r.name, gkey::text);
			t := coalesce(s.commit_time, s.scored_at, now());
			hot := s.anomaly_score IS NOT NULL
				AND s.anomaly_score = s.anomaly_score	-- not NaN
				AND (r.min_grade IS NULL OR coalesce(s.anomaly_grade, 0) >= r.min_grade)
				AND (r.min_score IS NULL OR s.anomaly_score >= r.min_score);

			PERFORM pg_advisory_xact_lock(hashtext('anomaly.alert'), hashtext(fp));
			SELECT * INTO ep FROM anomaly.alert_episodes e
			WHERE e.rule = r.name AND e.fingerprint = fp AND e.status <> 'resolved'
			FOR UPDATE;

			IF hot THEN
				IF ep.id IS NULL THEN
					INSERT INTO anomaly.alert_episodes (rule, fingerprint, group_key, status, started_at,
														last_seen_at, first_score_id, last_score_id,
														peak_score, peak_grade)
					VALUES (r.name, fp, gkey, 'pending', t, t, s.id, s.id, s.anomaly_score, s.anomaly_grade)
					RETURNING * INTO ep;
				ELSE
					UPDATE anomaly.alert_episodes e
					SET last_seen_at = greatest(e.last_seen_at, t), last_score_id = s.id,
						peak_score = greatest(e.peak_score, s.anomaly_score),
						peak_grade = greatest(e.peak_grade, s.anomaly_grade)
					WHERE e.id = ep.id
					RETURNING * INTO ep;
				END IF;
				IF ep.status = 'pending' AND t - ep.started_at >= r.for_duration THEN
					cooling := r.cooldown > '0' AND EXISTS (
						SELECT 1 FROM anomaly.alert_episodes e
						WHERE e.rule = r.name AND e.fingerprint = fp AND e.notified
						  AND e.id <> ep.id AND e.fired_at > t - r.cooldown);
					UPDATE anomaly.alert_episodes e
					SET status = 'firing', fired_at = t, notified = NOT cooling,
						notifications = CASE WHEN cooling THEN 0 ELSE 1 END,
						last_notified_at = CASE WHEN cooling THEN NULL ELSE t END
					WHERE e.id = ep.id
					RETURNING * INTO ep;
					IF NOT cooling THEN
						PERFORM anomaly._notify_rule(r, ep, s, 'firing');
					END IF;
				ELSIF ep.status = 'firing' AND r.repeat_interval IS NOT NULL
					AND t - coalesce(ep.last_notified_at, ep.fired_at) >= r.repeat_interval THEN
					-- still firing: remind (an episode that fired silently in a
					-- cooldown speaks up once it has lasted repeat_interval)
					UPDATE anomaly.alert_episodes e
					SET notified = true, notifications = e.notifications + 1, last_notified_at = t
					WHERE e.id = ep.id
					RETURNING * INTO ep;
					PERFORM anomaly._notify_rule(r, ep, s, 'firing');
				END IF;
			ELSIF ep.id IS NOT NULL THEN
				IF ep.status = 'pending' THEN
					DELETE FROM anomaly.alert_episodes e WHERE e.id = ep.id;
				ELSE
					UPDATE anomaly.alert_episodes e
					SET status = 'resolved', resolved_at = t, last_score_id = s.id
					WHERE e.id = ep.id
					RETURNING * INTO ep;
					IF ep.notified AND r.send_resolved THEN
						PERFORM anomaly._notify_rule(r, ep, s, 'resolved');
					END IF;
				END IF;
			END IF;
			ep := NULL;
		END LOOP;
	END LOOP;
	RETURN NULL;
END
$$;

CREATE TRIGGER scores_alert_rules
	AFTER INSERT ON scores
	REFERENCING NEW TABLE AS new_scores
	FOR EACH STATEMENT EXECUTE FUNCTION _evaluate_rules();

-- ---------------------------------------------------------------------------
-- Delivery

-- Renders the body sent for one notification, per kind.
CREATE FUNCTION _render(kind text, config jsonb, subject text, payload jsonb, dedup_id text)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, anomaly, pg_temp
AS $$
DECLARE
	summary text;
	subj text;
	b64 text;
BEGIN
	summary := concat_ws(' ',
		CASE WHEN payload ->> 'status' = 'resolved' THEN 'RESOLVED' ELSE 'FIRING' END,
		'[' || coalesce(payload ->> 'severity', 'info') || ']',
		subject,
		CASE WHEN payload ? 'score' AND jsonb_typeof(payload -> 'score') = 'number'
			 THEN 'score=' || round((payload ->> 'score')::numeric, 4) END,
		CASE WHEN payload ? 'grade' AND jsonb_typeof(payload -> 'grade') = 'number'
			 THEN 'grade=' || round((payload ->> 'grade')::numeric, 4) END);
	IF kind = 'webhook' THEN
		RETURN payload::text;
	ELSIF kind = 'notify' THEN
		RETURN anomaly._fit_json(payload, 7900)::text;
	ELSIF kind = 'sns' THEN
		-- SNS counts Message and the attributes against 262,144 bytes; the
		-- attributes (severity, detector cut to 256 characters, score) take
		-- under 1 kB.
		RETURN anomaly._fit_json(payload, 262144 - 1024)::text;
	ELSIF kind = 'slack' THEN
		RETURN jsonb_strip_nulls(jsonb_build_object(
			'text', left(summary, 3000),
			'channel', config -> 'channel',
			'username', config -> 'username',
			'icon_emoji', config -> 'icon_emoji',
			'blocks', jsonb_build_array(
				jsonb_build_object('type', 'section', 'text',
					jsonb_build_object('type', 'mrkdwn', 'text', left(summary, 2900))),
				jsonb_build_object('type', 'section', 'text',
					jsonb_build_object('type', 'mrkdwn', 'text',
						'```' || left(jsonb_pretty(anomaly._fit_json(payload, 2500)), 2800) || '```')))))::text;
	ELSIF kind = 'email' THEN
		subj := regexp_replace(coalesce(config ->> 'subject_prefix' || ' ', '') || subject, '[\r\n\t]+', ' ', 'g');
		IF subj ~ '[^\x20-\x7e]' THEN
			b64 := replace(encode(convert_to(left(subj, 200), 'UTF8'), 'base64'), E'\n', '');
			subj := '=?UTF-8?B?' || b64 || '?=';
		ELSE
			subj := left(subj, 900);
		END IF;
		RETURN concat(
			'From: ', config ->> 'from', E'\r\n',
			'To: ', (SELECT string_agg(value #>> '{}', ', ') FROM jsonb_array_elements(config -> 'to')), E'\r\n',
			'Subject: ', subj, E'\r\n',
			'Date: ', to_char(now() AT TIME ZONE 'UTC', 'Dy, DD Mon YYYY HH24:MI:SS +0000'), E'\r\n',
			'Message-ID: <', dedup_id, '@anomaly.invalid>', E'\r\n',
			'MIME-Version: 1.0', E'\r\n',
			'Content-Type: text/plain; charset=utf-8', E'\r\n',
			'Content-Transfer-Encoding: 8bit', E'\r\n',
			'X-Anomaly-Fingerprint: ', regexp_replace(coalesce(payload ->> 'fingerprint', ''), '[^\x21-\x7e]', '', 'g'), E'\r\n',
			E'\r\n',
			regexp_replace(summary, E'\r?\n', E'\r\n', 'g'), E'\r\n\r\n',
			regexp_replace(jsonb_pretty(anomaly._fit_json(payload, 1048576)), E'\r?\n', E'\r\n', 'g'), E'\r\n');
	END IF;
	RAISE EXCEPTION 'unknown destination kind "%"', kind;
END
$$;

-- The SNS Subject: printable, one line, under 100 characters.
CREATE FUNCTION _sns_subject(subject text)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT coalesce(nullif(left(btrim(regexp_replace(regexp_replace(subject, '[\x00-\x1f\x7f]+', ' ', 'g'),
													 '^[^A-Za-z0-9[:punct:]]+', '')), 99), ''),
					'anomaly alert')
$$;

-- Records the outcome of a round: outcome is 'sent', 'retry', 'dead' or
-- 'defer' (rate limit) per id, delay_ms the wait before the next attempt.
CREATE FUNCTION _record(ids bigint[], outcomes text[], errors text[], delays integer[])
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, anomaly, pg_temp
AS $$
BEGIN
	WITH u AS (
		SELECT * FROM unnest(ids, outcomes, errors, delays) AS u(id, outcome, error, delay_ms)
	), counted AS (
		SELECT o.destination,
			   count(*) FILTER (WHERE u.outcome = 'sent') AS sent,
			   count(*) FILTER (WHERE u.outcome = 'retry') AS retried,
			   count(*) FILTER (WHERE u.outcome = 'dead') AS dead,
			   bool_or(u.outcome = 'sent') AS any_sent,
			   (array_agg(u.error ORDER BY u.id DESC) FILTER (WHERE u.error IS NOT NULL))[1] AS last_error
		FROM u JOIN anomaly.outbox o ON o.id = u.id
		GROUP BY o.destination
	)
	INSERT INTO anomaly.delivery_counters AS c (destination, sent, retried, dead,
												last_success_at, last_error_at, last_error)
	SELECT destination, sent, retried, dead,
		   CASE WHEN any_sent THEN now() END,
		   CASE WHEN last_error IS NOT NULL THEN now() END, last_error
	FROM counted
	ON CONFLICT (destination) DO UPDATE
	SET sent = c.sent + excluded.sent,
		retried = c.retried + excluded.retried,
		dead = c.dead + excluded.dead,
		last_success_at = coalesce(excluded.last_success_at, c.last_success_at),
		last_error_at = coalesce(excluded.last_error_at, c.last_error_at),
		last_error = coalesce(excluded.last_error, c.last_error);

	UPDATE anomaly.outbox o
	SET attempts = o.attempts + 1,
		next_attempt_at = now() + make_interval(secs => u.delay_ms / 1000.0),
		last_attempt_at = now(),
		last_error = u.error
	FROM unnest(ids, outcomes, errors, delays) AS u(id, outcome, error, delay_ms)
	WHERE o.id = u.id AND u.outcome = 'retry';

	UPDATE anomaly.outbox o
	SET next_attempt_at = now() + make_interval(secs => u.delay_ms / 1000.0)
	FROM unnest(ids, outcomes, delays) AS u(id, outcome, delay_ms)
	WHERE o.id = u.id AND u.outcome = 'defer';

	WITH gone AS (
		DELETE FROM anomaly.outbox o
		USING unnest(ids, outcomes, errors) AS u(id, outcome, error)
		WHERE o.id = u.id AND u.outcome = 'dead'
		RETURNING o.*, u.error AS final_error
	)
	INSERT INTO anomaly.dead_letters (outbox_id, destination, subject, payload, dedup_id,
									  attempts, created_at, error)
	SELECT g.id, g.destination, g.subject, g.payload, coalesce(g.dedup_id, 'anomaly-' || g.id),
		   g.attempts + 1, g.created_at, coalesce(g.final_error, 'unknown error')
	FROM gone g;

	DELETE FROM anomaly.outbox o
	USING unnest(ids, outcomes) AS u(id, outcome)
	WHERE o.id = u.id AND u.outcome = 'sent';
END
$$;

-- Moves dead letters back into the outbox (all of them, or those of one
-- destination, those failed since a time, or the given ids); they keep their
-- deduplication ids.  Returns how many.
CREATE FUNCTION replay_dead_letters(destination text DEFAULT NULL, ids bigint[] DEFAULT NULL,
									since timestamptz DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, anomaly, pg_temp
AS $$
DECLARE
	n integer;
BEGIN
	IF destination IS NOT NULL THEN
		PERFORM anomaly._destination_kind(destination);
	END IF;
	WITH gone AS (
		DELETE FROM anomaly.dead_letters d
		WHERE (replay_dead_letters.destination IS NULL OR d.destination = replay_dead_letters.destination)
		  AND (replay_dead_letters.ids IS NULL OR d.id = ANY (replay_dead_letters.ids))
		  AND (replay_dead_letters.since IS NULL OR d.failed_at >= replay_dead_letters.since)
		  AND EXISTS (SELECT 1 FROM anomaly.destinations x WHERE x.name = d.destination)
		RETURNING d.*
	)
	INSERT INTO anomaly.outbox (destination, subject, payload, dedup_id)
	SELECT g.destination, g.subject, g.payload, g.dedup_id FROM gone g ORDER BY g.id;
	GET DIAGNOSTICS n = ROW_COUNT;
	IF n > 0 THEN
		PERFORM anomaly._wake_sender();
	END IF;
	RETURN n;
END
$$;

-- Deletes dead letters and resolved episodes older than the retention
-- (anomaly.alert_retention); returns how many rows went.
CREATE FUNCTION purge_alert_history(older_than interval DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, anomaly, pg_temp
AS $$
DECLARE
	keep interval := coalesce(older_than,
							  (coalesce(current_setting('anomaly.alert_retention', true), '') || ' s')::interval);
	a bigint;
	b bigint;
BEGIN
	IF keep IS NULL OR keep < '0' THEN
		RAISE EXCEPTION 'retention must be a non-negative interval'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	DELETE FROM anomaly.dead_letters WHERE failed_at < now() - keep;
	GET DIAGNOSTICS a = ROW_COUNT;
	DELETE FROM anomaly.alert_episodes WHERE status = 'resolved' AND resolved_at < now() - keep;
	GET DIAGNOSTICS b = ROW_COUNT;
	RETURN a + b;
END
$$;

-- Wakes the sender worker when this transaction commits (no-op without it).
CREATE FUNCTION _wake_sender()
RETURNS void
AS 'MODULE_PATHNAME', 'anomaly_alert_wake_sender'
LANGUAGE C VOLATILE;

-- One delivery round from SQL: sends up to max due notifications and
-- records the outcomes; returns how many were delivered.
CREATE FUNCTION deliver(max integer DEFAULT 100)
RETURNS integer
AS 'MODULE_PATHNAME', 'anomaly_alert_deliver'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, anomaly, pg_temp;

-- Sends a test notification to a destination now and reports the outcome.
CREATE FUNCTION test_destination(name text, OUT ok boolean, OUT detail text)
RETURNS record
AS 'MODULE_PATHNAME', 'anomaly_alert_test_destination'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, anomaly, pg_temp;

-- Per destination: what waits, what went, what failed.
CREATE VIEW delivery_status AS
SELECT d.name AS destination,
	   d.kind,
	   d.enabled,
	   coalesce(q.queued, 0) AS queued,
	   coalesce(q.retrying, 0) AS retrying,
	   now() - q.oldest AS oldest_age,
	   coalesce(c.sent, 0) AS sent,
	   coalesce(c.retried, 0) AS retried,
	   coalesce(c.dead, 0) AS dead,
	   coalesce(l.dead_letters, 0) AS dead_letters,
	   c.last_success_at,
	   c.last_error_at,
	   c.last_error
FROM anomaly.destinations d
LEFT JOIN (SELECT o.destination, count(*) AS queued, count(*) FILTER (WHERE o.attempts > 0) AS retrying,
				  min(o.created_at) AS oldest
		   FROM anomaly.outbox o GROUP BY o.destination) q ON q.destination = d.name
LEFT JOIN anomaly.delivery_counters c ON c.destination = d.name
LEFT JOIN (SELECT x.destination, count(*) AS dead_letters
		   FROM anomaly.dead_letters x GROUP BY x.destination) l ON l.destination = d.name;
COMMENT ON VIEW delivery_status IS 'per destination: queued, oldest age, sent, retried, dead, last success and error';

-- Open and recent alert episodes.
CREATE VIEW alerts AS
SELECT e.id AS episode, e.rule, r.detector, e.group_key AS key, e.fingerprint, e.status,
	   e.started_at, e.fired_at, e.resolved_at, e.last_seen_at, e.notified,
	   e.notifications, e.last_notified_at, e.peak_score, e.peak_grade, r.severity
FROM anomaly.alert_episodes e JOIN anomaly.alert_rules r ON r.name = e.rule;
COMMENT ON VIEW alerts IS 'alert episodes with their rule';

REVOKE ALL ON delivery_status, alerts FROM PUBLIC;
GRANT SELECT ON delivery_status, alerts TO anomaly_admin;

-- Functions are executable by PUBLIC by default: only the admin role (and
-- superusers) may use these.
REVOKE EXECUTE ON FUNCTION
	create_destination(text, text, jsonb),
	alter_destination(text, jsonb, boolean),
	drop_destination(text, boolean),
	send_alert(text, text, jsonb),
	alert_trigger(),
	create_alert_rule(text, text, text, text[], double precision, double precision, interval, interval, text[], text, boolean, interval),
	drop_alert_rule(text),
	replay_dead_letters(text, bigint[], timestamptz),
	purge_alert_history(interval),
	deliver(integer),
	test_destination(text),
	_evaluate_rules(),
	_record(bigint[], text[], text[], integer[]),
	_enqueue(text, text, jsonb, text),
	_notify_rule(alert_rules, alert_episodes, scores, text),
	_wake_sender()
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
	create_destination(text, text, jsonb),
	alter_destination(text, jsonb, boolean),
	drop_destination(text, boolean),
	send_alert(text, text, jsonb),
	alert_trigger(),
	create_alert_rule(text, text, text, text[], double precision, double precision, interval, interval, text[], text, boolean, interval),
	drop_alert_rule(text),
	replay_dead_letters(text, bigint[], timestamptz),
	purge_alert_history(interval),
	deliver(integer),
	test_destination(text)
TO anomaly_admin;
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
	created_by name NOT NULL DEFAULT session_user
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
	failed_at timestamptz NOT NULL DEFAULT now()
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
CREATE EVENT TRIGGER anomaly_drop_slots ON ddl_command_start
	WHEN TAG IN ('DROP EXTENSION', 'DROP SCHEMA', 'DROP OWNED')
	EXECUTE FUNCTION _ddl_guard();

-- ---------------------------------------------------------------------------
-- Status: one row per detector, with its slot.

CREATE VIEW detector_status AS
SELECT d.name,
	d.source_name AS source,
	(c.oid IS NOT NULL) AS source_exists,
	pg_catalog.pg_get_userbyid(d.owner) AS owner,
	d.state,
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
	d.note,
	d.generation,
	d.created_at
FROM detectors d
LEFT JOIN pg_catalog.pg_class c ON c.oid = d.source
LEFT JOIN pg_catalog.pg_replication_slots s ON s.slot_name = d.slot_name
	AND s.database = pg_catalog.current_database();
COMMENT ON VIEW detector_status IS 'state, throughput, progress, lag and slot of each detector';
GRANT SELECT ON detector_status TO anomaly_admin;
