"""What `kbbot status` and the App Home show about the index: size, model, freshness, failures.

Assembled from the tables' owners (retrieval/index_store.py, spaces.py, lexical_index.py, runs.py,
neighbour_density.py, unit_warm.py); no SQL of its own."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from retrieval.abstention import AbstentionGate
from retrieval.db import Database, translate_errors
from retrieval.index_store import held_back_counts, index_counts, oldest_articles, source_summaries
from retrieval.lexical_index import KeywordStatus, LexicalIndex
from retrieval.neighbour_density import Density, stored
from retrieval.runs import RunLog, SyncRun
from retrieval.spaces import spaces_in_use
from retrieval.unit_warm import Preparation, preparation


@dataclass(frozen=True)
class SourceStatus:
    name: str
    kind: str
    articles: int
    last_success_at: datetime | None  # the last run in which the whole source synced
    last_error: str | None  # why the source failed since then (cleared by its next success)
    last_error_at: datetime | None = None
    incremental: bool = False  # runs read only what changed since the stored checkpoint
    retry_pending: int = 0  # articles that failed and are fetched again by the next run
    oldest_update: datetime | None = None  # the source's own `updated_at` of its oldest article
    newest_update: datetime | None = None

    @property
    def failing(self) -> bool:
        return self.last_error is not None


@dataclass
class IndexStatus:
    articles: int
    chunks: int
    vectors: int
    model: str | None
    dimension: int | None
    building_model: str | None
    sources: list[SourceStatus]
    last_run: SyncRun | None
    running: SyncRun | None
    oldest_articles: list[tuple[str, str, datetime | None]] = field(default_factory=list)
    keyword: KeywordStatus | None = None  # None until the first sync builds the postings
    # Articles indexed but never answered, because the source restricts them to people kbbot cannot map
    # to Slack: (source, why, how many), most first.
    held_back: list[tuple[str, str, int]] = field(default_factory=list)
    # The active space's neighbour density, which raises the answer bar in a crowded index; None until
    # a sync (or the first question on an index synced before densities were stored) measures it.
    density: Density | None = None
    # Passages whose answer sentences are embedded and stored (retrieval/unit_warm.py); None before a sync.
    answer_sentences: Preparation | None = None

    @property
    def held_back_articles(self) -> int:
        return sum(n for _, _, n in self.held_back)

    @property
    def answer_bar(self) -> float | None:
        """The confidence a question needs to be answered rather than abstained on, at this density."""
        return AbstentionGate().bar(self.density.value) if self.density else None


def index_status(db: Database, *, oldest: int = 5) -> IndexStatus:
    with translate_errors("Reading the index status"), db.engine.connect() as conn:
        pg = conn.connection.driver_connection
        articles, chunks, vectors = index_counts(pg)
        spaces = spaces_in_use(conn)
        sources = source_summaries(pg)
        keyword = LexicalIndex().status(pg)
        held = held_back_counts(pg)
        old = oldest_articles(pg, oldest)
        sentences = preparation(pg)
    active = next((s for s in spaces if s.status == "active"), None)
    building = next((s for s in spaces if s.status == "building"), None)
    runs = RunLog(db)
    density = stored(db, active) if active else None
    return IndexStatus(
        articles=articles, chunks=chunks, vectors=vectors,
        model=f"{active.provider}/{active.model}" if active else None,
        dimension=active.dimension if active else None,
        building_model=f"{building.provider}/{building.model}" if building else None,
        sources=[_source_status(row) for row in sources],
        last_run=runs.last_finished(), running=runs.running(),
        oldest_articles=old,
        keyword=keyword,
        held_back=held,
        density=density,
        answer_sentences=sentences,
    )


def _source_status(row: object) -> SourceStatus:
    checkpoint = row.checkpoint if isinstance(row.checkpoint, dict) else {}  # type: ignore[attr-defined]
    retry = checkpoint.get("retry")
    return SourceStatus(
        name=row.name, kind=row.kind, articles=row.articles,  # type: ignore[attr-defined]
        last_success_at=row.last_success_at, last_error=row.last_error,  # type: ignore[attr-defined]
        last_error_at=row.last_error_at, incremental=checkpoint.get("cursor") is not None,  # type: ignore[attr-defined]
        retry_pending=len(retry) if isinstance(retry, list) else 0,
        oldest_update=row.oldest, newest_update=row.newest,  # type: ignore[attr-defined]
    )
