"""Database start-up, migrations and settings validation."""

from __future__ import annotations

import socket
import uuid

import psycopg
import pytest
from sqlalchemy import inspect, text

from retrieval.db import Database, check_pgvector_version
from retrieval.errors import ConfigError, DatabaseError, SchemaError
from retrieval.settings import load_settings
from tests.conftest import _admin_conninfo

EXPECTED_TABLES = {
    "sources", "articles", "chunks", "embedding_spaces", "embeddings", "lexicon", "lexicon_stats",
    "sync_runs", "answers", "answer_citations", "feedback", "slack_events", "finetune_jobs", "tone_models",
}


def test_migrations_build_the_schema_on_an_empty_database(pg_server) -> None:  # type: ignore[no-untyped-def]
    name = f"empty_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(_admin_conninfo(pg_server), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        db = Database.from_url(pg_server.set(database=name).render_as_string(hide_password=False))
        tables = set(inspect(db.engine).get_table_names())
        assert tables >= EXPECTED_TABLES
        with db.engine.connect() as conn:
            version = conn.execute(text("SELECT extversion FROM pg_extension WHERE extname = 'vector'")).scalar()
        check_pgvector_version(version)
        head = db.current_revision()
        db.migrate()  # idempotent
        assert db.current_revision() == head
        db.close()
    finally:
        with psycopg.connect(_admin_conninfo(pg_server), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.parametrize("version", ["0.8.3", "0.7.4", "0.5.1"])
def test_old_pgvector_is_refused_with_instructions(version: str) -> None:
    with pytest.raises(SchemaError, match=r"needs >= 0\.8\.4.*ALTER EXTENSION vector UPDATE"):
        check_pgvector_version(version)


def test_missing_pgvector_is_refused() -> None:
    with pytest.raises(SchemaError, match="not available"):
        check_pgvector_version(None)


def test_recent_pgvector_is_accepted() -> None:
    for version in ("0.8.4", "0.8.6", "0.9.0", "1.0.0"):
        check_pgvector_version(version)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_database_gives_an_actionable_error() -> None:
    url = f"postgresql://kb:s3cret-pw@127.0.0.1:{_closed_port()}/kb"
    settings = load_settings(_env_file=None, database_url=url)
    with pytest.raises(DatabaseError) as info:
        Database.open(settings.storage)
    message = str(info.value)
    assert "Cannot reach PostgreSQL" in message and "DATABASE_URL" in message
    assert "s3cret-pw" not in message


def test_invalid_settings_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KBBOT_TOP_K", "lots")
    monkeypatch.setenv("KBBOT_SEARCH_MODE", "psychic")
    with pytest.raises(ConfigError) as info:
        load_settings(_env_file=None)
    assert "KBBOT_TOP_K" in str(info.value) and "KBBOT_SEARCH_MODE" in str(info.value)


def test_database_url_must_be_postgres(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "mysql://x@y/z")
    with pytest.raises(ConfigError, match="DATABASE_URL"):
        load_settings(_env_file=None)


def test_settings_come_from_dotenv(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / ".env").write_text("KBBOT_TOP_K=7\nKBBOT_ADMIN_USERS=U1, U2\n")
    monkeypatch.chdir(tmp_path)
    settings = load_settings()
    assert settings.search.top_k == 7 and settings.slack.admin_users == ["U1", "U2"]
    assert "s3cret" not in repr(load_settings(_env_file=None, openai_api_key="s3cret"))


def test_config_prints_every_variable_once_with_secrets_masked(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    from click.testing import CliRunner

    from bot.cli import main
    from retrieval.settings import Settings

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KBBOT_TOP_K", "7")
    monkeypatch.setenv("KBBOT_LLM_TIMEOUT", "3.5")
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-s3cret")
    result = CliRunner().invoke(main, ["config"])
    assert result.exit_code == 0, result.output
    lines = dict(line.split("=", 1) for line in result.output.splitlines())
    expected = [group.env_name(name) for group in Settings.groups().values() for name in group.model_fields]
    assert list(lines) == expected and len(set(expected)) == len(expected)
    assert lines["KBBOT_TOP_K"] == "7" and lines["KBBOT_LLM_TIMEOUT"] == "3.5"
    assert lines["SLACK_BOT_TOKEN"] == "****** (set)" and "s3cret" not in result.output


def test_core_constructors_default_to_the_settings() -> None:
    """A calibrated value has one home: a constructor default may not silently differ from its setting."""
    import inspect as signatures

    from bot.blocks import plain_messages
    from bot.responder import Responder, _Delivery
    from retrieval.answer import AnswerPipeline
    from retrieval.embeddings import LocalEmbedder, OpenAIEmbedder
    from retrieval.llm.client import ChatClient
    from retrieval.llm.prompt import PromptBuilder
    from retrieval.llm.synthesizer import LLMSynthesizer
    from retrieval.rewrite import ExpandingSearcher
    from retrieval.routing import ToneRouter
    from retrieval.search import Searcher
    from retrieval.settings import DEFAULTS
    from retrieval.spaces import HnswOptions

    d = DEFAULTS
    expected = {
        (AnswerPipeline, "top_k"): d.search.top_k, (AnswerPipeline, "min_relevance"): d.search.min_relevance,
        (Searcher, "mode"): d.search.search_mode, (Searcher, "ef_search"): d.search.hnsw_ef_search,
        (Searcher.search, "k"): d.search.top_k, (Searcher.search_vector, "k"): d.search.top_k,
        (ExpandingSearcher.search, "k"): d.search.top_k,
        (LocalEmbedder, "batch_size"): d.embeddings.embedding_batch_size,
        (OpenAIEmbedder, "batch_size"): d.embeddings.embedding_batch_size,
        (ChatClient, "timeout_s"): d.llm.llm_timeout_s, (ChatClient, "max_retries"): d.llm.llm_max_retries,
        (ChatClient, "max_answer_tokens"): d.llm.llm_max_answer_tokens,
        (ChatClient, "temperature"): d.llm.llm_temperature,
        (PromptBuilder, "max_tokens"): d.llm.llm_max_context_tokens,
        (LLMSynthesizer, "budget_s"): d.llm.llm_answer_budget_s, (LLMSynthesizer, "uncited"): d.llm.llm_uncited,
        (ToneRouter, "rule"): d.llm.tone_routing, (ToneRouter, "share"): d.llm.tone_share,
        (HnswOptions, "storage"): d.index.vector_storage, (HnswOptions, "m"): d.index.hnsw_m,
        (HnswOptions, "ef_construction"): d.index.hnsw_ef_construction,
        (HnswOptions, "build_memory_mb"): d.index.hnsw_build_memory_mb,
        (HnswOptions, "build_workers"): d.index.hnsw_build_workers,
        (Responder, "workers"): d.slack.slack_workers,
        (_Delivery.post_final, "stale_after_days"): d.slack.stale_after_days,
        (plain_messages, "stale_after_days"): d.slack.stale_after_days,
    }
    for (cls, parameter), setting_default in expected.items():
        default = signatures.signature(cls).parameters[parameter].default
        assert default == setting_default, f"{cls.__qualname__}({parameter}={default!r}), setting {setting_default!r}"
    assert d.search.min_relevance == 0.40  # the calibrated value BENCHMARKS.md reports
