"""Benchmark data at any size: the real aws-docs-qa chunks and vectors, then synthetic ones beyond them,
written through kbbot's own write path (`IndexStore.apply_articles`: one transaction per batch of
articles, chunk rows in one statement per article, the batch's vectors in one binary COPY).

Synthetic rows: copy c of real article a becomes article `a#c` with the same chunk texts (so the lexical
index grows with realistic term statistics). Its vectors are new points in the parent chunk's topic: the
real vectors are clustered (cosine k-means, 256 topics), and a copy of chunk p in topic t is
`normalise(mu_t + 0.8 (v_p - mu_t) + w1 (v_m1 - mu_t) + w2 (v_m2 - mu_t))` with m1, m2 random chunks of the
same topic and w ~ N(0, (1 - 0.8^2) / 2), which keeps each topic's covariance. Copies are distinct points
spread the way real passages of a topic are (their nearest-neighbour similarities are compared with the
real ones in BENCHMARKS.md), not isotropic noise around their parent: noise copies form tight clusters of
nearly equidistant points, where "the exact top 10" is decided by the noise and Recall@10 stops meaning
anything.

Real chunks belong to one source per AWS guide; synthetic ones to `<guide>-mirror`, which gives filter
selectivities from ~0.1% to ~20%.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import psycopg

from bench.common import AWS_DIR, AwsChunks, bench_server, libpq_url, scratch_database
from retrieval.index_store import IndexStore, PendingArticle
from retrieval.sync import EMBED_BATCH_CHUNKS
from retrieval.types import Article, ChunkDraft

if TYPE_CHECKING:
    from retrieval.db import Database

log = logging.getLogger("bench.scale")

RHO = 0.8  # correlation of a synthetic chunk's deviation from its topic with its parent's
CLUSTERS = 256


@dataclass
class ScaleData:
    vectors: np.ndarray  # (n, dim) float32, row i = synthetic or real chunk i
    parent: np.ndarray  # (n,) index of the real chunk each row derives from (itself for real rows)
    copy: np.ndarray  # (n,) 0 for real rows, 1.. for synthetic copies
    source: list[str]  # (n,) source name of each row


def _spherical_kmeans(x: np.ndarray, k: int, rng: np.random.Generator, iters: int = 8) -> np.ndarray:
    """Cluster assignment of each row (cosine k-means): the topics synthetic rows are drawn within."""
    centroids = x[rng.choice(len(x), size=k, replace=False)].copy()
    assign = np.zeros(len(x), dtype=np.int64)
    for _ in range(iters):
        assign = np.argmax(x @ centroids.T, axis=1)
        for c in range(k):
            members = x[assign == c]
            if len(members):
                mean = members.mean(axis=0)
                centroids[c] = mean / max(float(np.linalg.norm(mean)), 1e-12)
    return assign


def synthesize(data: AwsChunks, n: int, *, rho: float = RHO, clusters: int = CLUSTERS, seed: int = 7) -> ScaleData:
    """`n` rows: all real chunks first, then whole-corpus copies with new vectors drawn in each chunk's topic."""
    real = np.asarray(data.vectors, dtype=np.float32)
    n_real = len(real)
    rng = np.random.default_rng(seed)
    idx = np.arange(n)
    parent = idx % n_real
    copy = idx // n_real
    vectors = np.empty((n, real.shape[1]), dtype=np.float32)
    vectors[: min(n, n_real)] = real[: min(n, n_real)]
    if n > n_real:
        assign = _spherical_kmeans(real, min(clusters, n_real), rng)
        means = np.stack([real[assign == c].mean(axis=0) if (assign == c).any() else np.zeros(real.shape[1])
                          for c in range(int(assign.max()) + 1)]).astype(np.float32)
        order = np.argsort(assign, kind="stable")  # members of cluster c: order[start[c]:start[c] + size[c]]
        size = np.bincount(assign, minlength=len(means))
        start = np.concatenate([[0], np.cumsum(size)[:-1]])
        spread = np.sqrt((1.0 - rho**2) / 2.0)
        block = 65536
        for first in range(n_real, n, block):
            p = parent[first:min(n, first + block)]
            c = assign[p]
            mu = means[c]
            v = mu + rho * (real[p] - mu)
            for _ in range(2):  # two random topic-mates, so the new point keeps the topic's covariance
                mate = order[start[c] + (rng.random(len(p)) * size[c]).astype(np.int64)]
                v += rng.normal(0.0, spread, size=(len(p), 1)).astype(np.float32) * (real[mate] - mu)
            vectors[first:first + len(p)] = v / np.linalg.norm(v, axis=1, keepdims=True)
    guides = [c["article"].split("/", 1)[0] for c in data.chunks]
    source = [guides[p] if c == 0 else guides[p] + "-mirror" for p, c in zip(parent, copy, strict=True)]
    return ScaleData(vectors, parent, copy, source)


def _bodies() -> dict[str, tuple[str, str]]:
    out = {}
    with (AWS_DIR / "corpus.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            r = json.loads(line)
            out[r["_id"]] = (str(r.get("title") or r["_id"]), r["text"])
    return out


def _articles(data: AwsChunks, scale: ScaleData) -> Iterator[tuple[str, Article, list[int]]]:
    """(source, article, row indexes of its chunks) in load order."""
    bodies = _bodies()
    by_article: dict[tuple[str, int], list[int]] = defaultdict(list)
    for row, (p, c) in enumerate(zip(scale.parent, scale.copy, strict=True)):
        by_article[(data.chunks[p]["article"], int(c))].append(row)
    for (ext, c), rows in by_article.items():
        title, body = bodies[ext]
        external_id = ext if c == 0 else f"{ext}#{c}"
        yield scale.source[rows[0]], Article(external_id=external_id, title=title, text=body), rows


def load_index(conninfo: str, data: AwsChunks, scale: ScaleData, space_id: int,
               *, progress_every: int = 100_000) -> dict[str, float]:
    """Write every row with IndexStore; returns rows, seconds and rows/s of the write path alone."""
    chunk_rows = data.chunks
    source_ids: dict[str, int] = {}
    written = 0
    next_report = progress_every
    started = time.perf_counter()
    with psycopg.connect(conninfo, autocommit=True) as conn:
        store = IndexStore(conn)
        # As a first sync does: no keyword index while loading (the caller builds it, `ensure_keyword_index`),
        # and one transaction per batch of EMBED_BATCH_CHUNKS passages.
        store.drop_keyword_index_for_bulk_load()
        batch: list[PendingArticle] = []
        for source, article, rows in _articles(data, scale):
            if source not in source_ids:
                source_ids[source] = store.upsert_source(source, "bench", {})
            drafts = []
            for row in rows:
                c = chunk_rows[scale.parent[row]]
                drafts.append(ChunkDraft(c["ordinal"], c["text"], tuple(c["heading_path"]), c["char_start"],
                                         c["char_end"], c["token_count"]))
            batch.append(PendingArticle(
                source_ids[source], article, f"bench:{article.external_id}", space_id, drafts,
                [None] * len(drafts), {i: scale.vectors[row] for i, row in enumerate(rows)},
            ))
            written += len(rows)
            if sum(len(p.drafts) for p in batch) >= EMBED_BATCH_CHUNKS:
                store.apply_articles(batch)
                batch = []
            if written >= next_report:
                log.info("loaded %d rows (%.0f rows/s)", written, written / (time.perf_counter() - started))
                next_report += progress_every
        store.apply_articles(batch)
        seconds = time.perf_counter() - started
    return {"rows": written, "seconds": round(seconds, 1), "rows_per_s": round(written / seconds)}


def finish_index(db, conninfo: str, space, *, vacuum: bool = False) -> None:  # type: ignore[no-untyped-def]
    """After `load_index`, what a first sync does next: the HNSW build (cores - 1 parallel workers), the GIN
    keyword index dropped for the load, the BM25 lexicon, and fresh planner statistics."""
    from retrieval.lexical_index import LexicalIndex
    from retrieval.spaces import HnswOptions, ensure_hnsw_index

    with db.engine.begin() as conn:
        ensure_hnsw_index(conn, space, HnswOptions(build_workers=max(0, (os.cpu_count() or 2) - 1)))
    with psycopg.connect(conninfo, autocommit=True) as conn:
        IndexStore(conn).ensure_keyword_index()
        LexicalIndex().refresh(conn)
        conn.execute("VACUUM ANALYZE" if vacuum else "ANALYZE")


@contextlib.contextmanager
def real_index(data: AwsChunks, prefix: str) -> Iterator[tuple[Database, str]]:
    """(Database, libpq conninfo) of a scratch database on the benchmark server holding every real chunk of
    `data` with its cached vector, indexed as a first sync leaves it; closed and dropped after the block."""
    from retrieval.db import Database
    from retrieval.spaces import create_space

    with scratch_database(bench_server(), prefix) as url:
        conninfo = libpq_url(url)
        db = Database.from_url(url.set(drivername="postgresql+psycopg").render_as_string(hide_password=False))
        try:
            with db.engine.begin() as conn:
                space = create_space(conn, "local", "all-MiniLM-L6-v2", 384, "active")
            load_index(conninfo, data, synthesize(data, len(data.chunks)), space.id)
            finish_index(db, conninfo, space, vacuum=True)
            yield db, conninfo
        finally:
            db.close()


def row_of_chunk(conninfo: str, data: AwsChunks, scale: ScaleData) -> dict[int, int]:
    """Database chunk id -> row index of `scale`, to score search results against exact neighbours."""
    key_to_row = {}
    for row, (p, c) in enumerate(zip(scale.parent, scale.copy, strict=True)):
        ext = data.chunks[p]["article"]
        key_to_row[(ext if c == 0 else f"{ext}#{c}", data.chunks[p]["ordinal"])] = row
    with psycopg.connect(conninfo) as conn:
        rows = conn.execute(
            "SELECT c.id, a.external_id, c.ordinal FROM chunks c JOIN articles a ON a.id = c.article_id"
        ).fetchall()
    return {cid: key_to_row[(ext, ordinal)] for cid, ext, ordinal in rows}
