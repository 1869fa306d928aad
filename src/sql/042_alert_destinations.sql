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
	-- The dead letters of a dropped destination of the same name are not
	-- this one's (the policy own_dead_letters: those queued since
	-- created_at): created_at goes past them.  now() alone may be older (a
	-- transaction begun before that drop); read after the insert, which
	-- waited for the drop to commit.
	UPDATE anomaly.destinations x
	SET created_at = l.after
	FROM (SELECT max(d.created_at) + interval '1 microsecond' AS after
		  FROM anomaly.dead_letters d WHERE d.destination = _create_destination.name) l
	WHERE x.name = _create_destination.name AND l.after > x.created_at;
	-- A new destination starts fresh: the fair claim takes a destination
	-- whose last outcome was an error for one that fails (deliver.c), and
	-- delivery_status shows the counters.  Those of a dropped destination
	-- of the same name go (the drop deletes them, but one left behind, as
	-- a probe's outcome recorded during the drop wrote before 0.2.0, made
	-- this one start failing, with its predecessor's totals).
	DELETE FROM anomaly.delivery_counters c WHERE c.destination = _create_destination.name;
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
	PERFORM anomaly._check_owner(caller, 'destination', name, d.owner);
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
	PERFORM anomaly._check_owner(caller, 'destination', name, o);
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

