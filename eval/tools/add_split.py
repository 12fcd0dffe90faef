#!/usr/bin/env python3
"""Deal newly written articles into the existing train/dev/test splits, keeping articles that
tell the same story together, so no story is trained on and then scored on.

usage: python3 eval/tools/add_split.py NEW.jsonl --embeddings EMB.jsonl... --data eval/data [--threshold 0.92]

- EMB.jsonl: `spyglass embed` output for the new articles and for every existing split
  (article embeddings, multilingual-e5-small), so stories match across languages too.
- Same story: cosine >= --threshold between article embeddings (0.92: the known same-event pairs
  the label audit found scored 0.85-0.97; 0.92 is above the 99th percentile of all same-language
  pairs, 0.907).
- A new article whose nearest existing article is the same story goes to that article's split.
  New articles that are the same story as each other form a group (transitively); a group with
  an anchored member follows the anchors' majority split.
- The other groups are dealt as split.py deals articles: within each (language, label set)
  stratum, in id order, the pattern train, train, dev, train, test, its start rotating from
  stratum to stratum. Existing files are only appended to; every file is rewritten in id order.
Articles are not changed. Needs `pip install numpy`.
"""
import argparse, json
from collections import Counter, defaultdict

import numpy as np

PATTERN = ["train", "train", "dev", "train", "test"]
SPLITS = ("train", "dev", "test")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("new")
    ap.add_argument("--embeddings", nargs="+", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--threshold", type=float, default=0.92)
    a = ap.parse_args()

    emb = {}
    for path in a.embeddings:
        for line in open(path, encoding="utf-8"):
            if line.strip():
                r = json.loads(line)
                v = np.asarray(r["embedding"], dtype=np.float64)
                emb[r["id"]] = v / (np.linalg.norm(v) or 1.0)
    existing = {}
    for split in SPLITS:
        for line in open(f"{a.data}/{split}.jsonl", encoding="utf-8"):
            if line.strip():
                existing[json.loads(line)["id"]] = split
    new = [json.loads(l) for l in open(a.new, encoding="utf-8") if l.strip()]
    clash = [r["id"] for r in new if r["id"] in existing]
    if clash:
        raise SystemExit(f"ids already in {a.data}: {clash[:5]}")
    missing = [i for i in list(existing) + [r["id"] for r in new] if i not in emb]
    if missing:
        raise SystemExit(f"no embedding for {missing[:5]}; embed every split and the new file")

    # Anchors: the nearest existing article, when it is the same story.
    anchor = {}
    old_ids = list(existing)
    old = np.stack([emb[o] for o in old_ids])
    fresh = np.stack([emb[r["id"]] for r in new])
    to_old = fresh @ old.T
    for i, r in enumerate(new):
        j = int(to_old[i].argmax())
        if to_old[i, j] >= a.threshold:
            anchor[r["id"]] = existing[old_ids[j]]
    # Groups among the new articles (union-find over same-story pairs).
    parent = {r["id"]: r["id"] for r in new}

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    among = fresh @ fresh.T
    for i, j in zip(*np.nonzero(np.triu(among, 1) >= a.threshold)):
        parent[find(new[i]["id"])] = find(new[j]["id"])
    groups = defaultdict(list)
    for r in new:
        groups[find(r["id"])].append(r)

    assigned = {}
    strata = defaultdict(list)
    for members in groups.values():
        members.sort(key=lambda r: r["id"])
        votes = Counter(anchor[r["id"]] for r in members if r["id"] in anchor)
        if votes:
            split = votes.most_common(1)[0][0]
            for r in members:
                assigned[r["id"]] = split
        else:
            first = members[0]
            strata[(first["lang"], tuple(sorted(first["labels"])))].append(members)
    for k, key in enumerate(sorted(strata)):
        for i, members in enumerate(sorted(strata[key], key=lambda m: m[0]["id"])):
            for r in members:
                assigned[r["id"]] = PATTERN[(i + k) % len(PATTERN)]

    by_split = defaultdict(list)
    for r in new:
        by_split[assigned[r["id"]]].append(json.dumps(r, ensure_ascii=False) + "\n")
    for split in SPLITS:
        path = f"{a.data}/{split}.jsonl"
        lines = [l for l in open(path, encoding="utf-8") if l.strip()] + by_split[split]
        lines.sort(key=lambda l: json.loads(l)["id"])
        with open(path, "w", encoding="utf-8") as f:
            f.writelines(lines)
        print(f"{split}: +{len(by_split[split])} new ({len(lines)} in all)")
    sizes = Counter(len(m) for m in groups.values())
    print(f"anchored to an existing story: {len(anchor)}; new-story groups by size: {dict(sorted(sizes.items()))}")


if __name__ == "__main__":
    main()
