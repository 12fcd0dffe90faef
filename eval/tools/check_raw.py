#!/usr/bin/env python3
"""Validate and count hand-written article files (eval/raw/*.jsonl or eval/data/*.jsonl).

usage: python3 eval/tools/check_raw.py FILE...
Counts only: it never writes or changes an article. Needs `pip install tokenizers`.
"""
import json, re, sys, unicodedata
from collections import Counter

TOPICS = {"espionage", "data_theft", "national_security_review", "tech_decoupling", "cyberattack"}
TAGS = {"noise", "hard_negative", "subtle"}
TOKENIZER = "../shared/models/multilingual-e5-small/tokenizer.json"
CJK = {"ja", "zh"}

def words(text, lang):
    if lang in CJK:
        # CJK has no spaces: count 2 characters (letters only) as one word.
        return sum(1 for c in text if unicodedata.category(c).startswith("L")) // 2
    return len(text.split())

def main(paths):
    try:
        from tokenizers import Tokenizer
        tok = Tokenizer.from_file(TOKENIZER)
    except Exception as e:  # noqa: BLE001
        sys.exit(f"cannot load tokenizer at {TOKENIZER} ({e}); run from the repository root after `pip install tokenizers`")
    ids, texts, bad = set(), {}, 0
    c = Counter(); topics = Counter(); langs = Counter(); topic_langs = {t: set() for t in TOPICS}
    for path in paths:
        for n, line in enumerate(open(path, encoding="utf-8"), 1):
            if not line.strip():
                continue
            where = f"{path}:{n}"
            try:
                r = json.loads(line)
            except json.JSONDecodeError as e:
                print(f"{where}: invalid JSON: {e}"); bad += 1; continue
            problems = []
            for f in ("id", "lang", "title", "text", "labels", "source"):
                if f not in r:
                    problems.append(f"missing field `{f}`")
            extra = set(r) - {"id", "lang", "title", "text", "labels", "source", "note", "tags"}
            if extra:
                problems.append(f"unknown fields {sorted(extra)}")
            if r.get("source") != "written":
                problems.append("source must be `written`")
            labs = r.get("labels", [])
            if not isinstance(labs, list) or any(l not in TOPICS for l in labs) or len(set(labs)) != len(labs):
                problems.append(f"bad labels {labs}")
            tags = r.get("tags", [])
            if any(t not in TAGS for t in tags):
                problems.append(f"bad tags {tags}")
            if "hard_negative" in tags and labs:
                problems.append("hard_negative must have empty labels")
            if r.get("id") in ids:
                problems.append(f"duplicate id {r.get('id')}")
            text = r.get("text", "")
            key = re.sub(r"\W+", " ", text.lower()).strip()[:300]
            if key in texts:
                problems.append(f"same opening text as {texts[key]}")
            w = words(text, r.get("lang"))
            if w < 60 or w > 1500:
                problems.append(f"length {w} words outside 60..1500")
            if problems:
                print(f"{where} ({r.get('id')}): " + "; ".join(problems)); bad += 1
            ids.add(r.get("id")); texts[key] = r.get("id")
            ntok = len(tok.encode(("passage: " + (r.get("title", "") + "\n" + text)).strip()).ids)
            c["articles"] += 1
            langs[r.get("lang")] += 1
            c["none"] += not labs
            c["multi"] += len(labs) >= 2
            c["long(>512 tok)"] += ntok > 512
            for t in tags:
                c[t] += 1
            for l in labs:
                topics[l] += 1; topic_langs[l].add(r.get("lang"))
            c["words"] += w
    n = max(c["articles"], 1)
    print(f"articles {c['articles']}  invalid {bad}")
    print(f"none {c['none']} ({100*c['none']/n:.0f}%)  hard_negative {c['hard_negative']}  multi-topic {c['multi']}  "
          f"long {c['long(>512 tok)']}  noise {c['noise']}  subtle {c['subtle']}  mean words {c['words']/n:.0f}")
    print("languages:", dict(sorted(langs.items())))
    for t in sorted(TOPICS):
        print(f"  {t:26} {topics[t]:4}  langs {len(topic_langs[t])}")
    return 1 if bad else 0

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
