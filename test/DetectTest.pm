
# DetectTest.pm - helpers of the detector TAP tests (test/t/05*_detect_*.pl).

package DetectTest;

use strict;
use warnings;

use Exporter 'import';

our @EXPORT = qw(window_diff logical_node detector_node crash_node pgbench_script
  mixed_load score_gaps crash_server start_call load_through_crashes);

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(sleep);
use IPC::Run;

use File::Basename qw(dirname);
use lib dirname(__FILE__);
use Poll;

# window_diff($node, %opt): compares the scores of a detector with what the
# window functions give over the same rows, per partition key in commit
# order, as the detector must.  Options:
#   detector  the detector's name
#   rows      a relation (or parenthesised query) of the source rows, with
#             an id column that is the detector's source key
#   key       the partition key column of rows
#   point     the point expression over rows' columns
#   params    random_cut_forest's (and detect()'s) positional parameters
#             after the point
#   grade_params  detect()'s, when they differ (grader parameters)
#   order     the order within a key (default 'commit_lsn, id')
#   grades    also compare grades, decisions and expected values with
#             detect()
#   db        the database (default postgres)
# Returns (rows compared, scores that differ, and with grades: rows whose
# grading differs, rows graded above 0, rows with expected values).
sub window_diff
{
	my ($node, %opt) = @_;
	my $order = $opt{order} // 'commit_lsn, id';
	my $window = "OVER (PARTITION BY $opt{key} ORDER BY $order)";
	my $sql = qq{
	WITH j AS (
		SELECT r.*, c.commit_lsn, c.anomaly_score, c.anomaly_grade, c.is_anomaly,
			c.expected AS expected_values
		FROM $opt{rows} r
		JOIN anomaly.scores c ON c.detector = '$opt{detector}'
			AND (c.source_key->>'id')::bigint = r.id),
	w AS (
		SELECT anomaly_score, anomaly_grade, is_anomaly, expected_values,
			anomaly.random_cut_forest($opt{point}, $opt{params}) $window AS expected};
	$sql .= qq{,
			anomaly.detect($opt{point}, @{[ $opt{grade_params} // $opt{params} ]}) $window AS d} if $opt{grades};
	$sql .= q{
		FROM j)
	SELECT count(*), count(*) FILTER (WHERE anomaly_score IS DISTINCT FROM expected)};
	$sql .= q{,
		count(*) FILTER (WHERE anomaly_grade IS DISTINCT FROM (d).anomaly_grade
			OR is_anomaly IS DISTINCT FROM (d).is_anomaly
			OR expected_values IS DISTINCT FROM (d).expected),
		count(*) FILTER (WHERE anomaly_grade > 0), count(expected_values)} if $opt{grades};
	$sql .= q{ FROM w};
	return split /\|/, $node->safe_psql($opt{db} // 'postgres', $sql);
}

# logical_node($name, %settings): a started cluster for logical decoding
# with %settings (name => value, as written in postgresql.conf).
sub logical_node
{
	my ($name, %conf) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init(allows_streaming => 'logical');
	$node->append_conf('postgresql.conf',
		join('', map { "$_ = $conf{$_}\n" } sort keys %conf));
	$node->start;
	return $node;
}

# detector_node($name, %settings): a started cluster for logical decoding
# with anomaly preloaded and the detector workers in database postgres,
# polling every 20 ms, up to 16 worker processes, warnings only in the log;
# %settings (name => value, as written in postgresql.conf) add to these or
# replace them.
sub detector_node
{
	my ($name, %settings) = @_;
	return logical_node($name,
		shared_preload_libraries => "'anomaly'",
		'anomaly.detector_database' => "'postgres'",
		'anomaly.detector_naptime' => 20,
		max_worker_processes => 16,
		log_min_messages => 'warning',
		%settings);
}

# crash_node($name, %settings): detector_node for a crash test: the
# postmaster restarts after a crash, statements are not logged (the loads
# would flood the log), and rand(), which picks the crash moments, is
# seeded from ANOMALY_DETECT_SEED (default: the time).
sub crash_node
{
	my ($name, %settings) = @_;
	srand($ENV{ANOMALY_DETECT_SEED} // time());
	return detector_node($name,
		restart_after_crash => 'on',
		log_statement => 'none',
		%settings);
}

# pgbench_script($file, $text): writes a pgbench script of the load into
# the test's tmp_check directory; returns its path.
sub pgbench_script
{
	my ($file, $text) = @_;
	my $path = "$PostgreSQL::Test::Utils::tmp_check/$file";
	open(my $fh, '>', $path) or die "could not write $path: $!";
	print $fh $text;
	close($fh);
	return $path;
}

# mixed_load($file, %load): the pgbench script (written by pgbench_script)
# of the detector tests' load.  Each transaction sets :k to a key (keys:
# its \set expression), :n to a size (sizes, when given) and :r to 1..100;
# for r up to rollback (percent) it runs rolled_back in a transaction that
# rolls back (rows no detector may score); up to rollback + big_share, big
# (rows over many keys); otherwise small.  commit => 1 runs big and small
# in explicit transactions too.
sub mixed_load
{
	my ($file, %load) = @_;
	my ($begin, $commit) = $load{commit} ? ("BEGIN;\n", "COMMIT;\n") : ('', '');
	my $script = "\n\\set k $load{keys}\n\\set r random(1, 100)\n";
	$script .= "\\set n $load{sizes}\n" if $load{sizes};
	$script .= "\\if :r <= $load{rollback}\nBEGIN;\n$load{rolled_back}\nROLLBACK;\n";
	$script .= sprintf("\\elif :r <= %d\n%s%s\n%s",
		$load{rollback} + $load{big_share}, $begin, $load{big}, $commit)
	  if $load{big};
	$script .= "\\else\n$begin$load{small}\n$commit\\endif\n";
	return pgbench_script($file, $script);
}

# score_gaps($node, $rows, $scores): how the score rows of relation (or
# parenthesised query) $scores cover the rows of $rows, whose id column is
# the source key: returns the number of rows with no score, of rows scored
# more than once, and of scores of no row (say, of a rolled-back one).
sub score_gaps
{
	my ($node, $rows, $scores) = @_;
	return split /\|/, $node->safe_psql('postgres', qq{
	SELECT (SELECT count(*) FROM $rows s
			WHERE NOT EXISTS (SELECT 1 FROM $scores c WHERE (c.source_key->>'id')::bigint = s.id)),
		(SELECT count(*) - count(DISTINCT source_key) FROM $scores c),
		(SELECT count(*) FROM $scores c
			WHERE NOT EXISTS (SELECT 1 FROM $rows s WHERE s.id = (c.source_key->>'id')::bigint))});
}

# crash_server($node, $i, $wait): the i-th crash of a crash test.  An odd
# one kills the detector worker (waiting up to $wait seconds for one to
# run) with SIGKILL, the postmaster then restarting every process; an even
# one stops the server in immediate mode and starts it again.  Returns
# when the server answers again, with the PID killed ('' when none was, or
# no worker ran).
sub crash_server
{
	my ($node, $i, $wait) = @_;
	my $pid = '';
	if ($i % 2 == 0)
	{
		$node->stop('immediate');
		note "crash $i: immediate stop";
		$node->start;
		return $pid;
	}
	wait_until($wait, sub {
		$pid = $node->safe_psql('postgres',
			q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'anomaly detector' LIMIT 1});
		return $pid =~ /^\d+$/;
	});
	if ($pid =~ /^\d+$/)
	{
		kill 'KILL', $pid;
		note "crash $i: SIGKILL to the detector worker $pid";
	}
	else
	{
		$pid = '';
		note "crash $i: no worker running; SIGKILL skipped";
	}
	# The postmaster restarts everything; wait for it.
	sleep(0.5);
	$node->poll_query_until('postgres', 'SELECT 1', '1')
	  or die "server did not come back after crash $i";
	return $pid;
}

# start_call($node, $sql): runs $sql (a CALL of a load procedure) in psql
# in the background; returns the IPC::Run handle (->finish waits for it;
# it fails when the server crashes under it, which the crash tests want).
sub start_call
{
	my ($node, $sql) = @_;
	my ($out, $err) = ('', '');
	return IPC::Run::start(
		[ 'psql', '-X', '-q', '-d', $node->connstr('postgres'), '-c', $sql ],
		'>', \$out, '2>', \$err);
}

# load_through_crashes($node, $crashes, $rows): $crashes times, starts
# "CALL load($rows)" in the background and crashes the server under it
# (crash_server) at a random moment, one check per crash.
sub load_through_crashes
{
	my ($node, $crashes, $rows) = @_;
	for my $c (1 .. $crashes)
	{
		my $h = start_call($node, "CALL load($rows)");
		sleep(0.3 + rand(1.5));
		crash_server($node, $c, 2.5);
		pass("crash $c: the server is back");
		$h->finish;
	}
}

1;
