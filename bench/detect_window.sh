#!/usr/bin/env bash
#
# detect_window.sh — a windowed detector's lag from a window's end to its
# score (issue 17: results seconds after the window closes, not minutes).
#
#   bench/detect_window.sh
#
# On a throwaway cluster (bench/common.sh settings, anomaly preloaded, the
# detector worker at its default naptime), table ticks(id, ticker, price,
# ts DEFAULT clock_timestamp()) and single-row INSERT transactions from
# WINDOW_CLIENTS (default 4) pgbench clients paced at WINDOW_RATE (default
# 500) transactions/s in all, over WINDOW_KEYS (default 20) tickers, for
# WINDOW_SECONDS (default 30).  The detector: tumbling windows of
# WINDOW_SIZE (default '1 second') over ts, allowed_lateness WINDOW_LATENESS
# (default '100 milliseconds'), features avg(price), max(price) - min(price)
# and count(*), partitioned by ticker, 50 trees, 64 samples.
#
# For each window scored: lag = scored_at - window end.  It includes the
# allowed lateness (a window waits for it by definition), the wait for a row
# past it (about 1 / rate), the naptime and the round.  Rows committed out
# of their event-time order by more than the lateness (concurrent clients:
# clock_timestamp() is taken before the commit) are late; their number is
# printed.
#
# Output: one line per figure, then one machine-readable summary line
# ("detect_window k=v ..."), also appended as JSON to $BENCH_JSONL when set:
#   windows, late_rows, lag_p50_s, lag_p99_s, lag_max_s,
#   lag_minus_lateness_p50_s, lag_minus_lateness_p99_s
#
# Environment: WINDOW_SECONDS, WINDOW_CLIENTS, WINDOW_RATE, WINDOW_KEYS,
# WINDOW_SIZE, WINDOW_LATENESS, WINDOW_NAPTIME (ms, 50),
# ANOMALY_BENCH_INSTALL=0 to use the installed extension.
#
#   bench/detect_window.sh rounds
#
# The cost of one round of a detector whose windows hold many rows: no
# worker (anomaly.detector_workers = 0), rounds run by process().  For each
# kind in ROUNDS_KINDS (default "stagger tumbling") and each buffer size in
# ROUNDS_BUFFERED (default "10000 100000"): a detector with a '1 day' window
# over ts, partitioned by ticker (ROUNDS_KEYS, default 20, keys), count(*)
# and avg(price), is given that many rows 100 ms of event time apart, all in
# open windows; then ROUNDS_N (default 30) rounds each take one new row per
# key (still in the open windows, nothing closes) and the time of each
# process() call is taken by psql's \timing.  Then one row a day later
# closes every window (close_ms: a round that scores the keys' windows and
# reads their rows).  Summary lines ("detect_window_rounds k=v ...", also
# JSON in $BENCH_JSONL): kind, buffered, rounds, round_ms_p50, round_ms_min,
# round_ms_max, close_ms, windows (scored by the closing round).

set -uo pipefail

# shellcheck source=bench/detect_common.sh
. "$(dirname "${BASH_SOURCE[0]}")/detect_common.sh"

if [ "${1:-}" = rounds ]; then
	KEYS=${ROUNDS_KEYS:-20}
	NROUNDS=${ROUNDS_N:-30}
	detect_bench_start rounds "anomaly.detector_workers = 0" || exit 1
	psql_c -c "CREATE EXTENSION anomaly" >/dev/null || exit 1
	base="timestamptz '2026-01-01 00:00:00+00'"
	for kind in ${ROUNDS_KINDS:-stagger tumbling}; do
		for n in ${ROUNDS_BUFFERED:-10000 100000}; do
			t="r_${kind}_$n"
			stagger=$([ "$kind" = stagger ] && echo ', "stagger": true' || true)
			psql_c <<SQL >/dev/null || exit 1
CREATE TABLE $t (id bigserial PRIMARY KEY, ticker int NOT NULL, price float8 NOT NULL,
	ts timestamptz NOT NULL);
SELECT anomaly.create_detector('$t', '$t', ARRAY['count(*)', 'avg(price)'], partition_by => 'ticker',
	options => '{"window": "1 day", "time_column": "ts"$stagger,
		"number_of_trees": 50, "sub_sample_size": 64}');
SELECT anomaly.process('$t');
INSERT INTO $t (ticker, price, ts)
	SELECT g % $KEYS, 100 + random(), $base + g * interval '100 ms' FROM generate_series(1, $n) g;
SQL
			until [ "$(psql_c -c "SELECT rows_buffered FROM anomaly.detector_windows w
				JOIN anomaly.detectors d ON d.id = w.detector_id WHERE d.name = '$t'")" = "$n" ]; do
				psql_c -c "SELECT anomaly.process('$t')" >/dev/null || exit 1
			done
			{
				echo '\timing on'
				for r in $(seq 1 "$NROUNDS"); do
					echo "INSERT INTO $t (ticker, price, ts) SELECT k, 100 + random(),"
					echo "  $base + ($n + $r) * interval '100 ms' + k * interval '1 ms' FROM generate_series(0, $KEYS - 1) k;"
					echo "SELECT 'round', anomaly.process('$t');"
				done
				echo "INSERT INTO $t (ticker, price, ts) VALUES (0, 100, $base + interval '2 days');"
				echo "SELECT 'close', anomaly.process('$t');"
			} >"$WORK/$t.sql"
			psql_c -f "$WORK/$t.sql" >"$WORK/$t.out" 2>&1 || { cat "$WORK/$t.out"; exit 1; }
			# each process() line, then its time
			times=$(awk '/^round\|/ { want = 1; next } want && /^Time:/ { print $2; want = 0 }' "$WORK/$t.out")
			close_ms=$(awk '/^close\|/ { want = 1; next } want && /^Time:/ { print $2; want = 0 }' "$WORK/$t.out")
			windows=$(psql_c -c "SELECT count(*) FROM anomaly.scores WHERE detector = '$t'")
			p50=$(echo "$times" | bench_median)
			lo=$(echo "$times" | sort -g | head -1)
			hi=$(echo "$times" | sort -g | tail -1)
			summary="kind=$kind buffered=$n keys=$KEYS rounds=$(echo "$times" | wc -l) round_ms_p50=$p50 round_ms_min=$lo round_ms_max=$hi close_ms=$close_ms windows=$windows"
			echo "detect_window_rounds $summary load=$(loadavg)"
			# shellcheck disable=SC2086
			bench_json detect_window_rounds $summary
		done
	done
	exit 0
fi

load_settings WINDOW 30 4 500
KEYS=${WINDOW_KEYS:-20}
SIZE=${WINDOW_SIZE:-1 second}
LATENESS=${WINDOW_LATENESS:-100 milliseconds}

detect_bench_start window \
	"anomaly.detector_database = 'postgres'" \
	"anomaly.detector_naptime = ${WINDOW_NAPTIME:-50}" || exit 1

psql_c <<SQL >/dev/null || exit 1
CREATE EXTENSION anomaly;
CREATE TABLE ticks (id bigserial PRIMARY KEY, ticker int NOT NULL, price float8 NOT NULL,
	ts timestamptz NOT NULL DEFAULT clock_timestamp());
SELECT anomaly.create_detector('win', 'ticks',
	ARRAY['avg(price)', 'max(price) - min(price)', 'count(*)'], partition_by => 'ticker',
	options => '{"window": "$SIZE", "allowed_lateness": "$LATENESS", "time_column": "ts",
		"number_of_trees": 50, "sub_sample_size": 64}');
SQL

cat >"$WORK/insert.sql" <<EOF
\\set k random(1, $KEYS)
INSERT INTO ticks (ticker, price) VALUES (:k, 100 + 10 * sin(:k) + random());
EOF
chmod 644 "$WORK"/*.sql

until [ -n "$(worker_pid win)" ]; do sleep 0.2; done
tps=$(pgbench_run "$WORK/insert.sql" -R "$RATE" -T "$SECONDS_LOAD")
# One last tick far enough ahead closes the windows of the load.
psql_c -c "INSERT INTO ticks (ticker, price, ts) VALUES (0, 100, clock_timestamp() + interval '1 hour')" >/dev/null
until [ "$(psql_c -c "SELECT max_event_time > now() FROM anomaly.detector_windows")" = t ]; do
	sleep 0.2
done

lateness_s=$(psql_c -c "SELECT extract(epoch FROM interval '$LATENESS')")
# Windows closed by the load's own ticks (not by the last one).
read -r windows p50 p99 pmax q50 q99 <<<"$(psql_c -F' ' -c "
	WITH l AS (
		SELECT extract(epoch FROM scored_at - (source_key->>'window_end')::timestamptz) AS lag
		FROM anomaly.scores WHERE detector = 'win'
		  AND (source_key->>'window_end')::timestamptz
		      <= (SELECT max(ts) FROM ticks WHERE ticker <> 0) - interval '$LATENESS')
	SELECT count(*),
	       round(percentile_cont(0.5) WITHIN GROUP (ORDER BY lag)::numeric, 3),
	       round(percentile_cont(0.99) WITHIN GROUP (ORDER BY lag)::numeric, 3),
	       round(max(lag)::numeric, 3),
	       round(percentile_cont(0.5) WITHIN GROUP (ORDER BY lag - $lateness_s)::numeric, 3),
	       round(percentile_cont(0.99) WITHIN GROUP (ORDER BY lag - $lateness_s)::numeric, 3)
	FROM l")"
late=$(psql_c -c "SELECT late_rows FROM anomaly.detector_windows")
rows=$(psql_c -c "SELECT count(*) FROM ticks")
failed=$(psql_c -c "SELECT rows_failed FROM anomaly.detectors WHERE name = 'win'")

echo "load clients=$CLIENTS rate=$RATE tps=$tps seconds=$SECONDS_LOAD keys=$KEYS rows=$rows load=$(loadavg)"
echo "lag window=\"$SIZE\" allowed_lateness_s=$lateness_s windows=$windows p50_s=$p50 p99_s=$p99 max_s=$pmax beyond_lateness_p50_s=$q50 beyond_lateness_p99_s=$q99 late_rows=$late"
summary="windows=$windows late_rows=$late rows=$rows tps=$tps lag_p50_s=$p50 lag_p99_s=$p99 lag_max_s=$pmax lag_minus_lateness_p50_s=$q50 lag_minus_lateness_p99_s=$q99 allowed_lateness_s=$lateness_s failures=$failed"
echo "detect_window $summary"
# shellcheck disable=SC2086
bench_json detect_window $summary
