"""Embedding spaces: which model made the vectors, and the HNSW index of each.

Vectors of different models never mix: each model gets its own space (a row in `embedding_spaces`), its
vectors are rows of `embeddings` tagged with the space id, and its HNSW index is a partial expression
index over exactly those rows. One space is `active` (searched); a re-embed fills a `building` space and
switches in one transaction when complete.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, text

from retrieval.errors import ModelMismatchError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmbeddingSpace:
    id: int
    provider: str
    model: str
    dimension: int
    status: str

    @property
    def label(self) -> str:
        return f"{self.provider}/{self.model} ({self.dimension} dims)"

    @property
    def index_name(self) -> str:
        return f"embeddings_hnsw_space_{self.id}"

    def vector_expr(self) -> str:
        """The expression the partial HNSW index covers; queries must use it verbatim to hit the index."""
        return f"(embedding::vector({int(self.dimension)}))"


def _row(row: Any) -> EmbeddingSpace:
    return EmbeddingSpace(row.id, row.provider, row.model, row.dimension, row.status)


def active_space(conn: Connection) -> EmbeddingSpace | None:
    row = conn.execute(text(
        "SELECT id, provider, model, dimension, status FROM embedding_spaces WHERE status = 'active'"
    )).first()
    return _row(row) if row else None


def building_space(conn: Connection) -> EmbeddingSpace | None:
    row = conn.execute(text(
        "SELECT id, provider, model, dimension, status FROM embedding_spaces WHERE status = 'building' "
        "ORDER BY id DESC LIMIT 1"
    )).first()
    return _row(row) if row else None


def create_space(conn: Connection, provider: str, model: str, dimension: int, status: str) -> EmbeddingSpace:
    row = conn.execute(text(
        "INSERT INTO embedding_spaces (provider, model, dimension, status, activated_at) "
        "VALUES (:p, :m, :d, :s, CASE WHEN :s = 'active' THEN now() END) "
        "RETURNING id, provider, model, dimension, status"
    ), {"p": provider, "m": model, "d": dimension, "s": status}).one()
    return _row(row)


def space_for(conn: Connection, provider: str, model: str, dimension_of: Any) -> EmbeddingSpace:
    """The active space, created on first use; a different configured model is refused, never mixed.

    `dimension_of` is called only when a space must be created (an API embedder learns its dimension
    with a request).
    """
    space = active_space(conn)
    if space is None:
        return create_space(conn, provider, model, int(dimension_of()), "active")
    if (space.provider, space.model) != (provider, model):
        raise ModelMismatchError(f"{space.provider}/{space.model}", f"{provider}/{model}")
    return space


def activate(conn: Connection, space: EmbeddingSpace) -> None:
    """Switch searches to `space` atomically; the old space's vectors are dropped with it."""
    old = active_space(conn)
    if old is not None and old.id != space.id:
        conn.execute(text("UPDATE embedding_spaces SET status = 'retired' WHERE id = :id"), {"id": old.id})
    conn.execute(text(
        "UPDATE embedding_spaces SET status = 'active', activated_at = now() WHERE id = :id"
    ), {"id": space.id})
    if old is not None and old.id != space.id:
        conn.execute(text(f"DROP INDEX IF EXISTS {old.index_name}"))
        conn.execute(text("DELETE FROM embeddings WHERE space_id = :id"), {"id": old.id})


def has_hnsw_index(conn: Connection, space: EmbeddingSpace) -> bool:
    return conn.execute(text("SELECT to_regclass(:n) IS NOT NULL"), {"n": space.index_name}).scalar_one()


def ensure_hnsw_index(conn: Connection, space: EmbeddingSpace, *, m: int = 16, ef_construction: int = 64) -> bool:
    """Build the space's HNSW index if missing. Returns True when it was built now.

    Built after the first bulk load rather than before it: pgvector's docs note an index built over
    loaded data is much faster than one grown row by row. Later inserts maintain it incrementally.
    """
    if has_hnsw_index(conn, space):
        return False
    workers = max(0, (os.cpu_count() or 2) - 1)
    conn.execute(text("SET LOCAL maintenance_work_mem = '512MB'"))
    conn.execute(text(f"SET LOCAL max_parallel_maintenance_workers = {workers}"))
    conn.execute(text(
        f"CREATE INDEX IF NOT EXISTS {space.index_name} ON embeddings USING hnsw "
        f"({space.vector_expr()} vector_cosine_ops) WITH (m = {int(m)}, ef_construction = {int(ef_construction)}) "
        f"WHERE space_id = {int(space.id)}"
    ))
    log.info("built HNSW index %s", space.index_name)
    return True
