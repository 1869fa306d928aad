-- Alerts and hostile roles (issue 12): what an admin may do with another
-- admin's objects and what they see, the trigger function's casts, the
-- credential bindings, the destination allowance, the redaction oracle,
-- and the grants.  Delivery here never leaves this host: refused addresses
-- are refused before any connection; real delivery is tested by
-- test/t/06?_alert_*.pl.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS anomaly;
RESET client_min_messages;
\set SHOW_CONTEXT never

ALTER SYSTEM SET anomaly.credential_bindings = 'sec_hook=http://127.0.0.1:9/hooks/ https://alerts.example.com:8443/in; sec_url=https://hooks.example.com/';
ALTER SYSTEM SET anomaly.credentials = 'sec_hook=Sup3rS3cretHookValue; sec_url=https://evil.example.net/x';
\getenv abs_srcdir PG_ABS_SRCDIR
\set allow_loopback :abs_srcdir '/sql/include/allow_loopback.sql'
\i :allow_loopback
SELECT current_setting('anomaly.credential_bindings') <> '' AS bindings_loaded;

CREATE ROLE regress_sec_adm IN ROLE anomaly_admin;
CREATE ROLE regress_sec_adm2 IN ROLE anomaly_admin;
CREATE ROLE regress_sec_plain;
CREATE SCHEMA s_adm AUTHORIZATION regress_sec_adm;

-- Finding 5: a credential goes only where it is bound.
SELECT anomaly.create_destination('sec-a', 'webhook', '{"url": "http://127.0.0.1:9/hooks/a", "credential": "sec_hook"}');
SELECT anomaly.create_destination('sec-b', 'webhook', '{"url": "https://alerts.example.com:8443/in/b", "credential": "sec_hook"}');
-- not under a bound prefix: other path, port, scheme or host
SELECT anomaly.create_destination('sec-x', 'webhook', '{"url": "http://127.0.0.1:9/other", "credential": "sec_hook"}');
SELECT anomaly.create_destination('sec-x', 'webhook', '{"url": "https://alerts.example.com/in", "credential": "sec_hook"}');
SELECT anomaly.create_destination('sec-x', 'webhook', '{"url": "http://alerts.example.com:8443/in", "credential": "sec_hook"}');
SELECT anomaly.create_destination('sec-x', 'email', '{"url": "smtp://127.0.0.1:9", "from": "a@b.c", "to": ["d@e.f"], "starttls": "none", "username": "u", "credential": "sec_hook"}');
-- a credential without any binding
SELECT anomaly.create_destination('sec-x', 'webhook', '{"url": "http://127.0.0.1:9/hooks/a", "credential": "hook_secret"}');
-- a URL credential must be bound to its own value
SELECT anomaly.create_destination('sec-x', 'slack', '{"url_credential": "sec_url"}');
SELECT anomaly.alter_destination('sec-a', config => '{"url": "http://127.0.0.1:9/elsewhere", "credential": "sec_hook"}');
SELECT name FROM anomaly.destinations WHERE name LIKE 'sec-%' ORDER BY 1;
-- unbound at delivery (the binding went after creation): a permanent failure
UPDATE anomaly.destinations SET config = '{"url": "http://127.0.0.1:9/elsewhere", "credential": "sec_hook"}' WHERE name = 'sec-b';
SELECT anomaly.send_alert('sec-b', 'unbound') > 0 AS queued;
SELECT anomaly.deliver() AS delivered;
SELECT destination, attempts, error FROM anomaly.dead_letters WHERE destination = 'sec-b';
SELECT anomaly.test_destination('sec-b');
SELECT anomaly.drop_destination('sec-b', force => true);
-- SMTP AUTH over a connection that may stay in plain text
SELECT anomaly.create_destination('sec-mail', 'email', '{"url": "smtp://127.0.0.1:9", "from": "a@b.c", "to": ["d@e.f"], "starttls": "try", "username": "u"}');
SELECT * FROM anomaly.test_destination('sec-mail');
SELECT anomaly.drop_destination('sec-mail');

-- Finding 7: loopback, private, link-local and metadata addresses are
-- refused unless allowed, whatever the URL's form; a superuser sees why,
-- an admin the class only.
SELECT anomaly.create_destination('sec-private', 'webhook', '{"url": "http://10.1.2.3:8080/x"}');
SELECT anomaly.create_destination('sec-lo2', 'webhook', '{"url": "http://127.0.0.2:9/x"}');
SELECT anomaly.create_destination('sec-meta', 'webhook', '{"url": "http://169.254.169.254/latest/meta-data/"}');
SELECT anomaly.create_destination('sec-mapped', 'webhook', '{"url": "http://[::ffff:10.0.0.1]:9/x"}');
SELECT anomaly.create_destination('sec-v6meta', 'webhook', '{"url": "http://[fd00:ec2::254]/x"}');
SELECT anomaly.create_destination('sec-decimal', 'webhook', '{"url": "http://167772161:9/x"}');
SELECT * FROM anomaly.test_destination('sec-private');
SELECT * FROM anomaly.test_destination('sec-lo2');
SELECT * FROM anomaly.test_destination('sec-meta');
SELECT * FROM anomaly.test_destination('sec-mapped');
SELECT * FROM anomaly.test_destination('sec-v6meta');
SELECT * FROM anomaly.test_destination('sec-decimal');
-- an admin sees the class only
SET ROLE regress_sec_adm;
SELECT anomaly.create_destination('sec-adm-private', 'webhook', '{"url": "http://192.168.7.7:8080/x"}');
SELECT * FROM anomaly.test_destination('sec-adm-private');
SELECT anomaly.drop_destination('sec-adm-private');
RESET ROLE;
-- a queued one becomes a dead letter at once, with the class in it
SELECT anomaly.send_alert('sec-meta', 'metadata') > 0 AS queued;
SELECT anomaly.deliver() AS delivered;
SELECT destination, attempts, error FROM anomaly.dead_letters WHERE destination = 'sec-meta';
SELECT e.detail FROM anomaly.delivery_errors e JOIN anomaly.dead_letters d ON d.outbox_id = e.outbox_id
WHERE d.destination = 'sec-meta';
-- bad entries in the allowance are refused
ALTER SYSTEM SET anomaly.allowed_destination_hosts = '127.0.0.1, 10.0.0.0/33';
ALTER SYSTEM SET anomaly.allowed_destination_hosts = 'bad host!';
SELECT anomaly.drop_destination(n, force => true)
FROM unnest('{sec-private,sec-lo2,sec-meta,sec-mapped,sec-v6meta,sec-decimal}'::text[]) n;
DELETE FROM anomaly.dead_letters WHERE destination LIKE 'sec-%';

-- Finding 6: an admin uses and sees only their own destinations and rules.
CREATE TABLE sec_src (id int PRIMARY KEY, v float8);
ALTER TABLE sec_src OWNER TO regress_sec_adm2;
SET ROLE regress_sec_adm2;
SELECT anomaly.create_destination('sec-adm2', 'notify', '{"channel": "sec_adm2"}');
SELECT anomaly.create_detector('sec_det', 'sec_src', '{v}');
SELECT anomaly.create_alert_rule('sec-rule2', detector => 'sec_det', destination => 'sec-adm2', min_score => 1,
	group_by => '{source_key}');
SET ROLE regress_sec_adm;
SELECT anomaly.create_destination('sec-adm', 'notify', '{"channel": "sec_adm"}');
SELECT anomaly.create_alert_rule('sec-steal', detector => 'sec_det', destination => 'sec-adm', min_score => 0);
SELECT anomaly.create_alert_rule('sec-steal', detector => 'no_such_detector', destination => 'sec-adm', min_score => 0);
SELECT anomaly.create_alert_rule('sec-steal', detector => 'sec_det', destination => 'sec-adm2', min_score => 0);
SELECT anomaly.send_alert('sec-adm2', 'spam');
SELECT anomaly.alter_destination('sec-adm2', enabled => false);
SELECT anomaly.drop_destination('sec-adm2', force => true);
SELECT anomaly.drop_alert_rule('sec-rule2');
SELECT * FROM anomaly.test_destination('sec-adm2');
SELECT anomaly.replay_dead_letters(destination => 'sec-adm2');
RESET ROLE;
-- scores of adm2's detector raise an episode and a notification
INSERT INTO anomaly.scores (detector, partition_key, source_key, anomaly_score, anomaly_grade)
VALUES ('sec_det', NULL, '{"id": 1, "v": 42}', 5, 1);
INSERT INTO anomaly.dead_letters (outbox_id, destination, subject, payload, dedup_id, attempts, created_at, error)
VALUES (0, 'sec-adm2', 'old', '{}', 'd0', 1, now(), 'HTTP 500');
SET ROLE regress_sec_adm;
SELECT (SELECT count(*) FROM anomaly.destinations WHERE name LIKE 'sec-%') AS destinations,
       (SELECT count(*) FROM anomaly.alert_rules WHERE name LIKE 'sec-%') AS rules,
       (SELECT count(*) FROM anomaly.alert_episodes WHERE rule LIKE 'sec-%') AS episodes,
       (SELECT count(*) FROM anomaly.alerts WHERE rule LIKE 'sec-%') AS alerts,
       (SELECT count(*) FROM anomaly.outbox WHERE destination LIKE 'sec-%') AS outbox,
       (SELECT count(*) FROM anomaly.dead_letters WHERE destination LIKE 'sec-%') AS dead_letters,
       (SELECT count(*) FROM anomaly.delivery_status WHERE destination LIKE 'sec-%') AS status;
SELECT count(*) FROM anomaly.delivery_errors;
SELECT anomaly.purge_alert_history('0');
SET ROLE regress_sec_adm2;
SELECT (SELECT count(*) FROM anomaly.destinations WHERE name LIKE 'sec-%') AS destinations,
       (SELECT count(*) FROM anomaly.alert_rules WHERE name LIKE 'sec-%') AS rules,
       (SELECT count(*) FROM anomaly.alert_episodes WHERE rule LIKE 'sec-%') AS episodes,
       (SELECT count(*) FROM anomaly.outbox WHERE destination LIKE 'sec-%') AS outbox,
       (SELECT count(*) FROM anomaly.dead_letters WHERE destination LIKE 'sec-%') AS dead_letters;
SELECT key FROM anomaly.alerts WHERE rule = 'sec-rule2';
-- the detector goes and another admin creates one of the same name: the
-- rule does not see its scores
SELECT anomaly.drop_detector('sec_det');
RESET ROLE;
CREATE TABLE sec_src2 (id int PRIMARY KEY, v float8);
ALTER TABLE sec_src2 OWNER TO regress_sec_adm;
SET ROLE regress_sec_adm;
SELECT anomaly.create_detector('sec_det', 'sec_src2', '{v}');
RESET ROLE;
INSERT INTO anomaly.scores (detector, partition_key, source_key, anomaly_score, anomaly_grade)
VALUES ('sec_det', NULL, '{"id": 7, "v": 1e6}', 9, 1);
SELECT group_key AS keys_of_adm2s_rule FROM anomaly.alert_episodes WHERE rule = 'sec-rule2' ORDER BY id;
SET ROLE regress_sec_adm;
SELECT anomaly.drop_detector('sec_det');
SET ROLE regress_sec_adm2;
SELECT anomaly.drop_alert_rule('sec-rule2');
SELECT anomaly.drop_destination('sec-adm2', force => true);
RESET ROLE;
DROP TABLE sec_src2;

-- Finding 2: the trigger function converts the row as the table's owner,
-- restricted; a cast planted by an admin does not run as a superuser.
CREATE TABLE s_adm.seen (who name, super boolean);
ALTER TABLE s_adm.seen OWNER TO regress_sec_adm;
SET ROLE regress_sec_adm;
CREATE TYPE s_adm.mood AS ENUM ('calm', 'angry');
CREATE FUNCTION s_adm.mood_json(m s_adm.mood) RETURNS json
LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO s_adm.seen SELECT current_user, r.rolsuper FROM pg_roles r WHERE r.rolname = current_user;
	IF (SELECT r.rolsuper FROM pg_roles r WHERE r.rolname = current_user) THEN
		EXECUTE 'ALTER ROLE regress_sec_adm SUPERUSER';
	END IF;
	RETURN to_json(m::text);
END
$$;
CREATE CAST (s_adm.mood AS json) WITH FUNCTION s_adm.mood_json(s_adm.mood);
CREATE TABLE s_adm.t (id int, m s_adm.mood);
CREATE TRIGGER t_alert AFTER INSERT ON s_adm.t FOR EACH ROW
	EXECUTE FUNCTION anomaly.alert_trigger('sec-adm', 'mood');
INSERT INTO s_adm.t VALUES (1, 'angry');
RESET ROLE;
-- also when a superuser inserts
INSERT INTO s_adm.t VALUES (2, 'calm');
SELECT * FROM s_adm.seen;
SELECT payload -> 'details' AS details FROM anomaly.outbox WHERE destination = 'sec-adm' ORDER BY id;
-- a trigger naming another admin's destination does not queue anything
SELECT anomaly.create_destination('sec-other', 'notify', '{"channel": "x"}');
SET ROLE regress_sec_adm;
CREATE TRIGGER t_other AFTER INSERT ON s_adm.t FOR EACH ROW
	EXECUTE FUNCTION anomaly.alert_trigger('sec-other');
INSERT INTO s_adm.t VALUES (3, 'calm');
DROP TRIGGER t_other ON s_adm.t;
-- the internal helper cannot be called to convert as another table's owner
SELECT anomaly._row_to_jsonb('anomaly.outbox'::regclass, ROW(1)::record);
RESET ROLE;
SELECT rolname, rolsuper FROM pg_roles WHERE rolname LIKE 'regress_sec_%' ORDER BY 1;

-- Finding 10: no role can confirm a guess of a secret through an error.
SET ROLE regress_sec_plain;
SELECT 'guess-Sup3rS3cretHookValue'::int;
SELECT 'guess-Sup3rS3cretHookValuX'::int;
RESET ROLE;

-- Finding 11: USAGE on the schema is PUBLIC (the window functions and the
-- model type are for everyone); nothing internal is executable by PUBLIC.
SET ROLE regress_sec_plain;
SELECT round(s::numeric, 6) AS score FROM (SELECT anomaly.random_cut_forest(ARRAY[1.0::float8]) OVER (ORDER BY t) AS s FROM generate_series(1, 1) t) x;
RESET ROLE;
SELECT p.oid::regprocedure AS executable_by_public
FROM pg_proc p
WHERE p.pronamespace = 'anomaly'::regnamespace
  AND has_function_privilege('regress_sec_plain', p.oid, 'EXECUTE')
  AND (p.proname LIKE '\_%' OR p.proname LIKE '%\_transfn' OR p.proname LIKE '%\_finalfn'
       OR p.proname IN ('create_destination', 'create_alert_rule', 'send_alert', 'deliver',
                        'test_destination', 'alert_trigger', 'replay_dead_letters'))
ORDER BY 1;
-- (one: _worker_note, which detector_status and delivery_status call; it
-- tells only whether a background worker serves this database)
SELECT p.oid::regprocedure AS admin_may_execute
FROM pg_proc p
WHERE p.pronamespace = 'anomaly'::regnamespace AND p.proname LIKE '\_%'
  AND has_function_privilege('regress_sec_adm', p.oid, 'EXECUTE')
ORDER BY 1;

-- Notify destinations: PostgreSQL has no privilege on LISTEN, so any role
-- hears any channel.  By default a notify destination sends a reference
-- (ids, rule, status, severity) and nothing of the row, the key or the
-- scores; "payload": "full" is for superusers only.
CREATE TABLE sec_nopk (v float8, note text);
ALTER TABLE sec_nopk OWNER TO regress_sec_adm2;
SET ROLE regress_sec_adm2;
SELECT anomaly.create_destination('sec-n', 'notify', '{"channel": "sec_n", "payload": "full"}');
SELECT anomaly.create_destination('sec-n', 'notify', '{"channel": "sec_n", "payload": "all"}');
SELECT anomaly.create_destination('sec-n', 'notify', '{"channel": "sec_n"}');
SELECT anomaly.alter_destination('sec-n', config => '{"channel": "sec_n", "payload": "full"}');
SELECT anomaly.create_destination('sec-n-ref', 'notify', '{"channel": "sec_n", "payload": "reference"}');
SELECT anomaly.create_detector('sec_ndet', 'sec_nopk', '{v}');
SELECT anomaly.create_alert_rule('sec-nrule', detector => 'sec_ndet', destination => 'sec-n', min_score => 0,
	group_by => '{source_key}');
RESET ROLE;
INSERT INTO anomaly.scores (detector, partition_key, source_key, anomaly_score, anomaly_grade, explanation)
VALUES ('sec_ndet', NULL, '{"v": 1, "note": "private"}', 5, 1, '{"v": {"strength": 0.9}}');
SET ROLE regress_sec_adm2;
SELECT anomaly.send_alert('sec-n-ref', 'private subject',
	'{"status": "private status", "severity": "private", "key": {"note": "private"}}') > 0 AS queued;
RESET ROLE;
-- what deliver() sends: the body it renders for each claimed row
CREATE TEMP VIEW sec_sent AS
SELECT o.id, o.destination, o.payload,
	   anomaly._render(d.kind, d.config, o.subject, o.payload, coalesce(o.dedup_id, 'anomaly-' || o.id), o.id) AS body
FROM anomaly.outbox o JOIN anomaly.destinations d ON d.name = o.destination
WHERE o.destination LIKE 'sec-n%';
SELECT destination, body::jsonb - 'id' - 'episode' - 'score_id' AS reference,
	   (body::jsonb -> 'id') = to_jsonb(id) AS names_outbox_row,
	   (body::jsonb -> 'episode') IS NOT DISTINCT FROM (payload -> 'episode') AS names_episode,
	   (body::jsonb -> 'score_id') IS NOT DISTINCT FROM (payload -> 'score_id') AS names_score,
	   body LIKE '%private%' AS leaks, octet_length(body) < 300 AS small
FROM sec_sent ORDER BY id;
-- the rule's owner reads the alert by reference; plain reads nothing
SELECT body::jsonb ->> 'episode' AS ref_episode FROM sec_sent WHERE destination = 'sec-n' \gset
SET ROLE regress_sec_adm2;
SELECT a.rule, a.key, a.status FROM anomaly.alerts a WHERE a.episode = :ref_episode;
SET ROLE regress_sec_plain;
SELECT count(*) FROM anomaly.alerts;
RESET ROLE;
-- delivery sends it, and replay_dead_letters and test_destination too
-- render from the destination's config of the moment
SELECT anomaly.deliver() > 0 AS delivered;
SELECT count(*) AS still_queued FROM sec_sent;
INSERT INTO anomaly.dead_letters (outbox_id, destination, subject, payload, dedup_id, attempts, created_at, error)
VALUES (0, 'sec-n', 'old', '{"version": 1, "source": "rule", "alert": "sec-nrule", "status": "firing",
		"severity": "warning", "key": {"note": "private"}, "episode": 1}', 'd1', 1, now(), 'x');
SET ROLE regress_sec_adm2;
SELECT anomaly.replay_dead_letters(destination => 'sec-n');
SELECT * FROM anomaly.test_destination('sec-n');
RESET ROLE;
SELECT destination, body::jsonb - 'id' AS reference, body LIKE '%private%' AS leaks FROM sec_sent ORDER BY id;
-- a superuser may choose the full payload, for any destination
SELECT anomaly.alter_destination('sec-n', config => '{"channel": "sec_n", "payload": "full"}');
SELECT anomaly.create_destination('sec-n-full', 'notify', '{"channel": "sec_n", "payload": "full"}');
SELECT destination, body::jsonb -> 'key' AS key, body LIKE '%private%' AS full_payload FROM sec_sent ORDER BY id;
-- its owner may disable and enable it, but a config of theirs is checked
-- again: full stays the superuser's choice
SET ROLE regress_sec_adm2;
SELECT anomaly.alter_destination('sec-n', enabled => false);
SELECT anomaly.alter_destination('sec-n', enabled => true);
SELECT anomaly.alter_destination('sec-n', config => '{"channel": "sec_other", "payload": "full"}');
SELECT anomaly.alter_destination('sec-n', config => '{"channel": "sec_n"}');
RESET ROLE;
SELECT destination, body::jsonb ->> 'payload' AS payload, body LIKE '%private%' AS leaks FROM sec_sent ORDER BY id;
SET ROLE regress_sec_adm2;
SELECT anomaly.drop_alert_rule('sec-nrule');
SELECT anomaly.drop_detector('sec_ndet');
SELECT anomaly.drop_destination(n, force => true) FROM unnest('{sec-n,sec-n-ref}'::text[]) n;
RESET ROLE;
SELECT anomaly.drop_destination('sec-n-full');
DROP VIEW sec_sent;
DROP TABLE sec_nopk;
DELETE FROM anomaly.scores WHERE detector = 'sec_ndet';
DELETE FROM anomaly.dead_letters WHERE destination LIKE 'sec-n%';

-- clean up
DELETE FROM anomaly.outbox WHERE destination LIKE 'sec-%';
SELECT anomaly.drop_destination('sec-adm', force => true);
SELECT anomaly.drop_destination('sec-other', force => true);
SELECT anomaly.drop_destination('sec-a', force => true);
DELETE FROM anomaly.dead_letters WHERE destination LIKE 'sec-%';
DELETE FROM anomaly.scores WHERE detector = 'sec_det';
DROP TABLE sec_src;
DROP SCHEMA s_adm CASCADE;
DROP ROLE regress_sec_adm;
DROP ROLE regress_sec_adm2;
DROP ROLE regress_sec_plain;
ALTER SYSTEM RESET anomaly.credential_bindings;
ALTER SYSTEM RESET anomaly.allowed_destination_hosts;
ALTER SYSTEM RESET anomaly.credentials;
SELECT pg_reload_conf();
