#!/usr/bin/env bash
# The liblocking benchmark suite, in one command:
#
#   bench/run.sh            # install what is missing, build, run, write
#                           # bench/results.md and bench/contended_wait.png
#                           # then the shared-lock and fencing-token modes,
#                           # bench/results-shared.md
#   bench/run.sh --quick    # the same, every scenario shortened (smoke test)
#   bench/run.sh --shared   # only the shared-lock and fencing-token modes
#                           # (readers, mixed, fencing; with --quick: shortened)
#   bench/run.sh --build    # install and build only
#   bench/run.sh --head     # (with any of the above) measure the committed
#                           # tree: build a `git archive HEAD` export in
#                           # BENCH_BUILD/src instead of the work tree
#
# Installs (idempotently, only what is missing): Debian liblockfile-dev and
# strace, Python filelock, fasteners, portalocker and matplotlib. Needs root
# for apt-get (as on the project's machines). Takes a few minutes on 2 cores.
#
# Environment: CARGO_TARGET_DIR is honoured (the library is taken from there);
# with --shared or --build, BENCH_BUILD moves bench/build elsewhere (bench.py
# always uses bench/build), BENCH_DISK the disk directory of the shared modes
# (default: BENCH_BUILD/disk-shared) and SHARED_RESULTS their report (default:
# bench/results-shared.md).
set -euo pipefail

BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$BENCH")"
PY="${PYTHON:-python3}"

say() { printf '[bench] %s\n' "$*" >&2; }

QUICK=0 SHARED_ONLY=0 BUILD_ONLY=0 REPORT=0 HEAD_ONLY=0
for a in "$@"; do
    case "$a" in
    --quick) QUICK=1 ;;
    --shared) SHARED_ONLY=1 ;;
    --build) BUILD_ONLY=1 ;;
    --head) HEAD_ONLY=1 ;;
    --report) REPORT=1 ;; # bench.py: rewrite the report from results.json
    *) say "unknown option $a"; exit 2 ;;
    esac
done
BUILD="$BENCH/build"
if [ -n "${BENCH_BUILD:-}" ]; then
    if [ $SHARED_ONLY -eq 0 ] && [ $BUILD_ONLY -eq 0 ]; then
        say "BENCH_BUILD applies to --shared and --build only (bench.py uses bench/build)"
        exit 2
    fi
    BUILD="$BENCH_BUILD"
fi
# the tree that is built and measured: the work tree, or (--head) a clean
# export of the last commit (git archive reads the repository, changes nothing)
SRC="$ROOT"
if [ $HEAD_ONLY -eq 1 ]; then
    SRC="$BUILD/src"
    rm -rf "$SRC"
    mkdir -p "$SRC"
    git -C "$ROOT" archive HEAD | tar -x -C "$SRC"
    BENCH_BUILT_FROM="$(git -C "$ROOT" rev-parse --short HEAD) (a git archive of HEAD: changes in the work tree not included)"
    export BENCH_BUILT_FROM
fi
TARGET="${CARGO_TARGET_DIR:-$SRC/target}"
case "$TARGET" in /*) ;; *) TARGET="$SRC/$TARGET" ;; esac

# ---- setup: system packages
need_apt=()
[ -f /usr/include/lockfile.h ] || need_apt+=(liblockfile-dev)
command -v strace >/dev/null 2>&1 || need_apt+=(strace)
if [ ${#need_apt[@]} -gt 0 ]; then
    say "installing ${need_apt[*]}"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# ---- setup: Python packages (the shared modes need only the standard library)
if [ $SHARED_ONLY -eq 0 ] && ! "$PY" -c 'import filelock, fasteners, portalocker, matplotlib' 2>/dev/null; then
    say "installing Python packages"
    "$PY" -m pip install -q filelock fasteners portalocker matplotlib
fi

# ---- build
say "cargo build --release ($SRC)"
(cd "$SRC" && cargo build --release --quiet)
mkdir -p "$BUILD/lib"
# A private copy of the library: other builds of target/release during the
# run cannot change what is measured. The SONAME is liblocking.so.0.
cp -f "$TARGET/release/liblocking.so" "$BUILD/lib/liblocking.so.tmp"
mv -f "$BUILD/lib/liblocking.so.tmp" "$BUILD/lib/liblocking.so"
ln -sf liblocking.so "$BUILD/lib/liblocking.so.0"
say "cc lockbench.c"
cc -std=c11 -O2 -Wall -Wextra -Werror -pthread -DHAVE_LOCKFILE \
    -I"$SRC/include" -I"$SRC/c_tests" -o "$BUILD/lockbench" "$BENCH/lockbench.c" \
    -L"$BUILD/lib" -llocking -Wl,-rpath,'$ORIGIN/lib' -llockfile
"$PY" -m py_compile "$BENCH/bench.py" "$BENCH/pyworker.py"

if [ $BUILD_ONLY -eq 1 ]; then
    exit 0
fi

# ---- run: the 0.1 scenarios (bench.py)
if [ $REPORT -eq 1 ]; then
    exec "$PY" "$BENCH/bench.py" "$@"
fi
if [ $SHARED_ONLY -eq 0 ]; then
    "$PY" "$BENCH/bench.py" "$@"
fi

# ---- run: shared locks and fencing tokens (lockbench readers, mixed, fencing)
# Every system is measured against a raw kernel lock in the same run
# (interleaved rounds); bench/README.md describes the modes.
if [ $QUICK -eq 1 ]; then
    READ_ROUNDS=2 READ_SLICE_MS=50 MIX_ROUNDS=2 MIX_SLICE_MS=100 FEN_ROUNDS=3 FEN_SLICE_MS=4
else
    READ_ROUNDS=5 READ_SLICE_MS=200 MIX_ROUNDS=4 MIX_SLICE_MS=400 FEN_ROUNDS=10 FEN_SLICE_MS=10
fi
READ_PROCS="2 4"  # readers-only processes
MIX_READERS=3     # mixed: readers beside the one writer
METHODS="mkdir opencreate kernel"
LB="$BUILD/lockbench"
JSONL="$BUILD/shared.jsonl"
SHARED_RESULTS="${SHARED_RESULTS:-$BENCH/results-shared.md}"
places=()
[ -d /dev/shm ] && places+=("tmpfs=/dev/shm/liblocking-bench-shared-$$")
places+=("disk=${BENCH_DISK:-$BUILD/disk-shared}")
cleanup() { for p in "${places[@]}"; do rm -rf "${p#*=}"; done; }
trap cleanup EXIT
: >"$JSONL"
for p in "${places[@]}"; do
    label="${p%%=*}" dir="${p#*=}"
    rm -rf "$dir"
    mkdir -p "$dir"
    tag() { sed "s|^{|{\"fs\":\"$label\",\"fs_type\":\"$(stat -f -c %T "$dir")\",|" >>"$JSONL"; }
    for n in $READ_PROCS; do
        say "$label: readers only, $n processes"
        "$LB" readers "$dir/readers-$n" "$n" $READ_ROUNDS $READ_SLICE_MS raw-ofd-shared \
            raw-flock-shared $(for m in $METHODS; do echo "liblocking-$m-shared"; done) | tag
    done
    say "$label: mixed, $MIX_READERS readers and 1 writer"
    "$LB" mixed "$dir/mixed" $MIX_READERS $MIX_ROUNDS $MIX_SLICE_MS raw-ofd raw-flock \
        $(for m in $METHODS; do echo "liblocking-$m"; done) | tag
    say "$label: fencing-token cost"
    "$LB" fencing "$dir/fencing" $FEN_ROUNDS $FEN_SLICE_MS raw-ofd raw-ofd-append raw-mkdir raw-open \
        $(for m in $METHODS; do echo "liblocking-$m liblocking-$m-token liblocking-$m-shared"; done) | tag
done

"$PY" - "$JSONL" "$SHARED_RESULTS" "$QUICK" <<'PYEOF'
import json, sys, time
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
quick = sys.argv[3] == "1"
out = []
w = out.append

def us(x):
    return f"{x / 1000:.2f} ms" if x >= 1000 else f"{x:.1f} µs"

def x(r):
    return f"{r:.2f}x"

w("# liblocking benchmark: shared locks and fencing tokens\n")
w(f"Generated by `bench/run.sh` on {time.strftime('%Y-%m-%d %H:%M %Z')}"
  + (" (**--quick smoke run: not a result**)" if quick else "") + ". "
  "Every ratio compares systems measured in the same run, in interleaved rounds, "
  "against the raw kernel lock named in the table.\n")
for fs in dict.fromkeys(r["fs"] for r in rows):
    R = [r for r in rows if r["fs"] == fs]
    w(f"## {fs} ({R[0]['fs_type']})\n")
    for n in dict.fromkeys(r["procs"] for r in R if r["scenario"] == "readers"):
        rr = [r for r in R if r["scenario"] == "readers" and r["procs"] == n]
        w(f"### Readers only, {n} processes\n")
        w(f"Each process acquires shared and releases at once, {rr[0]['rounds']} rounds of "
          f"{rr[0]['slice_ms']:.0f} ms per system; vs {rr[0]['base']}: median of the per-round ratios "
          "(higher is better).\n")
        w("| System | acquisitions/s | µs per acquisition, per process | vs " + rr[0]["base"] + " |")
        w("|---|---:|---:|---:|")
        for r in rr:
            w(f"| {r['system']} | {r['acq_per_s']:,.0f} | {r['us_per_acq_per_proc']:.2f} | {x(r['vs_base'])} |")
        w("")
    for r0 in [r for r in R if r["scenario"] == "mixed"][:1]:
        mm = [r for r in R if r["scenario"] == "mixed"]
        w(f"### Mixed: {r0['readers']} readers and 1 writer\n")
        w(f"Readers acquire shared, hold 100 µs and release, again at once; the writer acquires "
          f"exclusive, holds 100 µs, releases and works 1 ms. {r0['rounds']} rounds of "
          f"{r0['slice_ms']:.0f} ms per system, waits pooled. *Cut*: writer waits still in "
          "progress when a round ended (the readers then stop; a starved writer's waits all end so, "
          "a served writer's wait may just straddle the end); *waiting*: the writer's "
          "share of the time spent waiting. Ratios vs "
          f"{r0['base']} (F_RDLCK/F_WRLCK, which lets readers starve the writer).\n")
        w("| System | writer acq. | cut | waiting | writer p50 | writer p99 | writer max | reader p99 | "
          "reader acq/s | readers at once | violations | writer p50 / p99 / max vs base | reader p99 vs base |")
        w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in mm:
            w(f"| {r['system']} | {r['writer_acquisitions']} | {r['writer_cut']} | "
              f"{r['writer_waiting_pct']:.0f}% | {us(r['writer_p50_us'])} | "
              f"{us(r['writer_p99_us'])} | {us(r['writer_max_us'])} | {us(r['reader_p99_us'])} | "
              f"{r['reader_acq_per_s']:,.0f} | {r['max_overlap']} | {r['violations']} | "
              f"{x(r['writer_p50_x'])} / {x(r['writer_p99_x'])} / {x(r['writer_max_x'])} | {x(r['reader_p99_x'])} |")
        w("")
    ff = [r for r in R if r["scenario"] == "fencing"]
    if ff:
        base = ff[0]
        w("### Fencing-token cost (uncontended)\n")
        w("Median of single lock+unlock cycles timed one by one (one process, interleaved "
          "rounds, the timer's cost subtracted). *-token*: lock, `locker_fencing_token` (which draws "
          "the token: its whole cost), unlock; *-shared*: "
          "`locker_acquire(LOCKING_SHARED)`, unlock; *raw-ofd-append*: F_OFD_SETLK, a 1-byte "
          "O_APPEND write and lseek (what a token draw costs at the least), unlock. "
          "\"vs plain\": against the same method's lock+unlock; \"vs floor\": against the raw "
          "system-call pair the method builds on (raw-mkdir: mkdir+rmdir, raw-open: "
          "open(O_CREAT|O_EXCL)+close+unlink), in the same rounds.\n")
        floors = {"mkdir": "raw-mkdir", "opencreate": "raw-open", "kernel": "raw-ofd"}
        med = {r["system"]: r["median_ns"] for r in ff}
        w(f"| System | ns per cycle | vs {base['system']} | vs floor | vs plain | +ns vs plain |")
        w("|---|---:|---:|---:|---:|---:|")
        for r in ff:
            vp = x(r["vs_plain"]) if "vs_plain" in r else ""
            dp = f"{r['minus_plain_ns']:+.0f}" if "minus_plain_ns" in r else ""
            fl = floors.get(r["system"].split("-")[1]) if r["system"].startswith("liblocking-") else None
            vf = x(r["median_ns"] / med[fl]) if fl in med and med[fl] > 0 else ""
            w(f"| {r['system']} | {r['median_ns']:,.0f} | {x(r['vs_base'])} | {vf} | {vp} | {dp} |")
        app = next((r for r in ff if r["system"] == "raw-ofd-append"), None)
        if app:
            draw = app["minus_plain_ns"]
            parts = [f"{r['system']} {100 * draw / r['median_ns']:.0f}%" for r in ff
                     if r["system"].startswith("liblocking-") and "plain" not in r]
            w(f"\nA raw append draw costs {draw:+.0f} ns over the raw OFD pair; as a share of each "
              "method's exclusive cycle: " + ", ".join(parts) + ".")
        w("")
open(sys.argv[2], "w").write("\n".join(out) + "\n")
print("\n".join(out))
PYEOF
say "wrote $SHARED_RESULTS"

# ---- the table of issue 14 (from bench/results.md, this run)
if [ $SHARED_ONLY -eq 0 ] && [ -f "$BENCH/results.md" ]; then
    printf '\n'
    sed -n '/^## Goals of issue 14/,/^## Machine and noise/p' "$BENCH/results.md" | sed '$d'
fi
