"""Fusion options of the search statement (retrieval/search.py FusionWeights) on the indexed demo KB: the
RRF constant, the article-level aggregation and the score fusion (the default) score passages as documented,
after the audience filter."""

from __future__ import annotations

from collections import defaultdict

import pytest

from retrieval.search import FusionWeights, Searcher

QUESTIONS = ["How do I connect to the VPN from home?", "Which form do I use to expense a taxi to the airport?"]


@pytest.mark.parametrize("question", QUESTIONS)
def test_rrf_k_sets_the_reciprocal_rank_constant(demo_database, embedder, question: str) -> None:  # type: ignore[no-untyped-def]
    weights = FusionWeights(dense=1.0, lexical=0.5, rrf_k=20, method="rrf")
    hits = Searcher(demo_database, embedder, weights=weights).search(question, k=10).hits
    assert hits
    for h in hits:
        dense = 1 / (20 + h.dense_rank) if h.dense_rank else 0
        expected = dense + (0.5 / (20 + h.lexical_rank) if h.lexical_rank else 0)
        assert h.score == pytest.approx(expected)


@pytest.mark.parametrize("question", QUESTIONS)
def test_article_aggregation_adds_a_share_of_the_articles_other_passages(demo_database, embedder,  # type: ignore[no-untyped-def]
                                                                         question: str) -> None:
    searcher = Searcher(demo_database, embedder, weights=FusionWeights(method="rrf"))
    qvec = embedder.embed_query(question)
    # every fused candidate of a k=10 search (40 a branch)
    every = searcher.search_vector(question, qvec, k=200, candidates=40).hits
    by_article: dict[int, float] = defaultdict(float)
    for h in every:
        by_article[h.article_id] += h.score
    expected = sorted(((h.score + 0.5 * (by_article[h.article_id] - h.score), h.chunk_id) for h in every),
                      reverse=True)[:10]
    searcher.weights = FusionWeights(article=0.5, method="rrf")
    hits = searcher.search_vector(question, qvec, k=10).hits
    assert [h.score for h in hits] == pytest.approx([score for score, _ in expected])
    lone = {h.chunk_id for h in every if by_article[h.article_id] == h.score}
    assert any(h.chunk_id not in lone for h in hits)  # the question has articles with several passages


@pytest.mark.parametrize("question", QUESTIONS)
def test_score_fusion_combines_the_scaled_cosine_and_bm25(demo_database, embedder, question: str) -> None:  # type: ignore[no-untyped-def]
    weights = FusionWeights(method="scores", dense_share=0.6, score_head=5)
    searcher = Searcher(demo_database, embedder, weights=weights)
    qvec = embedder.embed_query(question)
    dense = Searcher(demo_database, embedder, mode="dense").search_vector(question, qvec, k=40, candidates=40).hits
    lo, hi = min(h.similarity for h in dense), max(h.similarity for h in dense)
    with demo_database.engine.connect() as conn:
        bm25 = dict(searcher.lexical.rank_scored(conn.connection.driver_connection, question, 40) or [])
    low, best = min(bm25.values()), max(bm25.values())
    hits = searcher.search_vector(question, qvec, k=10).hits
    assert len(hits) == 10
    for h in hits:
        # a passage only the lexical branch found keeps its own cosine, below the dense candidates' range
        lexical = (bm25[h.chunk_id] - low) / (best - low) if h.chunk_id in bm25 else 0.0
        assert h.score == pytest.approx(0.6 * (h.similarity - lo) / (hi - lo) + 0.4 * lexical, abs=1e-5)
    # ranges over each branch's first 40 passages: a deeper search scores the same passages alike
    deeper = {h.chunk_id: h.score for h in searcher.search_vector(question, qvec, k=50).hits}
    assert {h.chunk_id: h.score for h in hits} == pytest.approx({h.chunk_id: deeper[h.chunk_id] for h in hits})
    # the first five by that score, the others by reciprocal rank fusion (rrf_k 60)
    assert [h.score for h in hits[:5]] == sorted((h.score for h in hits), reverse=True)[:5]
    rrf = [sum(1 / (60 + r) for r in (h.dense_rank, h.lexical_rank) if r) for h in hits[5:]]
    assert rrf == sorted(rrf, reverse=True)
    # the search filtered by source scores BM25 exactly in SQL (every question term, where postings skip
    # the common ones): the same scale, the best passage of each branch at its share
    filtered = searcher.search_vector(question, qvec, k=10, sources=["demo"]).hits
    assert [h.score for h in filtered[:5]] == sorted((h.score for h in filtered), reverse=True)[:5]
    assert 0.6 <= filtered[0].score <= 1.0 + 1e-9
