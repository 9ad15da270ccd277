"""Search and cited answers on the indexed demo KB (real PostgreSQL, real model)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from retrieval.answer import ABSTAIN_TEXT, NOTHING_NEAR_TEXT, AnswerPipeline, AskContext
from retrieval.errors import EmptyQuestionError, SourceError
from retrieval.evaluation import evaluate, load_labelled_queries
from retrieval.extractive import ExtractiveSynthesizer
from retrieval.search import Searcher

DEMO_EVAL = Path(__file__).resolve().parents[1] / "demo_eval"
# What the shipped gate reaches on the demo sets (BENCHMARKS.md, Session 5): a regression fails here.
# The issue-16 targets (0.95 / 0.90) are not reached yet; these floors keep what was reached.
ANSWERED_AT_LEAST, ABSTAINED_AT_LEAST = 0.875, 0.83


@pytest.fixture
def pipeline(demo_database, embedder) -> AnswerPipeline:  # type: ignore[no-untyped-def]
    return AnswerPipeline(Searcher(demo_database, embedder), ExtractiveSynthesizer(embedder))


@pytest.mark.parametrize("mode", ["dense", "lexical", "hybrid"])
def test_each_mode_finds_the_vpn_article(demo_database, embedder, mode: str) -> None:
    hits = Searcher(demo_database, embedder).search("how do I connect to the VPN", k=5, mode=mode).hits  # type: ignore[arg-type]
    assert hits[0].external_id == "it/vpn.md"
    assert all(h.similarity is not None for h in hits)


def test_source_filter_returns_only_that_source(demo_database, embedder, tmp_path: Path) -> None:
    from retrieval.sources import FilesystemSource
    from retrieval.sync import Indexer
    from tests.helpers import write_article

    other = tmp_path / "eng"
    write_article(other, "vpn-eng.md", "Engineering VPN", "## Bastion\nEngineers connect to the VPN "
                  "through the bastion host with their hardware key.\n")
    Indexer(demo_database, embedder, chunk_max_tokens=200).sync([FilesystemSource("eng", other)])
    searcher = Searcher(demo_database, embedder)
    for mode in ("dense", "lexical", "hybrid"):
        hits = searcher.search("connect to the VPN", k=5, sources=["eng"], mode=mode).hits  # type: ignore[arg-type]
        assert hits and {h.source for h in hits} == {"eng"}
    assert {h.source for h in searcher.search("connect to the VPN", k=20).hits} == {"demo", "eng"}


def test_answer_cites_the_passage_it_quotes(pipeline: AnswerPipeline, demo_database) -> None:  # type: ignore[no-untyped-def]
    answer = pipeline.answer("How many unused vacation days can I carry over into next year?")
    assert answer.outcome == "answered" and answer.model == "extractive"
    assert answer.citations and answer.citations[0].hit.external_id == "hr/pto.md"
    assert "5 unused days" in answer.text
    for citation in answer.citations:
        assert f"[{citation.number}]" in answer.text
        for quote in citation.quote.split(" … "):
            assert quote in citation.hit.text
        with demo_database.engine.connect() as conn:
            body = conn.execute(text("SELECT body FROM articles WHERE id = :id"),
                                {"id": citation.hit.article_id}).scalar_one()
        assert body[citation.hit.char_start:citation.hit.char_end] == citation.hit.text
    numbers = [c.number for c in answer.citations]
    assert numbers == list(range(1, len(numbers) + 1))
    assert set(answer.timings_ms) == {"embed_question", "retrieve", "support", "synthesize", "total"}


def test_an_unrelated_question_is_refused_without_pointing_at_articles(pipeline: AnswerPipeline) -> None:
    answer = pipeline.answer("What is the capital of Peru?")
    assert answer.outcome == "abstained" and answer.citations == []
    # The demo KB has nothing about Peru: its "nearest" articles (the learning budget, Wi-Fi, remote work,
    # all below 0.2 similarity) would be noise, so none is offered and the refusal says so.
    assert answer.text == NOTHING_NEAR_TEXT and answer.nearest == []
    assert set(answer.timings_ms) == {"embed_question", "retrieve", "support", "total"}  # nothing was synthesized


def test_a_near_miss_is_refused_with_the_nearest_articles(pipeline: AnswerPipeline) -> None:
    answer = pipeline.answer("does the company offer pet insurance?")
    assert answer.outcome == "abstained" and answer.text == ABSTAIN_TEXT and answer.citations == []
    # Near enough to be worth a look: the two insurance articles, and at most three distinct articles.
    ids = [h.external_id for h in answer.nearest]
    assert {"travel/travel-insurance-emergencies.md", "benefits/health-insurance.md"} <= set(ids)
    assert len(ids) == len(set(ids)) <= 3


def test_abstention_gate_separates_demo_questions(pipeline: AnswerPipeline) -> None:
    """The shipped gate answers the labelled questions and abstains on the unanswerable ones, near-miss
    company questions included (calibrated in bench/answer_quality.py)."""
    import json

    answerable = load_labelled_queries(DEMO_EVAL / "queries.jsonl", DEMO_EVAL / "qrels.tsv")
    unanswerable = [json.loads(line)["text"] for line in (DEMO_EVAL / "unanswerable.jsonl").open()]
    assert len(unanswerable) >= 50
    answered = sum(pipeline.answer(q.text).outcome == "answered" for q in answerable) / len(answerable)
    abstained = sum(pipeline.answer(q).outcome == "abstained" for q in unanswerable) / len(unanswerable)
    assert answered >= ANSWERED_AT_LEAST and abstained >= ABSTAINED_AT_LEAST, (answered, abstained)


def test_empty_question_is_refused(pipeline: AnswerPipeline) -> None:
    with pytest.raises(EmptyQuestionError, match="empty"):
        pipeline.answer("   ")


def test_retrieval_quality_on_demo_eval(demo_database, embedder) -> None:
    queries = load_labelled_queries(DEMO_EVAL / "queries.jsonl", DEMO_EVAL / "qrels.tsv")
    assert len(queries) == 40
    report = evaluate(Searcher(demo_database, embedder), queries, k=5, mode="hybrid")
    assert report.recall_at_5 == 1.0
    # Every gold article is first except these two, which are second (before BM25 weighed titles,
    # session 6, q20 was second and q15 third; before the score fusion chose the first passage, session 7,
    # q15 was second).
    assert {q["id"]: q["mrr@10"] for q in report.per_query if q["mrr@10"] != 1.0} == {"q09": 0.5, "q25": 0.5}


def test_an_unknown_source_is_named_with_the_indexed_ones(pipeline: AnswerPipeline) -> None:
    # A typo in a source name must not read as "the KB has no answer".
    with pytest.raises(SourceError, match=r"^No source named 'no-such-source': the indexed sources are demo "):
        pipeline.answer("How do I connect to the VPN?", AskContext(sources=("no-such-source", "demo")))


def test_search_survives_the_server_dropping_its_connections(demo_database, embedder) -> None:  # type: ignore[no-untyped-def]
    """The search pool skips the per-checkout ping; a connection the server closed is retried once."""
    searcher = Searcher(demo_database, embedder)
    assert searcher.search("how do I connect to the VPN", k=3).hits

    def search_backend() -> int:  # the search pool holds one connection: the one the searcher used
        with demo_database.search_engine().connect() as conn:
            return int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())

    dropped = search_backend()
    with demo_database.engine.begin() as conn:
        assert conn.execute(text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": dropped}).scalar_one()
    hits = searcher.search("how do I connect to the VPN", k=3).hits
    assert hits[0].external_id == "it/vpn.md"
    assert search_backend() != dropped  # answered on a new connection


def test_repeated_searches_use_a_prepared_statement(demo_database, embedder) -> None:  # type: ignore[no-untyped-def]
    """The search statement is prepared after a few runs (generic plan, no planning per question) and
    still ranks like the first, planned run."""
    searcher = Searcher(demo_database, embedder)
    first = [h.chunk_id for h in searcher.search("how do I connect to the VPN", k=5).hits]
    for _ in range(6):
        again = [h.chunk_id for h in searcher.search("how do I connect to the VPN", k=5).hits]
    assert again == first
    with demo_database.search_engine().connect() as conn:
        prepared = list(conn.execute(text("SELECT statement FROM pg_prepared_statements")).scalars())
    # The BM25 ranking from postings, and the fused statement it feeds: both planned once.
    assert len(prepared) == 2
    assert sum("FROM lexicon_stats" in s and "FROM fused" not in s for s in prepared) == 1
    assert sum("FROM fused f" in s for s in prepared) == 1
