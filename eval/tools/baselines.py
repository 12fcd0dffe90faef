#!/usr/bin/env python3
"""Python baselines scored through `spyglass eval --predictions`, for the head comparison in README.

usage: python3 eval/tools/baselines.py --embeddings DIR --out DIR
  DIR/{train,dev,test}.emb.jsonl: `spyglass embed --input eval/data/<split>.jsonl` output.
Writes DIR/pred-<name>.jsonl (id, calibrated-free probabilities, labels) for:
  sklearn-lr-c1, sklearn-lr-c16: LogisticRegression(class_weight="balanced") per topic on the
    first window's embedding (512-token truncation, no window features), thresholds F1-best on dev;
  mlp: MLPClassifier(256 hidden, alpha 1e-2, early stopping) on the standardised mean embedding,
    thresholds F1-best on dev.
Then: spyglass eval --data eval/data/test.jsonl --predictions DIR/pred-<name>.jsonl --json ...
Needs `pip install numpy scikit-learn`.
"""
import argparse, json
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler

TOPICS = ["espionage", "data_theft", "national_security_review", "tech_decoupling", "cyberattack"]


def load(split, emb_dir):
    records = [json.loads(l) for l in open(f"eval/data/{split}.jsonl", encoding="utf-8") if l.strip()]
    emb = {}
    for line in open(f"{emb_dir}/{split}.emb.jsonl", encoding="utf-8"):
        r = json.loads(line)
        emb[r["id"]] = r
    first = np.array([emb[r["id"]]["windows"][0]["embedding"] for r in records])
    mean = np.array([emb[r["id"]]["embedding"] for r in records])
    y = np.array([[t in r["labels"] for t in TOPICS] for r in records]).astype(int)
    return [r["id"] for r in records], first, mean, y


def best_threshold(p, y):
    best = (-1.0, 0.5)
    for t in np.unique(p):
        f = f1_score(y, p >= t, zero_division=0)
        if f > best[0]:
            best = (f, t)
    return best[1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--embeddings", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    train, dev, test = (load(s, a.embeddings) for s in ("train", "dev", "test"))

    def write(name, p_dev, p_test):
        thresholds = [best_threshold(p_dev[:, k], dev[3][:, k]) for k in range(len(TOPICS))]
        with open(f"{a.out}/pred-{name}.jsonl", "w", encoding="utf-8") as f:
            for i, id_ in enumerate(test[0]):
                f.write(json.dumps({
                    "id": id_,
                    "scores": {t: float(p_test[i, k]) for k, t in enumerate(TOPICS)},
                    "labels": [t for k, t in enumerate(TOPICS) if p_test[i, k] >= thresholds[k]],
                }) + "\n")

    for c in (1, 16):
        models = [LogisticRegression(C=c, class_weight="balanced", max_iter=5000).fit(train[1], train[3][:, k])
                  for k in range(len(TOPICS))]
        proba = lambda x: np.column_stack([m.predict_proba(x)[:, 1] for m in models])
        write(f"sklearn-lr-c{c}", proba(dev[1]), proba(test[1]))
    scaler = StandardScaler().fit(train[2])
    mlp = MLPClassifier(hidden_layer_sizes=(256,), alpha=1e-2, max_iter=500, early_stopping=True,
                        random_state=0).fit(scaler.transform(train[2]), train[3])
    write("mlp", mlp.predict_proba(scaler.transform(dev[2])), mlp.predict_proba(scaler.transform(test[2])))


if __name__ == "__main__":
    main()
