"""Answer units' vectors stored in PostgreSQL (retrieval/unit_vectors.py): real database, real model."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from retrieval.answer import AnswerPipeline
from retrieval.db import Database
from retrieval.extractive import ExtractiveSynthesizer
from retrieval.search import Searcher
from retrieval.sources.filesystem import FilesystemSource
from retrieval.sync import Indexer
from retrieval.unit_vectors import PassageUnits, UnitEmbedder, UnitVectorStore, passage_unit_texts, unit_hash
from tests.helpers import SECTIONED, CountingEmbedder, write_article
from tests.test_migrations import _alembic

QUESTION = "how do I connect to the VPN"
F16_ERROR = 3e-4  # float16 rounding of a unit vector's coordinates (|x| < 0.5: at most 2.4e-4)


def store_for(db: Database, embedder) -> UnitVectorStore:  # type: ignore[no-untyped-def]
    return UnitVectorStore(db, provider=embedder.provider, model=embedder.model, dimension=embedder.dimension)


def pipeline_for(db: Database, embedder, units: UnitEmbedder) -> AnswerPipeline:  # type: ignore[no-untyped-def]
    return AnswerPipeline(Searcher(db, embedder), ExtractiveSynthesizer(units), unit_embedder=units)


def stored_rows(db: Database) -> dict[int, tuple[bytes, bytes]]:
    with db.raw_connection() as conn:
        rows = conn.execute("SELECT chunk_id, unit_hashes, vectors_f16 FROM unit_vectors").fetchall()
    return {cid: (bytes(h), bytes(v)) for cid, h, v in rows}


def passages_of(db: Database, chunk_ids: list[int] | None = None) -> list[tuple[int, list[str]]]:
    """(chunk id, unit texts) of the index's passages, built as the answer path builds them."""
    with db.raw_connection() as conn:
        rows = conn.execute("SELECT c.id, a.title, c.heading_path, c.text FROM chunks c "
                            "JOIN articles a ON a.id = c.article_id ORDER BY c.id").fetchall()
    return [(cid, passage_unit_texts(title, heading or [], body)) for cid, title, heading, body in rows
            if chunk_ids is None or cid in chunk_ids]


def test_vectors_are_written_once_and_reused_by_a_new_pipeline(demo_database, embedder) -> None:  # type: ignore[no-untyped-def]
    first_model = CountingEmbedder(embedder)
    first = UnitEmbedder(first_model, store_for(demo_database, embedder))
    answer = pipeline_for(demo_database, embedder, first).answer(QUESTION)
    first.flush()
    assert answer.outcome == "answered" and first_model.embedded > 0
    rows = stored_rows(demo_database)
    assert answer.citations[0].hit.chunk_id in rows
    assert first.db_hits == 0 and first.db_misses == first_model.embedded

    # A new process: empty memory, the same database. Nothing is embedded but the question.
    second_model = CountingEmbedder(embedder)
    second = UnitEmbedder(second_model, store_for(demo_database, embedder))
    again = pipeline_for(demo_database, embedder, second).answer(QUESTION)
    second.flush()
    assert second_model.embedded == 0
    assert second.db_hits == first_model.embedded
    assert again.text == answer.text
    assert [c.hit.chunk_id for c in again.citations] == [c.hit.chunk_id for c in answer.citations]
    assert stored_rows(demo_database) == rows  # read, not rewritten


def test_stored_vectors_equal_fresh_ones_and_answers_do_not_change(demo_database, embedder) -> None:  # type: ignore[no-untyped-def]
    questions = [QUESTION, "what is the per diem in Toronto", "how many vacation days do I get",
                 "what is the capital of Mongolia"]
    without_table = UnitEmbedder(embedder, None)
    plain = [pipeline_for(demo_database, embedder, without_table).answer(q) for q in questions]
    writer = UnitEmbedder(embedder, store_for(demo_database, embedder))
    for q in questions:
        pipeline_for(demo_database, embedder, writer).answer(q)
    writer.flush()
    reader = UnitEmbedder(CountingEmbedder(embedder), store_for(demo_database, embedder))
    from_table = [pipeline_for(demo_database, embedder, reader).answer(q) for q in questions]
    assert reader.inner.embedded == 0  # type: ignore[attr-defined]
    assert [(a.outcome, a.text) for a in from_table] == [(a.outcome, a.text) for a in plain]

    rows = stored_rows(demo_database)
    for chunk_id, texts in passages_of(demo_database, list(rows)):
        hashes, packed = rows[chunk_id]
        assert hashes == b"".join(unit_hash(t) for t in texts)
        stored = np.frombuffer(packed, dtype="<f2").reshape(len(texts), embedder.dimension)
        fresh = embedder.embed_documents(texts)
        np.testing.assert_allclose(stored, fresh, atol=F16_ERROR)  # float16: ~3 significant digits


def test_a_row_of_other_units_is_not_served_and_is_replaced(demo_database, embedder) -> None:  # type: ignore[no-untyped-def]
    chunk_id, texts = passages_of(demo_database)[0]
    store = store_for(demo_database, embedder)
    # As if the unit splitting had changed since the row was written: other texts, other vectors.
    stale = [f"{t} (old split)" for t in texts]
    store.write([(chunk_id, stale, np.ones((len(stale), embedder.dimension), np.float32))])
    model = CountingEmbedder(embedder)
    units = UnitEmbedder(model, store)
    vectors = units.embed_units([PassageUnits(chunk_id, texts)])
    units.flush()
    assert model.embedded == len(texts)  # nothing of the stale row was served
    np.testing.assert_allclose(vectors, embedder.embed_documents(texts), atol=F16_ERROR)
    assert stored_rows(demo_database)[chunk_id][0] == b"".join(unit_hash(t) for t in texts)


def test_concurrent_workers_store_each_passage_once(demo_database, embedder) -> None:  # type: ignore[no-untyped-def]
    passages = [PassageUnits(cid, texts) for cid, texts in passages_of(demo_database)[:12]]
    workers = [UnitEmbedder(embedder, store_for(demo_database, embedder)) for _ in range(4)]
    results: list[np.ndarray] = []
    errors: list[BaseException] = []
    start = threading.Barrier(len(workers))

    def work(units: UnitEmbedder) -> None:
        try:
            start.wait()
            results.append(units.embed_units(passages))
            units.flush()
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    rows = stored_rows(demo_database)
    assert sorted(rows) == sorted(p.chunk_id for p in passages)
    for other in results[1:]:
        np.testing.assert_allclose(other, results[0], atol=1e-5)


def _index(db: Database, embedder, root: Path) -> None:  # type: ignore[no-untyped-def]
    Indexer(db, embedder, chunk_max_tokens=200).sync([FilesystemSource("kb", root)], kind="full")


def _answer_all(db: Database, embedder, questions: list[str]) -> UnitEmbedder:  # type: ignore[no-untyped-def]
    units = UnitEmbedder(embedder, store_for(db, embedder))
    for q in questions:
        pipeline_for(db, embedder, units).answer(q)
    units.flush()
    return units


@pytest.fixture
def kb(tmp_path: Path) -> Path:
    root = tmp_path / "kb"
    write_article(root, "vpn.md", "VPN access", SECTIONED.format(title="VPN access", topic="The VPN"))
    write_article(root, "wiki.md", "Wiki access", SECTIONED.format(title="Wiki access", topic="The wiki"))
    return root


def test_a_changed_passage_gets_new_vectors_and_the_old_ones_go(database, embedder, kb: Path) -> None:  # type: ignore[no-untyped-def]
    _index(database, embedder, kb)
    questions = ["how do I request VPN access", "how do I request wiki access"]
    _answer_all(database, embedder, questions)
    before = stored_rows(database)
    vpn_chunks = {cid for cid, texts in passages_of(database) if "VPN" in texts[0]}
    assert vpn_chunks & set(before)

    write_article(kb, "vpn.md", "VPN access", SECTIONED.format(title="VPN access", topic="The VPN")
                  .replace("two working days", "one working day"))
    _index(database, embedder, kb)
    after = stored_rows(database)
    current = {cid for cid, _ in passages_of(database)}
    assert set(after) <= current  # the replaced passage's row went with it (ON DELETE CASCADE)
    assert set(before) - set(after), "the changed passage's row should be gone"
    assert {cid for cid in before if cid not in vpn_chunks} <= set(after)  # the wiki's rows stay

    units = _answer_all(database, embedder, questions)
    assert units.db_misses > 0  # the changed passage's units were computed again...
    rows = stored_rows(database)
    for chunk_id, texts in passages_of(database, list(rows)):
        assert rows[chunk_id][0] == b"".join(unit_hash(t) for t in texts)  # ...and stored for its new text


def test_a_forgotten_article_takes_its_vectors_with_it(database, embedder, kb: Path) -> None:  # type: ignore[no-untyped-def]
    _index(database, embedder, kb)
    _answer_all(database, embedder, ["how do I request VPN access", "how do I request wiki access"])
    assert stored_rows(database)
    (kb / "vpn.md").unlink()
    _index(database, embedder, kb)  # the full pass removes what the source no longer has
    remaining = {cid for cid, _ in passages_of(database)}
    assert set(stored_rows(database)) <= remaining
    with database.raw_connection() as conn:
        conn.execute("DELETE FROM sources")  # `kbbot forget` of the last source
    assert stored_rows(database) == {}


def test_the_float16_migration_keeps_every_stored_row_both_ways(demo_database, embedder) -> None:  # type: ignore[no-untyped-def]
    """0013 converts the rows a warmed index holds (float32 -> float16), and its downgrade converts back."""
    passages = passages_of(demo_database)[:12]
    units = UnitEmbedder(embedder, store_for(demo_database, embedder))
    units.embed_units([PassageUnits(cid, texts) for cid, texts in passages])
    units.flush()
    rows = stored_rows(demo_database)
    assert len(rows) == len(passages)

    _alembic(demo_database, "downgrade", "0012")
    with demo_database.raw_connection() as conn:
        as_float32 = {cid: (bytes(h), bytes(v)) for cid, h, v in conn.execute(
            "SELECT chunk_id, unit_hashes, vectors FROM unit_vectors").fetchall()}
    assert set(as_float32) == set(rows)
    for cid, (hashes, packed) in rows.items():
        assert as_float32[cid][0] == hashes
        assert np.array_equal(np.frombuffer(as_float32[cid][1], "<f4"), np.frombuffer(packed, "<f2"))

    _alembic(demo_database, "upgrade", "head")
    assert stored_rows(demo_database) == rows
    with demo_database.raw_connection() as conn:
        names = {r[0] for r in conn.execute(
            "SELECT conname FROM pg_constraint WHERE conrelid = 'unit_vectors'::regclass "
            "AND contype IN ('p', 'f')").fetchall()}
        indexes = {r[0] for r in conn.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'unit_vectors'").fetchall()}
    assert names == {"unit_vectors_pkey", "unit_vectors_chunk_id_fkey", "unit_vectors_space_id_fkey"}
    assert indexes == {"unit_vectors_pkey", "unit_vectors_space_idx"}
    reader = UnitEmbedder(CountingEmbedder(embedder), store_for(demo_database, embedder))
    reader.embed_units([PassageUnits(cid, texts) for cid, texts in passages])
    assert reader.inner.embedded == 0 and reader.db_hits == sum(len(t) for _, t in passages)  # type: ignore[attr-defined]
