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
    reason = "Calling ft:gpt-4o-mini:gone:1: model 'ft:gpt-4o-mini:gone:1' does not exist"
    assert f"Check tone:   ft:gpt-4o-mini:gone:1: FAILED: {reason}" in result.output
    assert result.output.count(reason) == 1  # said once, not again in the error line
    assert result.output.strip().endswith("Error: The tone model failed the check: see `Check` above.")


def test_ask_json_says_which_arm_answered_and_why_it_fell_back(  # type: ignore[no-untyped-def]
        kbbot, fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "vpn.md").write_text("# Connecting to the VPN\n\nOpen the VPN client and sign in with your SSO "
                               "account. Approve the MFA prompt on your phone.\n", encoding="utf-8")
    assert kbbot("ingest", str(kb), "--json").exit_code == 0
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("OPENAI_BASE_URL", fake_openai.url + "/v1")
    monkeypatch.setenv("KBBOT_TONE_MODEL", "ft:gpt-4o-mini:gone:1")  # not served: every call to it fails
    fake_openai.chat_responder = lambda messages, model: "Open the VPN client and sign in with SSO [1]."

    answer = json.loads(kbbot("ask", "How do I connect to the VPN?", "--json").output)

    assert answer["outcome"] == "answered" and answer["model"] == "gpt-4o-mini"
    assert answer["arm"] == "tone"
    assert answer["fallback_reason"].startswith("ft:gpt-4o-mini:gone:1: ")
    assert "does not exist" in answer["fallback_reason"] and "sk-test" not in json.dumps(answer)
