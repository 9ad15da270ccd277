"""Docs that are generated from the code must not drift from it."""

from __future__ import annotations

from pathlib import Path

from bot.cli_config import readme_with_table

REPO = Path(__file__).resolve().parents[1]


def test_readme_configuration_table_matches_the_settings() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert readme == readme_with_table(readme), "README's settings table is stale: run `make readme`"


def test_procfile_runs_the_three_processes() -> None:
    lines = dict(line.split(":", 1) for line in (REPO / "Procfile").read_text().splitlines() if line.strip())
    assert lines["web"].strip() == "kbbot serve"
    assert lines["worker"].strip() == "kbbot worker"
    assert lines["release"].strip() == "kbbot migrate"
