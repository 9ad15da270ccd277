"""The tone-model registry on a real, migrated PostgreSQL."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import text

from finetune import registry
from finetune.errors import RegistryError
from finetune.jobs import JobInfo
from retrieval.db import Database


def _job(status: str, model: str | None = None, job_id: str = "ftjob-1") -> JobInfo:
    return JobInfo(
        job_id, status, "gpt-4o-mini", fine_tuned_model=model, training_file="file-1", suffix="tone"
    )


def test_no_tone_model_until_one_is_activated(database: Database) -> None:
    assert registry.active_tone_model(database.engine) is None
    assert registry.list_models(database.engine) == []


def test_job_lifecycle_then_activate_by_job_id(database: Database) -> None:
    engine = database.engine
    registry.record_job(engine, _job("validating_files"), manifest_sha256="abc", metadata={"forced": False})
    with pytest.raises(RegistryError, match="validating_files"):
        registry.activate(engine, "ftjob-1")
    registry.record_job(engine, _job("succeeded", "ft:gpt-4o-mini:kbbot:tone:1"))
    [job] = registry.list_jobs(engine)
    assert (job.status, job.manifest_sha256, job.fine_tuned_model) == (
        "succeeded",
        "abc",
        "ft:gpt-4o-mini:kbbot:tone:1",
    )
    assert registry.activate(engine, "ftjob-1") == "ft:gpt-4o-mini:kbbot:tone:1"
    assert registry.active_tone_model(engine) == "ft:gpt-4o-mini:kbbot:tone:1"
    [model] = registry.list_models(engine)
    assert model.is_active and model.job_id == "ftjob-1" and model.activated_at is not None


def test_activating_another_model_swaps_atomically(database: Database) -> None:
    engine = database.engine
    registry.activate(engine, "ft:a", notes="first")
    registry.activate(engine, "ft:b")
    assert registry.active_tone_model(engine) == "ft:b"
    models = {m.model_id: m for m in registry.list_models(engine)}
    assert models["ft:b"].is_active and not models["ft:a"].is_active and models["ft:a"].notes == "first"
    assert registry.deactivate(engine) == "ft:b"
    assert registry.active_tone_model(engine) is None


def test_concurrent_activations_leave_exactly_one_active(database: Database) -> None:
    engine = database.engine
    errors: list[BaseException] = []

    def run(model: str) -> None:
        try:
            for _ in range(5):
                registry.activate(engine, model)
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(f"ft:{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM tone_models WHERE is_active")).scalar() == 1


def test_unknown_job_is_a_clear_error(database: Database) -> None:
    with pytest.raises(RegistryError, match="not in the registry"):
        registry.activate(database.engine, "ftjob-missing")
