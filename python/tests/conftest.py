"""Shared set-up: the repository's shipped model, the test encoder in ../shared, the CLI binary,
and articles from the test split plus records that must come back as error rows."""

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "models" / "default"
ENCODER = (ROOT / ".." / "shared" / "models" / "multilingual-e5-small").resolve()


def cli_binary():
    """`target/debug/spyglass` (built if missing), or `SPYGLASS_BIN`."""
    explicit = os.environ.get("SPYGLASS_BIN")
    if explicit:
        return Path(explicit)
    binary = ROOT / "target" / "debug" / "spyglass"
    if not binary.exists():
        subprocess.run(["cargo", "build", "--quiet", "--bin", "spyglass"], cwd=ROOT, check=True)
    return binary


def run_cli(*args):
    """Runs `spyglass` with the shipped model and the test encoder; stderr is returned for messages."""
    command = [str(cli_binary()), *args]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, f"{command} exited {done.returncode}: {done.stderr}"
    return done.stderr


def cli_label(input_path, output_path):
    """`spyglass label` of a JSONL or Parquet file, as the Python side loads the model."""
    run_cli(
        "label",
        "--model", str(MODEL),
        "--encoder", str(ENCODER),
        "--input", str(input_path),
        "--output", str(output_path),
        "--no-cache",
    )


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def sample_articles(count):
    """The first `count` articles of the test split, every language, as input records."""
    records = read_jsonl(ROOT / "eval" / "data" / "test.jsonl")[:count]
    return [{k: r[k] for k in ("id", "title", "text", "lang")} for r in records]


@pytest.fixture(scope="session")
def model():
    import spyglass

    return spyglass.Model.load(MODEL, encoder=ENCODER, threads=2)


@pytest.fixture(scope="session")
def articles():
    return sample_articles(24)


@pytest.fixture(scope="session")
def cli_records(articles, tmp_path_factory):
    """What the CLI writes for `articles`, by id."""
    folder = tmp_path_factory.mktemp("cli")
    with open(folder / "in.jsonl", "w", encoding="utf-8") as f:
        for record in articles:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    cli_label(folder / "in.jsonl", folder / "out.jsonl")
    return {r["id"]: r for r in read_jsonl(folder / "out.jsonl")}
