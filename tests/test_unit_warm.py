"""Preparing the answer sentences after a sync (retrieval/unit_warm.py): real database, real model."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from bot.services import Services
from retrieval.db import Database
from retrieval.sources.filesystem import FilesystemSource
from retrieval.unit_vectors import PassageUnits, UnitEmbedder, UnitVectorStore
from retrieval.unit_warm import WARM_LOCK_KEY, Preparation, UnitWarmer, preparation
from tests.helpers import SECTIONED, CountingEmbedder, write_article
from tests.test_unit_vectors import passages_of, stored_rows


def store_for(db: Database, embedder) -> UnitVectorStore:  # type: ignore[no-untyped-def]
    return UnitVectorStore(db, provider=embedder.provider, model=embedder.model, dimension=embedder.dimension)


def prepared(db: Database) -> Preparation:
    with db.raw_connection() as conn:
        result = preparation(conn)
    assert result is not None
    return result


def wait_for(condition: Callable[[], bool], timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_a_stopped_warm_resumes_where_it_stopped(demo_database, embedder) -> None:  # type: ignore[no-untyped-def]
    total = prepared(demo_database).passages
    assert prepared(demo_database) == Preparation(0, total)
    first_model = CountingEmbedder(embedder)
    first = UnitWarmer(demo_database, first_model, store_for(demo_database, embedder), batch_passages=4)
    # Stopped after two batches, as a shutdown (or a crash: each batch is written as it goes) would.
    assert first.warm(should_stop=lambda: len(first_model.calls) >= 2) == 8
    assert prepared(demo_database) == Preparation(8, total)
    done = set(stored_rows(demo_database))

    second_model = CountingEmbedder(embedder)
    second = UnitWarmer(demo_database, second_model, store_for(demo_database, embedder), batch_passages=4)
    assert second.warm() == total - 8
    assert prepared(demo_database) == Preparation(total, total) and prepared(demo_database).complete
    remaining = [texts for cid, texts in passages_of(demo_database) if cid not in done]
    assert second_model.embedded == sum(len(t) for t in remaining)  # nothing embedded twice
    assert second.warm() == 0  # nothing left

    # An answer after the warm runs the model on its question only.
    model = CountingEmbedder(embedder)
    units = UnitEmbedder(model, store_for(demo_database, embedder))
    passages = [PassageUnits(cid, texts) for cid, texts in passages_of(demo_database)[:8]]
    units.embed_units(passages)
    assert model.embedded == 0 and units.db_hits == sum(len(p.texts) for p in passages)


def test_the_warm_gives_way_to_answers(demo_database, embedder) -> None:  # type: ignore[no-untyped-def]
    model = CountingEmbedder(embedder)
    busy_until = time.monotonic() + 0.5
    warmer = UnitWarmer(demo_database, model, store_for(demo_database, embedder), batch_passages=4,
                        answers_busy=lambda: time.monotonic() < busy_until)
    started = time.monotonic()
    assert warmer.warm(should_stop=lambda: len(model.calls) >= 1) == 4
    assert time.monotonic() - started >= 0.5  # no batch ran while answers were embedding


def test_one_warm_at_a_time_across_processes(demo_database, embedder) -> None:  # type: ignore[no-untyped-def]
    with demo_database.raw_connection() as other_process:
        other_process.execute("SELECT pg_advisory_lock(%s)", (WARM_LOCK_KEY,))
        model = CountingEmbedder(embedder)
        assert UnitWarmer(demo_database, model, store_for(demo_database, embedder)).warm() == 0
        other_process.execute("SELECT pg_advisory_unlock(%s)", (WARM_LOCK_KEY,))
    assert model.embedded == 0


def test_the_server_prepares_at_start_and_after_each_sync(make_settings, database: Database, embedder,  # type: ignore[no-untyped-def]
                                                          tmp_path: Path) -> None:
    kb = tmp_path / "kb"
    write_article(kb, "vpn.md", "VPN access", SECTIONED.format(title="VPN access", topic="The VPN"))
    services = Services(make_settings(), database=database, embedder=embedder)
    source = FilesystemSource("kb", kb)
    services.indexer().sync([source])  # synced before any warm: the server's start-up prepares it
    assert not prepared(database).complete
    try:
        warmer = services.start_unit_warmer()
        assert warmer is not None
        wait_for(lambda: prepared(database).complete)
        write_article(kb, "wiki.md", "Wiki access", SECTIONED.format(title="Wiki access", topic="The wiki"))
        before = prepared(database)
        services.indexer().sync([source])  # the sync's end wakes the warm (its poll is minutes away)
        after_sync = prepared(database)
        assert after_sync.passages > before.passages
        wait_for(lambda: prepared(database).complete)
    finally:
        services.close()


def test_the_warm_can_be_switched_off(make_settings, database: Database, embedder) -> None:  # type: ignore[no-untyped-def]
    services = Services(make_settings(prepare_answer_sentences=False), database=database, embedder=embedder)
    assert services.start_unit_warmer() is None


@pytest.mark.parametrize("as_json", [False, True])
def test_status_says_how_many_passages_are_prepared(cli, database_url: str, embedder, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                    as_json: bool) -> None:
    kb = tmp_path / "kb"
    write_article(kb, "vpn.md", "VPN access", SECTIONED.format(title="VPN access", topic="The VPN"))
    cli("ingest", str(kb), "--name", "kb", "--json")
    db = Database.from_url(database_url, migrate=False)
    try:
        total = prepared(db).passages
        warmer = UnitWarmer(db, embedder, store_for(db, embedder), batch_passages=1)
        warmer.warm(should_stop=lambda: warmer.prepared >= 1)
    finally:
        db.close()
    if as_json:
        status = json.loads(cli("status", "--json").output)
        assert status["answer_sentences"] == {"prepared": 1, "passages": total}
    else:
        output = " ".join(cli("status").output.split())  # the terminal may wrap the line
        assert f"Answer sentences prepared: 1 of {total} passages (the rest are prepared in the background" in output
