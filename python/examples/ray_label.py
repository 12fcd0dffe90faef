"""Label a Parquet dataset of articles with Ray Data `map_batches`: a pool of actors, one model each.

    python ray_label.py ARTICLES.parquet LABELS_DIR [--model DIR] [--encoder DIR]
        [--actors 2] [--threads-per-actor 1]

Articles need `id` and `text` columns (and may have `title`, `lang`, `url`); the output has the
columns `spyglass label --output x.parquet` writes. Give each actor its share of the cores:
`--threads-per-actor` = cores / actors.
"""

import argparse
import os
import sys
import time

import spyglass


class Labeller:
    """A Ray Data callable class: each actor loads the model once and labels many batches."""

    def __init__(self, model_dir=None, encoder=None, threads=1):
        self.model = spyglass.Model.load(model_dir, encoder=encoder, threads=threads)

    def __call__(self, batch):
        columns = [c for c in ("id", "text", "title", "lang", "url") if c in batch.column_names]
        return self.model.label(batch.select(columns))


def label_dataset(articles, model_dir=None, encoder=None, actors=2, threads_per_actor=1, batch_size=64):
    """`articles` (a Ray Dataset with `id` and `text`) labelled: one output row per input row."""
    import ray.data

    if __name__ != "__main__":
        # Send `Labeller` to the actors by value, so they need `spyglass` but not this file.
        from ray import cloudpickle

        cloudpickle.register_pickle_by_value(sys.modules[__name__])
    return articles.map_batches(
        Labeller,
        fn_constructor_kwargs={"model_dir": model_dir, "encoder": encoder, "threads": threads_per_actor},
        batch_format="pyarrow",
        batch_size=batch_size,
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=threads_per_actor,
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("articles")
    parser.add_argument("labels")
    parser.add_argument("--model", default=None, help="bundle folder (default: the shipped model)")
    parser.add_argument("--encoder", default=None, help="encoder folder or Hub id (default: the bundle's)")
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument("--threads-per-actor", type=int, default=1)
    parser.add_argument("--blocks", type=int, default=None, help="split the input into this many blocks (one file of one row group is one block, which one actor labels alone)")
    parser.add_argument("--address", default=None, help="a Ray cluster to join (default: start a local one)")
    args = parser.parse_args(argv)

    import ray

    local = {}
    if args.address is None:
        # Ray Data lists, reads and writes files in tasks of one CPU each; when the actors hold
        # every core, those tasks would wait forever, so the local instance counts one CPU more.
        cores = max(os.cpu_count() or 1, args.actors * args.threads_per_actor)
        local = {"num_cpus": cores + 1, "include_dashboard": False}
    ray.init(address=args.address, log_to_driver=False, configure_logging=False, **local)
    ray.data.DataContext.get_current().enable_progress_bars = False
    started = time.perf_counter()
    articles = ray.data.read_parquet(args.articles)
    if args.blocks:
        articles = articles.repartition(args.blocks)
    labelled = label_dataset(articles, args.model, args.encoder, args.actors, args.threads_per_actor)
    # Replace what an earlier run left there (Ray appends by default, which would mix two runs).
    labelled.write_parquet(args.labels, mode=ray.data.SaveMode.OVERWRITE)
    seconds = time.perf_counter() - started
    written = ray.data.read_parquet(args.labels)
    rows = written.count()
    errors = sum(1 for row in written.iter_rows() if row["error"] is not None)
    print(f"labelled {rows} articles ({errors} error rows) into {args.labels} in {seconds:.1f} s", file=sys.stderr)
    ray.shutdown()


if __name__ == "__main__":
    main()
