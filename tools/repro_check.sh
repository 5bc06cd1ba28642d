#!/usr/bin/env bash
# Bit-for-bit check of published results across a code change (issue 22): runs
# `advface attack` on LFW-MCS pairs 0-1 with the flags of the committed benchmark rows, once
# with a binary built before the change (OLD) and once with the new one (NEW), and compares
# what they wrote: every PNG byte for byte, every records/pair_NNNN.json with `wall_s`
# removed, and config.json.
#
#   tools/repro_check.sh OLD_BIN NEW_BIN DATA_DIR WORK_DIR
#
# DATA_DIR is an `advface prepare` output (pairs_list.csv, crops/). OLD's outputs are kept in
# WORK_DIR/old/<run> and reused when already there (a finished attack resumes as a no-op),
# so the baseline is made once. ONLY=name,name runs a subset. Exit status 0 when every run
# is identical, 1 otherwise (the differing files are listed).
set -euo pipefail
old=$1
new=$2
data=$3
work=$4
runs=(
  "nes-b1000|--method nes --budget 1000"
  "hybrid-nes-b1000|--method hybrid-nes --budget 1000"
  "fgvm-transfer|--method fgvm --no-oracle"
  "square-b1000|--method square --budget 1000"
  "pixel-b1000|--method pixel --budget 1000"
)
only=${ONLY:-}
py=$(command -v python3)
status=0
for r in "${runs[@]}"; do
  name=${r%%|*}
  flags=${r#*|}
  if [ -n "$only" ] && [[ ",$only," != *",$name,"* ]]; then continue; fi
  for side in old new; do
    bin=$old
    [ "$side" = new ] && bin=$new
    dir="$work/$side/$name"
    if [ "$side" = new ]; then rm -rf "$dir"; fi
    mkdir -p "$dir"
    start=$(date +%s)
    # shellcheck disable=SC2086
    "$bin" attack --pairs "$data/pairs_list.csv" --crops "$data/crops" --out "$dir" \
      --n 2 --students student $flags 2>> "$work/$side-$name.log"
    echo "$name ($side): $(( $(date +%s) - start )) s" >&2
  done
  if "$py" - "$work/old/$name" "$work/new/$name" <<'PY'
import json, os, sys
a, b = sys.argv[1], sys.argv[2]
def files(root):
    out = set()
    for d, _, fs in os.walk(root):
        for f in fs:
            out.add(os.path.relpath(os.path.join(d, f), root))
    return out
fa, fb = files(a), files(b)
bad = sorted(fa ^ fb)
for rel in sorted(fa & fb):
    pa, pb = os.path.join(a, rel), os.path.join(b, rel)
    if rel.startswith("records/") and rel.endswith(".json"):
        ja, jb = json.load(open(pa)), json.load(open(pb))
        ja.pop("wall_s", None); jb.pop("wall_s", None)
        if ja != jb:
            bad.append(rel)
    elif rel.endswith(".png") or rel == "config.json":
        if open(pa, "rb").read() != open(pb, "rb").read():
            bad.append(rel)
n_png = sum(1 for f in fa if f.endswith(".png"))
n_rec = sum(1 for f in fa if f.startswith("records/"))
if bad:
    print(f"DIFFERENT: {os.path.basename(a)}: " + ", ".join(bad))
    sys.exit(1)
print(f"identical: {os.path.basename(a)} ({n_png} PNGs, {n_rec} records, config.json)")
PY
  then :; else status=1; fi
done
exit $status
