"""1 versus 2 workers for the Python package, Spark (local) and Ray (local) on one machine.

    .venv-py/bin/python bench/scale_out.py [--rounds 2]

Labels the test split (eval/data/test.jsonl, as Parquet) with models/default and the ../shared
encoder, f32, no cache. Each figure is the wall time of a whole run, model loading and (for
Spark and Ray) start-up included; rounds alternate the configurations and the table gives every
run. The records of every run are checked equal to the first one's.
"""

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
MODEL = str(ROOT / "models" / "default")
ENCODER = str((ROOT / ".." / "shared" / "models" / "multilingual-e5-small").resolve())
EXAMPLES = ROOT / "python" / "examples"


def _load(threads):
    global _MODEL
    import spyglass

    _MODEL = spyglass.Model.load(MODEL, encoder=ENCODER, threads=threads)


def _label(path_and_rows):
    path, start, stop = path_and_rows
    return _MODEL.label(pq.read_table(path).slice(start, stop - start))


def python_workers(articles, out, workers):
    """`workers` processes, each with cores/workers threads, on consecutive slices."""
    rows = pq.read_metadata(articles).num_rows
    bounds = [rows * i // workers for i in range(workers + 1)]
    threads = max(1, (os.cpu_count() or 1) // workers)
    with multiprocessing.get_context("spawn").Pool(workers, initializer=_load, initargs=(threads,)) as pool:
        parts = pool.map(_label, [(articles, bounds[i], bounds[i + 1]) for i in range(workers)])
    pq.write_table(pa.concat_tables(parts), out)


def run(kind, workers, articles, out):
    cores = os.cpu_count() or 1
    started = time.perf_counter()
    if kind == "python":
        command = [sys.executable, __file__, "--python-workers", str(workers), articles, out]
    elif kind == "spark":
        command = [
            sys.executable, str(EXAMPLES / "spark_label.py"), articles, out, "--model", MODEL, "--encoder", ENCODER,
            "--master", f"local[{workers}]", "--partitions", str(workers),
            "--threads-per-worker", str(max(1, cores // workers)),
        ]
    else:
        command = [
            sys.executable, str(EXAMPLES / "ray_label.py"), articles, out, "--model", MODEL, "--encoder", ENCODER,
            "--actors", str(workers), "--threads-per-actor", str(max(1, cores // workers)), "--blocks", str(4 * workers),
        ]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYSPARK_PYTHON": sys.executable})
    if done.returncode != 0:
        sys.exit(f"{kind} with {workers} workers failed:\n{done.stderr[-3000:]}")
    seconds = time.perf_counter() - started
    rows = sorted(pq.read_table(out).to_pylist(), key=lambda r: r["id"])
    return seconds, rows, done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ""


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--python-workers", type=int, default=None)
    parser.add_argument("paths", nargs="*")
    args = parser.parse_args()
    if args.python_workers:
        python_workers(*args.paths, args.python_workers)
        return
    folder = Path(tempfile.mkdtemp())
    articles = str(folder / "test.parquet")
    with open(ROOT / "eval" / "data" / "test.jsonl", encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
    pq.write_table(pa.Table.from_pylist([{k: r[k] for k in ("id", "title", "text", "lang")} for r in records]), articles)
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    print(f"{len(records)} articles, {os.cpu_count()} CPUs ({cpu}); wall seconds per run, start-up and loading included")
    reference = None
    times = {}
    for round_ in range(args.rounds):
        for kind in ("python", "spark", "ray"):
            for workers in (1, 2) if round_ % 2 == 0 else (2, 1):
                out = str(folder / f"{kind}-{workers}-round{round_}.parquet")
                seconds, rows, line = run(kind, workers, articles, out)
                reference = reference or rows
                assert rows == reference, f"{kind} with {workers} workers gave other records"
                times.setdefault((kind, workers), []).append(seconds)
                print(f"  {kind} {workers} worker(s): {seconds:.1f} s  {line}", flush=True)
    print("| front end | 1 worker x 2 threads | 2 workers x 1 thread |")
    print("|---|---|---|")
    for kind in ("python", "spark", "ray"):
        cells = [", ".join(f"{s:.1f}" for s in times[(kind, w)]) + " s" for w in (1, 2)]
        print(f"| {kind} | {cells[0]} | {cells[1]} |")
    print("records identical across every run: yes")


if __name__ == "__main__":
    main()
