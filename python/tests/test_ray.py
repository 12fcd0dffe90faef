"""The Ray recipe (examples/ray_label.py) on a local Ray instance: labels equal `spyglass label`'s."""

import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import ENCODER, MODEL, cli_label, sample_articles

ray = pytest.importorskip("ray", reason="the Ray test needs ray (`pip install 'spyglass[ray]'`)")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
import ray_label  # noqa: E402


def test_ray_actor_pool_labels_equal_the_cli(tmp_path):
    articles = sample_articles(40)
    pq.write_table(pa.Table.from_pylist(articles), tmp_path / "articles.parquet")
    cli_label(tmp_path / "articles.parquet", tmp_path / "cli.parquet")
    expected = {r["id"]: r for r in pq.read_table(tmp_path / "cli.parquet").to_pylist()}

    def run(*workers):
        ray_label.main([
            str(tmp_path / "articles.parquet"), str(tmp_path / "ray-out"),
            "--model", str(MODEL), "--encoder", str(ENCODER), *workers,
        ])
        got = pq.read_table(tmp_path / "ray-out").to_pylist()
        assert len(got) == len(articles)
        assert {r["id"]: r for r in got} == expected

    run("--actors", "2", "--blocks", "4")
    # A second run into the same folder, with one actor, replaces the first run's files
    # (Ray appends by default, which mixed two runs' rows).
    run("--actors", "1", "--threads-per-actor", "2")
