# Stored models survive pg_dump and restore: the restored models score and
# continue exactly as the originals.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('models');
$node->init;
$node->start;

$node->safe_psql('postgres', q{
	CREATE EXTENSION anomaly;
	CREATE TABLE series AS
		SELECT t, 10 * sin(t / 7.0) + (t % 3) AS v FROM generate_series(1, 3000) t;
	CREATE TABLE models (name text PRIMARY KEY, m anomaly.rcf);
	INSERT INTO models
		SELECT 'kda', anomaly.rcf_train(ARRAY[v] ORDER BY t) FROM series;
	INSERT INTO models
		SELECT 'shingled', anomaly.rcf_train(ARRAY[v], 50, 256, 100000, 8 ORDER BY t) FROM series;
});

my $probe = q{
	SELECT name, anomaly.rcf_score(m, ARRAY[42.0]),
	       anomaly.rcf_score(anomaly.rcf_update(m, ARRAY[1.5]), ARRAY[2.5]),
	       md5(m::text)
	FROM models ORDER BY name};
my $before = $node->safe_psql('postgres', $probe);

my $dump = $PostgreSQL::Test::Utils::tmp_check . '/models.dump';
foreach my $format ('custom', 'plain')
{
	my $db = "restored_$format";
	my $file = "$dump.$format";
	$node->command_ok(
		[ 'pg_dump', '--format', $format, '--file', $file,
		  '--dbname', $node->connstr('postgres') ],
		"pg_dump --format $format");
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	if ($format eq 'custom')
	{
		$node->command_ok(
			[ 'pg_restore', '--dbname', $node->connstr($db), $file ],
			'pg_restore of the custom dump');
	}
	else
	{
		$node->command_ok(
			[ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-f', $file,
			  '-d', $node->connstr($db) ],
			'psql restore of the plain dump');
	}
	my $after = $node->safe_psql($db, $probe);
	is($after, $before,
		"$format dump: restored models are byte-identical and score as before");
}

# COPY ... (FORMAT binary) through the client, into another table.
my $bin = "$dump.bin";
$node->safe_psql('postgres', "COPY models TO '$bin' (FORMAT binary)");
$node->safe_psql('postgres', q{CREATE TABLE models2 (LIKE models)});
$node->safe_psql('postgres', "COPY models2 FROM '$bin' (FORMAT binary)");
is($node->safe_psql('postgres',
		q{SELECT count(*) FROM models a JOIN models2 b USING (name) WHERE a.m::text = b.m::text}),
	'2', 'binary COPY round trip keeps both models identical');

$node->stop;
done_testing();
