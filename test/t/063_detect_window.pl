# Windowed detectors through crashes: a tumbling (1 minute) and a hopping
# (1 minute every 20 seconds) detector over an event-time column, with
# aggregate features (count(*), avg(price), max(price) - min(price)), three
# partition keys, rows slightly out of order (within allowed_lateness) and
# late rows (five minutes old).  While a procedure inserts ticks, one
# transaction every three, the detector worker is killed with SIGKILL and
# the server stopped in immediate mode.  Afterwards:
#   - every late row is counted in detector_status and is in late_rows,
#     and no other row is;
#   - each window of each key is scored exactly once;
#   - its features equal, to the bit, the same aggregates over a date_bin
#     GROUP BY of the rows that were not late (in commit order), and its
#     score, grade, decision and expected values equal random_cut_forest
#     and detect() over those windows per key in window order;
#   - the destination (a pump) holds each window once with its features.
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

my $node = crash_node('detect_window',
	'anomaly.detector_batch_rows' => 300);

sub sq { return $node->safe_psql('postgres', $_[0]); }

my $origin = q{timestamptz '2000-01-01 00:00:00+00'};

sq(q{
	CREATE EXTENSION anomaly;
	CREATE TABLE ticks (
		id bigserial PRIMARY KEY,
		i int NOT NULL,
		ticker text NOT NULL,
		price double precision NOT NULL,
		ts timestamptz NOT NULL
	);
	CREATE TABLE late_ticks (LIKE ticks);
	CREATE TABLE late_ticks_hop (LIKE ticks);
	CREATE TABLE window_pump (
		partition_key text,
		rowtime timestamptz,
		source_key jsonb,
		avg_price double precision,
		spread double precision,
		anomaly_score double precision
	);
	-- Continues where the last call stopped (a crash may have cut it):
	-- step i is three ticks at 2026-01-01 + i seconds, up to 4 s early;
	-- every 37th step adds a tick five minutes old, which is late.
	CREATE PROCEDURE load(n int) LANGUAGE plpgsql AS $$
	DECLARE
		first int := coalesce((SELECT max(i) FROM ticks), -1) + 1;
		t timestamptz;
	BEGIN
		FOR i IN first .. first + n - 1 LOOP
			t := timestamptz '2026-01-01 00:00:00+00' + i * interval '1 second';
			INSERT INTO ticks (i, ticker, price, ts)
			SELECT i, k, 100 + 10 * sin(i / 50.0 + g)
					+ CASE WHEN i % 997 = 0 THEN 60 ELSE 0 END
					+ ((i * 7919 + g * 104729) % 1000) / 1000.0,
				t - ((i * 31 + g) % 5) * interval '1 second'
			FROM unnest(ARRAY['A', 'B', 'C']) WITH ORDINALITY AS u(k, g);
			IF i % 37 = 0 THEN
				INSERT INTO ticks (i, ticker, price, ts) VALUES (i, 'B', 1, t - interval '5 minutes');
			END IF;
			IF i % 3 = 2 THEN
				COMMIT;
			END IF;
		END LOOP;
	END $$;
});

my $params = '"number_of_trees": 30, "sub_sample_size": 64, "seed": 7';
sq(qq{
	SELECT anomaly.create_detector('win', 'ticks',
		ARRAY['count(*)', 'avg(price)', 'max(price) - min(price)'],
		partition_by => 'ticker',
		options => '{$params, "window": "1 minute", "time_column": "ts",
			"allowed_lateness": "10 seconds", "late_rows": "late_ticks",
			"feature_names": ["n", "avg_price", "spread"], "destination": "window_pump"}');
	SELECT anomaly.create_detector('hop', 'ticks',
		ARRAY['count(*)', 'avg(price)', 'max(price) - min(price)'],
		partition_by => 'ticker',
		options => '{$params, "window": "1 minute", "slide": "20 seconds", "time_column": "ts",
			"allowed_lateness": "10 seconds", "late_rows": "late_ticks_hop"}');
});
is(sq(q{SELECT options->>'window', options->>'slide', options->>'allowed_lateness'
	FROM anomaly.detectors WHERE name = 'hop'}), '00:01:00|00:00:20|00:00:10',
	'window options are normalized');

load_through_crashes($node, 4, 900);
# The rest without crash, then a tick of another key far ahead: its event
# time moves the watermark past every window of A, B and C.
start_call($node, "CALL load(600)")->finish;
sq(q{INSERT INTO ticks (i, ticker, price, ts)
	SELECT max(i) + 1, 'Z', 100, timestamptz '2026-01-01 03:00:00+00' FROM ticks});
my $rows = sq('SELECT count(*) FROM ticks');
my $late = sq('SELECT count(*) FROM ticks WHERE price = 1');
note "$rows ticks, $late of them late";
cmp_ok($rows, '>', 3000, 'ticks were committed');

for my $d ('win', 'hop')
{
	ok($node->poll_query_until('postgres', qq{
		SELECT w.max_event_time = timestamptz '2026-01-01 03:00:00+00'
		FROM anomaly.detector_windows w JOIN anomaly.detectors d ON d.id = w.detector_id
		WHERE d.name = '$d'}, 't'), "$d caught up with the last tick");
}

# Late rows: counted, routed, never in a window.
for my $d ([ 'win', 'late_ticks' ], [ 'hop', 'late_ticks_hop' ])
{
	my ($name, $table) = @$d;
	is(sq(qq{SELECT windows->>'late_rows', rows_failed, state FROM anomaly.detector_status WHERE name = '$name'}),
		"$late|0|active", "$name: detector_status counts the $late late rows, no failure");
	is(sq(qq{SELECT count(*) FROM ((SELECT id FROM $table EXCEPT SELECT id FROM ticks WHERE price = 1)
		UNION ALL (SELECT id FROM ticks WHERE price = 1 EXCEPT SELECT id FROM $table)) x}),
		'0', "$name: late_rows holds exactly the late ticks");
	is(sq(qq{SELECT count(*) - count(DISTINCT id) FROM $table}), '0', "$name: each late tick once");
}

# The reference: the same aggregates over date_bin of the rows that were
# not late, in commit order (ids follow commits: one session inserts).
my %ref = (
	win => qq{
		SELECT ticker, date_bin('1 minute', ts, $origin) AS ws,
			ARRAY[count(*)::float8, avg(price ORDER BY id), max(price) - min(price)] AS f
		FROM ticks WHERE price <> 1 AND ticker <> 'Z' GROUP BY 1, 2},
	hop => qq{
		SELECT ticker, s AS ws,
			ARRAY[count(*)::float8, avg(price ORDER BY id), max(price) - min(price)] AS f
		FROM ticks,
			generate_series(date_bin('20 seconds', ts, $origin) - interval '40 seconds',
				date_bin('20 seconds', ts, $origin), interval '20 seconds') AS s
		WHERE price <> 1 AND ticker <> 'Z' AND s + interval '1 minute' > ts GROUP BY 1, 2});

for my $d ('win', 'hop')
{
	my $cmp = qq{
	WITH ref AS ($ref{$d}),
	scored AS (
		SELECT ref.*,
			anomaly.random_cut_forest(f, 30, 64, 100000, 8, 7,
				transform => 'normalize', transform_decay => 0.0001)
				OVER (PARTITION BY ticker ORDER BY ws) AS score,
			-- The detectors have detect()'s defaults but for these three.
			anomaly.detect(f, number_of_trees => 30, sub_sample_size => 64, seed => 7)
				OVER (PARTITION BY ticker ORDER BY ws) AS d
		FROM ref),
	got AS (
		SELECT partition_key, (source_key->>'window_start')::timestamptz AS ws,
			(source_key->>'window_end')::timestamptz AS we, (source_key->>'rows')::int AS n,
			features, anomaly_score, anomaly_grade, is_anomaly, expected, rowtime
		FROM anomaly.scores WHERE detector = '$d')
	SELECT (SELECT count(*) FROM scored),
		(SELECT count(*) FROM got),
		(SELECT count(*) FROM (SELECT 1 FROM got GROUP BY partition_key, ws HAVING count(*) > 1) x),
		(SELECT count(*) FROM scored s JOIN got g ON g.partition_key = s.ticker AND g.ws = s.ws
			WHERE g.features = s.f AND g.n = s.f[1] AND g.we = s.ws + interval '1 minute'
			AND g.rowtime = g.we
			AND g.anomaly_score IS NOT DISTINCT FROM s.score
			AND g.anomaly_grade IS NOT DISTINCT FROM (s.d).anomaly_grade
			AND g.is_anomaly IS NOT DISTINCT FROM (s.d).is_anomaly
			AND g.expected IS NOT DISTINCT FROM (s.d).expected),
		(SELECT count(*) FROM scored WHERE (d).anomaly_grade > 0),
		(SELECT count(DISTINCT partition_key) FROM got)};
	my ($nref, $ngot, $dups, $same, $graded, $keys) = split /\|/, sq($cmp);
	note "$d: $nref windows in the reference, $ngot scored, $graded graded above 0";
	cmp_ok($nref, '>', 150, "$d: many windows");
	is($keys, '3', "$d: three keys scored, the open window of the fourth not yet");
	is($dups, '0', "$d: no window scored twice");
	is($ngot, $nref, "$d: every window scored");
	is($same, $nref, "$d: features equal the date_bin aggregates and scores, grades and expected values equal detect()'s, bit for bit");
	if ($same ne $nref)
	{
		diag sq(qq{WITH ref AS ($ref{$d}) SELECT g.partition_key, g.source_key, g.features, r.f
			FROM anomaly.scores g LEFT JOIN ref r ON r.ticker = g.partition_key
			AND r.ws = (g.source_key->>'window_start')::timestamptz
			WHERE g.detector = '$d' AND g.features IS DISTINCT FROM r.f LIMIT 5});
	}
}

# The pump: each window once, its features by name.
is(sq(q{
	SELECT count(*) = (SELECT count(*) FROM anomaly.scores WHERE detector = 'win')
		AND count(DISTINCT (p.partition_key, p.rowtime)) = count(*)
		AND bool_and(p.avg_price = c.features[2] AND p.spread = c.features[3]
			AND p.anomaly_score IS NOT DISTINCT FROM c.anomaly_score)
	FROM window_pump p JOIN anomaly.scores c ON c.detector = 'win'
		AND c.source_key = p.source_key AND c.partition_key = p.partition_key}),
	't', 'the destination holds each window once with its features and score');

# Rows of closed windows are not kept.
is(sq(q{SELECT count(*) FROM anomaly.detector_window_rows r JOIN anomaly.detectors d ON d.id = r.detector_id
	WHERE d.name = 'win' AND r.partition_key <> 'Z'}), '0', 'rows of scored windows are dropped');
is(sq(q{SELECT windows->>'rows_buffered' FROM anomaly.detector_status WHERE name = 'win'}), '1',
	'the open window holds its one row');

$node->stop;
done_testing();
