-- Alerts: destinations, alert rules and their episodes, the outbox, dead
-- letters, and delivery counters.  Delivery itself is C (deliver(), the
-- sender worker); everything a transaction writes here is written in that
-- transaction, so an alert is never lost once its cause has committed.
--
-- Nothing in these tables is a secret: destinations name credentials, whose
-- values live in superuser-only settings or the server's environment.
--
-- Who runs what (see docs/alerts.md, "Security"): the management functions
-- are LANGUAGE C entry points (anomaly_alert_entry, src/alert/privs.c) that
-- note their caller and run the internal function _<name>(caller, ...) as
-- the extension's owner; only the owner may execute the internal ones.
-- An admin owns the destinations and rules they create and sees only
-- those, with their episodes, outbox rows and dead letters (row level
-- security; superusers see everything).

-- Where notifications go.  config is checked per kind by _check_config().
CREATE TABLE destinations (
	name text PRIMARY KEY
		CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$'),
	kind text NOT NULL
		CHECK (kind IN ('sns', 'webhook', 'slack', 'email', 'notify')),
	config jsonb NOT NULL,
	enabled boolean NOT NULL DEFAULT true,
	created_at timestamptz NOT NULL DEFAULT now(),
	created_by name NOT NULL DEFAULT session_user,
	owner regrole NOT NULL DEFAULT pg_catalog.to_regrole(current_user)	-- who may use, change and see it
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
	owner regrole NOT NULL DEFAULT pg_catalog.to_regrole(current_user),	-- who may drop and see it
	-- message templates (src/alert/template.h); NULL: the default text
	subject_template text,
	body_template text,
	templates jsonb NOT NULL DEFAULT '{}',	-- per kind, over the two above
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
	last_error text				-- its class; details in delivery_errors
);
CREATE INDEX outbox_due_idx ON outbox (next_attempt_at, id);
-- a destination's due rows in order: the sender's fair claim (deliver.c)
CREATE INDEX outbox_destination_idx ON outbox (destination, next_attempt_at, id);
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
	error text NOT NULL			-- its class; details in delivery_errors
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

-- The full text of delivery errors (response bodies, addresses, libcurl's
-- messages), by outbox id: for superusers only.  What a destination's
-- server answers is not for the admin who pointed a destination at it.
CREATE TABLE delivery_errors (
	outbox_id bigint PRIMARY KEY,
	destination text NOT NULL,
	at timestamptz NOT NULL DEFAULT now(),
	detail text NOT NULL
);
COMMENT ON TABLE delivery_errors IS 'full delivery errors (response bodies, addresses) by outbox id: superusers only';

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
