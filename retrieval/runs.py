"""Sync run records and the lock that makes a sync exclusive across every process and replica.

The lock is a session-level PostgreSQL advisory lock held on a dedicated connection for the length of the
run: if the process dies, PostgreSQL drops the connection and the lock with it, so a crashed worker never
blocks the next run. A run row still marked `running` without its lock is stale and is closed as
`interrupted` by the next run.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Connection, text

from retrieval.db import Database, translate_errors
from retrieval.errors import SyncInProgressError

log = logging.getLogger(__name__)

SYNC_LOCK_KEY = 7204502
RunKind = Literal["incremental", "full", "reembed"]
MAX_RECORDED_ERRORS = 200


@dataclass
class RunCounts:
    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    failed: int = 0
    chunks_embedded: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)

    def record_error(self, where: str, message: str, *, audience: Sequence[str] | None = None) -> None:
        """`audience`: the article's, when the error is about one (empty when unknown or held back), so a
        viewer in Slack sees its name and message only if they may read it; None for a source's error."""
        self.failed += 1
        if len(self.errors) < MAX_RECORDED_ERRORS:
            error: dict[str, Any] = {"where": where, "error": message}
            if audience is not None:
                error["audience"] = list(audience)
            self.errors.append(error)


@dataclass(frozen=True)
class SyncRun:
    id: int
    kind: str
    trigger: str
    started_by: str | None
    status: str
    started_at: datetime
    finished_at: datetime | None
    added: int
    updated: int
    removed: int
    unchanged: int
    failed: int
    chunks_embedded: int
    errors: list[dict[str, Any]]
    sources: list[str]

    @property
    def duration_s(self) -> float | None:
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


_RUN_COLUMNS = (
    "id, kind, trigger, started_by, status, started_at, finished_at, added, updated, removed, unchanged, "
    "failed, chunks_embedded, errors, sources"
)


def _row_to_run(row: Any) -> SyncRun:
    return SyncRun(**{**row._mapping, "sources": list(row.sources or []), "errors": list(row.errors or [])})


class RunLog:
    """Reads and writes `sync_runs`; owns the exclusive sync lock."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @contextlib.contextmanager
    def exclusive(self, *, kind: RunKind, trigger: str, started_by: str | None,
                  sources: list[str]) -> Iterator[tuple[int, Connection]]:
        """Hold the sync lock and an open run record; yields (run id, the lock's connection)."""
        with translate_errors("Taking the sync lock"):
            conn = self.db.engine.connect()
        try:
            got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": SYNC_LOCK_KEY}).scalar()
            conn.commit()
            if not got:
                running = self.running()
                raise SyncInProgressError(
                    running.started_by if running else None, running.started_at if running else None
                )
            try:
                with conn.begin():
                    conn.execute(text(
                        "UPDATE sync_runs SET status = 'interrupted', finished_at = now(), "
                        "errors = errors || '[{\"where\": \"run\", \"error\": \"the process stopped "
                        "before the run finished\"}]'::jsonb WHERE status = 'running'"
                    ))
                    run_id = conn.execute(
                        text("INSERT INTO sync_runs (kind, trigger, started_by, sources) "
                             "VALUES (:kind, :trigger, :by, :sources) RETURNING id"),
                        {"kind": kind, "trigger": trigger, "by": started_by, "sources": sources},
                    ).scalar_one()
                yield run_id, conn
            finally:
                with contextlib.suppress(Exception):
                    conn.rollback()
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": SYNC_LOCK_KEY})
                    conn.commit()
        finally:
            conn.close()

    @staticmethod
    def heartbeat(conn: Connection, run_id: int, counts: RunCounts) -> None:
        """Progress is visible to `/reindex status` and `kbbot status` while the run goes on."""
        with conn.begin():
            conn.execute(text(
                "UPDATE sync_runs SET heartbeat_at = now(), added = :added, updated = :updated, "
                "removed = :removed, unchanged = :unchanged, failed = :failed, "
                "chunks_embedded = :chunks_embedded WHERE id = :id"
            ), {**_counts_params(counts), "id": run_id})

    @staticmethod
    def finish(conn: Connection, run_id: int, counts: RunCounts, status: str) -> None:
        with conn.begin():
            conn.execute(text(
                "UPDATE sync_runs SET status = :status, finished_at = now(), heartbeat_at = now(), "
                "added = :added, updated = :updated, removed = :removed, unchanged = :unchanged, "
                "failed = :failed, chunks_embedded = :chunks_embedded, errors = CAST(:errors AS jsonb) "
                "WHERE id = :id"
            ), {**_counts_params(counts), "errors": json.dumps(counts.errors), "status": status,
                "id": run_id})

    def get(self, run_id: int) -> SyncRun | None:
        with translate_errors("Reading the sync run"), self.db.engine.connect() as conn:
            row = conn.execute(text(f"SELECT {_RUN_COLUMNS} FROM sync_runs WHERE id = :id"),
                               {"id": run_id}).first()
        return _row_to_run(row) if row else None

    def running(self) -> SyncRun | None:
        with translate_errors("Reading sync runs"), self.db.engine.connect() as conn:
            row = conn.execute(text(
                f"SELECT {_RUN_COLUMNS} FROM sync_runs WHERE status = 'running' ORDER BY started_at DESC LIMIT 1"
            )).first()
        return _row_to_run(row) if row else None

    def recent(self, limit: int = 10) -> list[SyncRun]:
        with translate_errors("Reading sync runs"), self.db.engine.connect() as conn:
            rows = conn.execute(text(
                f"SELECT {_RUN_COLUMNS} FROM sync_runs ORDER BY started_at DESC LIMIT :n"), {"n": limit}
            ).all()
        return [_row_to_run(r) for r in rows]

    def last_finished(self) -> SyncRun | None:
        with translate_errors("Reading sync runs"), self.db.engine.connect() as conn:
            row = conn.execute(text(
                f"SELECT {_RUN_COLUMNS} FROM sync_runs WHERE finished_at IS NOT NULL "
                "ORDER BY finished_at DESC LIMIT 1"
            )).first()
        return _row_to_run(row) if row else None


def _counts_params(counts: RunCounts) -> dict[str, int]:
    return {
        "added": counts.added, "updated": counts.updated, "removed": counts.removed,
        "unchanged": counts.unchanged, "failed": counts.failed, "chunks_embedded": counts.chunks_embedded,
    }
