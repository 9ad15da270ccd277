"""Impact-ordered BM25 postings (retrieval/lexical_index.py) on the indexed demo KB (real PostgreSQL): the ranking
equals BM25 computed independently from the chunks' tsvectors, a truncated list keeps each term's best chunks,
and a lexicon refreshed before postings existed still answers and is filled by the next sync."""

from __future__ import annotations

import logging
import math
import shutil
from collections import defaultdict
from pathlib import Path

import pytest
from sqlalchemy import text

from retrieval.lexical_index import LexicalIndex, LexicalOptions
from retrieval.search import Searcher
from retrieval.sources import FilesystemSource
from retrieval.status import index_status
from retrieval.sync import Indexer
from tests.conftest import DEMO_KB

QUESTIONS = [
    "how do I connect to the VPN",
    "Which form do I use to expense a taxi to the airport?",
    "How many unused vacation days can I carry over into next year?",
]


def _term_scores(db, question: str, options: LexicalOptions | None = None,  # type: ignore[no-untyped-def]
                 every_term: bool = False) -> dict[str, dict[int, float]]:
    """Each selective question term's (or the two rarest terms') BM25 contribution per chunk, computed from
    the tsvectors themselves with the lexicon's statistics; a word the lexicon lacks counts as in no chunk.
    Title and heading weights count a term's occurrences in the title's and the headings' own tsvectors.
    `every_term`: common terms count too (the exact scorer's sum; only its candidates are selective)."""
    options = options or LexicalOptions()
    with db.engine.connect() as conn:
        doc_count, avg_len = conn.execute(text("SELECT doc_count, avg_doc_len FROM lexicon_stats")).one()
        freqs = dict(conn.execute(text(
            "SELECT q.lexeme, l.doc_freq FROM unnest(tsvector_to_array(to_tsvector('english', :q))) q(lexeme) "
            "LEFT JOIN lexicon l ON l.lexeme = q.lexeme"), {"q": question}).all())
        rows = conn.execute(text(
            "SELECT c.id, length(c.tsv), u.lexeme, cardinality(u.positions), "
            "coalesce((SELECT cardinality(t.positions) FROM unnest(to_tsvector('english', a.title)) t "
            "          WHERE t.lexeme = u.lexeme), 0), "
            "coalesce((SELECT cardinality(h.positions) FROM unnest(to_tsvector('english', "
            "          array_to_string(c.heading_path, ' '))) h WHERE h.lexeme = u.lexeme), 0) "
            "FROM chunks c JOIN articles a ON a.id = c.article_id, unnest(c.tsv) u "
            "WHERE u.lexeme = ANY(:terms)"), {"terms": list(freqs)}).all()
    known = {lexeme: df for lexeme, df in freqs.items() if df is not None}
    rarest_two = sorted(known, key=lambda lexeme: (known[lexeme], lexeme))[:2]
    scores: dict[str, dict[int, float]] = defaultdict(dict)
    for chunk_id, doc_len, lexeme, tf, in_title, in_headings in rows:
        df = known.get(lexeme, 0)
        if df > doc_count * options.common_term_share and lexeme not in rarest_two and not every_term:
            continue
        idf = math.log(1 + (doc_count - df + 0.5) / (df + 0.5))
        norm = 1 - options.b + options.b * doc_len / max(avg_len, 1)
        if options.field_norm:  # BM25F: only the text's occurrences are normalised by the passage length
            tfn = (tf - in_title - in_headings) / norm + options.title_weight * in_title \
                + options.heading_weight * in_headings
            scores[lexeme][chunk_id] = idf * tfn * (options.k1 + 1) / (tfn + options.k1)
            continue
        tf += (options.title_weight - 1) * in_title + (options.heading_weight - 1) * in_headings
        scores[lexeme][chunk_id] = idf * tf * (options.k1 + 1) / (tf + options.k1 * norm)
    return scores


def _reference_ranking(db, question: str, options: LexicalOptions | None = None,  # type: ignore[no-untyped-def]
                       every_term: bool = False) -> list[int]:
    totals: dict[int, float] = defaultdict(float)
    for per_chunk in _term_scores(db, question, options, every_term).values():
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


@pytest.mark.parametrize("field_norm", [False, True])
def test_title_and_heading_weights_rank_like_bm25f_in_every_scorer(demo_database, embedder,  # type: ignore[no-untyped-def]
                                                                    field_norm: bool) -> None:
    weighted = LexicalIndex(LexicalOptions(title_weight=3.0, heading_weight=2.0, field_norm=field_norm))
    with demo_database.engine.begin() as conn:
        weighted.refresh(conn.connection.driver_connection)
    postings = Searcher(demo_database, embedder, mode="lexical", lexical=weighted)
    changed = 0
    for question in QUESTIONS:
        reference = _reference_ranking(demo_database, question, weighted.options)
        unweighted = LexicalOptions(title_weight=1.0, heading_weight=1.0)
        changed += reference[:10] != _reference_ranking(demo_database, question, unweighted)[:10]
        assert [h.chunk_id for h in postings.search(question, k=10).hits] == reference[:10]
        # the exact scorer (a search filtered by source) weighs them alike, over the candidates it selects
        exact = [h.chunk_id for h in postings.search(question, k=10, sources=["demo"]).hits]
        every_term = _reference_ranking(demo_database, question, weighted.options, every_term=True)
        assert len(exact) >= 3 and exact == [c for c in every_term if c in set(exact)][:10]
    assert changed  # the weights do move passages


def test_a_truncated_list_keeps_each_terms_best_chunk(demo_database, embedder) -> None:  # type: ignore[no-untyped-def]
    question = QUESTIONS[1]
    best = {lexeme: min(per_chunk, key=lambda c: (-per_chunk[c], c))
            for lexeme, per_chunk in _term_scores(demo_database, question).items()}
    assert len(best) >= 3
    one_entry = LexicalIndex(LexicalOptions(postings_depth=1))  # reads only each list's first entry
    hits = Searcher(demo_database, embedder, mode="lexical", lexical=one_entry).search(question, k=10).hits
    assert hits and {h.chunk_id for h in hits} <= set(best.values())
    assert len(hits) == len(set(best.values()))


def test_a_lexicon_without_postings_answers_and_the_next_sync_fills_it(  # type: ignore[no-untyped-def]
        demo_database, embedder, caplog: pytest.LogCaptureFixture) -> None:
    with demo_database.engine.begin() as conn:  # as migration 0005 leaves an existing lexicon
        conn.execute(text("UPDATE lexicon SET postings = NULL"))
    searcher = Searcher(demo_database, embedder)
    with caplog.at_level(logging.INFO, logger="retrieval.search"):
        for mode in ("lexical", "hybrid"):
            hits = searcher.search("how do I connect to the VPN", k=5, mode=mode).hits  # type: ignore[arg-type]
            assert hits[0].external_id == "it/vpn.md" and hits[0].lexical_rank is not None
    assert "no postings yet" in caplog.text
    with demo_database.raw_connection() as pg:
        assert LexicalIndex().needs_refresh(pg)

    run = Indexer(demo_database, embedder, chunk_max_tokens=200).sync([FilesystemSource("demo", DEMO_KB)])
    assert (run.added, run.updated, run.removed) == (0, 0, 0)
    with demo_database.raw_connection() as pg:
        assert not LexicalIndex().needs_refresh(pg)
    hits = searcher.search(QUESTIONS[0], k=10, mode="lexical").hits
    assert [h.chunk_id for h in hits] == _reference_ranking(demo_database, QUESTIONS[0])[:10]


def test_postings_built_with_other_bm25_settings_are_rebuilt_by_the_next_sync(  # type: ignore[no-untyped-def]
        demo_database, embedder) -> None:
    """Postings hold precomputed weights while the delta and the exact scorer use the running settings:
    a sync under new settings (a release changing a default) rebuilds them though no article changed."""
    plain = LexicalIndex(LexicalOptions(title_weight=1.0))
    with demo_database.raw_connection() as pg:
        assert not LexicalIndex().needs_refresh(pg)
        assert plain.needs_refresh(pg)
        before = pg.execute("SELECT refreshed_at, scoring FROM lexicon_stats").fetchone()

    run = Indexer(demo_database, embedder, chunk_max_tokens=200, lexical=plain).sync(
        [FilesystemSource("demo", DEMO_KB)])
    assert (run.added, run.updated, run.removed) == (0, 0, 0)
    with demo_database.raw_connection() as pg:
        after = pg.execute("SELECT refreshed_at, scoring FROM lexicon_stats").fetchone()
        assert after[0] > before[0] and after[1] != before[1] and "title=1.0" in after[1]
        assert not plain.needs_refresh(pg)
        assert LexicalIndex().needs_refresh(pg)
    searcher = Searcher(demo_database, embedder, lexical=plain)
    hits = searcher.search(QUESTIONS[0], k=10, mode="lexical").hits
    assert [h.chunk_id for h in hits] == _reference_ranking(demo_database, QUESTIONS[0], plain.options)[:10]


NEW_ARTICLE = """# Zorbulator resets

If the zorbulator on the third floor jams, hold its reset button for ten seconds and wait for the green
light. Facilities replaces a zorbulator that still jams after two resets.
"""


def _kb_copy(tmp_path: Path) -> Path:
    kb = tmp_path / "kb"
    shutil.copytree(DEMO_KB, kb)
    return kb


def _stats(db) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    with db.engine.connect() as conn:
        max_chunk_id, newest = conn.execute(text(
            "SELECT max_chunk_id, (SELECT max(id) FROM chunks) FROM lexicon_stats")).one()
    return max_chunk_id, newest


def test_chunks_written_since_the_rebuild_are_searched_as_a_delta(  # type: ignore[no-untyped-def]
        demo_database, embedder, tmp_path: Path) -> None:
    kb = _kb_copy(tmp_path)
    (kb / "facilities").mkdir(exist_ok=True)
    (kb / "facilities" / "zorbulator.md").write_text(NEW_ARTICLE, encoding="utf-8")
    covered_before, _ = _stats(demo_database)

    run = Indexer(demo_database, embedder, chunk_max_tokens=200).sync([FilesystemSource("demo", kb)])

    assert (run.added, run.updated, run.removed) == (1, 0, 0)
    covered, newest = _stats(demo_database)
    assert covered == covered_before < newest  # no rebuild: the new chunks are the delta
    with demo_database.engine.connect() as conn:
        new_chunks = conn.execute(text("SELECT count(*) FROM chunks WHERE id > :c"), {"c": covered}).scalar_one()
    keyword = index_status(demo_database).keyword  # what `kbbot status` shows
    assert keyword is not None and keyword.newer_chunks == new_chunks >= 1
    searcher = Searcher(demo_database, embedder, mode="lexical")
    # "zorbulator" is in no postings list and not in the lexicon: only the delta can find it.
    for question in ("how do I reset the zorbulator", "my zorbulator jams, which floor do I go to?"):
        hits = searcher.search(question, k=10).hits
        assert hits[0].external_id == "facilities/zorbulator.md"
        assert [h.chunk_id for h in hits] == _reference_ranking(demo_database, question)[:10]
    # A question without the new word ranks the old chunks and the new ones together, as BM25 would.
    question = "how long do I hold the reset button"
    assert [h.chunk_id for h in searcher.search(question, k=10).hits] == \
        _reference_ranking(demo_database, question)[:10]


def test_removed_articles_leave_the_lists_and_big_changes_rebuild(  # type: ignore[no-untyped-def]
        demo_database, embedder, tmp_path: Path) -> None:
    kb = _kb_copy(tmp_path)
    (kb / "it" / "vpn.md").unlink()
    indexer = Indexer(demo_database, embedder, chunk_max_tokens=200)
    searcher = Searcher(demo_database, embedder, mode="lexical")
    with demo_database.engine.connect() as conn:
        doc_count = conn.execute(text("SELECT doc_count FROM lexicon_stats")).scalar_one()
        vpn_chunks = conn.execute(text(
            "SELECT count(*) FROM chunks c JOIN articles a ON a.id = c.article_id "
            "WHERE a.external_id = 'it/vpn.md'")).scalar_one()

    run = indexer.sync([FilesystemSource("demo", kb)])

    assert run.removed == 1
    hits = searcher.search("how do I connect to the VPN", k=10).hits
    assert hits and all(h.external_id != "it/vpn.md" for h in hits)
    with demo_database.engine.connect() as conn:
        rebuilt_doc_count = conn.execute(text("SELECT doc_count FROM lexicon_stats")).scalar_one()
    # The demo KB is small: removing one article is more than REFRESH_SHARE of its chunks, so it rebuilds.
    assert vpn_chunks > doc_count * LexicalOptions().refresh_share
    assert rebuilt_doc_count == doc_count - vpn_chunks
    covered, newest = _stats(demo_database)
    assert covered == newest


def test_a_full_pass_rebuilds_for_any_change(demo_database, embedder, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    kb = _kb_copy(tmp_path)
    (kb / "facilities").mkdir(exist_ok=True)
    (kb / "facilities" / "zorbulator.md").write_text(NEW_ARTICLE, encoding="utf-8")
    indexer = Indexer(demo_database, embedder, chunk_max_tokens=200)
    indexer.sync([FilesystemSource("demo", kb)])
    covered, newest = _stats(demo_database)
    assert covered < newest

    run = indexer.sync([FilesystemSource("demo", kb)], kind="full")

    assert (run.added, run.updated, run.removed) == (0, 0, 0)
    covered, newest = _stats(demo_database)
    assert covered == newest


@pytest.mark.parametrize(("doc_count", "added", "removed", "due"), [
    (0, 0, 0, False), (0, 3, 0, True),                 # a first load
    (200, 4, 0, False), (200, 3, 2, True),             # 2% of a small KB
    (1_000_000, 500, 0, False), (1_000_000, 300, 201, True),  # at most 500 chunks of a large one
])
def test_when_a_rebuild_is_due(doc_count: int, added: int, removed: int, due: bool) -> None:
    assert LexicalIndex().backlog_due(doc_count, added, removed) is due
