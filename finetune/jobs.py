"""Fine-tuning jobs through the real ``openai`` client: upload, create, status, events, wait, list.

Files are uploaded only when the manifest that ``prepare`` wrote vouches for them (``--force`` skips
that, for files sanitized another way). Every openai error is wrapped in ``JobError`` with a message that
says what to do; the API key never appears in a message or a log line.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import openai

from finetune.errors import JobError
from finetune.output import sha256_file, verify_against_manifest
from retrieval.openai_adapter import FINE_TUNING, Call, create_client, endpoint_of, raised_as
from retrieval.settings import OpenAISettings

logger = logging.getLogger(__name__)

TERMINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})


@dataclass(frozen=True)
class JobInfo:
    job_id: str
    status: str
    base_model: str
    fine_tuned_model: str | None = None
    training_file: str | None = None
    validation_file: str | None = None
    suffix: str | None = None
    error: str | None = None
    trained_tokens: int | None = None
    created_at: int | None = None
    finished_at: int | None = None

    @property
    def done(self) -> bool:
        return self.status in TERMINAL_STATUSES


@dataclass(frozen=True)
class JobEvent:
    event_id: str
    created_at: int
    level: str
    message: str


@dataclass(frozen=True)
class Submission:
    job: JobInfo
    manifest_sha256: str | None  # of the training file, as the manifest vouched for it


def _job_info(job: object) -> JobInfo:
    error = getattr(job, "error", None)
    message = getattr(error, "message", None) if error is not None else None
    return JobInfo(
        job_id=job.id,  # type: ignore[attr-defined]
        status=job.status,  # type: ignore[attr-defined]
        base_model=job.model,  # type: ignore[attr-defined]
        fine_tuned_model=getattr(job, "fine_tuned_model", None),
        training_file=getattr(job, "training_file", None),
        validation_file=getattr(job, "validation_file", None),
        suffix=getattr(job, "user_provided_suffix", None),
        error=message,
        trained_tokens=getattr(job, "trained_tokens", None),
        created_at=getattr(job, "created_at", None),
        finished_at=getattr(job, "finished_at", None),
    )


def api_errors(action: str, client: openai.OpenAI, model: str = "") -> AbstractContextManager[None]:
    """Turn openai's exceptions into JobError messages a person can act on (retrieval/openai_adapter.py)."""
    timeout = client.timeout if isinstance(client.timeout, (int, float)) else None
    return raised_as(JobError, action, Call(FINE_TUNING, endpoint_of(client), model, timeout))


def client_from_settings(
    settings: OpenAISettings, *, timeout_s: float = 60.0, max_retries: int = 3
) -> openai.OpenAI:
    """The fine-tuning client; the SDK backs off on 429/5xx and honours Retry-After."""
    return create_client(FINE_TUNING, settings, timeout_s=timeout_s, max_retries=max_retries,
                         key_required=True, missing=JobError)


class FineTuningJobs:
    def __init__(self, client: openai.OpenAI) -> None:
        self._client = client

    def _errors(self, action: str) -> AbstractContextManager[None]:
        return api_errors(action, self._client)

    def upload(self, path: Path, *, force: bool = False) -> tuple[str, str]:
        """Upload one JSONL file for fine-tuning; return (file id, sha256)."""
        digest = sha256_file(path) if force else verify_against_manifest(path)
        if force:
            logger.warning("uploading %s without manifest check (--force)", path)
        with self._errors(f"Uploading {path.name}"), path.open("rb") as handle:
            uploaded = self._client.files.create(file=(path.name, handle), purpose="fine-tune")
        logger.info("uploaded %s as %s (%s bytes)", path.name, uploaded.id, uploaded.bytes)
        return uploaded.id, digest

    def submit(
        self,
        train: Path,
        validation: Path | None,
        *,
        base_model: str,
        suffix: str | None = None,
        epochs: int | None = None,
        seed: int | None = None,
        force: bool = False,
    ) -> Submission:
        # Check both files before uploading either: a refused validation file must not leave the
        # training file uploaded for nothing.
        if not force:
            verify_against_manifest(train)
            if validation is not None:
                verify_against_manifest(validation)
        training_id, digest = self.upload(train, force=force)
        validation_id = self.upload(validation, force=force)[0] if validation is not None else None
        arguments: dict[str, object] = {"model": base_model, "training_file": training_id}
        if validation_id:
            arguments["validation_file"] = validation_id
        if suffix:
            arguments["suffix"] = suffix
        if epochs:
            arguments["hyperparameters"] = {"n_epochs": epochs}
        if seed is not None:
            arguments["seed"] = seed
        with self._errors("Creating the fine-tuning job"):
            job = self._client.fine_tuning.jobs.create(**arguments)  # type: ignore[arg-type]
        info = _job_info(job)
        logger.info("created fine-tuning job %s on %s", info.job_id, base_model)
        return Submission(info, None if force else digest)

    def status(self, job_id: str) -> JobInfo:
        with self._errors(f"Reading job {job_id}"):
            return _job_info(self._client.fine_tuning.jobs.retrieve(job_id))

    def events(self, job_id: str, *, after: str | None = None, limit: int = 100) -> list[JobEvent]:
        """Events in chronological order (the API lists newest first); ``after`` is an event id cursor."""
        with self._errors(f"Reading events of job {job_id}"):
            page = self._client.fine_tuning.jobs.list_events(job_id, limit=limit)
            events = [JobEvent(e.id, e.created_at, e.level, e.message) for e in page.data]
        events.reverse()
        if after is not None:
            ids = [e.event_id for e in events]
            events = events[ids.index(after) + 1 :] if after in ids else events
        return events

    def wait(
        self,
        job_id: str,
        *,
        poll_s: float = 15.0,
        timeout_s: float = 6 * 3600,
        on_event: Callable[[JobEvent], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> JobInfo:
        """Poll until the job ends; report each new event once."""
        deadline = time.monotonic() + timeout_s
        last_event: str | None = None
        while True:
            info = self.status(job_id)
            for event in self.events(job_id, after=last_event):
                last_event = event.event_id
                if on_event is not None:
                    on_event(event)
            if info.done:
                return info
            if time.monotonic() >= deadline:
                raise JobError(
                    f"Job {job_id} is still {info.status} after {timeout_s:.0f}s; it goes on at the "
                    f"provider. Check later with `kbbot finetune status {job_id}`."
                )
            sleep(poll_s)

    def list_jobs(self, limit: int = 20) -> list[JobInfo]:
        with self._errors("Listing fine-tuning jobs"):
            return [_job_info(job) for job in self._client.fine_tuning.jobs.list(limit=limit).data]
