-- Alerts: destinations and their checks, send_alert, the trigger function,
-- alert rules and episodes, the outbox, deliver(), dead letters and replay,
-- the payload format, and privileges.  Delivery here uses NOTIFY and a
-- closed local port only; real HTTP, SNS and SMTP delivery is tested by
-- test/t/*alert*.pl against local stand-ins.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS anomaly;
RESET client_min_messages;
\set SHOW_CONTEXT never

-- Credentials go only where a superuser bound them, and deliveries reach
-- loopback only because it is allowed (reloaded settings: wait for them).
ALTER SYSTEM SET anomaly.credential_bindings = 'hook_secret=http://127.0.0.1:1/hook; smtp_password=smtp://127.0.0.1:1; slack_url=https://hooks.slack.com/services/';
\getenv abs_srcdir PG_ABS_SRCDIR
\set allow_loopback :abs_srcdir '/sql/include/allow_loopback.sql'
\i :allow_loopback
SELECT current_setting('anomaly.allowed_destination_hosts') AS allowed;

-- Destinations of every kind.
SELECT anomaly.create_destination('ops-sns', 'sns', '{"topic_arn": "arn:aws:sns:eu-west-1:123456789012:ops"}');
SELECT anomaly.create_destination('ops-fifo', 'sns', '{"topic_arn": "arn:aws:sns:eu-west-1:123456789012:ops.fifo", "message_group_id": "rides"}');
SELECT anomaly.create_destination('hook', 'webhook', '{"url": "http://127.0.0.1:1/hook", "credential": "hook_secret", "headers": {"X-Team": "ops"}}');
SELECT anomaly.create_destination('chat', 'slack', '{"url_credential": "slack_url", "channel": "#ops"}');
SELECT anomaly.create_destination('mail', 'email', '{"url": "smtp://127.0.0.1:1", "from": "anomaly@example.com", "to": ["ops@example.com", "oncall@example.com"], "starttls": "required", "username": "anomaly", "credential": "smtp_password"}');
SELECT anomaly.create_destination('chan', 'notify', '{"channel": "anomaly_alerts", "rate_limit": 1000}');
SELECT name, kind, enabled FROM anomaly.destinations ORDER BY name;

-- Bad destinations: each is refused with a clear error.
SELECT anomaly.create_destination('hook', 'webhook', '{"url": "http://127.0.0.1:1/"}');
SELECT anomaly.create_destination('bad name!', 'webhook', '{"url": "http://127.0.0.1:1/"}');
SELECT anomaly.create_destination('x', 'pager', '{}');
SELECT anomaly.create_destination('x', NULL, '{}');
SELECT anomaly.create_destination('x', 'webhook', '[]');
SELECT anomaly.create_destination('x', 'webhook', '{}');
SELECT anomaly.create_destination('x', 'webhook', '{"url": "ftp://example.com/"}');
SELECT anomaly.create_destination('x', 'webhook', '{"url": "https://user:pw@example.com/"}');
SELECT anomaly.create_destination('x', 'webhook', '{"url": "https://example.com/", "secret": "abc"}');
SELECT anomaly.create_destination('x', 'webhook', '{"url": "https://example.com/", "api_key": "abc"}');
SELECT anomaly.create_destination('x', 'email', '{"url": "smtp://h", "from": "a@b", "to": ["c@d"], "password": "pw"}');
SELECT anomaly.create_destination('x', 'webhook', '{"url": "https://example.com/", "headers": {"Authorization": "Bearer abc"}}');
SELECT anomaly.create_destination('x', 'webhook', '{"url": "https://example.com/", "headers": {"X-Api-Key": "abc"}}');
SELECT anomaly.create_destination('x', 'webhook', '{"url": "https://example.com/", "headers": {"X-Ok": "a\nb"}}');
SELECT anomaly.create_destination('x', 'webhook', '{"url": "https://example.com/", "headers": {"Host": "evil"}}');
SELECT anomaly.create_destination('x', 'webhook', '{"url": "https://example.com/", "colour": "red"}');
SELECT anomaly.create_destination('x', 'webhook', '{"url": "https://example.com/", "url_credential": "u"}');
SELECT anomaly.create_destination('x', 'webhook', '{"url": "https://example.com/", "credential": "bad-name"}');
SELECT anomaly.create_destination('x', 'webhook', '{"url": "https://example.com/", "rate_limit": 0}');
SELECT anomaly.create_destination('x', 'webhook', '{"url": "https://example.com/", "timeout_ms": 5}');
SELECT anomaly.create_destination('x', 'webhook', '{"url": "https://example.com/", "max_attempts": 0}');
SELECT anomaly.create_destination('x', 'webhook', '{"url": "https://example.com/", "max_attempts": "3"}');
SELECT anomaly.create_destination('x', 'slack', '{"url": "https://hooks.slack.com/services/T0/B0/XYZ"}');
-- the host of a Slack webhook whatever its port, final dot or case, and as a webhook
SELECT anomaly.create_destination('x', 'slack', '{"url": "https://hooks.slack.com:443/services/T0/B0/XYZ"}');
SELECT anomaly.create_destination('x', 'slack', '{"url": "https://hooks.slack.com./services/T0/B0/XYZ"}');
SELECT anomaly.create_destination('x', 'slack', '{"url": "https://HOOKS.Slack.COM/services/T0/B0/XYZ"}');
SELECT anomaly.create_destination('x', 'webhook', '{"url": "https://hooks.slack.com/services/T0/B0/XYZ"}');
SELECT anomaly.create_destination('x', 'sns', '{"topic_arn": "arn:aws:sqs:eu-west-1:123456789012:q"}');
SELECT anomaly.create_destination('x', 'sns', '{"topic_arn": "arn:aws:sns:eu-west-1:123456789012:ops", "message_group_id": "g"}');
SELECT anomaly.create_destination('x', 'sns', '{"topic_arn": "arn:aws:sns:eu-west-1:123456789012:ops", "aws_secret_access_key": "k"}');
SELECT anomaly.create_destination('x', 'email', '{"url": "smtp://h", "from": "a@b", "to": []}');
SELECT anomaly.create_destination('x', 'email', '{"url": "smtp://h", "from": "a@b", "to": ["not an address"]}');
SELECT anomaly.create_destination('x', 'email', '{"url": "https://h", "from": "a@b", "to": ["c@d"]}');
SELECT anomaly.create_destination('x', 'email', '{"url": "smtp://h", "from": "a@b", "to": ["c@d"], "starttls": "maybe"}');
SELECT anomaly.create_destination('x', 'notify', '{}');
SELECT anomaly.create_destination('x', 'notify', jsonb_build_object('channel', repeat('c', 64)));
SELECT count(*) AS destinations FROM anomaly.destinations;

-- alter_destination re-checks the config.
SELECT anomaly.alter_destination('hook', config => '{"url": "http://127.0.0.1:1/hook", "token": "t"}');
SELECT anomaly.alter_destination('nope', enabled => false);
SELECT anomaly.alter_destination('chat', enabled => false);
SELECT name, enabled FROM anomaly.destinations WHERE name = 'chat';
SELECT anomaly.alter_destination('chat', enabled => true);

-- send_alert queues one notification with the version 1 payload.
SELECT anomaly.send_alert('chan', 'disk almost full', '{"severity": "critical", "host": "db1"}') > 0 AS queued;
SELECT destination, subject, attempts, dedup_id IS NULL AS default_dedup,
       payload - 'starts_at' - 'created_at' AS payload
FROM anomaly.outbox;
SELECT anomaly.send_alert('nope', 'x', '{}');
SELECT anomaly.send_alert('chan', '', '{}');

-- The payload keys shared by every kind.
SELECT array_agg(k ORDER BY k) AS payload_keys
FROM anomaly.outbox, jsonb_object_keys(payload) k;

-- Delivery of NOTIFY destinations: the outbox row goes, counters move.
SELECT anomaly.deliver(10) AS delivered;
SELECT count(*) AS queued FROM anomaly.outbox;
SELECT destination, kind, queued, sent, retried, dead, last_success_at IS NOT NULL AS succeeded
FROM anomaly.delivery_status WHERE destination = 'chan';
SELECT anomaly.deliver(0);

-- The trigger function: any table raises alerts.
CREATE TABLE orders (id int PRIMARY KEY, amount numeric);
CREATE TRIGGER big_orders AFTER INSERT ON orders FOR EACH ROW
	WHEN (NEW.amount > 1000)
	EXECUTE FUNCTION anomaly.alert_trigger('chan', 'large order', 'warning');
INSERT INTO orders VALUES (1, 10), (2, 5000), (3, 20000);
SELECT subject, payload ->> 'source' AS source, payload -> 'key' AS key,
       payload -> 'details' AS details, payload ->> 'operation' AS op
FROM anomaly.outbox ORDER BY id;
-- a BEFORE trigger keeps the row
CREATE TRIGGER audit_before BEFORE UPDATE ON orders FOR EACH ROW
	EXECUTE FUNCTION anomaly.alert_trigger('chan');
UPDATE orders SET amount = 6000 WHERE id = 2;
SELECT * FROM orders ORDER BY id;
SELECT subject FROM anomaly.outbox ORDER BY id DESC LIMIT 1;
CREATE TRIGGER bad_stmt AFTER DELETE ON orders FOR EACH STATEMENT
	EXECUTE FUNCTION anomaly.alert_trigger('chan');
DELETE FROM orders WHERE id = 1;
CREATE TRIGGER bad_dest AFTER DELETE ON orders FOR EACH ROW
	EXECUTE FUNCTION anomaly.alert_trigger('nope');
DELETE FROM orders WHERE id = 1;
DROP TRIGGER bad_stmt ON orders;
DROP TRIGGER bad_dest ON orders;
SELECT anomaly.deliver(100) AS delivered;

-- Alert rules: checks.
SELECT anomaly.create_alert_rule('rides-high', detector => 'rides', destination => 'chan',
	min_grade => 0.5, for_duration => '0', cooldown => '10 minutes');
SELECT anomaly.create_alert_rule('rides-high', detector => 'rides', destination => 'chan', min_grade => 0.5);
SELECT anomaly.create_alert_rule('r', detector => 'rides', destination => 'chan');
SELECT anomaly.create_alert_rule('r', detector => 'rides', min_grade => 0.5);
SELECT anomaly.create_alert_rule('r', detector => 'rides', destination => 'nope', min_grade => 0.5);
SELECT anomaly.create_alert_rule('r', detector => 'rides', destination => 'chan', min_grade => 1.5);
SELECT anomaly.create_alert_rule('r', detector => 'rides', destination => 'chan', min_score => -1);
SELECT anomaly.create_alert_rule('r', detector => 'rides', destination => 'chan', min_grade => 0.5, severity => 'urgent');
SELECT anomaly.create_alert_rule('r', detector => 'rides', destination => 'chan', min_grade => 0.5, group_by => '{colour}');
SELECT anomaly.create_alert_rule('r', detector => 'rides', destination => 'chan', min_grade => 0.5, cooldown => '-1 minute');
SELECT anomaly.create_alert_rule('bad rule', detector => 'rides', destination => 'chan', min_grade => 0.5);
SELECT anomaly.create_alert_rule('rides-sustained', detector => 'rides', destinations => '{chan,hook}',
	min_score => 2.0, for_duration => '2 minutes', group_by => '{}', severity => 'critical',
	send_resolved => false);
SELECT name, detector, destinations, min_grade, min_score, for_duration, cooldown, group_by,
       severity, send_resolved
FROM anomaly.alert_rules ORDER BY name;

-- Rule evaluation on insert into anomaly.scores, in the same transaction.
DELETE FROM anomaly.outbox;
CREATE TEMP TABLE t0 AS SELECT '2024-01-01 00:00:00+00'::timestamptz AS t0;
INSERT INTO anomaly.scores (detector, partition_key, commit_time, anomaly_score, anomaly_grade)
SELECT 'rides', k, t0 + s * interval '1 minute', score, grade
FROM t0, (VALUES (0, 'a', 1.0, 0.0), (1, 'a', 3.0, 0.9), (1, 'b', 2.5, 0.6),
				 (2, 'a', 3.5, 0.95), (3, 'a', 1.0, 0.0), (4, 'a', 3.2, 0.8)) v(s, k, score, grade);
SELECT rule, key, status, notified, peak_score, fired_at - started_at AS waited
FROM anomaly.alerts ORDER BY rule, episode;
SELECT destination, subject, payload ->> 'status' AS status, payload ->> 'score' AS score,
       payload ->> 'grade' AS grade, payload -> 'key' AS key, payload ->> 'episode' IS NOT NULL AS has_episode,
       dedup_id ~ '^anomaly-[0-9a-f]{32}-[0-9]+-(firing|resolved)$' AS dedup_ok
FROM anomaly.outbox ORDER BY id;
-- The fingerprint is stable: both episodes of rides-high for key a share it.
SELECT rule, key, count(*) AS episodes, count(DISTINCT fingerprint) AS fingerprints
FROM anomaly.alerts GROUP BY rule, key ORDER BY rule, key::text;
-- repeat_interval: a firing episode reminds every 5 minutes of anomalous
-- scores (event time), with its own dedup ids; a rule without it stays quiet.
SELECT anomaly.create_alert_rule('r', detector => 'rides', destination => 'chan', min_grade => 0.5, repeat_interval => '0');
SELECT anomaly.create_alert_rule('rides-remind', detector => 'pump', destination => 'chan',
	min_grade => 0.5, repeat_interval => '5 minutes');
DELETE FROM anomaly.outbox;
INSERT INTO anomaly.scores (detector, partition_key, commit_time, anomaly_score, anomaly_grade)
SELECT 'pump', 'p', t0 + s * interval '1 minute', 3.0, 0.9
FROM t0, generate_series(0, 12) s;
INSERT INTO anomaly.scores (detector, partition_key, commit_time, anomaly_score, anomaly_grade)
SELECT 'pump', 'p', t0 + interval '13 minutes', 1.0, 0.0 FROM t0;
SELECT payload ->> 'status' AS status, payload ->> 'repeat' AS repeat,
       (payload ->> 'commit_time')::timestamptz - t0 AS at,
       substring(dedup_id from '-[0-9]+-(firing.*|resolved)$') AS dedup_tail
FROM anomaly.outbox, t0 ORDER BY id;
SELECT status, notifications, last_notified_at - fired_at AS last_reminder
FROM anomaly.alerts WHERE rule = 'rides-remind';
SELECT anomaly.drop_alert_rule('rides-remind');
-- Scores of another detector leave the rules alone.
INSERT INTO anomaly.scores (detector, partition_key, anomaly_score, anomaly_grade) VALUES ('other', 'a', 9, 1);
SELECT count(*) AS episodes FROM anomaly.alert_episodes;
-- A rule is dropped with its episodes; a destination in use cannot be dropped.
SELECT anomaly.drop_destination('chan');
SELECT anomaly.drop_alert_rule('rides-sustained');
SELECT anomaly.drop_alert_rule('rides-sustained');
SELECT count(*) AS episodes FROM anomaly.alert_episodes;

-- A transient failure is retried with backoff; out of attempts it becomes a
-- dead letter with its error; replay puts it back with the same dedup id.
DELETE FROM anomaly.outbox;
SET anomaly.retry_base = '1h';
SET anomaly.connect_timeout = '2s';
SELECT anomaly.send_alert('hook', 'to a closed port') > 0 AS queued;
SELECT anomaly.deliver() AS delivered;
SELECT attempts, next_attempt_at > now() AS later, last_error
FROM anomaly.outbox;
SELECT anomaly.deliver() AS delivered_when_not_due;
UPDATE anomaly.outbox SET next_attempt_at = now();
SET anomaly.max_attempts = 2;
SELECT anomaly.deliver() AS delivered;
SELECT count(*) AS queued FROM anomaly.outbox;
SELECT destination, subject, attempts, dedup_id ~ '^anomaly-[0-9]+$' AS dedup_ok,
       error
FROM anomaly.dead_letters;
SELECT destination, queued, retried, dead, dead_letters, last_error IS NOT NULL AS has_error
FROM anomaly.delivery_status WHERE destination = 'hook';
CREATE TEMP TABLE dl AS SELECT dedup_id FROM anomaly.dead_letters;
SELECT anomaly.replay_dead_letters(destination => 'hook') AS replayed;
SELECT o.attempts, o.dedup_id = dl.dedup_id AS same_dedup FROM anomaly.outbox o, dl;
SELECT count(*) AS dead_letters FROM anomaly.dead_letters;
SELECT anomaly.replay_dead_letters(destination => 'nope');
RESET anomaly.max_attempts;
RESET anomaly.retry_base;

-- A permanent failure goes straight to the dead letters.
SELECT anomaly.create_destination('no-proto', 'webhook', '{"url": "http://127.0.0.1:1/x"}');
UPDATE anomaly.destinations SET config = '{"url": "http://127.0.0.1:99999/x"}' WHERE name = 'no-proto';
SELECT anomaly.send_alert('no-proto', 'never') > 0 AS queued;
SELECT anomaly.deliver() AS delivered;
SELECT destination, attempts, error FROM anomaly.dead_letters WHERE destination = 'no-proto';

-- A disabled destination's notifications wait.
SELECT anomaly.alter_destination('chan', enabled => false);
SELECT anomaly.send_alert('chan', 'later') > 0 AS queued;
SELECT anomaly.deliver() AS delivered;
SELECT count(*) AS waiting FROM anomaly.outbox WHERE destination = 'chan';
SELECT anomaly.alter_destination('chan', enabled => true);
SELECT anomaly.deliver() AS delivered;

-- test_destination sends at once and reports; it leaves nothing behind.
SELECT * FROM anomaly.test_destination('chan');
SELECT ok, detail FROM anomaly.test_destination('hook');
SELECT anomaly.create_destination('closed', 'webhook', '{"url": "http://127.0.0.1:1/"}');
SELECT ok, detail ~ '^Couldn''t connect to server' AS refused FROM anomaly.test_destination('closed');
SELECT ok, detail FROM anomaly.test_destination('chat');
SELECT * FROM anomaly.test_destination('nope');
SELECT count(*) AS test_rows FROM anomaly.outbox WHERE subject = 'anomaly test notification';

-- drop_destination: queued notifications block it unless force.
SELECT anomaly.drop_destination('hook');
SELECT anomaly.drop_destination('hook', force => true);
SELECT error FROM anomaly.dead_letters WHERE destination = 'hook' ORDER BY id DESC LIMIT 1;
SELECT anomaly.drop_destination('hook');

-- Rendering per kind.
SELECT anomaly._sns_subject(E'  [FIRING]\tr1: rides\nzone=a ' || repeat('x', 200)) AS subject,
       length(anomaly._sns_subject(repeat('x', 200))) AS len,
       anomaly._sns_subject(E'\n\n') AS empty;
SELECT line FROM regexp_split_to_table(
	anomaly._render('email', '{"from": "a@example.com", "to": ["b@example.com", "c@example.com"], "subject_prefix": "[anomaly]"}',
					'héllo', '{"version": 1, "status": "firing", "fingerprint": "f1", "score": 2.5}', 'anomaly-9'),
	E'\r\n') AS line
WHERE line ~ '^(From|To|Subject|Message-ID|Content-Type|X-Anomaly-Fingerprint):' OR line LIKE 'FIRING%';
SELECT anomaly._render('slack', '{"channel": "#ops"}', 'cpu high', '{"status": "resolved", "severity": "error", "score": 1.5}', 'd')::jsonb - 'blocks' AS slack;

-- Truncation keeps the JSON valid and under the limit.
SELECT octet_length(f::text) <= 300 AS fits, f ->> 'alert' AS alert, f -> 'truncated' AS truncated,
       jsonb_typeof(f -> 'details') AS details
FROM anomaly._fit_json(jsonb_build_object('version', 1, 'alert', 'a', 'details',
	jsonb_build_object('blob', repeat('é"\', 500)), 'explanation', repeat('z', 100)), 300) f;
SELECT octet_length(anomaly._fit_json(jsonb_build_object('x', repeat('y', 300000)), 262144)::text) <= 262144 AS fits;
SELECT anomaly._fit_json('{"a": 1}', 10) AS small;

-- Privileges: destinations are for superusers and anomaly_admin only;
-- secrets are not visible to other roles.
CREATE ROLE regress_alert_plain;
CREATE ROLE regress_alert_admin IN ROLE anomaly_admin;
GRANT USAGE ON SCHEMA anomaly TO regress_alert_plain;
SET ROLE regress_alert_plain;
SELECT anomaly.deliver();
SELECT anomaly.create_destination('x', 'notify', '{"channel": "c"}');
SELECT anomaly.send_alert('chan', 'x');
SELECT count(*) FROM anomaly.outbox;
SELECT count(*) FROM anomaly.destinations;
SHOW anomaly.credentials;
SHOW anomaly.aws_secret_access_key;
SELECT current_setting('anomaly.aws_session_token');
SELECT count(*) AS visible FROM pg_settings WHERE name IN ('anomaly.credentials', 'anomaly.aws_access_key_id', 'anomaly.aws_secret_access_key', 'anomaly.aws_session_token');
SET anomaly.credentials = 'x=y';
RESET ROLE;
SET anomaly.credentials = 'x=y';
SET ROLE regress_alert_admin;
SELECT anomaly.create_destination('admin-made', 'notify', '{"channel": "c"}');
SELECT anomaly.send_alert('admin-made', 'from the admin role') > 0 AS queued;
SELECT count(*) AS queued FROM anomaly.outbox WHERE destination = 'admin-made';
SELECT anomaly.drop_destination('admin-made', force => true);
INSERT INTO anomaly.outbox (destination, subject, payload) VALUES ('chan', 'x', '{}');
RESET ROLE;
SELECT count(*) AS visible FROM pg_settings WHERE name = 'anomaly.credentials';
-- The SECURITY DEFINER functions of the schema are few (the others run as
-- their caller and switch to the owner in C, src/alert/privs.c), and each
-- pins its search_path.
SELECT p.proname,
       coalesce(array_to_string(p.proconfig, ' '), '') LIKE '%search_path=pg_catalog%' AS pinned
FROM pg_proc p WHERE p.pronamespace = 'anomaly'::regnamespace AND p.prosecdef ORDER BY 1;
REVOKE USAGE ON SCHEMA anomaly FROM regress_alert_plain;
DROP ROLE regress_alert_plain;
DROP ROLE regress_alert_admin;

-- A round is shared between the destinations with due rows: a flood queued
-- first to one destination does not hold back another's notification (each
-- gets its share of the round first, the oldest rows of all fill the rest;
-- a destination's rows go in order).
DELETE FROM anomaly.outbox;
SELECT anomaly.create_destination('flood', 'notify', '{"channel": "flood"}');
SELECT anomaly.create_destination('quiet', 'notify', '{"channel": "quiet"}');
SELECT count(anomaly.send_alert('flood', 'flood ' || i)) AS queued FROM generate_series(1, 30) i;
SELECT anomaly.send_alert('quiet', 'the one that matters') > 0 AS queued;
SELECT anomaly.deliver(10) AS delivered;
SELECT destination, count(*) AS left, min(CASE WHEN subject LIKE 'flood %' THEN substr(subject, 7)::int END) AS oldest_left
FROM anomaly.outbox GROUP BY 1 ORDER BY 1;
-- alone, a destination takes the whole round
SELECT anomaly.deliver(10) AS delivered;
SELECT destination, count(*) AS left FROM anomaly.outbox GROUP BY 1 ORDER BY 1;
-- a disabled destination's rows are not due, and take no share
SELECT anomaly.alter_destination('flood', enabled => false);
SELECT anomaly.send_alert('quiet', 'another') > 0 AS queued;
SELECT anomaly.deliver(10) AS delivered;
SELECT destination, count(*) AS left FROM anomaly.outbox GROUP BY 1 ORDER BY 1;
SELECT anomaly.drop_destination('flood', force => true);
SELECT anomaly.drop_destination('quiet');
-- A destination whose last outcome was an error sends one row a round and
-- fills nothing: a silent endpoint's share would hold everyone's round for
-- as many timeouts.
SELECT anomaly.create_destination('down', 'webhook', '{"url": "http://127.0.0.1:1/down"}');
SELECT anomaly.create_destination('up', 'notify', '{"channel": "up"}');
SELECT count(anomaly.send_alert('down', 'down ' || i)) AS queued FROM generate_series(1, 6) i;
SELECT count(anomaly.send_alert('up', 'up ' || i)) AS queued FROM generate_series(1, 3) i;
SELECT anomaly.deliver(20) AS delivered;
SELECT destination, sent, retried FROM anomaly.delivery_counters
WHERE destination IN ('down', 'up') ORDER BY 1;
UPDATE anomaly.outbox SET next_attempt_at = now() - interval '1 second' WHERE destination = 'down';
SELECT count(anomaly.send_alert('up', 'up ' || i)) AS queued FROM generate_series(4, 5) i;
SELECT anomaly.deliver(20) AS delivered;
SELECT destination, sent, retried FROM anomaly.delivery_counters
WHERE destination IN ('down', 'up') ORDER BY 1;
SELECT attempts, count(*) FROM anomaly.outbox WHERE destination = 'down' GROUP BY 1 ORDER BY 1;
SELECT anomaly.drop_destination('down', force => true);
SELECT anomaly.drop_destination('up');
-- A destination made again under a dropped one's name starts fresh, not
-- failing, whatever counters its predecessor left behind (as a probe's
-- outcome recorded during the drop could): all three rows go in one round.
INSERT INTO anomaly.delivery_counters (destination, retried, last_error_at, last_error)
VALUES ('down', 7, now(), 'connection refused');
SELECT anomaly.create_destination('down', 'notify', '{"channel": "down"}');
SELECT retried, last_error FROM anomaly.delivery_status WHERE destination = 'down';
SELECT count(anomaly.send_alert('down', 'again ' || i)) AS queued FROM generate_series(1, 3) i;
SELECT anomaly.deliver(20) AS delivered;
SELECT destination, sent, retried FROM anomaly.delivery_counters WHERE destination = 'down';
SELECT anomaly.drop_destination('down');

DELETE FROM anomaly.outbox;
DROP TABLE orders;
ALTER SYSTEM RESET anomaly.credential_bindings;
ALTER SYSTEM RESET anomaly.allowed_destination_hosts;
SELECT pg_reload_conf();
