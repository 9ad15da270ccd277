"""What `kbbot status` and the App Home show about the index: size, model, freshness, failures."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import text

from retrieval.db import Database, translate_errors
from retrieval.lexical_index import KeywordStatus, LexicalIndex
from retrieval.runs import RunLog, SyncRun


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

    @property
    def held_back_articles(self) -> int:
        return sum(n for _, _, n in self.held_back)


def index_status(db: Database, *, oldest: int = 5) -> IndexStatus:
    with translate_errors("Reading the index status"), db.engine.connect() as conn:
        counts = conn.execute(text(
            "SELECT (SELECT count(*) FROM articles), (SELECT count(*) FROM chunks), "
            "(SELECT count(*) FROM embeddings e JOIN embedding_spaces s ON s.id = e.space_id "
            " WHERE s.status = 'active')"
        )).one()
        spaces = conn.execute(text(
            "SELECT provider, model, dimension, status FROM embedding_spaces WHERE status <> 'retired'"
        )).all()
        sources = conn.execute(text(
            "SELECT s.name, s.kind, count(a.id) AS articles, s.last_success_at, s.last_error, s.last_error_at, "
            "s.checkpoint, min(a.source_updated_at) AS oldest, max(a.source_updated_at) AS newest "
            "FROM sources s LEFT JOIN articles a ON a.source_id = s.id GROUP BY s.id ORDER BY s.name"
        )).all()
        keyword = LexicalIndex().status(conn.connection.driver_connection)
        held = conn.execute(text(
            "SELECT s.name, a.held_back, count(*) FROM articles a JOIN sources s ON s.id = a.source_id "
            "WHERE a.held_back IS NOT NULL GROUP BY s.name, a.held_back ORDER BY count(*) DESC, s.name LIMIT 50"
        )).all()
        old = conn.execute(text(
            "SELECT a.title, s.name, a.source_updated_at FROM articles a JOIN sources s ON s.id = a.source_id "
            "WHERE a.source_updated_at IS NOT NULL ORDER BY a.source_updated_at LIMIT :n"
        ), {"n": oldest}).all()
    active = next((s for s in spaces if s.status == "active"), None)
    building = next((s for s in spaces if s.status == "building"), None)
    runs = RunLog(db)
    return IndexStatus(
        articles=counts[0], chunks=counts[1], vectors=counts[2],
        model=f"{active.provider}/{active.model}" if active else None,
        dimension=active.dimension if active else None,
        building_model=f"{building.provider}/{building.model}" if building else None,
        sources=[_source_status(row) for row in sources],
        last_run=runs.last_finished(), running=runs.running(),
        oldest_articles=[(r[0], r[1], r[2]) for r in old],
        keyword=keyword,
        held_back=[(r[0], r[1], int(r[2])) for r in held],
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
