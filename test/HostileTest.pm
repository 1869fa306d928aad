
# HostileTest.pm - helpers of the hostile-role TAP tests (test/t/08x_hostile_*.pl).
#
# Each test file makes its own cluster (anomaly preloaded, wal_level logical,
# the detector and sender workers on) with four roles:
#   adm, adm2  members of anomaly_admin
#   owner1     owns tables of its own, no admin role
#   plain      nothing
# and attacks the extension as those roles.  After every attack the test
# asserts that no test role became superuser (assert_no_superuser, which also
# takes the privilege back so that the next attack starts clean), that the
# server still accepts connections and no backend died (assert_alive), and
# whatever the attack tried to read was not read.
#
# Nothing sleeps and hopes: waits poll with a bound (wait_until,
# wait_detector), every statement of an attacking role runs under a
# statement_timeout, and psql itself has a timeout.
#
# A loopback listener (start_listener) plays a tiny HTTP or SMTP server on
# 127.0.0.x and records every byte it receives, to check that a secret never
# arrives, or that nothing connects at all.

package HostileTest;

use strict;
use warnings;

use Exporter 'import';
use IO::Select;
use IO::Socket::INET;
use MIME::Base64 qw(decode_base64 encode_base64);
use POSIX ();
use Time::HiRes qw(sleep time);
use Test::More;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;

use File::Basename ();
use lib File::Basename::dirname(__FILE__);
use Poll;    # wait_until, exported again from here

our @EXPORT = qw(new_hostile_node as_role as_role_ok as_role_err
  assert_no_superuser assert_alive wait_until wait_detector detector_done
  start_listener listener_bytes listener_connections closed_port
  contains_secret extension_functions escalation_body
  $SECRET $SMTP_SECRET @ROLES);

# The named credentials of every hostile cluster.  Long, distinctive, never
# in any test's input except where a test guesses it on purpose.
our $SECRET = 'Hk9sEcr3tW3bhookValue';
our $SMTP_SECRET = 'Sm7pPa55wordNeverSent';
our @ROLES = qw(adm adm2 owner1 plain);

my @children;

END
{
	kill 'TERM', @children if @children;
	waitpid($_, 0) for @children;
}

# new_hostile_node(NAME, EXTRA_CONF...): a started cluster with the
# extension in postgres, the four roles (LOGIN), a schema per role (s_adm,
# s_adm2, s_own, s_plain owned by adm, adm2, owner1, plain) and the
# credentials $SECRET (hook_secret) and $SMTP_SECRET (smtp_pw).
# anomaly.allowed_destination_hosts is not set: tests that need a loopback
# destination set it themselves (set_conf).
sub new_hostile_node
{
	my ($name, @conf) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init(allows_streaming => 'logical');
	$node->append_conf('postgresql.conf', join("\n",
		"shared_preload_libraries = 'anomaly'",
		"anomaly.detector_database = 'postgres'",
		"anomaly.sender_database = 'postgres'",
		"anomaly.detector_naptime = 50",
		"anomaly.detector_max_retries = 2",
		"anomaly.retry_base = '20ms'",
		"anomaly.retry_max = '200ms'",
		"anomaly.request_timeout = '3s'",
		"anomaly.credentials = 'hook_secret=$SECRET; smtp_pw=$SMTP_SECRET'",
		"max_worker_processes = 16",
		"max_replication_slots = 64",
		"restart_after_crash = on",
		"lc_messages = 'C'",
		"fsync = off",
		"log_min_messages = warning",
		@conf) . "\n");
	$node->start;
	$node->safe_psql('postgres', q{
		CREATE EXTENSION anomaly;
		CREATE ROLE adm LOGIN;
		CREATE ROLE adm2 LOGIN;
		CREATE ROLE owner1 LOGIN;
		CREATE ROLE plain LOGIN;
		GRANT anomaly_admin TO adm, adm2;
		CREATE SCHEMA s_adm AUTHORIZATION adm;
		CREATE SCHEMA s_adm2 AUTHORIZATION adm2;
		CREATE SCHEMA s_own AUTHORIZATION owner1;
		CREATE SCHEMA s_plain AUTHORIZATION plain;
		GRANT USAGE ON SCHEMA s_own TO adm, adm2;
	});
	$node->{hostile_log_offset} = 0;
	return $node;
}

# as_role(NODE, ROLE, SQL, %opt): runs SQL in psql connected as ROLE (a real
# login, so session_user is ROLE too), under statement_timeout (opt timeout,
# default 30s) and a psql timeout of 120 s.  Returns (exit code, stdout,
# stderr).  opt db: the database (default postgres).
sub as_role
{
	my ($node, $role, $sql, %opt) = @_;
	my $st = $opt{timeout} // '30s';
	my ($out, $err) = ('', '');
	my $rc = $node->psql($opt{db} // 'postgres',
		"SET statement_timeout = '$st';\n$sql",
		extra_params => [ '-U', $role ],
		stdout => \$out, stderr => \$err,
		on_error_stop => 1,
		timeout => 120);
	return ($rc, $out, $err);
}

# as_role_ok(NODE, ROLE, SQL, LABEL): SQL must succeed; returns stdout.
sub as_role_ok
{
	my ($node, $role, $sql, $label, %opt) = @_;
	my ($rc, $out, $err) = as_role($node, $role, $sql, %opt);
	is($rc, 0, $label) or diag("stderr: $err");
	return $out;
}

# as_role_err(NODE, ROLE, SQL, REGEX, LABEL): SQL must fail with an error
# matching REGEX; returns stderr.
sub as_role_err
{
	my ($node, $role, $sql, $re, $label, %opt) = @_;
	my ($rc, $out, $err) = as_role($node, $role, $sql, %opt);
	ok($rc != 0 && $err =~ $re, $label)
	  or diag("exit $rc, stdout: $out\nstderr: $err");
	return $err;
}

# assert_no_superuser(NODE, LABEL): none of the four roles is superuser.
# One that became superuser is made NOSUPERUSER again, so that later attacks
# are judged on their own.
sub assert_no_superuser
{
	my ($node, $label) = @_;
	my $got = $node->safe_psql('postgres', q{
		SELECT string_agg(rolname || '=' || rolsuper::text, ',' ORDER BY rolname)
		FROM pg_catalog.pg_roles WHERE rolname IN ('adm', 'adm2', 'owner1', 'plain')});
	my $ok = is($got, 'adm=false,adm2=false,owner1=false,plain=false',
		"$label: no test role became superuser");
	unless ($ok)
	{
		$node->safe_psql('postgres', 'ALTER ROLE ' . $_ . ' NOSUPERUSER') for @ROLES;
	}
	return $ok;
}

# assert_alive(NODE, LABEL): the server accepts a connection and answers, and
# since the last call no process was terminated by a signal nor did the
# server reinitialize after a crash.
sub assert_alive
{
	my ($node, $label) = @_;
	my ($out, $err) = ('', '');
	my $rc = $node->psql('postgres', 'SELECT 1', stdout => \$out, stderr => \$err,
		timeout => 60);
	my $log = slurp_file($node->logfile);
	my $new = substr($log, $node->{hostile_log_offset} // 0);
	$node->{hostile_log_offset} = length($log);
	my @crash = grep { /terminated by signal|was terminated by exception|all server processes terminated; reinitializing|PANIC:/ }
	  split /\n/, $new;
	ok($rc == 0 && $out eq '1' && !@crash, "$label: the server is up and nothing crashed")
	  or diag("psql exit $rc ($err); log: " . join("\n", @crash));
	if (@crash)
	{
		# let crash recovery finish before the next attack
		wait_until(60, sub {
			my ($o, $e) = ('', '');
			$node->psql('postgres', 'SELECT 1', stdout => \$o, stderr => \$e, timeout => 10);
			return $o eq '1';
		});
	}
}

# detector_done(NODE, NAME, ROWS, %opt): waits (at most 60 s) until the
# detector has dealt with ROWS rows (scored, filtered or failed) or stopped
# (failed, paused); returns "state|scored|failed|filtered|last_error".
sub wait_detector
{
	my ($node, $name, $rows, %opt) = @_;
	my $db = $opt{db} // 'postgres';
	# The committed counts (anomaly.detectors): detector_status also counts
	# the rows of a round still running, which may yet fail.
	my $sql = qq{
		SELECT s.state || '|' || d.rows_scored || '|' || d.rows_failed || '|' || d.rows_filtered
			|| '|' || coalesce(d.last_error, '')
		FROM anomaly.detector_status s JOIN anomaly.detectors d ON d.name = s.name
		WHERE s.name = '$name'};
	my $last = '';
	wait_until($opt{secs} // 60, sub {
		$last = $node->safe_psql($db, $sql);
		my ($state, $s, $f, $x) = split /\|/, $last;
		return 1 unless defined $state && $state ne '';
		return 1 if $state ne 'active';
		return ($s + $f + $x) >= $rows;
	});
	return $last;
}

# detector_done: an alias kept short for the tests.
sub detector_done { return wait_detector(@_); }

# start_listener(%opt): a loopback server in a child process; records every
# byte received (one file) and the number of connections (another).
#   mode  'http' (default): answers every request with status (default 200)
#         and body (default a metadata-like canary document);
#         'smtp': an ESMTP dialogue offering AUTH PLAIN LOGIN, no STARTTLS,
#         accepting everything
#   addr  the address to bind (default 127.0.0.1)
#   headers  more response header lines (each ending in CRLF)
# Returns { port, addr, dir, pid }.
sub start_listener
{
	my (%opt) = @_;
	my $mode = $opt{mode} // 'http';
	my $addr = $opt{addr} // '127.0.0.1';
	my $status = $opt{status} // 200;
	my $headers = $opt{headers} // '';
	my $body = $opt{body}
	  // '{"Code":"Success","AccessKeyId":"ASIACANARYMETADATA","SecretAccessKey":"canary-metadata-body"}';
	my $dir = PostgreSQL::Test::Utils::tempdir();
	my $sock = IO::Socket::INET->new(
		LocalAddr => $addr, LocalPort => 0, Proto => 'tcp',
		Listen => 16, ReuseAddr => 1) or die "listen on $addr: $!";
	my $port = $sock->sockport;
	open(my $c, '>', "$dir/connections") or die;
	close $c;
	open(my $b, '>', "$dir/bytes") or die;
	close $b;
	my $pid = fork();
	die "fork: $!" unless defined $pid;
	if ($pid == 0)
	{
		# POSIX::_exit: the child must not run the END blocks it inherited
		# (PostgreSQL::Test::Cluster's would stop the test's nodes)
		$SIG{TERM} = sub { POSIX::_exit(0) };
		$SIG{ALRM} = sub { POSIX::_exit(0) };
		alarm(900);
		while (my $conn = $sock->accept)
		{
			open(my $cf, '>>', "$dir/connections");
			print $cf "1\n";
			close $cf;
			eval { serve_one($conn, $mode, $status, $body, "$dir/bytes", $headers) };
			close $conn;
		}
		POSIX::_exit(0);
	}
	close $sock;
	push @children, $pid;
	return { port => $port, addr => $addr, dir => $dir, pid => $pid };
}

# One connection of the listener: reads with a 5 s idle bound, appends what
# it read to the bytes file, answers per mode.
sub serve_one
{
	my ($conn, $mode, $status, $body, $file, $headers) = @_;
	my $sel = IO::Select->new($conn);
	my $buf = '';
	my $record = sub {
		open(my $f, '>>', $file);
		binmode $f;
		print $f $_[0];
		close $f;
	};
	my $readline = sub {
		while ($buf !~ /\n/)
		{
			return undef unless $sel->can_read(5);
			my $n = sysread($conn, my $chunk, 65536);
			return undef unless $n;
			$record->($chunk);
			$buf .= $chunk;
		}
		$buf =~ s/^([^\n]*\n)//;
		return $1;
	};
	my $send = sub { syswrite($conn, $_[0]) };
	if ($mode eq 'http')
	{
		my $len = 0;
		while (defined(my $l = $readline->()))
		{
			$len = $1 if $l =~ /^content-length:\s*(\d+)/i;
			last if $l =~ /^\r?\n$/;
		}
		while (length($buf) < $len)
		{
			last unless $sel->can_read(5);
			my $n = sysread($conn, my $chunk, 65536);
			last unless $n;
			$record->($chunk);
			$buf .= $chunk;
		}
		$send->("HTTP/1.1 $status X\r\nContent-Type: application/json\r\n$headers"
			  . 'Content-Length: ' . length($body) . "\r\nConnection: close\r\n\r\n$body");
		return;
	}
	# smtp
	$send->("220 hostile.invalid ESMTP\r\n");
	my $data = 0;
	while (defined(my $l = $readline->()))
	{
		if ($data)
		{
			if ($l =~ /^\.\r?\n$/)
			{
				$data = 0;
				$send->("250 queued\r\n");
			}
			next;
		}
		if ($l =~ /^EHLO/i)
		{
			$send->("250-hostile.invalid\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n");
		}
		elsif ($l =~ /^HELO/i) { $send->("250 hostile.invalid\r\n"); }
		elsif ($l =~ /^AUTH PLAIN\s+\S/i) { $send->("235 ok\r\n"); }
		elsif ($l =~ /^AUTH PLAIN/i)
		{
			$send->("334 \r\n");
			$readline->();
			$send->("235 ok\r\n");
		}
		elsif ($l =~ /^AUTH LOGIN/i)
		{
			$send->("334 VXNlcm5hbWU6\r\n") unless $l =~ /^AUTH LOGIN\s+\S/i;
			$readline->() unless $l =~ /^AUTH LOGIN\s+\S/i;
			$send->("334 UGFzc3dvcmQ6\r\n");
			$readline->();
			$send->("235 ok\r\n");
		}
		elsif ($l =~ /^DATA/i) { $data = 1; $send->("354 go on\r\n"); }
		elsif ($l =~ /^QUIT/i) { $send->("221 bye\r\n"); return; }
		else { $send->("250 ok\r\n"); }
	}
}

# Every byte a listener received so far.
sub listener_bytes
{
	my ($l) = @_;
	return slurp_file("$l->{dir}/bytes");
}

# How many connections a listener accepted so far.
sub listener_connections
{
	my ($l) = @_;
	my @lines = split /\n/, slurp_file("$l->{dir}/connections");
	return scalar @lines;
}

# A loopback port that nothing listens on (bound, then closed).
sub closed_port
{
	my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
		Proto => 'tcp', Listen => 1) or die "bind: $!";
	my $p = $s->sockport;
	close $s;
	return $p;
}

# Whether TEXT holds SECRET, as is or in base64 (AUTH PLAIN "\0user\0secret",
# AUTH LOGIN, or any base64 token that decodes to something holding it).
sub contains_secret
{
	my ($text, $secret) = @_;
	return 1 if index($text, $secret) >= 0;
	for my $tok ($text =~ /([A-Za-z0-9+\/=]{8,})/g)
	{
		my $d = decode_base64($tok);
		return 1 if index($d, $secret) >= 0;
	}
	return 0;
}

# The extension's functions (regprocedure text), from pg_depend.
sub extension_functions
{
	my ($node) = @_;
	return split /\n/, $node->safe_psql('postgres', q{
		SELECT p.oid::pg_catalog.regprocedure::text
		FROM pg_catalog.pg_proc p
		JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass
			AND d.objid = p.oid AND d.deptype = 'e'
		JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid AND e.extname = 'anomaly'
		ORDER BY 1});
}

# The body of a plpgsql function that makes ROLE superuser when it runs as a
# superuser, and otherwise does nothing; RET is what it returns (undef: a
# void function).
sub escalation_body
{
	my ($role, $ret) = @_;
	$ret = defined $ret ? " $ret" : '';
	return qq{
BEGIN
	IF (SELECT r.rolsuper FROM pg_catalog.pg_roles r
		WHERE r.rolname OPERATOR(pg_catalog.=) CURRENT_USER) THEN
		EXECUTE 'ALTER ROLE $role SUPERUSER';
	END IF;
	RETURN$ret;
END};
}

1;
