"""The process's shared parts are built once, even when the first questions arrive on several threads."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

import bot.services as services_module
from bot.lazy import built_once
from bot.services import Services
from retrieval.db import Database

THREADS = 8


def _at_once(read: Callable[[], Any]) -> list[Any]:
    """`read` called by THREADS threads released together; what each got back."""
    gate = threading.Barrier(THREADS)
    got: list[Any] = [None] * THREADS
    errors: list[BaseException] = []

    def run(i: int) -> None:
        gate.wait()
        try:
            got[i] = read()
        except BaseException as exc:  # surfaced below: a thread's assertion must fail the test
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    return got


class _Slow:
    def __init__(self) -> None:
        self.builds = 0
        self.fail_next = False

    @built_once
    def part(self) -> object:
        self.builds += 1
        time.sleep(0.05)  # a model load or a pool opening: long enough for every thread to arrive
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("the database is down")
        return object()


def test_built_once_builds_one_value_for_concurrent_first_uses() -> None:
    owner = _Slow()
    got = _at_once(lambda: owner.part)
    assert owner.builds == 1 and all(value is got[0] for value in got)
    other = _Slow()  # another object builds its own, without waiting for the first one's lock
    assert other.part is not got[0] and other.builds == 1


def test_a_failed_build_is_tried_again_and_a_set_value_wins() -> None:
    owner = _Slow()
    owner.fail_next = True
    with pytest.raises(RuntimeError, match="down"):
        owner.part  # noqa: B018 - the read is the test
    assert owner.part is owner.part and owner.builds == 2
    given = object()
    owner.part = given
    assert owner.part is given


def test_concurrent_first_questions_open_one_pool_and_build_one_pipeline(
        make_settings, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    opened: list[str] = []
    embedders: list[object] = []
    real_open, real_create = Database.open, services_module.create_embedder

    def counting_open(storage, **kwargs):  # type: ignore[no-untyped-def]
        opened.append("replica" if kwargs.get("migrate") is False else "primary")
        return real_open(storage, **kwargs)

    def counting_create(*args, **kwargs):  # type: ignore[no-untyped-def]
        embedders.append(built := real_create(*args, **kwargs))
        return built

    monkeypatch.setattr(services_module.Database, "open", staticmethod(counting_open))
    monkeypatch.setattr(services_module, "create_embedder", counting_create)
    # The test database stands in for a replica too: what counts is that each is opened once.
    services = Services(make_settings(search_database_url=database_url))
    try:
        replicas = _at_once(services.search_database)  # opens the primary first, then the replica
        primaries = _at_once(services.database)
        assert all(db is primaries[0] for db in primaries) and all(db is replicas[0] for db in replicas)
        assert primaries[0] is not replicas[0] and opened == ["primary", "replica"]
        pipelines = _at_once(lambda: services.pipeline)
        assert all(p is pipelines[0] for p in pipelines) and pipelines[0].searcher.db is replicas[0]
        assert len(embedders) == 1 and pipelines[0].searcher.embedder is embedders[0]
        assert opened == ["primary", "replica"]
        clients = _at_once(lambda: services.chat_client)
        assert clients == [None] * THREADS  # no LLM configured: extractive answers
    finally:
        services.close()
