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
# The earlier release's files come from ANOMALY_OLD_RELEASES/VERSION/ when
# test/run_all.sh built them, else this test builds them (which needs git and
# the repository's history); without either it skips, saying why.
#
# Each later release adds its version to @releases (and its commit to
# test/old_release.sh).
use strict;
use warnings;

use Cwd qw(abs_path);
use File::Basename qw(dirname);
use File::Copy qw(copy);
use File::Path qw(make_path);
use FindBin;
use lib "$FindBin::RealBin/..";
use lib "$FindBin::RealBin/../servers";
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use AlertTest;
use DetectTest;

my @releases = ('0.1.0');

my $src = $ENV{ANOMALY_SRC} // abs_path("$FindBin::RealBin/../..");
my $pg_config = $ENV{PG_CONFIG} // 'pg_config';

# The files of each release: built by run_all.sh, or here.
my %old;
foreach my $v (@releases)
{
	my $dir = ($ENV{ANOMALY_OLD_RELEASES} // '') . "/$v";
	if (!-f "$dir/anomaly.so")
	{
		my $out = PostgreSQL::Test::Utils::tempdir();
		my ($stdout, $stderr);
		my $ok = IPC::Run::run([ 'bash', "$src/test/old_release.sh", $v, $out ],
			'>', \$stdout, '2>', \$stderr);
		if (!$ok)
		{
			my $why = (split /\n/, $stderr)[-1] // 'no output';
			plan skip_all => "the files of release $v cannot be built here: $why"
			  if ($? >> 8) == 2;
			BAIL_OUT("building release $v failed: $stderr");
		}
		$dir = "$out/$v";
	}
	$old{$v} = $dir;
}

# The PostgreSQL installation the tests run, and where the new package's
# files are installed in it.
my ($bindir, $pkglibdir, $sharedir) = map {
	my $d = `$pg_config --$_`;
	chomp $d;
	$d
} qw(bindir pkglibdir sharedir);

# A private copy of that installation, at the same relative places so that
# its binaries find their share directory (PostgreSQL locates it relative to
# the executable): its own extension directory and library directory, where
# the packages are installed and replaced while the server runs; the rest of
# the library directory is linked.  Returns the install path for
# PostgreSQL::Test::Cluster (the parent of bin).
sub private_installation
{
	my ($root) = @_;
	# the longest common directory prefix of the three
	my @parts = map { [ split m{/}, $_ ] } ($bindir, $pkglibdir, $sharedir);
	my $n = 0;
	while (1)
	{
		my $p = $parts[0][$n];
		last if !defined $p || grep { !defined $_->[$n] || $_->[$n] ne $p } @parts;
		$n++;
	}
	my $prefix = join('/', @{ $parts[0] }[ 0 .. $n - 1 ]);
	my %to = map { $_ => $root . substr($_, length($prefix)) } ($bindir, $pkglibdir, $sharedir);

	make_path(dirname($to{$bindir}), dirname($to{$sharedir}), $to{$pkglibdir});
	system('cp', '-a', $bindir, $to{$bindir}) == 0 or die "copying $bindir failed";
	system('cp', '-a', $sharedir, $to{$sharedir}) == 0 or die "copying $sharedir failed";
	unlink glob("$to{$sharedir}/extension/anomaly*");
	opendir(my $dh, $pkglibdir) or die "$pkglibdir: $!";
	foreach my $e (readdir $dh)
	{
		# anomaly's library and bitcode are the package's; jit is off
		next if $e =~ /^(\.|\.\.|anomaly\.so|bitcode)$/;
		symlink("$pkglibdir/$e", "$to{$pkglibdir}/$e") or die "symlink $e: $!";
	}
	closedir $dh;
	return ($to{$bindir} =~ s{/bin$}{}r, $to{$pkglibdir}, "$to{$sharedir}/extension");
}

# Installs a package's files as a package manager does under a running
# server: each written beside its place, then renamed over it (the server's
# processes keep the library they mapped).
sub install_package
{
	my ($libdir, $extdir, @files) = @_;
	foreach my $f (@files)
	{
		my $to = ($f =~ /\.so$/ ? $libdir : $extdir) . '/' . (split m{/}, $f)[-1];
		copy($f, "$to.new") or die "copy $f: $!";
		rename("$to.new", $to) or die "rename $to: $!";
	}
}

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

foreach my $from (@releases)
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
