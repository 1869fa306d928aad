# Detectors take turns on the workers: with more active detectors than
# anomaly.detector_workers, a worker that has had its detector for
# anomaly.detector_time_slice gives it up after its round and the detector
# that has waited longest gets the slot.  Before, the detectors that found
# every worker taken were never served by a worker at all (only by
# process()); the first ones created kept the workers for good, so one
# admin's detectors could keep another's from ever running.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

use FindBin;
use lib "$FindBin::RealBin/..";
use DetectTest;

my $node = detector_node('detect_turns',
	'anomaly.detector_workers' => 2,
	'anomaly.detector_time_slice' => "'300ms'");

my $opts = q{'{"number_of_trees": 5, "sub_sample_size": 16, "shingle_size": 1}'};
$node->safe_psql('postgres', qq{
	CREATE EXTENSION anomaly;
	CREATE ROLE bob LOGIN;
	GRANT anomaly_admin TO bob;
	CREATE TABLE s1 (id bigserial PRIMARY KEY, v float8);
	CREATE TABLE s2 (id bigserial PRIMARY KEY, v float8);
	CREATE TABLE s3 (id bigserial PRIMARY KEY, v float8);
	CREATE TABLE bs (id bigserial PRIMARY KEY, v float8);
	ALTER TABLE bs OWNER TO bob;
	SELECT anomaly.create_detector('a1', 's1', ARRAY['v'], options => $opts);
	SELECT anomaly.create_detector('a2', 's2', ARRAY['v'], options => $opts);
	SELECT anomaly.create_detector('a3', 's3', ARRAY['v'], options => $opts);
	SET ROLE bob;
	SELECT anomaly.create_detector('b1', 'bs', ARRAY['v'], options => $opts);
});

# Three times: rows for every detector, then every detector scores them,
# by its worker's turns (nobody calls process()).
for my $round (1 .. 3)
{
	$node->safe_psql('postgres', q{
		INSERT INTO s1 (v) SELECT sin(g) FROM generate_series(1, 20) g;
		INSERT INTO s2 (v) SELECT sin(g) FROM generate_series(1, 20) g;
		INSERT INTO s3 (v) SELECT sin(g) FROM generate_series(1, 20) g;
		INSERT INTO bs (v) SELECT sin(g) FROM generate_series(1, 20) g;
	});
	my $want = 20 * $round;
	ok($node->poll_query_until('postgres', qq{
		SELECT count(*) = 4 FROM anomaly.detectors WHERE rows_scored = $want}),
		"round $round: each of four detectors on two workers scored its $want rows");
}
is($node->safe_psql('postgres', q{
	SELECT string_agg(detector || '=' || n, ' ' ORDER BY detector) FROM (
		SELECT detector, count(*) || '/' || count(DISTINCT source_key) AS n
		FROM anomaly.scores GROUP BY detector) x}),
	'a1=60/60 a2=60/60 a3=60/60 b1=60/60', 'every row scored once, whatever the turns');

# Why some detector is waiting, while they take turns.
ok($node->poll_query_until('postgres', q{
	SELECT anomaly._worker_note('detector') =
		'no worker: 4 active detectors take turns on the 2 anomaly.detector_workers of this database'}),
	'the note says they take turns');

# With enough workers, each keeps its own: no note.
$node->append_conf('postgresql.conf', "anomaly.detector_workers = 4\n");
$node->reload;
ok($node->poll_query_until('postgres', q{SELECT anomaly._worker_note('detector') IS NULL}),
	'four workers for four detectors: nobody waits');
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 4 FROM pg_stat_activity WHERE backend_type = 'anomaly detector'}),
	'four detector workers run');
my $pids = $node->safe_psql('postgres', q{
	SELECT string_agg(pid::text, ',' ORDER BY pid) FROM pg_stat_activity
	WHERE backend_type = 'anomaly detector'});
sleep(2);
is($node->safe_psql('postgres', q{
	SELECT string_agg(pid::text, ',' ORDER BY pid) FROM pg_stat_activity
	WHERE backend_type = 'anomaly detector'}),
	$pids, 'with nobody waiting, no worker gives its detector up');

# DROP EXTENSION anomaly stops the detector workers before it takes its
# locks (a round's locks against DROP's could deadlock), but only for a
# role that may drop it: anybody else's attempt fails and stops nothing.
my ($drc, $dout, $derr) = $node->psql('postgres', q{SET ROLE bob; DROP EXTENSION anomaly;});
like($derr, qr/must be owner of extension anomaly/, "bob may not drop the extension");
sleep(1);
is($node->safe_psql('postgres', q{
	SELECT string_agg(pid::text, ',' ORDER BY pid) FROM pg_stat_activity
	WHERE backend_type = 'anomaly detector'}),
	$pids, 'and his attempt stopped no worker');

# A worker asked to give up its detector does so between rounds only: one
# stuck in a long round (here about a second per row) must not stop the
# turns of the others.  slow is created first, so its worker is the oldest
# and is asked first; a slice later another is asked.
$node->append_conf('postgresql.conf', "anomaly.detector_workers = 2\n");
$node->reload;
$node->safe_psql('postgres', qq{
	CREATE TABLE ss (id bigserial PRIMARY KEY, v float8);
	CREATE FUNCTION slowly(x float8) RETURNS float8 LANGUAGE sql
		AS 'SELECT pg_sleep(1); SELECT x';
	SELECT anomaly.pause_detector('a1');
	SELECT anomaly.pause_detector('a2');
	SELECT anomaly.pause_detector('a3');
	SELECT anomaly.pause_detector('b1');
	SELECT anomaly.create_detector('slow', 'ss', ARRAY['slowly(v)'], options => $opts);
});
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'anomaly detector'}),
	'the slow detector has the first worker');
$node->safe_psql('postgres', q{INSERT INTO ss (v) SELECT g FROM generate_series(1, 40) g;});
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 1 FROM pg_stat_activity
	WHERE backend_type = 'anomaly detector' AND wait_event = 'PgSleep'}),
	'the slow detector is in its round');
$node->safe_psql('postgres', q{
	SELECT anomaly.resume_detector('a1');
	SELECT anomaly.resume_detector('a2');
	SELECT anomaly.resume_detector('a3');
	SELECT anomaly.resume_detector('b1');
	INSERT INTO s1 (v) SELECT sin(g) FROM generate_series(1, 20) g;
	INSERT INTO s2 (v) SELECT sin(g) FROM generate_series(1, 20) g;
	INSERT INTO s3 (v) SELECT sin(g) FROM generate_series(1, 20) g;
	INSERT INTO bs (v) SELECT sin(g) FROM generate_series(1, 20) g;
});
my $t0 = time();
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 4 FROM anomaly.detectors WHERE rows_scored = 80}),
	'the other four score their rows while the slow one is in its round');
my $took = time() - $t0;
note(sprintf('the four scored in %.1f s', $took));
cmp_ok($node->safe_psql('postgres', q{SELECT rows_scored FROM anomaly.detectors WHERE name = 'slow'}),
	'<', 40, 'meanwhile the slow round (about 40 s) has not ended');
$node->safe_psql('postgres', q{SELECT anomaly.drop_detector('slow')});

# A cap on the detectors (replication slots) one role may own: bob has one.
$node->append_conf('postgresql.conf', "anomaly.max_detectors_per_owner = 1\n");
$node->reload;
$node->safe_psql('postgres', q{CREATE TABLE bs2 (id bigserial PRIMARY KEY, v float8);
	ALTER TABLE bs2 OWNER TO bob;});
my ($rc, $out, $err) = $node->psql('postgres', qq{\\set VERBOSITY verbose
	SET ROLE bob;
	SELECT anomaly.create_detector('b2', 'bs2', ARRAY['v'], options => $opts);});
like($err, qr/ERROR:  53400: role "bob" already owns 1 detectors in this database.*DETAIL:  anomaly.max_detectors_per_owner is 1/s,
	'a second detector of bob is refused (configuration_limit_exceeded)');
is($node->safe_psql('postgres', q{SELECT count(*) FROM anomaly.detectors WHERE name = 'b2'}), '0',
	'nothing of it is left');
$node->safe_psql('postgres', qq{SELECT anomaly.create_detector('a4', 'bs2', ARRAY['v'], options => $opts);});
is($node->safe_psql('postgres', q{SELECT count(*) FROM anomaly.detectors}), '5',
	'a superuser is not limited');
$node->safe_psql('postgres', q{SELECT anomaly.drop_detector('b1')});
$node->safe_psql('postgres', qq{SET ROLE bob;
	SELECT anomaly.create_detector('b2', 'bs2', ARRAY['v'], options => $opts);});
is($node->safe_psql('postgres', q{SELECT pg_get_userbyid(owner) FROM anomaly.detectors WHERE name = 'b2'}),
	'bob', 'once bob dropped one, he may create another');

$node->stop;
done_testing();
