#!/usr/bin/env bash
# The liblocking benchmark suite, in one command:
#
#   bench/run.sh            # install what is missing, build, run, write
#                           # bench/results.md and bench/contended_wait.png
#   bench/run.sh --quick    # the same, every scenario shortened (smoke test)
#   bench/run.sh --build    # install and build only
#
# Installs (idempotently, only what is missing): Debian liblockfile-dev and
# strace, Python filelock, fasteners, portalocker and matplotlib. Needs root
# for apt-get (as on the project's machines). Takes a few minutes on 2 cores.
set -euo pipefail

BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$BENCH")"
BUILD="$BENCH/build"
PY="${PYTHON:-python3}"

say() { printf '[bench] %s\n' "$*" >&2; }

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

# ---- setup: Python packages
if ! "$PY" -c 'import filelock, fasteners, portalocker, matplotlib' 2>/dev/null; then
    say "installing Python packages"
    "$PY" -m pip install -q filelock fasteners portalocker matplotlib
fi

# ---- build
say "cargo build --release"
(cd "$ROOT" && cargo build --release --quiet)
mkdir -p "$BUILD/lib"
# A private copy of the library: other builds of target/release during the
# run cannot change what is measured. The SONAME is liblocking.so.0.
cp -f "$ROOT/target/release/liblocking.so" "$BUILD/lib/liblocking.so.tmp"
mv -f "$BUILD/lib/liblocking.so.tmp" "$BUILD/lib/liblocking.so"
ln -sf liblocking.so "$BUILD/lib/liblocking.so.0"
say "cc lockbench.c"
cc -std=c11 -O2 -Wall -Wextra -Werror -pthread -DHAVE_LOCKFILE \
    -I"$ROOT/include" -o "$BUILD/lockbench" "$BENCH/lockbench.c" \
    -L"$BUILD/lib" -llocking -Wl,-rpath,'$ORIGIN/lib' -llockfile
"$PY" -m py_compile "$BENCH/bench.py" "$BENCH/pyworker.py"

if [ "${1:-}" = "--build" ]; then
    exit 0
fi

# ---- run
exec "$PY" "$BENCH/bench.py" "$@"
