# ruff: noqa: F811 - `fake_openai` is a fixture imported from tests.fakes and taken by name
"""`kbbot llm check` against the fake OpenAI API."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from bot.cli import main
from tests.fakes.openai_api import FakeOpenAI, fake_openai  # noqa: F401 - fixture


@pytest.fixture
def kbbot(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.chdir(tmp_path)

    def run(*args: str) -> Result:
        return CliRunner().invoke(main, list(args), catch_exceptions=False)

    return run


def test_check_without_llm_says_how_to_configure_one(kbbot) -> None:  # type: ignore[no-untyped-def]
    result = kbbot("llm", "check")
    assert result.exit_code == 1
    assert "No LLM is configured, so answers are extractive" in result.output
    assert "OPENAI_API_KEY" in result.output


def test_check_calls_base_and_tone_models(kbbot, fake_openai: FakeOpenAI,  # type: ignore[no-untyped-def]
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("OPENAI_BASE_URL", fake_openai.url + "/v1")
    result = kbbot("llm", "check", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["base_model"] == "gpt-4o-mini" and report["tone_model"] is None
    assert "gpt-4o-mini" in report["available_models"]
    assert [(c["role"], c["ok"]) for c in report["checks"]] == [("base", True)]
    assert "sk-test" not in result.output

    monkeypatch.setenv("KBBOT_TONE_MODEL", "ft:gpt-4o-mini:gone:1")
    result = kbbot("llm", "check")
    assert result.exit_code == 1
    assert "Check base:   gpt-4o-mini: OK" in result.output
    assert "Tone model:   ft:gpt-4o-mini:gone:1 (routing: always)" in result.output
    assert "tone model: Calling ft:gpt-4o-mini:gone:1: model 'ft:gpt-4o-mini:gone:1' does not exist" in result.output
