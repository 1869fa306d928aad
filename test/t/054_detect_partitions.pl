# A detector on a partitioned table scores the rows of its partitions as
# rows of the parent: a partition with another column order and a dropped
# column, rows of several partitions in one transaction, a partition
# attached while the load runs (its rows from before the attach do not
# count) and one detached (its rows from after do not count).  Every row
# that belonged to the table when it was committed has exactly one score,
# and the scores equal random_cut_forest over the same rows per key in
# commit order.  The owner needs SELECT on the parent only; SELECT on a
# partition is not enough.  A sub-partitioned partition created and
# filled in one transaction counts at once.  A detector on one partition
# sees that partition alone.  Dropping a column of the parent stops the detector
# with a clear error.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::RealBin/..";
use DetectTest;
use IPC::Run;
use Time::HiRes qw(sleep);

my $node = detector_node('detect_parts',
	'anomaly.detector_batch_rows' => 1500,
	fsync => 'off');

# ev: p1 (k 1..4) made as a partition; p2 (k 5..8) made alone with other
# column order and a dropped column, then attached; p3 (k 9..12).
# "counted" says whether the row is to be scored by "parts".
$node->safe_psql('postgres', q{
	CREATE EXTENSION anomaly;
	CREATE ROLE alice LOGIN IN ROLE anomaly_admin;
	CREATE ROLE bob LOGIN IN ROLE anomaly_admin;
	CREATE SEQUENCE ev_id;
	GRANT USAGE ON SEQUENCE ev_id TO PUBLIC;
	CREATE TABLE ev (
		id bigint NOT NULL DEFAULT nextval('ev_id'),
		k int NOT NULL,
		v double precision NOT NULL,
		w double precision NOT NULL,
		counted boolean NOT NULL DEFAULT true,
		PRIMARY KEY (id, k)
	) PARTITION BY RANGE (k);
	CREATE TABLE p1 PARTITION OF ev FOR VALUES FROM (1) TO (5);
	CREATE TABLE p2 (junk text, counted boolean NOT NULL DEFAULT true, w double precision NOT NULL,
		v double precision NOT NULL, k int NOT NULL,
		id bigint NOT NULL DEFAULT nextval('ev_id'));
	ALTER TABLE p2 DROP COLUMN junk;
	ALTER TABLE ev ATTACH PARTITION p2 FOR VALUES FROM (5) TO (9);
	CREATE TABLE p3 PARTITION OF ev FOR VALUES FROM (9) TO (13);
	GRANT SELECT ON ev TO alice;
	GRANT SELECT ON p1 TO bob;
});

# bob may read a partition but not the parent: no detector on the parent.
my ($rc, $out, $err) = $node->psql('postgres', q{
	SET ROLE bob;
	SELECT anomaly.create_detector('bobs', 'ev', ARRAY['v']);});
like($err, qr/permission denied for table ev/,
	'SELECT on a partition does not allow a detector on the parent');

# alice may read the parent (and no partition directly).
$node->safe_psql('postgres', q{
	SET ROLE alice;
	SELECT anomaly.create_detector('parts', 'ev', ARRAY['v', 'w - v'],
		partition_by => 'k',
		options => '{"number_of_trees": 20, "sub_sample_size": 32, "shingle_size": 2, "seed": 7}');});
# A detector on one partition.
$node->safe_psql('postgres', q{
	SELECT anomaly.create_detector('single', 'p3', ARRAY['v'],
		options => '{"number_of_trees": 10, "sub_sample_size": 16, "seed": 3}');});
is($node->safe_psql('postgres', q{
	SELECT string_agg(name || ':' || owner, ',' ORDER BY name) FROM anomaly.detector_status}),
	'parts:alice,single:postgres', 'detectors on the parent and on a partition');

# Load: rows for one key, or for keys 1..16 in one transaction (those of
# p4 fail while it is not attached; the whole transaction is then rolled
# back, as are the explicit rollbacks).
my $script = mixed_load('parts_load.sql',
	keys => 'random(1, 12)',
	sizes => 'random(1, 5)',
	rollback => 5,
	rolled_back => 'INSERT INTO ev (k, v, w) SELECT :k, 1000, 1000 FROM generate_series(1, 10);',
	big_share => 5,
	big => 'INSERT INTO ev (k, v, w) SELECT 1 + (g % 12), sin(g) * 4 + random(), g % 7 FROM generate_series(1, 200) g;',
	small => 'INSERT INTO ev (k, v, w) SELECT :k, sin(:k + g) * 4 + random(), :k FROM generate_series(1, :n) g;');

# pgbench in the background, its output to a file: the test blocks on DDL
# while it runs, and must not leave it blocked on a full pipe.
my $loads = 0;
sub start_load
{
	my ($secs) = @_;
	my $log = $PostgreSQL::Test::Utils::tmp_check . '/parts_load_' . ++$loads . '.log';
	return IPC::Run::start(
		[ 'pgbench', '-n', '-c', 4, '-j', 2, '-T', $secs, '-f', $script,
		  $node->connstr('postgres') ],
		'>', $log, '2>&1');
}

# Rows written straight into a partition count too.
my $h = start_load(4);
$node->safe_psql('postgres', q{
	INSERT INTO p2 (k, v, w) SELECT 5 + g % 4, cos(g), 1 FROM generate_series(1, 300) g;
	INSERT INTO p1 (k, v, w) SELECT 1 + g % 4, cos(g), 2 FROM generate_series(1, 300) g;});

# p4 (k 13..16): its rows from before the attach are not ev's.
$node->safe_psql('postgres', q{
	CREATE TABLE p4 (w double precision NOT NULL, id bigint NOT NULL DEFAULT nextval('ev_id'),
		counted boolean NOT NULL DEFAULT true, v double precision NOT NULL, k int NOT NULL);
	INSERT INTO p4 (k, v, w, counted) SELECT 13 + g % 4, 500, 0, false FROM generate_series(1, 50) g;});
sleep(1);
$node->safe_psql('postgres', q{ALTER TABLE ev ATTACH PARTITION p4 FOR VALUES FROM (13) TO (17)});
$node->safe_psql('postgres', q{
	INSERT INTO ev (k, v, w) SELECT 13 + g % 4, sin(g), 3 FROM generate_series(1, 200) g;
	INSERT INTO p4 (k, v, w) SELECT 13 + g % 4, cos(g), 4 FROM generate_series(1, 100) g;});
# One transaction over every partition, in a known order.
$node->safe_psql('postgres', q{
	INSERT INTO ev (k, v, w) SELECT 1 + (g * 7) % 16, sin(g * 3), 55 FROM generate_series(1, 400) g;});
$h->finish;

# Detach p1 while the load goes on: its later rows are not ev's.
$h = start_load(3);
sleep(1);
$node->safe_psql('postgres', q{ALTER TABLE ev DETACH PARTITION p1});
$node->safe_psql('postgres', q{
	INSERT INTO p1 (k, v, w, counted) SELECT 1 + g % 4, 700, 0, false FROM generate_series(1, 60) g;});
$h->finish;
$node->safe_psql('postgres', q{
	INSERT INTO ev (k, v, w) SELECT 5 + g % 8, sin(g), 6 FROM generate_series(1, 100) g;});

# A sub-partitioned partition (one leaf with another column order),
# created and filled in one transaction: its rows are ev's at once.
$node->safe_psql('postgres', q{
	BEGIN;
	CREATE TABLE p5 PARTITION OF ev FOR VALUES FROM (17) TO (21) PARTITION BY LIST (k);
	CREATE TABLE p5a PARTITION OF p5 FOR VALUES IN (17, 18);
	CREATE TABLE p5b (v double precision NOT NULL, k int NOT NULL, counted boolean NOT NULL DEFAULT true,
		id bigint NOT NULL DEFAULT nextval('ev_id'), w double precision NOT NULL);
	ALTER TABLE p5 ATTACH PARTITION p5b FOR VALUES IN (19, 20);
	INSERT INTO ev (k, v, w) SELECT 17 + g % 4, cos(g * 2), 7 FROM generate_series(1, 200) g;
	INSERT INTO p5b (k, v, w) SELECT 19 + g % 2, sin(g * 2), 8 FROM generate_series(1, 50) g;
	COMMIT;});

# Every row ever written to ev, p1, p4 or p5 is in all_rows (p1 is no
# longer part of ev).
$node->safe_psql('postgres', q{
	CREATE VIEW all_rows AS
		SELECT id, k, v, w, counted FROM ev
		UNION ALL SELECT id, k, v, w, counted FROM p1;});
my $expected = $node->safe_psql('postgres', q{SELECT count(*) FROM all_rows WHERE counted});
my $not_counted = $node->safe_psql('postgres', q{SELECT count(*) FROM all_rows WHERE NOT counted});
is($not_counted, '110', 'rows from before the attach and after the detach were written');
cmp_ok($expected, '>', 1500, "rows were committed to the partitions ($expected)");

ok($node->poll_query_until('postgres', qq{
		SELECT count(*) >= $expected FROM anomaly.scores WHERE detector = 'parts'}, 't'),
	'the detector on the parent caught up');
# Give it a moment to score anything it should not.
sleep(1);
$node->poll_query_until('postgres', q{
	SELECT lag_bytes < 100000 FROM anomaly.detector_status WHERE name = 'parts'}, 't');

is($node->safe_psql('postgres', q{
	SELECT state || '|' || rows_failed || '|' || (last_error IS NULL)::int
	FROM anomaly.detector_status WHERE name = 'parts'}),
	'active|0|1', 'the detector is active, no failure, no error');

my ($missing, $twice, $orphans) = score_gaps($node,
	'(SELECT * FROM all_rows WHERE counted)',
	q{(SELECT * FROM anomaly.scores WHERE detector = 'parts')});
is($missing, '0', 'every row of every partition while attached has a score');
is($twice, '0', 'no row has two scores');
is($orphans, '0', 'no score for rolled-back rows, rows from before the attach or after the detach');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM anomaly.scores c WHERE c.detector = 'parts'
	AND (c.source_key->>'k')::int <> c.partition_key::int}),
	'0', 'the source key is the parent\'s primary key');

# The features of p2's rows (other column order, a dropped column) and
# p4's are the parent's columns.
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM anomaly.scores c JOIN all_rows r ON r.id = (c.source_key->>'id')::bigint
	WHERE c.detector = 'parts' AND c.features IS DISTINCT FROM ARRAY[r.v, r.w - r.v]}),
	'0', 'features are computed over the parent\'s columns for every partition');

my ($compared, $different) = window_diff($node,
	detector => 'parts', rows => 'all_rows', key => 'k', point => 'ARRAY[v, w - v]',
	params => q{20, 32, 100000, 2, 7, transform => 'normalize', transform_decay => 0.0001});
is($different, '0',
	"all $compared scores equal random_cut_forest per key in commit order");
cmp_ok($compared, '==', $expected, 'compared every row');

is($node->safe_psql('postgres', q{
	SELECT count(*) FROM anomaly.scores WHERE detector = 'parts' AND partition_key::int BETWEEN 17 AND 20}),
	'250', 'the rows of a sub-partitioned partition made in the same transaction were scored');

# The transaction over every partition is one transaction for the detector.
is($node->safe_psql('postgres', q{
	SELECT count(DISTINCT c.commit_lsn) || '/' || count(*)
	FROM anomaly.scores c JOIN all_rows r ON r.id = (c.source_key->>'id')::bigint
	WHERE c.detector = 'parts' AND r.w = 55}),
	'1/400', 'the rows of a transaction over every partition share its commit LSN');

# The detector on p3 saw p3's rows and no other.
ok($node->poll_query_until('postgres', q{
	SELECT (SELECT count(*) FROM anomaly.scores WHERE detector = 'single') >=
		(SELECT count(*) FROM p3)}, 't'), 'the detector on one partition caught up');
is($node->safe_psql('postgres', q{
	SELECT count(*) FILTER (WHERE (c.source_key->>'k')::int NOT BETWEEN 9 AND 12)
		|| '|' || (count(*) = (SELECT count(*) FROM p3))::int
	FROM anomaly.scores c WHERE detector = 'single'}),
	'0|1', 'the detector on one partition scored exactly its rows');

# A column of the parent dropped: the detector stops with a clear error.
$node->safe_psql('postgres', q{DROP VIEW all_rows; ALTER TABLE ev DROP COLUMN w});
$node->safe_psql('postgres', q{INSERT INTO ev (k, v) VALUES (5, 1)});
ok($node->poll_query_until('postgres', q{
	SELECT state FROM anomaly.detector_status WHERE name = 'parts'}, 'failed'),
	'dropping a column of the parent stops the detector');
like($node->safe_psql('postgres', q{
	SELECT last_error FROM anomaly.detector_status WHERE name = 'parts'}),
	qr/source table public\.ev of detector "parts" was altered: column "w" was dropped/,
	'with an error naming the column');

$node->stop;
done_testing();
