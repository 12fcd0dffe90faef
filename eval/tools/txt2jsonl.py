#!/usr/bin/env python3
"""Convert hand-written article blocks (plain text) into JSONL records. Format conversion only.

usage: python3 eval/tools/txt2jsonl.py BATCH.txt >> eval/raw/NAME.jsonl

Block format (one or more per file):
    === id: en-0001
    lang: en
    title: Headline as written
    labels: espionage, cyberattack      (empty after the colon = none)
    tags: noise, hard_negative          (optional line)
    note: why the labels are what they are (optional line)
    ---
    Body text, any number of lines and paragraphs, exactly as written.
"""
import json, sys

def blocks(text):
    for chunk in text.split("\n=== ")[0:]:
        chunk = chunk.removeprefix("=== ").strip("\n")
        if chunk.strip():
            yield chunk

def parse(chunk):
    head, sep, body = chunk.partition("\n---\n")
    if not sep:
        raise ValueError("no `---` line between header and body")
    rec = {"id": None, "lang": None, "title": None, "text": body.strip(), "labels": [], "source": "written"}
    for line in head.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key in ("id", "lang", "title", "note"):
            rec[key] = value
        elif key in ("labels", "tags"):
            rec[key] = [v.strip() for v in value.split(",") if v.strip()]
        else:
            raise ValueError(f"unknown header line {line!r}")
    for f in ("id", "lang", "title"):
        if not rec[f]:
            raise ValueError(f"missing `{f}`")
    return rec

def main(path):
    text = open(path, encoding="utf-8").read()
    failed = 0
    for chunk in blocks(text):
        try:
            print(json.dumps(parse(chunk), ensure_ascii=False))
        except ValueError as e:
            failed += 1
            print(f"{path}: block starting {chunk[:40]!r}: {e}", file=sys.stderr)
    return 1 if failed else 0

if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
