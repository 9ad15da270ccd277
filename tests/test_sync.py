"""Incremental sync against the real PostgreSQL+pgvector and the real local model."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from retrieval.errors import ModelMismatchError
from retrieval.search import Searcher
from retrieval.sources import FilesystemSource, JsonlSource
from retrieval.sync import Indexer
from tests.helpers import CountingEmbedder, sectioned_article, write_article

TOPICS = ("Expense tool", "Badge printer", "Wiki search", "Deploy pipeline")


@pytest.fixture
def kb(tmp_path: Path) -> Path:
    root = tmp_path / "kb"
    for topic in TOPICS:
        write_article(root, f"{topic.lower().replace(' ', '-')}.md", f"{topic} guide", sectioned_article(topic))
    return root


def count(db, sql: str) -> int:  # type: ignore[no-untyped-def]
    with db.engine.connect() as conn:
        return conn.execute(text(sql)).scalar_one()


def test_first_sync_indexes_every_article_with_vectors(database, embedder, kb: Path) -> None:
    run = Indexer(database, embedder, chunk_max_tokens=200).sync([FilesystemSource("kb", kb)])
    assert (run.status, run.added, run.failed) == ("succeeded", len(TOPICS), 0)
    chunks = count(database, "SELECT count(*) FROM chunks")
    assert run.chunks_embedded == chunks == count(database, "SELECT count(*) FROM embeddings")
    # Offsets point into the stored article body: a citation can quote the exact passage.
    with database.engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT a.body, c.text, c.char_start, c.char_end, c.heading_path FROM chunks c "
            "JOIN articles a ON a.id = c.article_id")).all()
    assert all(body[start:end] == chunk for body, chunk, start, end, _ in rows)
    assert {tuple(r.heading_path) for r in rows} >= {("Overview",), ("Requesting access",), ("Troubleshooting",)}


def test_unchanged_resync_embeds_nothing(database, embedder, kb: Path) -> None:
    Indexer(database, embedder, chunk_max_tokens=200).sync([FilesystemSource("kb", kb)])
    counting = CountingEmbedder(embedder)
    run = Indexer(database, counting, chunk_max_tokens=200).sync([FilesystemSource("kb", kb)])
    assert (run.unchanged, run.added, run.updated, run.chunks_embedded) == (len(TOPICS), 0, 0, 0)
    assert counting.calls == []


def test_edit_reembeds_only_the_changed_chunk(database, embedder, kb: Path) -> None:
    Indexer(database, embedder, chunk_max_tokens=200).sync([FilesystemSource("kb", kb)])
    before = count(database, "SELECT count(*) FROM chunks")
    path = kb / "wiki-search.md"
    path.write_text(path.read_text().replace("within two working days", "within one working day"))
    counting = CountingEmbedder(embedder)
    run = Indexer(database, counting, chunk_max_tokens=200).sync([FilesystemSource("kb", kb)])
    assert (run.updated, run.unchanged, run.chunks_embedded) == (1, len(TOPICS) - 1, 1)
    assert len(counting.calls) == 1 and "within one working day" in counting.calls[0][0]
    assert count(database, "SELECT count(*) FROM chunks") == before
    assert count(database, "SELECT count(*) FROM embeddings") == before


def test_deleted_article_disappears_from_search(database, embedder, kb: Path) -> None:
    indexer = Indexer(database, embedder, chunk_max_tokens=200)
    indexer.sync([FilesystemSource("kb", kb)])
    searcher = Searcher(database, embedder)
    assert any(h.external_id == "badge-printer.md" for h in searcher.search("badge printer access").hits)
    (kb / "badge-printer.md").unlink()
    run = indexer.sync([FilesystemSource("kb", kb)])
    assert run.removed == 1
    for mode in ("dense", "lexical", "hybrid"):
        hits = searcher.search("badge printer access", mode=mode).hits  # type: ignore[arg-type]
        assert all(h.external_id != "badge-printer.md" for h in hits)
    assert count(database, "SELECT count(*) FROM embeddings e LEFT JOIN chunks c ON c.id = e.chunk_id "
                           "WHERE c.id IS NULL") == 0


def test_unreadable_article_is_reported_and_its_indexed_version_kept(database, embedder, kb: Path) -> None:
    indexer = Indexer(database, embedder, chunk_max_tokens=200)
    indexer.sync([FilesystemSource("kb", kb)])
    (kb / "deploy-pipeline.md").write_bytes(b"\xff\xfe\x00binary\x00junk")
    (kb / "empty.md").write_text("---\ntitle: Empty\n---\n")
    (kb / "latin1.txt").write_bytes("Caf\xe9 menu\nCroissants are served at nine.".encode("latin-1"))
    run = indexer.sync([FilesystemSource("kb", kb)])
    assert run.status == "partial" and run.failed == 3 and run.removed == 0
    messages = " | ".join(e["error"] for e in run.errors)
    assert "deploy-pipeline.md" in " ".join(e["where"] for e in run.errors)
    assert "UTF-8" in messages or "utf-8" in messages
    assert count(database, "SELECT count(*) FROM articles WHERE external_id = 'deploy-pipeline.md'") == 1


def test_malformed_jsonl_lines_are_reported_with_line_numbers(database, embedder, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(
        '{"_id": "a1", "title": "Parking", "text": "Visitors park on level -2 with a day pass."}\n'
        '{"_id": "a2", "title": "Broken", "text": \n'
        '{"_id": "a3", "title": "No text"}\n'
        '{"_id": "a4", "title": "Lockers", "text": "Lockers on floor 3 open with your badge."}\n'
    )
    run = Indexer(database, embedder, chunk_max_tokens=200).sync([JsonlSource("corpus", corpus)])
    assert (run.added, run.failed) == (2, 2)
    assert {e["where"] for e in run.errors} == {f"{corpus}:2", f"{corpus}:3"}


def test_crash_mid_sync_loses_nothing_and_next_run_finishes(database, embedder, tmp_path: Path) -> None:
    root = tmp_path / "many"
    for i in range(12):
        write_article(root, f"a{i:02d}.md", f"Article {i}", sectioned_article(f"System {i}"))
    import retrieval.sync as sync_module

    original = sync_module.EMBED_BATCH_CHUNKS
    sync_module.EMBED_BATCH_CHUNKS = 8  # several batches, so the crash lands mid-run
    try:
        crashing = CountingEmbedder(embedder, fail_after_calls=2)
        with pytest.raises(RuntimeError, match="simulated crash"):
            Indexer(database, crashing, chunk_max_tokens=200).sync([FilesystemSource("many", root)])
        committed = count(database, "SELECT count(*) FROM articles")
        assert 0 < committed < 12
        with database.engine.connect() as conn:
            status = conn.execute(text("SELECT status FROM sync_runs ORDER BY id DESC LIMIT 1")).scalar()
        assert status == "failed"
        run = Indexer(database, embedder, chunk_max_tokens=200).sync([FilesystemSource("many", root)])
    finally:
        sync_module.EMBED_BATCH_CHUNKS = original
    assert (run.added, run.unchanged, run.failed) == (12 - committed, committed, 0)
    chunks = count(database, "SELECT count(*) FROM chunks")
    assert chunks == count(database, "SELECT count(*) FROM embeddings")
    assert count(database, "SELECT count(*) FROM (SELECT article_id, ordinal FROM chunks "
                           "GROUP BY 1, 2 HAVING count(*) > 1) d") == 0


def test_killed_process_is_recorded_as_interrupted_and_recovered(database_url: str, embedder,
                                                                   database, tmp_path: Path) -> None:
    root = tmp_path / "big"
    # Articles are committed a batch (256 passages) at a time: enough of them that the kill lands after the
    # first batch and before the last.
    for i in range(150):
        write_article(root, f"p{i:03d}.md", f"Page {i}", sectioned_article(f"Service {i}"))
    env = {**os.environ, "DATABASE_URL": database_url, "KBBOT_DATA_DIR": str(tmp_path / "d"),
           "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "bot.cli", "ingest", str(root), "--name", "big"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            cwd=Path(__file__).resolve().parents[1])
    try:
        deadline = time.monotonic() + 120
        while count(database, "SELECT count(*) FROM articles") == 0:
            assert proc.poll() is None, "ingest finished before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    # The killed process's backend lets go of the sync lock only once PostgreSQL sees its socket close;
    # on a loaded machine that is not at once, and the next sync would rightly refuse to start.
    deadline = time.monotonic() + 30
    while count(database, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"):
        assert time.monotonic() < deadline, "the killed ingest's sync lock was never released"
        time.sleep(0.05)
    run = Indexer(database, embedder, chunk_max_tokens=200).sync([FilesystemSource("big", root)])
    with database.engine.connect() as conn:
        statuses = conn.execute(text("SELECT status FROM sync_runs ORDER BY id")).scalars().all()
    assert statuses == ["interrupted", "succeeded"]
    assert run.added + run.unchanged == 150
    assert count(database, "SELECT count(*) FROM articles") == 150
    assert count(database, "SELECT count(*) FROM chunks") == count(database, "SELECT count(*) FROM embeddings")


def test_model_change_is_refused_until_a_full_reembed(database, embedder, kb: Path) -> None:
    Indexer(database, embedder, chunk_max_tokens=200).sync([FilesystemSource("kb", kb)])
    other = CountingEmbedder(embedder, model="all-MiniLM-L6-v2-retrained")
    with pytest.raises(ModelMismatchError, match=r"reindex --full|/reindex full"):
        Indexer(database, other, chunk_max_tokens=200).sync([FilesystemSource("kb", kb)])
    with pytest.raises(ModelMismatchError):
        Searcher(database, other).search("wiki search")
    assert other.calls == []
    run = Indexer(database, other, chunk_max_tokens=200).sync([FilesystemSource("kb", kb)], kind="full")
    chunks = count(database, "SELECT count(*) FROM chunks")
    assert run.chunks_embedded == chunks == other.embedded
    with database.engine.connect() as conn:
        spaces = conn.execute(text("SELECT model, status FROM embedding_spaces ORDER BY id")).all()
    assert [tuple(s) for s in spaces] == [("all-MiniLM-L6-v2", "retired"),
                                         ("all-MiniLM-L6-v2-retrained", "active")]
    assert count(database, "SELECT count(*) FROM embeddings") == chunks
    assert Searcher(database, other).search("wiki search").hits


def test_a_write_failure_in_a_batch_only_loses_that_article(database, embedder, kb: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Articles are written a batch per transaction; when the batch fails, each is retried alone, so only
    the article the database refuses is reported (and kept out), not its neighbours."""
    import psycopg

    from retrieval.index_store import IndexStore

    original = IndexStore._write_article

    def refuse_the_badge_printer(self, pending):  # type: ignore[no-untyped-def]
        if pending.article.title == "Badge printer guide":
            raise psycopg.errors.DataError("invalid byte sequence for encoding \"UTF8\"")
        return original(self, pending)

    monkeypatch.setattr(IndexStore, "_write_article", refuse_the_badge_printer)
    run = Indexer(database, embedder, chunk_max_tokens=200).sync([FilesystemSource("kb", kb)])
    assert (run.status, run.added, run.failed) == ("partial", len(TOPICS) - 1, 1)
    assert "badge-printer.md" in str(run.errors)
    assert count(database, "SELECT count(*) FROM articles WHERE title = 'Badge printer guide'") == 0
    assert count(database, "SELECT count(*) FROM chunks") == count(database, "SELECT count(*) FROM embeddings")
    monkeypatch.setattr(IndexStore, "_write_article", original)
    again = Indexer(database, embedder, chunk_max_tokens=200).sync([FilesystemSource("kb", kb)])
    assert (again.added, again.unchanged, again.failed) == (1, len(TOPICS) - 1, 0)


def test_first_load_builds_the_keyword_index_after_its_rows(database, embedder, kb: Path) -> None:
    def keyword_index() -> int:
        return count(database, "SELECT count(*) FROM pg_indexes WHERE indexname = 'chunks_tsv_idx'")

    crashing = CountingEmbedder(embedder, fail_after_calls=0)
    with pytest.raises(RuntimeError, match="simulated crash"):
        Indexer(database, crashing, chunk_max_tokens=200).sync([FilesystemSource("kb", kb)])
    assert keyword_index() == 0  # dropped for the bulk load; the crash came before the build
    Indexer(database, embedder, chunk_max_tokens=200).sync([FilesystemSource("kb", kb)])
    assert keyword_index() == 1
    hits = Searcher(database, embedder).search("badge printer", k=3, mode="lexical").hits
    assert hits and hits[0].title == "Badge printer guide"
