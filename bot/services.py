"""Builds the core's objects from settings, once per process. The CLI, the Slack app and the worker all
come through here, so they answer the same way."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from retrieval.answer import AnswerPipeline, ExtractiveSynthesizer, Synthesizer
from retrieval.answer_log import AnswerLog
from retrieval.db import Database
from retrieval.embeddings import Embedder, create_embedder
from retrieval.search import Searcher
from retrieval.settings import Settings
from retrieval.sources import Source, source_from_record
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

    def answer_log(self) -> AnswerLog:
        return AnswerLog(self.database())

    def configured_sources(self) -> list[Source]:
        """The sources `kbbot sync`, the worker and /reindex sync: those registered in the index by `ingest`,
        rebuilt from their stored config. (The one place to extend when sources come from elsewhere.)"""
        from sqlalchemy import text

        from retrieval.db import translate_errors

        with translate_errors("Reading the configured sources"), self.database().engine.connect() as conn:
            rows = conn.execute(text("SELECT name, kind, config FROM sources ORDER BY name")).all()
        return [source_from_record(r.name, r.kind, dict(r.config)) for r in rows]

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
