#!/usr/bin/env python3
"""Speed of dlib's own C++ face descriptor network (dlib_face_recognition_resnet_model_v1,
the network face-api.js's FaceRecognitionNet was converted from), for comparison with
tools/faceapi/bench.mjs.

Needs dlib and `pip install face_recognition_models` (it ships the .dat file). Two ways to
get dlib 20.0.1:
  pip install dlib-bin      prebuilt wheel, seconds; built without BLAS (slow convolutions)
  apt-get install libopenblas-dev liblapack-dev && pip install cmake && pip install dlib
                            source build (~28 min on 2 busy cores), links OpenBLAS: 2-3x faster
The first lines printed say which one ran (BLAS True/False).

Timed: face_recognition_model_v1.compute_face_descriptor on already aligned 150x150 uint8
chips (no detection, no landmarks, no jitter): batch 1 = one image per call, batch N = a list
of N images per call (dlib runs them as one batch). Median over --runs after --warmup.

It also prints how far dlib's float32 descriptors are from face-api.js's golden descriptor
of fixtures/faceapi/inputs/size_150.png (a 150x150 input, which face-api does not resize),
as an orientation on how close the quantised face-api port is to the original.

Usage (from the repository root):
  python3 tools/dlib_bench.py [--batches 1,32] [--runs 5] [--warmup 1]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import numpy as np
from PIL import Image

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
FIX = os.path.join(REPO, "fixtures", "faceapi")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batches", default="1,32")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--json", action="store_true",
                    help="also print one JSON line at the end: {rows: [{batch, ms_per_image, note}]}")
    ap.add_argument("--model", default=None, help="path of dlib_face_recognition_resnet_model_v1.dat "
                    "(default: the one in the face_recognition_models package)")
    args = ap.parse_args()

    import dlib  # noqa: PLC0415

    model = args.model
    if model is None:
        import face_recognition_models  # noqa: PLC0415
        model = face_recognition_models.face_recognition_model_location()
    enc = dlib.face_recognition_model_v1(model)

    # 150x150 chips: the size_150 fixture plus the 8 LFW-MCS crops resized to 150x150.
    chips = [np.asarray(Image.open(os.path.join(FIX, "inputs", "size_150.png")).convert("RGB"))]
    for k in range(8):
        im = Image.open(os.path.join(FIX, "inputs", f"lfw_{k}.png")).convert("RGB")
        chips.append(np.asarray(im.resize((150, 150), Image.BILINEAR)))
    chips = [np.ascontiguousarray(c) for c in chips]

    print(f"dlib {dlib.__version__} (CUDA {dlib.DLIB_USE_CUDA}, BLAS {getattr(dlib, 'DLIB_USE_BLAS', '?')}, "
          f"LAPACK {getattr(dlib, 'DLIB_USE_LAPACK', '?')}), python {platform.python_version()}, "
          f"{os.cpu_count()} CPUs, model {os.path.basename(model)}")
    print()
    rows = []
    blas = getattr(dlib, "DLIB_USE_BLAS", "?")
    print("| batch | ms/image (median) | ms/image (min) | images/s | timed runs |")
    print("|---|---|---|---|---|")
    for b in map(int, args.batches.split(",")):
        batch = [chips[i % len(chips)] for i in range(b)]
        times = []
        for r in range(args.warmup + args.runs):
            t0 = time.perf_counter()
            if b == 1:
                out = [enc.compute_face_descriptor(batch[0])]
            else:
                out = enc.compute_face_descriptor(batch)
            dt = (time.perf_counter() - t0) * 1000
            assert len(out) == b and len(out[0]) == 128
            if r >= args.warmup:
                times.append(dt)
        med = statistics.median(times)
        print(f"| {b} | {med / b:.1f} | {min(times) / b:.1f} | {1000 * b / med:.1f} | {len(times)} |")
        rows.append({"batch": b, "ms_per_image": med / b,
                     "note": f"dlib {dlib.__version__}, BLAS {blas}, 150x150 chips"})
    print(f"\nload average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    golden_path = os.path.join(FIX, "golden.json")
    if os.path.exists(golden_path):
        golden = {c["file"]: np.array(c["descriptor"]) for c in json.load(open(golden_path))["cases"]}
        d = np.array(enc.compute_face_descriptor(chips[0]))
        g = golden["inputs/size_150.png"]
        print()
        print(f"size_150: |dlib| = {np.linalg.norm(d):.4f}, |face-api| = {np.linalg.norm(g):.4f}, "
              f"L2(dlib, face-api) = {np.linalg.norm(d - g):.4f}, max abs diff = {np.abs(d - g).max():.4f}")
    if args.json:
        print(json.dumps({"rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
