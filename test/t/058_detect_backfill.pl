# History (KDA's TRIM_HORIZON): a detector created with {"start": "all"}
# scores the rows already in its table, in primary key order, a batch per
# round, then the rows committed since, in commit order.  pgbench clients
# insert rows while the detector is created and while the backfill runs
# (and the server is stopped in immediate mode in the middle of it).
# Afterwards every committed row has exactly one score, the stored rows
# scored by the backfill (no commit LSN) and the others by the stream, and
# the scores are random_cut_forest's over the rows per key in that order.
# The backfill's progress is visible while it runs.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(sleep);

use FindBin;
use lib "$FindBin::RealBin/..";
use DetectTest;

# No background worker: rounds are anomaly.process() calls, so the test
# sees the backfill between them.
my $node = logical_node('detect_backfill',
	log_min_messages => 'warning',
	log_statement => 'none');

sub sq { return $node->safe_psql('postgres', $_[0]); }

sq(q{
	CREATE EXTENSION anomaly;
	CREATE TABLE src (id bigserial PRIMARY KEY, k int NOT NULL, v double precision NOT NULL);
	CREATE TABLE nokey (k int, v double precision);
	INSERT INTO src (k, v) SELECT g % 5, sin(g) * 3 + (g % 7) FROM generate_series(1, 4000) g;
});

my ($rc, $out, $err) = $node->psql('postgres', q{
	SELECT anomaly.create_detector('bad', 'nokey', ARRAY['v'], options => '{"start": "all"}')});
like($err, qr/cannot start from the stored rows of public\.nokey: the table has no primary key/,
	'a table without a primary key cannot be backfilled');
($rc, $out, $err) = $node->psql('postgres', q{
	SELECT anomaly.create_detector('bad', 'src', ARRAY['v'], options => '{"start": "yesterday"}')});
like($err, qr/option "start" must be "now"/, 'start is "now" or "all"');

my $script = pgbench_script('backfill_load.sql', q{
\set k random(0, 4)
\set r random(1, 100)
\if :r <= 10
BEGIN;
INSERT INTO src (k, v) VALUES (:k, 1000);
ROLLBACK;
\else
INSERT INTO src (k, v) SELECT :k, cos(g * :r) * 3 FROM generate_series(1, 1 + :r % 4) g;
\endif
});
my ($o, $e) = ('', '');
my $load = IPC::Run::start(
	[ 'pgbench', '-n', '-c', 3, '-j', 1, '-T', 8, '-R', 150, '-f', $script,
	  $node->connstr('postgres') ],
	'>', \$o, '2>', \$e);
sleep(0.7);

# Created while rows are being inserted.
sq(q{
	SELECT anomaly.create_detector('hist', 'src', ARRAY['v'], partition_by => 'k',
		options => '{"start": "all", "number_of_trees": 20, "sub_sample_size": 32, "seed": 5}')});
my $stored = sq(q{SELECT (backfill->>'done') || '|' || (backfill->>'rows')
	FROM anomaly.detectors WHERE name = 'hist'});
is($stored, 'false|0', 'the backfill is pending when the detector is created');

# Rounds of 600 rows while the load goes on; the progress grows, and the
# backfill survives an immediate stop in its middle.
my @progress;
my $restarted = 0;
for my $i (1 .. 100)
{
	sq(q{SELECT anomaly.process(detector => 'hist', max_rows => 600)});
	my ($done, $read, $rows) = split /\|/, sq(q{
		SELECT (backfill->>'done') || '|' || (backfill->>'read') || '|' || (backfill->>'rows')
		FROM anomaly.detectors WHERE name = 'hist'});
	push @progress, $rows;
	last if $done eq 'true';
	if ($i == 3 && !$restarted)
	{
		$node->stop('immediate');
		$node->start;
		$restarted = 1;
		$load->finish;
		$load = IPC::Run::start(
			[ 'pgbench', '-n', '-c', 3, '-j', 1, '-T', 3, '-R', 150, '-f', $script,
			  $node->connstr('postgres') ],
			'>', \$o, '2>', \$e);
	}
	sleep(0.1);
}
note 'backfill progress: ' . join(' ', @progress);
ok(scalar(grep { $_ > 0 && $_ < 4000 } @progress) >= 3,
	'progress was visible between rounds (rows scored so far)');
is(join(',', @progress), join(',', sort { $a <=> $b } @progress), 'and only grew');
ok($restarted, 'the server was stopped in immediate mode during the backfill');
$load->finish;

# Then the stream, until caught up.
for (1 .. 50)
{
	last if sq(q{SELECT anomaly.process(detector => 'hist')}) eq '0';
}
my $rows = sq('SELECT count(*) FROM src');
cmp_ok($rows, '>', 4100, "$rows rows committed, 4000 of them before the detector");

is(sq(q{SELECT state || '|' || rows_failed FROM anomaly.detectors WHERE name = 'hist'}),
	'active|0', 'the detector is active with no failed row');
is(sq(q{SELECT count(*) FROM src s WHERE (SELECT count(*) FROM anomaly.scores c
		WHERE c.detector = 'hist' AND (c.source_key->>'id')::bigint = s.id) <> 1}),
	'0', 'every committed row has exactly one score: no gap, no duplicate at the seam');
is(sq(q{SELECT count(*) FROM anomaly.scores c WHERE c.detector = 'hist'
		AND NOT EXISTS (SELECT 1 FROM src s WHERE s.id = (c.source_key->>'id')::bigint)}),
	'0', 'no score for a row that was not committed');
my ($history, $streamed, $old_streamed) = split /\|/, sq(q{
	SELECT count(*) FILTER (WHERE commit_lsn IS NULL), count(commit_lsn),
		count(*) FILTER (WHERE commit_lsn IS NOT NULL AND (source_key->>'id')::bigint <= 4000)
	FROM anomaly.scores WHERE detector = 'hist'});
cmp_ok($history, '>=', 4000, "the backfill scored the stored rows ($history)");
cmp_ok($streamed, '>', 0, "the stream scored the rows committed after ($streamed)");
is($old_streamed, '0', 'none of the 4000 rows stored before was left to the stream');
is(sq(q{SELECT (backfill->>'rows')::bigint FROM anomaly.detectors WHERE name = 'hist'}), $history,
	'the backfill counted the rows it scored');

my ($compared, $different) = window_diff($node,
	detector => 'hist', rows => 'src', key => 'k', point => 'ARRAY[v]',
	params => q{20, 32, 100000, 8, 5, transform => 'normalize', transform_decay => 0.0001}, order => 'commit_lsn NULLS FIRST, id');
cmp_ok($compared, '==', $rows, 'all rows compared');
is($different, '0',
	'the scores are random_cut_forest\'s over the stored rows in key order, then the new ones in commit order');

# Restored from a dump before its backfill was done: the snapshot's
# transaction ids mean nothing in the copy, so the copy stops the backfill
# where it was (the original goes on) and scores the rows committed from its
# adoption on.
sq(q{
	CREATE TABLE src2 (id bigserial PRIMARY KEY, v double precision NOT NULL);
	INSERT INTO src2 (v) SELECT sin(g) FROM generate_series(1, 1000) g;
	SELECT anomaly.create_detector('half', 'src2', ARRAY['v'],
		options => '{"start": "all", "number_of_trees": 10, "sub_sample_size": 16}');
	SELECT anomaly.process(detector => 'half', max_rows => 300);
});
my $dump = $PostgreSQL::Test::Utils::tmp_check . '/backfill.dump';
$node->command_ok([ 'pg_dump', '--format', 'custom', '--file', $dump, $node->connstr('postgres') ],
	'pg_dump in the middle of a backfill');
sq('CREATE DATABASE copy');
$node->command_ok([ 'pg_restore', '--dbname', $node->connstr('copy') . ' application_name=pg_restore', $dump ],
	'pg_restore into another database');
$node->safe_psql('copy', q{
	SELECT anomaly.process(detector => 'half');
	INSERT INTO src2 (v) VALUES (1), (2), (3);
	SELECT anomaly.process(detector => 'half');
	SELECT anomaly.process(detector => 'half');
});
is($node->safe_psql('copy', q{
	SELECT (backfill->>'done') || '|' || (backfill->>'interrupted') || '|' || (backfill->>'rows')
		|| '|' || state || '|' || rows_scored
	FROM anomaly.detectors WHERE name = 'half'}),
	'true|restored from a dump|300|active|303',
	'the copy stopped the backfill where the dump had it, and scores the new rows');
sq(q{SELECT anomaly.process(detector => 'half')});
is(sq(q{SELECT (backfill->>'done') || '|' || (backfill->>'rows') || '|' || rows_scored
	FROM anomaly.detectors WHERE name = 'half'}),
	'true|1000|1000', 'the original finished its backfill');

$node->stop;
done_testing();
