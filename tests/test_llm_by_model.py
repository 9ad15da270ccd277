"""`kbbot answers export --by-model`: feedback compared between the base and the tone arm, fallbacks included."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import main
from retrieval.answer_log import AnswerLog, Asked
from retrieval.db import Database
from retrieval.model_comparison import wilson_interval
from retrieval.routing import ab_bucket
from retrieval.types import Answer
from tests.fakes.openai_api import FakeOpenAI
from tests.slack_fixtures import *  # noqa: F403 - the fixtures (Slack and OpenAI fakes)
from tests.slack_fixtures import start_bot, stop_bot

TONE = "ft:gpt-4o-mini:northwind:tone:abc"
VPN = "How do I connect to the VPN when I'm working from home?"


def log_answers(db: Database) -> None:
    log = AnswerLog(db)

    def record(model: str, arm: str | None, outcome: str = "answered", votes: tuple[str, ...] = (),
               total_ms: float = 100, fallback_reason: str | None = None) -> None:
        answer = Answer("q?", "a [1]", [], outcome, model, timings_ms={"total": total_ms},  # type: ignore[arg-type]
                        arm=arm, fallback_reason=fallback_reason)
        answer_id = log.record(Asked("q?", "channel", "U1", "C1"), answer)
        for i, vote in enumerate(votes):
            log.record_feedback(answer_id, f"U{i}", vote)  # type: ignore[arg-type]

    for ms in (900, 1000, 1100):
        record("gpt-4o-mini", "base", votes=("up",), total_ms=ms)
    record("gpt-4o-mini", "base", votes=("down", "down"))
    record("gpt-4o-mini", "base", outcome="abstained")
    record(TONE, "tone", votes=("up", "up"), total_ms=1500)
    record(TONE, "tone", votes=("up",), total_ms=1500)
    record(TONE, "tone")
    # The tone model failed and the base model wrote it: still the tone arm.
    record("gpt-4o-mini", "tone", votes=("down",), fallback_reason=f"{TONE}: timed out")
    record("none", None, outcome="abstained")  # the relevance gate, before any model
    record("gpt-4o-mini", None)  # logged before arms were recorded: grouped by its model
    log.record_error(Asked("q?", "channel", "U1", "C1"), error_id="e1", error="db down")


@pytest.fixture
def cli(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.chdir(tmp_path)

    def run(*args: str) -> tuple[str, str]:
        result = CliRunner().invoke(main, list(args), catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.stdout, result.stderr

    return run


def test_by_model_rates_per_arm(cli, database: Database) -> None:  # type: ignore[no-untyped-def]
    log_answers(database)
    out, err = cli("answers", "export", "--by-model", "--since", "1d")
    rows = {row["arm"]: row for row in map(json.loads, out.splitlines())}
    assert list(rows) == ["base", "tone", "(failed)", "gpt-4o-mini", "none"]
    base, tone = rows["base"], rows["tone"]
    assert base["models"] == "gpt-4o-mini (5)" and (base["fallbacks"], base["fallback_rate"]) == (0, 0.0)
    assert (base["answers"], base["answered"], base["abstained"], base["rated"]) == (5, 4, 1, 4)
    assert (base["up"], base["down"], base["up_rate"], base["abstain_rate"]) == (3, 2, 0.6, 0.2)
    assert base["latency_p50_ms"] == 900.0  # median of 100, 100, 900, 1000, 1100
    assert tone["models"] == f"{TONE} (3), gpt-4o-mini (1)"
    assert (tone["answers"], tone["up"], tone["down"], tone["up_rate"], tone["rated_rate"]) == (4, 3, 1, 0.75,
                                                                                                 0.75)
    assert (tone["fallbacks"], tone["fallback_rate"]) == (1, 0.25)
    assert tone["latency_p50_ms"] == 800.0  # median of 100, 100, 1500, 1500
    assert 0 < tone["up_rate_ci95_low"] < tone["up_rate_ci95_high"] < 1.0  # 4 votes settle nothing
    assert rows["(failed)"]["errors"] == 1 and rows["none"]["abstained"] == 1
    assert rows["gpt-4o-mini"]["answers"] == 1 and rows["gpt-4o-mini"]["models"] == "gpt-4o-mini (1)"
    assert "Compared 5 groups over 12 answers (1 written by a fallback model)" in err

    out, _ = cli("answers", "export", "--by-model", "--format", "csv")
    table = list(csv.DictReader(io.StringIO(out)))
    assert table[0]["arm"] == "base" and table[0]["up_rate"] == "0.6" and table[1]["fallbacks"] == "1"


def test_tone_model_failing_keeps_the_answer_in_the_tone_arm(  # type: ignore[no-untyped-def]
        fake_slack, demo_database: Database, embedder, tmp_path: Path, fake_openai: FakeOpenAI,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Through Slack: an A/B on users; the tone model answers once, then disappears (404 model_not_found) and
    the base model answers the same tone-arm user: the log and the export keep that answer in the tone arm."""
    fake_openai.models.add(TONE)
    fake_openai.chat_responder = lambda messages, model: (
        "Open the VPN client and sign in with your SSO account [1]. Approve the MFA prompt [1].")
    users = [f"U0USER{i}" for i in range(40)]
    tone_user = next(u for u in users if ab_bucket(u) < 0.5)
    base_user = next(u for u in users if ab_bucket(u) >= 0.5)
    bot = start_bot(fake_slack, demo_database, embedder, tmp_path, openai_base_url=fake_openai.url + "/v1",
                    openai_api_key="sk-test", llm_model="gpt-4o-mini", tone_model=TONE, tone_routing="share",
                    tone_share=0.5)
    try:
        for user in (tone_user, base_user):
            ts, _ = bot.mention(VPN, user=user, channel="C0IT")
            bot.final_answer("C0IT", ts)
        fake_openai.models.discard(TONE)  # the tone model is deleted: its calls now fail
        ts, _ = bot.mention(VPN, user=tone_user, channel="C0IT")
        bot.final_answer("C0IT", ts)
    finally:
        stop_bot(bot)
    assert [r.json["model"] for r in fake_openai.requests_to("POST", r"/v1/chat/completions")] == \
        [TONE, "gpt-4o-mini", TONE, "gpt-4o-mini"]

    logged = sorted(AnswerLog(demo_database).export(since=datetime.now(UTC) - timedelta(hours=1)),
                    key=lambda a: a.id)
    assert [(a.asker, a.arm, a.model, a.outcome) for a in logged] == [
        (tone_user, "tone", TONE, "answered"), (base_user, "base", "gpt-4o-mini", "answered"),
        (tone_user, "tone", "gpt-4o-mini", "answered")]
    assert logged[0].fallback_reason is None and logged[1].fallback_reason is None
    assert logged[2].fallback_reason.startswith(f"{TONE}: ") and "does not exist" in logged[2].fallback_reason

    monkeypatch.setenv("DATABASE_URL", demo_database.engine.url.render_as_string(hide_password=False))
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    result = runner.invoke(main, ["answers", "export", "--by-model", "--since", "1h"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    rows = {row["arm"]: row for row in map(json.loads, result.stdout.splitlines())}
    assert set(rows) == {"tone", "base"}
    assert (rows["tone"]["answers"], rows["tone"]["fallbacks"]) == (2, 1)
    assert rows["tone"]["models"] == f"{TONE} (1), gpt-4o-mini (1)"
    assert (rows["base"]["answers"], rows["base"]["fallbacks"], rows["base"]["models"]) == (1, 0, "gpt-4o-mini (1)")

    result = runner.invoke(main, ["answers", "export", "--since", "1h", "--format", "csv"], catch_exceptions=False)
    fallback = list(csv.DictReader(io.StringIO(result.stdout)))[-1]
    assert (fallback["arm"], fallback["model"]) == ("tone", "gpt-4o-mini") and TONE in fallback["fallback_reason"]


def test_wilson_interval() -> None:
    assert wilson_interval(0, 0) == (None, None)
    low, high = wilson_interval(60, 100)
    assert low == pytest.approx(0.502, abs=1e-3) and high == pytest.approx(0.691, abs=1e-3)
