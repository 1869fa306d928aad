# Progress (issue 18): detector_status shows a large transaction's rows as
# its round scores them, with the rows and WAL still pending and an
# estimate of the time left, and nothing pending once caught up; process()
# moves the slot when its caller commits, so that the next call with
# nothing new does not decode the last call's WAL again.
#
# No timing: the round is held half-way by a feature expression that waits
# for an advisory lock the test holds, on the row in the middle of the
# transaction; rounds evaluate and score 10,000 rows at a time, so the rows
# before that chunk are scored and the rest are not until the lock goes.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use FindBin;
use lib "$FindBin::RealBin/..";
use DetectTest;

my $node = detector_node('detect_progress',
	'anomaly.detector_naptime' => 50,
	fsync => 'off');

sub sq { return $node->safe_psql('postgres', $_[0]); }

sub wait_for
{
	my ($sql, $expected, $what) = @_;
	ok($node->poll_query_until('postgres', $sql, $expected), $what)
	  or diag(sq(q{SELECT row_to_json(s) FROM anomaly.detector_status s}));
}

sq(q{
	CREATE EXTENSION anomaly;
	CREATE TABLE src (id bigserial PRIMARY KEY, v double precision NOT NULL);
	-- A negative value waits for advisory lock 58 (held by the test).
	CREATE FUNCTION public.gate(v double precision) RETURNS double precision
	LANGUAGE plpgsql AS $$
	BEGIN
		IF v < 0 THEN
			PERFORM pg_advisory_xact_lock_shared(58);
			RETURN -v;
		END IF;
		RETURN v;
	END $$;
	SELECT anomaly.create_detector('prog', 'src', ARRAY['public.gate(v)'],
		options => '{"number_of_trees": 20, "sub_sample_size": 64}');
});

# A first batch: the rates are measured, and then it is caught up.
sq(q{INSERT INTO src (v) SELECT random() FROM generate_series(1, 20000)});
wait_for(q{SELECT rows_scored FROM anomaly.detector_status WHERE name = 'prog'}, '20000',
	'the first batch is scored');
wait_for(q{SELECT pending_rows = 0 AND (eta IS NULL OR eta < interval '1 second')
		AND lag_time IS NOT NULL AND catchup_rows_per_s > 0
	FROM anomaly.detector_status WHERE name = 'prog'}, 't',
	'caught up: nothing pending, no time left, a rate measured');

# The large transaction, with its gate in the middle.
my $gate = $node->background_psql('postgres');
$gate->query_safe('SELECT pg_advisory_lock(58)');
sq(q{INSERT INTO src (v)
	SELECT CASE WHEN g = 100001 THEN -1 ELSE random() END FROM generate_series(1, 200000) g});

# The worker waits for the lock: the round is in its evaluating phase.
wait_for(q{SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 58 AND NOT granted},
	'1', 'the round waits at the gate');
my ($view, $catalog, $phase, $pending, $eta, $lag, $memory, $started, $pending_ok) = split /\|/, sq(q{
	SELECT s.rows_scored, d.rows_scored, s.round_phase, s.pending_rows, s.eta IS NOT NULL,
		s.lag_time IS NOT NULL, s.worker_memory > 0, s.round_started_at IS NOT NULL,
		s.pending_rows = 220000 - s.rows_scored
	FROM anomaly.detector_status s JOIN anomaly.detectors d USING (name)
	WHERE s.name = 'prog'});
my $in_round = $view - 20000;
ok($in_round > 0 && $in_round < 200000,
	"rows of the open round show as scored before it ends ($in_round of 200000)");
is($catalog, '20000', 'the catalog counts only committed rounds');
is($phase, 'evaluating', 'the round phase shows where it is');
ok($pending > 0, "rows are pending ($pending)");
is($pending_ok, 't', 'pending rows are the round\'s rows not yet scored');
is($eta, 't', 'an estimate of the time left while behind');
is($lag, 't', 'lag_time is defined while behind');
is($memory, 't', 'the worker\'s memory is shown');
is($started, 't', 'the round\'s start is shown');

# Let it go: everything is scored once, and nothing is pending.
$gate->query_safe('SELECT pg_advisory_unlock(58)');
$gate->quit;
wait_for(q{SELECT rows_scored FROM anomaly.detectors WHERE name = 'prog'}, '220000',
	'the large transaction is scored');
wait_for(q{SELECT rows_scored = 220000 AND pending_rows = 0
		AND (eta IS NULL OR eta < interval '1 second')
		AND round_phase IS DISTINCT FROM 'evaluating'
	FROM anomaly.detector_status WHERE name = 'prog'}, 't',
	'caught up again: nothing pending, no time left');
is(sq(q{SELECT count(*), count(DISTINCT (source_key->>'id')) FROM anomaly.scores WHERE detector = 'prog'}),
	'220000|220000', 'every row has one score');

# Progress NOTICEs of a long window-function or rcf_train run: each row
# takes at least 1 ms (pg_sleep), so by the 2048th row more than the 1 s
# interval has passed, whatever the machine's load.
sq(q{CREATE FUNCTION public.slow(g int) RETURNS float8[] LANGUAGE plpgsql AS $$
	BEGIN PERFORM pg_sleep(0.001); RETURN ARRAY[(g % 7)::float8]; END $$});
for my $case (
	[ 'random_cut_forest', q{SELECT max(s) FROM (SELECT anomaly.random_cut_forest(public.slow(g), 5, 16)
		OVER (PARTITION BY g % 2 ORDER BY g) AS s FROM generate_series(1, 3000) g) x},
	  qr/NOTICE:  random_cut_forest: \d+ rows scored in \d+ s/ ],
	# (with ORDER BY the aggregate sorts its input first, so the sleeps would
	# all be over before it learns the first point; without, it warns)
	[ 'rcf_train', q{SELECT anomaly.rcf_train(public.slow(g), 5, 16) IS NOT NULL
		FROM generate_series(1, 3000) g},
	  qr/NOTICE:  rcf_train: \d+ rows learned in \d+ s/ ])
{
	my ($name, $sql, $re) = @$case;
	my ($rc, $out, $err) = $node->psql('postgres', "SET anomaly.progress_interval = '1s'; $sql");
	like($err, $re, "$name reports progress every anomaly.progress_interval");
	($rc, $out, $err) = $node->psql('postgres', $sql);
	unlike($err, qr/NOTICE:  $name:/, "$name says nothing when anomaly.progress_interval is 0");
}

# process() on a cluster without workers.
my $man = logical_node('detect_progress_manual',
	shared_preload_libraries => "'anomaly'",
	'anomaly.detector_workers' => 0,
	fsync => 'off',
	log_min_messages => 'warning');

sub mq { return $man->safe_psql('postgres', $_[0]); }

mq(q{
	CREATE EXTENSION anomaly;
	CREATE TABLE t (id bigserial PRIMARY KEY, v double precision NOT NULL);
	SELECT anomaly.create_detector('p', 't', ARRAY['v']);
});
my $slot = mq(q{SELECT slot_name FROM anomaly.detectors WHERE name = 'p'});
my $slot_sql = "SELECT confirmed_flush_lsn || '|' || restart_lsn FROM pg_replication_slots WHERE slot_name = '$slot'";

# PostgreSQL keeps one restart point at a time for a slot, the first
# running-transactions record decoded after its last confirmation: when the
# background writer logs one (every 15 s at most) between the last call and
# the batch, restart_lsn can stop short of the batch and the next call reads
# it again.  A call with nothing new takes that step; a second batch is then
# past any such record.
my $rounds = 0;
my $ok = 0;
while (!$ok && $rounds < 3)
{
	$rounds++;
	mq(q{SELECT anomaly.process('p')});
	my ($c0) = split /\|/, $man->safe_psql('postgres', $slot_sql);
	mq(q{INSERT INTO t (v) SELECT random() FROM generate_series(1, 1000)});
	is(mq(q{SELECT anomaly.process('p')}), '1000', 'process() scores the batch');
	my ($c1, $r1) = split /\|/, $man->safe_psql('postgres', $slot_sql);
	my ($progress, $last_commit) = split /\|/, mq(q{
		SELECT progress_lsn || '|' || last_commit_lsn FROM anomaly.detectors WHERE name = 'p'});
	is(mq(qq{SELECT '$c1'::pg_lsn > '$c0'::pg_lsn AND '$c1'::pg_lsn = '$progress'::pg_lsn}), 't',
		'the slot was confirmed at the round\'s progress when process() committed');
	$ok = mq(qq{SELECT '$r1'::pg_lsn > '$last_commit'::pg_lsn}) eq 't';
	note "restart_lsn $r1, batch committed at $last_commit" unless $ok;
}
ok($ok, 'after process() committed, the slot restarts past the batch: the next call cannot decode it again');
is(mq(q{SELECT anomaly.process('p')}), '0', 'the next call has nothing to do');

# A rollback to a savepoint undoes the round: the slot stays, and the rows
# are scored by the next call.
my ($before) = split /\|/, $man->safe_psql('postgres', $slot_sql);
mq(q{INSERT INTO t (v) SELECT random() FROM generate_series(1, 500)});
mq(q{BEGIN; SAVEPOINT s; SELECT anomaly.process('p'); ROLLBACK TO s; COMMIT;});
my ($after) = split /\|/, $man->safe_psql('postgres', $slot_sql);
is($after, $before, 'a rolled-back round does not move the slot');
is(mq(q{SELECT anomaly.process('p')}), '500', 'its rows are scored by the next call');
is(mq(q{SELECT count(*), count(DISTINCT (source_key->>'id')) FROM anomaly.scores WHERE detector = 'p'}),
	($rounds * 1000 + 500) . '|' . ($rounds * 1000 + 500), 'every row has one score');

$man->stop;
$node->stop;
done_testing();
