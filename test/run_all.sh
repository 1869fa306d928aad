#!/usr/bin/env bash
#
# run_all.sh — every test suite, then one line "N passed, N failed".
#
#   make test            (or: bash test/run_all.sh)
#
# 1. installs missing Debian packages (test/deps.sh; as root or via sudo)
# 2. builds with WERROR=1 and installs the extension (as root or via sudo);
#    checks the library's exported symbols (test/check_exports.sh)
# 3. unit:      builds and runs test/unit/test_* from the repository's root
#               (so ../shared is the shared folder beside it); counts their
#               TAP lines
# 4. starts a throwaway cluster (test/cluster.sh) as an unprivileged user,
#    preloading anomaly and pg_cron, wal_level = logical
# 5. regress:   pg_regress on sql/*.sql (make installcheck); counts tests
# 6. isolation: pg_isolation_regress on specs/*.spec; counts tests
# 7. stops the cluster
# 8. tap:       prove on test/t/*.pl as the unprivileged user (each test makes
#               its own clusters with PostgreSQL::Test::Cluster); counts
#               top-level TAP assertions
#
# A suite with no tests counts 0.  A suite that cannot run (build failure,
# crash, missing plan, a server that does not start) counts one failure more.
# Exit status: 0 only when nothing failed.
#
# Environment:
#   ANOMALY_PRELOAD     shared_preload_libraries of the cluster
#                       (default 'anomaly,pg_cron'; see test/cluster.sh)
#   ANOMALY_TEST_USER   OS user for servers when run as root (default postgres)
#   ANOMALY_KEEP_TMP=1  keep the work directory (logs, data) even on success
#   PG_CONFIG           which PostgreSQL (default: the Debian 15 one)
#   SUITES              which suites to run (default "unit regress isolation tap")
#   TAP_ONLY           names of the TAP files to run (default: every test/t/*.pl);
#                      a name with no file is an error (exit 2), not a failure
#
# Before TAP, earlier releases are built from git into the work directory
# (test/old_release.sh) for the upgrade tests, 090_upgrade and
# 094_upgrade_live.
#   UNIT_TIMEOUT, REGRESS_TIMEOUT, TAP_TIMEOUT   seconds (600, 1800, 1800)

set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
GIVEN_PG_CONFIG=${PG_CONFIG:-}
# shellcheck source=cluster.sh
. "$ROOT/test/cluster.sh"

SUITES=${SUITES:-unit regress isolation tap}
UNIT_TIMEOUT=${UNIT_TIMEOUT:-600}
REGRESS_TIMEOUT=${REGRESS_TIMEOUT:-1800}
TAP_TIMEOUT=${TAP_TIMEOUT:-1800}
JOBS=$(nproc 2>/dev/null || echo 2)

names=()
passes=()
fails=()
notes=()

# record NAME PASSED FAILED [NOTE]
record() {
	names+=("$1")
	passes+=("$2")
	fails+=("$3")
	notes+=("${4:-}")
}

want_suite() {
	[[ " $SUITES " == *" $1 "* ]]
}

banner() {
	echo ""
	echo "=== $* ==="
}

# Prints the totals; the last line is exactly "N passed, N failed".
summary() {
	local i tp=0 tf=0
	banner summary
	for i in "${!names[@]}"; do
		printf '  %-10s %5d passed %5d failed  %s\n' "${names[$i]}" \
			"${passes[$i]}" "${fails[$i]}" "${notes[$i]}"
		tp=$((tp + passes[i]))
		tf=$((tf + fails[i]))
	done
	echo "$tp passed, $tf failed"
	TOTAL_FAILED=$tf
}

# tap_count FILE: sets T_PASS, T_FAIL, T_PLAN (-1 when none) from the
# top-level TAP lines of FILE.  "not ok ... # TODO" counts as passed.
tap_count() {
	read -r T_PASS T_FAIL T_PLAN < <(awk '
		/^ok [0-9]+/ { pass++ }
		/^not ok [0-9]+/ { if ($0 ~ /#[ \t]*TODO/) pass++; else fail++ }
		/^1\.\.[0-9]+/ { plan = substr($1, 4) + 0; hasplan = 1 }
		END { print pass + 0, fail + 0, (hasplan ? plan : -1) }' "$1")
}

# regress_count FILE: sets R_PASS, R_FAIL from pg_regress output.
regress_count() {
	R_PASS=$(grep -cE '\.\.\. ok( |$)|\.\.\. failed \(ignored\)' "$1")
	R_FAIL=$(grep -cE '\.\.\. FAILED' "$1")
}

# Installs the extension into the server's directories: directly when we
# may write there (root, or a user-owned PostgreSQL), else through sudo.
install_extension() {
	if [ "$(id -u)" -eq 0 ] ||
		{ [ -w "$("$PG_CONFIG" --pkglibdir)" ] && [ -w "$("$PG_CONFIG" --sharedir)/extension" ]; }; then
		make -C "$SRC" install PG_CONFIG="$PG_CONFIG"
	elif command -v sudo >/dev/null 2>&1; then
		sudo make -C "$SRC" install PG_CONFIG="$PG_CONFIG"
	else
		echo "cannot install into $("$PG_CONFIG" --pkglibdir): not root and no sudo"
		return 1
	fi
}

show_file() {
	local f=$1 lines=${2:-400}
	[ -s "$f" ] || return 0
	echo "----- $f (last $lines lines) -----"
	tail -n "$lines" "$f"
	echo "----- end of $f -----"
}

TOTAL_FAILED=0
WORK=
CLUSTER=
cleanup() {
	local rc=$?
	if [ -n "$CLUSTER" ]; then
		cluster_stop "$CLUSTER" >/dev/null 2>&1
	fi
	if [ -n "$WORK" ] && [ -d "$WORK" ]; then
		if [ "${ANOMALY_KEEP_TMP:-0}" = 1 ] || [ "$TOTAL_FAILED" -gt 0 ]; then
			rm -rf "$WORK/cluster/data" "$WORK"/tap/tmp_check/t_*_data
			echo "logs kept in $WORK"
		else
			rm -rf "$WORK"
		fi
	fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- 1. packages ------------------------------------------------------------

banner packages
if ! bash "$ROOT/test/deps.sh"; then
	record packages 0 1 "could not install the packages"
	summary
	exit 1
fi
echo "all present"

# The packages may have just brought pg_config: choose it again unless given.
if [ -n "$GIVEN_PG_CONFIG" ]; then
	PG_CONFIG=$GIVEN_PG_CONFIG
elif [ -x /usr/lib/postgresql/15/bin/pg_config ]; then
	PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
else
	PG_CONFIG=pg_config
fi
export PG_CONFIG
BINDIR=$("$PG_CONFIG" --bindir)
PGXS_DIR=$(dirname "$("$PG_CONFIG" --pgxs)")/..
PGXS_DIR=$(cd "$PGXS_DIR" && pwd)
SERVER_USER=$(cluster_user) || exit 1

WORK=$(mktemp -d "${TMPDIR:-/tmp}/anomaly-test.XXXXXX")
chmod 755 "$WORK"

# The server and the TAP tests run as SERVER_USER and must read the sources
# (fixtures, files that tests COPY FROM).  When they cannot (a clone under
# /root, say), everything runs from a readable copy instead.
SRC=$ROOT
if [ "$(id -u)" -eq 0 ] && [ "$SERVER_USER" != root ] &&
	! runuser -u "$SERVER_USER" -- test -r "$ROOT/test/run_all.sh" 2>/dev/null; then
	echo "$SERVER_USER cannot read $ROOT: testing a copy in $WORK/src"
	mkdir -p "$WORK/src"
	tar -C "$ROOT" --exclude=.git -cf - . | tar -C "$WORK/src" -xf -
	chown -R "$SERVER_USER:" "$WORK/src"
	SRC=$WORK/src
fi

# --- 2. build and install ---------------------------------------------------

banner build
BUILD_OK=0
if make -C "$SRC" -j"$JOBS" WERROR=1 PG_CONFIG="$PG_CONFIG" >"$WORK/build.log" 2>&1; then
	if install_extension >"$WORK/install.log" 2>&1; then
		BUILD_OK=1
		echo "built and installed into $("$PG_CONFIG" --pkglibdir)"
	else
		show_file "$WORK/install.log" 60
		record build 0 1 "make install failed"
	fi
else
	show_file "$WORK/build.log" 100
	record build 0 1 "make WERROR=1 failed"
fi

# The library exports only what PostgreSQL looks up by name.
if [ $BUILD_OK -eq 1 ]; then
	if bash "$SRC/test/check_exports.sh" "$SRC/anomaly.so" >"$WORK/exports.log" 2>&1; then
		cat "$WORK/exports.log"
		record exports 1 0
	else
		show_file "$WORK/exports.log" 60
		record exports 0 1 "anomaly.so exports more or less than PostgreSQL looks up"
	fi
fi

# --- 3. unit tests ----------------------------------------------------------

if want_suite unit; then
	banner unit
	up=0 uf=0 unote=
	if ! make -C "$SRC" -j"$JOBS" unit PG_CONFIG="$PG_CONFIG" >"$WORK/unit-build.log" 2>&1; then
		show_file "$WORK/unit-build.log" 100
		uf=1 unote="unit tests did not build"
	else
		shopt -s nullglob
		for src in "$SRC"/test/unit/test_*.c; do
			bin=${src%.c}
			name=$(basename "$bin")
			log="$WORK/unit-$name.log"
			(cd "$ROOT" && timeout "$UNIT_TIMEOUT" "$bin") >"$log" 2>&1
			rc=$?
			tap_count "$log"
			extra=0
			why=
			if [ "$rc" -ne 0 ] && [ "$T_FAIL" -eq 0 ]; then
				extra=1 why="exit status $rc"
			elif [ "$T_PLAN" -ne $((T_PASS + T_FAIL)) ]; then
				extra=1 why="plan $T_PLAN, ran $((T_PASS + T_FAIL)) (died?)"
			fi
			up=$((up + T_PASS))
			uf=$((uf + T_FAIL + extra))
			if [ $((T_FAIL + extra)) -gt 0 ]; then
				echo "FAIL $name: $T_PASS passed, $T_FAIL failed${why:+, $why}"
				grep -A8 -E '^not ok ' "$log" | head -n 200
				[ -n "$why" ] && tail -n 20 "$log"
			else
				echo "ok   $name: $T_PASS passed"
			fi
		done
		shopt -u nullglob
	fi
	record unit "$up" "$uf" "$unote"
fi

# --- 4. the throwaway cluster -----------------------------------------------

shopt -s nullglob
regress_files=("$SRC"/sql/*.sql)
spec_files=("$SRC"/specs/*.spec)
tap_files=("$SRC"/test/t/*.pl)
shopt -u nullglob
# TAP_ONLY="050_detect_exactly_once 080_hostile" runs only those TAP files.
if [ -n "${TAP_ONLY:-}" ]; then
	tap_files=()
	for n in $TAP_ONLY; do
		n=${n%.pl}
		if [ ! -f "$SRC/test/t/$n.pl" ]; then
			echo "run_all.sh: TAP_ONLY names $n, but test/t/$n.pl does not exist" >&2
			exit 2
		fi
		tap_files+=("$SRC/test/t/$n.pl")
	done
fi

need_cluster=0
if want_suite regress && [ ${#regress_files[@]} -gt 0 ]; then need_cluster=1; fi
if want_suite isolation && [ ${#spec_files[@]} -gt 0 ]; then need_cluster=1; fi

CLUSTER_OK=0
if [ $need_cluster -eq 1 ] && [ $BUILD_OK -eq 1 ]; then
	banner cluster
	if cluster_start "$WORK/cluster" auto; then
		CLUSTER=$WORK/cluster
		CLUSTER_OK=1
	else
		show_file "$WORK/cluster/log/postgresql.log" 40
	fi
fi

# run_pg_regress NAME LOG DIFFS MAKE_ARGS...: make installcheck on the
# cluster; records the counts of NAME.
run_pg_regress() {
	local name=$1 log=$2 diffs=$3 rc
	shift 3
	(
		cd "$SRC" || exit 1
		# shellcheck disable=SC1091
		. "$CLUSTER/env"
		timeout "$REGRESS_TIMEOUT" make installcheck PG_CONFIG="$PG_CONFIG" "$@"
	) >"$log" 2>&1
	rc=$?
	regress_count "$log"
	grep -E '\.\.\. |tests? (passed|failed)' "$log"
	if [ "$rc" -ne 0 ] || [ "$R_FAIL" -gt 0 ]; then
		show_file "$diffs" 400
		show_file "$CLUSTER/log/postgresql.log" 40
		if [ "$R_FAIL" -eq 0 ]; then
			tail -n 30 "$log"
			record "$name" "$R_PASS" 1 "did not run to the end (exit $rc)"
			return
		fi
	fi
	record "$name" "$R_PASS" "$R_FAIL"
}

# --- 5. pg_regress ----------------------------------------------------------

if want_suite regress; then
	banner regress
	if [ ${#regress_files[@]} -eq 0 ]; then
		echo "no sql/*.sql"
		record regress 0 0 "no tests"
	elif [ $BUILD_OK -eq 0 ]; then
		echo "not run: the extension was not built and installed"
		record regress 0 1 "not run: no build"
	elif [ $CLUSTER_OK -eq 0 ]; then
		record regress 0 1 "not run: the cluster did not start"
	else
		rm -f "$SRC/regression.diffs" "$SRC/regression.out"
		run_pg_regress regress "$WORK/regress.log" "$SRC/regression.diffs" ISOLATION=
	fi
fi

# --- 6. isolation -----------------------------------------------------------
#
# Debian's postgresql-client-15 ships pg_isolation_regress and isolationtester
# under $(pg_config --pkglibdir)/pgxs/src/test/isolation, where PGXS's
# ISOLATION variable expects them.

if want_suite isolation; then
	banner isolation
	if [ ${#spec_files[@]} -eq 0 ]; then
		echo "no specs/*.spec"
		record isolation 0 0 "no tests"
	elif [ ! -x "$PGXS_DIR/test/isolation/pg_isolation_regress" ]; then
		echo "pg_isolation_regress is not installed at $PGXS_DIR/test/isolation"
		record isolation 0 1 "not run: no pg_isolation_regress"
	elif [ $BUILD_OK -eq 0 ]; then
		record isolation 0 1 "not run: no build"
	elif [ $CLUSTER_OK -eq 0 ]; then
		record isolation 0 1 "not run: the cluster did not start"
	else
		rm -rf "$SRC/output_iso"
		run_pg_regress isolation "$WORK/isolation.log" "$SRC/output_iso/regression.diffs" REGRESS=
	fi
fi

# --- 7. stop the cluster ----------------------------------------------------

if [ -n "$CLUSTER" ]; then
	cluster_stop "$CLUSTER"
	CLUSTER=
fi

# --- 8. TAP -----------------------------------------------------------------
#
# Debian's postgresql-client-15 ships PostgreSQL::Test::Cluster and Utils
# under $(pg_config --pkglibdir)/pgxs/src/test/perl.  The tests start their
# own servers, so prove runs as SERVER_USER; TESTDIR (where tmp_check/ and its
# logs go) is a directory of that user's.  ANOMALY_SRC tells tests where the
# sources (fixtures, helper scripts) are.

if want_suite tap; then
	banner tap
	tp=0 tf=0 tnote=
	if [ ${#tap_files[@]} -eq 0 ]; then
		echo "no test/t/*.pl"
		tnote="no tests"
	elif [ $BUILD_OK -eq 0 ]; then
		echo "not run: the extension was not built and installed"
		tf=1 tnote="not run: no build"
	else
		mkdir -p "$WORK/tap"
		if [ "$(id -u)" -eq 0 ]; then
			chown "$SERVER_USER:" "$WORK/tap"
		fi
		# The upgrade tests run earlier releases' files: built once here,
		# from the repository's history (git is here even when the tests
		# run from a copy); a test says why it skips when they could not
		# be built.
		if [[ " ${tap_files[*]} " == *"/094_upgrade_live.pl "* ||
			" ${tap_files[*]} " == *"/090_upgrade.pl "* ]]; then
			mkdir -p "$WORK/old"
			for v in 0.1.0; do
				PG_CONFIG="$PG_CONFIG" nice bash "$ROOT/test/old_release.sh" "$v" "$WORK/old" ||
					echo "release $v not built: the upgrade tests will try or skip"
			done
			chmod -R a+rX "$WORK/old"
		fi
		for t in "${tap_files[@]}"; do
			name=$(basename "$t" .pl)
			log="$WORK/tap-$name.log"
			(
				cd "$SRC/test" || exit 1
				cluster_as_user env \
					PATH="$BINDIR:$PATH" \
					PG_REGRESS="$PGXS_DIR/test/regress/pg_regress" \
					TESTDIR="$WORK/tap" \
					ANOMALY_SRC="$SRC" \
					ANOMALY_OLD_RELEASES="$WORK/old" \
					PG_CONFIG="$PG_CONFIG" \
					timeout "$TAP_TIMEOUT" \
					prove -v -I "$PGXS_DIR/test/perl" -I "$SRC/test" "t/$name.pl"
			) >"$log" 2>&1
			rc=$?
			tap_count "$log"
			extra=0
			if [ "$rc" -ne 0 ] && [ "$T_FAIL" -eq 0 ]; then
				extra=1
			fi
			tp=$((tp + T_PASS))
			tf=$((tf + T_FAIL + extra))
			if [ $((T_FAIL + extra)) -gt 0 ]; then
				echo "FAIL $name: $T_PASS passed, $T_FAIL failed (prove exit $rc)"
				show_file "$log" 80
				show_file "$WORK/tap/tmp_check/log/regress_log_$name" 80
			else
				echo "ok   $name: $T_PASS passed"
			fi
		done
	fi
	record tap "$tp" "$tf" "$tnote"
fi

summary
[ "$TOTAL_FAILED" -eq 0 ]
