"""The tone-model registry: fine-tuning jobs and the tuned models, with at most one active.

The LLM routing calls ``active_tone_model(engine)`` on every answer, so a model activated here is used
from the next answer on, without a restart. That call is one indexed single-row read. ``activate`` swaps
the active model in one transaction under a table lock, so two admins activating at once end with one
active model (a unique partial index enforces it too) and a reader never sees none in between.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import SQLAlchemyError

from finetune.errors import RegistryError
from finetune.jobs import JobInfo


@dataclass(frozen=True)
class ToneModel:
    model_id: str
    base_model: str | None
    job_id: str | None
    is_active: bool
    created_at: datetime
    activated_at: datetime | None
    notes: str | None


@dataclass(frozen=True)
class JobRecord:
    job_id: str
    base_model: str
    suffix: str | None
    status: str
    fine_tuned_model: str | None
    manifest_sha256: str | None
    created_at: datetime
    updated_at: datetime


@contextmanager
def _db(action: str) -> Iterator[None]:
    try:
        yield
    except SQLAlchemyError as exc:
        orig = getattr(exc, "orig", None) or exc
        reason = (str(orig).strip().splitlines() or ["unknown error"])[0]
        raise RegistryError(f"{action} failed: the database said {reason!r}. Run `kbbot migrate`?") from exc


def active_tone_model(engine: Engine) -> str | None:
    """The model id the answer synthesis should use for tone, or None for the base model."""
    with _db("Reading the active tone model"), engine.connect() as conn:
        return conn.execute(text("SELECT model_id FROM tone_models WHERE is_active LIMIT 1")).scalar()


def record_job(
    engine: Engine,
    job: JobInfo,
    *,
    manifest_sha256: str | None = None,
    metadata: dict[str, object] | None = None,
) -> None:
    """Insert or refresh a job row from what the API said."""
    with _db(f"Recording job {job.job_id}"), engine.begin() as conn:
        conn.execute(
            text(
                """
                INSERT INTO finetune_jobs (job_id, base_model, suffix, status, training_file_id,
                    validation_file_id, manifest_sha256, fine_tuned_model, metadata)
                VALUES (:job_id, :base_model, :suffix, :status, :training, :validation, :manifest, :model,
                    CAST(:metadata AS jsonb))
                ON CONFLICT (job_id) DO UPDATE SET
                    status = EXCLUDED.status,
                    fine_tuned_model = COALESCE(EXCLUDED.fine_tuned_model, finetune_jobs.fine_tuned_model),
                    manifest_sha256 = COALESCE(finetune_jobs.manifest_sha256, EXCLUDED.manifest_sha256),
                    metadata = finetune_jobs.metadata || EXCLUDED.metadata,
                    updated_at = now()
                """
            ),
            {
                "job_id": job.job_id,
                "base_model": job.base_model,
                "suffix": job.suffix,
                "status": job.status,
                "training": job.training_file,
                "validation": job.validation_file,
                "manifest": manifest_sha256,
                "model": job.fine_tuned_model,
                "metadata": json.dumps(metadata or {}),
            },
        )
        if job.status == "succeeded" and job.fine_tuned_model:
            _register(conn, job.fine_tuned_model, job.base_model, job.job_id, None)


def _register(
    conn: Connection, model_id: str, base_model: str | None, job_id: str | None, notes: str | None
) -> None:
    conn.execute(
        text(
            """
            INSERT INTO tone_models (model_id, base_model, job_id, notes)
            VALUES (:model_id, :base_model, :job_id, :notes)
            ON CONFLICT (model_id) DO UPDATE SET
                base_model = COALESCE(tone_models.base_model, EXCLUDED.base_model),
                job_id = COALESCE(tone_models.job_id, EXCLUDED.job_id),
                notes = COALESCE(EXCLUDED.notes, tone_models.notes)
            """
        ),
        {"model_id": model_id, "base_model": base_model, "job_id": job_id, "notes": notes},
    )


def activate(engine: Engine, model_or_job: str, *, notes: str | None = None) -> str:
    """Make a model the active tone model; accepts a model id or the id of a succeeded job.

    A model id that is not registered yet (trained elsewhere) is registered on the way. Returns the id.
    """
    with _db(f"Activating {model_or_job}"), engine.begin() as conn:
        conn.execute(text("LOCK TABLE tone_models IN SHARE ROW EXCLUSIVE MODE"))
        model_id, base_model, job_id = model_or_job, None, None
        if model_or_job.startswith("ftjob-"):
            row = conn.execute(
                text("SELECT status, fine_tuned_model, base_model FROM finetune_jobs WHERE job_id = :j"),
                {"j": model_or_job},
            ).first()
            if row is None:
                raise RegistryError(
                    f"Job {model_or_job} is not in the registry: `kbbot finetune status {model_or_job}` "
                    "records it."
                )
            if row.status != "succeeded" or not row.fine_tuned_model:
                raise RegistryError(
                    f"Job {model_or_job} is {row.status}, so it has no model to activate yet: "
                    f"`kbbot finetune wait {model_or_job}`."
                )
            model_id, base_model, job_id = row.fine_tuned_model, row.base_model, model_or_job
        _register(conn, model_id, base_model, job_id, notes)
        conn.execute(
            text("UPDATE tone_models SET is_active = false WHERE is_active AND model_id <> :m"),
            {"m": model_id},
        )
        conn.execute(
            text("UPDATE tone_models SET is_active = true, activated_at = now() WHERE model_id = :m"),
            {"m": model_id},
        )
    return model_id


def deactivate(engine: Engine) -> str | None:
    """No tone model: answers go back to the base model. Returns the model that was active, if any."""
    with _db("Deactivating the tone model"), engine.begin() as conn:
        return conn.execute(
            text("UPDATE tone_models SET is_active = false WHERE is_active RETURNING model_id")
        ).scalar()


def list_models(engine: Engine) -> list[ToneModel]:
    with _db("Listing tone models"), engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT model_id, base_model, job_id, is_active, created_at, activated_at, notes "
                "FROM tone_models ORDER BY is_active DESC, created_at DESC"
            )
        ).all()
    return [ToneModel(*row) for row in rows]


def list_jobs(engine: Engine, limit: int = 50) -> list[JobRecord]:
    with _db("Listing fine-tuning jobs"), engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT job_id, base_model, suffix, status, fine_tuned_model, manifest_sha256, created_at, "
                "updated_at FROM finetune_jobs ORDER BY created_at DESC LIMIT :limit"
            ),
            {"limit": limit},
        ).all()
    return [JobRecord(*row) for row in rows]
