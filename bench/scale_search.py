"""kbbot's search at 100k and 1M chunks on one PostgreSQL: HNSW build time and size, dense latency and
Recall@10 against exact search across hnsw.ef_search, `vector` vs `halfvec` storage, filtered search by
source (pgvector 0.8 iterative scans), hybrid latency. Every query goes through `Searcher.search_vector`,
kbbot's own one-statement SQL; the question embeddings are the 100 real aws-docs-qa questions.

    nice -n 10 .venv/bin/python -m bench.scale_search --chunks 100000 [--storage vector,halfvec]
        [--ef 40,64,100,200,400] [--build-memory-mb 4096] [--json-out bench/results/scale_100k.json]

Rows beyond the ~40k real chunks are synthetic (see bench/scale_data.py). The database is created on the
benchmark's embedded PostgreSQL (~/.cache/kbbot-bench/pg) and dropped at the end, also on failure.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import psycopg

from bench.common import (
    CACHE_DIR,
    bench_server,
    drop_leftovers,
    libpq_url,
    load_aws,
    load_aws_partial,
    machine,
    scratch_database,
    summarize_ms,
)
from bench.scale_data import CLUSTERS, RHO, load_index, row_of_chunk, synthesize
from retrieval.db import Database
from retrieval.errors import ConfigError
from retrieval.index_store import IndexStore
from retrieval.lexical_index import LexicalIndex
from retrieval.search import Searcher, _vector_literal
from retrieval.spaces import HnswOptions, build_memory_mb, create_space, ensure_hnsw_index

log = logging.getLogger("bench.scale")
K = 10
# Measured at 1M: 3.1 GB of tables (text, tsvector, GIN, vectors) + 2.0 GB of HNSW = 5.1 KB a row; the
# margin covers a second (halfvec) index during its build and the WAL.
BYTES_PER_ROW_ON_DISK = 9_000


class PrecomputedQuestions:
    """The searcher's embedder slot: the vectors are precomputed, so only the identity is needed."""

    provider = "local"
    model = "all-MiniLM-L6-v2"
    dimension = 384

    def embed_query(self, text: str) -> np.ndarray:
        raise AssertionError("benchmarks pass precomputed question vectors")


def exact_top(vectors: np.ndarray, queries: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Cosine distances (n_queries, n_rows) would not fit at 1M; keep each query's 10th-best distance."""
    kth = np.empty(len(queries), dtype=np.float32)
    for i, q in enumerate(queries):
        dist = 1.0 - vectors @ q
        if mask is not None:
            dist = np.where(mask, dist, np.inf)
        kth[i] = np.partition(dist, K - 1)[K - 1]
    return kth


def recall_at_k(rows: list[int], q: np.ndarray, kth: float, vectors: np.ndarray) -> float:
    """Share of the k exact neighbours found; a result tied with the k-th exact distance counts."""
    if not rows:
        return 0.0
    dist = 1.0 - vectors[rows] @ q
    return min(K, int((dist <= kth + 1e-5).sum())) / K


def check_fits(n: int, storages: list[str], options: HnswOptions) -> None:
    """Refuse up front (before a long load) what cannot build in memory or fit on disk."""
    for storage in storages:
        try:
            build_memory_mb(n, 384, dataclasses.replace(options, storage=storage))  # type: ignore[arg-type]
        except ConfigError as exc:
            raise SystemExit(f"{exc} (for this benchmark: --build-memory-mb)") from exc
    need = n * BYTES_PER_ROW_ON_DISK
    free = shutil.disk_usage(CACHE_DIR).free
    if need > free:
        raise SystemExit(f"{n:,} chunks need about {need / 2**30:.1f} GB of disk in {CACHE_DIR} but "
                         f"{free / 2**30:.1f} GB are free: set KBBOT_BENCH_CACHE to a larger disk.")


def measure(searcher: Searcher, queries: list[dict], qvecs: np.ndarray, *, mode: str,
            sources: list[str] | None = None) -> tuple[list[float], list[list[int]]]:
    times, results = [], []
    for q, v in zip(queries, qvecs, strict=True):
        res = searcher.search_vector(q["text"], v, k=K, mode=mode, sources=sources)  # type: ignore[arg-type]
        times.append(res.timings_ms["search"])
        results.append([h.chunk_id for h in res.hits])
    return times, results


def rows_without_iterative_scan(conninfo: str, space, source_id: int, qvecs: np.ndarray, ef: int) -> float:  # type: ignore[no-untyped-def]
    """Mean rows a filtered HNSW query returns with iterative scans off (what pgvector < 0.8 did)."""
    sql = (f"SELECT count(*) FROM (SELECT e.chunk_id FROM embeddings e WHERE e.space_id = {space.id} "
           f"AND e.source_id = %s ORDER BY {space.vector_expr('e.')} <=> %s::{space.index_type} LIMIT 40) t")
    counts = []
    with psycopg.connect(conninfo) as conn:
        conn.execute(f"SET hnsw.ef_search = {int(ef)}")
        conn.execute("SET hnsw.iterative_scan = off")
        for v in qvecs:
            counts.append(conn.execute(sql, (source_id, _vector_literal(v))).fetchone()[0])
    return float(np.mean(counts))


def filtered_plan(db: Database, space, source_id: int, qvec: np.ndarray) -> str:  # type: ignore[no-untyped-def]
    """Which access path the planner takes for kbbot's filtered dense query: hnsw, btree or seqscan."""
    from sqlalchemy import text

    from retrieval.search import FusionWeights, build_search_sql, filter_is_small

    params = {"qvec": np.asarray(qvec, dtype=np.float32), "qtext": "", "source_ids": [source_id]}
    with db.engine.begin() as conn:
        driver = conn.connection.driver_connection
        exact = filter_is_small(driver, space, [source_id])
        sql = build_search_sql(space, "dense", FusionWeights(), filtered=True, exact=exact, k=K)
        conn.execute(text("SET LOCAL hnsw.iterative_scan = relaxed_order"))
        plan = "\n".join(r[0] for r in driver.execute("EXPLAIN " + sql, params).fetchall())
    if space.index_name in plan:
        return "hnsw"
    kind = "btree" if "embeddings_space_source_idx" in plan else "seqscan"
    return f"exact ({kind})" if exact else kind


def filter_sources(conninfo: str) -> list[tuple[str, int, float]]:
    """Largest source, the one nearest 1% of rows, and the smallest: (name, id, share)."""
    with psycopg.connect(conninfo) as conn:
        rows = conn.execute(
            "SELECT s.name, s.id, count(*)::float / sum(count(*)) OVER () FROM chunks c "
            "JOIN sources s ON s.id = c.source_id GROUP BY s.name, s.id ORDER BY 3 DESC"
        ).fetchall()
    picked = {rows[0], min(rows, key=lambda r: abs(r[2] - 0.01)), rows[-1]}
    return sorted(picked, key=lambda r: -r[2])


def exact_in_postgres_ms(conninfo: str, space, qvecs: np.ndarray) -> list[float]:  # type: ignore[no-untyped-def]
    sql = (f"SELECT e.chunk_id FROM embeddings e WHERE e.space_id = {space.id} "
           f"ORDER BY (e.embedding::vector(384)) <=> %s::vector(384) LIMIT {K}")
    times = []
    with psycopg.connect(conninfo) as conn:
        conn.execute("SET enable_indexscan = off")
        for v in qvecs:
            started = time.perf_counter()
            conn.execute(sql, (_vector_literal(v),)).fetchall()
            times.append((time.perf_counter() - started) * 1000)
    return times


def run(args: argparse.Namespace) -> dict:
    storages = args.storage.split(",")
    options = HnswOptions(m=args.m, ef_construction=args.ef_construction, build_memory_mb=args.build_memory_mb,
                          build_workers=args.workers if args.workers is not None else (os.cpu_count() or 2) - 1)
    check_fits(args.chunks, storages, options)
    data = load_aws_partial() if args.partial_real else load_aws()
    log.info("%d real chunks (%s)", len(data.chunks), "partial cache" if args.partial_real else "full cache")
    scale = synthesize(data, args.chunks)
    queries, qvecs = data.queries, np.asarray(data.query_vectors)
    server = bench_server()
    for name in drop_leftovers(server, ("scale",)):
        log.warning("dropped %s left by an interrupted run", name)
    report: dict = {"chunks": args.chunks, "m": args.m, "ef_construction": args.ef_construction,
                    "real_chunks": len(data.chunks), "machine": machine(),
                    "synthetic": {"rho": RHO, "topics": CLUSTERS}, "queries": len(queries), "storages": {}}
    with scratch_database(server, "scale", keep=args.keep) as url:
        conninfo = libpq_url(url)
        db = Database.from_url(url.set(drivername="postgresql+psycopg").render_as_string(hide_password=False))
        with db.engine.begin() as conn:
            space = create_space(conn, "local", "all-MiniLM-L6-v2", 384, "active")
        log.info("loading %d rows", args.chunks)
        report["load"] = load_index(conninfo, data, scale, space.id)
        started = time.perf_counter()
        with psycopg.connect(conninfo, autocommit=True) as conn:
            IndexStore(conn).ensure_keyword_index()  # dropped for the bulk load
            LexicalIndex().refresh(conn)
            report["lexicon_refresh_s"] = round(time.perf_counter() - started, 1)
            conn.execute("VACUUM ANALYZE")
            report["table_mb"] = conn.execute(
                "SELECT (pg_total_relation_size('embeddings') + pg_total_relation_size('chunks')) / 2^20"
            ).fetchone()[0]
        log.info("load done: %s", report["load"])
        chunk_row = row_of_chunk(conninfo, data, scale)
        kth = exact_top(scale.vectors, qvecs)
        picked = filter_sources(conninfo)
        source_arr = np.asarray(scale.source)
        filtered_kth = {name: exact_top(scale.vectors, qvecs, source_arr == name) for name, _, _ in picked}
        report["exact_in_postgres_ms"] = summarize_ms(exact_in_postgres_ms(conninfo, space, qvecs[:10]))
        searcher = Searcher(db, PrecomputedQuestions(), mode="dense")  # type: ignore[arg-type]

        def recall(results: list[list[int]], kths: np.ndarray) -> float:
            return round(float(np.mean([
                recall_at_k([chunk_row[c] for c in ids], q, t, scale.vectors)
                for ids, q, t in zip(results, qvecs, kths, strict=True)])), 4)

        for storage in storages:
            opts = dataclasses.replace(options, storage=storage)
            started = time.perf_counter()
            with db.engine.begin() as conn:
                ensure_hnsw_index(conn, space, opts)
            out: dict = {"build_s": round(time.perf_counter() - started, 1)}
            searcher.space(refresh=True)
            with psycopg.connect(conninfo) as conn:
                out["index_mb"] = round(conn.execute(
                    "SELECT pg_relation_size(%s) / 2^20", (space.index_name,)).fetchone()[0], 1)
            log.info("%s index built in %.1f s (%.0f MB)", storage, out["build_s"], out["index_mb"])
            searcher.ef_search = 100
            measure(searcher, queries, qvecs, mode="dense")  # warm the caches once
            out["dense"] = {}
            for ef in args.ef:
                searcher.ef_search = ef
                times, results = measure(searcher, queries, qvecs, mode="dense")
                out["dense"][ef] = {**summarize_ms(times), "recall@10": recall(results, kth)}
                log.info("%s ef_search=%d: %s", storage, ef, out["dense"][ef])
            searcher.ef_search = 100
            times, _ = measure(searcher, queries, qvecs, mode="hybrid")
            out["hybrid_ef100"] = summarize_ms(times)
            variants = [("filtered_ef100", None)]
            if storage == storages[0]:
                # The same queries once more without migration 0003's B-tree on the filter column: HNSW's
                # iterative scan alone, as before it existed.
                variants.append(("filtered_ef100_without_source_btree",
                                 "DROP INDEX embeddings_space_source_idx"))
            for key, ddl in variants:
                if ddl:
                    with psycopg.connect(conninfo, autocommit=True) as conn:
                        conn.execute(ddl)
                        conn.execute("ANALYZE embeddings")
                out[key] = {}
                for name, source_id, share in picked:
                    times, results = measure(searcher, queries, qvecs, mode="dense", sources=[name])
                    out[key][name] = {
                        "share": round(share, 4), **summarize_ms(times),
                        "full_results": round(float(np.mean([len(r) == K for r in results])), 3),
                        "recall@10": recall(results, filtered_kth[name]),
                        "plan": filtered_plan(db, searcher.space(), source_id, qvecs[0]),
                    }
                    if ddl:
                        out[key][name]["rows_without_iterative_scan"] = rows_without_iterative_scan(
                            conninfo, searcher.space(), source_id, qvecs, 100)
                    log.info("%s %s %s: %s", storage, key, name, out[key][name])
                if ddl:
                    with psycopg.connect(conninfo, autocommit=True) as conn:
                        conn.execute("CREATE INDEX embeddings_space_source_idx ON embeddings (space_id, source_id)")
            report["storages"][storage] = out
        db.close()
    return report


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--storage", default="vector,halfvec")
    parser.add_argument("--ef", type=lambda s: [int(x) for x in s.split(",")], default=[40, 64, 100, 200, 400, 800])
    parser.add_argument("--build-memory-mb", type=int, default=4096)
    parser.add_argument("--m", type=int, default=16, help="HNSW m (KBBOT_HNSW_M)")
    parser.add_argument("--ef-construction", type=int, default=64, help="HNSW ef_construction")
    parser.add_argument("--workers", type=int, default=None, help="parallel build workers (default cores-1)")
    parser.add_argument("--keep", action="store_true", help="keep the database (for debugging)")
    parser.add_argument("--partial-real", action="store_true",
                        help="use the real vectors embedded so far while the cache is still being built")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    report = run(args)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(text + "\n")


if __name__ == "__main__":
    sys.exit(main())
