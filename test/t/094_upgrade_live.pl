# A live upgrade, as a user runs it: a cluster runs an earlier release's
# library and SQL (built from its git commit by test/old_release.sh), with a
# running detector (its slot, progress and forests), a stored model,
# destinations, an alert rule and queued alerts; the new package's files
# replace the old ones under the running server, the server restarts,
# ALTER EXTENSION anomaly UPDATE runs.  Rows committed before, during and
# after the upgrade are each scored exactly once, with the scores an
# uninterrupted detector gives (the forests carry over); every queued alert
# and every alert of the rule reaches a loopback webhook receiver exactly
# once; the stored model scores as before.
#
# The earlier releases' files are built from git history (OldRelease.pm);
# without it the test skips, saying why.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/..";
use lib "$FindBin::RealBin/../servers";
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use AlertTest;
use DetectTest;
use OldRelease;

my %old = map { $_ => old_release($_) } @RELEASES;

# The new package's files, where make install put them.
my ($pkglibdir, $sharedir) = map { pg_dir($_) } qw(pkglibdir sharedir);

# The inode of the anomaly.so the postmaster has mapped (a replaced file
# keeps its inode in the mapping).
sub mapped_library
{
	my ($node) = @_;
	my $pid = (split /\n/, slurp_file($node->data_dir . '/postmaster.pid'))[0];
	foreach my $line (split /\n/, slurp_file("/proc/$pid/maps"))
	{
		my @f = split ' ', $line;
		return $f[4] if @f >= 6 && $f[5] =~ m{/anomaly\.so$};
	}
	return undef;
}

foreach my $from (@RELEASES)
{
	my ($install, $libdir, $extdir) =
	  private_installation(PostgreSQL::Test::Utils::tempdir() . '/pg');
	install_package($libdir, $extdir, map { "$old{$from}/$_" }
		  ('anomaly.so', 'anomaly.control', "anomaly--$from.sql"));

	my $hook = start_server('webhook_receiver.py');
	my @logs = ($hook->{log});
	my $url = "http://127.0.0.1:$hook->{port}/hook";

	my $node = PostgreSQL::Test::Cluster->new("live_$from", install_path => $install);
	$node->init(allows_streaming => 'logical');
	$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'anomaly'
anomaly.detector_database = 'postgres'
anomaly.detector_naptime = 50
anomaly.sender_database = 'postgres'
anomaly.retry_base = '20ms'
anomaly.retry_max = '200ms'
anomaly.max_attempts = 1000
max_worker_processes = 16
jit = off
fsync = off
lc_messages = 'C'
});
	$node->start;
	is($node->safe_psql('postgres', 'CREATE EXTENSION anomaly; '
			. q{SELECT extversion FROM pg_extension WHERE extname = 'anomaly'}),
		$from, "$from: the cluster runs release ${from}'s SQL");
	is(mapped_library($node), (stat("$libdir/anomaly.so"))[1],
		"$from: and its library");

	# each kind of object, made with the old release
	$node->safe_psql('postgres', qq{
		CREATE TABLE src (id bigserial PRIMARY KEY, k int NOT NULL, v double precision NOT NULL);
		CREATE TABLE models AS
			SELECT anomaly.rcf_train(ARRAY[10 * sin(t / 7.0) + (t % 3)] ORDER BY t) AS m
			FROM generate_series(1, 2000) t;
		SELECT anomaly.create_detector('live', 'src', ARRAY['v'], partition_by => 'k',
			options => '{"number_of_trees": 20, "sub_sample_size": 32, "seed": 7}');
		SELECT anomaly.create_destination('hook', 'webhook', '{"url": "$url"}');
		SELECT anomaly.create_destination('ops', 'notify', '{"channel": "ops"}');
		SELECT anomaly.create_alert_rule('spikes', 'live', destination => 'hook', min_score => 2.5);
	});
	my $model_score = $node->safe_psql('postgres', 'SELECT anomaly.rcf_score(m, ARRAY[42.0]) FROM models');
	my $slot = $node->safe_psql('postgres', q{SELECT slot_name FROM anomaly.detectors WHERE name = 'live'});

	# Rows for keys 1..3, a smooth series with one spike per batch at key
	# $spike; alerts numbered $first..$last.
	my $batch = 0;
	my $insert = sub {
		my ($spike) = @_;
		$batch++;
		$node->safe_psql('postgres', qq{
			INSERT INTO src (k, v)
			SELECT 1 + g % 3, CASE WHEN g = 150 + $spike THEN 1000 ELSE sin(g / 5.0 + $batch) END
			FROM generate_series(1, 300) g});
	};
	my $alerts = sub {
		my ($first, $last) = @_;
		$node->safe_psql('postgres', qq{
			SELECT count(anomaly.send_alert('hook', 'alert ' || i, jsonb_build_object('n', i)))
			FROM generate_series($first, $last) i});
	};
	my $caught_up = sub {
		return $node->poll_query_until('postgres', q{
			SELECT (SELECT count(*) FROM anomaly.scores WHERE detector = 'live') =
			       (SELECT count(*) FROM src)});
	};

	# before: scored and delivered by the old release
	$insert->(0);
	$insert->(1);
	$alerts->(1, 50);
	ok($caught_up->(), "$from: the old release scores the rows committed before the upgrade");
	ok(wait_for(60, sub {
				$node->safe_psql('postgres', 'SELECT count(*) FROM anomaly.outbox') eq '0' }),
		"$from: and delivers the alerts queued before it");

	my $last_before = $node->safe_psql('postgres', 'SELECT max(id) FROM src');

	# during: the receiver is down, so alerts wait in the outbox; rows are
	# committed before the new files are installed, after, and after the
	# restart with the new library under the old SQL
	stop_server($hook);
	$alerts->(51, 100);
	$insert->(2);
	install_package($libdir, $extdir,
		"$pkglibdir/anomaly.so", "$sharedir/extension/anomaly.control",
		glob("$sharedir/extension/anomaly--*.sql"));
	$insert->(0);
	$alerts->(101, 120);
	# a setting the new release needs for a loopback receiver
	$node->append_conf('postgresql.conf',
		"anomaly.allowed_destination_hosts = '127.0.0.1, ::1'\n");
	$node->restart;
	is(mapped_library($node), (stat("$libdir/anomaly.so"))[1],
		"$from: after the restart the server runs the new library");
	$insert->(1);
	$hook = start_server('webhook_receiver.py', '--port', $hook->{port});
	push @logs, $hook->{log};

	$node->safe_psql('postgres', 'ALTER EXTENSION anomaly UPDATE');
	my $current = $node->safe_psql('postgres',
		q{SELECT extversion FROM pg_extension WHERE extname = 'anomaly'});
	isnt($current, $from, "$from: updated to $current");

	# after
	$insert->(2);
	$alerts->(121, 150);
	ok($caught_up->(), "$from: every row committed before, during and after the upgrade is scored");

	is($node->safe_psql('postgres', q{
		SELECT count(*) FROM src s
		WHERE (SELECT count(*) FROM anomaly.scores c
		       WHERE c.detector = 'live' AND (c.source_key->>'id')::bigint = s.id) <> 1}),
		'0', "$from: each row has exactly one score");
	my ($compared, $differ, $graded_differ) = window_diff($node, detector => 'live',
		rows => 'src', key => 'k', point => 'ARRAY[v]',
		# Created by the old release: its options keep that release's
		# defaults (shingle 1, z_factor 3, CUSUM 12, no transform).
		params => '20, 32, 100000, 1, 7',
		grade_params => q{20, 32, 100000, 1, 7, z_factor => 3, cusum_threshold => 12, transform => 'none'},
		grades => 1);
	is("$compared|$differ|$graded_differ", ($batch * 300) . '|0|0',
		"$from: the scores are those of an uninterrupted detector (its forests carried over)");
	is($node->safe_psql('postgres', q{
		SELECT state, rows_failed, last_error IS NULL, slot_name
		FROM anomaly.detector_status WHERE name = 'live'}),
		"active|0|t|$slot", "$from: the detector is active on its slot, without errors");

	ok(wait_for(60, sub {
				$node->safe_psql('postgres', 'SELECT count(*) FROM anomaly.outbox') eq '0' }),
		"$from: the outbox drains after the upgrade");
	is($node->safe_psql('postgres', 'SELECT count(*) FROM anomaly.dead_letters'),
		'0', "$from: no alert went to the dead letters");
	my @got = map { read_jsonl($_) } @logs;
	my %n;
	$n{ $_->{body}{details}{n} }++ for grep { defined $_->{body}{details}{n} } @got;
	is(join(',', grep { ($n{$_} // 0) != 1 } 1 .. 150), '',
		"$from: each of the 150 queued alerts arrived exactly once");
	my %ep;
	$ep{"$_->{body}{episode}/$_->{body}{status}"}++
	  for grep { ($_->{body}{source} // '') eq 'rule' } @got;
	my $episodes = $node->safe_psql('postgres', q{
		SELECT string_agg(id || '/firing', ',' ORDER BY id) FROM anomaly.alert_episodes
		WHERE rule = 'spikes' AND notified});
	is(join(',', sort { $a <=> $b } grep { /firing/ } keys %ep), $episodes,
		"$from: each firing episode of the rule was delivered");
	is($node->safe_psql('postgres', qq{
		SELECT count(*) FILTER (WHERE (c.source_key->>'id')::bigint <= $last_before) > 0,
		       count(*) FILTER (WHERE (c.source_key->>'id')::bigint > $last_before) > 0
		FROM anomaly.alert_episodes e JOIN anomaly.scores c ON c.id = e.first_score_id
		WHERE e.rule = 'spikes' AND e.notified}),
		't|t', "$from: the rule fired on rows committed before the upgrade and on rows after");
	is(scalar(grep { $ep{$_} != 1 } keys %ep), 0, "$from: and none twice");

	is($node->safe_psql('postgres', 'SELECT anomaly.rcf_score(m, ARRAY[42.0]) FROM models'),
		$model_score, "$from: the stored model scores as before");
	is($node->safe_psql('postgres', q{
		SELECT string_agg(name || ':' || kind, ',' ORDER BY name) FROM anomaly.destinations}),
		'hook:webhook,ops:notify', "$from: the destinations are kept");

	$node->stop;
	stop_server($hook);
}

done_testing();
