#!/usr/bin/env python3
"""Independent implementation of the LFW-MCS lists (PROTOCOL.md), to check `advface prepare`.

    python tools/protocol_lists.py --lfw ../shared/data/lfw --out /tmp/ref [--n N]
    cmp /tmp/ref/pairs_list.csv OUT/pairs_list.csv
    cmp /tmp/ref/distill_list.txt OUT/distill_list.txt

Standard library only.
"""
import argparse
import hashlib
import os


def identities(lfw):
    """(images folder, {name: sorted .jpg files}, names in byte order, attack identities)."""
    root = os.path.join(lfw, "images_deepfunneled")
    ids = {}
    for name in os.listdir(root):
        d = os.path.join(root, name)
        if os.path.isdir(d):
            files = sorted(f for f in os.listdir(d) if f.endswith(".jpg"))
            if files:
                ids[name] = files
    names = sorted(ids, key=lambda s: s.encode("utf-8"))
    attack = [n for n in names
              if len(ids[n]) >= 5 and hashlib.sha256(n.encode("utf-8")).digest()[0] < 0x80]
    return root, ids, names, attack


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lfw", default="../shared/data/lfw")
    ap.add_argument("--out", required=True)
    ap.add_argument("--n", type=int, default=None)
    args = ap.parse_args()
    _, ids, names, attack = identities(args.lfw)
    attack_set = set(attack)
    pool = [f"{n}/{f[:-4]}.png" for n in names if n not in attack_set for f in ids[n]]
    n = len(attack)

    def side(i):
        name = attack[i]
        return "|".join(f"{name}/{f[:-4]}.png" for f in ids[name][:5])

    pairs = [(side(i), side((i + n // 2) % n)) for i in range(n)]
    if args.n is not None:
        pairs = pairs[: args.n]
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "pairs_list.csv"), "w", newline="\n") as f:
        f.write("source_imgs,target_imgs\n")
        for s, t in pairs:
            f.write(f"{s},{t}\n")
    with open(os.path.join(args.out, "distill_list.txt"), "w", newline="\n") as f:
        for p in pool:
            f.write(p + "\n")
    print(f"attack identities {n}, attack images {sum(len(ids[a]) for a in attack)}, "
          f"pool {len(pool)}, pairs {len(pairs)}")


if __name__ == "__main__":
    main()
