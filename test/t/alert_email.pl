
# E-mail through libcurl's SMTP to an aiosmtpd sink (test/servers/smtp_sink.py):
# every message arrives with its headers and body; a refused recipient (550)
# is a dead letter; a temporary refusal (451) is retried; STARTTLS required
# against a server without it is an error, not a plain-text send.  Also
# NOTIFY destinations: LISTENers get the payload when the sender commits.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../servers";
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);

use AlertTest;

my $smtp = start_server('smtp_sink.py');
my $url = "smtp://127.0.0.1:$smtp->{port}";

my $node = new_alert_node('email',
	"anomaly.retry_base = '20ms'",
	"anomaly.retry_max = '200ms'",
	"anomaly.max_attempts = 3",
	"anomaly.request_timeout = '3s'");

$node->safe_psql('postgres', qq{
	SELECT anomaly.create_destination('mail', 'email', '{"url": "$url", "from": "anomaly\@example.com", "to": ["ops\@example.com", "oncall\@example.com"], "subject_prefix": "[anomaly]"}');
	SELECT anomaly.create_destination('refused', 'email', '{"url": "$url", "from": "anomaly\@example.com", "to": ["reject\@example.com"]}');
	SELECT anomaly.create_destination('later', 'email', '{"url": "$url", "from": "anomaly\@example.com", "to": ["tempfail\@example.com"]}');
	SELECT anomaly.create_destination('chan', 'notify', '{"channel": "anomaly_alerts"}');
	SELECT anomaly.create_destination('tls', 'email', '{"url": "$url", "from": "anomaly\@example.com", "to": ["ops\@example.com"], "starttls": "required"}');
});

sub queued
{
	my ($dest) = @_;
	return $node->safe_psql('postgres',
		"SELECT count(*) FROM anomaly.outbox WHERE destination = '$dest'");
}

$node->safe_psql('postgres', q{
	SELECT count(anomaly.send_alert('mail', 'disk full on db' || i,
		jsonb_build_object('n', i, 'score', 2.5, 'severity', 'critical')))
	FROM generate_series(1, 50) i});
ok(wait_for(60, sub { queued('mail') == 0 }), '50 e-mails left the outbox');
my @mails = read_jsonl($smtp->{log});
is(scalar(@mails), 50, 'the sink received 50 messages');
my %n = map { ($_->{subject} =~ /db(\d+)$/)[0] => 1 } @mails;
is(scalar(keys %n), 50, 'each alert once');
is_deeply($mails[0]{rcpt_tos}, [ 'ops@example.com', 'oncall@example.com' ], 'to every recipient');
is($mails[0]{mail_from}, 'anomaly@example.com', 'from the configured sender');
like($mails[0]{subject}, qr/^\[anomaly\] disk full on db\d+$/, 'subject with its prefix');
like($mails[0]{message_id}, qr/^<anomaly-\d+\@anomaly\.invalid>$/, 'Message-ID from the dedup id');
like($mails[0]{body}, qr/^FIRING \[critical\] \[?.*score=2\.5000/, 'a summary line');
like($mails[0]{body}, qr/"version": 1/, 'and the JSON payload');
like($mails[0]{fingerprint}, qr/^[0-9a-f]{32}$/, 'X-Anomaly-Fingerprint header');

$node->safe_psql('postgres', "SELECT anomaly.send_alert('refused', 'nobody home')");
ok(wait_for(30, sub { $node->safe_psql('postgres',
	"SELECT count(*) FROM anomaly.dead_letters WHERE destination = 'refused'") == 1 }),
	'a 550 recipient is a dead letter');
like($node->safe_psql('postgres', "SELECT attempts || ' ' || error FROM anomaly.dead_letters WHERE destination = 'refused'"),
	qr/^1 .*550/, 'after one attempt, with the SMTP error');

$node->safe_psql('postgres', "SELECT anomaly.send_alert('later', 'try later')");
ok(wait_for(30, sub { $node->safe_psql('postgres',
	"SELECT count(*) FROM anomaly.dead_letters WHERE destination = 'later'") == 1 }),
	'a 451 recipient is retried, then given up');
like($node->safe_psql('postgres', "SELECT error FROM anomaly.dead_letters WHERE destination = 'later'"),
	qr/^gave up after 3 attempts: .*451/, 'after max_attempts, with the SMTP error');

my $detail = $node->safe_psql('postgres', "SELECT ok || ' ' || detail FROM anomaly.test_destination('tls')");
like($detail, qr/^false .*(STARTTLS|SSL|TLS)/i, "STARTTLS required and not offered: $detail");
is(scalar(read_jsonl($smtp->{log})), 50, 'nothing was sent in clear text');

my ($rc, $out, $err) = $node->psql('postgres', q{
	LISTEN anomaly_alerts;
	SELECT anomaly.send_alert('chan', 'to listeners', '{"n": 42}');
	SELECT pg_sleep(1.5);});
like($out, qr/Asynchronous notification "anomaly_alerts" with payload "\{.*"alert": "to listeners".*\}" received/,
	'NOTIFY delivered the JSON payload to a listener');
is(queued('chan'), '0', 'and the outbox row is gone');

$node->stop;
done_testing();
