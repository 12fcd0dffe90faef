"""The Spark recipe (examples/spark_label.py) on local[2]: labels equal `spyglass label`'s."""

import re
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import ENCODER, MODEL, cli_label, sample_articles

pyspark = pytest.importorskip("pyspark", reason="the Spark test needs pyspark (`pip install 'spyglass[spark]'`)")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
import spark_label  # noqa: E402


def test_spark_map_in_arrow_labels_equal_the_cli(tmp_path, monkeypatch):
    monkeypatch.setenv("PYSPARK_PYTHON", sys.executable)
    monkeypatch.setenv("PYSPARK_DRIVER_PYTHON", sys.executable)
    articles = sample_articles(40) + [{"id": "no-text", "title": None, "text": "", "lang": None}]
    pq.write_table(pa.Table.from_pylist(articles), tmp_path / "articles.parquet")
    cli_label(tmp_path / "articles.parquet", tmp_path / "cli.parquet")
    expected = {r["id"]: r for r in pq.read_table(tmp_path / "cli.parquet").to_pylist()}

    spark_label.main([
        str(tmp_path / "articles.parquet"), str(tmp_path / "spark-out"),
        "--model", str(MODEL), "--encoder", str(ENCODER),
        "--master", "local[2]", "--partitions", "2",
    ])
    got = pq.read_table(tmp_path / "spark-out").to_pylist()
    assert len(got) == len(articles)
    by_id = {r["id"]: r for r in got}
    assert set(by_id) == set(expected)
    for id_, row in by_id.items():
        want = expected[id_]
        if want["error"] is not None:
            # The same reason; only where it was found differs (a Spark batch, not the file's row).
            reason = lambda error: re.sub(r"^.*?\brow \d+: ", "", error)  # noqa: E731
            assert reason(row["error"]) == reason(want["error"]), (row["error"], want["error"])
            continue
        assert row == want, id_


def test_spark_rdd_pipe_through_the_cli_keeps_order_and_records(tmp_path, monkeypatch):
    """Users without the Python package pipe JSONL partitions through `spyglass label`."""
    import json
    import shlex

    from pyspark.sql import SparkSession

    from conftest import cli_binary, read_jsonl

    monkeypatch.setenv("PYSPARK_PYTHON", sys.executable)
    articles = sample_articles(30)
    jsonl = tmp_path / "articles.jsonl"
    jsonl.write_text("".join(json.dumps(a, ensure_ascii=False) + "\n" for a in articles), encoding="utf-8")
    cli_label(jsonl, tmp_path / "cli.jsonl")
    expected = read_jsonl(tmp_path / "cli.jsonl")

    spark = SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false").getOrCreate()
    try:
        command = [
            str(cli_binary()), "label", "--threads", "1", "--no-cache",
            "--model", str(MODEL), "--encoder", str(ENCODER), "--input", "-", "--output", "-",
        ]
        lines = spark.sparkContext.textFile(str(jsonl), minPartitions=3).pipe(shlex.join(command), checkCode=True).collect()
    finally:
        spark.stop()
    assert [json.loads(line) for line in lines] == expected, "partitions joined in order equal one process"
