#!/usr/bin/env python3
"""Make the input images for the face-api.js golden fixtures.

Writes lossless 8-bit RGB PNGs to fixtures/faceapi/inputs/ (relative to the repository
root, i.e. two folders above this script):

  lfw_0 .. lfw_7    112x112 LFW-MCS crops (rows/cols 69..181 of the decoded 250x250
                    deep-funneled JPEG): the first image (by file name) of each of the
                    first 8 attack identities of PROTOCOL.md (sorted by name, byte order).
  noise_0, noise_1  112x112 uniform random uint8 noise (numpy PCG64, fixed seeds).
  noise_2, noise_3  lfw_0 / lfw_1 plus uniform integer noise in [-8, 8], clipped to
                    0..255: near-face inputs like the ones an attack produces.
  size_150          150x150 centre crop (rows/cols 50..200) of lfw_0's JPEG: already the
                    network's input size, so face-api.js skips the resize.
  size_96           96x96 centre crop (rows/cols 77..173) of lfw_0's JPEG: upsampled to
                    150x150 by face-api.js.
  rect_112x96       lfw_0 crop with its last 16 columns dropped (112 high, 96 wide):
                    exercises face-api.js's padToSquare (zero padding, centred).
  grey_112          112x112, every channel 128.

Only Pillow and numpy are needed. JPEG decoding is Pillow's (libjpeg-turbo, islow IDCT,
fancy upsampling), as PROTOCOL.md requires.

Usage (from the repository root):
  python3 tools/faceapi/make_inputs.py [--lfw ../shared/data/lfw] [--out fixtures/faceapi/inputs]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys

import numpy as np
from PIL import Image

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CROP = (69, 181)  # half-open rows/cols of the 250x250 image, PROTOCOL.md
N_LFW = 8


def attack_identities(images_dir: str) -> list[str]:
    """Identities with >= 5 images whose sha256(UTF-8 name)[0] < 0x80, sorted by bytes."""
    out = []
    for name in os.listdir(images_dir):
        d = os.path.join(images_dir, name)
        if not os.path.isdir(d):
            continue
        if hashlib.sha256(name.encode("utf-8")).digest()[0] >= 0x80:
            continue
        n = sum(1 for f in os.listdir(d) if f.endswith(".jpg"))
        if n >= 5:
            out.append(name)
    out.sort(key=lambda s: s.encode("utf-8"))
    return out


def first_image(images_dir: str, name: str) -> str:
    files = sorted(
        (f for f in os.listdir(os.path.join(images_dir, name)) if f.endswith(".jpg")),
        key=lambda s: s.encode("utf-8"),
    )
    return os.path.join(images_dir, name, files[0])


def load_rgb(path: str) -> np.ndarray:
    with Image.open(path) as im:
        a = np.asarray(im.convert("RGB"), dtype=np.uint8)
    if a.shape != (250, 250, 3):
        raise SystemExit(f"{path}: expected a 250x250 RGB image, got {a.shape}")
    return a


def save_png(a: np.ndarray, path: str) -> None:
    assert a.dtype == np.uint8 and a.ndim == 3 and a.shape[2] == 3, a.shape
    Image.fromarray(a, "RGB").save(path, format="PNG", optimize=True)
    with Image.open(path) as im:  # lossless round trip
        assert np.array_equal(np.asarray(im.convert("RGB")), a), path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lfw", default=os.path.join(REPO, "..", "shared", "data", "lfw"),
                    help="LFW folder holding images_deepfunneled/ (default: ../shared/data/lfw)")
    ap.add_argument("--out", default=os.path.join(REPO, "fixtures", "faceapi", "inputs"))
    args = ap.parse_args()

    images_dir = os.path.join(args.lfw, "images_deepfunneled")
    if not os.path.isdir(images_dir):
        raise SystemExit(f"no LFW images at {images_dir}; pass --lfw")
    os.makedirs(args.out, exist_ok=True)

    ids = attack_identities(images_dir)
    if len(ids) != 227:
        print(f"warning: {len(ids)} attack identities, PROTOCOL.md says 227", file=sys.stderr)

    cases = []  # (name, array, description)
    full0 = None
    lo, hi = CROP
    for k, name in enumerate(ids[:N_LFW]):
        src = first_image(images_dir, name)
        full = load_rgb(src)
        if k == 0:
            full0 = full
        rel = os.path.relpath(src, args.lfw)
        cases.append((f"lfw_{k}", full[lo:hi, lo:hi], f"LFW-MCS crop [69:181, 69:181] of {rel}"))

    lfw0, lfw1 = cases[0][1], cases[1][1]
    rng = np.random.default_rng(20180101)
    cases.append(("noise_0", rng.integers(0, 256, (112, 112, 3), dtype=np.uint8),
                  "uniform uint8 noise, numpy default_rng(20180101), first draw"))
    cases.append(("noise_1", rng.integers(0, 256, (112, 112, 3), dtype=np.uint8),
                  "uniform uint8 noise, numpy default_rng(20180101), second draw"))
    for j, (base, bname) in enumerate(((lfw0, "lfw_0"), (lfw1, "lfw_1"))):
        d = rng.integers(-8, 9, (112, 112, 3), dtype=np.int16)
        a = np.clip(base.astype(np.int16) + d, 0, 255).astype(np.uint8)
        cases.append((f"noise_{2 + j}", a,
                      f"{bname} + uniform integer noise in [-8, 8] (same rng, draw {3 + j}), clipped"))
    cases.append(("size_150", full0[50:200, 50:200], "150x150 crop [50:200, 50:200] of lfw_0's JPEG"))
    cases.append(("size_96", full0[77:173, 77:173], "96x96 crop [77:173, 77:173] of lfw_0's JPEG"))
    cases.append(("rect_112x96", lfw0[:, :96], "lfw_0 with its last 16 columns dropped (H 112, W 96)"))
    cases.append(("grey_112", np.full((112, 112, 3), 128, np.uint8), "112x112, all channels 128"))

    index = []
    for name, a, desc in cases:
        a = np.ascontiguousarray(a)
        save_png(a, os.path.join(args.out, f"{name}.png"))
        index.append({"file": f"inputs/{name}.png", "width": int(a.shape[1]),
                      "height": int(a.shape[0]), "description": desc})
        print(f"{name}.png  {a.shape[1]}x{a.shape[0]}  {desc}")
    with open(os.path.join(args.out, "index.json"), "w") as f:
        json.dump(index, f, indent=1)
        f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
