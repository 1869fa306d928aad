#!/usr/bin/env bash
#
# run.sh — the demo (make demo).  Installs what it needs, builds and installs
# the extension, starts a throwaway cluster and, in a database "demo":
#
# 1. ad hoc: generates four weeks of taxi rides in three zones with injected
#    anomalies, scores them in SQL with detect(), prints the alerts beside
#    the injected anomalies, and draws one picture per zone;
# 2. the pipeline: a webhook receiver and an SNS stand-in on 127.0.0.1, two
#    destinations, a table the same rides are committed to slice by slice in
#    compressed real time (one simulated day per 1.5 s), a detector on it
#    that grades as detect() does, an alert rule on the grade to both
#    destinations; it shows the progress per day and the alerts as the
#    stand-ins receive them, then draws one picture per zone with the alerts
#    received.  The whole demo takes about a minute.
#
#   demo/run.sh [OUT_DIR]
#
# Environment:
#   ANOMALY_DEMO_OUT=DIR          where pictures and results go (default
#                                 demo/out; OUT_DIR wins)
#   ANOMALY_DEMO_INSTALL=0        skip the packages, the build and the install:
#                                 use the extension already installed (tests)
#   ANOMALY_DEMO_DAY_SECONDS=S    wall-clock seconds per simulated day (1.5)
#   ANOMALY_DEMO_KEEP=1           leave the cluster running at the end, to
#                                 look at the results in SQL (the command to
#                                 stop it is printed)
#   PG_CONFIG                     which PostgreSQL (default: the Debian 15 one)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/.." && pwd)
out=${1:-${ANOMALY_DEMO_OUT:-$src/demo/out}}
install=${ANOMALY_DEMO_INSTALL:-1}
day_secs=${ANOMALY_DEMO_DAY_SECONDS:-1.5}
keep=${ANOMALY_DEMO_KEEP:-0}
demo_start=$(date +%s.%N)

# The alert rule's threshold on the detector's grade, and the stand-ins'
# demo-only AWS keys (they are nobody's).
min_grade=0.5
topic_arn='arn:aws:sns:eu-west-1:123456789012:ops'
aws_key_id='AKIDANOMALYDEMO00001'
aws_secret='demo/NotARealSecret/anomaly+demo+only0001'
days=28
first_day='2026-03-01 00:00+00'

if [ "$install" != 0 ]; then
	bash "$src/test/deps.sh" --demo
	PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
	make -C "$src" -s PG_CONFIG="$PG_CONFIG" >/dev/null
	if [ "$(id -u)" -eq 0 ]; then
		make -C "$src" -s install PG_CONFIG="$PG_CONFIG" >/dev/null
	else
		sudo make -C "$src" -s install PG_CONFIG="$PG_CONFIG" >/dev/null
	fi
fi

. "$src/test/cluster.sh"
for tool in gnuplot perl; do
	command -v "$tool" >/dev/null || { echo "demo: $tool is missing (test/deps.sh --demo installs it)" >&2; exit 1; }
done
[ -e "$("$PG_CONFIG" --sharedir)/extension/anomaly.control" ] ||
	{ echo "demo: the extension is not installed (run without ANOMALY_DEMO_INSTALL=0)" >&2; exit 1; }
python=/usr/bin/python3
[ -x "$python" ] || python=python3

mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d /tmp/anomaly-demo.XXXXXX)
chmod 755 "$work"
mkdir "$work/srv"
server_pids=()

cleanup() {
	local rc=$?
	local pid
	for pid in "${server_pids[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	for pid in "${server_pids[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	if [ "$keep" = 1 ] && [ $rc -eq 0 ] && [ -e "$work/pg/env" ]; then
		echo
		echo "The cluster is still running (ANOMALY_DEMO_KEEP=1; the stand-ins have stopped, so new"
		echo "alerts wait in anomaly.outbox):"
		echo "  bash $src/test/cluster.sh psql $work/pg -d demo"
		echo "and to stop it and remove it:"
		echo "  bash $src/test/cluster.sh stop $work/pg --rm; rm -rf $work"
	else
		cluster_stop "$work/pg" --rm >/dev/null 2>&1 || true
		rm -rf "$work"
	fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start_server NAME ARGS...: a stand-in of test/servers/ on 127.0.0.1 (a
# port of its choosing), logging what it receives; it stops at exit, and by
# itself after ten minutes in any case.  Sets $port.
start_server() {
	local name=$1 _
	shift
	"$python" "$src/test/servers/$name.py" --port-file "$work/srv/$name.port" \
		--log "$work/srv/$name.jsonl" --lifetime 600 "$@" >"$work/srv/$name.out" 2>&1 &
	server_pids+=($!)
	for _ in $(seq 200); do
		[ -s "$work/srv/$name.port" ] && break
		sleep 0.1
	done
	if [ ! -s "$work/srv/$name.port" ]; then
		echo "demo: $name did not start:" >&2
		cat "$work/srv/$name.out" >&2
		exit 1
	fi
	port=$(cat "$work/srv/$name.port")
}

start_server webhook_receiver
webhook_url="http://127.0.0.1:$port/hook"
start_server sns_standin --access-key "$aws_key_id" --secret-key "$aws_secret" --region eu-west-1
sns_endpoint="http://127.0.0.1:$port/"

# The AWS keys and the SNS endpoint are superuser-only settings: they go in
# postgresql.conf, never in SQL.  Deliveries to loopback (the stand-ins) are
# refused unless allowed.
ANOMALY_PRELOAD=anomaly cluster_start "$work/pg" auto \
	"wal_level = logical" \
	"anomaly.allowed_destination_hosts = '127.0.0.1'" \
	"anomaly.detector_database = 'demo'" \
	"anomaly.sender_database = 'demo'" \
	"anomaly.sender_naptime = '200ms'" \
	"anomaly.sns_endpoint = '$sns_endpoint'" \
	"anomaly.aws_access_key_id = '$aws_key_id'" \
	"anomaly.aws_secret_access_key = '$aws_secret'" >/dev/null 2>"$work/cluster.err" ||
	{ cat "$work/cluster.err" >&2; exit 1; }
# The workers connect to "demo" (they retry until it exists).  Every
# statement is bounded.
cluster_psql "$work/pg" -q -c "CREATE DATABASE demo" \
	-c "ALTER DATABASE demo SET timezone = 'UTC'" \
	-c "ALTER DATABASE demo SET statement_timeout = '60s'"

psql_demo() {
	cluster_psql "$work/pg" -d demo -q -v ON_ERROR_STOP=1 "$@"
}

# wait_until SECONDS WHAT SQL: polls SQL until it returns t, at most SECONDS.
wait_until() {
	local secs=$1 what=$2 sql=$3 end
	end=$(($(date +%s) + secs))
	while [ "$(psql_demo -At -c "$sql")" != t ]; do
		if [ "$(date +%s)" -ge "$end" ]; then
			echo "demo: gave up after ${secs}s waiting for $what" >&2
			return 1
		fi
		sleep 0.2
	done
}

# --- 1. ad hoc ---------------------------------------------------------------

echo "== anomaly demo: taxi rides in three zones, four weeks, 10-minute counts =="
psql_demo -c "CREATE EXTENSION anomaly" -f "$here/generate.sql"
psql_demo -At -c "SELECT count(*) || ' rows in ' || count(DISTINCT zone) || ' zones, ' || (SELECT count(*) FROM injected) || ' injected anomalies' FROM rides"
start=$(date +%s%N)
psql_demo -P pager=off -f "$here/score.sql"
end=$(date +%s%N)
echo
echo "scored $(psql_demo -At -c 'SELECT count(*) FROM rides') rows in $(( (end - start) / 1000000 )) ms"

zones=$(psql_demo -At -c "SELECT DISTINCT zone FROM rides ORDER BY 1")
for zone in $zones; do
	psql_demo -At -F, -c "SELECT to_char(ts, 'YYYY-MM-DD HH24:MI'), rides, round(anomaly_score::numeric, 3) FROM detections WHERE zone = '$zone' ORDER BY ts" > "$out/$zone.series.csv"
	psql_demo -At -F, -c "SELECT to_char(ts, 'YYYY-MM-DD HH24:MI'), rides FROM detections d WHERE zone = '$zone' AND EXISTS (SELECT 1 FROM injected i WHERE i.zone = d.zone AND d.ts >= i.starts AND d.ts < i.ends) ORDER BY ts" > "$out/$zone.injected.csv"
	psql_demo -At -F, -c "SELECT to_char(ts, 'YYYY-MM-DD HH24:MI'), rides FROM detections WHERE zone = '$zone' AND is_anomaly ORDER BY ts" > "$out/$zone.alerts.csv"
	[ -s "$out/$zone.injected.csv" ] || echo "2026-03-01 00:00,NaN" > "$out/$zone.injected.csv"
	[ -s "$out/$zone.alerts.csv" ] || echo "2026-03-01 00:00,NaN" > "$out/$zone.alerts.csv"
	gnuplot -e "zone='$zone'; dir='$out'" "$here/plot.gp"
done
psql_demo -At -F, -c "COPY (SELECT ts, zone, rides, anomaly_score, anomaly_grade, is_anomaly FROM detections ORDER BY zone, ts) TO STDOUT WITH (FORMAT csv, HEADER)" > "$out/detections.csv"
psql_demo -c "COPY (SELECT zone, starts, ends, kind FROM injected ORDER BY starts) TO STDOUT WITH (FORMAT csv, HEADER)" > "$out/injected.csv"

# --- 2. the pipeline ------------------------------------------------------------

echo
echo "== The pipeline: the same rides committed as they happen, a detector, alerts to a webhook and SNS =="
psql_demo -v webhook_url="$webhook_url" -v topic_arn="$topic_arn" -v min_grade="$min_grade" \
	-f "$here/stream.sql" >/dev/null
cat <<EOF
table     rides_live (ts, zone, rides), primary key (zone, ts)
detector  taxi: features rides * 6.0 (rides per hour), partition_by zone,
          the defaults (shingle 8, normalize, z_factor 4), with explanation
rule      taxi-unusual: min_grade $min_grade, to ops-webhook and ops-sns
webhook   ops-webhook -> $webhook_url (local receiver)
sns       ops-sns -> $topic_arn, endpoint $sns_endpoint
          (local stand-in that checks each SigV4 signature; keys in postgresql.conf)
EOF
wait_until 30 "the detector worker and the alert sender" \
	"SELECT EXISTS (SELECT 1 FROM anomaly.detector_status WHERE name = 'taxi' AND worker_pid IS NOT NULL)
	    AND EXISTS (SELECT 1 FROM pg_stat_activity WHERE backend_type = 'anomaly alert sender'
	                AND datname = current_database())"

echo
echo "Streaming $days days, one day per ${day_secs}s, each day as 12 transactions (every 2 simulated hours):"
echo

# Reads what the stand-ins received: counts the alerts (firing) of each in
# firing[], and writes the notifications received since the last call, one
# line each, to $work/new.txt.
declare -A printed=([webhook]=0 [sns]=0)
declare -A firing=([webhook]=0 [sns]=0)
read_received() {
	local r n log
	: >"$work/new.txt"
	for r in webhook sns; do
		log=$work/srv/sns_standin.jsonl
		[ $r = sns ] || log=$work/srv/webhook_receiver.jsonl
		perl "$here/received.pl" "$r" "$log" >"$work/$r.csv"
		n=$(wc -l <"$work/$r.csv")
		firing[$r]=$(grep -c ',firing,' "$work/$r.csv" || true)
		[ "$n" -gt "${printed[$r]}" ] || continue
		tail -n +$((printed[$r] + 1)) "$work/$r.csv" | while IFS=, read -r rcv _ status zone ts score grade dir lat; do
			if [ "$status" = firing ]; then
				printf '      %-7s ALERT     %-8s  %s  grade %.2f  score %.2f  %-4s  (received %s ms after the commit)\n' \
					"$rcv" "$zone" "$(date -u -d "$ts" '+%b %d %H:%M')" "$grade" "$score" "$dir" "$lat"
			else
				printf '      %-7s %-9s %-8s  %s\n' "$rcv" "$status" "$zone" "$(date -u -d "$ts" '+%b %d %H:%M')"
			fi
		done >>"$work/new.txt"
		printed[$r]=$n
	done
}

t0=$(date +%s.%N)
for ((d = 0; d < days; d++)); do
	day_t0=$(awk -v t="$t0" -v d="$d" -v s="$day_secs" 'BEGIN { printf "%.3f", t + d * s }')
	psql_demo -c "CALL stream_day(timestamptz '$first_day' + $d * interval '1 day', $day_t0, $day_secs)"
	progress=$(psql_demo -At -F ' ' -c "SELECT to_char(timestamptz '$first_day' + $d * interval '1 day', 'Mon DD Dy'),
		(SELECT count(*) FROM rides_live), (SELECT rows_scored FROM anomaly.detector_status WHERE name = 'taxi')")
	read -r mon dd dy inserted scored <<<"$progress"
	read_received
	printf '  %s %s %s   rows inserted %6d   scored %6d   alerts received: webhook %d, sns %d\n' \
		"$mon" "$dd" "$dy" "$inserted" "$scored" "${firing[webhook]}" "${firing[sns]}"
	cat "$work/new.txt"
done

wait_until 30 "the detector to score every row" \
	"SELECT rows_scored + rows_failed >= (SELECT count(*) FROM rides_live) FROM anomaly.detector_status WHERE name = 'taxi'" ||
	{ psql_demo -x -c "SELECT * FROM anomaly.detector_status"; exit 1; }
wait_until 30 "the outbox to be delivered" "SELECT NOT EXISTS (SELECT 1 FROM anomaly.outbox)" ||
	{ psql_demo -x -c "SELECT * FROM anomaly.delivery_status"; exit 1; }
sleep 0.3
read_received
if [ -s "$work/new.txt" ]; then
	echo "  after the last day:"
	cat "$work/new.txt"
fi

# What the stand-ins received, into the database, beside what was injected.
psql_demo -c "CREATE TABLE received_alerts (receiver text, received_at timestamptz, status text, zone text,
	ts timestamptz, score float8, grade float8, direction text, latency_ms float8)"
for r in webhook sns; do
	psql_demo -c "CREATE TEMP TABLE l (receiver text, received_at float8, status text, zone text, ts timestamptz,
			score float8, grade float8, direction text, latency_ms float8)" \
		-c "\\copy l FROM '$work/$r.csv' WITH (FORMAT csv)" \
		-c "INSERT INTO received_alerts SELECT receiver, to_timestamp(received_at), status, zone, ts, score,
			grade, direction, latency_ms FROM l"
done

echo
echo "== Injected anomalies, and the first alert each stand-in received for them (within 6 hours) =="
psql_demo -P pager=off -c "
SELECT i.zone, i.kind, to_char(i.starts, 'Mon DD HH24:MI') AS injected_at,
	   to_char(min(a.ts) FILTER (WHERE a.receiver = 'webhook'), 'Mon DD HH24:MI') AS webhook_alert,
	   to_char(min(a.ts) FILTER (WHERE a.receiver = 'sns'), 'Mon DD HH24:MI') AS sns_alert,
	   round(max(a.grade)::numeric, 2) AS grade,
	   round(avg(a.latency_ms)) AS commit_to_receipt_ms
FROM injected i
LEFT JOIN received_alerts a ON a.status = 'firing' AND a.zone = i.zone
	AND a.ts >= i.starts AND a.ts < i.starts + interval '6 hours'
GROUP BY i.zone, i.kind, i.starts ORDER BY i.starts"
psql_demo -At -c "
SELECT 'Other alerts received: ' || count(*) FILTER (WHERE receiver = 'webhook') || ' by the webhook, '
	   || count(*) FILTER (WHERE receiver = 'sns') || ' by SNS'
FROM received_alerts a
WHERE status = 'firing' AND NOT EXISTS (SELECT 1 FROM injected i WHERE i.zone = a.zone
	AND a.ts >= i.starts AND a.ts < i.starts + interval '6 hours')"
echo
echo "== Delivery, per destination =="
psql_demo -P pager=off -c "SELECT destination, kind, sent, retried, dead, queued FROM anomaly.delivery_status ORDER BY 1"
psql_demo -At -c "
SELECT format('The detector scored %s rows; scores and grades agree with anomaly.detect() over the same rows in commit order: %s (largest differences %s, %s)',
	   count(*), coalesce(max(abs(s.anomaly_score - (w.d).anomaly_score)) < 1e-9
						  AND max(abs(s.anomaly_grade - (w.d).anomaly_grade)) < 1e-9, false),
	   coalesce(max(abs(s.anomaly_score - (w.d).anomaly_score)), 0), coalesce(max(abs(s.anomaly_grade - (w.d).anomaly_grade)), 0))
FROM anomaly.scores s
JOIN (SELECT zone, ts, anomaly.detect(ARRAY[rides * 6.0])
							OVER (PARTITION BY zone ORDER BY ts) AS d
	  FROM rides_live) w ON s.partition_key = w.zone AND (s.source_key ->> 'ts')::timestamptz = w.ts
WHERE s.detector = 'taxi'"

for zone in $zones; do
	psql_demo -At -F, -c "SELECT to_char(r.ts, 'YYYY-MM-DD HH24:MI'), r.rides, round(s.anomaly_score::numeric, 3),
			round(s.anomaly_grade::numeric, 3)
		FROM rides_live r JOIN anomaly.scores s ON s.detector = 'taxi' AND s.partition_key = r.zone
			AND (s.source_key ->> 'ts')::timestamptz = r.ts
		WHERE r.zone = '$zone' ORDER BY r.ts" > "$out/$zone.stream.csv"
	psql_demo -At -F, -c "SELECT to_char(i.starts, 'YYYY-MM-DD HH24:MI'), to_char(i.ends, 'YYYY-MM-DD HH24:MI'),
			(SELECT r.rides FROM rides_live r WHERE r.zone = i.zone AND r.ts = i.starts),
			(SELECT ceil(1.08 * max(r.rides)) FROM rides_live r WHERE r.zone = i.zone)
		FROM injected i WHERE i.zone = '$zone' ORDER BY i.starts" > "$out/$zone.spans.csv"
	[ -s "$out/$zone.spans.csv" ] || echo "2026-03-01 00:00,2026-03-01 00:00,NaN,NaN" > "$out/$zone.spans.csv"
	for r in webhook sns; do
		psql_demo -At -F, -c "SELECT to_char(a.ts, 'YYYY-MM-DD HH24:MI'), l.rides, round(a.grade::numeric, 3)
			FROM received_alerts a JOIN rides_live l ON l.zone = a.zone AND l.ts = a.ts
			WHERE a.receiver = '$r' AND a.status = 'firing' AND a.zone = '$zone' ORDER BY a.ts" > "$out/$zone.$r.csv"
		[ -s "$out/$zone.$r.csv" ] || echo "2026-03-01 00:00,NaN,NaN" > "$out/$zone.$r.csv"
	done
	gnuplot -e "zone='$zone'; dir='$out'; min_grade=$min_grade" "$here/plot_stream.gp"
done
psql_demo -c "COPY (SELECT s.partition_key AS zone, s.source_key ->> 'ts' AS ts, s.features[1] AS rides_per_hour,
		s.anomaly_score, s.anomaly_grade, s.explanation, s.commit_time, s.scored_at
	FROM anomaly.scores s WHERE s.detector = 'taxi' ORDER BY s.id) TO STDOUT WITH (FORMAT csv, HEADER)" > "$out/stream_scores.csv"
psql_demo -c "COPY (SELECT * FROM received_alerts ORDER BY received_at) TO STDOUT WITH (FORMAT csv, HEADER)" > "$out/received_alerts.csv"
cp "$work/srv/webhook_receiver.jsonl" "$out/webhook.jsonl"
cp "$work/srv/sns_standin.jsonl" "$out/sns.jsonl"

demo_end=$(date +%s.%N)
cat <<EOF

Pictures (open with any image viewer, e.g. xdg-open):
  ad hoc, detect() in SQL:     $(for z in $zones; do printf '%s ' "$out/$z.png"; done)
  streamed, alerts received:   $(for z in $zones; do printf '%s ' "$out/$z.stream.png"; done)
Results:
  $out/detections.csv         detect() over the stored rides
  $out/stream_scores.csv      the detector's scores (anomaly.scores)
  $out/received_alerts.csv    the notifications each stand-in received
  $out/webhook.jsonl, $out/sns.jsonl   the stand-ins' own logs (SNS: the Publish requests)
In SQL (ANOMALY_DEMO_KEEP=1 keeps the cluster; database demo):
  SELECT ts, zone, rides, (anomaly.detect(ARRAY[rides::float8])
         OVER (PARTITION BY zone ORDER BY ts)).* FROM rides;
  SELECT partition_key, source_key ->> 'ts' AS ts, anomaly_score, anomaly_grade, explanation
    FROM anomaly.scores WHERE detector = 'taxi' AND anomaly_grade > 0 ORDER BY source_key ->> 'ts';
  SELECT * FROM anomaly.detector_status;
  SELECT rule, key, status, fired_at, peak_grade FROM anomaly.alerts ORDER BY episode;
  SELECT * FROM anomaly.delivery_status;
  SELECT * FROM received_alerts WHERE status = 'firing' ORDER BY ts;   -- what the stand-ins got
The demo took $(awk -v a="$demo_start" -v b="$demo_end" 'BEGIN { printf "%.0f", b - a }') s.
EOF
