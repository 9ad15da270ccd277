"""Builds the core's objects from settings, once per process. The CLI, the Slack app and the worker all
come through here, so they answer the same way."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from retrieval.answer import AnswerPipeline, ExtractiveSynthesizer, Synthesizer
from retrieval.db import Database
from retrieval.embeddings import Embedder, create_embedder
from retrieval.search import Searcher
from retrieval.settings import Settings
from retrieval.sync import Indexer, ProgressCallback


@dataclass
class Services:
    """Lazily built, shared core objects. Nothing is opened until first used."""

    settings: Settings
    _db: Database | None = field(default=None, repr=False)

    def database(self) -> Database:
        if self._db is None:
            self._db = Database.open(self.settings)
        return self._db

    @functools.cached_property
    def embedder(self) -> Embedder:
        return create_embedder(self.settings)

    def searcher(self) -> Searcher:
        return Searcher(self.database(), self.embedder, mode=self.settings.search_mode,
                        ef_search=self.settings.hnsw_ef_search)

    def synthesizer(self) -> Synthesizer:
        return ExtractiveSynthesizer(self.embedder)

    @functools.cached_property
    def pipeline(self) -> AnswerPipeline:
        return AnswerPipeline(self.searcher(), self.synthesizer(), top_k=self.settings.top_k,
                              min_relevance=self.settings.min_relevance)

    def indexer(self, progress: ProgressCallback | None = None) -> Indexer:
        return Indexer(self.database(), self.embedder, chunk_max_tokens=self.settings.chunk_max_tokens,
                       progress=progress)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
