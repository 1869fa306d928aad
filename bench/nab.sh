#!/usr/bin/env bash
#
# nab.sh — the Numenta Anomaly Benchmark (NAB) corpus scored by
# anomaly.random_cut_forest, in SQL, on a throwaway cluster.
#
#   bench/nab.sh OUT_DIR [--shingle S] [--seed X] [--trees T] [--samples N]
#                [--time-decay L] [--per-file] [--per-category]
#
# Defaults are KDA's: shingle 1, 100 trees, 256 samples, time decay 100000;
# seed 42.
#
# 1. loads every series of $NAB_ROOT/data (default ../shared/nab beside the
#    repository) into one table with one COPY: (id, file, ts, value), id in
#    file order;
# 2. scores them with ONE query, one forest per file:
#        anomaly.random_cut_forest(ARRAY[value], ...)
#            OVER (PARTITION BY file ORDER BY ts::timestamp, id)
#    (id breaks ties: some files repeat a timestamp at a DST change, and
#    realKnownCause/machine_temperature_system_failure.csv steps back in
#    time once, so there the time order differs from the file order for a
#    few rows);
# 3. writes OUT_DIR/<category>/<file>.csv, header "timestamp,anomaly_score",
#    one row per data row in the data file's order, the timestamp text as in
#    the data file.  The score s >= 0 is mapped into [0,1) by the fixed
#    monotone map s / (1 + s), the same for every file (NAB optimises one
#    threshold over the corpus, so any one strictly monotone map gives the
#    same NAB scores);
# 4. runs ../shared/tools/nab_score.py OUT_DIR and prints its table, then
#        nab standard=.. reward_low_FP=.. reward_low_FN=.. shingle=.. seed=.. ...
#
# When there is no NAB corpus, prints a message and exits 0.
#
# Environment:
#   NAB_ROOT              the NAB folder (data/, labels/)
#   NAB_SCORE             the scorer (default ../shared/tools/nab_score.py)
#   NAB_CLUSTER           a cluster directory started with test/cluster.sh to
#                         use (and leave running) instead of a new one; the
#                         corpus is loaded there once and reused by the next
#                         runs (bench/nab_all.sh does this)
#   ANOMALY_BENCH_INSTALL 0: do not build and install the extension first
#   BENCH_JSONL           append the result as a JSON line to this file

set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=bench/common.sh
. "$HERE/common.sh"
ROOT=$BENCH_ROOT

NAB_ROOT=${NAB_ROOT:-$ROOT/../shared/nab}
NAB_SCORE=${NAB_SCORE:-$ROOT/../shared/tools/nab_score.py}

usage() {
	sed -n '5,7p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2
}

[ $# -ge 1 ] || usage
OUT=$1
shift
SHINGLE=1
SEED=42
TREES=100
SAMPLES=256
DECAY=100000
SCORE_OPTS=()
while [ $# -gt 0 ]; do
	case "$1" in
		--shingle) SHINGLE=${2:?}; shift 2 ;;
		--seed) SEED=${2:?}; shift 2 ;;
		--trees) TREES=${2:?}; shift 2 ;;
		--samples) SAMPLES=${2:?}; shift 2 ;;
		--time-decay) DECAY=${2:?}; shift 2 ;;
		--per-file | --per-category) SCORE_OPTS+=("$1"); shift ;;
		*) usage ;;
	esac
done
for v in "$SHINGLE" "$SEED" "$TREES" "$SAMPLES" "$DECAY"; do
	[[ "$v" =~ ^[0-9]+$ ]] || { bench_log "not a non-negative integer: $v"; exit 2; }
done

if [ ! -d "$NAB_ROOT/data" ] || [ ! -r "$NAB_ROOT/labels/combined_windows.json" ]; then
	echo "nab: skipped, no NAB corpus at $NAB_ROOT (set NAB_ROOT)"
	exit 0
fi
if [ ! -r "$NAB_SCORE" ]; then
	echo "nab: skipped, no scorer at $NAB_SCORE (set NAB_SCORE)"
	exit 0
fi
NAB_ROOT=$(cd "$NAB_ROOT" && pwd)

# The corpus: category/file.csv keys, in name order.
mapfile -t FILES < <(cd "$NAB_ROOT/data" && find . -mindepth 2 -maxdepth 2 -name '*.csv' | sed 's|^\./||' | LC_ALL=C sort)
[ ${#FILES[@]} -gt 0 ] || { bench_log "no CSV files in $NAB_ROOT/data"; exit 1; }

T_START=$(bench_now)
WORK=$(mktemp -d /tmp/anomaly-nab.XXXXXX)
chmod 755 "$WORK"
CLUSTER=${NAB_CLUSTER:-}
OWN_CLUSTER=0
cleanup() {
	local rc=$?
	if [ $OWN_CLUSTER = 1 ]; then
		cluster_stop "$CLUSTER" --rm >/dev/null 2>&1 || true
	fi
	rm -rf "$WORK"
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -z "$CLUSTER" ]; then
	bench_install
	CLUSTER=$WORK/pg
	OWN_CLUSTER=1
	bench_cluster_start "$CLUSTER"
fi

psql_q() {
	cluster_psql "$CLUSTER" -qAt "$@"
}

# Load once per cluster: a marker table holds the corpus's fingerprint.
FINGERPRINT=$(cd "$NAB_ROOT/data" && cat "${FILES[@]}" | cksum | cut -d' ' -f1)
loaded=$(psql_q -c "SELECT fingerprint FROM nab_loaded" 2>/dev/null || true)
T_LOAD=$(bench_now)
if [ "$loaded" != "$FINGERPRINT" ]; then
	psql_q <<-'EOF'
		SET client_min_messages = warning;
		CREATE EXTENSION IF NOT EXISTS anomaly;
		DROP TABLE IF EXISTS nab_data, nab_loaded;
		CREATE UNLOGGED TABLE nab_data (
			id bigint GENERATED ALWAYS AS IDENTITY,
			file text NOT NULL,
			ts text NOT NULL,
			value double precision NOT NULL);
	EOF
	# One COPY for the corpus: "key,timestamp,value" lines, CRs stripped
	# (some files have CRLF line ends), headers and blank lines dropped.
	for f in "${FILES[@]}"; do
		awk -v key="$f" 'FNR > 1 { sub(/\r$/, ""); if ($0 != "") print key "," $0 }' "$NAB_ROOT/data/$f"
	done | psql_q -c "\\copy nab_data (file, ts, value) FROM STDIN (FORMAT csv)"
	psql_q -c "VACUUM ANALYZE nab_data" \
		-c "CREATE TABLE nab_loaded AS SELECT '$FINGERPRINT'::text AS fingerprint"
fi
T_LOAD=$(bench_since "$T_LOAD")

# Every file loaded whole?
expected=$(for f in "${FILES[@]}"; do
	printf '%s %s\n' "$f" "$(tr -d '\r' <"$NAB_ROOT/data/$f" | tail -n +2 | grep -c .)"
done)
got=$(psql_q -F' ' -c "SELECT file, count(*) FROM nab_data GROUP BY file ORDER BY file COLLATE \"C\"")
if [ "$expected" != "$got" ]; then
	diff <(echo "$expected") <(echo "$got") >&2 || true
	bench_log "the loaded row counts differ from the data files"
	exit 1
fi

# Score: one query, one forest per file; output in file order.
mkdir -p "$OUT"
for f in "${FILES[@]}"; do
	mkdir -p "$OUT/$(dirname "$f")"
done
T_SCORE=$(bench_now)
psql_q -c "\\copy (SELECT file, ts, coalesce(s / (1 + s), 0) FROM (SELECT id, file, ts, anomaly.random_cut_forest(ARRAY[value], $TREES, $SAMPLES, $DECAY, $SHINGLE, $SEED) OVER (PARTITION BY file ORDER BY ts::timestamp, id) AS s FROM nab_data) q ORDER BY id) TO '$WORK/scores.csv' (FORMAT csv)"
T_SCORE=$(bench_since "$T_SCORE")
awk -F, -v out="$OUT" '
	$1 != cur {
		if (cur != "") close(path)
		cur = $1; path = out "/" cur
		print "timestamp,anomaly_score" > path
	}
	{ print $2 "," $3 > path }' "$WORK/scores.csv"

ROWS=$(wc -l <"$WORK/scores.csv")
echo "nab: $ROWS rows in ${#FILES[@]} files; load ${T_LOAD}s, score ${T_SCORE}s" \
	"(trees=$TREES samples=$SAMPLES time_decay=$DECAY shingle=$SHINGLE seed=$SEED);" \
	"score map s/(1+s)"

python3 "$NAB_SCORE" "$OUT" --nab-root "$NAB_ROOT" --name anomaly \
	--json "$WORK/nab.json" "${SCORE_OPTS[@]}"
cp "$WORK/nab.json" "$OUT/nab_score.json"

read -r STD LFP LFN THR < <(python3 - "$WORK/nab.json" <<-'EOF'
	import json, sys
	r = json.load(open(sys.argv[1]))["anomaly"]["profiles"]
	p = ["standard", "reward_low_FP_rate", "reward_low_FN_rate"]
	print(" ".join("%.2f" % r[k]["normalised"] for k in p), "%.6g" % r["standard"]["threshold"])
EOF
)
TOTAL=$(bench_since "$T_START")
LINE=$(printf 'standard=%s reward_low_FP=%s reward_low_FN=%s shingle=%s seed=%s trees=%s samples=%s time_decay=%s threshold_standard=%s rows=%s score_seconds=%.2f total_seconds=%.2f' \
	"$STD" "$LFP" "$LFN" "$SHINGLE" "$SEED" "$TREES" "$SAMPLES" "$DECAY" "$THR" "$ROWS" "$T_SCORE" "$TOTAL")
echo "nab $LINE"
bench_json nab "$LINE"
