#!/usr/bin/env bash
# Side-by-side throughput: `spyglass embed` against the PyTorch sentence-transformers peer
# (../shared/bench/peer_sentence_transformers.py) on the same articles, alternating runs.
#
# usage: bench/compare.sh [ARTICLES.jsonl ...]     (default: eval/data/test.jsonl)
#   ROUNDS=3 THREADS=2 PROFILE=release bench/compare.sh
#
# Both sides embed `passage: ` + title + "\n" + text truncated to 512 tokens (spyglass with
# --max-windows 1, so tokens are counted the same way), f32 on the CPU, with THREADS threads;
# neither timing includes model loading. Prints articles/s, tokens/s and peak RSS per run, then
# the medians and the spyglass/peer ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
THREADS=${THREADS:-2}
PROFILE=${PROFILE:-release}
MODEL=../shared/models/multilingual-e5-small
PEER=../shared/bench/peer_sentence_transformers.py
VENV=.venv-peer
FILES=("$@")
[ ${#FILES[@]} -gt 0 ] || FILES=(eval/data/test.jsonl)

if [ ! -x "$VENV/bin/python" ]; then
    echo "installing the peer's Python dependencies into $VENV (once)" >&2
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q sentence-transformers
fi
cargo build --profile "$PROFILE" --quiet
BIN=target/$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")/spyglass

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

for file in "${FILES[@]}"; do
    echo "== $file ($(wc -l < "$file") articles), $THREADS threads, $ROUNDS rounds"
    : > /tmp/spyglass-bench.s; : > /tmp/spyglass-bench.p
    for round in $(seq "$ROUNDS"); do
        # spyglass: its summary line carries articles/s and tokens/s; time -f gives peak RSS.
        out=$( { /usr/bin/time -f 'rss_kb=%M' "$BIN" --threads "$THREADS" embed --input "$file" \
                   --output /dev/null --encoder "$MODEL" --max-windows 1 --no-window-embeddings; } 2>&1 )
        aps=$(sed -n 's/.*: \([0-9.]*\) articles\/s.*/\1/p' <<<"$out")
        tps=$(sed -n 's/.* \([0-9.]*\) tokens\/s.*/\1/p' <<<"$out")
        rss=$(sed -n 's/rss_kb=//p' <<<"$out")
        echo "spyglass round $round: $aps articles/s, $tps tokens/s, peak RSS $((rss / 1024)) MiB"
        echo "$aps $tps" >> /tmp/spyglass-bench.s
        out=$( { THREADS=$THREADS /usr/bin/time -f 'rss_kb=%M' "$VENV/bin/python" "$PEER" "$MODEL" "$file"; } 2>&1 )
        json=$(grep '^{' <<<"$out")
        aps=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["articles_per_s"])' "$json")
        tps=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["tokens_per_s"])' "$json")
        rss=$(sed -n 's/rss_kb=//p' <<<"$out")
        echo "peer     round $round: $aps articles/s, $tps tokens/s, peak RSS $((rss / 1024)) MiB"
        echo "$aps $tps" >> /tmp/spyglass-bench.p
    done
    s=$(cut -d' ' -f2 /tmp/spyglass-bench.s | median); p=$(cut -d' ' -f2 /tmp/spyglass-bench.p | median)
    sa=$(cut -d' ' -f1 /tmp/spyglass-bench.s | median); pa=$(cut -d' ' -f1 /tmp/spyglass-bench.p | median)
    echo "median: spyglass $sa articles/s, $s tokens/s; peer $pa articles/s, $p tokens/s; ratio spyglass/peer $(python3 -c "print(round($s/$p, 2))")"
done
