
# Delivery by the sender worker to a local webhook receiver: 10,000 alerts
# all arrive once; with half the requests failing all still arrive; a
# permanent 4xx is a dead letter with its error; Retry-After is honoured;
# hostile responses are bounded and recorded; SIGKILL of the worker
# mid-delivery loses nothing; secrets reach neither non-superusers nor the
# log (log_statement = all, debug1).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../servers";
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);

use AlertTest;

my $secret = 'Sup3rS3cretHookKey-5d1e';
my $env_secret = 'EnvS3cretValue-77aa';

my $good = start_server('webhook_receiver.py', '--secret', $secret);
my $flaky = start_server('webhook_receiver.py', '--fail-rate', '0.5', '--seed', '7');
my $envhook = start_server('webhook_receiver.py', '--secret', $env_secret);
my $slowsrv = start_server('webhook_receiver.py');

$ENV{ANOMALY_CREDENTIAL_ENV_HOOK} = $env_secret;
my $node = new_alert_node('webhook',
	"anomaly.credentials = 'hook_secret=$secret; other=xyzzy-unused'",
	"anomaly.credential_bindings = 'hook_secret=http://127.0.0.1:$good->{port}/; env_hook=http://127.0.0.1:$envhook->{port}/hook'",
	"anomaly.retry_max = '2s'",
	"restart_after_crash = on",
	"anomaly.max_attempts = 40",
	"anomaly.request_timeout = '2s'",
	"anomaly.connect_timeout = '1s'",
	@LOG_EVERYTHING);

my $g = "http://127.0.0.1:$good->{port}";
$node->safe_psql('postgres', qq{
	SELECT anomaly.create_destination('good', 'webhook', '{"url": "$g/hook", "credential": "hook_secret", "headers": {"X-Team": "ops"}}');
	SELECT anomaly.create_destination('flaky', 'webhook', '{"url": "http://127.0.0.1:$flaky->{port}/hook"}');
	SELECT anomaly.create_destination('env', 'webhook', '{"url": "http://127.0.0.1:$envhook->{port}/hook", "credential": "env_hook"}');
	SELECT anomaly.create_destination('gone', 'webhook', '{"url": "$g/status/404"}');
	SELECT anomaly.create_destination('later', 'webhook', '{"url": "$g/retry-after/1"}');
	SELECT anomaly.create_destination('slow', 'webhook', '{"url": "http://127.0.0.1:$slowsrv->{port}/slow/0.1"}');
	SELECT anomaly.create_destination('chat', 'slack', '{"url": "$g/slack/T0", "channel": "#ops"}');
	SELECT anomaly.create_destination('huge', 'webhook', '{"url": "$g/huge"}');
	SELECT anomaly.create_destination('headers', 'webhook', '{"url": "$g/endless-headers"}');
	SELECT anomaly.create_destination('slowloris', 'webhook', '{"url": "$g/slowloris"}');
	SELECT anomaly.create_destination('garbage', 'webhook', '{"url": "$g/garbage"}');
	SELECT anomaly.create_destination('drop', 'webhook', '{"url": "$g/drop"}');
	SELECT anomaly.create_destination('rules', 'webhook', '{"url": "$g/rules"}');
	SELECT anomaly.create_destination('limited', 'webhook', '{"url": "$g/limited", "rate_limit": 50}');
});

# Deliveries in the receiver's log for a path prefix.
sub received
{
	my ($srv, $prefix) = @_;
	return grep { index($_->{path}, $prefix) == 0 } read_jsonl($srv->{log});
}

# --- 10,000 alerts, each delivered once --------------------------------------

my $t0 = time();
$node->safe_psql('postgres', q{
	SELECT count(anomaly.send_alert('good', 'alert ' || i, jsonb_build_object('n', i)))
	FROM generate_series(1, 10000) i});
ok(wait_for(180, sub { queued($node, 'good') == 0 }), '10,000 alerts left the outbox');
my $secs = time() - $t0;
my @got = received($good, '/hook');
my %seen;
$seen{ $_->{body}{details}{n} }++ for @got;
is(scalar(keys %seen), 10000, 'each of the 10,000 alerts arrived');
is(scalar(grep { $seen{$_} > 1 } keys %seen), 0, 'none arrived twice (no ambiguous failure)');
is(scalar(grep { !$_->{sig} } @got), 0, 'every HMAC-SHA256 signature verifies');
is(scalar(grep { ($_->{headers}{'x-team'} // '') ne 'ops' } @got), 0, 'custom headers sent');
is(scalar(grep { $_->{body}{version} != 1 || $_->{body}{status} ne 'firing' } @got), 0,
	'payload version 1');
note(sprintf('10,000 deliveries in %.1f s (%.0f/s)', $secs, 10000 / $secs));
is($node->safe_psql('postgres', "SELECT sent FROM anomaly.delivery_status WHERE destination = 'good'"),
	'10000', 'delivery_status counts 10,000 sent');

# --- half the requests fail: all still arrive ---------------------------------

$node->safe_psql('postgres', q{
	SELECT count(anomaly.send_alert('flaky', 'flaky ' || i, jsonb_build_object('n', i)))
	FROM generate_series(1, 2000) i});
ok(wait_for(180, sub { queued($node, 'flaky') == 0 }), 'flaky endpoint: outbox drained');
my %fl;
$fl{ $_->{body}{details}{n} }++ for received($flaky, '/hook');
is(scalar(keys %fl), 2000, 'with half the requests failing, all 2,000 arrived');
my ($retried, $dead) = split /\|/, $node->safe_psql('postgres',
	"SELECT retried, dead FROM anomaly.delivery_status WHERE destination = 'flaky'");
cmp_ok($retried, '>', 500, "failures were retried ($retried retries)");
is($dead, '0', 'no flaky alert went to the dead letters');

# --- credentials from the environment ------------------------------------------

$node->safe_psql('postgres', "SELECT anomaly.send_alert('env', 'env-signed')");
ok(wait_for(30, sub { scalar(received($envhook, '/hook')) == 1 }), 'env credential: delivered');
is((received($envhook, '/hook'))[0]->{sig}, JSON::PP::true, 'signed with the ANOMALY_CREDENTIAL_ENV_HOOK secret');

# --- permanent 4xx: dead letter with its error ----------------------------------

$node->safe_psql('postgres', "SELECT anomaly.send_alert('gone', 'to a 404')");
ok(wait_for(30, sub { $node->safe_psql('postgres',
	"SELECT count(*) FROM anomaly.dead_letters WHERE destination = 'gone'") == 1 }),
	'a permanent 404 went to the dead letters');
is($node->safe_psql('postgres',
	"SELECT attempts || ' ' || error FROM anomaly.dead_letters WHERE destination = 'gone'"),
	'1 HTTP 404', 'after one attempt, with the status (all an admin sees)');
is($node->safe_psql('postgres',
	"SELECT e.detail FROM anomaly.delivery_errors e JOIN anomaly.dead_letters d USING (outbox_id) WHERE d.destination = 'gone'"),
	'HTTP 404: status 404 from the stand-in', 'the response body is kept for superusers');

# --- Retry-After ----------------------------------------------------------------

my $t1 = time();
$node->safe_psql('postgres', "SELECT anomaly.send_alert('later', 'retry after 1 s')");
ok(wait_for(30, sub { scalar(received($good, '/retry-after')) == 1 }), '429 then delivered');
my ($r) = received($good, '/retry-after');
cmp_ok($r->{t} - $t1, '>=', 0.95, sprintf('Retry-After: 1 honoured (%.2f s)', $r->{t} - $t1));
is($r->{attempt}, '2', 'on the second attempt');

# --- Slack ------------------------------------------------------------------------

$node->safe_psql('postgres', q{SELECT anomaly.send_alert('chat', 'cpu high', '{"score": 3.25, "severity": "error"}')});
ok(wait_for(30, sub { scalar(received($good, '/slack')) == 1 }), 'Slack message delivered');
my ($s) = received($good, '/slack');
is($s->{body}{text}, 'FIRING [error] cpu high score=3.2500', 'Slack text');
is($s->{body}{channel}, '#ops', 'Slack channel');

# --- alert rules: scores -> episodes -> webhook -------------------------------

$node->safe_psql('postgres', q{
	SELECT anomaly.create_alert_rule('rides-high', detector => 'rides', destination => 'rules',
		min_grade => 0.5, severity => 'critical');
	INSERT INTO anomaly.scores (detector, partition_key, commit_time, anomaly_score, anomaly_grade)
	VALUES ('rides', 'a', now(), 1.0, 0.0), ('rides', 'a', now(), 3.5, 0.9),
		   ('rides', 'b', now(), 3.0, 0.7), ('rides', 'a', now(), 1.1, 0.0)});
ok(wait_for(30, sub { scalar(received($good, '/rules')) == 3 }), 'rule notifications delivered');
my @ru = sort { $a->{body}{key}{partition_key} cmp $b->{body}{key}{partition_key}
	  || $a->{body}{status} cmp $b->{body}{status} } received($good, '/rules');
is(join(' ', map { "$_->{body}{key}{partition_key}:$_->{body}{status}" } @ru),
	'a:firing a:resolved b:firing', 'a fired and resolved, b fired');
is($ru[0]{body}{fingerprint}, $ru[1]{body}{fingerprint}, 'one fingerprint per episode');
is($ru[0]{body}{severity}, 'critical', 'with the rule severity');
is($ru[0]{delivery}, "anomaly-$ru[0]{body}{fingerprint}-$ru[0]{body}{episode}-firing",
	'deterministic delivery id');

# --- a rule's templates and the source row (issue 17) ---------------------------

ticks_alert($node, q{destinations => '{rules,chat}',
		body_template => 'not for Slack: its own template wins',
		templates => '{"slack": {"text": ":rotating_light: *{{row.ticker}}* at {{row.price}}, score {{score}} ({{severity}})"}}'});
ok(wait_for(30, sub { scalar(grep { ($_->{body}{alert} // '') eq 'ticks-high' } received($good, '/rules')) == 1
		&& scalar(received($good, '/slack')) == 2 }), 'the templated rule reached the webhook and Slack');
my ($tw) = grep { ($_->{body}{alert} // '') eq 'ticks-high' } received($good, '/rules');
is_deeply($tw->{body}{row}, { id => 7, ticker => 'AMZN', price => 101.5 },
	'the webhook payload carries the source row');
ok(!exists $tw->{body}{message}, 'and stays the JSON payload (no message)');
my ($ts) = grep { ($_->{body}{text} // '') =~ /AMZN/ } received($good, '/slack');
is($ts->{body}{text}, ':rotating_light: *AMZN* at 101.5, score 3.25 (warning)', 'Slack text from its template');

# --- a per-destination rate limit ---------------------------------------------

my $tl = time();
$node->safe_psql('postgres', q{
	SELECT count(anomaly.send_alert('limited', 'limited ' || i)) FROM generate_series(1, 150) i});
ok(wait_for(30, sub { queued($node, 'limited') == 0 }), 'rate-limited destination drained');
my @li = sort { $a->{t} <=> $b->{t} } received($good, '/limited');
is(scalar(@li), 150, 'all 150 arrived');
cmp_ok($li[-1]{t} - $tl, '>=', 1.7, sprintf('at 50/s after a burst of 50 (%.2f s)', $li[-1]{t} - $tl));

# --- hostile responses: bounded, recorded as errors -----------------------------

my %want = (
	huge => qr/^response body larger than 65536 bytes$/,
	headers => qr/^response headers larger than/,
	slowloris => qr/^timed out after \d+ ms/,
	garbage => qr/HTTP\/0\.9|Weird server reply|Unsupported protocol/,
	drop => qr/Empty reply from server|Server returned nothing/);
for my $d (sort keys %want)
{
	my $t = time();
	my $res = $node->safe_psql('postgres', "SELECT ok || '|' || detail FROM anomaly.test_destination('$d')");
	my $el = time() - $t;
	my ($ok, $detail) = split /\|/, $res, 2;
	like($detail, $want{$d}, "$d: recorded as '$detail'");
	cmp_ok($el, '<', 4.5, sprintf("$d: bounded (%.2f s)", $el));
}
$node->safe_psql('postgres', "SELECT anomaly.send_alert('huge', 'to a huge body')");
ok(wait_for(30, sub { $node->safe_psql('postgres',
	"SELECT last_error FROM anomaly.delivery_status WHERE destination = 'huge'") =~ /larger than/ }),
	'the worker records a hostile response in delivery_status');
$node->safe_psql('postgres', "SELECT anomaly.alter_destination('huge', enabled => false)");

# --- SIGKILL of the sender mid-delivery loses nothing ---------------------------

$node->safe_psql('postgres', q{
	SELECT count(anomaly.send_alert('slow', 'slow ' || i, jsonb_build_object('n', i)))
	FROM generate_series(1, 1000) i});

# lines in a receiver's log, cheaply
sub lines
{
	my ($srv) = @_;
	return 0 unless -e $srv->{log};
	open(my $fh, '<', $srv->{log}) or die;
	my $n = 0;
	$n++ while <$fh>;
	close $fh;
	return $n;
}
ok(wait_for(60, sub { lines($slowsrv) >= 150 }), 'slow deliveries under way');
my $pid = $node->safe_psql('postgres',
	"SELECT pid FROM pg_stat_activity WHERE backend_type = 'anomaly alert sender'");
ok($pid =~ /^\d+$/, "sender worker pid $pid");
kill 'KILL', $pid;
my $at_kill = lines($slowsrv);
cmp_ok($at_kill, '<', 1000, "killed mid-delivery, after $at_kill of 1,000");
ok(wait_for(60, sub { my $r = eval { $node->psql('postgres', 'SELECT 1') }; defined $r && $r == 0 }),
	'server back after the crash restart');
ok(wait_for(120, sub { queued($node, 'slow') == 0 }), 'outbox drained after the restart');
my %sl;
$sl{ $_->{body}{details}{n} }++ for received($slowsrv, '/slow');
is(scalar(keys %sl), 1000, 'all 1,000 arrived');
my $dups = scalar(grep { $sl{$_} > 1 } keys %sl);
cmp_ok($dups, '<=', 500, "duplicates only from the round in flight ($dups)");

# --- where deliveries may go (issue 12) ------------------------------------------

# Appends a setting, reloads, and waits for the backends and the sender.
sub set_conf
{
	$node->append_conf('postgresql.conf', "$_[0]\n");
	$node->reload;
	sleep(0.5);
}

# test_destination as "ok detail", as the given psql user (default: us).
sub tdest
{
	my ($d, $user) = @_;
	return $node->safe_psql('postgres', "SELECT ok || ' ' || detail FROM anomaly.test_destination('$d')",
		$user ? (extra_params => [ '-U', $user ]) : ());
}

# The allowance is checked on the address connected to, not on the name.
$node->safe_psql('postgres', qq{
	SELECT anomaly.create_destination('byname', 'webhook', '{"url": "http://localhost:$good->{port}/byname"}');
	SELECT anomaly.create_destination('lo2', 'webhook', '{"url": "http://127.0.0.2:$good->{port}/lo2"}');
	SELECT anomaly.create_destination('private', 'webhook', '{"url": "http://10.255.255.1:$good->{port}/private"}');
});
is(tdest('byname'), 'true delivered', 'localhost resolves to an allowed address: delivered');
like(tdest('lo2'), qr/^false connection to 127\.0\.0\.2 refused: not a public address/,
	'127.0.0.2 is not allowed by 127.0.0.1');
like(tdest('private'), qr/^false connection to 10\.255\.255\.1 refused/, 'nor a private address');
set_conf("anomaly.allowed_destination_hosts = '::1'");
like(tdest('byname'), qr/^false connection to 127\.0\.0\.1 refused/,
	'with only ::1 allowed, localhost does not reach 127.0.0.1 through its name');
like(tdest('good'), qr/^false connection to 127\.0\.0\.1 refused/, 'nor does 127.0.0.1 itself');
$node->safe_psql('postgres', "SELECT anomaly.send_alert('good', 'not allowed')");
ok(wait_for(30, sub { queued($node, 'good') == 0 }), 'a queued notification is settled at once');
is($node->safe_psql('postgres', "SELECT attempts || ' ' || error FROM anomaly.dead_letters WHERE subject = 'not allowed'"),
	'1 destination address not allowed (anomaly.allowed_destination_hosts)',
	'as a permanent failure, with the reason');
set_conf("anomaly.allowed_destination_hosts = 'localhost'");
is(tdest('byname'), 'true delivered', 'a host name listed by a superuser is allowed whatever it resolves to');
like(tdest('good'), qr/^false connection to 127\.0\.0\.1 refused/, 'but not the address it resolves to');
is(scalar(received($good, '/lo2')) + scalar(received($good, '/private')), 0, 'nothing refused arrived');
is(scalar(grep { ($_->{body}{alert} // '') eq 'not allowed' } received($good, '/hook')), 0,
	'nor the queued notification');
set_conf("anomaly.allowed_destination_hosts = '127.0.0.1, ::1'");

# A credential goes only where a superuser bound it.
set_conf("anomaly.credential_bindings = 'hook_secret=http://127.0.0.1:$good->{port}/signed; env_hook=http://127.0.0.1:$envhook->{port}/hook'");
$node->safe_psql('postgres', "SELECT anomaly.send_alert('good', 'unbound secret')");
ok(wait_for(30, sub { queued($node, 'good') == 0 }), 'the notification is settled');
like($node->safe_psql('postgres', "SELECT error FROM anomaly.dead_letters WHERE subject = 'unbound secret'"),
	qr/credential "hook_secret" \(the signing secret\) is not bound to this destination's URL: a superuser must add it to anomaly.credential_bindings/,
	'a credential not bound to the URL is not used: a permanent failure naming the fix');
is(scalar(grep { ($_->{body}{alert} // '') eq 'unbound secret' } received($good, '/hook')), 0,
	'nothing was sent (the secret did not sign anything)');
my ($rc, $out, $err) = $node->psql('postgres', qq{SELECT anomaly.create_destination('other', 'webhook', '{"url": "$g/hook", "credential": "other"}')});
like($err, qr/credential "other" is not bound.*HINT:.*anomaly\.credential_bindings/s,
	'creating a destination with an unbound credential fails, naming the setting');
set_conf("anomaly.credential_bindings = 'hook_secret=http://127.0.0.1:$good->{port}/; env_hook=http://127.0.0.1:$envhook->{port}/hook'");
$node->safe_psql('postgres', "SELECT anomaly.send_alert('good', 'bound again')");
ok(wait_for(30, sub { scalar(grep { ($_->{body}{alert} // '') eq 'bound again' && $_->{sig} } received($good, '/hook')) == 1 }),
	'bound again: delivered and signed with the secret');

# An admin sees the status of their own failures, not the response body.
$node->safe_psql('postgres', 'CREATE ROLE adm LOGIN IN ROLE anomaly_admin');
$node->safe_psql('postgres', qq{SELECT anomaly.create_destination('adm404', 'webhook', '{"url": "$g/status/404"}')},
	extra_params => [ '-U', 'adm' ]);
is(tdest('adm404', 'adm'), 'false HTTP 404', 'the admin sees the status only');
is(tdest('adm404'), 'false HTTP 404: status 404 from the stand-in', 'a superuser sees the body');
($rc, $out, $err) = $node->psql('postgres', "SELECT * FROM anomaly.test_destination('gone')",
	extra_params => [ '-U', 'adm' ]);
like($err, qr/must be owner of destination "gone"/, 'nor another owner\'s destination tested');
$node->safe_psql('postgres', "SELECT anomaly.send_alert('adm404', 'to a 404'); SELECT anomaly.deliver()",
	extra_params => [ '-U', 'adm' ]);
ok(wait_for(30, sub { queued($node, 'adm404') == 0 }), 'the admin\'s notification is settled');
is($node->safe_psql('postgres', "SELECT error FROM anomaly.dead_letters WHERE destination = 'adm404'",
	extra_params => [ '-U', 'adm' ]), 'HTTP 404', 'its dead letter holds the status');
is($node->safe_psql('postgres', "SELECT count(*) FROM anomaly.dead_letters WHERE destination <> 'adm404'",
	extra_params => [ '-U', 'adm' ]), '0', 'and the admin sees no other dead letter');
like($node->safe_psql('postgres', "SELECT e.detail FROM anomaly.delivery_errors e JOIN anomaly.dead_letters d USING (outbox_id) WHERE d.destination = 'adm404'"),
	qr/status 404 from the stand-in/, 'the details are kept for superusers');

# --- a failing destination's probe is carried over rounds -----------------------
# A round waits for its slowest transfer.  A destination whose last attempt
# failed sends one row a round (a probe); at a peer that answers after
# anomaly.request_timeout (2 s here) that probe held every round, and every
# other destination's notification in it, for 2 s.  The sender worker now
# leases the probe's row and lets its transfer run on across rounds.
{
	my $u = "http://127.0.0.1:$slowsrv->{port}";
	my $retried = sub {
		$node->safe_psql('postgres', q{
			SELECT coalesce(sum(retried), 0) FROM anomaly.delivery_counters WHERE destination = 'stuck'});
	};
	$node->safe_psql('postgres', qq{
		SELECT anomaly.create_destination('stuck', 'webhook', '{"url": "$u/slow/30", "max_attempts": 1000}');
		SELECT anomaly.create_destination('quick', 'notify', '{"channel": "quick"}');
		SELECT anomaly.send_alert('stuck', 'first', '{}');
	});
	ok(wait_for(30, sub { $retried->() >= 1 }), 'probe: the first attempt at a peer that does not answer times out');
	$node->safe_psql('postgres', q{
		SELECT count(anomaly.send_alert('stuck', 'more ' || i, '{}')) FROM generate_series(1, 20) i});
	ok(wait_for(30, sub {
		$node->safe_psql('postgres', q{
			SELECT count(*) FROM anomaly.outbox
			WHERE destination = 'stuck' AND next_attempt_at > now() + interval '30 s'}) eq '1' }),
		'probe: one row of the failing destination is leased while its transfer runs');
	my ($r0, $t0) = ($retried->(), time());
	my $worst = 0;
	for my $i (1 .. 8)
	{
		my $t = time();
		$node->safe_psql('postgres', "SELECT anomaly.send_alert('quick', 'q$i', '{}')");
		wait_for(30, sub { queued($node, 'quick') == 0 });
		$worst = time() - $t if time() - $t > $worst;
		sleep(0.3);
	}
	cmp_ok($worst, '<', 1.5, 'probe: meanwhile another destination\'s notifications are not held by it')
	  or diag(sprintf('longest wait %.2f s', $worst));
	my ($probes, $secs) = ($retried->() - $r0, time() - $t0);
	cmp_ok($probes, '<=', $secs / 2 + 2, 'probe: one probe at a time, each its 2 s')
	  or diag("$probes probes timed out in $secs s");
	is($node->safe_psql('postgres', q{SELECT count(*) FROM anomaly.outbox WHERE destination = 'stuck'}),
		'21', 'probe: the failing destination keeps its rows');
	# the peer answers again: the probe succeeds, then the backlog goes
	$node->safe_psql('postgres', qq{
		SELECT anomaly.alter_destination('stuck', '{"url": "$u/slow/0.2", "max_attempts": 1000}')});
	ok(wait_for(60, sub { queued($node, 'stuck') == 0 }), 'probe: once the peer answers, the backlog is delivered');
	my @got = grep { $_->{path} eq '/slow/0.2' } read_jsonl($slowsrv->{log});
	my %n;
	$n{ $_->{delivery} }++ for @got;
	is(scalar(keys %n) . '/' . scalar(@got), '21/21', 'probe: each of the 21 arrived once');
	$node->safe_psql('postgres', q{
		SELECT anomaly.drop_destination('stuck'); SELECT anomaly.drop_destination('quick');});
}

# --- a carried probe's outcome outlives a round that fails ----------------------
# A carried probe's outcome is written in the first round after it ends.
# When that round then failed (here: cancelled during another transfer),
# its outcome was rolled back with it but the probe already forgotten: the
# delivered row stayed leased for 64 s and was then sent again.  The probe
# is now let go only once the round that wrote its outcome commits.
{
	my $u = "http://127.0.0.1:$slowsrv->{port}";
	my $seen = sub {
		my ($subject) = @_;
		return scalar(grep { ($_->{body}{alert} // '') eq $subject } read_jsonl($slowsrv->{log}));
	};
	$node->safe_psql('postgres', qq{
		SELECT anomaly.create_destination('relapse', 'webhook', '{"url": "$u/status/404"}');
		SELECT anomaly.create_destination('steady', 'webhook', '{"url": "$u/slow/1.5"}');
		SELECT anomaly.send_alert('relapse', 'relapse gone', '{}');
	});
	ok(wait_for(30, sub { queued($node, 'relapse') == 0 }), 'relapse: its last attempt failed');
	# the probe (0.3 s) ends during the round that waits for s1 (1.5 s); the
	# next round records it, then waits for s2, and is cancelled
	$node->safe_psql('postgres', qq{
		SELECT anomaly.alter_destination('relapse', '{"url": "$u/slow/0.3"}');
		SELECT anomaly.send_alert('relapse', 'relapse probe', '{}');
		SELECT anomaly.send_alert('steady', 'steady s1', '{}');
	});
	ok(wait_for(30, sub { $seen->('steady s1') >= 1 }), 'relapse: s1 under way');
	$node->safe_psql('postgres', q{SELECT anomaly.send_alert('steady', 'steady s2', '{}')});
	ok(wait_for(30, sub { $seen->('steady s2') >= 1 }), 'relapse: s2 under way, in the round after the probe ended');
	is($node->safe_psql('postgres', q{
		SELECT count(pg_cancel_backend(pid)) FROM pg_stat_activity WHERE backend_type = 'anomaly alert sender'}),
		'1', 'relapse: that round is cancelled');
	ok(wait_for(10, sub { queued($node, 'relapse') == 0 }),
		'relapse: the probe\'s outcome is recorded again by the next round')
	  or diag($node->safe_psql('postgres', q{
		SELECT next_attempt_at - now() FROM anomaly.outbox WHERE destination = 'relapse'}));
	ok(wait_for(30, sub { queued($node, 'steady') == 0 }), 'relapse: s2 is sent again');
	is($seen->('relapse probe'), 1, 'relapse: the probe arrived once');
	$node->safe_psql('postgres', q{
		SELECT anomaly.drop_destination('relapse', force => true); SELECT anomaly.drop_destination('steady', force => true);});

	# A cancel between rounds, where the worker spends most of its time
	# now, has nothing to cancel: it ended the worker (exit code 1), and
	# with it any probe in flight.
	my $pid = $node->safe_psql('postgres', q{
		SELECT pid FROM pg_stat_activity WHERE backend_type = 'anomaly alert sender'});
	my $offset = -s $node->logfile;
	$node->safe_psql('postgres', "SELECT pg_cancel_backend($pid)");
	sleep(1.5);
	is($node->safe_psql('postgres', q{
		SELECT string_agg(pid::text, ',') FROM pg_stat_activity WHERE backend_type = 'anomaly alert sender'}),
		$pid, 'a cancel between rounds leaves the sender running');
	unlike(substr(slurp_file($node->logfile), $offset), qr/anomaly alert sender" \(PID $pid\) exited/,
		'it did not exit');
}

# --- a destination dropped while its probe is in flight -------------------------
# drop_destination(force => true) moves the queued rows to the dead letters,
# the row of a probe the sender worker carries (leased, not locked) among
# them.  When that probe was then delivered, its dead letter stayed
# ('destination dropped'): the tables said a delivered notification was
# not.  The probe's outcome now wins when it comes back: delivered, the
# dead letter goes; failed, it stays, its attempt counted.
{
	my $u = "http://127.0.0.1:$slowsrv->{port}";
	my $seen = sub {
		my ($subject) = @_;
		return scalar(grep { ($_->{body}{alert} // '') eq $subject } read_jsonl($slowsrv->{log}));
	};
	my $retried = sub {
		my ($dest) = @_;
		return $node->safe_psql('postgres', qq{
			SELECT coalesce(sum(retried), 0) FROM anomaly.delivery_counters WHERE destination = '$dest'});
	};
	my $letters = sub {
		my ($dest) = @_;
		return $node->safe_psql('postgres', qq{
			SELECT count(*) || '|' || coalesce(string_agg(error || ':' || attempts, ','), '')
			FROM anomaly.dead_letters WHERE destination = '$dest'});
	};
	$node->safe_psql('postgres', qq{
		SELECT anomaly.create_destination('doomed', 'webhook', '{"url": "$u/status/503", "max_attempts": 1000}');
		SELECT anomaly.send_alert('doomed', 'doomed probe', '{}');
	});
	ok(wait_for(30, sub { $retried->('doomed') >= 1 }), 'dropped probe: its first attempt failed');
	# its next attempt is a carried probe, at a peer that answers in 1.5 s
	$node->safe_psql('postgres', qq{
		SELECT anomaly.alter_destination('doomed', '{"url": "$u/slow/1.5", "max_attempts": 1000}')});
	ok(wait_for(30, sub { $seen->('doomed probe') >= 1 }), 'dropped probe: the probe reached the peer');
	$node->safe_psql('postgres', q{SELECT anomaly.drop_destination('doomed', force => true)});
	like($letters->('doomed'), qr/^1\|destination dropped:\d+$/,
		'dropped probe: the drop, while the probe ran, moved its row to the dead letters');
	ok(wait_for(15, sub { $letters->('doomed') eq '0|' }),
		'dropped probe: delivered after all, it is no dead letter')
	  or diag($letters->('doomed'));
	is($seen->('doomed probe'), 1, 'dropped probe: it arrived once');
	is($node->safe_psql('postgres', q{SELECT count(*) FROM anomaly.delivery_counters WHERE destination = 'doomed'}),
		'0', 'dropped probe: no counters are left under the dropped name');

	# A probe whose outcome the sender records while the drop's transaction
	# is open: the sender waits for the drop.  It then wrote the dropped
	# destination's counters again (its last outcome an error), and a
	# destination made again under that name started as failing, with its
	# predecessor's totals.
	$node->safe_psql('postgres', qq{
		SELECT anomaly.create_destination('phoenix', 'webhook', '{"url": "$g/slowloris", "max_attempts": 1000}');
		SELECT anomaly.send_alert('phoenix', 'phoenix probe', '{}');
	});
	ok(wait_for(30, sub { $retried->('phoenix') >= 1 }), 'drop during a record: the first attempt timed out');
	ok(wait_for(30, sub {
		$node->safe_psql('postgres', q{
			SELECT count(*) FROM anomaly.outbox
			WHERE destination = 'phoenix' AND next_attempt_at > now() + interval '30 s'}) eq '1' }),
		'drop during a record: its probe is carried');
	my $drop = $node->background_psql('postgres');
	$drop->query_safe(q{BEGIN; SELECT anomaly.drop_destination('phoenix', force => true)});
	my ($at_drop) = $drop->query_safe(q{
		SELECT 'attempts=' || attempts FROM anomaly.dead_letters WHERE destination = 'phoenix'}) =~ /attempts=(\d+)/;
	$at_drop //= -1;
	ok(wait_for(30, sub {
		$node->safe_psql('postgres', q{
			SELECT count(*) FROM pg_stat_activity
			WHERE backend_type = 'anomaly alert sender' AND wait_event_type = 'Lock'}) eq '1' }),
		'drop during a record: the probe timed out, the sender waits for the drop to record it');
	$drop->query_safe('COMMIT');
	$drop->quit;
	ok(wait_for(15, sub { $letters->('phoenix') eq '1|destination dropped:' . ($at_drop + 1) }),
		'drop during a record: the dead letter counts the probe\'s attempt')
	  or diag($letters->('phoenix') . ", $at_drop attempts at the drop");
	is($node->safe_psql('postgres', q{SELECT count(*) FROM anomaly.delivery_counters WHERE destination = 'phoenix'}),
		'0', 'drop during a record: no counters are left under the dropped name');
	$node->safe_psql('postgres', q{
		SELECT anomaly.create_destination('phoenix', 'notify', '{"channel": "phoenix"}')});
	is($node->safe_psql('postgres', q{
		SELECT retried || '|' || (last_error IS NULL) FROM anomaly.delivery_status WHERE destination = 'phoenix'}),
		'0|true', 'drop during a record: a destination made again under the name starts fresh');
	$node->safe_psql('postgres', q{SELECT anomaly.drop_destination('phoenix')});
}

# --- secrets --------------------------------------------------------------------

$node->safe_psql('postgres', 'CREATE ROLE plain LOGIN');
($rc, $out, $err) = $node->psql('postgres', 'SHOW anomaly.credentials', extra_params => [ '-U', 'plain' ]);
like($err, qr/must be superuser/, 'a non-superuser cannot SHOW the credentials');
is($node->safe_psql('postgres', q{SELECT count(*) FROM pg_settings WHERE name IN ('anomaly.credentials', 'anomaly.aws_access_key_id', 'anomaly.aws_secret_access_key', 'anomaly.aws_session_token')},
	extra_params => [ '-U', 'plain' ]), '0', 'nor see them in pg_settings');
($rc, $out, $err) = $node->psql('postgres', 'SELECT config FROM anomaly.destinations', extra_params => [ '-U', 'plain' ]);
isnt($rc, 0, 'nor read the destinations');

# a reloaded secret and ALTER SYSTEM with another one
$node->append_conf('postgresql.conf', "anomaly.credentials = 'hook_secret=$secret; other=Rel0adedS3cret-9f'\n");
$node->reload;
$node->safe_psql('postgres', q{ALTER SYSTEM SET anomaly.credentials = 'x=AlterSystemS3cret-11'});
$node->safe_psql('postgres', q{ALTER SYSTEM RESET anomaly.credentials});
$node->safe_psql('postgres', "SELECT anomaly.send_alert('good', 'after reload')");
ok(wait_for(30, sub { queued($node, 'good') == 0 }), 'delivered after the reload');
sleep(0.5);
for my $v ($secret, $env_secret, 'Rel0adedS3cret-9f', 'AlterSystemS3cret-11', 'xyzzy-unused')
{
	ok(!log_contains($node, $v), "no log line holds the secret $v");
}
ok(log_contains($node, 'parameter "anomaly.credentials" changed (value hidden)'),
	'the reload is logged without the value');

$node->stop;
done_testing();
