"""What `kbbot status` and the App Home show about the index: size, model, freshness, failures."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import text

from retrieval.db import Database, translate_errors
from retrieval.runs import RunLog, SyncRun


@dataclass(frozen=True)
class SourceStatus:
    name: str
    kind: str
    articles: int
    last_success_at: datetime | None
    last_error: str | None


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
            "SELECT s.name, s.kind, count(a.id), s.last_success_at, s.last_error FROM sources s "
            "LEFT JOIN articles a ON a.source_id = s.id GROUP BY s.id ORDER BY s.name"
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
        sources=[SourceStatus(*row) for row in sources],
        last_run=runs.last_finished(), running=runs.running(),
        oldest_articles=[(r[0], r[1], r[2]) for r in old],
    )
