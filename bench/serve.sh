#!/usr/bin/env bash
# `spyglass serve` under load against `spyglass label` on the same articles, and one 500-token
# article's latency on an idle server. Not a test: figures go in the README.
#
# usage: bench/serve.sh      (ROUNDS=2 CLIENTS=16 REQUESTS=6 SINGLE=100)
#
# Each round, alternating:
#   - serve: CLIENTS concurrent clients each post REQUESTS `/classify` requests of 1-8 test-split
#     articles (examples/serve_load.rs checks every response carries its own request's ids);
#   - label: `spyglass label` on exactly those articles, in the order sent; its own "labelled ...
#     in X s" figure, which leaves out model loading as the server's warm figure does.
# Both run without the embedding cache. Then one client sends SINGLE requests of one
# 500-token article, one at a time, to an idle server: p50 and p99 latency.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-2}
CLIENTS=${CLIENTS:-16}
REQUESTS=${REQUESTS:-6}
SINGLE=${SINGLE:-100}
ENCODER=${SPYGLASS_TEST_ENCODER:-../shared/models/multilingual-e5-small}
cargo build --locked --quiet --bin spyglass --example serve_load
BIN=target/debug/spyglass
LOAD=target/debug/examples/serve_load
TMP=$(mktemp -d)
SERVER=
cleanup() { [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT

echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) CPUs; $(git rev-parse --short HEAD)"
$BIN serve --bind 127.0.0.1:0 --no-cache --encoder "$ENCODER" 2> "$TMP/serve.err" &
SERVER=$!
for _ in $(seq 600); do grep -q "http://127.0.0.1:" "$TMP/serve.err" 2>/dev/null && break; sleep 0.2; done
URL=$(grep -o "http://127.0.0.1:[0-9]*" "$TMP/serve.err" | head -1)
"$LOAD" "$URL" eval/data/test.jsonl 2 2 1 2 > /dev/null   # warm-up

for round in $(seq "$ROUNDS"); do
  "$LOAD" "$URL" eval/data/test.jsonl "$CLIENTS" "$REQUESTS" 1 8 "$TMP/sent.jsonl" > "$TMP/serve.json"
  label_line=$($BIN label --no-cache --encoder "$ENCODER" --input "$TMP/sent.jsonl" --output "$TMP/labels.jsonl" 2>&1 | grep '^labelled')
  articles=$(wc -l < "$TMP/sent.jsonl")
  label_s=$(echo "$label_line" | sed -E 's/.* in ([0-9.]+) s .*/\1/')
  echo "round $round serve: $(cat "$TMP/serve.json")"
  echo "round $round label: $articles articles in $label_s s = $(echo "$articles / $label_s" | bc -l | cut -c1-6) articles/s"
done

# One 500-token article (our own words), one request at a time.
python3 - "$TMP/one.jsonl" <<'PY'
import json, sys
sentences = ["Investigators said the intrusion began with a phishing message sent to an engineer at the contractor.",
             "The attackers then moved through the network for weeks and copied design files for a radar system.",
             "Officials declined to say which country they suspected, but the ministry has opened an inquiry.",
             "The company said it had reset every password and hired outside experts to review its defences."]
text = " ".join(sentences[i % 4] for i in range(23))
json.dump({"id": "one", "title": "Contractor breach exposed radar designs", "text": text}, open(sys.argv[1], "w"))
PY
"$LOAD" "$URL" "$TMP/one.jsonl" 1 "$SINGLE" 1 1 > "$TMP/single.json"
tokens=$($BIN embed --encoder "$ENCODER" --input "$TMP/one.jsonl" --output - 2>/dev/null | python3 -c 'import json,sys; print(sum(w["tokens"] for w in json.loads(sys.stdin.readline())["windows"]))')
echo "single ($tokens tokens, idle server, one request at a time): $(cat "$TMP/single.json")"
