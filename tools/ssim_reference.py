#!/usr/bin/env python3
"""Print the MCS2018 SSIM of two images, for checking `advface ssim`.

    python tools/ssim_reference.py A.png B.png [--per-channel]

SSIM is skimage.metrics.structural_similarity(a, b, channel_axis=2, data_range=255)
on the images as uint8 HxWx3 RGB arrays (the old compare_ssim(a, b, multichannel=True)).
Images that are not 8-bit RGB are converted with Pillow's convert('RGB') (a note goes
to stderr). The value is printed with repr (shortest exact round trip).
"""
import argparse
import sys

import numpy as np
from PIL import Image
from skimage.metrics import structural_similarity


def load(path):
    with Image.open(path) as im:
        if im.mode != "RGB":
            print(f"note: {path} is mode {im.mode}, converted to RGB", file=sys.stderr)
            im = im.convert("RGB")
        return np.asarray(im).copy()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--per-channel", action="store_true", help="also print the R, G, B values")
    args = ap.parse_args()
    a, b = load(args.a), load(args.b)
    if a.shape != b.shape:
        sys.exit(f"shapes differ: {a.shape} vs {b.shape}")
    print(repr(float(structural_similarity(a, b, channel_axis=2, data_range=255))))
    if args.per_channel:
        print(" ".join(repr(float(structural_similarity(a[..., c], b[..., c], data_range=255)))
                       for c in range(3)))


if __name__ == "__main__":
    main()
