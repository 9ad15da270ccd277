"""The index's neighbour density and the gate's bar (retrieval/neighbour_density.py, abstention.py), on a
real PostgreSQL+pgvector with the local model."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import text

from retrieval import neighbour_density
from retrieval.abstention import AbstentionGate, Evidence
from retrieval.answer import AnswerPipeline
from retrieval.db import Database
from retrieval.extractive import ExtractiveSynthesizer
from retrieval.neighbour_density import NeighbourDensity
from retrieval.search import Searcher
from retrieval.sources import FilesystemSource
from retrieval.sync import Indexer
from tests.conftest import fresh_database_url

DEMO_KB = Path(__file__).resolve().parents[1] / "demo_kb"


def _copies(kb: Path, audience: str, *, source: Path | None = None) -> Path:
    """Every IT article (of `source`, else of `kb`) again under another name, next to `kb`: each passage's
    nearest passage of another article is its own copy (similarity 1), as crowded as an index can be."""
    copies = kb.parent / "copies"
    copies.mkdir(parents=True, exist_ok=True)
    for path in sorted(((source or kb) / "it").glob("*.md")):
        body = path.read_text(encoding="utf-8")
        assert body.startswith("---\n")
        (copies / f"copy-{path.name}").write_text(f"---\naudience: {audience}\n" + body[4:], encoding="utf-8")
    return copies


@contextmanager
def _it_index(pg_server, embedder, tmp_path: Path) -> Iterator[tuple[Path, Database, Indexer, Searcher]]:  # type: ignore[no-untyped-def]
    """The demo KB's IT articles synced into a database of their own."""
    kb = tmp_path / "kb"
    shutil.copytree(DEMO_KB / "it", kb / "it")
    url, _ = fresh_database_url(pg_server)
    db = Database.from_url(url.render_as_string(hide_password=False), migrate=False)
    try:
        indexer = Indexer(db, embedder, chunk_max_tokens=200)
        indexer.sync([FilesystemSource("kb", kb)])
        yield kb, db, indexer, Searcher(db, embedder)
    finally:
        db.close()


def test_a_restricted_article_never_moves_the_density(pg_server, embedder, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with _it_index(pg_server, embedder, tmp_path) as (kb, db, indexer, searcher):
        alone = NeighbourDensity(searcher).measure(searcher.space())
        assert alone is not None and 0.3 < alone < 0.9

        # Copies only HR may read: a member's gate must not be moved by them (fail closed).
        indexer.sync([FilesystemSource("kb", kb), FilesystemSource("hr", _copies(kb, "[S0HR]"))])
        with db.engine.connect() as conn:
            restricted = conn.execute(text("SELECT count(*) FROM chunks WHERE audience = ARRAY['S0HR']")).scalar()
        assert restricted and restricted > 10  # indexed, for HR's eyes only
        assert NeighbourDensity(searcher).measure(searcher.space()) == pytest.approx(alone)

        # The same copies readable by everyone: now they count, and the index is as crowded as can be.
        indexer.sync([FilesystemSource("kb", kb), FilesystemSource("hr", _copies(kb, "everyone"))])
        assert NeighbourDensity(searcher).measure(searcher.space()) > 0.95


def _frozen(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Records every measurement from here on (a question that reads the stored density makes none)."""
    calls: list[object] = []
    measure = neighbour_density.measure
    monkeypatch.setattr(neighbour_density, "measure", lambda *a, **kw: calls.append(a) or measure(*a, **kw))
    return calls


def test_a_sync_stores_the_density_and_questions_read_it(pg_server, embedder, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    with _it_index(pg_server, embedder, tmp_path) as (kb, db, indexer, searcher):
        space = searcher.space()
        first = neighbour_density.stored(db, space)
        with db.engine.connect() as conn:
            passages = conn.execute(text("SELECT count(*) FROM chunks")).scalar()
        assert first is not None and first.measured_at is not None and first.passages == passages
        assert first.value == pytest.approx(NeighbourDensity(searcher).measure(space))

        calls = _frozen(monkeypatch)
        assert NeighbourDensity(searcher)() == first.value and not calls  # read, not measured

        indexer.sync([FilesystemSource("kb", kb)])  # nothing changed: nothing measured
        assert neighbour_density.stored(db, space) == first and not calls

        # Copies everyone may read: the sync that added them measures again, and questions see it.
        indexer.sync([FilesystemSource("kb", kb), FilesystemSource("copies", _copies(kb, "everyone"))])
        crowded = neighbour_density.stored(db, space)
        assert crowded is not None and crowded.value > 0.95 and crowded.passages > first.passages
        assert len(calls) == 1 and NeighbourDensity(searcher)() == crowded.value and len(calls) == 1


def test_an_index_without_a_stored_density_is_measured_once_and_stored(demo_database, embedder,  # type: ignore[no-untyped-def]
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """An index synced before densities were stored: the first question measures it, for every later one."""
    searcher = Searcher(demo_database, embedder)
    space = searcher.space()
    synced = neighbour_density.stored(demo_database, space)
    assert synced is not None
    neighbour_density.clear(demo_database, space)
    calls = _frozen(monkeypatch)
    assert NeighbourDensity(searcher)() == pytest.approx(synced.value) and len(calls) == 1
    assert NeighbourDensity(searcher)() == pytest.approx(synced.value) and len(calls) == 1  # another process
    assert neighbour_density.stored(demo_database, space).passages == synced.passages  # type: ignore[union-attr]


def test_a_sync_that_stops_after_changing_passages_clears_the_density(demo_database, embedder,  # type: ignore[no-untyped-def]
                                                                     tmp_path: Path) -> None:
    """The stored value described the passages before the run: the next question measures them again."""
    space = Searcher(demo_database, embedder).space()
    assert neighbour_density.stored(demo_database, space) is not None
    asked = iter(range(100))
    stopping = Indexer(demo_database, embedder, chunk_max_tokens=200, should_stop=lambda: next(asked) >= 1)
    run = stopping.sync([FilesystemSource("copies", _copies(tmp_path / "kb", "everyone", source=DEMO_KB))])
    assert run.status == "interrupted" and run.added >= 1
    assert neighbour_density.stored(demo_database, space) is None


def test_the_bar_rises_with_density_above_the_reference_only() -> None:
    gate = AbstentionGate(threshold=0.5, density_weight=0.2, reference_density=0.55)
    assert gate.bar(None) == gate.bar(0.30) == gate.bar(0.55) == 0.5
    assert gate.bar(0.85) == pytest.approx(0.56)
    evidence = Evidence(top_similarity=0.55, best_unit=0.55, coverage=1.0, margin=0.0, agreement=1.0)
    assert gate.answers(evidence)
    assert not gate.answers(Evidence(**{**evidence.__dict__, "density": 0.85}))


def test_the_pipeline_gives_the_gate_the_index_density(demo_database, embedder) -> None:  # type: ignore[no-untyped-def]
    """The same question is answered in the demo KB and abstained on when the index is said to be
    crowded (its bar raised past the question's confidence)."""
    question = "how many vacation days can I roll over into next year?"
    searcher = Searcher(demo_database, embedder)
    gate = AbstentionGate(density_weight=1.0)
    sparse = AnswerPipeline(searcher, ExtractiveSynthesizer(embedder), gate=gate, density=NeighbourDensity(searcher))
    crowded = AnswerPipeline(searcher, ExtractiveSynthesizer(embedder), gate=gate, density=lambda: 0.95)
    assert sparse.answer(question).outcome == "answered"
    assert crowded.answer(question).outcome == "abstained"


def test_ingest_and_forget_through_the_cli_keep_the_stored_density_current(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    kb = tmp_path / "kb"
    shutil.copytree(DEMO_KB / "it", kb / "it")
    cli("ingest", str(kb))
    alone = json.loads(cli("status", "--json").output)["density"]
    assert alone["measured_at"] and 0.3 < alone["value"] < 0.9 and alone["answer_bar"] == AbstentionGate().bar(None)
    assert "Confidence needed to answer: 0.53 (density" in cli("status").output

    cli("ingest", str(_copies(kb, "everyone")))
    crowded = json.loads(cli("status", "--json").output)["density"]
    assert crowded["value"] > 0.95 and crowded["passages"] > alone["passages"]
    assert crowded["answer_bar"] == pytest.approx(AbstentionGate().bar(crowded["value"]))
    assert "raised from 0.53 as this index is crowded" in cli("status").output

    cli("forget", "copies", "--yes")
    after = json.loads(cli("status", "--json").output)["density"]
    assert after["value"] == pytest.approx(alone["value"]) and after["passages"] == alone["passages"]
