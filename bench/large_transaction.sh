#!/usr/bin/env bash
#
# large_transaction.sh — what one very large source transaction costs a
# detector round: its rows arrive together at its commit, and a round takes
# at most 64 MB of decoded rows or anomaly.detector_transaction_rows rows of
# it, the next rounds decoding it again for the rest (src/detect/reader.c).
#
#   bench/large_transaction.sh
#
# On a throwaway cluster (bench/common.sh settings, anomaly preloaded, no
# detector worker: process() does the work), each case is one INSERT into a
# table with a detector, then anomaly.process() in a new session:
#
#   values    LT_VALUES (default 20) rows of LT_VALUE_MB (default 20) MB of
#             incompressible text, which the detector's features read
#             (length(note)): split by the 64 MB bound
#   rows      LT_ROWS (default 3000000) small rows, with
#             anomaly.detector_transaction_rows at its default (split) and
#             at 100000000 (whole): the price of the parts in time, and what
#             they save in memory
#
# For each: process()'s wall seconds, rounds (batch_seq), rows scored, and
# the session's peak resident memory (VmHWM of /proc/self/status, which
# includes the backend's start).  Output: "case key=value ..." lines (and
# JSON lines in $BENCH_JSONL when set).  The machine is shared: seconds move
# with its load (printed).
#
# Environment: LT_VALUES, LT_VALUE_MB, LT_ROWS, ANOMALY_BENCH_INSTALL=0 to
# use the installed extension.

set -uo pipefail

# shellcheck source=bench/detect_common.sh
. "$(dirname "${BASH_SOURCE[0]}")/detect_common.sh"

VALUES=${LT_VALUES:-20}
VALUE_MB=${LT_VALUE_MB:-20}
ROWS=${LT_ROWS:-3000000}

detect_bench_start large_transaction "anomaly.detector_workers = 0" || exit 1

psql_c <<'SQL' >/dev/null || exit 1
CREATE EXTENSION anomaly;
SQL

emit() {
	echo "$*"
	bench_json large_transaction "$*"
}

# run_case NAME TABLE SETTING: one process() of the detector on TABLE in a
# session with SETTING, and its figures.
run_case() {
	local name=$1 table=$2 setting=$3 out secs rounds0 rounds1 scored hwm t0
	rounds0=$(psql_c -c "SELECT batch_seq FROM anomaly.detectors WHERE name = '$table'")
	t0=$(bench_now)
	out=$(psql_c -c "$setting" -c "SELECT anomaly.process('$table')" \
		-c "SELECT substring(pg_read_file('/proc/self/status') from 'VmHWM:\s+(\d+) kB')") || return 1
	secs=$(bench_since "$t0")
	scored=$(echo "$out" | sed -n 1p)
	hwm=$(echo "$out" | sed -n 2p)
	rounds1=$(psql_c -c "SELECT batch_seq FROM anomaly.detectors WHERE name = '$table'")
	emit "$name seconds=$secs rounds=$((rounds1 - rounds0)) rows=$scored peak_rss_kb=$hwm load=$(loadavg)"
}

# Large values: md5 digits do not compress, so each value is stored and
# decoded at its full size.
reps=$((VALUE_MB * 1024 * 1024 / 32))
psql_c <<SQL >/dev/null || exit 1
SET client_min_messages = warning;
CREATE TABLE big (id bigserial PRIMARY KEY, v float8, note text);
SELECT anomaly.create_detector('big', 'big', ARRAY['v', 'length(note)'],
	options => '{"number_of_trees": 5, "sub_sample_size": 16, "shingle_size": 1}');
SELECT anomaly.process('big');
INSERT INTO big (v, note)
	SELECT i, string_agg(md5((g * i)::text), '')
	FROM generate_series(1, $VALUES) i, generate_series(1, $reps) g GROUP BY i;
SQL
run_case "values values=$VALUES value_mb=$VALUE_MB" big "SET anomaly.detector_transaction_rows = DEFAULT" || exit 1

# Many small rows, split and whole.
for mode in split whole; do
	psql_c <<SQL >/dev/null || exit 1
SET client_min_messages = warning;
CREATE TABLE small_$mode (id bigserial PRIMARY KEY, v float8);
SELECT anomaly.create_detector('small_$mode', 'small_$mode', ARRAY['v'],
	options => '{"number_of_trees": 5, "sub_sample_size": 16, "shingle_size": 1}');
SELECT anomaly.process('small_$mode');
INSERT INTO small_$mode (v) SELECT random() FROM generate_series(1, $ROWS);
SQL
	if [ "$mode" = split ]; then
		setting="SET anomaly.detector_transaction_rows = DEFAULT"
	else
		setting="SET anomaly.detector_transaction_rows = 100000000"
	fi
	run_case "rows mode=$mode rows_in_transaction=$ROWS" "small_$mode" "$setting" || exit 1
done
