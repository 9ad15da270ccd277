"""How crowded the index is: the similarity of a typical passage to its nearest passage of another article.

A question the knowledge base does not answer still finds its closest passages, and how close they come
depends on the index more than on the question. In the demo KB (35 policies) a passage's nearest passage
from another article sits at cosine ~0.55; in aws-docs-qa (2,791 pages of 14 overlapping AWS guides) at
~0.83, so "How do I create a Kubernetes cluster in Azure AKS?" lands as close to EKS and ECS pages as a
real question lands on its answer in the demo KB. The abstention gate raises its bar with this density
(retrieval/abstention.py), which is what lets one calibration carry from a small KB to a large one
(BENCHMARKS.md "Session 7: abstention").

Fail closed: only passages every member may read (audience `public` or `everyone`) are sampled and
searched, through the searcher's own audience filter, so a restricted article never moves the bar.
Measured exactly in SQL (64 sampled passages against every readable one: ~20 ms on the demo KB, ~1.5 s on
aws-docs-qa's 40k passages), once per embedding space, then again in the background each hour while the
last value serves; an index with nothing member-readable has no density and the gate keeps its base bar.
"""

from __future__ import annotations

import logging
import threading
import time

from sqlalchemy import text

from retrieval.access import EVERYONE, PUBLIC
from retrieval.db import translate_errors
from retrieval.errors import KbbotError
from retrieval.search import Searcher
from retrieval.spaces import EmbeddingSpace

log = logging.getLogger(__name__)

READABLE = [PUBLIC, EVERYONE]  # audience tokens every member holds
# Exact nearest neighbours of a fixed pseudo-random sample (by hashed chunk id: the same index gives the same
# density every time) among at most :pool readable passages (all of them up to 50k; beyond, a sample, which
# makes the density a lower bound there).
_DENSITY_SQL = text("""
WITH readable AS MATERIALIZED (
    SELECT e.chunk_id, c.article_id, e.embedding FROM embeddings e JOIN chunks c ON c.id = e.chunk_id
    WHERE e.space_id = :space AND c.audience && CAST(:readable AS text[])
    ORDER BY md5(e.chunk_id::text) LIMIT :pool),
sample AS (SELECT * FROM readable ORDER BY md5(chunk_id::text) LIMIT :n)
SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY nearest) AS density, count(*) AS sampled FROM (
    SELECT max(1 - (r.embedding <=> s.embedding)) AS nearest
    FROM sample s JOIN readable r ON r.article_id <> s.article_id GROUP BY s.chunk_id) per_passage""")


class NeighbourDensity:
    """`density()`: median over sampled passages of the best similarity to a passage of another article."""

    def __init__(self, searcher: Searcher, *, sample: int = 64, pool: int = 50_000, ttl_s: float = 3600.0) -> None:
        self.searcher = searcher
        self.sample = sample
        self.pool = pool
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._cached: dict[int, tuple[float, float | None]] = {}  # space id -> (measured at, density)
        self._refreshing: set[int] = set()

    def __call__(self) -> float | None:
        try:
            space = self.searcher.space()
        except KbbotError:
            return None  # an empty index: the search itself reports it
        with self._lock:
            cached = self._cached.get(space.id)
            if cached is not None:
                if time.monotonic() - cached[0] >= self.ttl_s and space.id not in self._refreshing:
                    self._refreshing.add(space.id)
                    threading.Thread(target=self._refresh, args=(space,), name="kbbot-density", daemon=True).start()
                return cached[1]
        # The first question on this space waits for it: a bar too low would answer what it should not.
        value = self.measure(space)
        with self._lock:
            self._cached[space.id] = (time.monotonic(), value)
        return value

    def _refresh(self, space: EmbeddingSpace) -> None:
        try:
            value = self.measure(space)
        except Exception:  # the last value keeps serving; tried again after another ttl
            log.warning("could not measure the index's density again", exc_info=True)
            with self._lock:
                self._cached[space.id] = (time.monotonic(), self._cached[space.id][1])
        else:
            with self._lock:
                self._cached[space.id] = (time.monotonic(), value)
        finally:
            with self._lock:
                self._refreshing.discard(space.id)

    def measure(self, space: EmbeddingSpace) -> float | None:
        started = time.perf_counter()
        with translate_errors("Measuring the index's density"), self.searcher.db.engine.connect() as conn:
            row = conn.execute(_DENSITY_SQL, {"space": space.id, "readable": READABLE, "pool": self.pool,
                                              "n": self.sample}).one()
        if row.density is None:
            return None
        # Debug: every CLI question measures it once; `kbbot serve` logs the start-up value itself.
        log.debug("index density %.3f (%d passages sampled in %.0f ms)", row.density, row.sampled,
                 (time.perf_counter() - started) * 1000)
        return float(row.density)
