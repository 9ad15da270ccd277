"""Which kbbot releases may run on a database: what lets a rolling deploy keep its old processes up.

During a rolling deploy the first new process migrates the database while old processes still run and
restart. Alembic alone makes an old one crash: the database's revision is not in its migrations. So each
migration declares `compatible_with_previous`: whether code of the revision before it still runs on the
schema it leaves (a new table or column: yes; a column the old code reads dropped or renamed: no, unless
the old code survives the loss). After migrating, kbbot stores the oldest code revision that may run on
the database, found by walking back from its newest migration while each one is compatible with the one
before (compatibility composes: additive on top of additive stays additive). A kbbot that finds the
database at a revision it does not know reads that floor: when its own newest migration is at or past
it, it runs, without migrating, and warns with both versions; otherwise it refuses with one line saying
which release to upgrade to. Migrations written before this existed declare nothing and count as
incompatible, which only matters to releases that predate the check anyway.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, text
from sqlalchemy.exc import SQLAlchemyError

from retrieval.errors import SchemaError

if TYPE_CHECKING:  # alembic is imported when a database is opened, not with every kbbot command
    from alembic.config import Config
    from alembic.script import ScriptDirectory

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def kbbot_version() -> str:
    try:
        return metadata.version("kbbot")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def alembic_config(migrations_dir: Path = MIGRATIONS_DIR) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(migrations_dir))
    return config


@dataclass(frozen=True)
class CodeSchema:
    """The migrations this code ships: its newest revision and what each one declares."""

    script: ScriptDirectory

    @classmethod
    def load(cls, migrations_dir: Path = MIGRATIONS_DIR) -> CodeSchema:
        from alembic.script import ScriptDirectory

        return cls(ScriptDirectory.from_config(alembic_config(migrations_dir)))

    @property
    def head(self) -> str:
        head = self.script.get_current_head()
        if head is None:
            raise SchemaError(f"No migrations found in {self.script.dir}: the installation is incomplete.")
        return head

    def knows(self, revision: str) -> bool:
        return any(script.revision == revision for script in self.script.walk_revisions())

    def oldest_compatible_revision(self) -> str:
        """The oldest code revision that may run on a database migrated to this code's head."""
        revision = self.head
        while True:
            script = self.script.get_revision(revision)
            if script is None or not isinstance(script.down_revision, str):
                return revision
            if getattr(script.module, "compatible_with_previous", False) is not True:
                return revision
            revision = script.down_revision


@dataclass(frozen=True)
class DatabaseSchema:
    """What the newest kbbot that migrated a database wrote about it (`schema_compat`)."""

    revision: str
    oldest_code_revision: str
    migrated_by: str


def database_revision(conn: Connection) -> str | None:
    """The database's alembic revision; None before the first migration."""
    exists = conn.execute(text("SELECT to_regclass('alembic_version') IS NOT NULL")).scalar()
    if not exists:
        return None
    return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def read_database_schema(conn: Connection) -> DatabaseSchema | None:
    if not conn.execute(text("SELECT to_regclass('schema_compat') IS NOT NULL")).scalar():
        return None
    row = conn.execute(text("SELECT revision, oldest_code_revision, migrated_by FROM schema_compat")).first()
    return DatabaseSchema(*row) if row is not None else None


def record_migration(conn: Connection, code: CodeSchema) -> None:
    """After migrating to this code's head: store who did and which older code may still run on it."""
    conn.execute(text(
        "INSERT INTO schema_compat (revision, oldest_code_revision, migrated_by) VALUES (:r, :floor, :v) "
        "ON CONFLICT (id) DO UPDATE SET revision = EXCLUDED.revision, "
        "oldest_code_revision = EXCLUDED.oldest_code_revision, migrated_by = EXCLUDED.migrated_by, "
        "migrated_at = now() WHERE (schema_compat.revision, schema_compat.oldest_code_revision, "
        "schema_compat.migrated_by) IS DISTINCT FROM (EXCLUDED.revision, EXCLUDED.oldest_code_revision, "
        "EXCLUDED.migrated_by)"),
        {"r": code.head, "floor": code.oldest_compatible_revision(), "v": kbbot_version()})


def check_newer_database(conn: Connection, code: CodeSchema, revision: str) -> None:
    """The database is at `revision`, which this code does not know: run on it if the newer kbbot that
    migrated it said code like this one still can (a warning), else raise one line saying what to do."""
    this = f"kbbot {kbbot_version()}, schema revision {code.head}"
    try:
        recorded = read_database_schema(conn)
    except SQLAlchemyError:
        recorded = None
    if recorded is None or recorded.revision != revision:
        raise SchemaError(
            f"This database was migrated by a newer kbbot (schema revision {revision}) that left no note of "
            f"which older releases may run on it; this is {this}. Upgrade kbbot to the release that "
            "migrated it (`kbbot migrate` with it records the note).")
    newer = f"kbbot {recorded.migrated_by}, schema revision {revision}"
    if not code.knows(recorded.oldest_code_revision):
        raise SchemaError(
            f"This database was migrated by a newer kbbot ({newer}) that this one ({this}) cannot run on: "
            f"upgrade kbbot to a release with schema revision {recorded.oldest_code_revision} or later "
            f"(kbbot {recorded.migrated_by} is one).")
    log.warning(
        "This database was migrated by a newer kbbot (%s); this one (%s) still runs on it (the newer "
        "migrations keep code from schema revision %s on working) and does not migrate it. Upgrade this "
        "process to finish the deploy.", newer, this, recorded.oldest_code_revision)
