# ruff: noqa: F811 - `fake_openai` is a fixture imported from tests.fakes and taken by name
"""Answers the gate only just lets through say they are unsure (retrieval/abstention.py's unsure band), on
the indexed demo KB (real PostgreSQL + pgvector, real embeddings; the LLM through the real openai client
over real HTTP to the fake OpenAI API)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bot.cli_index import DEMO_QUESTIONS
from bot.json_output import answer_json
from bot.services import Services
from retrieval.abstention import AbstentionGate, Evidence
from retrieval.answer import UNSURE_LEAD, AnswerPipeline
from retrieval.answer_eval import evaluate_answers, load_gold_answers, load_questions
from retrieval.answer_log import AnswerLog, Asked
from retrieval.db import Database
from retrieval.evaluation import load_labelled_queries
from retrieval.extractive import ExtractiveSynthesizer
from retrieval.gaps import GapFinder
from retrieval.search import Searcher
from retrieval.settings import load_settings
from retrieval.support import score_support
from retrieval.types import Answer
from tests.fakes.openai_api import FakeOpenAI, fake_openai  # noqa: F401 - fixture

DEMO_EVAL = Path(__file__).resolve().parents[1] / "demo_eval"
QUESTION = "How many unused vacation days can I carry over into next year?"
# Floors a little below what the shipped band reaches on the demo calibration sets (BENCHMARKS.md,
# Session 8: abstention: 9 of 36 right answers said to be unsure, 9 of 9 wrong ones): a regression fails here.
UNSURE_RIGHT_AT_MOST, UNSURE_WRONG_AT_LEAST = 0.3, 0.75


def pipeline_with(demo_database: Database, embedder: Any, gate: AbstentionGate) -> AnswerPipeline:
    return AnswerPipeline(Searcher(demo_database, embedder), ExtractiveSynthesizer(embedder), gate=gate)


def streamed(pipeline: AnswerPipeline, question: str) -> tuple[str, Answer]:
    events = list(pipeline.stream(question))
    assert isinstance(events[-1], Answer) and all(isinstance(e, str) for e in events[:-1])
    return "".join(events[:-1]), events[-1]  # type: ignore[arg-type, return-value]


def test_an_answer_near_the_bar_opens_by_saying_it_is_unsure(demo_database: Database, embedder: Any) -> None:
    _, sure = streamed(pipeline_with(demo_database, embedder, AbstentionGate()), QUESTION)
    # A band wider than any confidence: every answer the gate lets through is near its bar.
    text, unsure = streamed(pipeline_with(demo_database, embedder, AbstentionGate(unsure_band=1.0)), QUESTION)
    assert sure.outcome == unsure.outcome == "answered"
    assert not sure.unsure and not sure.text.startswith(UNSURE_LEAD)
    assert unsure.unsure and unsure.text == UNSURE_LEAD + sure.text
    assert unsure.citations == sure.citations  # the same quotes, the same [n] markers
    assert text.strip() == unsure.text.strip()  # the lead is streamed first, not added afterwards
    assert answer_json(unsure)["unsure"] is True and answer_json(sure)["unsure"] is False  # kbbot ask --json


def test_an_abstention_never_says_it_is_unsure(demo_database: Database, embedder: Any) -> None:
    _, answer = streamed(pipeline_with(demo_database, embedder, AbstentionGate(unsure_band=1.0)),
                         "What is the capital of Peru?")
    assert answer.outcome == "abstained" and not answer.unsure and UNSURE_LEAD not in answer.text


def test_an_llm_answer_near_the_bar_says_it_is_unsure_too(demo_database: Database, embedder: Any,
                                                           fake_openai: FakeOpenAI) -> None:
    fake_openai.chat_responder = lambda messages, model: "Up to 5 unused days carry over [1]."
    services = Services(load_settings(_env_file=None, openai_api_key="sk-test",
                                      openai_base_url=fake_openai.url + "/v1"), database=demo_database)
    services.__dict__["embedder"] = embedder  # the session's model, already loaded
    pipeline = services.pipeline
    pipeline.gate = dataclasses.replace(pipeline.gate, unsure_band=1.0)
    text, answer = streamed(pipeline, QUESTION)
    assert answer.outcome == "answered" and answer.model == "gpt-4o-mini" and answer.unsure
    assert answer.text == UNSURE_LEAD + "Up to 5 unused days carry over [1]."
    assert text.strip() == answer.text.strip()


def test_an_unsure_answer_is_a_knowledge_gap_and_a_sure_one_is_not(demo_database: Database,
                                                                    embedder: Any) -> None:
    log = AnswerLog(demo_database)
    unsure = pipeline_with(demo_database, embedder, AbstentionGate(unsure_band=1.0)).answer(QUESTION)
    sure_question = "How do I enroll in MFA?"
    sure = pipeline_with(demo_database, embedder, AbstentionGate()).answer(sure_question)
    assert unsure.unsure and not sure.unsure
    log.record(Asked(QUESTION, "channel", "U1", "C0IT", "1.1"), unsure)
    log.record(Asked(sure_question, "channel", "U2", "C0IT", "1.2"), sure)
    report = GapFinder(demo_database, embedder).report(since=datetime.now(UTC) - timedelta(days=1))
    assert [q.question for g in report.groups for q in g.questions] == [QUESTION]
    assert report.groups[0].answer_sample.startswith(UNSURE_LEAD.strip())


# How far above the unsure band (bar + band) the README's and `kbbot demo`'s questions must be: "How do I
# enroll in MFA?" cleared it by 0.005 while MFA was embedded as three letters the model does not know; with
# the KB's own "Multi-factor authentication (MFA)" spelled out (retrieval/acronyms.py) by 0.175.
SURE_MARGIN = 0.05


def test_the_demo_and_readme_questions_are_answered_without_doubt(demo_database: Database, embedder: Any) -> None:
    gate = AbstentionGate()
    pipeline = pipeline_with(demo_database, embedder, gate)
    for question in (*DEMO_QUESTIONS[:3], "How do I enroll in MFA?"):
        answer = pipeline.answer(question)
        assert answer.outcome == "answered" and not answer.unsure, question
        # what the pipeline's gate read (no density: the base bar)
        result = pipeline.searcher.search(question, k=max(pipeline.top_k, pipeline.candidates))
        support = score_support(question, result.query_vector, result.hits, pipeline.unit_embedder)
        evidence = Evidence.of(result.hits, support)
        assert gate.confidence(evidence) >= gate.bar(None) + gate.unsure_band + SURE_MARGIN, (question, evidence)


def test_the_shipped_band_flags_most_wrong_answers_and_few_right_ones(demo_database: Database,
                                                                      embedder: Any) -> None:
    """What `kbbot eval --answers` reports as the unsure rate, on the demo's calibration sets."""
    pipeline = pipeline_with(demo_database, embedder, AbstentionGate())
    answerable = load_labelled_queries(DEMO_EVAL / "queries.jsonl", DEMO_EVAL / "qrels.tsv")
    report = evaluate_answers(pipeline.answer, "extractive", answerable, load_gold_answers(DEMO_EVAL / "answers.jsonl"),
                              load_questions(DEMO_EVAL / "unanswerable.jsonl"))
    answers = [r for r in report.per_question if r["outcome"] == "answered"]
    right = [r for r in answers if r["kind"] == "answerable"]
    wrong = [r for r in answers if r["kind"] == "unanswerable"]
    assert right and wrong
    assert report.unsure_rate == sum(bool(r["unsure"]) for r in answers) / len(answers)
    unsure_right = sum(bool(r["unsure"]) for r in right) / len(right)
    unsure_wrong = sum(bool(r["unsure"]) for r in wrong) / len(wrong)
    assert unsure_right <= UNSURE_RIGHT_AT_MOST and unsure_wrong >= UNSURE_WRONG_AT_LEAST, (unsure_right,
                                                                                           unsure_wrong)
    # the report's own split (right: holds the gold; wrong: an unanswerable question answered, or the gold
    # missed) flags the wrong answers far more often than the right ones
    assert report.unsure_of_right is not None and report.unsure_of_wrong is not None
    assert report.unsure_of_wrong >= 2 * report.unsure_of_right, (report.unsure_of_right, report.unsure_of_wrong)
