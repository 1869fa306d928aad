#!/usr/bin/env bash
#
# deps.sh — install the Debian packages that building and testing need.
#
#   test/deps.sh [--demo] [EXTRA_PACKAGE...]
#
# Asks dpkg first, so when everything is there it is fast and needs no
# network.  Installs with apt-get as root, or through sudo otherwise; runs
# 'apt-get update' only when the package lists are empty or an install fails.
# --demo adds what the demo needs on top of what the tests need.
#
# The one list of packages for the project: .ci/run, test/run_all.sh and
# demo/run.sh all come through here.

set -euo pipefail

PACKAGES=(
	make gcc libc6-dev build-essential	# compiler, make
	postgresql-15						# server, initdb, pg_ctl, psql
	postgresql-server-dev-15			# pg_config, PGXS, headers, pg_regress
	postgresql-15-cron					# pg_cron, preloaded by the test cluster
	libcurl4-openssl-dev				# alert senders
	perl libipc-run-perl libio-pty-perl	# prove, PostgreSQL::Test::Cluster
	python3 python3-aiosmtpd			# local stand-ins for SNS, webhooks, SMTP
	openssl								# a private CA for the TLS e-mail tests
	util-linux							# runuser
	gnuplot-nox							# the demo's pictures (its test runs in make test)
	prometheus-postgres-exporter		# TAP 092: monitoring/queries.yaml with the real exporter
)
DEMO_PACKAGES=()

want=("${PACKAGES[@]}")
while [ $# -gt 0 ]; do
	case "$1" in
		--demo) want+=(${DEMO_PACKAGES[@]+"${DEMO_PACKAGES[@]}"}) ;;
		-*) echo "deps.sh: unknown option $1" >&2; exit 2 ;;
		*) want+=("$1") ;;
	esac
	shift
done

missing=()
for p in "${want[@]}"; do
	status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
	case "$status" in
		*"install ok installed"*) ;;
		*) missing+=("$p") ;;
	esac
done

if [ ${#missing[@]} -eq 0 ]; then
	exit 0
fi

echo "deps.sh: installing ${missing[*]}"

if [ "$(id -u)" -eq 0 ]; then
	SUDO=()
elif command -v sudo >/dev/null 2>&1; then
	SUDO=(sudo)
else
	echo "deps.sh: missing packages (${missing[*]}) and not root, and no sudo to install them" >&2
	exit 1
fi

apt_get() {
	"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -q "$@"
}

# Empty package lists (a fresh machine): update before the first install.
if ! ls /var/lib/apt/lists/*_Packages >/dev/null 2>&1; then
	apt_get update
fi

if ! apt_get install -y --no-install-recommends "${missing[@]}"; then
	echo "deps.sh: install failed; updating the package lists and retrying" >&2
	apt_get update
	apt_get install -y --no-install-recommends "${missing[@]}"
fi

# The exporter's package starts and enables its own service where it can
# (port 9187, no database configured): TAP 092 runs an exporter of its own,
# so the package's is stopped and disabled.
if [[ " ${missing[*]} " == *" prometheus-postgres-exporter "* ]]; then
	"${SUDO[@]}" sh -c 'invoke-rc.d prometheus-postgres-exporter stop;
		update-rc.d prometheus-postgres-exporter disable;
		if [ -d /run/systemd/system ]; then systemctl disable --now prometheus-postgres-exporter.service; fi' \
		>/dev/null 2>&1 || true
fi
