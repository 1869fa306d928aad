#!/usr/bin/env bash
#
# nab_all.sh — NAB scores of anomaly.random_cut_forest over several seeds,
# as the benchmark issue asks them to be reported.
#
#   bench/nab_all.sh [OUT_BASE]
#
# Runs bench/nab.sh for two configurations, each with seeds 1, 2 and 3:
#   kda       KDA's defaults: 100 trees, 256 samples, time decay 100000,
#             shingle 1
#   shingle8  the same with shingle 8
# on one throwaway cluster (the corpus is loaded once), writing the results of
# each run to OUT_BASE/<config>-seed<seed>/ (default bench/results/nab).
# Prints a table of the three NAB profiles per run, the median per
# configuration, and machine-readable lines
#   nab_median config=kda shingle=1 seeds=1,2,3 standard=.. reward_low_FP=.. reward_low_FN=.. pass=yes
# pass: the median standard score reaches KDA's published 51.7 (checked for
# the kda configuration only).  References: the AWS random-cut-forest library
# scored 52.0 / 40.5 / 60.2 on NAB, KDA 51.7 / 38.4 / 59.7.
#
# Environment:
#   NAB_SEEDS        seeds (default "1 2 3")
#   NAB_CONFIGS      "name:shingle ..." (default "kda:1 shingle8:8")
#   NAB_REQUIRE=1    exit 1 when the kda median standard score is below 51.7
#   NAB_ROOT, ANOMALY_BENCH_INSTALL, BENCH_JSONL   as for bench/nab.sh

set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=bench/nab_common.sh
. "$HERE/nab_common.sh"
OUT_BASE=${1:-$ROOT/bench/results/nab}
SEEDS=${NAB_SEEDS:-1 2 3}
CONFIGS=${NAB_CONFIGS:-kda:1 shingle8:8}
KDA_STANDARD=51.7

nab_corpus_or_skip nab_all
export NAB_ROOT

T_START=$(bench_now)
nab_shared_cluster nab-all

mkdir -p "$OUT_BASE"
: >"$WORK/lines"
for cfg in $CONFIGS; do
	name=${cfg%%:*}
	shingle=${cfg#*:}
	for seed in $SEEDS; do
		echo "=== $name (shingle $shingle), seed $seed"
		if ! out=$(ANOMALY_BENCH_INSTALL=0 "$HERE/nab.sh" "$OUT_BASE/$name-seed$seed" --shingle "$shingle" --seed "$seed"); then
			echo "$out"
			bench_log "bench/nab.sh failed for $name, seed $seed"
			exit 1
		fi
		echo "$out"
		echo "$out" | grep '^nab standard=' | sed "s/^nab /config=$name /" >>"$WORK/lines"
	done
done

echo ""
echo "=== NAB, anomaly.random_cut_forest (normalised scores; score map s/(1+s))"
printf '%-10s %7s %5s %9s %14s %14s %9s\n' config shingle seed standard reward_low_FP reward_low_FN score_s
nab_table '%-10s %7s %5s %9s %14s %14s %9s\n' config shingle seed standard \
	reward_low_FP reward_low_FN score_seconds <"$WORK/lines"
echo ""
printf '%-10s %7s %5s %9s %14s %14s\n' "median" "" "" "" "" ""
FAIL=0
MEDIANS=()
for cfg in $CONFIGS; do
	name=${cfg%%:*}
	shingle=${cfg#*:}
	grep "^config=$name " "$WORK/lines" >"$WORK/$name" || true
	std=$(nab_field standard <"$WORK/$name" | bench_median)
	lfp=$(nab_field reward_low_FP <"$WORK/$name" | bench_median)
	lfn=$(nab_field reward_low_FN <"$WORK/$name" | bench_median)
	printf '%-10s %7s %5s %9s %14s %14s\n' "$name" "$shingle" all "$std" "$lfp" "$lfn"
	pass=n/a
	if [ "$name" = kda ]; then
		if awk -v s="$std" -v t="$KDA_STANDARD" 'BEGIN { exit !(s + 0 >= t) }'; then
			pass=yes
		else
			pass=no
			FAIL=1
		fi
	fi
	MEDIANS+=("config=$name shingle=$shingle seeds=$(echo "$SEEDS" | tr ' ' ',') standard=$std reward_low_FP=$lfp reward_low_FN=$lfn pass=$pass")
done
printf '%-10s %7s %5s %9s %14s %14s\n' "AWS lib" "" "" 52.0 40.5 60.2
printf '%-10s %7s %5s %9s %14s %14s\n' "KDA" "" "" 51.7 38.4 59.7
echo ""
for m in "${MEDIANS[@]}"; do
	echo "nab_median $m"
	bench_json nab_median "$m"
done
echo "nab_all: $(wc -l <"$WORK/lines") runs in $(bench_since "$T_START")s; results in $OUT_BASE"
if [ "${NAB_REQUIRE:-0}" = 1 ] && [ $FAIL = 1 ]; then
	exit 1
fi
exit 0
