"""Preparing the answer units' vectors of every passage after a sync, in the background, at low priority.

A passage is prepared when it has its row in `unit_vectors` (retrieval/unit_vectors.py). The warm embeds
the units of passages without one, a few passages at a time, and writes each batch as it goes: a crash
or a stop loses at most the batch in hand, and the next warm starts from what is still unprepared. It is
not part of the sync (embedding the units is ~1.4x the passages' own tokens, BENCHMARKS.md), and it
gives way to answers: it runs on a thread of the lowest CPU priority, waits while answers are embedding
units, and its batches take the embedder's passage gate like any other (retrieval/threads.py). One warm
at a time across processes (an advisory lock); the others skip.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg

from retrieval.db import Database
from retrieval.embeddings import Embedder
from retrieval.unit_vectors import UnitVectorStore, passage_unit_texts

log = logging.getLogger(__name__)

WARM_LOCK_KEY = 7204503  # after the migration lock (7204501, retrieval/db.py) and the sync lock (7204502, runs.py)
BATCH_PASSAGES = 16  # ~75 units, ~1.5 s on one core: short enough to give way to answers quickly


@dataclass(frozen=True)
class Preparation:
    """How many passages of the searched space have their answer units' vectors stored."""

    prepared: int
    passages: int

    @property
    def complete(self) -> bool:
        return self.prepared >= self.passages

    def line(self) -> str:
        done = f"answer sentences prepared: {self.prepared:,} of {self.passages:,} passages"
        if self.complete:
            return done
        # A newcomer after `kbbot demo` sees a partial count and should know it fills itself.
        return done + " (the rest are prepared in the background while `kbbot serve` or `kbbot worker` runs)"


def preparation(conn: psycopg.Connection[Any]) -> Preparation | None:
    """For the active space; None before the first sync."""
    row = conn.execute(
        "SELECT (SELECT count(*) FROM embeddings e WHERE e.space_id = s.id), "
        "(SELECT count(*) FROM unit_vectors u WHERE u.space_id = s.id) "
        "FROM embedding_spaces s WHERE s.status = 'active'").fetchone()
    if row is None:
        return None
    passages, prepared = row
    return Preparation(prepared=min(prepared, passages), passages=passages)


class UnitWarmer:
    """Embeds the units of unprepared passages with `embedder` and stores them in `store`.

    `answers_busy` says whether answers are embedding units or just did (the warm waits while they are);
    `should_stop` ends a warm between two batches.
    """

    def __init__(self, db: Database, embedder: Embedder, store: UnitVectorStore, *,
                 answers_busy: Callable[[], bool] = lambda: False, batch_passages: int = BATCH_PASSAGES,
                 idle_poll_s: float = 300.0) -> None:
        self.db = db
        self.embedder = embedder
        self.store = store
        self.answers_busy = answers_busy
        self.batch_passages = batch_passages
        self.idle_poll_s = idle_poll_s
        self.prepared = 0  # passages this warmer prepared (all runs)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def warm(self, *, should_stop: Callable[[], bool] = lambda: False) -> int:
        """Prepare every unprepared passage (or until `should_stop`); returns how many. 0 when another
        process holds the warm."""
        with self.db.raw_connection() as lock_conn:
            if not lock_conn.execute("SELECT pg_try_advisory_lock(%s)", (WARM_LOCK_KEY,)).fetchone()[0]:  # type: ignore[index]
                log.info("answer sentences: another process is preparing them")
                return 0
            try:
                return self._warm(should_stop)
            finally:
                lock_conn.execute("SELECT pg_advisory_unlock(%s)", (WARM_LOCK_KEY,))

    def _warm(self, should_stop: Callable[[], bool]) -> int:
        done, after, started = 0, 0, time.monotonic()
        while not should_stop():
            batch = self._unprepared(after)
            if not batch:
                break
            after = batch[-1][0]
            while self.answers_busy() and not should_stop():
                time.sleep(0.05)
            texts = [t for _, ts in batch for t in ts]
            vectors = (self.embedder.embed_documents(texts) if texts
                       else np.zeros((0, self.embedder.dimension), dtype=np.float32))
            rows, at = [], 0
            for chunk_id, ts in batch:  # a passage without units gets an empty row: it is prepared
                rows.append((chunk_id, ts, vectors[at:at + len(ts)]))
                at += len(ts)
            self.store.write(rows)
            done += len(batch)
            self.prepared += len(batch)
        if done:
            log.info("answer sentences prepared for %d passages in %.0f s", done, time.monotonic() - started)
        return done

    def _unprepared(self, after: int) -> list[tuple[int, list[str]]]:
        with self.db.raw_connection() as conn:
            space = self.store.space_id(conn)
            if space is None:
                return []
            rows = conn.execute(
                "SELECT c.id, a.title, c.heading_path, c.text FROM embeddings e "
                "JOIN chunks c ON c.id = e.chunk_id JOIN articles a ON a.id = c.article_id "
                "WHERE e.space_id = %s AND c.id > %s AND NOT EXISTS (SELECT 1 FROM unit_vectors u "
                "WHERE u.chunk_id = c.id AND u.space_id = %s) ORDER BY c.id LIMIT %s",
                (space, after, space, self.batch_passages)).fetchall()
        return [(cid, passage_unit_texts(title, heading or [], text)) for cid, title, heading, text in rows]

    # --- in the background ------------------------------------------------------------------------

    def start(self) -> UnitWarmer:
        """Warm now, then after each `kick()` (a sync finished) and every `idle_poll_s` (a sync by another
        process, e.g. `kbbot sync`, finished)."""
        self._thread = threading.Thread(target=self._loop, name="unit-warm", daemon=True)
        self._thread.start()
        return self

    def kick(self) -> None:
        self._wake.set()

    def stop(self, timeout: float | None = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        _lowest_priority()
        while not self._stop.is_set():
            try:
                self.warm(should_stop=self._stop.is_set)
            except Exception:  # the warm is an optimisation: log, retry at the next kick or poll
                log.warning("preparing answer sentences failed (answers compute them meanwhile)", exc_info=True)
            self._wake.wait(self.idle_poll_s)
            self._wake.clear()


def _lowest_priority() -> None:
    """Linux schedules threads one by one: niceness 19 for this thread (and what it runs single-threaded)."""
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
