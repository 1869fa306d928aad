# shellcheck shell=bash
#
# nab_common.sh — sourced by the NAB benchmarks (bench/nab.sh,
# bench/nab_all.sh, bench/nab_grade_all.sh); sourcing it sources
# bench/common.sh too and sets ROOT (the repository), NAB_ROOT (the corpus,
# default ../shared/nab beside the repository) and NAB_SCORE (NAB's scorer,
# default ../shared/tools/nab_score.py).
#
#   nab_corpus_or_skip NAME   ends the script (status 0, "NAME: skipped ...")
#                             when there is no NAB corpus at NAB_ROOT
#   nab_files                 the corpus's category/file.csv keys, in byte order
#   nab_shared_cluster NAME   a work directory $WORK (/tmp/anomaly-NAME.*) and
#                             a throwaway cluster in it for all the runs of
#                             bench/nab.sh (exported as NAB_CLUSTER); both
#                             removed on exit
#   nab_field NAME            the value of NAME=... on each line of stdin
#   nab_table FORMAT NAME...  for each line of stdin, printf FORMAT with the
#                             values of NAME=... of that line

# shellcheck source=bench/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
ROOT=$BENCH_ROOT

NAB_ROOT=${NAB_ROOT:-$ROOT/../shared/nab}
NAB_SCORE=${NAB_SCORE:-$ROOT/../shared/tools/nab_score.py}

nab_corpus_or_skip() {
	if [ ! -d "$NAB_ROOT/data" ]; then
		echo "$1: skipped, no NAB corpus at $NAB_ROOT (set NAB_ROOT)"
		exit 0
	fi
}

nab_files() {
	(cd "$NAB_ROOT/data" && find . -mindepth 2 -maxdepth 2 -name '*.csv' | sed 's|^\./||' | LC_ALL=C sort)
}

nab_shared_cluster_cleanup() {
	local rc=$?
	cluster_stop "$WORK/pg" --rm >/dev/null 2>&1 || true
	rm -rf "$WORK"
	exit "$rc"
}

nab_shared_cluster() {
	WORK=$(mktemp -d "/tmp/anomaly-$1.XXXXXX")
	chmod 755 "$WORK"
	trap nab_shared_cluster_cleanup EXIT
	trap 'exit 130' INT TERM
	bench_install
	bench_cluster_start "$WORK/pg"
	export NAB_CLUSTER=$WORK/pg
}

nab_field() {
	sed -n "s/.*\\b$1=\\([^ ]*\\).*/\\1/p"
}

nab_table() {
	local fmt=$1 line name
	local -a values
	shift
	while read -r line; do
		values=()
		for name in "$@"; do
			values+=("$(echo "$line" | nab_field "$name")")
		done
		# shellcheck disable=SC2059 # the format is the caller's
		printf "$fmt" "${values[@]}"
	done
}
