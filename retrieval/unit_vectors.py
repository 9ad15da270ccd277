"""Answer units' vectors kept in PostgreSQL, so a cold answer reads them instead of running the model.

The extractive answerer and the abstention gate embed every unit (sentence, list item, table row) of the
top passages: ~38 units, ~1,600 tokens a question on the aws index, 94% of a cold answer (BENCHMARKS.md,
Session 7). Two tiers: the process's in-memory cache first (retrieval/embedding_cache.py), then the
`unit_vectors` table, read in one query per answer for the passages the memory does not hold. What is in
neither is computed, and written back by a background thread (the answer never waits for the write),
`ON CONFLICT DO NOTHING`, so any number of answer workers and processes may write the same passage.

A row belongs to one passage and one embedding space and holds, in order, a hash of the exact text each
unit is embedded as and the unit's vector in float16 (half the float32 table, ~155 MB instead of ~310 MB on
the aws index; the answers it gives do not change, BENCHMARKS.md "Session 9: ops"). Every unit vector an
answer uses is rounded to float16, wherever it came from (memory, the table, the model), so an answer
does not depend on which tier served it. A unit whose hash is not in the row is computed: a change of the
unit splitting never serves a stale vector, and the row is then rewritten. Vectors only, never text, and
a reader reaches a row only through a passage its search returned.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg
from sqlalchemy.exc import SQLAlchemyError

from retrieval.answer_units import passage_units
from retrieval.db import Database
from retrieval.embedding_cache import CachedEmbedder
from retrieval.embeddings import Embedder

log = logging.getLogger(__name__)

HASH_BYTES = 16
STORED_DTYPE = "<f2"  # little-endian float16, whatever the machine
WRITE_BATCH = 64  # passages per write-back statement


def unit_hash(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=HASH_BYTES).digest()


def embedding_text(title: str, heading_path: Sequence[str], rendered: str) -> str:
    """A unit in its context, as passages are embedded: title and headings say what it is about."""
    return f"{' > '.join((title, *heading_path))}: {rendered}"


def passage_unit_texts(title: str, heading_path: Sequence[str], text: str) -> list[str]:
    """What each unit of a passage is embedded as, in the order `passage_units` returns them."""
    return [embedding_text(title, heading_path, unit.rendered) for unit in passage_units(text)]


@dataclass(frozen=True)
class PassageUnits:
    """The units of one passage to embed: its chunk id and the texts, in order."""

    chunk_id: int
    texts: Sequence[str]


def as_stored(vectors: np.ndarray) -> np.ndarray:
    """The vectors as the table keeps them (float16), back in float32 for the arithmetic."""
    return np.asarray(vectors, dtype=STORED_DTYPE).astype(np.float32)


@dataclass(frozen=True)
class StoredUnits:
    hashes: list[bytes]
    vectors: np.ndarray  # (len(hashes), dimension) float32 holding float16 values

    def lookup(self) -> dict[bytes, np.ndarray]:
        return dict(zip(self.hashes, self.vectors, strict=True))


def pack(texts: Sequence[str], vectors: np.ndarray) -> tuple[bytes, bytes]:
    hashes = b"".join(unit_hash(t) for t in texts)
    return hashes, np.ascontiguousarray(vectors, dtype=STORED_DTYPE).tobytes()


def unpack(hashes: bytes, vectors: bytes, dimension: int) -> StoredUnits:
    n = len(hashes) // HASH_BYTES
    matrix = (np.frombuffer(vectors, dtype=STORED_DTYPE).reshape(n, dimension).astype(np.float32) if n
              else np.zeros((0, dimension), np.float32))
    return StoredUnits([hashes[i * HASH_BYTES:(i + 1) * HASH_BYTES] for i in range(n)], matrix)


class UnitVectorStore:
    """The `unit_vectors` table for one embedding model (its space is looked up, not assumed)."""

    def __init__(self, db: Database, *, provider: str, model: str, dimension: int) -> None:
        self.db = db
        self.provider, self.model, self.dimension = provider, model, dimension
        self._space_id: int | None = None

    def space_id(self, conn: psycopg.Connection[Any]) -> int | None:
        """The space of this model that searches read (or a first sync builds); None before any sync."""
        if self._space_id is None:
            row = conn.execute(
                "SELECT id FROM embedding_spaces WHERE provider = %s AND model = %s AND dimension = %s "
                "AND status <> 'retired' ORDER BY status = 'active' DESC, id DESC LIMIT 1",
                (self.provider, self.model, self.dimension)).fetchone()
            self._space_id = row[0] if row else None
        return self._space_id

    def read(self, chunk_ids: Sequence[int]) -> dict[int, StoredUnits]:
        with self.db.raw_connection() as conn:
            space = self.space_id(conn)
            if space is None or not chunk_ids:
                return {}
            rows = conn.execute(
                "SELECT chunk_id, unit_hashes, vectors_f16 FROM unit_vectors WHERE chunk_id = ANY(%s) "
                "AND space_id = %s", (list(chunk_ids), space)).fetchall()
        return {cid: unpack(bytes(h), bytes(v), self.dimension) for cid, h, v in rows}

    def write(self, passages: Sequence[tuple[int, Sequence[str], np.ndarray]], *, replace: bool = False) -> int:
        """Store (chunk id, unit texts, vectors) rows; returns how many were written. A passage removed
        meanwhile is skipped (its chunk id no longer exists), and a row another writer stored first is
        kept unless `replace` (the stored units are not the current ones)."""
        if not passages:
            return 0
        with self.db.raw_connection() as conn:
            space = self.space_id(conn)
            if space is None:
                return 0
            packed = [(cid, *pack(texts, vectors)) for cid, texts, vectors in passages]
            conflict = ("DO UPDATE SET unit_hashes = EXCLUDED.unit_hashes, vectors_f16 = EXCLUDED.vectors_f16 "
                        "WHERE unit_vectors.unit_hashes <> EXCLUDED.unit_hashes") if replace else "DO NOTHING"
            # The join drops passages deleted since they were read: their vectors have nothing to belong to.
            cur = conn.execute(
                "INSERT INTO unit_vectors (chunk_id, space_id, unit_hashes, vectors_f16) "
                "SELECT u.chunk_id, %s, u.h, u.v FROM unnest(%s::bigint[], %s::bytea[], %s::bytea[]) "
                "AS u(chunk_id, h, v) JOIN chunks c ON c.id = u.chunk_id "
                f"ON CONFLICT (chunk_id, space_id) {conflict}",
                (space, [p[0] for p in packed], [p[1] for p in packed], [p[2] for p in packed]))
            return cur.rowcount


class UnitEmbedder:
    """An Embedder for the answer's units with two tiers before the model: memory, then the database.

    `embed_units` is what the answer path calls (support.py); the plain Embedder methods go to the
    in-memory tier only, for callers that have no passage ids.
    """

    def __init__(self, inner: Embedder, store: UnitVectorStore | None, *, max_entries: int = 8192) -> None:
        self.inner = inner
        self.memory = CachedEmbedder(inner, max_entries=max_entries)
        self.store = store
        self.provider, self.model = inner.provider, inner.model
        self.db_hits = self.db_misses = 0
        self._writes: queue.Queue[tuple[tuple[int, Sequence[str], np.ndarray], bool]] = queue.Queue()
        self._writer: threading.Thread | None = None
        self._writer_lock = threading.Lock()
        self._in_flight = 0
        self._last_done = 0.0  # time.monotonic() when an answer last finished embedding units

    @property
    def dimension(self) -> int:
        return self.inner.dimension

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self.memory.embed_documents(texts)

    def embed_query(self, text: str) -> np.ndarray:
        return self.inner.embed_query(text)

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def busy(self, *, within_s: float = 0.5) -> bool:
        """Whether answers are embedding units now or did within `within_s` (the warm gives way)."""
        return self._in_flight > 0 or time.monotonic() - self._last_done < within_s

    def embed_units(self, passages: Sequence[PassageUnits]) -> np.ndarray:
        """The vectors of every passage's units, stacked in the order given."""
        with self._writer_lock:
            self._in_flight += 1
        try:
            return self._embed_units(passages)
        finally:
            with self._writer_lock:
                self._in_flight -= 1
                self._last_done = time.monotonic()

    def _embed_units(self, passages: Sequence[PassageUnits]) -> np.ndarray:
        texts = [t for p in passages for t in p.texts]
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        found = self.memory.cached(texts)
        missing = [p for p in passages if any(t not in found for t in p.texts)]
        stored = self._read([p.chunk_id for p in missing])
        from_db: dict[str, np.ndarray] = {}
        for p in missing:
            row = stored.get(p.chunk_id)
            by_hash = row.lookup() if row is not None else {}
            for t in p.texts:
                vector = by_hash.get(unit_hash(t))
                if vector is not None and t not in found:
                    from_db[t] = vector
        self.memory.remember(from_db)
        found.update(from_db)
        to_compute = list(dict.fromkeys(t for t in texts if t not in found))
        if to_compute:
            found.update(zip(to_compute, self.memory.embed_documents(to_compute), strict=True))
        self.db_hits += len(from_db)
        self.db_misses += len(to_compute)
        if self.store is not None:
            for p in missing:
                row = stored.get(p.chunk_id)
                current = row is not None and row.hashes == [unit_hash(t) for t in p.texts]
                if not current:
                    vectors = np.stack([found[t] for t in p.texts]) if p.texts else np.zeros((0, self.dimension))
                    self._enqueue((p.chunk_id, list(p.texts), vectors), replace=row is not None)
        return as_stored(np.stack([found[t] for t in texts]))

    def flush(self) -> None:
        """Wait until every vector handed to the writer is stored (tests, and a clean shutdown)."""
        if self._writer is not None:
            self._writes.join()

    def _read(self, chunk_ids: list[int]) -> dict[int, StoredUnits]:
        if self.store is None or not chunk_ids:
            return {}
        try:
            return self.store.read(chunk_ids)
        except (psycopg.Error, SQLAlchemyError) as exc:  # the answer does not need the table: compute instead
            log.warning("answer units' vectors could not be read (computing them): %s", exc)
            return {}

    def _enqueue(self, row: tuple[int, Sequence[str], np.ndarray], *, replace: bool) -> None:
        with self._writer_lock:
            if self._writer is None:
                self._writer = threading.Thread(target=self._write_loop, name="unit-vectors-writer",
                                                daemon=True)
                self._writer.start()
        self._writes.put((row, replace))

    def _write_loop(self) -> None:
        assert self.store is not None
        while True:
            first = self._writes.get()
            batch = [first]
            while len(batch) < WRITE_BATCH:
                try:
                    batch.append(self._writes.get_nowait())
                except queue.Empty:
                    break
            try:
                for replace in (False, True):
                    # One row a passage per statement (two answers may have queued the same passage).
                    rows = {row[0]: row for row, r in batch if r is replace}
                    self.store.write(list(rows.values()), replace=replace)
            except Exception:  # a failed write costs a recomputation later, never an answer
                log.warning("answer units' vectors could not be stored (they are recomputed when needed)",
                            exc_info=True)
            finally:
                for _ in batch:
                    self._writes.task_done()
