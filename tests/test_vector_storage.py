"""HNSW index options (halfvec storage, m/ef_construction, build memory) and filtered search with
iterative scans, on the real embedded PostgreSQL+pgvector with the demo KB indexed."""

from __future__ import annotations

import os

import numpy as np
import pytest
from sqlalchemy import text

from retrieval.errors import ConfigError
from retrieval.index_store import IndexStore, PendingArticle
from retrieval.search import FusionWeights, Searcher, build_search_sql
from retrieval.spaces import (
    HnswOptions,
    active_space,
    build_memory_mb,
    ensure_hnsw_index,
    estimate_hnsw_build_bytes,
    index_options,
)
from retrieval.types import Article, ChunkDraft


def _plan(db, space, qvec: np.ndarray) -> str:  # type: ignore[no-untyped-def]
    sql = build_search_sql(space, "dense", FusionWeights(), filtered=False, k=5)
    params = {"qvec": qvec, "qtext": ""}
    with db.engine.begin() as conn:
        # The demo index is a few hundred rows, where a sequential scan is as cheap as the index and the
        # planner's pick flips with statistics; with scans and sorts off, the plan shows whether the query's vector
        # expression matches the index at all, which is what these tests are about.
        conn.execute(text("SET LOCAL enable_seqscan = off"))
        conn.execute(text("SET LOCAL enable_sort = off"))
        driver = conn.connection.driver_connection
        return "\n".join(r[0] for r in driver.execute("EXPLAIN " + sql, params).fetchall())


def test_halfvec_storage_rebuilds_the_index_and_search_uses_it(demo_database, embedder) -> None:  # type: ignore[no-untyped-def]
    searcher = Searcher(demo_database, embedder, mode="dense")
    before = [h.chunk_id for h in searcher.search("how do I connect to the VPN", k=5).hits]
    with demo_database.engine.begin() as conn:
        space = active_space(conn)
        assert space is not None and space.storage == "vector"
        assert ensure_hnsw_index(conn, space, HnswOptions(storage="halfvec")) is True
        assert ensure_hnsw_index(conn, space, HnswOptions(storage="halfvec")) is False  # already so
    with demo_database.engine.begin() as conn:
        space = active_space(conn)
        assert space is not None and space.storage == "halfvec"
        assert index_options(conn, space) == HnswOptions(storage="halfvec")
        definition = conn.execute(text("SELECT indexdef FROM pg_indexes WHERE indexname = :n"),
                                  {"n": space.index_name}).scalar_one()
    assert "halfvec(384)" in definition and "halfvec_cosine_ops" in definition

    assert space.index_name in _plan(demo_database, space, embedder.embed_query("VPN"))  # queries hit it
    hits = Searcher(demo_database, embedder, mode="dense").search("how do I connect to the VPN", k=5).hits
    assert hits[0].external_id == "it/vpn.md"
    # 16-bit storage only perturbs the order among near ties: the same passages come back.
    assert len(set(before) & {h.chunk_id for h in hits}) >= 4
    assert hits[0].similarity is not None and hits[0].similarity > 0.5  # scored with full precision


def test_changing_m_rebuilds_and_a_vector_rebuild_goes_back(demo_database) -> None:  # type: ignore[no-untyped-def]
    with demo_database.engine.begin() as conn:
        space = active_space(conn)
        assert space is not None
        assert ensure_hnsw_index(conn, space, HnswOptions(m=8, ef_construction=32)) is True
        assert index_options(conn, space) == HnswOptions(m=8, ef_construction=32)
        assert ensure_hnsw_index(conn, space, HnswOptions()) is True
        assert index_options(conn, space) == HnswOptions()
        names = conn.execute(text("SELECT indexname FROM pg_indexes WHERE tablename = 'embeddings' "
                                  "AND indexdef LIKE '%hnsw%'")).scalars().all()
    assert names == [space.index_name]  # the swap left no second index behind


def test_build_memory_is_sized_to_the_graph_and_refused_when_too_small() -> None:
    # Calibrated against pgvector's "graph no longer fits" notice: 24 MB held 11,171 384-dim vectors
    # (2,253 bytes each) and 16,964 as halfvec (1,483 bytes): the estimate must not be below either.
    assert 2253 <= estimate_hnsw_build_bytes(1, 384) <= 2253 * 1.1
    assert 1483 <= estimate_hnsw_build_bytes(1, 384, storage="halfvec") <= 1483 * 1.1
    assert 64 <= build_memory_mb(1_000, 384, HnswOptions()) < 70  # small KBs: pgvector-friendly floor
    assert 2_400 < build_memory_mb(1_000_000, 384, HnswOptions()) < 3_000
    with pytest.raises(ConfigError) as err:
        build_memory_mb(1_000_000, 1536, HnswOptions(build_memory_mb=4096))
    message = str(err.value)
    assert "KBBOT_HNSW_BUILD_MEMORY_MB" in message and "KBBOT_VECTOR_STORAGE=halfvec" in message
    needed = int(message.split("KBBOT_HNSW_BUILD_MEMORY_MB=")[1].split(" ")[0])
    assert build_memory_mb(1_000_000, 1536, HnswOptions(build_memory_mb=needed)) == needed


def test_a_build_that_cannot_fit_fails_before_touching_the_index(demo_database) -> None:  # type: ignore[no-untyped-def]
    with demo_database.engine.begin() as conn:
        space = active_space(conn)
        assert space is not None
        with pytest.raises(ConfigError, match="KBBOT_HNSW_BUILD_MEMORY_MB"):
            ensure_hnsw_index(conn, space, HnswOptions(storage="halfvec", build_memory_mb=32))
    with demo_database.engine.connect() as conn:
        space = active_space(conn)
        assert space is not None and index_options(conn, space) == HnswOptions()  # old index intact


def test_options_from_settings(make_settings, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    def options(**overrides: object) -> HnswOptions:
        settings = make_settings(**overrides)
        return HnswOptions.from_settings(settings.index, embedded=settings.storage.embedded)

    remote = options(vector_storage="halfvec", hnsw_m=24)
    assert (remote.storage, remote.m, remote.build_workers) == ("halfvec", 24, None)  # server decides
    # The embedded server shares this machine: one core is left to the rest, at most 7 workers.
    for cores, workers in ((1, 0), (2, 1), (4, 3), (16, 7), (None, 1)):
        monkeypatch.setattr(os, "cpu_count", lambda cores=cores: cores)
        assert options(database_url=None).build_workers == workers
    assert options(hnsw_build_workers=3).build_workers == 3


@pytest.mark.parametrize("exact_max_rows", [20000, 0], ids=["exact-small-source", "iterative-hnsw-scan"])
def test_filtered_search_returns_full_results_past_ef_search(demo_database, embedder,  # type: ignore[no-untyped-def]
                                                             exact_max_rows: int) -> None:
    """A small source under a large one: without iterative scans HNSW would return only the few of its
    ef_search candidates that belong to the filter; kbbot must still return k hits, in exact order."""
    rng = np.random.default_rng(3)
    question = "how do I connect to the VPN"
    qvec = embedder.embed_query(question)
    with demo_database.raw_connection() as pg:
        store = IndexStore(pg)
        space_id = pg.execute("SELECT id FROM embedding_spaces WHERE status = 'active'").fetchone()[0]
        source_id = store.upsert_source("bulk", "bench", {})
        for a in range(20):
            # Vectors close to the question, so the bulk source crowds the demo KB out of HNSW's candidates.
            vecs = qvec + rng.normal(0, 0.02, size=(100, len(qvec))).astype(np.float32)
            vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
            drafts = [ChunkDraft(i, f"bulk passage {a}-{i}", (), 0, 10, 3) for i in range(100)]
            store.apply_articles([PendingArticle(source_id, Article(f"bulk-{a}", f"Bulk {a}", "x" * 10), f"h{a}",
                                                 space_id, drafts, [None] * 100, dict(enumerate(vecs)))])
        pg.execute("ANALYZE embeddings")
        exact = [r[0] for r in pg.execute(
            "SELECT e.chunk_id FROM embeddings e JOIN sources s ON s.id = e.source_id WHERE s.name = 'demo' "
            "ORDER BY e.embedding <=> %s::vector LIMIT 10", ("[" + ",".join(map(str, qvec.tolist())) + "]",)
        ).fetchall()]
    # both ways to a full list
    searcher = Searcher(demo_database, embedder, mode="dense", ef_search=40, exact_filter_max_rows=exact_max_rows)
    unfiltered = searcher.search(question, k=10).hits
    assert {h.source for h in unfiltered} == {"bulk"}  # the demo KB is outside the plain top 40
    hits = searcher.search(question, k=10, sources=["demo"]).hits
    assert len(hits) == 10 and {h.source for h in hits} == {"demo"}
    assert [h.chunk_id for h in hits] == exact
