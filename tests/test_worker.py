"""The scheduled refresh: the scheduler runs a sync and records it; two workers at once -> one runs and
the other skips; a worker killed mid-run or stopped with SIGTERM -> the next run completes with nothing
lost or duplicated."""

# ruff: noqa: F811 - fixtures imported from tests.fakes are taken by name
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from bot.services import Services
from bot.worker import JobOutcome, SyncParts, SyncScheduler, run_sync
from retrieval.db import Database
from retrieval.errors import ConfigError
from retrieval.settings import Settings, load_settings
from tests.fakes.json_api import Hold
from tests.fakes.zendesk_api import FakeZendesk, fake_zendesk  # noqa: F401

REPO = Path(__file__).resolve().parents[1]
TOKEN_ENV = "KBBOT_TEST_ZENDESK_TOKEN"


def url_of(db: Database) -> str:
    return db.engine.url.render_as_string(hide_password=False)


def settings_for(db: Database, tmp_path: Path, sources_file: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {"database_url": url_of(db), "data_dir": tmp_path / "data",
                                 "sources_file": sources_file, "full_sync_cron": ""}
    values.update(overrides)
    return load_settings(_env_file=None, **values)


def sync_once(settings: Settings) -> JobOutcome:
    """One incremental run, as the scheduler or `kbbot worker --once` would start it in a fresh process."""
    services = Services(settings)
    try:
        return run_sync(SyncParts.of(services), "incremental")
    finally:
        services.close()


def zendesk_sources_file(tmp_path: Path, fake: FakeZendesk) -> Path:
    path = tmp_path / "sources.yml"
    path.write_text(f"""sources:
  - name: help-center
    type: zendesk
    api_base_url: {fake.url}
    options:
      email: {fake.email}
      token_env: {TOKEN_ENV}
      max_retries: 0
""")
    return path


def seed_big(fake: FakeZendesk, n: int) -> None:
    """n articles of three sections each (~3 passages): 100 of them fill more than one embedding batch."""
    category = fake.add_category("Services")
    section = fake.add_section("Runbooks", category)
    for i in range(n):
        fake.add_article(f"Service {i} runbook", (
            f"<h2>Overview</h2><p>Service {i} is run by the platform team and serves internal users. It is "
            f"deployed in two regions and restarts itself when its health check fails three times.</p>"
            f"<h2>Access</h2><p>Ask for the service-{i}-users group in the portal. Your manager approves the "
            "request and access arrives within two working days; it expires after ninety idle days.</p>"
            f"<h2>Incidents</h2><p>Page the on-call engineer of service {i} through the incident tool, then "
            "post in the incident channel with the time, the symptoms and what you already tried.</p>"),
            section_id=section)
    fake.tick(3600)


def count(db: Database, sql: str) -> int:
    with db.engine.connect() as conn:
        return int(conn.execute(text(sql)).scalar_one())


def runs(db: Database) -> list[tuple[str, str, str | None]]:
    with db.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(  # type: ignore[misc]
            "SELECT status, trigger, started_by FROM sync_runs ORDER BY id")).all()]


def assert_index_consistent(db: Database, articles: int) -> None:
    assert count(db, "SELECT count(*) FROM articles") == articles
    assert count(db, "SELECT count(DISTINCT external_id) FROM articles") == articles
    assert count(db, "SELECT count(*) FROM chunks") == count(db, "SELECT count(*) FROM embeddings")
    assert count(db, "SELECT count(*) FROM (SELECT article_id, ordinal FROM chunks GROUP BY 1, 2 "
                     "HAVING count(*) > 1) d") == 0
    assert count(db, "SELECT count(*) FROM articles a WHERE NOT EXISTS "
                     "(SELECT 1 FROM chunks c WHERE c.article_id = a.id)") == 0


def worker_process(db: Database, sources_file: Path, tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "DATABASE_URL": url_of(db), "KBBOT_SOURCES_FILE": str(sources_file),
           "KBBOT_DATA_DIR": str(tmp_path / "data"), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           TOKEN_ENV: "zd-secret-token"}
    return subprocess.Popen([sys.executable, "-m", "bot.cli", "worker", "--once", *args], env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_the_scheduler_runs_a_sync_and_records_it(demo_database: Database, tmp_path: Path) -> None:
    sources = tmp_path / "sources.yml"
    sources.write_text(f"sources:\n  - name: demo\n    type: filesystem\n    options: {{path: {REPO / 'demo_kb'}}}\n")
    services = Services(settings_for(demo_database, tmp_path, sources, sync_interval_minutes=60))
    scheduler = SyncScheduler.of(services)
    try:
        scheduler.start()
        with scheduler.ran:
            assert scheduler.ran.wait_for(lambda: scheduler.outcomes, timeout=120)
        [job] = [j for j in scheduler.scheduler.get_jobs() if j.id == "sync-incremental"]
        assert job.next_run_time is not None  # the next run is an hour later
    finally:
        scheduler.stop()
        services.close()
    outcome = scheduler.outcomes[0]
    assert outcome.status == "ran" and outcome.run is not None
    assert (outcome.run.unchanged, outcome.run.added, outcome.run.failed) == (35, 0, 0)
    status, trigger, started_by = runs(demo_database)[-1]
    assert (status, trigger) == ("succeeded", "schedule")
    assert started_by and started_by.startswith("worker ")


def test_two_workers_at_once_one_runs_and_the_other_skips(
        fake_zendesk: FakeZendesk, database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seed_big(fake_zendesk, 5)
    monkeypatch.setenv(TOKEN_ENV, fake_zendesk.token)
    sources = zendesk_sources_file(tmp_path, fake_zendesk)
    hold = fake_zendesk.hold(r"/api/v2/help_center/en-us/articles\.json")
    first = Services(settings_for(database, tmp_path, sources))
    outcomes = []
    thread = threading.Thread(target=lambda: outcomes.append(run_sync(SyncParts.of(first), "incremental")))
    thread.start()
    try:
        assert hold.reached.wait(60), "the first worker never reached the help center"
        # The first worker holds the sync lock while it reads the help center: a second worker process
        # started now must skip, and say who is running.
        second = worker_process(database, sources, tmp_path)
        output, _ = second.communicate(timeout=120)
        assert second.returncode == 0, output
        assert "Incremental sync skipped: A sync is already running (started by worker " in output
    finally:
        hold.release()
        thread.join(120)
        first.close()
    assert outcomes[0].status == "ran" and outcomes[0].run.added == 5  # type: ignore[union-attr]
    assert [r[0] for r in runs(database)] == ["succeeded"]  # the skipped worker recorded no run


def worker_waiting_for_page_two(fake: FakeZendesk, articles: int, database: Database, tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Hold, subprocess.Popen[str]]:
    """A `kbbot worker` process syncing `articles` from the fake help center, held before the second listing
    page (100 articles a page) is served: the sources file, the hold and the process."""
    seed_big(fake, articles)
    monkeypatch.setenv(TOKEN_ENV, fake.token)
    sources = zendesk_sources_file(tmp_path, fake)
    second_page = fake.hold(r"/api/v2/help_center/en-us/articles\.json",
                            when=lambda r: r.arg("page[after]") is not None)
    return sources, second_page, worker_process(database, sources, tmp_path)


def test_a_worker_killed_mid_run_loses_and_duplicates_nothing(
        fake_zendesk: FakeZendesk, database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Two listing pages: 100, then 30.
    sources, second_page, proc = worker_waiting_for_page_two(fake_zendesk, 130, database, tmp_path, monkeypatch)
    try:
        assert second_page.reached.wait(180), "the worker never asked for the second page"
        written = count(database, "SELECT count(*) FROM articles")
        assert 0 < written < 130  # a batch of the first page is in, the rest is not
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        second_page.release()
        if proc.poll() is None:
            proc.kill()
    assert runs(database)[-1][0] == "running"  # the dead process could not close its run
    outcome = sync_once(settings_for(database, tmp_path, sources))
    assert outcome.status == "ran" and outcome.run is not None
    assert (outcome.run.unchanged, outcome.run.added, outcome.run.failed) == (written, 130 - written, 0)
    assert [r[0] for r in runs(database)] == ["interrupted", "succeeded"]
    assert_index_consistent(database, 130)


def test_sigterm_lets_the_articles_in_hand_finish_then_the_next_run_continues(
        fake_zendesk: FakeZendesk, database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sources, second_page, proc = worker_waiting_for_page_two(fake_zendesk, 110, database, tmp_path, monkeypatch)
    try:
        assert second_page.reached.wait(180), "the worker never asked for the second page"
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.2)  # let the handler run before the page arrives (ordering only, not a timing assertion)
        second_page.release()
        output, _ = proc.communicate(timeout=120)
    finally:
        second_page.release()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output
    assert "Sync interrupted" in output
    with database.engine.connect() as conn:
        status, errors = conn.execute(text("SELECT status, errors FROM sync_runs")).one()
    assert status == "interrupted" and "shutting down" in errors[-1]["error"]
    assert count(database, "SELECT count(*) FROM articles") == 100  # every article of the first page, whole
    assert_index_consistent(database, 100)
    with database.engine.connect() as conn:
        assert conn.execute(text("SELECT checkpoint FROM sources")).scalar() is None  # not advanced

    outcome = sync_once(settings_for(database, tmp_path, sources))
    assert outcome.run is not None and (outcome.run.added, outcome.run.unchanged) == (10, 100)
    assert_index_consistent(database, 110)


def test_bad_schedules_name_the_setting(database: Database, tmp_path: Path) -> None:
    sources = tmp_path / "sources.yml"
    sources.write_text("sources: []\n")
    with pytest.raises(ConfigError, match=r"KBBOT_SYNC_CRON='every 5 minutes' is not a crontab line"):
        SyncScheduler.of(Services(settings_for(database, tmp_path, sources, sync_cron="every 5 minutes")))
    with pytest.raises(ConfigError, match=r"KBBOT_SCHEDULER_TIMEZONE='Mars/Olympus' is not a timezone"):
        SyncScheduler.of(Services(settings_for(database, tmp_path, sources, scheduler_timezone="Mars/Olympus")))


def test_with_nothing_configured_a_run_is_idle_and_says_why(database: Database, tmp_path: Path) -> None:
    sources = tmp_path / "sources.yml"
    sources.write_text("sources: []\n")
    outcome = sync_once(settings_for(database, tmp_path, sources))
    assert outcome.status == "idle" and "KBBOT_SOURCES_FILE" in outcome.message
    assert runs(database) == []


def test_a_worker_refuses_to_start_on_a_broken_sources_file(database_url: str, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from bot.cli import main

    sources = tmp_path / "sources.yml"
    sources.write_text("sources:\n  - name: wiki\n    type: confluence\n    options:\n      site: acme\n")
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("KBBOT_SOURCES_FILE", str(sources))
    monkeypatch.setenv("KBBOT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["worker"])
    assert result.exit_code == 1
    assert "sources.yml:4: source 'wiki': options.spaces is required." in result.output
