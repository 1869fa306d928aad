#!/usr/bin/env bash
#
# old_release.sh — builds the files of an earlier release of anomaly, as its
# package shipped them, for the live upgrade test (test/t/094_upgrade_live.pl).
#
#   test/old_release.sh [--sql-only] VERSION OUTDIR
#
# Takes the release's sources from git (its tag vVERSION, or the commit
# written below when the clone has no tags), builds them with PG_CONFIG and
# leaves in OUTDIR/VERSION/ what a package installs: anomaly.so,
# anomaly.control and the install script anomaly--VERSION.sql.  Nothing is
# installed anywhere.  With --sql-only, only the control file and the
# install script (for the catalog upgrade test, 090_upgrade, which runs them
# with the current library).  Exit status 2 (with the reason on stderr) when the
# sources cannot be had: no git, no repository, no such commit.
#
# Every release adds its line to release_commit.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SQL_ONLY=0
if [ "${1:-}" = --sql-only ]; then
	SQL_ONLY=1
	shift
fi
VERSION=${1:?usage: old_release.sh [--sql-only] VERSION OUTDIR}
OUTDIR=${2:?usage: old_release.sh [--sql-only] VERSION OUTDIR}
PG_CONFIG=${PG_CONFIG:-pg_config}

# The commit each release was cut from (its tag may be missing in a clone).
release_commit() {
	case "$1" in
	0.1.0) echo 76e1f0ed24fabc627ab7b67600a34b0577935214 ;;
	*) return 1 ;;
	esac
}

unavailable() {
	echo "old_release.sh: $*" >&2
	exit 2
}

command -v git >/dev/null 2>&1 || unavailable "git is not installed"
git -C "$ROOT" rev-parse --git-dir >/dev/null 2>&1 ||
	unavailable "$ROOT is not a git clone"
commit=$(release_commit "$VERSION") || unavailable "no commit known for release $VERSION"
if tagged=$(git -C "$ROOT" rev-parse -q --verify "v$VERSION^{commit}" 2>/dev/null); then
	[ "$tagged" = "$commit" ] ||
		unavailable "tag v$VERSION is $tagged, not the release commit $commit"
fi
git -C "$ROOT" cat-file -e "$commit^{commit}" 2>/dev/null ||
	unavailable "commit $commit of $VERSION is not in this clone (a shallow clone?)"

dest=$OUTDIR/$VERSION
build=$OUTDIR/$VERSION.src
rm -rf "$dest" "$build"
mkdir -p "$dest" "$build"
git -C "$ROOT" archive "$commit" | tar -C "$build" -xf -
files=(anomaly.control "anomaly--$VERSION.sql")
[ $SQL_ONLY -eq 1 ] || files+=(anomaly.so)
make -C "$build" -j"$(nproc 2>/dev/null || echo 2)" PG_CONFIG="$PG_CONFIG" \
	"${files[@]:1}" >"$OUTDIR/$VERSION.build.log" 2>&1 || {
	tail -n 40 "$OUTDIR/$VERSION.build.log" >&2
	echo "old_release.sh: building $VERSION failed" >&2
	exit 1
}
for f in "${files[@]}"; do cp "$build/$f" "$dest/"; done
grep -q "^default_version = '$VERSION'" "$dest/anomaly.control" ||
	unavailable "$VERSION's anomaly.control does not name $VERSION"
rm -rf "$build"
echo "built $VERSION ($commit) in $dest"
