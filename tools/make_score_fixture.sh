#!/usr/bin/env bash
# The golden fixture of `advface score` (issue 5): adversarial images of the first demo
# pair made by `advface attack`, scored by the independent scorer (scikit-image SSIM +
# face-api.js under TF.js, tools/score_reference.py). The Rust test
# crates/advface-cli/tests/score_golden.rs compares `advface score` with it.
#
#   tools/make_score_fixture.sh        (after `cargo build --release`, `(cd tools/faceapi && npm ci)`
#                                       and the .venv-tools of tools/README.md)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${ADVFACE:-${CARGO_TARGET_DIR:-target}/release/advface}
out=fixtures/score
tmp=$(mktemp -d)
"$bin" attack --pairs fixtures/demo/pairs_list.csv --crops fixtures/demo/crops --out "$tmp/adv" \
  --method fgvm --budget 30 --steps 30 --n 1
rm -rf "$out"
mkdir -p "$out/adv"
cp -r "$tmp/adv/Al_Sharpton" "$out/adv/"
head -2 fixtures/demo/pairs_list.csv > "$out/pairs_list.csv"
.venv-tools/bin/python tools/score_reference.py --pairs "$out/pairs_list.csv" \
  --crops fixtures/demo/crops --adv "$out/adv" --json "$out/reference.json"
rm -rf "$tmp"
