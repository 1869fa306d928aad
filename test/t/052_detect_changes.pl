# Bad input and change, with the background worker: NULL and non-numeric
# feature values, an expression that raises for some rows (recorded as
# failed, the detector goes on), the source altered or dropped (the
# detector stops with a clear error, and is not restarted in a loop),
# privileges (a non-superuser's expressions run as that role, and lose
# access when it does), and drop_detector / DROP EXTENSION dropping the
# slots the workers hold, so no WAL stays pinned.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use FindBin;
use lib "$FindBin::RealBin/..";
use DetectTest;
use Time::HiRes qw(sleep);

my $node = detector_node('detect_changes');

sub sq { return $node->safe_psql('postgres', $_[0]); }

# Waits until the query returns the expected value.
sub wait_for
{
	my ($sql, $expected, $what) = @_;
	ok($node->poll_query_until('postgres', $sql, $expected), $what);
}

sq(q{
	CREATE EXTENSION anomaly;
	CREATE TABLE m (id int PRIMARY KEY, k text, v text, d double precision);
	SELECT anomaly.create_detector('m', 'm', ARRAY['v::float8', '10 / d'],
		partition_by => 'k',
		options => '{"number_of_trees": 10, "sub_sample_size": 16}');
});

# NULLs, text that is no number, a division by zero, NaN.
sq(q{
	INSERT INTO m SELECT g, 'a', g::text, 1 FROM generate_series(1, 20) g;
	INSERT INTO m VALUES (21, 'a', NULL, 1), (22, 'a', 'seven', 1), (23, 'b', '5', 0),
		(24, 'b', 'NaN', 1), (25, NULL, '6', 2), (26, 'a', '7', NULL);
});
wait_for(q{SELECT rows_scored + rows_failed FROM anomaly.detectors WHERE name = 'm'},
	'26', 'every row was either scored or recorded as failed');
is(sq(q{SELECT state, rows_scored, rows_failed FROM anomaly.detectors WHERE name = 'm'}),
	'active|23|3', 'the detector goes on: 23 scored (2 with a NULL score), 3 failed');
is(sq(q{SELECT string_agg(source_key->>'id' || ':' || sqlstate, ',' ORDER BY id)
	FROM anomaly.detector_failures WHERE detector = 'm'}),
	'22:22P02,23:22012,24:22023', 'failed rows are recorded with their reason');
is(sq(q{SELECT count(*) FROM anomaly.detector_failures WHERE reason = ''}), '0',
	'every failure has a reason');
is(sq(q{SELECT string_agg(source_key->>'id', ',' ORDER BY id) FROM anomaly.scores
	WHERE detector = 'm' AND anomaly_score IS NULL}),
	'21,26', 'rows with a NULL feature get a NULL score');
is(sq(q{SELECT count(*) FROM anomaly.scores WHERE detector = 'm' AND partition_key IS NULL}),
	'1', 'a NULL partition key is a key of its own');

# The source altered: a column the detector uses is dropped.
sq(q{ALTER TABLE m DROP COLUMN d});
sq(q{INSERT INTO m VALUES (27, 'a', '8')});
wait_for(q{SELECT state FROM anomaly.detectors WHERE name = 'm'}, 'failed',
	'dropping a column stops the detector');
like(sq(q{SELECT last_error FROM anomaly.detector_status WHERE name = 'm'}),
	qr/was altered: column "d" was dropped/, 'with a clear error');
sleep(2);
is(sq(q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'anomaly detector'}),
	'0', 'no worker runs for a failed detector');
is(sq(q{SELECT error_count FROM anomaly.detectors WHERE name = 'm'}), '1',
	'and it is not retried in a loop');
is(sq(q{SELECT slot_active FROM anomaly.detector_status WHERE name = 'm'}), 'f',
	'its slot is released');

# alter_detector adopts the new shape; resume goes on from where it stopped.
sq(q{SELECT anomaly.alter_detector('m', features => ARRAY['v::float8'])});
sq(q{SELECT anomaly.resume_detector('m')});
wait_for(q{SELECT count(*) FROM anomaly.scores WHERE detector = 'm' AND source_key->>'id' = '27'},
	'1', 'after alter and resume the row written meanwhile is scored');

# The source dropped.
sq(q{DROP TABLE m});
wait_for(q{SELECT state FROM anomaly.detectors WHERE name = 'm'}, 'failed',
	'dropping the source stops the detector');
like(sq(q{SELECT last_error FROM anomaly.detector_status WHERE name = 'm'}),
	qr/source table public\.m of detector "m" was dropped/, 'with a clear error');
is(sq(q{SELECT source_exists FROM anomaly.detector_status WHERE name = 'm'}), 'f',
	'detector_status shows the source is gone');
sleep(2);
is(sq(q{SELECT error_count FROM anomaly.detectors WHERE name = 'm'}), '1',
	'a dropped source is not retried in a loop');
sq(q{SELECT anomaly.drop_detector('m')});
is(sq(q{SELECT count(*) FROM pg_replication_slots}), '0', 'drop_detector dropped its slot');

# Privileges: a non-superuser's detector.
sq(q{
	CREATE ROLE alice LOGIN;
	GRANT anomaly_admin TO alice;
	CREATE TABLE t (id int PRIMARY KEY, v double precision);
	CREATE TABLE secret (v double precision);
	CREATE TABLE seen (who text, userid text);
	GRANT SELECT ON t TO alice;
	GRANT INSERT ON seen TO alice;
	CREATE FUNCTION whoami() RETURNS double precision LANGUAGE plpgsql AS $$
	BEGIN
		INSERT INTO seen VALUES (current_user, session_user);
		RETURN 1;
	END $$;
});
my ($ret, $out, $err) = $node->psql('postgres',
	q{SELECT anomaly.create_detector('x', 'secret', ARRAY['v'])},
	extra_params => [ '-U', 'alice' ]);
like($err, qr/permission denied for table secret/,
	'a role that may not read a table cannot create a detector on it');
($ret, $out, $err) = $node->psql('postgres',
	q{SELECT anomaly.create_detector('x', 't', ARRAY['(SELECT max(v) FROM secret)'])},
	extra_params => [ '-U', 'alice' ]);
like($err, qr/permission denied for table secret/,
	'nor read another table through an expression');
$node->safe_psql('postgres',
	q{SELECT anomaly.create_detector('alices', 't', ARRAY['whoami()', 'v'],
		options => '{"number_of_trees": 5, "sub_sample_size": 10}')},
	extra_params => [ '-U', 'alice' ]);
sq(q{INSERT INTO t SELECT g, g FROM generate_series(1, 5) g});
wait_for(q{SELECT rows_scored FROM anomaly.detectors WHERE name = 'alices'}, '5',
	"the worker scored alice's rows");
is(sq(q{SELECT string_agg(DISTINCT who, ',') FROM seen}), 'alice',
	"expressions run as the detector's owner, not as the worker's superuser");
sq(q{REVOKE SELECT ON t FROM alice});
sq(q{INSERT INTO t VALUES (6, 6)});
wait_for(q{SELECT state FROM anomaly.detectors WHERE name = 'alices'}, 'failed',
	'when the owner loses SELECT on the source, the detector stops');
like(sq(q{SELECT last_error FROM anomaly.detector_status WHERE name = 'alices'}),
	qr/permission denied for table public\.t/, 'with a clear error');
is(sq(q{SELECT count(*) FROM anomaly.scores WHERE detector = 'alices'}), '5',
	'and nothing more is scored');

# drop_detector while the worker holds the slot.
sq(q{
	CREATE TABLE u (id int PRIMARY KEY, v double precision);
	SELECT anomaly.create_detector('u1', 'u', ARRAY['v']);
	SELECT anomaly.create_detector('u2', 'u', ARRAY['v * 2']);
	INSERT INTO u SELECT g, g FROM generate_series(1, 100) g;
});
wait_for(q{SELECT count(*) FROM anomaly.detector_status WHERE name IN ('u1', 'u2') AND slot_active},
	'2', 'two workers hold their slots');
sq(q{SELECT anomaly.drop_detector('u1')});
is(sq(q{SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'anomaly%'}), '2',
	'drop_detector dropped the slot its worker held (u2 and the failed alices remain)');

# DROP EXTENSION drops every slot, held or not.
sq(q{INSERT INTO u SELECT g, g FROM generate_series(101, 200) g});
wait_for(q{SELECT slot_active FROM anomaly.detector_status WHERE name = 'u2'}, 't',
	'the worker of u2 holds its slot');
sq(q{DROP EXTENSION anomaly});
is(sq(q{SELECT count(*) FROM pg_replication_slots}), '0', 'DROP EXTENSION dropped the slots');
is(sq(q{SELECT count(*) FROM pg_replication_origin WHERE roname LIKE 'anomaly%'}), '0',
	'and the replication origins');
sleep(2);
is(sq(q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'anomaly detector'}), '0',
	'no detector worker is left');
like(sq(q{SELECT pg_is_in_recovery()::text}), qr/false/, 'the server did not crash');
my $log = slurp_file($node->logfile);
unlike($log, qr/terminated by signal|PANIC/, 'no process crashed');

# The extension comes back cleanly.
sq(q{CREATE EXTENSION anomaly});
sq(q{SELECT anomaly.create_detector('again', 'u', ARRAY['v'])});
sq(q{INSERT INTO u VALUES (1000, 1)});
wait_for(q{SELECT rows_scored FROM anomaly.detectors WHERE name = 'again'}, '1',
	'a new detector works after DROP and CREATE EXTENSION');

$node->stop;
done_testing();
