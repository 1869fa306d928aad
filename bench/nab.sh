#!/usr/bin/env bash
#
# nab.sh — the Numenta Anomaly Benchmark (NAB) corpus scored in SQL by
# anomaly.random_cut_forest (raw scores) or anomaly.detect (graded
# anomalies), on a throwaway cluster.
#
#   bench/nab.sh OUT_DIR [--mode raw|grade] [--shingle S] [--seed X]
#                [--trees T] [--samples N] [--time-decay L]
#                [--z-factor Z] [--score-floor F] [--suppress N]
#                [--score-horizon H] [--cusum-drift K] [--cusum-threshold C]
#                [--tod W] [--transform M] [--transform-decay D]
#                [--threshold T|opt]...
#                [--order file|time] [--per-file] [--per-category]
#
# Forest defaults are KDA's: shingle 1, 100 trees, 256 samples, time decay
# 100000; seed 42.  The grader options (--mode grade only) default to
# 0.1.0's detect(): z_factor 3, score_floor 0.8, suppress 100, score_horizon
# 3000, cusum_drift 2, cusum_threshold 12 (0 turns the CUSUM off), transform
# none; every one is passed to detect() explicitly, so detect()'s defaults
# since 0.2.0 (bench/README.md) do not change what a run measures.
# --tod W (grade mode) adds the time of day as two features scaled to W
# times the range of the file's values so far (0, the default: none).
#
# 1. loads every series of $NAB_ROOT/data (default ../shared/nab beside the
#    repository) into one table with one COPY: (id, file, ts, value), id in
#    file order;
# 2. scores them with ONE query, one forest per file, fed in the file's row
#    order (NAB matches result rows to data rows by position; the study tool
#    bench/nab_engine reads the files in that order too):
#      --mode raw (default)
#        anomaly.random_cut_forest(ARRAY[value], trees, samples, decay,
#            shingle, seed) OVER (PARTITION BY file ORDER BY id)
#      --mode grade
#        (anomaly.detect(ARRAY[value], trees, samples, decay, shingle, seed,
#            z_factor, score_floor, 0, 0, 0, 0, suppress, score_horizon,
#            'skip', NULL, cusum_drift, cusum_threshold, transform,
#            transform_decay)
#            OVER (PARTITION BY file ORDER BY id)).anomaly_grade
#    --order time feeds each file in time order instead, ORDER BY
#    ts::timestamp, id (id breaks ties: some files repeat a timestamp at a
#    DST change).  The two orders differ in one file only:
#    realKnownCause/machine_temperature_system_failure.csv steps back in time
#    once;
# 3. writes OUT_DIR/<category>/<file>.csv, header "timestamp,anomaly_score",
#    one row per data row in the data file's order, the timestamp text as in
#    the data file.  Raw mode: the score s >= 0 is mapped into [0,1) by the
#    fixed monotone map s / (1 + s), the same for every file (NAB optimises
#    one threshold over the corpus, so any one strictly monotone map gives
#    the same NAB scores).  Grade mode: the anomaly grade, already in [0,1],
#    with 6 decimals as bench/nab_engine writes it, so that the result files
#    of the two can be compared byte for byte;
# 4. runs ../shared/tools/nab_score.py OUT_DIR once per --threshold: "opt"
#    (the default) for the threshold NAB optimises over the corpus, per
#    profile; a number T to count rows with anomaly_score >= T as detections,
#    a threshold fixed in advance as a user deploys one (in grade mode, a
#    small T such as 0.000001 means "every is_anomaly row").  Prints the
#    scorer's table, then one line per threshold:
#        nab standard=.. reward_low_FP=.. reward_low_FN=.. shingle=.. seed=..
#            ... mode=raw|grade threshold_mode=opt|fixed ...
#    (grade mode adds z_factor=.. score_floor=.. suppress=.. score_horizon=..
#    cusum_drift=.. cusum_threshold=.. tod=..),
#    and keeps the scorer's JSON as OUT_DIR/nab_score.json (opt) or
#    OUT_DIR/nab_score_threshold_T.json.
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
# shellcheck source=bench/nab_common.sh
. "$HERE/nab_common.sh"

usage() {
	sed -n '7,12p' "$0" | sed 's/^# \{0,1\}//' >&2
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
MODE=raw
FEED_ORDER="file"
Z_FACTOR=3
SCORE_FLOOR=0.8
SUPPRESS=100
HORIZON=3000
CUSUM_DRIFT=2
CUSUM_THRESHOLD=12
TOD=0
TRANSFORM=none
TRANSFORM_DECAY=NULL
GRADER_GIVEN=0
THRESHOLDS=()
SCORE_OPTS=()
while [ $# -gt 0 ]; do
	case "$1" in
		--per-file | --per-category) SCORE_OPTS+=("$1"); shift; continue ;;
	esac
	[ $# -ge 2 ] || usage
	case "$1" in
		--mode) MODE=$2 ;;
		--order) FEED_ORDER=$2 ;;
		--shingle) SHINGLE=$2 ;;
		--seed) SEED=$2 ;;
		--trees) TREES=$2 ;;
		--samples) SAMPLES=$2 ;;
		--time-decay) DECAY=$2 ;;
		--z-factor) Z_FACTOR=$2; GRADER_GIVEN=1 ;;
		--score-floor) SCORE_FLOOR=$2; GRADER_GIVEN=1 ;;
		--suppress) SUPPRESS=$2; GRADER_GIVEN=1 ;;
		--score-horizon) HORIZON=$2; GRADER_GIVEN=1 ;;
		--cusum-drift) CUSUM_DRIFT=$2; GRADER_GIVEN=1 ;;
		--cusum-threshold) CUSUM_THRESHOLD=$2; GRADER_GIVEN=1 ;;
		--tod) TOD=$2; GRADER_GIVEN=1 ;;
		--transform) TRANSFORM=$2; GRADER_GIVEN=1 ;;
		--transform-decay) TRANSFORM_DECAY=$2; GRADER_GIVEN=1 ;;
		--threshold) THRESHOLDS+=("$2") ;;
		*) usage ;;
	esac
	shift 2
done
for v in "$SHINGLE" "$SEED" "$TREES" "$SAMPLES" "$DECAY" "$SUPPRESS"; do
	[[ "$v" =~ ^[0-9]+$ ]] || { bench_log "not a non-negative integer: $v"; exit 2; }
done
NUMBER='^[0-9]+(\.[0-9]*)?([eE][-+]?[0-9]+)?$'
for v in "$Z_FACTOR" "$SCORE_FLOOR" "$HORIZON" "$CUSUM_DRIFT" "$CUSUM_THRESHOLD" "$TOD"; do
	[[ "$v" =~ $NUMBER ]] || { bench_log "not a non-negative number: $v"; exit 2; }
done
[[ "$TRANSFORM" =~ ^[a-z_]+$ ]] || { bench_log "--transform: a method name, not $TRANSFORM"; exit 2; }
[ "$TRANSFORM_DECAY" = NULL ] || [[ "$TRANSFORM_DECAY" =~ $NUMBER ]] || { bench_log "not a non-negative number: $TRANSFORM_DECAY"; exit 2; }
[ ${#THRESHOLDS[@]} -gt 0 ] || THRESHOLDS=(opt)
for v in "${THRESHOLDS[@]}"; do
	[ "$v" = opt ] || [[ "$v" =~ $NUMBER ]] || { bench_log "--threshold: a number or opt, not $v"; exit 2; }
done
case "$MODE" in
	raw) [ $GRADER_GIVEN = 0 ] || { bench_log "the grader options need --mode grade"; exit 2; } ;;
	grade) ;;
	*) bench_log "--mode: raw or grade, not $MODE"; exit 2 ;;
esac
case "$FEED_ORDER" in
	file) ORDER_BY="id" ;;
	time) ORDER_BY="ts::timestamp, id" ;;
	*) bench_log "--order: file or time, not $FEED_ORDER"; exit 2 ;;
esac

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
mapfile -t FILES < <(nab_files)
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
FOREST_ARGS="$TREES, $SAMPLES, $DECAY, $SHINGLE, $SEED"
# --tod W adds the time of day as two features, a circle whose radius is W
# times the range of the values seen so far in the file (so it weighs the
# same in every series): what bench/nab_engine --tod computes.
POINT="ARRAY[value]"
SOURCE="nab_data"
if [ "$TOD" != 0 ]; then
	POINT="ARRAY[value, $TOD * (hi - lo) * sin(2 * pi() * day), $TOD * (hi - lo) * cos(2 * pi() * day)]"
	# One line: psql's \copy reads its command to the end of the line.
	SOURCE="(SELECT id, file, ts, value, (substr(ts, 12, 2)::int * 60 + substr(ts, 15, 2)::int) / 1440.0::float8 AS day, max(value) OVER r AS hi, min(value) OVER r AS lo FROM nab_data WINDOW r AS (PARTITION BY file ORDER BY id ROWS UNBOUNDED PRECEDING)) nab_data"
fi
if [ "$MODE" = grade ]; then
	SCORE="(anomaly.detect($POINT, $FOREST_ARGS, $Z_FACTOR, $SCORE_FLOOR, 0, 0, 0, 0, $SUPPRESS, $HORIZON, 'skip', NULL, $CUSUM_DRIFT, $CUSUM_THRESHOLD, '$TRANSFORM', $TRANSFORM_DECAY) OVER w).anomaly_grade"
	MAP="coalesce(s, 0)"
	MAP_TEXT="anomaly_grade, 6 decimals"
	GRADER_TEXT=" z_factor=$Z_FACTOR score_floor=$SCORE_FLOOR suppress=$SUPPRESS score_horizon=$HORIZON cusum_drift=$CUSUM_DRIFT cusum_threshold=$CUSUM_THRESHOLD tod=$TOD transform=$TRANSFORM transform_decay=$TRANSFORM_DECAY"
else
	SCORE="anomaly.random_cut_forest(ARRAY[value], $FOREST_ARGS) OVER w"
	MAP="coalesce(s / (1 + s), 0)"
	MAP_TEXT="score map s/(1+s)"
	GRADER_TEXT=
fi
T_SCORE=$(bench_now)
psql_q -c "\\copy (SELECT file, ts, $MAP FROM (SELECT id, file, ts, $SCORE AS s FROM $SOURCE WINDOW w AS (PARTITION BY file ORDER BY $ORDER_BY)) q ORDER BY id) TO '$WORK/scores.csv' (FORMAT csv)"
T_SCORE=$(bench_since "$T_SCORE")
# Grade mode: a float8's text reads back as the same double, so awk's printf
# writes exactly what printf("%.6f") writes in bench/nab_engine.
awk -F, -v out="$OUT" -v mode="$MODE" '
	$1 != cur {
		if (cur != "") close(path)
		cur = $1; path = out "/" cur
		print "timestamp,anomaly_score" > path
	}
	mode == "grade" { printf "%s,%.6f\n", $2, $3 > path; next }
	{ print $2 "," $3 > path }' "$WORK/scores.csv"

ROWS=$(wc -l <"$WORK/scores.csv")
echo "nab: $ROWS rows in ${#FILES[@]} files; load ${T_LOAD}s, score ${T_SCORE}s" \
	"(mode=$MODE trees=$TREES samples=$SAMPLES time_decay=$DECAY shingle=$SHINGLE seed=$SEED$GRADER_TEXT order=$FEED_ORDER);" \
	"$MAP_TEXT"

for thr in "${THRESHOLDS[@]}"; do
	if [ "$thr" = opt ]; then
		THR_OPTS=()
		THR_MODE=opt
		JSON=nab_score.json
	else
		THR_OPTS=(--threshold "$thr")
		THR_MODE=fixed
		JSON=nab_score_threshold_$thr.json
	fi
	echo ""
	echo "--- threshold $thr"
	python3 "$NAB_SCORE" "$OUT" --nab-root "$NAB_ROOT" --name anomaly \
		--json "$WORK/nab.json" "${THR_OPTS[@]}" "${SCORE_OPTS[@]}"
	cp "$WORK/nab.json" "$OUT/$JSON"

	read -r STD LFP LFN THR_STD THR_LFP THR_LFN < <(python3 - "$WORK/nab.json" <<-'EOF'
		import json, sys
		r = json.load(open(sys.argv[1]))["anomaly"]["profiles"]
		p = ["standard", "reward_low_FP_rate", "reward_low_FN_rate"]
		print(" ".join("%.2f" % r[k]["normalised"] for k in p),
		      " ".join("%.6g" % r[k]["threshold"] for k in p))
	EOF
	)
	TOTAL=$(bench_since "$T_START")
	LINE=$(printf 'standard=%s reward_low_FP=%s reward_low_FN=%s shingle=%s seed=%s trees=%s samples=%s time_decay=%s threshold_standard=%s rows=%s score_seconds=%.2f total_seconds=%.2f mode=%s threshold_mode=%s threshold_low_FP=%s threshold_low_FN=%s order=%s%s' \
		"$STD" "$LFP" "$LFN" "$SHINGLE" "$SEED" "$TREES" "$SAMPLES" "$DECAY" "$THR_STD" "$ROWS" "$T_SCORE" "$TOTAL" \
		"$MODE" "$THR_MODE" "$THR_LFP" "$THR_LFN" "$FEED_ORDER" "$GRADER_TEXT")
	echo "nab $LINE"
	bench_json nab "$LINE"
done
