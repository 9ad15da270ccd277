"""The exact SQL BM25 scorer's postings budget: candidates come from the rarest query terms that fit it, so a
filtered search's cost stays bounded as the KB grows. Searches filtered by source use this scorer (unfiltered
ones read impact-ordered postings, tests/test_postings.py). On the indexed demo KB (real PostgreSQL)."""

from __future__ import annotations

from sqlalchemy import text

from retrieval.lexical_index import LexicalIndex, LexicalOptions
from retrieval.search import Searcher

QUESTION = "Which form do I use to expense a taxi to the airport?"


def _doc_freqs(db, question: str) -> dict[str, int]:  # type: ignore[no-untyped-def]
    with db.engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT l.lexeme, l.doc_freq FROM unnest(to_tsvector('english', :q)) q "
            "JOIN lexicon l ON l.lexeme = q.lexeme"), {"q": question}).all()
    return dict(rows)  # type: ignore[arg-type]


def _lexemes_of(db, chunk_id: int) -> set[str]:  # type: ignore[no-untyped-def]
    with db.engine.connect() as conn:
        return set(conn.execute(text("SELECT unnest(tsvector_to_array(tsv)) FROM chunks WHERE id = :id"),
                                {"id": chunk_id}).scalars())


def test_a_tight_budget_keeps_only_chunks_with_the_rarest_term(demo_database, embedder) -> None:  # type: ignore[no-untyped-def]
    freqs = _doc_freqs(demo_database, QUESTION)
    assert len(freqs) >= 3
    rarest = min(freqs, key=lambda lexeme: (freqs[lexeme], lexeme))
    searcher = Searcher(demo_database, embedder, mode="lexical")
    unbounded = searcher.search(QUESTION, k=20, sources=["demo"]).hits
    assert any(rarest not in _lexemes_of(demo_database, h.chunk_id) for h in unbounded)  # others match too

    tight = LexicalIndex(LexicalOptions(postings_budget=1))  # below any term: the rarest only
    bounded = Searcher(demo_database, embedder, mode="lexical", lexical=tight).search(
        QUESTION, k=20, sources=["demo"]).hits
    assert bounded and all(rarest in _lexemes_of(demo_database, h.chunk_id) for h in bounded)
    assert len(bounded) <= freqs[rarest]
    # Scoring still uses every query term: the best chunk is one that also matches the others.
    assert bounded[0].chunk_id == next(h.chunk_id for h in unbounded if h.chunk_id in {b.chunk_id for b in bounded})


def test_the_default_budget_does_not_change_a_small_kb(demo_database, embedder) -> None:  # type: ignore[no-untyped-def]
    searcher = Searcher(demo_database, embedder, mode="hybrid")
    with_budget = [h.chunk_id for h in searcher.search(QUESTION, k=10, sources=["demo"]).hits]
    unbounded = Searcher(demo_database, embedder, mode="hybrid",
                         lexical=LexicalIndex(LexicalOptions(postings_budget=10**12)))
    assert [h.chunk_id for h in unbounded.search(QUESTION, k=10, sources=["demo"]).hits] == with_budget
