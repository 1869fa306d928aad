# Hostile roles against detectors (issue 12, findings 1 and 3 and their
# variants).  A detector owner's code (feature, filter and partition_by
# expressions, triggers and rules on the destination table, domain checks of
# converted rows) must run only as its owner, with
# SECURITY_RESTRICTED_OPERATION, and whatever settings it changes must be
# gone when the extension goes on as superuser: the attacks plant a
# search_path naming their own schema first, with operators and functions
# there that make the attacker superuser when a superuser runs them.
#
# After each attack: no test role is superuser, the server is up, and (for
# process()) the calling session's settings are its own.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/..";
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;

use HostileTest;

my $node = new_hostile_node('hostile_detect');
$node->safe_psql('postgres', q{
	GRANT CREATE ON DATABASE postgres TO adm, adm2, owner1;
	CREATE DATABASE manual;
	GRANT CREATE ON DATABASE manual TO adm, owner1;
});
$node->safe_psql('manual', q{
	CREATE EXTENSION anomaly;
});

my $nv = 0;

# plant_sql(SCHEMA, ROLE, VARIANT): SQL (run as ROLE) that creates, in
# SCHEMA, the shadowing objects of VARIANT, each making ROLE superuser when a
# superuser runs it.
sub plant_sql
{
	my ($schema, $role, $v) = @_;
	my $sql = '';
	my $i = 0;
	for my $op (@{ $v->{ops} // [] })
	{
		my ($name, $l, $r, $ret) = @$op;
		$i++;
		my $body = escalation_body($role, "a OPERATOR(pg_catalog.$name) b");
		$sql .= qq{
CREATE FUNCTION $schema.op_$i(a $l, b $r) RETURNS $ret LANGUAGE plpgsql AS \$f\$$body\$f\$;
CREATE OPERATOR $schema.$name (LEFTARG = $l, RIGHTARG = $r, FUNCTION = $schema.op_$i);
};
	}
	for my $fn (@{ $v->{funcs} // [] })
	{
		my ($sig, $ret, $expr) = @$fn;
		my $body = escalation_body($role, $expr);
		$sql .= qq{
CREATE FUNCTION $schema.$sig RETURNS $ret LANGUAGE plpgsql AS \$f\$$body\$f\$;
};
	}
	return $sql;
}

# The user code that plants the path: a plpgsql function setting
# search_path (and other settings) for the session, not the transaction.
sub leak_fn_sql
{
	my ($schema, $extra) = @_;
	$extra //= '';
	return qq{
CREATE FUNCTION $schema.leak(x float8) RETURNS float8 LANGUAGE plpgsql AS \$f\$
BEGIN
	PERFORM pg_catalog.set_config('search_path', '$schema, pg_catalog', false);
	$extra
	RETURN x;
END\$f\$;
CREATE FUNCTION $schema.leak_text(x float8) RETURNS text LANGUAGE plpgsql AS \$f\$
BEGIN
	PERFORM pg_catalog.set_config('search_path', '$schema, pg_catalog', false);
	RETURN 'k';
END\$f\$;
CREATE FUNCTION $schema.leak_bool(x float8) RETURNS bool LANGUAGE plpgsql AS \$f\$
BEGIN
	PERFORM pg_catalog.set_config('search_path', '$schema, pg_catalog', false);
	RETURN true;
END\$f\$;
};
}

# The operators a superuser's SQL might use unqualified.
my @eq_types = qw(int8 int4 text name oid regclass pg_lsn bool jsonb);
my @ord_types = qw(int8 int4 text pg_lsn timestamptz);
my %opsets = (
	'='  => [ map { [ '=', $_, $_, 'bool' ] } @eq_types, ],
	'<>' => [ map { [ '<>', $_, $_, 'bool' ] } @eq_types ],
	'<'  => [ map { [ '<', $_, $_, 'bool' ] } @ord_types ],
	'<=' => [ map { [ '<=', $_, $_, 'bool' ] } @ord_types ],
	'>'  => [ map { [ '>', $_, $_, 'bool' ] } @ord_types ],
	'>=' => [ map { [ '>=', $_, $_, 'bool' ] } @ord_types ],
	'||' => [ [ '||', 'text', 'text', 'text' ], [ '||', 'text[]', 'text[]', 'text[]' ],
		[ '||', 'jsonb', 'jsonb', 'jsonb' ], [ '||', 'float8[]', 'float8[]', 'float8[]' ] ],
	'~~' => [ [ '~~', 'text', 'text', 'bool' ], [ '~~', 'name', 'text', 'bool' ] ],
	'+'  => [ [ '+', 'int8', 'int8', 'int8' ], [ '+', 'int4', 'int4', 'int4' ],
		[ '+', 'timestamptz', 'interval', 'timestamptz' ], [ '+', 'int8', 'int4', 'int8' ] ],
	'-'  => [ [ '-', 'int8', 'int8', 'int8' ], [ '-', 'timestamptz', 'interval', 'timestamptz' ],
		[ '-', 'pg_lsn', 'pg_lsn', 'numeric' ], [ '-', 'timestamptz', 'timestamptz', 'interval' ] ],
);
# Every operator at once with = (the reproduction of the issue).
my @all_ops = map { @{ $opsets{$_} } } sort keys %opsets;
my @funcs = (
	[ 'now()', 'timestamptz', 'pg_catalog.now()' ],
	[ 'lower(t text)', 'text', 'pg_catalog.lower(t)' ],
	[ 'upper(t text)', 'text', 'pg_catalog.upper(t)' ],
	[ 'left(t text, n int4)', 'text', 'pg_catalog.left(t, n)' ],
	[ 'length(t text)', 'int4', 'pg_catalog.length(t)' ],
	[ 'cardinality(a anyarray)', 'int4', 'pg_catalog.cardinality(a)' ],
	[ 'array_length(a anyarray, d int4)', 'int4', 'pg_catalog.array_length(a, d)' ],
	[ 'to_jsonb(x anyelement)', 'jsonb', 'pg_catalog.to_jsonb(x)' ],
	[ 'jsonb_typeof(j jsonb)', 'text', 'pg_catalog.jsonb_typeof(j)' ],
	[ 'pg_current_wal_lsn()', 'pg_lsn', 'pg_catalog.pg_current_wal_lsn()' ],
	[ 'clock_timestamp()', 'timestamptz', 'pg_catalog.clock_timestamp()' ],
	[ 'statement_timestamp()', 'timestamptz', 'pg_catalog.statement_timestamp()' ],
	[ 'pg_backend_pid()', 'int4', 'pg_catalog.pg_backend_pid()' ],
	[ 'substr(t text, a int4)', 'text', 'pg_catalog.substr(t, a)' ],
	[ 'substr(t text, a int4, b int4)', 'text', 'pg_catalog.substr(t, a, b)' ],
	[ 'txid_current()', 'int8', 'pg_catalog.txid_current()' ],
);

# adm_detector($label, $detector, $table, $more_options): as adm, a table
# s_adm.$table of five rows and a detector on its column v, of 5 trees of
# 16 samples and $more_options (JSON members after a comma).
sub adm_detector
{
	my ($label, $detector, $table, $more) = @_;
	as_role_ok($node, 'adm', qq{
CREATE TABLE s_adm.$table (id bigserial PRIMARY KEY, v float8);
SELECT anomaly.create_detector('$detector', 's_adm.$table', ARRAY['v'],
	options => '{"number_of_trees": 5, "sub_sample_size": 16$more}');
INSERT INTO s_adm.$table (v) SELECT g FROM generate_series(1, 5) g;
}, $label);
}

# attack_detector(LABEL, %a): as adm, a fresh schema with a source table,
# the planted objects and a detector whose user code plants the path; then
# five rows; waits for the detector; asserts.
#   ops, funcs     what is planted (see plant_sql)
#   where          'features' (default), 'filter', 'partition_by'
#   leak_extra     more plpgsql in the leaking function
sub attack_detector
{
	my ($label, %a) = @_;
	$nv++;
	my $s = "v$nv";
	my $where = $a{where} // 'features';
	my $features = $where eq 'features' ? "ARRAY['$s.leak(v)']" : "ARRAY['v']";
	my $pb = $where eq 'partition_by' ? "'$s.leak_text(v)'" : 'NULL';
	my $filter = $where eq 'filter' ? "'$s.leak_bool(v)'" : 'NULL';
	# start_all: the first rows are stored before, and read by the backfill
	my $first = "INSERT INTO $s.src (v) SELECT g FROM generate_series(1, 5) g;";
	my $start = $a{start_all} ? ', "start": "all"' : '';
	as_role_ok($node, 'adm', qq{
CREATE SCHEMA $s;
CREATE TABLE $s.src (id bigserial PRIMARY KEY, v float8);
} . leak_fn_sql($s, $a{leak_extra}) . plant_sql($s, 'adm', \%a) . ($a{start_all} ? $first : '') . qq{
SELECT anomaly.create_detector('det_$s', '$s.src', $features, partition_by => $pb, filter => $filter,
	options => '{"number_of_trees": 5, "sub_sample_size": 16$start}');
} . ($a{start_all} ? '' : $first), "$label: set up as adm");
	my $st = wait_detector($node, "det_$s", 5);
	note "$label: detector $st";
	# a second batch: a round after the first one's leak
	as_role_ok($node, 'adm', "INSERT INTO $s.src (v) SELECT g FROM generate_series(1, 5) g",
		"$label: more rows");
	$st = wait_detector($node, "det_$s", 10);
	like($st, qr/^active\|10\|0\|0\|$/, "$label: the detector scored the rows as the owner");
	assert_no_superuser($node, $label);
	assert_alive($node, $label);
	# paused, not dropped: a dropped detector's id is taken again by the
	# next one, whose worker then starts only after the launcher's backoff
	as_role_ok($node, 'adm', "SELECT anomaly.pause_detector('det_$s')", "$label: paused");
}

# 1. The reproduction of the issue: = (int8, int8) and friends.
attack_detector('finding 1: feature sets search_path, shadowing =', ops => $opsets{'='});
for my $op ('<>', '<', '<=', '>', '>=', '||', '~~', '+', '-')
{
	attack_detector("finding 1 variant: shadowing operator $op", ops => $opsets{$op});
}
attack_detector('finding 1 variant: shadowed now(), lower(), left() and other functions',
	funcs => \@funcs);
attack_detector('finding 1 variant: the path planted by the filter', where => 'filter',
	ops => \@all_ops, funcs => \@funcs);
attack_detector('finding 1 variant: the path planted by partition_by', where => 'partition_by',
	ops => \@all_ops, funcs => \@funcs);
# The backfill ({"start": "all"}) reads the stored rows as the owner, in key
# order: the path planted by a feature, and operators shadowing the key's.
attack_detector('history: the backfill reads and scores the stored rows as the owner',
	ops => \@all_ops, funcs => \@funcs, start_all => 1);

# Windowed detectors (issue 17): the aggregate features, the key and the
# filter run as the owner, and so do the input functions that turn a
# window's buffered rows back into rows and the insert of late rows; the
# path they plant must not reach the round's own SQL (the buffer's inserts
# and deletes, the watermark's upsert).  The buffer is the superuser's.
{
	$nv++;
	my $s = "v$nv";
	my $label = 'windows: aggregates, key, filter and late rows as the owner';
	as_role_ok($node, 'adm', qq{
CREATE SCHEMA $s;
CREATE TABLE $s.src (id bigserial PRIMARY KEY, v float8, ts timestamptz);
CREATE TABLE $s.late (LIKE $s.src);
} . leak_fn_sql($s) . plant_sql($s, 'adm', { ops => \@all_ops, funcs => \@funcs }) . qq{
SELECT anomaly.create_detector('det_$s', '$s.src', ARRAY['sum($s.leak(v))', 'count(*)'],
	partition_by => '$s.leak_text(v)', filter => '$s.leak_bool(v)',
	options => '{"number_of_trees": 5, "sub_sample_size": 16, "window": "1 minute",
		"time_column": "ts", "late_rows": "$s.late"}');
INSERT INTO $s.src (v, ts) SELECT g, timestamptz '2026-01-01 10:00:00+00' + g * interval '10 seconds'
	FROM generate_series(0, 15) g;
}, "$label: set up as adm");
	as_role_ok($node, 'adm', qq{INSERT INTO $s.src (v, ts) VALUES (1, '2026-01-01 09:00:00+00')},
		"$label: a late row");
	ok(wait_until(60, sub {
		$node->safe_psql('postgres', qq{
			SELECT (windows->>'windows_scored')::int >= 2 AND (windows->>'late_rows')::int = 1
			FROM anomaly.detector_status WHERE name = 'det_$s'}) eq 't' }),
		"$label: two windows scored, the late row counted");
	like($node->safe_psql('postgres', qq{
		SELECT state || '|' || rows_failed || '|' || coalesce(last_error, '')
		FROM anomaly.detector_status WHERE name = 'det_$s'}), qr/^active\|0\|$/,
		"$label: no failure");
	is($node->safe_psql('postgres', "SELECT count(*) FROM $s.late"), '1',
		"$label: the late row went to the owner's table");
	assert_no_superuser($node, $label);
	assert_alive($node, $label);
	my ($rc, $out, $err) = as_role($node, 'adm',
		'SELECT count(*) FROM anomaly.detector_window_rows UNION ALL SELECT count(*) FROM anomaly.detector_windows');
	like($err, qr/permission denied/, "$label: an admin cannot read the buffered rows");
	# late rows into a table the owner may not write: refused at creation
	$node->safe_psql('postgres', "CREATE TABLE public.su_late (LIKE $s.src)");
	($rc, $out, $err) = as_role($node, 'adm', qq{
SELECT anomaly.create_detector('det_${s}_b', '$s.src', ARRAY['count(*)'],
	options => '{"window": "1 minute", "late_rows": "public.su_late"}')});
	like($err, qr/permission denied for table su_late/, "$label: late_rows must be the owner's to insert into");
	as_role_ok($node, 'adm', "SELECT anomaly.pause_detector('det_$s')", "$label: paused");
}

# A BEFORE INSERT trigger on a detector's destination table, owned by owner1
# (no admin role): owner1 plants the path and the operators; adm's detector
# writes into the table.
{
	my $label = 'finding 1: trigger on the destination table owned by owner1';
	as_role_ok($node, 'owner1', q{
CREATE TABLE s_own.dest (detector text, anomaly_score float8);
GRANT INSERT ON s_own.dest TO adm;
CREATE FUNCTION s_own.trg() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN
	PERFORM pg_catalog.set_config('search_path', 's_own, pg_catalog', false);
	RETURN NEW;
END$f$;
CREATE TRIGGER t BEFORE INSERT ON s_own.dest FOR EACH ROW EXECUTE FUNCTION s_own.trg();
} . plant_sql('s_own', 'owner1', { ops => \@all_ops, funcs => \@funcs }), "$label: set up as owner1");
	adm_detector("$label: adm's detector writes there", 'det_trg', 'src_t',
		', "destination": "s_own.dest"');
	my $st = wait_detector($node, 'det_trg', 5);
	as_role_ok($node, 'adm', 'INSERT INTO s_adm.src_t (v) SELECT g FROM generate_series(1, 5) g',
		"$label: more rows");
	$st = wait_detector($node, 'det_trg', 10);
	like($st, qr/^active\|10\|/, "$label: the detector went on");
	is($node->safe_psql('postgres', 'SELECT count(*) FROM s_own.dest'), '10',
		"$label: the trigger ran (rows in the destination)");
	assert_no_superuser($node, $label);
	assert_alive($node, $label);

	# the same through a rule on the destination table
	$label = 'finding 1 variant: rule on the destination table owned by owner1';
	as_role_ok($node, 'owner1', q{
DROP TRIGGER t ON s_own.dest;
CREATE FUNCTION s_own.rl() RETURNS bool LANGUAGE plpgsql AS $f$
BEGIN
	PERFORM pg_catalog.set_config('search_path', 's_own, pg_catalog', false);
	RETURN true;
END$f$;
CREATE RULE r AS ON INSERT TO s_own.dest DO ALSO SELECT s_own.rl();
}, "$label: set up as owner1");
	as_role_ok($node, 'adm', 'INSERT INTO s_adm.src_t (v) SELECT g FROM generate_series(1, 5) g',
		"$label: more rows");
	$st = wait_detector($node, 'det_trg', 15);
	note "$label: $st";
	assert_no_superuser($node, $label);
	assert_alive($node, $label);

	# a deferred constraint trigger would fire at commit, after the round has
	# left the owner's context, as the superuser: PostgreSQL refuses to queue
	# one under SECURITY_RESTRICTED_OPERATION, so the detector fails with a
	# clear error and the trigger never runs as anyone else
	$label = 'finding 1 variant: deferred constraint trigger on the destination table owned by owner1';
	as_role_ok($node, 'owner1', q{
DROP RULE r ON s_own.dest;
CREATE FUNCTION s_own.dtrg() RETURNS trigger LANGUAGE plpgsql AS $f$}
	  . escalation_body('owner1', 'NEW') . q{$f$;
CREATE CONSTRAINT TRIGGER dt AFTER INSERT ON s_own.dest DEFERRABLE INITIALLY DEFERRED
	FOR EACH ROW EXECUTE FUNCTION s_own.dtrg();
}, "$label: set up as owner1");
	as_role_ok($node, 'adm', 'INSERT INTO s_adm.src_t (v) SELECT g FROM generate_series(1, 5) g',
		"$label: more rows");
	$st = wait_detector($node, 'det_trg', 20);
	like($st, qr/^failed\|15\|.*cannot fire deferred trigger within security-restricted operation \(SQLSTATE 42501\)/,
		"$label: the detector stops with PostgreSQL's error instead of leaving the trigger to commit ($st)");
	assert_no_superuser($node, $label);
	assert_alive($node, $label);
	as_role_ok($node, 'owner1', 'DROP TRIGGER dt ON s_own.dest', "$label: dropped");

	# a view is not a destination
	as_role_err($node, 'adm', q{
CREATE VIEW s_adm.dview AS SELECT 'x'::text AS detector, 1::float8 AS anomaly_score;
SELECT anomaly.alter_detector('det_trg', options => '{"destination": "s_adm.dview"}');
}, qr/ERROR/, 'a view is refused as a destination');
	as_role_ok($node, 'adm', "SELECT anomaly.pause_detector('det_trg')", 'trigger detector paused');
}

# A destination as a pump (issue 17), owned by owner1: a column filled from
# the source is of owner1's domain whose CHECK calls owner1's function, and
# another column's default is owner1's function.  Both plant the path and
# try to escalate when a superuser runs them; both must run as adm, the
# detector's owner, and only as adm.
{
	my $label = 'pump: domain check and default of owner1 on the destination';
	as_role_ok($node, 'owner1', q{
CREATE TABLE s_own.who (role name, what text);
GRANT INSERT ON s_own.who TO PUBLIC;
CREATE FUNCTION s_own.chk(x float8) RETURNS bool LANGUAGE plpgsql AS $f$
BEGIN
	INSERT INTO s_own.who VALUES (CURRENT_USER, 'check');
	PERFORM pg_catalog.set_config('search_path', 's_own, pg_catalog', false);
	IF (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) CURRENT_USER) THEN
		EXECUTE 'ALTER ROLE owner1 SUPERUSER';
	END IF;
	RETURN true;
END$f$;
CREATE DOMAIN s_own.checked AS float8 CHECK (s_own.chk(VALUE));
CREATE FUNCTION s_own.dflt() RETURNS text LANGUAGE plpgsql AS $f$
BEGIN
	INSERT INTO s_own.who VALUES (CURRENT_USER, 'default');
	IF (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) CURRENT_USER) THEN
		EXECUTE 'ALTER ROLE owner1 SUPERUSER';
	END IF;
	RETURN 'x';
END$f$;
CREATE TABLE s_own.pump (v s_own.checked, anomaly_score float8, rowtime timestamptz,
	note text DEFAULT s_own.dflt());
GRANT INSERT ON s_own.pump TO adm;
}, "$label: set up as owner1 (the path's objects planted above)");
	as_role_ok($node, 'adm', q{
CREATE TABLE s_adm.src_pump (id bigserial PRIMARY KEY, v float8, at timestamptz DEFAULT now());
SELECT anomaly.create_detector('det_pump', 's_adm.src_pump', ARRAY['v'],
	options => '{"number_of_trees": 5, "sub_sample_size": 16, "destination": "s_own.pump",
		"time_column": "at"}');
INSERT INTO s_adm.src_pump (v) SELECT g FROM generate_series(1, 5) g;
}, "$label: adm's detector pumps there");
	my $st = wait_detector($node, 'det_pump', 5);
	like($st, qr/^active\|5\|/, "$label: the detector went on ($st)");
	is($node->safe_psql('postgres', q{
		SELECT count(*) FILTER (WHERE p.v = s.v AND p.rowtime = s.at AND note = 'x')
		FROM s_own.pump p JOIN s_adm.src_pump s ON s.v = p.v}),
		'5', "$label: the source's values, its event time and the default are in the destination");
	is($node->safe_psql('postgres', q{
		SELECT string_agg(DISTINCT role || ':' || what, ',' ORDER BY role || ':' || what) FROM s_own.who}),
		'adm:check,adm:default', "$label: the check and the default ran as adm, and only as adm");
	assert_no_superuser($node, $label);
	assert_alive($node, $label);

	# a column owner1 adds later, which nothing fills: the detector stops
	# with a clear error, nothing of the round written
	$label = 'pump: a column added to the destination that nothing fills';
	as_role_ok($node, 'owner1', 'ALTER TABLE s_own.pump ADD COLUMN extra int', "$label: added");
	as_role_ok($node, 'adm', 'INSERT INTO s_adm.src_pump (v) VALUES (6)', "$label: one more row");
	$st = wait_detector($node, 'det_pump', 6);
	like($st, qr/^failed\|5\|.*column "extra" of destination table s_own\.pump of detector "det_pump" cannot be filled \(SQLSTATE 42703\)/,
		"$label: the detector stops and says why ($st)");
	is($node->safe_psql('postgres', 'SELECT count(*) FROM s_own.pump'), '5',
		"$label: nothing of the round was written");
	assert_no_superuser($node, $label);
	assert_alive($node, $label);
	as_role_ok($node, 'adm', "SELECT anomaly.drop_detector('det_pump')", 'pump detector dropped');
}

# process() called by a superuser in a database without a detector worker:
# the session's settings must be its own afterwards, and no escalation.
{
	my $label = 'finding 1: process() called by a superuser';
	my $gucs = q{
	PERFORM pg_catalog.set_config('DateStyle', 'SQL, DMY', false);
	PERFORM pg_catalog.set_config('TimeZone', 'Pacific/Chatham', false);
	PERFORM pg_catalog.set_config('extra_float_digits', '-15', false);
	PERFORM pg_catalog.set_config('transform_null_equals', 'on', false);
	PERFORM pg_catalog.set_config('synchronous_commit', 'off', false);
	PERFORM pg_catalog.set_config('statement_timeout', '1ms', false);
	PERFORM pg_catalog.set_config('default_transaction_read_only', 'on', false);
	PERFORM pg_catalog.set_config('bytea_output', 'escape', false);
	PERFORM pg_catalog.set_config('work_mem', '64kB', false);
	PERFORM pg_catalog.set_config('check_function_bodies', 'off', false);
	BEGIN
		PERFORM pg_catalog.set_config('role', 'adm2', false);
	EXCEPTION WHEN OTHERS THEN NULL;
	END;
	BEGIN
		PERFORM pg_catalog.set_config('session_replication_role', 'replica', false);
	EXCEPTION WHEN OTHERS THEN NULL;
	END;};
	as_role_ok($node, 'adm', q{
CREATE SCHEMA m;
CREATE TABLE m.src (id bigserial PRIMARY KEY, v float8);
} . leak_fn_sql('m', $gucs) . plant_sql('m', 'adm', { ops => \@all_ops, funcs => \@funcs }) . q{
SELECT anomaly.create_detector('det_m', 'm.src', ARRAY['m.leak(v)'],
	options => '{"number_of_trees": 5, "sub_sample_size": 16}');
INSERT INTO m.src (v) SELECT g FROM generate_series(1, 5) g;
}, "$label: set up as adm in a database without the worker", db => 'manual');
	my $show = q{SELECT pg_catalog.current_setting('search_path') || ' / ' ||
		pg_catalog.current_setting('DateStyle') || ' / ' || pg_catalog.current_setting('TimeZone') || ' / ' ||
		pg_catalog.current_setting('extra_float_digits') || ' / ' ||
		pg_catalog.current_setting('transform_null_equals') || ' / ' ||
		pg_catalog.current_setting('synchronous_commit') || ' / ' ||
		pg_catalog.current_setting('statement_timeout') || ' / ' ||
		pg_catalog.current_setting('default_transaction_read_only') || ' / ' ||
		pg_catalog.current_setting('bytea_output') || ' / ' ||
		pg_catalog.current_setting('work_mem') || ' / ' ||
		pg_catalog.current_setting('check_function_bodies') || ' / ' ||
		pg_catalog.current_setting('session_replication_role') || ' / ' ||
		current_user::text};
	my $before = $node->safe_psql('manual', "SET search_path = public; SET statement_timeout = '60s'; $show");
	my ($after, $aerr) = ('', '');
	$node->psql('manual',
		"SET search_path = public; SET statement_timeout = '60s'; SELECT anomaly.process(); $show",
		stdout => \$after, stderr => \$aerr, timeout => 120);
	my @a = split /\n/, $after;
	is($a[0], '5', "$label: the round consumed the rows") or diag($aerr);
	is($a[1], $before, "$label: the caller's settings are unchanged ($before)") or diag($aerr);
	assert_no_superuser($node, $label);
	assert_alive($node, $label);

	$label = 'finding 1 variant: process() called by adm itself';
	as_role_ok($node, 'adm', 'INSERT INTO m.src (v) SELECT g FROM generate_series(1, 5) g',
		"$label: more rows", db => 'manual');
	my ($rc, $out, $err) = as_role($node, 'adm', "SELECT anomaly.process(); $show", db => 'manual',
		timeout => '60s');
	note "$label: exit $rc $out $err";
	assert_no_superuser($node, $label);
	assert_alive($node, $label);
	# (state 'waiting': anomaly.detector_database leaves "manual" to process())
	like($node->safe_psql('manual', q{SELECT state || '|' || rows_scored FROM anomaly.detector_status
		WHERE name = 'det_m'}), qr/^waiting\|10$/, "$label: all rows scored as the owner");
}

# 3. Old rows converted after a column type change: a domain CHECK calling
# plpgsql, set up by the source table's owner (owner1); adm follows the
# error's hint (alter_detector, resume_detector).
for my $how ('alter then resume', 'resume only')
{
	$nv++;
	my $label = "finding 3: domain check of converted rows ($how)";
	my $s = "c$nv";
	as_role_ok($node, 'owner1', qq{
CREATE TABLE s_own.src_$s (id bigserial PRIMARY KEY, v int4);
GRANT SELECT ON s_own.src_$s TO adm;
CREATE FUNCTION s_own.chk_$s(x int4) RETURNS bool LANGUAGE plpgsql AS \$f\$}
	  . escalation_body('owner1', 'true') . qq{\$f\$;
CREATE DOMAIN s_own.dom_$s AS int8 CHECK (s_own.chk_$s(VALUE::int4));
}, "$label: owner1's table and domain");
	as_role_ok($node, 'adm', qq{
SELECT anomaly.create_detector('det_$s', 's_own.src_$s', ARRAY['v'],
	options => '{"number_of_trees": 5, "sub_sample_size": 16}');
SELECT anomaly.pause_detector('det_$s');
}, "$label: adm's detector, paused");
	as_role_ok($node, 'owner1', qq{
INSERT INTO s_own.src_$s (v) SELECT g FROM generate_series(1, 5) g;
ALTER TABLE s_own.src_$s ALTER COLUMN v TYPE s_own.dom_$s;
INSERT INTO s_own.src_$s (v) SELECT g FROM generate_series(6, 7) g;
}, "$label: rows, then the type change");
	as_role_ok($node, 'adm', "SELECT anomaly.resume_detector('det_$s')", "$label: resumed");
	my $st = wait_detector($node, "det_$s", 7);
	note "$label: $st";
	if ($how eq 'alter then resume')
	{
		as_role_ok($node, 'adm', qq{
SELECT anomaly.alter_detector('det_$s');
SELECT anomaly.resume_detector('det_$s');
}, "$label: following the hint");
		$st = wait_detector($node, "det_$s", 7);
		note "$label: $st";
		like($st, qr/^active\|/, "$label: the detector went on");
	}
	assert_no_superuser($node, $label);
	assert_alive($node, $label);
}

# Functions and operators named like the extension's (and pg_catalog's) in
# public, where adm may create (a database from before PostgreSQL 15, where
# PUBLIC may create in public), and a superuser whose search_path names
# pg_catalog after public calling the extension's functions: the extension's
# SQL must not depend on the caller's search_path.
{
	my $label = "objects named like the extension's in public, superuser path \"\$user\", public, pg_catalog";
	$node->safe_psql('postgres', 'GRANT CREATE ON SCHEMA public TO adm');
	my $sql = '';
	my $i = 0;
	for my $f (
		[ '_reject_secret_keys(c jsonb, w text)', 'void', undef ],
		[ '_check_config(k text, c jsonb)', 'jsonb', 'c' ],
		[ '_fit_json(p jsonb, m int4)', 'jsonb', 'p' ],
		[ '_fingerprint(VARIADIC p text[])', 'text', "'x'" ],
		[ '_enqueue(d text, s text, p jsonb, i text)', 'int8', '0' ],
		[ '_destination_kind(n text)', 'text', "'webhook'" ],
		[ '_render(k text, c jsonb, s text, p jsonb, d text, o int8)', 'text', "''" ],
		[ '_a(k text)', 'text', "'a'" ],
		[ '_wake_sender()', 'void', undef ],
		[ 'create_detector(n text, s regclass, f text[], p text, fl text, o jsonb)', 'void', undef ],
		[ 'send_alert(d text, s text, b jsonb)', 'int8', '0' ],
		[ 'now()', 'timestamptz', 'pg_catalog.now()' ],
		[ 'lower(t text)', 'text', 't' ])
	{
		my ($sig, $ret, $expr) = @$f;
		$sql .= "CREATE FUNCTION public.$sig RETURNS $ret LANGUAGE plpgsql AS \$f\$"
		  . escalation_body('adm', $expr) . "\$f\$;\n";
	}
	$sql .= plant_sql('public', 'adm', { ops => $opsets{'='} });
	as_role_ok($node, 'adm', $sql, "$label: planted by adm");
	adm_detector("$label: a detector of adm", 'det_pub', 'src_p', '');
	wait_detector($node, 'det_pub', 5);
	my ($out, $err) = (q{}, q{});
	my $rc = $node->psql('postgres', q{
SET search_path = "$user", public, pg_catalog;
SELECT anomaly.create_destination('pub_n', 'notify', '{"channel": "c"}');
SELECT anomaly.alter_destination('pub_n', '{"channel": "c2"}');
SELECT anomaly.send_alert('pub_n', 'subject', '{"severity": "info"}');
SELECT anomaly.deliver();
SELECT anomaly.test_destination('pub_n');
SELECT anomaly.create_alert_rule('pub_r', 'det_pub', 'pub_n', min_score => 0);
SELECT anomaly.drop_alert_rule('pub_r');
SELECT anomaly.replay_dead_letters();
SELECT anomaly.purge_alert_history('1 day');
SELECT anomaly.pause_detector('det_pub');
SELECT anomaly.resume_detector('det_pub');
SELECT anomaly.alter_detector('det_pub', filter => 'v > 0');
SELECT anomaly.process('det_pub');
SELECT anomaly.drop_destination('pub_n', true);
}, stdout => \$out, stderr => \$err, timeout => 120);
	note "superuser calls: exit $rc $err";
	assert_no_superuser($node, $label);
	assert_alive($node, $label);
	as_role_ok($node, 'adm', 'INSERT INTO s_adm.src_p (v) SELECT g FROM generate_series(1, 5) g',
		"$label: more rows for the worker");
	wait_detector($node, 'det_pub', 10);
	assert_no_superuser($node, "$label (worker round)");
	$node->safe_psql('postgres', 'REVOKE CREATE ON SCHEMA public FROM adm');
}

# Event triggers: an admin cannot create one; the extension's own event
# trigger (DROP SCHEMA / DROP OWNED) run by a hostile role harms no other
# role's detector.
{
	my $label = 'event triggers';
	as_role_err($node, 'adm', q{
CREATE FUNCTION s_adm.et() RETURNS event_trigger LANGUAGE plpgsql AS $f$ BEGIN END $f$;
CREATE EVENT TRIGGER et ON ddl_command_start EXECUTE FUNCTION s_adm.et();
}, qr/permission denied|must be superuser/, "$label: adm cannot create an event trigger");
	as_role_err($node, 'owner1', q{
CREATE FUNCTION s_own.et() RETURNS event_trigger LANGUAGE plpgsql AS $f$ BEGIN END $f$;
CREATE EVENT TRIGGER et ON ddl_command_start EXECUTE FUNCTION s_own.et();
}, qr/permission denied|must be superuser/, "$label: owner1 cannot create an event trigger");
	as_role_ok($node, 'adm2', q{
CREATE TABLE s_adm2.src (id bigserial PRIMARY KEY, v float8);
SELECT anomaly.create_detector('det_adm2', 's_adm2.src', ARRAY['v'],
	options => '{"number_of_trees": 5, "sub_sample_size": 16}');
}, "$label: adm2's detector");
	as_role($node, 'adm', 'DROP OWNED BY adm');
	$node->safe_psql('postgres', 'GRANT CREATE ON DATABASE postgres TO adm');
	as_role($node, 'plain', 'DROP SCHEMA s_plain CASCADE');
	as_role_ok($node, 'adm2', 'INSERT INTO s_adm2.src (v) SELECT g FROM generate_series(1, 5) g',
		"$label: rows for adm2's detector");
	like(wait_detector($node, 'det_adm2', 5), qr/^active\|5\|/,
		"$label: adm2's detector survives adm's DROP OWNED and plain's DROP SCHEMA");
	is($node->safe_psql('postgres',
		q{SELECT count(*) FROM pg_replication_slots s JOIN anomaly.detectors d ON d.slot_name = s.slot_name
		  WHERE d.name = 'det_adm2'}), '1', "$label: its slot is there");
	assert_no_superuser($node, $label);
	assert_alive($node, $label);
}

# ALTER ... OWNER and CREATE games on the extension's objects: the schema
# anomaly is on every pinned search_path, so nobody but its owner may put
# anything there or take its objects over.
{
	my $label = 'ALTER OWNER games';
	for my $sql (
		'CREATE FUNCTION anomaly._fit_json(p jsonb, m int, x int) RETURNS jsonb LANGUAGE sql AS $$ SELECT p $$',
		'CREATE OPERATOR anomaly.= (LEFTARG = int8, RIGHTARG = int8, FUNCTION = pg_catalog.int8eq)',
		'CREATE TABLE anomaly.t (x int)',
		'ALTER TABLE anomaly.detectors OWNER TO adm',
		'ALTER TABLE anomaly.scores OWNER TO adm',
		'ALTER FUNCTION anomaly._render(text, jsonb, text, jsonb, text, bigint) OWNER TO adm',
		'ALTER FUNCTION anomaly.create_detector(text, regclass, text[], text, text, jsonb) OWNER TO anomaly_admin',
		'ALTER SCHEMA anomaly OWNER TO adm',
		'ALTER SCHEMA anomaly RENAME TO x',
		q{CREATE OR REPLACE FUNCTION anomaly._a(kind text) RETURNS text LANGUAGE sql AS $$ SELECT 'x' $$},
		'ALTER EXTENSION anomaly UPDATE',
		'ALTER TYPE anomaly.rcf OWNER TO adm')
	{
		for my $role ('adm', 'plain')
		{
			as_role_err($node, $role, $sql, qr/permission denied|must be owner|must be superuser|must be member/,
				"$label: $role may not: $sql");
		}
	}
	# A feature function given to anomaly_admin (adm is a member) and made
	# SECURITY DEFINER runs as anomaly_admin, never as superuser.
	as_role_ok($node, 'adm', q{
CREATE SCHEMA ow;
CREATE TABLE ow.src (id bigserial PRIMARY KEY, v float8);
CREATE FUNCTION ow.f(x float8) RETURNS float8 LANGUAGE plpgsql SECURITY DEFINER AS $f$}
	  . escalation_body('adm', 'x') . q{$f$;
SELECT anomaly.create_detector('det_ow', 'ow.src', ARRAY['ow.f(v)'],
	options => '{"number_of_trees": 5, "sub_sample_size": 16}');
GRANT CREATE, USAGE ON SCHEMA ow TO anomaly_admin;
ALTER FUNCTION ow.f(float8) OWNER TO anomaly_admin;
INSERT INTO ow.src (v) SELECT g FROM generate_series(1, 5) g;
}, "$label: a feature function owned by anomaly_admin");
	like(wait_detector($node, 'det_ow', 5), qr/^active\|5\|/, "$label: scored");
	assert_no_superuser($node, $label);
	assert_alive($node, $label);
}

# Locks a role can take from SQL must not stall detector management: plain
# holds the advisory locks 0.1.0 used (and their neighbours) while adm
# creates a detector and process() sweeps orphan slots.
{
	my $label = 'advisory locks held by plain';
	my ($in, $out, $err) = ('', '', '');
	my $holder = IPC::Run::start(
		[ 'psql', '-X', '-At', '-v', 'ON_ERROR_STOP=1', '-U', 'plain', '-d', $node->connstr('postgres') ],
		'<', \$in, '>', \$out, '2>', \$err);
	$in .= "SELECT pg_advisory_lock(1852796268, 0), pg_advisory_lock(1852796269, 1),"
	  . " pg_advisory_lock(1852796268, 1), pg_advisory_lock((1852796268::bigint << 32));\n"
	  . "SELECT 'held';\n";
	my $deadline = time() + 60;
	$holder->pump while $out !~ /held/ && time() < $deadline && $holder->pumpable;
	like($out, qr/held/, "$label: plain holds them");
	as_role_ok($node, 'adm', q{
CREATE SCHEMA s_lock;
CREATE TABLE s_lock.src (id bigserial PRIMARY KEY, v float8);
SELECT anomaly.create_detector('det_lock', 's_lock.src', ARRAY['v'],
	options => '{"number_of_trees": 5, "sub_sample_size": 16}');
SELECT anomaly.pause_detector('det_lock');
SELECT anomaly.drop_detector('det_lock');
}, "$label: create_detector and drop_detector do not wait for them", timeout => '20s');
	$in .= "\\q\n";
	$holder->finish;
	assert_alive($node, $label);
}

# {"start": "all"} locks the source in SHARE mode (as the superuser) until
# the creating transaction ends.  adm may only read owner1's table: it must
# not be able to hold owner1's inserts off with it, as LOCK TABLE ... IN
# SHARE MODE would not let it (UPDATE, DELETE or TRUNCATE needed).
{
	my $label = 'history lock on a table adm may only read';
	$node->safe_psql('postgres', q{
		CREATE TABLE s_own.bf_src (id int PRIMARY KEY, v float8);
		ALTER TABLE s_own.bf_src OWNER TO owner1;
		INSERT INTO s_own.bf_src SELECT g, g FROM generate_series(1, 20) g;
		GRANT SELECT ON s_own.bf_src TO adm;
	});
	my $slots = $node->safe_psql('postgres', 'SELECT count(*) FROM pg_replication_slots');
	as_role_err($node, 'adm', q{SELECT anomaly.create_detector('bf_ro', 's_own.bf_src', ARRAY['v'],
		options => '{"start": "all"}')},
		qr/permission denied to lock table s_own\.bf_src against writers/,
		"$label: refused without UPDATE, DELETE or TRUNCATE");
	is($node->safe_psql('postgres', 'SELECT count(*) FROM pg_replication_slots'), $slots,
		"$label: refused before a replication slot is made");
	# and while adm's transaction is open, owner1's insert does not wait
	my ($in, $out, $err) = ('', '', '');
	my $holder = IPC::Run::start(
		[ 'psql', '-X', '-At', '-v', 'ON_ERROR_STOP=0', '-U', 'adm', '-d', $node->connstr('postgres') ],
		'<', \$in, '>', \$out, '2>', \$err);
	$in .= "BEGIN;\nSELECT anomaly.create_detector('bf_ro', 's_own.bf_src', ARRAY['v'], options => '{\"start\": \"all\"}');\n"
	  . "\\echo tried\n";
	my $deadline = time() + 60;
	$holder->pump while $out !~ /tried/ && time() < $deadline && $holder->pumpable;
	as_role_ok($node, 'owner1', q{SET lock_timeout = '2s'; INSERT INTO s_own.bf_src VALUES (100, 1)},
		"$label: the owner's insert is not held off");
	$in .= "ROLLBACK;\n\\q\n";
	$holder->finish;
	# with UPDATE on it adm may
	$node->safe_psql('postgres', 'GRANT UPDATE ON s_own.bf_src TO adm');
	as_role_ok($node, 'adm', q{SELECT anomaly.create_detector('bf_ro', 's_own.bf_src', ARRAY['v'],
		options => '{"start": "all", "number_of_trees": 5, "sub_sample_size": 16}');
		SELECT anomaly.drop_detector('bf_ro')}, "$label: allowed with UPDATE");
	assert_no_superuser($node, $label);
	assert_alive($node, $label);
}

# The owner of a database (no superuser, no anomaly role needed) sets the
# database's search_path to a schema of its own with an operator =(name,
# name): every connection to the database starts with it, the scheduler's
# too, which runs as the bootstrap superuser and looked the extension's
# version up with an unqualified "=".
{
	my $label = "database owner's search_path in the scheduler";
	$node->safe_psql('postgres', 'CREATE DATABASE h_sched OWNER plain');
	$node->safe_psql('h_sched', 'CREATE EXTENSION anomaly');
	as_role_ok($node, 'plain', q{
CREATE SCHEMA evil;
CREATE TABLE evil.calls (who name);
GRANT INSERT ON evil.calls TO PUBLIC;
CREATE FUNCTION evil.eq(a name, b name) RETURNS boolean LANGUAGE plpgsql AS $f$
BEGIN
	INSERT INTO evil.calls VALUES (CURRENT_USER);
	IF (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) CURRENT_USER) THEN
		EXECUTE 'ALTER ROLE plain SUPERUSER';
	END IF;
	RETURN a OPERATOR(pg_catalog.=) b;
END $f$;
CREATE OPERATOR evil.= (LEFTARG = name, RIGHTARG = name, FUNCTION = evil.eq);
ALTER DATABASE h_sched SET search_path = evil, pg_catalog;
}, "$label: plain plants the operator in its database", db => 'h_sched');
	# now the launcher serves h_sched: its scheduler connects with that path
	$node->append_conf('postgresql.conf', "anomaly.detector_database = 'postgres, h_sched'\n");
	$node->reload;
	ok(wait_until(60, sub {
		$node->safe_psql('postgres', q{SELECT count(*) FROM pg_stat_activity
			WHERE datname = 'h_sched' AND backend_type = 'anomaly scheduler'}) > 0 }),
		"$label: a scheduler serves h_sched");
	# it looks the extension up every second: five seconds of passes
	ok(!wait_until(5, sub {
		# (this session, a superuser's, must not run the operator itself)
		$node->safe_psql('h_sched', q{SET search_path = pg_catalog;
			SELECT count(*) FROM evil.calls WHERE who IN (SELECT rolname FROM pg_roles WHERE rolsuper)}) > 0 }),
		"$label: the planted operator never runs as a superuser");
	assert_no_superuser($node, $label);
	$node->append_conf('postgresql.conf', "anomaly.detector_database = 'postgres'\n");
	$node->reload;
	assert_alive($node, $label);
}

$node->stop;
done_testing();
