#!/usr/bin/env bash
#
# run.sh — the demo (make demo): installs what it needs, builds and installs
# the extension, starts a throwaway cluster, generates four weeks of taxi
# rides in three zones with injected anomalies, scores them in SQL, prints
# the alerts beside the injected anomalies, and draws one picture per zone.
#
#   demo/run.sh [OUT_DIR]      (default: demo/out)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/.." && pwd)
out=${1:-$src/demo/out}

bash "$src/test/deps.sh" --demo
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
make -C "$src" -s PG_CONFIG="$PG_CONFIG" >/dev/null
if [ "$(id -u)" -eq 0 ]; then
	make -C "$src" -s install PG_CONFIG="$PG_CONFIG" >/dev/null
else
	sudo make -C "$src" -s install PG_CONFIG="$PG_CONFIG" >/dev/null
fi

. "$src/test/cluster.sh"
work=$(mktemp -d /tmp/anomaly-demo.XXXXXX)
chmod 755 "$work"
trap 'cluster_stop "$work/pg" --rm >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
ANOMALY_PRELOAD="${ANOMALY_PRELOAD-anomaly}" cluster_start "$work/pg" auto "wal_level = logical" >/dev/null

psql_demo() {
	cluster_psql "$work/pg" -q -v ON_ERROR_STOP=1 "$@"
}

echo "== anomaly demo: taxi rides in three zones, four weeks, 10-minute counts =="
psql_demo -c "CREATE EXTENSION anomaly" -f "$here/generate.sql"
psql_demo -At -c "SELECT count(*) || ' rows in ' || count(DISTINCT zone) || ' zones, ' || (SELECT count(*) FROM injected) || ' injected anomalies' FROM rides"
start=$(date +%s%N)
psql_demo -P pager=off -f "$here/score.sql"
end=$(date +%s%N)
echo
echo "scored $(psql_demo -At -c 'SELECT count(*) FROM rides') rows in $(( (end - start) / 1000000 )) ms"

mkdir -p "$out"
for zone in $(psql_demo -At -c "SELECT DISTINCT zone FROM rides ORDER BY 1"); do
	psql_demo -At -F, -c "SELECT to_char(ts, 'YYYY-MM-DD HH24:MI'), rides, round(anomaly_score::numeric, 3) FROM detections WHERE zone = '$zone' ORDER BY ts" > "$out/$zone.series.csv"
	psql_demo -At -F, -c "SELECT to_char(ts, 'YYYY-MM-DD HH24:MI'), rides FROM detections d WHERE zone = '$zone' AND EXISTS (SELECT 1 FROM injected i WHERE i.zone = d.zone AND d.ts >= i.starts AND d.ts < i.ends) ORDER BY ts" > "$out/$zone.injected.csv"
	psql_demo -At -F, -c "SELECT to_char(ts, 'YYYY-MM-DD HH24:MI'), rides FROM detections WHERE zone = '$zone' AND is_anomaly ORDER BY ts" > "$out/$zone.alerts.csv"
	[ -s "$out/$zone.injected.csv" ] || echo "2026-03-01 00:00,NaN" > "$out/$zone.injected.csv"
	[ -s "$out/$zone.alerts.csv" ] || echo "2026-03-01 00:00,NaN" > "$out/$zone.alerts.csv"
	gnuplot -e "zone='$zone'; dir='$out'" "$here/plot.gp"
done
psql_demo -At -F, -c "COPY (SELECT ts, zone, rides, anomaly_score, anomaly_grade, is_anomaly FROM detections ORDER BY zone, ts) TO STDOUT WITH (FORMAT csv, HEADER)" > "$out/detections.csv"

echo
echo "Pictures: $(ls "$out"/*.png | tr '\n' ' ')"
echo "Results:  $out/detections.csv"
echo "In SQL:   SELECT ts, zone, rides, (anomaly.detect(ARRAY[rides::float8], shingle_size => 8, z_factor => 4)"
echo "                 OVER (PARTITION BY zone ORDER BY ts)).* FROM rides;"
