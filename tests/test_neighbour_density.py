"""The index's neighbour density and the gate's bar (retrieval/neighbour_density.py, abstention.py), on a
real PostgreSQL+pgvector with the local model."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from sqlalchemy import text

from retrieval.abstention import AbstentionGate, Evidence
from retrieval.answer import AnswerPipeline, ExtractiveSynthesizer
from retrieval.db import Database
from retrieval.neighbour_density import NeighbourDensity
from retrieval.search import Searcher
from retrieval.sources import FilesystemSource
from retrieval.sync import Indexer
from tests.conftest import fresh_database_url

DEMO_KB = Path(__file__).resolve().parents[1] / "demo_kb"


def _copies(kb: Path, audience: str) -> Path:
    """Every IT article again under another name: each passage's nearest passage of another article is its
    own copy (similarity 1), as crowded as an index can be."""
    copies = kb.parent / "copies"
    copies.mkdir(exist_ok=True)
    for path in sorted((kb / "it").glob("*.md")):
        body = path.read_text(encoding="utf-8")
        assert body.startswith("---\n")
        (copies / f"copy-{path.name}").write_text(f"---\naudience: {audience}\n" + body[4:], encoding="utf-8")
    return copies


def test_a_restricted_article_never_moves_the_density(pg_server, embedder, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    kb = tmp_path / "kb"
    shutil.copytree(DEMO_KB / "it", kb / "it")
    url, _ = fresh_database_url(pg_server)
    db = Database.from_url(url.render_as_string(hide_password=False), migrate=False)
    try:
        indexer = Indexer(db, embedder, chunk_max_tokens=200)
        indexer.sync([FilesystemSource("kb", kb)])
        searcher = Searcher(db, embedder)
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
    finally:
        db.close()


def test_the_density_is_measured_once_then_served_from_the_cache(demo_database, embedder) -> None:  # type: ignore[no-untyped-def]
    density = NeighbourDensity(Searcher(demo_database, embedder))
    calls = []
    measure = density.measure
    density.measure = lambda space: calls.append(space) or measure(space)  # type: ignore[method-assign]
    first = density()
    assert first is not None and density() == first and len(calls) == 1


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
