"""Fusion options of the search statement (retrieval/search.py FusionWeights) on the indexed demo KB: the
RRF constant and the article-level aggregation score passages as documented, after the audience filter."""

from __future__ import annotations

from collections import defaultdict

import pytest

from retrieval.search import FusionWeights, Searcher

QUESTIONS = ["How do I connect to the VPN from home?", "Which form do I use to expense a taxi to the airport?"]


@pytest.mark.parametrize("question", QUESTIONS)
def test_rrf_k_sets_the_reciprocal_rank_constant(demo_database, embedder, question: str) -> None:  # type: ignore[no-untyped-def]
    hits = Searcher(demo_database, embedder, weights=FusionWeights(dense=1.0, lexical=0.5, rrf_k=20)).search(
        question, k=10).hits
    assert hits
    for h in hits:
        dense = 1 / (20 + h.dense_rank) if h.dense_rank else 0
        expected = dense + (0.5 / (20 + h.lexical_rank) if h.lexical_rank else 0)
        assert h.score == pytest.approx(expected)


@pytest.mark.parametrize("question", QUESTIONS)
def test_article_aggregation_adds_a_share_of_the_articles_other_passages(demo_database, embedder,  # type: ignore[no-untyped-def]
                                                                         question: str) -> None:
    searcher = Searcher(demo_database, embedder)
    qvec = embedder.embed_query(question)
    # every fused candidate of a k=10 search (40 a branch)
    every = searcher.search_vector(question, qvec, k=200, candidates=40).hits
    by_article: dict[int, float] = defaultdict(float)
    for h in every:
        by_article[h.article_id] += h.score
    expected = sorted(((h.score + 0.5 * (by_article[h.article_id] - h.score), h.chunk_id) for h in every),
                      reverse=True)[:10]
    searcher.weights = FusionWeights(article=0.5)
    hits = searcher.search_vector(question, qvec, k=10).hits
    assert [h.score for h in hits] == pytest.approx([score for score, _ in expected])
    lone = {h.chunk_id for h in every if by_article[h.article_id] == h.score}
    assert any(h.chunk_id not in lone for h in hits)  # the question has articles with several passages
