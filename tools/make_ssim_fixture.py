#!/usr/bin/env python3
"""Golden SSIM values from scikit-image, for the Rust SSIM tests.

SSIM exactly as MCS2018 measured it: the old `skimage.measure.compare_ssim(a, b,
multichannel=True)` on uint8 HxWx3 arrays, which is today

    skimage.metrics.structural_similarity(a, b, channel_axis=2, data_range=255)

with all else default (7x7 uniform window via scipy.ndimage.uniform_filter, mode
'reflect'; sample covariance N/(N-1); K1 0.01, K2 0.03; SSIM map cropped by 3 pixels
on each side, then the mean; mean over the 3 channels; float64 throughout).

Writes fixtures/ssim/<base>_a.png (shared originals), <case>_b.png and golden.json.
Every case's pair is read back from the PNGs before SSIM is computed, so the golden
values are those of the stored files. All noise comes from numpy's legacy
RandomState (a frozen stream) seeded per case from the case name.

    python tools/make_ssim_fixture.py      # needs fixtures/lfw from make_crop_fixture.py
"""
import argparse
import json
import zlib
from pathlib import Path

import numpy as np
import scipy
import skimage
from PIL import Image
from scipy.ndimage import gaussian_filter
from skimage.metrics import structural_similarity

REPO = Path(__file__).resolve().parent.parent
CROP = slice(69, 181)
THRESHOLD = 0.95

# LFW images used as originals (all are in the crop fixture, fixtures/lfw)
LFW_BASES = {
    "lfw1": "Al_Sharpton/Al_Sharpton_0001.jpg",          # colour, protocol pair-0 source
    "lfw2": "Jose_Maria_Aznar/Jose_Maria_Aznar_0001.jpg",  # colour, protocol pair-0 target
    "lfwgrey": "Bob_Hayes/Bob_Hayes_0001.jpg",            # decodes to R == G == B
}


def ssim(a, b):
    return float(structural_similarity(a, b, channel_axis=2, data_range=255))


def ssim1(a, b):
    return float(structural_similarity(a, b, channel_axis=None, data_range=255))


def exact_ssim(a, b):
    """Independent check: window sums of x, y, x^2, y^2, xy done in exact integers."""
    def wsum(v):
        c = np.pad(v.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
        return c[7:, 7:] - c[:-7, 7:] - c[7:, :-7] + c[:-7, :-7]

    out = []
    for ch in range(3):
        x = a[..., ch].astype(np.int64)
        y = b[..., ch].astype(np.int64)
        n, cov = 49.0, 49.0 / 48.0
        ux, uy = wsum(x) / n, wsum(y) / n
        vx = cov * (wsum(x * x) / n - ux * ux)
        vy = cov * (wsum(y * y) / n - uy * uy)
        vxy = cov * (wsum(x * y) / n - ux * uy)
        c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
        s = (2 * ux * uy + c1) * (2 * vxy + c2) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
        out.append(s.mean())
    return float(np.mean(out))


def rng(name):
    return np.random.RandomState(zlib.crc32(name.encode()))


def u8(v):
    return np.clip(np.rint(v), 0, 255).astype(np.uint8)


def uniform_noise(a, k, r):
    """Every value moved by an integer drawn uniformly from [-k, k], clipped."""
    return u8(a.astype(np.int16) + r.randint(-k, k + 1, size=a.shape))


def gauss_noise(a, sigma, r):
    return u8(a + r.standard_normal(a.shape) * sigma)


def sparse_small(a, k, frac, r):
    """A random `frac` of the values moved by a nonzero integer in [-k, k]."""
    d = r.randint(1, k + 1, size=a.shape) * np.where(r.rand(*a.shape) < 0.5, -1, 1)
    return u8(a.astype(np.int16) + d * (r.rand(*a.shape) < frac))


def sparse_large(a, frac, r):
    """A random `frac` of the pixels (all 3 channels) set to random values."""
    m = r.rand(*a.shape[:2]) < frac
    b = a.copy()
    b[m] = r.randint(0, 256, size=(int(m.sum()), 3))
    return b


def smooth_random(h, w, r):
    v = gaussian_filter(r.rand(h, w, 3), sigma=(1.5, 1.5, 0))
    v = (v - v.min()) / (v.max() - v.min())
    return u8(20 + 215 * v)


def saturated(lfw):
    """Contrast-stretched face with big regions at 0 and 255."""
    s = u8((lfw.astype(np.float64) - 128) * 2.5 + 128)
    s[:30, :, :] = 255
    s[:, :25, :] = 0
    s[60:90, 60:90, 0] = 255  # one channel only
    s[95:, 80:, :] = 0
    return s


def near_threshold(a, name):
    """b = a + t * fixed Gaussian pattern; bisect t so SSIM straddles 0.95."""
    pat = rng(name).standard_normal(a.shape)
    lo, hi = 0.0, 64.0  # ssim(lo) >= 0.95 > ssim(hi)
    for _ in range(60):
        mid = (lo + hi) / 2
        if ssim(a, u8(a + mid * pat)) >= THRESHOLD:
            lo = mid
        else:
            hi = mid
    return u8(a + lo * pat), u8(a + hi * pat)


def jpeg_roundtrip(a, quality):
    import io
    buf = io.BytesIO()
    Image.fromarray(a, "RGB").save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB")).copy()


def build(lfw_dir):
    def load(rel):
        with Image.open(lfw_dir / "images_deepfunneled" / rel) as im:
            full = np.asarray(im.convert("RGB")).copy()
        assert full.shape == (250, 250, 3), rel
        return full

    bases = {k: np.ascontiguousarray(load(v)[CROP, CROP]) for k, v in LFW_BASES.items()}
    bases["full250"] = load(LFW_BASES["lfw1"])
    flat = np.empty((112, 112, 3), np.uint8)
    flat[:] = (128, 64, 200)
    bases["flat"] = flat
    bases["sat"] = saturated(bases["lfw1"])
    bases["noise"] = rng("noise").randint(0, 256, size=(112, 112, 3)).astype(np.uint8)
    for h, w in ((50, 80), (80, 50), (8, 9), (7, 40)):
        bases[f"s{h}x{w}"] = smooth_random(h, w, rng(f"s{h}x{w}"))
    bases["s7x7"] = rng("s7x7").randint(0, 256, size=(7, 7, 3)).astype(np.uint8)

    cases = []  # (name, base a, b array or base name, note)

    def case(name, a, b, note):
        cases.append((name, a, b, note))

    L = bases["lfw1"]
    case("identical_lfw", "lfw1", "lfw1", "a vs itself")
    for k in (1, 2, 4, 8, 16, 32):
        case(f"uniform_pm{k}_lfw", "lfw1", uniform_noise(L, k, rng(f"u{k}")),
             f"every value + integer uniform in [-{k},{k}], clipped")
    for s in (2, 5, 10):
        case(f"gauss_s{s}_lfw", "lfw1", gauss_noise(L, s, rng(f"g{s}")),
             f"every value + N(0,{s}^2), rounded, clipped")
    case("shift_r1c2_lfw", "lfw1", np.roll(L, (1, 2), axis=(0, 1)), "np.roll by 1 row, 2 columns")
    case("shift_c1_lfw", "lfw1", np.roll(L, 1, axis=1), "np.roll by 1 column")
    case("blur_s1_lfw", "lfw1", u8(gaussian_filter(L.astype(np.float64), sigma=(1, 1, 0))),
         "scipy gaussian_filter sigma 1 (spatial), rounded")
    case("jpeg_q75_lfw", "lfw1", jpeg_roundtrip(L, 75), "Pillow JPEG quality 75 round trip")
    case("sparse_pm1_10pct_lfw", "lfw1", sparse_small(L, 1, 0.10, rng("sp1")),
         "10% of values +-1")
    case("sparse_pm2_30pct_lfw", "lfw1", sparse_small(L, 2, 0.30, rng("sp2")),
         "30% of values +-1..2")
    case("sparse_pm3_50pct_lfw", "lfw1", sparse_small(L, 3, 0.50, rng("sp3")),
         "50% of values +-1..3")
    case("all_pm1_lfw", "lfw1", sparse_small(L, 1, 1.0, rng("all1")), "every value +-1 (nonzero)")
    case("sparse_large_0p5pct_lfw", "lfw1", sparse_large(L, 0.005, rng("sl05")),
         "0.5% of pixels set to random colours")
    case("sparse_large_2pct_lfw", "lfw1", sparse_large(L, 0.02, rng("sl2")),
         "2% of pixels set to random colours")
    red = L.copy()
    red[..., 0] = uniform_noise(L[..., :1], 8, rng("red"))[..., 0]
    case("red_only_pm8_lfw", "lfw1", red, "only the red channel + uniform [-8,8]")
    case("inverted_lfw", "lfw1", 255 - L, "255 - a (negative SSIM)")
    case("other_face_lfw", "lfw1", "lfw2", "two different LFW crops")
    above, below = near_threshold(L, "near")
    case("near_threshold_above_lfw", "lfw1", above, "scaled Gaussian pattern, SSIM just >= 0.95")
    case("near_threshold_below_lfw", "lfw1", below, "same pattern scaled a bit more, SSIM just < 0.95")

    L2 = bases["lfw2"]
    case("sparse_pm2_30pct_lfw2", "lfw2", sparse_small(L2, 2, 0.30, rng("sp2b")),
         "30% of values +-1..2")
    case("uniform_pm4_lfw2", "lfw2", uniform_noise(L2, 4, rng("u4b")), "uniform [-4,4]")

    G = bases["lfwgrey"]
    g = uniform_noise(G[..., :1], 2, rng("grey2"))
    case("grey_pm2_lfwgrey", "lfwgrey", np.repeat(g, 3, axis=2),
         "grey face, same +-2 noise on all channels (b stays grey)")
    case("grey_colour_pm3_lfwgrey", "lfwgrey", uniform_noise(G, 3, rng("grey3")),
         "grey face, independent +-3 noise per channel")

    F = bases["flat"]
    case("flat_identical", "flat", "flat", "constant image vs itself (zero variance)")
    case("flat_vs_flat_plus1", "flat", u8(F.astype(np.int16) + 1), "constant vs constant + 1")
    bases["flatnoise"] = uniform_noise(F, 16, rng("flatnoise"))
    case("flat_vs_noise_pm16", "flat", "flatnoise", "constant vs constant + uniform [-16,16]")
    case("noise_pm16_vs_flat", "flatnoise", "flat", "the previous case swapped (a is the noisy one)")

    S = bases["sat"]
    case("saturated_pm8", "sat", uniform_noise(S, 8, rng("sat8")), "uniform [-8,8], clipped at 0/255")
    case("saturated_pm32", "sat", uniform_noise(S, 32, rng("sat32")), "uniform [-32,32], clipped")
    case("saturated_plus20", "sat", u8(S.astype(np.int16) + 20), "+20 everywhere, clipped at 255")

    N = bases["noise"]
    case("noise_vs_noise", "noise", rng("noise2").randint(0, 256, size=N.shape).astype(np.uint8),
         "two independent uniform random images")
    case("noise_pm4", "noise", uniform_noise(N, 4, rng("n4")), "random image + uniform [-4,4]")

    Fu = bases["full250"]
    case("full250_pm2", "full250", uniform_noise(Fu, 2, rng("f2")), "whole 250x250 decoded image, [-2,2]")
    case("full250_gauss5", "full250", gauss_noise(Fu, 5, rng("fg5")), "250x250, N(0,25)")

    for key in ("s50x80", "s80x50", "s8x9", "s7x40", "s7x7"):
        B = bases[key]
        case(f"size_{key[1:]}_pm8", key, uniform_noise(B, 8, rng(f"{key}8")),
             f"{key[1:]} (HxW) smooth random image, uniform [-8,8]")
    case("size_7x7_gauss20", "s7x7", gauss_noise(bases["s7x7"], 20, rng("s7g")),
         "7x7: the cropped SSIM map is a single pixel")
    case("size_50x80_shift", "s50x80", np.roll(bases["s50x80"], (2, 1), axis=(0, 1)),
         "50x80, roll 2 rows 1 column")
    return bases, cases


def save_png(path, arr):
    Image.fromarray(arr, "RGB").save(path, format="PNG", compress_level=9)


def read_png(path):
    with Image.open(path) as im:
        assert im.mode == "RGB", path
        return np.asarray(im).copy()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lfw", type=Path, default=REPO / "fixtures/lfw",
                    help="crop fixture folder holding images_deepfunneled/ (default fixtures/lfw)")
    ap.add_argument("--out", type=Path, default=REPO / "fixtures/ssim")
    args = ap.parse_args()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)

    bases, cases = build(args.lfw)
    written = set()
    used_bases = set()
    for name, a, b, _ in cases:
        for v in (a, b):
            if isinstance(v, str):
                used_bases.add(v)
    for k in sorted(used_bases):
        save_png(out / f"{k}_a.png", bases[k])
        written.add(f"{k}_a.png")

    records = []
    max_diff = 0.0
    for name, a, b, note in cases:
        files = []
        for v, tag in ((a, "a"), (b, "b")):
            if isinstance(v, str):
                files.append(f"{v}_a.png")
            else:
                f = f"{name}_{tag}.png"
                save_png(out / f, v)
                written.add(f)
                files.append(f)
        A, B = read_png(out / files[0]), read_png(out / files[1])
        assert A.shape == B.shape and A.ndim == 3 and A.shape[2] == 3, name
        s = ssim(A, B)
        per = [ssim1(A[..., c], B[..., c]) for c in range(3)]
        assert float(np.mean(np.array(per))) == s, (name, per, s)
        assert (per[0] + per[1] + per[2]) / 3 == s or abs((per[0] + per[1] + per[2]) / 3 - s) < 1e-15, name
        max_diff = max(max_diff, abs(exact_ssim(A, B) - s))
        records.append({
            "name": name,
            "a": files[0],
            "b": files[1],
            "height": int(A.shape[0]),
            "width": int(A.shape[1]),
            "note": note,
            "ssim": s,
            "ssim_per_channel": per,
        })

    for p in sorted(out.glob("*.png")):
        if p.name not in written:
            p.unlink()

    doc = {
        "skimage_version": skimage.__version__,
        "numpy_version": np.__version__,
        "scipy_version": scipy.__version__,
        "settings": {
            "call": "skimage.metrics.structural_similarity(a, b, channel_axis=2, data_range=255)",
            "legacy_equivalent": "skimage.measure.compare_ssim(a, b, multichannel=True) (MCS2018)",
            "input": "uint8 HxWx3 arrays, RGB, read from the PNGs with Pillow",
            "win_size": 7,
            "gaussian_weights": False,
            "use_sample_covariance": True,
            "K1": 0.01,
            "K2": 0.03,
            "data_range": 255,
            "filter": "scipy.ndimage.uniform_filter(size=7, mode='reflect'), float64",
            "crop": 3,
            "channel_reduction": "mean of the 3 per-channel SSIMs",
            "ssim_per_channel": "structural_similarity(a[...,c], b[...,c], channel_axis=None, data_range=255); their mean equals ssim exactly",
        },
        "check": {
            "independent": "exact integer 7x7 window sums, same formula in float64",
            "max_abs_diff_vs_skimage": max_diff,
        },
        "cases": records,
    }
    (out / "golden.json").write_text(json.dumps(doc, indent=1) + "\n")
    vals = [r["ssim"] for r in records]
    print(f"{len(records)} cases, {len(written)} PNGs, SSIM from {min(vals)!r} to {max(vals)!r}")
    print(f"max |skimage - exact-integer implementation| = {max_diff:.3e}")


if __name__ == "__main__":
    main()
