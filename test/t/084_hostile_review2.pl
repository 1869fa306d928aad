# A second hostile-role review: what a caller's session, a database's owner
# or another admin may set or own, read implicitly by the extension's code
# that runs as a role that is not its caller.
#
# Each block is an attack that succeeded before its fix (session 8).
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/..";
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use HostileTest;

my $node = new_hostile_node('hostile_review2');

# A database owned by owner1 without a detector worker: rounds run by
# process(), each in the session (and with the settings) of its caller.
$node->safe_psql('postgres', q{CREATE DATABASE wdb OWNER owner1;});
$node->safe_psql('wdb', q{
	CREATE EXTENSION anomaly;
	CREATE SCHEMA s_adm AUTHORIZATION adm;
	CREATE SCHEMA s_adm2 AUTHORIZATION adm2;
});

# -------------------------------------------------------------------------
# Retention ran in the superuser context under the session's IntervalStyle
# (and TimeZone): process() applies every detector's retention, so another
# admin's session with IntervalStyle = sql_standard read adm's retention
# '-0 days 1 hour' (one hour under the postgres style, which create_detector
# checked) as minus one hour and deleted all of adm's scores.
{
	my $label = 'retention under another admin\'s IntervalStyle';
	as_role_ok($node, 'adm', q{
CREATE TABLE s_adm.ret (id bigserial PRIMARY KEY, v float8);
SELECT anomaly.create_detector('det_ret', 's_adm.ret', ARRAY['v'],
	options => '{"number_of_trees": 5, "sub_sample_size": 16, "shingle_size": 1,
		"retention": "-0 days 1 hour"}');
INSERT INTO s_adm.ret (v) SELECT g FROM generate_series(1, 20) g;
SELECT anomaly.process();
}, "$label: adm scores 20 rows", db => 'wdb');
	is($node->safe_psql('wdb', q{SELECT count(*) FROM anomaly.scores WHERE detector = 'det_ret'}),
		'20', "$label: 20 scores");
	as_role_ok($node, 'adm2', q{
SET IntervalStyle = 'sql_standard'; SET TimeZone = 'Pacific/Kiritimati';
SELECT anomaly.process();
}, "$label: adm2 runs process() under sql_standard", db => 'wdb');
	is($node->safe_psql('wdb', q{SELECT count(*) FROM anomaly.scores WHERE detector = 'det_ret'}),
		'20', "$label: adm's scores are kept (retention read as one hour)");
	assert_no_superuser($node, $label);
	assert_alive($node, $label);
}

# -------------------------------------------------------------------------
# An alert's payload timestamps (starts_at, scored_at, created_at, the
# source row's timestamptz and interval columns) were written in the
# TimeZone and IntervalStyle of whatever session ran the round: the worker
# (a database owner's ALTER DATABASE SET) or the process() caller.  They are
# written in UTC, intervals in the postgres style, whoever's session.
{
	my $label = 'alert payload timestamps';
	as_role_ok($node, 'adm', q{
CREATE TABLE s_adm.pay (id bigserial PRIMARY KEY, v float8, ts timestamptz, iv interval);
SELECT anomaly.create_detector('det_pay', 's_adm.pay', ARRAY['v'],
	options => '{"number_of_trees": 5, "sub_sample_size": 16, "shingle_size": 1}');
SELECT anomaly.create_destination('n_pay', 'notify', '{"channel": "pay"}');
SELECT anomaly.create_alert_rule('r_pay', 'det_pay', 'n_pay', min_score => 0, group_by => '{source_key}');
INSERT INTO s_adm.pay (v, ts, iv)
	SELECT g, '2026-01-01 00:00:00+00', '1 day 02:00:00' FROM generate_series(1, 10) g;
}, "$label: set up as adm", db => 'wdb');
	$node->safe_psql('wdb', q{SET ROLE owner1;
ALTER DATABASE wdb SET TimeZone = 'Asia/Kathmandu';
ALTER DATABASE wdb SET IntervalStyle = 'iso_8601';
ALTER DATABASE wdb SET DateStyle = 'SQL, DMY';});
	as_role_ok($node, 'adm', q{SELECT anomaly.process('det_pay');},
		"$label: a round under the database owner's settings", db => 'wdb');
	as_role_ok($node, 'adm', q{
CREATE TABLE s_adm.trg (id int, ts timestamptz);
CREATE TRIGGER t AFTER INSERT ON s_adm.trg FOR EACH ROW
	EXECUTE FUNCTION anomaly.alert_trigger('n_pay', 'row', 'info');
INSERT INTO s_adm.trg VALUES (1, '2026-01-01 00:00:00+00');
}, "$label: a trigger's notification under the same settings", db => 'wdb');
	$node->safe_psql('wdb', q{SET ROLE owner1;
ALTER DATABASE wdb RESET TimeZone; ALTER DATABASE wdb RESET IntervalStyle;
ALTER DATABASE wdb RESET DateStyle;});
	is($node->safe_psql('wdb', q{
		SELECT count(*) || '|' ||
			count(*) FILTER (WHERE payload ->> 'starts_at' LIKE '%+00:00'
				AND payload ->> 'scored_at' LIKE '%+00:00'
				AND payload ->> 'created_at' LIKE '%+00:00'
				AND payload -> 'row' ->> 'ts' = '2026-01-01T00:00:00+00:00'
				AND payload -> 'row' ->> 'iv' = '1 day 02:00:00')
		FROM anomaly.outbox WHERE destination = 'n_pay' AND payload ->> 'source' = 'rule'}),
		'10|10', "$label: a rule's notifications in UTC, intervals in the postgres style");
	is($node->safe_psql('wdb', q{
		SELECT (payload ->> 'created_at' LIKE '%+00:00') || '|' || (payload -> 'details' ->> 'ts')
		FROM anomaly.outbox WHERE destination = 'n_pay' AND payload ->> 'source' = 'trigger'}),
		'true|2026-01-01T00:00:00+00:00', "$label: a trigger's notification in UTC");
	assert_no_superuser($node, $label);
	assert_alive($node, $label);
}

# -------------------------------------------------------------------------
# The workers connect to a database with its settings, which its owner sets
# (ALTER DATABASE ... SET, no superuser): default_transaction_read_only = on
# stopped every detector and the sender in the database (each round failed
# on its first write, again every naptime), whoever owned them.  The
# workers' transactions are read-write, read committed, whatever the
# database says.
{
	my $label = 'the workers under a database owner\'s default_transaction_read_only';
	$node->safe_psql('postgres', q{CREATE DATABASE rodb OWNER owner1;});
	$node->safe_psql('rodb', q{
		CREATE EXTENSION anomaly;
		CREATE SCHEMA s_adm AUTHORIZATION adm;
	});
	$node->safe_psql('rodb', q{SET ROLE owner1;
ALTER DATABASE rodb SET default_transaction_read_only = on;
ALTER DATABASE rodb SET default_transaction_isolation = 'serializable';
ALTER DATABASE rodb SET lock_timeout = '1ms';});
	$node->safe_psql('postgres', q{
ALTER SYSTEM SET anomaly.detector_database = 'postgres, rodb';
ALTER SYSTEM SET anomaly.sender_database = 'postgres, rodb';
SELECT pg_reload_conf();});
	as_role_ok($node, 'adm', q{
SET default_transaction_read_only = off;
CREATE TABLE s_adm.ro (id bigserial PRIMARY KEY, v float8);
SELECT anomaly.create_detector('det_ro', 's_adm.ro', ARRAY['v'],
	options => '{"number_of_trees": 5, "sub_sample_size": 16, "shingle_size": 1}');
SELECT anomaly.create_destination('n_ro', 'notify', '{"channel": "ro"}');
SELECT anomaly.create_alert_rule('r_ro', 'det_ro', 'n_ro', min_score => 0, group_by => '{source_key}');
INSERT INTO s_adm.ro (v) SELECT g FROM generate_series(1, 20) g;
}, "$label: adm's detector in the database", db => 'rodb');
	is(wait_detector($node, 'det_ro', 20, db => 'rodb', secs => 30), 'active|20|0|0|',
		"$label: the detector worker scores the rows");
	my $left;
	wait_until(30, sub {
		$left = $node->safe_psql('rodb', q{
			SELECT count(*) FILTER (WHERE o.destination = 'n_ro') || '|' ||
				(SELECT count(*) FROM anomaly.alert_episodes e WHERE e.rule = 'r_ro')
			FROM anomaly.outbox o});
		return $left =~ /^0\|[1-9]/;
	});
	like($left, qr/^0\|[1-9]\d*$/, "$label: the sender delivers the rule's notifications");
	$node->safe_psql('postgres', q{
ALTER SYSTEM RESET anomaly.detector_database;
ALTER SYSTEM RESET anomaly.sender_database;
SELECT pg_reload_conf();});
	assert_no_superuser($node, $label);
	assert_alive($node, $label);
}

# -------------------------------------------------------------------------
# A destination's rate_limit was checked as a positive JSON number only:
# 1e400 (or 1e-400) passed, and the sender's claim of due notifications,
# one statement for every destination, cast it to float8 and failed: one
# notification of adm's stopped every admin's deliveries in the database,
# at every round, for as long as it stayed in the outbox.
{
	my $label = 'a rate_limit out of float8\'s range';
	for my $rate ('1e400', '1e-400', '1e7', '0.0000001')
	{
		as_role_err($node, 'adm', qq{SELECT anomaly.create_destination('rl_bad', 'notify',
			'{"channel": "rl", "rate_limit": $rate}')},
			qr/"rate_limit" must be a number from 0\.000001 to 1000000/,
			"$label: $rate refused");
	}
	as_role_ok($node, 'adm', q{
SELECT anomaly.create_destination('rl_adm', 'notify', '{"channel": "rl", "rate_limit": 5}');
SELECT anomaly.alter_destination('rl_adm', '{"channel": "rl", "rate_limit": 0.000001}');
}, "$label: the bounds accepted");
	as_role_err($node, 'adm', q{SELECT anomaly.alter_destination('rl_adm', '{"channel": "rl", "rate_limit": 1e400}')},
		qr/"rate_limit" must be a number/, "$label: alter_destination refuses it too");
	# a row such as 0.1.0 accepted: the sender goes on for the others
	$node->safe_psql('postgres', q{
UPDATE anomaly.destinations SET config = '{"channel": "rl", "rate_limit": 1e400}' WHERE name = 'rl_adm';});
	as_role_ok($node, 'adm', q{SELECT anomaly.send_alert('rl_adm', 'hold the sender', '{}');},
		"$label: adm queues a notification to it");
	as_role_ok($node, 'adm2', q{
SELECT anomaly.create_destination('rl_adm2', 'notify', '{"channel": "rl2"}');
SELECT anomaly.send_alert('rl_adm2', 'victim', '{}');
}, "$label: adm2 queues one to its own destination");
	my $left;
	wait_until(30, sub {
		$left = $node->safe_psql('postgres', q{
			SELECT count(*) FROM anomaly.outbox WHERE destination IN ('rl_adm', 'rl_adm2')});
		return $left eq '0';
	});
	is($left, '0', "$label: the sender delivers both");
	assert_no_superuser($node, $label);
	assert_alive($node, $label);
}

# -------------------------------------------------------------------------
# Retention is applied to every detector of the database in one statement
# (by the scheduler once a minute, and by every process() call): a
# retention of '170000000 years' (positive, so accepted) made
# now() - retention overflow, and every admin's process() failed, and the
# scheduler's pass failed each second before starting any worker.
{
	my $label = 'a retention past the calendar';
	as_role_ok($node, 'adm', q{CREATE TABLE s_adm.rbig (id bigserial PRIMARY KEY, v float8);},
		"$label: adm's table", db => 'wdb');
	as_role_err($node, 'adm', q{
SELECT anomaly.create_detector('det_rbig', 's_adm.rbig', ARRAY['v'],
	options => '{"number_of_trees": 5, "sub_sample_size": 16, "shingle_size": 1,
		"retention": "170000000 years"}');
}, qr/retention.*at most 1000 years/, "$label: refused by create_detector", db => 'wdb');
	as_role_ok($node, 'adm', q{
SELECT anomaly.create_detector('det_rbig', 's_adm.rbig', ARRAY['v'],
	options => '{"number_of_trees": 5, "sub_sample_size": 16, "shingle_size": 1,
		"retention": "1000 years"}');
INSERT INTO s_adm.rbig (v) SELECT g FROM generate_series(1, 10) g;
SELECT anomaly.process('det_rbig');
}, "$label: 1000 years accepted", db => 'wdb');
	as_role_err($node, 'adm', q{SELECT anomaly.alter_detector('det_rbig', options => '{"retention": "1000 years 1 day"}');},
		qr/retention.*at most 1000 years/, "$label: refused by alter_detector", db => 'wdb');
	# a row that an older version accepted: the others' rounds go on
	$node->safe_psql('wdb', q{
UPDATE anomaly.detectors SET options = options || '{"retention": "170000000 years"}' WHERE name = 'det_rbig';});
	as_role_ok($node, 'adm2', q{
CREATE TABLE s_adm2.r2 (id bigserial PRIMARY KEY, v float8);
SELECT anomaly.create_detector('det_r2', 's_adm2.r2', ARRAY['v'],
	options => '{"number_of_trees": 5, "sub_sample_size": 16, "shingle_size": 1}');
INSERT INTO s_adm2.r2 (v) SELECT g FROM generate_series(1, 10) g;
SELECT anomaly.process();
}, "$label: adm2's process() runs", db => 'wdb');
	is($node->safe_psql('wdb', q{
		SELECT count(*) FILTER (WHERE detector = 'det_r2') || '|' || count(*) FILTER (WHERE detector = 'det_rbig')
		FROM anomaly.scores}), '10|10', "$label: adm2's rows scored, adm's scores kept");
	$node->safe_psql('wdb', q{
UPDATE anomaly.detectors SET options = options || '{"retention": "1000 years"}' WHERE name = 'det_rbig';});
	assert_no_superuser($node, $label);
	assert_alive($node, $label);
}

# -------------------------------------------------------------------------
# Dead letters name their destination only: adm dropped a destination
# (force => true moves its queue to the dead letters), adm2 created one of
# the same name and saw adm's dead letters (payloads with source rows)
# through row level security, and replay_dead_letters() sent them to
# adm2's destination.  A destination's dead letters are those queued since
# it was created.
{
	my $label = 'dead letters of a dropped destination under its name';
	as_role_ok($node, 'adm', q{
SELECT anomaly.create_destination('dl_name', 'notify', '{"channel": "dl"}');
SELECT anomaly.alter_destination('dl_name', enabled => false);
SELECT anomaly.send_alert('dl_name', 'adm private subject', '{"secret": "adm private body"}');
SELECT anomaly.drop_destination('dl_name', force => true);
}, "$label: adm queues a notification, drops the destination with force");
	is($node->safe_psql('postgres', q{SELECT count(*) FROM anomaly.dead_letters WHERE destination = 'dl_name'}),
		'1', "$label: the notification is a dead letter");
	my $out = as_role_ok($node, 'adm2', q{
SELECT anomaly.create_destination('dl_name', 'notify', '{"channel": "dl2"}');
SELECT 'seen=' || count(*) FROM anomaly.dead_letters WHERE destination = 'dl_name';
SELECT 'status=' || coalesce(sum(dead_letters), 0) FROM anomaly.delivery_status WHERE destination = 'dl_name';
SELECT 'replayed=' || anomaly.replay_dead_letters('dl_name');
SELECT 'purged=' || anomaly.purge_alert_history('0 s');
}, "$label: adm2 makes a destination of the same name");
	like($out, qr/seen=0\n.*replayed=0\npurged=0/s, "$label: adm2 neither sees, replays nor purges them")
		or diag($out);
	unlike($out, qr/status=[1-9]/, "$label: nor counts them in delivery_status");
	is($node->safe_psql('postgres', q{
		SELECT count(*) || '|' || (SELECT count(*) FROM anomaly.outbox WHERE destination = 'dl_name')
		FROM anomaly.dead_letters WHERE destination = 'dl_name'}),
		'1|0', "$label: the dead letter stays (for superusers), nothing queued");
	# a transaction begun before the drop: its now() is older than the letter
	my $begun = $node->background_psql('postgres', extra_params => [ '-U', 'adm2' ]);
	$begun->query_safe(q{BEGIN; SELECT now();});
	as_role_ok($node, 'adm', q{
SELECT anomaly.create_destination('dl_two', 'notify', '{"channel": "dl"}');
SELECT anomaly.alter_destination('dl_two', enabled => false);
SELECT anomaly.send_alert('dl_two', 'adm private subject', '{"secret": "adm private body"}');
SELECT anomaly.drop_destination('dl_two', force => true);
}, "$label: adm drops another while adm2's transaction is open");
	$begun->query_safe(q{SELECT anomaly.create_destination('dl_two', 'notify', '{"channel": "dl2"}');});
	is($begun->query_safe(q{SELECT count(*) FROM anomaly.dead_letters WHERE destination = 'dl_two'}),
		'0', "$label: adm2 does not see them from a transaction older than the drop");
	$begun->query_safe(q{COMMIT;});
	$begun->quit;
	# the owner's own: created with its destination in one transaction
	as_role_ok($node, 'adm', q{
BEGIN;
SELECT anomaly.create_destination('dl_own', 'notify', '{"channel": "dl"}');
SELECT anomaly.alter_destination('dl_own', enabled => false);
SELECT anomaly.send_alert('dl_own', 'own', '{}');
COMMIT;
}, "$label: adm queues to a destination made in the same transaction");
	$node->safe_psql('postgres', q{
WITH gone AS (DELETE FROM anomaly.outbox WHERE destination = 'dl_own' RETURNING *)
INSERT INTO anomaly.dead_letters (outbox_id, destination, subject, payload, dedup_id, attempts, created_at, error)
SELECT id, destination, subject, payload, 'x', attempts, created_at, 'test' FROM gone;});
	like(as_role_ok($node, 'adm', q{SELECT 'own=' || count(*) FROM anomaly.dead_letters WHERE destination = 'dl_own';},
		"$label: adm reads its dead letters"), qr/own=1/, "$label: the owner sees its own");
	assert_no_superuser($node, $label);
	assert_alive($node, $label);
}

# -------------------------------------------------------------------------
# A notification's payload had no size bound: send_alert() with a 200 MB
# body (or alert_trigger on a table with such a row) made the superuser's
# sender allocate about 1.2 GB for that one row, and a batch of them
# (anomaly.sender_batch rows per round) many GB, enough to bring the
# server down through the kernel's OOM killer.  Payloads are cut to 1 MB
# when queued (the largest values first, listed in "truncated").
{
	my $label = 'a notification payload\'s size';
	as_role_ok($node, 'adm', q{
SELECT anomaly.create_destination('big_pay', 'notify', '{"channel": "big"}');
SELECT anomaly.alter_destination('big_pay', enabled => false);
SELECT anomaly.send_alert('big_pay', 'big', jsonb_build_object('v', repeat('x', 5000000), 'w', 'kept'));
CREATE TABLE s_adm.bigrow (id int, t text);
CREATE TRIGGER t AFTER INSERT ON s_adm.bigrow FOR EACH ROW
	EXECUTE FUNCTION anomaly.alert_trigger('big_pay', 'row', 'info');
INSERT INTO s_adm.bigrow VALUES (1, repeat('y', 3000000));
}, "$label: adm queues a 5 MB body and a 3 MB row");
	is($node->safe_psql('postgres', q{
		SELECT count(*) || '|' || bool_and(octet_length(payload::text) <= 1048576)
			|| '|' || bool_and(payload ? 'truncated') || '|' || bool_and(payload ->> 'fingerprint' IS NOT NULL)
		FROM anomaly.outbox WHERE destination = 'big_pay'}),
		'2|true|true|true', "$label: both stored cut to 1 MB, the cut listed");
	is($node->safe_psql('postgres', q{
		SELECT string_agg((payload -> 'truncated')::text || ' ' || (payload ->> 'alert'), ',' ORDER BY id)
		FROM anomaly.outbox WHERE destination = 'big_pay'}), '["details"] big,["details"] row',
		"$label: the large value cut, the others kept");
	assert_no_superuser($node, $label);
	assert_alive($node, $label);
}

done_testing();
