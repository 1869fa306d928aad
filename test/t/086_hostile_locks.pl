# One tenant's lock against everyone's rounds: a detector's owner may lock
# its own tables (the source, a destination table) and keep the lock as long
# as it likes (BEGIN; LOCK TABLE ...; left open, a long ALTER TABLE, a
# CREATE INDEX).  A round that waited for such a lock held the detector's
# row and worker meanwhile, and a process() of every detector (a superuser's
# or pg_cron's) waited with it: the other owners' detectors were not scored
# until the lock went.  Rounds now take those locks only when free, skip the
# detector otherwise (its rows are scored, once, by a later round), and say
# so in detector_status.note.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/..";
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

use HostileTest;

my $node = new_hostile_node('hostile_locks');
$node->safe_psql('postgres', q{
ALTER SYSTEM SET log_min_messages = 'log';
SELECT pg_reload_conf();});

my $small = q{'{"number_of_trees": 5, "sub_sample_size": 16, "shingle_size": 1}'};

# rows of detector $det in anomaly.scores, and how many distinct source ids
sub scored
{
	my ($db, $det) = @_;
	return $node->safe_psql($db, qq{
		SELECT count(*) || '|' || count(DISTINCT source_key ->> 'id')
		FROM anomaly.scores WHERE detector = '$det'});
}

# ids of table $t not scored exactly once by $det (none: the empty string)
sub not_once
{
	my ($db, $t, $det) = @_;
	return $node->safe_psql($db, qq{
		SELECT string_agg(t.id::text || ':' || coalesce(s.n, 0), ',' ORDER BY t.id)
		FROM $t t LEFT JOIN (SELECT (source_key ->> 'id')::bigint AS id, count(*) AS n
			FROM anomaly.scores WHERE detector = '$det' GROUP BY 1) s ON s.id = t.id
		WHERE coalesce(s.n, 0) <> 1});
}

# the locks the processes named $app wait for (none: the empty string)
sub waits_of
{
	my ($db, $app) = @_;
	return $node->safe_psql($db, qq{
		SELECT string_agg(coalesce(l.relation::regclass::text, l.locktype) || ' ' || l.mode
			|| ' (' || a.wait_event_type || '/' || a.wait_event || ')', ', ')
		FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid AND NOT l.granted
		WHERE a.application_name = '$app'});
}

# -------------------------------------------------------------------------
# Background workers: adm locks its source table in a transaction left open.
{
	my $label = 'an owner\'s lock on its source table (workers)';
	as_role_ok($node, 'adm', qq{
CREATE TABLE s_adm.a (id bigserial PRIMARY KEY, v float8);
SELECT anomaly.create_detector('det_a', 's_adm.a', ARRAY['v'], options => $small);
INSERT INTO s_adm.a (v) SELECT g FROM generate_series(1, 20) g;
}, "$label: adm's detector det_a");
	as_role_ok($node, 'adm2', qq{
CREATE TABLE s_adm2.b (id bigserial PRIMARY KEY, v float8);
SELECT anomaly.create_detector('det_b', 's_adm2.b', ARRAY['v'], options => $small);
INSERT INTO s_adm2.b (v) SELECT g FROM generate_series(1, 20) g;
}, "$label: adm2's detector det_b");
	like(wait_detector($node, 'det_a', 20), qr/^active\|20\|/, "$label: det_a scores its rows");
	like(wait_detector($node, 'det_b', 20), qr/^active\|20\|/, "$label: det_b scores its rows");
	my $id_a = $node->safe_psql('postgres', q{SELECT id FROM anomaly.detectors WHERE name = 'det_a'});

	# rows inserted under the lock, committed with it
	as_role_ok($node, 'adm', q{INSERT INTO s_adm.a (v) SELECT g FROM generate_series(21, 30) g;},
		"$label: adm adds rows");
	like(wait_detector($node, 'det_a', 30), qr/^active\|30\|/, "$label: det_a scores them");
	my $lock = $node->background_psql('postgres', extra_params => [ '-U', 'adm' ],
		on_error_stop => 0);
	$lock->query_safe(q{BEGIN; LOCK TABLE s_adm.a IN ACCESS EXCLUSIVE MODE;
		INSERT INTO s_adm.a (v) SELECT g FROM generate_series(31, 35) g;});
	my $offset = -s $node->logfile;

	# det_b goes on: its rows are scored while det_a's table stays locked
	my $t0 = time();
	as_role_ok($node, 'adm2', q{INSERT INTO s_adm2.b (v) SELECT g FROM generate_series(21, 30) g;},
		"$label: adm2 adds rows");
	like(wait_detector($node, 'det_b', 30, secs => 20), qr/^active\|30\|/,
		"$label: det_b scores its new rows");
	my $waited = time() - $t0;
	ok($waited < 10, "$label: within 10 s") or diag(sprintf('after %.1f s', $waited));
	note(sprintf('det_b scored its rows %.2f s after they were committed', $waited));

	# det_a's worker does not sit in the lock queue of the table
	my $w = '';
	my $waits = 0;
	for (1 .. 10)
	{
		my $now = waits_of('postgres', "anomaly detector $id_a");
		$w = $now if $now ne '';
		$waits++ if $now ne '';
		Time::HiRes::sleep(0.2);
	}
	is($waits, 0, "$label: det_a's worker waits for no lock") or diag("it waited for: $w");
	my $note = as_role_ok($node, 'adm',
		q{SELECT state || '|' || coalesce(note, '') FROM anomaly.detector_status WHERE name = 'det_a';},
		"$label: adm reads det_a's status");
	like($note, qr/^active\|.*s_adm\.a.* locked/, "$label: its note says its source table is locked")
	  or diag($note);
	ok(wait_until(10, sub { substr(slurp_file($node->logfile), $offset)
		  =~ /LOG:  detector "det_a" skips its rounds: .*s_adm\.a/ }),
		"$label: and the server log says so");
	# the owner may manage its detector from the locking transaction (the
	# worker held the detector's row while it waited: a deadlock)
	$lock->query(q{SET statement_timeout = '20s';
		SELECT anomaly.alter_detector('det_a', options => '{"retention": "60 days"}');});
	unlike($lock->{stderr}, qr/ERROR/,
		"$label: adm alters det_a from the transaction that holds the lock");
	$lock->{stderr} = '';
	is(scored('postgres', 'det_a'), '30|30', "$label: det_a scored nothing meanwhile");

	# released: det_a catches up, each row scored once
	$lock->query_safe(q{COMMIT;});
	$lock->quit;
	like(wait_detector($node, 'det_a', 35), qr/^active\|35\|/, "$label: det_a catches up once released");
	is(not_once('postgres', 's_adm.a', 'det_a'), '', "$label: every row of det_a scored exactly once");
	is(scored('postgres', 'det_a'), '35|35', "$label: 35 scores, none twice");
	ok(wait_until(10, sub { as_role($node, 'adm',
		q{SELECT coalesce(note, '<none>') FROM anomaly.detector_status WHERE name = 'det_a';}) !~ /locked/ }),
		"$label: the note is gone once a round ran");
	assert_no_superuser($node, $label);
	assert_alive($node, $label);
}

# -------------------------------------------------------------------------
# process() of every detector (a superuser's, pg_cron's) in a database
# without workers: adm's locked source table and adm's destination table
# under a CREATE INDEX-like SHARE lock must not hold up adm2's detector.
$node->safe_psql('postgres', q{CREATE DATABASE wdb;});
$node->safe_psql('wdb', q{
	CREATE EXTENSION anomaly;
	CREATE SCHEMA s_adm AUTHORIZATION adm;
	CREATE SCHEMA s_adm2 AUTHORIZATION adm2;
});
{
	my $label = 'an owner\'s locks against process() of every detector';
	as_role_ok($node, 'adm', qq{
CREATE TABLE s_adm.a (id bigserial PRIMARY KEY, v float8);
SELECT anomaly.create_detector('det_a', 's_adm.a', ARRAY['v'], options => $small);
CREATE TABLE s_adm.c (id bigserial PRIMARY KEY, v float8);
CREATE TABLE s_adm.c_out (detector text, source_key jsonb, anomaly_score float8);
SELECT anomaly.create_detector('det_c', 's_adm.c', ARRAY['v'],
	options => jsonb_build_object('number_of_trees', 5, 'sub_sample_size', 16, 'shingle_size', 1,
		'destination', 's_adm.c_out'));
CREATE TABLE s_adm.d (id bigserial PRIMARY KEY, v float8);
SELECT anomaly.create_detector('det_d', 's_adm.d', ARRAY['v'], options => $small);
SELECT anomaly.create_destination('n_d', 'notify', '{"channel": "n_d"}');
SELECT anomaly.create_alert_rule('r_d', 'det_d', 'n_d', min_score => 0, group_by => '{source_key}');
INSERT INTO s_adm.a (v) SELECT g FROM generate_series(1, 20) g;
INSERT INTO s_adm.c (v) SELECT g FROM generate_series(1, 20) g;
INSERT INTO s_adm.d (v) SELECT g FROM generate_series(1, 20) g;
}, "$label: adm's detectors det_a, det_c (with a destination table) and det_d (with a rule)",
		db => 'wdb');
	as_role_ok($node, 'adm2', qq{
CREATE TABLE s_adm2.b (id bigserial PRIMARY KEY, v float8);
SELECT anomaly.create_detector('det_b', 's_adm2.b', ARRAY['v'], options => $small);
INSERT INTO s_adm2.b (v) SELECT g FROM generate_series(1, 20) g;
}, "$label: adm2's detector det_b", db => 'wdb');
	is($node->safe_psql('wdb', q{SELECT anomaly.process()}), '80', "$label: a first process() scores all");

	as_role_ok($node, 'adm', q{
INSERT INTO s_adm.a (v) SELECT g FROM generate_series(21, 30) g;
INSERT INTO s_adm.c (v) SELECT g FROM generate_series(21, 30) g;
INSERT INTO s_adm.d (v) SELECT g FROM generate_series(21, 30) g;
}, "$label: adm adds rows", db => 'wdb');
	as_role_ok($node, 'adm2', q{INSERT INTO s_adm2.b (v) SELECT g FROM generate_series(21, 30) g;},
		"$label: adm2 adds rows", db => 'wdb');
	my $lock = $node->background_psql('wdb', extra_params => [ '-U', 'adm' ]);
	$lock->query_safe(q{BEGIN; LOCK TABLE s_adm.a IN ACCESS EXCLUSIVE MODE;
		LOCK TABLE s_adm.c_out IN SHARE MODE;
		INSERT INTO s_adm.a (v) SELECT g FROM generate_series(31, 35) g;
		SELECT anomaly.alter_destination('n_d', enabled => true);});

	my $t0 = time();
	my ($rc, $out, $err, $timed_out) = ('', '', '', 0);
	# (before: a statement_timeout cancelled det_a's wait, then det_c's
	# waited on, past psql's timeout)
	$rc = $node->psql('wdb', q{SET statement_timeout = '20s'; SET application_name = 'lock_test';
		SELECT anomaly.process();},
		stdout => \$out, stderr => \$err, timeout => 40, timed_out => \$timed_out);
	my $waited = time() - $t0;
	note(sprintf('process() with three of four detectors locked took %.2f s', $waited));
	ok(!$timed_out && $rc == 0 && $waited < 10, "$label: a superuser's process() returns within 10 s")
	  or diag(sprintf('exit %s after %.1f s%s: %s', $rc, $waited, $timed_out ? ' (psql timed out)' : '', $err));
	is($out, '10', "$label: it scored det_b's 10 rows") or diag($err);
	like($err, qr/NOTICE:  detector "det_a" skipped: .*s_adm\.a.* locked/,
		"$label: and says det_a was skipped");
	like($err, qr/NOTICE:  detector "det_c" skipped: .*s_adm\.c_out.* locked/,
		"$label: and det_c, for its destination table");
	like($err, qr/NOTICE:  detector "det_d" skipped: a destination of one of its alert rules is locked/,
		"$label: and det_d, for its rule's destination");
	is(scored('wdb', 'det_b'), '30|30', "$label: det_b's rows are scored");
	is(scored('wdb', 'det_a') . ',' . scored('wdb', 'det_c') . ',' . scored('wdb', 'det_d'),
		'20|20,20|20,20|20', "$label: det_a's, det_c's and det_d's new rows wait");
	like(as_role_ok($node, 'adm', q{SELECT s.name || '=' || coalesce(s.note, '') || '|' || d.error_count
		FROM anomaly.detector_status s JOIN anomaly.detectors d USING (name) ORDER BY s.name;},
		"$label: adm reads its detectors' status", db => 'wdb'),
		qr/det_a=.*s_adm\.a.* locked.*\|0\ndet_c=.*s_adm\.c_out.* locked.*\|0\ndet_d=.*alert rules is locked.*\|0/,
		"$label: their notes say why, no error counted");

	# the owner's own process() of one detector may wait, as it chooses
	($rc, $out, $err) = as_role($node, 'adm',
		q{SET lock_timeout = '300ms'; SELECT anomaly.process('det_a');}, db => 'wdb');
	like($err, qr/WARNING:  detector "det_a": canceling statement due to lock timeout/,
		"$label: adm's process('det_a') waits for the lock (its lock_timeout ends the wait)");
	is($node->safe_psql('wdb', q{SELECT state || '|' || error_count FROM anomaly.detectors
		WHERE name = 'det_a'}), 'active|0', "$label: a lock timeout is no error of the detector");

	$lock->query_safe(q{COMMIT;});
	$lock->quit;
	is($node->safe_psql('wdb', q{SELECT anomaly.process()}), '35',
		"$label: released, the next process() scores det_a's 15 rows, det_c's 10 and det_d's 10");
	is($node->safe_psql('wdb', q{SELECT count(*) FROM s_adm.c_out}), '30',
		"$label: det_c's destination got each row once");
	is(not_once('wdb', 's_adm.a', 'det_a') . not_once('wdb', 's_adm.c', 'det_c')
		  . not_once('wdb', 's_adm.d', 'det_d') . not_once('wdb', 's_adm2.b', 'det_b'), '',
		"$label: every row of the four scored exactly once");
	is($node->safe_psql('wdb', q{SELECT string_agg(name || '=' || coalesce(note, ''), ',' ORDER BY name)
		FROM anomaly.detectors}), 'det_a=,det_b=,det_c=,det_d=', "$label: the notes are gone");
	assert_no_superuser($node, $label);
	assert_alive($node, $label);
}

done_testing();
