#!/usr/bin/env bash
#
# run.sh — the benchmarks behind `make bench` (which builds bench/* first).
#
#   bench/run.sh
#
# 1. engine: bench/engine alone (no PostgreSQL), BENCH_POINTS (default
#    100,000) points after warm-up, in three configurations:
#      a  dims 1, shingle 8, 50 trees, 256 samples (the reference library's
#         published benchmark setting)
#      b  dims 1, shingle 1, 100 trees, 256 samples (KDA's defaults)
#      c  dims 5, shingle 1, 100 trees, 256 samples
#    one line each: "engine config=a us_per_point=.. bytes_per_forest=.. ..."
#    Then what grading adds (the graded-anomalies issue: at most 25%):
#    configuration a without and with --grade (bench/engine --grade: every
#    point through the grader, as detect() does), alternately,
#    BENCH_GRADE_ROUNDS times (default 5; the machine may be shared), one
#    line each ("engine config=a-grade ... grade=1"), then the medians:
#      "engine_grade config=a us_per_point=.. us_per_point_grade=.. ratio=.. pass=yes"
#    (pass: ratio at most 1.25)
#    Then what grading and a transform cost together (issue 13: at most
#    x1.3 of the raw engine): bench/engine --compare-transform METHOD on
#    configurations a and c, for normalize and normalize_difference; three
#    forests learn the same records in turn, batch by batch, and the line
#      "engine_transform config=a method=.. ratio_grade=.. ratio_grade_transform=.. ratio_transform=.. target=1.3 pass=yes"
#    compares their CPU time per record (one "engine_variant" line each).
#    Then the memory against the time of bounding_box_cache_fraction 1, 0.5,
#    0.25, 0.1 and 0 (bench/engine --compare-box-cache), configurations a, b
#    and c: forests differing only in it learn the same records in turn,
#    one line per fraction,
#      "engine_box_cache config=a fraction=.. bytes_per_forest=.. cpu_us_per_point=.. ratio=.."
#    (ratio: CPU time per record against fraction 1's; the checksums equal).
# 2. bench/sql_window.sh: the SQL window function against the engine on the
#    same 1,000,000 rows ("sql_rows_per_s=.. engine_rows_per_s=.. ratio=..")
# 3. bench/nab.sh with KDA's defaults and seed 42, when the NAB corpus is
#    there ("nab standard=.. reward_low_FP=.. reward_low_FN=.. ...")
#
# Every result is also written as one JSON object per line to
# bench/results/latest.jsonl (rewritten by each run; not under version
# control), for machines.
#
# Environment:
#   BENCH_SKIP_ENGINE=1, BENCH_SKIP_SQL=1, BENCH_SKIP_NAB=1   skip a part
#   BENCH_MODEL=1, BENCH_ALERTS=1, BENCH_DETECT=1   also run bench/model.sh,
#   bench/alerts.sh, bench/detect.sh (minutes each)
#   BENCH_WINDOW=1     also run bench/detect_window.sh (a windowed detector's
#                      lag from a window's end to its score, p50/p99)
#   BENCH_POINTS       points per engine configuration (default 100000)
#   BENCH_GRADE_ROUNDS rounds of the grading comparison (default 5)
#   BENCH_JSONL        where to write the JSON lines instead
#   SQL_ROWS, SQL_REPEAT, NAB_ROOT, ANOMALY_BENCH_INSTALL   see the scripts
# Exit status: non-zero when a part failed (the others still run).

set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
mkdir -p "$ROOT/bench/results"
export BENCH_JSONL=${BENCH_JSONL:-$ROOT/bench/results/latest.jsonl}
: >"$BENCH_JSONL"
# shellcheck source=bench/common.sh
. "$HERE/common.sh"

POINTS=${BENCH_POINTS:-100000}
FAILED=()

if [ "${BENCH_SKIP_ENGINE:-0}" != 1 ]; then
	echo "=== engine ($POINTS points per configuration)"
	if [ ! -x "$ROOT/bench/engine" ] || [ "$ROOT/bench/engine.c" -nt "$ROOT/bench/engine" ]; then
		make -s -C "$ROOT" bench/engine >/dev/null || FAILED+=(engine-build)
	fi
	while read -r name dims shingle trees samples; do
		if out=$("$ROOT/bench/engine" --dims "$dims" --shingle "$shingle" \
			--trees "$trees" --samples "$samples" --points "$POINTS"); then
			echo "engine config=$name $out"
			bench_json engine "config=$name $out"
		else
			FAILED+=("engine-$name")
		fi
	done <<-EOF
		a 1 8 50 256
		b 1 1 100 256
		c 5 1 100 256
	EOF

	echo ""
	echo "=== engine with and without grading (configuration a, alternately)"
	GRADE_US=$(mktemp /tmp/anomaly-bench-grade.XXXXXX)
	for _ in $(seq "${BENCH_GRADE_ROUNDS:-5}"); do
		for flag in "" --grade; do
			name=a${flag:+-grade}
			# shellcheck disable=SC2086 # $flag: none or one flag
			if out=$("$ROOT/bench/engine" --dims 1 --shingle 8 --trees 50 \
				--samples 256 --points "$POINTS" $flag); then
				echo "engine config=$name $out"
				bench_json engine "config=$name $out"
				echo "$name $(echo "$out" | sed -n 's/^us_per_point=\([^ ]*\).*/\1/p')" >>"$GRADE_US"
			else
				FAILED+=("engine-$name")
			fi
		done
	done
	plain=$(awk '$1 == "a" { print $2 }' "$GRADE_US" | bench_median)
	graded=$(awk '$1 == "a-grade" { print $2 }' "$GRADE_US" | bench_median)
	rm -f "$GRADE_US"
	if [ "$plain" != nan ] && [ "$graded" != nan ]; then
		line=$(awk -v a="$plain" -v g="$graded" -v n="${BENCH_GRADE_ROUNDS:-5}" 'BEGIN {
			r = g / a
			printf "config=a us_per_point=%s us_per_point_grade=%s ratio=%.3f rounds=%s pass=%s", a, g, r, n, r <= 1.25 ? "yes" : "no"
		}')
		echo "engine_grade $line"
		bench_json engine_grade "$line"
	fi

	echo ""
	echo "=== engine: grading and a transform together (configurations a and c, in one run each)"
	for cfg in "a 1 8 50 256" "c 5 1 100 256"; do
		read -r name dims shingle trees samples <<<"$cfg"
		for method in normalize normalize_difference; do
			if out=$("$ROOT/bench/engine" --dims "$dims" --shingle "$shingle" --trees "$trees" \
				--samples "$samples" --points "$POINTS" --compare-transform "$method"); then
				while read -r kind rest; do
					echo "$kind config=$name $rest"
					bench_json "$kind" "config=$name $rest"
				done <<<"$out"
			else
				FAILED+=("engine-transform-$name-$method")
			fi
		done
	done

	echo ""
	echo "=== engine: memory against time, bounding_box_cache_fraction 1, 0.5, 0.25, 0.1, 0 (in one run per configuration)"
	for cfg in "a 1 8 50 256" "b 1 1 100 256" "c 5 1 100 256"; do
		read -r name dims shingle trees samples <<<"$cfg"
		if out=$("$ROOT/bench/engine" --dims "$dims" --shingle "$shingle" --trees "$trees" \
			--samples "$samples" --points "$POINTS" --compare-box-cache 1,0.5,0.25,0.1,0); then
			while read -r kind rest; do
				echo "$kind config=$name $rest"
				bench_json "$kind" "config=$name $rest"
			done <<<"$out"
		else
			FAILED+=("engine-box-cache-$name")
		fi
	done
fi

if [ "${BENCH_SKIP_SQL:-0}" != 1 ]; then
	echo ""
	echo "=== SQL window function against the engine"
	"$HERE/sql_window.sh" || FAILED+=(sql_window)
	# Built and installed once is enough.
	export ANOMALY_BENCH_INSTALL=${ANOMALY_BENCH_INSTALL:-0}
fi

if [ "${BENCH_SKIP_NAB:-0}" != 1 ]; then
	echo ""
	echo "=== NAB, KDA defaults, seed 42"
	"$HERE/nab.sh" "$ROOT/bench/results/nab/kda-seed42" --seed 42 || FAILED+=(nab)
fi

# study FLAG NAME TITLE: the longer studies run only when asked for
# (FLAG=1 in the environment), each takes minutes: bench/NAME.sh.
study() {
	local flag=$1 name=$2 title=$3
	[ "${!flag:-0}" = 1 ] || return 0
	echo ""
	echo "=== $title"
	"$HERE/$name.sh" || FAILED+=("$name")
}
study BENCH_MODEL model "stored model: rcf_score in SQL against the engine"
study BENCH_ALERTS alerts "alert delivery"
study BENCH_DETECT detect "detectors"
study BENCH_WINDOW detect_window "windowed detector: window end -> score"

echo ""
echo "results: $BENCH_JSONL"
if [ ${#FAILED[@]} -gt 0 ]; then
	echo "failed: ${FAILED[*]}"
	exit 1
fi
