#!/usr/bin/env bash
#
# detect.sh — continuous detectors under load (issue 5's targets).
#
#   bench/detect.sh
#
# On a throwaway cluster (bench/common.sh settings, anomaly preloaded, one
# detector worker), table ev(id, k, v, ts) and single-row INSERT transactions
# from DETECT_CLIENTS (default 8) pgbench clients, k uniform over 100 keys.
# The detector: 1 feature (v), partition by k, shingle 8, 50 trees, 256
# samples.
#
#   1. baseline   pgbench for DETECT_SECONDS (default 20) with no detector
#   2. live       the same with the detector running: insert rate (and its
#                 ratio to the baseline; target >= 0.85), whether the
#                 detector keeps up, and the commit -> score lag (scored_at -
#                 commit_time of every row; target p99 < 1 s)
#   2b. paced     pgbench --rate DETECT_RATE (default 10,000 transactions/s)
#                 for DETECT_SECONDS with the detector running: the lag when
#                 the load leaves the detector its share of the CPU
#   3. backlog    the detector paused, DETECT_BACKLOG (default 1,000,000)
#                 single-row transactions committed, then resumed: rows/s
#                 until every row is scored (target >= 30,000), wall clock
#                 and per CPU second of the worker
#   4. many keys  another detector, k uniform over DETECT_KEYS (default
#                 100,000) keys, DETECT_MANY_ROWS (default 300,000) rows as a
#                 backlog: rows/s, the worker's peak memory (VmHWM) against
#                 anomaly.detector_memory_limit, forests stored
#
# Each phase prints "phase key=value ..." lines; the last line is one
# machine-readable summary, also appended as JSON to $BENCH_JSONL when set.
#
# The machine is shared: wall-clock rates move with other processes' load.
# The load average is printed with each phase; per-CPU-second rates of the
# worker are the steadier numbers.
#
# Environment: DETECT_SECONDS, DETECT_CLIENTS, DETECT_RATE, DETECT_BACKLOG, DETECT_KEYS, DETECT_NAPTIME (ms, 50),
# DETECT_BATCH_ROWS (10000), DETECT_THREADS (2), DETECT_MANY_ROWS, DETECT_PERF (a file: perf record of the worker during the
# backlog), DETECT_PERF_MANY (the same for the many-keys phase), DETECT_SKIP (space-separated phases to skip: live
# backlog many), ANOMALY_BENCH_INSTALL=0 to use the installed extension.

set -uo pipefail

# shellcheck source=bench/detect_common.sh
. "$(dirname "${BASH_SOURCE[0]}")/detect_common.sh"

load_settings DETECT 20 8 10000
BACKLOG=${DETECT_BACKLOG:-1000000}
KEYS=${DETECT_KEYS:-100000}
MANY_ROWS=${DETECT_MANY_ROWS:-300000}
SKIP=" ${DETECT_SKIP:-} "
OPTIONS='{"number_of_trees": 50, "sub_sample_size": 256, "shingle_size": 8}'

detect_bench_start detect \
	"anomaly.detector_database = 'postgres'" \
	"anomaly.detector_naptime = ${DETECT_NAPTIME:-50}" \
	"anomaly.detector_batch_rows = ${DETECT_BATCH_ROWS:-10000}" \
	"anomaly.detector_threads = ${DETECT_THREADS:-2}" \
	"max_connections = 100" || exit 1

psql_c <<'SQL' || exit 1
CREATE EXTENSION anomaly;
CREATE TABLE ev (id bigserial PRIMARY KEY, k int NOT NULL, v float8 NOT NULL,
	ts timestamptz NOT NULL DEFAULT clock_timestamp());
CREATE TABLE ev_many (id bigserial PRIMARY KEY, k int NOT NULL, v float8 NOT NULL);
SQL

cat >"$WORK/insert.sql" <<'EOF'
\set k random(1, 100)
INSERT INTO ev (k, v) VALUES (:k, 10 * sin(:k) + random());
EOF
cat >"$WORK/insert_many.sql" <<EOF
\\set k random(1, $KEYS)
INSERT INTO ev_many (k, v) VALUES (:k, 10 * sin(:k) + random());
EOF
chmod 644 "$WORK"/*.sql

summary=""

# --- 1. baseline --------------------------------------------------------------
tps_base=$(pgbench_run "$WORK/insert.sql" -T "$SECONDS_LOAD")
echo "baseline clients=$CLIENTS seconds=$SECONDS_LOAD tps=$tps_base load=$(loadavg)"
summary+=" tps_without_detector=$tps_base"

# --- 2. live ------------------------------------------------------------------
if [[ "$SKIP" != *" live "* ]]; then
	psql_c -c "SELECT anomaly.create_detector('ev', 'ev', ARRAY['v'], partition_by => 'k', options => '$OPTIONS')" >/dev/null
	until [ -n "$(worker_pid ev)" ]; do sleep 0.2; done
	start_id=$(psql_c -c "SELECT coalesce(max(id), 0) FROM ev")
	tps_live=$(pgbench_run "$WORK/insert.sql" -T "$SECONDS_LOAD")
	t_end=$(bench_now)
	total=$(psql_c -c "SELECT count(*) FROM ev WHERE id > $start_id")
	wait_scored ev "$total"
	drain_s=$(bench_since "$t_end")
	read -r p50 p99 pmax <<<"$(psql_c -F' ' -c "
		SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY l)::numeric, 3),
		       round(percentile_cont(0.99) WITHIN GROUP (ORDER BY l)::numeric, 3),
		       round(max(l)::numeric, 3)
		FROM (SELECT extract(epoch FROM scored_at - commit_time) AS l
		      FROM anomaly.scores WHERE detector = 'ev') s")"
	ratio=$(awk -v a="$tps_live" -v b="$tps_base" 'BEGIN { printf "%.3f", a / b }')
	keeps_up=$(awk -v d="$drain_s" 'BEGIN { print (d < 2 ? "yes" : "no") }')
	echo "live tps=$tps_live ratio=$ratio rows=$total drain_after_load_s=$drain_s keeps_up=$keeps_up lag_p50_s=$p50 lag_p99_s=$p99 lag_max_s=$pmax load=$(loadavg)"
	summary+=" tps_with_detector=$tps_live insert_ratio=$ratio lag_p50_s=$p50 lag_p99_s=$p99 lag_max_s=$pmax keeps_up=$keeps_up"
	# What the detector carried, in KDA shards (1,000 records/s each): the
	# rows it scored over the load and its drain, not the insert rate (it may
	# fall behind).
	summary+=" live_detector_rows_per_s=$(awk -v r="$total" -v a="$SECONDS_LOAD" -v d="$drain_s" 'BEGIN { printf "%.0f", r / (a + d) }')"
fi

# lag_since ID: p50, p99 and max commit -> score lag of rows with id > ID.
lag_since() {
	psql_c -F' ' -c "
		SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY l)::numeric, 3),
		       round(percentile_cont(0.99) WITHIN GROUP (ORDER BY l)::numeric, 3),
		       round(max(l)::numeric, 3)
		FROM (SELECT extract(epoch FROM scored_at - commit_time) AS l
		      FROM anomaly.scores WHERE detector = 'ev' AND (source_key->>'id')::bigint > $1) s"
}

# --- 2b. paced ----------------------------------------------------------------
if [[ "$SKIP" != *" live "* ]]; then
	start_id=$(psql_c -c "SELECT coalesce(max(id), 0) FROM ev")
	before=$(psql_c -c "SELECT rows_scored FROM anomaly.detectors WHERE name = 'ev'")
	tps_paced=$(pgbench_run "$WORK/insert.sql" -T "$SECONDS_LOAD" --rate "$RATE")
	t_end=$(bench_now)
	total=$(psql_c -c "SELECT count(*) FROM ev WHERE id > $start_id")
	wait_scored ev $((before + total))
	drain_s=$(bench_since "$t_end")
	read -r p50 p99 pmax <<<"$(lag_since "$start_id")"
	keeps_up=$(awk -v d="$drain_s" 'BEGIN { print (d < 2 ? "yes" : "no") }')
	echo "paced rate=$RATE tps=$tps_paced rows=$total drain_after_load_s=$drain_s keeps_up=$keeps_up lag_p50_s=$p50 lag_p99_s=$p99 lag_max_s=$pmax load=$(loadavg)"
	summary+=" paced_tps=$tps_paced paced_lag_p50_s=$p50 paced_lag_p99_s=$p99 paced_keeps_up=$keeps_up"
	if [ "$keeps_up" = yes ]; then
		summary+=" kda_shards_sustained=$(awk -v t="$tps_paced" 'BEGIN { printf "%.0f", t / 1000 }')"
	fi
fi

# Resumes detector $1 and sets pid to its worker's; with a file name in $2,
# records a perf profile of that worker into it until stop_perf.
resume_and_watch() {
	perf_pid=
	psql_c -c "SELECT anomaly.resume_detector('$1')" >/dev/null
	until [ -n "$(worker_pid "$1")" ]; do sleep 0.1; done
	pid=$(worker_pid "$1")
	if [ -n "$2" ]; then
		perf record -q -F 499 -g -p "$pid" -o "$2" >/dev/null 2>&1 &
		perf_pid=$!
	fi
}

# Ends the profile resume_and_watch started, if any.
stop_perf() {
	if [ -n "$perf_pid" ]; then
		kill -INT "$perf_pid" && wait "$perf_pid"
	fi
	return 0
}

# --- 3. backlog ---------------------------------------------------------------
if [[ "$SKIP" != *" backlog "* ]]; then
	if [ -z "$(psql_c -c "SELECT 1 FROM anomaly.detectors WHERE name = 'ev'")" ]; then
		psql_c -c "SELECT anomaly.create_detector('ev', 'ev', ARRAY['v'], partition_by => 'k', options => '$OPTIONS')" >/dev/null
	fi
	psql_c -c "SELECT anomaly.pause_detector('ev')" >/dev/null
	while [ -n "$(worker_pid ev)" ]; do sleep 0.2; done
	before=$(psql_c -c "SELECT rows_scored FROM anomaly.detectors WHERE name = 'ev'")
	per_client=$(((BACKLOG + CLIENTS - 1) / CLIENTS))
	tps_fill=$(pgbench_run "$WORK/insert.sql" -t "$per_client")
	rows=$((per_client * CLIENTS))
	t0=$(bench_now)
	resume_and_watch ev "${DETECT_PERF:-}"
	wait_scored ev $((before + rows))
	secs=$(bench_since "$t0")
	stop_perf
	cpu=$(cpu_s "$pid")
	rate=$(awk -v r="$rows" -v s="$secs" 'BEGIN { printf "%.0f", r / s }')
	cpu_rate=$(awk -v r="$rows" -v s="$cpu" 'BEGIN { if (s > 0) printf "%.0f", r / s; else print "nan" }')
	echo "backlog rows=$rows fill_tps=$tps_fill seconds=$secs rows_per_s=$rate worker_cpu_s=$cpu rows_per_cpu_s=$cpu_rate load=$(loadavg)"
	summary+=" backlog_rows=$rows backlog_rows_per_s=$rate backlog_rows_per_cpu_s=$cpu_rate kda_shards_catch_up=$(awk -v r="$rate" 'BEGIN { printf "%.0f", r / 1000 }')"
fi

# --- 4. many keys -------------------------------------------------------------
if [[ "$SKIP" != *" many "* ]]; then
	limit=$(psql_c -c "SHOW anomaly.detector_memory_limit")
	psql_c -c "SELECT anomaly.create_detector('many', 'ev_many', ARRAY['v'], partition_by => 'k', options => '$OPTIONS')" >/dev/null
	psql_c -c "SELECT anomaly.pause_detector('many')" >/dev/null
	per_client=$(((MANY_ROWS + CLIENTS - 1) / CLIENTS))
	pgbench_run "$WORK/insert_many.sql" -t "$per_client" >/dev/null
	rows=$((per_client * CLIENTS))
	keys_used=$(psql_c -c "SELECT count(DISTINCT k) FROM ev_many")
	t0=$(bench_now)
	resume_and_watch many "${DETECT_PERF_MANY:-}"
	hwm=0
	while [ "$(psql_c -c "SELECT rows_scored >= $rows FROM anomaly.detectors WHERE name = 'many'")" != t ]; do
		h=$(awk '/VmHWM/ { print $2 }' "/proc/$pid/status" 2>/dev/null || echo 0)
		[ "${h:-0}" -gt "$hwm" ] && hwm=$h
		sleep 0.5
	done
	secs=$(bench_since "$t0")
	stop_perf
	cpu=$(cpu_s "$pid")
	h=$(awk '/VmHWM/ { print $2 }' "/proc/$pid/status" 2>/dev/null || echo 0)
	[ "${h:-0}" -gt "$hwm" ] && hwm=$h
	read -r stored table_mb <<<"$(psql_c -F' ' -c "
		SELECT count(*), round(pg_total_relation_size('anomaly.detector_forests') / 1048576.0)
		FROM anomaly.detector_forests f JOIN anomaly.detectors d ON d.id = f.detector_id
		WHERE d.name = 'many'")"
	rate=$(awk -v r="$rows" -v s="$secs" 'BEGIN { printf "%.0f", r / s }')
	hwm_mb=$((hwm / 1024))
	echo "many_keys keys=$keys_used rows=$rows seconds=$secs rows_per_s=$rate worker_cpu_s=$cpu worker_peak_rss_mb=$hwm_mb memory_limit=$limit forests_stored=$stored forests_table_mb=$table_mb load=$(loadavg)"
	summary+=" many_keys=$keys_used many_rows_per_s=$rate many_peak_rss_mb=$hwm_mb many_memory_limit=$limit many_forests_stored=$stored"
fi

failed=$(psql_c -c "SELECT coalesce(sum(rows_failed), 0) + count(*) FILTER (WHERE state <> 'active') FROM anomaly.detectors")
summary+=" failures=$failed"
echo "detect${summary}"
# shellcheck disable=SC2086
bench_json detect $summary
