#!/usr/bin/env python3
"""Golden LFW crops made with Pillow, for the Rust JPEG-decode / crop tests.

Picks a deterministic set of ~40 LFW deep-funneled JPEGs, copies the original files
into <out>/images_deepfunneled/<Name>/<file>.jpg (so the Rust tests need no
../shared), decodes each with Pillow (libjpeg-turbo: islow IDCT, fancy upsampling),
and writes <out>/pillow_crops.json with the SHA-256 of the 112x112 centre crop
(rows/cols 69..181, half-open, raw RGB bytes, row-major HWC) and of the full
250x250 decoded RGB image.

    python tools/make_crop_fixture.py                  # writes fixtures/lfw
    python tools/make_crop_fixture.py --check-dir out/ # compares DIR/crops/**.png

The selection (see select_images) is a function of the LFW file tree only:
  spread   24 identities evenly spaced over the byte-sorted identity list
  grey     6 images that decode to R == G == B everywhere (evenly spaced over all
           such images), plus the one closest to grey that is not exactly grey
  pair0    the 5 source + 5 target images of protocol pair 0 (PROTOCOL.md)
  extreme  the smallest and the largest JPEG file
"""
import argparse
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import PIL
from PIL import Image, features

REPO = Path(__file__).resolve().parent.parent
CROP = (69, 181)
SIZE = 250
N_SPREAD = 24
N_GREY = 6


def sha256_hex(b):
    return hashlib.sha256(b).hexdigest()


def name_key(s):
    return s.encode("utf-8")


def list_lfw(img_root):
    """{name: [file, ...]} with names and files in byte order."""
    out = {}
    for name in sorted(os.listdir(img_root), key=name_key):
        d = img_root / name
        if not d.is_dir():
            continue
        files = sorted((f for f in os.listdir(d) if f.endswith(".jpg")), key=name_key)
        if files:
            out[name] = files
    return out


def decode_rgb(path):
    with Image.open(path) as im:
        if im.format != "JPEG":
            raise SystemExit(f"{path}: not a JPEG ({im.format})")
        mode = im.mode
        rgb = im.convert("RGB")
    a = np.asarray(rgb, dtype=np.uint8)
    if a.shape != (SIZE, SIZE, 3):
        raise SystemExit(f"{path}: decoded shape {a.shape}, expected {(SIZE, SIZE, 3)}")
    return a, mode


def crop(a):
    lo, hi = CROP
    return np.ascontiguousarray(a[lo:hi, lo:hi, :])


def attack_pair0(tree):
    """Source and target identities of protocol pair 0 (PROTOCOL.md, 'Pairs')."""
    attack = sorted(
        (n for n, fs in tree.items()
         if len(fs) >= 5 and hashlib.sha256(n.encode("utf-8")).digest()[0] < 0x80),
        key=name_key,
    )
    n = len(attack)
    if n != 227:
        print(f"warning: {n} attack identities (protocol says 227)", file=sys.stderr)
    return attack[0], attack[(0 + n // 2) % n]


def select_images(img_root):
    tree = list_lfw(img_root)
    names = list(tree)
    picks = {}  # rel path -> group

    def add(name, f, group):
        picks.setdefault(f"{name}/{f}", group)

    # spread: evenly spaced identities, a varying image index within each
    for k in range(N_SPREAD):
        name = names[(2 * k + 1) * len(names) // (2 * N_SPREAD)]
        files = tree[name]
        add(name, files[k % len(files)], "spread")

    # protocol pair 0
    src, tgt = attack_pair0(tree)
    for name in (src, tgt):
        for f in tree[name][:5]:
            add(name, f, "pair0")

    # extremes of file size (ties broken by path)
    sized = sorted((os.path.getsize(img_root / n / f), name_key(f"{n}/{f}"), n, f)
                   for n, fs in tree.items() for f in fs)
    add(sized[0][2], sized[0][3], "extreme")
    add(sized[-1][2], sized[-1][3], "extreme")

    # greyscale-looking: full decode of every image (takes ~15-30 s)
    grey, near = [], []
    for n, fs in tree.items():
        for f in fs:
            a, _ = decode_rgb(img_root / n / f)
            a = a.astype(np.int16)
            d = int(max(np.abs(a[..., 0] - a[..., 1]).max(), np.abs(a[..., 1] - a[..., 2]).max()))
            if d == 0:
                grey.append((n, f))
            else:
                near.append((d, name_key(f"{n}/{f}"), n, f))
    if grey:
        for k in range(min(N_GREY, len(grey))):
            n, f = grey[(2 * k + 1) * len(grey) // (2 * min(N_GREY, len(grey)))]
            add(n, f, "grey")
    near.sort()
    if near:
        add(near[0][2], near[0][3], "near_grey")
    return picks, len(grey), near[0][0] if near else None


def make(lfw, out):
    img_root = lfw / "images_deepfunneled"
    if not img_root.is_dir():
        raise SystemExit(f"no LFW images at {img_root}")
    picks, n_grey, near_d = select_images(img_root)
    out_imgs = out / "images_deepfunneled"
    out_imgs.mkdir(parents=True, exist_ok=True)

    images = []
    total = 0
    for rel in sorted(picks, key=name_key):
        src = img_root / rel
        dst = out_imgs / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
        jpeg = dst.read_bytes()
        total += len(jpeg)
        full, mode = decode_rgb(dst)
        c = crop(full)
        g = full.astype(np.int16)
        is_grey = bool((g[..., 0] == g[..., 1]).all() and (g[..., 1] == g[..., 2]).all())
        images.append({
            "path": rel,
            "group": picks[rel],
            "jpeg_mode": mode,
            "grey": is_grey,
            "sha256_jpeg": sha256_hex(jpeg),
            "sha256_rgb": sha256_hex(c.tobytes()),
            "sha256_full_rgb": sha256_hex(full.tobytes()),
        })

    # remove stale copies from an earlier selection
    keep = set(picks)
    for p in sorted(out_imgs.rglob("*.jpg")):
        if p.relative_to(out_imgs).as_posix() not in keep:
            p.unlink()
    for d in sorted(out_imgs.iterdir()):
        if d.is_dir() and not any(d.iterdir()):
            d.rmdir()

    doc = {
        "pillow_version": PIL.__version__,
        "libjpeg_turbo_version": features.version("libjpeg_turbo"),
        "libjpeg_api_version": features.version("jpg"),
        "decode": "PIL.Image.open(p).convert('RGB') (libjpeg-turbo defaults: islow IDCT, fancy upsampling)",
        "crop": list(CROP),
        "crop_note": "rows and columns 69..181 half-open of the 250x250 RGB image; sha256_rgb is over the raw 112*112*3 bytes, row-major HWC",
        "images": images,
    }
    (out / "pillow_crops.json").write_text(json.dumps(doc, indent=1) + "\n")
    print(f"{len(images)} images, {total} bytes of JPEG copied to {out_imgs}")
    print(f"LFW: {n_grey} images decode exactly grey; closest non-grey max |R-G|,|G-B| = {near_d}")


def check(check_dir, lfw, out):
    """Compare DIR/crops/<Name>/<file>.png with Pillow's crop of the JPEG."""
    crops = check_dir / "crops"
    if not crops.is_dir():
        raise SystemExit(f"no {crops}")
    pngs = sorted(crops.rglob("*.png"))
    mismatches, missing, checked = 0, 0, 0
    for p in pngs:
        rel = p.relative_to(crops).with_suffix(".jpg").as_posix()
        src = None
        for root in (out / "images_deepfunneled", lfw / "images_deepfunneled"):
            if (root / rel).is_file():
                src = root / rel
                break
        if src is None:
            missing += 1
            print(f"no JPEG for {rel}")
            continue
        want = crop(decode_rgb(src)[0])
        with Image.open(p) as im:
            mode = im.mode
            got = np.asarray(im)
        checked += 1
        if mode != "RGB" or got.shape != want.shape:
            mismatches += 1
            print(f"MISMATCH {rel}: png mode {mode} shape {got.shape}")
        elif not np.array_equal(got, want):
            mismatches += 1
            d = np.abs(got.astype(np.int16) - want.astype(np.int16))
            print(f"MISMATCH {rel}: {int((d > 0).any(axis=2).sum())} pixels differ, max |diff| {int(d.max())}")
    print(f"checked {checked} crops, {mismatches} mismatches, {missing} without a JPEG")
    return 1 if mismatches or missing else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lfw", type=Path, default=REPO / "../shared/data/lfw",
                    help="LFW root holding images_deepfunneled/ (default ../shared/data/lfw from the repo root)")
    ap.add_argument("--out", type=Path, default=REPO / "fixtures/lfw",
                    help="fixture folder (default fixtures/lfw in the repo)")
    ap.add_argument("--check-dir", type=Path,
                    help="compare DIR/crops/<Name>/<file>.png against Pillow instead of writing fixtures")
    args = ap.parse_args()
    if args.check_dir:
        sys.exit(check(args.check_dir, args.lfw, args.out))
    make(args.lfw, args.out)


if __name__ == "__main__":
    main()
