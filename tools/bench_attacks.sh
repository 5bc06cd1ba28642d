#!/usr/bin/env bash
# The attack table of BENCHMARKS.md (issue 5): every method on the first N LFW-MCS pairs,
# each attacked into its own folder and scored afresh by `advface score`.
#
#   tools/bench_attacks.sh DATA_DIR OUT_DIR [N] [STUDENTS]
#
# DATA_DIR is an `advface prepare` output (pairs_list.csv, crops/); STUDENTS defaults to the
# shipped student. Each run resumes if interrupted (rerun the script). Writes
# OUT_DIR/<run>/score.json and prints a markdown table.
set -euo pipefail
data=$1
out=$2
n=${3:-50}
students=${4:-student}
bin=${ADVFACE:-${CARGO_TARGET_DIR:-target}/release/advface}
runs=(
  "fgsm|--method fgsm --no-oracle"
  "fgvm-transfer|--method fgvm --no-oracle"
  "fgvm-b100|--method fgvm --budget 100"
  "fgvm-b1000|--method fgvm --budget 1000 --steps 1000"
  "nesterov-transfer|--method nesterov --no-oracle"
  "auto-b1000|--method auto --budget 1000 --steps 1000"
  "whitebox-fgvm|--method whitebox-fgvm --no-oracle"
  "whitebox-adam|--method whitebox-adam --no-oracle"
)
only=${ONLY:-}
echo "| run | score | clean | change | match rate | SSIM min | queries/image mean (max) | attack wall s |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
for r in "${runs[@]}"; do
  name=${r%%|*}
  flags=${r#*|}
  if [ -n "$only" ] && [[ ",$only," != *",$name,"* ]]; then continue; fi
  dir="$out/$name"
  mkdir -p "$dir"
  start=$(date +%s)
  # shellcheck disable=SC2086
  "$bin" attack --pairs "$data/pairs_list.csv" --crops "$data/crops" --out "$dir/adv" \
    --n "$n" --students "$students" $flags 2> "$dir/attack.log" || true
  echo "$(( $(date +%s) - start ))" > "$dir/wall_s"
  adv="$dir/adv"
  "$bin" score --pairs "$data/pairs_list.csv" --crops "$data/crops" --adv "$adv" --n "$n" \
    --json "$dir/score.json" > "$dir/score.md" 2> "$dir/score.log" || true
  python3 - "$dir" "$name" <<'PY'
import json, sys, os
d, name = sys.argv[1], sys.argv[2]
try:
    s = json.load(open(os.path.join(d, "score.json")))
except Exception as e:
    print(f"| {name} | (failed: {e}) | | | | | | |"); sys.exit()
a, c = s["attacked"], s["clean"]
q = s.get("attack")
qs = f"{q['queries_mean']:.1f} ({q['queries_max']})" if q else "0"
wall = open(os.path.join(d, "wall_s")).read().strip() if os.path.exists(os.path.join(d, "wall_s")) else "-"
print(f"| {name} | {a['score']:.4f} | {c['score']:.4f} | {100*(a['score']-c['score'])/c['score']:+.1f}% | "
      f"{100*a['match_rate']:.1f}% | {s['ssim_min']:.4f} | {qs} | {wall} |")
PY
done
