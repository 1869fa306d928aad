
# SNS Publish against the local stand-in (test/servers/sns_standin.py), which
# checks every SigV4 signature with its own Python implementation and
# enforces SNS's limits: attributes and subject, truncation to 262,144 bytes,
# a FIFO topic under injected faults (every message published, duplicates
# only after ambiguous failures and with the same deduplication id), a
# permanent error to the dead letters, a wrong key refused, credentials from
# the shared credentials file and from IMDSv2, hostile answers bounded, and
# no AWS secret in the log.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../servers";
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);

use AlertTest;

my $key_id = 'AKIDANOMALYTEST0001';
my $secret = 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYTESTKEY01';
my $token = 'IQoJb3JpZ2luX2VjEXAMPLETOKEN//////////wEaCWV1LXdlc3QtMSJHMEUCIQ';
my $container_auth = 'ecsAUTHtoken0123456789abcdefSECRET';

my $sns = start_server('sns_standin.py', '--access-key', $key_id, '--secret-key', $secret,
	'--session-token', $token, '--region', 'eu-west-1', '--fault-prefix', 'faulty',
	'--faults', 'throttle=0.08,500=0.04,503=0.04,slow=0.02,drop=0.03,drop_after=0.02,malformed=0.03',
	'--slow-seconds', '2.5', '--imds-key', 'AKIDFROMIMDS00000001',
	'--container-key', 'AKIDFROMECS000000001', '--container-auth', $container_auth, '--seed', '11');
my $endpoint = "http://127.0.0.1:$sns->{port}/";

my $node = new_alert_node('sns',
	"anomaly.sns_endpoint = '$endpoint'",
	"anomaly.aws_access_key_id = '$key_id'",
	"anomaly.aws_secret_access_key = '$secret'",
	"anomaly.aws_session_token = '$token'",
	"anomaly.aws_imds_endpoint = ''",
	"anomaly.retry_max = '500ms'",
	"anomaly.max_attempts = 40",
	"anomaly.request_timeout = '1500ms'",
	"anomaly.connect_timeout = '1s'",
	@LOG_EVERYTHING);

# The destinations: name => topic.
my $arn = 'arn:aws:sns:eu-west-1:123456789012';
my %topics = (
	ops => 'ops',
	fifo => 'faulty.fifo',
	missing => 'missing-topic',
	map { ("h-$_" => "hostile-$_") } qw(huge headers slowloris xml));
$node->safe_psql('postgres', join('', map {
	qq{SELECT anomaly.create_destination('$_', 'sns', '{"topic_arn": "$arn:$topics{$_}"}');\n}
} sort keys %topics));

sub entries
{
	my ($topic) = @_;
	return grep { ($_->{topic} // '') eq "$arn:$topic" } read_jsonl($sns->{log});
}

# --- a standard topic: subject, attributes, message ----------------------------

$node->safe_psql('postgres', q{
	SELECT anomaly.send_alert('ops', E'\n[FIRING] rides-high:\trides zone=a ' || repeat('x', 150),
		'{"detector": "rides", "score": 3.25, "severity": "critical", "key": {"zone": "a"}}')});
ok(wait_for(30, sub { scalar(grep { $_->{outcome} eq 'published' } entries('ops')) == 1 }),
	'published to a standard topic, signature verified');
my ($p) = grep { $_->{outcome} eq 'published' } entries('ops');
is(length($p->{subject}), 99, 'Subject cut below 100 characters');
like($p->{subject}, qr/^\[FIRING\] rides-high: rides zone=a x+$/, 'Subject on one printable line');
is_deeply($p->{attributes}, {
	severity => { type => 'String', value => 'critical' },
	detector => { type => 'String', value => 'rides' },
	score => { type => 'Number', value => '3.25' } }, 'message attributes severity, detector, score');
my $m = decode_json($p->{message});
is($m->{version}, 1, 'Message is the version 1 JSON payload');
is_deeply($m->{key}, { zone => 'a' }, 'with its key');
ok(!defined $p->{group} && !defined $p->{dedup}, 'no FIFO parameters for a standard topic');

# --- a rule's templates: SNS Subject and Message (issue 17) ---------------------

ticks_alert($node, q{destination => 'ops', severity => 'critical',
		subject_template => 'not this one: the SNS template wins',
		templates => '{"sns": {"subject": "{{row.ticker}} anomaly {{score}}", "message": "{{row.ticker}} at {{row.price}} scored {{score}} (grade {{grade}})"}}'},
	anomaly_grade => 0.8);
ok(wait_for(30, sub { scalar(grep { $_->{outcome} eq 'published' } entries('ops')) == 2 }),
	'the templated rule notification was published');
($p) = grep { $_->{outcome} eq 'published' && ($_->{subject} // '') =~ /AMZN/ } entries('ops');
is($p->{subject}, 'AMZN anomaly 3.25', 'Subject from the SNS subject template');
is($p->{message}, 'AMZN at 101.5 scored 3.25 (grade 0.8)', 'Message is the formatted text');
is($p->{attributes}{detector}{value}, 'ticks', 'attributes as before');

# --- the 262,144-byte limit ---------------------------------------------------

$node->safe_psql('postgres', q{
	SELECT anomaly.send_alert('ops', 'huge', jsonb_build_object('detector', 'rides', 'score', 1,
		'explanation', jsonb_build_object('blob', repeat('é', 200000))))});
ok(wait_for(30, sub { scalar(grep { $_->{outcome} eq 'published' } entries('ops')) == 3 }),
	'a 400 kB payload was published');
($p) = (grep { $_->{outcome} eq 'published' } entries('ops'))[2];
my $bytes = do { use bytes; length($p->{message}) };
cmp_ok($bytes, '<=', 262144, "Message within the limit ($bytes bytes)");
$m = eval { JSON::PP->new->utf8(0)->decode($p->{message}) };
ok($m, 'and still valid JSON');
is_deeply($m->{truncated}, ['details', 'explanation'], 'truncated values are listed');

# --- FIFO under faults: all published, duplicates only after ambiguity -------

my $n = 1500;
$node->safe_psql('postgres', qq{
	CREATE TABLE sent AS
	SELECT 'anomaly-' || anomaly.send_alert('fifo', 'fifo ' || i, jsonb_build_object('n', i)) AS dedup
	FROM generate_series(1, $n) i});
ok(wait_for(150, sub { queued($node, 'fifo') == 0 }), 'FIFO outbox drained despite faults');
my @f = entries('faulty.fifo');
my %want = map { $_ => 1 } split /\n/, $node->safe_psql('postgres', 'SELECT dedup FROM sent');
my (%published, %ambiguous, %faults);
for my $e (sort { $a->{t} <=> $b->{t} } @f)
{
	$faults{ $e->{fault} // 'none' }++;
	next unless $e->{outcome} eq 'published';
	if ($published{ $e->{dedup} }++)
	{
		# a second publish must follow an ambiguous first one
		$ambiguous{ $e->{dedup} } //= 0;
	}
}
my %amb_first;
for my $e (@f)
{
	$amb_first{ $e->{dedup} } = 1
	  if $e->{outcome} eq 'published' && ($e->{fault} // '') =~ /^(slow|drop_after|malformed)$/;
}
is(scalar(grep { !$published{$_} } keys %want), 0, "all $n FIFO messages were published");
my @dups = grep { $published{$_} > 1 } keys %published;
is(scalar(grep { !$amb_first{$_} } @dups), 0,
	scalar(@dups) . ' duplicates, each after an ambiguous failure');
is(scalar(grep { $_->{duplicate} && !$amb_first{ $_->{dedup} } } @f), 0,
	'the stand-in saw repeats only under the same deduplication id');
cmp_ok(($faults{throttle} // 0) + ($faults{500} // 0) + ($faults{503} // 0), '>', 50,
	'faults were injected: ' . join(', ', map { "$_=$faults{$_}" } sort keys %faults));
my ($e) = grep { $_->{outcome} eq 'published' } @f;
like($e->{group}, qr/^[0-9a-f]{32}$/, 'MessageGroupId is the alert fingerprint');
is($node->safe_psql('postgres', "SELECT dead FROM anomaly.delivery_status WHERE destination = 'fifo'"),
	'0', 'no FIFO message went to the dead letters');

# --- a permanent error ---------------------------------------------------------

$node->safe_psql('postgres', "SELECT anomaly.send_alert('missing', 'to nowhere')");
ok(wait_for(30, sub { $node->safe_psql('postgres',
	"SELECT count(*) FROM anomaly.dead_letters WHERE destination = 'missing'") == 1 }),
	'NotFound went to the dead letters');
is($node->safe_psql('postgres', "SELECT error FROM anomaly.dead_letters WHERE destination = 'missing'"),
	'SNS HTTP 404 NotFound', 'with the SNS error code');
is($node->safe_psql('postgres', "SELECT e.detail FROM anomaly.delivery_errors e JOIN anomaly.dead_letters d USING (outbox_id) WHERE d.destination = 'missing'"),
	'SNS HTTP 404 NotFound: Topic does not exist', 'and its message for superusers');

# --- a failing topic's probe, carried over rounds ------------------------------
# The sender does not wait for a failing destination's probe (session 10):
# its signed request (session token and all) goes on across rounds while
# other destinations are served.  NotFound first (a dead letter, the
# destination's last outcome an error), then a topic that answers after
# 1 s: the first of three is the probe; each is published once.

$node->safe_psql('postgres', qq{
	SELECT anomaly.create_destination('snsprobe', 'sns', '{"topic_arn": "$arn:missing-probe"}');
	SELECT anomaly.create_destination('snsquick', 'notify', '{"channel": "snsquick"}');
	SELECT anomaly.send_alert('snsprobe', 'probe to nowhere');
});
ok(wait_for(30, sub { $node->safe_psql('postgres',
	"SELECT count(*) FROM anomaly.dead_letters WHERE destination = 'snsprobe'") == 1 }),
	'carried probe: NotFound is a dead letter');
$node->safe_psql('postgres', qq{
	SELECT anomaly.alter_destination('snsprobe', '{"topic_arn": "$arn:slow-probe"}');
	SELECT count(anomaly.send_alert('snsprobe', 'probe ' || i, jsonb_build_object('n', i))) FROM generate_series(1, 3) i;
});
ok(wait_for(30, sub { $node->safe_psql('postgres', q{
	SELECT count(*) FROM anomaly.outbox
	WHERE destination = 'snsprobe' AND next_attempt_at > now() + interval '30 s'}) == 1 }),
	'carried probe: one row leased while its request runs');
{
	my $t0 = time();
	$node->safe_psql('postgres', "SELECT anomaly.send_alert('snsquick', 'beside the probe')");
	ok(wait_for(30, sub { queued($node, 'snsquick') == 0 }), 'carried probe: another destination\'s notification is sent');
	cmp_ok(time() - $t0, '<', 0.9, 'carried probe: without waiting for the slow topic');
}
ok(wait_for(60, sub { queued($node, 'snsprobe') == 0 }), 'carried probe: the backlog left the outbox');
is(join(',', sort map { $_->{outcome} . '/' . ($_->{subject} // '') } entries('slow-probe')),
	'published/probe 1,published/probe 2,published/probe 3', 'carried probe: each published once, signed');

# --- hostile answers ---------------------------------------------------------------

my %hostile = (
	'h-huge' => qr/^response body larger than/,
	'h-headers' => qr/^response headers larger than/,
	'h-slowloris' => qr/^timed out after/,
	'h-xml' => qr/^SNS HTTP 400 Oops: $|^unparseable SNS response/);
for my $d (sort keys %hostile)
{
	my $t = time();
	my $detail = $node->safe_psql('postgres', "SELECT detail FROM anomaly.test_destination('$d')");
	like($detail, $hostile{$d}, "$d: recorded as '$detail'");
	cmp_ok(time() - $t, '<', 4, "$d: bounded");
}

# --- the signature is really checked -----------------------------------------------

$node->append_conf('postgresql.conf', "anomaly.aws_secret_access_key = 'WRONGwrongWRONGwrong/secretKEY00000000'\n");
$node->reload;
sleep(0.3);
like($node->safe_psql('postgres', "SELECT detail FROM anomaly.test_destination('ops')"),
	qr/SignatureDoesNotMatch/, 'a wrong secret key is refused by the stand-in');

# --- the shared credentials file ---------------------------------------------------

my $dir = PostgreSQL::Test::Utils::tempdir();
open(my $fh, '>', "$dir/credentials") or die;
print $fh "[default]\naws_access_key_id = AKIDWRONG\naws_secret_access_key = nope\n\n"
  . "[alerts]\naws_access_key_id = $key_id\naws_secret_access_key = $secret\naws_session_token = $token\n";
close $fh;
chmod 0600, "$dir/credentials";
$node->append_conf('postgresql.conf', join("\n",
	"anomaly.aws_access_key_id = ''", "anomaly.aws_secret_access_key = ''",
	"anomaly.aws_session_token = ''",
	"anomaly.aws_shared_credentials_file = '$dir/credentials'",
	"anomaly.aws_profile = 'alerts'") . "\n");
$node->reload;
sleep(0.3);
is($node->safe_psql('postgres', "SELECT ok || ' ' || detail FROM anomaly.test_destination('ops')"),
	'true delivered', 'credentials from a profile of the shared credentials file');

# --- EC2 instance metadata (IMDSv2) ------------------------------------------------

$node->append_conf('postgresql.conf', join("\n",
	"anomaly.aws_shared_credentials_file = '$dir/none'",
	"anomaly.aws_imds_endpoint = 'http://127.0.0.1:$sns->{port}'") . "\n");
$node->reload;
sleep(0.3);
is($node->safe_psql('postgres', "SELECT ok || ' ' || detail FROM anomaly.test_destination('ops')"),
	'true delivered', 'credentials from IMDSv2 (token, role, document)');
ok(scalar(grep { ($_->{outcome} // '') eq 'imds PUT /latest/api/token' } read_jsonl($sns->{log})) >= 1,
	'IMDSv2 session token requested with PUT');

# --- ECS container credentials -----------------------------------------------------

# The endpoint and its authorization token come from the server's environment,
# as ECS sets them for a task; they are read when credentials are needed, and
# take precedence over IMDS.
$node->stop;
{
	local $ENV{AWS_CONTAINER_CREDENTIALS_FULL_URI} =
	  "http://127.0.0.1:$sns->{port}/v2/credentials/anomaly-task";
	local $ENV{AWS_CONTAINER_AUTHORIZATION_TOKEN} = $container_auth;
	$node->start;
}
is($node->safe_psql('postgres', "SELECT ok || ' ' || detail FROM anomaly.test_destination('ops')"),
	'true delivered', 'credentials from the ECS container endpoint');
my @container = grep { ($_->{outcome} // '') =~ /^container / } read_jsonl($sns->{log});
is(scalar(@container) >= 1 ? $container[0]{outcome} : 'none',
	'container GET /v2/credentials/anomaly-task',
	'the container endpoint was asked, with its authorization token (it refuses requests without)');
my @signed = grep { ($_->{key} // '') eq 'AKIDFROMECS000000001' } read_jsonl($sns->{log});
ok(scalar(@signed) >= 1, 'the publish was signed with the container credentials');

# A document that is not JSON is refused, saying so without quoting it (the
# stand-in writes the secret unquoted); IMDS, tried next, is off.
$node->stop;
$node->append_conf('postgresql.conf', "anomaly.aws_imds_endpoint = ''\n");
{
	local $ENV{AWS_CONTAINER_CREDENTIALS_FULL_URI} =
	  "http://127.0.0.1:$sns->{port}/v2/credentials/broken";
	local $ENV{AWS_CONTAINER_AUTHORIZATION_TOKEN} = $container_auth;
	$node->start;
}
my $broken = $node->safe_psql('postgres',
	"SELECT ok || ' ' || detail FROM anomaly.test_destination('ops')");
like($broken,
	qr/^false .*the container credentials endpoint returned an unusable credential document: the document is not valid JSON \(at byte \d+\)/,
	'a credential document that is not JSON is refused, and why is said');
unlike($broken, qr/\Q$secret\E/, 'the refusal quotes none of the document');

# --- no AWS secret in the log --------------------------------------------------------

sleep(0.3);
for my $v ($secret, $token, 'WRONGwrongWRONGwrong/secretKEY00000000', $container_auth)
{
	ok(!log_contains($node, $v), 'no log line holds an AWS secret (' . substr($v, 0, 8) . '...)');
}

$node->stop;
done_testing();
