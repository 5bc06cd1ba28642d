#!/usr/bin/env python3
"""Independent LFW-MCS scorer (PROTOCOL.md), to check `advface score`.

    python tools/score_reference.py --pairs PAIRS_CSV --crops DIR --adv DIR [--n N] [--json OUT]

For each of the first N pairs of the MCS2018 pairs file (header `source_imgs,target_imgs`,
each cell 5 crops-relative paths joined by `|`): the original source crops and the target
crops come from --crops, the adversarial sources from --adv (same relative path, extension
.png). SSIM of every adversarial source against its original is scikit-image's
`structural_similarity(a, b, channel_axis=2, data_range=255)` on uint8 RGB arrays (as
tools/ssim_reference.py). Descriptors come from real face-api.js under TF.js:
tools/faceapi/describe.mjs, run once (one node process) for every distinct image.

Reported: score (mean over pairs of the mean L2 over the 5 x 5 adversarial source x target
combinations), clean score (the same with the original sources), match rates (share of
combinations with L2 < 0.6), SSIM min / mean, images below 0.95, per-pair scores.
The JSON (--json) has `score`, `clean_score`, `match_rate`, `clean_match_rate`, `ssim_min`,
`ssim_mean`, `violations` (count), `pairs`, `per_pair` ([index, attacked, clean]) and, for
debugging, `violating_images`, `ssim_per_image`, `combinations`, `threshold`, `versions`,
`wall_s`. Exit status: 0, 3 if an image is below 0.95 (as `advface score`), 1 on error.

Needs Pillow, numpy and scikit-image (tools/requirements.txt) and node 20 with
`(cd tools/faceapi && npm ci)` done.
"""
import argparse
import csv
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import skimage
from PIL import Image
from skimage.metrics import structural_similarity

REPO = Path(__file__).resolve().parent.parent
DESCRIBE = REPO / "tools" / "faceapi" / "describe.mjs"
THRESHOLD = 0.6
SSIM_LIMIT = 0.95
EXIT_SSIM_VIOLATION = 3


def read_pairs(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows or [c.strip() for c in rows[0]] != ["source_imgs", "target_imgs"]:
        sys.exit(f"{path}: first line must be the header 'source_imgs,target_imgs', got {rows[:1]}")
    pairs = []
    for line, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != 2:
            sys.exit(f"{path}:{line}: expected 2 cells, got {len(row)}")
        src, tgt = (cell.split("|") for cell in row)
        if len(src) != 5 or len(tgt) != 5:
            sys.exit(f"{path}:{line}: expected 5 sources and 5 targets, got {len(src)} and {len(tgt)}")
        pairs.append((src, tgt))
    return pairs


def load_rgb(path):
    try:
        with Image.open(path) as im:
            if im.mode != "RGB":
                print(f"note: {path} is mode {im.mode}, converted to RGB", file=sys.stderr)
                im = im.convert("RGB")
            return np.asarray(im).copy()
    except FileNotFoundError:
        sys.exit(f"error: {path} does not exist")


def ssim(a, b):
    return float(structural_similarity(a, b, channel_axis=2, data_range=255))


def describe(paths, node, backend):
    """Descriptors (float64 arrays of face-api's float32 values) of `paths`, one node run."""
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as lst, \
            tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as out:
        lst.write("".join(f"{p}\n" for p in paths))
    try:
        cmd = [node, str(DESCRIBE), "--backend", backend, "--list", lst.name, "--out", out.name]
        r = subprocess.run(cmd, stderr=subprocess.PIPE, text=True)
        sys.stderr.write(r.stderr)
        if r.returncode != 0:
            sys.exit(f"error: {' '.join(cmd)} exited with {r.returncode} "
                     "(did `cd tools/faceapi && npm ci` run?)")
        got = {}
        with open(out.name) as f:
            for line in f:
                rec = json.loads(line)
                d = np.asarray(rec["descriptor"], dtype=np.float64)
                if d.shape != (128,):
                    sys.exit(f"error: {rec['path']}: descriptor shape {d.shape}, expected (128,)")
                got[rec["path"]] = d
    finally:
        Path(lst.name).unlink(missing_ok=True)
        Path(out.name).unlink(missing_ok=True)
    missing = [p for p in paths if p not in got]
    if missing:
        sys.exit(f"error: describe.mjs gave no descriptor for {len(missing)} images, e.g. {missing[0]}")
    return got


def pair_score(sources, targets):
    """Mean L2 over the len(sources) x len(targets) combinations, and the match count."""
    d = [float(np.sqrt(np.sum((s - t) ** 2))) for s in sources for t in targets]
    return sum(d) / len(d), sum(x < THRESHOLD for x in d), len(d)


def node_versions(node):
    try:
        return subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", required=True, type=Path, help="MCS2018 pairs_list.csv")
    ap.add_argument("--crops", required=True, type=Path, help="folder of the original crops")
    ap.add_argument("--adv", required=True, type=Path, help="folder of the adversarial images")
    ap.add_argument("--n", type=int, default=None, help="score only the first N pairs")
    ap.add_argument("--json", type=Path, default=None, help="write the report as JSON here")
    ap.add_argument("--node", default="node", help="node binary (default: node on PATH)")
    ap.add_argument("--backend", default="wasm", choices=["wasm", "cpu"],
                    help="TF.js backend of describe.mjs (default wasm, as golden.mjs)")
    args = ap.parse_args()
    start = time.time()

    pairs = read_pairs(args.pairs)
    if args.n is not None:
        pairs = pairs[: args.n]
    if not pairs:
        sys.exit(f"error: {args.pairs} lists no pair")

    # SSIM of every adversarial source against its original crop.
    ssims = []  # (relative source path, ssim)
    jobs = []   # per pair: (adv paths, clean paths, target paths) as strings
    for src, tgt in pairs:
        adv_paths = []
        for rel in src:
            orig_p = args.crops / rel
            adv_p = (args.adv / rel).with_suffix(".png")
            a, b = load_rgb(orig_p), load_rgb(adv_p)
            if a.shape != b.shape:
                sys.exit(f"error: {adv_p} has shape {b.shape}, its original {orig_p} {a.shape}")
            ssims.append((rel, ssim(a, b)))
            adv_paths.append(str(adv_p))
        jobs.append((adv_paths, [str(args.crops / r) for r in src], [str(args.crops / r) for r in tgt]))
    t_ssim = time.time() - start

    unique = list(dict.fromkeys(p for job in jobs for side in job for p in side))
    t0 = time.time()
    desc = describe(unique, args.node, args.backend)
    t_desc = time.time() - t0

    per_pair = []
    att_m = cln_m = combos = 0
    for i, (adv_paths, clean_paths, tgt_paths) in enumerate(jobs):
        T = [desc[p] for p in tgt_paths]
        a, am, n = pair_score([desc[p] for p in adv_paths], T)
        c, cm, _ = pair_score([desc[p] for p in clean_paths], T)
        per_pair.append([i, a, c])
        att_m += am
        cln_m += cm
        combos += n

    values = [s for _, s in ssims]
    bad = [{"image": r, "ssim": s} for r, s in ssims if s < SSIM_LIMIT]
    report = {
        "score": sum(p[1] for p in per_pair) / len(per_pair),
        "clean_score": sum(p[2] for p in per_pair) / len(per_pair),
        "match_rate": att_m / combos,
        "clean_match_rate": cln_m / combos,
        "ssim_min": min(values),
        "ssim_mean": sum(values) / len(values),
        "violations": len(bad),
        "pairs": len(per_pair),
        "per_pair": per_pair,
        "violating_images": bad,
        "ssim_per_image": [[r, s] for r, s in ssims],
        "images": len(values),
        "combinations": combos,
        "threshold": THRESHOLD,
        "descriptor_images": len(unique),
        "versions": {
            "python": sys.version.split()[0],
            "numpy": np.__version__,
            "scikit_image": skimage.__version__,
            "pillow": Image.__version__,
            "node": node_versions(args.node),
            "describe": "tools/faceapi/describe.mjs (@vladmandic/face-api 1.7.15, TF.js 4.22.0, "
                        f"backend {args.backend})",
        },
        "wall_s": {"ssim": t_ssim, "descriptors": t_desc, "total": time.time() - start},
    }

    pct = 100.0 * (report["score"] - report["clean_score"]) / report["clean_score"]
    print("| quantity | value |\n|---|---:|")
    print(f"| pairs scored | {report['pairs']} |")
    print(f"| score (mean L2, attacked) | **{report['score']:.4f}** |")
    print(f"| clean score (same pairs, no attack) | {report['clean_score']:.4f} |")
    print(f"| change | {pct:+.1f}% |")
    print(f"| match rate (L2 < {THRESHOLD}) | {100 * report['match_rate']:.1f}% "
          f"(clean {100 * report['clean_match_rate']:.1f}%) |")
    print(f"| SSIM min / mean | {report['ssim_min']:.4f} / {report['ssim_mean']:.4f} |")
    print(f"| images below 0.95 | {report['violations']} |")
    print(f"| descriptors (distinct images) | {len(unique)} in {t_desc:.1f} s |")
    print(f"| scoring time | {report['wall_s']['total']:.1f} s |")
    if len(per_pair) <= 20:
        print("\n| pair | attacked | clean |\n|---:|---:|---:|")
        for i, a, c in per_pair:
            print(f"| {i} | {a:.4f} | {c:.4f} |")
    for v in bad:
        print(f"error: {v['image']}: SSIM {v['ssim']:.5f} below 0.95", file=sys.stderr)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    if any(not math.isfinite(x) for p in per_pair for x in p[1:]):
        sys.exit("error: non-finite pair score")
    return EXIT_SSIM_VIOLATION if bad else 0


if __name__ == "__main__":
    sys.exit(main())
