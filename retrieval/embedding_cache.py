"""Vectors of recently embedded texts, so what repeats is embedded once.

The extractive answerer embeds every sentence of the top passages, and the same passages come back for
every question on the same topic: on the Slack load benchmark most of those sentences were embedded
before. A least-recently-used map keyed by the exact text returns them without running the model.
Questions go straight to the model (their latency is what an asker waits for, and they rarely repeat).
This is the first tier of the answer units' vectors; the second is PostgreSQL (retrieval/unit_vectors.py).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence

import numpy as np

from retrieval.embeddings import Embedder


class CachedEmbedder:
    """An Embedder that remembers the vectors of the last `max_entries` document texts (~1.5 KB each)."""

    def __init__(self, inner: Embedder, *, max_entries: int = 8192) -> None:
        self.inner = inner
        self.provider, self.model = inner.provider, inner.model
        self.max_entries = max_entries
        self.hits = self.misses = 0
        self._vectors: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()  # the answer workers share one cache

    @property
    def dimension(self) -> int:
        return self.inner.dimension

    def __contains__(self, text: object) -> bool:
        with self._lock:
            return text in self._vectors

    def cached(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """The vectors of those texts the cache holds (each marked as just used)."""
        found: dict[str, np.ndarray] = {}
        with self._lock:
            for text in texts:
                vector = self._vectors.get(text)
                if vector is not None:
                    self._vectors.move_to_end(text)
                    found[text] = vector
        return found

    def remember(self, vectors: Mapping[str, np.ndarray]) -> None:
        with self._lock:
            for text, vector in vectors.items():
                self._vectors[text] = vector
                self._vectors.move_to_end(text)
            while len(self._vectors) > self.max_entries:
                self._vectors.popitem(last=False)

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        found = self.cached(texts)
        missing = list(dict.fromkeys(t for t in texts if t not in found))
        if missing:
            computed = dict(zip(missing, self.inner.embed_documents(missing), strict=True))
            self.remember(computed)
            found.update(computed)
        with self._lock:
            self.hits += len(texts) - len(missing)
            self.misses += len(missing)
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return np.stack([found[t] for t in texts]).astype(np.float32, copy=False)

    def embed_query(self, text: str) -> np.ndarray:
        return self.inner.embed_query(text)

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)
