"""Impact-ordered BM25 postings (retrieval/postings.py) on the indexed demo KB (real PostgreSQL): the ranking
equals BM25 computed independently from the chunks' tsvectors, a truncated list keeps each term's best chunks,
and a lexicon refreshed before postings existed still answers and is filled by the next sync."""

from __future__ import annotations

import logging
import math
from collections import defaultdict

import pytest
from sqlalchemy import text

import retrieval.search as search_module
from retrieval.index_store import IndexStore
from retrieval.postings import BM25_B, BM25_K1, COMMON_TERM_SHARE
from retrieval.search import Searcher

QUESTIONS = [
    "how do I connect to the VPN",
    "Which form do I use to expense a taxi to the airport?",
    "How many unused vacation days can I carry over into next year?",
]


def _term_scores(db, question: str) -> dict[str, dict[int, float]]:  # type: ignore[no-untyped-def]
    """Each selective question term's (or the two rarest terms') BM25 contribution per chunk, computed from
    the tsvectors themselves."""
    with db.engine.connect() as conn:
        doc_count, avg_len = conn.execute(text("SELECT doc_count, avg_doc_len FROM lexicon_stats")).one()
        freqs = dict(conn.execute(text(
            "SELECT l.lexeme, l.doc_freq FROM unnest(tsvector_to_array(to_tsvector('english', :q))) q(lexeme) "
            "JOIN lexicon l ON l.lexeme = q.lexeme"), {"q": question}).all())
        rows = conn.execute(text(
            "SELECT c.id, length(c.tsv), u.lexeme, cardinality(u.positions) FROM chunks c, unnest(c.tsv) u "
            "WHERE u.lexeme = ANY(:terms)"), {"terms": list(freqs)}).all()
    rarest_two = sorted(freqs, key=lambda lexeme: (freqs[lexeme], lexeme))[:2]
    scores: dict[str, dict[int, float]] = defaultdict(dict)
    for chunk_id, doc_len, lexeme, tf in rows:
        df = freqs[lexeme]
        if df > doc_count * COMMON_TERM_SHARE and lexeme not in rarest_two:
            continue
        idf = math.log(1 + (doc_count - df + 0.5) / (df + 0.5))
        norm = 1 - BM25_B + BM25_B * doc_len / max(avg_len, 1)
        scores[lexeme][chunk_id] = idf * tf * (BM25_K1 + 1) / (tf + BM25_K1 * norm)
    return scores


def _reference_ranking(db, question: str) -> list[int]:  # type: ignore[no-untyped-def]
    totals: dict[int, float] = defaultdict(float)
    for per_chunk in _term_scores(db, question).values():
        for chunk_id, score in per_chunk.items():
            totals[chunk_id] += score
    return sorted(totals, key=lambda c: (-totals[c], c))


@pytest.mark.parametrize("question", QUESTIONS)
def test_postings_rank_like_bm25_over_the_tsvectors(demo_database, embedder, question: str) -> None:  # type: ignore[no-untyped-def]
    hits = Searcher(demo_database, embedder, mode="lexical").search(question, k=10).hits
    reference = _reference_ranking(demo_database, question)
    assert len(reference) >= 3
    assert [h.chunk_id for h in hits] == reference[:10]
    assert [h.lexical_rank for h in hits] == list(range(1, len(hits) + 1))


def test_a_truncated_list_keeps_each_terms_best_chunk(demo_database, embedder,  # type: ignore[no-untyped-def]
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    question = QUESTIONS[1]
    best = {lexeme: min(per_chunk, key=lambda c: (-per_chunk[c], c))
            for lexeme, per_chunk in _term_scores(demo_database, question).items()}
    assert len(best) >= 3
    monkeypatch.setattr(search_module, "POSTINGS_DEPTH", 1)
    hits = Searcher(demo_database, embedder, mode="lexical").search(question, k=10).hits
    assert hits and {h.chunk_id for h in hits} <= set(best.values())
    assert len(hits) == len(set(best.values()))


def test_a_lexicon_without_postings_answers_and_the_next_sync_fills_it(  # type: ignore[no-untyped-def]
        demo_database, embedder, caplog: pytest.LogCaptureFixture) -> None:
    from retrieval.sources import FilesystemSource
    from retrieval.sync import Indexer
    from tests.conftest import DEMO_KB

    with demo_database.engine.begin() as conn:  # as migration 0005 leaves an existing lexicon
        conn.execute(text("UPDATE lexicon SET postings = NULL"))
    searcher = Searcher(demo_database, embedder)
    with caplog.at_level(logging.INFO, logger="retrieval.search"):
        for mode in ("lexical", "hybrid"):
            hits = searcher.search("how do I connect to the VPN", k=5, mode=mode).hits  # type: ignore[arg-type]
            assert hits[0].external_id == "it/vpn.md" and hits[0].lexical_rank is not None
    assert "no postings yet" in caplog.text
    with demo_database.raw_connection() as pg:
        assert not IndexStore(pg).lexicon_ready()

    run = Indexer(demo_database, embedder, chunk_max_tokens=200).sync([FilesystemSource("demo", DEMO_KB)])
    assert (run.added, run.updated, run.removed) == (0, 0, 0)
    with demo_database.raw_connection() as pg:
        assert IndexStore(pg).lexicon_ready()
    hits = searcher.search(QUESTIONS[0], k=10, mode="lexical").hits
    assert [h.chunk_id for h in hits] == _reference_ranking(demo_database, QUESTIONS[0])[:10]
