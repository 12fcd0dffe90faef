"""Label a Parquet dataset of articles on Spark with `mapInArrow`, one model per Python worker.

    python spark_label.py ARTICLES.parquet LABELS.parquet [--model DIR] [--encoder DIR]
        [--master local[2]] [--threads-per-worker 1]

Articles need `id` and `text` columns (and may have `title`, `lang`, `url`); the output has the
columns `spyglass label --output x.parquet` writes. Each Spark Python worker loads the model once
and keeps it across tasks (Spark reuses its Python workers), so give each worker
`--threads-per-worker` = cores per executor / tasks per executor.
"""

import argparse
import sys
import time

import pyarrow as pa

import spyglass

# The model of this Python worker process, loaded by its first task.
_MODEL = None


def worker_model(model_dir, encoder, threads):
    global _MODEL
    if _MODEL is None:
        _MODEL = spyglass.Model.load(model_dir, encoder=encoder, threads=threads)
    return _MODEL


def label_schema(model_dir, encoder):
    """The Spark schema of the output, from the model's Arrow columns (loaded once on the driver)."""
    from pyspark.sql.pandas.types import from_arrow_schema

    model = spyglass.Model.load(model_dir, encoder=encoder, threads=1)
    empty = model.label(pa.table({"id": pa.array([], pa.string()), "text": pa.array([], pa.string())}))
    return from_arrow_schema(empty.schema)


def label_dataframe(articles, model_dir, encoder=None, threads_per_worker=1):
    """`articles` (a Spark DataFrame with `id` and `text`) labelled: one output row per input row."""
    schema = label_schema(model_dir, encoder)
    # Executors import this module for `worker_model`: ship it with the job.
    articles.sparkSession.sparkContext.addPyFile(__file__)

    def label_batches(batches):
        model = worker_model(model_dir, encoder, threads_per_worker)
        for batch in batches:
            yield model.label(batch)

    columns = [c for c in ("id", "text", "title", "lang", "url") if c in articles.columns]
    return articles.select(*columns).mapInArrow(label_batches, schema)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("articles")
    parser.add_argument("labels")
    parser.add_argument("--model", default=None, help="bundle folder (default: the shipped model)")
    parser.add_argument("--encoder", default=None, help="encoder folder or Hub id (default: the bundle's)")
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--threads-per-worker", type=int, default=1)
    parser.add_argument("--partitions", type=int, default=None, help="repartition the input to this many tasks")
    args = parser.parse_args(argv)

    from pyspark.sql import SparkSession

    spark = (
        SparkSession.builder.master(args.master)
        .appName("spyglass-label")
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", "64")
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    articles = spark.read.parquet(args.articles)
    if args.partitions:
        articles = articles.repartition(args.partitions)
    started = time.perf_counter()
    labelled = label_dataframe(articles, args.model, args.encoder, args.threads_per_worker)
    labelled.write.mode("overwrite").parquet(args.labels)
    seconds = time.perf_counter() - started
    written = spark.read.parquet(args.labels)
    rows = written.count()
    errors = written.where("error IS NOT NULL").count()
    print(f"labelled {rows} articles ({errors} error rows) into {args.labels} in {seconds:.1f} s", file=sys.stderr)
    spark.stop()


if __name__ == "__main__":
    main()
