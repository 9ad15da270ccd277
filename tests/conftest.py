"""Shared fixtures: a real embedded PostgreSQL+pgvector, the real local embedding model, the demo KB.

One server per test session; each test gets its own database cloned from a migrated template (a clone
takes ~0.1 s, so tests stay isolated without paying for migrations each time).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import URL, make_url

from retrieval.db import Database, embedded_url
from retrieval.settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[1]
DEMO_KB = REPO / "demo_kb"
SHARED_DATA = REPO.parent / "shared" / "data"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

_SCRUBBED_PREFIXES = ("KBBOT_", "OPENAI_", "SLACK_")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never see the developer's own configuration."""
    for name in list(os.environ):
        if name.startswith(_SCRUBBED_PREFIXES) or name in ("DATABASE_URL", "PORT"):
            monkeypatch.delenv(name, raising=False)


def _admin_conninfo(url: URL) -> str:
    return url.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)


def _create_database(server: URL, name: str, template: str | None = None) -> URL:
    with psycopg.connect(_admin_conninfo(server), autocommit=True) as conn:
        suffix = f' TEMPLATE "{template}"' if template else ""
        conn.execute(f'CREATE DATABASE "{name}"{suffix}')
    return server.set(database=name)


def _drop_database(server: URL, name: str) -> None:
    with psycopg.connect(_admin_conninfo(server), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> URL:
    """The embedded server, with a migrated template database `kbbot_template`."""
    data_dir = tmp_path_factory.mktemp("kbbot-data")
    server = make_url(embedded_url(data_dir))
    template_url = _create_database(server, "kbbot_template")
    Database.from_url(template_url.render_as_string(hide_password=False), migrate=True).close()
    return server


def fresh_database_url(pg_server: URL, template: str = "kbbot_template") -> tuple[URL, str]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    return _create_database(pg_server, name, template), name


@pytest.fixture
def database_url(pg_server: URL) -> Iterator[str]:
    """A fresh migrated database's URL (for code that opens its own Database, e.g. the CLI)."""
    url, name = fresh_database_url(pg_server)
    yield url.render_as_string(hide_password=False)
    _drop_database(pg_server, name)


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    db = Database.from_url(database_url, migrate=False)
    yield db
    db.close()


@pytest.fixture
def make_settings(database_url: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    """Settings on the test's database; keyword overrides use field names (e.g. top_k=3)."""

    def make(**overrides: object) -> Settings:
        values: dict[str, object] = {"database_url": database_url, "data_dir": tmp_path / "data"}
        values.update(overrides)
        return load_settings(_env_file=None, **values)

    return make


@pytest.fixture(scope="session")
def embedder():  # type: ignore[no-untyped-def]
    """The local model on the default backend (ONNX Runtime when installed), as `kbbot` runs it."""
    from retrieval.embeddings import create_local_embedder

    return create_local_embedder(load_settings(_env_file=None).embeddings, "all-MiniLM-L6-v2")


@pytest.fixture(scope="session")
def demo_template(pg_server: URL, embedder) -> str:  # type: ignore[no-untyped-def]
    """A template database holding the indexed demo KB (indexed once per session)."""
    from retrieval.sources.filesystem import FilesystemSource
    from retrieval.sync import Indexer

    url = _create_database(pg_server, "kbbot_demo_template", template="kbbot_template")
    db = Database.from_url(url.render_as_string(hide_password=False), migrate=False)
    Indexer(db, embedder, chunk_max_tokens=200).sync([FilesystemSource("demo", DEMO_KB)])
    db.close()
    return "kbbot_demo_template"


@pytest.fixture
def demo_database(pg_server: URL, demo_template: str) -> Iterator[Database]:
    """A fresh database with the demo KB already indexed."""
    url, name = fresh_database_url(pg_server, demo_template)
    db = Database.from_url(url.render_as_string(hide_password=False), migrate=False)
    yield db
    db.close()
    _drop_database(pg_server, name)


@pytest.fixture
def cli(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Runs `kbbot ARGS…` in-process (click's runner) on a fresh database; `ok=False` allows a failure."""
    from click.testing import CliRunner

    from bot.cli import main

    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("KBBOT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)  # no stray .env
    runner = CliRunner()

    def run(*args: str, ok: bool = True):  # type: ignore[no-untyped-def]
        result = runner.invoke(main, list(args), catch_exceptions=False)
        if ok:
            assert result.exit_code == 0, result.output
        return result

    return run
