# A detector's bounding_box_cache_fraction changed while its background
# worker holds the forests in memory: alter_detector resets nothing (no
# score is lost, the forests keep what they learned), and the worker lays
# its forests out again at its next round, so the memory asked for is had
# then, not when a key happens to be evicted or the worker restarts.  The
# worker's checkpoints (every round here) store the forests as it holds
# them, so the stored models tell which layout it uses.  At every
# fraction the scores are those of random_cut_forest over the same rows.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('box_cache');
$node->init(allows_streaming => 'logical');
$node->append_conf('postgresql.conf', q{
shared_preload_libraries = 'anomaly'
anomaly.detector_naptime = 20
anomaly.detector_checkpoint_rows = 1
anomaly.detector_database = 'postgres'
max_worker_processes = 16
fsync = off
log_min_messages = warning
});
$node->start;

$node->safe_psql('postgres', q{
	CREATE EXTENSION anomaly;
	CREATE TABLE src (id bigserial PRIMARY KEY, v float8 NOT NULL, w float8 NOT NULL);
	SELECT anomaly.create_detector('bx', 'src', ARRAY['v', 'w'],
		options => '{"number_of_trees": 10, "sub_sample_size": 32, "shingle_size": 2, "seed": 5,
			"bounding_box_cache_fraction": 0}');
});

# Rows first..last, in transactions of 25.
sub insert_rows
{
	my ($first, $last) = @_;
	my $sql = '';
	for (my $lo = $first; $lo <= $last; $lo += 25)
	{
		my $hi = $lo + 24 > $last ? $last : $lo + 24;
		$sql .= "INSERT INTO src (v, w) SELECT sin(g * 0.3) * 4 + g % 3, cos(g * 0.2) * 2"
		  . " FROM generate_series($lo, $hi) g;\n";
	}
	$node->safe_psql('postgres', $sql);
}

my $stored_fraction = q{
	SELECT string_agg(DISTINCT anomaly.rcf_info(f.model) ->> 'bounding_box_cache_fraction', ',')
	FROM anomaly.detector_forests f JOIN anomaly.detectors d ON d.id = f.detector_id
	WHERE d.name = 'bx'};
my $worker = q{
	SELECT pid FROM pg_stat_activity WHERE backend_type LIKE 'anomaly detector%'};

insert_rows(1, 150);
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 150 FROM anomaly.scores WHERE detector = 'bx'}), 'the worker scores the first rows');
ok($node->poll_query_until('postgres', $stored_fraction, '0'),
	'its checkpoints store forests without boxes (fraction 0)');
my $pid = $node->safe_psql('postgres', $worker);
isnt($pid, '', 'a detector worker runs');

$node->safe_psql('postgres', q{
	SELECT anomaly.alter_detector('bx', options => '{"bounding_box_cache_fraction": 1}')});
is($node->safe_psql('postgres', q{SELECT generation FROM anomaly.detectors WHERE name = 'bx'}), '1',
	'changing the fraction does not reset the detector');

insert_rows(151, 300);
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 300 FROM anomaly.scores WHERE detector = 'bx'}), 'the worker scores the next rows');
ok($node->poll_query_until('postgres', $stored_fraction, '1'),
	'the worker laid its forests out again with every box (fraction 1) without a restart');
is($node->safe_psql('postgres', $worker), $pid, 'the same worker process');

$node->safe_psql('postgres', q{
	SELECT anomaly.alter_detector('bx', options => '{"bounding_box_cache_fraction": 0.5}')});
insert_rows(301, 450);
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 450 FROM anomaly.scores WHERE detector = 'bx'}), 'and the rows after');
ok($node->poll_query_until('postgres', $stored_fraction, '0.5'), 'then with half of them (0.5)');

is($node->safe_psql('postgres', q{
	SELECT count(*) || ' ' || count(*) FILTER (WHERE s.anomaly_score IS DISTINCT FROM w.score)
	FROM anomaly.scores s
	JOIN (SELECT id, anomaly.random_cut_forest(ARRAY[v, w], 10, 32, 100000, 2, 5,
				transform => 'normalize', transform_decay => 0.0001) OVER (ORDER BY id) AS score
		FROM src) w ON (s.source_key->>'id')::bigint = w.id
	WHERE s.detector = 'bx'}), '450 0',
	'every score equals random_cut_forest over the same rows, whatever the layout');

$node->stop;
done_testing();
