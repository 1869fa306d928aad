# Hostile settings: what a non-superuser may set for a session it does not
# run (ALTER DATABASE ... SET as a database's owner, ALTER ROLE ... SET or
# SET as a detector's owner) must not change what the extension computes
# or writes as the superuser.
#
# Windowed detectors keep a window's rows as text between rounds
# (window_agg.c), written by one session and read back by another: a
# database owner who sets DateStyle, IntervalStyle, TimeZone or
# extra_float_digits for the database between the two must not change the
# rows (a date read day-for-month, a float cut to one digit).
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/..";
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(time);

use HostileTest;

my $node = new_hostile_node('hostile_settings');

# A database owned by owner1 (no superuser, no anomaly role), without a
# detector worker (anomaly.detector_database names postgres): adm scores
# its detector there with process(), so that each round is a session of its
# own, with the database's settings of that moment.
$node->safe_psql('postgres', q{
	CREATE DATABASE wdb OWNER owner1;
});
$node->safe_psql('wdb', q{
	CREATE EXTENSION anomaly;
	CREATE SCHEMA s_adm AUTHORIZATION adm;
});

# -------------------------------------------------------------------------
# A window's buffered rows under the database owner's settings.
{
	my $label = 'window rows under a database owner\'s DateStyle';
	as_role_ok($node, 'adm', q{
CREATE TABLE s_adm.src (id bigserial PRIMARY KEY, ts timestamptz, d date, iv interval, f float8,
	t timestamp, tz timestamptz, m money, b bytea);
SELECT anomaly.create_detector('det_io', 's_adm.src',
	ARRAY['sum(d - date ''2026-01-01'')', 'sum(extract(epoch FROM iv))', 'sum(f)',
		'sum(extract(epoch FROM t))', 'sum(extract(epoch FROM tz))', 'sum(m::numeric)',
		'sum(length(b))'],
	options => '{"number_of_trees": 5, "sub_sample_size": 16, "window": "1 minute",
		"time_column": "ts"}');
INSERT INTO s_adm.src (ts, d, iv, f, t, tz, m, b) VALUES
	('2026-01-01 10:00:10+00', '2026-01-02', '-1 day +2 hours', 1.0 / 3, '2026-01-02 03:04:05.678901',
	 '2026-01-02 03:04:05.678901+00', 1234.56, '\x00ff5c27'),
	('2026-01-01 10:00:20+00', '2026-01-03', '1 mon -3 days 00:00:01.5', 1.0 / 7, '2026-02-01 23:59:59',
	 '2026-07-01 12:00:00+00', 0.01, '\x5c5c');
}, "$label: set up as adm", db => 'wdb');

	# the rows of the open window are written under the owner's settings
	$node->safe_psql('wdb', q{SET ROLE owner1;
ALTER DATABASE wdb SET DateStyle = 'SQL, DMY';
ALTER DATABASE wdb SET IntervalStyle = 'sql_standard';
ALTER DATABASE wdb SET TimeZone = 'Pacific/Chatham';
ALTER DATABASE wdb SET extra_float_digits = -15;
ALTER DATABASE wdb SET bytea_output = 'escape';
});
	my $out = as_role_ok($node, 'adm', 'SELECT anomaly.process()',
		"$label: a round under the owner's settings", db => 'wdb');
	is($out, '2', "$label: the round buffered the two rows");

	# and read back under others: a row closes the window
	$node->safe_psql('wdb', q{SET ROLE owner1;
ALTER DATABASE wdb SET DateStyle = 'Postgres, MDY';
ALTER DATABASE wdb SET IntervalStyle = 'iso_8601';
ALTER DATABASE wdb SET TimeZone = 'America/New_York';
ALTER DATABASE wdb RESET extra_float_digits;
ALTER DATABASE wdb RESET bytea_output;
});
	as_role_ok($node, 'adm', q{
INSERT INTO s_adm.src (ts, d, iv, f) VALUES ('2026-01-01 10:05:00+00', '2026-01-01', '0', 0);
SELECT anomaly.process();
}, "$label: a round under other settings", db => 'wdb');
	$node->safe_psql('wdb', 'ALTER DATABASE wdb RESET ALL');

	my $ref = q{
		SELECT ARRAY[sum(d - date '2026-01-01'), sum(extract(epoch FROM iv)), sum(f),
			sum(extract(epoch FROM t)), sum(extract(epoch FROM tz)), sum(m::numeric),
			sum(length(b))]::float8[]
		FROM s_adm.src WHERE ts < '2026-01-01 10:01:00+00'};
	my $got = $node->safe_psql('wdb', qq{
		SELECT s.features = ($ref) FROM anomaly.scores s WHERE s.detector = 'det_io'});
	is($got, 't', "$label: the window's features equal the aggregates over the table")
	  or diag($node->safe_psql('wdb', qq{
		SELECT s.features::text || ' vs ' || ($ref)::text || ' / ' ||
			coalesce((SELECT string_agg(reason, '; ') FROM anomaly.detector_failures), '')
		FROM anomaly.scores s WHERE s.detector = 'det_io'}));
	assert_no_superuser($node, $label);
	assert_alive($node, $label);
}

# -------------------------------------------------------------------------
# A window's rows are held in memory, as one array, when it is scored: an
# admin's window over wide rows asked for as much as the rows held (up to
# the 1 GB an array may hold, then more for their copies).  The rows of the
# closing windows are bounded by anomaly.window_memory_limit (superuser
# only): past it the round fails with an error that says so, and a window
# within it is scored.
{
	my $label = 'a window larger than anomaly.window_memory_limit';
	$node->safe_psql('postgres', q{ALTER SYSTEM SET anomaly.window_memory_limit = '1MB'});
	$node->reload;
	my ($rc, $out, $err) = as_role($node, 'adm', q{SET anomaly.window_memory_limit = '1024MB'},
		db => 'wdb');
	like($err, qr/permission denied to set parameter/, "$label: an admin may not raise the limit");
	as_role_ok($node, 'adm', q{
CREATE TABLE s_adm.wide (id bigserial PRIMARY KEY, ts timestamptz, doc text);
SELECT anomaly.create_detector('det_wide', 's_adm.wide', ARRAY['sum(length(doc))'],
	options => '{"number_of_trees": 5, "sub_sample_size": 16, "window": "1 minute",
		"time_column": "ts"}');
-- 0.6 MB in the first window, 1.2 MB in the second
INSERT INTO s_adm.wide (ts, doc)
	SELECT '2026-01-01 10:00:10+00', string_agg(md5(g::text), '') FROM generate_series(1, 19000) g;
INSERT INTO s_adm.wide (ts, doc)
	SELECT '2026-01-01 10:01:00+00'::timestamptz + n * interval '1 second',
		(SELECT string_agg(md5((g + n)::text), '') FROM generate_series(1, 19000) g)
	FROM generate_series(1, 2) n;
}, "$label: set up as adm", db => 'wdb');
	($rc, $out, $err) = as_role($node, 'adm', 'SELECT anomaly.process()', db => 'wdb');
	is("$rc|$err", '0|', "$label: the round closing the first window runs without a warning");
	is($node->safe_psql('wdb', q{SELECT count(*) FROM anomaly.scores WHERE detector = 'det_wide'}), '1',
		"$label: the window within the limit is scored");
	($rc, $out, $err) = as_role($node, 'adm', q{
INSERT INTO s_adm.wide (ts, doc) VALUES ('2026-01-01 10:05:00+00', 'x');
SELECT anomaly.process();
}, db => 'wdb');
	like($err, qr/WARNING:  detector "det_wide": the windows of detector "det_wide" that close hold more rows than anomaly.window_memory_limit \(1 MB\)/,
		"$label: the round closing the larger window fails, saying why");
	is($node->safe_psql('wdb', q{SELECT count(*) FROM anomaly.scores WHERE detector = 'det_wide'}), '1',
		"$label: nothing of that round is written");
	like($node->safe_psql('wdb', q{SELECT last_error FROM anomaly.detector_status WHERE name = 'det_wide'}),
		qr/anomaly.window_memory_limit/, "$label: the detector's last_error names the limit");
	$node->safe_psql('postgres', q{ALTER SYSTEM RESET anomaly.window_memory_limit});
	$node->reload;
	as_role_ok($node, 'adm', q{SELECT anomaly.resume_detector('det_wide'); SELECT anomaly.process()},
		"$label: under the default limit", db => 'wdb');
	is($node->safe_psql('wdb', q{SELECT count(*) FROM anomaly.scores WHERE detector = 'det_wide'}), '2',
		"$label: the larger window is scored under the default limit");
	assert_no_superuser($node, $label);
	assert_alive($node, $label);
}

# A stagger detector keeps each buffered row's window with the row: a round
# reads only its keys' windows, whatever the buffer's size.  When the window
# changes (alter_detector) the next round replays the buffered rows' keys
# and times to find their windows again: that replay counts against
# anomaly.window_memory_limit (about 16 bytes a row), read a batch at a
# time, so that an open window of many rows fails the round with an error
# that says so instead of holding every row of the buffer in memory.
{
	my $label = 'a stagger buffer larger than anomaly.window_memory_limit';
	as_role_ok($node, 'adm', q{
CREATE TABLE s_adm.stag (id bigserial PRIMARY KEY, ts timestamptz, v float8);
SELECT anomaly.create_detector('det_stag', 's_adm.stag', ARRAY['count(*)'],
	options => '{"number_of_trees": 5, "sub_sample_size": 16, "window": "1 hour",
		"stagger": true, "time_column": "ts"}');
INSERT INTO s_adm.stag (ts, v)
	SELECT '2026-01-01 10:00:00+00'::timestamptz + g * interval '10 milliseconds', g
	FROM generate_series(1, 80000) g;
SELECT anomaly.process();
}, "$label: 80,000 rows buffered in an open window", db => 'wdb');
	$node->safe_psql('postgres', q{ALTER SYSTEM SET anomaly.window_memory_limit = '1MB'});
	$node->reload;
	my ($rc, $out, $err) = as_role($node, 'adm', q{
INSERT INTO s_adm.stag (ts, v) VALUES ('2026-01-01 10:20:00+00', 0);
SELECT anomaly.process();
}, db => 'wdb');
	is($err, '', "$label: a round does not replay the buffer: under 1 MB it goes through");
	is($node->safe_psql('wdb', q{SELECT count(*) FROM anomaly.detector_window_rows r
		JOIN anomaly.detectors d ON d.id = r.detector_id WHERE d.name = 'det_stag'}), '80001',
		"$label: the row is buffered");
	($rc, $out, $err) = as_role($node, 'adm', q{
SELECT anomaly.alter_detector('det_stag', options => '{"window": "2 hours", "slide": "2 hours"}');
INSERT INTO s_adm.stag (ts, v) VALUES ('2026-01-01 10:30:00+00', 0);
SELECT anomaly.process();
}, db => 'wdb');
	like($err, qr/WARNING:  detector "det_stag": the buffered rows of stagger detector "det_stag" need more memory than anomaly.window_memory_limit \(1 MB\)/,
		"$label: a new window replays the buffer: the round fails, saying why");
	is($node->safe_psql('wdb', q{SELECT count(*) FROM anomaly.detector_window_rows r
		JOIN anomaly.detectors d ON d.id = r.detector_id WHERE d.name = 'det_stag'}), '80001',
		"$label: the failed round buffered nothing more");
	$node->safe_psql('postgres', q{ALTER SYSTEM RESET anomaly.window_memory_limit});
	$node->reload;
	as_role_ok($node, 'adm', q{SELECT anomaly.resume_detector('det_stag');
INSERT INTO s_adm.stag (ts, v) VALUES ('2026-01-01 13:00:00+00', 0);
SELECT anomaly.process()},
		"$label: under the default limit", db => 'wdb');
	is($node->safe_psql('wdb', q{SELECT features[1] FROM anomaly.scores WHERE detector = 'det_stag'}), '80002',
		"$label: the window, opened by the first row, is scored with every row under the default limit");
	assert_no_superuser($node, $label);
	assert_alive($node, $label);
}

# -------------------------------------------------------------------------
# The source key of a table without a primary key is the whole row (in
# anomaly.scores, a destination, a rule's payload and group key): a
# detector whose owner no longer may read every column of its source must
# not score another row, so no column the owner lost reaches any of them.
{
	my $label = 'source_key of a table without a primary key';
	$node->safe_psql('wdb', q{SET ROLE owner1;
CREATE TABLE public.nopk (a float8, secret text);
GRANT SELECT ON public.nopk TO adm;
});
	as_role_ok($node, 'adm', q{
SELECT anomaly.create_detector('det_nopk', 'public.nopk', ARRAY['a'],
	options => '{"number_of_trees": 5, "sub_sample_size": 16, "shingle_size": 1}');
SELECT anomaly.create_destination('adm_n', 'notify', '{"channel": "nopk"}');
SELECT anomaly.create_alert_rule('r_nopk', 'det_nopk', 'adm_n', min_score => 0,
	group_by => '{source_key}');
}, "$label: detector and rule as adm", db => 'wdb');
	$node->safe_psql('wdb', q{SET ROLE owner1;
INSERT INTO public.nopk VALUES (1, 'visible-before');
});
	as_role_ok($node, 'adm', 'SELECT anomaly.process()', "$label: a round while adm reads the table",
		db => 'wdb');
	is($node->safe_psql('wdb', q{SELECT source_key->>'secret' FROM anomaly.scores WHERE detector = 'det_nopk'}),
		'visible-before', "$label: the key is the whole row");
	# owner1 takes column secret back from adm
	$node->safe_psql('wdb', q{SET ROLE owner1;
REVOKE SELECT ON public.nopk FROM adm;
GRANT SELECT (a) ON public.nopk TO adm;
INSERT INTO public.nopk VALUES (2, 'hidden-after');
});
	my ($rc, $out, $err) = as_role($node, 'adm', 'SELECT anomaly.process()', db => 'wdb');
	like($err, qr/permission denied for table public.nopk/, "$label: the round stops: the owner may no longer read every column");
	is($node->safe_psql('wdb', q{
		SELECT count(*) FROM anomaly.scores WHERE source_key::text LIKE '%hidden-after%'}), '0',
		"$label: the row is not in anomaly.scores");
	is($node->safe_psql('wdb', q{
		SELECT count(*) FROM anomaly.alert_episodes WHERE group_key::text LIKE '%hidden-after%'}), '0',
		"$label: nor in an episode's key");
	is($node->safe_psql('wdb', q{
		SELECT count(*) FROM anomaly.outbox WHERE payload::text LIKE '%hidden-after%'}), '0',
		"$label: nor in a notification");
	assert_no_superuser($node, $label);
	assert_alive($node, $label);
}

# -------------------------------------------------------------------------
# debug_print_parse, debug_print_rewritten and debug_print_plan are settings
# every role may change, and with client_min_messages = log the trees they
# print reach the client.  The plans of the extension's own statements,
# run as its owner inside deliver() (SECURITY DEFINER) or a management
# function, carry their parameters as constants: another admin's response
# bodies (anomaly.delivery_errors is for superusers) and payloads.  They
# must print nothing of what runs as the extension's owner.

# the bytes of every constant a printed tree holds, as text
sub printed_constants
{
	my ($text) = @_;
	my $all = '';
	while ($text =~ /:constvalue \d+ \[([-\d\s]+)\]/g)
	{
		# the printer wraps long lines, also within a number
		(my $bytes = $1) =~ s/\n\s*//g;
		$all .= join('', map { chr($_ & 255) } split(' ', $bytes)) . "\n";
	}
	return $all;
}

{
	my $label = 'debug_print_plan inside the extension\'s functions';
	my $body = 'RESPONSEBODYxyzzy-of-adm2';
	my $l = start_listener(status => 500, body => $body);
	$node->safe_psql('postgres', q{ALTER SYSTEM SET anomaly.allowed_destination_hosts = '127.0.0.1'});
	$node->reload;
	as_role_ok($node, 'adm2', qq{
SELECT anomaly.create_destination('w_adm2', 'webhook', '{"url": "http://127.0.0.1:$l->{port}/hook"}');
SELECT anomaly.send_alert('w_adm2', 'subject', '{"k": "adm2-private-payload"}');
SELECT anomaly.deliver();
}, "$label: adm2's alert is delivered once and fails", db => 'wdb');
	is($node->safe_psql('wdb', q{SELECT count(*) FROM anomaly.delivery_errors WHERE detail LIKE '%RESPONSEBODYxyzzy%'}),
		'1', "$label: the response body is kept for superusers");
	# the retry is due after anomaly.retry_base (20ms here)
	wait_until(30, sub {
		$node->safe_psql('wdb', q{SELECT count(*) FROM anomaly.outbox WHERE next_attempt_at <= now()}) eq '1' });
	my ($rc, $out, $err) = as_role($node, 'adm', q{
SET debug_print_parse = on;
SET debug_print_rewritten = on;
SET debug_print_plan = on;
SET client_min_messages = log;
SELECT anomaly.deliver();
SELECT anomaly.create_destination('w_adm', 'notify', '{"channel": "dbg"}');
SELECT anomaly.send_alert('w_adm', 'subject', '{"k": "v"}');
}, db => 'wdb');
	is($rc, 0, "$label: adm's calls ran") or diag($err);
	is($node->safe_psql('wdb', q{SELECT attempts FROM anomaly.outbox o WHERE destination = 'w_adm2'}), '2',
		"$label: adm's deliver() delivered adm2's alert again");
	my $consts = printed_constants($err);
	ok(length($err) > 0 && $err =~ /LOG:  plan:/, "$label: adm's own statement's plan is printed");
	unlike($consts . $err, qr/RESPONSEBODYxyzzy/, "$label: adm is not shown adm2's response body");
	unlike($consts . $err, qr/adm2-private-payload/, "$label: nor adm2's payload");
	unlike($err, qr/delivery_errors|:relid \d+.*outbox/s, "$label: nor the plans of the extension's statements");
	assert_no_superuser($node, $label);
	assert_alive($node, $label);
}

# -------------------------------------------------------------------------
# client_min_messages is every role's to set: a DEBUG1 line of a delivery
# round reached an admin with the failure's details, which only superusers
# may see (a response body: what an internal server answered), through
# test_destination() on their own destination and deliver() on everyone's.
{
	my $label = 'client_min_messages = debug1 in a delivery round';
	my ($rc, $out, $err) = as_role($node, 'adm2', q{
SET client_min_messages = debug1;
SELECT ok, detail FROM anomaly.test_destination('w_adm2');
}, db => 'wdb');
	is($out, 'f|HTTP 500', "$label: test_destination gives adm2 the class");
	unlike($err, qr/RESPONSEBODYxyzzy/, "$label: and no DEBUG line with the response body");
	like($err, qr/DEBUG:  anomaly: notification \d+ to "w_adm2": HTTP 500/,
		"$label: the DEBUG line names the class");
	wait_until(30, sub {
		$node->safe_psql('wdb', q{SELECT count(*) FROM anomaly.outbox
			WHERE destination = 'w_adm2' AND next_attempt_at <= now()}) eq '1' });
	($rc, $out, $err) = as_role($node, 'adm', q{
SET client_min_messages = debug1;
SELECT anomaly.deliver();
}, db => 'wdb');
	like($err, qr/notification \d+ to "w_adm2"/, "$label: adm's deliver() retried adm2's alert");
	unlike($err, qr/RESPONSEBODYxyzzy/, "$label: adm is not shown its response body");
	my $su = $node->safe_psql('wdb', q{SET client_min_messages = debug1;
SELECT detail FROM anomaly.test_destination('w_adm2')});
	like($su, qr/RESPONSEBODYxyzzy/, "$label: a superuser is");
	assert_no_superuser($node, $label);
	assert_alive($node, $label);
}

# -------------------------------------------------------------------------
# standard_conforming_strings = off (anyone's to set, and a database
# owner's for the database) changes how the extension's own SQL reads its
# literals: '\s' becomes 's' in the checks of a destination's config (an
# e-mail address with CR LF, a header injection), '\x00' a NUL that stops
# the check from compiling at all.  The extension's SQL must read as it is
# written, whatever the session says.
{
	my $label = 'standard_conforming_strings = off';
	my $mail = q{$j${"url": "smtp://127.0.0.1:25", "from": "a@b.example", "to": ["x@y.example"]}$j$};
	my $inject = q{$j${"url": "smtp://127.0.0.1:25", "from": "a@b.example",
		"to": ["x@y.example\r\nBcc: victim@evil.example"]}$j$};
	# a fresh session: PL/pgSQL reads a function once per session
	as_role_ok($node, 'adm', qq{
SET standard_conforming_strings = off;
SET escape_string_warning = off;
SELECT anomaly.create_destination('e_scs', 'email', $mail);
}, "$label: an admin's session creates an e-mail destination", db => 'wdb');
	my ($rc, $out, $err) = as_role($node, 'adm', qq{
SET standard_conforming_strings = off;
SET escape_string_warning = off;
SELECT anomaly.create_destination('e_inj', 'email', $inject);
}, db => 'wdb');
	like($err, qr/"to" holds something that is not an e-mail address/,
		"$label: an address with CR LF is refused");
	# the same from the database's owner, for every session of wdb
	$node->safe_psql('wdb', q{SET ROLE owner1; ALTER DATABASE wdb SET standard_conforming_strings = off});
	($rc, $out, $err) = as_role($node, 'adm', qq{
SET escape_string_warning = off;
SELECT anomaly.alter_destination('e_scs', $inject);
}, db => 'wdb');
	like($err, qr/"to" holds something that is not an e-mail address/,
		"$label: the same under the database owner's setting");
	$node->safe_psql('wdb', q{SET ROLE owner1; ALTER DATABASE wdb RESET standard_conforming_strings});
	is($node->safe_psql('wdb', q{SELECT config->'to' FROM anomaly.destinations WHERE name = 'e_scs'}),
		'["x@y.example"]', "$label: the destination is as created");
	assert_no_superuser($node, $label);
	assert_alive($node, $label);
}

# -------------------------------------------------------------------------
# A rule's evaluation serialized its episodes with an advisory lock whose
# key any role can work out: the rule's name (in every reference a notify
# destination sends, which any role may LISTEN to) and its group key.  A
# role with no privilege at all holding that lock stalled the detector's
# rounds (in a worker: for ever, its slot keeping the WAL).
{
	my $label = 'the lock of a rule\'s episodes';
	as_role_ok($node, 'adm', q{
CREATE TABLE s_adm.lk (id bigserial PRIMARY KEY, v float8);
SELECT anomaly.create_detector('det_lk', 's_adm.lk', ARRAY['v'],
	options => '{"number_of_trees": 5, "sub_sample_size": 16, "shingle_size": 1}');
SELECT anomaly.create_destination('n_lk', 'notify', '{"channel": "lk"}');
SELECT anomaly.create_alert_rule('r_lk', 'det_lk', 'n_lk', min_score => 0);
}, "$label: a rule as adm", db => 'wdb');
	my ($in, $out, $err) = ('', '', '');
	my $holder = IPC::Run::start(
		[ 'psql', '-X', '-At', '-v', 'ON_ERROR_STOP=1', '-U', 'plain', '-d', $node->connstr('wdb') ],
		'<', \$in, '>', \$out, '2>', \$err);
	# the key of 0.2.0 before this fix: the fingerprint of the rule and
	# its group key (a detector without partition_by: {"partition_key": null}),
	# and the fields of the lock that replaced it, in both forms SQL has
	$in .= q{WITH f AS (SELECT left(encode(sha256(convert_to('r_lk' || chr(31) || '{"partition_key": null}',
		'UTF8')), 'hex'), 32) AS fp),
	h AS (SELECT fp, hashtextextended(fp, 0) AS h FROM f)
	SELECT pg_advisory_lock(hashtext('anomaly.alert'), hashtext(fp)), pg_advisory_lock(h),
		pg_advisory_lock((h >> 32)::int4, (h & 4294967295)::bit(32)::int4) FROM h;}
	  . "\nSELECT 'held';\n";
	my $deadline = time() + 60;
	$holder->pump while $out !~ /held/ && time() < $deadline && $holder->pumpable;
	like($out, qr/held/, "$label: plain holds the advisory locks");
	my ($rc, $pout, $perr) = as_role($node, 'adm', q{
INSERT INTO s_adm.lk (v) VALUES (1);
SELECT anomaly.process();
}, db => 'wdb', timeout => '10s');
	is("$rc|$pout", '0|1', "$label: the round does not wait for it") or diag($perr);
	is($node->safe_psql('wdb', q{SELECT count(*) FROM anomaly.alert_episodes WHERE rule = 'r_lk'}), '1',
		"$label: the rule opened its episode");
	$in .= "\\q\n";
	$holder->finish;
	assert_no_superuser($node, $label);
	assert_alive($node, $label);
}

# -------------------------------------------------------------------------
# A row detector's expressions (features, partition_by) run under its
# creator's settings, whoever runs the round: a database owner's ALTER
# DATABASE ... SET, a role's ALTER ROLE ... SET, or a process() caller's
# SET between two rounds must not change a partition key built from text
# (a timestamptz or a float as text: another key, another forest, the
# entity's history split) or a time-of-day feature.  The source key, JSON
# the extension makes, is under fixed settings (a timestamptz in UTC).
my $creator_settings = q{SET TimeZone = 'Asia/Kathmandu'; SET DateStyle = 'SQL, DMY';
SET IntervalStyle = 'sql_standard'; SET extra_float_digits = 0;
};
# Every score of detector $name equals its expressions over the source
# under the creator's settings, its source key the row's in UTC:
# "true|scores|keys/keys expected".
sub creator_view
{
	my ($node, $db, $name, $table) = @_;
	return $node->safe_psql($db, qq{$creator_settings
		SELECT bool_and(s.partition_key = date_trunc('day', t.ts)::text || ' ' || t.f::text
				AND s.features = ARRAY[t.v, extract(hour FROM t.ts)]::float8[]
				AND (s.source_key ->> 'ts')::timestamptz = t.ts
				AND s.source_key ->> 'ts' LIKE '%+00:00')
			|| '|' || count(*) || '|' || count(DISTINCT s.partition_key) || '/' ||
			(SELECT count(DISTINCT date_trunc('day', x.ts)::text || ' ' || x.f::text) FROM $table x)
		FROM anomaly.scores s JOIN $table t ON t.id = (s.source_key ->> 'id')::bigint
		WHERE s.detector = '$name'});
}

{
	my $label = 'a row detector\'s expressions under a database owner\'s, a role\'s and a caller\'s settings';
	as_role_ok($node, 'adm', qq{$creator_settings
CREATE TABLE s_adm.hs (id bigserial, ts timestamptz, f float8, v float8, PRIMARY KEY (id, ts));
SELECT anomaly.create_detector('det_set', 's_adm.hs', ARRAY['v', 'extract(hour FROM ts)'],
	partition_by => \$\$date_trunc('day', ts)::text || ' ' || f::text\$\$,
	options => '{"number_of_trees": 5, "sub_sample_size": 16, "shingle_size": 1}');
}, "$label: created as adm under its session's settings", db => 'wdb');
	my $rows = sub {
		my ($from) = @_;
		return qq{INSERT INTO s_adm.hs (ts, f, v)
			SELECT '2026-01-01 18:00:00+00'::timestamptz + g * interval '1 hour', (g % 2)::float8 / 3, g
			FROM generate_series($from, $from + 11) g;};
	};

	# round 1: the database owner's settings
	$node->safe_psql('wdb', q{SET ROLE owner1;
ALTER DATABASE wdb SET TimeZone = 'America/New_York';
ALTER DATABASE wdb SET DateStyle = 'German';
ALTER DATABASE wdb SET IntervalStyle = 'iso_8601';
ALTER DATABASE wdb SET extra_float_digits = -15;
});
	my $out = as_role_ok($node, 'adm', $rows->(0) . 'SELECT anomaly.process();',
		"$label: a round under the database owner's settings", db => 'wdb');
	is($out, '12', "$label: the first round scored its rows");
	$node->safe_psql('wdb', 'ALTER DATABASE wdb RESET ALL');

	# round 2: the role's own settings
	as_role_ok($node, 'adm', q{ALTER ROLE adm SET TimeZone = 'Pacific/Chatham';
ALTER ROLE adm SET DateStyle = 'Postgres, MDY'; ALTER ROLE adm SET extra_float_digits = 3;},
		"$label: adm sets its role's settings");
	$out = as_role_ok($node, 'adm', $rows->(12) . 'SELECT anomaly.process();',
		"$label: a round under the role's settings", db => 'wdb');
	is($out, '12', "$label: the second round scored its rows");
	as_role_ok($node, 'adm', 'ALTER ROLE adm RESET ALL', "$label: adm resets its role's settings");

	# round 3: the caller's session
	$out = as_role_ok($node, 'adm', $rows->(24) . q{SET TimeZone = 'Europe/Lisbon';
SET DateStyle = 'ISO, MDY'; SET extra_float_digits = 1; SET IntervalStyle = 'postgres_verbose';
SELECT anomaly.process();},
		"$label: a round under the caller's settings", db => 'wdb');
	is($out, '12', "$label: the third round scored its rows");

	is(creator_view($node, 'wdb', 'det_set', 's_adm.hs'), 'true|36|5/5',
		"$label: keys, features and source keys are those of the creator's settings");
	assert_no_superuser($node, $label);
	assert_alive($node, $label);
}

# The settings are the detector's: anomaly.detectors shows them,
# alter_detector keeps them whatever the caller's session says, and
# changes them only when given ({"settings": {...}}), which resets the
# models as new expressions would.
{
	my $label = 'a detector\'s settings';
	is($node->safe_psql('wdb', q{SELECT settings ->> 'TimeZone', settings ->> 'DateStyle',
		settings ->> 'extra_float_digits', settings ->> 'IntervalStyle', generation
		FROM anomaly.detectors WHERE name = 'det_set'}), 'Asia/Kathmandu|SQL, DMY|0|sql_standard|1',
		"$label: the creator's, in anomaly.detectors");
	as_role_ok($node, 'adm', q{SET TimeZone = 'UTC'; SET DateStyle = 'ISO, MDY';
SELECT anomaly.alter_detector('det_set', options => '{"retention": "10 days"}');},
		"$label: altered from a session with other settings", db => 'wdb');
	is($node->safe_psql('wdb', q{SELECT settings ->> 'TimeZone', settings ->> 'DateStyle', generation
		FROM anomaly.detectors WHERE name = 'det_set'}), 'Asia/Kathmandu|SQL, DMY|1',
		"$label: kept, and the models too");
	as_role_ok($node, 'adm', q{
SELECT anomaly.alter_detector('det_set', options => '{"settings": {"timezone": "UTC"}}');},
		"$label: TimeZone given", db => 'wdb');
	is($node->safe_psql('wdb', q{SELECT settings ->> 'TimeZone', settings ->> 'DateStyle', generation
		FROM anomaly.detectors WHERE name = 'det_set'}), 'UTC|SQL, DMY|2',
		"$label: that one changed, the others kept, the models reset");
	as_role_err($node, 'adm', q{
SELECT anomaly.alter_detector('det_set', options => '{"settings": {"search_path": "s_adm"}}');},
		qr/"search_path" is not a setting a detector keeps/, "$label: only the settings it keeps",
		db => 'wdb');
	as_role_err($node, 'adm', q{
SELECT anomaly.alter_detector('det_set', options => '{"settings": {"TimeZone": "Mars/Olympus"}}');},
		qr/invalid value for parameter "TimeZone"/, "$label: a value is checked as SET checks it",
		db => 'wdb');
	as_role_err($node, 'adm', q{
SELECT anomaly.create_detector('det_set2', 's_adm.hs', ARRAY['v'], options => '{"settings": "UTC"}');},
		qr/option "settings" must be an object/, "$label: an object", db => 'wdb');
	is($node->safe_psql('wdb', q{SELECT options ? 'settings' FROM anomaly.detectors WHERE name = 'det_set'}),
		'f', "$label: not among the options");
	assert_no_superuser($node, $label);
	assert_alive($node, $label);
}

# The same detector scored by the detector worker, whose session has the
# server's settings, not the creator's.
{
	my $label = 'a row detector\'s expressions in the detector worker';
	as_role_ok($node, 'adm', qq{$creator_settings
CREATE TABLE s_adm.hs (id bigserial, ts timestamptz, f float8, v float8, PRIMARY KEY (id, ts));
SELECT anomaly.create_detector('det_wset', 's_adm.hs', ARRAY['v', 'extract(hour FROM ts)'],
	partition_by => \$\$date_trunc('day', ts)::text || ' ' || f::text\$\$,
	options => '{"number_of_trees": 5, "sub_sample_size": 16, "shingle_size": 1}');
INSERT INTO s_adm.hs (ts, f, v)
	SELECT '2026-01-01 18:00:00+00'::timestamptz + g * interval '1 hour', (g % 2)::float8 / 3, g
	FROM generate_series(0, 35) g;
}, "$label: created as adm under its session's settings");
	like(wait_detector($node, 'det_wset', 36), qr/^active\|36\|0\|0\|$/, "$label: the worker scored the rows");
	is(creator_view($node, 'postgres', 'det_wset', 's_adm.hs'), 'true|36|5/5',
		"$label: keys, features and source keys are those of the creator's settings");
	assert_no_superuser($node, $label);
	assert_alive($node, $label);
}

# -------------------------------------------------------------------------
# The source key is JSON the extension makes of the key columns; rows are
# found again by it (an alert's source row, a backfill's next batch, a
# user's join).  Made under a session's extra_float_digits -15 (or a
# creator's), a float key kept one digit: distinct rows got one key, and a
# backfill read the rows after its last key again.
{
	my $label = 'a float primary key under extra_float_digits = -15';
	as_role_ok($node, 'adm', q{
CREATE TABLE s_adm.fk (k float8 PRIMARY KEY, v float8);
INSERT INTO s_adm.fk SELECT g::float8 / 3, g FROM generate_series(1, 12) g;
SET extra_float_digits = -15;
SELECT anomaly.create_detector('det_fk', 's_adm.fk', ARRAY['v'],
	options => '{"number_of_trees": 5, "sub_sample_size": 16, "shingle_size": 1, "start": "all"}');
}, "$label: a detector starting from the stored rows, created under it", db => 'wdb');
	for my $i (1 .. 5)
	{
		as_role_ok($node, 'adm', q{SET extra_float_digits = -15; SELECT anomaly.process('det_fk', 4);},
			"$label: backfill round $i", db => 'wdb');
	}
	is($node->safe_psql('wdb', q{
		SELECT count(*) || '|' || count(DISTINCT s.source_key) || '|' ||
			count(*) FILTER (WHERE EXISTS (SELECT 1 FROM s_adm.fk t WHERE t.k = (s.source_key ->> 'k')::float8))
		FROM anomaly.scores s WHERE s.detector = 'det_fk'}), '12|12|12',
		"$label: each row scored once, under its exact key");
	assert_no_superuser($node, $label);
	assert_alive($node, $label);
}

# -------------------------------------------------------------------------
# An alert's payload carries the score and the source row's numbers as
# JSON numbers: rendered from float8 under the extra_float_digits of the
# session running the round, they were cut (to one digit at -15).  They
# must be the exact values, whoever's session sends them.
{
	my $label = 'the numbers of an alert payload';
	as_role_ok($node, 'adm', q{
CREATE TABLE s_adm.pay (id bigserial PRIMARY KEY, v float8);
SELECT anomaly.create_detector('det_pay', 's_adm.pay', ARRAY['v'],
	options => '{"number_of_trees": 5, "sub_sample_size": 16, "shingle_size": 1}');
SELECT anomaly.create_destination('n_pay', 'notify', '{"channel": "pay"}');
SELECT anomaly.create_alert_rule('r_pay', 'det_pay', 'n_pay', min_score => 0, group_by => '{source_key}');
INSERT INTO s_adm.pay (v) SELECT g::float8 / 3 FROM generate_series(1, 30) g;
SET extra_float_digits = -15;
SELECT anomaly.process();
}, "$label: a round from a session with extra_float_digits = -15", db => 'wdb');
	is($node->safe_psql('wdb', q{
		SELECT count(*) || '|' || count(*) FILTER (WHERE s.anomaly_score::numeric <> round(s.anomaly_score::numeric, 2))
			|| '|' || bool_and((o.payload ->> 'score')::float8 = s.anomaly_score)
			|| '|' || bool_and((o.payload -> 'row' ->> 'v')::float8 = t.v)
		FROM anomaly.outbox o JOIN anomaly.scores s ON s.id = (o.payload ->> 'score_id')::bigint
			JOIN s_adm.pay t ON t.id = (s.source_key ->> 'id')::bigint
		WHERE o.destination = 'n_pay'}) =~ s/^30\|([1-9]\d*)\|/30|N|/r,
		'30|N|true|true', "$label: every notification's score and row are the exact values");
	assert_no_superuser($node, $label);
	assert_alive($node, $label);
}

done_testing();
