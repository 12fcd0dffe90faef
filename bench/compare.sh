#!/usr/bin/env bash
# Side-by-side throughput: `spyglass embed` (f32 and int8) against the PyTorch
# sentence-transformers peer and the ONNX Runtime peer (f32 fused graph, dynamic int8) from
# ../shared/bench/, on the same articles, alternating runs.
#
# usage: bench/compare.sh [ARTICLES.jsonl ...]
#   default corpora: eval/data/test.jsonl, and the 64 longest corpus articles (bench/long.jsonl,
#   written from eval/data/*.jsonl on first use)
#   ROUNDS=3 THREADS=2 PROFILE=dev ENGINES="spyglass-f32 spyglass-int8 pytorch ort-f32 ort-int8" \
#   ACCURACY=1 bench/compare.sh
#   (spyglass-bf16 joins the default engines where the CPU has AVX-512 BF16)
#   SPYGLASS_CPU_ISA=avx2 (etc.) measures a lower kernel level.
#
# Every engine embeds `passage: ` + title + "\n" + text truncated to 512 tokens (spyglass with
# --max-windows 1, so tokens are counted the same way), on the CPU with THREADS threads; no
# timing includes model loading. The dev profile is optimised (see Cargo.toml), so the binary
# `cargo run` builds is the one measured. Prints the machine, then per run articles/s, tokens/s
# and peak RSS, then the medians and every spyglass/peer ratio. With ACCURACY=1 an extra,
# untimed pass reports each int8 engine's lowest cosine to its own f32 embeddings.
#
# The peers' Python packages go into .venv-peer and the ONNX export into bench/.onnx (both
# ignored by git), once.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
THREADS=${THREADS:-2}
PROFILE=${PROFILE:-dev}
# bf16 runs where the CPU has AVX-512 BF16.
DEFAULT_ENGINES="spyglass-f32 spyglass-int8 pytorch ort-f32 ort-int8"
grep -q -w avx512_bf16 /proc/cpuinfo && DEFAULT_ENGINES="spyglass-f32 spyglass-int8 spyglass-bf16 pytorch ort-f32 ort-int8"
ENGINES=${ENGINES:-$DEFAULT_ENGINES}
ACCURACY=${ACCURACY:-1}
MODEL=../shared/models/multilingual-e5-small
ST_PEER=../shared/bench/peer_sentence_transformers.py
ORT_PEER=../shared/bench/peer_onnxruntime.py
ORT_EXPORT=../shared/bench/peer_onnxruntime_export.py
VENV=.venv-peer
ONNX=bench/.onnx
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

if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import sentence_transformers, onnxruntime, onnx' 2>/dev/null; then
    echo "installing the peers' Python dependencies into $VENV (once)" >&2
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q sentence-transformers onnx onnxruntime onnxscript
fi
if [[ " $ENGINES " == *" ort-"* ]] && [ ! -f "$ONNX/model_int8.onnx" ]; then
    echo "exporting the ONNX Runtime peer's graphs into $ONNX (once)" >&2
    "$VENV/bin/python" "$ORT_EXPORT" "$MODEL" "$ONNX" >&2
fi
cargo build --profile "$PROFILE" --quiet
BIN=target/$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")/spyglass

echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) CPUs online, $THREADS threads"
echo "flags:   $(grep -o -w -E 'avx2|fma|avx_vnni|avx512f|avx512bw|avx512vl|avx512dq|avx512_vnni|avx512_bf16|amx_tile|amx_int8|amx_bf16' /proc/cpuinfo | sort -u | tr '\n' ' ')"
"$BIN" info | sed -n 's/^\(isa active\|f32 \|int8 \)/spyglass \1/p'
echo "onnxruntime $("$VENV/bin/python" -c 'import onnxruntime; print(onnxruntime.__version__)'), torch $("$VENV/bin/python" -c 'import torch; print(torch.__version__)')"

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
log=$(mktemp -d)
trap 'rm -rf "$log"' EXIT

# One timed run of ENGINE on FILE: prints "articles/s tokens/s rss_kb". DUMP=FILE also writes
# the embeddings (for the accuracy pass).
run_engine() {
    local engine=$1 file=$2 out
    case $engine in
        spyglass-*)
            # The summary line on stderr carries articles/s and tokens/s; time -f gives peak RSS.
            out=$( { /usr/bin/time -f 'rss_kb=%M' "$BIN" --threads "$THREADS" embed --input "$file" \
                       --output "${DUMP:--}" --encoder "$MODEL" --max-windows 1 --no-window-embeddings \
                       --precision "${engine#spyglass-}" >/dev/null; } 2>&1 )
            echo "$(sed -n 's/.*: \([0-9.]*\) articles\/s.*/\1/p' <<<"$out") $(sed -n 's/.* \([0-9.]*\) tokens\/s.*/\1/p' <<<"$out") $(sed -n 's/rss_kb=//p' <<<"$out")"
            return
            ;;
        pytorch) out=$( { THREADS=$THREADS DUMP=${DUMP:-} /usr/bin/time -f 'rss_kb=%M' "$VENV/bin/python" "$ST_PEER" "$MODEL" "$file"; } 2>&1 ) ;;
        ort-*) out=$( { THREADS=$THREADS DUMP=${DUMP:-} /usr/bin/time -f 'rss_kb=%M' "$VENV/bin/python" "$ORT_PEER" "$ONNX/model_${engine#ort-}.onnx" "$MODEL" "$file"; } 2>&1 ) ;;
        *) echo "unknown engine $engine" >&2; exit 2 ;;
    esac
    python3 -c 'import json,sys; j=json.loads(sys.argv[1]); print(j["articles_per_s"], j["tokens_per_s"], sys.argv[2])' \
        "$(grep '^{' <<<"$out")" "$(sed -n 's/rss_kb=//p' <<<"$out")"
}

for file in "${FILES[@]}"; do
    echo "== $file ($(wc -l < "$file") articles), $THREADS threads, $ROUNDS rounds, profile $PROFILE"
    for round in $(seq "$ROUNDS"); do
        for engine in $ENGINES; do
            read -r aps tps rss < <(run_engine "$engine" "$file")
            printf '%-14s round %s: %8s articles/s, %8s tokens/s, peak RSS %s MiB\n' \
                "$engine" "$round" "$aps" "$tps" "$((rss / 1024))"
            echo "$aps $tps" >> "$log/$engine"
        done
    done
    declare -A tokens=()
    for engine in $ENGINES; do
        tokens[$engine]=$(cut -d' ' -f2 "$log/$engine" | median)
        printf 'median %-14s %8s articles/s, %8s tokens/s\n' "$engine" \
            "$(cut -d' ' -f1 "$log/$engine" | median)" "${tokens[$engine]}"
    done
    for ours in $ENGINES; do
        [[ $ours == spyglass-* ]] || continue
        ratios=""
        for peer in $ENGINES; do
            [[ $peer == spyglass-* ]] && continue
            ratios+=" $peer $(python3 -c "print(f'{${tokens[$ours]}/${tokens[$peer]}:.2f}x')")"
        done
        [ -n "$ratios" ] && echo "ratio $ours:$ratios"
    done
    if [ "$ACCURACY" = 1 ]; then
        for pair in "spyglass-int8 spyglass-f32" "spyglass-bf16 spyglass-f32" "ort-int8 ort-f32"; do
            read -r q f <<<"$pair"
            [[ " $ENGINES " == *" $q "* && " $ENGINES " == *" $f "* ]] || continue
            DUMP=$log/$q.jsonl run_engine "$q" "$file" >/dev/null
            DUMP=$log/$f.jsonl run_engine "$f" "$file" >/dev/null
            python3 - "$log/$q.jsonl" "$log/$f.jsonl" "$q" "$f" <<'EOF'
import json, math, sys
def load(p):
    return {r["id"]: r["embedding"] for r in map(json.loads, open(p, encoding="utf-8")) if "embedding" in r}
a, b = load(sys.argv[1]), load(sys.argv[2])
cos = sorted(sum(x * y for x, y in zip(a[i], b[i])) / math.sqrt(sum(x * x for x in a[i]) * sum(y * y for y in b[i])) for i in a if i in b)
print(f"accuracy {sys.argv[3]} to {sys.argv[4]}: lowest cosine {cos[0]:.5f}, median {cos[len(cos) // 2]:.6f} over {len(cos)} articles")
EOF
        done
    fi
    rm -f "$log"/*
done
