#!/usr/bin/env bash
#
# sql_window.sh — anomaly.random_cut_forest as a SQL window function against
# the engine alone, on the same values in the same order.
#
#   bench/sql_window.sh
#
# On a throwaway cluster, builds big(t, v): SQL_ROWS (default 1,000,000) rows
# of a seasonal 1-D series (periods 288 and 2016) with uniform noise and a
# spike every 9973 rows, from a fixed seed.  Then, SQL_REPEAT times (default
# 3), in this order so that each round's numbers share the machine's load:
#   floor   SELECT count(rn) FROM (SELECT row_number() OVER (ORDER BY t) AS rn
#           FROM big) s   (scan + sort + window machinery: what SQL costs
#           around any window function)
#   sql     SELECT count(s) FROM (SELECT anomaly.random_cut_forest(ARRAY[v])
#           OVER (ORDER BY t) AS s FROM big) q   (KDA defaults, seed 42)
#   engine  bench/engine --input FILE, FILE = the same v in t order, exported
#           with COPY (shortest exact float8 text, so the engine reads the
#           very same doubles); same parameters
# count(s), not count(*): with count(*) the planner drops the unreferenced
# window function from the subquery (remove_unused_subquery_outputs; it is
# not volatile) and the query only scans the table.  The script checks that
# both plans contain a WindowAgg.
# Times are wall-clock: psql's \timing for SQL, the engine's own clock over
# all rows (warm-up included) for the engine.  ratio = sql rows/s divided by
# engine rows/s, per round; the median of the rounds' ratios is reported
# (target: >= 0.75).  On a shared machine wall-clock ratios swing with the
# other processes' load, so CPU times are measured too (the backend's own
# utime + stime from /proc/self/stat, read with pg_read_file, 10 ms ticks;
# the engine's CLOCK_PROCESS_CPUTIME_ID) and cpu_ratio = engine CPU seconds /
# SQL CPU seconds is reported beside it: it is the steadier number.
#
# Before timing, a correctness check: the sum of the first CHECK_ROWS (default
# 50,000) scores must be the same in SQL and in the engine.
#
# Prints per-round lines, then one machine-readable line:
#   sql_rows_per_s=.. engine_rows_per_s=.. ratio=.. floor_rows_per_s=.. ...
#
# Environment: SQL_ROWS, SQL_REPEAT, CHECK_ROWS; ANOMALY_BENCH_INSTALL=0 to
# skip building and installing the extension; BENCH_JSONL to append the
# result as a JSON line.

set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=bench/common.sh
. "$HERE/common.sh"
ROOT=$BENCH_ROOT

ROWS=${SQL_ROWS:-1000000}
REPEAT=${SQL_REPEAT:-3}
CHECK_ROWS=${CHECK_ROWS:-50000}
[ "$CHECK_ROWS" -le "$ROWS" ] || CHECK_ROWS=$ROWS
ENGINE_ARGS=(--trees 100 --samples 256 --shingle 1 --time-decay 100000 --seed 42)

T_START=$(bench_now)
WORK=$(mktemp -d /tmp/anomaly-sqlwin.XXXXXX)
chmod 755 "$WORK"
cleanup() {
	local rc=$?
	cluster_stop "$WORK/pg" --rm >/dev/null 2>&1 || true
	rm -rf "$WORK"
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

bench_install
make -s -C "$ROOT" bench/engine >/dev/null
ENGINE=$ROOT/bench/engine
bench_cluster_start "$WORK/pg"

psql_q() {
	cluster_psql "$WORK/pg" -qAt "$@"
}

# The backend's CPU time so far, in clock ticks (utime + stime).
CPU_TICKS="split_part(st, ' ', 14)::bigint + split_part(st, ' ', 15)::bigint"
CPU_FROM="FROM pg_read_file('/proc/self/stat') AS st"
TICKS_PER_S=$(getconf CLK_TCK)

# Runs one query under \timing; prints its wall-clock and CPU seconds.
time_query() {
	local out ms ticks
	out=$(psql_q <<-EOF
		SELECT $CPU_TICKS AS t $CPU_FROM \\gset c0_
		\\timing on
		$1;
		\\timing off
		SELECT $CPU_TICKS - :c0_t $CPU_FROM;
	EOF
	)
	ms=$(echo "$out" | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p')
	ticks=$(echo "$out" | tail -n 1)
	[ -n "$ms" ] && [[ "$ticks" =~ ^[0-9]+$ ]] || { bench_log "no timing in: $out"; return 1; }
	awk -v ms="$ms" -v t="$ticks" -v hz="$TICKS_PER_S" 'BEGIN { printf "%.3f %.3f\n", ms / 1000, t / hz }'
}

field() {
	sed -n "s/.*\\b$1=\\([^ ]*\\).*/\\1/p"
}

T_LOAD=$(bench_now)
psql_q <<EOF
SET client_min_messages = warning;
CREATE EXTENSION anomaly;
SELECT setseed(0.42) \\g /dev/null
CREATE TABLE big AS
	SELECT t::bigint AS t,
		10 * sin(2 * pi() * t / 288) + 3 * sin(2 * pi() * t / 2016)
		+ (random() - 0.5)
		+ CASE WHEN t % 9973 = 0 THEN 25 ELSE 0 END AS v
	FROM generate_series(1, $ROWS) t;
VACUUM ANALYZE big;
\\copy (SELECT v FROM big ORDER BY t) TO '$WORK/values.csv'
EOF
echo "sql_window: $ROWS rows loaded and exported in $(bench_since "$T_LOAD")s"
[ "$(wc -l <"$WORK/values.csv")" -eq "$ROWS" ] || { bench_log "export has the wrong number of rows"; exit 1; }

# Correctness: same scores in SQL and in the engine on a prefix.
head -n "$CHECK_ROWS" "$WORK/values.csv" >"$WORK/prefix.csv"
ENGINE_SUM=$("$ENGINE" --input "$WORK/prefix.csv" "${ENGINE_ARGS[@]}" | field checksum)
SQL_SUM=$(psql_q -c "SELECT sum(s) FROM (SELECT anomaly.random_cut_forest(ARRAY[v]) OVER (ORDER BY t) AS s FROM big WHERE t <= $CHECK_ROWS) q")
if awk -v a="$ENGINE_SUM" -v b="$SQL_SUM" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= 1e-6 + 1e-9 * (a < 0 ? -a : a)) }'; then
	CHECK=ok
else
	CHECK=mismatch
fi
echo "sql_window: check over $CHECK_ROWS rows: engine sum=$ENGINE_SUM sql sum=$SQL_SUM -> $CHECK"

Q_FLOOR="SELECT count(rn) FROM (SELECT row_number() OVER (ORDER BY t) AS rn FROM big) s"
Q_SQL="SELECT count(s) FROM (SELECT anomaly.random_cut_forest(ARRAY[v]) OVER (ORDER BY t) AS s FROM big) q"
for q in "$Q_FLOOR" "$Q_SQL"; do
	if ! psql_q -c "EXPLAIN $q" | grep -q WindowAgg; then
		psql_q -c "EXPLAIN $q" >&2
		bench_log "the plan has no WindowAgg: the window function would not run"
		exit 1
	fi
done

# Warm the buffer cache.
time_query "$Q_FLOOR" >/dev/null

: >"$WORK/rounds"
for r in $(seq 1 "$REPEAT"); do
	t=$(time_query "$Q_FLOOR")
	read -r floor_s floor_cpu <<<"$t"
	t=$(time_query "$Q_SQL")
	read -r sql_s sql_cpu <<<"$t"
	eng=$("$ENGINE" --input "$WORK/values.csv" "${ENGINE_ARGS[@]}")
	eng_s=$(echo "$eng" | field seconds)
	eng_cpu=$(echo "$eng" | field cpu_seconds)
	line=$(awk -v r="$r" -v n="$ROWS" -v f="$floor_s" -v s="$sql_s" -v e="$eng_s" \
		-v fc="$floor_cpu" -v sc="$sql_cpu" -v ec="$eng_cpu" 'BEGIN {
		printf "round=%d floor_seconds=%.3f sql_seconds=%.3f engine_seconds=%.3f floor_rows_per_s=%.0f sql_rows_per_s=%.0f engine_rows_per_s=%.0f ratio=%.4f floor_cpu_seconds=%.2f sql_cpu_seconds=%.2f engine_cpu_seconds=%.2f cpu_ratio=%.4f\n",
			r, f, s, e, n / f, n / s, n / e, e / s, fc, sc, ec, (sc > 0 ? ec / sc : 0) }')
	echo "$line"
	echo "$line" >>"$WORK/rounds"
done

med() {
	field "$1" <"$WORK/rounds" | bench_median
}
SUMMARY=$(awk -v n="$ROWS" -v sql="$(med sql_rows_per_s)" -v eng="$(med engine_rows_per_s)" \
	-v ratio="$(med ratio)" -v floor="$(med floor_rows_per_s)" \
	-v ss="$(med sql_seconds)" -v es="$(med engine_seconds)" -v fs="$(med floor_seconds)" \
	-v cratio="$(med cpu_ratio)" -v scpu="$(med sql_cpu_seconds)" -v ecpu="$(med engine_cpu_seconds)" \
	-v check="$CHECK" -v rep="$REPEAT" 'BEGIN {
	printf "sql_rows_per_s=%.0f engine_rows_per_s=%.0f ratio=%.3f cpu_ratio=%.3f floor_rows_per_s=%.0f sql_seconds=%.3f engine_seconds=%.3f floor_seconds=%.3f sql_cpu_seconds=%.2f engine_cpu_seconds=%.2f sql_overhead_us_per_row=%.3f sql_cpu_overhead_us_per_row=%.3f rows=%d repeat=%d check=%s\n",
		sql, eng, ratio, cratio, floor, ss, es, fs, scpu, ecpu, (ss - es) * 1e6 / n, (scpu - ecpu) * 1e6 / n, n, rep, check }')
echo "$SUMMARY"
bench_json sql_window "$SUMMARY"
echo "sql_window: done in $(bench_since "$T_START")s"
[ "$CHECK" = ok ]
