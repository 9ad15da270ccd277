"""Embedding spaces: which model made the vectors, and the HNSW index of each.

Vectors of different models never mix: each model gets its own space (a row in `embedding_spaces`), its
vectors are rows of `embeddings` tagged with the space id, and its HNSW index is a partial expression
index over exactly those rows. One space is `active` (searched); a re-embed fills a `building` space and
switches in one transaction when complete.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Connection, text

from retrieval.errors import ConfigError
from retrieval.settings import DEFAULTS, IndexSettings

log = logging.getLogger(__name__)

VectorStorage = Literal["vector", "halfvec"]
INDEX_PREFIX = "embeddings_hnsw_space_"


@dataclass(frozen=True)
class HnswOptions:
    """How a space's HNSW index is built. Changing storage, m or ef_construction rebuilds it at the next sync.

    `halfvec` indexes the vectors as 16-bit floats: the index is about half the size and builds faster, at a
    small recall cost (measured in BENCHMARKS.md); the table keeps full precision either way.
    """

    storage: VectorStorage = DEFAULTS.index.vector_storage
    m: int = DEFAULTS.index.hnsw_m
    ef_construction: int = DEFAULTS.index.hnsw_ef_construction
    build_memory_mb: int = DEFAULTS.index.hnsw_build_memory_mb  # ceiling of maintenance_work_mem for one build
    build_workers: int | None = DEFAULTS.index.hnsw_build_workers  # None: the server's max_parallel_maintenance_workers

    @classmethod
    def from_settings(cls, settings: IndexSettings, *, embedded: bool) -> HnswOptions:
        """`embedded`: the database is kbbot's own PostgreSQL on this machine (StorageSettings.embedded)."""
        workers = settings.hnsw_build_workers
        if workers is None and embedded:
            # The embedded server runs on this machine, so its cores are ours to size the build by.
            workers = max(0, min((os.cpu_count() or 2) - 1, 7))
        return cls(storage=settings.vector_storage, m=settings.hnsw_m,
                   ef_construction=settings.hnsw_ef_construction,
                   build_memory_mb=settings.hnsw_build_memory_mb, build_workers=workers)


def estimate_hnsw_build_bytes(rows: int, dimension: int, *, m: int = 16,
                              storage: VectorStorage = "vector") -> int:
    """Memory pgvector needs to build the graph in maintenance_work_mem (an upper estimate).

    Per element: the indexed value (8-byte header + 4 or 2 bytes a dimension), layer-0 neighbour lists of
    2*m candidates at 16 bytes, ~1/(m-1) upper layers of m, and ~240 bytes of element struct and allocator
    overhead; calibrated against the "graph no longer fits" notice of pgvector 0.8.
    """
    value = 8 + dimension * (2 if storage == "halfvec" else 4)
    neighbours = 16 * (2 * m + m / max(m - 1, 1)) + 32
    return int(rows * (value + neighbours + 240))


def build_memory_mb(rows: int, dimension: int, options: HnswOptions) -> int:
    """maintenance_work_mem for the build: the estimate with headroom, never above the configured ceiling.

    Raises ConfigError (naming the setting) when the graph cannot fit: a build that spills to disk runs
    for hours and is better refused up front.
    """
    needed = math.ceil(estimate_hnsw_build_bytes(rows, dimension, m=options.m, storage=options.storage)
                       * 1.15 / 2**20) + 64
    if needed > options.build_memory_mb:
        halfvec_hint = (
            " or set KBBOT_VECTOR_STORAGE=halfvec (about half the memory, small recall cost)"
            if options.storage == "vector" else ""
        )
        raise ConfigError(
            f"Building the HNSW index over {rows:,} vectors of {dimension} dimensions needs about "
            f"{needed:,} MB of maintenance_work_mem, but KBBOT_HNSW_BUILD_MEMORY_MB is "
            f"{options.build_memory_mb:,}: the graph would spill to disk and the build would take hours. "
            f"Set KBBOT_HNSW_BUILD_MEMORY_MB={needed} (the PostgreSQL server needs that much free RAM)"
            f"{halfvec_hint}."
        )
    return max(64, needed)


@dataclass(frozen=True)
class EmbeddingSpace:
    id: int
    provider: str
    model: str
    dimension: int
    status: str
    storage: VectorStorage = "vector"  # as the space's HNSW index was built (read from its definition)

    @property
    def label(self) -> str:
        return f"{self.provider}/{self.model} ({self.dimension} dims)"

    @property
    def index_name(self) -> str:
        return f"{INDEX_PREFIX}{self.id}"

    @property
    def index_type(self) -> str:
        """The SQL type vectors are indexed (and must be queried) as, e.g. `halfvec(384)`."""
        return f"{self.storage}({int(self.dimension)})"

    def vector_expr(self, alias: str = "") -> str:
        """The expression the partial HNSW index covers; queries must use it verbatim to hit the index."""
        return f"({alias}embedding::{self.index_type})"

def _row(row: Any) -> EmbeddingSpace:
    storage = "halfvec" if getattr(row, "halfvec", False) else "vector"
    return EmbeddingSpace(row.id, row.provider, row.model, row.dimension, row.status, storage)


def active_space(conn: Connection) -> EmbeddingSpace | None:
    # The index is the truth about storage: searches follow whatever the last sync built.
    row = conn.execute(text(
        "SELECT id, provider, model, dimension, status, "
        f"coalesce(pg_get_indexdef(to_regclass('{INDEX_PREFIX}' || id)) LIKE '%halfvec_cosine_ops%', false) "
        "AS halfvec FROM embedding_spaces WHERE status = 'active'"
    )).first()
    return _row(row) if row else None


def is_active(conn: Connection, space: EmbeddingSpace) -> bool:
    """Whether `space` is still the one searches read (a re-embed may have switched since it was read)."""
    return bool(conn.execute(text("SELECT status = 'active' FROM embedding_spaces WHERE id = :id"),
                             {"id": space.id}).scalar())


def spaces_in_use(conn: Connection) -> list[EmbeddingSpace]:
    """The active space and the one a re-embed is building, if any (retired ones are history)."""
    rows = conn.execute(text(
        "SELECT id, provider, model, dimension, status FROM embedding_spaces WHERE status <> 'retired'"
    )).all()
    return [_row(row) for row in rows]


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


def index_options(conn: Connection, space: EmbeddingSpace) -> HnswOptions | None:
    """Storage, m and ef_construction of the space's existing HNSW index, or None when it has none."""
    row = conn.execute(text(
        "SELECT pg_get_indexdef(c.oid) AS definition, c.reloptions FROM pg_class c "
        "WHERE c.oid = to_regclass(:n)"
    ), {"n": space.index_name}).first()
    if row is None:
        return None
    opts = dict(o.split("=", 1) for o in (row.reloptions or []))
    return HnswOptions(storage="halfvec" if "halfvec_cosine_ops" in row.definition else "vector",
                       m=int(opts.get("m", 16)), ef_construction=int(opts.get("ef_construction", 64)))


def ensure_hnsw_index(conn: Connection, space: EmbeddingSpace, options: HnswOptions | None = None) -> bool:
    """Build the space's HNSW index if missing or built with other options. Returns True when built now.

    Built after the first bulk load rather than before it: pgvector's docs note an index built over
    loaded data is much faster than one grown row by row. Later inserts maintain it incrementally.
    The build gets maintenance_work_mem sized to the graph (refused up front when it cannot fit, see
    `build_memory_mb`) and parallel workers; a rebuild swaps the new index in within the transaction, so
    searches keep using the old one until it commits.
    """
    options = options or HnswOptions()
    current = index_options(conn, space)
    wanted = (options.storage, options.m, options.ef_construction)
    if current is not None and (current.storage, current.m, current.ef_construction) == wanted:
        return False
    rows = conn.execute(text("SELECT count(*) FROM embeddings WHERE space_id = :s"),
                        {"s": space.id}).scalar_one()
    memory = build_memory_mb(rows, space.dimension, options)
    conn.execute(text(f"SET LOCAL maintenance_work_mem = '{int(memory)}MB'"))
    if options.build_workers is not None:
        conn.execute(text(f"SET LOCAL max_parallel_maintenance_workers = {int(options.build_workers)}"))
    target = EmbeddingSpace(space.id, space.provider, space.model, space.dimension, space.status,
                            options.storage)
    name = space.index_name if current is None else f"{space.index_name}_new"
    started = time.perf_counter()
    conn.execute(text(f"DROP INDEX IF EXISTS {space.index_name}_new"))  # left by an interrupted rebuild
    conn.execute(text(
        f"CREATE INDEX {name} ON embeddings USING hnsw "
        f"({target.vector_expr()} {options.storage}_cosine_ops) "
        f"WITH (m = {int(options.m)}, ef_construction = {int(options.ef_construction)}) "
        f"WHERE space_id = {int(space.id)}"
    ))
    if current is not None:
        conn.execute(text(f"DROP INDEX {space.index_name}"))
        conn.execute(text(f"ALTER INDEX {name} RENAME TO {space.index_name}"))
    elapsed = time.perf_counter() - started
    size = conn.execute(text("SELECT pg_size_pretty(pg_relation_size(CAST(:i AS regclass)))"),
                        {"i": space.index_name}).scalar_one()
    log.info("Built the HNSW index %s over %d vectors in %.1f s: %s on disk (%s, m=%d, ef_construction=%d; "
             "build memory budget %d MB).", space.index_name, rows, elapsed, size, options.storage, options.m,
             options.ef_construction, memory)
    return True
