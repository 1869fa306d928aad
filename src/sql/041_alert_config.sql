-- ---------------------------------------------------------------------------
-- Configuration checks

-- Raises an error when a config key looks like it holds a secret.
CREATE OR REPLACE FUNCTION _reject_secret_keys(config jsonb, what text)
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
CREATE OR REPLACE FUNCTION _a(kind text)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT CASE WHEN kind ~ '^[aeiou]' THEN 'an ' ELSE 'a ' END || kind
$$;

-- Raises an error unless value is a JSON string (when present).
CREATE OR REPLACE FUNCTION _config_text(config jsonb, key text, required boolean, kind text)
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
CREATE OR REPLACE FUNCTION _config_whole(config jsonb, key text, lo integer, hi integer, unit text)
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
CREATE OR REPLACE FUNCTION _check_url(url text, schemes text[], key text, kind text)
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

	-- within float8's range and the sender's: the sender reads it for every
	-- destination in one statement (src/alert/deliver.c), where 1e400 failed
	-- every admin's deliveries
	IF config ? 'rate_limit' THEN
		IF jsonb_typeof(config -> 'rate_limit') <> 'number'
			OR NOT (config ->> 'rate_limit')::numeric BETWEEN 0.000001 AND 1000000 THEN
			RAISE EXCEPTION '"rate_limit" must be a number from 0.000001 to 1000000 (notifications per second)'
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
			-- by its host, whatever its case, port or final dot, also as a webhook
			IF lower(substring(v FROM '^[a-z]+://([^/?#:]*)')) ~ '^hooks\.slack\.com\.?$' THEN
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

-- Raises unless an alert object (what: 'destination', 'alert rule') exists
-- (owner is its owner, NULL when none was found) and caller owns it (or is a
-- superuser).
CREATE OR REPLACE FUNCTION _check_owner(caller oid, what text, name text, owner regrole)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, anomaly, pg_temp
AS $$
BEGIN
	IF owner IS NULL THEN
		RAISE EXCEPTION '% "%" does not exist', what, name
			USING ERRCODE = 'undefined_object';
	END IF;
	IF NOT anomaly._owns(caller, owner) THEN
		RAISE EXCEPTION 'must be owner of % "%"', what, name
			USING ERRCODE = 'insufficient_privilege';
	END IF;
END
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
	PERFORM anomaly._check_owner(caller, 'destination', name, d.owner);
	IF bindings THEN
		PERFORM anomaly._check_bindings(d.kind, d.config);
	END IF;
	RETURN d.kind;
END
$$;

