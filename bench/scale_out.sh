#!/usr/bin/env bash
#
# scale_out.sh — detectors on scoring nodes fed by logical replication
# (docs/scale-out.md), with 1, 2 and 3 nodes.
#
#   bench/scale_out.sh
#
# For each node count N in SCALE_NODES (default "1 2 3"): a source cluster
# and N node clusters on this machine (bench/common.sh settings), table
# ev(id, k, v, ts) over SCALE_KEYS (default 1,000) keys, N shard
# publications (anomaly.create_shard_publications), each node subscribed
# to one (anomaly.attach_scoring_node) with the detector of bench/detect.sh
# (1 feature, shingle 8, 50 trees, 256 samples, grading on).
#
#   1. apply     the detectors paused, SCALE_ROWS (default 200,000) rows
#                committed on the source in transactions of 1,000: time
#                until every node has applied its rows; CPU seconds of the
#                source's walsenders (the publications' cost: each decodes
#                the whole WAL and filters it) and of each node
#   2. score     the detectors resumed at once: rows/s of each node until it
#                has scored its backlog, the aggregate (all rows / the
#                slowest node's time), CPU seconds per row of each node
#                (applying + scoring)
#   3. paced     SCALE_RATE (default 2,000) single-row inserts/s for
#                SCALE_SECONDS (default 15) with the detectors running:
#                replication lag (source insert -> the node's apply, a
#                column the node fills by default) and source insert ->
#                score lag, p50 and p99 over all nodes
#
# Each phase prints "phase key=value ..." lines; the last line of each N
# is one machine-readable summary ("scale_out nodes=N ..."), also appended
# as JSON to $BENCH_JSONL when set.
#
# All clusters share this machine's cores: the aggregate rows/s cannot grow
# with N here, and the CPU seconds per row are the figures to size separate
# machines with (a node's capacity is about 1 / its CPU s per row per core).
#
# Environment: SCALE_NODES, SCALE_ROWS, SCALE_KEYS, SCALE_RATE, SCALE_SECONDS,
# ANOMALY_BENCH_INSTALL=0 to use the installed extension.

set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=bench/common.sh
. "$HERE/common.sh"

NODES_LIST=${SCALE_NODES:-1 2 3}
ROWS=${SCALE_ROWS:-200000}
KEYS=${SCALE_KEYS:-1000}
RATE=${SCALE_RATE:-2000}
SECONDS_LOAD=${SCALE_SECONDS:-15}
OPTIONS='{"number_of_trees": 50, "sub_sample_size": 256, "shingle_size": 8}'

bench_install || exit 1
WORK=$(mktemp -d /tmp/anomaly-bench-scale.XXXXXX)
chmod 755 "$WORK"
DIRS=()
cleanup() {
	local d
	for d in "${DIRS[@]}"; do
		cluster_stop "$d" >/dev/null 2>&1
	done
	rm -rf "$WORK"
}
trap cleanup EXIT
BENCH_CONF+=(
	"anomaly.detector_database = 'postgres'"
	"anomaly.detector_naptime = 50"
	"anomaly.detector_threads = 1"
	"max_logical_replication_workers = 8"
	"wal_receiver_status_interval = '1s'"
	"shared_buffers = '128MB'"
	# 1,000 keys' forests (about 1.6 MB each) in memory: the figures are the
	# scoring's, not those of storing and loading forests at each key switch
	"anomaly.detector_memory_limit = '2GB'"
)

q() {
	local dir=$1
	shift
	cluster_psql "$dir" -Atq -v ON_ERROR_STOP=1 "$@"
}

# The socket directory and port of a cluster, as a connection string.
conninfo() {
	# shellcheck disable=SC1091
	(. "$1/env" && echo "host=$PGHOST port=$PGPORT dbname=postgres")
}

# CPU seconds (user + system) of every process of a cluster now (children
# of its postmaster; those that exited are not counted).
cluster_cpu() {
	local pm hz
	pm=$(head -n 1 "$1/data/postmaster.pid")
	hz=$(getconf CLK_TCK)
	ps -o pid= --ppid "$pm" | while read -r p; do cat "/proc/$p/stat" 2>/dev/null; done |
		awk -v hz="$hz" '{ s += $14 + $15 } END { printf "%.2f\n", s / hz }'
}

# CPU seconds of the walsenders of the source now.
walsender_cpu() {
	local hz
	hz=$(getconf CLK_TCK)
	for p in $(q "$1" -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'walsender'"); do
		cat "/proc/$p/stat" 2>/dev/null
	done | awk -v hz="$hz" '{ s += $14 + $15 } END { printf "%.2f\n", s / hz }'
}

# pct P: the P-quantile of the numbers on stdin (nearest rank), 3 decimals.
pct() {
	sort -g | awk -v p="$1" '{ v[NR] = $1 } END {
		i = int(NR * p) + 1; if (i > NR) i = NR
		if (NR == 0) print "nan"; else printf "%.3f\n", v[i] }'
}

for N in $NODES_LIST; do
	src="$WORK/src$N"
	ANOMALY_PRELOAD=anomaly bench_cluster_start "$src" || exit 1
	DIRS+=("$src")
	q "$src" <<SQL >/dev/null || exit 1
CREATE EXTENSION anomaly;
CREATE TABLE ev (id bigserial PRIMARY KEY, k int NOT NULL, v float8 NOT NULL,
	ts timestamptz NOT NULL DEFAULT clock_timestamp());
SELECT count(*) FROM anomaly.create_shard_publications('ev', 'k', $N);
SQL
	for ((i = 0; i < N; i++)); do
		q "$src" -c "SELECT pg_create_logical_replication_slot('ev_shard_$i', 'pgoutput')" >/dev/null || exit 1
		nd="$WORK/n$N-$i"
		ANOMALY_PRELOAD=anomaly bench_cluster_start "$nd" || exit 1
		DIRS+=("$nd")
		q "$nd" <<SQL >/dev/null || exit 1
CREATE EXTENSION anomaly;
-- applied_at is not published: the apply worker fills it with its default
CREATE TABLE ev (id bigserial PRIMARY KEY, k int NOT NULL, v float8 NOT NULL, ts timestamptz NOT NULL,
	applied_at timestamptz NOT NULL DEFAULT clock_timestamp());
SELECT anomaly.create_detector('ev', 'ev', ARRAY['v'], partition_by => 'k', options => '$OPTIONS');
SELECT anomaly.pause_detector('ev');
SELECT anomaly.attach_scoring_node('ev_sub', '$(conninfo "$src")', 'ev_shard_$i');
SQL
	done
	until [ "$(q "$src" -c "SELECT count(*) FROM pg_stat_replication")" -ge "$N" ]; do sleep 0.2; done

	# --- 1. apply -------------------------------------------------------------
	src_cpu0=$(walsender_cpu "$src")
	declare -A cpu0=()
	for ((i = 0; i < N; i++)); do cpu0[$i]=$(cluster_cpu "$WORK/n$N-$i"); done
	t0=$(bench_now)
	q "$src" -c "DO \$\$ BEGIN FOR b IN 0 .. $((ROWS / 1000 - 1)) LOOP
		INSERT INTO ev (k, v) SELECT g % $KEYS, 10 * sin(g % $KEYS) + random()
		FROM generate_series(b * 1000, b * 1000 + 999) g; COMMIT; END LOOP; END \$\$" || exit 1
	total=$(q "$src" -c "SELECT count(*) FROM ev")
	while :; do
		applied=0
		for ((i = 0; i < N; i++)); do
			applied=$((applied + $(q "$WORK/n$N-$i" -c "SELECT count(*) FROM ev")))
		done
		[ "$applied" -ge "$total" ] && break
		sleep 0.2
	done
	apply_s=$(bench_since "$t0")
	src_cpu=$(awk -v a="$src_cpu0" -v b="$(walsender_cpu "$src")" 'BEGIN { printf "%.2f", b - a }')
	src_cpu_row=$(awk -v c="$src_cpu" -v r="$total" 'BEGIN { printf "%.3g", c / r }')
	echo "apply nodes=$N rows=$total seconds=$apply_s source_walsender_cpu_s=$src_cpu source_cpu_s_per_row=$src_cpu_row load=$(cut -d' ' -f1 /proc/loadavg)"
	declare -A cpu_apply=()
	for ((i = 0; i < N; i++)); do
		cpu_apply[$i]=$(awk -v a="${cpu0[$i]}" -v b="$(cluster_cpu "$WORK/n$N-$i")" 'BEGIN { printf "%.2f", b - a }')
	done

	# --- 2. score -------------------------------------------------------------
	declare -A cpu1=() done_s=() nrows=()
	for ((i = 0; i < N; i++)); do
		cpu1[$i]=$(cluster_cpu "$WORK/n$N-$i")
		nrows[$i]=$(q "$WORK/n$N-$i" -c "SELECT count(*) FROM ev")
	done
	t0=$(bench_now)
	for ((i = 0; i < N; i++)); do q "$WORK/n$N-$i" -c "SELECT anomaly.resume_detector('ev')" >/dev/null; done
	left=$N
	while [ "$left" -gt 0 ]; do
		for ((i = 0; i < N; i++)); do
			[ -n "${done_s[$i]:-}" ] && continue
			if [ "$(q "$WORK/n$N-$i" -c "SELECT rows_scored >= ${nrows[$i]} FROM anomaly.detectors WHERE name = 'ev'")" = t ]; then
				done_s[$i]=$(bench_since "$t0")
				left=$((left - 1))
			fi
		done
		sleep 0.1
	done
	slowest=0
	per_node=""
	for ((i = 0; i < N; i++)); do
		c=$(awk -v a="${cpu1[$i]}" -v b="$(cluster_cpu "$WORK/n$N-$i")" 'BEGIN { printf "%.2f", b - a }')
		rps=$(awk -v r="${nrows[$i]}" -v s="${done_s[$i]}" 'BEGIN { printf "%.0f", r / s }')
		cpr=$(awk -v a="${cpu_apply[$i]}" -v c="$c" -v r="${nrows[$i]}" 'BEGIN { printf "%.3g", (a + c) / r }')
		spr=$(awk -v c="$c" -v r="${nrows[$i]}" 'BEGIN { printf "%.3g", c / r }')
		echo "score nodes=$N node=$i rows=${nrows[$i]} seconds=${done_s[$i]} rows_per_s=$rps apply_cpu_s=${cpu_apply[$i]} score_cpu_s=$c cpu_s_per_row=$cpr score_cpu_s_per_row=$spr"
		per_node+=" node${i}_rows_per_s=$rps node${i}_cpu_s_per_row=$cpr"
		slowest=$(awk -v a="$slowest" -v b="${done_s[$i]}" 'BEGIN { print (b > a ? b : a) }')
	done
	agg=$(awk -v r="$total" -v s="$slowest" 'BEGIN { printf "%.0f", r / s }')
	echo "score nodes=$N aggregate_rows_per_s=$agg load=$(cut -d' ' -f1 /proc/loadavg)"

	# --- 3. paced -------------------------------------------------------------
	start_id=$(q "$src" -c "SELECT max(id) FROM ev")
	cat >"$WORK/insert.sql" <<EOF
\\set k random(0, $((KEYS - 1)))
INSERT INTO ev (k, v) VALUES (:k, 10 * sin(:k) + random());
EOF
	chmod 644 "$WORK/insert.sql"
	(
		# shellcheck disable=SC1091
		. "$src/env"
		cluster_as_user "$(cluster_bindir)/pgbench" -n -c 4 -j 2 -R "$RATE" -T "$SECONDS_LOAD" \
			-f "$WORK/insert.sql" postgres >/dev/null 2>&1
	)
	total=$(q "$src" -c "SELECT count(*) FROM ev WHERE id > $start_id")
	for ((i = 0; i < N; i++)); do
		until [ "$(q "$WORK/n$N-$i" -c "SELECT count(*) FROM anomaly.scores s JOIN ev ON ev.id = (s.source_key->>'id')::bigint WHERE ev.id > $start_id")" -ge \
			"$(q "$WORK/n$N-$i" -c "SELECT count(*) FROM ev WHERE id > $start_id")" ]; do
			sleep 0.2
		done
	done
	: >"$WORK/lags"
	for ((i = 0; i < N; i++)); do
		q "$WORK/n$N-$i" -F' ' -c "SELECT extract(epoch FROM ev.applied_at - ev.ts), extract(epoch FROM s.scored_at - ev.ts)
			FROM anomaly.scores s JOIN ev ON ev.id = (s.source_key->>'id')::bigint WHERE ev.id > $start_id" >>"$WORK/lags"
	done
	r50=$(cut -d' ' -f1 "$WORK/lags" | pct 0.5)
	r99=$(cut -d' ' -f1 "$WORK/lags" | pct 0.99)
	s50=$(cut -d' ' -f2 "$WORK/lags" | pct 0.5)
	s99=$(cut -d' ' -f2 "$WORK/lags" | pct 0.99)
	echo "paced nodes=$N rate=$RATE seconds=$SECONDS_LOAD rows=$total replication_lag_p50_s=$r50 replication_lag_p99_s=$r99 score_lag_p50_s=$s50 score_lag_p99_s=$s99"

	line="nodes=$N rows=$ROWS keys=$KEYS aggregate_rows_per_s=$agg$per_node source_cpu_s_per_row=$src_cpu_row replication_lag_p50_s=$r50 replication_lag_p99_s=$r99 score_lag_p50_s=$s50 score_lag_p99_s=$s99 load=$(cut -d' ' -f1 /proc/loadavg)"
	echo "scale_out $line"
	bench_json scale_out "$line"

	for d in "$src" "$WORK"/n"$N"-*; do cluster_stop "$d" >/dev/null 2>&1; done
	unset cpu0 cpu_apply cpu1 done_s nrows
done
