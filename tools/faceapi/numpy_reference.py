#!/usr/bin/env python3
"""Independent numpy port of face-api.js FaceRecognitionNet, written from NETWORK.md only,
checked against the golden descriptors of golden.mjs. It proves NETWORK.md is complete
(weights layout, dequantisation, resize, padding, residualDown) and is a second reference
for the Rust port. Not used by anything else.

Usage (from the repository root):
  python3 tools/faceapi/numpy_reference.py [--golden fixtures/faceapi/golden.json]

Exit status 1 if any case differs from the golden descriptor by more than --tol (max abs).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys

import numpy as np
from PIL import Image

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MEAN_RGB = np.array([122.782, 117.001, 104.298], np.float32)


def load_weights(model_dir: str) -> dict[str, np.ndarray]:
    """Manifest entries are packed back to back in the .bin, in manifest order, no alignment.
    uint8-quantised: 1 byte each, value = f32(q * scale + min) (computed in f64).
    Unquantised float32: 4 bytes each, little endian."""
    with open(os.path.join(model_dir, "face_recognition_model-weights_manifest.json")) as f:
        manifest = json.load(f)
    (group,) = manifest
    buf = b"".join(open(os.path.join(model_dir, p), "rb").read() for p in group["paths"])
    out, off = {}, 0
    for w in group["weights"]:
        n = math.prod(w["shape"])
        q = w.get("quantization")
        if q is None:
            assert w["dtype"] == "float32"
            v = np.frombuffer(buf, "<f4", n, off).copy()
            off += 4 * n
        else:
            assert q["dtype"] == "uint8" and w["dtype"] == "float32"
            raw = np.frombuffer(buf, np.uint8, n, off)
            v = (raw.astype(np.float64) * q["scale"] + q["min"]).astype(np.float32)
            off += n
        out[w["name"]] = v.reshape(w["shape"])
    assert off == len(buf), (off, len(buf))
    return out


def resize_bilinear_legacy_f32(x: np.ndarray, size: int) -> np.ndarray:
    """tf.image.resizeBilinear(x, [size, size], alignCorners=false, halfPixelCenters=false),
    float32 arithmetic as the TF.js wasm backend (XNNPACK) does it. x: [H, W, C] float32."""
    h, w, _ = x.shape
    f32 = np.float32
    sh, sw = f32(h) / f32(size), f32(w) / f32(size)
    ys = np.arange(size, dtype=f32) * sh
    xs = np.arange(size, dtype=f32) * sw
    y0 = np.floor(ys).astype(int); y1 = np.minimum(h - 1, np.ceil(ys).astype(int)); ay = (ys - y0.astype(f32))[:, None, None]
    x0 = np.floor(xs).astype(int); x1 = np.minimum(w - 1, np.ceil(xs).astype(int)); ax = (xs - x0.astype(f32))[None, :, None]
    tl, tr = x[y0][:, x0], x[y0][:, x1]
    bl, br = x[y1][:, x0], x[y1][:, x1]
    top = tl + (tr - tl) * ax
    bot = bl + (br - bl) * ax
    return (top + (bot - top) * ay).astype(f32)


def pad_to_square(x: np.ndarray) -> np.ndarray:
    """padToSquare(img, isCenterImage=true): zeros; round(diff/2) after, the rest before."""
    h, w, c = x.shape
    if h == w:
        return x
    diff = abs(h - w)
    after = int(math.floor(diff * 0.5 + 0.5))  # JS Math.round on a non-negative number
    before = diff - after
    if h > w:
        return np.concatenate([np.zeros((h, before, c), x.dtype), x, np.zeros((h, after, c), x.dtype)], 1)
    return np.concatenate([np.zeros((before, w, c), x.dtype), x, np.zeros((after, w, c), x.dtype)], 0)


def preprocess(rgb: np.ndarray) -> np.ndarray:
    x = pad_to_square(rgb.astype(np.float32))
    if x.shape[0] != 150:
        x = resize_bilinear_legacy_f32(x, 150)
    return x


def conv2d(x: np.ndarray, w: np.ndarray, stride: int, padding: str) -> np.ndarray:
    """TF conv2d, NHWC x [H, W, Cin], HWIO w [k, k, Cin, Cout]. 'same' (stride 1 only here):
    pad (k-1)//2 before and k-1-(k-1)//2 after; 'valid': no padding."""
    k = w.shape[0]
    if padding == "same":
        assert stride == 1
        p0 = (k - 1) // 2
        x = np.pad(x, ((p0, k - 1 - p0), (p0, k - 1 - p0), (0, 0)))
    h, wd, c = x.shape
    oh, ow = (h - k) // stride + 1, (wd - k) // stride + 1
    cols = np.empty((oh, ow, k, k, c), np.float32)
    for i in range(k):
        for j in range(k):
            cols[:, :, i, j, :] = x[i:i + stride * (oh - 1) + 1:stride, j:j + stride * (ow - 1) + 1:stride, :]
    return (cols.reshape(oh * ow, k * k * c) @ w.reshape(k * k * c, -1)).reshape(oh, ow, -1)


def conv_layer(x, W, prefix, stride, relu, padding):
    out = conv2d(x, W[f"{prefix}/conv/filters"], stride, padding)
    out = out + W[f"{prefix}/conv/bias"]
    out = out * W[f"{prefix}/scale/weights"] + W[f"{prefix}/scale/biases"]
    return np.maximum(out, 0) if relu else out


def pool(x, k, s, op):
    h, w, c = x.shape
    oh, ow = (h - k) // s + 1, (w - k) // s + 1
    win = np.stack([x[i:i + s * (oh - 1) + 1:s, j:j + s * (ow - 1) + 1:s] for i in range(k) for j in range(k)])
    return win.max(0) if op == "max" else win.mean(0, dtype=np.float32)


def residual(x, W, name):
    out = conv_layer(x, W, f"{name}/conv1", 1, True, "same")
    out = conv_layer(out, W, f"{name}/conv2", 1, False, "same")
    return np.maximum(out + x, 0)


def residual_down(x, W, name):
    out = conv_layer(x, W, f"{name}/conv1", 2, True, "valid")
    out = conv_layer(out, W, f"{name}/conv2", 1, False, "same")
    pooled = pool(x, 2, 2, "avg")
    if pooled.shape[:2] != out.shape[:2]:  # one zero row at the bottom, one zero column at the right
        out = np.pad(out, ((0, 1), (0, 1), (0, 0)))
    if pooled.shape[2] != out.shape[2]:  # zero channels appended after the pooled ones
        pooled = np.concatenate([pooled, np.zeros_like(pooled)], 2)
    return np.maximum(pooled + out, 0)


def descriptor(rgb: np.ndarray, W) -> np.ndarray:
    x = (preprocess(rgb) - MEAN_RGB) / np.float32(255)
    x = conv_layer(x, W, "conv32_down", 2, True, "valid")
    x = pool(x, 3, 2, "max")
    for name in ["conv32_1", "conv32_2", "conv32_3", "conv64_down", "conv64_1", "conv64_2", "conv64_3",
                 "conv128_down", "conv128_1", "conv128_2", "conv256_down", "conv256_1", "conv256_2",
                 "conv256_down_out"]:
        x = residual_down(x, W, name) if "down" in name else residual(x, W, name)
    return x.mean((0, 1), dtype=np.float32) @ W["fc"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--golden", default=os.path.join(REPO, "fixtures", "faceapi", "golden.json"))
    ap.add_argument("--model-dir", default=os.path.join(REPO, "models", "faceapi"))
    ap.add_argument("--tol", type=float, default=1e-4)
    args = ap.parse_args()
    W = load_weights(args.model_dir)
    golden = json.load(open(args.golden))
    base = os.path.dirname(args.golden)

    dbg = golden["debug_case"]
    rgb = np.asarray(Image.open(os.path.join(base, dbg["file"])).convert("RGB"))
    ref = np.fromfile(os.path.join(base, dbg["resized_input"]["file"]), "<f4").reshape(150, 150, 3)
    print(f"resized {dbg['file']}: max |numpy - face-api| = {np.abs(preprocess(rgb) - ref).max():.3g}")

    worst = 0.0
    for case in golden["cases"]:
        rgb = np.asarray(Image.open(os.path.join(base, case["file"])).convert("RGB"))
        d = descriptor(rgb, W)
        g = np.array(case["descriptor"], np.float32)
        err = float(np.abs(d - g).max())
        worst = max(worst, err)
        print(f"{case['file']:26s} max|d - golden| = {err:.3g}  L2 = {np.linalg.norm(d - g):.3g}  |d| = {np.linalg.norm(d):.6f}")
    print(f"worst max abs diff {worst:.3g} (tol {args.tol})")
    return 0 if worst <= args.tol else 1


if __name__ == "__main__":
    sys.exit(main())
