"""`kbbot answers export --by-model`: feedback compared between the base and the tone model."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import main
from retrieval.answer_log import AnswerLog, Asked
from retrieval.db import Database
from retrieval.model_comparison import wilson_interval
from retrieval.types import Answer

TONE = "ft:gpt-4o-mini:northwind:tone:abc"


def log_answers(db: Database) -> None:
    log = AnswerLog(db)

    def record(model: str, outcome: str = "answered", votes: tuple[str, ...] = (), total_ms: float = 100) -> None:
        answer = Answer("q?", "a [1]", [], outcome, model, timings_ms={"total": total_ms})  # type: ignore[arg-type]
        answer_id = log.record(Asked("q?", "channel", "U1", "C1"), answer)
        for i, vote in enumerate(votes):
            log.record_feedback(answer_id, f"U{i}", vote)  # type: ignore[arg-type]

    for ms in (900, 1000, 1100):
        record("gpt-4o-mini", votes=("up",), total_ms=ms)
    record("gpt-4o-mini", votes=("down", "down"))
    record("gpt-4o-mini", outcome="abstained")
    record(TONE, votes=("up", "up"), total_ms=1500)
    record(TONE, votes=("up",), total_ms=1500)
    record(TONE)
    record("none", outcome="abstained")  # the relevance gate, before any model
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


def test_by_model_rates(cli, database: Database) -> None:  # type: ignore[no-untyped-def]
    log_answers(database)
    out, err = cli("answers", "export", "--by-model", "--since", "1d")
    rows = {row["model"]: row for row in map(json.loads, out.splitlines())}
    assert list(rows) == ["gpt-4o-mini", TONE, "(failed)", "none"]
    base, tone = rows["gpt-4o-mini"], rows[TONE]
    assert (base["answers"], base["answered"], base["abstained"], base["rated"]) == (5, 4, 1, 4)
    assert (base["up"], base["down"], base["up_rate"], base["abstain_rate"]) == (3, 2, 0.6, 0.2)
    assert base["latency_p50_ms"] == 900.0  # median of 100, 100, 900, 1000, 1100
    assert (tone["answers"], tone["up"], tone["down"], tone["up_rate"], tone["rated_rate"]) == (3, 3, 0, 1.0,
                                                                                                 0.6667)
    assert tone["latency_p50_ms"] == 1500.0
    assert 0 < tone["up_rate_ci95_low"] < 1.0 == tone["up_rate_ci95_high"]  # 3 votes settle nothing
    assert rows["(failed)"]["errors"] == 1 and rows["none"]["abstained"] == 1
    assert "Compared 4 models over 10 answers" in err

    out, _ = cli("answers", "export", "--by-model", "--format", "csv")
    table = list(csv.DictReader(io.StringIO(out)))
    assert table[0]["model"] == "gpt-4o-mini" and table[0]["up_rate"] == "0.6"


def test_wilson_interval() -> None:
    assert wilson_interval(0, 0) == (None, None)
    low, high = wilson_interval(60, 100)
    assert low == pytest.approx(0.502, abs=1e-3) and high == pytest.approx(0.691, abs=1e-3)
