"""spyglass: which security topics a news article is about, in any major language.

    import spyglass
    model = spyglass.Model.load()                      # the shipped model, its pinned encoder
    model.label([{"id": "a1", "text": "..."}])        # -> [{"id": "a1", "labels": [...], ...}]

`Model.label` also takes pyarrow Tables and RecordBatches (Spark `mapInArrow`, Ray
`map_batches`) and returns Arrow with typed columns. See the README's "Python, Spark and Ray".
"""

from ._spyglass import Model, SpyglassError, __version__

__all__ = ["Model", "SpyglassError", "__version__"]
