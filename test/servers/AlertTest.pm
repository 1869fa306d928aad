
# AlertTest.pm - helpers of the alert TAP tests (test/t/*alert*.pl).
#
# Starts the local stand-ins of test/servers/ (loopback only, each with a
# lifetime so that nothing outlives the test even if it dies), reads their
# JSON-lines logs, and makes clusters that preload anomaly.

package AlertTest;

use strict;
use warnings;

use Exporter 'import';
use File::Basename qw(dirname);
use JSON::PP;
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(sleep time);

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;

use lib dirname(__FILE__) . '/..';
use Poll;

our @EXPORT = qw(start_server stop_server read_jsonl new_alert_node wait_for
  server_dir log_contains queued ticks_alert @LOG_EVERYTHING);

my @children;

# Directory of the stand-in scripts.
sub server_dir
{
	return dirname(__FILE__);
}

# start_server(NAME, SCRIPT_ARGS...): runs test/servers/NAME with
# --port-file and --log in a temporary directory; returns a hash with pid,
# port, url (smtp://, smtps:// or http:// 127.0.0.1:port), log and dir.
# Dies when the port file does not appear in 20 s.
sub start_server
{
	my ($name, @args) = @_;
	my $dir = PostgreSQL::Test::Utils::tempdir();
	my $port_file = "$dir/port";
	my $log = "$dir/log.jsonl";
	# Debian's python3 (python3-aiosmtpd lives there), else the one on PATH
	my $python = -x '/usr/bin/python3' ? '/usr/bin/python3' : 'python3';
	my @cmd = ($python, server_dir() . "/$name", '--port-file', $port_file,
		'--log', $log, '--lifetime', '900', @args);
	my $pid = fork();
	die "fork: $!" unless defined $pid;
	if ($pid == 0)
	{
		open(STDOUT, '>', "$dir/stdout") or die;
		open(STDERR, '>', "$dir/stderr") or die;
		exec(@cmd) or die "exec: $!";
	}
	push @children, $pid;
	for (my $i = 0; $i < 200; $i++)
	{
		last if -s $port_file;
		sleep(0.1);
	}
	die "$name did not start: " . slurp_file("$dir/stderr") unless -s $port_file;
	my $port = slurp_file($port_file);
	chomp $port;
	my $scheme = $name !~ /^smtp/ ? 'http' : (grep { $_ eq '--smtps' } @args) ? 'smtps' : 'smtp';
	return { pid => $pid, port => $port, url => "$scheme://127.0.0.1:$port", log => $log,
		dir => $dir };
}

# Stops a server started by start_server.
sub stop_server
{
	my ($srv) = @_;
	kill 'TERM', $srv->{pid};
	waitpid($srv->{pid}, 0);
	@children = grep { $_ != $srv->{pid} } @children;
}

END
{
	kill 'TERM', @children if @children;
	waitpid($_, 0) for @children;
}

# All JSON objects of a JSON-lines file (skipping a last partial line).
sub read_jsonl
{
	my ($file) = @_;
	my @out;
	return @out unless -e $file;
	open(my $fh, '<', $file) or die "$file: $!";
	while (my $line = <$fh>)
	{
		next unless $line =~ /\n$/;
		push @out, decode_json($line);
	}
	close $fh;
	return @out;
}

# Settings of the tests that look for secrets in the server log: every
# statement and the debug messages are logged.
our @LOG_EVERYTHING = ("log_statement = 'all'", "log_min_messages = debug1");

# A cluster that preloads anomaly, with the given extra settings, started,
# with the extension created in postgres.  Deliveries may reach loopback,
# where the stand-ins listen (refused by default); a test may say otherwise.
# wal_level is logical, for detectors whose scores raise alerts; a failed
# delivery is retried after 20 ms at first (the stand-ins answer at once).
sub new_alert_node
{
	my ($name, @conf) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init;
	$node->append_conf('postgresql.conf', join("\n",
		"shared_preload_libraries = 'anomaly'",
		"anomaly.sender_database = 'postgres'",
		"anomaly.allowed_destination_hosts = '127.0.0.1, ::1'",
		"lc_messages = 'C'",
		"wal_level = logical",
		"anomaly.retry_base = '20ms'",
		@conf) . "\n");
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION anomaly');
	return $node;
}

# wait_for(SECONDS, CODE): Poll's wait_until, under the name the alert
# tests use.
sub wait_for { return wait_until(@_); }

# The number of alerts in the outbox for a destination.
sub queued
{
	my ($node, $dest) = @_;
	return $node->safe_psql('postgres',
		"SELECT count(*) FROM anomaly.outbox WHERE destination = '$dest'");
}

# ticks_alert($node, $rule_args, %score): the alert of a rule with
# templates over a source row (issue 17): table ticks with AMZN's row 7, a
# detector on it, the rule ticks-high (scores of 2 and more, one alert per
# source row) with the further arguments $rule_args (its destinations and
# templates), and the score 3.25 for row 7, with the further columns
# %score (name => SQL literal), which raises the alert.
sub ticks_alert
{
	my ($node, $rule_args, %score) = @_;
	my @cols = sort keys %score;
	my $names = join('', map { ", $_" } @cols);
	my $values = join('', map { ", $score{$_}" } @cols);
	$node->safe_psql('postgres', qq{
	CREATE TABLE ticks (id int PRIMARY KEY, ticker text, price float8);
	INSERT INTO ticks VALUES (7, 'AMZN', 101.5);
	SELECT anomaly.create_detector('ticks', 'ticks', '{price}');
	SELECT anomaly.create_alert_rule('ticks-high', detector => 'ticks',
		min_score => 2, group_by => '{source_key}', $rule_args);
	INSERT INTO anomaly.scores (detector, source_key, commit_time, anomaly_score$names)
	VALUES ('ticks', '{"id": 7}', now(), 3.25$values)});
}

# Whether the server log of a node holds a string.
sub log_contains
{
	my ($node, $s) = @_;
	my $log = slurp_file($node->logfile);
	return index($log, $s) >= 0;
}

1;
