#!/usr/bin/env python3
"""The demo's committed data: the first K LFW-MCS pairs (PROTOCOL.md) as 112 x 112 PNG crops.

    python tools/make_demo_fixture.py [--lfw ../shared/data/lfw] [--k 2] [--out fixtures/demo]

Writes OUT/pairs_list.csv (the first K lines of the protocol's pairs file) and
OUT/crops/<Name>/<Name>_NNNN.png, cropped with Pillow exactly as the protocol says (rows and
columns 69..181 of the decoded 250 x 250 RGB image; Pillow's libjpeg-turbo decoding), so the
crops equal what `advface prepare` writes. Deterministic: rerunning gives the same files.
"""
import argparse
import os

from PIL import Image

from protocol_lists import identities


def protocol_pairs(lfw):
    """The images folder and the protocol's pairs as ([(name, file)] * 5, [(name, file)] * 5)."""
    root, ids, _, attack = identities(lfw)
    n = len(attack)

    def side(i):
        name = attack[i]
        return [(name, f) for f in ids[name][:5]]

    return root, [(side(i), side((i + n // 2) % n)) for i in range(n)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lfw", default="../shared/data/lfw")
    ap.add_argument("--k", type=int, default=2)
    ap.add_argument("--out", default="fixtures/demo")
    args = ap.parse_args()
    root, pairs = protocol_pairs(args.lfw)
    pairs = pairs[: args.k]
    os.makedirs(args.out, exist_ok=True)
    lines = ["source_imgs,target_imgs"]
    for src, tgt in pairs:
        cells = []
        for side in (src, tgt):
            rels = []
            for name, f in side:
                rel = f"{name}/{f[:-4]}.png"
                dst = os.path.join(args.out, "crops", rel)
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                im = Image.open(os.path.join(root, name, f)).convert("RGB")
                assert im.size == (250, 250), (name, f, im.size)
                im.crop((69, 69, 181, 181)).save(dst, optimize=False)
                rels.append(rel)
            cells.append("|".join(rels))
        lines.append(",".join(cells))
    with open(os.path.join(args.out, "pairs_list.csv"), "w", newline="\n") as fh:
        fh.write("\n".join(lines) + "\n")
    print(f"{len(pairs)} pairs, {10 * len(pairs)} crops in {args.out}")


if __name__ == "__main__":
    main()
