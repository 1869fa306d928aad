#!/usr/bin/env bash
#
# check_exports.sh — the shared library exports only what PostgreSQL looks
# up by name (the Makefile builds with -fvisibility=hidden; src/compat.h):
# Pg_magic_func, _PG_init, the output plugin's _PG_output_plugin_init, each C
# function the install script names (AS 'MODULE_PATHNAME', 'symbol') with its
# pg_finfo_ record, and the background workers' entry points (*_main, found
# with dlsym from bgw_function_name).  Also that each symbol the install
# script names is exported.
#
#   test/check_exports.sh [anomaly.so [anomaly--VERSION.sql]]
#
# Prints what is wrong; exit status 1 when anything is.

set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LIB=${1:-$ROOT/anomaly.so}
SQL=${2:-$(ls "$ROOT"/anomaly--[0-9]*.[0-9]*.[0-9]*.sql | grep -v -- '--.*--' | tail -n 1)}

exported=$(nm -D --defined-only "$LIB" | awk '$2 ~ /^[TDBRVW]$/ { print $3 }' | sort -u)
named=$(grep -oE "'MODULE_PATHNAME'[[:space:]]*,[[:space:]]*'[A-Za-z0-9_]+'" "$SQL" |
	grep -oE "'[A-Za-z0-9_]+'$" | tr -d "'" | sort -u)
bad=0
for s in $exported; do
	case $s in
	Pg_magic_func | _PG_init | _PG_output_plugin_init | anomaly_*_main) continue ;;
	pg_finfo_*) grep -qx "${s#pg_finfo_}" <<<"$named" && continue ;;
	*) grep -qx "$s" <<<"$named" && continue ;;
	esac
	echo "exported but not looked up by PostgreSQL: $s"
	bad=1
done
for s in $named; do
	for want in "$s" "pg_finfo_$s"; do
		if ! grep -qx "$want" <<<"$exported"; then
			echo "named by $(basename "$SQL") but not exported: $want"
			bad=1
		fi
	done
done
n=$(wc -w <<<"$exported")
[ $bad -eq 0 ] && echo "exports: $n symbols, each looked up by PostgreSQL"
exit $bad
