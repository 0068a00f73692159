#!/usr/bin/env bash
# build.sh - every set-up and build step of gmem, one command each.
#
#   ./build.sh demo [args]   install deps, build, run `gmem demo`
#   ./build.sh test          install deps, build, run the test suite
#   ./build.sh test-asan     the test suite under ASan+UBSan
#   ./build.sh test-tsan     the concurrency (stress) suite under TSan
#   ./build.sh coverage      the test suite with gcov; line coverage per folder
#   ./build.sh bench [names] the benchmarks (ratios measured side by side)
#   ./build.sh build         deps + build only
#   ./build.sh fuzz T [SECS] run fuzz target T with libFuzzer (clang), 60 s
#   ./build.sh fuzz-merge T  add what a fuzz run found new to T's corpus
#
# Dependencies come from Debian packages; installing them needs root (or
# sudo). Nothing is downloaded from anywhere else.
set -euo pipefail
cd "$(dirname "$0")"

DEB_PKGS=(gcc meson ninja-build pkg-config libcriterion-dev libjansson-dev libxxhash-dev libzstd-dev libsodium-dev)

deps() {
	local missing=()
	for p in "${DEB_PKGS[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	local sudo=""
	[ "$(id -u)" -eq 0 ] || sudo="sudo"
	echo "build.sh: installing ${missing[*]}" >&2
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

# configure DIR [meson options...]: set up DIR once, then build it.
configure() {
	local dir=$1; shift
	[ -f "$dir/build.ninja" ] || meson setup "$dir" "$@" >/dev/null
	ninja -C "$dir" >/dev/null
}

# need_pkg PKG: a tool only one target needs, installed on first use.
need_pkg() {
	dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "ok installed" && return 0
	local sudo=""
	[ "$(id -u)" -eq 0 ] || sudo="sudo"
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$1" >/dev/null
}

# Line coverage of src/ by folder (gcovr's per-file table, summed; a
# folder's figure includes its subfolders, which are listed too), then the
# total. Only the library and VMM folders have targets (README).
coverage_report() {
	gcovr -r . --object-directory build-cov --filter 'src/' --txt build-cov/coverage.txt \
		>/dev/null
	awk '$1 ~ /^src\// && NF >= 4 && $2 ~ /^[0-9]+$/ {
		n = split($1, p, "/"); d = p[1] "/" p[2]
		lines[d] += $2; hit[d] += $3; L += $2; H += $3
		if (n > 3) { d = d "/" p[3]; lines[d] += $2; hit[d] += $3 }
	}
	END {
		for (d in lines) printf "coverage: %-16s %6d lines %6.1f%%\n", d, lines[d], 100 * hit[d] / lines[d] | "sort"
		close("sort")
		printf "coverage: %-16s %6d lines %6.1f%%\n", "total src/", L, 100 * H / L
	}' build-cov/coverage.txt
}

# Criterion reports through its synthesis line; --jobs 2 fits these machines.
run_tests() {
	local dir=$1; shift
	"$dir/tests/gmem-tests" --jobs 2 "$@"
}

# The fuzz build: clang, libFuzzer, ASan+UBSan, the targets only.
fuzz_build() {
	deps
	CC=clang configure build-fuzz -Dfuzz=true -Db_sanitize=address,undefined \
		-Db_lundef=false -Dc_args=-fno-sanitize-recover=all
}

fuzz_exe() {
	local exe=build-fuzz/tests/fuzz/fuzz-$1
	[ -x "$exe" ] || { echo "build.sh: no fuzz target '$1' (tests/fuzz/meson.build)" >&2; exit 2; }
	echo "$exe"
}

# fuzz_run TARGET SECONDS: new inputs go to build-fuzz/corpus/TARGET (the
# committed corpus is read, never written), crashes to build-fuzz/artifacts.
fuzz_run() {
	local t=$1 secs=${2:-60} exe log rc
	exe=$(fuzz_exe "$t")
	mkdir -p "build-fuzz/corpus/$t" "build-fuzz/artifacts/$t"
	log=build-fuzz/fuzz-$t.log
	set +e
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 "$exe" -max_total_time="$secs" \
		-timeout=10 -rss_limit_mb=4096 -print_final_stats=1 \
		-artifact_prefix="build-fuzz/artifacts/$t/" \
		"build-fuzz/corpus/$t" "tests/fuzz/corpus/$t" >"$log" 2>&1
	rc=$?
	set -e
	tail -n 20 "$log" >&2
	# libFuzzer ends on "Done N runs in S second(s)" and its stat:: lines.
	echo "fuzz: $t: $(sed -n 's/^stat::number_of_executed_units: *//p' "$log") executions," \
	     "$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log") s," \
	     "$(sed -n 's/^stat::new_units_added: *//p' "$log") new inputs, exit $rc," \
	     "$(ls "build-fuzz/artifacts/$t" | wc -l) findings in build-fuzz/artifacts/$t"
	return $rc
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
build)
	deps; configure build ;;
demo)
	deps; configure build; exec build/src/cli/gmem demo "$@" ;;
test)
	deps; configure build; run_tests build "$@" ;;
test-asan)
	deps
	configure build-asan -Db_sanitize=address,undefined -Db_lundef=false \
		-Dc_args=-fno-sanitize-recover=all
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	LSAN_OPTIONS=suppressions=$PWD/tests/lsan.supp:print_suppressions=0 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 run_tests build-asan "$@" ;;
test-tsan)
	deps
	configure build-tsan -Db_sanitize=thread -Db_lundef=false
	# Criterion cannot start under TSan: the stress suite has its own runner.
	TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
		build-tsan/tests/gmem-stress "$@" ;;
coverage)
	deps; need_pkg gcovr
	configure build-cov -Db_coverage=true -Doptimization=0
	find build-cov -name '*.gcda' -delete
	run_tests build-cov "$@" || true   # the figure is wanted even if a test fails
	coverage_report ;;
bench)
	deps; configure build; exec build/bench/gmem-bench "$@" ;;
fuzz)
	[ $# -ge 1 ] || { echo "usage: ./build.sh fuzz TARGET [SECONDS]" >&2; exit 2; }
	fuzz_build; fuzz_run "$@" ;;
fuzz-merge)
	[ $# -eq 1 ] || { echo "usage: ./build.sh fuzz-merge TARGET" >&2; exit 2; }
	fuzz_build
	mkdir -p "tests/fuzz/corpus/$1" "build-fuzz/corpus/$1"
	"$(fuzz_exe "$1")" -merge=1 "tests/fuzz/corpus/$1" "build-fuzz/corpus/$1" ;;
*)
	sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2 ;;
esac
