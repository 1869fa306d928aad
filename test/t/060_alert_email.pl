
# E-mail through libcurl's SMTP to an aiosmtpd sink (test/servers/smtp_sink.py):
# every message arrives with its headers and body; a refused recipient (550)
# is a dead letter; a temporary refusal (451) is retried; STARTTLS required
# against a server without it is an error, not a plain-text send; STARTTLS
# and implicit TLS (smtps) with AUTH against sinks with a certificate of a
# private CA (anomaly.tls_ca_file), which is refused until that CA is
# trusted, a wrong password refused, and the password never logged.  Also
# NOTIFY destinations: LISTENers get a reference to the alert when the
# sender commits (any role may LISTEN: a role with no privileges hears it
# and learns nothing of the alert), or the whole payload where a superuser
# set "payload": "full".

use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../servers";
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);
use IPC::Run;
use JSON::PP;

use AlertTest;

my $smtp = start_server('smtp_sink.py');

my $node = new_alert_node('email',
	"anomaly.retry_max = '200ms'",
	"anomaly.max_attempts = 3",
	"anomaly.request_timeout = '3s'");

# The SQL creating an e-mail destination to the sink, from
# anomaly@example.com, with the further settings %config.
sub mail_destination
{
	my ($name, %config) = @_;
	my $json = JSON::PP->new->canonical->encode(
		{ url => $smtp->{url}, from => 'anomaly@example.com', %config });
	return "SELECT anomaly.create_destination('$name', 'email', '$json');\n";
}

$node->safe_psql('postgres', join('',
	mail_destination('mail', to => [ 'ops@example.com', 'oncall@example.com' ],
		subject_prefix => '[anomaly]'),
	mail_destination('refused', to => ['reject@example.com']),
	mail_destination('later', to => ['tempfail@example.com']),
	mail_destination('once', to => ['tempfail@example.com'], max_attempts => 1),
	q{SELECT anomaly.create_destination('chan', 'notify', '{"channel": "anomaly_alerts"}');
	SELECT anomaly.create_destination('chan_full', 'notify', '{"channel": "anomaly_full", "payload": "full"}');
},
	mail_destination('tls', to => ['ops@example.com'], starttls => 'required')));

$node->safe_psql('postgres', q{
	SELECT count(anomaly.send_alert('mail', 'disk full on db' || i,
		jsonb_build_object('n', i, 'score', 2.5, 'severity', 'critical')))
	FROM generate_series(1, 50) i});
ok(wait_for(60, sub { queued($node, 'mail') == 0 }), '50 e-mails left the outbox');
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

$node->safe_psql('postgres', "SELECT anomaly.send_alert('once', 'try once')");
ok(wait_for(30, sub { $node->safe_psql('postgres',
	"SELECT count(*) FROM anomaly.dead_letters WHERE destination = 'once'") == 1 }),
	'a destination with its own max_attempts');
like($node->safe_psql('postgres', "SELECT attempts || ' ' || error FROM anomaly.dead_letters WHERE destination = 'once'"),
	qr/^1 gave up after 1 attempts: .*451/, 'gives up after its own number of attempts');

my $detail = $node->safe_psql('postgres', "SELECT ok || ' ' || detail FROM anomaly.test_destination('tls')");
like($detail, qr/^false .*(STARTTLS|SSL|TLS)/i, "STARTTLS required and not offered: $detail");
is(scalar(read_jsonl($smtp->{log})), 50, 'nothing was sent in clear text');

# A role with no privileges listens on the channel while an alert goes out.
$node->safe_psql('postgres', 'CREATE ROLE plain LOGIN');
my ($lout, $lerr) = ('', '');
my $listener = IPC::Run::start(
	[ 'psql', '-X', '-d', $node->connstr('postgres'), '-U', 'plain',
	  '-c', 'LISTEN anomaly_alerts', '-c', 'SELECT pg_sleep(3)' ],
	'>', \$lout, '2>', \$lerr);
ok(wait_for(10, sub { $node->safe_psql('postgres',
	q{SELECT count(*) FROM pg_stat_activity WHERE usename = 'plain' AND query LIKE '%pg_sleep%'}) == 1 }),
	'plain is listening');
my $id = $node->safe_psql('postgres',
	q{SELECT anomaly.send_alert('chan', 'secret subject', '{"n": 42, "key": {"card": "4111-secret"}}')});
$listener->finish;
like($lout, qr/Asynchronous notification "anomaly_alerts" with payload "\{"id": $id, "source": "send_alert", "status": "firing", "payload": "reference", "version": 1, "severity": "info"\}" received/,
	'a listener with no privileges gets a reference to the outbox row');
unlike($lout, qr/secret|4111|"n"/, 'and nothing of the alert');
is(queued($node, 'chan'), '0', 'and the outbox row is gone');

my ($rc, $out, $err) = $node->psql('postgres', q{
	LISTEN anomaly_full;
	SELECT anomaly.send_alert('chan_full', 'to listeners', '{"n": 42}');
	SELECT pg_sleep(1.5);});
like($out, qr/Asynchronous notification "anomaly_full" with payload "\{.*"alert": "to listeners".*\}" received/,
	'NOTIFY delivered the JSON payload to a listener of a full destination');
is(queued($node, 'chan_full'), '0', 'and the outbox row is gone');

# --- TLS and AUTH --------------------------------------------------------------

# A private CA and a certificate for 127.0.0.1 signed by it.
my $pki = PostgreSQL::Test::Utils::tempdir();
open(my $ext, '>', "$pki/ext") or die;
print $ext "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n";
close $ext;
for my $cmd (
	"openssl req -x509 -newkey rsa:2048 -nodes -keyout $pki/ca.key -out $pki/ca.pem -days 2 -subj /CN=anomaly-test-ca",
	"openssl req -newkey rsa:2048 -nodes -keyout $pki/srv.key -out $pki/srv.csr -subj /CN=127.0.0.1",
	"openssl x509 -req -in $pki/srv.csr -CA $pki/ca.pem -CAkey $pki/ca.key -CAcreateserial -out $pki/srv.pem -days 2 -extfile $pki/ext")
{
	system("$cmd >/dev/null 2>&1") == 0 or die "failed: $cmd";
}
my $password = 'SMTPpw-7f3a9c1e-do-not-log';
my $starttls = start_server('smtp_sink.py', '--tls-cert', "$pki/srv.pem", '--tls-key', "$pki/srv.key",
	'--auth', "alerts:$password");
my $smtps = start_server('smtp_sink.py', '--tls-cert', "$pki/srv.pem", '--tls-key', "$pki/srv.key",
	'--smtps', '--auth', "alerts:$password");
$node->append_conf('postgresql.conf',
	"anomaly.credentials = 'smtp_pw=$password; smtp_bad=not-the-password'\n"
	. "anomaly.credential_bindings = 'smtp_pw=smtp://127.0.0.1:$starttls->{port} smtps://127.0.0.1:$smtps->{port}; smtp_bad=smtp://127.0.0.1:$starttls->{port}'\n");
$node->reload;
my $from = '"from": "anomaly@example.com", "to": ["ops@example.com"], "username": "alerts"';
$node->safe_psql('postgres', qq{
	SELECT anomaly.create_destination('starttls', 'email', '{"url": "smtp://127.0.0.1:$starttls->{port}", $from, "credential": "smtp_pw", "starttls": "required"}');
	SELECT anomaly.create_destination('smtps', 'email', '{"url": "smtps://127.0.0.1:$smtps->{port}", $from, "credential": "smtp_pw"}');
	SELECT anomaly.create_destination('badpw', 'email', '{"url": "smtp://127.0.0.1:$starttls->{port}", $from, "credential": "smtp_bad", "starttls": "required"}');
});

$detail = $node->safe_psql('postgres', "SELECT ok || ' ' || detail FROM anomaly.test_destination('starttls')");
like($detail, qr/^false .*(certificate|SSL)/i, "a certificate of an untrusted CA is refused: $detail");
$detail = $node->safe_psql('postgres', "SELECT ok || ' ' || detail FROM anomaly.test_destination('smtps')");
like($detail, qr/^false .*(certificate|SSL)/i, "also over smtps: $detail");
is(scalar(read_jsonl($starttls->{log})) + scalar(read_jsonl($smtps->{log})), 0, 'nothing was sent');

$node->append_conf('postgresql.conf', "anomaly.tls_ca_file = '$pki/ca.pem'\n");
$node->reload;
sleep(0.3);
is($node->safe_psql('postgres', "SELECT ok || ' ' || detail FROM anomaly.test_destination('starttls')"),
	'true delivered', 'STARTTLS and AUTH with the CA trusted');
is($node->safe_psql('postgres', "SELECT ok || ' ' || detail FROM anomaly.test_destination('smtps')"),
	'true delivered', 'smtps and AUTH with the CA trusted');
my @tls_mail = (read_jsonl($starttls->{log}), read_jsonl($smtps->{log}));
is(join(' ', map { ($_->{tls} ? 'tls' : 'clear') . '/' . ($_->{auth_user} // '-') } @tls_mail),
	'tls/alerts tls/alerts', 'both over TLS, authenticated as the configured user');
$detail = $node->safe_psql('postgres', "SELECT ok || ' ' || detail FROM anomaly.test_destination('badpw')");
like($detail, qr/^false .*(535|auth|login)/i, "a wrong password is refused: $detail");
is(scalar(grep { $_->{auth_failed} } read_jsonl($starttls->{log})), 1, 'after one AUTH attempt');

# AUTH only over a connection sure to be encrypted (issue 12): with
# "starttls" try or none, the password is not sent, even where it is bound,
# unless a superuser allows it.
my $before = scalar(read_jsonl($starttls->{log}));
$node->safe_psql('postgres', qq{
	SELECT anomaly.create_destination('plaintry', 'email', '{"url": "smtp://127.0.0.1:$starttls->{port}", $from, "credential": "smtp_pw", "starttls": "try"}');
	SELECT anomaly.create_destination('plainnone', 'email', '{"url": "smtp://127.0.0.1:$starttls->{port}", $from, "credential": "smtp_pw", "starttls": "none"}');
});
for my $d ('plaintry', 'plainnone')
{
	like($node->safe_psql('postgres', "SELECT ok || ' ' || detail FROM anomaly.test_destination('$d')"),
		qr/^false SMTP AUTH over a connection that may not be encrypted is refused/,
		"$d: AUTH over plain text refused");
}
is(scalar(read_jsonl($starttls->{log})), $before, 'the server heard nothing (no AUTH, no mail)');
$node->append_conf('postgresql.conf', "anomaly.smtp_allow_plaintext_auth = on\n");
$node->reload;
sleep(0.5);
is($node->safe_psql('postgres', "SELECT ok || ' ' || detail FROM anomaly.test_destination('plaintry')"),
	'true delivered', 'allowed by a superuser: sent (STARTTLS taken when offered)');
$node->append_conf('postgresql.conf', "anomaly.smtp_allow_plaintext_auth = off\n");
$node->reload;
sleep(0.5);

# a credential goes only to the URLs it is bound to
($rc, $out, $err) = $node->psql('postgres', qq{SELECT anomaly.create_destination('badbind', 'email', '{"url": "smtps://127.0.0.1:$smtps->{port}", $from, "credential": "smtp_bad"}')});
like($err, qr/credential "smtp_bad" is not bound to smtps:.*HINT:.*anomaly\.credential_bindings/s,
	'an SMTP password not bound to the server is refused at creation');

# and through the outbox, by the sender worker
$node->safe_psql('postgres', "SELECT anomaly.send_alert('starttls', 'over tls')");
ok(wait_for(30, sub { queued($node, 'starttls') == 0 }), 'the sender delivered over STARTTLS');
is(scalar(grep { ($_->{subject} // '') eq 'over tls' && $_->{tls} } read_jsonl($starttls->{log})), 1,
	'once, over TLS');

# A rule's subject and body templates (issue 17): the e-mail carries the
# formatted subject (after the destination's prefix) and, as its whole
# body, the formatted text with the source row's columns.
ticks_alert($node, q{destination => 'mail',
		subject_template => 'Anomaly {{score}} on {{row.ticker}}',
		body_template => E'{{row.ticker}} traded at {{row.price}}.\nExplanation: {{explanation}}\nDetector {{detector}}, rule {{alert}}.'},
	explanation => q{'{"price": {"ATTRIBUTION_SCORE": "3.2500"}}'});
ok(wait_for(30, sub { queued($node, 'mail') == 0 && scalar(read_jsonl($smtp->{log})) > 50 }),
	'the templated e-mail left the outbox');
my ($tm) = grep { ($_->{subject} // '') =~ /AMZN/ } read_jsonl($smtp->{log});
is($tm->{subject}, '[anomaly] Anomaly 3.25 on AMZN', 'formatted subject, after the prefix');
like($tm->{body}, qr/\AAMZN traded at 101\.5\.\r?\nExplanation: \{"price": \{"ATTRIBUTION_SCORE": "3\.2500"\}\}\r?\nDetector ticks, rule ticks-high\.\s*\z/,
	'the body is the formatted text with the row, and nothing else');

# A failing e-mail destination's probe is carried over rounds (session 10):
# the sender does not wait for it, and it logs in over STARTTLS with its own
# copy of the password.  Refused (550: a dead letter, the destination's last
# outcome an error), then a server that answers RCPT after 2 s: the first
# of three is the probe, its row leased while the next rounds go on; each
# arrives once.
my $pfrom = '"from": "anomaly@example.com", "username": "alerts", "credential": "smtp_pw", "starttls": "required"';
my $purl = "smtp://127.0.0.1:$starttls->{port}";
$node->safe_psql('postgres', qq{
	SELECT anomaly.create_destination('mailprobe', 'email', '{"url": "$purl", $pfrom, "to": ["reject\@example.com"]}');
	SELECT anomaly.send_alert('mailprobe', 'probe refused');
});
ok(wait_for(30, sub { $node->safe_psql('postgres',
	"SELECT count(*) FROM anomaly.dead_letters WHERE destination = 'mailprobe'") == 1 }),
	'carried probe: the refused e-mail is a dead letter');
$node->safe_psql('postgres', qq{
	SELECT anomaly.alter_destination('mailprobe', '{"url": "$purl", $pfrom, "to": ["slow\@example.com"]}');
	SELECT count(anomaly.send_alert('mailprobe', 'probe ' || i)) FROM generate_series(1, 3) i;
});
ok(wait_for(30, sub { $node->safe_psql('postgres', q{
	SELECT count(*) FROM anomaly.outbox
	WHERE destination = 'mailprobe' AND next_attempt_at > now() + interval '30 s'}) == 1 }),
	'carried probe: one row leased while its transfer runs');
my $t0 = time();
$node->safe_psql('postgres', "SELECT anomaly.send_alert('chan', 'beside the probe')");
ok(wait_for(30, sub { queued($node, 'chan') == 0 }), 'carried probe: another destination\'s notification is sent');
cmp_ok(time() - $t0, '<', 1.5, 'carried probe: without waiting for the slow server');
ok(wait_for(60, sub { queued($node, 'mailprobe') == 0 }), 'carried probe: the e-mails left the outbox');
my @probe_mail = grep { ($_->{subject} // '') =~ /^probe \d$/ } read_jsonl($starttls->{log});
is(join(',', sort map { $_->{subject} . '/' . ($_->{tls} ? 'tls' : 'clear') . '/' . ($_->{auth_user} // '-') } @probe_mail),
	'probe 1/tls/alerts,probe 2/tls/alerts,probe 3/tls/alerts', 'carried probe: each once, over TLS, logged in');

sleep(0.3);
ok(!log_contains($node, $password), 'the SMTP password is not in the server log');

$node->stop;
done_testing();
