#!/usr/bin/env bash
#
# alerts.sh — alert delivery benchmark on a throwaway cluster.
#
#   bench/alerts.sh [N_THROUGHPUT] [N_LATENCY]      (defaults 20000 and 500)
#
# 1. throughput: N_THROUGHPUT alerts queued in one transaction
#    (anomaly.send_alert), delivered by the sender worker to the local
#    webhook receiver (test/servers/webhook_receiver.py); deliveries/s from
#    the commit to the last one received.
# 2. latency: an alert rule on detector "bench" (min_score 1, one group per
#    row); N_LATENCY anomalous scores inserted one per transaction, about 100
#    a second; per alert, the time from its transaction (the payload's
#    created_at, taken at the transaction's start, just before the commit of
#    a one-statement transaction) to its arrival at the receiver.
#
# Prints human-readable lines, then one JSON line starting with
# {"bench":"alerts", ...}: the machine-readable result.  Exit status 0 when
# both targets (>= 1000 deliveries/s, p99 < 500 ms) are met, 1 otherwise.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
N_TP=${1:-20000}
N_LAT=${2:-500}
# shellcheck source=../test/cluster.sh
. "$ROOT/test/cluster.sh"

PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3

WORK=$(mktemp -d /tmp/anomaly-bench-alerts.XXXXXX)
chmod 755 "$WORK"
RECV_PID=
cleanup() {
	[ -n "$RECV_PID" ] && kill "$RECV_PID" 2>/dev/null
	cluster_stop "$WORK/pg" >/dev/null 2>&1 || true
	rm -rf "$WORK"
}
trap cleanup EXIT

"$PY" "$ROOT/test/servers/webhook_receiver.py" --port-file "$WORK/port" \
	--log "$WORK/received.jsonl" --lifetime 900 >"$WORK/receiver.out" 2>&1 &
RECV_PID=$!
for _ in $(seq 100); do [ -s "$WORK/port" ] && break; sleep 0.1; done
PORT=$(cat "$WORK/port")

# the receiver is on loopback, refused unless allowed
ANOMALY_PRELOAD=anomaly cluster_start "$WORK/pg" auto \
	"anomaly.sender_database = 'postgres'" \
	"anomaly.allowed_destination_hosts = '127.0.0.1'" \
	"anomaly.sender_batch = 500" \
	"anomaly.delivery_concurrency = 16" >/dev/null 2>&1
psql_() { cluster_psql "$WORK/pg" -qAt "$@"; }

psql_ <<SQL
CREATE EXTENSION anomaly;
SELECT anomaly.create_destination('bench', 'webhook', '{"url": "http://127.0.0.1:$PORT/hook"}');
SELECT anomaly.create_destination('rule', 'webhook', '{"url": "http://127.0.0.1:$PORT/rule"}');
SELECT anomaly.create_alert_rule('bench-high', detector => 'bench', destination => 'rule',
	min_score => 1, group_by => '{source_key}', send_resolved => false);
SQL

# --- 1. throughput ------------------------------------------------------------
T0=$(date +%s.%N)
psql_ -c "SELECT count(anomaly.send_alert('bench', 'alert ' || i, jsonb_build_object('n', i))) FROM generate_series(1, $N_TP) i" >/dev/null
T_COMMIT=$(date +%s.%N)
for _ in $(seq 1200); do
	n=$(psql_ -c "SELECT count(*) FROM anomaly.outbox WHERE destination = 'bench'")
	[ "$n" = 0 ] && break
	sleep 0.1
done

# --- 2. latency -----------------------------------------------------------------
{
	for i in $(seq "$N_LAT"); do
		echo "INSERT INTO anomaly.scores (detector, partition_key, source_key, anomaly_score, anomaly_grade) VALUES ('bench', 'p', '{\"id\": $i}', 5, 1);"
		echo "SELECT pg_sleep(0.01);"
	done
} | psql_ >/dev/null
for _ in $(seq 600); do
	n=$(psql_ -c "SELECT count(*) FROM anomaly.outbox")
	[ "$n" = 0 ] && break
	sleep 0.1
done
sleep 0.3

"$PY" - "$WORK/received.jsonl" "$T_COMMIT" "$N_TP" "$N_LAT" <<'PY'
import datetime, json, sys
path, t_commit, n_tp, n_lat = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
hook, rule = [], []
for line in open(path):
    e = json.loads(line)
    (hook if e["path"] == "/hook" else rule).append(e)
ns = {e["body"]["details"]["n"] for e in hook}
last = max(e["t"] for e in hook)
secs = last - t_commit
rate = len(ns) / secs if secs > 0 else 0.0
lat = []
for e in rule:
    created = datetime.datetime.fromisoformat(e["body"]["created_at"]).timestamp()
    lat.append((e["t"] - created) * 1000.0)
lat.sort()
def pct(p):
    return round(lat[min(len(lat) - 1, int(p / 100.0 * len(lat)))], 1) if lat else None
res = {
    "bench": "alerts",
    "deliveries": len(ns), "queued": n_tp, "duplicates": len(hook) - len(ns),
    "seconds": round(secs, 3), "deliveries_per_s": round(rate, 1),
    "latency_samples": len(lat), "latency_expected": n_lat,
    "latency_ms": {"p50": pct(50), "p95": pct(95), "p99": pct(99),
                   "max": round(lat[-1], 1) if lat else None},
    "targets": {"deliveries_per_s": 1000, "p99_ms": 500},
}
res["pass"] = (len(ns) == n_tp and rate >= 1000 and len(lat) == n_lat
               and lat and res["latency_ms"]["p99"] < 500)
print("throughput: %d alerts delivered in %.2f s: %.0f deliveries/s (target >= 1000)"
      % (len(ns), secs, rate))
print("latency (commit -> received, %d alerts from rule evaluation): p50 %s ms, p95 %s ms, "
      "p99 %s ms, max %s ms (target p99 < 500)" % (len(lat), pct(50), pct(95), pct(99),
                                                  res["latency_ms"]["max"]))
print(json.dumps(res, separators=(",", ":")))
sys.exit(0 if res["pass"] else 1)
PY
