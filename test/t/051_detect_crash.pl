# Crashes: while pgbench clients insert rows, the detector worker is killed
# with SIGKILL (the postmaster then restarts every process) or the server is
# stopped in immediate mode, at random moments, several times.  Afterwards
# no committed row lacks its score, none has two, and the scores are those
# of a run without crashes: random_cut_forest over the same rows per key in
# commit order, same parameters and seed.
#
# The detector also writes its scores to a user table (the "destination"
# option, KDA's DESTINATION_SQL_STREAM) in the round's transaction: that
# table too has exactly one row per committed source row, equal to the row
# of anomaly.scores.
#
# ANOMALY_DETECT_CRASHES sets how many crashes (default 6).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(time sleep);

use FindBin;
use lib "$FindBin::RealBin/..";
use DetectTest;

my $crashes = $ENV{ANOMALY_DETECT_CRASHES} || 6;
my $node = crash_node('detect_crash',
	'anomaly.detector_batch_rows' => 2000,
	# the 800-row transactions are taken in parts of 300 rows: crashes
	# between the parts of one transaction too
	'anomaly.detector_transaction_rows' => 300,
	'anomaly.detector_memory_limit' => '1MB',
	'anomaly.detector_checkpoint_rows' => 5000);

$node->safe_psql('postgres', q{
	CREATE EXTENSION anomaly;
	CREATE TABLE src (
		id bigserial PRIMARY KEY,
		k int NOT NULL,
		v double precision NOT NULL
	);
	-- the destination: some columns of anomaly.scores, of the same types
	CREATE TABLE dest AS
		SELECT detector, partition_key, source_key, commit_lsn, commit_time, features,
			anomaly_score, anomaly_grade, scored_at
		FROM anomaly.scores WITH NO DATA;
	SELECT anomaly.create_detector('crash', 'src', ARRAY['v'],
		partition_by => 'k',
		options => '{"number_of_trees": 20, "sub_sample_size": 32, "shingle_size": 3, "seed": 99,
			"destination": "public.dest"}');
});

my $script = mixed_load('crash_load.sql',
	keys => 'random(1, 15)',
	sizes => 'random(1, 8)',
	rollback => 8,
	rolled_back => 'INSERT INTO src (k, v) SELECT :k, 1000 + g FROM generate_series(1, 20) g;',
	big_share => 2,
	big => 'INSERT INTO src (k, v) SELECT 1 + (g % 15), cos(g) * 3 + random() FROM generate_series(1, 800) g;',
	small => 'INSERT INTO src (k, v) SELECT :k, cos(:k * g) * 3 + random() FROM generate_series(1, :n) g;');

# Starts pgbench in the background for `secs` seconds, at about 250
# transactions (5,000 rows) per second.
sub start_load
{
	my ($secs) = @_;
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start(
		[ 'pgbench', '-n', '-c', 6, '-j', 2, '-T', $secs, '-R', 250, '-f', $script,
		  $node->connstr('postgres') ],
		'>', \$out, '2>', \$err);
	return $h;
}

for my $i (1 .. $crashes)
{
	my $h = start_load(6);
	sleep(0.5 + rand(3));
	my $pid = crash_server($node, $i, 30);
	if ($i % 2)
	{
		ok($pid =~ /^\d+$/, "crash $i: the detector worker runs (PID $pid)");
	}
	else
	{
		pass("crash $i: the server restarted");
	}
	$h->finish;		# pgbench lost its connections: it ends with errors
}

# A last load without crash, then let the detector catch up.
my $h = start_load(3);
$h->finish;
my $rows = $node->safe_psql('postgres', 'SELECT count(*) FROM src');
note "$rows committed rows";
cmp_ok($rows, '>', 1000, 'rows were committed');

ok($node->poll_query_until('postgres', q{
		SELECT (SELECT count(*) FROM anomaly.scores WHERE detector = 'crash') >=
		       (SELECT count(*) FROM src)}, 't'),
	'the detector caught up after the crashes');

is($node->safe_psql('postgres', q{
	SELECT state || '|' || rows_failed FROM anomaly.detector_status WHERE name = 'crash'}),
	'active|0', 'the detector is active with no failed row');
my ($missing, $twice, $orphans) = score_gaps($node, 'src',
	q{(SELECT * FROM anomaly.scores WHERE detector = 'crash')});
is($missing, '0', 'no gap: every committed row has a score');
is($twice, '0', 'no duplicate: no row has two scores');
is($orphans, '0', 'no score for a row that was not committed');

my ($compared, $different, $different_grades) = window_diff($node,
	detector => 'crash', rows => 'src', key => 'k', point => 'ARRAY[v]',
	params => q{20, 32, 100000, 3, 99, transform => 'normalize', transform_decay => 0.0001}, grades => 1);
is($different, '0',
	"after $crashes crashes all $compared scores equal a run without crashes");
is($different_grades, '0', 'and so do the grades, decisions and expected values');

# The destination table, written in the same transactions.
($missing, $twice, $orphans) = score_gaps($node, 'src', 'dest');
is($missing, '0', 'destination: no gap, every committed row has a row');
is($twice, '0', 'destination: no duplicate');
is($orphans, '0', 'destination: no row for a row that was not committed');
my ($dest_rows, $dest_unequal) = split /\|/, $node->safe_psql('postgres', q{
	SELECT count(*),
		count(*) FILTER (WHERE c.id IS NULL OR d.detector IS DISTINCT FROM 'crash'
			OR (d.partition_key, d.commit_lsn, d.commit_time, d.features, d.anomaly_score,
				d.anomaly_grade, d.scored_at)
			IS DISTINCT FROM (c.partition_key, c.commit_lsn, c.commit_time, c.features,
				c.anomaly_score, c.anomaly_grade, c.scored_at))
	FROM dest d
	LEFT JOIN anomaly.scores c ON c.detector = 'crash' AND c.source_key = d.source_key});
is($dest_unequal, '0', "destination: all $dest_rows rows equal their row of anomaly.scores");
cmp_ok($dest_rows, '==', $compared, 'destination: as many rows as anomaly.scores');

# A restarted detector first moves its slot up to the progress it
# committed, so decoding resumes exactly there; rows of transactions at or
# below its last commit LSN, should the slot still send any, are skipped
# (and logged).
my $log = slurp_file($node->logfile);
my $skips = () = $log =~ /skipped \d+ rows of transactions it had already scored/g;
note "rounds that skipped rows already scored: $skips";

# The slot never got ahead of what was committed, so no WAL it still needs
# was lost.
like($node->safe_psql('postgres', q{
	SELECT slot_wal_status FROM anomaly.detector_status WHERE name = 'crash'}),
	qr/^(reserved|extended)$/, 'the slot is healthy');

$node->stop;
done_testing();
