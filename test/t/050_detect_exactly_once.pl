# Exactly once, with the background worker: several pgbench clients insert
# many rows in many transactions (small ones, large ones, rolled-back ones)
# while the detector runs.  Afterwards every committed row has exactly one
# score, no rolled-back row has any, and every score equals what
# random_cut_forest gives over the same rows of its partition key in commit
# order (commit LSN, then position in the transaction), with the same
# parameters and seed.  A second detector over the same rows has a
# transform (normalize_difference, with a decay and weights), whose
# running statistics go to the table and back with its forests: its
# scores, grades and expected values equal detect()'s with that transform.
#
# The memory limit is set so low that forests are evicted to the table and
# loaded back all the time, and checkpoints are frequent: the scores must
# not notice.
#
# ANOMALY_DETECT_ROWS sets the number of rows (default 100000).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

use FindBin;
use lib "$FindBin::RealBin/..";
use DetectTest;

my $target_rows = $ENV{ANOMALY_DETECT_ROWS} || 100000;

my $node = detector_node('detect_once',
	'anomaly.detector_naptime' => 50,
	'anomaly.detector_batch_rows' => 4000,
	# the 2,000-row transactions are taken in parts of 700 rows
	'anomaly.detector_transaction_rows' => 700,
	'anomaly.detector_memory_limit' => '1MB',
	'anomaly.detector_checkpoint_rows' => 15000,
	fsync => 'off');

$node->safe_psql('postgres', q{
	CREATE EXTENSION anomaly;
	CREATE TABLE src (
		id bigserial PRIMARY KEY,
		k int NOT NULL,
		v double precision NOT NULL,
		ts timestamptz NOT NULL DEFAULT clock_timestamp()
	);
	SELECT anomaly.create_detector('once', 'src', ARRAY['v', 'v * v / 10'],
		partition_by => 'k',
		options => '{"number_of_trees": 30, "sub_sample_size": 64, "shingle_size": 2, "seed": 1234}');
	SELECT anomaly.create_detector('once_tf', 'src', ARRAY['v', 'v * v / 10'],
		partition_by => 'k',
		options => '{"number_of_trees": 30, "sub_sample_size": 64, "shingle_size": 2, "seed": 1234,
			"transform": "normalize_difference", "transform_decay": 0.02, "transform_weights": [1, 0.5]}');
});

# A transaction of the load: mostly a few rows for one key, sometimes 2000
# rows over all keys, sometimes rolled back.
my $script = mixed_load('load.sql',
	keys => 'random(1, 25)',
	sizes => 'random(1, 6)',
	rollback => 6,
	rolled_back => 'INSERT INTO src (k, v) SELECT :k, 1000 + random() FROM generate_series(1, 40);',
	big_share => 2,
	big => 'INSERT INTO src (k, v) SELECT 1 + (g % 25), sin(g) * 5 + random() FROM generate_series(1, 2000) g;',
	small => 'INSERT INTO src (k, v) SELECT :k, sin(:k + g) * 5 + random() FROM generate_series(1, :n) g;',
	commit => 1);

# About 43 rows per transaction on average (38 leaves a margin).
my $clients = 8;
my $per_client = int($target_rows / 38 / $clients) + 1;
my $t0 = time();
$node->command_ok(
	[ 'pgbench', '-n', '-c', $clients, '-j', 2, '-t', $per_client,
	  '--random-seed', '20261126',
	  '-f', $script, $node->connstr('postgres') ],
	"pgbench: $clients clients, $per_client transactions each");
my $load_s = time() - $t0;
my $rows = $node->safe_psql('postgres', 'SELECT count(*) FROM src');
note "inserted $rows committed rows in $load_s s";
# The 2000-row transactions make the count vary by seed; this is a sanity
# bound, not a target.
cmp_ok($rows, '>=', $target_rows * 0.6, 'enough rows were committed');

ok($node->poll_query_until('postgres', q{
		SELECT (SELECT count(*) FROM anomaly.scores WHERE detector = 'once') >=
		       (SELECT count(*) FROM src)
		   AND (SELECT count(*) FROM anomaly.scores WHERE detector = 'once_tf') >=
		       (SELECT count(*) FROM src)}, 't'),
	'the detectors caught up');
note sprintf "caught up %.1f s after the load started", time() - $t0;

my $status = $node->safe_psql('postgres', q{
	SELECT state, rows_failed, last_error IS NULL, worker_pid IS NOT NULL
	FROM anomaly.detector_status WHERE name = 'once'});
is($status, 'active|0|t|t', 'the detector is active, its worker holds the slot, no error');

# One score per committed row, none for rolled-back rows.
my ($missing, $twice, $orphans) = score_gaps($node, 'src',
	q{(SELECT * FROM anomaly.scores WHERE detector = 'once')});
is($missing, '0', 'every committed row has a score');
is($twice, '0', 'no row has two scores');
is($orphans, '0', 'no rolled-back row has a score');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM anomaly.scores WHERE detector = 'once' AND features[1] >= 1000}),
	'0', 'no rolled-back value reached a forest');

# The commit LSN a score carries is its row's transaction's: one per
# transaction, distinct between transactions.
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM (
		SELECT s.xmin::text FROM src s
		JOIN anomaly.scores c ON c.detector = 'once' AND (c.source_key->>'id')::bigint = s.id
		GROUP BY s.xmin::text HAVING count(DISTINCT c.commit_lsn) > 1) x}),
	'0', 'the rows of a transaction share one commit LSN');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM (
		SELECT c.commit_lsn FROM src s
		JOIN anomaly.scores c ON c.detector = 'once' AND (c.source_key->>'id')::bigint = s.id
		GROUP BY c.commit_lsn HAVING count(DISTINCT s.xmin::text) > 1) x}),
	'0', 'a commit LSN belongs to one transaction');

# Scores equal the window function per key in commit order.
my ($compared, $different, $different_grades, $graded, $with_expected) = window_diff($node,
	detector => 'once', rows => 'src', key => 'k', point => 'ARRAY[v, v * v / 10]',
	params => q{30, 64, 100000, 2, 1234, transform => 'normalize', transform_decay => 0.0001}, grades => 1);
is($different, '0', "all $compared scores equal random_cut_forest per key in commit order");
is($different_grades, '0',
	"all grades, decisions and expected values equal detect() per key in commit order ($graded rows graded above 0, $with_expected with expected values)");
if ($different ne '0')
{
	diag $node->safe_psql('postgres', q{
	WITH j AS (
		SELECT s.id, s.k, s.v, c.commit_lsn, c.anomaly_score, c.id AS score_id
		FROM src s
		JOIN anomaly.scores c ON c.detector = 'once' AND (c.source_key->>'id')::bigint = s.id),
	r AS (
		SELECT k, id, score_id, commit_lsn, anomaly_score,
			row_number() OVER (PARTITION BY k ORDER BY commit_lsn, id) AS pos,
			anomaly.random_cut_forest(ARRAY[v, v * v / 10], 30, 64, 100000, 2, 1234, transform => 'normalize', transform_decay => 0.0001)
				OVER (PARTITION BY k ORDER BY commit_lsn, id) AS expected
		FROM j)
	SELECT k, min(pos), count(*), min(score_id) FROM r
	WHERE anomaly_score IS DISTINCT FROM expected GROUP BY k ORDER BY 2 LIMIT 10});
	diag $node->safe_psql('postgres', q{
		SELECT seq, cardinality(keys) FROM anomaly.detector_journal ORDER BY seq LIMIT 5});
	diag $node->safe_psql('postgres', q{
		SELECT batch_seq, checkpoint_seq, journal_points FROM anomaly.detectors});
}
cmp_ok($compared, '==', $rows, 'compared every committed row');

# The detector with a transform equals detect() and random_cut_forest with it.
my ($tf_compared, $tf_different, $tf_different_grades, $tf_graded, $tf_expected) = window_diff($node,
	detector => 'once_tf', rows => 'src', key => 'k', point => 'ARRAY[v, v * v / 10]',
	params => q{30, 64, 100000, 2, 1234, transform => 'normalize_difference', transform_decay => 0.02, transform_weights => ARRAY[1, 0.5]},
	grades => 1);
is($tf_different, '0', "with a transform: all $tf_compared scores equal random_cut_forest's");
is($tf_different_grades, '0',
	"with a transform: all grades, decisions and expected values equal detect() ($tf_graded graded, $tf_expected with expected values)");
cmp_ok($tf_compared, '==', $rows, 'with a transform: compared every committed row');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM anomaly.scores WHERE detector = 'once_tf'
	AND (anomaly_score = 'NaN' OR anomaly_grade = 'NaN'
		OR EXISTS (SELECT 1 FROM unnest(expected) e WHERE e = 'NaN' OR e IN ('Infinity', '-Infinity')))}),
	'0', 'with a transform: no NaN or infinite score, grade or expected value');

# The memory limit made forests go to the table and back, and checkpoints
# ran: this exercised the journal.
my ($stored, $seq) = split /\|/, $node->safe_psql('postgres', q{
	SELECT (SELECT count(*) FROM anomaly.detector_forests), checkpoint_seq
	FROM anomaly.detectors WHERE name = 'once'});
cmp_ok($stored, '>', 0, "forests were stored ($stored)");
cmp_ok($seq, '>', 0, 'checkpoints ran');

# Checkpoints are spread over rounds: the journal keeps only rounds after
# checkpoint_seq, and journal_points counts the points it holds.
is($node->safe_psql('postgres', q{
	SELECT count(*) FILTER (WHERE j.seq <= d.checkpoint_seq) || '|' ||
		   (coalesce(sum(cardinality(j.keys)), 0) = d.journal_points)
	FROM anomaly.detectors d LEFT JOIN anomaly.detector_journal j ON j.detector_id = d.id
	WHERE d.name = 'once' GROUP BY d.checkpoint_seq, d.journal_points}),
	'0|true', 'the journal holds just the rounds after checkpoint_seq, journal_points of them');

my $lag = $node->safe_psql('postgres', q{
	SELECT round(percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM scored_at - commit_time))::numeric, 3)
	FROM anomaly.scores WHERE detector = 'once'});
note "commit-to-score lag p99 during the load: $lag s";

$node->stop;
done_testing();
