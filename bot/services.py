"""Builds the core's objects from settings, once per process. The CLI, the Slack app and the worker all
come through here, so they answer the same way.

Each part is built on first use, once, even when the first questions after a start arrive on several
threads at once (`bot.lazy.built_once`). Consumers are handed the parts they use, not this object: the
Slack app's by `bot.app.build_parts`, the worker's by `SyncParts.of` and `SyncScheduler.of` (bot/worker.py),
the Gaps view's and the digest's by `GapsParts.of` (bot/home_gaps.py). Only the CLI commands (wiring
themselves) and the benchmarks use it directly.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from bot.lazy import built_once
from retrieval.acronyms import AcronymReader
from retrieval.answer import AnswerPipeline, Synthesizer
from retrieval.answer_log import AnswerLog
from retrieval.db import Database
from retrieval.embeddings import Embedder, create_embedder
from retrieval.extractive import ExtractiveSynthesizer
from retrieval.index_store import registered_sources
from retrieval.neighbours import PassageReader
from retrieval.search import Retriever, Searcher
from retrieval.settings import Settings
from retrieval.sources import Source
from retrieval.spaces import EmbeddingSpace, HnswOptions
from retrieval.sync import Indexer, Progress, ProgressCallback
from retrieval.unit_vectors import UnitEmbedder, UnitVectorStore
from retrieval.unit_warm import UnitWarmer

if TYPE_CHECKING:
    from retrieval.llm import ChatClient


class Services:
    """Lazily built, shared core objects. Nothing is opened until first used.

    `database` and `embedder` may be given ready-made (tests share one model and database per session).
    """

    def __init__(self, settings: Settings, *, database: Database | None = None,
                 embedder: Embedder | None = None, concurrent_embeds: int = 1) -> None:
        self.settings = settings
        # Embeddings that may run at once in this process (the answer workers in `kbbot serve`): sizes each
        # call's threads. Set before the embedder is first used.
        self.concurrent_embeds = concurrent_embeds
        if database is not None:
            self._primary = database
        if embedder is not None:
            self.embedder = embedder
        self._other_embedders: dict[tuple[str, str], Embedder] = {}
        self._unit_warmer: UnitWarmer | None = None
        self._embedders_lock = threading.Lock()

    @built_once
    def _primary(self) -> Database:
        return Database.open(self.settings.storage)

    @built_once
    def _replica(self) -> Database:
        storage = self.settings.storage
        self.database()  # the primary first: it applies the migrations the replica then receives
        return Database.open(storage.model_copy(update={"database_url": storage.search_database_url}),
                             migrate=False)

    def database(self) -> Database:
        return self._primary

    def search_database(self) -> Database:
        """Where searches read: the read replica when KBBOT_SEARCH_DATABASE_URL is set, else the primary."""
        if self.settings.storage.search_database_url is None:
            return self.database()
        return self._replica

    @built_once
    def embedder(self) -> Embedder:
        return create_embedder(self.settings.embeddings, self.settings.openai,
                               concurrent_calls=self.concurrent_embeds)

    def searcher(self) -> Searcher:
        search = self.settings.search
        return Searcher(self.search_database(), self.embedder, mode=search.search_mode,
                        ef_search=search.hnsw_ef_search, embedder_for=self.embedder_for_space,
                        acronyms=self.acronyms)

    @built_once
    def acronyms(self) -> AcronymReader:
        """The index's acronyms, read once for every searcher of the process (retrieval/acronyms.py)."""
        return AcronymReader(self.search_database())

    def embedder_for_space(self, space: EmbeddingSpace) -> Embedder:
        """An embedder for a space made by another model than the configured one: while a re-embed with a
        new model builds, questions are still embedded with the model of the space being searched."""
        key = (space.provider, space.model)
        if key == (self.embedder.provider, self.embedder.model):
            return self.embedder
        with self._embedders_lock:
            if key not in self._other_embedders:
                self._other_embedders[key] = create_embedder(self.settings.embeddings, self.settings.openai,
                                                             provider=space.provider, model=space.model,
                                                             concurrent_calls=self.concurrent_embeds)
            return self._other_embedders[key]

    @built_once
    def chat_client(self) -> ChatClient | None:
        """The LLM client when OPENAI_API_KEY or OPENAI_BASE_URL is set; None means extractive answers."""
        if not self.settings.openai.enabled:
            return None
        from retrieval.llm import ChatClient

        return ChatClient.from_settings(self.settings.openai, self.settings.llm)

    def active_tone_model(self) -> str | None:
        from finetune.registry import active_tone_model

        return active_tone_model(self.database().engine)

    @built_once
    def sentence_embedder(self) -> UnitEmbedder:
        """The embedder behind the extractive answerer: the top passages' sentences repeat across
        questions, so their vectors are kept in memory and in the index (retrieval/unit_vectors.py)."""
        embedder = self.embedder
        return UnitEmbedder(embedder, self.unit_vector_store())

    def unit_vector_store(self) -> UnitVectorStore:
        embedder = self.embedder
        return UnitVectorStore(self.database(), provider=embedder.provider, model=embedder.model,
                               dimension=embedder.dimension)

    def start_unit_warmer(self) -> UnitWarmer | None:
        """For long-running processes (`kbbot serve`, `kbbot worker`): prepares the answer sentences of
        passages that have none, now (an index synced before they were stored) and after each sync this
        process runs. None when KBBOT_PREPARE_ANSWER_SENTENCES is off."""
        if not self.settings.index.prepare_answer_sentences:
            return None
        if self._unit_warmer is None:
            units = self.sentence_embedder
            self._unit_warmer = UnitWarmer(self.database(), self.embedder, self.unit_vector_store(),
                                           answers_busy=units.busy).start()
        return self._unit_warmer

    def synthesizer(self) -> Synthesizer:
        extractive = ExtractiveSynthesizer(self.sentence_embedder)
        if self.chat_client is None:
            return extractive
        from retrieval.llm import create_llm_synthesizer

        return create_llm_synthesizer(self.settings.llm, self.chat_client, fallback=extractive,
                                      tone_lookup=self.active_tone_model)

    @built_once
    def pipeline(self) -> AnswerPipeline:
        from retrieval.llm import create_rewriter

        search, llm = self.settings.search, self.settings.llm
        base = self.searcher()
        searcher: Retriever = base
        if search.query_expansion:
            from retrieval.rewrite import ExpandingSearcher, HeuristicExpander, LLMExpander

            expander = (LLMExpander(self.chat_client, llm.llm_model) if self.chat_client
                        else HeuristicExpander())
            searcher = ExpandingSearcher(base, expander, variants=search.query_expansion)
        from retrieval.rerank import with_rerank

        searcher = with_rerank(searcher, llm, self.chat_client, min_relevance=search.min_relevance)
        from retrieval.neighbour_density import NeighbourDensity

        return AnswerPipeline(searcher, self.synthesizer(), top_k=search.top_k,
                              min_relevance=search.min_relevance, unit_embedder=self.sentence_embedder,
                              passage_reader=PassageReader(self.search_database()),
                              density=NeighbourDensity(base, store_db=self.database()),
                              rewriter=create_rewriter(search, self.chat_client, model=llm.llm_model))

    def indexer(self, progress: ProgressCallback | None = None,
                should_stop: Callable[[], bool] | None = None) -> Indexer:
        index = self.settings.index
        warmer = self._unit_warmer
        if warmer is not None:
            # The sync's new and changed passages get their answer sentences prepared when it ends.
            def progress_then_warm(p: Progress, report: ProgressCallback | None = progress) -> None:
                if report is not None:
                    report(p)
                if p.stage == "done":
                    warmer.kick()

            progress = progress_then_warm
        return Indexer(self.database(), self.embedder, chunk_max_tokens=index.chunk_max_tokens,
                       progress=progress, should_stop=should_stop,
                       index_options=HnswOptions.from_settings(index, embedded=self.settings.storage.embedded))

    def answer_log(self) -> AnswerLog:
        return AnswerLog(self.database())

    def configured_sources(self) -> list[Source]:
        """The sources `kbbot sync`, the worker and /reindex sync: those declared in the sources file
        (KBBOT_SOURCES_FILE, re-read on every call so edits apply without a restart), then those registered
        in the index by `ingest`, rebuilt from their stored config."""
        from retrieval.sources_config import configured_sources

        return configured_sources(self.settings.index.sources_file, registered_sources(self.database()))

    def close(self) -> None:
        if self._unit_warmer is not None:
            self._unit_warmer.stop()
        built = vars(self)  # only what was opened: closing must not open anything
        if "sentence_embedder" in built:
            built["sentence_embedder"].flush()  # what this process's answers computed, for the next ones
        for name in ("_replica", "_primary"):
            if name in built:
                built[name].close()
