#!/usr/bin/env bash
# Minimise a grown fuzz corpus into the small one committed in corpus/<target>:
# every input's edge coverage is measured on its own (a libFuzzer merge of
# that one input, whose control file lists the edges it covers), then inputs
# are picked greedily, most new edges first, up to a limit.
#
#   RUSTC_BOOTSTRAP=1 cargo fuzz build
#   ./minimise.sh owner_record <grown corpus dir> 48
#
# Inputs that fail the oracle in another process (the placeholders give
# other values there) crash the measuring run and are left out.
set -euo pipefail
target=$1 grown=$2 limit=${3:-48}
cd "$(dirname "$0")"
bin=target/x86_64-unknown-linux-gnu/release/$target
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for f in "$grown"/*; do
    rm -rf "$work/in" "$work/out" "$work/cf"
    mkdir "$work/in" "$work/out"
    cp "$f" "$work/in/"
    (cd "$work" && "$OLDPWD/$bin" -merge=1 -merge_control_file="$work/cf" out in >/dev/null 2>&1) || continue
    [ -f "$work/cf" ] || continue
    printf '%s\t%s\n' "$f" "$(grep '^COV' "$work/cf" | cut -d' ' -f3-)"
done > "$work/cov.tsv"
python3 - "$work/cov.tsv" "corpus/$target" "$limit" <<'PY'
import os, shutil, sys
tsv, out, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
cov = {}
for line in open(tsv):
    f, _, pcs = line.rstrip("\n").partition("\t")
    cov[f] = set(map(int, pcs.split()))
every = set().union(*cov.values()) if cov else set()
chosen, covered = [], set()
while len(chosen) < limit:
    best = max(cov, key=lambda f: (len(cov[f] - covered), -os.path.getsize(f)))
    if not cov[best] - covered:
        break
    chosen.append(best)
    covered |= cov[best]
print(f"{len(chosen)} of {len(cov)} inputs cover {len(covered)}/{len(every)} edges")
os.makedirs(out, exist_ok=True)
for f in chosen:
    shutil.copy(f, out)
PY
