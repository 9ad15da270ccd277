"""Migrations on a real PostgreSQL: every revision after the first downgrades and upgrades again cleanly."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import text

from retrieval.db import Database

MIGRATIONS = Path(__file__).resolve().parents[1] / "migrations"
DENSITY = {"density", "density_measured_at", "density_passages"}


def _columns(db: Database, table: str) -> set[str]:
    with db.engine.connect() as conn:
        return set(conn.execute(text(
            "SELECT column_name FROM information_schema.columns WHERE table_name = :t"), {"t": table}).scalars())


def _alembic(db: Database, action: str, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with db.engine.connect() as conn:
        config.attributes["connection"] = conn
        getattr(command, action)(config, revision)
        conn.commit()


def _head() -> str:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


def test_later_revisions_downgrade_and_upgrade_again(database: Database) -> None:
    assert {"arm", "fallback_reason"} <= _columns(database, "answers")
    assert "postings" in _columns(database, "lexicon")
    assert {"max_chunk_id", "scoring"} <= _columns(database, "lexicon_stats")
    assert "audience" in _columns(database, "embeddings")
    assert {"audience", "held_back"} <= _columns(database, "articles")
    assert "category" in _columns(database, "feedback") and "accepted_by" in _columns(database, "expert_replies")
    assert _columns(database, "embedding_spaces") >= DENSITY

    _alembic(database, "downgrade", "0001")
    assert not DENSITY & _columns(database, "embedding_spaces")
    assert database.current_revision() == "0001"
    assert "postings" not in _columns(database, "lexicon")
    assert not {"max_chunk_id", "scoring"} & _columns(database, "lexicon_stats")
    assert not {"arm", "fallback_reason"} & _columns(database, "answers")
    assert "audience" not in _columns(database, "embeddings")
    assert "category" not in _columns(database, "feedback") and not _columns(database, "expert_replies")

    _alembic(database, "upgrade", "head")
    assert database.current_revision() == _head()
    assert {"arm", "fallback_reason"} <= _columns(database, "answers")
    assert "postings" in _columns(database, "lexicon")
    assert {"max_chunk_id", "scoring"} <= _columns(database, "lexicon_stats")
    assert "audience" in _columns(database, "embeddings")
    assert "category" in _columns(database, "feedback") and "accepted_by" in _columns(database, "expert_replies")
    assert _columns(database, "embedding_spaces") >= DENSITY
