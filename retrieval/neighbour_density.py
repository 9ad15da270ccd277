"""How crowded the index is: the similarity of a typical passage to its nearest passage of another article.

A question the knowledge base does not answer still finds its closest passages, and how close they come
depends on the index more than on the question. In the demo KB (35 policies) a passage's nearest passage
from another article sits at cosine ~0.55; in aws-docs-qa (2,791 pages of 14 overlapping AWS guides) at
~0.83, so "How do I create a Kubernetes cluster in Azure AKS?" lands as close to EKS and ECS pages as a
real question lands on its answer in the demo KB. The abstention gate raises its bar with this density
(retrieval/abstention.py), which is what lets one calibration carry from a small KB to a large one
(BENCHMARKS.md "Session 7: abstention").

Fail closed: only passages every member may read (audience `public` or `everyone`) are sampled and
compared, so a restricted article never moves the bar.

Measured exactly in SQL (64 sampled passages against every readable one: ~20 ms on the demo KB, ~1.5 s on
aws-docs-qa's 40k passages). The density changes only when passages do, and every change of passages goes
through a sync (retrieval/sync.py), so the sync measures it at its end and stores it with the embedding
space; a question reads the stored value (one primary-key look-up). An index synced before densities were
stored has none: the first reader measures it and stores it for the others.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import text

from retrieval.access import EVERYONE, PUBLIC
from retrieval.db import Database, translate_errors
from retrieval.errors import KbbotError
from retrieval.spaces import EmbeddingSpace

if TYPE_CHECKING:
    from retrieval.search import Searcher

log = logging.getLogger(__name__)

READABLE = [PUBLIC, EVERYONE]  # audience tokens every member holds
SAMPLE = 64
POOL = 50_000
# Exact nearest neighbours of a fixed pseudo-random sample (by hashed chunk id: the same index gives the same
# density every time) among at most :pool readable passages (all of them up to 50k; beyond, a sample, which
# makes the density a lower bound there).
_DENSITY_SQL = text("""
WITH readable AS MATERIALIZED (
    SELECT e.chunk_id, c.article_id, e.embedding FROM embeddings e JOIN chunks c ON c.id = e.chunk_id
    WHERE e.space_id = :space AND c.audience && CAST(:readable AS text[])
    ORDER BY md5(e.chunk_id::text) LIMIT :pool),
sample AS (SELECT * FROM readable ORDER BY md5(chunk_id::text) LIMIT :n)
SELECT (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY nearest) FROM (
            SELECT max(1 - (r.embedding <=> s.embedding)) AS nearest
            FROM sample s JOIN readable r ON r.article_id <> s.article_id GROUP BY s.chunk_id) per_passage
       ) AS density,
       (SELECT count(*) FROM readable) AS passages""")


@dataclass(frozen=True)
class Density:
    value: float | None  # None: no member-readable passage has a neighbour in another article
    passages: int  # member-readable passages it was measured over (at most the pool)
    measured_at: datetime | None = None  # set when read back from the index


def measure(db: Database, space: EmbeddingSpace, *, sample: int = SAMPLE, pool: int = POOL) -> Density:
    started = time.perf_counter()
    with translate_errors("Measuring the index's density"), db.engine.connect() as conn:
        row = conn.execute(_DENSITY_SQL, {"space": space.id, "readable": READABLE, "pool": pool,
                                          "n": sample}).one()
    density = Density(None if row.density is None else float(row.density), int(row.passages))
    log.debug("index density %s over %d readable passages, measured in %.0f ms",
              "none" if density.value is None else f"{density.value:.3f}", density.passages,
              (time.perf_counter() - started) * 1000)
    return density


def stored(db: Database, space: EmbeddingSpace) -> Density | None:
    """The density stored with the space, or None when it was never measured (or a failed sync cleared it)."""
    with translate_errors("Reading the index's density"), db.engine.connect() as conn:
        row = conn.execute(text(
            "SELECT density, density_passages, density_measured_at FROM embedding_spaces "
            "WHERE id = :id AND density_measured_at IS NOT NULL"), {"id": space.id}).first()
    return None if row is None else Density(row.density, row.density_passages, row.density_measured_at)


def store(db: Database, space: EmbeddingSpace, density: Density, *, unless_stored: bool = False) -> None:
    """`unless_stored`: a reader's measurement, which must not overwrite what a sync stored meanwhile (the
    reader may have measured the passages as they were before that sync)."""
    condition = " AND density_measured_at IS NULL" if unless_stored else ""
    with translate_errors("Storing the index's density"), db.engine.begin() as conn:
        conn.execute(text(
            "UPDATE embedding_spaces SET density = :d, density_passages = :n, density_measured_at = now() "
            f"WHERE id = :id{condition}"), {"d": density.value, "n": density.passages, "id": space.id})


def clear(db: Database, space: EmbeddingSpace) -> None:
    """Forget the stored density (a sync that changed passages failed before measuring it again)."""
    with translate_errors("Clearing the index's density"), db.engine.begin() as conn:
        conn.execute(text("UPDATE embedding_spaces SET density = NULL, density_passages = NULL, "
                          "density_measured_at = NULL WHERE id = :id"), {"id": space.id})


class NeighbourDensity:
    """`density()`: the active space's stored density; measured (and stored) when it has none yet.

    `store_db`: where to store a measurement, when searches read a replica (read-only); the searcher's own
    database by default. A measurement that cannot be stored is kept in this process until one is."""

    def __init__(self, searcher: Searcher, *, store_db: Database | None = None, sample: int = SAMPLE,
                 pool: int = POOL) -> None:
        self.searcher = searcher
        self.store_db = store_db
        self.sample = sample
        self.pool = pool
        self._lock = threading.Lock()
        self._unstored: dict[int, float | None] = {}  # space id -> density measured here but not stored

    def __call__(self) -> float | None:
        try:
            space = self.searcher.space()
        except KbbotError:
            return None  # an empty index: the search itself reports it
        known = stored(self.searcher.db, space)
        if known is not None:
            return known.value
        with self._lock:  # one measurement at a time: the first questions after a start arrive together
            if space.id in self._unstored:
                return self._unstored[space.id]
            known = stored(self.searcher.db, space)  # another thread's measurement, while this one waited
            if known is not None:
                return known.value
            # This question waits for it: a bar too low would answer what it should not.
            density = measure(self.searcher.db, space, sample=self.sample, pool=self.pool)
            try:
                store(self.store_db or self.searcher.db, space, density, unless_stored=True)
            except KbbotError as exc:
                log.warning("the index's density could not be stored, so it is kept in this process only: %s",
                            exc)
                self._unstored[space.id] = density.value
            return density.value

    def measure(self, space: EmbeddingSpace) -> float | None:
        """Measured now, not stored (benchmarks record it next to their passes)."""
        return measure(self.searcher.db, space, sample=self.sample, pool=self.pool).value
