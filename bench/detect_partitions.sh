#!/usr/bin/env bash
#
# detect_partitions.sh — what a partitioned source costs a detector.
#
#   bench/detect_partitions.sh
#
# On a throwaway cluster (bench/common.sh settings, anomaly preloaded), two
# tables with the same rows: "plain", and "parted", partitioned by range
# of k into PARTS_N (default 4) partitions, every other one made apart
# with its columns in another order and a dropped column, then attached
# (so the output plugin maps their rows to the parent's columns).  One
# detector on each (issue 5's benchmark detector: 1 feature, partition by
# k over 100 keys, shingle 8, 50 trees, 256 samples), paused while
# PARTS_ROWS (default 300,000) single-row INSERT transactions from 8
# pgbench clients go into each table, then resumed one after the other:
# rows/s until all are scored, and per CPU second of the worker.  The
# ratio parted/plain is measured within one run; the machine is shared,
# so the load average is printed too.
#
# Environment: PARTS_ROWS, PARTS_N, ANOMALY_BENCH_INSTALL=0 to use the
# installed extension.

set -uo pipefail

# shellcheck source=bench/detect_common.sh
. "$(dirname "${BASH_SOURCE[0]}")/detect_common.sh"

ROWS=${PARTS_ROWS:-300000}
NPARTS=${PARTS_N:-4}
CLIENTS=8
OPTIONS='{"number_of_trees": 50, "sub_sample_size": 256, "shingle_size": 8}'

detect_bench_start parts \
	"anomaly.detector_database = 'postgres'" \
	"anomaly.detector_naptime = 50" || exit 1

# The partitions: [lo, hi) ranges of k over 1..100.
{
	echo "CREATE EXTENSION anomaly;"
	echo "CREATE TABLE plain (id bigserial PRIMARY KEY, k int NOT NULL, v float8 NOT NULL);"
	echo "CREATE TABLE parted (id bigserial, k int NOT NULL, v float8 NOT NULL, PRIMARY KEY (id, k)) PARTITION BY RANGE (k);"
	for ((p = 0; p < NPARTS; p++)); do
		lo=$((1 + p * 100 / NPARTS))
		hi=$((1 + (p + 1) * 100 / NPARTS))
		if ((p % 2)); then
			echo "CREATE TABLE parted_$p (junk int, v float8 NOT NULL, k int NOT NULL, id bigint NOT NULL DEFAULT nextval('parted_id_seq'));"
			echo "ALTER TABLE parted_$p DROP COLUMN junk;"
			echo "ALTER TABLE parted ATTACH PARTITION parted_$p FOR VALUES FROM ($lo) TO ($hi);"
		else
			echo "CREATE TABLE parted_$p PARTITION OF parted FOR VALUES FROM ($lo) TO ($hi);"
		fi
	done
	for t in plain parted; do
		echo "SELECT anomaly.create_detector('$t', '$t', ARRAY['v'], partition_by => 'k', options => '$OPTIONS');"
		echo "SELECT anomaly.pause_detector('$t');"
	done
} | psql_c >/dev/null || exit 1

for t in plain parted; do
	cat >"$WORK/$t.sql" <<EOF
\\set k random(1, 100)
INSERT INTO $t (k, v) VALUES (:k, 10 * sin(:k) + random());
EOF
done
chmod 644 "$WORK"/*.sql

per_client=$(((ROWS + CLIENTS - 1) / CLIENTS))
rows=$((per_client * CLIENTS))
for t in plain parted; do
	pgbench_run "$WORK/$t.sql" -t "$per_client" >/dev/null
done

summary=""
declare -A rate cpu_rate
for t in plain parted; do
	while [ -n "$(worker_pid "$t")" ]; do sleep 0.2; done
	t0=$(bench_now)
	psql_c -c "SELECT anomaly.resume_detector('$t')" >/dev/null
	until [ -n "$(worker_pid "$t")" ]; do sleep 0.05; done
	pid=$(worker_pid "$t")
	while [ "$(psql_c -c "SELECT rows_scored >= $rows FROM anomaly.detectors WHERE name = '$t'")" != t ]; do
		sleep 0.1
	done
	secs=$(bench_since "$t0")
	cpu=$(cpu_s "$pid")
	psql_c -c "SELECT anomaly.pause_detector('$t')" >/dev/null
	rate[$t]=$(awk -v r="$rows" -v s="$secs" 'BEGIN { printf "%.0f", r / s }')
	cpu_rate[$t]=$(awk -v r="$rows" -v s="$cpu" 'BEGIN { if (s > 0) printf "%.0f", r / s; else print "nan" }')
	echo "$t rows=$rows seconds=$secs rows_per_s=${rate[$t]} worker_cpu_s=$cpu rows_per_cpu_s=${cpu_rate[$t]} load=$(loadavg)"
	summary+=" ${t}_rows_per_s=${rate[$t]} ${t}_rows_per_cpu_s=${cpu_rate[$t]}"
done

ratio=$(awk -v a="${cpu_rate[parted]}" -v b="${cpu_rate[plain]}" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "nan" }')
failed=$(psql_c -c "SELECT coalesce(sum(rows_failed), 0) + count(*) FILTER (WHERE state = 'failed') FROM anomaly.detectors")
summary+=" partitions=$NPARTS parted_over_plain_per_cpu_s=$ratio failures=$failed"
echo "detect_partitions${summary}"
# shellcheck disable=SC2086
bench_json detect_partitions $summary
