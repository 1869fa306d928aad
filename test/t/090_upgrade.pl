# ALTER EXTENSION anomaly UPDATE from every earlier release gives the same
# objects as a fresh install of the current version: functions (signature,
# body, security, settings, grants), tables (columns, defaults, constraints,
# indexes, policies, triggers, grants), views, types, and what pg_dump
# dumps.  Objects a user made under the old version keep working after the
# update: a stored model scores as before, a destination and an alert rule
# stay.
#
# The earlier releases' install scripts are not in the tree: they are built
# from git history (OldRelease.pm) and installed, with this build's files,
# in a private copy of the PostgreSQL installation; without git or the
# history the test skips, saying why.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/..";
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use OldRelease;

my @old = @RELEASES;
my %old_dir = map { $_ => old_release($_, sql_only => 1) } @old;

# This build's files (make install put them in the server's directories)
# and each earlier release's install script, run with this build's library.
my ($install, $libdir, $extdir) = private_installation(PostgreSQL::Test::Utils::tempdir() . '/pg');
my $pkgext = pg_dir('sharedir') . '/extension';
install_package($libdir, $extdir, pg_dir('pkglibdir') . '/anomaly.so', "$pkgext/anomaly.control",
	glob("$pkgext/anomaly--*--*.sql"));
my ($current) = slurp_file("$pkgext/anomaly.control") =~ /^default_version = '([^']+)'/m;
install_package($libdir, $extdir, "$pkgext/anomaly--$current.sql",
	map { "$old_dir{$_}/anomaly--$_.sql" } @old);

my $node = PostgreSQL::Test::Cluster->new('upgrade', install_path => $install);
$node->init(allows_streaming => 'logical');
$node->start;

is($node->safe_psql('postgres',
		q{SELECT default_version FROM pg_available_extensions WHERE name = 'anomaly'}),
	$current, "this build's version is the default: $current");
is($node->safe_psql('postgres', q{
		SELECT string_agg(version, ' ' ORDER BY version) FROM pg_available_extension_versions
		WHERE name = 'anomaly' AND version <> (SELECT default_version FROM pg_available_extensions
											   WHERE name = 'anomaly')}),
	join(' ', sort @old), "earlier releases installed beside $current: @old");

# One line per property of every object that belongs to the extension,
# sorted, so that two databases compare as text.
my $catalog = q{
WITH m AS (
	SELECT d.classid, d.objid
	FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
	WHERE d.refclassid = 'pg_extension'::regclass AND e.extname = 'anomaly'
	  AND d.deptype = 'e'),
f AS (
	SELECT p.oid FROM m JOIN pg_proc p ON m.classid = 'pg_proc'::regclass AND p.oid = m.objid),
r AS (
	SELECT c.oid FROM m JOIN pg_class c ON m.classid = 'pg_class'::regclass AND c.oid = m.objid)
SELECT line FROM (
	SELECT 'object ' || pg_describe_object(classid, objid, 0) AS line FROM m
	UNION ALL
	SELECT format('function %s(%s) returns %s: kind %s, strict %s, volatile %s, parallel %s,'
	              ' definer %s, leakproof %s, config %s, acl %s, comment %s, body %s',
	              p.oid::regproc, pg_get_function_arguments(p.oid),
	              pg_get_function_result(p.oid), p.prokind, p.proisstrict, p.provolatile,
	              p.proparallel, p.prosecdef, p.proleakproof, p.proconfig, p.proacl,
	              obj_description(p.oid, 'pg_proc') IS NOT NULL, md5(p.prosrc))
	FROM f JOIN pg_proc p USING (oid)
	UNION ALL
	SELECT format('relation %s: kind %s, acl %s, rls %s, comment %s', c.oid::regclass,
	              c.relkind, c.relacl, c.relrowsecurity, obj_description(c.oid, 'pg_class') IS NOT NULL)
	FROM r JOIN pg_class c USING (oid)
	UNION ALL
	SELECT format('column %s.%s: %s, not null %s, default %s, acl %s', a.attrelid::regclass,
	              a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
	              pg_get_expr(ad.adbin, ad.adrelid), a.attacl)
	FROM r JOIN pg_attribute a ON a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped
	LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
	UNION ALL
	SELECT format('constraint %s on %s: %s', co.conname, co.conrelid::regclass,
	              pg_get_constraintdef(co.oid))
	FROM r JOIN pg_constraint co ON co.conrelid = r.oid
	UNION ALL
	SELECT 'index ' || pg_get_indexdef(i.indexrelid)
	FROM r JOIN pg_index i ON i.indrelid = r.oid
	UNION ALL
	SELECT format('policy %s on %s: %s %s using %s check %s', po.polname, po.polrelid::regclass,
	              po.polcmd, po.polroles::regrole[], pg_get_expr(po.polqual, po.polrelid),
	              pg_get_expr(po.polwithcheck, po.polrelid))
	FROM r JOIN pg_policy po ON po.polrelid = r.oid
	UNION ALL
	SELECT 'trigger ' || pg_get_triggerdef(t.oid)
	FROM r JOIN pg_trigger t ON t.tgrelid = r.oid AND NOT t.tgisinternal
	UNION ALL
	SELECT format('view %s: %s', c.oid::regclass, md5(pg_get_viewdef(c.oid)))
	FROM r JOIN pg_class c USING (oid) WHERE c.relkind IN ('v', 'm')
	UNION ALL
	SELECT format('dumped %s', unnest(extconfig)::regclass) FROM pg_extension WHERE extname = 'anomaly'
	UNION ALL
	SELECT format('namespace %s: acl %s', nspname, nspacl) FROM pg_namespace WHERE nspname = 'anomaly'
) x ORDER BY line};

$node->safe_psql('postgres', q{
	CREATE ROLE upg_adm LOGIN;
	CREATE DATABASE fresh});
$node->safe_psql('fresh', 'CREATE EXTENSION anomaly');
my $fresh = $node->safe_psql('fresh', $catalog);
ok(length($fresh) > 1000, 'the fresh install has a catalog to compare');

# Every update script runs all of src/sql/*.sql again (src/sql/README.md):
# run a second time over a fresh install, as the update to a pseudo-version
# made of them alone, they must give the same objects.
my $src = $ENV{ANOMALY_SRC} // "$FindBin::RealBin/../..";
open(my $fh, '>', "$extdir/anomaly--$current--rerun.sql") or die "$extdir: $!";
print $fh slurp_file($_) foreach sort glob("$src/src/sql/*.sql");
close $fh;
$node->safe_psql('postgres', 'CREATE DATABASE rerun');
$node->safe_psql('rerun', "CREATE EXTENSION anomaly; ALTER EXTENSION anomaly UPDATE TO 'rerun'");
is($node->safe_psql('rerun', $catalog), $fresh,
	'the parts of the update scripts, run again over a fresh install, change nothing');
unlink "$extdir/anomaly--$current--rerun.sql";

foreach my $from (@old)
{
	my $db = 'from_' . ($from =~ s/\./_/gr);
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	$node->safe_psql($db, qq{
		CREATE EXTENSION anomaly VERSION '$from';
		CREATE TABLE series AS
			SELECT t, 10 * sin(t / 7.0) + (t % 3) AS v FROM generate_series(1, 2000) t;
		CREATE TABLE models AS
			SELECT anomaly.rcf_train(ARRAY[v] ORDER BY t) AS m FROM series;
		SELECT anomaly.create_destination('ops', 'notify', '{"channel": "ops"}');
		GRANT anomaly_admin TO upg_adm;
	});
	# made by an admin under the old version: theirs after the update
	$node->safe_psql($db, q{SELECT anomaly.create_destination('adm_ops', 'notify', '{"channel": "adm"}')},
		extra_params => [ '-U', 'upg_adm' ]);
	my $score_before = $node->safe_psql($db,
		'SELECT anomaly.rcf_score(m, ARRAY[42.0]) FROM models');

	$node->safe_psql($db, 'ALTER EXTENSION anomaly UPDATE');
	is($node->safe_psql($db,
			q{SELECT extversion FROM pg_extension WHERE extname = 'anomaly'}),
		$current, "$from: updated to $current");

	my $updated = $node->safe_psql($db, $catalog);
	my %f = map { $_ => 1 } split /\n/, $fresh;
	my %u = map { $_ => 1 } split /\n/, $updated;
	my @missing = grep { !$u{$_} } sort keys %f;
	my @extra = grep { !$f{$_} } sort keys %u;
	is(scalar(@missing) + scalar(@extra), 0,
		"$from: the updated catalog equals a fresh install's")
	  or diag(join("\n", (map { "only in fresh:   $_" } @missing),
			(map { "only in updated: $_" } @extra)));

	is($node->safe_psql($db, 'SELECT anomaly.rcf_score(m, ARRAY[42.0]) FROM models'),
		$score_before, "$from: a stored model scores as before the update");
	is($node->safe_psql($db, q{SELECT kind FROM anomaly.destinations WHERE name = 'ops'}),
		'notify', "$from: a destination made before the update is still there");
	is($node->safe_psql($db, 'SELECT string_agg(name, \',\' ORDER BY name) FROM anomaly.destinations',
			extra_params => [ '-U', 'upg_adm' ]),
		'adm_ops', "$from: an admin's destination is theirs after the update, and only it is visible to them");
}

$node->stop;
done_testing();
