#!/usr/bin/env bash
#
# explain.sh — the cost of building explanations: a window of
# random_cut_forest_with_explanation over ROWS rows of 8 values, with a
# forest small enough (10 trees of 16 points) that the explanation's jsonb is
# a large part of the time, on a throwaway cluster.
#
#   bench/explain.sh                          the installed build
#   EXPLAIN_LIBS="a.so b.so" bench/explain.sh  builds of anomaly.so compared
#                                             in the same run, alternated
#                                             round by round
#
# EXPLAIN_LIBS replaces $(pkglibdir)/anomaly.so by each file in turn (as
# root or its owner; the installed file is put back at the end); the cluster
# does not preload anomaly, so every round's session loads the file then in
# place.  Prints one JSON line per build: the median seconds of ROUNDS
# rounds, rows a second, and the md5 of the explanations (equal when the
# builds explain alike).  ROWS (default 100000), ROUNDS (default 5).

set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

ROWS=${ROWS:-100000}
ROUNDS=${ROUNDS:-5}
LIBDIR=$("$PG_CONFIG" --pkglibdir)
LIBS=${EXPLAIN_LIBS:-}

work=$(mktemp -d /tmp/anomaly-bench-explain.XXXXXX)
chmod 755 "$work"
saved=
cleanup() {
	cluster_stop "$work/pg" >/dev/null 2>&1 || true
	if [ -n "$saved" ]; then
		mv -f "$saved" "$LIBDIR/anomaly.so"
	fi
	rm -rf "$work"
}
trap cleanup EXIT

if [ -n "$LIBS" ]; then
	saved=$LIBDIR/.anomaly.so.bench-saved
	cp -p "$LIBDIR/anomaly.so" "$saved"
fi

ANOMALY_PRELOAD='' bench_cluster_start "$work/pg" >/dev/null
cluster_psql "$work/pg" -q -c "
	CREATE EXTENSION anomaly;
	CREATE TABLE pts AS
		SELECT g AS t, ARRAY[sin(g / 7.0), cos(g / 5.0), (g % 13)::float8, (g % 7)::float8,
			sin(g / 3.0), cos(g / 11.0), (g % 17)::float8, (g % 5)::float8] AS p
		FROM generate_series(1, $ROWS) g;"
cluster_psql "$work/pg" -q -c "VACUUM ANALYZE pts"

query="SELECT md5(string_agg(x::text, '|' ORDER BY t)) FROM (
	SELECT t, anomaly.random_cut_forest_with_explanation(p, 10, 16, 100000, 1, true, 7)
		OVER (ORDER BY t) AS x FROM pts) s"

# one_round LIB: seconds and md5 of one run, LIB in place first (or the
# installed build when LIB is empty).
one_round() {
	if [ -n "$1" ]; then
		cp "$1" "$LIBDIR/.anomaly.so.bench-new"
		mv -f "$LIBDIR/.anomaly.so.bench-new" "$LIBDIR/anomaly.so"
	fi
	local t0 md5
	t0=$(bench_now)
	md5=$(cluster_psql "$work/pg" -Atq -c "$query")
	echo "$(bench_since "$t0") $md5"
}

names=(${LIBS:-installed})
declare -A times sums
for ((r = 1; r <= ROUNDS; r++)); do
	for lib in "${names[@]}"; do
		[ "$lib" = installed ] && arg= || arg=$lib
		read -r secs md5 < <(one_round "$arg")
		times[$lib]="${times[$lib]:-} $secs"
		sums[$lib]=$md5
	done
done
for lib in "${names[@]}"; do
	med=$(echo "${times[$lib]}" | tr ' ' '\n' | grep . | bench_median)
	rate=$(awk -v n="$ROWS" -v s="$med" 'BEGIN { printf "%.0f", n / s }')
	echo "{\"bench\": \"explain\", \"build\": \"$lib\", \"rows\": $ROWS, \"rounds\": $ROUNDS," \
		"\"median_s\": $med, \"rows_per_s\": $rate, \"md5\": \"${sums[$lib]}\"," \
		"\"times\": \"$(echo ${times[$lib]})\"}"
	bench_json explain "build=$lib rows=$ROWS median_s=$med rows_per_s=$rate"
done
