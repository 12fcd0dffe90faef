#!/usr/bin/env python3
"""Split the written articles into train/dev/test (about 60/20/20), stratified by language and topic.

usage: python3 eval/tools/split.py RAW.jsonl... --out eval/data
Deterministic: within each (language, label set) stratum, articles in id order are dealt out in the
repeating pattern train, train, dev, train, test; the pattern's starting point rotates from
stratum to stratum so small strata do not all land in train. Articles are not changed.
"""
import argparse, json
from collections import defaultdict

PATTERN = ["train", "train", "dev", "train", "test"]

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("files", nargs="+")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    strata = defaultdict(list)
    for path in a.files:
        for line in open(path, encoding="utf-8"):
            if line.strip():
                r = json.loads(line)
                strata[(r["lang"], tuple(sorted(r["labels"])))].append((r["id"], line))
    out = {name: [] for name in ("train", "dev", "test")}
    for k, key in enumerate(sorted(strata)):
        for i, (_, line) in enumerate(sorted(strata[key])):
            out[PATTERN[(i + k) % len(PATTERN)]].append(line)
    for name, lines in out.items():
        lines.sort(key=lambda l: json.loads(l)["id"])
        with open(f"{a.out}/{name}.jsonl", "w", encoding="utf-8") as f:
            f.writelines(lines)
        print(name, len(lines))

if __name__ == "__main__":
    main()
