#!/usr/bin/env bash
#
# wire_seeds.sh [OUTDIR] — real messages of the output plugin, framed as
# test/fuzz/fuzz_wire.c reads them (u16 little-endian length, message), one
# seed per source transaction and one with the whole stream.
#
# Starts a throwaway cluster (test/cluster.sh) with the installed extension,
# writes rows of many column kinds (by value, fixed-length, varlena, NULL,
# unchanged TOASTed, dropped columns, a partition with another column order,
# a column whose type changes), and reads them with
# pg_logical_slot_peek_binary_changes.  The seeds in test/fuzz/seeds/wire/
# were made by this script (default OUTDIR); rerun it after a format change.

set -euo pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${1:-$SRC/test/fuzz/seeds/wire}

. "$SRC/test/cluster.sh"
dir=$(mktemp -d /tmp/anomaly-wire-seeds.XXXXXX)
chmod 755 "$dir"
trap 'cluster_stop "$dir/pg" --rm >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
ANOMALY_PRELOAD='' cluster_start "$dir/pg" auto >/dev/null

cluster_psql "$dir/pg" -q <<'SQL'
CREATE EXTENSION anomaly;
CREATE TABLE kinds (a int2, b int4, c int8, d float4, e float8, f bool, g "char",
	gone int, h text, i numeric, j uuid, k name, l timestamptz, m bytea, big text);
ALTER TABLE kinds ALTER COLUMN big SET STORAGE EXTERNAL;
ALTER TABLE kinds DROP COLUMN gone;
CREATE TABLE parted (k int, v float8) PARTITION BY LIST (k);
CREATE TABLE parted_1 PARTITION OF parted FOR VALUES IN (1);
CREATE TABLE parted_2 (v float8, junk int, k int);
ALTER TABLE parted_2 DROP COLUMN junk;
ALTER TABLE parted ATTACH PARTITION parted_2 FOR VALUES IN (2);
\set allow 'DO $$BEGIN PERFORM set_config(''output_plugin_libraries'', ''pgoutput, test_decoding, anomaly'', false); EXCEPTION WHEN undefined_object OR invalid_parameter_value THEN NULL; END$$'
:allow;
SELECT 'init' FROM pg_create_logical_replication_slot('seeds', 'anomaly');
INSERT INTO kinds VALUES (1, -2, 3000000000, 1.5, -2.25, true, 'x', 'hello', 12.345,
	'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'a_name', '2024-01-01 00:00:00+00', '\x00ff10', 'small');
INSERT INTO kinds (a) VALUES (NULL), (7);
INSERT INTO kinds (a, h, big) VALUES (9, 'toasted row', repeat('0123456789abcdef', 200));
UPDATE kinds SET h = 'updated, big unchanged' WHERE a = 9;
BEGIN;
INSERT INTO parted VALUES (2, 0.5), (1, 1.5);
INSERT INTO parted_2 (k, v) VALUES (2, 2.5);
COMMIT;
ALTER TABLE kinds ALTER COLUMN b TYPE numeric;
INSERT INTO kinds (a, b, h) VALUES (11, 123456789012345678901234567890, repeat('é', 10));
SQL
cluster_psql "$dir/pg" -qAt -c "DO \$\$BEGIN PERFORM set_config('output_plugin_libraries',
		'pgoutput, test_decoding, anomaly', false); EXCEPTION WHEN undefined_object THEN NULL; END\$\$" -c \
	"SELECT encode(data, 'hex') FROM pg_logical_slot_peek_binary_changes('seeds', NULL, NULL,
		'relations', 'kinds'::regclass::oid || ',' || 'parted'::regclass::oid,
		'operations', 'insert,update')" >"$dir/messages"

mkdir -p "$OUT"
python3 - "$dir/messages" "$OUT" <<'PY'
import os, struct, sys
msgs = [bytes.fromhex(l.strip()) for l in open(sys.argv[1]) if l.strip()]
frame = lambda ms: b"".join(struct.pack("<H", len(m)) + m for m in ms)
xacts, cur = [], []
for m in msgs:
    cur.append(m)
    if m[1:2] == b"C":
        xacts.append(cur)
        cur = []
for i, x in enumerate(xacts):
    open(os.path.join(sys.argv[2], "xact-%02d" % i), "wb").write(frame(x))
open(os.path.join(sys.argv[2], "stream"), "wb").write(frame(msgs))
print("%d messages, %d transactions" % (len(msgs), len(xacts)))
PY
