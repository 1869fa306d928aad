#!/usr/bin/env bash
#
# process_backlog.sh — what anomaly.process() costs when other tables' WAL
# lies before a small backlog (issue 18: 39 s for 500 MB of other tables'
# WAL before 51,000 rows, then 11 s for a call with nothing to do).
#
#   bench/process_backlog.sh
#
# On a throwaway cluster (bench/common.sh settings, anomaly preloaded, no
# detector worker: process() does the work), table watched(v) with a
# detector, table other(pad):
#
#   1. PROC_OTHER_MB (default 500) MB of rows of `other`, in transactions of
#      about 50 MB, then PROC_BACKLOG (default 51000) rows of `watched`.
#   2. Where decoding that WAL goes, on copies of the detector's slot:
#        advance_s       pg_replication_slot_advance on a copy: reading the
#                        WAL and building snapshots only (fast forward,
#                        nothing queued in the reorder buffer)
#        peek_s          pg_logical_slot_peek_binary_changes on a copy with
#                        the detector's output plugin and options: all of
#                        PostgreSQL's decoding (reorder buffer, spill to disk
#                        past logical_decoding_work_mem) and the plugin's
#                        filter, but no scoring
#        peek_nospill_s  the same with logical_decoding_work_mem = 2GB (no
#                        spill to disk)
#      and the slot statistics (pg_stat_replication_slots) of that copy:
#      spill_bytes, total_bytes.
#   3. process() three times, each in its own transaction: the first scores
#      the backlog, the second and third have nothing new.  For each: wall
#      seconds, rows, and the slot's confirmed_flush_lsn and restart_lsn
#      before and after (how much WAL the next call reads again).
#
# Output: "phase key=value ..." lines, then one JSON object per phase on
# stdout (and appended to $BENCH_JSONL when set).  The machine is shared:
# seconds move with its load (printed).
#
# Environment: PROC_OTHER_MB, PROC_BACKLOG, ANOMALY_BENCH_INSTALL=0 to use
# the installed extension.

set -uo pipefail

# shellcheck source=bench/detect_common.sh
. "$(dirname "${BASH_SOURCE[0]}")/detect_common.sh"

OTHER_MB=${PROC_OTHER_MB:-500}
BACKLOG=${PROC_BACKLOG:-51000}

# The copies of the slot in step 2 use the detector's output plugin.
detect_bench_start process \
	"anomaly.detector_workers = 0" \
	"output_plugin_libraries = 'anomaly'" || exit 1

psql_c <<'SQL' >/dev/null || exit 1
CREATE EXTENSION anomaly;
CREATE TABLE watched (id bigserial PRIMARY KEY, v float8 NOT NULL);
CREATE TABLE other (id bigserial PRIMARY KEY, pad text NOT NULL);
SELECT anomaly.create_detector('w', 'watched', ARRAY['v']);
SELECT anomaly.process('w');
SQL
SLOT=$(psql_c -c "SELECT slot_name FROM anomaly.detectors WHERE name = 'w'")

emit() {
	echo "$*"
	bench_json process_backlog "$*"
	echo "$*" | awk '{
		printf "{"
		for (i = 1; i <= NF; i++) {
			eq = index($i, "="); if (eq < 2) { printf "\"phase\":\"%s\"", $i; continue }
			k = substr($i, 1, eq - 1); v = substr($i, eq + 1)
			printf ",\"%s\":", k
			if (v ~ /^-?[0-9.]+$/) printf "%s", v; else printf "\"%s\"", v
		}
		print "}"
	}' >>"$WORK/json"
}

# 1. The WAL: other tables first, then the backlog.
start_lsn=$(psql_c -c "SELECT pg_current_wal_lsn()")
rows_per_50mb=$((50 * 1024 * 1024 / 260))
left=$OTHER_MB
while [ "$left" -gt 0 ]; do
	n=$((rows_per_50mb * (left < 50 ? left : 50) / 50))
	psql_c -c "INSERT INTO other (pad) SELECT repeat(md5(g::text), 6) FROM generate_series(1, $n) g" || exit 1
	left=$((left - 50))
done
psql_c -c "INSERT INTO watched (v) SELECT random() FROM generate_series(1, $BACKLOG)" || exit 1
wal=$(psql_c -c "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '$start_lsn')")
emit "wal other_mb=$OTHER_MB backlog=$BACKLOG wal_bytes=$wal load=$(loadavg)"

# 2. Decoding alone, on copies of the slot.
psql_c -c "SELECT pg_copy_logical_replication_slot('$SLOT', 'bench_ff')" >/dev/null
t0=$(bench_now)
psql_c -c "SELECT pg_replication_slot_advance('bench_ff', pg_current_wal_lsn())" >/dev/null
advance_s=$(bench_since "$t0")
psql_c -c "SELECT pg_drop_replication_slot('bench_ff')" >/dev/null
psql_c -c "SELECT pg_copy_logical_replication_slot('$SLOT', 'bench_peek')" >/dev/null
relid=$(psql_c -c "SELECT 'watched'::regclass::oid")
t0=$(bench_now)
peek_rows=$(psql_c -c "SELECT count(*) FROM pg_logical_slot_peek_binary_changes('bench_peek', NULL, NULL,
	'proto_version', '1', 'relations', '$relid', 'operations', 'insert')")
peek_s=$(bench_since "$t0")
stats=$(psql_c -c "SELECT spill_txns || ' ' || spill_bytes || ' ' || total_bytes FROM pg_stat_replication_slots WHERE slot_name = 'bench_peek'")
read -r spill_txns spill_bytes total_bytes <<<"${stats:-0 0 0}"
# the same with a reorder buffer large enough not to spill
t0=$(bench_now)
psql_c -c "SET logical_decoding_work_mem = '2GB'" -c "SELECT count(*) FROM pg_logical_slot_peek_binary_changes('bench_peek', NULL, NULL,
	'proto_version', '1', 'relations', '$relid', 'operations', 'insert')" >/dev/null
peek_nospill_s=$(bench_since "$t0")
psql_c -c "SELECT pg_drop_replication_slot('bench_peek')" >/dev/null
emit "decode advance_s=$advance_s peek_s=$peek_s peek_nospill_s=$peek_nospill_s peek_messages=$peek_rows spill_txns=$spill_txns spill_bytes=$spill_bytes decoded_bytes=$total_bytes work_mem=$(psql_c -c 'SHOW logical_decoding_work_mem') load=$(loadavg)"

# 3. process() three times.
for call in 1 2 3; do
	before=$(psql_c -c "SELECT confirmed_flush_lsn || ' ' || restart_lsn FROM pg_replication_slots WHERE slot_name = '$SLOT'")
	t0=$(bench_now)
	rows=$(psql_c -c "SELECT anomaly.process('w')")
	secs=$(bench_since "$t0")
	after=$(psql_c -c "SELECT confirmed_flush_lsn || ' ' || restart_lsn || ' ' ||
		pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn) FROM pg_replication_slots WHERE slot_name = '$SLOT'")
	read -r c0 r0 <<<"$before"
	read -r c1 r1 reread <<<"$after"
	emit "process call=$call seconds=$secs rows=$rows confirmed_before=$c0 confirmed_after=$c1 restart_before=$r0 restart_after=$r1 next_call_rereads_bytes=$reread load=$(loadavg)"
done
cat "$WORK/json"
