# ruff: noqa: F811 - `fake_openai` is a fixture imported from tests.fakes and taken by name
"""The optional LLM rerank against the local fake OpenAI server, through the real `openai` client over HTTP:
the model's order is used when it answers, the fused order is kept when it fails, is too slow or replies
junk, and a passage the reader may not see is never sent to it."""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from bot.services import Services
from retrieval.access import ReaderScope
from retrieval.answer import AskContext
from retrieval.db import Database
from retrieval.llm.client import ChatClient
from retrieval.rerank import RERANK_PROMPT, LLMReranker, RerankingSearcher, parse_order
from retrieval.search import Searcher
from retrieval.settings import load_settings
from retrieval.sources import FilesystemSource
from retrieval.sync import Indexer
from retrieval.types import SearchHit
from tests.conftest import fresh_database_url
from tests.fakes.openai_api import FakeOpenAI, Scripted, fake_openai  # noqa: F401 - fixture
from tests.test_access_search import DEMO_KB, with_audience
from tests.test_llm_rewrite import services  # noqa: F401 - fixture
from tests.test_llm_synthesis import CHAT, passages_of

QUESTION = "How many PTO days can I carry over to next year?"


def restricted(hit: SearchHit) -> bool:
    """HR's Markdown articles, restricted to S0HR by `restricted_kb` (its HTML page stays `everyone`)."""
    return hit.external_id.startswith("hr/") and hit.external_id.endswith(".md")


def chat_client(fake: FakeOpenAI) -> ChatClient:
    """The client the bot builds (retrieval/openai_adapter.py), pointed at the fake."""
    settings = load_settings(_env_file=None, openai_api_key="sk-test", openai_base_url=fake.url + "/v1",
                             llm_max_retries=0)
    return ChatClient.from_settings(settings.openai, settings.llm)


def reranking(searcher: Searcher, fake: FakeOpenAI, *, budget_s: float = 5.0) -> RerankingSearcher:
    return RerankingSearcher(searcher, LLMReranker(chat_client(fake), "gpt-4o-mini", budget_s=budget_s),
                             candidates=8, min_relevance=0.3)


def test_parse_order_keeps_valid_numbers_once_in_the_models_order() -> None:
    assert parse_order("3, 1, 4", 5) == [2, 0, 3]
    assert parse_order("Passages [2] and [2] then 7 and 0, then 1.", 5) == [1, 0]
    assert parse_order("None of them help.", 5) == []


def test_the_models_order_is_used(demo_database: Database, embedder: Any, fake_openai: FakeOpenAI) -> None:
    searcher = Searcher(demo_database, embedder)
    fused = searcher.search(QUESTION, k=8).hits
    fake_openai.chat_responder = lambda messages, model: "4, 2"
    result = reranking(searcher, fake_openai).search(QUESTION, k=3)

    assert [h.chunk_id for h in result.hits] == [fused[3].chunk_id, fused[1].chunk_id, fused[0].chunk_id]
    (call,) = fake_openai.requests_to("POST", CHAT)
    assert call.json["model"] == "gpt-4o-mini" and call.json["stream"] is False
    assert call.json["messages"][0]["content"] == RERANK_PROMPT
    sent = passages_of(call.json["messages"])
    assert [n for n, _, _ in sent] == list(range(1, 9))  # all eight candidates, numbered in fused order
    assert [title for _, title, _ in sent] == [h.title for h in fused]
    assert call.json["messages"][1]["content"].startswith(f"Question: {QUESTION}")
    assert result.timings_ms["rerank"] > 0


@pytest.mark.parametrize("failure", ["error", "timeout", "junk"])
def test_a_failed_rerank_keeps_the_fused_order_and_says_why(demo_database: Database, embedder: Any,
                                                            fake_openai: FakeOpenAI, failure: str,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    searcher = Searcher(demo_database, embedder)
    fused = [h.chunk_id for h in searcher.search(QUESTION, k=3).hits]
    if failure == "error":
        fake_openai.script("POST", CHAT, Scripted.error(500, "model overloaded"))
    elif failure == "timeout":
        fake_openai.script("POST", CHAT, Scripted(delay_s=3))
    else:
        fake_openai.chat_responder = lambda messages, model: "Sorry, I can't rank these."
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="retrieval.rerank"):
        result = reranking(searcher, fake_openai, budget_s=0.6).search(QUESTION, k=3)

    assert [h.chunk_id for h in result.hits] == fused
    assert time.monotonic() - started < 2.5  # bounded by the rerank budget, not the slow reply
    assert len(fake_openai.requests_to("POST", CHAT)) == 1  # one call, no retries
    assert "keeping the fused order" in caplog.text
    why = {"error": "model overloaded", "timeout": "0.6 s budget (KBBOT_LLM_RERANK_BUDGET)", "junk": "can't rank"}
    assert why[failure] in caplog.text


def test_no_call_when_the_question_is_below_the_relevance_bar(demo_database: Database, embedder: Any,
                                                              fake_openai: FakeOpenAI) -> None:
    searcher = Searcher(demo_database, embedder)
    result = RerankingSearcher(searcher, LLMReranker(chat_client(fake_openai), "gpt-4o-mini"),
                               min_relevance=0.99).search(QUESTION, k=3)
    assert len(result.hits) == 3 and fake_openai.requests_to("POST", CHAT) == []


@pytest.fixture(scope="module")
def restricted_kb(pg_server, embedder, tmp_path_factory) -> Iterator[Database]:  # type: ignore[no-untyped-def]
    """The demo KB with HR's Markdown articles (PTO among them) restricted to S0HR."""
    kb = tmp_path_factory.mktemp("rerank") / "kb"
    shutil.copytree(DEMO_KB, kb)
    for path in (kb / "hr").glob("*.md"):
        with_audience(path, "[S0HR]")
    url, _ = fresh_database_url(pg_server)
    db = Database.from_url(url.render_as_string(hide_password=False), migrate=False)
    Indexer(db, embedder, chunk_max_tokens=200).sync([FilesystemSource("kb", kb)])
    yield db
    db.close()


def test_restricted_passages_never_reach_the_model(restricted_kb: Database, embedder: Any,
                                                    fake_openai: FakeOpenAI) -> None:
    searcher = Searcher(restricted_kb, embedder)
    hr_hits = [h for h in searcher.search(QUESTION, k=20).hits if restricted(h)]
    assert hr_hits  # unfiltered, the HR articles are the best matches
    hr_titles = {h.title for h in hr_hits}
    hr_openings = {" ".join(h.text.split())[:40] for h in hr_hits}
    fake_openai.chat_responder = lambda messages, model: "2, 1"
    member = ReaderScope.member([], "a member outside HR")
    result = reranking(searcher, fake_openai).search(QUESTION, k=5, audience=member)
    assert result.hits and not any(restricted(h) for h in result.hits)
    hr = ReaderScope.member(["S0HR"], "an HR member")
    assert any(restricted(h) for h in reranking(searcher, fake_openai).search(
        QUESTION, k=5, audience=hr).hits)
    member_call, hr_call = ("\n".join(m["content"] for m in r.json["messages"])
                            for r in fake_openai.requests_to("POST", CHAT))
    assert not any(title in member_call for title in hr_titles)
    assert not any(opening in member_call for opening in hr_openings)
    assert any(title in hr_call for title in hr_titles)  # the check above can fail


def test_the_setting_puts_the_rerank_in_front_of_the_answerer(services: Callable[..., Services],
                                                              fake_openai: FakeOpenAI) -> None:
    def model(messages: list[dict], name: str) -> str:
        if messages[0]["content"] == RERANK_PROMPT:
            return "3, 1, 2"
        return "You can carry over up to five days [1]."

    fake_openai.chat_responder = model
    bot = services(openai_api_key="sk-test", openai_base_url=fake_openai.url + "/v1", llm_rerank=True,
                   query_rewrite="off")
    answer = bot.pipeline.answer(QUESTION, AskContext())
    rerank_call, answer_call = (r.json for r in fake_openai.requests_to("POST", CHAT))
    assert rerank_call["messages"][0]["content"] == RERANK_PROMPT
    _, title, text = passages_of(rerank_call["messages"])[2]  # the rerank sends passages shortened
    _, answer_title, answer_text = passages_of(answer_call["messages"])[0]
    assert (answer_title, " ".join(answer_text.split())[:60]) == (title, text[:60])
    assert answer.outcome == "answered"
    assert not isinstance(services().pipeline.searcher, RerankingSearcher)  # off by default


def test_rerank_on_without_an_endpoint_searches_without_it(services: Callable[..., Services],
                                                           caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="retrieval.rerank"):
        bot = services(llm_rerank=True)
        assert isinstance(bot.pipeline.searcher, Searcher)
    assert "no LLM endpoint is configured" in caplog.text
