#!/usr/bin/env bash
# The attack tables of BENCHMARKS.md (issues 5 and 6): every method on the first N LFW-MCS
# pairs, each attacked into its own folder and scored afresh by `advface score`.
#
#   tools/bench_attacks.sh DATA_DIR OUT_DIR [N] [STUDENTS]
#
# DATA_DIR is an `advface prepare` output (pairs_list.csv, crops/); STUDENTS defaults to the
# shipped student. ONLY=name,name runs a subset; KEEP=DIR copies each run's small evidence
# (config.json, score.json, the attack log, /usr/bin/time's report) to DIR/<run>/, which is
# what benchmarks/runs/ in the repo holds, so `advface curves` can be rerun from it after
# the images are gone. Each run resumes if interrupted (rerun the script). Writes
# OUT_DIR/<run>/ (the images, records, config.json, score.json) and prints a markdown table.
set -euo pipefail
data=$1
out=$2
n=${3:-50}
students=${4:-student}
bin=${ADVFACE:-${CARGO_TARGET_DIR:-target}/release/advface}
keep=${KEEP:-}
# The exact flags of the BENCHMARKS.md rows.
runs=(
  "fgsm|--method fgsm --no-oracle"
  "fgvm-transfer|--method fgvm --no-oracle"
  "nesterov-transfer|--method nesterov --no-oracle"
  "fgvm-b100|--method fgvm --budget 100"
  "fgvm-b1000|--method fgvm --budget 1000 --steps 1000"
  "auto-b1000|--budget 1000"
  "whitebox-fgvm|--method whitebox-fgvm --no-oracle --no-mirror --steps 100"
  "whitebox-adam|--method whitebox-adam --no-oracle --no-mirror --steps 100"
  "pixel-b100|--method pixel --budget 100"
  "square-b100|--method square --budget 100"
  "nes-b100|--method nes --budget 100"
  "hybrid-nes-b100|--method hybrid-nes --budget 100"
  "pixel-b1000|--method pixel --budget 1000"
  "square-b1000|--method square --budget 1000"
  "nes-b1000|--method nes --budget 1000"
  "pixel-b10000|--method pixel --budget 10000"
  "square-b10000|--method square --budget 10000"
  "nes-b10000|--method nes --budget 10000"
  "hybrid-nes-b10000|--method hybrid-nes --budget 10000"
)
only=${ONLY:-}
timer=()
if [ -x /usr/bin/time ]; then timer=(/usr/bin/time -v -o); fi
echo "| run | score | clean | change | match rate | SSIM min | queries/image mean (max) | attack wall s |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
for r in "${runs[@]}"; do
  name=${r%%|*}
  flags=${r#*|}
  if [ -n "$only" ] && [[ ",$only," != *",$name,"* ]]; then continue; fi
  dir="$out/$name"
  mkdir -p "$dir"
  start=$(date +%s)
  t=()
  if [ ${#timer[@]} -gt 0 ]; then t=("${timer[@]}" "$dir/time.txt"); fi
  # shellcheck disable=SC2086
  "${t[@]}" "$bin" attack --pairs "$data/pairs_list.csv" --crops "$data/crops" --out "$dir" \
    --n "$n" --students "$students" $flags 2> "$dir/attack.log" || true
  echo "$(( $(date +%s) - start ))" > "$dir/wall_s"
  "$bin" score --pairs "$data/pairs_list.csv" --crops "$data/crops" --adv "$dir" --n "$n" \
    --json "$dir/score.json" > "$dir/score.md" 2> "$dir/score.log" || true
  if [ -n "$keep" ]; then
    mkdir -p "$keep/$name"
    for f in config.json score.json attack.log time.txt; do
      if [ -f "$dir/$f" ]; then cp "$dir/$f" "$keep/$name/$f"; fi
    done
  fi
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
