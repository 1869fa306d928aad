# shellcheck shell=bash
#
# common.sh — sourced by the benchmark scripts (nab.sh, nab_all.sh,
# sql_window.sh, run.sh); not run on its own.
#
#   bench_install              build and install the extension (unless
#                              ANOMALY_BENCH_INSTALL=0: then only check that
#                              it is installed)
#   bench_cluster_start DIR    a throwaway cluster (test/cluster.sh) with the
#                              benchmark settings below
#   bench_now, bench_since T   time stamps and seconds elapsed
#   bench_median               median of the numbers on stdin
#   bench_json KIND K=V...     append one JSON object to $BENCH_JSONL, when set
#
# Benchmark clusters preload anomaly and nothing else (ANOMALY_PRELOAD
# overrides): the postmaster maps the library once and every backend
# inherits it, so a "make install" run by someone else during a benchmark
# (install replaces the file) does not change the code under it half-way.
# They turn JIT and parallel query off (a window function runs in one
# process anyway), give sorts enough work_mem to stay in memory, and turn
# autovacuum off (the scripts VACUUM ANALYZE after loading).

BENCH_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=test/cluster.sh
. "$BENCH_ROOT/test/cluster.sh"

BENCH_CONF=(
	"jit = off"
	"max_parallel_workers_per_gather = 0"
	"shared_buffers = '256MB'"
	"work_mem = '256MB'"
	"maintenance_work_mem = '256MB'"
	"autovacuum = off"
	"max_wal_size = '4GB'"
	"synchronous_commit = off"
)

bench_log() {
	echo "$(basename "$0"): $*" >&2
}

bench_install() {
	local log
	if [ "${ANOMALY_BENCH_INSTALL:-1}" = 0 ]; then
		if [ ! -e "$("$PG_CONFIG" --sharedir)/extension/anomaly.control" ]; then
			bench_log "anomaly is not installed (ANOMALY_BENCH_INSTALL=0): run 'make install'"
			return 1
		fi
		return 0
	fi
	log=$(mktemp /tmp/anomaly-bench-build.XXXXXX)
	local sudo=
	if [ "$(id -u)" -ne 0 ] && ! [ -w "$("$PG_CONFIG" --pkglibdir)" ]; then
		sudo=sudo
	fi
	if make -C "$BENCH_ROOT" -j"$(nproc 2>/dev/null || echo 2)" PG_CONFIG="$PG_CONFIG" >"$log" 2>&1 &&
		$sudo make -C "$BENCH_ROOT" install PG_CONFIG="$PG_CONFIG" >>"$log" 2>&1; then
		rm -f "$log"
		return 0
	fi
	tail -n 40 "$log" >&2
	bench_log "build or install failed (log: $log); ANOMALY_BENCH_INSTALL=0 uses what is installed"
	return 1
}

bench_cluster_start() {
	ANOMALY_PRELOAD=${ANOMALY_PRELOAD-anomaly} cluster_start "$1" auto "${BENCH_CONF[@]}"
}

# bench_now: a time stamp in seconds; bench_since T: seconds since T.
bench_now() {
	date +%s.%N
}

bench_since() {
	awk -v t0="$1" -v t1="$(date +%s.%N)" 'BEGIN { printf "%.3f\n", t1 - t0 }'
}

bench_median() {
	sort -g | awk '{ v[NR] = $1 }
		END {
			if (NR == 0) { print "nan"; exit }
			if (NR % 2) print v[(NR + 1) / 2];
			else printf "%.6g\n", (v[NR / 2] + v[NR / 2 + 1]) / 2
		}'
}

# bench_json KIND "k=v k=v ..." (or several arguments): numbers are written
# as JSON numbers, anything else as strings.
bench_json() {
	[ -n "${BENCH_JSONL:-}" ] || return 0
	local kind=$1 commit
	shift
	commit=$(git -C "$BENCH_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
	if [ -n "$(git -C "$BENCH_ROOT" status --porcelain --untracked-files=no 2>/dev/null)" ]; then
		commit="$commit+dirty"
	fi
	echo "$*" | awk -v kind="$kind" -v commit="$commit" -v now="$(date -u +%Y-%m-%dT%H:%M:%SZ)" '
		function str(s) { gsub(/[\\"]/, "\\\\&", s); return "\"" s "\"" }
		{
			printf "{\"bench\":%s,\"time\":%s,\"commit\":%s", str(kind), str(now), str(commit)
			for (i = 1; i <= NF; i++) {
				eq = index($i, "=")
				if (eq < 2) continue
				k = substr($i, 1, eq - 1); v = substr($i, eq + 1)
				if (v ~ /^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$/) printf ",%s:%s", str(k), v
				else printf ",%s:%s", str(k), str(v)
			}
			print "}"
		}' >>"$BENCH_JSONL"
}
