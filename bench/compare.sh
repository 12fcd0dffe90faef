#!/usr/bin/env bash
# Side-by-side throughput: `spyglass embed` (f32, and int8 reported apart) against the PyTorch
# sentence-transformers peer (../shared/bench/peer_sentence_transformers.py) on the same articles,
# alternating runs.
#
# usage: bench/compare.sh [ARTICLES.jsonl ...]
#   default corpora: eval/data/test.jsonl, and the 64 longest corpus articles (bench/long.jsonl,
#   written from eval/data/*.jsonl on first use)
#   ROUNDS=3 THREADS=2 PROFILE=dev PRECISIONS="f32 int8" bench/compare.sh
#
# Both sides embed `passage: ` + title + "\n" + text truncated to 512 tokens (spyglass with
# --max-windows 1, so tokens are counted the same way), on the CPU with THREADS threads; neither
# timing includes model loading. The dev profile is optimised (see Cargo.toml), so the binary
# `cargo run` builds is the one measured. Prints articles/s, tokens/s and peak RSS per run, then
# the medians and the spyglass/peer ratio per precision.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
THREADS=${THREADS:-2}
PROFILE=${PROFILE:-dev}
PRECISIONS=${PRECISIONS:-f32 int8}
MODEL=../shared/models/multilingual-e5-small
PEER=../shared/bench/peer_sentence_transformers.py
VENV=.venv-peer
LONG=bench/long.jsonl
FILES=("$@")
if [ ${#FILES[@]} -eq 0 ]; then
    if [ ! -f "$LONG" ]; then
        python3 - "$LONG" <<'EOF'
import glob, json, sys
rows = [json.loads(l) for f in sorted(glob.glob("eval/data/*.jsonl")) for l in open(f, encoding="utf-8") if l.strip()]
rows.sort(key=lambda r: len(r["text"]), reverse=True)
with open(sys.argv[1], "w", encoding="utf-8") as out:
    for r in rows[:64]:
        out.write(json.dumps({"id": r["id"], "title": r.get("title"), "text": r["text"]}, ensure_ascii=False) + "\n")
EOF
    fi
    FILES=(eval/data/test.jsonl "$LONG")
fi

if [ ! -x "$VENV/bin/python" ]; then
    echo "installing the peer's Python dependencies into $VENV (once)" >&2
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q sentence-transformers
fi
cargo build --profile "$PROFILE" --quiet
BIN=target/$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")/spyglass

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
log=$(mktemp -d)
trap 'rm -rf "$log"' EXIT

for file in "${FILES[@]}"; do
    echo "== $file ($(wc -l < "$file") articles), $THREADS threads, $ROUNDS rounds, profile $PROFILE"
    for round in $(seq "$ROUNDS"); do
        for precision in $PRECISIONS; do
            # spyglass: its summary line carries articles/s and tokens/s; time -f gives peak RSS.
            # Embeddings go to stdout and are thrown away there (`--output` takes files only).
            out=$( { /usr/bin/time -f 'rss_kb=%M' "$BIN" --threads "$THREADS" embed --input "$file" \
                       --output - --encoder "$MODEL" --max-windows 1 --no-window-embeddings \
                       --precision "$precision" >/dev/null; } 2>&1 )
            aps=$(sed -n 's/.*: \([0-9.]*\) articles\/s.*/\1/p' <<<"$out")
            tps=$(sed -n 's/.* \([0-9.]*\) tokens\/s.*/\1/p' <<<"$out")
            rss=$(sed -n 's/rss_kb=//p' <<<"$out")
            printf 'spyglass %-4s round %s: %s articles/s, %s tokens/s, peak RSS %s MiB\n' \
                "$precision" "$round" "$aps" "$tps" "$((rss / 1024))"
            echo "$aps $tps" >> "$log/$precision"
        done
        out=$( { THREADS=$THREADS /usr/bin/time -f 'rss_kb=%M' "$VENV/bin/python" "$PEER" "$MODEL" "$file"; } 2>&1 )
        json=$(grep '^{' <<<"$out")
        aps=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["articles_per_s"])' "$json")
        tps=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["tokens_per_s"])' "$json")
        rss=$(sed -n 's/rss_kb=//p' <<<"$out")
        printf 'peer          round %s: %s articles/s, %s tokens/s, peak RSS %s MiB\n' \
            "$round" "$aps" "$tps" "$((rss / 1024))"
        echo "$aps $tps" >> "$log/peer"
    done
    p=$(cut -d' ' -f2 "$log/peer" | median); pa=$(cut -d' ' -f1 "$log/peer" | median)
    echo "median peer: $pa articles/s, $p tokens/s"
    for precision in $PRECISIONS; do
        s=$(cut -d' ' -f2 "$log/$precision" | median); sa=$(cut -d' ' -f1 "$log/$precision" | median)
        echo "median spyglass $precision: $sa articles/s, $s tokens/s; ratio spyglass/peer $(python3 -c "print(round($s/$p, 2))")"
    done
    rm -f "$log"/*
done
