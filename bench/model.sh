#!/usr/bin/env bash
#
# model.sh — stored models: rcf_score of ROWS rows (default 1,000,000)
# against one model in SQL, against the engine scoring the same values
# alone (bench/model_score), as a ratio; plus the model's encoded size and
# decode time.  Target: ratio >= 0.5.
#
#   bench/model.sh            ROWS=200000 bench/model.sh   (quicker)
set -euo pipefail
. "$(dirname "$0")/common.sh"

ROWS=${ROWS:-1000000}
TRAIN=${TRAIN:-10000}

bench_install
make -C "$BENCH_ROOT" -s bench/model_score >/dev/null
work=$(mktemp -d /tmp/anomaly-bench-model.XXXXXX)
chmod 755 "$work"
trap 'cluster_stop "$work/pg" --rm >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
bench_cluster_start "$work/pg" >/dev/null

q() { cluster_psql "$work/pg" -At -q -v ON_ERROR_STOP=1 "$@"; }
q -c "CREATE EXTENSION anomaly" \
  -c "CREATE TABLE big AS SELECT t, round((10 * sin(t / 37.0) + ((hashint4(t) & 1023) / 1024.0))::numeric, 4)::float8 AS v FROM generate_series(1, $ROWS) t" \
  -c "CREATE TABLE history AS SELECT t, round((10 * sin(t / 37.0) + ((hashint4(-t) & 1023) / 1024.0))::numeric, 4)::float8 AS v FROM generate_series(1, $TRAIN) t" \
  -c "CREATE TABLE models AS SELECT anomaly.rcf_train(ARRAY[v] ORDER BY t) AS m FROM history" \
  -c "VACUUM ANALYZE big"
q -c "COPY (SELECT v FROM history ORDER BY t) TO STDOUT" > "$work/train.txt"
q -c "COPY (SELECT v FROM big ORDER BY t) TO STDOUT" > "$work/input.txt"

best=
for round in 1 2 3; do
	start=$(date +%s%N)
	sum=$(q -c "SELECT sum(anomaly.rcf_score(m, ARRAY[v])) FROM big, models")
	end=$(date +%s%N)
	rate=$(( ROWS * 1000000000 / (end - start) ))
	[ -z "$best" ] || [ "$rate" -gt "$best" ] && best=$rate
done
engine=$("$BENCH_ROOT/bench/model_score" --train "$work/train.txt" --input "$work/input.txt")
erate=$(echo "$engine" | sed -n 's/.*score_rows_per_s=\([0-9]*\).*/\1/p')
size=$(q -c "SELECT pg_column_size(m) FROM models")
echo "engine: $engine"
echo "sql: sum=$sum"
ratio=$(awk -v a="$best" -v b="$erate" 'BEGIN { printf "%.3f", a / b }')
echo "model_sql_rows_per_s=$best engine_score_rows_per_s=$erate ratio=$ratio model_bytes=$size rows=$ROWS"
bench_json model sql_rows_per_s="$best" engine_rows_per_s="$erate" ratio="$ratio" model_bytes="$size"
