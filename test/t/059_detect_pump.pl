# A destination as a pump (KDA's DESTINATION_SQL_STREAM fed by a pump from
# RANDOM_CUT_FOREST_WITH_EXPLANATION), through crashes: the stock-ticker
# example's destination (ticker, price, change, ANOMALY_SCORE,
# ANOMALY_EXPLANATION, and ROWTIME from the source's event time) is filled
# from the source row, its features and its scores.  While pgbench clients
# insert ticks, the detector worker is killed with SIGKILL and the server
# is stopped in immediate mode; afterwards every committed tick is in the
# destination exactly once, with its own column values, the score and
# explanation anomaly.scores has for it, and its event time.  A destination
# with a column nothing fills is refused when the detector is created.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use FindBin;
use lib "$FindBin::RealBin/..";
use DetectTest;
use IPC::Run;
use Time::HiRes qw(time sleep);

my $node = crash_node('detect_pump',
	'anomaly.detector_batch_rows' => 1000);

sub sq { return $node->safe_psql('postgres', $_[0]); }

sq(q{
	CREATE EXTENSION anomaly;
	CREATE TABLE ticks (
		id bigserial PRIMARY KEY,
		ticker text NOT NULL,
		sector text,
		price numeric(12,2) NOT NULL,
		change double precision NOT NULL,
		event_time timestamptz NOT NULL DEFAULT clock_timestamp() - interval '5 seconds'
	);
	-- KDA's DESTINATION_SQL_STREAM of the stock-ticker example, in
	-- KDA's own upper-case names, plus the tick's id to check it by.
	CREATE TABLE destination_sql_stream (
		id bigint NOT NULL,
		TICKER_SYMBOL varchar(4),
		TICKER text,
		PRICE numeric,
		CHANGE real,
		ANOMALY_SCORE double precision,
		ANOMALY_EXPLANATION varchar,
		ROWTIME timestamptz NOT NULL
	);
});
# TICKER_SYMBOL is not a column of ticks: the first try is refused.
my ($rc, $out, $err) = $node->psql('postgres', q{
	SELECT anomaly.create_detector('pump', 'ticks', ARRAY['price', 'change'],
		partition_by => 'ticker',
		options => '{"destination": "destination_sql_stream"}')});
isnt($rc, 0, 'a destination with a column nothing fills is refused');
like($err, qr/column "ticker_symbol" of destination table public\.destination_sql_stream cannot be filled/,
	'and the error names the column');
like($err, qr/HINT:  Rename it/, 'with a hint');
sq(q{
	ALTER TABLE destination_sql_stream DROP COLUMN ticker_symbol;
	CREATE TABLE dest_unfillable (LIKE destination_sql_stream);
	ALTER TABLE dest_unfillable ADD COLUMN volume int;
});
($rc, $out, $err) = $node->psql('postgres', q{
	SELECT anomaly.create_detector('pump', 'ticks', ARRAY['price', 'change'],
		partition_by => 'ticker',
		options => '{"destination": "dest_unfillable"}')});
like($err, qr/column "volume" of destination table public\.dest_unfillable cannot be filled/,
	'so is one with an extra column of its own');
sq(q{
	SELECT anomaly.create_detector('pump', 'ticks', ARRAY['price', 'change'],
		partition_by => 'ticker',
		options => '{"destination": "destination_sql_stream", "time_column": "event_time",
			"with_explanation": true, "number_of_trees": 20, "sub_sample_size": 32, "seed": 7}');
});

my $script = pgbench_script('pump_load.sql', q{
\set t random(1, 8)
\set r random(1, 100)
\if :r <= 10
BEGIN;
INSERT INTO ticks (ticker, price, change) VALUES ('T' || :t, 999, 99);
ROLLBACK;
\else
INSERT INTO ticks (ticker, sector, price, change)
SELECT 'T' || :t, 'S' || (:t % 3), 50 + 10 * sin(g + :r), cos(g * :r) FROM generate_series(1, 1 + :r % 6) g;
\endif
});

sub start_load
{
	my ($secs) = @_;
	my ($o, $e) = ('', '');
	return IPC::Run::start(
		[ 'pgbench', '-n', '-c', 4, '-j', 2, '-T', $secs, '-R', 200, '-f', $script,
		  $node->connstr('postgres') ],
		'>', \$o, '2>', \$e);
}

sub worker_pid
{
	my $pid = '';
	for (1 .. 300)
	{
		$pid = sq(q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'anomaly detector'});
		last if $pid =~ /^\d+$/;
		sleep(0.1);
	}
	return $pid;
}

for my $i (1 .. 2)
{
	my $h = start_load(4);
	sleep(0.5 + rand(2));
	if ($i == 1)
	{
		my $pid = worker_pid();
		ok($pid =~ /^\d+$/, "crash $i: the detector worker runs");
		kill 'KILL', $pid;
		sleep(0.5);
		$node->poll_query_until('postgres', 'SELECT 1', '1')
		  or die "server did not come back after crash $i";
	}
	else
	{
		$node->stop('immediate');
		$node->start;
		pass("crash $i: the server restarted");
	}
	$h->finish;
}
my $h = start_load(2);
$h->finish;
my $rows = sq('SELECT count(*) FROM ticks');
cmp_ok($rows, '>', 200, "$rows ticks were committed");

ok($node->poll_query_until('postgres', q{
		SELECT (SELECT count(*) FROM anomaly.scores WHERE detector = 'pump') >=
		       (SELECT count(*) FROM ticks)}, 't'),
	'the detector caught up after the crashes');
is(sq(q{SELECT state || '|' || rows_failed FROM anomaly.detector_status WHERE name = 'pump'}),
	'active|0', 'the detector is active with no failed row');

is(sq(q{SELECT count(*) FROM ticks t
	WHERE (SELECT count(*) FROM destination_sql_stream d WHERE d.id = t.id) <> 1}),
	'0', 'every committed tick is in the destination exactly once');
is(sq(q{SELECT count(*) FROM destination_sql_stream d
	WHERE NOT EXISTS (SELECT 1 FROM ticks t WHERE t.id = d.id)}),
	'0', 'and nothing else is');
my ($n, $same_row, $same_score, $same_time, $explained) = split /\|/, sq(q{
	SELECT count(*),
		count(*) FILTER (WHERE d.ticker = t.ticker AND d.price = t.price
			AND d.change = t.change::real),
		count(*) FILTER (WHERE d.anomaly_score = s.anomaly_score
			AND d.anomaly_explanation = s.explanation::text),
		count(*) FILTER (WHERE d.rowtime = t.event_time AND s.rowtime = t.event_time),
		count(*) FILTER (WHERE d.anomaly_explanation::jsonb ? 'price')
	FROM destination_sql_stream d
	JOIN ticks t ON t.id = d.id
	JOIN anomaly.scores s ON s.detector = 'pump' AND (s.source_key->>'id')::bigint = d.id});
cmp_ok($n, '==', $rows, 'each destination row has its tick and its score');
is($same_row, $n, 'the source columns are the tick\'s (cast to the destination\'s types)');
is($same_score, $n, 'ANOMALY_SCORE and ANOMALY_EXPLANATION are the score\'s');
is($same_time, $n, 'ROWTIME is the tick\'s event time, in the destination and in anomaly.scores');
is($explained, $n, 'every explanation names the features');

$node->stop;
done_testing();
