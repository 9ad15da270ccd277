"""`kbbot worker`: keeps the index fresh on a schedule (the Procfile's `worker:` process)."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator
from types import FrameType

import click

from bot import terminal
from bot.worker import SyncParts, SyncScheduler, run_sync

log = logging.getLogger(__name__)


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[threading.Event]:
    """An event set by SIGTERM or SIGINT while the block runs (the previous handlers come back after)."""
    stop = threading.Event()

    def handle(signum: int, _frame: FrameType | None) -> None:
        log.info("%s received: finishing the article in hand, then stopping", signal.Signals(signum).name)
        stop.set()

    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@click.command()
@click.option("--once", is_flag=True, help="Run one sync now and exit (for an external cron or a one-off job).")
@click.option("--full", is_flag=True, help="With --once: a full pass (removes articles deleted at the source).")
@click.pass_obj
def worker(obj, once: bool, full: bool) -> None:  # type: ignore[no-untyped-def]
    """Keep the index fresh: incremental syncs on a schedule and a nightly full pass.

    Schedules come from KBBOT_SYNC_INTERVAL_MINUTES (or KBBOT_SYNC_CRON) and KBBOT_FULL_SYNC_CRON. Any
    number of workers may run: one sync runs at a time and the others skip. SIGTERM lets the running sync
    write the articles in hand before the process exits.
    """
    if full and not once:
        raise click.UsageError("--full goes with --once; the scheduled full pass follows KBBOT_FULL_SYNC_CRON.")
    with _stop_on_signals() as stop:
        if once:
            with terminal.sync_progress(bar=True) as progress, terminal.errors_in_summary_only():
                outcome = run_sync(SyncParts.of(obj.services), "full" if full else "incremental",
                                   trigger="worker", should_stop=stop.is_set, progress=progress)
            if outcome.run is not None:
                terminal.print_run(outcome.run)
            else:
                click.echo(f"{outcome.kind.capitalize()} sync {outcome.status}: {outcome.message}")
            raise SystemExit(1 if outcome.status == "failed" else 0)
        for source in obj.services.configured_sources():  # a broken sources file stops a fresh worker here
            log.info("will sync %s", source.describe())
        scheduler = SyncScheduler.of(obj.services).start()
        obj.services.start_unit_warmer()  # after each sync, the new passages' answer sentences
        log.info("kbbot worker started: one sync at a time across every worker, replica and /reindex")
        try:
            while not stop.wait(1.0):
                pass
        finally:
            scheduler.stop(wait=True)
            log.info("kbbot worker stopped")


COMMANDS = [worker]
