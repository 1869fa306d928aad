# detect_common.sh — helpers of the detector benchmarks (bench/detect.sh,
# bench/detect_partitions.sh), sourced after bench/common.sh.  They work on
# the cluster in $WORK/pg.

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
