#!/usr/bin/env bash
#
# cluster.sh — throwaway PostgreSQL clusters for tests, the demo and benchmarks.
#
#   test/cluster.sh start DIR [PORT|auto] [CONF_LINE...]
#       initdb in DIR/data and start a server on PORT (auto: the first free
#       port from 5400 up); its socket is in DIR, its log is
#       DIR/log/postgresql.log, and DIR/env holds the PG* variables that
#       reach it.  CONF_LINEs ("name = value") are appended to
#       postgresql.conf after the defaults below, so they win.  The
#       defaults allow deliveries to loopback (127.0.0.1, ::1), where the
#       tests' stand-ins listen.
#   test/cluster.sh stop DIR [--rm]
#       stop the server (fast shutdown); --rm also deletes DIR.
#   test/cluster.sh psql DIR [PSQL_ARG...]
#       psql on that cluster (-X, ON_ERROR_STOP).
#   test/cluster.sh env DIR          print 'export PG...=...' lines
#   test/cluster.sh as-user CMD...   run CMD as the server's OS user
#   test/cluster.sh user             print the server's OS user
#   test/cluster.sh free-port [FROM] print a free port
#
# Or source it and call the cluster_* functions, as a demo or benchmark does:
#
#   . test/cluster.sh
#   dir=$(mktemp -d /tmp/anomaly-demo.XXXXXX); chmod 755 "$dir"
#   trap 'cluster_stop "$dir/pg" --rm; rm -rf "$dir"' EXIT
#   cluster_start "$dir/pg" auto "log_min_messages = info"
#   cluster_psql "$dir/pg" -f demo/demo.sql
#
# DIR's parents must let the server's user through (mktemp -d makes 0700
# directories: chmod 755 them).
#
# PostgreSQL refuses to run as root, so when invoked as root the server runs
# as $ANOMALY_TEST_USER (default: postgres, the Debian package's system user,
# created here if missing); otherwise it runs as the invoking user.
#
# Settings from the environment:
#   ANOMALY_TEST_USER  OS user for the server when invoked as root
#   ANOMALY_PRELOAD    shared_preload_libraries (default 'anomaly,pg_cron');
#                      a library that is not installed is left out, with a
#                      message; '' preloads nothing
#   ANOMALY_CRON_DB    cron.database_name (default contrib_regression, the
#                      database pg_regress creates)
#   PG_CONFIG          which PostgreSQL (default: the Debian 15 one)
#
# The server listens on its Unix socket only, with trust authentication: the
# socket directory is private to the server's user (and root).  To listen on
# TCP as well, pass "listen_addresses = '127.0.0.1'" as a CONF_LINE.

if [ -z "${PG_CONFIG:-}" ]; then
	if [ -x /usr/lib/postgresql/15/bin/pg_config ]; then
		PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
	else
		PG_CONFIG=pg_config
	fi
fi

cluster_die() {
	echo "cluster.sh: $*" >&2
	return 1
}

cluster_bindir() {
	"$PG_CONFIG" --bindir
}

# The OS user that runs servers; created when missing and we are root.
cluster_user() {
	if [ "$(id -u)" -ne 0 ]; then
		id -un
		return 0
	fi
	local u=${ANOMALY_TEST_USER:-postgres}
	if ! id "$u" >/dev/null 2>&1; then
		useradd --system --user-group --create-home \
			--home-dir "/var/lib/$u" --shell /bin/sh "$u" >&2 ||
			cluster_die "could not create user $u" || return 1
	fi
	echo "$u"
}

# Runs a command as the server's OS user (as-is when that is us).  The
# working directory is kept when that user may enter it, else it is /.
cluster_as_user() {
	local u
	u=$(cluster_user) || return 1
	if [ "$(id -u)" -ne 0 ] || [ "$u" = root ]; then
		"$@"
		return
	fi
	if runuser -u "$u" -- test -x "$PWD" 2>/dev/null; then
		runuser -u "$u" -- "$@"
	else
		(cd / && runuser -u "$u" -- "$@")
	fi
}

# True when nothing listens on the port over TCP on loopback and no other
# server's socket of that port sits in the usual places.
cluster_port_free() {
	local p=$1
	if timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$p" 2>/dev/null; then
		return 1
	fi
	[ ! -e "/tmp/.s.PGSQL.$p" ] && [ ! -e "/var/run/postgresql/.s.PGSQL.$p" ]
}

cluster_free_port() {
	local p=${1:-5400}
	while [ "$p" -lt 65535 ]; do
		if cluster_port_free "$p"; then
			echo "$p"
			return 0
		fi
		p=$((p + 1))
	done
	cluster_die "no free port from ${1:-5400} up"
}

# Drops from a comma-separated library list those not installed.
cluster_preload_list() {
	local want=$1 pkglib lib out=""
	pkglib=$("$PG_CONFIG" --pkglibdir)
	IFS=',' read -ra libs <<<"$want"
	for lib in "${libs[@]}"; do
		lib=${lib// /}
		[ -n "$lib" ] || continue
		if [ -e "$pkglib/$lib.so" ]; then
			out=${out:+$out,}$lib
		else
			echo "cluster.sh: $lib is not installed in $pkglib; not preloading it" >&2
		fi
	done
	echo "$out"
}

cluster_write_env() {
	local dir=$1 port=$2 u=$3
	cat >"$dir/env" <<EOF
export PGHOST='$dir'
export PGPORT='$port'
export PGUSER='$u'
export PGDATABASE='postgres'
EOF
}

cluster_start() {
	local dir=${1:?usage: cluster_start DIR [PORT|auto] [CONF_LINE...]}
	local port=${2:-auto}
	shift $(($# >= 2 ? 2 : 1))
	local bindir u preload auto=0 tries=0 line

	bindir=$(cluster_bindir) || return 1
	u=$(cluster_user) || return 1
	mkdir -p "$dir" || return 1
	dir=$(cd "$dir" && pwd)
	if [ -e "$dir/data/PG_VERSION" ]; then
		cluster_die "$dir/data already holds a cluster"
		return 1
	fi
	mkdir -p "$dir/log"
	chmod 700 "$dir"
	if [ "$(id -u)" -eq 0 ]; then
		chown -R "$u:" "$dir"
	fi
	if ! (cd / && cluster_as_user test -w "$dir/log"); then
		cluster_die "user $u cannot write in $dir (every parent directory must let $u through)"
		return 1
	fi

	if [ "$port" = auto ]; then
		auto=1
		port=$(cluster_free_port) || return 1
	fi

	(cd "$dir" && cluster_as_user "$bindir/initdb" -D "$dir/data" -U "$u" \
		-A trust -E UTF8 --locale=C --no-sync >"$dir/log/initdb.log" 2>&1) || {
		cat "$dir/log/initdb.log" >&2
		cluster_die "initdb failed in $dir/data"
		return 1
	}

	preload=$(cluster_preload_list "${ANOMALY_PRELOAD-anomaly,pg_cron}")
	{
		echo ""
		echo "# Added by test/cluster.sh"
		echo "port = $port"
		echo "listen_addresses = ''"
		echo "unix_socket_directories = '$dir'"
		echo "unix_socket_permissions = 0700"
		echo "shared_preload_libraries = '$preload'"
		echo "wal_level = logical"
		echo "max_replication_slots = 16"
		echo "max_wal_senders = 16"
		echo "max_worker_processes = 16"
		echo "fsync = off"
		echo "log_line_prefix = '%m [%p] %q%a '"
		echo "lc_messages = 'C'"
		# deliveries of tests, the demo and benchmarks go to local
		# stand-ins: allow loopback (refused by default)
		echo "anomaly.allowed_destination_hosts = '127.0.0.1, ::1'"
		# the regression databases are scored by process() and delivered by
		# deliver() in the tests themselves: no worker there
		echo "anomaly.detector_database = 'postgres'"
		echo "anomaly.sender_database = 'postgres'"
		if [[ ",$preload," == *",pg_cron,"* ]]; then
			echo "cron.database_name = '${ANOMALY_CRON_DB:-contrib_regression}'"
			# pg_cron reaches the server through libpq: use the socket.
			echo "cron.host = '$dir'"
		fi
		for line in "$@"; do
			echo "$line"
		done
	} >>"$dir/data/postgresql.conf"

	while :; do
		if (cd "$dir" && cluster_as_user "$bindir/pg_ctl" -D "$dir/data" \
			-l "$dir/log/postgresql.log" -w -t 120 start >"$dir/log/pg_ctl.log" 2>&1); then
			break
		fi
		tries=$((tries + 1))
		if [ $auto -eq 1 ] && [ $tries -lt 20 ] &&
			grep -qE 'could not (bind|create lock file)|already in use' "$dir/log/postgresql.log" 2>/dev/null; then
			port=$(cluster_free_port $((port + 1))) || return 1
			sed -i "s/^port = .*/port = $port/" "$dir/data/postgresql.conf"
			continue
		fi
		cat "$dir/log/pg_ctl.log" >&2
		tail -n 40 "$dir/log/postgresql.log" >&2 2>/dev/null
		cluster_die "server did not start (see $dir/log/postgresql.log)"
		return 1
	done

	cluster_write_env "$dir" "$port" "$u"
	if [ "$(id -u)" -eq 0 ]; then
		chown "$u:" "$dir/env"
	fi
	echo "cluster.sh: server on port $port, socket in $dir, user $u, preload '$preload'" >&2
}

cluster_stop() {
	local dir=${1:?usage: cluster_stop DIR [--rm]} rm=${2:-}
	local bindir
	bindir=$(cluster_bindir) || return 1
	if [ -e "$dir/data/postmaster.pid" ]; then
		(cd "$dir" && cluster_as_user "$bindir/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null) ||
			(cd "$dir" && cluster_as_user "$bindir/pg_ctl" -D "$dir/data" -m immediate -w -t 60 stop >/dev/null) ||
			cluster_die "could not stop the server in $dir/data"
	fi
	if [ "$rm" = --rm ]; then
		rm -rf "$dir"
	fi
}

cluster_env() {
	local dir=${1:?usage: cluster_env DIR}
	[ -r "$dir/env" ] || cluster_die "no cluster started in $dir" || return 1
	cat "$dir/env"
}

cluster_psql() {
	local dir=${1:?usage: cluster_psql DIR [PSQL_ARG...]}
	shift
	[ -r "$dir/env" ] || cluster_die "no cluster started in $dir" || return 1
	(
		# shellcheck disable=SC1091
		. "$dir/env"
		"$(cluster_bindir)/psql" -X -v ON_ERROR_STOP=1 "$@"
	)
}

# Run as a command unless sourced.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
	set -euo pipefail
	cmd=${1:-}
	[ $# -gt 0 ] && shift
	case "$cmd" in
		start) cluster_start "$@" ;;
		stop) cluster_stop "$@" ;;
		psql) cluster_psql "$@" ;;
		env) cluster_env "$@" ;;
		as-user) cluster_as_user "$@" ;;
		user) cluster_user ;;
		free-port) cluster_free_port "$@" ;;
		*)
			sed -n "3,/^if \[ -z/p" "$0" | sed "$ d" | sed 's/^# \{0,1\}//' >&2
			exit 2
			;;
	esac
fi
