#!/usr/bin/env python3
"""Compare `advface score --json` with tools/score_reference.py --json.

    python tools/compare_scores.py RUST_JSON REFERENCE_JSON

Prints every quantity side by side with its difference. Exit 1 if the score or the clean
score differ by more than 1e-4, a per-pair score by more than 1e-4, SSIM min or mean by more
than 1e-6, the number of images below 0.95 differs, the pairs scored differ (count or
indices), or the Rust report lists failed pairs. Match rates are shown; a difference there
is reported as a note only (a distance within float error of 0.6 may fall either way; the
Rust threshold is f32 0.6 = 0.6000000238). Standard library only.
"""
import argparse
import json
import sys

SCORE_TOL = 1e-4
SSIM_TOL = 1e-6


def count(v):
    return len(v) if isinstance(v, list) else int(v)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("rust", help="JSON written by `advface score --json`")
    ap.add_argument("reference", help="JSON written by `tools/score_reference.py --json`")
    args = ap.parse_args()
    with open(args.rust) as f:
        r = json.load(f)
    with open(args.reference) as f:
        p = json.load(f)

    failures = []
    notes = []
    rows = []

    def num(name, a, b, tol):
        d = a - b
        bad = tol is not None and not abs(d) <= tol  # NaN fails
        rows.append((name, f"{a:.9f}", f"{b:.9f}", f"{d:+.3e}", "-" if tol is None else f"{tol:g}",
                     "FAIL" if bad else "ok"))
        if bad:
            failures.append(f"{name}: rust {a!r}, reference {b!r}, difference {d:+.3e} > {tol:g}")
        return d

    num("score", r["attacked"]["score"], p["score"], SCORE_TOL)
    num("clean score", r["clean"]["score"], p["clean_score"], SCORE_TOL)
    for name, a, b in (("match rate", r["attacked"]["match_rate"], p["match_rate"]),
                       ("clean match rate", r["clean"]["match_rate"], p["clean_match_rate"])):
        if num(name, a, b, None) != 0:
            notes.append(f"{name} differs: rust {a!r}, reference {b!r}")
    num("SSIM min", r["ssim_min"], p["ssim_min"], SSIM_TOL)
    num("SSIM mean", r["ssim_mean"], p["ssim_mean"], SSIM_TOL)
    rv, pv = count(r["violations"]), count(p["violations"])
    rows.append(("images below 0.95", str(rv), str(pv), str(rv - pv), "0", "FAIL" if rv != pv else "ok"))
    if rv != pv:
        failures.append(f"images below 0.95: rust {rv}, reference {pv}")
    rp, pp = r["attacked"]["pairs"], p["pairs"]
    rows.append(("pairs scored", str(rp), str(pp), str(rp - pp), "0", "FAIL" if rp != pp else "ok"))
    if rp != pp:
        failures.append(f"pairs scored: rust {rp}, reference {pp}")
    for i, e in r.get("failed", []):
        failures.append(f"rust could not score pair {i}: {e}")

    rust_pp = {int(i): (a, c) for i, a, c in r["per_pair"]}
    ref_pp = {int(i): (a, c) for i, a, c in p["per_pair"]}
    if set(rust_pp) != set(ref_pp):
        only_r = sorted(set(rust_pp) - set(ref_pp))[:10]
        only_p = sorted(set(ref_pp) - set(rust_pp))[:10]
        failures.append(f"per-pair indices differ: only rust {only_r}, only reference {only_p}")
    common = sorted(set(rust_pp) & set(ref_pp))
    worst = {0: (0.0, None), 1: (0.0, None)}  # attacked, clean: (max |diff|, pair)
    for i in common:
        for k in (0, 1):
            d = abs(rust_pp[i][k] - ref_pp[i][k])
            if not d <= worst[k][0]:
                worst[k] = (d, i)
    for k, name in ((0, "per-pair attacked, max |diff|"), (1, "per-pair clean, max |diff|")):
        d, i = worst[k]
        bad = not d <= SCORE_TOL
        rows.append((name, "", "", f"{d:.3e}" + ("" if i is None else f" (pair {i})"), f"{SCORE_TOL:g}",
                     "FAIL" if bad else "ok"))
        if bad:
            failures.append(f"{name}: {d:.3e} at pair {i}: rust {rust_pp[i][k]!r}, reference {ref_pp[i][k]!r}")

    if isinstance(r["violations"], list) and "violating_images" in p:
        ri = {v["image"] for v in r["violations"]}
        pi = {v["image"] for v in p["violating_images"]}
        if ri != pi:
            failures.append(f"images below 0.95 differ: only rust {sorted(ri - pi)[:5]}, "
                            f"only reference {sorted(pi - ri)[:5]}")

    w = [max(len(str(row[j])) for row in rows + [("quantity", "rust", "reference", "rust - ref", "tol", "")])
         for j in range(6)]
    head = ("quantity", "rust", "reference", "rust - ref", "tol", "")
    print("  ".join(str(h).ljust(w[j]) for j, h in enumerate(head)).rstrip())
    for row in rows:
        print("  ".join(str(x).ljust(w[j]) for j, x in enumerate(row)).rstrip())
    for n in notes:
        print(f"note: {n}")
    for f in failures:
        print(f"FAIL: {f}")
    print(f"{len(common)} pairs compared: " + ("AGREE" if not failures else f"{len(failures)} failure(s)"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
