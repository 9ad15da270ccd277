"""`kbbot worker`: keeps the index fresh on a schedule (the Procfile's `worker:` process)."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

import click

from bot import terminal
from bot.worker import SyncScheduler, run_sync

log = logging.getLogger(__name__)


def _stop_on_signals(stop: threading.Event) -> None:
    def handle(signum: int, _frame: FrameType | None) -> None:
        log.info("%s received: finishing the article in hand, then stopping", signal.Signals(signum).name)
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)


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
    stop = threading.Event()
    _stop_on_signals(stop)
    if once:
        outcome = run_sync(obj.services, "full" if full else "incremental", trigger="worker",
                           should_stop=stop.is_set)
        if outcome.run is not None:
            terminal.print_run(outcome.run)
        else:
            click.echo(f"{outcome.kind.capitalize()} sync {outcome.status}: {outcome.message}")
        raise SystemExit(1 if outcome.status == "failed" else 0)
    if full:
        raise click.UsageError("--full goes with --once; the scheduled full pass follows KBBOT_FULL_SYNC_CRON.")
    scheduler = SyncScheduler(obj.services).start()
    log.info("kbbot worker started: one sync at a time across every worker, replica and /reindex")
    try:
        while not stop.wait(1.0):
            pass
    finally:
        scheduler.stop(wait=True)
        log.info("kbbot worker stopped")


COMMANDS = [worker]
