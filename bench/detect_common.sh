# shellcheck shell=bash
#
# detect_common.sh — helpers of the detector benchmarks (bench/detect.sh,
# bench/detect_partitions.sh, bench/detect_window.sh,
# bench/process_backlog.sh); sourcing it sources bench/common.sh too.  They
# work on the cluster in $WORK/pg.

# shellcheck source=bench/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# detect_bench_start NAME SETTING...: builds and installs the extension,
# makes the work directory $WORK (/tmp/anomaly-bench-NAME.*, removed with
# its cluster on exit) and starts the cluster $WORK/pg with the benchmark
# settings, wal_level = logical and the given settings, anomaly preloaded.
detect_bench_start() {
	local name=$1
	shift
	bench_install || return 1
	WORK=$(mktemp -d "/tmp/anomaly-bench-$name.XXXXXX")
	chmod 755 "$WORK"
	trap 'cluster_stop "$WORK/pg" >/dev/null 2>&1; rm -rf "$WORK"' EXIT
	BENCH_CONF+=("wal_level = logical" "$@")
	ANOMALY_PRELOAD=anomaly bench_cluster_start "$WORK/pg"
}

# load_settings PREFIX SECONDS CLIENTS RATE: the pgbench load of a
# benchmark, SECONDS_LOAD, CLIENTS and RATE (transactions per second), from
# the environment's PREFIX_SECONDS, PREFIX_CLIENTS and PREFIX_RATE, else
# the given defaults.
load_settings() {
	local s=${1}_SECONDS c=${1}_CLIENTS r=${1}_RATE
	SECONDS_LOAD=${!s:-$2}
	CLIENTS=${!c:-$3}
	RATE=${!r:-$4}
}

# pgbench_run SCRIPT ARGS...: pgbench with SCRIPT and ARGS, $CLIENTS
# clients on 2 threads, on the benchmark's cluster; prints the tps.
pgbench_run() {
	local script=$1
	shift
	(
		# shellcheck disable=SC1091
		. "$WORK/pg/env"
		cluster_as_user "$(cluster_bindir)/pgbench" -n -c "$CLIENTS" -j 2 -f "$script" "$@" postgres
	) 2>&1 | awk '/^tps/ { print $3 }'
}

# psql on the benchmark's cluster, unaligned, tuples only.
psql_c() {
	cluster_psql "$WORK/pg" -Atq "$@"
}

# The 1-minute load average, printed with each figure.
loadavg() {
	cut -d' ' -f1 /proc/loadavg
}

# The PID of a detector's worker ("" when none).
worker_pid() {
	psql_c -c "SELECT worker_pid FROM anomaly.detector_status WHERE name = '$1'"
}

# CPU seconds (user + system) a process used so far.
cpu_s() {
	awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f\n", ($14 + $15) / hz }' "/proc/$1/stat" 2>/dev/null || echo 0
}

# wait_scored NAME N: waits until detector NAME has scored N rows.
wait_scored() {
	while [ "$(psql_c -c "SELECT rows_scored >= $2 FROM anomaly.detectors WHERE name = '$1'")" != t ]; do
		sleep 0.2
	done
}
