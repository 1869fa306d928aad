# Stagger windows (KDA's WINDOWED BY STAGGER) through crashes: a detector
# with {"window": "1 minute", "stagger": true} over an event-time column,
# two keys whose ticks arrive out of step (A every second, B every third
# second with pauses of two minutes), ticks up to 4 seconds early, and ticks
# five minutes old.  While a procedure inserts ticks, one transaction every
# three, the detector worker is killed with SIGKILL and the server stopped
# in immediate mode.  Afterwards:
#   - the late rows are exactly those a PL/pgSQL replay of the rule finds
#     over the ticks in commit order (in a window already closed, in no
#     window of the key but before the end of one, or opening a window the
#     watermark has passed), counted in detector_status and in late_rows;
#   - each window of each key is scored exactly once, its start the event
#     time of the tick that opened it (A's and B's windows out of step);
#   - its features equal, to the bit, the same aggregates over the stagger
#     windows that the recursive SQL of docs/detectors.md finds over the
#     rows that were not late, and its score, grade, decision and expected
#     values equal random_cut_forest and detect() over those windows per
#     key in window order;
#   - once the watermark is far past them, no row of A or B is buffered;
#   - a second detector on the commit time (KDA's arrival time) has no late
#     row and its windows equal the same SQL over pg_xact_commit_timestamp;
#   - after the crashes, each buffered row's stored window (window_start,
#     window_opens), which rounds read instead of replaying the buffer,
#     equals a PL/pgSQL replay of the buffered rows in seq order, each
#     window has one opening row (its first, at its start), and no row of a
#     window the watermark passed is kept but a window's opening row, for a
#     window more.
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

my $node = crash_node('detect_stagger',
	'anomaly.detector_batch_rows' => 200,
	track_commit_timestamp => 'on');

sub sq { return $node->safe_psql('postgres', $_[0]); }

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
	-- Continues where the last call stopped (a crash may have cut it):
	-- step i is a tick of A at 2026-01-01 + i seconds, and one of B when
	-- i % 3 = 1 but for 120 steps every 500, each up to 4 s early (out of
	-- order: the event times go back and forth within 4 s); every
	-- 37th step adds a tick of B five minutes old.
	CREATE PROCEDURE load(n int) LANGUAGE plpgsql AS $$
	DECLARE
		first int := coalesce((SELECT max(i) FROM ticks), -1) + 1;
		t timestamptz;
	BEGIN
		FOR i IN first .. first + n - 1 LOOP
			t := timestamptz '2026-01-01 00:00:00+00' + i * interval '1 second';
			INSERT INTO ticks (i, ticker, price, ts)
			VALUES (i, 'A', 100 + 10 * sin(i / 50.0) + CASE WHEN i % 997 = 0 THEN 60 ELSE 0 END
					+ ((i * 7919) % 1000) / 1000.0,
				t - ((i * 7) % 9) * interval '500 milliseconds');
			IF i % 3 = 1 AND i % 500 >= 120 THEN
				INSERT INTO ticks (i, ticker, price, ts)
				VALUES (i, 'B', 50 + 5 * cos(i / 30.0) + ((i * 104729) % 1000) / 1000.0,
					t + interval '300 milliseconds' - ((i * 13) % 7) * interval '600 milliseconds');
			END IF;
			IF i % 37 = 0 THEN
				INSERT INTO ticks (i, ticker, price, ts) VALUES (i, 'B', 1, t - interval '5 minutes');
			END IF;
			IF i % 3 = 2 THEN
				COMMIT;
			END IF;
		END LOOP;
	END $$;
	-- The rule, replayed over the ticks in commit order (ids follow
	-- commits: one session inserts): the ids of the late ones.
	CREATE FUNCTION stagger_late(size interval, lateness interval) RETURNS SETOF bigint
	LANGUAGE plpgsql AS $$
	DECLARE
		r record;
		s0 timestamptz;
		wm timestamptz;
		maxt timestamptz;
		late boolean;
	BEGIN
		CREATE TEMP TABLE sim_windows (ticker text, s timestamptz);
		FOR r IN SELECT id, ticker, ts FROM ticks ORDER BY id LOOP
			SELECT max(s) INTO s0 FROM sim_windows WHERE ticker = r.ticker AND s <= r.ts;
			IF s0 IS NOT NULL AND r.ts < s0 + size THEN
				late := wm IS NOT NULL AND s0 + size <= wm;
			ELSE
				late := wm IS NOT NULL AND (r.ts + size <= wm OR EXISTS (
					SELECT 1 FROM sim_windows WHERE ticker = r.ticker AND r.ts < s + size));
				IF NOT late THEN
					INSERT INTO sim_windows VALUES (r.ticker, r.ts);
				END IF;
			END IF;
			IF late THEN
				RETURN NEXT r.id;
			ELSE
				maxt := greatest(maxt, r.ts);
				wm := maxt - lateness;
			END IF;
		END LOOP;
		DROP TABLE sim_windows;
	END $$;
	-- The buffered rows of a stagger detector replayed in seq order (a row
	-- joins the window of its key with the latest start at or before it,
	-- if it holds it, else opens one): the rows whose stored window
	-- differs from the replay's.
	CREATE FUNCTION stored_windows_diff(detector text) RETURNS SETOF bigint
	LANGUAGE plpgsql AS $$
	DECLARE
		r record;
		size interval := (SELECT (options->>'window')::interval FROM anomaly.detectors WHERE name = detector);
		s0 timestamptz;
	BEGIN
		CREATE TEMP TABLE replay_windows (k text, s timestamptz);
		FOR r IN SELECT w.* FROM anomaly.detector_window_rows w JOIN anomaly.detectors d
				ON d.id = w.detector_id WHERE d.name = detector ORDER BY w.seq LOOP
			SELECT max(s) INTO s0 FROM replay_windows
			WHERE k IS NOT DISTINCT FROM r.partition_key AND s <= r.rowtime;
			IF s0 IS NULL OR r.rowtime >= s0 + size THEN
				INSERT INTO replay_windows VALUES (r.partition_key, r.rowtime);
				IF r.window_start IS DISTINCT FROM r.rowtime OR NOT r.window_opens THEN
					RETURN NEXT r.seq;
				END IF;
			ELSIF r.window_start IS DISTINCT FROM s0 OR r.window_opens THEN
				RETURN NEXT r.seq;
			END IF;
		END LOOP;
		DROP TABLE replay_windows;
	END $$;
});

my $params = '"number_of_trees": 30, "sub_sample_size": 64, "seed": 7';
sq(qq{
	SELECT anomaly.create_detector('stag', 'ticks',
		ARRAY['count(*)', 'avg(price)', 'max(price) - min(price)'],
		partition_by => 'ticker',
		options => '{$params, "window": "1 minute", "stagger": true, "time_column": "ts",
			"allowed_lateness": "10 seconds", "late_rows": "late_ticks"}');
});
# KDA's own semantics: windows of the arrival time (here the commit time),
# which never goes back, so no row is late.
sq(q{
	SELECT anomaly.create_detector('stag_commit', 'ticks', ARRAY['count(*)', 'sum(price)'],
		partition_by => 'ticker',
		options => '{"window": "200 milliseconds", "stagger": true, "number_of_trees": 30,
			"sub_sample_size": 64, "seed": 7}');
});
is(sq(q{SELECT options->>'window', options->>'slide', options->>'stagger'
	FROM anomaly.detectors WHERE name = 'stag'}), '00:01:00|00:01:00|true',
	'stagger options are normalized');

load_through_crashes($node, 4, 700);
# The rest without crash, then a tick of another key far ahead: its event
# time moves the watermark past every window of A and B.
start_call($node, "CALL load(500)")->finish;

# Before that tick: the windows stored with the buffered rows, after the
# crashes, once the detector has read all the ticks.
my $lsn = sq('SELECT pg_current_wal_lsn()');
ok($node->poll_query_until('postgres', qq{
	SELECT progress_lsn >= '$lsn' FROM anomaly.detectors WHERE name = 'stag'}, 't'),
	'the detector read the ticks');
my ($nbuf, $ndiff, $nopen, $bad_open, $kept) = split /\|/, sq(q{
	WITH b AS (SELECT w.* FROM anomaly.detector_window_rows w JOIN anomaly.detectors d
		ON d.id = w.detector_id WHERE d.name = 'stag'),
	wm AS (SELECT w.watermark FROM anomaly.detector_windows w JOIN anomaly.detectors d
		ON d.id = w.detector_id WHERE d.name = 'stag')
	SELECT (SELECT count(*) FROM b),
		(SELECT count(*) FROM stored_windows_diff('stag')),
		(SELECT count(*) FROM b WHERE window_opens),
		(SELECT count(*) FROM (SELECT partition_key, window_start FROM b
			GROUP BY 1, 2 HAVING count(*) FILTER (WHERE window_opens) <> 1
			OR min(seq) <> min(seq) FILTER (WHERE window_opens)
			OR bool_or(window_opens AND rowtime <> window_start)) x),
		(SELECT count(*) FROM b, wm WHERE window_start + interval '1 minute' <= wm.watermark
			AND (NOT window_opens OR window_start + interval '2 minutes' <= wm.watermark))});
note "$nbuf buffered rows, $nopen windows";
cmp_ok($nbuf, '>', 10, 'rows are buffered');
cmp_ok($nopen, '>=', 2, 'windows of both keys are buffered');
is($ndiff, '0', 'after the crashes, each buffered row\'s stored window equals a replay of the buffered rows');
is($bad_open, '0', 'each stored window has one opening row, its first, at its start');
is($kept, '0', 'no row of a closed window is kept but its opening row, a window more');
is(sq(q{SELECT w.stagger_window FROM anomaly.detector_windows w JOIN anomaly.detectors d
	ON d.id = w.detector_id WHERE d.name = 'stag'}), '00:01:00', 'the windows were found with 1 minute');
# (and commits half a second later: past every commit-time window)
sleep(0.5);
sq(q{INSERT INTO ticks (i, ticker, price, ts)
	SELECT max(i) + 1, 'Z', 100, timestamptz '2026-01-01 03:00:00+00' FROM ticks});
my $rows = sq('SELECT count(*) FROM ticks');
note "$rows ticks";
cmp_ok($rows, '>', 3000, 'ticks were committed');

ok($node->poll_query_until('postgres', q{
	SELECT w.max_event_time = timestamptz '2026-01-01 03:00:00+00'
	FROM anomaly.detector_windows w JOIN anomaly.detectors d ON d.id = w.detector_id
	WHERE d.name = 'stag'}, 't'), 'the detector caught up with the last tick');

# Late rows: the replay's, counted, routed, never in a window.
sq(q{CREATE TABLE expected_late AS SELECT * FROM stagger_late('1 minute', '10 seconds') AS id});
my ($nlate, $old, $early) = split /\|/, sq(q{SELECT count(*),
	count(*) FILTER (WHERE price = 1), count(*) FILTER (WHERE price <> 1)
	FROM ticks WHERE id IN (SELECT id FROM expected_late)});
note "$nlate late ticks: $old five minutes old, $early early ones before their key's window";
cmp_ok($old, '>', 50, 'the ticks five minutes old are late');
cmp_ok($early, '>', 0, 'some early ticks are late too: before the window their key opened');
is(sq(q{SELECT count(*) FROM ticks WHERE price = 1 AND id NOT IN (SELECT id FROM expected_late)}),
	'0', 'every tick five minutes old is late');
is(sq(q{SELECT windows->>'late_rows', rows_failed, state FROM anomaly.detector_status WHERE name = 'stag'}),
	"$nlate|0|active", "detector_status counts the $nlate late rows, no failure");
is(sq(q{SELECT count(*) FROM ((SELECT id FROM late_ticks EXCEPT SELECT id FROM expected_late)
	UNION ALL (SELECT id FROM expected_late EXCEPT SELECT id FROM late_ticks)) x}),
	'0', 'late_rows holds exactly the late ticks of the replayed rule');
is(sq(q{SELECT count(*) - count(DISTINCT id) FROM late_ticks}), '0', 'each late tick once');

# The reference: the stagger windows of the rows that were not late, by
# the SQL of docs/detectors.md, with the same aggregates in commit order.
my $ref = q{
	WITH RECURSIVE t AS (
		SELECT * FROM ticks WHERE id NOT IN (SELECT id FROM expected_late) AND ticker <> 'Z'),
	opener AS (
		(SELECT DISTINCT ON (ticker) ticker, id, ts AS ws FROM t ORDER BY ticker, id)
		UNION ALL
		SELECT o.ticker, n.id, n.ts FROM opener o CROSS JOIN LATERAL (
			SELECT t.id, t.ts FROM t
			WHERE t.ticker = o.ticker AND t.id > o.id AND t.ts >= o.ws + interval '1 minute'
			ORDER BY t.id LIMIT 1) n)
	SELECT t.ticker, o.ws,
		ARRAY[count(*)::float8, avg(t.price ORDER BY t.id), max(t.price) - min(t.price)] AS f
	FROM t JOIN LATERAL (
		SELECT max(ws) AS ws FROM opener o WHERE o.ticker = t.ticker AND o.ws <= t.ts) o ON true
	GROUP BY 1, 2};

my $cmp = qq{
	WITH ref AS ($ref),
	scored AS (
		SELECT ref.*,
			anomaly.random_cut_forest(f, 30, 64, 100000, 8, 7,
				transform => 'normalize', transform_decay => 0.0001)
				OVER (PARTITION BY ticker ORDER BY ws) AS score,
			anomaly.detect(f, number_of_trees => 30, sub_sample_size => 64, seed => 7)
				OVER (PARTITION BY ticker ORDER BY ws) AS d
		FROM ref),
	got AS (
		SELECT partition_key, (source_key->>'window_start')::timestamptz AS ws,
			(source_key->>'window_end')::timestamptz AS we, (source_key->>'rows')::int AS n,
			features, anomaly_score, anomaly_grade, is_anomaly, expected, rowtime
		FROM anomaly.scores WHERE detector = 'stag')
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
		(SELECT count(DISTINCT partition_key) FROM got),
		(SELECT count(*) FROM got a JOIN got b ON a.partition_key = 'A' AND b.partition_key = 'B'
			AND a.ws = b.ws),
		(SELECT count(DISTINCT extract(second FROM ws)) FROM got)};
my ($nref, $ngot, $dups, $same, $keys, $common, $phases) = split /\|/, sq($cmp);
note "$nref windows in the reference, $ngot scored, $phases distinct seconds of window starts";
cmp_ok($nref, '>', 50, 'many windows');
is($keys, '2', 'A and B scored, the open window of Z not yet');
is($dups, '0', 'no window scored twice');
is($ngot, $nref, 'every window scored');
is($same, $nref, 'features equal the stagger aggregates of the SQL formulation, and scores, grades and expected values equal detect()\'s, bit for bit');
if ($same ne $nref)
{
	diag sq(qq{WITH ref AS ($ref) SELECT g.partition_key, g.source_key, g.features, r.f
		FROM anomaly.scores g LEFT JOIN ref r ON r.ticker = g.partition_key
		AND r.ws = (g.source_key->>'window_start')::timestamptz
		WHERE g.detector = 'stag' AND g.features IS DISTINCT FROM r.f LIMIT 5});
}
is($common, '0', 'A\'s and B\'s windows are out of step: no start in common');
cmp_ok($phases, '>', 5, 'windows start at their keys\' ticks, not on the minute');

# The commit-time detector: the same SQL over the commit timestamps.
ok($node->poll_query_until('postgres', q{
	SELECT w.max_event_time = pg_xact_commit_timestamp(t.xmin)
	FROM anomaly.detector_windows w JOIN anomaly.detectors d ON d.id = w.detector_id, ticks t
	WHERE d.name = 'stag_commit' AND t.ticker = 'Z'}, 't'), 'the commit-time detector caught up');
my $ref_commit = q{
	WITH RECURSIVE t AS (
		SELECT id, ticker, price, pg_xact_commit_timestamp(xmin) AS ts FROM ticks WHERE ticker <> 'Z'),
	opener AS (
		(SELECT DISTINCT ON (ticker) ticker, id, ts AS ws FROM t ORDER BY ticker, id)
		UNION ALL
		SELECT o.ticker, n.id, n.ts FROM opener o CROSS JOIN LATERAL (
			SELECT t.id, t.ts FROM t
			WHERE t.ticker = o.ticker AND t.id > o.id AND t.ts >= o.ws + interval '200 milliseconds'
			ORDER BY t.id LIMIT 1) n)
	SELECT t.ticker, o.ws, ARRAY[count(*)::float8, sum(t.price ORDER BY t.id)] AS f
	FROM t JOIN LATERAL (
		SELECT max(ws) AS ws FROM opener o WHERE o.ticker = t.ticker AND o.ws <= t.ts) o ON true
	GROUP BY 1, 2};
my ($cref, $cgot, $csame, $clate) = split /\|/, sq(qq{
	WITH ref AS ($ref_commit),
	got AS (SELECT partition_key, (source_key->>'window_start')::timestamptz AS ws, features
		FROM anomaly.scores WHERE detector = 'stag_commit')
	SELECT (SELECT count(*) FROM ref), (SELECT count(*) FROM got),
		(SELECT count(*) FROM ref JOIN got g ON g.partition_key = ref.ticker AND g.ws = ref.ws
			AND g.features = ref.f),
		(SELECT windows->>'late_rows' FROM anomaly.detector_status WHERE name = 'stag_commit')});
note "commit time: $cref windows in the reference, $cgot scored";
cmp_ok($cref, '>', 3, 'commit time: several windows');
is($cgot, $cref, 'commit time: every window scored once');
is($csame, $cref, 'commit time: windows equal the SQL formulation over the commit timestamps');
is($clate, '0', 'commit time: no late row');

# Rows of closed windows are not kept once the watermark is a window past.
is(sq(q{SELECT count(*) FROM anomaly.detector_window_rows r JOIN anomaly.detectors d ON d.id = r.detector_id
	WHERE d.name = 'stag' AND r.partition_key <> 'Z'}), '0', 'rows of scored windows are dropped');
is(sq(q{SELECT windows->>'rows_buffered' FROM anomaly.detector_status WHERE name = 'stag'}), '1',
	'the open window holds its one row');

$node->stop;
done_testing();
