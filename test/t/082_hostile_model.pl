# Hostile roles against the model functions and the grants (issue 12,
# findings 4, 8, 9 and 11), and every SQL function of the extension called
# by plain and by adm with hostile arguments: the list of functions comes
# from pg_depend, and a function without a case here fails the test (so a
# new function must get one).
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/..";
use IPC::Run;
use MIME::Base64 qw(decode_base64 encode_base64);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);

use HostileTest;

my $node = new_hostile_node('hostile_model');

# -------------------------------------------------------------------------
# Finding 4: a NULL aggregate state reaching the final function.
for my $role ('plain', 'adm')
{
	my $label = "finding 4 ($role)";
	for my $sql (
		'SELECT anomaly.rcf_train(NULL::float8[])',
		'SELECT anomaly.rcf_train(NULL::float8[], 10)',
		'SELECT anomaly.rcf_train(NULL::float8[], 10, 16, 1000, 1, 7)',
		'SELECT anomaly.rcf_train(p) FROM (VALUES (NULL::float8[]), (NULL)) v(p)',
		'SELECT g, anomaly.rcf_train(p ORDER BY p) FROM (VALUES (1, NULL::float8[]), (2, ARRAY[1.0, 2.0]), (2, ARRAY[2.0, 3.0])) v(g, p) GROUP BY g',
		'SELECT anomaly.rcf_train(p) FROM (SELECT ARRAY[1.0]::float8[] WHERE false) v(p)',
		q{SELECT anomaly.rcf_train(ARRAY[NULL, 1.0]::float8[])},
		q{SELECT anomaly.rcf_train(ARRAY['NaN', 'Infinity']::float8[])},
		q{SELECT anomaly.random_cut_forest(NULL::float8[]) OVER (ORDER BY g) FROM generate_series(1, 3) g},
		q{SELECT anomaly.detect(NULL::float8[]) OVER (ORDER BY g) FROM generate_series(1, 3) g},
		q{SELECT anomaly.random_cut_forest_with_explanation(NULL::float8[]) OVER (ORDER BY g) FROM generate_series(1, 3) g},
		q{SELECT anomaly.hotspots(NULL::float8[], 100, 1, 2) OVER (ORDER BY g) FROM generate_series(1, 3) g},
		q{SELECT anomaly.hotspots(NULL::record, NULL, NULL, NULL) OVER (ORDER BY g) FROM generate_series(1, 3) g})
	{
		my ($rc, $out, $err) = as_role($node, $role, $sql);
		ok($err !~ /server closed the connection|terminat/i, "$label: $sql does not kill the backend")
		  or diag($err);
	}
	assert_alive($node, $label);
	assert_no_superuser($node, $label);
}

# -------------------------------------------------------------------------
# Finding 8: rcf_update over a large 2-D array is cancelled by
# statement_timeout and by pg_cancel_backend.
# The model and the points are made first (so that the statement under the timeout is
# rcf_update's loop, not training); 1,000,000 rows take about 25 s
# uncancellable in 0.1.0.
as_role_ok($node, 'plain', q{
CREATE TABLE s_plain.m AS SELECT anomaly.rcf_train(ARRAY[g % 17, g % 5]::float8[], 100, 256, 100000, 1, 3 ORDER BY g) AS m
FROM generate_series(1, 600) g;
CREATE TABLE s_plain.pts AS SELECT array_agg(ARRAY[random() * 100, random() * 100]) AS p
FROM generate_series(1, 1000000);
}, 'finding 8: plain trains a model (100 trees, 256 samples) and stores 1,000,000 points', timeout => '120s');
my $update_sql = q{
SELECT anomaly.rcf_info(anomaly.rcf_update(m, p)) IS NOT NULL FROM s_plain.m, s_plain.pts};
{
	my $label = 'finding 8: statement_timeout';
	my $t0 = time();
	my ($rc, $out, $err) = as_role($node, 'plain', $update_sql, timeout => '1s');
	my $took = time() - $t0;
	like($err, qr/canceling statement due to statement timeout/, "$label: rcf_update was cancelled");
	cmp_ok($took, '<', 15, "$label: and returned within 15 s (took ${took}s)");
	assert_alive($node, $label);

	$label = 'finding 8: pg_cancel_backend';
	my ($in, $o, $e) = ('', '', '');
	my $h = IPC::Run::start(
		[ 'psql', '-XAtq', '-d', $node->connstr('postgres'), '-U', 'plain', '-c', $update_sql ],
		\$in, \$o, \$e, IPC::Run::timeout(180));
	my $pid = wait_until(30, sub {
		$node->safe_psql('postgres', q{SELECT pid FROM pg_stat_activity
			WHERE usename = 'plain' AND state = 'active' AND query LIKE '%rcf_update%'}) });
	ok($pid, "$label: the query runs (pid $pid)");
	sleep(0.5);
	$t0 = time();
	$node->safe_psql('postgres', "SELECT pg_cancel_backend($pid)") if $pid;
	my $gone = wait_until(30, sub {
		$node->safe_psql('postgres', "SELECT count(*) FROM pg_stat_activity WHERE pid = $pid AND state = 'active'")
		  eq '0' });
	my $lat = time() - $t0;
	ok($gone && $lat < 15, "$label: the backend stopped within 15 s (took ${lat}s)");
	eval { $h->finish };
	like($e, qr/canceling statement due to user request/, "$label: with the cancel error");
	assert_alive($node, $label);
	assert_no_superuser($node, 'finding 8');
}

# -------------------------------------------------------------------------
# Finding 9: forest memory.
{
	my $label = 'finding 9';
	my $big = q{(SELECT array_agg(x) FROM generate_series(1, 1024) x)::float8[]};
	for my $sql (
		"SELECT anomaly.rcf_train($big, 1000, 1000 ORDER BY g) FROM generate_series(1, 3) g",
		"SELECT anomaly.random_cut_forest($big, 1000, 1000) OVER (ORDER BY g) FROM generate_series(1, 3) g",
		"SELECT anomaly.detect($big, 1000, 1000, shingle_size => 1) OVER (ORDER BY g) FROM generate_series(1, 3) g",
		"SELECT anomaly.random_cut_forest_with_explanation($big, 1000, 1000) OVER (ORDER BY g) FROM generate_series(1, 3) g",
		"SELECT anomaly.random_cut_forest(ARRAY[1.0, 2.0, 3.0, 4.0], 1000, 1000, 100000, 30) OVER (ORDER BY g) FROM generate_series(1, 3) g")
	{
		my ($rc, $out, $err) = as_role($node, 'plain', "\\set VERBOSITY verbose\n$sql", timeout => '60s');
		like($err, qr/ERROR:\s+54000: .*anomaly\.max_forest_memory/,
			"$label: refused with ERRCODE_PROGRAM_LIMIT_EXCEEDED: $sql");
	}
	as_role_ok($node, 'adm', q{CREATE TABLE s_adm.wide (id bigserial PRIMARY KEY, v float8)}, "$label: adm's table");
	my $feats = join(', ', map { "'v + $_'" } 1 .. 30);
	my ($rc, $out, $err) = as_role($node, 'adm', qq{\\set VERBOSITY verbose
SELECT anomaly.create_detector('wide', 's_adm.wide', ARRAY[$feats],
	options => '{"number_of_trees": 1000, "sub_sample_size": 1000, "shingle_size": 30}')});
	like($err, qr/ERROR:\s+54000: .*anomaly\.max_forest_memory/,
		"$label: create_detector with 1000 trees x 1000 samples x 900 dimensions refused");

	# A model literal with sub_sample_size 4096 (and 1000 trees): built from a
	# valid model's bytes with the parameter edited and the checksum fixed.
	my $b64 = $node->safe_psql('postgres',
		q{SELECT anomaly.rcf_train(ARRAY[1.0]::float8[], 1000, 10)::text});
	$b64 =~ s/\s+//g;
	my $bytes = decode_base64($b64);
	is(substr($bytes, 0, 4), 'RCFM', "$label: a model's bytes start with RCFM");
	is(unpack('V', substr($bytes, 20, 4)), 1000, "$label: number_of_trees at offset 20");
	is(unpack('V', substr($bytes, 24, 4)), 10, "$label: sample_size at offset 24");
	for my $n (4096, 1001, 65536)
	{
		my $crafted = $bytes;
		substr($crafted, 24, 4) = pack('V', $n);
		substr($crafted, 8, 4) = pack('V', crc32c(substr($crafted, 12)));
		my $lit = encode_base64($crafted, '');
		note "$label: crafted literal of " . length($lit) . ' bytes';
		for my $f ('rcf_info', 'rcf_score')
		{
			my $call = $f eq 'rcf_info' ? "anomaly.rcf_info('$lit'::anomaly.rcf)"
			  : "anomaly.rcf_score('$lit'::anomaly.rcf, ARRAY[1.0])";
			my ($rc2, $o2, $e2) = as_role($node, 'plain', "\\set VERBOSITY verbose\nSELECT $call", timeout => '60s');
			ok($rc2 != 0 && $e2 =~ /ERROR:\s+(54000|22P02|XX001|22023|22003)/ && $e2 !~ /out of memory|memory alloc/,
				"$label: $f of a literal with sub_sample_size $n is refused before allocating") or diag($e2);
		}
	}
	# the unedited literal is fine (so the edit is what is refused)
	as_role_ok($node, 'plain', "SELECT anomaly.rcf_info('$b64'::anomaly.rcf) IS NOT NULL",
		"$label: the valid model decodes");
	assert_alive($node, $label);
	assert_no_superuser($node, $label);
}

# CRC-32C (Castagnoli, reflected), as src/rcf/encode.c computes it.
sub crc32c
{
	my ($data) = @_;
	my @t;
	for my $i (0 .. 255)
	{
		my $c = $i;
		$c = ($c & 1) ? (($c >> 1) ^ 0x82F63B78) : ($c >> 1) for 1 .. 8;
		$t[$i] = $c;
	}
	my $crc = 0xFFFFFFFF;
	$crc = $t[($crc ^ $_) & 0xFF] ^ ($crc >> 8) for unpack('C*', $data);
	return $crc ^ 0xFFFFFFFF;
}

# -------------------------------------------------------------------------
# Finding 11: grants.
{
	my $label = 'finding 11';
	my @internal = split /\n/, $node->safe_psql('postgres', q{
		SELECT p.oid::regprocedure::text FROM pg_proc p
		JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
		JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'anomaly'
		WHERE p.proname LIKE '\_%' ORDER BY 1});
	cmp_ok(scalar(@internal), '>=', 10, "$label: the internal helpers found (" . scalar(@internal) . ')');
	for my $f (@internal)
	{
		for my $role ('plain', 'adm')
		{
			# the one exception: the status views of anomaly_admin call
			# _worker_note (whether a worker serves the database)
			my $want = ($role eq 'adm' && $f eq 'anomaly._worker_note(text)') ? 't' : 'f';
			is($node->safe_psql('postgres', "SELECT has_function_privilege('$role', '$f', 'EXECUTE')"),
				$want, "$label: $role " . ($want eq 't' ? 'may' : 'may not') . " execute $f");
		}
	}
	for my $t ('anomaly.detectors', 'anomaly.destinations', 'anomaly.detector_failures',
		'anomaly.alert_rules', 'anomaly.alert_episodes', 'anomaly.outbox', 'anomaly.dead_letters',
		'anomaly.delivery_counters', 'anomaly.detector_forests', 'anomaly.detector_journal', 'anomaly.scores',
		'anomaly.alerts', 'anomaly.delivery_status', 'anomaly.detector_status')
	{
		is($node->safe_psql('postgres', "SELECT has_table_privilege('plain', '$t', 'SELECT')"),
			'f', "$label: plain may not read $t");
		as_role_err($node, 'plain', "SELECT * FROM $t", qr/permission denied/,
			"$label: plain is refused reading $t");
	}
	for my $t ('anomaly.detectors', 'anomaly.destinations', 'anomaly.scores', 'anomaly.outbox')
	{
		for my $p ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE')
		{
			is($node->safe_psql('postgres', "SELECT has_table_privilege('adm', '$t', '$p')"),
				'f', "$label: adm may not $p $t");
		}
	}
}

# -------------------------------------------------------------------------
# Every function of the extension, called by plain and by adm with hostile
# arguments.  Internal helpers (_*) must be refused to both; management
# functions to plain.
my $inj = q{'x''); SELECT pg_catalog.pg_sleep(0); --'};
my $model = q{(SELECT anomaly.rcf_train(ARRAY[g, g * 2]::float8[], 5, 16 ORDER BY g) FROM generate_series(1, 30) g)};
my $bad_model = q{'UkNGTQEAAAAAAAAAAAAAAA=='::anomaly.rcf};
my %calls = (
	'anomaly.random_cut_forest(double precision[],integer,integer,bigint,integer,bigint,text,double precision,double precision[])' =>
	  q{SELECT anomaly.random_cut_forest(ARRAY['NaN', '-Infinity']::float8[], -1, 2147483647, -5, 0, NULL, 'normalize''--', 'NaN', ARRAY['Infinity']::float8[]) OVER (ORDER BY g) FROM generate_series(1, 3) g},
	'anomaly.random_cut_forest(record,integer,integer,bigint,integer,bigint,text,double precision,double precision[])' =>
	  q{SELECT anomaly.random_cut_forest(ROW(g, 1e308::float8), 5, 16, 100000, 1, 1, 'normalize_difference', 0.999999, ARRAY[1e6, 0]) OVER (ORDER BY g) FROM generate_series(1, 3) g},
	'anomaly.random_cut_forest_with_explanation(double precision[],integer,integer,bigint,integer,boolean,bigint,text[],text,double precision,double precision[])' =>
	  q{SELECT anomaly.random_cut_forest_with_explanation(ARRAY[1e308 * (g % 2 * 2 - 1), -1e308]::float8[], 5, 16, 100000, 1, true, 1, ARRAY[repeat('n', 100000), NULL], 'difference', 1e-9, NULL) OVER (ORDER BY g) FROM generate_series(1, 3) g},
	'anomaly.random_cut_forest_with_explanation(record,integer,integer,bigint,integer,boolean,bigint,text[],text,double precision,double precision[])' =>
	  q{SELECT anomaly.random_cut_forest_with_explanation(ROW(1, 'a'), 0, 0, 0, 0, NULL, 0, '{}', repeat('x', 100000), -1, ARRAY[[1, 2], [3, 4]]::float8[]) OVER (ORDER BY g) FROM generate_series(1, 3) g},
	'anomaly.detect(double precision[],integer,integer,bigint,integer,bigint,double precision,double precision,double precision,double precision,double precision,double precision,integer,double precision,text,text[],double precision,double precision,text,double precision,double precision[])' =>
	  q{SELECT anomaly.detect(ARRAY[1, 2]::float8[], 5, 16, 100000, 1, 1, 'NaN', '-Infinity', -1, 1e308, 'NaN', 0, -2147483648, 'Infinity', 'nonsense''--', ARRAY[NULL]::text[], 'NaN', -1, 'NONE', 0, ARRAY[]::float8[]) OVER (ORDER BY g) FROM generate_series(1, 3) g},
	'anomaly.detect(record,integer,integer,bigint,integer,bigint,double precision,double precision,double precision,double precision,double precision,double precision,integer,double precision,text,text[],double precision,double precision,text,double precision,double precision[])' =>
	  q{SELECT anomaly.detect(ROW(g::float8, 5.0::float8), 5, 16, transform => 'normalize', transform_weights => ARRAY[0, 0]) OVER (ORDER BY g) FROM generate_series(1, 30) g},
	# the type's I/O functions by name (casts, COPY and the protocol call
	# them without a privilege check; a bad literal is model_corrupt's)
	'anomaly._rcf_in(cstring)' => q{SELECT anomaly._rcf_in('@@not base64@@')},
	'anomaly._rcf_out(anomaly.rcf)' => qq{SELECT anomaly._rcf_out($model)},
	'anomaly._rcf_recv(internal)' => q{SELECT anomaly._rcf_recv(NULL::internal)},
	'anomaly._rcf_send(anomaly.rcf)' => qq{SELECT anomaly._rcf_send($model), anomaly._rcf_send(NULL)},
	'anomaly._rcf_train_finalfn(internal)' => q{SELECT anomaly._rcf_train_finalfn(NULL::internal)},
	'anomaly.hotspots(double precision[],integer,double precision,integer)' =>
	  q{SELECT anomaly.hotspots(CASE WHEN g % 2 = 0 THEN array_fill(3e38::float8, ARRAY[1024]) ELSE array_fill(-3e38::float8, ARRAY[1024]) END, 1000, 5e-324, 2) OVER (ORDER BY g) FROM generate_series(1, 300) g
	    UNION ALL SELECT anomaly.hotspots(array_fill(0::float8, ARRAY[1025]), 100, 1, 2) OVER (ORDER BY g) FROM generate_series(1, 3) g
	    UNION ALL SELECT anomaly.hotspots(ARRAY[g]::float8[], -2147483648, 'NaN', 2147483647) OVER (ORDER BY g) FROM generate_series(1, 3) g},
	'anomaly.hotspots(record,integer,double precision,integer)' =>
	  q{SELECT anomaly.hotspots(ROW('x', NULL, 'NaN'::float8), 100, 1, 2) OVER (ORDER BY g) FROM generate_series(1, 3) g
	    UNION ALL SELECT anomaly.hotspots(ROW(g, 3e38::float8, -3e38::float8), 1000, 1e308, 1000) OVER (PARTITION BY g % 7 ORDER BY g) FROM generate_series(1, 3000) g},
	'anomaly.rcf_train(double precision[])' => q{SELECT anomaly.rcf_train(ARRAY[]::float8[])},
	'anomaly.rcf_train(double precision[],integer)' =>
	  q{SELECT anomaly.rcf_train(ARRAY[1.0]::float8[], -2147483648)},
	'anomaly.rcf_train(double precision[],integer,integer)' =>
	  q{SELECT anomaly.rcf_train(ARRAY[1.0]::float8[], 1, 2147483647)},
	'anomaly.rcf_train(double precision[],integer,integer,bigint)' =>
	  q{SELECT anomaly.rcf_train(ARRAY[1.0]::float8[], 1, 10, -9223372036854775808)},
	'anomaly.rcf_train(double precision[],integer,integer,bigint,integer)' =>
	  q{SELECT anomaly.rcf_train(p, 1, 10, 100, 30 ORDER BY p) FROM (VALUES (ARRAY[1.0]::float8[]), (ARRAY[1.0, 2.0]::float8[])) v(p)},
	'anomaly.rcf_train(double precision[],integer,integer,bigint,integer,bigint)' =>
	  q{SELECT anomaly.rcf_train(NULL::float8[], NULL, NULL, NULL, NULL, NULL)},
	'anomaly.rcf_train(double precision[],integer,integer,bigint,integer,bigint,text)' =>
	  q{SELECT anomaly.rcf_train(ARRAY[1.0]::float8[], 5, 16, 100, 1, 1, NULL)},
	'anomaly.rcf_train(double precision[],integer,integer,bigint,integer,bigint,text,double precision)' =>
	  q{SELECT anomaly.rcf_train(ARRAY[g, 1e308]::float8[], 5, 16, 100, 1, 1, 'normalize', 'Infinity' ORDER BY g) FROM generate_series(1, 3) g},
	'anomaly.rcf_train(double precision[],integer,integer,bigint,integer,bigint,text,double precision,double precision[])' =>
	  q{SELECT anomaly.rcf_score(anomaly.rcf_train(ARRAY[g * 1e300, -g * 1e300]::float8[], 5, 16, 100, 1, 1, 'normalize_difference', 0.5, ARRAY[1e6, 1e6] ORDER BY g), ARRAY[-1e308, 1e308]) FROM generate_series(1, 40) g},
	'anomaly.rcf_score(anomaly.rcf,double precision[])' =>
	  qq{SELECT anomaly.rcf_score($model, ARRAY[1.0, 2.0, 3.0]::float8[]), anomaly.rcf_score($bad_model, ARRAY[1.0])},
	'anomaly.rcf_explain(anomaly.rcf,double precision[],text[])' =>
	  qq{SELECT anomaly.rcf_explain($model, ARRAY['NaN', 1]::float8[], ARRAY[$inj, NULL, 'c'])},
	'anomaly.rcf_update(anomaly.rcf,double precision[])' =>
	  qq{SELECT anomaly.rcf_update($model, ARRAY[[1.0, 2.0], [3.0, NULL]]::float8[]), anomaly.rcf_update($model, ARRAY[[[1.0]]]::float8[])},
	'anomaly.rcf_info(anomaly.rcf)' => qq{SELECT anomaly.rcf_info($bad_model)},
	'anomaly.rcf_detect(anomaly.rcf,double precision[],text[])' =>
	  qq{SELECT anomaly.rcf_detect($model, ARRAY['Infinity', 1]::float8[], ARRAY[]::text[])},
	'anomaly.rcf_set_box_cache(anomaly.rcf,double precision)' =>
	  qq{SELECT anomaly.rcf_set_box_cache($model, 'NaN'), anomaly.rcf_set_box_cache($model, -1e-300), anomaly.rcf_set_box_cache($model, 'Infinity'), anomaly.rcf_set_box_cache($bad_model, 0)},
	'anomaly.rcf_set_grading(anomaly.rcf,double precision,double precision,double precision,double precision,double precision,double precision,integer,double precision,double precision,double precision)' =>
	  qq{SELECT anomaly.rcf_set_grading($model, 'NaN', -1, 'Infinity', -1, 1e308, -1e308, -1, 'NaN', 'NaN', -1)},
	'anomaly._reject_secret_keys(jsonb,text)' => q{SELECT anomaly._reject_secret_keys('{"password": 1}', 'x')},
	'anomaly._a(text)' => qq{SELECT anomaly._a($inj)},
	'anomaly._config_text(jsonb,text,boolean,text)' => q{SELECT anomaly._config_text('{}', NULL, true, NULL)},
	'anomaly._config_whole(jsonb,text,integer,integer,text)' => q{SELECT anomaly._config_whole('{"n": 1.5}', 'n', 2147483647, -2147483648, 'x')},
	'anomaly._check_url(text,text[],text,text)' => q{SELECT anomaly._check_url('http://169.254.169.254/', '{http}', 'url', 'webhook')},
	'anomaly._check_config(text,jsonb)' => q{SELECT anomaly._check_config('webhook', '{"url": "http://127.0.0.1:1/"}')},
	'anomaly.create_destination(text,text,jsonb)' =>
	  q{SELECT anomaly.create_destination('h1', 'webhook', '{"url": "http://169.254.169.254/latest/meta-data/", "credential": "hook_secret", "headers": {"X-A": "b"}}')},
	'anomaly.alter_destination(text,jsonb,boolean)' =>
	  q{SELECT anomaly.alter_destination('su_dest', '{"url": "http://127.0.0.1:1/", "credential": "hook_secret"}', NULL)},
	'anomaly.drop_destination(text,boolean)' => q{SELECT anomaly.drop_destination('su_dest', true)},
	'anomaly._fit_json(jsonb,integer)' => q{SELECT anomaly._fit_json(jsonb_build_object('a', repeat('x', 100000)), -1)},
	'anomaly._fingerprint(text[])' => q{SELECT anomaly._fingerprint(VARIADIC NULL::text[])},
	'anomaly._lock_episode(text)' => q{SELECT anomaly._lock_episode(repeat('x', 1000000))},
	'anomaly._enqueue(text,text,jsonb,text)' => q{SELECT anomaly._enqueue('su_dest', 'forged', '{"forged": true}', 'd')},
	'anomaly._destination_kind(text)' => qq{SELECT anomaly._destination_kind($inj)},
	'anomaly.send_alert(text,text,jsonb)' =>
	  q{SELECT anomaly.send_alert('su_dest', E'subj\r\nBcc: x@example.com', '{"severity": "critical\r\n", "fingerprint": null}')},
	'anomaly.alert_trigger()' => q{SELECT anomaly.alert_trigger()},
	'anomaly.create_alert_rule(text,text,text,text[],double precision,double precision,interval,interval,text[],text,boolean,interval,text,text,jsonb)' =>
	  q~SELECT anomaly.create_alert_rule('r_h', 'su_det', 'su_dest', ARRAY['su_dest', NULL], 'NaN', -1, '-1 day', '1000000 years', ARRAY['source_key', 'source_key.x'' OR 1=1'], 'critical', NULL, '-1 s', '{{row.v}}{{', '{{ row.pg_authid }}', '{"webhook": {"body": "{{score}}"}, "email": 7}')
	    UNION ALL SELECT anomaly.create_alert_rule('r_h2', 'su_det', 'su_dest', min_score => 0, subject_template => repeat('{{row.v}}', 5000), templates => '{"email": {"subject": "{{row.v'')); SELECT 1; --}}"}}')~,
	'anomaly.drop_alert_rule(text)' => q{SELECT anomaly.drop_alert_rule('su_rule')},
	'anomaly.alter_alert_rule(text,text,text[],double precision,double precision,interval,interval,text,boolean,interval,boolean,text[],text,text,jsonb)' =>
	  q~SELECT anomaly.alter_alert_rule('su_rule', 'su_dest', ARRAY['su_dest', NULL], 'NaN', -1, '-1 day', '1000000 years', E'critical\r\n', NULL, '-1 s', false, ARRAY['owner', 'detector'' OR 1=1'], '{{row.v}}{{', '{{ row.pg_authid }}', '{"email": 7}')
	    UNION ALL SELECT anomaly.alter_alert_rule('su_rule', subject_template => '{{row.v'')); SELECT 1; --}}', unset => '{templates}')~,
	'anomaly._rule_payload(anomaly.alert_rules,anomaly.alert_episodes,anomaly.scores,text)' =>
	  q{SELECT anomaly._rule_payload(NULL, NULL, NULL, 'x')},
	'anomaly._notify_rule(anomaly.alert_rules,anomaly.alert_episodes,anomaly.scores,text)' =>
	  q{SELECT anomaly._notify_rule(NULL, NULL, NULL, 'firing')},
	'anomaly._evaluate_rules()' => q{SELECT anomaly._evaluate_rules()},
	'anomaly._render(text,jsonb,text,jsonb,text,bigint)' =>
	  q{SELECT anomaly._render('email', '{"from": "a@b", "to": ["c@d"]}', E'x\r\nBcc: y', '{}', E'id\r\nX: y', 1)},
	'anomaly._sns_subject(text)' => q{SELECT anomaly._sns_subject(repeat(E'\x01', 1000))},
	'anomaly._record(bigint[],text[],text[],integer[])' =>
	  q{SELECT anomaly._record(ARRAY[1, 2, 3], ARRAY['dead', 'sent'], ARRAY[NULL], ARRAY[-1])},
	'anomaly.replay_dead_letters(text,bigint[],timestamp with time zone)' =>
	  q{SELECT anomaly.replay_dead_letters(NULL, ARRAY[-1, 9223372036854775807], '-infinity')},
	'anomaly.purge_alert_history(interval)' => q{SELECT anomaly.purge_alert_history('-1000 years')},
	'anomaly._wake_sender()' => q{SELECT anomaly._wake_sender()},
	'anomaly.deliver(integer)' => q{SELECT anomaly.deliver(-2147483648), anomaly.deliver(2147483647)},
	'anomaly.test_destination(text)' => q{SELECT * FROM anomaly.test_destination('su_dest')},
	'anomaly.create_detector(text,regclass,text[],text,text,jsonb)' =>
	  q{SELECT anomaly.create_detector('h_det', 'pg_catalog.pg_authid', ARRAY['length(rolpassword)'], 'rolname', 'true', '{"number_of_trees": 1000, "sub_sample_size": 1000}')},
	'anomaly.alter_detector(text,text[],text,text,jsonb)' =>
	  q{SELECT anomaly.alter_detector('su_det', ARRAY['(SELECT count(*) FROM pg_authid)'], '(SELECT rolpassword FROM pg_authid LIMIT 1)', NULL, '{"destination": "anomaly.detectors"}')},
	'anomaly.pause_detector(text)' => q{SELECT anomaly.pause_detector('su_det')},
	'anomaly.resume_detector(text)' => q{SELECT anomaly.resume_detector('su_det')},
	'anomaly.reset_detector(text)' => q{SELECT anomaly.reset_detector('su_det')},
	'anomaly.drop_detector(text,boolean)' => q{SELECT anomaly.drop_detector('su_det', NULL)},
	# another's detector; a model that is not one; parameters not the detector's
	'anomaly.seed_detector(text,text,anomaly.rcf)' =>
	  q{SELECT anomaly.seed_detector('su_det', NULL, anomaly.rcf_train(ARRAY[g]::float8[], 5, 16, 100000, 1, 42)) FROM generate_series(1, 20) g
	    UNION ALL SELECT anomaly.seed_detector('su_det', 'x', '\x00'::bytea::text::anomaly.rcf)
	    UNION ALL SELECT anomaly.seed_detector(NULL, NULL, NULL)},
	'anomaly.process(text,integer)' => q{SELECT anomaly.process('su_det', -1), anomaly.process(NULL, 2147483647)},
	'anomaly._wire_describe(bytea,bytea)' => q{SELECT anomaly._wire_describe('\xffffffffffffffff', '\x00')},
	'anomaly._drop_orphan_slots()' => q{SELECT anomaly._drop_orphan_slots()},
	'anomaly._detector_home()' => q{SELECT anomaly._detector_home()},
	'anomaly._ddl_guard()' => q{SELECT anomaly._ddl_guard()},
	'anomaly._worker_note(text)' => q{SELECT anomaly._worker_note('detector'), anomaly._worker_note('sender'), anomaly._worker_note(repeat('x', 100000))},
	'anomaly.detector_progress()' => q{SELECT * FROM anomaly.detector_progress()},
	# scale-out (src/sql/060_scale_out.sql, src/detect/models.c)
	'anomaly.shard_of_bucket(integer,integer)' =>
	  q{SELECT anomaly.shard_of_bucket(1023, 1024), anomaly.shard_of_bucket(-1, -2147483648)},
	'anomaly.shard_of(bigint,integer)' =>
	  q{SELECT anomaly.shard_of(-9223372036854775808, 1024), anomaly.shard_of(9223372036854775807, 0)},
	'anomaly.shard_of(text,integer)' =>
	  qq{SELECT anomaly.shard_of(repeat('x', 1000000), 3), anomaly.shard_of($inj, 2147483647)},
	'anomaly.shard_filter(name,regtype,integer,integer)' =>
	  qq{SELECT anomaly.shard_filter($inj, 'text', 0, 3), anomaly.shard_filter('k', 'pg_node_tree', 0, 1)},
	'anomaly.create_shard_publications(regclass,name,integer,name,boolean,text)' =>
	  qq{SELECT * FROM anomaly.create_shard_publications('public.su_src', 'id', 2, $inj, false, 'insert''); DROP TABLE su_src; --')
	    UNION ALL SELECT * FROM anomaly.create_shard_publications('pg_catalog.pg_authid', 'rolname', 2)},
	'anomaly.attach_scoring_node(name,text,name,name)' =>
	  q{SELECT anomaly.attach_scoring_node('h_sub', 'host=169.254.169.254 dbname=postgres', 'p', NULL)},
	'anomaly.publish_scores(name,text)' => qq{SELECT anomaly.publish_scores('n0', 'su_det'), anomaly.publish_scores($inj, 'su_det')},
	'anomaly.collect_scores(name,text,name)' => q{SELECT anomaly.collect_scores('n0', 'host=127.0.0.1 port=1', NULL)},
	'anomaly._check_collect_schema(text)' => q{SELECT anomaly._check_collect_schema('pg_catalog.pg_authid')},
	'anomaly.export_detector_models(text)' => q{SELECT * FROM anomaly.export_detector_models('su_det')},
	'anomaly.import_detector_models(text,text[],anomaly.rcf[],boolean)' =>
	  qq{SELECT anomaly.import_detector_models('su_det', ARRAY[NULL, 'a'], ARRAY[$model, $model], true)},
);
# Internal helpers of the fixed alert functions (sec-alert): an oid argument
# names the caller; passing 10 (the bootstrap superuser) must not be
# possible for anyone.
my $su = '10::oid';
%calls = (%calls,
	'anomaly._alter_destination(oid,text,jsonb,boolean)' =>
	  qq{SELECT anomaly._alter_destination($su, 'su_dest', '{"url": "http://169.254.169.254/"}', true)},
	'anomaly._check_payload_mode(oid,text,jsonb)' =>
	  qq{SELECT anomaly._check_payload_mode($su, 'notify', '{"channel": "c", "payload": "full"}')},
	'anomaly._check_bindings(text,jsonb)' =>
	  q{SELECT anomaly._check_bindings('webhook', '{"url": "http://127.0.0.1:1/", "credential": "hook_secret"}')},
	'anomaly._create_alert_rule(oid,text,text,text,text[],double precision,double precision,interval,interval,text[],text,boolean,interval,text,text,jsonb)' =>
	  qq~SELECT anomaly._create_alert_rule($su, 'r_i', 'su_det', 'su_dest', NULL, NULL, 0, '0', '0', '{source_key}', 'info', true, NULL, '{{row.v}}', NULL, '{}')~,
	'anomaly._template_roots()' => q~SELECT anomaly._template_roots()~,
	'anomaly._check_templates(oid,text,text[],text,text,jsonb)' =>
	  qq~SELECT anomaly._check_templates($su, 'su_det', '{}', '{{row.v}}', NULL, '{}')~,
	'anomaly._render_template(text,jsonb)' =>
	  q~SELECT anomaly._render_template(repeat('{{a.b.c}}', 1800), jsonb_build_object('a', jsonb_build_object('b', jsonb_build_object('c', repeat('x', 1000000)))))~,
	'anomaly._template_fields(text)' => q~SELECT anomaly._template_fields(repeat('{{', 100000))~,
	'anomaly._source_row(oid,text,jsonb)' =>
	  qq~SELECT anomaly._source_row($su, 'su_det', '{"id": "1) OR (1=1"}'), anomaly._source_row(0, 'su_det', '{"id": 1}')~,
	'anomaly._create_destination(oid,text,text,jsonb)' =>
	  qq{SELECT anomaly._create_destination($su, 'd_i', 'webhook', '{"url": "http://127.0.0.1:1/", "credential": "hook_secret"}')},
	'anomaly._credential_bound(text,text)' => q{SELECT anomaly._credential_bound('hook_secret', 'http://127.0.0.1:1/')},
	'anomaly._drop_alert_rule(oid,text)' => qq{SELECT anomaly._drop_alert_rule($su, 'su_rule')},
	'anomaly._alter_alert_rule(oid,text,text,text[],double precision,double precision,interval,interval,text,boolean,interval,boolean,text[],text,text,jsonb)' =>
	  qq{SELECT anomaly._alter_alert_rule($su, 'su_rule', 'su_dest', NULL, NULL, 0, '0', '0', 'info', true, NULL, false, NULL, '{{row.x}}', NULL, '{}')},
	'anomaly._drop_destination(oid,text,boolean)' => qq{SELECT anomaly._drop_destination($su, 'su_dest', true)},
	'anomaly._owns(oid,regrole)' => qq{SELECT anomaly._owns($su, 'adm')},
	'anomaly._check_owner(oid,text,text,regrole)' => qq{SELECT anomaly._check_owner($su, 'destination', 'su_dest', NULL)},
	'anomaly._purge_alert_history(oid,interval)' => qq{SELECT anomaly._purge_alert_history($su, '-1 year')},
	'anomaly._record(bigint[],text[],text[],text[],integer[])' =>
	  q{SELECT anomaly._record(ARRAY[1], ARRAY['dead'], ARRAY['x'], ARRAY['y'], ARRAY[-1])},
	'anomaly._replay_dead_letters(oid,text,bigint[],timestamp with time zone)' =>
	  qq{SELECT anomaly._replay_dead_letters($su, NULL, NULL, NULL)},
	'anomaly._row_to_jsonb(oid,anyelement)' => qq{SELECT anomaly._row_to_jsonb($su, ROW(1)::record)},
	'anomaly._send_alert(oid,text,text,jsonb)' => qq{SELECT anomaly._send_alert($su, 'su_dest', 'forged', '{}')},
	'anomaly._usable_destination(oid,text,boolean)' => qq{SELECT anomaly._usable_destination($su, 'su_dest', true)},
);

# the transition functions take internal: callable from SQL by nobody
for my $n (1 .. 9)
{
	my @t = ('double precision[]', 'integer', 'integer', 'bigint', 'integer', 'bigint', 'text',
		'double precision', 'double precision[]')[0 .. $n - 1];
	$calls{ 'anomaly._rcf_train_transfn(internal,' . join(',', @t) . ')' } =
	  'SELECT anomaly._rcf_train_transfn(NULL::internal' . (', NULL' x $n) . ')';
}

# The superuser's objects the hostile calls aim at.
$node->safe_psql('postgres', q{
	CREATE TABLE public.su_src (id bigserial PRIMARY KEY, v float8);
	SELECT anomaly.create_detector('su_det', 'public.su_src', ARRAY['v'],
		options => '{"number_of_trees": 5, "sub_sample_size": 16}');
	SELECT anomaly.create_destination('su_dest', 'notify', '{"channel": "su"}');
	SELECT anomaly.create_alert_rule('su_rule', 'su_det', 'su_dest', min_score => 0);
});

my @functions = extension_functions($node);
my %have = map { $_ => 1 } @functions;
for my $f (@functions)
{
	ok(exists $calls{$f}, "a hostile case for $f");
}
# (cases of functions this version does not have are not run)

my %definer = map { split /\|/ } split /\n/, $node->safe_psql('postgres', q{
	SELECT p.oid::regprocedure::text || '|' || p.prosecdef FROM pg_proc p
	WHERE p.pronamespace = 'anomaly'::regnamespace});
for my $role ('plain', 'adm')
{
	for my $f (@functions)
	{
		next unless exists $calls{$f};
		my ($rc, $out, $err) = as_role($node, $role, $calls{$f}, timeout => '20s');
		ok($err !~ /server closed the connection|terminating connection because of crash|connection to server was lost/,
			"$role calls $f: the backend survives") or diag($err);
		if ($err =~ /server closed the connection|connection to server was lost/)
		{
			# an unfixed build crashed: let recovery finish before going on
			wait_until(60, sub {
				my ($o, $e) = ('', '');
				$node->psql('postgres', 'SELECT 1', stdout => \$o, stderr => \$e, timeout => 10);
				return $o eq '1';
			});
		}
		my ($name) = $f =~ /^anomaly\.(\w+)\(/;
		my $definer = $definer{$f} // 'f';
		# _worker_note reveals only whether a worker serves the database:
		# the status views of anomaly_admin call it, so admins may
		my $for_admins = $name eq '_worker_note' && $role eq 'adm';
		if (($name =~ /^_/ && !$for_admins) || ($role eq 'plain' && $definer eq 't'))
		{
			like($err, qr/permission denied|cannot accept a value of type internal|cannot cast type unknown to internal|trigger functions can only be called/,
				"$role calls $f: refused");
		}
		note "$role $f: exit $rc: " . substr($err, 0, 200);
	}
	assert_alive($node, "$role calls every function");
	assert_no_superuser($node, "$role calls every function");
	is($node->safe_psql('postgres', q{
		SELECT (SELECT count(*) FROM anomaly.detectors WHERE name = 'su_det') || '|' ||
			   (SELECT count(*) FROM anomaly.destinations WHERE name = 'su_dest') || '|' ||
			   (SELECT count(*) FROM anomaly.alert_rules WHERE name = 'su_rule' AND enabled AND min_score = 0 AND severity = 'warning') || '|' ||
			   (SELECT count(*) FROM anomaly.outbox WHERE subject = 'forged')}),
		'1|1|1|0', "$role calls every function: the superuser's detector, destination and rule are intact, nothing forged");
}

# -------------------------------------------------------------------------
# Scale-out: models move only between detectors the caller manages, and
# only models that fit the detector.
{
	my $label = 'scale-out';
	$node->safe_psql('postgres', q{
		CREATE TABLE s_adm.t (id bigserial PRIMARY KEY, k int, v float8);
		ALTER TABLE s_adm.t OWNER TO adm;
		INSERT INTO public.su_src (v) SELECT g FROM generate_series(1, 50) g;
		SELECT anomaly.process('su_det');
	});
	as_role_ok($node, 'adm', q{SELECT anomaly.create_detector('adm_det', 's_adm.t', ARRAY['v'], 'k',
		options => '{"number_of_trees": 5, "sub_sample_size": 16}')}, "$label: adm creates a detector");
	as_role_err($node, 'adm', q{SELECT count(*) FROM anomaly.export_detector_models('su_det')},
		qr/must be the owner of detector "su_det"/, "$label: adm cannot export the superuser's models");
	as_role_err($node, 'adm', q{SELECT anomaly.import_detector_models('su_det', ARRAY['x'],
		ARRAY[(SELECT anomaly.rcf_train(ARRAY[g]::float8[], 5, 16 ORDER BY g) FROM generate_series(1, 30) g)])},
		qr/must be the owner of detector "su_det"/, "$label: adm cannot seed the superuser's detector");
	as_role_err($node, 'plain', q{SELECT count(*) FROM anomaly.export_detector_models('adm_det')},
		qr/permission denied/, "$label: plain cannot export");
	as_role_err($node, 'adm', q{SELECT anomaly.import_detector_models('adm_det', ARRAY['1'],
		ARRAY[(SELECT anomaly.rcf_train(ARRAY[g, g]::float8[], 5, 16 ORDER BY g) FROM generate_series(1, 30) g)])},
		qr/model has other parameters than detector "adm_det"/, "$label: a model of other parameters is refused");
	as_role_err($node, 'adm', qq{SELECT anomaly.import_detector_models('adm_det', ARRAY['1'], ARRAY[$bad_model])},
		qr/cannot be decoded|invalid|corrupt/, "$label: a corrupt model is refused");
	as_role_err($node, 'adm', qq{SELECT anomaly.import_detector_models('adm_det', ARRAY['1', '1'], ARRAY[$model, $model])},
		qr/given twice/, "$label: a key given twice is refused");
	as_role_err($node, 'adm', qq{SELECT anomaly.import_detector_models('adm_det', ARRAY['1'], ARRAY[$model, $model])},
		qr/partition_keys has 1 elements and models 2/, "$label: arrays of different lengths are refused");
	as_role_err($node, 'adm', q{SELECT anomaly.publish_scores('n9', 'adm_det')},
		qr/permission denied/, "$label: adm cannot publish scores (superuser only)");
	as_role_err($node, 'adm', q{SELECT * FROM anomaly.create_shard_publications('public.su_src', 'id', 2)},
		qr/must be the owner of table/, "$label: adm cannot publish another role's table");
	# a password in a connection string never reaches pg_subscription
	my ($rc, $out, $err) = $node->psql('postgres', q{SELECT anomaly.attach_scoring_node('h_sub',
		'host=127.0.0.1 port=1 dbname=postgres password=hunter2', 'p')});
	like($err, qr/must not contain a password/, "$label: a password in the connection string is refused");
	($rc, $out, $err) = $node->psql('postgres', q{SELECT anomaly.collect_scores('n9',
		'postgresql://u:hunter2@127.0.0.1:1/postgres')});
	like($err, qr/must not contain a password/, "$label: a password in a URI is refused");
	# a schema anomaly_collect planted by another role is not written into
	$node->safe_psql('postgres', 'CREATE SCHEMA anomaly_collect AUTHORIZATION adm');
	($rc, $out, $err) = $node->psql('postgres', q{SELECT anomaly.publish_scores('n9', 'adm_det')});
	like($err, qr/schema anomaly_collect must belong to a superuser/, "$label: a planted schema is refused");
	$node->safe_psql('postgres', 'DROP SCHEMA anomaly_collect');
	# the owner exports its own models and seeds them back
	$node->safe_psql('postgres', q{INSERT INTO s_adm.t (k, v) SELECT g % 3, g FROM generate_series(1, 60) g});
	as_role_ok($node, 'adm', q{SELECT anomaly.process('adm_det')}, "$label: adm runs its detector");
	# the detector worker may have taken the rows first: wait for its round
	$node->poll_query_until('postgres',
		q{SELECT count(*) = 3 FROM anomaly.export_detector_models('adm_det')})
	  or die "adm_det's models were never stored";
	is(as_role_ok($node, 'adm', q{SELECT count(*) FROM anomaly.export_detector_models('adm_det')},
		"$label: adm exports its models"), "3", "$label: one model per key");
	as_role_err($node, 'adm', q{SELECT anomaly.import_detector_models('adm_det', array_agg(partition_key), array_agg(model))
		FROM anomaly.export_detector_models('adm_det')},
		qr/already has a model for partition key/, "$label: a key with a model is not overwritten by default");
	as_role_ok($node, 'adm', q{SELECT anomaly.import_detector_models('adm_det', array_agg(partition_key), array_agg(model), true)
		FROM anomaly.export_detector_models('adm_det')}, "$label: replace => true overwrites");
	assert_alive($node, $label);
	assert_no_superuser($node, $label);
}

# import_detector_models compared every pair of keys (and copied both each
# time) before any other check, uninterruptibly: 20,000 keys held a backend
# for two minutes and gigabytes of memory, whatever the detector.
{
	my $label = 'import: many keys';
	my $m = q{(SELECT anomaly.rcf_train(ARRAY[g]::float8[], 5, 16 ORDER BY g) FROM generate_series(1, 30) g)};
	my $t0 = time();
	as_role_err($node, 'adm', qq{SELECT anomaly.import_detector_models('no_such_det',
		array(SELECT i::text FROM generate_series(1, 20000) i), array_fill($m, ARRAY[20000]))},
		qr/detector "no_such_det" does not exist/, "$label: 20000 distinct keys are checked in time",
		timeout => '10s');
	ok(time() - $t0 < 60, "$label: quickly");
	as_role_err($node, 'adm', qq{SELECT anomaly.import_detector_models('no_such_det',
		array(SELECT i::text FROM generate_series(1, 20000) i) || '777'::text, array_fill($m, ARRAY[20001]))},
		qr/partition key '777' is given twice/, "$label: a key given twice among many is found",
		timeout => '10s');
	as_role_err($node, 'adm', qq{SELECT anomaly.import_detector_models('no_such_det',
		ARRAY[NULL, 'a', NULL], array_fill($m, ARRAY[3]))},
		qr/partition key NULL is given twice/, "$label: NULL given twice is found");
	assert_alive($node, $label);
}

# publish_scores granted the detector's owner its rights with %I over the
# regrole's text, which is already quoted: an owner whose name needs quotes
# got """Mixed Case""" and the call failed.
{
	my $label = 'publish_scores: an owner whose name needs quotes';
	$node->safe_psql('postgres', q{
		CREATE ROLE "Mixed Case" LOGIN IN ROLE anomaly_admin;
		CREATE TABLE public.mc_src (id bigserial PRIMARY KEY, v float8);
		ALTER TABLE public.mc_src OWNER TO "Mixed Case";
	});
	my ($rc, $out, $err) = $node->psql('postgres', q{SET ROLE "Mixed Case";
		SELECT anomaly.create_detector('mc_det', 'public.mc_src', ARRAY['v'],
			options => '{"number_of_trees": 5, "sub_sample_size": 16}')});
	is($rc, 0, "$label: the detector is created") or diag($err);
	($rc, $out, $err) = $node->psql('postgres', q{SELECT anomaly.publish_scores('nmc', 'mc_det')});
	is($rc, 0, "$label: its scores are published") or diag($err);
	is($node->safe_psql('postgres', q{SELECT has_table_privilege('Mixed Case', 'anomaly_collect.scores_nmc', 'INSERT')
		AND NOT has_table_privilege('Mixed Case', 'anomaly_collect.scores_nmc', 'SELECT')}),
		't', "$label: the owner may insert there, not read");
	assert_no_superuser($node, $label);
}

# Every owner publishing into a node's table had INSERT on all of it: one
# owner could write rows naming another owner's detector, and the collector
# took them as that detector's scores.
{
	my $label = 'publish_scores: an owner writes only its own rows';
	$node->safe_psql('postgres', q{
		CREATE ROLE pub_a LOGIN IN ROLE anomaly_admin;
		CREATE ROLE pub_b LOGIN IN ROLE anomaly_admin;
		CREATE TABLE public.pa_src (id bigserial PRIMARY KEY, v float8);
		CREATE TABLE public.pb_src (id bigserial PRIMARY KEY, v float8);
		ALTER TABLE public.pa_src OWNER TO pub_a;
		ALTER TABLE public.pb_src OWNER TO pub_b;
	});
	for my $o ('a', 'b')
	{
		as_role_ok($node, "pub_$o", qq{SELECT anomaly.create_detector('p${o}_det', 'public.p${o}_src', ARRAY['v'],
			options => '{"number_of_trees": 5, "sub_sample_size": 16}')}, "$label: pub_$o creates a detector");
		my ($rc, $out, $err) = $node->psql('postgres', qq{SELECT anomaly.publish_scores('npub', 'p${o}_det')});
		is($rc, 0, "$label: p${o}_det publishes into scores_npub") or diag($err);
	}
	as_role_err($node, 'pub_b', q{INSERT INTO anomaly_collect.scores_npub (detector, anomaly_score) VALUES ('pa_det', 99)},
		qr/violates row-level security policy/, "$label: pub_b cannot write pa_det's rows");
	as_role_ok($node, 'pub_b', q{INSERT INTO anomaly_collect.scores_npub (detector, anomaly_score) VALUES ('pb_det', 1)},
		"$label: pub_b writes its own detector's rows");
	$node->safe_psql('postgres', q{INSERT INTO public.pa_src (v) SELECT g FROM generate_series(1, 40) g});
	as_role_ok($node, 'pub_a', q{SELECT anomaly.process('pa_det')}, "$label: pa_det scores through the policy");
	is($node->safe_psql('postgres', q{SELECT count(*) FROM anomaly_collect.scores_npub WHERE detector = 'pa_det'}),
		'40', "$label: pa_det's rows reach the node's table");
	assert_no_superuser($node, $label);
}

# seed_detector and import_detector_models decoded a model without checking
# anomaly.max_forest_memory first: a value stored under a larger cap (a
# table column is not read through the type's input) went straight to the
# decoder.
{
	my $label = 'seed and import: the memory cap before decoding';
	$node->safe_psql('postgres', q{CREATE TABLE public.cap_model AS
		SELECT anomaly.rcf_train(ARRAY[g]::float8[] ORDER BY g) AS m FROM generate_series(1, 300) g});
	my ($rc, $out, $err) = $node->psql('postgres', q{SET anomaly.max_forest_memory = '1MB';
		SELECT anomaly.seed_detector('su_det', 'k', (SELECT m FROM public.cap_model))});
	like($err, qr/forest would need .* more than anomaly\.max_forest_memory/, "$label: seed_detector refuses it");
	($rc, $out, $err) = $node->psql('postgres', q{SET anomaly.max_forest_memory = '1MB';
		SELECT anomaly.import_detector_models('su_det', ARRAY['k'], ARRAY[(SELECT m FROM public.cap_model)])});
	like($err, qr/forest would need .* more than anomaly\.max_forest_memory/, "$label: import_detector_models refuses it");
	($rc, $out, $err) = $node->psql('postgres', q{SELECT anomaly.seed_detector('su_det', 'k', (SELECT m FROM public.cap_model))});
	like($err, qr/model has other parameters|number_of_trees/, "$label: under the default cap the model is decoded (and its parameters compared)");
	assert_alive($node, $label);
}

$node->stop;
done_testing();
