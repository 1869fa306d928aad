# A third hostile-role review: the surfaces the first two covered least
# (alert templates, stagger windows, detector options, scale-out functions,
# the sender's peers).
#
# Blocks marked "finding" are attacks that succeeded before their fix
# (session 9); the others confirm behaviour that was found sound, so that a
# change that breaks it fails here.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/..";
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IO::Socket::INET;
use Time::HiRes qw(time);

use HostileTest;

my $node = new_hostile_node('hostile_review3');

# A database without a detector worker: rounds run by process(), in the
# session of its caller, whose memory the server's log can report.
$node->safe_psql('postgres', q{CREATE DATABASE wdb;});
$node->safe_psql('wdb', q{
	CREATE EXTENSION anomaly;
	CREATE SCHEMA s_adm AUTHORIZATION adm;
	CREATE SCHEMA s_adm2 AUTHORIZATION adm2;
	CREATE SCHEMA s_own AUTHORIZATION owner1;
});

# The largest resident size (kB) that log_statement_stats reported for a
# statement matching $re in the log written since $offset.
sub max_rss_kb
{
	my ($offset, $re) = @_;
	my $log = substr(slurp_file($node->logfile), $offset);
	my $kb;
	while ($log =~ /(\d+) kB max resident size\n(?:.*\n)*?.*STATEMENT:\s+([^\n]*)/g)
	{
		my ($k, $stmt) = ($1, $2);
		$kb = $k if $stmt =~ $re && (!defined $kb || $k > $kb);
	}
	return $kb;
}

# A peer that completes the TCP handshake (the listen backlog) and never
# answers: the socket and its port.
sub tarpit
{
	my $sock = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
		Proto => 'tcp', Listen => 256) or die "listen: $!";
	return ($sock, $sock->sockport);
}

# The transactions committed in database postgres during $secs seconds, in
# which this test runs none: the sender worker's rounds are one each, and
# a sender that spins runs about a hundred a second.
sub commits_during
{
	my ($secs) = @_;
	my $q = q{SELECT xact_commit FROM pg_stat_database WHERE datname = 'postgres'};
	my $c0 = $node->safe_psql('postgres', $q);
	select(undef, undef, undef, $secs);
	return $node->safe_psql('postgres', $q) - $c0;
}

# adm2 queues one notification to its destination quick_adm2; passes if the
# sender delivers it within $limit seconds.
sub victim_sent_within
{
	my ($label, $subject, $limit) = @_;
	my $t0 = time();
	as_role_ok($node, 'adm2', qq{SELECT anomaly.send_alert('quick_adm2', '$subject', '{}');},
		"$label: adm2 queues one");
	my $sent = wait_until(120, sub {
		$node->safe_psql('postgres', q{
			SELECT count(*) FROM anomaly.outbox WHERE destination = 'quick_adm2'}) eq '0';
	});
	my $waited = time() - $t0;
	ok($sent && $waited < $limit, "$label: adm2's notification is sent within $limit s")
	  or diag(sprintf('sent: %s, after %.1f s', $sent ? 'yes' : 'no', $waited));
}

# -------------------------------------------------------------------------
# Finding: an alert template's placeholders each wrote their value out in
# full, and kept it until the statement ended, even once the rendered text
# was at its 256 kB limit: a rule's body template of 16 kB holds about
# 1,000 {{explanation}}, and a detector whose feature name (an option, of
# any length then; now an unnamed feature's expression, the only name that
# may pass 63 bytes) is 1 MB long has 1 MB explanations, so each notification
# cost the round 1 GB (a 10 MB name, 10 GB), in the process() caller's
# backend or the superuser's detector worker.  Each value's text is now
# freed once appended, and nothing is looked up once the text is full.
{
	my $label = 'an alert template naming a large value many times';
	# directly: 300 placeholders of a 1 MB object took 600 MB
	is($node->safe_psql('postgres', q{
		SELECT length(anomaly._render_template(repeat('{{key}}', 300),
				jsonb_build_object('key', jsonb_build_object('p', repeat('x', 1000000)))))
			|| '|' || ((SELECT sum(total_bytes) FROM pg_backend_memory_contexts) < 64 * 1048576)}),
		'262144|true', "$label: the text is cut at 256 kB and the backend holds under 64 MB");
	is($node->safe_psql('postgres', q{
		SELECT anomaly._render_template('a{{key.p}}b{{n}}c{{o}}d{{t}}e{{none}}f',
			'{"key": {"p": "v"}, "n": 1.5, "o": {"x": [1, 2]}, "t": true, "none": null}')}),
		'avb1.5c{"x": [1, 2]}dtrueef', "$label: values are rendered as before");

	# through a rule: adm's detector with a 1 MB feature name (its expression)
	as_role_ok($node, 'adm', q{
CREATE TABLE s_adm.tpl (id bigserial PRIMARY KEY, v float8);
SELECT anomaly.create_detector('det_tpl', 's_adm.tpl',
	ARRAY['v + 0 * octet_length(''' || repeat('f', 1000000) || ''')'],
	options => jsonb_build_object('number_of_trees', 5, 'sub_sample_size', 16, 'shingle_size', 1,
		'with_explanation', true));
SELECT anomaly.create_destination('e_tpl', 'email',
	'{"url": "smtp://127.0.0.1:9", "from": "a@example.com", "to": ["b@example.com"]}');
SELECT anomaly.create_alert_rule('r_tpl', 'det_tpl', 'e_tpl', min_score => 0,
	group_by => '{source_key}', body_template => repeat('{{explanation}}', 400));
INSERT INTO s_adm.tpl (v) SELECT g FROM generate_series(1, 30) g;
}, "$label: adm's rule renders {{explanation}} 400 times", db => 'wdb');
	$node->safe_psql('postgres', q{
ALTER ROLE adm IN DATABASE wdb SET log_statement_stats = on;
ALTER ROLE adm IN DATABASE wdb SET log_min_messages = log;});
	my $offset = -s $node->logfile;
	as_role_ok($node, 'adm', q{SELECT anomaly.process('det_tpl');},
		"$label: a round as adm", db => 'wdb', timeout => '300s');
	$node->safe_psql('postgres', q{
ALTER ROLE adm IN DATABASE wdb RESET log_statement_stats;
ALTER ROLE adm IN DATABASE wdb RESET log_min_messages;});
	is($node->safe_psql('wdb', q{
		SELECT count(*) || '|' || max(length(payload ->> 'message'))
		FROM anomaly.outbox WHERE destination = 'e_tpl'}),
		'30|262144', "$label: the notifications are queued, their messages cut at 256 kB");
	my $kb = max_rss_kb($offset, qr/anomaly\.process\('det_tpl'\)/);
	ok(defined $kb && $kb < 200 * 1024,
		"$label: the round's backend stayed under 200 MB (400 MB before)")
	  or diag('max resident size: ' . ($kb // 'not logged') . ' kB');
	as_role_ok($node, 'adm', q{SELECT anomaly.alter_destination('e_tpl', enabled => false);},
		"$label: its destination disabled", db => 'wdb');
	assert_no_superuser($node, $label);
	assert_alive($node, $label);
}

# -------------------------------------------------------------------------
# Finding: an e-mail's text turned LF and CR LF into CR LF, but left a lone
# CR as it was.  A rule's template places a source row's values in the
# message as they are, so whoever may insert into the detector's table
# (here plain, an application role with INSERT only) put CR . CR LF and SMTP
# commands into the DATA the admin's relay reads: RFC 5321 (2.3.8) allows
# CR only before LF, and a relay that ends DATA at a lone CR's "." line
# (SMTP smuggling) runs what follows as new commands, with the admin's
# AUTH.  Every CR, LF and CR LF of the text is now CR LF (so curl escapes a
# "." line after it).
my $smtp = start_listener(mode => 'smtp');
{
	my $label = 'a source row\'s lone CR in an e-mail';
	$node->safe_psql('postgres', q{
ALTER SYSTEM SET anomaly.allowed_destination_hosts = '127.0.0.0/8, ::1';
SELECT pg_reload_conf();});
	as_role_ok($node, 'adm', qq{
CREATE TABLE s_adm.msg (id bigserial PRIMARY KEY, v float8, note text);
GRANT USAGE ON SCHEMA s_adm TO plain;
GRANT INSERT ON s_adm.msg TO plain;
GRANT USAGE ON SEQUENCE s_adm.msg_id_seq TO plain;
SELECT anomaly.create_detector('det_msg', 's_adm.msg', ARRAY['v'],
	options => '{"number_of_trees": 5, "sub_sample_size": 16, "shingle_size": 1}');
SELECT anomaly.create_destination('e_msg', 'email',
	'{"url": "smtp://127.0.0.1:$smtp->{port}", "from": "a\@example.com", "to": ["b\@example.com"],
	  "starttls": "none"}');
SELECT anomaly.create_alert_rule('r_msg', 'det_msg', 'e_msg', min_score => 0,
	group_by => '{source_key}', body_template => 'note: {{row.note}} end');
}, "$label: adm's rule puts the row's note in the message", db => 'wdb');
	as_role_ok($node, 'plain', q{
INSERT INTO s_adm.msg (v, note) VALUES
	(1, E'a\r.\rMAIL FROM:<x@evil.example>\rRCPT TO:<victim@evil.example>\rDATA\rsmuggled\r.\r'
		|| E'b\r.\r\nc\n.\nd\r\n.\r\ne');
}, "$label: plain inserts a row with lone CRs", db => 'wdb');
	as_role_ok($node, 'adm', q{SELECT anomaly.process('det_msg');}, "$label: a round", db => 'wdb');
	my $before = length(listener_bytes($smtp));
	my $sent = as_role_ok($node, 'adm', q{SELECT anomaly.deliver();}, "$label: delivered", db => 'wdb');
	my $bytes = substr(listener_bytes($smtp), $before);
	my @data = $bytes =~ /\r\nDATA\r\n(.*?\r\n\.\r\n)/sg;
	is(scalar @data, 1, "$label: the message reached the relay") or diag("deliver: $sent");
	ok(!grep({ /\r(?!\n)|(?<!\r)\n/ } @data), "$label: no CR or LF alone in their DATA")
	  or diag(join("\n----\n", map { my $d = $_; $d =~ s/\r/<CR>/g; $d =~ s/\n/<LF>\n/g; $d } @data));
	ok((grep { /note: a\r\n\.\.\r\nMAIL FROM:<x\@evil\.example>\r\n/ } @data)
		  && (grep { /\r\nsmuggled\r\n\.\.\r\nb\r\n\.\.\r\nc\r\n\.\.\r\nd\r\n\.\.\r\ne end\r\n/ } @data),
		"$label: the lines are kept, CR LF each, the \".\" lines escaped")
	  or diag(join("\n----\n", map { my $d = $_; $d =~ s/\r/<CR>/g; $d =~ s/\n/<LF>\n/g; $d } @data));
	assert_no_superuser($node, $label);
	assert_alive($node, $label);
}

# -------------------------------------------------------------------------
# Finding: a destination's timeout_ms (up to 10 minutes) replaced the
# superuser's anomaly.request_timeout instead of only shortening it.  The
# sender's round waits for its slowest transfer and carries every admin's
# notifications: adm's webhook to a peer that accepts and never answers,
# with "timeout_ms": 60000, held adm2's notifications for a minute per
# attempt (500 of adm's, at 16 transfers at once, for hours).  A
# destination's timeout_ms is now at most anomaly.request_timeout (3 s
# here).
{
	my $label = 'a destination\'s timeout_ms over anomaly.request_timeout';
	my ($tarpit, $tport) = tarpit();
	as_role_ok($node, 'adm', qq{
SELECT anomaly.create_destination('slow_adm', 'webhook',
	'{"url": "http://127.0.0.1:$tport/", "timeout_ms": 60000, "max_attempts": 1}');
}, "$label: adm's destination at a silent peer, 60 s");
	as_role_ok($node, 'adm2', q{
SELECT anomaly.create_destination('quick_adm2', 'notify', '{"channel": "quick"}');
}, "$label: adm2's destination");
	as_role_ok($node, 'adm', q{SELECT anomaly.send_alert('slow_adm', 'slow', '{}');},
		"$label: adm queues one notification");
	# the sender's round is under way with adm's transfer
	wait_until(10, sub {
		$node->safe_psql('postgres', q{
			SELECT count(*) FROM pg_catalog.pg_stat_activity a
			WHERE a.backend_type = 'anomaly alert sender'
			  AND EXISTS (SELECT 1 FROM pg_catalog.pg_locks l
						  WHERE l.pid = a.pid AND l.locktype = 'transactionid')}) ne '0';
	});
	victim_sent_within($label, 'victim', 15);
	my $dead;
	wait_until(30, sub {
		$dead = $node->safe_psql('postgres', q{
			SELECT count(*) FROM anomaly.dead_letters WHERE destination = 'slow_adm'});
		return $dead eq '1';
	});
	is($dead, '1', "$label: adm's notification ends in the dead letters (its one attempt timed out)");
	close $tarpit;
	assert_no_superuser($node, $label);
	assert_alive($node, $label);
}

# -------------------------------------------------------------------------
# Finding: the sender's round took the oldest due rows of all, so a flood
# queued to one admin's destination held every other admin's notifications
# back; and at a silent peer the flood's rows took a round that many
# timeouts, in waves of anomaly.delivery_concurrency.  Here 200 of adm's
# rows at a peer that never answers (3 s each, 13 waves: about 40 s) are
# queued before adm2's one.  A round is now shared between the destinations
# with due rows, and a destination whose last outcome was an error sends one
# row a round until one succeeds.
{
	my $label = 'a flood to a silent peer before another admin\'s notification';
	my ($tarpit, $tport) = tarpit();
	as_role_ok($node, 'adm', qq{
SELECT anomaly.create_destination('flood_adm', 'webhook',
	'{"url": "http://127.0.0.1:$tport/", "max_attempts": 1}');
SELECT anomaly.send_alert('flood_adm', 'first', '{}');
}, "$label: adm's destination at a silent peer, one notification");
	# its first attempt times out: its last outcome is an error
	my $failed = wait_until(30, sub {
		$node->safe_psql('postgres', q{
			SELECT count(*) FROM anomaly.dead_letters WHERE destination = 'flood_adm'}) eq '1';
	});
	ok($failed, "$label: the first attempt times out");
	as_role_ok($node, 'adm', q{
SELECT count(anomaly.send_alert('flood_adm', 'flood ' || i, '{}')) FROM generate_series(1, 200) i;
}, "$label: adm queues 200 more");
	victim_sent_within($label, 'after the flood', 15);
	my $left = $node->safe_psql('postgres', q{
		SELECT count(*) FROM anomaly.outbox WHERE destination = 'flood_adm'});
	cmp_ok($left, '>=', 190, "$label: meanwhile the flood's rows went one a round ($left left)");
	as_role_ok($node, 'adm', q{SELECT anomaly.drop_destination('flood_adm', force => true);},
		"$label: adm drops its destination");
	close $tarpit;
	assert_no_superuser($node, $label);
	assert_alive($node, $label);
}

# -------------------------------------------------------------------------
# The sender worker carries a failing destination's probe over rounds
# instead of waiting for it (session 10).  Each probe in flight holds a
# connection: an admin's many failing destinations must not take as many of
# the worker's descriptors, nor hold the others' notifications.  At most
# anomaly.delivery_concurrency (2 here) are in flight; the rest wait.
{
	my $label = 'many failing destinations of one admin';
	my ($tarpit, $tport) = tarpit();
	my $idle = commits_during(3);
	$node->safe_psql('postgres', q{ALTER SYSTEM SET anomaly.delivery_concurrency = 2; SELECT pg_reload_conf();});
	as_role_ok($node, 'adm', qq{
SELECT anomaly.create_destination('many_' || i, 'webhook',
	'{"url": "http://127.0.0.1:$tport/", "max_attempts": 1000}') FROM generate_series(1, 6) i;
SELECT anomaly.send_alert('many_' || i, 'first', '{}') FROM generate_series(1, 6) i;
}, "$label: adm's six destinations at a silent peer");
	my $failing = wait_until(60, sub {
		$node->safe_psql('postgres', q{
			SELECT count(*) FROM anomaly.delivery_counters
			WHERE destination LIKE 'many\_%' AND retried > 0}) eq '6';
	});
	ok($failing, "$label: each one's first attempt timed out");
	as_role_ok($node, 'adm', q{
SELECT count(anomaly.send_alert('many_' || i, 'more', '{}')) FROM generate_series(1, 6) i, generate_series(1, 3) j;
}, "$label: adm queues three more to each");
	my $probes = sub {
		$node->safe_psql('postgres', q{
			SELECT string_agg(retried::text, ',' ORDER BY destination) FROM anomaly.delivery_counters
			WHERE destination LIKE 'many\_%'});
	};
	my $before = $probes->();
	my ($most, $seen) = (0, 0);
	my $t0 = time();
	while (time() - $t0 < 8)
	{
		my $n = $node->safe_psql('postgres', q{
			SELECT count(*) FROM anomaly.outbox
			WHERE destination LIKE 'many\_%' AND next_attempt_at > now() + interval '30 s'});
		$most = $n if $n > $most;
		$seen++ if $n > 0;
		select(undef, undef, undef, 0.1);
	}
	ok($seen > 0 && $most <= 2, "$label: probes in flight, never more than anomaly.delivery_concurrency")
	  or diag("most leased at once: $most; seen in $seen polls");
	victim_sent_within($label, 'beside six failing destinations', 2);
	# Finding (session 10 review): with the probes at their cap, the other
	# failing destinations' due rows were not claimed, yet the worker's wait
	# counted them as due: it ran a round every 10 ms until a probe ended,
	# as long as the destinations failed (295 transactions in 3 s).
	my $busy = commits_during(3);
	ok($busy < $idle + 30, "$label: the sender does not spin while the probes are at their cap")
	  or diag("transactions in 3 s: $busy, idle: $idle");
	# Finding (session 10 review): the probes went to the failing
	# destinations with the oldest rows, and those that had just had theirs
	# had them (the others' were put back by a second each time): two of the
	# six had every probe.  In 13 s, 2 at a time, each of 3 s, each of the
	# six has its turn.
	my @b = split /,/, $before;
	my @a = split /,/, $probes->();
	is(scalar(grep { $a[$_] > $b[$_] } 0 .. $#b), 6, "$label: each failing destination has a probe in turn")
	  or diag("probes timed out before: $before, after: " . join(',', @a));
	as_role_ok($node, 'adm', q{
SELECT anomaly.drop_destination('many_' || i, force => true) FROM generate_series(1, 6) i;
}, "$label: adm drops its destinations");
	$node->safe_psql('postgres', q{ALTER SYSTEM RESET anomaly.delivery_concurrency; SELECT pg_reload_conf();});
	close $tarpit;
	assert_no_superuser($node, $label);
	assert_alive($node, $label);
}

# -------------------------------------------------------------------------
# Finding (session 10 review): a disabled destination's queued rows are
# never claimed, yet the sender's wait counted them as due, so it ran a
# round every 10 ms for as long as the destination stayed disabled: any
# admin could make the superuser's worker spin with one send_alert.
{
	my $label = 'a disabled destination with a queued row';
	my $idle = commits_during(3);
	as_role_ok($node, 'adm', q{
SELECT anomaly.create_destination('paused_adm', 'notify', '{"channel": "paused"}');
SELECT anomaly.alter_destination('paused_adm', enabled => false);
SELECT anomaly.send_alert('paused_adm', 'held', '{}');
}, "$label: adm queues to its disabled destination");
	my $busy = commits_during(3);
	ok($busy < $idle + 30, "$label: the sender does not spin")
	  or diag("transactions in 3 s: $busy, idle: $idle");
	is($node->safe_psql('postgres', q{SELECT count(*) FROM anomaly.outbox WHERE destination = 'paused_adm'}),
		'1', "$label: the row waits");
	victim_sent_within($label, 'beside a disabled destination', 2);
	as_role_ok($node, 'adm', q{SELECT anomaly.alter_destination('paused_adm', enabled => true);},
		"$label: adm enables it again");
	ok(wait_until(30, sub {
		$node->safe_psql('postgres', q{SELECT count(*) FROM anomaly.outbox WHERE destination = 'paused_adm'}) eq '0';
	}), "$label: then the row is sent");
	as_role_ok($node, 'adm', q{SELECT anomaly.drop_destination('paused_adm');},
		"$label: adm drops it");
	assert_alive($node, $label);
}

# -------------------------------------------------------------------------
# Finding: pg_restore of a database whose detectors had alert rules lost
# every detector's scores.  The rules' trigger on anomaly.scores fired for
# the restored rows (COPY fires triggers; the extension's script made the
# trigger before the data came): it evaluated history again, inserted
# episodes that collided with the restored ones, and the COPY of
# anomaly.scores failed as a whole (had it not, history's notifications
# would have been queued again).  Rules now see the scores of detectors at
# home only (adopted in this database): a restored detector's scores are
# history until its first round here.
{
	my $label = 'pg_restore of scores under alert rules';
	# scores from before a rule was made (as are those whose episodes
	# purge_alert_history deleted)
	as_role_ok($node, 'adm', q{
CREATE TABLE s_adm.hist (id bigserial PRIMARY KEY, v float8);
SELECT anomaly.create_detector('det_hist', 's_adm.hist', ARRAY['v'],
	options => '{"number_of_trees": 5, "sub_sample_size": 16, "shingle_size": 1}');
INSERT INTO s_adm.hist (v) SELECT g FROM generate_series(1, 20) g;
SELECT anomaly.process('det_hist');
SELECT anomaly.create_destination('n_hist', 'notify', '{"channel": "hist"}');
SELECT anomaly.create_alert_rule('r_hist', 'det_hist', 'n_hist', min_score => 0, group_by => '{source_key}');
}, "$label: adm's rule made after its detector scored 20 rows", db => 'wdb');
	my $want = $node->safe_psql('wdb', q{
		SELECT (SELECT count(*) FROM anomaly.scores) || '|' || (SELECT count(*) FROM anomaly.alert_episodes)
			|| '|' || (SELECT count(*) FROM anomaly.outbox)});
	like($want, qr/^[1-9]\d*\|[1-9]\d*\|\d+$/, "$label: wdb has scores and episodes ($want)");
	my $dump = $PostgreSQL::Test::Utils::tmp_check . '/wdb.dump';
	$node->command_ok([ 'pg_dump', '--format', 'custom', '--file', $dump, $node->connstr('wdb') ],
		"$label: pg_dump");
	$node->safe_psql('postgres', q{CREATE DATABASE rdb;});
	$node->command_ok([ 'pg_restore', '--exit-on-error', '--dbname',
		$node->connstr('rdb') . ' application_name=pg_restore', $dump ],
		"$label: pg_restore succeeds");
	is($node->safe_psql('rdb', q{
		SELECT (SELECT count(*) FROM anomaly.scores) || '|' || (SELECT count(*) FROM anomaly.alert_episodes)
			|| '|' || (SELECT count(*) FROM anomaly.outbox)}), $want,
		"$label: the scores, the episodes and the outbox as they were, nothing queued again");
	# at home again: a new score of a restored detector meets its rule
	$node->safe_psql('rdb', q{SELECT anomaly.resume_detector('det_msg');});
	as_role_ok($node, 'adm', q{
SELECT anomaly.process('det_msg');
INSERT INTO s_adm.msg (v, note) VALUES (3, 'after the restore');
SELECT anomaly.process('det_msg');
}, "$label: adm's detector adopted in the copy scores a new row", db => 'rdb');
	is($node->safe_psql('rdb', q{
		SELECT count(*) FROM anomaly.outbox
		WHERE destination = 'e_msg' AND payload -> 'row' ->> 'note' = 'after the restore'}),
		'1', "$label: its rule queues the new row's notification");
	assert_no_superuser($node, $label);
	assert_alive($node, $label);
}


# -------------------------------------------------------------------------
# Finding: an alert rule's cooldown was checked as non-negative only, and
# the rules' trigger compared the last firing with t - cooldown: a cooldown
# of '200000 years' made that timestamp overflow at the rule's first firing,
# so the round that wrote the detector's scores failed, and again at each
# retry until the detector was marked failed, every rule on it silenced (a
# superuser's too).  The trigger now compares t - fired_at with the
# cooldown, which cannot overflow.
{
	my $label = 'an alert rule\'s cooldown of 200000 years';
	as_role_ok($node, 'adm', q{
CREATE TABLE s_adm.cool (id bigserial PRIMARY KEY, v float8);
SELECT anomaly.create_detector('det_cool', 's_adm.cool', ARRAY['v'],
	options => '{"number_of_trees": 5, "sub_sample_size": 16, "shingle_size": 1}');
SELECT anomaly.create_destination('n_cool', 'notify', '{"channel": "cool"}');
SELECT anomaly.create_alert_rule('r_cool', 'det_cool', 'n_cool', min_score => 0,
	cooldown => '200000 years');
INSERT INTO s_adm.cool (v) SELECT g FROM generate_series(1, 10) g;
}, "$label: adm's rule", db => 'wdb');
	as_role($node, 'adm', q{SELECT anomaly.process('det_cool');}, db => 'wdb');
	is($node->safe_psql('wdb', q{
		SELECT d.rows_scored || '|' || coalesce(d.last_error, '') || '|'
			|| (SELECT count(*) FROM anomaly.outbox o WHERE o.destination = 'n_cool')
		FROM anomaly.detectors d WHERE d.name = 'det_cool'}),
		'10||1', "$label: the round scores its rows, the rule fires once");
	as_role_ok($node, 'adm', q{
INSERT INTO s_adm.cool (v) SELECT g FROM generate_series(11, 20) g;
SELECT anomaly.process('det_cool');
}, "$label: another round", db => 'wdb');
	is($node->safe_psql('wdb', q{
		SELECT d.rows_scored || '|' || coalesce(d.last_error, '') FROM anomaly.detectors d
		WHERE d.name = 'det_cool'}), '20|', "$label: scored again, no error");
	assert_no_superuser($node, $label);
	assert_alive($node, $label);
}

# =========================================================================
# Surfaces found sound: these confirm what holds.

# Detector options as JSON: deep nesting, duplicate keys, numbers out of
# every range, non-ASCII names.  Each is a clean error or a canonical value.
{
	my $label = 'detector options JSON';
	as_role_ok($node, 'adm', q{
CREATE TABLE s_adm.opt (id bigserial PRIMARY KEY, v float8, w float8, ts timestamptz);
}, "$label: a table");
	my $base = '"number_of_trees": 5, "sub_sample_size": 16, "shingle_size": 1';
	my @bad = (
		[ 'a setting nested 5,000 deep', qq{('{$base, "settings": ' || repeat('{"a": ', 5000) || '1' || repeat('}', 5000) || '}')::jsonb},
			qr/"a" is not a setting a detector keeps/ ],
		[ 'an array nested 5,000 deep', qq{('{$base, "seed": ' || repeat('[', 5000) || repeat(']', 5000) || '}')::jsonb},
			qr/option "seed" must be an integer/ ],
		[ 'z_factor 1e400', qq{'{$base, "z_factor": 1e400}'::jsonb}, qr/out of range for type double precision/ ],
		[ 'number_of_trees 1e10', qq{'{$base, "number_of_trees": 1e10}'::jsonb}, qr/forest parameters are out of range/ ],
		[ 'seed 1e30', qq{'{$base, "seed": 1e30}'::jsonb}, qr/bigint out of range/ ],
		[ 'a fractional tree count', qq{'{$base, "number_of_trees": 5.5}'::jsonb}, qr/must be an integer/ ],
		[ 'transform_weights 1e308', qq{'{$base, "transform_weights": [1e308, 1]}'::jsonb}, qr/transform_weights must be between 0 and 1e6/ ],
		[ 'a window of 100,000 days', qq{'{$base, "window": "100000 days", "time_column": "ts"}'::jsonb},
			qr/option "window" is out of range/ ],
		[ 'a retention past 1000 years', qq{'{$base, "retention": "1000 years 1 day"}'::jsonb}, qr/at most 1000 years/ ],
		[ 'an object as a setting', qq{'{$base, "settings": {"TimeZone": {"a": 1}}}'::jsonb}, qr/must be a string, a number or a boolean/ ],
		[ 'a search_path setting', qq{'{$base, "settings": {"search_path": "s_adm"}}'::jsonb}, qr/"search_path" is not a setting a detector keeps/ ],
	);
	for my $b (@bad)
	{
		as_role_err($node, 'adm', "SELECT anomaly.create_detector('o_bad', 's_adm.opt', ARRAY['v', 'w'], options => $b->[1])",
			$b->[2], "$label: $b->[0] refused cleanly");
	}
	as_role_ok($node, 'adm', qq{
SELECT anomaly.create_detector('o_dup', 's_adm.opt', ARRAY['v'],
	options => ('{$base, "number_of_trees": 7, "number_of_trees": 6,
		"feature_names": ["\\u00e9\\u4e2d\\ud83d\\ude00"],
		"operations": [' || repeat('"insert", ', 10000) || '"update"]}')::jsonb);
}, "$label: duplicate keys, non-ASCII names, 10,000 operations");
	is($node->safe_psql('postgres', q{
		SELECT (options -> 'number_of_trees')::text || '|' || (options -> 'feature_names' ->> 0)
			|| '|' || (options -> 'operations')::text
		FROM anomaly.detectors WHERE name = 'o_dup'}),
		"6|\xc3\xa9\xe4\xb8\xad\xf0\x9f\x98\x80|[\"insert\", \"update\"]",
		"$label: the last duplicate wins, the name is kept, the operations are a set");
	assert_no_superuser($node, $label);
	assert_alive($node, $label);
}

# The scale-out functions: PUBLIC may run the pure ones (shard_of,
# shard_filter), whose output quotes what it is given; only admins may
# publish, and only tables whose owner they are (as CREATE PUBLICATION).
{
	my $label = 'scale-out functions';
	my $f = as_role_ok($node, 'plain', q{SELECT anomaly.shard_filter('k"; DROP TABLE x; --', 'text', 0, 2);},
		"$label: plain runs shard_filter");
	like($f, qr/^\(\(\(get_byte\(decode\(md5\("k""; DROP TABLE x; --"::text\)/,
		"$label: the key column's name is quoted as an identifier");
	as_role_err($node, 'plain', q{SELECT anomaly.shard_of('k', 1025);},
		qr/shards must be between 1 and 1024/, "$label: shard counts are bounded");
	as_role_err($node, 'plain', q{
CREATE TABLE s_plain.p (k text);
SELECT * FROM anomaly.create_shard_publications('s_plain.p', 'k', 2);
}, qr/permission denied for function create_shard_publications/, "$label: plain may not publish");
	as_role_err($node, 'adm', q{
SELECT * FROM anomaly.create_shard_publications('s_plain.p', 'k', 2);
}, qr/must be the owner of table|permission denied/, "$label: adm may not publish plain's table");
	is($node->safe_psql('postgres', q{SELECT count(*) FROM pg_publication}), '0',
		"$label: no publication was made");
	as_role_err($node, 'adm', q{SELECT anomaly.publish_scores('n1', 'o_dup');},
		qr/permission denied for function publish_scores/, "$label: publish_scores is the superuser's");
	assert_no_superuser($node, $label);
	assert_alive($node, $label);
}

# A destination's peer that answers with a 3 MB body: the transfer stops at
# anomaly.max_response_bytes, the admin sees the class, the sender goes on.
{
	my $label = 'a destination answering a huge body';
	my $big = start_listener(mode => 'http', status => 200, body => 'x' x 3_000_000);
	as_role_ok($node, 'adm', qq{
SELECT anomaly.create_destination('big_resp', 'webhook',
	'{"url": "http://127.0.0.1:$big->{port}/", "max_attempts": 1}');
}, "$label: adm's destination");
	my $r = as_role_ok($node, 'adm',
		q{SELECT ok::text || '|' || coalesce(detail, '') FROM anomaly.test_destination('big_resp')},
		"$label: test_destination");
	like($r, qr/^false\|.*response body larger than 65536 bytes/, "$label: cut at 64 kB, reported as such");
	unlike($r, qr/xxxxxxxx/, "$label: none of the body shown to adm");
	assert_no_superuser($node, $label);
	assert_alive($node, $label);
}

# send_alert's body chooses the payload's fingerprint and status (strings
# of any length): _fit_json cuts them with the rest, so the stored payload
# stays within 1 MB, and a notify destination's reference names neither.
{
	my $label = 'a send_alert body of huge fingerprint and status';
	as_role_ok($node, 'adm', q{
SELECT anomaly.create_destination('fit_adm', 'notify', '{"channel": "fit"}');
SELECT anomaly.alter_destination('fit_adm', enabled => false);
SELECT anomaly.send_alert('fit_adm', repeat('s', 3000000), jsonb_build_object(
	'fingerprint', repeat('f', 3000000), 'status', repeat('t', 3000000),
	'severity', repeat('v', 1000), 'x', repeat(E'\u0001', 1000000)));
}, "$label: queued");
	is($node->safe_psql('postgres', q{
		SELECT (octet_length(payload::text) <= 1048576) || '|' || (octet_length(subject) <= 1000)
			|| '|' || (payload ->> 'severity') || '|' || (payload ? 'truncated')
			|| '|' || (length(anomaly._render('notify', '{"channel": "fit"}', subject, payload, 'd', id)) < 300)
		FROM anomaly.outbox WHERE destination = 'fit_adm'}),
		'true|true|info|true|true', "$label: stored within 1 MB, severity of the closed set, the reference short");
	assert_no_superuser($node, $label);
	assert_alive($node, $label);
}

# The owner of a detector's source table (owner1, no admin role) turns row
# security on after adm's detector was made: the detector cannot apply it
# (it reads every row from the WAL), so its next round fails saying so
# instead of scoring rows adm may not see.
{
	my $label = 'row security turned on under a detector';
	$node->safe_psql('wdb', q{
CREATE TABLE s_own.rls (id bigserial PRIMARY KEY, tenant text, v float8);
ALTER TABLE s_own.rls OWNER TO owner1;
GRANT USAGE ON SCHEMA s_own TO adm;
GRANT SELECT ON s_own.rls TO adm;});
	as_role_ok($node, 'adm', q{
SELECT anomaly.create_detector('det_rls', 's_own.rls', ARRAY['v'],
	options => '{"number_of_trees": 5, "sub_sample_size": 16, "shingle_size": 1}');
}, "$label: adm's detector on owner1's table", db => 'wdb');
	as_role_ok($node, 'owner1', q{
ALTER TABLE s_own.rls ENABLE ROW LEVEL SECURITY;
CREATE POLICY mine ON s_own.rls FOR SELECT TO adm USING (tenant = 'adm');
INSERT INTO s_own.rls (tenant, v) SELECT 'other', g FROM generate_series(1, 10) g;
}, "$label: owner1 turns row security on and writes other tenants' rows", db => 'wdb');
	as_role($node, 'adm', q{SELECT anomaly.process('det_rls');}, db => 'wdb');
	my $got = $node->safe_psql('wdb', q{
		SELECT (SELECT count(*) FROM anomaly.scores WHERE detector = 'det_rls') || '|'
			|| coalesce((SELECT last_error FROM anomaly.detectors WHERE name = 'det_rls'), '')});
	like($got, qr/^0\|table s_own\.rls has row-level security for the owner of detector "det_rls"/,
		"$label: no row scored, the error says why");
	assert_no_superuser($node, $label);
	assert_alive($node, $label);
}

done_testing();
