-- anomaly 0.1.0 -> 0.2.0
--
-- Run by ALTER EXTENSION anomaly UPDATE.  Brings an installation of 0.1.0
-- to the objects, grants and policies a fresh install of 0.2.0 has; the
-- upgrade test (test/t/090_upgrade.pl) compares the two catalog by catalog.
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

ALTER TABLE destinations ENABLE ROW LEVEL SECURITY;
ALTER TABLE alert_rules ENABLE ROW LEVEL SECURITY;
ALTER TABLE alert_episodes ENABLE ROW LEVEL SECURITY;
ALTER TABLE outbox ENABLE ROW LEVEL SECURITY;
ALTER TABLE dead_letters ENABLE ROW LEVEL SECURITY;
ALTER TABLE delivery_counters ENABLE ROW LEVEL SECURITY;
ALTER TABLE detectors ENABLE ROW LEVEL SECURITY;
ALTER TABLE detector_failures ENABLE ROW LEVEL SECURITY;

-- Functions whose arguments changed.
DROP FUNCTION _render(text, jsonb, text, jsonb, text);
DROP FUNCTION _record(bigint[], text[], text[], integer[]);
DROP FUNCTION create_alert_rule(text, text, text, text[], double precision, double precision, interval, interval, text[], text, boolean, interval);

-- ---------------------------------------------------------------------------
-- Everything else as 0.2.0's install script has it (src/sql/), in its order.

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
REVOKE EXECUTE ON FUNCTION _rcf_in(cstring), _rcf_out(rcf), _rcf_recv(internal), _rcf_send(rcf) FROM PUBLIC;
COMMENT ON FUNCTION _rcf_in(cstring) IS 'internal: input function of anomaly.rcf (base64 text)';
COMMENT ON FUNCTION _rcf_out(rcf) IS 'internal: output function of anomaly.rcf (base64 text)';
COMMENT ON FUNCTION _rcf_recv(internal) IS 'internal: binary input function of anomaly.rcf';
COMMENT ON FUNCTION _rcf_send(rcf) IS 'internal: binary output function of anomaly.rcf';
-- New: alert message templates and the source row of a rule's notification
-- (used by the alert rules, 044_alert_rules.sql).  Internal: only the
-- extension's owner may execute them.

-- Renders a template over a notification's payload: {{path}} placeholders
-- replaced by the payload's values (src/alert/template.c).
CREATE FUNCTION _render_template(template text, payload jsonb)
RETURNS text
AS 'MODULE_PATHNAME', 'anomaly_alert_render_template'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

-- The paths of a template's placeholders; raises its syntax error.
CREATE FUNCTION _template_fields(template text)
RETURNS text[]
AS 'MODULE_PATHNAME', 'anomaly_alert_template_fields'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

-- The scored row, looked up in the detector's source table by its key,
-- with the columns owner may read, read as owner (src/alert/source_row.c).
CREATE FUNCTION _source_row(owner oid, detector text, source_key jsonb)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'anomaly_alert_source_row'
LANGUAGE C VOLATILE STRICT;

REVOKE EXECUTE ON FUNCTION
	_render_template(text, jsonb),
	_template_fields(text),
	_source_row(oid, text, jsonb)
FROM PUBLIC;

COMMENT ON FUNCTION _render_template(text, jsonb) IS 'internal: an alert template rendered over a notification''s payload';
COMMENT ON FUNCTION _template_fields(text) IS 'internal: the fields an alert template uses; raises its syntax error';
COMMENT ON FUNCTION _source_row(oid, text, jsonb) IS 'internal: a scored row''s columns that a rule''s owner may read, read as that owner';

-- Support functions of rcf_train only (the aggregate checks its owner's
-- right to call them, not the caller's).
REVOKE EXECUTE ON FUNCTION _rcf_train_transfn(internal, double precision[]),
	_rcf_train_transfn(internal, double precision[], integer),
	_rcf_train_transfn(internal, double precision[], integer, integer),
	_rcf_train_transfn(internal, double precision[], integer, integer, bigint),
	_rcf_train_transfn(internal, double precision[], integer, integer, bigint, integer),
	_rcf_train_transfn(internal, double precision[], integer, integer, bigint, integer, bigint),
	_rcf_train_finalfn(internal) FROM PUBLIC;
COMMENT ON AGGREGATE rcf_train(double precision[]) IS 'trains a model (anomaly.rcf) on the points in ORDER BY order';
COMMENT ON AGGREGATE rcf_train(double precision[], integer) IS 'trains a model (anomaly.rcf) on the points in ORDER BY order: number_of_trees';
COMMENT ON AGGREGATE rcf_train(double precision[], integer, integer) IS 'trains a model (anomaly.rcf) on the points in ORDER BY order: number_of_trees, sub_sample_size';
COMMENT ON AGGREGATE rcf_train(double precision[], integer, integer, bigint) IS 'trains a model (anomaly.rcf) on the points in ORDER BY order: number_of_trees, sub_sample_size, time_decay';
COMMENT ON AGGREGATE rcf_train(double precision[], integer, integer, bigint, integer) IS 'trains a model (anomaly.rcf) on the points in ORDER BY order: number_of_trees, sub_sample_size, time_decay, shingle_size';
COMMENT ON AGGREGATE rcf_train(double precision[], integer, integer, bigint, integer, bigint) IS 'trains a model (anomaly.rcf) on the points in ORDER BY order: number_of_trees, sub_sample_size, time_decay, shingle_size, seed';
COMMENT ON FUNCTION _rcf_train_transfn(internal, double precision[]) IS 'internal: transition function of rcf_train';
COMMENT ON FUNCTION _rcf_train_transfn(internal, double precision[], integer) IS 'internal: transition function of rcf_train';
COMMENT ON FUNCTION _rcf_train_transfn(internal, double precision[], integer, integer) IS 'internal: transition function of rcf_train';
COMMENT ON FUNCTION _rcf_train_transfn(internal, double precision[], integer, integer, bigint) IS 'internal: transition function of rcf_train';
COMMENT ON FUNCTION _rcf_train_transfn(internal, double precision[], integer, integer, bigint, integer) IS 'internal: transition function of rcf_train';
COMMENT ON FUNCTION _rcf_train_transfn(internal, double precision[], integer, integer, bigint, integer, bigint) IS 'internal: transition function of rcf_train';
COMMENT ON FUNCTION _rcf_train_finalfn(internal) IS 'internal: final function of rcf_train';
COMMENT ON EVENT TRIGGER anomaly_drop_slots IS 'drops the detectors'' replication slots with the extension';

-- New: KDA's HOTSPOTS over a window (src/sql/015_hotspots.sql): each row's HOTSPOTS_RESULT, the dense
-- regions among the last window_size rows of its partition, fed in the
-- window's ORDER BY order; the frame is ignored.  KDA's four parameters,
-- with KDA's ranges and, as in KDA, no defaults.

CREATE FUNCTION hotspots(
	point double precision[],
	window_size integer,
	scan_radius double precision,
	minimum_number_of_points_in_a_hotspot integer)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'hotspots_window'
LANGUAGE C WINDOW IMMUTABLE PARALLEL SAFE;

CREATE FUNCTION hotspots(
	point record,
	window_size integer,
	scan_radius double precision,
	minimum_number_of_points_in_a_hotspot integer)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'hotspots_window'
LANGUAGE C WINDOW IMMUTABLE PARALLEL SAFE;

COMMENT ON FUNCTION hotspots(double precision[], integer, double precision, integer)
IS 'KDA HOTSPOTS: dense regions among the last window_size points of the window partition, as HOTSPOTS_RESULT jsonb';
COMMENT ON FUNCTION hotspots(record, integer, double precision, integer)
IS 'KDA HOTSPOTS over the numeric columns of a row';

REVOKE ALL ON destinations, alert_rules, alert_episodes, outbox, dead_letters,
	delivery_counters, delivery_errors FROM PUBLIC;

CREATE POLICY own_destinations ON destinations FOR SELECT
	USING (pg_catalog.pg_has_role(owner::oid, 'USAGE'));

CREATE POLICY own_rules ON alert_rules FOR SELECT
	USING (pg_catalog.pg_has_role(owner::oid, 'USAGE'));

CREATE POLICY own_episodes ON alert_episodes FOR SELECT
	USING (EXISTS (SELECT 1 FROM @extschema@.alert_rules r
				   WHERE r.name OPERATOR(pg_catalog.=) rule
					 AND pg_catalog.pg_has_role(r.owner::oid, 'USAGE')));

CREATE POLICY own_outbox ON outbox FOR SELECT
	USING (EXISTS (SELECT 1 FROM @extschema@.destinations d
				   WHERE d.name OPERATOR(pg_catalog.=) destination
					 AND pg_catalog.pg_has_role(d.owner::oid, 'USAGE')));

CREATE POLICY own_dead_letters ON dead_letters FOR SELECT
	USING (EXISTS (SELECT 1 FROM @extschema@.destinations d
				   WHERE d.name OPERATOR(pg_catalog.=) destination
					 AND pg_catalog.pg_has_role(d.owner::oid, 'USAGE')));

CREATE POLICY own_counters ON delivery_counters FOR SELECT
	USING (EXISTS (SELECT 1 FROM @extschema@.destinations d
				   WHERE d.name OPERATOR(pg_catalog.=) destination
					 AND pg_catalog.pg_has_role(d.owner::oid, 'USAGE')));

-- Checks a destination's config for its kind; returns it unchanged.
CREATE OR REPLACE FUNCTION _check_config(kind text, config jsonb)
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
		WHEN 'notify' THEN ARRAY['channel', 'payload']
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
		v := _config_text(config, 'payload', false, kind);
		IF v IS NOT NULL AND v NOT IN ('reference', 'full') THEN
			RAISE EXCEPTION '"payload" must be "reference" or "full"'
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

-- Whether a named credential may be sent to url (url NULL: the credential
-- is the URL; whether it is bound to itself): anomaly.credential_bindings.
CREATE OR REPLACE FUNCTION _credential_bound(name text, url text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'anomaly_alert_credential_bound'
LANGUAGE C STABLE;

-- Raises an error when a credential named in config is not bound to the
-- destination's URL.
CREATE OR REPLACE FUNCTION _check_bindings(kind text, config jsonb)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, anomaly, pg_temp
AS $$
BEGIN
	IF config ? 'url_credential' AND NOT anomaly._credential_bound(config ->> 'url_credential', NULL) THEN
		RAISE EXCEPTION 'credential "%" (the URL) is not bound to itself', config ->> 'url_credential'
			USING ERRCODE = 'insufficient_privilege',
			HINT = 'A superuser binds a credential to the URL prefixes it may be sent to in anomaly.credential_bindings (name=prefix [prefix...]; ...).';
	END IF;
	IF config ? 'credential' AND config ? 'url'
		AND NOT anomaly._credential_bound(config ->> 'credential', config ->> 'url') THEN
		RAISE EXCEPTION 'credential "%" is not bound to %', config ->> 'credential', config ->> 'url'
			USING ERRCODE = 'insufficient_privilege',
			HINT = 'A superuser binds a credential to the URL prefixes it may be sent to in anomaly.credential_bindings (name=prefix [prefix...]; ...).';
	END IF;
END
$$;

-- Raises an error when a non-superuser asks for a notify destination with
-- "payload": "full".  PostgreSQL has no privileges on LISTEN: every role
-- that can connect hears every channel, so a full payload (scores, key,
-- explanation, the source row of a table without a primary key) would be
-- read by roles that may not see the alert.  Checked on every config a
-- non-superuser gives, also when the destination already is full (a
-- superuser's choice for one config is not one for the next).
CREATE OR REPLACE FUNCTION _check_payload_mode(caller oid, kind text, config jsonb)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, anomaly, pg_temp
AS $$
BEGIN
	IF kind OPERATOR(pg_catalog.=) 'notify'
		AND config ->> 'payload' OPERATOR(pg_catalog.=) 'full'
		AND NOT coalesce((SELECT a.rolsuper FROM pg_catalog.pg_authid a
						  WHERE a.oid OPERATOR(pg_catalog.=) caller), false) THEN
		RAISE EXCEPTION 'only a superuser may set "payload": "full" on a notify destination'
			USING ERRCODE = 'insufficient_privilege',
			DETAIL = 'Any role that can connect may LISTEN on any channel and would read the whole alert.',
			HINT = 'Leave "payload" out (or set "reference"): listeners get the episode and outbox ids and read the alert from anomaly.alerts, which shows each role only its own.';
	END IF;
END
$$;

-- Whether caller may act as role (is it, is a member with its privileges,
-- or is a superuser).
CREATE OR REPLACE FUNCTION _owns(caller oid, owner regrole)
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT pg_catalog.pg_has_role(caller, owner::oid, 'USAGE')
$$;

-- Checks that a destination exists and that caller owns it (or is a
-- superuser); with bindings, also that its credentials are bound.  Returns
-- its kind.
CREATE OR REPLACE FUNCTION _usable_destination(caller oid, name text, bindings boolean DEFAULT false)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, anomaly, pg_temp
AS $$
DECLARE
	d anomaly.destinations;
BEGIN
	SELECT * INTO d FROM anomaly.destinations x WHERE x.name OPERATOR(pg_catalog.=) _usable_destination.name;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'destination "%" does not exist', name
			USING ERRCODE = 'undefined_object';
	END IF;
	IF NOT anomaly._owns(caller, d.owner) THEN
		RAISE EXCEPTION 'must be owner of destination "%"', name
			USING ERRCODE = 'insufficient_privilege';
	END IF;
	IF bindings THEN
		PERFORM anomaly._check_bindings(d.kind, d.config);
	END IF;
	RETURN d.kind;
END
$$;

-- ---------------------------------------------------------------------------
-- Destinations

-- Creates a destination after checking its config.
CREATE OR REPLACE FUNCTION create_destination(name text, kind text, config jsonb DEFAULT '{}')
RETURNS void
AS 'MODULE_PATHNAME', 'anomaly_alert_entry'
LANGUAGE C VOLATILE;

CREATE OR REPLACE FUNCTION _create_destination(caller oid, name text, kind text, config jsonb)
RETURNS void
LANGUAGE plpgsql
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
	IF EXISTS (SELECT 1 FROM anomaly.destinations d WHERE d.name = _create_destination.name) THEN
		RAISE EXCEPTION 'destination "%" already exists', name
			USING ERRCODE = 'duplicate_object';
	END IF;
	PERFORM anomaly._check_bindings(kind, anomaly._check_config(kind, config));
	PERFORM anomaly._check_payload_mode(caller, kind, config);
	INSERT INTO anomaly.destinations (name, kind, config, created_by, owner)
	VALUES (name, kind, config, session_user, caller::regrole);
END
$$;

-- Changes a destination's config (when given) and whether it is enabled.
CREATE OR REPLACE FUNCTION alter_destination(name text, config jsonb DEFAULT NULL, enabled boolean DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'anomaly_alert_entry'
LANGUAGE C VOLATILE;

CREATE OR REPLACE FUNCTION _alter_destination(caller oid, name text, config jsonb, enabled boolean)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, anomaly, pg_temp
AS $$
DECLARE
	d anomaly.destinations;
BEGIN
	SELECT * INTO d FROM anomaly.destinations x WHERE x.name = _alter_destination.name FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'destination "%" does not exist', name
			USING ERRCODE = 'undefined_object';
	END IF;
	IF NOT anomaly._owns(caller, d.owner) THEN
		RAISE EXCEPTION 'must be owner of destination "%"', name
			USING ERRCODE = 'insufficient_privilege';
	END IF;
	IF _alter_destination.config IS NOT NULL THEN
		PERFORM anomaly._check_bindings(d.kind, anomaly._check_config(d.kind, _alter_destination.config));
		PERFORM anomaly._check_payload_mode(caller, d.kind, _alter_destination.config);
	END IF;
	UPDATE anomaly.destinations x
	SET config = coalesce(_alter_destination.config, x.config),
		enabled = coalesce(_alter_destination.enabled, x.enabled)
	WHERE x.name = _alter_destination.name;
END
$$;

-- Drops a destination.  Queued notifications or rules that use it prevent
-- this unless force, which moves the queue to the dead letters.
CREATE OR REPLACE FUNCTION drop_destination(name text, force boolean DEFAULT false)
RETURNS void
AS 'MODULE_PATHNAME', 'anomaly_alert_entry'
LANGUAGE C VOLATILE;

CREATE OR REPLACE FUNCTION _drop_destination(caller oid, name text, force boolean)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, anomaly, pg_temp
AS $$
DECLARE
	rules text;
	queued bigint;
	o regrole;
BEGIN
	SELECT d.owner INTO o FROM anomaly.destinations d WHERE d.name = _drop_destination.name FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'destination "%" does not exist', name
			USING ERRCODE = 'undefined_object';
	END IF;
	IF NOT anomaly._owns(caller, o) THEN
		RAISE EXCEPTION 'must be owner of destination "%"', name
			USING ERRCODE = 'insufficient_privilege';
	END IF;
	SELECT string_agg(r.name, ', ' ORDER BY r.name) INTO rules
	FROM anomaly.alert_rules r WHERE _drop_destination.name = ANY (r.destinations);
	IF rules IS NOT NULL THEN
		RAISE EXCEPTION 'destination "%" is used by alert rules: %', name, rules
			USING ERRCODE = 'dependent_objects_still_exist',
			HINT = 'Drop those rules first.';
	END IF;
	SELECT count(*) INTO queued FROM anomaly.outbox o WHERE o.destination = _drop_destination.name;
	IF queued > 0 AND NOT coalesce(force, false) THEN
		RAISE EXCEPTION 'destination "%" has % notifications waiting for delivery', name, queued
			USING ERRCODE = 'dependent_objects_still_exist',
			HINT = 'Wait for delivery, or pass force => true to move them to anomaly.dead_letters.';
	END IF;
	WITH gone AS (
		DELETE FROM anomaly.outbox o WHERE o.destination = _drop_destination.name RETURNING o.*
	)
	INSERT INTO anomaly.dead_letters (outbox_id, destination, subject, payload, dedup_id,
									  attempts, created_at, error)
	SELECT g.id, g.destination, g.subject, g.payload, coalesce(g.dedup_id, 'anomaly-' || g.id),
		   g.attempts, g.created_at, 'destination dropped'
	FROM gone g;
	DELETE FROM anomaly.delivery_counters c WHERE c.destination = _drop_destination.name;
	DELETE FROM anomaly.destinations d WHERE d.name = _drop_destination.name;
END
$$;

-- Sends an alert from SQL: queues it in this transaction.
CREATE OR REPLACE FUNCTION send_alert(destination text, subject text, body jsonb DEFAULT '{}')
RETURNS bigint
AS 'MODULE_PATHNAME', 'anomaly_alert_entry'
LANGUAGE C VOLATILE;

CREATE OR REPLACE FUNCTION _send_alert(caller oid, destination text, subject text, body jsonb)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, anomaly, pg_temp
AS $$
DECLARE
	sev text;
BEGIN
	IF subject IS NULL OR subject = '' THEN
		RAISE EXCEPTION 'alert subject may not be empty'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	PERFORM anomaly._usable_destination(caller, destination);
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

-- to_jsonb(r) as the owner of table tab, under SECURITY_RESTRICTED_OPERATION
-- with settings thrown away afterwards (src/alert/privs.c).
CREATE OR REPLACE FUNCTION _row_to_jsonb(tab oid, r anyelement)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'anomaly_alert_row_to_jsonb'
LANGUAGE C VOLATILE;

-- Trigger function: any table can raise alerts.
--   CREATE TRIGGER t AFTER INSERT ON tab FOR EACH ROW
--       EXECUTE FUNCTION anomaly.alert_trigger('destination' [, 'subject' [, 'severity']]);
-- The destination may be a comma-separated list; the row goes in "details".
-- The table's owner must own the destinations.  SECURITY DEFINER (to write
-- the outbox), so it converts the row through _row_to_jsonb(), which runs
-- the row's casts and output functions as the table's owner, restricted:
-- never as the extension's owner.
CREATE OR REPLACE FUNCTION alert_trigger()
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
	tabowner oid;
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
	IF TG_OP = 'DELETE' THEN
		rowdata := anomaly._row_to_jsonb(TG_RELID, OLD);
	ELSE
		rowdata := anomaly._row_to_jsonb(TG_RELID, NEW);
	END IF;
	SELECT c.relowner INTO tabowner FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) TG_RELID;
	FOREACH dest IN ARRAY dests LOOP
		PERFORM anomaly._usable_destination(tabowner, dest);
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
CREATE OR REPLACE FUNCTION create_alert_rule(
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
	repeat_interval interval DEFAULT NULL,
	subject_template text DEFAULT NULL,
	body_template text DEFAULT NULL,
	templates jsonb DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'anomaly_alert_entry'
LANGUAGE C VOLATILE;

-- The fields of a rule notification's payload (_rule_payload) that a
-- template may name, and the templates of each destination kind.
CREATE OR REPLACE FUNCTION _template_roots()
RETURNS text[]
LANGUAGE sql IMMUTABLE
AS $$
	SELECT ARRAY['version', 'source', 'alert', 'status', 'severity', 'detector', 'key', 'score',
				 'grade', 'explanation', 'fingerprint', 'episode', 'starts_at', 'ends_at',
				 'commit_time', 'scored_at', 'time', 'score_id', 'source_key', 'partition_key',
				 'row', 'peak_score', 'peak_grade', 'repeat', 'created_at']
$$;

-- Checks a rule's templates: raises on a syntax error, an unknown kind or
-- field name, or a template that is not a string; warns about placeholders
-- that will render empty: a field not in the payload, a key field the rule
-- does not group by, a column the source table does not have or the rule's
-- owner (caller) may not read.
CREATE OR REPLACE FUNCTION _check_templates(caller oid, detector text, group_by text[],
								 subject_template text, body_template text, templates jsonb)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, anomaly, pg_temp
AS $$
DECLARE
	allowed constant jsonb := '{"email": ["subject", "body"], "sns": ["subject", "message"], "slack": ["text"]}';
	all_templates text[] := '{}';
	kind text;
	spec jsonb;
	part text;
	value jsonb;
	t text;
	f text;
	col text;
	src regclass;
BEGIN
	IF jsonb_typeof(templates) IS DISTINCT FROM 'object' THEN
		RAISE EXCEPTION 'templates must be a JSON object keyed by destination kind'
			USING ERRCODE = 'invalid_parameter_value',
			HINT = 'For example {"email": {"subject": "...", "body": "..."}, "sns": {"subject": "...", "message": "..."}, "slack": {"text": "..."}}.';
	END IF;
	FOR kind, spec IN SELECT e.key, e.value FROM jsonb_each(templates) e LOOP
		IF NOT allowed ? kind THEN
			RAISE EXCEPTION 'no templates for % destinations', kind
				USING ERRCODE = 'invalid_parameter_value',
				HINT = 'Templates apply to email (subject, body), sns (subject, message) and slack (text); a webhook receives the payload as JSON, with the row.';
		END IF;
		IF jsonb_typeof(spec) <> 'object' THEN
			RAISE EXCEPTION 'templates of % destinations must be a JSON object', kind
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
		FOR part, value IN SELECT e.key, e.value FROM jsonb_each(spec) e LOOP
			IF NOT (allowed -> kind) ? part THEN
				RAISE EXCEPTION '% destinations have no "%" template', kind, part
					USING ERRCODE = 'invalid_parameter_value',
					HINT = format('The templates of %s destinations are %s.', kind,
								  (SELECT string_agg(x, ' and ') FROM jsonb_array_elements_text(allowed -> kind) x));
			END IF;
			IF jsonb_typeof(value) <> 'string' THEN
				RAISE EXCEPTION 'the % template of % destinations must be a string', part, kind
					USING ERRCODE = 'invalid_parameter_value';
			END IF;
			all_templates := all_templates || (value #>> '{}');
		END LOOP;
	END LOOP;
	IF subject_template IS NOT NULL THEN
		all_templates := all_templates || subject_template;
	END IF;
	IF body_template IS NOT NULL THEN
		all_templates := all_templates || body_template;
	END IF;

	SELECT d.source INTO src FROM anomaly.detectors d WHERE d.name = _check_templates.detector;
	FOREACH t IN ARRAY all_templates LOOP
		FOREACH f IN ARRAY anomaly._template_fields(t) LOOP
			IF NOT split_part(f, '.', 1) = ANY (anomaly._template_roots()) THEN
				RAISE WARNING 'template field "%" is not in the payload: it renders empty', f
					USING HINT = 'Fields: ' || array_to_string(anomaly._template_roots(), ', ') ||
								 '; row.<column> and key.<group> name parts of row and key.';
			ELSIF f LIKE 'key.%' AND NOT split_part(f, '.', 2) = ANY (coalesce(group_by, '{}')) THEN
				RAISE WARNING 'template field "%" is not in the alert''s key: it renders empty', f
					USING DETAIL = format('The rule groups by %s.', coalesce(array_to_string(group_by, ', '), 'nothing'));
			ELSIF f LIKE 'row.%' THEN
				col := split_part(f, '.', 2);
				IF src IS NULL THEN
					RAISE WARNING 'detector "%" has no source table: template field "%" renders empty', detector, f;
				ELSIF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
								  WHERE a.attrelid = src AND a.attname = col AND a.attnum > 0 AND NOT a.attisdropped) THEN
					RAISE WARNING 'table % has no column "%": template field "%" renders empty', src, col, f;
				ELSIF NOT has_column_privilege(caller, src, col, 'SELECT') THEN
					RAISE WARNING 'role % may not read column "%" of %: template field "%" renders empty',
						caller::regrole, col, src, f
						USING DETAIL = 'A notification carries only the columns of the source row that the rule''s owner may read.';
				END IF;
			END IF;
		END LOOP;
	END LOOP;
END
$$;

-- The caller must own the detector (a superuser may also name one that
-- does not exist, whose scores come from elsewhere) and the destinations.
CREATE OR REPLACE FUNCTION _create_alert_rule(
	caller oid,
	name text,
	detector text,
	destination text,
	destinations text[],
	min_grade double precision,
	min_score double precision,
	for_duration interval,
	cooldown interval,
	group_by text[],
	severity text,
	send_resolved boolean,
	repeat_interval interval,
	subject_template text,
	body_template text,
	templates jsonb)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, anomaly, pg_temp
AS $$
DECLARE
	dests text[];
	d text;
	g text;
	det_owner regrole;
	det_missing boolean;
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
	SELECT x.owner INTO det_owner FROM anomaly.detectors x WHERE x.name = _create_alert_rule.detector;
	IF NOT FOUND AND NOT (SELECT a.rolsuper FROM pg_catalog.pg_authid a WHERE a.oid = caller) THEN
		RAISE EXCEPTION 'detector "%" does not exist', detector
			USING ERRCODE = 'undefined_object';
	END IF;
	det_missing := NOT FOUND;
	IF NOT det_missing AND NOT anomaly._owns(caller, det_owner) THEN
		RAISE EXCEPTION 'must be owner of detector "%"', detector
			USING ERRCODE = 'insufficient_privilege',
			HINT = 'An alert rule shows the scores and keys of its detector''s rows: only the detector''s owner may create one.';
	END IF;
	FOREACH d IN ARRAY dests LOOP
		PERFORM anomaly._usable_destination(caller, d);
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
	IF EXISTS (SELECT 1 FROM anomaly.alert_rules r WHERE r.name = _create_alert_rule.name) THEN
		RAISE EXCEPTION 'alert rule "%" already exists', name
			USING ERRCODE = 'duplicate_object';
	END IF;
	IF det_missing THEN
		-- a superuser's rule on scores written under that name by other
		-- means (or by a detector created later): say it does not fire now
		RAISE NOTICE 'detector "%" does not exist: alert rule "%" fires only once scores of that name are written', detector, name
			USING HINT = 'Create the detector with anomaly.create_detector(), or check the name in anomaly.detectors.';
	END IF;
	PERFORM anomaly._check_templates(caller, detector, coalesce(group_by, '{}'), subject_template,
									 body_template, coalesce(templates, '{}'));
	INSERT INTO anomaly.alert_rules (name, detector, destinations, min_grade, min_score,
									 for_duration, cooldown, group_by, severity, send_resolved,
									 repeat_interval, owner, subject_template, body_template,
									 templates)
	VALUES (name, detector, dests, min_grade, min_score, for_duration, cooldown,
			coalesce(group_by, '{}'), severity, coalesce(send_resolved, true),
			repeat_interval, caller::regrole, subject_template, body_template,
			coalesce(templates, '{}'));
END
$$;

-- Drops an alert rule and its episodes.
CREATE OR REPLACE FUNCTION drop_alert_rule(name text)
RETURNS void
AS 'MODULE_PATHNAME', 'anomaly_alert_entry'
LANGUAGE C VOLATILE;

CREATE OR REPLACE FUNCTION _drop_alert_rule(caller oid, name text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, anomaly, pg_temp
AS $$
DECLARE
	o regrole;
BEGIN
	SELECT r.owner INTO o FROM anomaly.alert_rules r WHERE r.name = _drop_alert_rule.name FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'alert rule "%" does not exist', name
			USING ERRCODE = 'undefined_object';
	END IF;
	IF NOT anomaly._owns(caller, o) THEN
		RAISE EXCEPTION 'must be owner of alert rule "%"', name
			USING ERRCODE = 'insufficient_privilege';
	END IF;
	DELETE FROM anomaly.alert_rules r WHERE r.name = _drop_alert_rule.name;
END
$$;

-- Changes an alert rule: each argument given replaces the rule's value
-- (NULL: unchanged); unset names the optional values to clear (min_grade,
-- min_score, repeat_interval, subject_template, body_template, templates).  The detector and group_by stay: a rule on
-- other rows or keys is a new rule (drop and create it).
CREATE FUNCTION alter_alert_rule(
	name text,
	destination text DEFAULT NULL,
	destinations text[] DEFAULT NULL,
	min_grade double precision DEFAULT NULL,
	min_score double precision DEFAULT NULL,
	for_duration interval DEFAULT NULL,
	cooldown interval DEFAULT NULL,
	severity text DEFAULT NULL,
	send_resolved boolean DEFAULT NULL,
	repeat_interval interval DEFAULT NULL,
	enabled boolean DEFAULT NULL,
	unset text[] DEFAULT NULL,
	subject_template text DEFAULT NULL,
	body_template text DEFAULT NULL,
	templates jsonb DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'anomaly_alert_entry'
LANGUAGE C VOLATILE;

-- The caller must own the rule and every destination it names, and (unless
-- a superuser) still own the rule's detector: a rule's owner who lost the
-- detector may disable or drop the rule, not aim it elsewhere.
CREATE FUNCTION _alter_alert_rule(
	caller oid,
	name text,
	destination text,
	destinations text[],
	min_grade double precision,
	min_score double precision,
	for_duration interval,
	cooldown interval,
	severity text,
	send_resolved boolean,
	repeat_interval interval,
	enabled boolean,
	unset text[],
	subject_template text,
	body_template text,
	templates jsonb)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, anomaly, pg_temp
AS $$
DECLARE
	r anomaly.alert_rules;
	det_owner regrole;
	dests text[];
	d text;
	u text;
BEGIN
	IF name IS NULL THEN
		RAISE EXCEPTION 'alert rule name may not be NULL'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	SELECT * INTO r FROM anomaly.alert_rules x WHERE x.name = _alter_alert_rule.name FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'alert rule "%" does not exist', name
			USING ERRCODE = 'undefined_object';
	END IF;
	IF NOT anomaly._owns(caller, r.owner) THEN
		RAISE EXCEPTION 'must be owner of alert rule "%"', name
			USING ERRCODE = 'insufficient_privilege';
	END IF;
	FOREACH u IN ARRAY coalesce(unset, '{}') LOOP
		IF u IS NULL OR u NOT IN ('min_grade', 'min_score', 'repeat_interval',
								  'subject_template', 'body_template', 'templates') THEN
			RAISE EXCEPTION 'cannot unset "%"', u
				USING ERRCODE = 'invalid_parameter_value',
				HINT = 'Only min_grade, min_score, repeat_interval, subject_template, body_template and templates may be unset.';
		END IF;
	END LOOP;
	IF (min_grade IS NOT NULL AND 'min_grade' = ANY (unset))
	   OR (min_score IS NOT NULL AND 'min_score' = ANY (unset))
	   OR (repeat_interval IS NOT NULL AND 'repeat_interval' = ANY (unset))
	   OR (subject_template IS NOT NULL AND 'subject_template' = ANY (unset))
	   OR (body_template IS NOT NULL AND 'body_template' = ANY (unset))
	   OR (templates IS NOT NULL AND 'templates' = ANY (unset)) THEN
		RAISE EXCEPTION 'a value may not be both given and unset'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;

	-- anything but disabling aims the rule's detector's scores somewhere:
	-- the caller must still be allowed to create this rule
	IF destination IS NOT NULL OR destinations IS NOT NULL OR min_grade IS NOT NULL
	   OR min_score IS NOT NULL OR for_duration IS NOT NULL OR cooldown IS NOT NULL
	   OR severity IS NOT NULL OR send_resolved IS NOT NULL OR repeat_interval IS NOT NULL
	   OR subject_template IS NOT NULL OR body_template IS NOT NULL OR templates IS NOT NULL
	   OR coalesce(enabled, false) OR cardinality(unset) > 0 THEN
		SELECT x.owner INTO det_owner FROM anomaly.detectors x WHERE x.name = r.detector;
		IF FOUND AND NOT anomaly._owns(caller, det_owner) THEN
			RAISE EXCEPTION 'must be owner of detector "%"', r.detector
				USING ERRCODE = 'insufficient_privilege',
				HINT = 'The rule''s owner no longer owns its detector: the rule may only be disabled or dropped.';
		END IF;
		IF NOT FOUND AND NOT (SELECT a.rolsuper FROM pg_catalog.pg_authid a WHERE a.oid = caller) THEN
			RAISE EXCEPTION 'detector "%" does not exist', r.detector
				USING ERRCODE = 'undefined_object',
				HINT = 'The rule may only be disabled or dropped.';
		END IF;
	END IF;

	IF destination IS NOT NULL OR destinations IS NOT NULL THEN
		dests := coalesce(destinations, '{}') || CASE WHEN destination IS NULL THEN '{}'::text[] ELSE ARRAY[destination] END;
		IF cardinality(dests) = 0 THEN
			RAISE EXCEPTION 'alert rule "%" needs a destination', name
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
		FOREACH d IN ARRAY dests LOOP
			PERFORM anomaly._usable_destination(caller, d);
		END LOOP;
		r.destinations := dests;
	END IF;
	IF min_grade IS NOT NULL THEN
		IF min_grade < 0 OR min_grade > 1 OR min_grade = 'NaN' THEN
			RAISE EXCEPTION 'min_grade must be between 0 and 1'
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
		r.min_grade := min_grade;
	ELSIF 'min_grade' = ANY (unset) THEN
		r.min_grade := NULL;
	END IF;
	IF min_score IS NOT NULL THEN
		IF min_score < 0 OR min_score = 'NaN' THEN
			RAISE EXCEPTION 'min_score must not be negative'
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
		r.min_score := min_score;
	ELSIF 'min_score' = ANY (unset) THEN
		r.min_score := NULL;
	END IF;
	IF r.min_grade IS NULL AND r.min_score IS NULL THEN
		RAISE EXCEPTION 'alert rule "%" needs min_grade or min_score', name
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF for_duration < '0' OR cooldown < '0' THEN
		RAISE EXCEPTION 'for_duration and cooldown must be non-negative intervals'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	r.for_duration := coalesce(for_duration, r.for_duration);
	r.cooldown := coalesce(cooldown, r.cooldown);
	IF repeat_interval IS NOT NULL THEN
		IF repeat_interval <= '0' THEN
			RAISE EXCEPTION 'repeat_interval must be a positive interval'
				USING ERRCODE = 'invalid_parameter_value',
				HINT = 'Unset it (unset => ''{repeat_interval}'') to notify once per episode.';
		END IF;
		r.repeat_interval := repeat_interval;
	ELSIF 'repeat_interval' = ANY (unset) THEN
		r.repeat_interval := NULL;
	END IF;
	IF severity IS NOT NULL THEN
		IF severity NOT IN ('info', 'warning', 'error', 'critical') THEN
			RAISE EXCEPTION 'invalid severity "%"', severity
				USING ERRCODE = 'invalid_parameter_value',
				HINT = 'Severities are info, warning, error and critical.';
		END IF;
		r.severity := severity;
	END IF;
	r.send_resolved := coalesce(send_resolved, r.send_resolved);
	r.enabled := coalesce(enabled, r.enabled);
	IF subject_template IS NOT NULL OR body_template IS NOT NULL OR templates IS NOT NULL
	   OR unset && '{subject_template,body_template,templates}' THEN
		r.subject_template := CASE WHEN 'subject_template' = ANY (unset) THEN NULL
								   ELSE coalesce(subject_template, r.subject_template) END;
		r.body_template := CASE WHEN 'body_template' = ANY (unset) THEN NULL
								ELSE coalesce(body_template, r.body_template) END;
		r.templates := CASE WHEN 'templates' = ANY (unset) THEN '{}'
							ELSE coalesce(templates, r.templates) END;
		PERFORM anomaly._check_templates(caller, r.detector, r.group_by, r.subject_template,
										 r.body_template, r.templates);
	END IF;

	UPDATE anomaly.alert_rules x
	SET destinations = r.destinations, min_grade = r.min_grade, min_score = r.min_score,
		for_duration = r.for_duration, cooldown = r.cooldown, severity = r.severity,
		send_resolved = r.send_resolved, repeat_interval = r.repeat_interval, enabled = r.enabled,
		subject_template = r.subject_template, body_template = r.body_template,
		templates = r.templates
	WHERE x.name = r.name;
END
$$;

-- The payload of a rule notification.  "row" is the scored row with the
-- columns the rule's owner may read (_source_row), at most 16 kB.
CREATE OR REPLACE FUNCTION _rule_payload(r anomaly.alert_rules, ep anomaly.alert_episodes, s anomaly.scores, status text)
RETURNS jsonb
LANGUAGE sql VOLATILE
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
		'time', coalesce(s.commit_time, s.scored_at),
		'score_id', s.id,
		'source_key', s.source_key,
		'partition_key', s.partition_key,
		'row', anomaly._fit_json(anomaly._source_row(r.owner::oid, r.detector, s.source_key), 16384),
		'peak_score', ep.peak_score,
		'peak_grade', ep.peak_grade,
		'repeat', greatest(ep.notifications - 1, 0),
		'created_at', now())
$$;

-- Queues the notifications of one rule transition to every destination.
-- With templates, a destination's subject is its rendered subject template,
-- and an e-mail, SNS or Slack destination's payload carries the rendered
-- body template as "message" (which _render sends instead of the default
-- text); a webhook or notify destination gets the payload as it is.
CREATE OR REPLACE FUNCTION _notify_rule(r anomaly.alert_rules, ep anomaly.alert_episodes, s anomaly.scores, status text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, anomaly, pg_temp
AS $$
DECLARE
	d text;
	payload jsonb := anomaly._rule_payload(r, ep, s, status);
	subj text;
	kind text;
	t_subject text;
	t_body text;
BEGIN
	subj := format('[%s] %s: %s%s', upper(status), r.name, r.detector,
				   CASE WHEN ep.group_key = '{}' THEN ''
						ELSE ' ' || (SELECT string_agg(key || '=' || (value #>> '{}'), ' ' ORDER BY key)
									 FROM jsonb_each(ep.group_key)) END);
	FOREACH d IN ARRAY r.destinations LOOP
		SELECT x.kind INTO kind FROM anomaly.destinations x WHERE x.name = d;
		t_subject := coalesce(r.templates -> kind ->> 'subject', r.subject_template);
		t_body := coalesce(r.templates -> kind ->> CASE kind WHEN 'sns' THEN 'message'
															 WHEN 'slack' THEN 'text' ELSE 'body' END,
						   r.body_template);
		PERFORM anomaly._enqueue(d,
								 CASE WHEN t_subject IS NULL THEN subj
									  ELSE anomaly._render_template(t_subject, payload) END,
								 CASE WHEN t_body IS NULL OR kind NOT IN ('email', 'sns', 'slack') THEN payload
									  ELSE payload || jsonb_build_object('message', anomaly._render_template(t_body, payload)) END,
								 'anomaly-' || ep.fingerprint || '-' || ep.id || '-' || status ||
								 CASE WHEN status = 'firing' AND ep.notifications > 1
									  THEN '-' || ep.notifications ELSE '' END);
	END LOOP;
END
$$;

-- AFTER INSERT statement trigger on anomaly.scores: evaluates the rules of
-- the detectors whose scores were inserted, in the same transaction.
CREATE OR REPLACE FUNCTION _evaluate_rules()
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
	-- a rule sees the scores of its detector only while its owner owns the
	-- detector (a detector dropped and created again by another role under
	-- the same name does not feed it); scores of no detector feed the rules
	-- of superusers only
	FOR r IN SELECT * FROM anomaly.alert_rules ru
			 WHERE ru.enabled AND ru.detector IN (SELECT DISTINCT n.detector FROM new_scores n)
			   AND CASE WHEN EXISTS (SELECT 1 FROM anomaly.detectors d WHERE d.name = ru.detector)
						THEN EXISTS (SELECT 1 FROM anomaly.detectors d
									 WHERE d.name = ru.detector AND anomaly._owns(ru.owner::oid, d.owner))
						ELSE coalesce((SELECT a.rolsuper FROM pg_catalog.pg_authid a WHERE a.oid = ru.owner::oid), false)
				   END
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

-- ---------------------------------------------------------------------------
-- Delivery

-- Renders the body sent for one notification, per kind.  outbox_id is the
-- notification's outbox id (a notify reference names it).
--
-- A notify destination sends a reference unless its config says
-- "payload": "full" (which only a superuser may set, _check_payload_mode):
-- any role may LISTEN on any channel, so what goes out names the alert and
-- holds nothing of the subject, the key, the scores, the explanation or the
-- row; listeners read the alert from anomaly.alerts.  Decided here, at send
-- time from the destination's config of the moment, so every path to the
-- outbox (rules, send_alert, alert_trigger, test_destination,
-- replay_dead_letters) gets the same treatment.
CREATE OR REPLACE FUNCTION _render(kind text, config jsonb, subject text, payload jsonb, dedup_id text,
						outbox_id bigint DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, anomaly, pg_temp
AS $$
DECLARE
	summary text;
	subj text;
	b64 text;
	message text;
BEGIN
	summary := concat_ws(' ',
		CASE WHEN payload ->> 'status' = 'resolved' THEN 'RESOLVED' ELSE 'FIRING' END,
		'[' || coalesce(payload ->> 'severity', 'info') || ']',
		subject,
		CASE WHEN payload ? 'score' AND jsonb_typeof(payload -> 'score') = 'number'
			 THEN 'score=' || round((payload ->> 'score')::numeric, 4) END,
		CASE WHEN payload ? 'grade' AND jsonb_typeof(payload -> 'grade') = 'number'
			 THEN 'grade=' || round((payload ->> 'grade')::numeric, 4) END);
	-- a rule's rendered body template, for e-mail, SNS and Slack
	IF jsonb_typeof(payload -> 'message') = 'string' THEN
		message := payload ->> 'message';
	END IF;
	IF kind = 'webhook' THEN
		RETURN payload::text;
	ELSIF kind = 'notify' THEN
		IF config ->> 'payload' = 'full' THEN
			RETURN anomaly._fit_json(payload, 7900)::text;
		END IF;
		-- each value is one of a closed set, a number, or the rule's name
		-- (chosen by its owner, never by a row)
		RETURN jsonb_strip_nulls(jsonb_build_object(
			'version', 1,
			'payload', 'reference',
			'id', outbox_id,
			'source', CASE WHEN payload ->> 'source' IN ('rule', 'send_alert', 'trigger', 'test')
						   THEN payload ->> 'source' END,
			'rule', CASE WHEN payload ->> 'source' = 'rule' THEN left(payload ->> 'alert', 128) END,
			'episode', CASE WHEN payload ->> 'source' = 'rule' AND jsonb_typeof(payload -> 'episode') = 'number'
							THEN payload -> 'episode' END,
			'score_id', CASE WHEN payload ->> 'source' = 'rule' AND jsonb_typeof(payload -> 'score_id') = 'number'
							 THEN payload -> 'score_id' END,
			'status', CASE WHEN payload ->> 'status' = 'resolved' THEN 'resolved' ELSE 'firing' END,
			'severity', CASE WHEN payload ->> 'severity' IN ('info', 'warning', 'error', 'critical')
							 THEN payload ->> 'severity' ELSE 'info' END,
			'repeat', CASE WHEN payload ->> 'source' = 'rule' AND jsonb_typeof(payload -> 'repeat') = 'number'
						   THEN payload -> 'repeat' END))::text;
	ELSIF kind = 'sns' THEN
		-- SNS counts Message and the attributes against 262,144 bytes; the
		-- attributes (severity, detector cut to 256 characters, score) take
		-- under 1 kB.
		IF message IS NOT NULL THEN
			-- within the limit, or cut to characters that surely are
			RETURN CASE WHEN octet_length(message) <= 262144 - 1024 THEN message
						ELSE left(message, (262144 - 1024) / 4) END;
		END IF;
		RETURN anomaly._fit_json(payload, 262144 - 1024)::text;
	ELSIF kind = 'slack' THEN
		IF message IS NOT NULL THEN
			RETURN jsonb_strip_nulls(jsonb_build_object(
				'text', left(message, 40000),
				'channel', config -> 'channel',
				'username', config -> 'username',
				'icon_emoji', config -> 'icon_emoji'))::text;
		END IF;
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
			CASE WHEN message IS NOT NULL
				 THEN regexp_replace(left(message, 1048576), E'\r?\n', E'\r\n', 'g')
				 ELSE regexp_replace(summary, E'\r?\n', E'\r\n', 'g') || E'\r\n\r\n' ||
					  regexp_replace(jsonb_pretty(anomaly._fit_json(payload, 1048576)), E'\r?\n', E'\r\n', 'g')
			END, E'\r\n');
	END IF;
	RAISE EXCEPTION 'unknown destination kind "%"', kind;
END
$$;

-- Records the outcome of a round: outcome is 'sent', 'retry', 'dead' or
-- 'defer' (rate limit) per id, error the class of a failure and detail its
-- full text (NULL: the class says it all), delay_ms the wait before the
-- next attempt.
CREATE OR REPLACE FUNCTION _record(ids bigint[], outcomes text[], errors text[], details text[], delays integer[])
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

	-- the full text, for superusers (delivery_errors)
	IF EXISTS (SELECT 1 FROM unnest(details) x WHERE x IS NOT NULL) THEN
		INSERT INTO anomaly.delivery_errors AS e (outbox_id, destination, detail)
		SELECT DISTINCT ON (u.id) u.id, coalesce(o.destination, d.destination), u.detail
		FROM unnest(ids, outcomes, details) AS u(id, outcome, detail)
		LEFT JOIN anomaly.outbox o ON o.id = u.id
		LEFT JOIN anomaly.dead_letters d ON d.outbox_id = u.id
		WHERE u.detail IS NOT NULL AND u.outcome IN ('retry', 'dead')
		  AND coalesce(o.destination, d.destination) IS NOT NULL
		ON CONFLICT (outbox_id) DO UPDATE SET at = now(), detail = excluded.detail;
	END IF;
	IF EXISTS (SELECT 1 FROM anomaly.delivery_errors) THEN
		DELETE FROM anomaly.delivery_errors e
		USING unnest(ids, outcomes) AS u(id, outcome)
		WHERE e.outbox_id = u.id AND u.outcome = 'sent';
	END IF;
END
$$;

-- Moves dead letters back into the outbox (all of them, or those of one
-- destination, those failed since a time, or the given ids); they keep their
-- deduplication ids.  Returns how many.
CREATE OR REPLACE FUNCTION replay_dead_letters(destination text DEFAULT NULL, ids bigint[] DEFAULT NULL,
									since timestamptz DEFAULT NULL)
RETURNS integer
AS 'MODULE_PATHNAME', 'anomaly_alert_entry'
LANGUAGE C VOLATILE;

-- Only dead letters of destinations the caller owns.
CREATE OR REPLACE FUNCTION _replay_dead_letters(caller oid, destination text, ids bigint[], since timestamptz)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, anomaly, pg_temp
AS $$
DECLARE
	n integer;
BEGIN
	IF destination IS NOT NULL THEN
		PERFORM anomaly._usable_destination(caller, destination);
	END IF;
	WITH gone AS (
		DELETE FROM anomaly.dead_letters d
		WHERE (_replay_dead_letters.destination IS NULL OR d.destination = _replay_dead_letters.destination)
		  AND (_replay_dead_letters.ids IS NULL OR d.id = ANY (_replay_dead_letters.ids))
		  AND (_replay_dead_letters.since IS NULL OR d.failed_at >= _replay_dead_letters.since)
		  AND EXISTS (SELECT 1 FROM anomaly.destinations x WHERE x.name = d.destination
					  AND anomaly._owns(caller, x.owner))
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
-- (anomaly.alert_retention); returns how many rows went.  An admin purges
-- only their own destinations' dead letters and their own rules' episodes.
CREATE OR REPLACE FUNCTION purge_alert_history(older_than interval DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'anomaly_alert_entry'
LANGUAGE C VOLATILE;

CREATE OR REPLACE FUNCTION _purge_alert_history(caller oid, older_than interval)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, anomaly, pg_temp
AS $$
DECLARE
	keep interval := coalesce(older_than,
							  (coalesce(current_setting('anomaly.alert_retention', true), '') || ' s')::interval);
	a bigint;
	b bigint;
	su boolean := (SELECT r.rolsuper FROM pg_catalog.pg_authid r WHERE r.oid = caller);
BEGIN
	IF keep IS NULL OR keep < '0' THEN
		RAISE EXCEPTION 'retention must be a non-negative interval'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	DELETE FROM anomaly.dead_letters d WHERE d.failed_at < now() - keep
		AND (su OR EXISTS (SELECT 1 FROM anomaly.destinations x
						   WHERE x.name = d.destination AND anomaly._owns(caller, x.owner)));
	GET DIAGNOSTICS a = ROW_COUNT;
	DELETE FROM anomaly.alert_episodes e WHERE e.status = 'resolved' AND e.resolved_at < now() - keep
		AND (su OR EXISTS (SELECT 1 FROM anomaly.alert_rules r
						   WHERE r.name = e.rule AND anomaly._owns(caller, r.owner)));
	GET DIAGNOSTICS b = ROW_COUNT;
	IF su THEN
		DELETE FROM anomaly.delivery_errors e
		WHERE NOT EXISTS (SELECT 1 FROM anomaly.outbox o WHERE o.id = e.outbox_id)
		  AND NOT EXISTS (SELECT 1 FROM anomaly.dead_letters d WHERE d.outbox_id = e.outbox_id);
	END IF;
	RETURN a + b;
END
$$;

-- Sends a test notification to a destination now and reports the outcome
-- (the caller must own it; the failure's details only to superusers).
CREATE OR REPLACE FUNCTION test_destination(name text, OUT ok boolean, OUT detail text)
RETURNS record
AS 'MODULE_PATHNAME', 'anomaly_alert_test_destination'
LANGUAGE C VOLATILE;

-- Why no background worker of a kind ('detector', 'sender') can serve this
-- database ('no worker: ...'), NULL when one can: for the status views.
CREATE OR REPLACE FUNCTION _worker_note(kind text)
RETURNS text
AS 'MODULE_PATHNAME', 'anomaly_worker_note'
LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION _worker_note(text)
IS 'internal: why no background worker of a kind (detector, sender) serves this database, NULL when one does';
REVOKE ALL ON FUNCTION _worker_note(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION _worker_note(text) TO anomaly_admin;

-- Per destination: what waits, what went, what failed (each role sees its
-- own: security_invoker, so the tables' row level security applies).
CREATE OR REPLACE VIEW delivery_status WITH (security_invoker = true) AS
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
	   c.last_error,
	   anomaly._worker_note('sender') AS note
FROM anomaly.destinations d
LEFT JOIN (SELECT o.destination, count(*) AS queued, count(*) FILTER (WHERE o.attempts > 0) AS retrying,
				  min(o.created_at) AS oldest
		   FROM anomaly.outbox o GROUP BY o.destination) q ON q.destination = d.name
LEFT JOIN anomaly.delivery_counters c ON c.destination = d.name
LEFT JOIN (SELECT x.destination, count(*) AS dead_letters
		   FROM anomaly.dead_letters x GROUP BY x.destination) l ON l.destination = d.name;
COMMENT ON VIEW delivery_status IS 'per destination: queued, oldest age, sent, retried, dead, last success and error, and why no sender worker serves this database (note)';

-- Open and recent alert episodes.
CREATE OR REPLACE VIEW alerts WITH (security_invoker = true) AS
SELECT e.id AS episode, e.rule, r.detector, e.group_key AS key, e.fingerprint, e.status,
	   e.started_at, e.fired_at, e.resolved_at, e.last_seen_at, e.notified,
	   e.notifications, e.last_notified_at, e.peak_score, e.peak_grade, r.severity
FROM anomaly.alert_episodes e JOIN anomaly.alert_rules r ON r.name = e.rule;

-- Functions are executable by PUBLIC by default: only the admin role (and
-- superusers) may use these; the internal ones only the extension's owner.
REVOKE EXECUTE ON FUNCTION
	create_destination(text, text, jsonb),
	alter_destination(text, jsonb, boolean),
	drop_destination(text, boolean),
	send_alert(text, text, jsonb),
	alert_trigger(),
	create_alert_rule(text, text, text, text[], double precision, double precision, interval, interval, text[], text, boolean, interval, text, text, jsonb),
	drop_alert_rule(text),
	alter_alert_rule(text, text, text[], double precision, double precision, interval, interval, text, boolean, interval, boolean, text[], text, text, jsonb),
	replay_dead_letters(text, bigint[], timestamptz),
	purge_alert_history(interval),
	deliver(integer),
	test_destination(text),
	_reject_secret_keys(jsonb, text),
	_a(text),
	_config_text(jsonb, text, boolean, text),
	_config_whole(jsonb, text, integer, integer, text),
	_check_url(text, text[], text, text),
	_check_config(text, jsonb),
	_credential_bound(text, text),
	_check_bindings(text, jsonb),
	_check_payload_mode(oid, text, jsonb),
	_owns(oid, regrole),
	_usable_destination(oid, text, boolean),
	_create_destination(oid, text, text, jsonb),
	_alter_destination(oid, text, jsonb, boolean),
	_drop_destination(oid, text, boolean),
	_fit_json(jsonb, integer),
	_fingerprint(text[]),
	_enqueue(text, text, jsonb, text),
	_destination_kind(text),
	_send_alert(oid, text, text, jsonb),
	_row_to_jsonb(oid, anyelement),
	_create_alert_rule(oid, text, text, text, text[], double precision, double precision, interval, interval, text[], text, boolean, interval, text, text, jsonb),
	_drop_alert_rule(oid, text),
	_alter_alert_rule(oid, text, text, text[], double precision, double precision, interval, interval, text, boolean, interval, boolean, text[], text, text, jsonb),
	_template_roots(),
	_check_templates(oid, text, text[], text, text, jsonb),
	_rule_payload(alert_rules, alert_episodes, scores, text),
	_notify_rule(alert_rules, alert_episodes, scores, text),
	_evaluate_rules(),
	_render(text, jsonb, text, jsonb, text, bigint),
	_sns_subject(text),
	_record(bigint[], text[], text[], text[], integer[]),
	_replay_dead_letters(oid, text, bigint[], timestamptz),
	_purge_alert_history(oid, interval),
	_wake_sender()
FROM PUBLIC;
-- create_alert_rule was dropped (its arguments changed): its grant again.
GRANT EXECUTE ON FUNCTION
	alter_alert_rule(text, text, text[], double precision, double precision, interval, interval, text, boolean, interval, boolean, text[], text, text, jsonb),
	create_alert_rule(text, text, text, text[], double precision, double precision, interval, interval, text[], text, boolean, interval, text, text, jsonb)
TO anomaly_admin;

COMMENT ON FUNCTION _credential_bound(text, text) IS 'internal: whether anomaly.credential_bindings lets a credential go to a URL';

COMMENT ON FUNCTION _check_bindings(text, jsonb) IS 'internal: raises unless the credentials a destination config names are bound to its URL';

COMMENT ON FUNCTION _check_payload_mode(oid, text, jsonb) IS 'internal: raises unless a superuser asks for a notify destination''s full payload';

COMMENT ON FUNCTION _owns(oid, regrole) IS 'internal: whether a role may act as the owner of an alert object';

COMMENT ON FUNCTION _usable_destination(oid, text, boolean) IS 'internal: checks that a destination exists and the caller owns it; returns its kind';

COMMENT ON FUNCTION _row_to_jsonb(oid, anyelement) IS 'internal: to_jsonb of a row as its table''s owner, restricted (alert_trigger)';

COMMENT ON FUNCTION _create_destination(oid, text, text, jsonb) IS 'internal: create_destination as its caller';

COMMENT ON FUNCTION _alter_destination(oid, text, jsonb, boolean) IS 'internal: alter_destination as its caller';

COMMENT ON FUNCTION _drop_destination(oid, text, boolean) IS 'internal: drop_destination as its caller';

COMMENT ON FUNCTION _send_alert(oid, text, text, jsonb) IS 'internal: send_alert as its caller';

COMMENT ON FUNCTION _create_alert_rule(oid, text, text, text, text[], double precision, double precision, interval, interval, text[], text, boolean, interval, text, text, jsonb) IS 'internal: create_alert_rule as its caller';

COMMENT ON FUNCTION _drop_alert_rule(oid, text) IS 'internal: drop_alert_rule as its caller';
COMMENT ON FUNCTION _alter_alert_rule(oid, text, text, text[], double precision, double precision, interval, interval, text, boolean, interval, boolean, text[], text, text, jsonb) IS 'internal: alter_alert_rule as its caller';
COMMENT ON FUNCTION _template_roots() IS 'internal: the payload fields an alert template may name';
COMMENT ON FUNCTION _check_templates(oid, text, text[], text, text, jsonb) IS 'internal: checks an alert rule''s templates, warning about fields that render empty';

COMMENT ON FUNCTION _replay_dead_letters(oid, text, bigint[], timestamptz) IS 'internal: replay_dead_letters as its caller';

COMMENT ON FUNCTION _purge_alert_history(oid, interval) IS 'internal: purge_alert_history as its caller';

CREATE POLICY detectors_of_owner ON detectors FOR SELECT TO anomaly_admin
	USING (pg_catalog.pg_has_role(owner::pg_catalog.oid, 'USAGE'));

CREATE POLICY detector_failures_of_owner ON detector_failures FOR SELECT TO anomaly_admin
	USING (owner IS NOT NULL AND pg_catalog.pg_has_role(owner::pg_catalog.oid, 'USAGE'));

REVOKE ALL ON FUNCTION _ddl_guard() FROM PUBLIC;

-- What each detector's open round is doing, from shared memory (when the
-- library is preloaded): detector_status shows it with the catalog.  Rows
-- of the detectors whose owner's privileges the caller has.
CREATE FUNCTION detector_progress(
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
	CASE WHEN s.active THEN p.memory_bytes END AS worker_memory
FROM detectors d
CROSS JOIN anomaly._worker_note('detector') w(note)
LEFT JOIN pg_catalog.pg_class c ON c.oid = d.source
LEFT JOIN pg_catalog.pg_replication_slots s ON s.slot_name = d.slot_name
	AND s.database = pg_catalog.current_database()
LEFT JOIN detector_progress() p ON p.detector_id = d.id
WHERE pg_catalog.pg_has_role(d.owner::pg_catalog.oid, 'USAGE');

COMMENT ON FUNCTION create_destination(text, text, jsonb) IS 'creates an alert destination (sns, webhook, slack, email, notify) owned by the caller';
COMMENT ON FUNCTION alter_destination(text, jsonb, boolean) IS 'changes a destination''s config and whether it is enabled (its owner only)';
COMMENT ON FUNCTION drop_destination(text, boolean) IS 'drops a destination; force moves its queued notifications to the dead letters';
COMMENT ON FUNCTION send_alert(text, text, jsonb) IS 'queues a notification to a destination in this transaction; returns its outbox id';
COMMENT ON FUNCTION alert_trigger() IS 'row trigger: each row written raises a notification to the destinations given as trigger arguments';
COMMENT ON FUNCTION create_alert_rule(text, text, text, text[], double precision, double precision, interval, interval, text[], text, boolean, interval, text, text, jsonb) IS 'creates an alert rule over the scores of a detector the caller owns';
COMMENT ON FUNCTION alter_alert_rule(text, text, text[], double precision, double precision, interval, interval, text, boolean, interval, boolean, text[], text, text, jsonb) IS 'changes an alert rule: destinations, thresholds, timing, severity, enabled (NULL: unchanged; unset clears)';
COMMENT ON FUNCTION drop_alert_rule(text) IS 'drops an alert rule and its episodes';
COMMENT ON FUNCTION replay_dead_letters(text, bigint[], timestamptz) IS 'moves dead letters back into the outbox (all, one destination''s, since a time, or by id); returns how many';
COMMENT ON FUNCTION purge_alert_history(interval) IS 'deletes dead letters and resolved episodes older than the retention; returns how many';
COMMENT ON FUNCTION deliver(integer) IS 'one delivery round from SQL: sends up to max due notifications; returns how many were delivered';
COMMENT ON FUNCTION test_destination(text) IS 'sends a test notification to a destination now and reports the outcome';

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

CREATE FUNCTION random_cut_forest(
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

CREATE FUNCTION random_cut_forest(
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

CREATE FUNCTION random_cut_forest_with_explanation(
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

CREATE FUNCTION random_cut_forest_with_explanation(
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

CREATE FUNCTION detect(
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

CREATE FUNCTION detect(
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

COMMENT ON FUNCTION random_cut_forest(double precision[], integer, integer, bigint, integer, bigint, text, double precision, double precision[])
IS 'KDA RANDOM_CUT_FOREST: anomaly score of each row over the window partition';
COMMENT ON FUNCTION random_cut_forest(record, integer, integer, bigint, integer, bigint, text, double precision, double precision[])
IS 'KDA RANDOM_CUT_FOREST over the numeric columns of a row';
COMMENT ON FUNCTION random_cut_forest_with_explanation(double precision[], integer, integer, bigint, integer, boolean, bigint, text[], text, double precision, double precision[])
IS 'KDA RANDOM_CUT_FOREST_WITH_EXPLANATION: per-feature attribution of each row''s score';
COMMENT ON FUNCTION random_cut_forest_with_explanation(record, integer, integer, bigint, integer, boolean, bigint, text[], text, double precision, double precision[])
IS 'KDA RANDOM_CUT_FOREST_WITH_EXPLANATION over the numeric columns of a row';
COMMENT ON FUNCTION detect(double precision[], integer, integer, bigint, integer, bigint, double precision, double precision, double precision, double precision, double precision, double precision, integer, double precision, text, text[], double precision, double precision, text, double precision, double precision[])
IS 'graded anomaly detection over a window: Random Cut Forest score, thresholded into a grade';
COMMENT ON FUNCTION detect(record, integer, integer, bigint, integer, bigint, double precision, double precision, double precision, double precision, double precision, double precision, integer, double precision, text, text[], double precision, double precision, text, double precision, double precision[])
IS 'graded anomaly detection over the numeric columns of a row';

-- rcf_set_grading's defaults follow detect()'s new ones (issue 13).
CREATE OR REPLACE FUNCTION rcf_set_grading(
	model rcf,
	z_factor double precision DEFAULT 4,
	score_floor double precision DEFAULT 0.8,
	ignore_near_expected_above double precision DEFAULT 0,
	ignore_near_expected_below double precision DEFAULT 0,
	ignore_near_expected_above_ratio double precision DEFAULT 0,
	ignore_near_expected_below_ratio double precision DEFAULT 0,
	suppress integer DEFAULT 100,
	score_horizon double precision DEFAULT 3000,
	cusum_drift double precision DEFAULT 2,
	cusum_threshold double precision DEFAULT 0)
RETURNS rcf
AS 'MODULE_PATHNAME', 'rcf_set_grading_model' LANGUAGE C IMMUTABLE PARALLEL SAFE;

-- rcf_train with a transform: three more arities.
CREATE FUNCTION _rcf_train_transfn(internal, double precision[], integer, integer, bigint, integer, bigint, text)
RETURNS internal AS 'MODULE_PATHNAME', 'rcf_train_transfn' LANGUAGE C PARALLEL SAFE;
CREATE FUNCTION _rcf_train_transfn(internal, double precision[], integer, integer, bigint, integer, bigint, text, double precision)
RETURNS internal AS 'MODULE_PATHNAME', 'rcf_train_transfn' LANGUAGE C PARALLEL SAFE;
CREATE FUNCTION _rcf_train_transfn(internal, double precision[], integer, integer, bigint, integer, bigint, text, double precision, double precision[])
RETURNS internal AS 'MODULE_PATHNAME', 'rcf_train_transfn' LANGUAGE C PARALLEL SAFE;
REVOKE EXECUTE ON FUNCTION _rcf_train_transfn(internal, double precision[], integer, integer, bigint, integer, bigint, text),
	_rcf_train_transfn(internal, double precision[], integer, integer, bigint, integer, bigint, text, double precision),
	_rcf_train_transfn(internal, double precision[], integer, integer, bigint, integer, bigint, text, double precision, double precision[])
	FROM PUBLIC;
-- With a transform (detect()'s transform, transform_decay, transform_weights).
CREATE AGGREGATE rcf_train(point double precision[], number_of_trees integer,
						   sub_sample_size integer, time_decay bigint,
						   shingle_size integer, seed bigint, transform text) (
	SFUNC = _rcf_train_transfn, STYPE = internal,
	FINALFUNC = _rcf_train_finalfn, FINALFUNC_MODIFY = READ_ONLY);
CREATE AGGREGATE rcf_train(point double precision[], number_of_trees integer,
						   sub_sample_size integer, time_decay bigint,
						   shingle_size integer, seed bigint, transform text,
						   transform_decay double precision) (
	SFUNC = _rcf_train_transfn, STYPE = internal,
	FINALFUNC = _rcf_train_finalfn, FINALFUNC_MODIFY = READ_ONLY);
CREATE AGGREGATE rcf_train(point double precision[], number_of_trees integer,
						   sub_sample_size integer, time_decay bigint,
						   shingle_size integer, seed bigint, transform text,
						   transform_decay double precision,
						   transform_weights double precision[]) (
	SFUNC = _rcf_train_transfn, STYPE = internal,
	FINALFUNC = _rcf_train_finalfn, FINALFUNC_MODIFY = READ_ONLY);
COMMENT ON AGGREGATE rcf_train(double precision[], integer, integer, bigint, integer, bigint, text)
IS 'trains a model on points whose features are transformed first (none, weighted, subtract_ma, difference, normalize, normalize_difference)';
COMMENT ON AGGREGATE rcf_train(double precision[], integer, integer, bigint, integer, bigint, text, double precision)
IS 'trains a model with a transform and the decay of its running statistics';
COMMENT ON AGGREGATE rcf_train(double precision[], integer, integer, bigint, integer, bigint, text, double precision, double precision[])
IS 'trains a model with a transform, its decay and per-feature weights';
COMMENT ON FUNCTION _rcf_train_transfn(internal, double precision[], integer, integer, bigint, integer, bigint, text) IS 'internal: transition function of rcf_train';
COMMENT ON FUNCTION _rcf_train_transfn(internal, double precision[], integer, integer, bigint, integer, bigint, text, double precision) IS 'internal: transition function of rcf_train';
COMMENT ON FUNCTION _rcf_train_transfn(internal, double precision[], integer, integer, bigint, integer, bigint, text, double precision, double precision[]) IS 'internal: transition function of rcf_train';

-- ---------------------------------------------------------------------------
-- ROWTIME: each score carries its row's event time (the detector's
-- time_column, else the commit time).  Scores written by 0.1.0 have none.
ALTER TABLE scores ADD COLUMN rowtime timestamptz;

-- History: a detector created with {"start": "all"} scores the stored rows
-- first; its progress is here.
ALTER TABLE detectors ADD COLUMN backfill jsonb;

-- ---------------------------------------------------------------------------
-- New: scale-out over logical replication (src/sql/060_scale_out.sql, as is).

-- Scale-out: detectors on several PostgreSQL servers ("scoring nodes") fed
-- by logical replication, each node one shard of the partition keys
-- (docs/scale-out.md).  PostgreSQL does the work (publications with row
-- filters, subscriptions); these functions make each step one call, and
-- move a key's model with it when the shards change.
--
-- The shard of a key.  A publication's row filter may use only built-in
-- immutable functions and operators, and the same key must land on the same
-- shard in the filter, in the users' routing tables and after a major
-- upgrade of any server.  hashtext() and hashint8() are not promised to
-- stay the same across major versions, so the hash is built from what is
-- defined outside PostgreSQL: exact numeric arithmetic for integer keys
-- (Knuth's multiplicative hash, the high 10 of 32 bits), MD5 (RFC 1321) for
-- text keys.  It gives one of 1024 buckets; a bucket's shard among n is
-- chosen so that going from n - 1 to n shards moves buckets only to the new
-- shard (about 1/n of each old shard's): bucket b is on shard k - 1 for the
-- largest k <= n whose draw md5(b || ':' || k) is a multiple of k, else on
-- shard 0.  Every shard gets 1/n of the buckets on average.

CREATE FUNCTION shard_of_bucket(bucket integer, shards integer)
RETURNS integer
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	d bytea;
BEGIN
	IF bucket < 0 OR bucket > 1023 THEN
		RAISE EXCEPTION 'bucket must be between 0 and 1023' USING ERRCODE = '22023';
	END IF;
	IF shards < 1 OR shards > 1024 THEN
		RAISE EXCEPTION 'shards must be between 1 and 1024' USING ERRCODE = '22023';
	END IF;
	FOR k IN REVERSE shards..2 LOOP
		d := decode(md5(bucket::text || ':' || k::text), 'hex');
		IF mod(get_byte(d, 0)::bigint * 16777216 + get_byte(d, 1) * 65536
			   + get_byte(d, 2) * 256 + get_byte(d, 3), k) = 0 THEN
			RETURN k - 1;
		END IF;
	END LOOP;
	RETURN 0;
END
$$;
COMMENT ON FUNCTION shard_of_bucket(integer, integer)
IS 'the shard (0 to shards - 1) of one of the 1024 key buckets; n - 1 to n shards moves buckets only to the new shard';

CREATE FUNCTION shard_of(key bigint, shards integer)
RETURNS integer
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN @extschema@.shard_of_bucket(
	div(mod(mod(key::numeric * 2654435761, 4294967296) + 4294967296, 4294967296), 4194304)::integer,
	shards);
COMMENT ON FUNCTION shard_of(bigint, integer)
IS 'the shard (0 to shards - 1) of an integer partition key, as create_shard_publications routes it';

CREATE FUNCTION shard_of(key text, shards integer)
RETURNS integer
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN @extschema@.shard_of_bucket(
	((get_byte(decode(md5(key), 'hex'), 0) * 256 + get_byte(decode(md5(key), 'hex'), 1)) % 1024),
	shards);
COMMENT ON FUNCTION shard_of(text, integer)
IS 'the shard (0 to shards - 1) of a text partition key, as create_shard_publications routes it';

-- The row filter of one shard over column `key` of type key_type: the
-- bucket expression above, inline (a filter cannot call our functions),
-- and the shard's buckets as a constant array.
CREATE FUNCTION shard_filter(key name, key_type regtype, shard integer, shards integer)
RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	bucket text;
	buckets integer[];
BEGIN
	IF shards < 1 OR shards > 1024 THEN
		RAISE EXCEPTION 'shards must be between 1 and 1024' USING ERRCODE = '22023';
	END IF;
	IF shard < 0 OR shard >= shards THEN
		RAISE EXCEPTION 'shard must be between 0 and %', shards - 1 USING ERRCODE = '22023';
	END IF;
	IF key_type IN ('smallint'::regtype, 'integer'::regtype, 'bigint'::regtype) THEN
		bucket := format('div(mod(mod(%I::numeric * 2654435761::numeric, 4294967296::numeric)'
						 ' + 4294967296::numeric, 4294967296::numeric), 4194304::numeric)', key);
	ELSIF key_type IN ('text'::regtype, 'character varying'::regtype) THEN
		bucket := format('((get_byte(decode(md5(%1$I::text), ''hex''), 0) * 256'
						 ' + get_byte(decode(md5(%1$I::text), ''hex''), 1)) %% 1024)', key);
	ELSE
		RAISE EXCEPTION 'a shard key must be smallint, integer, bigint, text or varchar, not %', key_type
			USING ERRCODE = '42804',
				  HINT = 'A row filter cannot convert other types to text; add a generated column of one of these types.';
	END IF;
	SELECT array_agg(b ORDER BY b) INTO buckets
	FROM generate_series(0, 1023) b
	WHERE @extschema@.shard_of_bucket(b, shards) = shard;
	IF buckets IS NULL THEN
		RETURN 'false';
	END IF;
	RETURN format('(%s = ANY (%L::%s))', bucket, buckets::text,
				  CASE WHEN bucket LIKE 'div(%' THEN 'numeric[]' ELSE 'integer[]' END);
END
$$;
COMMENT ON FUNCTION shard_filter(name, regtype, integer, integer)
IS 'the publication row filter (SQL) that selects one shard''s keys: for sources without the extension';

-- ---------------------------------------------------------------------------
-- On the source: one publication per shard, <prefix>_<shard>, of inserts
-- into `source` whose `key` is on that shard.  Called again with another
-- number of shards it re-filters them all in one transaction (the cut of a
-- reshard: rows committed before it go by the old shards, after it by the
-- new).  The table is locked against writers (SHARE) until the caller's
-- transaction ends, so that no transaction writing it straddles the cut.
-- prepare: create the missing publications matching nothing yet, leave the
-- others (a new node subscribes to its publication before the cut).
-- Runs as the caller: CREATE and ALTER PUBLICATION check ownership of the
-- table.
CREATE FUNCTION create_shard_publications(
	source regclass,
	key name,
	shards integer,
	prefix name DEFAULT NULL,
	prepare boolean DEFAULT false,
	publish text DEFAULT 'insert')
RETURNS SETOF name
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	key_type regtype;
	pub name;
	filter text;
	tables oid[];
	qsource text;
BEGIN
	IF source IS NULL OR key IS NULL OR shards IS NULL OR prepare IS NULL OR publish IS NULL THEN
		RAISE EXCEPTION 'source, key, shards, prepare and publish must not be null' USING ERRCODE = '22004';
	END IF;
	IF shards < 1 OR shards > 1024 THEN
		RAISE EXCEPTION 'shards must be between 1 and 1024' USING ERRCODE = '22023';
	END IF;
	IF publish !~ '^\s*(insert|update|delete|truncate)(\s*,\s*(insert|update|delete|truncate))*\s*$' THEN
		RAISE EXCEPTION 'publish must list insert, update, delete or truncate, comma-separated'
			USING ERRCODE = '22023';
	END IF;
	SELECT a.atttypid::regtype INTO key_type FROM pg_attribute a
	WHERE a.attrelid = source AND a.attname = key AND a.attnum > 0 AND NOT a.attisdropped;
	IF key_type IS NULL THEN
		RAISE EXCEPTION 'column "%" of % does not exist', key, source USING ERRCODE = '42703';
	END IF;
	IF NOT pg_has_role((SELECT relowner FROM pg_class WHERE oid = source), 'USAGE') THEN
		RAISE EXCEPTION 'must be the owner of table %', source USING ERRCODE = '42501';
	END IF;
	prefix := coalesce(prefix, (SELECT relname FROM pg_class WHERE oid = source) || '_shard');
	IF length(prefix) > 58 THEN
		RAISE EXCEPTION 'prefix must be at most 58 characters' USING ERRCODE = '22023';
	END IF;
	-- shrinking is not a re-filter: the keys of the dropped shards' nodes
	-- would have to move first (docs/scale-out.md)
	IF EXISTS (SELECT 1 FROM pg_publication p
			   WHERE p.pubname = prefix || '_' || shards::text) THEN
		RAISE EXCEPTION 'publication "%" exists: fewer shards than before is not supported', prefix || '_' || shards::text
			USING ERRCODE = '55000',
				  HINT = 'Move its keys and drop the publications of the removed shards first.';
	END IF;
	qsource := format('%I.%I', (SELECT nspname FROM pg_namespace n JOIN pg_class c ON c.relnamespace = n.oid
								WHERE c.oid = source),
					  (SELECT relname FROM pg_class WHERE oid = source));
	EXECUTE format('LOCK TABLE %s IN SHARE MODE', qsource);
	FOR s IN 0 .. shards - 1 LOOP
		pub := prefix || '_' || s::text;
		filter := @extschema@.shard_filter(key, key_type, s, shards);
		IF EXISTS (SELECT 1 FROM pg_publication p WHERE p.pubname = pub) THEN
			SELECT array_agg(r.prrelid) INTO tables FROM pg_publication_rel r
			JOIN pg_publication p ON p.oid = r.prpubid WHERE p.pubname = pub;
			IF tables IS DISTINCT FROM ARRAY[source::oid]
			   OR (SELECT puballtables FROM pg_publication WHERE pubname = pub) THEN
				RAISE EXCEPTION 'publication "%" exists and does not publish % alone', pub, source
					USING ERRCODE = '42710';
			END IF;
			IF NOT prepare THEN
				EXECUTE format('ALTER PUBLICATION %I SET TABLE %s WHERE (%s)', pub, qsource, filter);
				EXECUTE format('ALTER PUBLICATION %I SET (publish = %L)', pub, publish);
			END IF;
		ELSE
			EXECUTE format('CREATE PUBLICATION %I FOR TABLE %s WHERE (%s) WITH (publish = %L)',
						   pub, qsource, CASE WHEN prepare THEN 'false' ELSE filter END, publish);
		END IF;
		RETURN NEXT pub;
	END LOOP;
END
$$;
COMMENT ON FUNCTION create_shard_publications(regclass, name, integer, name, boolean, text)
IS 'on the source: one publication per shard of a table''s rows by key hash (again with more shards: the reshard cut)';

-- ---------------------------------------------------------------------------
-- On a scoring node: a subscription to one shard's publication.  Its slot
-- on the source is made beforehand (a logical slot cannot be created in a
-- function's transaction), named like the publication unless slot_name
-- says otherwise.  The connection string carries no password: libpq reads
-- it from the server's ~/.pgpass or a passfile= (PostgreSQL stores the
-- connection string in pg_subscription, readable by superusers).
CREATE FUNCTION attach_scoring_node(
	subscription name,
	conninfo text,
	publication name,
	slot_name name DEFAULT NULL)
RETURNS name
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	unscored text;
BEGIN
	IF subscription IS NULL OR conninfo IS NULL OR publication IS NULL THEN
		RAISE EXCEPTION 'subscription, conninfo and publication must not be null' USING ERRCODE = '22004';
	END IF;
	IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
		RAISE EXCEPTION 'must be superuser to attach a scoring node' USING ERRCODE = '42501',
			DETAIL = 'PostgreSQL 15 lets only superusers create subscriptions.';
	END IF;
	IF conninfo ~* '(^|[\s?&])(ssl)?password\s*=' OR conninfo ~* '^postgres(ql)?://[^/@]*:[^/@]*@' THEN
		RAISE EXCEPTION 'the connection string must not contain a password' USING ERRCODE = '22023',
			HINT = 'Put it in the server''s ~/.pgpass, or name a file with passfile=, or use certificates.';
	END IF;
	EXECUTE format('CREATE SUBSCRIPTION %I CONNECTION %L PUBLICATION %I'
				   ' WITH (create_slot = false, slot_name = %L, copy_data = false)',
				   subscription, conninfo, publication, coalesce(slot_name, publication));
	SELECT string_agg(r.srrelid::regclass::text, ', ') INTO unscored
	FROM pg_subscription_rel r JOIN pg_subscription s ON s.oid = r.srsubid
	WHERE s.subname = subscription
	  AND NOT EXISTS (SELECT 1 FROM @extschema@.detectors d WHERE d.source = r.srrelid);
	IF unscored IS NOT NULL THEN
		RAISE WARNING 'no detector scores the rows of %', unscored
			USING HINT = 'Create the detector before the rows arrive: rows applied before it are not scored.';
	END IF;
	RETURN subscription;
END
$$;
COMMENT ON FUNCTION attach_scoring_node(name, text, name, name)
IS 'on a scoring node: subscribes to one shard''s publication (its slot made beforehand; no password in the connection string)';

-- ---------------------------------------------------------------------------
-- Results in one place.  On each node, the detector's scores also go to
-- anomaly_collect.scores_<node> (its destination, written in the same
-- transaction as anomaly.scores), published as anomaly_scores_<node>; the
-- collector subscribes to it into a partition of anomaly_collect.scores,
-- whose key is (node, id): each node numbers its own rows.

-- Schema anomaly_collect and the table `tab` in it (if it exists) must
-- belong to a superuser: the detector's owner writes into that table, and
-- another role's triggers there would run as that owner.
CREATE FUNCTION _check_collect_schema(tab text)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF NOT (SELECT r.rolsuper FROM pg_namespace n JOIN pg_roles r ON r.oid = n.nspowner
			WHERE n.nspname = 'anomaly_collect') THEN
		RAISE EXCEPTION 'schema anomaly_collect must belong to a superuser' USING ERRCODE = '42501';
	END IF;
	IF to_regclass(tab) IS NOT NULL AND NOT (SELECT r.rolsuper FROM pg_class c
			JOIN pg_roles r ON r.oid = c.relowner WHERE c.oid = to_regclass(tab)) THEN
		RAISE EXCEPTION 'table % must belong to a superuser', tab USING ERRCODE = '42501';
	END IF;
END
$$;
COMMENT ON FUNCTION _check_collect_schema(text) IS 'internal: schema anomaly_collect and a table in it belong to a superuser';
REVOKE ALL ON FUNCTION _check_collect_schema(text) FROM PUBLIC;

CREATE FUNCTION publish_scores(node name, detector text)
RETURNS regclass
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	tab text;
	owner regrole;
BEGIN
	IF node IS NULL OR detector IS NULL THEN
		RAISE EXCEPTION 'node and detector must not be null' USING ERRCODE = '22004';
	END IF;
	IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
		RAISE EXCEPTION 'must be superuser to publish a node''s scores' USING ERRCODE = '42501';
	END IF;
	IF node !~ '^[a-z][a-z0-9_]{0,39}$' THEN
		RAISE EXCEPTION 'node must be 1 to 40 lower-case letters, digits or _, starting with a letter'
			USING ERRCODE = '22023';
	END IF;
	SELECT d.owner INTO owner FROM @extschema@.detectors d WHERE d.name = detector;
	IF owner IS NULL THEN
		RAISE EXCEPTION 'detector "%" does not exist', detector USING ERRCODE = '42704';
	END IF;
	tab := format('anomaly_collect.%I', 'scores_' || node);
	CREATE SCHEMA IF NOT EXISTS anomaly_collect;
	PERFORM @extschema@._check_collect_schema(tab);
	IF to_regclass(tab) IS NULL THEN
		EXECUTE format($t$CREATE TABLE %s (
			node text NOT NULL DEFAULT %L CHECK (node = %L),
			id bigint GENERATED ALWAYS AS IDENTITY,
			detector text NOT NULL, partition_key text, source_key jsonb,
			commit_lsn pg_lsn, commit_time timestamptz, rowtime timestamptz,
			features double precision[], anomaly_score double precision,
			anomaly_grade double precision, is_anomaly boolean,
			expected double precision[], explanation jsonb, scored_at timestamptz,
			PRIMARY KEY (node, id))$t$, tab, node, node);
		EXECUTE format('COMMENT ON TABLE %s IS %L', tab,
					   'scores of node ' || node || ', published to the collector (anomaly.publish_scores)');
		EXECUTE format('CREATE PUBLICATION %I FOR TABLE %s WITH (publish = %L)',
					   'anomaly_scores_' || node, tab, 'insert');
	END IF;
	EXECUTE format('GRANT USAGE ON SCHEMA anomaly_collect TO %I', owner::text);
	EXECUTE format('GRANT INSERT ON %s TO %I', tab, owner::text);
	PERFORM @extschema@.alter_detector(detector,
		options => jsonb_build_object('destination', tab));
	RETURN tab::regclass;
END
$$;
COMMENT ON FUNCTION publish_scores(name, text)
IS 'on a scoring node: the detector''s scores also go to anomaly_collect.scores_<node>, published as anomaly_scores_<node>';

CREATE FUNCTION collect_scores(node name, conninfo text, slot_name name DEFAULT NULL)
RETURNS name
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	sub name;
BEGIN
	IF node IS NULL OR conninfo IS NULL THEN
		RAISE EXCEPTION 'node and conninfo must not be null' USING ERRCODE = '22004';
	END IF;
	IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
		RAISE EXCEPTION 'must be superuser to collect a node''s scores' USING ERRCODE = '42501',
			DETAIL = 'PostgreSQL 15 lets only superusers create subscriptions.';
	END IF;
	IF node !~ '^[a-z][a-z0-9_]{0,39}$' THEN
		RAISE EXCEPTION 'node must be 1 to 40 lower-case letters, digits or _, starting with a letter'
			USING ERRCODE = '22023';
	END IF;
	IF conninfo ~* '(^|[\s?&])(ssl)?password\s*=' OR conninfo ~* '^postgres(ql)?://[^/@]*:[^/@]*@' THEN
		RAISE EXCEPTION 'the connection string must not contain a password' USING ERRCODE = '22023',
			HINT = 'Put it in the server''s ~/.pgpass, or name a file with passfile=, or use certificates.';
	END IF;
	CREATE SCHEMA IF NOT EXISTS anomaly_collect;
	PERFORM @extschema@._check_collect_schema('anomaly_collect.scores');
	CREATE TABLE IF NOT EXISTS anomaly_collect.scores (
		node text NOT NULL,
		id bigint NOT NULL,
		detector text NOT NULL, partition_key text, source_key jsonb,
		commit_lsn pg_lsn, commit_time timestamptz, rowtime timestamptz,
		features double precision[], anomaly_score double precision,
		anomaly_grade double precision, is_anomaly boolean,
		expected double precision[], explanation jsonb, scored_at timestamptz,
		PRIMARY KEY (node, id)) PARTITION BY LIST (node);
	EXECUTE format('CREATE TABLE %s PARTITION OF anomaly_collect.scores FOR VALUES IN (%L)',
				   format('anomaly_collect.%I', 'scores_' || node), node);
	sub := 'anomaly_collect_' || node;
	EXECUTE format('CREATE SUBSCRIPTION %I CONNECTION %L PUBLICATION %I'
				   ' WITH (create_slot = false, slot_name = %L, copy_data = true)',
				   sub, conninfo, 'anomaly_scores_' || node,
				   coalesce(slot_name, ('anomaly_scores_' || node)::name));
	RETURN sub;
END
$$;
COMMENT ON FUNCTION collect_scores(name, text, name)
IS 'on the collector: subscribes to a node''s published scores, into a partition of anomaly_collect.scores';

REVOKE ALL ON FUNCTION create_shard_publications(regclass, name, integer, name, boolean, text),
	attach_scoring_node(name, text, name, name), publish_scores(name, text),
	collect_scores(name, text, name) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION create_shard_publications(regclass, name, integer, name, boolean, text)
	TO anomaly_admin;

-- ---------------------------------------------------------------------------
-- A detector's models as values (src/detect/models.c): a key that moves to
-- another node takes its model along.

CREATE FUNCTION export_detector_models(detector text)
RETURNS TABLE (partition_key text, model rcf, points bigint)
AS 'MODULE_PATHNAME', 'anomaly_export_detector_models'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION export_detector_models(text)
IS 'every partition key''s model (anomaly.rcf) of a detector as of its last round';

CREATE FUNCTION import_detector_models(detector text, partition_keys text[], models rcf[],
									   replace boolean DEFAULT false)
RETURNS bigint
AS 'MODULE_PATHNAME', 'anomaly_import_detector_models'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION import_detector_models(text, text[], rcf[], boolean)
IS 'seeds a detector''s partition keys with models (from export_detector_models): their scores continue from them';

REVOKE ALL ON FUNCTION export_detector_models(text),
	import_detector_models(text, text[], rcf[], boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION export_detector_models(text),
	import_detector_models(text, text[], rcf[], boolean) TO anomaly_admin;
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
	last_late_at timestamptz
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
	PRIMARY KEY (detector_id, seq)
);
CREATE INDEX detector_window_rows_time_idx ON detector_window_rows (detector_id, rowtime);
COMMENT ON TABLE detector_window_rows IS 'rows of windowed detectors in windows not yet scored';

SELECT pg_catalog.pg_extension_config_dump('detector_windows', '');
SELECT pg_catalog.pg_extension_config_dump('detector_window_rows', '');
REVOKE ALL ON detector_windows, detector_window_rows FROM PUBLIC;

-- detector_status gains the windows column (at its end).
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

-- Seeding: a detector's forest for one partition key from a stored model
-- (rcf_train's output), so that the key starts warm (src/detect/seed.c).
CREATE FUNCTION seed_detector(detector text, partition_key text, model rcf)
RETURNS bigint
AS 'MODULE_PATHNAME', 'anomaly_seed_detector'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION seed_detector(text, text, rcf)
IS 'replaces the forest of one partition key (NULL: the NULL key) of a detector by a model with its parameters; returns the points the model learned';
REVOKE ALL ON FUNCTION seed_detector(text, text, rcf) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION seed_detector(text, text, rcf) TO anomaly_admin;
