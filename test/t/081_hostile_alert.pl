# Hostile roles against alerts (issue 12, findings 2, 5, 6, 7 and 10, and
# their variants): alert_trigger and user casts, credentials sent where an
# admin chooses, admins reading or redirecting each other's rows, requests to
# loopback, link-local and private addresses with the response read back,
# and the redaction of secrets as a guessing oracle.
#
# Destinations are real loopback listeners (HostileTest start_listener) that
# record every byte: a secret "not sent" is checked on the bytes received.
# anomaly.allowed_destination_hosts is unset except in the sections that
# need a loopback destination to be reachable (set_hostile_conf).
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/..";
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use JSON::PP;

use HostileTest;

my $node = new_hostile_node('hostile_alert', "include_if_exists = 'hostile.conf'");

# set_hostile_conf(KEY => VALUE, ...): the settings of hostile.conf (all of
# them: a key not given is unset), reloaded; waits (5 s at most) until this
# backend sees them.
sub set_hostile_conf
{
	my (%kv) = @_;
	my $file = $node->data_dir . '/hostile.conf';
	open(my $fh, '>', $file) or die "$file: $!";
	for my $k (sort keys %kv)
	{
		(my $v = $kv{$k}) =~ s/'/''/g;
		print $fh "$k = '$v'\n";
	}
	close $fh;
	$node->reload;
	for my $k (sort keys %kv)
	{
		wait_until(5, sub {
			$node->safe_psql('postgres', "SELECT coalesce(current_setting('$k', true), '<unset>')")
			  eq $kv{$k};
		});
	}
	# the sender worker reloads on SIGHUP too; give it a round
	wait_until(2, sub { 0 }) if %kv;
}

my $web = start_listener(mode => 'http');
my $smtp = start_listener(mode => 'smtp');
my $closed = closed_port();
my $canary = 'canary-metadata-body';

# tdest(ROLE, NAME): test_destination as ROLE; returns "ok|detail" or the
# error text.
sub tdest
{
	my ($role, $name) = @_;
	my ($rc, $out, $err) = as_role($node, $role,
		"SELECT ok::text || '|' || coalesce(detail, '') FROM anomaly.test_destination('$name')");
	return $rc == 0 ? $out : "ERROR: $err";
}

# -------------------------------------------------------------------------
# Finding 2: alert_trigger() converts the row; a user cast to json/jsonb/text
# of adm's own type escalates if it runs as the extension owner.
$node->safe_psql('postgres', q{SELECT anomaly.create_destination('su_notify', 'notify', '{"channel": "hostile"}')});
as_role_ok($node, 'adm', q{SELECT anomaly.create_destination('adm_notify', 'notify', '{"channel": "hostile"}')},
	'adm has a notify destination');
my @casts = (
	[ 'cast to json', 'json', 'pg_catalog.to_json(x::text)' ],
	[ 'cast to jsonb', 'jsonb', 'pg_catalog.to_jsonb(x::text)' ],
	[ 'cast to text', 'text', 'x::text' ],
);
my $k = 0;
for my $c (@casts)
{
	my ($what, $target, $expr) = @$c;
	$k++;
	my $label = "finding 2: alert_trigger and a user $what";
	as_role_ok($node, 'adm', qq{
CREATE TYPE s_adm.e$k AS ENUM ('a', 'b');
CREATE FUNCTION s_adm.e${k}_to(x s_adm.e$k) RETURNS $target LANGUAGE plpgsql AS \$f\$}
	  . escalation_body('adm', $expr) . qq{\$f\$;
CREATE CAST (s_adm.e$k AS $target) WITH FUNCTION s_adm.e${k}_to(s_adm.e$k);
CREATE DOMAIN s_adm.d$k AS s_adm.e$k;
CREATE TYPE s_adm.c$k AS (inner_e s_adm.e$k);
CREATE TABLE s_adm.t$k (id int, x s_adm.e$k, xs s_adm.e$k\[\], xd s_adm.d$k, xc s_adm.c$k);
CREATE TRIGGER t AFTER INSERT OR UPDATE OR DELETE ON s_adm.t$k FOR EACH ROW
	EXECUTE FUNCTION anomaly.alert_trigger('adm_notify', 'row changed', 'info');
}, "$label: set up as adm");
	my ($rc, $out, $err) = as_role($node, 'adm', qq{
INSERT INTO s_adm.t$k VALUES (1, 'a', '{a,b}', 'b', ROW('a'));
UPDATE s_adm.t$k SET x = 'b';
DELETE FROM s_adm.t$k;
});
	note "$label: exit $rc $err";
	assert_no_superuser($node, $label);
	assert_alive($node, $label);
}

# owner1 (no admin role) cannot attach alert_trigger at all.
as_role_err($node, 'owner1', q{
CREATE TABLE s_own.tt (x int);
CREATE TRIGGER t AFTER INSERT ON s_own.tt FOR EACH ROW EXECUTE FUNCTION anomaly.alert_trigger('su_notify');
}, qr/permission denied/, 'owner1 may not use alert_trigger');
assert_no_superuser($node, 'alert_trigger by owner1');

# -------------------------------------------------------------------------
# Finding 5: credentials sent to a listener of the admin's choice.  The
# listeners are reachable (loopback allowed) so that only the credential
# rules decide; the credentials are bound elsewhere.
my $digit = substr($web->{port}, 0, 1);
set_hostile_conf(
	'anomaly.allowed_destination_hosts' => '127.0.0.0/8, ::1',
	'anomaly.credential_bindings' =>
	  "hook_secret=http://127.0.0.1:$digit http://127.0.0.1/bound; smtp_pw=smtp://127.0.0.1:$closed");

sub exfil_case
{
	my ($label, $kind, $config, $listener) = @_;
	my $before = length(listener_bytes($listener));
	my $name = 'x' . int(rand(1e9));
	my ($rc, $out, $err) = as_role($node, 'adm',
		"SELECT anomaly.create_destination('$name', '$kind', '$config')");
	my $detail = '';
	if ($rc == 0)
	{
		$detail = tdest('adm', $name);
		as_role($node, 'adm', "SELECT anomaly.send_alert('$name', 'exfil', '{}'); SELECT anomaly.deliver()");
		$detail .= ' ' . tdest('adm', $name);
	}
	else
	{
		note "$label: create_destination refused: $err";
	}
	my $bytes = substr(listener_bytes($listener), $before);
	ok(!contains_secret($bytes, $SECRET) && !contains_secret($bytes, $SMTP_SECRET),
		"$label: no secret reached the listener (" . length($bytes) . ' bytes received)');
	ok($bytes !~ /sha256=|signature/i, "$label: no signature made with the secret reached the listener");
	ok(!contains_secret($detail . $err, $SECRET) && !contains_secret($detail . $err, $SMTP_SECRET),
		"$label: no secret in what adm was shown");
	assert_no_superuser($node, $label);
	assert_alive($node, $label);
	return $name;
}

my $smtp_url = "smtp://127.0.0.1:$smtp->{port}";
my $web_url = "http://127.0.0.1:$web->{port}";
exfil_case('finding 5: email, credential hook_secret, starttls none', 'email',
	qq{{"url": "$smtp_url", "from": "a\@example.com", "to": ["b\@example.com"], "starttls": "none", "username": "u", "credential": "hook_secret"}},
	$smtp);
exfil_case('finding 5 variant: email, starttls try, credential hook_secret', 'email',
	qq{{"url": "$smtp_url", "from": "a\@example.com", "to": ["b\@example.com"], "starttls": "try", "username": "u", "credential": "hook_secret"}},
	$smtp);
exfil_case('finding 5 variant: email, smtp_pw bound to another server', 'email',
	qq{{"url": "$smtp_url", "from": "a\@example.com", "to": ["b\@example.com"], "starttls": "none", "username": "u", "credential": "smtp_pw"}},
	$smtp);
exfil_case('finding 5 variant: webhook signing with hook_secret to an unbound URL', 'webhook',
	qq{{"url": "$web_url/steal", "credential": "hook_secret"}}, $web);
exfil_case('finding 5 variant: webhook, binding prefix on the port (http://127.0.0.1:' . $digit . ')', 'webhook',
	qq{{"url": "$web_url/", "credential": "hook_secret"}}, $web);
exfil_case('finding 5 variant: webhook, binding path /bound on another port', 'webhook',
	qq{{"url": "$web_url/bound", "credential": "hook_secret"}}, $web);
exfil_case('finding 5 variant: webhook url_credential naming hook_secret', 'webhook',
	q{{"url_credential": "hook_secret"}}, $web);
exfil_case('finding 5 variant: slack url_credential naming hook_secret', 'slack',
	q{{"url_credential": "hook_secret"}}, $web);
{
	my $web10 = start_listener(mode => 'http', addr => '127.0.0.10');
	exfil_case('finding 5 variant: webhook to 127.0.0.10 under a binding for 127.0.0.1', 'webhook',
		qq{{"url": "http://127.0.0.10:$web10->{port}/bound", "credential": "hook_secret"}}, $web10);
}

# Control: the listener does see a credential that is bound to it and
# allowed in plain text, so the checks above can fail.
{
	my $label = 'control: a bound SMTP password with plaintext AUTH allowed';
	set_hostile_conf(
		'anomaly.allowed_destination_hosts' => '127.0.0.0/8, ::1',
		'anomaly.smtp_allow_plaintext_auth' => 'on',
		'anomaly.credential_bindings' => "smtp_pw=$smtp_url");
	$node->safe_psql('postgres', qq{SELECT anomaly.create_destination('su_mail', 'email',
		'{"url": "$smtp_url", "from": "a\@example.com", "to": ["b\@example.com"], "starttls": "none", "username": "u", "credential": "smtp_pw"}')});
	my $before = length(listener_bytes($smtp));
	my $r = $node->safe_psql('postgres', q{SELECT ok FROM anomaly.test_destination('su_mail')});
	my $bytes = substr(listener_bytes($smtp), $before);
	ok(contains_secret($bytes, $SMTP_SECRET), "$label: the password arrives ($r)");

	$label = 'finding 5 variant: plaintext AUTH not allowed';
	set_hostile_conf(
		'anomaly.allowed_destination_hosts' => '127.0.0.0/8, ::1',
		'anomaly.credential_bindings' => "smtp_pw=$smtp_url");
	$before = length(listener_bytes($smtp));
	$r = $node->safe_psql('postgres', q{SELECT ok FROM anomaly.test_destination('su_mail')});
	$bytes = substr(listener_bytes($smtp), $before);
	ok(!contains_secret($bytes, $SMTP_SECRET), "$label: the password is not sent in the clear ($r)");

	$label = 'finding 5 variant: starttls try against a server without STARTTLS';
	$node->safe_psql('postgres', qq{SELECT anomaly.create_destination('su_mail_try', 'email',
		'{"url": "$smtp_url", "from": "a\@example.com", "to": ["b\@example.com"], "starttls": "try", "username": "u", "credential": "smtp_pw"}')});
	$before = length(listener_bytes($smtp));
	$r = $node->safe_psql('postgres', q{SELECT ok FROM anomaly.test_destination('su_mail_try')});
	$bytes = substr(listener_bytes($smtp), $before);
	ok(!contains_secret($bytes, $SMTP_SECRET), "$label: the password is not sent in the clear ($r)");
}

# -------------------------------------------------------------------------
# Finding 6: admins reading each other's rows.
{
	my $label = 'finding 6';
	as_role_ok($node, 'adm2', q{
CREATE TABLE s_adm2.nopk (v float8, secret_col text, note text);
SELECT anomaly.create_detector('det2', 's_adm2.nopk', ARRAY['v', 'secret_col::float8'],
	options => '{"number_of_trees": 5, "sub_sample_size": 16}');
SELECT anomaly.create_destination('adm2_notify', 'notify', '{"channel": "adm2"}');
SELECT anomaly.create_alert_rule('adm2_rule', 'det2', 'adm2_notify', min_score => 0);
SELECT anomaly.create_destination('adm2_off', 'notify', '{"channel": "adm2"}');
SELECT anomaly.alter_destination('adm2_off', enabled => false);
SELECT anomaly.send_alert('adm2_off', 'adm2 private', '{"note": "ADM2-ALERT-SECRET"}');
}, "$label: adm2's detector on a table without a primary key, its rule and destinations");
	as_role_ok($node, 'adm', q{
CREATE TABLE s_adm.src6 (id bigserial PRIMARY KEY, v float8);
SELECT anomaly.create_detector('det_adm6', 's_adm.src6', ARRAY['v'],
	options => '{"number_of_trees": 5, "sub_sample_size": 16}');
}, "$label: adm's own detector");
	as_role_err($node, 'adm', q{SELECT anomaly.create_alert_rule('steal', 'det2', 'adm_notify', min_score => 0,
		group_by => '{source_key}')}, qr/ERROR/,
		"$label: create_alert_rule on adm2's detector is refused");
	as_role_err($node, 'adm', q{SELECT anomaly.create_alert_rule('steal2', 'det_adm6', 'adm2_notify', min_score => 0)},
		qr/ERROR/, "$label: create_alert_rule with adm2's destination is refused");
	# plain listens on the channel of adm2's notify destination
	my ($lin, $lout, $lerr) = ('', '', '');
	my $lh = IPC::Run::start([ 'psql', '-XAtq', '-d', $node->connstr('postgres'), '-U', 'plain' ],
		\$lin, \$lout, \$lerr, IPC::Run::timeout(300));
	$lin .= "LISTEN adm2;\nSELECT 'listening';\n";
	wait_until(20, sub { $lh->pump_nb; $lout =~ /listening/ });
	as_role_ok($node, 'adm2', q{
INSERT INTO s_adm2.nopk SELECT g, CASE WHEN g = 3 THEN 'ADM2-ROW-SECRET' ELSE g::text END,
	'ADM2-NOTE-SECRET-' || g
FROM generate_series(1, 8) g;
}, "$label: adm2's rows, one of which fails");
	like(wait_detector($node, 'det2', 8), qr/^active\|7\|1\|/, "$label: det2 scored 7 rows, 1 failed");
	wait_until(10, sub {
		$node->safe_psql('postgres', q{SELECT count(*) FROM anomaly.alert_episodes}) > 0 });
	for my $rel ('anomaly.alerts', 'anomaly.alert_episodes', 'anomaly.alert_rules', 'anomaly.detector_failures',
		'anomaly.outbox', 'anomaly.dead_letters', 'anomaly.detectors', 'anomaly.detector_status',
		'anomaly.delivery_status', 'anomaly.scores')
	{
		my ($rc, $out, $err) = as_role($node, 'adm', "SELECT x::text FROM $rel x");
		ok($out !~ /ADM2-(ROW|NOTE|ALERT)-SECRET/,
			"$label: adm reads none of adm2's rows in $rel" . ($rc ? ' (denied)' : ''));
	}
	wait_until(20, sub {
		$node->safe_psql('postgres', q{SELECT count(*) FROM anomaly.outbox WHERE destination = 'adm2_notify'}) eq '0' });
	$lin .= "SELECT 'done';\n";
	wait_until(20, sub { $lh->pump_nb; $lout =~ /done/ });
	$lin .= "\\q\n";
	eval { $lh->finish };
	ok($lout !~ /ADM2-(ROW|NOTE)-SECRET/,
		"$label: plain, listening on adm2's notify channel, reads none of adm2's rows")
	  or diag('plain received: ' . substr($lout, 0, 400));
	# What plain heard are references: ids, the rule's name, status and
	# severity, nothing else (not even the fingerprint, a hash of the key).
	my @refs = ($lout =~ /Asynchronous notification "adm2" with payload "(\{.*\})" received/g);
	ok(@refs > 0, "$label: plain heard adm2's notifications (" . scalar(@refs) . ')');
	my %allowed = map { $_ => 1 } qw(version payload id source rule episode score_id status severity repeat);
	my @bad = grep {
		my $j = eval { decode_json($_) };
		!$j || ($j->{payload} // '') ne 'reference' || grep { !$allowed{$_} } keys %$j
	} @refs;
	is(scalar(@bad), 0, "$label: each is a reference to the alert") or diag("not a reference: $bad[0]");
	my ($ep) = grep { defined } map { eval { decode_json($_)->{episode} } } @refs;
	$ep //= 0;
	is(as_role_ok($node, 'adm2', "SELECT rule FROM anomaly.alerts WHERE episode = $ep",
			"$label: adm2 reads the alert a reference names"),
		'adm2_rule', "$label: it is adm2's rule's episode");
	my ($rc, $out, $err) = as_role($node, 'adm', "SELECT count(*) FROM anomaly.alerts WHERE episode = $ep");
	ok($rc != 0 || $out eq '0', "$label: adm cannot read it by the reference");
	# The whole payload on a notify channel is a superuser's choice only.
	as_role_err($node, 'adm2',
		q{SELECT anomaly.create_destination('adm2_full', 'notify', '{"channel": "adm2", "payload": "full"}')},
		qr/only a superuser may set "payload": "full"/, "$label: adm2 may not create a full notify destination");
	as_role_err($node, 'adm2',
		q{SELECT anomaly.alter_destination('adm2_notify', '{"channel": "adm2", "payload": "full"}')},
		qr/only a superuser may set "payload": "full"/, "$label: nor switch one to full");
	$node->safe_psql('postgres',
		q{SELECT anomaly.alter_destination('adm2_notify', '{"channel": "adm2", "payload": "full"}')});
	as_role_err($node, 'adm2',
		q{SELECT anomaly.alter_destination('adm2_notify', '{"channel": "adm2_b", "payload": "full"}')},
		qr/only a superuser may set "payload": "full"/,
		"$label: nor keep full in a config of its own after a superuser set it");
	as_role_ok($node, 'adm2', q{SELECT anomaly.alter_destination('adm2_notify', '{"channel": "adm2"}')},
		"$label: adm2 may go back to a reference");
	($rc, $out, $err) = as_role($node, 'adm',
		q{SELECT count(*) FROM anomaly.detector_failures WHERE detector = 'det2'});
	ok($rc != 0 || $out eq '0', "$label: adm sees no failure of adm2's detector");
	($rc, $out, $err) = as_role($node, 'adm2',
		q{SELECT count(*) FROM anomaly.detector_failures WHERE detector = 'det2'});
	is($out, '1', "$label: adm2 sees its own failure");

	# A rule made on adm's own detector, which adm then drops; adm2 makes
	# a detector of that name: adm's rule must not see adm2's scores.
	as_role_ok($node, 'adm', q{
CREATE TABLE s_adm.reuse (id bigserial PRIMARY KEY, v float8);
SELECT anomaly.create_detector('reused_name', 's_adm.reuse', ARRAY['v'],
	options => '{"number_of_trees": 5, "sub_sample_size": 16}');
SELECT anomaly.create_alert_rule('lurk', 'reused_name', 'adm_notify', min_score => 0, group_by => '{source_key}');
SELECT anomaly.drop_detector('reused_name');
}, "$label: adm's rule on its own detector, then the detector dropped");
	as_role_ok($node, 'adm2', q{
CREATE TABLE s_adm2.reuse (v float8, note text);
SELECT anomaly.create_detector('reused_name', 's_adm2.reuse', ARRAY['v'],
	options => '{"number_of_trees": 5, "sub_sample_size": 16}');
INSERT INTO s_adm2.reuse SELECT g, 'ADM2-NOTE-SECRET-reuse' || g FROM generate_series(1, 6) g;
}, "$label: adm2's detector of the same name");
	like(wait_detector($node, 'reused_name', 6), qr/^active\|6\|/, "$label: adm2's detector scored its rows");
	($rc, $out, $err) = as_role($node, 'adm', q{SELECT count(*) FROM anomaly.alerts WHERE rule = 'lurk'});
	is($out, '0', "$label: adm's old rule raised no alert over adm2's rows");
	is($node->safe_psql('postgres', q{SELECT count(*) FROM anomaly.alert_episodes WHERE rule = 'lurk'}), '0',
		"$label: no episode of adm's old rule at all");
	# nor may adm aim its old rule anew at what is now adm2's detector
	as_role_err($node, 'adm', q{SELECT anomaly.alter_alert_rule('lurk', min_score => 0.5, unset => '{}')},
		qr/must be owner of detector "reused_name"/, "$label: adm may not change its old rule on adm2's detector");
	as_role_ok($node, 'adm', q{SELECT anomaly.alter_alert_rule('lurk', enabled => false)},
		"$label: but may disable it");

	# writing to another admin's objects: redirecting adm2's alerts (and
	# the rows in them) to adm's listener, or dropping them
	as_role_err($node, 'adm', qq{SELECT anomaly.alter_destination('adm2_notify', '{"channel": "adm"}')},
		qr/ERROR/, "$label: adm may not alter adm2's destination");
	as_role_err($node, 'adm', q{SELECT anomaly.drop_destination('adm2_off', true)},
		qr/ERROR/, "$label: adm may not drop adm2's destination");
	as_role_err($node, 'adm', q{SELECT anomaly.drop_alert_rule('adm2_rule')},
		qr/ERROR/, "$label: adm may not drop adm2's alert rule");
	as_role_err($node, 'adm', q{SELECT anomaly.alter_alert_rule('adm2_rule', destination => 'adm_notify')},
		qr/must be owner of alert rule/, "$label: adm may not redirect adm2's alert rule to its own destination");
	as_role_err($node, 'adm', q{SELECT anomaly.alter_alert_rule('adm2_rule', enabled => false)},
		qr/must be owner of alert rule/, "$label: adm may not disable adm2's alert rule");
	is($node->safe_psql('postgres', q{SELECT destinations::text || '|' || enabled::text FROM anomaly.alert_rules WHERE name = 'adm2_rule'}),
		'{adm2_notify}|true', "$label: adm2's alert rule is unchanged");
	as_role_err($node, 'adm', q{SELECT anomaly.send_alert('adm2_notify', 'spoofed', '{}')},
		qr/ERROR/, "$label: adm may not send alerts to adm2's destination");
	as_role_err($node, 'adm', q{SELECT * FROM anomaly.test_destination('adm2_notify')},
		qr/ERROR/, "$label: adm may not test adm2's destination");

	# adm2's dead letter: adm may neither replay nor purge it
	as_role_ok($node, 'adm2', qq{
SELECT anomaly.create_destination('adm2_dead', 'webhook', '{"url": "http://127.0.0.1:$closed/", "max_attempts": 1}');
SELECT anomaly.send_alert('adm2_dead', 'dead one', '{"note": "ADM2-ALERT-SECRET"}');
}, "$label: adm2's alert to a closed port");
	ok(wait_until(30, sub {
		$node->safe_psql('postgres', q{SELECT count(*) FROM anomaly.dead_letters WHERE destination = 'adm2_dead'}) eq '1' }),
		"$label: adm2's alert is a dead letter");
	as_role($node, 'adm', q{SELECT anomaly.replay_dead_letters(); SELECT anomaly.purge_alert_history('0 s')});
	is($node->safe_psql('postgres', q{SELECT (SELECT count(*) FROM anomaly.dead_letters WHERE destination = 'adm2_dead')
		|| '|' || (SELECT count(*) FROM anomaly.outbox WHERE destination = 'adm2_dead')}),
		'1|0', "$label: adm's replay_dead_letters() and purge_alert_history() left adm2's dead letter alone");
	as_role_err($node, 'adm', q{SELECT anomaly.alter_detector('det2', filter => 'false')},
		qr/ERROR/, "$label: adm may not alter adm2's detector");
	as_role_err($node, 'adm', q{SELECT anomaly.drop_detector('det2')},
		qr/ERROR/, "$label: adm may not drop adm2's detector");
	assert_no_superuser($node, $label);
	assert_alive($node, $label);
}

# -------------------------------------------------------------------------
# Finding 7: SSRF.  No loopback allowance: nothing may connect, and the
# answer must not tell an open port from a closed one.
set_hostile_conf();
{
	my $label = 'finding 7';
	my %detail;
	my @hosts = (
		[ 'open port', "127.0.0.1:$web->{port}" ],
		[ 'closed port', "127.0.0.1:$closed" ],
		[ 'localhost', "localhost:$web->{port}" ],
		[ '127.1.2.3', "127.1.2.3:$web->{port}" ],
		[ '0.0.0.0', "0.0.0.0:$web->{port}" ],
		[ 'decimal 2130706433', "2130706433:$web->{port}" ],
		[ 'hex 0x7f000001', "0x7f000001:$web->{port}" ],
		[ 'octal 0177.0.0.1', "0177.0.0.1:$web->{port}" ],
		[ 'IPv4-mapped [::ffff:127.0.0.1]', "[::ffff:127.0.0.1]:$web->{port}" ],
		[ '[::1]', "[::1]:$web->{port}" ],
	);
	my $conns = listener_connections($web);
	for my $h (@hosts)
	{
		my ($what, $hostport) = @$h;
		my $name = 'ssrf' . int(rand(1e9));
		my ($rc, $out, $err) = as_role($node, 'adm', qq{SELECT anomaly.create_destination('$name', 'webhook',
			'{"url": "http://$hostport/latest/meta-data/iam/security-credentials/", "timeout_ms": 2000, "max_attempts": 1}')});
		my $d = $rc == 0 ? tdest('adm', $name) : "create refused: $err";
		$detail{$what} = $d;
		ok($d !~ /^true/, "$label: webhook to $what is refused ($d)");
		ok($d !~ /\Q$canary\E|ASIACANARY/, "$label: no response body shown for $what");
		is(listener_connections($web), $conns, "$label: nothing connected to the listener ($what)");
		$conns = listener_connections($web);
	}
	(my $open = $detail{'open port'}) =~ s/\Q$web->{port}\E/PORT/g;
	(my $shut = $detail{'closed port'}) =~ s/\Q$closed\E/PORT/g;
	is($open, $shut, "$label: an open and a closed port look the same to adm");

	# the worker's delivery too: a dead letter, nothing connected
	my ($rc, $out, $err) = as_role($node, 'adm', qq{
SELECT anomaly.create_destination('ssrf_q', 'webhook', '{"url": "$web_url/q", "max_attempts": 1}');
SELECT anomaly.send_alert('ssrf_q', 'ssrf', '{}');
});
	wait_until(20, sub {
		$node->safe_psql('postgres', q{SELECT count(*) FROM anomaly.outbox WHERE destination = 'ssrf_q'}) eq '0' });
	is(listener_connections($web), $conns, "$label: the sender worker did not connect either");

	# Outside loopback: only tried once loopback was shown to be refused
	# before connecting (the check that would also stop these), so that this
	# test never sends a packet off the machine.
	my $guarded = $detail{'open port'} !~ /^true/ && listener_connections($web) == $conns
	  && $detail{'open port'} =~ /not allowed|allowed_destination_hosts|refused/i;
	for my $h ('169.254.169.254', '10.0.0.1', '192.168.1.1', '172.16.0.1', '100.100.100.200',
		'[fd00:ec2::254]', '[fe80::1]', '[fc00::1]', '224.0.0.1')
	{
		SKIP:
		{
			if (!$guarded)
			{
				fail("$label: $h not tried: loopback was not refused before connecting");
				next;
			}
			my $name = 'ext' . int(rand(1e9));
			my ($rc2, $o2, $e2) = as_role($node, 'adm', qq{SELECT anomaly.create_destination('$name', 'webhook',
				'{"url": "http://$h/latest/meta-data/", "timeout_ms": 1000, "max_attempts": 1}')});
			my $d = $rc2 == 0 ? tdest('adm', $name) : "create refused: $e2";
			ok($d !~ /^true/ && $d =~ /not allowed|allowed_destination_hosts|refused/i,
				"$label: webhook to $h is refused ($d)");
		}
	}
	assert_no_superuser($node, $label);
	assert_alive($node, $label);
}

# Reachable (loopback allowed): still, admins see the status, not the body,
# nor the connection's details.
{
	my $label = 'finding 7: response bodies';
	set_hostile_conf('anomaly.allowed_destination_hosts' => '127.0.0.0/8, ::1');
	my $e500 = start_listener(mode => 'http', status => 500,
		body => '{"SecretAccessKey":"canary-metadata-body"}');
	my $e400 = start_listener(mode => 'http', status => 400,
		body => '{"SecretAccessKey":"canary-metadata-body"}');
	my $target = start_listener(mode => 'http');
	my $redir = start_listener(mode => 'http', status => 302, body => '',
		headers => "Location: http://127.0.0.1:$target->{port}/followed\r\n");
	as_role_ok($node, 'adm', qq{
SELECT anomaly.create_destination('b200', 'webhook', '{"url": "$web_url/x", "max_attempts": 1}');
SELECT anomaly.create_destination('b500', 'webhook', '{"url": "http://127.0.0.1:$e500->{port}/x", "max_attempts": 1}');
SELECT anomaly.create_destination('b400', 'webhook', '{"url": "http://127.0.0.1:$e400->{port}/x", "max_attempts": 1}');
}, "$label: destinations");
	for my $d ('b200', 'b500', 'b400')
	{
		my $r = tdest('adm', $d);
		ok($r !~ /\Q$canary\E|ASIACANARY/, "$label: test_destination($d) shows adm no body ($r)");
	}
	as_role_ok($node, 'adm', qq{SELECT anomaly.create_destination('b302', 'webhook',
		'{"url": "http://127.0.0.1:$redir->{port}/x", "max_attempts": 1}')}, "$label: a redirecting destination");
	my $r302 = tdest('adm', 'b302');
	is(listener_connections($target), 0, "$label: a redirect is not followed ($r302)");
	as_role_ok($node, 'adm', q{SELECT anomaly.send_alert('b400', 'x', '{}')}, "$label: an alert to a 400");
	wait_until(20, sub {
		$node->safe_psql('postgres', q{SELECT count(*) FROM anomaly.dead_letters WHERE destination = 'b400'}) eq '1' });
	for my $rel ('anomaly.dead_letters', 'anomaly.delivery_status', 'anomaly.outbox')
	{
		my ($rc, $out, $err) = as_role($node, 'adm', "SELECT x::text FROM $rel x");
		ok($out !~ /\Q$canary\E/, "$label: $rel shows adm no response body" . ($rc ? ' (denied)' : ''));
	}
	set_hostile_conf();
}

# -------------------------------------------------------------------------
# Finding 10: the redaction of secrets is no guessing oracle: the error for
# a right guess is the error for a wrong one, but for the guess itself.
for my $role ('plain', 'adm')
{
	my $label = "finding 10 ($role)";
	(my $wrong = $SECRET) =~ tr/A-Za-z/B-ZAb-za/;
	my %text;
	for my $g ([ right => $SECRET ], [ wrong => $wrong ])
	{
		my ($which, $guess) = @$g;
		my (undef, undef, $e1) = as_role($node, $role, "SELECT 'guess-$guess'::int");
		my (undef, undef, $e2) = as_role($node, $role,
			"DO \$\$ BEGIN RAISE EXCEPTION 'value: %', 'guess-$guess' USING HINT = 'hint $guess'; END \$\$");
		my (undef, $o3, $e3) = as_role($node, $role,
			"DO \$\$ BEGIN RAISE NOTICE 'note: %', '$guess'; END \$\$; SELECT '$guess'::text");
		my $all = "$e1\n$e2\n$e3\n$o3";
		$all =~ s/\Q$guess\E/GUESS/g;
		$text{$which} = $all;
	}
	is($text{right}, $text{wrong}, "$label: a right guess reads like a wrong one");
	assert_no_superuser($node, $label);
}

# -------------------------------------------------------------------------
# Issue 17: alert templates and the source row.  A template renders only
# what the payload holds, and the payload's row only the columns the rule's
# owner may read: adm, having lost SELECT on a column, cannot get it
# through a template; a row level security policy hides a row from the
# lookup; a template is no code; adm's cast to json in the row runs as adm,
# restricted, never as the extension's owner.
{
	my $label = 'issue 17';
	$node->safe_psql('postgres', q{
		CREATE TABLE public.tpl_src (id int PRIMARY KEY, v float8, secret text);
		INSERT INTO public.tpl_src VALUES (1, 1.5, 'TOPSECRET-COLUMN'), (2, 2.5, 'TOPSECRET-ROW');
		GRANT SELECT ON public.tpl_src TO adm;
	});
	as_role_ok($node, 'adm', q{
		SELECT anomaly.create_destination('tpl_mail', 'email', '{"url": "smtp://127.0.0.1:9", "from": "a@example.com", "to": ["b@example.com"]}');
		SELECT anomaly.create_detector('tpl_det', 'public.tpl_src', '{v}');
		SELECT anomaly.create_alert_rule('tpl_rule', 'tpl_det', 'tpl_mail', min_score => 1,
			group_by => '{source_key}', subject_template => 'secret={{row.secret}}',
			body_template => 'v={{row.v}} secret={{row.secret}} row={{row}} key={{source_key}}');
	}, "$label: adm's detector and templated rule");
	for my $t ('{{ (SELECT secret FROM public.tpl_src) }}', '{{row.secret | upper}}',
		q[{{row['secret']}}], '{{row.secret}', '{{ pg_read_file(\'/etc/passwd\') }}')
	{
		(my $sql = $t) =~ s/'/''/g;
		as_role_err($node, 'adm', qq{SELECT anomaly.create_alert_rule('tpl_code', 'tpl_det', 'tpl_mail',
			min_score => 1, body_template => '$sql')}, qr/invalid alert template/,
			"$label: a template is no code: $t");
	}
	as_role_err($node, 'adm2', q{SELECT anomaly.create_alert_rule('tpl_steal', 'tpl_det', 'adm2_notify',
		min_score => 0, body_template => '{{row.secret}}')}, qr/must be owner of detector/,
		"$label: adm2 cannot template adm's rows");

	# adm keeps SELECT on id and v only
	$node->safe_psql('postgres', q{
		REVOKE SELECT ON public.tpl_src FROM adm;
		GRANT SELECT (id, v) ON public.tpl_src TO adm;
	});
	my ($rc, $out, $err) = as_role($node, 'adm', q{SELECT anomaly.create_alert_rule('tpl_rule2', 'tpl_det',
		'tpl_mail', min_score => 100, subject_template => '{{row.secret}}')});
	like($err, qr/WARNING:  role adm may not read column "secret" of public\.tpl_src/,
		"$label: a template naming a column adm may not read draws a warning");
	$node->safe_psql('postgres', q{
		INSERT INTO anomaly.scores (detector, source_key, commit_time, anomaly_score)
		VALUES ('tpl_det', '{"id": 1}', now(), 5)});
	my $seen = as_role_ok($node, 'adm', q{
		SELECT string_agg(subject || ' ' || payload::text, E'\n')
		FROM (SELECT subject, payload FROM anomaly.outbox
			  UNION ALL SELECT subject, payload FROM anomaly.dead_letters) x
		WHERE payload ->> 'alert' = 'tpl_rule'}, "$label: adm reads its notification");
	like($seen, qr/"row": \{"v": 1\.5, "id": 1\}|"row": \{"id": 1, "v": 1\.5\}/, "$label: the row holds the columns adm may read");
	like($seen, qr/"message": "v=1\.5 secret= row=/, "$label: the secret renders empty");
	unlike($seen, qr/TOPSECRET/, "$label: the column adm may not read is nowhere in the notification");
	my $all = $node->safe_psql('postgres', q{
		SELECT string_agg(payload::text, ' ') FROM (SELECT payload FROM anomaly.outbox
			UNION ALL SELECT payload FROM anomaly.dead_letters) x WHERE payload ->> 'alert' = 'tpl_rule'});
	unlike($all, qr/TOPSECRET/, "$label: not even in what only superusers see");

	# a row hidden by row level security is not looked up
	$node->safe_psql('postgres', q{
		GRANT SELECT ON public.tpl_src TO adm;
		ALTER TABLE public.tpl_src ENABLE ROW LEVEL SECURITY;
		CREATE POLICY only_one ON public.tpl_src FOR SELECT USING (id = 1);
		UPDATE anomaly.alert_episodes SET status = 'resolved', resolved_at = now() WHERE rule = 'tpl_rule';
		INSERT INTO anomaly.scores (detector, source_key, commit_time, anomaly_score)
		VALUES ('tpl_det', '{"id": 2}', now(), 6)});
	$all = $node->safe_psql('postgres', q{
		SELECT string_agg(payload::text, ' ') FROM (SELECT payload FROM anomaly.outbox
			UNION ALL SELECT payload FROM anomaly.dead_letters) x
		WHERE payload ->> 'alert' = 'tpl_rule' AND payload -> 'source_key' ->> 'id' = '2'});
	unlike($all, qr/TOPSECRET-ROW/, "$label: a row hidden from adm by a policy is not in the notification");
	like($all, qr/"row": null/, "$label: the notification goes without it");

	# adm's own type with a cast to json that tries to escalate: it runs as adm
	as_role_ok($node, 'adm', q{
CREATE TYPE s_adm.tpl_e AS ENUM ('a', 'b');
CREATE FUNCTION s_adm.tpl_e_to(x s_adm.tpl_e) RETURNS json LANGUAGE plpgsql AS $f$} . escalation_body('adm', 'pg_catalog.to_json(x::text)') . q{$f$;
CREATE CAST (s_adm.tpl_e AS json) WITH FUNCTION s_adm.tpl_e_to(s_adm.tpl_e);
CREATE TABLE s_adm.tpl_t (id int PRIMARY KEY, x s_adm.tpl_e);
INSERT INTO s_adm.tpl_t VALUES (1, 'a');
SELECT anomaly.create_detector('tpl_det2', 's_adm.tpl_t', '{id}');
SELECT anomaly.create_alert_rule('tpl_rule3', 'tpl_det2', 'tpl_mail', min_score => 1, body_template => '{{row.x}}');
}, "$label: adm's table with a cast to json of adm's own");
	$node->safe_psql('postgres', q{
		INSERT INTO anomaly.scores (detector, source_key, commit_time, anomaly_score)
		VALUES ('tpl_det2', '{"id": 1}', now(), 5)});
	assert_no_superuser($node, "$label: the cast in the row");
	assert_alive($node, $label);
}

assert_alive($node, 'end');
$node->stop;
done_testing();
