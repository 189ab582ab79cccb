#!/usr/bin/env bash
# Soak test of liblocking (not run in CI): hardening/soak.sh [minutes]
#
# For MINUTES (default 30), mixed load on every lock method at once: per
# method 4 worker processes x 2 threads, each thread using Lockers on three
# names (waiting forever, 2 s, 50 ms or try-once timeouts; expire disabled;
# locker_check/locker_refresh inside) and open_locked_fd on two files (in
# their own directory and in a separate lock directory), while a supervisor
# SIGKILLs a random worker every 10-200 ms (and starts a new one). Reports
# per method: acquisitions, kills, violations (two parties inside one
# critical section, a killed holder's leftover mark aside) and stalls (no
# acquisition of a method for more than 5 s; a worker that needs more than
# 5 s to finish its round at the end; a name not lockable after the run).
#
# Environment: LOCKING_LIB_DIR (directory of liblocking.so; default: build
# target/release), SOAK_DIR (where the lock directories go; default a
# mktemp -d under $TMPDIR or /tmp, removed afterwards), SOAK_PROCS,
# SOAK_THREADS, SOAK_FORCE_METHOD (e.g. fake: every slot unlocked, to see the
# checks fail). Exits 0 when there was no violation, stall or error.

set -uo pipefail
export LC_ALL=C

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$HERE")
MINUTES=${1:-30}
case "$MINUTES" in
'' | *[!0-9.]*) echo "usage: $0 [minutes]" >&2; exit 2 ;;
esac
SECONDS_TOTAL=$(awk -v m="$MINUTES" 'BEGIN { printf "%d", m * 60 }')
[ "$SECONDS_TOTAL" -ge 1 ] || { echo "usage: $0 [minutes]" >&2; exit 2; }

if [ -z "${LOCKING_LIB_DIR:-}" ]; then
    echo "building liblocking (cargo build --release --lib)"
    (cd "$REPO" && cargo build --release --lib -q) || exit 1
    LOCKING_LIB_DIR=$REPO/target/release
fi
[ -f "$LOCKING_LIB_DIR/liblocking.so" ] || { echo "no liblocking.so in $LOCKING_LIB_DIR" >&2; exit 1; }
LOCKING_LIB_DIR=$(cd "$LOCKING_LIB_DIR" && pwd)

WORK=$(mktemp -d "${TMPDIR:-/tmp}/locking-soak.XXXXXX") || exit 1
PROBE_PID=""
cleanup() {
    local rc=$?
    trap - EXIT INT TERM HUP
    if [ -n "$PROBE_PID" ] && kill -0 "$PROBE_PID" 2>/dev/null; then
        kill -TERM "$PROBE_PID" 2>/dev/null
        kill -KILL -- "-$PROBE_PID" 2>/dev/null
        wait "$PROBE_PID" 2>/dev/null
    fi
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

mkdir -p "$WORK/lib"
ln -s "$LOCKING_LIB_DIR/liblocking.so" "$WORK/lib/liblocking.so"
ln -s "$LOCKING_LIB_DIR/liblocking.so" "$WORK/lib/liblocking.so.0"
cc -std=c11 -Wall -Wextra -Werror -O2 -g -pthread -I"$REPO/include" -I"$REPO/c_tests" \
    -o "$WORK/fsprobe" "$HERE/fsprobe.c" -L"$WORK/lib" -llocking \
    -Wl,-rpath,"$WORK/lib" || { echo "compiling hardening/fsprobe.c failed" >&2; exit 1; }

DIR=${SOAK_DIR:-$WORK/locks}
mkdir -p "$DIR"
echo "soak: $MINUTES min ($SECONDS_TOTAL s) on $DIR ($(stat -f -c %T "$DIR")), liblocking in $LOCKING_LIB_DIR"
# a generous limit: the run, then the wind-down (at most 30 s per worker)
# SOAK_FORCE_METHOD=fake runs every slot without locking: the soak must
# then report violations (a check of the checks)
timeout -k 10 $((SECONDS_TOTAL + 600)) "$WORK/fsprobe" soak -d "$DIR" -s "$SECONDS_TOTAL" \
    -p "${SOAK_PROCS:-4}" -t "${SOAK_THREADS:-2}" ${SOAK_FORCE_METHOD:+-m "$SOAK_FORCE_METHOD"} &
PROBE_PID=$!
wait "$PROBE_PID"
rc=$?
PROBE_PID=""
case $rc in
0) echo "soak: passed" ;;
124 | 137) echo "soak: FAILED: the run hung and was killed" ;;
*) echo "soak: FAILED (status $rc)" ;;
esac
exit "$rc"
