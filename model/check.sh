#!/usr/bin/env bash
# Model-check the lock protocol (docs/PROTOCOL.md) with spin.
# Usage: model/check.sh        (needs spin and a C compiler; installs nothing)
set -u

if ! command -v spin >/dev/null 2>&1; then
	echo "SKIP: spin not installed"
	exit 0
fi
CC=${CC:-gcc}

here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$here"/*.pml "$work"/

passed=0
failed=0

# [OPT=-O2] check NAME FILE MODE EXPECT [SPIN-DEFINES...]
#   OPT    optimisation for pan (default -O1: compiles fast; -O2 pays off
#          only for the searches of millions of states)
#   MODE   safety | liveness
#   EXPECT ok     : no error, and (for the full safety runs) no unreached code
#          clean  : no error
#          assert : spin must find the critical-section assertion violated
#          cycle  : spin must find an acceptance cycle (liveness violation)
check() {
	local name=$1 file=$2 mode=$3 expect=$4
	shift 4
	local dir="$work/$name" cflags pflags out start end secs states verdict
	mkdir -p "$dir"
	cp "$work"/*.pml "$dir"/
	if [ "$mode" = safety ]; then
		cflags="-DSAFETY"
		pflags=""
	else
		cflags=""
		pflags="-a -f"          # acceptance cycles under weak fairness
	fi
	start=$(date +%s.%N)
	out=$(cd "$dir" &&
		spin "$@" -a "$file" >spin.log 2>&1 &&
		$CC ${OPT:--O1} -w $cflags -DMEMLIM=2048 -o pan pan.c >cc.log 2>&1 &&
		./pan -m1000000 $pflags 2>&1)
	local rc=$?
	end=$(date +%s.%N)
	secs=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
	states=$(printf '%s\n' "$out" | awk '/states, stored/ { print $1; exit }')

	verdict=FAIL
	if [ $rc -ne 0 ] && [ -z "$out" ]; then
		out="spin/cc failed: $(cat "$dir"/spin.log "$dir"/cc.log 2>/dev/null | head -5)"
	elif printf '%s\n' "$out" | grep -qE 'max search depth too small|out of memory|hint: to reduce memory'; then
		out="search incomplete: $(printf '%s\n' "$out" | grep -E 'depth|memory' | head -2)"
	else
		case $expect in
		ok|clean)
			if printf '%s\n' "$out" | grep -q 'errors: 0$'; then
				verdict=PASS
				if [ "$expect" = ok ] &&
					! printf '%s\n' "$out" | grep -q '(0 of [0-9]* states)'; then
					verdict=FAIL
					out="unreached code: $(printf '%s\n' "$out" | sed -n '/unreached in proctype/,/ states)/p' | head -8)"
				fi
			fi ;;
		assert)
			if printf '%s\n' "$out" | grep -q 'assertion violated.*incs\[q\]'; then
				verdict=PASS
			fi ;;
		cycle)
			if printf '%s\n' "$out" | grep -q 'acceptance cycle'; then
				verdict=PASS
			fi ;;
		esac
	fi

	local what
	case $expect in
	assert) what="violation found (expected)" ;;
	cycle) what="liveness violation found (expected)" ;;
	*) what="no error" ;;
	esac
	if [ $verdict = PASS ]; then
		passed=$((passed + 1))
		printf 'PASS  %-28s %-34s %10s states %6ss\n' "$name" "$what" "${states:-?}" "$secs"
	else
		failed=$((failed + 1))
		printf 'FAIL  %-28s %s\n' "$name" "$(printf '%s\n' "$out" | grep -E 'error|assert|cycle|unreached|incomplete|failed|depth|memory' | head -6)"
	fi
}

# kernel: the safety runs with expire use -DNO_BLOCK (every Locker
# non-blocking): a blocking Locker's steps are a subset of a non-blocking
# one's (see kernel.pml), so this loses nothing and halves the search.
for m in mkdir opencreate kernel; do
	nb=; [ $m = kernel ] && nb=-DNO_BLOCK
	OPT=-O2 check "$m-safety"    $m.pml safety   ok     $nb        # 3 procs x 2 locks
	check "$m-safety-2x4"        $m.pml safety   clean  $nb -DNPROC=2 -DITER=4
	check "$m-safety-no-expire"  $m.pml safety   clean  -DNO_EXPIRE
	check "$m-liveness"          $m.pml liveness clean  -DLIVENESS -DNO_EXPIRE
	check "$m-buggy"             $m.pml safety   assert $nb -DBUGGY
done
check "mkdir-safety-refresh"       mkdir.pml      safety   ok     -DREFRESH -DNPROC=2 -DITER=3
check "mkdir-safety-refresh-3x1"   mkdir.pml      safety   ok     -DREFRESH -DNPROC=3 -DITER=1
check "mkdir-buggy-recheck"        mkdir.pml      safety   assert -DREFRESH -DBUGGY_RECHECK -DNPROC=2 -DITER=2
check "mkdir-buggy-liveness"       mkdir.pml      liveness cycle -DLIVENESS -DNO_EXPIRE -DBUGGY_LIVE
check "mkdir-liveness-expire"      mkdir.pml      liveness clean -DLIVENESS
check "opencreate-liveness-expire" opencreate.pml liveness clean -DLIVENESS
OPT=-O2 check "kernel-liveness-expire" kernel.pml liveness clean -DLIVENESS
check "kernel-old-liveness-expire" kernel.pml     liveness cycle -DLIVENESS -DOLD_ACQUIRE -DNO_BLOCK

echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
