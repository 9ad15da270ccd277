"""Scheduled refresh: incremental syncs on an interval or a cron line, and a periodic full pass.

- The full pass (default 03:30 daily) re-lists every source, so articles deleted at the source leave the
  index, and it is the run that moves the index to a newly configured embedding model (built alongside
  the old vectors, switched when complete; answers keep using the old model until then).
- When the configured embedding model differs from the index's, every scheduled run is a full one until
  the switch is done, so a model change needs no manual step and resumes after a restart.
- Every run takes the sync lock (a PostgreSQL advisory lock, see `retrieval.runs`): with any number of
  workers, `kbbot serve` replicas running the scheduler, and /reindex, one sync runs and the others log
  that they skipped.
- Missed runs (the process was down or busy) are coalesced into one; runs of one process queue behind
  each other on a single thread.
- `stop()` (SIGTERM in `kbbot worker`) lets the running sync write the articles in hand, record itself
  as `interrupted`, and return; the next run continues from the same checkpoints.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Literal
from zoneinfo import ZoneInfo

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from bot.services import Services
from retrieval.db import Database, translate_errors
from retrieval.errors import ConfigError, KbbotError, SyncInProgressError
from retrieval.runs import RunKind, SyncRun
from retrieval.settings import EmbeddingSettings, SchedulerSettings
from retrieval.sources import Source
from retrieval.spaces import active_space
from retrieval.sync import LISTED_IN_SUMMARY_LOG_FLAG, Indexer, ProgressCallback

if TYPE_CHECKING:
    from bot.gaps_digest import DigestJob

log = logging.getLogger(__name__)

INCREMENTAL_JOB = "sync-incremental"
FULL_JOB = "sync-full"
DIGEST_JOB = "gaps-digest"  # the weekly knowledge-gaps digest (bot/gaps_digest.py), when a channel is set


@dataclass(frozen=True)
class JobOutcome:
    """What one scheduled sync did; `run` is its record when it ran."""

    kind: str
    status: Literal["ran", "skipped", "idle", "failed", "stopped"]
    message: str
    run: SyncRun | None = None


def worker_identity() -> str:
    """Who started a run, as shown by `kbbot status` and /reindex's refusal."""
    return f"worker {socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class SyncParts:
    """What a scheduled sync uses, each reached when a run starts (the sources file is re-read every run)."""

    sources: Callable[[], list[Source]]
    indexer: Callable[..., Indexer]  # (progress, should_stop=...) -> an Indexer of the configured model
    database: Callable[[], Database]
    embeddings: EmbeddingSettings  # the configured model: a run re-embeds while the index answers with another

    @classmethod
    def of(cls, services: Services) -> SyncParts:
        return cls(services.configured_sources, services.indexer, services.database, services.settings.embeddings)


def model_change_pending(db: Database, embeddings: EmbeddingSettings) -> bool:
    """True when the configured embedding model is not the one the index answers with."""
    with translate_errors("Reading the embedding spaces"), db.engine.connect() as conn:
        space = active_space(conn)
    return space is not None and (space.provider, space.model) != (embeddings.embedding_provider,
                                                                   embeddings.resolved_model)


def run_sync(parts: SyncParts, kind: RunKind, *, trigger: str = "schedule",
             should_stop: Callable[[], bool] | None = None,
             progress: ProgressCallback | None = None) -> JobOutcome:
    """One sync of every configured source, as the scheduler runs it. Never raises: the outcome says what
    happened and the log explains it."""
    should_stop = should_stop or (lambda: False)
    if should_stop():
        return JobOutcome(kind, "stopped", "not started: the process is shutting down")
    try:
        sources = parts.sources()
        if not sources:
            message = "no sources configured: set KBBOT_SOURCES_FILE or run `kbbot ingest PATH`"
            log.warning("scheduled %s sync: %s", kind, message)
            return JobOutcome(kind, "idle", message)
        if kind == "incremental" and model_change_pending(parts.database(), parts.embeddings):
            log.info("the configured embedding model differs from the index's: running a full sync that "
                     "re-embeds alongside the current vectors and switches when complete")
            kind = "full"
        run = parts.indexer(progress, should_stop=should_stop).sync(
            sources, kind=kind, trigger=trigger, started_by=worker_identity())
    except SyncInProgressError as exc:
        log.info("skipped the scheduled %s sync: %s", kind, exc)
        return JobOutcome(kind, "skipped", str(exc))
    except KbbotError as exc:
        log.error("scheduled %s sync failed: %s", kind, exc)
        return JobOutcome(kind, "failed", str(exc))
    except Exception as exc:  # the scheduler thread must survive anything one run does
        log.exception("scheduled %s sync failed unexpectedly", kind)
        return JobOutcome(kind, "failed", f"unexpected error: {type(exc).__name__}: {exc}")
    summary = (f"{run.status} in {run.duration_s or 0:.1f} s: {run.added} added, {run.updated} updated, "
               f"{run.removed} removed, {run.unchanged} unchanged, {run.failed} failed")
    (log.warning if run.failed or run.status != "succeeded" else log.info)(
        "scheduled %s sync (run %d) %s", kind, run.id, summary, extra={LISTED_IN_SUMMARY_LOG_FLAG: True})
    return JobOutcome(kind, "stopped" if run.status == "interrupted" else "ran", summary, run)


_DAY_NAMES = ["sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun"]  # crontab: 0 and 7 are Sunday


def _crontab_days(line: str) -> str:
    """APScheduler 3 reads a numeric day of week as 0 = Monday, crontab as 0 = Sunday (`1-5` would run
    Tuesday to Saturday): numbers become names, which both read the same way."""
    fields = line.split()
    if len(fields) == 5:
        fields[4] = re.sub(r"(?<![/\d])[0-7](?!\d)", lambda m: _DAY_NAMES[int(m.group())], fields[4])
    return " ".join(fields)


def _cron(line: str, setting: str, timezone: ZoneInfo) -> CronTrigger:
    try:
        return CronTrigger.from_crontab(_crontab_days(line.strip()), timezone=timezone)
    except (ValueError, KeyError) as exc:
        raise ConfigError(f"{setting}={line!r} is not a crontab line ({exc}): use five fields, minute hour "
                          "day-of-month month day-of-week, e.g. `*/15 * * * *`.") from exc


class SyncScheduler:
    """The scheduled syncs of one process (APScheduler 3, one worker thread), and the gaps digest when
    `digest` is given."""

    def __init__(self, settings: SchedulerSettings, sync: SyncParts, *, digest: DigestJob | None = None,
                 run_at_start: bool = True) -> None:
        self.sync = sync
        self.outcomes: deque[JobOutcome] = deque(maxlen=50)
        self.ran = threading.Condition()  # notified after each run, with its outcome appended
        self._stopping = threading.Event()
        tz = _timezone(settings.scheduler_timezone)
        self.scheduler = BackgroundScheduler(
            timezone=tz,
            executors={"default": ThreadPoolExecutor(max_workers=1)},  # one sync at a time per process
            # Missed runs collapse into one, however late: a sync is idempotent and the latest state wins.
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )
        if settings.sync_cron:
            trigger = _cron(settings.sync_cron, "KBBOT_SYNC_CRON", tz)
            self.scheduler.add_job(self._job, trigger, args=["incremental"], id=INCREMENTAL_JOB)
        elif settings.sync_interval_minutes > 0:
            first = datetime.now(tz) if run_at_start else None  # a fresh worker syncs right away
            self.scheduler.add_job(self._job, IntervalTrigger(minutes=settings.sync_interval_minutes, timezone=tz),
                                   args=["incremental"], id=INCREMENTAL_JOB, next_run_time=first)
        if settings.full_sync_cron.strip():
            trigger = _cron(settings.full_sync_cron, "KBBOT_FULL_SYNC_CRON", tz)
            self.scheduler.add_job(self._job, trigger, args=["full"], id=FULL_JOB)
        if digest is not None:
            self.scheduler.add_job(digest.run, digest.trigger, id=DIGEST_JOB)

    @classmethod
    def of(cls, services: Services, *, run_at_start: bool = True) -> SyncScheduler:
        """The schedule the settings ask for; the digest job when KBBOT_GAPS_DIGEST_CHANNEL is set."""
        settings = services.settings.scheduler
        digest = None
        if settings.gaps_digest_channel:
            from bot.gaps_digest import DigestJob

            tz = _timezone(settings.scheduler_timezone)
            digest = DigestJob.of(services, _cron(settings.gaps_digest_cron, "KBBOT_GAPS_DIGEST_CRON", tz))
        return cls(settings, SyncParts.of(services), digest=digest, run_at_start=run_at_start)

    def start(self) -> SyncScheduler:
        self.scheduler.start()
        for job in self.scheduler.get_jobs():
            log.info("scheduled %s, next at %s", job.id, job.next_run_time)
        return self

    def stop(self, *, wait: bool = True) -> None:
        """Stop scheduling; the running sync writes the articles in hand and ends as `interrupted`."""
        self._stopping.set()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=wait)

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def _job(self, kind: RunKind) -> None:
        outcome = run_sync(self.sync, kind, should_stop=self._stopping.is_set)
        with self.ran:
            self.outcomes.append(outcome)
            self.ran.notify_all()


def _timezone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (KeyError, ValueError) as exc:
        raise ConfigError(f"KBBOT_SCHEDULER_TIMEZONE={name!r} is not a timezone: use an IANA name such as "
                          "UTC or Europe/Paris.") from exc


def start_scheduler(services: Services) -> SyncScheduler:
    """The scheduled syncs, started in background threads of this process (for `kbbot serve` with
    KBBOT_SCHEDULER_IN_SERVE); call `.stop()` on shutdown."""
    return SyncScheduler.of(services).start()
