-- Alert messages users write (issue 17): a rule's subject and body
-- templates per destination kind, the source row in the payload with only
-- the columns the rule's owner may read, the template syntax and the
-- warnings for fields that render empty.  Nothing is delivered here (the
-- destinations point at a closed local port; real delivery of formatted
-- messages: test/t/060-062); what would be sent is rendered by _render.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS anomaly;
RESET client_min_messages;
\set SHOW_CONTEXT never

\getenv abs_srcdir PG_ABS_SRCDIR
\set allow_loopback :abs_srcdir '/sql/include/allow_loopback.sql'
\i :allow_loopback

CREATE ROLE regress_tpl_adm IN ROLE anomaly_admin;
CREATE TABLE tpl_ticks (id int PRIMARY KEY, ticker text, price float8, secret text);
INSERT INTO tpl_ticks VALUES (1, 'AMZN', 101.5, 'hush'), (2, 'NFLX', 55.25, 'quiet'),
	(3, '{{row.secret}}', 1, 'leak?');
GRANT SELECT ON tpl_ticks TO regress_tpl_adm;

SET ROLE regress_tpl_adm;
SELECT anomaly.create_destination('tpl-mail', 'email', '{"url": "smtp://127.0.0.1:9", "from": "anomaly@example.com", "to": ["ops@example.com"]}');
SELECT anomaly.create_destination('tpl-sns', 'sns', '{"topic_arn": "arn:aws:sns:eu-west-1:123456789012:ops"}');
SELECT anomaly.create_destination('tpl-slack', 'slack', '{"url": "http://127.0.0.1:9/slack"}');
SELECT anomaly.create_destination('tpl-hook', 'webhook', '{"url": "http://127.0.0.1:9/hook"}');
SELECT anomaly.create_detector('tpl_det', 'tpl_ticks', '{price}');

-- Templates insert values and nothing else: anything but {{name.name}} in
-- braces is refused, and so are templates for kinds that have none.
SELECT anomaly.create_alert_rule('tpl-bad', 'tpl_det', 'tpl-mail', min_score => 1,
	subject_template => 'score {{score + 1}}');
SELECT anomaly.create_alert_rule('tpl-bad', 'tpl_det', 'tpl-mail', min_score => 1,
	body_template => 'hello {{#if score}}x{{/if}}');
SELECT anomaly.create_alert_rule('tpl-bad', 'tpl_det', 'tpl-mail', min_score => 1,
	body_template => 'unclosed {{score');
SELECT anomaly.create_alert_rule('tpl-bad', 'tpl_det', 'tpl-mail', min_score => 1,
	templates => '{"webhook": {"body": "{{score}}"}}');
SELECT anomaly.create_alert_rule('tpl-bad', 'tpl_det', 'tpl-mail', min_score => 1,
	templates => '{"slack": {"subject": "{{score}}"}}');
SELECT anomaly.create_alert_rule('tpl-bad', 'tpl_det', 'tpl-mail', min_score => 1,
	templates => '{"email": {"body": 42}}');
SELECT anomaly.create_alert_rule('tpl-bad', 'tpl_det', 'tpl-mail', min_score => 1,
	templates => '["email"]');
SELECT count(*) AS rules FROM anomaly.alert_rules WHERE name = 'tpl-bad';

-- Fields that would render empty are accepted with a warning each: not in
-- the payload, a key part the rule does not group by, a missing column.
SELECT anomaly.create_alert_rule('tpl-warn', 'tpl_det', 'tpl-mail', min_score => 1,
	subject_template => '{{nope}} {{key.ticker}} {{row.missing}} {{row.ticker}} {{key.source_key}}',
	group_by => '{source_key}');
SELECT anomaly.drop_alert_rule('tpl-warn');

-- One rule, four kinds: the subject and body for all, a Slack text and an
-- SNS subject of their own; the webhook gets JSON.
SELECT anomaly.create_alert_rule('tpl', 'tpl_det', destinations => '{tpl-mail,tpl-sns,tpl-slack,tpl-hook}',
	min_score => 1, group_by => '{source_key}',
	subject_template => 'Anomaly {{score}} on {{row.ticker}}',
	body_template => E'{{row.ticker}} traded at {{row.price}} ({{time}}).\nGrade {{grade}}, explanation {{explanation}}.\nRule {{alert}}, detector {{detector}}, key {{key}}.',
	templates => '{"slack": {"text": "*{{row.ticker}}* at {{row.price}}"}, "sns": {"subject": "SNS: {{row.ticker}}"}}');
SELECT name, subject_template, templates FROM anomaly.alert_rules WHERE name = 'tpl';
RESET ROLE;

-- A detector's score for row 1 fires the rule.
INSERT INTO anomaly.scores (detector, source_key, commit_time, anomaly_score, anomaly_grade, explanation)
VALUES ('tpl_det', '{"id": 1}', '2025-06-01 08:00:00+00', 4.5, 0.9,
		'{"price": {"ATTRIBUTION_SCORE": "4.5000"}}');
SELECT destination, subject, payload ->> 'message' AS message, payload -> 'row' AS row
FROM anomaly.outbox ORDER BY destination;

-- What each kind sends: the e-mail's body is the message (its Date and
-- Message-ID vary), SNS's Message is the text, Slack's text, the webhook the
-- payload with the row and no message.
SELECT regexp_replace(anomaly._render(d.kind, d.config, o.subject, o.payload, 'x'), E'Date: [^\r]*\r\n', '') AS email
FROM anomaly.outbox o JOIN anomaly.destinations d ON d.name = o.destination WHERE d.kind = 'email';
SELECT anomaly._sns_subject(o.subject) AS sns_subject, anomaly._render(d.kind, d.config, o.subject, o.payload, 'x') AS sns_message
FROM anomaly.outbox o JOIN anomaly.destinations d ON d.name = o.destination WHERE d.kind = 'sns';
SELECT anomaly._render(d.kind, d.config, o.subject, o.payload, 'x') AS slack
FROM anomaly.outbox o JOIN anomaly.destinations d ON d.name = o.destination WHERE d.kind = 'slack';
SELECT r::jsonb -> 'row' AS webhook_row, r::jsonb ? 'message' AS has_message, r::jsonb ->> 'time' AS time
FROM (SELECT anomaly._render(d.kind, d.config, o.subject, o.payload, 'x') AS r
	  FROM anomaly.outbox o JOIN anomaly.destinations d ON d.name = o.destination WHERE d.kind = 'webhook') t;
DELETE FROM anomaly.outbox;

-- A value is inserted, never read as a template: row 3's ticker is
-- "{{row.secret}}", which stays text.
INSERT INTO anomaly.scores (detector, source_key, commit_time, anomaly_score)
VALUES ('tpl_det', '{"id": 3}', '2025-06-01 08:01:00+00', 5);
SELECT subject FROM anomaly.outbox WHERE destination = 'tpl-mail';
DELETE FROM anomaly.outbox;

-- The rule's owner loses the table privilege and keeps three columns: the
-- payload's row has only those, a template naming another renders empty,
-- and creating such a template warns.
REVOKE SELECT ON tpl_ticks FROM regress_tpl_adm;
GRANT SELECT (id, ticker, price) ON tpl_ticks TO regress_tpl_adm;
SET ROLE regress_tpl_adm;
SELECT anomaly.create_alert_rule('tpl-secret', 'tpl_det', 'tpl-hook', min_score => 100,
	subject_template => 'secret: [{{row.secret}}]');
SELECT anomaly.drop_alert_rule('tpl-secret');
RESET ROLE;
UPDATE anomaly.alert_rules SET body_template = 'secret: [{{row.secret}}] ticker: [{{row.ticker}}]' WHERE name = 'tpl';
INSERT INTO anomaly.scores (detector, source_key, commit_time, anomaly_score)
VALUES ('tpl_det', '{"id": 2}', '2025-06-01 08:02:00+00', 6);
SELECT destination, payload ->> 'message' AS message, payload -> 'row' AS row
FROM anomaly.outbox ORDER BY destination;
DELETE FROM anomaly.outbox;

-- Row level security hides a row from the owner: no row, empty fields.
ALTER TABLE tpl_ticks ENABLE ROW LEVEL SECURITY;
CREATE POLICY tpl_not_amzn ON tpl_ticks FOR SELECT USING (ticker <> 'AMZN');
UPDATE anomaly.alert_episodes SET status = 'resolved', resolved_at = now() WHERE rule = 'tpl';
INSERT INTO anomaly.scores (detector, source_key, commit_time, anomaly_score)
VALUES ('tpl_det', '{"id": 1}', '2025-06-01 08:03:00+00', 7);
SELECT destination, payload ->> 'message' AS message, payload -> 'row' AS row
FROM anomaly.outbox WHERE destination IN ('tpl-mail', 'tpl-hook') ORDER BY destination;
DELETE FROM anomaly.outbox;
ALTER TABLE tpl_ticks DISABLE ROW LEVEL SECURITY;

-- A key that no longer fits the column costs the row, with a warning, not
-- the transaction that wrote the score.
UPDATE anomaly.alert_episodes SET status = 'resolved', resolved_at = now() WHERE rule = 'tpl';
INSERT INTO anomaly.scores (detector, source_key, commit_time, anomaly_score)
VALUES ('tpl_det', '{"id": "not a number"}', '2025-06-01 08:04:00+00', 8);
SELECT count(*) AS queued, bool_and(payload -> 'row' = 'null') AS without_row FROM anomaly.outbox;
DELETE FROM anomaly.outbox;

-- alter_alert_rule changes templates with the same checks as
-- create_alert_rule, and unset clears them.
SET ROLE regress_tpl_adm;
SELECT anomaly.alter_alert_rule('tpl', subject_template => '{{nonsense');
SELECT anomaly.alter_alert_rule('tpl', subject_template => 'now: {{no_such_field}}');
SELECT anomaly.alter_alert_rule('tpl', subject_template => 'x', unset => '{subject_template}');
SELECT anomaly.alter_alert_rule('tpl', body_template => 'score {{score}}', templates => '{"slack": {"text": "{{alert}}"}}');
SELECT subject_template, body_template, templates FROM anomaly.alert_rules WHERE name = 'tpl';
SELECT anomaly.alter_alert_rule('tpl', unset => '{subject_template,body_template,templates}');
SELECT subject_template, body_template, templates FROM anomaly.alert_rules WHERE name = 'tpl';
RESET ROLE;

-- Only the extension's owner may call the template functions.
SET ROLE regress_tpl_adm;
SELECT anomaly._render_template('{{score}}', '{"score": 1}');
SELECT anomaly._template_fields('{{score}}');
SELECT anomaly._source_row(0, 'tpl_det', '{"id": 1}');
RESET ROLE;

SET ROLE regress_tpl_adm;
SELECT anomaly.drop_alert_rule('tpl');
SELECT anomaly.drop_detector('tpl_det');
SELECT anomaly.drop_destination(n, force => true) FROM unnest('{tpl-mail,tpl-sns,tpl-slack,tpl-hook}'::text[]) n;
RESET ROLE;
DROP TABLE tpl_ticks;
DROP ROLE regress_tpl_adm;
ALTER SYSTEM RESET anomaly.allowed_destination_hosts;
SELECT pg_reload_conf();
