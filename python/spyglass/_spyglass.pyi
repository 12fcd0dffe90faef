"""Type stubs of the native `spyglass._spyglass` module."""

import os
from typing import Any, Iterable, Literal, Mapping, Optional, Sequence, Union, overload

import numpy as np
import numpy.typing as npt
import pyarrow as pa

__version__: str

class SpyglassError(Exception):
    """A model that cannot be loaded, or labelling that cannot go on (the message says why and what to do)."""

# One record as `Model.label` returns it for a list input: the fields `spyglass label` writes.
# A labelled article: id, labels, scores, evidence, lang, model (and truncated when true).
# An error row: id (when known), source, line, error.
LabelDict = dict[str, Any]

_Path = Union[str, "os.PathLike[str]"]

class Model:
    """A model bundle with its encoder, loaded once and used for many calls.

    Load it with `Model.load(...)`. It is safe to share between threads: calls take turns, and
    each uses the model's own thread pool with the GIL released.
    """

    @staticmethod
    def load(
        model: Optional[_Path] = None,
        *,
        encoder: Optional[_Path] = None,
        precision: Literal["f32", "int8", "bf16"] = "f32",
        threads: Optional[int] = None,
        offline: bool = False,
        cache: Union[None, bool, _Path] = None,
        taxonomy: Optional[_Path] = None,
        allow_encoder_mismatch: bool = False,
        batch_size: int = 8,
        max_windows: Optional[int] = None,
    ) -> "Model":
        """Loads a model bundle and its encoder.

        `model`: a bundle folder made by `spyglass train`; None loads `models/default` in the
        working directory, else the model built into spyglass; "zero-shot" scores with the
        taxonomy's descriptions instead of a trained head.
        `encoder`: a local encoder folder or Hub id; None uses the encoder the bundle pins.
        `precision`: "f32" (matches the PyTorch reference), "int8" or "bf16" (approximate).
        `threads`: CPU threads for this model; None uses every core.
        `cache`: None or False embeds afresh; True uses spyglass's embedding cache; a path
        names a cache file.

        Raises SpyglassError when the bundle or encoder cannot be loaded, ValueError for a bad
        argument.
        """

    @overload
    def label(
        self,
        records: pa.RecordBatch,
        *,
        topics: Optional[Sequence[str]] = None,
        min_score: float = 0.0,
    ) -> pa.RecordBatch: ...
    @overload
    def label(
        self,
        records: pa.Table,
        *,
        topics: Optional[Sequence[str]] = None,
        min_score: float = 0.0,
    ) -> pa.Table: ...
    @overload
    def label(
        self,
        records: Iterable[Union[Mapping[str, Any], str]],
        *,
        topics: Optional[Sequence[str]] = None,
        min_score: float = 0.0,
    ) -> list[LabelDict]: ...
    def label(self, records: Any, *, topics: Optional[Sequence[str]] = None, min_score: float = 0.0) -> Any:
        """Labels articles, in order, with the fields `spyglass label` writes.

        `records`: dicts with `text` and optional `id`, `title`, `lang`, `url` (without `id`,
        and for a plain str, which is a text, the id is the record's index), or Arrow data with
        those columns, `id` and `text` required (pyarrow Table or RecordBatch, or anything with
        `__arrow_c_stream__`).
        Returns a list of dicts for a list, a pyarrow RecordBatch for a RecordBatch, and a
        pyarrow Table for other Arrow data, with columns `id`, `error`, `labels`, `scores`
        (struct of float32 per topic), `evidence` (JSON text), `lang`, `model`, `truncated`.
        A bad record never raises: it comes back in its place as an error row.
        """

    def embed(self, texts: Iterable[str]) -> npt.NDArray[np.float32]:
        """L2-normalised article embeddings, shape (len(texts), dimension), float32.

        Raises ValueError naming the first text that is not a non-empty str.
        """

    @property
    def topics(self) -> list[str]:
        """Topic ids, in the order of the `scores` columns."""
    @property
    def name(self) -> str:
        """The model's name as records carry it (`name@version`, marked when not f32)."""
    @property
    def encoder(self) -> str:
        """The encoder loaded: a folder or Hub id."""
    @property
    def precision(self) -> str: ...
    @property
    def dimension(self) -> int:
        """Length of an embedding."""
