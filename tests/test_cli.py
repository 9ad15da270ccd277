"""The CLI end to end (in-process click runner, real database and model), including its JSON shapes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import main
from tests.helpers import sectioned_article, write_article

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def kb(tmp_path: Path) -> Path:
    root = tmp_path / "kb"
    write_article(root, "it/wiki.md", "Wiki search guide", sectioned_article("Wiki search"))
    write_article(root, "hr/parking.md", "Parking", "## Visitors\nVisitors park on level -2 and collect a "
                  "day pass from reception before 10:00.\n")
    return root


def test_ingest_search_ask_status_json(cli, kb: Path) -> None:  # type: ignore[no-untyped-def]
    run = json.loads(cli("ingest", str(kb), "--name", "kb", "--json").output)
    assert run["status"] == "succeeded" and run["added"] == 2 and run["schema_version"] == 1
    assert set(run) >= {"run_id", "kind", "started_at", "finished_at", "duration_s", "updated", "removed",
                        "unchanged", "failed", "chunks_embedded", "errors", "sources"}

    found = json.loads(cli("search", "where do visitors park", "--k", "3", "--json").output)
    assert found["hits"][0]["external_id"] == "hr/parking.md"
    assert set(found["hits"][0]) >= {"rank", "chunk_id", "title", "url", "heading_path", "text", "char_start",
                                     "char_end", "updated_at", "score", "similarity", "source"}
    assert len(found["hits"]) <= 3

    answer = json.loads(cli("ask", "Where do visitors park?", "--json").output)
    assert answer["outcome"] == "answered" and "level -2" in answer["answer"]
    assert answer["citations"][0]["external_id"] == "hr/parking.md"
    assert answer["citations"][0]["url"] == "https://kb.example/hr/parking.md"

    status = json.loads(cli("status", "--json").output)
    assert status["articles"] == 2 and status["embedding_model"] == "local/all-MiniLM-L6-v2"
    assert status["last_run"]["run_id"] == run["run_id"]
    assert status["sources"][0]["name"] == "kb"
    assert status["keyword_lists"]["newer_chunks"] == 0 and status["keyword_lists"]["rebuilt_at"]

    again = json.loads(cli("sync", "--json").output)
    assert again["unchanged"] == 2 and again["chunks_embedded"] == 0


def test_eval_json_reports_metrics(cli, kb: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cli("ingest", str(kb), "--json")
    queries = tmp_path / "q.jsonl"
    queries.write_text('{"_id": "1", "text": "visitor parking"}\n{"_id": "2", "text": "wiki access request"}\n')
    qrels = tmp_path / "qrels.tsv"
    qrels.write_text("query-id\tcorpus-id\tscore\n1\thr/parking.md\t1\n2\tit/wiki.md\t1\n")
    out = json.loads(cli("eval", "--queries", str(queries), "--qrels", str(qrels), "--k", "5",
                         "--mode", "dense", "--mode", "hybrid", "--json").output)
    assert [r["mode"] for r in out] == ["dense", "hybrid"]
    for report in out:
        assert report["queries"] == 2 and report["recall_at_k"] == 1.0
        assert set(report) >= {"recall_at_5", "ndcg_at_10", "mrr_at_10", "search_ms_p50", "search_ms_p95"}


def test_empty_question_is_a_clear_error(cli, kb: Path) -> None:  # type: ignore[no-untyped-def]
    cli("ingest", str(kb), "--json")
    result = cli("ask", "  ", ok=False)
    assert result.exit_code == 1 and "question is empty" in result.output


def test_search_before_ingest_says_what_to_do(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("search", "anything", ok=False)
    assert result.exit_code == 1 and "kbbot ingest" in result.output


def test_a_model_switch_during_a_search_is_one_line(cli, kb: Path, database_url: str,  # type: ignore[no-untyped-def]
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A re-embed that switches the active space under a search (the search retries once, and the switch
    happens again) ends in one line saying what to do, not a traceback."""
    from sqlalchemy import text

    import retrieval.search as search_module
    from retrieval.db import Database
    from retrieval.spaces import active_space

    cli("ingest", str(kb), "--json")
    db = Database.from_url(database_url, migrate=False)
    with db.engine.begin() as conn:
        stale = active_space(conn)
        conn.execute(text("UPDATE embedding_spaces SET status = 'retired'"))  # as a switch leaves the old space
    db.close()
    # The race made deterministic: the process reads the space before each switch commits.
    monkeypatch.setattr(search_module, "active_space", lambda conn: stale)
    result = cli("search", "where do visitors park", ok=False)
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        f"Error: The index switched away from embedding space {stale.label} while this search ran "
        "(a re-embed finished): ask again."]


def test_missing_path_is_a_clear_error(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = cli("ingest", str(tmp_path / "nope"), ok=False)
    assert result.exit_code == 1 and "does not exist" in result.output


def test_unreachable_database_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("DATABASE_URL", f"postgresql://u:pw-secret@127.0.0.1:{port}/x")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["status"])
    assert result.exit_code == 1
    assert "Cannot reach PostgreSQL" in result.output and "pw-secret" not in result.output


def test_bad_setting_names_the_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KBBOT_CHUNK_MAX_TOKENS", "-3")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["status"])
    assert result.exit_code == 1 and "KBBOT_CHUNK_MAX_TOKENS" in result.output


def test_ask_is_left_out_of_the_answer_log_unless_logged(cli, kb: Path) -> None:  # type: ignore[no-untyped-def]
    """An admin trying questions at a terminal does not fill the support lead's knowledge gaps; --log
    records the question like a Slack one (no Slack asker: whom it was asked as is metadata)."""
    cli("ingest", str(kb), "--json")
    unanswerable = "What is the stock price of our company today?"
    plain = json.loads(cli("ask", unanswerable, "--json").output)
    assert plain["outcome"] == "abstained" and plain["answer_id"] is None
    empty = cli("gaps")
    assert empty.output.startswith("0 questions without a good answer")
    assert "`kbbot ask` questions only with --log" in empty.output
    assert json.loads(cli("gaps", "--json").output)["gap_questions"] == 0

    logged = json.loads(cli("ask", unanswerable, "--log", "--json").output)
    assert logged["outcome"] == "abstained" and isinstance(logged["answer_id"], int)
    shown = cli("ask", "Where do visitors park?", "--log")
    assert "level -2" in shown.output and "Logged as answer" in shown.output

    report = json.loads(cli("gaps", "--json").output)
    assert report["gap_questions"] == 1  # the answered one is logged but is no gap
    [group] = report["groups"]
    assert group["representative"] == unanswerable and group["abstained"] == 1
    exported = cli("answers", "export", "--since", "1d", "--format", "jsonl").stdout.splitlines()
    rows = [json.loads(line) for line in exported]
    assert sorted(r["question"] for r in rows) == sorted([unanswerable, "Where do visitors park?"])
    assert {r["channel_kind"] for r in rows} == {"cli"} and {r["asker"] for r in rows} == {None}


def test_status_says_when_the_configured_model_is_not_the_indexs(cli, kb: Path,  # type: ignore[no-untyped-def]
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    cli("ingest", str(kb), "--json")
    assert "is not the index's" not in cli("status").output
    assert json.loads(cli("status", "--json").output)["configured_embedding_model"] == "local/all-MiniLM-L6-v2"

    monkeypatch.setenv("KBBOT_EMBEDDING_MODEL", "all-mpnet-base-v2")  # switched, not yet re-embedded
    text = " ".join(cli("status").output.split())
    assert ("Configured model local/all-mpnet-base-v2 is not the index's: questions use local/all-MiniLM-L6-v2 "
            "until `kbbot sync --full` re-embeds with it.") in text
    status = json.loads(cli("status", "--json").output)
    assert status["configured_embedding_model"] == "local/all-mpnet-base-v2"
    assert status["embedding_model"] == "local/all-MiniLM-L6-v2"
