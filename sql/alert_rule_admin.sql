-- Alert rules as their owners manage them (issue 18): create_alert_rule
-- checks the detector exists and the caller owns it; alter_alert_rule
-- changes a rule (thresholds, destinations, enabled, timing), with the same
-- privileges as create, and the change applies to the next scores.
-- (The name alert_rules is the isolation test's.)
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS anomaly;
RESET client_min_messages;
\set SHOW_CONTEXT never

CREATE ROLE regress_rule_adm IN ROLE anomaly_admin;
CREATE ROLE regress_rule_adm2 IN ROLE anomaly_admin;
CREATE ROLE regress_rule_plain;
CREATE TABLE rule_src (id int PRIMARY KEY, v float8);
ALTER TABLE rule_src OWNER TO regress_rule_adm;

SET ROLE regress_rule_adm;
SELECT anomaly.create_destination('rule-a', 'notify', '{"channel": "rule_a"}');
SELECT anomaly.create_destination('rule-b', 'notify', '{"channel": "rule_b"}');
SELECT anomaly.create_detector('rule_det', 'rule_src', '{v}');
-- create: the detector must exist (for an admin) and be theirs
SELECT anomaly.create_alert_rule('rule-x', detector => 'no_such_detector', destination => 'rule-a', min_score => 1);
SELECT anomaly.create_alert_rule('rule-1', detector => 'rule_det', destination => 'rule-a', min_score => 3);
SET ROLE regress_rule_adm2;
SELECT anomaly.create_destination('rule-c', 'notify', '{"channel": "rule_c"}');
SELECT anomaly.create_alert_rule('rule-x', detector => 'rule_det', destination => 'rule-c', min_score => 0);
RESET ROLE;
-- a superuser may name a detector that does not exist yet: with a notice
SELECT anomaly.create_alert_rule('rule-su', detector => 'later_det', destination => 'rule-a', min_grade => 0.5);
SELECT anomaly.drop_alert_rule('rule-su');

-- alter: each value given replaces the rule's, the others stay
SET ROLE regress_rule_adm;
SELECT anomaly.alter_alert_rule('rule-1', min_grade => 0.5, cooldown => '5 minutes', severity => 'critical',
	repeat_interval => '1 hour', send_resolved => false);
SELECT name, detector, destinations, min_grade, min_score, for_duration, cooldown, severity,
       send_resolved, repeat_interval, enabled
FROM anomaly.alert_rules WHERE name = 'rule-1';
SELECT anomaly.alter_alert_rule('rule-1', destinations => '{rule-a,rule-b}', unset => '{min_score,repeat_interval}');
SELECT destinations, min_grade, min_score, repeat_interval FROM anomaly.alert_rules WHERE name = 'rule-1';
-- mistakes are refused, and change nothing
SELECT anomaly.alter_alert_rule('no-such-rule', enabled => false);
SELECT anomaly.alter_alert_rule('rule-1', unset => '{min_grade}');
SELECT anomaly.alter_alert_rule('rule-1', min_grade => 1.5);
SELECT anomaly.alter_alert_rule('rule-1', min_grade => 'NaN');
SELECT anomaly.alter_alert_rule('rule-1', min_score => -1);
SELECT anomaly.alter_alert_rule('rule-1', min_score => 2, unset => '{min_score}');
SELECT anomaly.alter_alert_rule('rule-1', unset => '{detector}');
SELECT anomaly.alter_alert_rule('rule-1', unset => ARRAY[NULL]);
SELECT anomaly.alter_alert_rule('rule-1', cooldown => '-1 s');
SELECT anomaly.alter_alert_rule('rule-1', repeat_interval => '0');
SELECT anomaly.alter_alert_rule('rule-1', severity => 'urgent');
SELECT anomaly.alter_alert_rule('rule-1', destinations => '{}');
SELECT anomaly.alter_alert_rule('rule-1', destination => 'nope');
SELECT anomaly.alter_alert_rule(NULL, enabled => false);
SELECT destinations, min_grade, min_score, cooldown, severity, enabled FROM anomaly.alert_rules WHERE name = 'rule-1';

-- another admin may neither alter the rule nor aim it at their destination;
-- the owner may not aim it at the other admin's destination; a plain role
-- may not call it at all
SET ROLE regress_rule_adm2;
SELECT anomaly.alter_alert_rule('rule-1', enabled => false);
SELECT anomaly.alter_alert_rule('rule-1', destination => 'rule-c');
SET ROLE regress_rule_adm;
SELECT anomaly.alter_alert_rule('rule-1', destination => 'rule-c');
SET ROLE regress_rule_plain;
SELECT anomaly.alter_alert_rule('rule-1', enabled => false);
RESET ROLE;

-- A rule whose owner lost the detector may be disabled or dropped, not
-- changed otherwise.
ALTER TABLE rule_src OWNER TO regress_rule_adm2;
UPDATE anomaly.detectors SET owner = 'regress_rule_adm2' WHERE name = 'rule_det';
SET ROLE regress_rule_adm;
SELECT anomaly.alter_alert_rule('rule-1', min_grade => 0.1);
SELECT anomaly.alter_alert_rule('rule-1', enabled => false);
SELECT anomaly.alter_alert_rule('rule-1', enabled => true);
RESET ROLE;
ALTER TABLE rule_src OWNER TO regress_rule_adm;
UPDATE anomaly.detectors SET owner = 'regress_rule_adm' WHERE name = 'rule_det';

-- The change applies to the next scores: min_score 3 ignores a score of 2;
-- lowered to 1.5, the same score opens an episode; disabled, none more.
SET ROLE regress_rule_adm;
SELECT anomaly.alter_alert_rule('rule-1', min_score => 3, unset => '{min_grade}', send_resolved => true,
	cooldown => '0', enabled => true);
RESET ROLE;
INSERT INTO anomaly.scores (detector, partition_key, anomaly_score, anomaly_grade) VALUES ('rule_det', 'k1', 2, 0);
SELECT count(*) AS episodes FROM anomaly.alert_episodes WHERE rule = 'rule-1';
SET ROLE regress_rule_adm;
SELECT anomaly.alter_alert_rule('rule-1', min_score => 1.5);
RESET ROLE;
INSERT INTO anomaly.scores (detector, partition_key, anomaly_score, anomaly_grade) VALUES ('rule_det', 'k1', 2, 0);
SELECT rule, key, status FROM anomaly.alerts WHERE rule = 'rule-1';
SELECT destination, payload ->> 'status' AS status FROM anomaly.outbox
WHERE destination LIKE 'rule-%' ORDER BY id;
SET ROLE regress_rule_adm;
SELECT anomaly.alter_alert_rule('rule-1', enabled => false);
RESET ROLE;
INSERT INTO anomaly.scores (detector, partition_key, anomaly_score, anomaly_grade) VALUES ('rule_det', 'k2', 9, 1);
SELECT rule, key, status FROM anomaly.alerts WHERE rule = 'rule-1' ORDER BY episode;

-- clean up
DELETE FROM anomaly.outbox WHERE destination LIKE 'rule-%';
SELECT anomaly.drop_alert_rule('rule-1');
SELECT anomaly.drop_detector('rule_det');
SELECT anomaly.drop_destination('rule-a');
SELECT anomaly.drop_destination('rule-b');
SELECT anomaly.drop_destination('rule-c');
DELETE FROM anomaly.scores WHERE detector = 'rule_det';
DROP TABLE rule_src;
DROP ROLE regress_rule_adm;
DROP ROLE regress_rule_adm2;
DROP ROLE regress_rule_plain;
