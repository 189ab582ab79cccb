#!/usr/bin/env bash
# The postgres method's benchmark, in one command:
#
#   bench/pg_run.sh           # build, start a server, run, write
#                             # bench/results-postgres.md (about 2 minutes)
#   bench/pg_run.sh --quick   # every part shortened (checks the bench, not a result)
#
# Starts its own PostgreSQL as tests/support/pg.rs does (initdb into a
# temporary directory, as `nobody` when run as root; trust authentication;
# a Unix socket and 127.0.0.1; default durability: fsync and
# synchronous_commit on), builds liblocking (cargo build --release) and
# bench/pgbench.c against it, and runs pgbench on the Unix socket and on TCP
# loopback: lock + unlock against the raw floor (two libpq round trips,
# pg_advisory_lock/pg_advisory_unlock, on the same connection), fencing
# token included; contended waits (4 and 8 processes) against a raw
# blocking pg_advisory_lock loop; the cost of creating a Locker (a
# connection). Then once more the uncontended part with
# synchronous_commit = off (what the fencing token's commit costs). All
# numbers of the report come from this one run.
#
# Needs the server programs (Debian postgresql: /usr/lib/postgresql/*/bin,
# or LOCKING_PG_BINDIR), libpq.so.5, cc. CARGO_TARGET_DIR is honoured; the
# program and a copy of the library go to $CARGO_TARGET_DIR/pgbench.
set -euo pipefail

BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$BENCH")"
QUICK=()
for a in "$@"; do
    case "$a" in
    --quick) QUICK=(--quick) ;;
    *) echo "usage: bench/pg_run.sh [--quick]" >&2; exit 2 ;;
    esac
done
say() { printf '[pg-bench] %s\n' "$*" >&2; }

BIN="${LOCKING_PG_BINDIR:-}"
if [ -z "$BIN" ]; then
    BIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
fi
if [ -z "$BIN" ] || [ ! -x "$BIN/initdb" ]; then
    BIN="$(dirname "$(command -v initdb 2>/dev/null || echo /nonexistent/initdb)")"
fi
[ -x "$BIN/initdb" ] || { say "no PostgreSQL server programs (install postgresql, or set LOCKING_PG_BINDIR)"; exit 1; }

TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
case "$TARGET" in /*) ;; *) TARGET="$ROOT/$TARGET" ;; esac
OUT="$TARGET/pgbench"
say "building liblocking (cargo build --release) and bench/pgbench.c"
(cd "$ROOT" && cargo build --release --quiet)
mkdir -p "$OUT/lib"
cp "$TARGET/release/liblocking.so" "$OUT/lib/liblocking.so"
SONAME="$(readelf -d "$OUT/lib/liblocking.so" 2>/dev/null | sed -n 's/.*(SONAME).*\[\(.*\)\].*/\1/p')"
[ -z "$SONAME" ] || [ "$SONAME" = liblocking.so ] || ln -sf liblocking.so "$OUT/lib/$SONAME"
cc -std=c11 -O2 -Wall -Wextra -Werror -I "$ROOT/include" -I "$ROOT/c_tests" -o "$OUT/pgbench" "$BENCH/pgbench.c" \
    -L "$OUT/lib" -llocking -Wl,-rpath,"$OUT/lib" -ldl -lm

# ---- the server
WORK="$(mktemp -d "${TMPDIR:-/tmp}/liblocking-pgbench.XXXXXX")"
chmod 755 "$WORK"
mkdir -m 700 "$WORK/data"
mkdir "$WORK/sock"
AS=()
if [ "$(id -u)" -eq 0 ]; then
    USER_=nobody
    id "$USER_" >/dev/null 2>&1 || { say "no user nobody to run the server"; exit 1; }
    chown "$USER_" "$WORK/data" "$WORK/sock"
    AS=(runuser -u "$USER_" --)
fi
PORT=""
for p in $(seq 25432 25999); do
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then PORT=$p; break; fi
done
[ -n "$PORT" ] || { say "no free port"; exit 1; }
stop() {
    (cd "$WORK" && "${AS[@]}" "$BIN/pg_ctl" -D "$WORK/data" -m immediate -w stop >/dev/null 2>&1) || true
    rm -rf "$WORK"
}
trap stop EXIT
say "starting PostgreSQL ($("$BIN/postgres" --version)) in $WORK, port $PORT"
(cd "$WORK" && "${AS[@]}" "$BIN/initdb" -D "$WORK/data" -A trust -U postgres -E UTF8 --locale=C >/dev/null)
(cd "$WORK" && "${AS[@]}" "$BIN/pg_ctl" -D "$WORK/data" -l "$WORK/data/log" -w -t 60 \
    -o "-k $WORK/sock -p $PORT -c listen_addresses=127.0.0.1 -c max_connections=100 -c shared_buffers=128MB" \
    start >/dev/null)
psql_() { "$BIN/psql" -XAtq -h "$WORK/sock" -p "$PORT" -U postgres -d postgres -c "$1"; }

UNIX="host=$WORK/sock port=$PORT user=postgres dbname=postgres"
TCP="host=127.0.0.1 port=$PORT user=postgres dbname=postgres"
say "running (Unix socket, then TCP loopback)"
"$OUT/pgbench" "${QUICK[@]}" "Unix socket=$UNIX" "TCP loopback=$TCP" >"$WORK/main.out"
say "running the uncontended part again with synchronous_commit = off"
psql_ "ALTER SYSTEM SET synchronous_commit = off" >/dev/null
psql_ "SELECT pg_reload_conf()" >/dev/null
"$OUT/pgbench" "${QUICK[@]}" --latency-only "Unix socket=$UNIX" "TCP loopback=$TCP" >"$WORK/async.out"

# ---- the report
REPORT="$BENCH/results-postgres.md"
verdict() { awk -v r="$1" 'BEGIN { if (r <= 1.5) printf "met (%.2fx <= 1.5x)", r; else printf "missed (%.2fx > 1.5x, by %.0f%%)", r, (r / 1.5 - 1) * 100 }'; }
{
    echo "# The postgres method: benchmark results"
    echo
    echo "Written by \`bench/pg_run.sh${QUICK[*]:+ ${QUICK[*]}}\` on $(date -u '+%Y-%m-%d %H:%M UTC'); every number below is"
    echo "from this one run. Machine: $(nproc) CPUs ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)),"
    echo "Linux $(uname -r); $("$BIN/postgres" --version); libpq $(readlink -f "$(ldconfig -p | awk '/libpq\.so\.5 /{print $NF; exit}')" | sed 's/.*libpq\.so\.//');"
    echo "liblocking $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$( [ -n "$(git -C "$ROOT" status --porcelain -- core src 2>/dev/null)" ] && echo ' (with uncommitted changes to core/ or src/)')."
    echo "The server: a fresh initdb on $(df -T "$WORK" | awk 'NR==2{print $2}'), default durability (fsync and"
    echo "synchronous_commit on), shared_buffers 128MB. The machine is shared: only the ratios"
    echo "of one run compare, and rounds of the measured systems are interleaved."
    echo
    echo "## The goal: lock + unlock within 1.5x of the raw round trips, fencing token included"
    echo
    echo "Raw: \`SELECT pg_advisory_lock(k)\` and \`SELECT pg_advisory_unlock(k)\` through libpq on one"
    echo "connection (two round trips). liblocking: \`locker_lock\`, \`locker_fencing_token\`,"
    echo "\`locker_unlock\` on one Locker (exclusive). Median of the interleaved rounds."
    echo
    echo "The fencing token is a committed UPDATE of the name's row (durable across restarts);"
    echo "the raw floor writes nothing. Lock + unlock without the token is in the tables below."
    echo
    echo "| transport | server setting | liblocking / raw | goal |"
    echo "|---|---|---:|---|"
    for f in main async; do
        setting="synchronous_commit on (default)"
        [ "$f" = async ] && setting="synchronous_commit off"
        grep '^GOAL ' "$WORK/$f.out" | while read -r _ rest; do
            ratio="${rest##* }"
            label="${rest% *}"
            echo "| $label | $setting | ${ratio}x | $(verdict "$ratio") |"
        done
    done
    echo
    echo "Where the time goes: the row \`liblocking: lock + unlock (no token)\` below is the same two"
    echo "round trips as raw; \`lock + fencing token + unlock\` adds the token's round trip, an UPDATE"
    echo "that commits (with a WAL flush unless \`synchronous_commit = off\`). A shared lock draws its"
    echo "token in the locking statement itself (no extra round trip, the same commit)."
    echo
    echo "Contended p99 wait against the raw blocking loop (the same processes, the same run):"
    echo
    echo "| transport | processes | lock + unlock | lock + token + unlock |"
    echo "|---|---:|---:|---:|"
    grep '^CONTENDED ' "$WORK/main.out" | while read -r _ rest; do
        set -- $rest
        n=$#
        eval "plain=\${$((n - 1))} tok=\${$n} procs=\${$((n - 2))}"
        label="$(echo "$rest" | awk '{NF-=3; print}')"
        echo "| $label | $procs | ${plain}x | ${tok}x |"
    done
    echo
    echo "## Every table"
    echo
    echo "### Default durability"
    grep -v '^GOAL \|^CONTENDED ' "$WORK/main.out"
    echo
    echo "### synchronous_commit = off (uncontended only)"
    echo
    echo "What the fencing token's commit costs beyond its round trip. Not a setting to use where"
    echo "tokens matter: committed draws may be lost in a server crash, and the same token handed"
    echo "out twice."
    grep -v '^GOAL \|^CONTENDED ' "$WORK/async.out"
} >"$REPORT"
say "wrote $REPORT"
sed -n '/^## The goal/,/^## Every table/p' "$REPORT" | sed '$d'
