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
# the images are gone. Each run resumes if interrupted (rerun the script; the attack log,
# /usr/bin/time's reports and wall_s, one line per sitting, are appended to). Writes
# OUT_DIR/<run>/ (the images, records, config.json, score.json) and prints a markdown table.
#
# SHARD=K/S runs only every S-th pair from K (`attack --shard`, `score --shard`), for runs
# longer than one session: the shard's evidence goes to KEEP/<run>/shards/K-of-S/, and once
# the shards there cover pairs 0..N-1 (S may differ between shards, e.g. K/10 and the two
# halves K/20, (K+10)/20 of another), `advface score --merge` writes KEEP/<run>/score.json,
# the whole run's report, as if it had been scored at once.
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
shard=${SHARD:-}
shard_args=()
tag=""
if [ -n "$shard" ]; then
  shard_args=(--shard "$shard")
  tag="-shard-${shard%/*}-of-${shard#*/}"
fi
timer=()
if [ -x /usr/bin/time ]; then timer=(/usr/bin/time -v -a -o); fi
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
  if [ ${#timer[@]} -gt 0 ]; then t=("${timer[@]}" "$dir/time$tag.txt"); fi
  rc=0
  # shellcheck disable=SC2086
  "${t[@]}" "$bin" attack --pairs "$data/pairs_list.csv" --crops "$data/crops" --out "$dir" \
    --n "$n" "${shard_args[@]}" --students "$students" $flags 2>> "$dir/attack$tag.log" || rc=$?
  echo "$(( $(date +%s) - start ))" >> "$dir/wall_s$tag"
  if [ "$rc" -ne 0 ]; then
    # Stopped or failed part-way: scoring now would keep a report with missing pairs as the
    # run's (or shard's) evidence. Rerunning the script resumes the attack.
    echo "| $name$tag | (attack exited $rc: see $dir/attack$tag.log; rerun to resume) | | | | | | |"
    continue
  fi
  "$bin" score --pairs "$data/pairs_list.csv" --crops "$data/crops" --adv "$dir" --n "$n" \
    "${shard_args[@]}" --json "$dir/score$tag.json" > "$dir/score$tag.md" \
    2> "$dir/score$tag.log" || true
  if [ -n "$keep" ]; then
    mkdir -p "$keep/$name"
    if [ -f "$dir/config.json" ]; then cp "$dir/config.json" "$keep/$name/config.json"; fi
    # The run's evidence, under its unsharded names; a shard's goes to its own folder.
    dest="$keep/$name"
    files=(score.json attack.log time.txt)
    if [ -n "$shard" ]; then
      of=${shard#*/}
      dest="$keep/$name/shards/${shard%/*}-of-$of"
      files+=(wall_s)
    fi
    mkdir -p "$dest"
    for f in "${files[@]}"; do
      src="$dir/${f%.*}$tag"
      if [ "$f" != "${f%.*}" ]; then src="$src.${f##*.}"; fi
      if [ -f "$src" ]; then cp "$src" "$dest/$f"; fi
    done
    if [ -n "$shard" ]; then
      # Merge once the shards kept so far reach every pair 0..n-1, whatever their S: a run
      # may mix K/10 and K/20 shards to fit sessions. `score --merge --n` refuses shards
      # that share a pair (naming it) or leave one out.
      parts=()
      unset seen
      declare -A seen=()
      for d in "$keep/$name"/shards/*-of-*; do
        if [ ! -f "$d/score.json" ]; then continue; fi
        b=${d##*/}
        k=${b%-of-*}
        s=${b#*-of-}
        parts+=("$d/score.json")
        for ((i = k; i < n; i += s)); do seen[$i]=1; done
      done
      if [ ${#seen[@]} -eq "$n" ]; then
        "$bin" score --merge "${parts[@]}" --n "$n" --json "$keep/$name/score.json" \
          > /dev/null || echo "merging the shards of $name failed" >&2
      fi
    fi
  fi
  python3 - "$dir" "$name$tag" "$tag" <<'PY'
import json, sys, os
d, name, tag = sys.argv[1], sys.argv[2], sys.argv[3]
try:
    s = json.load(open(os.path.join(d, f"score{tag}.json")))
except Exception as e:
    print(f"| {name} | (failed: {e}) | | | | | | |"); sys.exit()
a, c = s["attacked"], s["clean"]
q = s.get("attack")
qs = f"{q['queries_mean']:.1f} ({q['queries_max']})" if q else "0"
w = os.path.join(d, f"wall_s{tag}")
wall = sum(int(x) for x in open(w).read().split()) if os.path.exists(w) else "-"
print(f"| {name} | {a['score']:.4f} | {c['score']:.4f} | {100*(a['score']-c['score'])/c['score']:+.1f}% | "
      f"{100*a['match_rate']:.1f}% | {s['ssim_min']:.4f} | {qs} | {wall} |")
PY
done
