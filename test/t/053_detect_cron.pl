# Without shared_preload_libraries = 'anomaly' there is no worker:
# anomaly.process() does the rounds, here driven by pg_cron really running
# (pg_cron 1.4 schedules by the minute, so this test waits for two runs).
# Each run is a fresh backend: it rebuilds the forests from the stored ones
# and the journal, catches the slot up to what the previous run committed,
# and scores exactly as the window function does.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::RealBin/..";
use DetectTest;

my $node = PostgreSQL::Test::Cluster->new('detect_cron');
$node->init(allows_streaming => 'logical');
$node->append_conf('postgresql.conf', q{
shared_preload_libraries = 'pg_cron'
cron.database_name = 'postgres'
cron.use_background_workers = on
max_worker_processes = 16
log_min_messages = warning
});
$node->start;

$node->safe_psql('postgres', q{
	CREATE EXTENSION anomaly;
	CREATE EXTENSION pg_cron;
	CREATE TABLE readings (
		id bigserial PRIMARY KEY,
		sensor text NOT NULL,
		value double precision NOT NULL
	);
	SELECT anomaly.create_detector('cron', 'readings', ARRAY['value'],
		partition_by => 'sensor',
		options => '{"number_of_trees": 20, "sub_sample_size": 32, "shingle_size": 4}');
	SELECT cron.schedule('anomaly-detect', '* * * * *', 'SELECT anomaly.process()');
});
is($node->safe_psql('postgres',
	q{SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE 'anomaly detector%'}),
	'0', 'no detector worker runs without shared_preload_libraries');

# First batch, then wait for a cron run to score it.
$node->safe_psql('postgres', q{
	INSERT INTO readings (sensor, value)
		SELECT 's' || (g % 4), 20 + sin(g / 5.0) + (g % 3) / 10.0 FROM generate_series(1, 3000) g;
	INSERT INTO readings (sensor, value) VALUES ('s1', 90);
});
ok($node->poll_query_until('postgres',
	q{SELECT count(*) = 3001 FROM anomaly.scores WHERE detector = 'cron'}, 't'),
	'a pg_cron run scored the first rows');

my $confirmed_1 = $node->safe_psql('postgres',
	q{SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name LIKE 'anomaly%'});

# Second batch, in many transactions; the next run scores it.
for my $i (1 .. 20)
{
	$node->safe_psql('postgres', qq{
		INSERT INTO readings (sensor, value)
			SELECT 's' || (g % 4), 20 + sin(g / 5.0) FROM generate_series($i * 10, $i * 10 + 49) g;
	});
}
ok($node->poll_query_until('postgres',
	q{SELECT count(*) = 4001 FROM anomaly.scores WHERE detector = 'cron'}, 't'),
	'the next pg_cron run scored the rows committed since');

is($node->safe_psql('postgres', q{
	SELECT count(*) FROM cron.job_run_details WHERE status = 'succeeded'
	  AND command = 'SELECT anomaly.process()'}) >= 2 ? 'yes' : 'no',
	'yes', 'pg_cron reports the runs as succeeded');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM cron.job_run_details WHERE status <> 'succeeded'}),
	'0', 'no run failed');

my $confirmed_2 = $node->safe_psql('postgres',
	q{SELECT confirmed_flush_lsn > '} . $confirmed_1 . q{' FROM pg_replication_slots WHERE slot_name LIKE 'anomaly%'});
is($confirmed_2, 't', 'the slot advanced to what the first run committed');

my ($compared, $different) = window_diff($node,
	detector => 'cron', rows => 'readings', key => 'sensor', point => 'ARRAY[value]',
	params => q{20, 32, 100000, 4, transform => 'normalize', transform_decay => 0.0001});
is($compared, '4001', 'every row was compared');
is($different, '0', 'scores from pg_cron runs equal random_cut_forest per key in commit order');
is($node->safe_psql('postgres', q{
	SELECT partition_key FROM anomaly.scores WHERE detector = 'cron'
	ORDER BY anomaly_score DESC LIMIT 1}), 's1', 'the outlier scores highest');

$node->safe_psql('postgres', q{SELECT cron.unschedule('anomaly-detect')});
$node->stop;
done_testing();
