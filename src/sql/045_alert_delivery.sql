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
		-- the text's lines end in CR LF, whatever a row's value held: a lone
		-- CR (or LF) in DATA is against RFC 5321 (2.3.8), and a relay that
		-- takes CR . CR LF for the end of DATA would read what follows as
		-- commands (SMTP smuggling); CR LF . lines are escaped by curl
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
				 THEN regexp_replace(left(message, 1048576), E'\r\n|\r|\n', E'\r\n', 'g')
				 ELSE regexp_replace(summary, E'\r\n|\r|\n', E'\r\n', 'g') || E'\r\n\r\n' ||
					  regexp_replace(jsonb_pretty(anomaly._fit_json(payload, 1048576)), E'\r\n|\r|\n', E'\r\n', 'g')
			END, E'\r\n');
	END IF;
	RAISE EXCEPTION 'unknown destination kind "%"', kind;
END
$$;

-- The SNS Subject: printable, one line, under 100 characters.
CREATE OR REPLACE FUNCTION _sns_subject(subject text)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT coalesce(nullif(left(btrim(regexp_replace(regexp_replace(subject, '[\x00-\x1f\x7f]+', ' ', 'g'),
													 '^[^A-Za-z0-9[:punct:]]+', '')), 99), ''),
					'anomaly alert')
$$;

-- Records the outcome of a round: outcome is 'sent', 'retry', 'dead' or
-- 'defer' (rate limit) per id, error the class of a failure and detail its
-- full text (NULL: the class says it all), delay_ms the wait before the
-- next attempt.
--
-- The counters count the rows this statement found in the outbox and
-- changed, nothing else: a row of a destination dropped meanwhile (the
-- sender worker's probe of one is not locked while it runs: deliver.c)
-- waits for the drop, is then gone, and is not counted.  Counted from the
-- rows as the statement began, it wrote a counters row under the dropped
-- name, and a destination made again under that name started as failing.
-- Such a row's outcome is the truth about it, and its dead letter
-- ('destination dropped', written by the drop) is made to say it:
-- delivered, it is no dead letter; failed, the attempt is counted.
CREATE OR REPLACE FUNCTION _record(ids bigint[], outcomes text[], errors text[], details text[], delays integer[])
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, anomaly, pg_temp
AS $$
DECLARE
	gone_ids bigint[];
BEGIN
	WITH u AS (
		SELECT * FROM unnest(ids, outcomes, errors, delays) AS u(id, outcome, error, delay_ms)
	), retried AS (
		UPDATE anomaly.outbox o
		SET attempts = o.attempts + 1,
			next_attempt_at = now() + make_interval(secs => u.delay_ms / 1000.0),
			last_attempt_at = now(),
			last_error = u.error
		FROM u
		WHERE o.id = u.id AND u.outcome = 'retry'
		RETURNING o.id, o.destination, u.outcome, u.error
	), deferred AS (
		UPDATE anomaly.outbox o
		SET next_attempt_at = now() + make_interval(secs => u.delay_ms / 1000.0)
		FROM u
		WHERE o.id = u.id AND u.outcome = 'defer'
		RETURNING o.id, o.destination, u.outcome, u.error
	), dead AS (
		DELETE FROM anomaly.outbox o
		USING u
		WHERE o.id = u.id AND u.outcome = 'dead'
		RETURNING o.*, u.error AS final_error
	), buried AS (
		INSERT INTO anomaly.dead_letters (outbox_id, destination, subject, payload, dedup_id,
										  attempts, created_at, error)
		SELECT g.id, g.destination, g.subject, g.payload, coalesce(g.dedup_id, 'anomaly-' || g.id),
			   g.attempts + 1, g.created_at, coalesce(g.final_error, 'unknown error')
		FROM dead g
	), sent AS (
		DELETE FROM anomaly.outbox o
		USING u
		WHERE o.id = u.id AND u.outcome = 'sent'
		RETURNING o.id, o.destination, u.outcome, u.error
	), done AS (
		SELECT * FROM retried
		UNION ALL SELECT * FROM deferred
		UNION ALL SELECT g.id, g.destination, 'dead', g.final_error FROM dead g
		UNION ALL SELECT * FROM sent
	), counted AS (
		SELECT d.destination,
			   count(*) FILTER (WHERE d.outcome = 'sent') AS sent,
			   count(*) FILTER (WHERE d.outcome = 'retry') AS retried,
			   count(*) FILTER (WHERE d.outcome = 'dead') AS dead,
			   bool_or(d.outcome = 'sent') AS any_sent,
			   (array_agg(d.error ORDER BY d.id DESC) FILTER (WHERE d.error IS NOT NULL))[1] AS last_error
		FROM done d
		GROUP BY d.destination
	), counters AS (
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
			last_error = coalesce(excluded.last_error, c.last_error)
	)
	SELECT array_agg(u.id) INTO gone_ids
	FROM u
	WHERE u.outcome IN ('sent', 'retry', 'dead') AND u.id NOT IN (SELECT d.id FROM done d);

	-- rows that left the outbox meanwhile (rare: looked for only then)
	IF gone_ids IS NOT NULL THEN
		DELETE FROM anomaly.dead_letters d
		USING unnest(ids, outcomes) AS u(id, outcome)
		WHERE d.outbox_id = u.id AND u.id = ANY (gone_ids) AND u.outcome = 'sent'
		  AND d.error = 'destination dropped';
		UPDATE anomaly.dead_letters d
		SET attempts = d.attempts + 1
		FROM unnest(ids, outcomes) AS u(id, outcome)
		WHERE d.outbox_id = u.id AND u.id = ANY (gone_ids) AND u.outcome IN ('retry', 'dead')
		  AND d.error = 'destination dropped';
	END IF;

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
					  AND x.created_at <= d.created_at AND anomaly._owns(caller, x.owner))
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
						   WHERE x.name = d.destination AND x.created_at <= d.created_at
							 AND anomaly._owns(caller, x.owner)));
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

-- Wakes the sender worker when this transaction commits (no-op without it).
CREATE OR REPLACE FUNCTION _wake_sender()
RETURNS void
AS 'MODULE_PATHNAME', 'anomaly_alert_wake_sender'
LANGUAGE C VOLATILE;

-- One delivery round from SQL: sends up to max due notifications and
-- records the outcomes; returns how many were delivered.
CREATE OR REPLACE FUNCTION deliver(max integer DEFAULT 100)
RETURNS integer
AS 'MODULE_PATHNAME', 'anomaly_alert_deliver'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, anomaly, pg_temp
-- what prints the statements run as the owner, how they read, how numbers,
-- times and intervals are computed and written (src/pinned.c)
SET debug_print_parse = off SET debug_print_rewritten = off SET debug_print_plan = off
SET standard_conforming_strings = on SET extra_float_digits = 1
SET TimeZone = 'UTC' SET DateStyle = 'ISO, YMD' SET IntervalStyle = 'postgres';

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
LEFT JOIN LATERAL (SELECT count(*) AS dead_letters FROM anomaly.dead_letters x
				   WHERE x.destination = d.name AND x.created_at >= d.created_at) l ON true;
COMMENT ON VIEW delivery_status IS 'per destination: queued, oldest age, sent, retried, dead, last success and error, and why no sender worker serves this database (note)';

-- Open and recent alert episodes.
CREATE OR REPLACE VIEW alerts WITH (security_invoker = true) AS
SELECT e.id AS episode, e.rule, r.detector, e.group_key AS key, e.fingerprint, e.status,
	   e.started_at, e.fired_at, e.resolved_at, e.last_seen_at, e.notified,
	   e.notifications, e.last_notified_at, e.peak_score, e.peak_grade, r.severity
FROM anomaly.alert_episodes e JOIN anomaly.alert_rules r ON r.name = e.rule;
COMMENT ON VIEW alerts IS 'alert episodes with their rule';

REVOKE ALL ON delivery_status, alerts FROM PUBLIC;
GRANT SELECT ON delivery_status, alerts TO anomaly_admin;

