-- ---------------------------------------------------------------------------
-- The payload (version 1) and the outbox

-- Shrinks a JSON object below max_bytes (as text) while keeping it valid
-- JSON: the largest values are cut into strings and listed in "truncated".
CREATE OR REPLACE FUNCTION _fit_json(payload jsonb, max_bytes integer)
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
CREATE OR REPLACE FUNCTION _fingerprint(VARIADIC parts text[])
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT left(encode(sha256(convert_to(array_to_string(parts, chr(31), ''), 'UTF8')), 'hex'), 32)
$$;

-- Serializes the evaluations of one alert episode (by its fingerprint) until
-- the transaction ends, on an advisory lock tag that no SQL function can take
-- (src/alert/episode_lock.c): pg_advisory_xact_lock on the fingerprint let any
-- role that worked it out stall a detector.
CREATE OR REPLACE FUNCTION _lock_episode(fingerprint text)
RETURNS void
AS 'MODULE_PATHNAME', 'anomaly_alert_lock_episode'
LANGUAGE C VOLATILE STRICT;

-- Queues one notification; returns its outbox id.  Wakes the sender at commit.
-- The payload is cut to 1 MB (its largest values first, listed in
-- "truncated"): the sender, a superuser's worker, holds a batch of them at
-- once (anomaly.sender_batch), and one of 200 MB (a send_alert body, a row
-- under alert_trigger) took it 1.2 GB.
CREATE OR REPLACE FUNCTION _enqueue(destination text, subject text, payload jsonb, dedup_id text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, anomaly, pg_temp
AS $$
DECLARE
	id bigint;
BEGIN
	INSERT INTO anomaly.outbox (destination, subject, payload, dedup_id)
	VALUES (destination, left(subject, 1000), anomaly._fit_json(payload, 1048576), dedup_id)
	RETURNING outbox.id INTO id;
	PERFORM anomaly._wake_sender();
	RETURN id;
END
$$;

-- Checks that a destination exists and is usable for sending; returns its kind.
CREATE OR REPLACE FUNCTION _destination_kind(name text)
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
-- what prints the statements run as the owner, how they read, how numbers,
-- times and intervals are computed and written (src/pinned.c)
SET debug_print_parse = off SET debug_print_rewritten = off SET debug_print_plan = off
SET standard_conforming_strings = on SET extra_float_digits = 1
SET TimeZone = 'UTC' SET DateStyle = 'ISO, YMD' SET IntervalStyle = 'postgres'
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

