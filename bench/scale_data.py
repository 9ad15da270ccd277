"""Benchmark data at any size: the real aws-docs-qa chunks and vectors, then synthetic ones beyond them,
written through kbbot's own write path (`IndexStore.apply_article`: one transaction per article, chunk
rows in one statement, vectors by binary COPY).

Synthetic rows: copy c of real article a becomes article `a#c` with the same chunk texts (so the lexical
index grows with realistic term statistics) and vectors `normalise(v + N(0, sigma^2 I))`. With sigma=0.03
over 384 dimensions a copy has a cosine of 0.86 to its parent, which is how close a real chunk of this
corpus is to its nearest other chunk (median 0.87, measured on the first 3,489 real chunks): every copy is
a distinct, plausible neighbour, and the clusters of copies make HNSW's job harder rather than easier.

Real chunks belong to one source per AWS guide; synthetic ones to `<guide>-mirror`, which gives filter
selectivities from ~0.1% to ~20%.
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import psycopg
from common import AWS_DIR, AwsChunks

from retrieval.index_store import IndexStore
from retrieval.types import Article, ChunkDraft

log = logging.getLogger("bench.scale")

NOISE_SIGMA = 0.03


@dataclass
class ScaleData:
    vectors: np.ndarray  # (n, dim) float32, row i = synthetic or real chunk i
    parent: np.ndarray  # (n,) index of the real chunk each row derives from (itself for real rows)
    copy: np.ndarray  # (n,) 0 for real rows, 1.. for synthetic copies
    source: list[str]  # (n,) source name of each row


def synthesize(data: AwsChunks, n: int, *, sigma: float = NOISE_SIGMA, seed: int = 7) -> ScaleData:
    """`n` rows: all real chunks first, then whole-corpus copies with noisy vectors, cut at `n`."""
    real = np.asarray(data.vectors, dtype=np.float32)
    n_real = len(real)
    idx = np.arange(n)
    parent = idx % n_real
    copy = idx // n_real
    vectors = np.empty((n, real.shape[1]), dtype=np.float32)
    rng = np.random.default_rng(seed)
    block = 65536
    for start in range(0, n, block):
        rows = slice(start, min(n, start + block))
        v = real[parent[rows]].copy()
        synthetic = copy[rows] > 0
        if synthetic.any():
            v[synthetic] += rng.normal(0.0, sigma, size=(int(synthetic.sum()), real.shape[1])).astype(np.float32)
            v[synthetic] /= np.linalg.norm(v[synthetic], axis=1, keepdims=True)
        vectors[rows] = v
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
        for source, article, rows in _articles(data, scale):
            if source not in source_ids:
                source_ids[source] = store.upsert_source(source, "bench", {})
            drafts = []
            for row in rows:
                c = chunk_rows[scale.parent[row]]
                drafts.append(ChunkDraft(c["ordinal"], c["text"], tuple(c["heading_path"]), c["char_start"],
                                         c["char_end"], c["token_count"]))
            store.apply_article(
                source_id=source_ids[source], article=article, content_hash=f"bench:{article.external_id}",
                space_id=space_id, drafts=drafts, reuse=[None] * len(drafts),
                vectors={i: scale.vectors[row] for i, row in enumerate(rows)},
            )
            written += len(rows)
            if written >= next_report:
                log.info("loaded %d rows (%.0f rows/s)", written, written / (time.perf_counter() - started))
                next_report += progress_every
        seconds = time.perf_counter() - started
    return {"rows": written, "seconds": round(seconds, 1), "rows_per_s": round(written / seconds)}


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
