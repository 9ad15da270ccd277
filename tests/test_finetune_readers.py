"""Readers on small fixtures of each format: roles, skipped lines with their location, known PII."""

from __future__ import annotations

from pathlib import Path

import pytest

from finetune.errors import InputError
from finetune.readers import SlackAgents, detect_format, read_inputs

FIXTURES = Path(__file__).parent / "fixtures" / "finetune"


def test_openai_jsonl_reads_valid_lines_and_reports_bad_ones_with_line_numbers() -> None:
    result = read_inputs([FIXTURES / "chats.jsonl"])
    assert len(result.conversations) == 5
    problems = {p.location.rsplit(":", 1)[1]: p.reason for p in result.problems}
    assert problems["4"].startswith("not JSON")
    assert "unknown role 'robot'" in problems["6"]
    first = result.conversations[0]
    assert [t.role for t in first.turns] == ["user", "assistant"]  # the source system prompt is replaced
    assert result.role_mapping["system message (replaced by the tone prompt)"] == 1


def test_csv_maps_roles_skips_bot_rows_and_reports_bad_rows() -> None:
    result = read_inputs([FIXTURES / "transcripts.csv"])
    by_id = {c.conversation_id: c for c in result.conversations}
    assert set(by_id) == {"T-1001", "T-1002", "T-1003", "T-1005"}
    assert [t.role for t in by_id["T-1001"].turns] == ["user", "assistant", "user", "assistant"]
    assert result.role_mapping["author_type=bot -> skipped"] == 1
    reasons = sorted(p.reason for p in result.problems)
    assert reasons == ["empty body", "empty ticket_id", "unknown author_type 'martian'"]
    assert all(p.location.startswith(str(FIXTURES / "transcripts.csv") + ":") for p in result.problems)
    assert ("NAME", "Sarah Lindqvist") in by_id["T-1001"].known_pii


def test_csv_without_role_column_needs_agent_names(tmp_path: Path) -> None:
    path = tmp_path / "chat.csv"
    path.write_text(
        'conversation_id,speaker,text\nc1,Ana,My order is late\nc1,Bob Agent,"Sorry Ana, on it!"\n'
    )
    with pytest.raises(InputError, match="--agent"):
        read_inputs([path])
    result = read_inputs([path], csv_agents=frozenset({"Bob Agent"}))
    assert [t.role for t in result.conversations[0].turns] == ["user", "assistant"]


def test_slack_export_threads_agents_by_group_and_skips_events() -> None:
    result = read_inputs([FIXTURES / "slack_export"], slack_agents=SlackAgents(group="support-team"))
    threads = {c.conversation_id: c for c in result.conversations}
    wifi = threads["support/1709280100.000200"]
    assert [t.role for t in wifi.turns] == ["user", "assistant", "user", "user", "assistant"]
    assert ("NAME", "Ngozi Adeyemi") in wifi.known_pii  # from users.json, for the sanitizer
    assert result.role_mapping["subtype channel_join -> skipped"] == 1
    assert result.role_mapping["subtype bot_message -> skipped"] == 1
    locations = [p.location for p in result.problems]
    assert any(loc.endswith("random/2024-03-01.json") for loc in locations)  # unreadable day file
    assert any(loc.endswith("2024-03-02.json#2") for loc in locations)  # message without ts


def test_slack_export_by_user_ids_and_unknown_group() -> None:
    by_ids = read_inputs([FIXTURES / "slack_export"], slack_agents=SlackAgents(frozenset({"U01AGENT1"})))
    badge = next(c for c in by_ids.conversations if c.conversation_id == "support/1709366400.000100")
    assert [t.role for t in badge.turns] == ["user", "assistant"]
    with pytest.raises(InputError, match="not in"):
        read_inputs([FIXTURES / "slack_export"], slack_agents=SlackAgents(group="nope"))
    with pytest.raises(InputError, match="--agent-ids"):
        read_inputs([FIXTURES / "slack_export"])


def test_twitter_threads_map_support_account_and_strip_addressing() -> None:
    result = read_inputs([FIXTURES / "twitter_threads.json"])
    assert len(result.conversations) == 2
    assert result.problems[0].reason == "missing dialogHeader/dialogContent"
    first, second = result.conversations
    assert [t.role for t in first.turns] == ["user", "assistant"]
    assert first.turns[0].text.startswith("my order never came")  # "@AcmeHelp" addressing cut
    assert "we'll" in first.turns[1].text  # HTML entities decoded
    assert [t.role for t in second.turns] == ["user", "assistant", "user", "assistant"]
    assert ("HANDLE", "jen_r_1988") in first.known_pii


def test_format_detection(tmp_path: Path) -> None:
    assert detect_format(FIXTURES / "chats.jsonl") == "openai"
    assert detect_format(FIXTURES / "transcripts.csv") == "csv"
    assert detect_format(FIXTURES / "slack_export") == "slack"
    assert detect_format(FIXTURES / "twitter_threads.json") == "twitter"
    odd = tmp_path / "notes.txt"
    odd.write_text("hello")
    with pytest.raises(InputError, match="--format"):
        detect_format(odd)
