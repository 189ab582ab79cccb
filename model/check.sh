#!/usr/bin/env bash
# Model-check the lock protocol (docs/PROTOCOL.md) with spin.
# Usage: model/check.sh [REGEX]   (needs spin and a C compiler; installs
#        nothing; with REGEX, only the checks whose name matches it, e.g.
#        `model/check.sh '^shared-'`)
set -u
only=${1:-}

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

# [OPT=-O2] [PANCC=...] [ASSERT_RE=...] check NAME FILE MODE EXPECT [SPIN-DEFINES...]
#   OPT    optimisation for pan (default -O1: compiles fast; -O2 pays off
#          only for the searches of millions of states)
#   PANCC  more compiler flags for pan, e.g. -DCOLLAPSE (compressed states:
#          a third of the memory, a little slower)
#   ASSERT_RE  for EXPECT assert: the violated assertion must match this
#          regex (default: the critical-section assertion, incs[q])
#   MODE   safety | liveness
#   EXPECT ok     : no error, and (for the full safety runs) no unreached code
#          clean  : no error
#          assert : spin must find the critical-section assertion violated
#          cycle  : spin must find an acceptance cycle (liveness violation)
check() {
	local name=$1 file=$2 mode=$3 expect=$4
	shift 4
	local dir="$work/$name" cflags pflags out start end secs states verdict
	if [ -n "$only" ] && ! [[ $name =~ $only ]]; then
		return 0
	fi
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
		$CC ${OPT:--O1} -w $cflags ${PANCC:-} -DMEMLIM=2048 -o pan pan.c >cc.log 2>&1 &&
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
			if printf '%s\n' "$out" | grep -q "assertion violated.*${ASSERT_RE:-incs\[q\]}"; then
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

# Shared locks and fencing tokens (shared.pml: the gate, E+r, E+f).  The
# 3x2 safety run leaves the fencing ghosts out (-DNOFENCE: with them 40 M
# states, 4 min); fencing is checked, with the safety assertion, in 3x1
# and 2x4.  fence: any fencing assertion.
fence='\(beh[AX]\|fin\[q\]\)'
OPT=-O2 PANCC=-DCOLLAPSE \
check "shared-safety"              shared.pml safety   ok     -DNOFENCE
OPT=-O2 PANCC=-DCOLLAPSE \
check "shared-fence-3x1"           shared.pml safety   ok     -DITER=1
check "shared-fence-2x4"           shared.pml safety   ok     -DNPROC=2 -DITER=4
PANCC=-DCOLLAPSE \
check "shared-safety-no-expire"    shared.pml safety   clean  -DNO_EXPIRE
check "shared-liveness"            shared.pml liveness clean  -DLIVENESS -DNO_EXPIRE
check "shared-liveness-expire"     shared.pml liveness clean  -DLIVENESS
check "shared-gate-not-fifo"       shared.pml liveness cycle  -DLIVENESS -DNO_EXPIRE -DPLAIN_LIVE
check "shared-buggy-starve"        shared.pml liveness cycle  -DLIVENESS -DNO_EXPIRE -DBUGGY_STARVE
check "shared-buggy-no-verify"     shared.pml safety   assert -DNPROC=2 -DITER=2 -DNOFENCE -DBUGGY_NO_VERIFY
check "shared-buggy-no-wait"       shared.pml safety   assert -DNPROC=2 -DITER=2 -DNOFENCE -DBUGGY_NO_WAIT
check "shared-rmdir-ignored"       shared.pml safety   assert -DNPROC=2 -DITER=2 -DNOFENCE -DRMDIR_IGNORED
ASSERT_RE='rfresh\[me\]' \
check "shared-buggy-recheck"       shared.pml safety   assert -DNPROC=2 -DITER=2 -DNOFENCE -DBUGGY_RECHECK
ASSERT_RE=$fence \
check "shared-buggy-early-draw"    shared.pml safety   assert -DNPROC=2 -DITER=2 -DBUGGY_EARLY_DRAW
ASSERT_RE=$fence \
check "shared-buggy-token-check"   shared.pml safety   assert -DNPROC=2 -DITER=2 -DBUGGY_NO_TOKEN_CHECK
# Not bugs: what the model shows the protocol does not promise.
ASSERT_RE='behA\[me\]' \
check "shared-fence-strict"        shared.pml safety   assert -DNPROC=2 -DITER=2 -DFENCE_STRICT
ASSERT_RE='intact' \
check "shared-x4-skip"             shared.pml safety   assert -DNPROC=2 -DITER=2 -DNOFENCE -DSTRICT_GRANT

# The hand-over queue (queue.pml, docs/PROTOCOL.md "Hand-over order"):
# safety and FIFO with a crash or a give-up at every step, liveness, and
# broken variants that must fail. assert: the FIFO or holders assertion.
OPT=-O2 \
check "queue-fifo"                 queue.pml safety   clean
check "queue-fifo-2x2"             queue.pml safety   clean  -DNPROC=2 -DITER=2
OPT=-O2 \
check "queue-liveness"             queue.pml liveness clean  -DLIVENESS
ASSERT_RE="arr\\[j\\]<arr\\[me\\]" \
check "queue-buggy-number-first"   queue.pml safety   assert -DBUGGY_NUMBER_FIRST
ASSERT_RE="arr\\[j\\]<arr\\[me\\]" \
check "queue-buggy-look-before"    queue.pml safety   assert -DBUGGY_LOOK_BEFORE
check "queue-buggy-no-judge"       queue.pml liveness cycle  -DLIVENESS -DBUGGY_NO_JUDGE

echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
