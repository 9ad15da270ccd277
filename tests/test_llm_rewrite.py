# ruff: noqa: F811 - `fake_openai` is a fixture imported from tests.fakes and taken by name
"""Follow-up rewriting (heuristic and LLM), multi-query expansion, and the tone router's rules."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from bot.services import Services
from finetune.errors import RegistryError
from retrieval.answer import AskContext, Turn
from retrieval.db import Database
from retrieval.llm.prompt import SYSTEM_PROMPT
from retrieval.rewrite import (
    REWRITE_PROMPT,
    ExpandingSearcher,
    HeuristicExpander,
    HeuristicRewriter,
    fuse,
    looks_like_follow_up,
)
from retrieval.routing import RouteRequest, ToneRouter, ab_bucket
from retrieval.search import Searcher
from retrieval.settings import load_settings
from tests.fakes.openai_api import FakeOpenAI, Scripted, fake_openai  # noqa: F401 - fixture
from tests.test_llm_grounding import hit
from tests.test_llm_synthesis import CHAT, passages_of, quoting_model

THREAD = (
    Turn("user", "How do I set up the VPN?"),
    Turn("assistant", "Install NorthGate from Self Service and sign in with your Northwind ID [1]."),
)


@pytest.mark.parametrize(("question", "expected"), [
    ("and on Windows?", True),
    ("What about my phone?", True),
    ("Does it work in the office?", True),
    ("Windows?", True),
    ("How many days of parental leave do new fathers get?", False),
    ("How do I request a new laptop for a new hire?", False),
])
def test_follow_up_detection(question: str, expected: bool) -> None:
    assert looks_like_follow_up(question) is expected


def test_heuristic_prefixes_the_question_a_follow_up_depends_on() -> None:
    rewriter = HeuristicRewriter()
    assert rewriter.rewrite("and on Windows?", THREAD) == "How do I set up the VPN? and on Windows?"
    assert rewriter.rewrite("How many sick days do I get?", THREAD) is None  # a new topic stays as asked
    chained = (*THREAD, Turn("user", "and on Windows?"), Turn("assistant", "Use Company Portal [1]."))
    assert rewriter.rewrite("what if it fails?", chained) == (
        "How do I set up the VPN? and on Windows? what if it fails?")
    assert rewriter.rewrite("and then?", ()) is None


@pytest.fixture
def services(demo_database: Database, embedder: Any) -> Callable[..., Services]:
    def make(**overrides: object) -> Services:
        built = Services(load_settings(_env_file=None, **overrides), database=demo_database)
        built.__dict__["embedder"] = embedder
        return built

    return make


def test_follow_up_in_a_thread_is_answered_offline_with_the_heuristic(services: Callable[..., Services]) -> None:
    bot = services()
    answer = bot.pipeline.answer("and on Windows?", AskContext(history=THREAD))
    assert answer.rewritten_question == "How do I set up the VPN? and on Windows?"
    assert answer.outcome == "answered" and answer.citations[0].hit.external_id == "it/vpn.md"
    assert answer.question == "and on Windows?"
    assert "rewrite" in answer.timings_ms
    assert services(query_rewrite="off").pipeline.answer("and on Windows?",
                                                         AskContext(history=THREAD)).rewritten_question is None


def test_llm_rewrites_the_follow_up_from_the_thread(services: Callable[..., Services],
                                                    fake_openai: FakeOpenAI) -> None:
    standalone = "How do I install the NorthGate VPN client on Windows?"
    synthesis = quoting_model()

    def model(messages: list[dict], name: str) -> str:
        return standalone if messages[0]["content"] == REWRITE_PROMPT else synthesis(messages, name)

    fake_openai.chat_responder = model
    bot = services(openai_api_key="sk-test", openai_base_url=fake_openai.url + "/v1")
    answer = bot.pipeline.answer("and on Windows?", AskContext(history=THREAD))

    rewrite_call, answer_call = (r.json for r in fake_openai.requests_to("POST", CHAT))
    assert rewrite_call["stream"] is False
    thread_text = rewrite_call["messages"][1]["content"]
    assert "user: How do I set up the VPN?" in thread_text and "assistant: Install NorthGate" in thread_text
    assert thread_text.endswith("Last message: and on Windows?")
    assert answer.rewritten_question == standalone
    # Retrieval used the rewrite; the answering model still sees the thread and the question as asked.
    assert answer_call["messages"][0]["content"] == SYSTEM_PROMPT
    assert "<conversation>\nuser: How do I set up the VPN?" in answer_call["messages"][1]["content"]
    assert answer_call["messages"][1]["content"].endswith("Question: and on Windows?")
    assert any(title == "Connecting to the VPN" for _, title, _ in passages_of(answer_call["messages"]))
    assert answer.citations and answer.model == "gpt-4o-mini"


def test_llm_rewrite_failure_falls_back_to_the_heuristic(services: Callable[..., Services],
                                                         fake_openai: FakeOpenAI) -> None:
    fake_openai.script("POST", CHAT, Scripted.error(500, "boom"))  # the rewrite call
    fake_openai.chat_responder = quoting_model()
    bot = services(openai_api_key="sk-test", openai_base_url=fake_openai.url + "/v1", llm_max_retries=0)
    answer = bot.pipeline.answer("and on Windows?", AskContext(history=THREAD))
    assert answer.rewritten_question == "How do I set up the VPN? and on Windows?"
    assert answer.model == "gpt-4o-mini" and answer.citations


def test_first_message_is_never_sent_for_rewriting(services: Callable[..., Services],
                                                   fake_openai: FakeOpenAI) -> None:
    fake_openai.chat_responder = quoting_model()
    bot = services(openai_api_key="sk-test", openai_base_url=fake_openai.url + "/v1")
    assert bot.pipeline.answer("How do I set up the VPN?").rewritten_question is None
    assert len(fake_openai.requests_to("POST", CHAT)) == 1


def test_heuristic_expansion_variants() -> None:
    expander = HeuristicExpander()
    assert expander.variants("How do I reset my SSO password?", 2) == ["reset my SSO password",
                                                                       "reset sso password"]
    assert expander.variants("VPN", 2) == []


def test_fuse_prefers_agreement_and_keeps_the_originals_hit() -> None:
    a, b, c = hit(1, "A"), hit(2, "B"), hit(3, "C")
    fused = fuse([(1.0, [a, b]), (0.5, [c, b])])
    assert [h.chunk_id for h in fused] == [2, 1, 3]
    assert fused[0].similarity == b.similarity and fused[0].score == pytest.approx(1 / 62 + 0.5 / 62)


def test_expanding_searcher_fuses_variants_with_the_question(demo_database: Database, embedder: Any) -> None:
    searcher = Searcher(demo_database, embedder)
    plain = searcher.search("How do I reset my SSO password?", k=5)
    expanded = ExpandingSearcher(searcher, HeuristicExpander(), variants=2).search(
        "How do I reset my SSO password?", k=5)
    assert len(expanded.hits) == 5
    assert expanded.hits[0].external_id == plain.hits[0].external_id == "it/sso-password-reset.md"
    assert expanded.query_vector is not None and "expand" in expanded.timings_ms


# --- routing rules ------------------------------------------------------------------------------------


def test_router_rules() -> None:
    tone = "ft:tone"
    always = ToneRouter("base", rule="always", lookup=lambda: tone)
    assert always.route(RouteRequest()).models == (tone, "base")
    assert ToneRouter("base", rule="off", lookup=lambda: tone).route(RouteRequest()).models == ("base",)
    assert ToneRouter("base", lookup=lambda: None).route(RouteRequest()).models == ("base",)
    channels = ToneRouter("base", rule="channels", channels=["C1", "dm", "cli"], lookup=lambda: tone)
    assert channels.route(RouteRequest(channel="C1")).tone
    assert channels.route(RouteRequest(channel="D42")).tone
    assert channels.route(RouteRequest()).tone
    assert not channels.route(RouteRequest(channel="C2")).tone


def test_a_channel_profiles_tone_decides_under_every_rule_but_off() -> None:
    tone = "ft:tone"
    channels = ToneRouter("base", rule="channels", channels=["C1"], lookup=lambda: tone)
    assert channels.route(RouteRequest(channel="C2", tone=True)).models == (tone, "base")
    off_here = channels.route(RouteRequest(channel="C1", tone=False))
    assert off_here.models == ("base",) and off_here.reason == "tone by channel profile: off"
    assert not ToneRouter("base", rule="always", lookup=lambda: tone).route(RouteRequest(tone=False)).tone
    share = ToneRouter("base", rule="share", share=0.0, lookup=lambda: tone)
    assert share.route(RouteRequest(user="U1", tone=True)).tone
    assert not ToneRouter("base", rule="off", lookup=lambda: tone).route(RouteRequest(tone=True)).tone
    assert not ToneRouter("base", lookup=lambda: None).route(RouteRequest(tone=True)).tone  # no tone model


def test_settings_override_wins_over_the_registry_and_none_disables() -> None:
    assert ToneRouter("base", override="ft:pinned", lookup=lambda: "ft:active").tone_model() == "ft:pinned"
    assert ToneRouter("base", override="none", lookup=lambda: "ft:active").tone_model() is None


def test_unreadable_registry_means_the_base_model() -> None:
    def broken() -> str | None:
        raise RegistryError("Reading the active tone model failed: the database said 'gone'")

    assert ToneRouter("base", lookup=broken).route(RouteRequest()).models == ("base",)


def test_share_routing_is_deterministic_and_close_to_the_share() -> None:
    router = ToneRouter("base", rule="share", share=0.3, lookup=lambda: "ft:tone")
    users = [f"U{i:05d}" for i in range(10_000)]
    toned = [u for u in users if router.route(RouteRequest(user=u)).tone]
    assert 0.28 < len(toned) / len(users) < 0.32
    assert toned == [u for u in users if router.route(RouteRequest(user=u)).tone]  # same users again
    assert all(ab_bucket(u) < 0.3 for u in toned)
    # Without a user id, the question decides (so anonymous traffic still splits).
    assert router.route(RouteRequest(fallback_key="q1")).tone == (ab_bucket("q1") < 0.3)


def test_llm_expansion_variants_and_failure(demo_database: Database, embedder: Any, fake_openai: FakeOpenAI) -> None:
    from retrieval.llm import ChatClient
    from retrieval.rewrite import LLMExpander

    settings = load_settings(_env_file=None, openai_api_key="sk-test", openai_base_url=fake_openai.url + "/v1",
                             llm_max_retries=0)
    fake_openai.chat_responder = lambda messages, model: (
        "1. reset Northwind ID password\n- \"change SSO password\"\nreset Northwind ID password\n")
    expander = LLMExpander(ChatClient.from_settings(settings.openai, settings.llm), "gpt-4o-mini")
    assert expander.variants("How do I reset my SSO password?", 2) == ["reset Northwind ID password",
                                                                       "change SSO password"]
    request = fake_openai.requests_to("POST", CHAT)[0].json
    assert "Write 2 different search queries" in request["messages"][0]["content"]

    searcher = ExpandingSearcher(Searcher(demo_database, embedder), expander, variants=2)
    assert searcher.search("How do I reset my SSO password?", k=3).hits[0].external_id == "it/sso-password-reset.md"
    fake_openai.script("POST", CHAT, Scripted.error(500, "boom"))
    assert expander.variants("How do I reset my SSO password?", 2) == []  # the question alone is searched
