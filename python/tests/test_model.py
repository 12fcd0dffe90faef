"""The Python package against the command line: same labels, typed Arrow columns, error rows in
place, embeddings as NumPy, the GIL released while computing, and clear errors for bad calls."""

import json
import threading
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import spyglass
from conftest import ENCODER, MODEL, cli_label, read_jsonl, run_cli


def test_labels_from_dicts_equal_the_cli_records(model, articles, cli_records):
    records = model.label(articles)
    assert [r["id"] for r in records] == [a["id"] for a in articles], "input order is kept"
    assert {r["id"]: r for r in records} == cli_records
    assert any(r["labels"] for r in records), "the sample has labelled articles"
    assert all(set(r["scores"]) == set(model.topics) for r in records)


def test_arrow_tables_and_batches_come_back_typed_with_the_same_values(model, articles, cli_records):
    table = pa.Table.from_pylist(articles)
    labelled = model.label(table)
    assert isinstance(labelled, pa.Table)
    assert labelled.num_rows == len(articles)
    schema = labelled.schema
    assert schema.field("labels").type == pa.list_(pa.string())
    assert schema.field("scores").type == pa.struct([pa.field(t, pa.float32()) for t in model.topics])
    assert schema.field("truncated").type == pa.bool_()
    for row in labelled.to_pylist():
        expected = cli_records[row["id"]]
        assert row["error"] is None
        assert row["labels"] == expected["labels"]
        assert row["lang"] == expected["lang"] and row["model"] == expected["model"]
        assert json.loads(row["evidence"]) == expected["evidence"]
        # float32 in both: the JSON number is the shortest text of the same float32.
        for topic, score in row["scores"].items():
            assert np.float32(score) == np.float32(expected["scores"][topic]), topic

    batch = table.to_batches()[0]
    out = model.label(batch)
    assert isinstance(out, pa.RecordBatch)
    assert out.to_pylist() == labelled.slice(0, batch.num_rows).to_pylist()

    empty = model.label(table.slice(0, 0))
    assert empty.num_rows == 0 and empty.schema == schema


def test_bad_records_come_back_as_error_rows_in_place(model, articles):
    good = articles[0]
    records = [
        {"id": "empty", "text": "  "},
        42,
        {"id": "bytes", "text": b"raw bytes"},
        {"id": True, "text": "a bool id"},
        {"id": "surrogate", "text": "broken \ud800 text"},
        {"id": 2**70, "text": "a huge id"},
        good,
        "a plain string is a text whose id is its index",
    ]
    out = model.label(records)
    assert len(out) == len(records), "one row per record"
    errors = [r.get("error") for r in out]
    assert "nothing to read" in errors[0] and out[0]["id"] == "empty"
    assert "`records[1]` is int" in errors[1]
    assert "`records[2].text` is bytes" in errors[2]
    assert "`records[3].id` is a bool" in errors[3]
    assert "not valid Unicode" in errors[4]
    assert "too large" in errors[5]
    assert all(r["source"] == f"records[{i}]" for i, r in enumerate(out[:6]))
    assert errors[6] is None and out[6]["id"] == good["id"]
    assert errors[7] is None and out[7]["id"] == 7

    # In Arrow, a row without text or id is an error row; the others are labelled.
    table = pa.table({"id": [1, None, 3], "text": ["A hacker group leaked files.", "x", None]})
    out = model.label(table).to_pylist()
    assert [r["id"] for r in out] == ["1", None, "3"]
    assert out[0]["error"] is None and out[0]["labels"] is not None
    assert "row 2 has no `id`" in out[1]["error"] and out[1]["scores"] is None
    assert "nothing to read" in out[2]["error"]


def test_integer_ids_stay_numbers_like_the_cli(model, tmp_path):
    records = [{"id": 7, "text": "Ransomware encrypted the city's servers."}, {"id": "7b", "text": "Markets rose."}]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    cli_label(tmp_path / "in.jsonl", tmp_path / "out.jsonl")
    assert model.label(records) == read_jsonl(tmp_path / "out.jsonl")


def test_parquet_labels_equal_the_cli_parquet_output(model, articles, tmp_path):
    pq.write_table(pa.Table.from_pylist(articles), tmp_path / "in.parquet")
    cli_label(tmp_path / "in.parquet", tmp_path / "out.parquet")
    from_cli = pq.read_table(tmp_path / "out.parquet")
    from_python = model.label(pq.read_table(tmp_path / "in.parquet"))
    assert from_python.to_pylist() == from_cli.to_pylist()


def test_topics_and_min_score_filter_like_the_cli(model, articles):
    out = model.label(articles, topics=["cyberattack"], min_score=0.5)
    for r in out:
        assert set(r["scores"]) == {"cyberattack"}
        assert all(label == "cyberattack" for label in r["labels"])
        if r["labels"]:
            assert r["scores"]["cyberattack"] >= 0.5


def test_embeddings_are_numpy_and_equal_the_cli(model, tmp_path):
    texts = ["Spies stole chip designs.", "Der Hafen wurde von Hackern lahmgelegt.", "天气很好。"]
    vectors = model.embed(texts)
    assert vectors.dtype == np.float32 and vectors.shape == (3, model.dimension)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    (tmp_path / "in.jsonl").write_text(
        "".join(json.dumps({"id": str(i), "text": t}, ensure_ascii=False) + "\n" for i, t in enumerate(texts)),
        encoding="utf-8",
    )
    run_cli(
        "embed", "--encoder", str(ENCODER), "--input", str(tmp_path / "in.jsonl"),
        "--output", str(tmp_path / "out.jsonl"),
    )
    from_cli = np.array([r["embedding"] for r in read_jsonl(tmp_path / "out.jsonl")], dtype=np.float32)
    # The same kernels on the same machine: equal to float32 rounding of the JSON text.
    np.testing.assert_allclose(vectors, from_cli, rtol=0, atol=1e-6)
    assert model.embed([]).shape == (0, model.dimension)
    with pytest.raises(ValueError, match=r"`texts\[1\]` is empty"):
        model.embed(["fine", " "])
    with pytest.raises(ValueError, match=r"`texts\[0\]` is int"):
        model.embed([3])


def test_the_gil_is_released_while_labelling(model, articles):
    """The main thread runs Python code while another thread is inside `label`."""
    entered = threading.Event()
    call = {}

    def work():
        entered.set()
        call["started"] = time.perf_counter()
        model.label(articles * 2)
        call["ended"] = time.perf_counter()

    worker = threading.Thread(target=work)
    worker.start()
    entered.wait()
    # With the GIL held through the call, this line runs only once `label` has returned.
    ran_at = time.perf_counter()
    worker.join()
    halfway = call["started"] + 0.5 * (call["ended"] - call["started"])
    assert ran_at < halfway, "the main thread waited for the GIL through the call"


def test_bad_calls_raise_clear_errors(model, tmp_path):
    with pytest.raises(ValueError, match="`precision`"):
        spyglass.Model.load(MODEL, encoder=ENCODER, precision="f16")
    with pytest.raises(ValueError, match="`threads` must be 1 to 1024"):
        spyglass.Model.load(MODEL, encoder=ENCODER, threads=0)
    with pytest.raises(spyglass.SpyglassError, match="no-such-bundle"):
        spyglass.Model.load(tmp_path / "no-such-bundle", encoder=ENCODER)
    with pytest.raises(spyglass.SpyglassError, match="no-such-encoder"):
        spyglass.Model.load(MODEL, encoder=tmp_path / "no-such-encoder")
    with pytest.raises(ValueError, match="`topics` names `nope`"):
        model.label([{"id": "a", "text": "t"}], topics=["nope"])
    with pytest.raises(ValueError, match="`min_score`"):
        model.label([{"id": "a", "text": "t"}], min_score=2.0)
    with pytest.raises(TypeError, match="`records` is int"):
        model.label(5)
    # One record or one text where a list belongs would otherwise label each key or character.
    with pytest.raises(TypeError, match="`records` is one dict; .*wrap a single one in a list"):
        model.label({"id": "a", "text": "t"})
    with pytest.raises(TypeError, match="`records` is one str"):
        model.label("a text")
    with pytest.raises(TypeError, match="`texts` is one str"):
        model.embed("a text")
    with pytest.raises(ValueError, match="no `text` column.*`body`"):
        model.label(pa.table({"id": ["a"], "body": ["t"]}))
    assert "espionage" in repr(model) and model.precision == "f32"
