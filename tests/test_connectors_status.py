"""Freshness as an admin sees it: `kbbot sync`/`kbbot worker --once` on a sources file, then `kbbot status`
showing per source the last success, the failure and since when, incremental mode and retries."""

# ruff: noqa: F811 - fixtures imported from tests.fakes are taken by name
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import main
from tests.fakes.json_api import Scripted
from tests.fakes.zendesk_api import FakeZendesk, fake_zendesk  # noqa: F401


@pytest.fixture
def cli(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_zendesk: FakeZendesk):  # type: ignore[no-untyped-def]
    sources = tmp_path / "sources.yml"
    sources.write_text(f"""sources:
  - name: help-center
    type: zendesk
    api_base_url: {fake_zendesk.url}
    options: {{email: {fake_zendesk.email}, token_env: ZENDESK_API_TOKEN, max_retries: 1}}
""")
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("KBBOT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("KBBOT_SOURCES_FILE", str(sources))
    monkeypatch.setenv("ZENDESK_API_TOKEN", fake_zendesk.token)
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()

    def run(*args: str, code: int = 0):  # type: ignore[no-untyped-def]
        result = runner.invoke(main, list(args), catch_exceptions=False)
        assert result.exit_code == code, result.output
        return result.output

    return run


def test_status_shows_freshness_failures_and_recovery(cli, fake_zendesk: FakeZendesk) -> None:  # type: ignore[no-untyped-def]
    section = fake_zendesk.add_section("Travel", fake_zendesk.add_category("Policies"))
    for title in ("Booking flights", "Hotel limits", "Per diem rates"):
        fake_zendesk.add_article(title, f"<p>{title}: the policy applies to every trip booked after May.</p>",
                                 section_id=section)
    fake_zendesk.tick(3600)
    assert "3 added" in cli("sync")

    source = json.loads(cli("status", "--json"))["sources"][0]
    assert (source["name"], source["articles"], source["incremental"], source["last_error"]) == \
        ("help-center", 3, True, None)
    assert source["oldest_update"].startswith("2026-01-01T00:00")

    # The help center goes down: the worker's run fails that source, keeps its articles, and says so.
    fake_zendesk.script(r"/api/v2/help_center/incremental/articles\.json", Scripted(503), Scripted(503))
    assert "Sync partial" in cli("worker", "--once")
    status = json.loads(cli("status", "--json"))
    failing = status["sources"][0]
    assert failing["articles"] == 3 and failing["last_success_at"] == source["last_success_at"]
    assert "did not answer after 2 attempts (HTTP 503" in failing["last_error"]
    assert failing["last_error_at"] is not None
    assert status["last_run"]["trigger"] == "worker"
    human = cli("status")
    assert "failing since" in human and "did not answer after 2 attempts" in human
    assert "(incremental)" in human

    # Back up: the next run succeeds and the failure is cleared.
    assert "Sync succeeded" in cli("worker", "--once")
    recovered = json.loads(cli("status", "--json"))["sources"][0]
    assert recovered["last_error"] is None and recovered["last_success_at"] > source["last_success_at"]
