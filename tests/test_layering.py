"""The layers import one way: bot/ -> finetune/ -> retrieval/. The core knows nothing of fine-tuning, Slack
or the CLI, and fine-tuning nothing of Slack or the CLI (read from the source, so a lazy import counts)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FORBIDDEN = {
    "retrieval": ("finetune", "bot", "slack_bolt", "slack_sdk", "click"),
    "finetune": ("bot", "slack_bolt", "slack_sdk", "click"),
}


def imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_layer_never_imports_the_ones_above_it(package: str) -> None:
    files = sorted((REPO / package).rglob("*.py"))
    assert len(files) > 5
    wrong = {f"{path.relative_to(REPO)}: {module}"
             for path in files for module in imported_modules(path)
             if module.split(".")[0] in FORBIDDEN[package]}
    assert not wrong, sorted(wrong)


def test_one_token_counter_type() -> None:
    """`TokenCounter` means one thing (retrieval.tokens); the chunker's count function is `CountTokens`."""
    def defines_it(node: ast.AST) -> bool:
        if isinstance(node, ast.ClassDef):
            return node.name == "TokenCounter"
        return isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "TokenCounter" for t in node.targets)

    defined = {f"{path.relative_to(REPO)}" for package in ("retrieval", "finetune", "bot")
               for path in (REPO / package).rglob("*.py")
               if any(defines_it(node) for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))))}
    assert defined == {"retrieval/tokens.py"}


def test_sql_lives_in_the_core() -> None:
    """The edges ask retrieval/ for what they need; no table is read or written from bot/ (one place per
    table to change when the schema does)."""
    drivers = ("sqlalchemy", "psycopg")
    wrong = {f"{path.relative_to(REPO)}: {module}"
             for path in sorted((REPO / "bot").rglob("*.py")) for module in imported_modules(path)
             if module.split(".")[0] in drivers}
    assert not wrong, sorted(wrong)
