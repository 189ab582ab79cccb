#!/usr/bin/env bash
# The file system matrix of liblocking.
#
# For every lock method (mkdir, opencreate, kernel) and every file system
# below, with the lock directory on that file system:
#   stress   3 processes x 3 threads lock one name (0.6 s); an owner word
#            in shared memory and a non-atomic counter in shared memory and in
#            a file on the file system under test detect two holders at once
#            and lost updates;
#   killstress  the same (4 x 2, 1 s) while workers are SIGKILLed every
#            10-60 ms, half the time the holder: dead holders' locks are broken
#            by several waiters at once; a live holder that loses its lock
#            (expire is disabled) or an overlap is a failure;
#   sigkill  a holder (expire disabled) is killed with SIGKILL; two waiters
#            (expire disabled; timeout 10 s and forever) must get the lock,
#            the first within 5 s;
#   olfd     open_locked_fd excludes when the file is reached by two paths,
#            and a counter kept in the locked file loses no update.
# File systems: tmpfs; ext4, xfs, btrfs (loop images); overlayfs (its lower
# layer holding lock directories of an earlier run); FUSE (bindfs, default
# options, and bindfs --multithreaded --enable-lock-forwarding).
#
# Then "two views of one directory": two bindfs mounts of one backing
# directory, half the parties on each (as two hosts sharing a network file
# system): exclusion (with and without SIGKILLs), release pickup latency
# across the mounts (no inotify event crosses them: the waiter's fallback
# poll must notice, bound 2 s), and a holder killed on one mount recovered by
# a waiter on the other.
#
# A cell is "works", or what the library does instead: a clear error code
# with its message ("refused"). Silent non-exclusion ("NO EXCLUSION") fails
# the run, and so does a stall or an error without a message; on the local
# file systems anything but "works" fails. Negative controls (method FAKE; the
# kernel method across two FUSE mounts, whose OFD locks are per mount) must
# be caught as NO EXCLUSION, or the checks could not fail.
#
# Prints the tables and writes them to hardening/RESULTS.md (or
# $LOCKING_FS_MATRIX_RESULTS). Needs root, mount, losetup and a C compiler;
# without them it prints "SKIP: <reason>" and exits 0. A file system whose
# tools are missing (Debian packages: e2fsprogs xfsprogs btrfs-progs bindfs
# fuse3) is a "skipped" row; with LOCKING_FS_MATRIX_STRICT=1 that fails.
#
# Environment: LOCKING_LIB_DIR (directory of liblocking.so; default: build
# target/release with cargo), LOCKING_FS_MATRIX_SECONDS (stress duration,
# default 0.6), LOCKING_FS_MATRIX_ONLY (space-separated names of rows to run:
# tmpfs ext4 xfs btrfs overlay fuse fuse-lockfwd twoviews; a partial run
# leaves RESULTS.md alone).
#
# Everything (images, mounts, logs) lives in one mktemp -d directory; every
# mount and loop device is released and every process ended on exit, also
# on failure or SIGTERM/SIGINT.

set -uo pipefail
export LC_ALL=C

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$HERE")
RESULTS_MD=${LOCKING_FS_MATRIX_RESULTS:-$HERE/RESULTS.md}
SECONDS_STRESS=${LOCKING_FS_MATRIX_SECONDS:-0.6}
SECONDS_KILL=1          # killstress per cell (two views: twice that)
SECONDS_OLFD=0.3
STRICT=${LOCKING_FS_MATRIX_STRICT:-0}
ONLY=${LOCKING_FS_MATRIX_ONLY:-}
METHODS=(mkdir opencreate kernel)
LATENCY_BOUND=2.0      # seconds: release on one mount -> waiter on the other
PROBE_LIMIT=60         # seconds: any single probe run (a hang fails)

skip() {
    echo "SKIP: $*"
    exit 0
}

T0=$(date +%s.%N)

# ---------------------------------------------------------------- prerequisites
[ "$(id -u)" = 0 ] || skip "not root (mounting file systems needs root)"
for t in mount umount losetup truncate mktemp timeout cc mv; do
    command -v "$t" >/dev/null 2>&1 || skip "$t not found"
done

if [ -z "${LOCKING_LIB_DIR:-}" ]; then
    echo "building liblocking (cargo build --release --lib)"
    (cd "$REPO" && cargo build --release --lib -q) || { echo "FAIL: cargo build"; exit 1; }
    LOCKING_LIB_DIR=$REPO/target/release
fi
[ -f "$LOCKING_LIB_DIR/liblocking.so" ] || { echo "FAIL: no liblocking.so in $LOCKING_LIB_DIR"; exit 1; }
LOCKING_LIB_DIR=$(cd "$LOCKING_LIB_DIR" && pwd)

WORK=$(mktemp -d "${TMPDIR:-/tmp}/locking-fsmatrix.XXXXXX") || { echo "FAIL: mktemp"; exit 1; }
echo "WORKDIR $WORK"

MOUNTS=()       # mount points, in mount order ("fuse:<path>" for FUSE ones)
LOOPS=()        # loop devices we attached
PROBE_PID=""    # the running probe's timeout(1) process (its process group)

cleanup() {
    local rc=$?
    trap - EXIT INT TERM HUP
    set +e
    if [ -n "$PROBE_PID" ] && kill -0 "$PROBE_PID" 2>/dev/null; then
        kill -TERM "$PROBE_PID" 2>/dev/null
        kill -KILL -- "-$PROBE_PID" 2>/dev/null
        wait "$PROBE_PID" 2>/dev/null
    fi
    local i m
    for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
        m=${MOUNTS[i]}
        case "$m" in
        fuse:*)
            m=${m#fuse:}
            fusermount3 -u "$m" 2>/dev/null || umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
            ;;
        *)
            umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
            ;;
        esac
    done
    for l in "${LOOPS[@]}"; do
        losetup -d "$l" 2>/dev/null
    done
    if grep -q " $WORK/" /proc/mounts; then
        echo "FAIL: mounts left under $WORK:"
        grep " $WORK/" /proc/mounts
        rc=1
    else
        rm -rf --one-file-system "$WORK"
    fi
    local left
    left=$(losetup -a 2>/dev/null | grep -F "$WORK/" || true)
    if [ -n "$left" ]; then
        echo "FAIL: loop devices left: $left"
        rc=1
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# ---------------------------------------------------------------- the probe
mkdir -p "$WORK/lib" "$WORK/logs" "$WORK/mnt"
ln -s "$LOCKING_LIB_DIR/liblocking.so" "$WORK/lib/liblocking.so"
ln -s "$LOCKING_LIB_DIR/liblocking.so" "$WORK/lib/liblocking.so.0"
PROBE=$WORK/fsprobe
cc -std=c11 -Wall -Wextra -Werror -O2 -g -pthread -I"$REPO/include" -I"$REPO/c_tests" \
    -o "$PROBE" "$HERE/fsprobe.c" -L"$WORK/lib" -llocking \
    -Wl,-rpath,"$WORK/lib" || { echo "FAIL: compiling hardening/fsprobe.c"; exit 1; }

# run_probe LOGNAME fsprobe-args... : sets VERDICT (the verdict line without
# "VERDICT "), KIND (works/refused/noexcl/failed) and RESULT (the RESULT lines)
run_probe() {
    local log=$WORK/logs/$1.log t0
    shift
    t0=$(date +%s%N)
    timeout -k 5 "$PROBE_LIMIT" "$PROBE" "$@" >"$log" 2>&1 &
    PROBE_PID=$!
    wait "$PROBE_PID"
    local rc=$?
    PROBE_PID=""
    PROBE_TIME=$(( ($(date +%s%N) - t0) / 1000000 ))
    VERDICT=$(grep '^VERDICT ' "$log" | tail -1 | sed 's/^VERDICT //')
    RESULT=$(grep '^RESULT ' "$log" | sed 's/^RESULT //')
    KIND=${VERDICT%% *}
    if [ -z "$VERDICT" ]; then
        KIND=failed
        VERDICT="failed: the probe ended with status $rc and no verdict: $(tail -3 "$log" | tr '\n' ' ')"
    fi
    # shorten paths in messages: only the part below the mount point matters
    VERDICT=$(printf '%s' "$VERDICT" | sed -e "s#$WORK/mnt/[^/ ]*/##g" -e "s#$WORK/##g")
    if [ "$KIND" != works ]; then
        # the evidence, since $WORK (and the log) goes away at the end
        sed -n '1,15s/^/      | /p' "$log"
    fi
}

# field NAME "RESULT text": the value of NAME=... in a RESULT line
field() {
    printf '%s\n' "$2" | tr ' ' '\n' | sed -n "s/^$1=//p" | head -1
}

# ---------------------------------------------------------------- file systems
MP=""
SKIPREASON=""

mount_tmpfs() { # dir
    mkdir -p "$1" && mount -t tmpfs -o size=256m,mode=1777 tmpfs "$1" && MOUNTS+=("$1")
}

setup_tmpfs() {
    MP=$WORK/mnt/tmpfs
    mount_tmpfs "$MP" || { SKIPREASON="mount -t tmpfs failed"; return 1; }
}

setup_block() { # fstype mkfs-command size package
    local fs=$1 mkfs=$2 size=$3 pkg=$4
    command -v "$mkfs" >/dev/null 2>&1 || { SKIPREASON="$mkfs not found (Debian package $pkg)"; return 1; }
    local img=$WORK/$fs.img dev
    truncate -s "$size" "$img" || { SKIPREASON="truncate failed"; return 1; }
    case "$fs" in
    ext4) mkfs.ext4 -q -F "$img" ;;
    xfs) mkfs.xfs -q -f "$img" ;;
    btrfs) mkfs.btrfs -q -f "$img" >/dev/null ;;
    esac || { SKIPREASON="$mkfs failed"; return 1; }
    dev=$(losetup --find --show "$img") || { SKIPREASON="losetup failed (no loop devices?)"; return 1; }
    LOOPS+=("$dev")
    MP=$WORK/mnt/$fs
    mkdir -p "$MP"
    mount -t "$fs" "$dev" "$MP" || { SKIPREASON="mount -t $fs failed (kernel support?)"; return 1; }
    MOUNTS+=("$MP")
    chmod 1777 "$MP"
}

setup_overlay() {
    local layers=$WORK/mnt/overlay-layers
    mount_tmpfs "$layers" || { SKIPREASON="mount -t tmpfs failed"; return 1; }
    mkdir -p "$layers/lower" "$layers/upper" "$layers/work"
    # the lower layer holds the lock directories of an earlier run (as in
    # an image built with them): lock files, ~tmp/, left-over entries
    local m
    for m in "${METHODS[@]}"; do
        run_probe "overlay-lower-$m-stress" stress -m "$m" -d "$layers/lower/locks-$m" \
            -f "$layers/lower/data-$m" -p 1 -t 2 -s 0.1
        run_probe "overlay-lower-$m-olfd" olfd -m "$m" -d "$layers/lower/olfd-$m" -p 1 -s 0.1
        run_probe "overlay-lower-$m-sigkill" sigkill -m "$m" -d "$layers/lower/locks-$m"
    done
    MP=$WORK/mnt/overlay
    mkdir -p "$MP"
    mount -t overlay overlay \
        -o "lowerdir=$layers/lower,upperdir=$layers/upper,workdir=$layers/work" "$MP" ||
        { SKIPREASON="mount -t overlay failed"; return 1; }
    MOUNTS+=("$MP")
}

have_fuse() {
    command -v bindfs >/dev/null 2>&1 || { SKIPREASON="bindfs not found (Debian packages bindfs fuse3)"; return 1; }
    command -v fusermount3 >/dev/null 2>&1 || { SKIPREASON="fusermount3 not found (Debian package fuse3)"; return 1; }
    [ -c /dev/fuse ] || { SKIPREASON="no /dev/fuse"; return 1; }
}

# bindfs_mount backing mountpoint [bindfs options...]
bindfs_mount() {
    local back=$1 mp=$2
    shift 2
    mkdir -p "$back" "$mp"
    bindfs "$@" "$back" "$mp" || { SKIPREASON="bindfs $* failed"; return 1; }
    MOUNTS+=("fuse:$mp")
    # bindfs returns once the mount is in place; make sure it answers
    local i
    for i in $(seq 1 100); do
        grep -q " $mp fuse" /proc/mounts && stat "$mp" >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    SKIPREASON="bindfs mount at $mp did not appear"
    return 1
}

setup_fuse() {
    have_fuse || return 1
    MP=$WORK/mnt/fuse
    bindfs_mount "$WORK/fuse-back" "$MP"
}

setup_fuse_lockfwd() {
    have_fuse || return 1
    MP=$WORK/mnt/fuse-lockfwd
    bindfs_mount "$WORK/fuse-lockfwd-back" "$MP" --multithreaded --enable-lock-forwarding
}

# rows: name | label | kind (local: must work; fuse: works or refused) | setup
ROWS=(
    "tmpfs|tmpfs|local|setup_tmpfs"
    "ext4|ext4 (loop image)|local|setup_block ext4 mkfs.ext4 64M e2fsprogs"
    "xfs|xfs (loop image)|local|setup_block xfs mkfs.xfs 320M xfsprogs"
    "btrfs|btrfs (loop image)|local|setup_block btrfs mkfs.btrfs 128M btrfs-progs"
    "overlay|overlayfs (tmpfs layers, populated lower)|local|setup_overlay"
    "fuse|FUSE: bindfs (default options)|fuse|setup_fuse"
    "fuse-lockfwd|FUSE: bindfs --multithreaded --enable-lock-forwarding|fuse|setup_fuse_lockfwd"
)

FAILS=()        # reasons the run fails
KNOWN=()        # documented limitations seen in this run (reported, not failed)
declare -A CELL DETAIL

# a verdict message made fit for a table cell: entry names and Rust's
# "(os error N)" suffixes shortened
tidy() {
    printf '%s' "$1" | sed -E -e 's/ \(os error [0-9]+\)//g' \
        -e 's#\(([^()]*/)?[lh]-[^()/]*\)#(<entry>)#g' -e 's/^(stress|killstress|olfd|sigkill|latency): //'
}

short_cell() { # kind verdict -> a short table cell
    local kind=$1 v=$2
    v=$(tidy "${v#"$kind "}")
    case "$kind" in
    works) echo "works" ;;
    refused) echo "refused: $v" ;;
    noexcl) echo "**NO EXCLUSION**: $v" ;;
    *) echo "**FAILED**: $v" ;;
    esac
}

selected() {
    [ -z "$ONLY" ] && return 0
    local r
    for r in $ONLY; do [ "$r" = "$1" ] && return 0; done
    return 1
}

echo
echo "== file system x method matrix (stress ${SECONDS_STRESS} s, stress with SIGKILLs ${SECONDS_KILL} s, SIGKILL recovery, open_locked_fd)"
for row in "${ROWS[@]}"; do
    IFS='|' read -r name label kind setup <<<"$row"
    selected "$name" || continue
    SKIPREASON=""
    MP=""
    if ! $setup; then
        for m in "${METHODS[@]}"; do CELL[$name,$m]="skipped: $SKIPREASON"; done
        echo "-- $label: skipped: $SKIPREASON"
        [ "$STRICT" = 1 ] && FAILS+=("$label: skipped ($SKIPREASON) with LOCKING_FS_MATRIX_STRICT=1")
        continue
    fi
    echo "-- $label ($(awk -v m="$MP" '$2 == m {print $3}' /proc/mounts | tail -1) at $MP)"
    for m in "${METHODS[@]}"; do
        cell=""
        detail=""
        bad=""
        for probe in stress killstress sigkill olfd; do
            case $probe in
            stress) run_probe "$name-$m-stress" stress -m "$m" -d "$MP/locks-$m" -f "$MP/data-$m" -p 3 -t 3 -s "$SECONDS_STRESS" ;;
            killstress) run_probe "$name-$m-killstress" killstress -m "$m" -d "$MP/kill-$m" -p 4 -t 2 -s "$SECONDS_KILL" ;;
            sigkill) run_probe "$name-$m-sigkill" sigkill -m "$m" -d "$MP/locks-$m" ;;
            olfd) run_probe "$name-$m-olfd" olfd -m "$m" -d "$MP/olfd-$m" -p 3 -s "$SECONDS_OLFD" ;;
            esac
            printf '   %-10s %-10s %5d ms  %s\n' "$m" "$probe" "$PROBE_TIME" "$VERDICT"
            if [ "$KIND" = works ] || [ "$KIND" = refused ]; then
                case $probe in
                stress) detail+="${detail:+, }$(field rate "$RESULT")" ;;
                killstress) detail+="${detail:+, }$(field kills "$RESULT") kills" ;;
                sigkill) detail+="${detail:+, }recovery $(field recovery_first "$RESULT") s" ;;
                olfd) detail+="${detail:+, }$(field increments "$RESULT") olfd" ;;
                esac
            fi
            if [ "$KIND" != works ]; then
                cell+="${cell:+; }$probe: $(short_cell "$KIND" "$VERDICT")"
                if [ "$KIND" = noexcl ] || [ "$KIND" = failed ] || [ "$kind" = local ]; then
                    bad+="${bad:+; }$probe: $VERDICT"
                fi
            fi
        done
        CELL[$name,$m]=${cell:-works}
        DETAIL[$name,$m]=$detail
        [ -n "$bad" ] && FAILS+=("$label, $m: $bad")
    done
done

# ---------------------------------------------------------------- negative control
echo
echo "== negative control: method FAKE must be caught"
CONTROL=""
MP=$WORK/mnt/control
if mount_tmpfs "$MP"; then
    for probe in stress killstress sigkill olfd; do
        case $probe in
        stress) run_probe "control-stress" stress -m fake -d "$MP/locks" -f "$MP/data" -p 3 -t 3 -s 0.5 ;;
        killstress) run_probe "control-killstress" killstress -m fake -d "$MP/kill" -p 4 -t 2 -s 0.5 ;;
        sigkill) run_probe "control-sigkill" sigkill -m fake -d "$MP/locks" ;;
        olfd) run_probe "control-olfd" olfd -m fake -d "$MP/olfd" -p 3 -s 0.3 ;;
        esac
        printf '   %-10s %-10s %5d ms  %s\n' fake "$probe" "$PROBE_TIME" "$VERDICT"
        CONTROL+="${CONTROL:+; }$probe: $KIND"
        [ "$KIND" = noexcl ] || FAILS+=("control: $probe with method FAKE was not caught: $VERDICT")
    done
else
    FAILS+=("control: cannot mount a tmpfs")
fi

# ---------------------------------------------------------------- two views
echo
echo "== two views of one directory: two bindfs mounts of one backing directory"
declare -A TV
TWO_VIEWS_SKIP=""
if ! selected twoviews; then
    TWO_VIEWS_SKIP="not selected"
elif ! have_fuse; then
    TWO_VIEWS_SKIP=$SKIPREASON
    [ "$STRICT" = 1 ] && FAILS+=("two views: skipped ($SKIPREASON) with LOCKING_FS_MATRIX_STRICT=1")
elif ! { bindfs_mount "$WORK/tv-back" "$WORK/mnt/view1" && bindfs_mount "$WORK/tv-back" "$WORK/mnt/view2"; }; then
    TWO_VIEWS_SKIP=$SKIPREASON
    FAILS+=("two views: $SKIPREASON")
else
    V1=$WORK/mnt/view1
    V2=$WORK/mnt/view2
    for m in "${METHODS[@]}"; do
        # exclusion: processes 0, 2 on view 1; process 1, 3 on view 2
        run_probe "tv-$m-stress" stress -m "$m" -d "$V1/locks-$m" -D "$V2/locks-$m" \
            -f "$V1/data-$m" -F "$V2/data-$m" -p 4 -t 2 -s "$SECONDS_STRESS"
        printf '   %-10s %-10s %5d ms  %s\n' "$m" stress "$PROBE_TIME" "$VERDICT"
        TV[$m,stress]="$(short_cell "$KIND" "$VERDICT")"
        TV[$m,stress_kind]=$KIND
        TV[$m,stress_rate]="$(field rate "$RESULT")"
        # SIGKILLs: dead holders' locks broken by waiters on both mounts
        run_probe "tv-$m-killstress" killstress -m "$m" -d "$V1/kill-$m" -D "$V2/kill-$m" \
            -p 6 -t 2 -s "$((SECONDS_KILL * 2))"
        printf '   %-10s %-10s %5d ms  %s\n' "$m" killstr "$PROBE_TIME" "$VERDICT"
        TV[$m,ks]="$(short_cell "$KIND" "$VERDICT")"
        TV[$m,ks_kind]=$KIND
        # latency: same mount (inotify) and across the mounts (poll)
        run_probe "tv-$m-lat-same" latency -m "$m" -d "$V1/lat1-$m" -r 6
        printf '   %-10s %-10s %5d ms  %s\n' "$m" lat-same "$PROBE_TIME" "$VERDICT"
        TV[$m,lat_same]=$KIND
        TV[$m,lat_same_txt]="$(short_cell "$KIND" "$VERDICT")"
        TV[$m,lat_same_med]=$(field median "$RESULT")
        TV[$m,lat_same_max]=$(field max "$RESULT")
        run_probe "tv-$m-lat-cross" latency -m "$m" -d "$V1/lat-$m" -D "$V2/lat-$m" -r 8
        printf '   %-10s %-10s %5d ms  %s\n' "$m" lat-x "$PROBE_TIME" "$VERDICT"
        TV[$m,lat_cross]=$KIND
        TV[$m,lat_cross_txt]="$(short_cell "$KIND" "$VERDICT")"
        TV[$m,lat_cross_med]=$(field median "$RESULT")
        TV[$m,lat_cross_max]=$(field max "$RESULT")
        TV[$m,lat_cross_min]=$(field min "$RESULT")
        TV[$m,lat_cross_spur]=$(field spurious_io_errors "$RESULT")
        # a holder on view 1 killed; waiters on view 2
        run_probe "tv-$m-sigkill" sigkill -m "$m" -d "$V1/kill-$m" -D "$V2/kill-$m"
        printf '   %-10s %-10s %5d ms  %s\n' "$m" sigkill "$PROBE_TIME" "$VERDICT"
        TV[$m,kill]="$(short_cell "$KIND" "$VERDICT")"
        TV[$m,kill_kind]=$KIND
        TV[$m,kill_rec]=$(field recovery_first "$RESULT")

        if [ "$m" = kernel ]; then
            # OFD locks of a FUSE file system without lock forwarding live in
            # each mount's own inode: across the mounts they cannot exclude.
            # The waiting queue (shared by both mounts) serialises most
            # hand-overs, so a short run may happen to see no overlap; what
            # must never be reported is a stall or an error. (The fake
            # controls show that the checks catch non-exclusion.)
            case "${TV[$m,stress_kind]}" in
            noexcl | works) ;;
            *) FAILS+=("two views, kernel: expected NO EXCLUSION (or, by chance, none seen) across two bindfs mounts (OFD locks are per mount), got: ${TV[$m,stress]}") ;;
            esac
        else
            case "${TV[$m,stress_kind]}" in
            works | refused) ;;
            *) FAILS+=("two views, $m, stress: ${TV[$m,stress]}") ;;
            esac
            case "${TV[$m,ks_kind]},$m" in
            works,* | refused,*) ;;
            # opencreate breaks a dead holder's lock under an OFD guard;
            # OFD locks are per mount here (as between two hosts without
            # shared locks), so breakers on the two views can race: a
            # documented limitation (docs/LIMITS.md, "Where it works"), reported,
            # not failed.
            noexcl,opencreate) KNOWN+=("two views, opencreate, stress with SIGKILLs: ${TV[$m,ks]}") ;;
            *) FAILS+=("two views, $m, stress with SIGKILLs: ${TV[$m,ks]}") ;;
            esac
            case "${TV[$m,kill_kind]}" in
            works | refused) ;;
            *) FAILS+=("two views, $m, SIGKILL: ${TV[$m,kill]}") ;;
            esac
            case "${TV[$m,lat_cross]}" in
            works | refused)
                mx=${TV[$m,lat_cross_max]}
                if [ -z "$mx" ] || ! awk -v x="$mx" -v b="$LATENCY_BOUND" 'BEGIN { exit !(x < b) }'; then
                    FAILS+=("two views, $m: release pickup across the mounts took ${mx:-?} s (bound $LATENCY_BOUND s)")
                fi
                ;;
            *) FAILS+=("two views, $m, latency: ${TV[$m,lat_cross_txt]}") ;;
            esac
        fi
    done
fi

# ---------------------------------------------------------------- tables
ELAPSED=$(awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.0f", b - a }')
versions() {
    echo "kernel $(uname -r)"
    for p in e2fsprogs xfsprogs btrfs-progs bindfs fuse3; do
        v=$(dpkg-query -W -f '${Version}' "$p" 2>/dev/null) && echo "$p $v"
    done
}

report() {
    echo "# liblocking on different file systems"
    echo
    echo "Generated by \`hardening/fs_matrix.sh\` (run by \`cargo test --test fs_matrix\` as root)"
    echo "on $(versions | paste -sd ',' | sed 's/,/, /g'); liblocking $(cd "$REPO" && grep -m1 '^version' Cargo.toml | cut -d'"' -f2); ${ELAPSED} s."
    echo
    echo "Each cell: a stress run (3 processes x 3 threads, ${SECONDS_STRESS} s, lost-update"
    echo "counters in shared memory and in a file on the file system under test);"
    echo "a stress run while workers are SIGKILLed every 10-60 ms, half the time"
    echo "the holder inside its critical section (4 processes x 2 threads, ${SECONDS_KILL} s:"
    echo "dead holders' locks are broken by several waiters at once; a live"
    echo "holder whose lock is broken, expire being disabled, is a failure);"
    echo "a holder killed with SIGKILL (waiters with expire disabled must get the"
    echo "lock within 5 s); and open_locked_fd on a file reached by two paths."
    echo "\"works\" means all four passed; otherwise the cell says what the library"
    echo "did instead (\"refused\": a clear error code and message; **NO EXCLUSION**:"
    echo "two holders at once or a lost update, always a failure)."
    echo
    echo "| file system | mkdir | opencreate | kernel |"
    echo "|---|---|---|---|"
    for row in "${ROWS[@]}"; do
        IFS='|' read -r name label kind setup <<<"$row"
        selected "$name" || continue
        echo "| $label | ${CELL[$name,mkdir]} | ${CELL[$name,opencreate]} | ${CELL[$name,kernel]} |"
    done
    echo
    echo "Measured: stress lock/unlock rate (all 9 threads together); SIGKILLs"
    echo "in the killing stress run; time from the SIGKILL to the first waiter's"
    echo "acquisition; open_locked_fd lock-increment-close rounds of 3 processes"
    echo "in ${SECONDS_OLFD} s. Rates depend on the machine's load; they are shown for"
    echo "scale only."
    echo
    echo "| file system | mkdir | opencreate | kernel |"
    echo "|---|---|---|---|"
    for row in "${ROWS[@]}"; do
        IFS='|' read -r name label kind setup <<<"$row"
        selected "$name" || continue
        echo "| $label | ${DETAIL[$name,mkdir]:--} | ${DETAIL[$name,opencreate]:--} | ${DETAIL[$name,kernel]:--} |"
    done
    echo
    echo "Negative control (method FAKE on tmpfs, must be caught): $CONTROL."
    echo
    echo "## Two views of one directory"
    echo
    if [ -n "$TWO_VIEWS_SKIP" ]; then
        echo "Skipped: $TWO_VIEWS_SKIP."
        return
    fi
    echo "One backing directory mounted twice with bindfs; half the processes use"
    echo "one mount, half the other, as two hosts sharing a network file system"
    echo "would. No inotify event crosses the mounts, so a waiter on one mount"
    echo "learns of a release made through the other from its fallback poll"
    echo "(100 ms, core/src/wait.rs WATCHED_POLL) and the FUSE attribute/entry caches."
    echo
    echo "| check | mkdir | opencreate | kernel |"
    echo "|---|---|---|---|"
    echo "| exclusion (4 processes x 2 threads, 2 per mount) | ${TV[mkdir,stress]} | ${TV[opencreate,stress]} | ${TV[kernel,stress]} |"
    echo "| exclusion with SIGKILLs (6 processes x 2 threads, 3 per mount, $((SECONDS_KILL * 2)) s) | ${TV[mkdir,ks]} | ${TV[opencreate,ks]} | ${TV[kernel,ks]} |"
    lat() { # method kind
        local m=$1 k=$2
        if [ -n "${TV[$m,lat_${k}_med]}" ]; then
            local s="median ${TV[$m,lat_${k}_med]} s, max ${TV[$m,lat_${k}_max]} s"
            [ "${TV[$m,lat_$k]}" = refused ] && s+=" (${TV[$m,lat_${k}_txt]})"
            echo "$s"
        else
            echo "${TV[$m,lat_${k}_txt]}"
        fi
    }
    echo "| release pickup, same mount (inotify) | $(lat mkdir same) | $(lat opencreate same) | $(lat kernel same) |"
    echo "| release pickup, across the mounts (poll; bound $LATENCY_BOUND s) | $(lat mkdir cross) | $(lat opencreate cross) | $(lat kernel cross) |"
    echo "| holder SIGKILLed on mount 1, waiters on mount 2 (expire disabled) | ${TV[mkdir,kill]} | ${TV[opencreate,kill]} | ${TV[kernel,kill]} |"
    echo
    echo "Holders on the \"other host\" are, here, processes of this very machine"
    echo "and PID namespace: their owner records are judged normally, so a holder"
    echo "killed on one mount is judged dead by a waiter on the other and its lock"
    echo "broken at once, whatever expire says. On real separate hosts the record"
    echo "names another host: such holders are judged \"unknown\" and only expire"
    echo "breaks their locks."
}

report_fails() {
    if [ "${#KNOWN[@]}" -gt 0 ]; then
        echo
        echo "## Documented limitations seen in this run"
        echo
        local k
        for k in "${KNOWN[@]}"; do echo "- $(tidy "$k")"; done
    fi
    [ "${#FAILS[@]}" -gt 0 ] || return 0
    echo
    echo "## Failures of this run"
    echo
    local f
    for f in "${FAILS[@]}"; do echo "- $(tidy "$f")"; done
}

echo
TABLES=$(report; report_fails)
printf '%s\n' "$TABLES"
echo
if [ -z "$ONLY" ]; then
    # only a full run replaces the results file
    mkdir -p "$(dirname "$RESULTS_MD")"
    printf '%s\n' "$TABLES" >"$RESULTS_MD.tmp.$$" && mv "$RESULTS_MD.tmp.$$" "$RESULTS_MD" ||
        { rm -f "$RESULTS_MD.tmp.$$"; FAILS+=("cannot write $RESULTS_MD"); }
    echo "(written to $RESULTS_MD; ${ELAPSED} s)"
else
    echo "(LOCKING_FS_MATRIX_ONLY is set: $RESULTS_MD left alone; ${ELAPSED} s)"
fi

if [ "${#FAILS[@]}" -gt 0 ]; then
    echo
    echo "FAIL: ${#FAILS[@]} problem(s):"
    for f in "${FAILS[@]}"; do echo "FAIL: $f"; done
    exit 1
fi
echo "fs_matrix: all checks passed"
exit 0
