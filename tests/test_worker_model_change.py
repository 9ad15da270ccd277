"""Changing the embedding model without downtime: the scheduled run re-embeds into a building space while
questions keep being answered with the active (old) model, then everything switches at once."""

# ruff: noqa: F811 - fixtures imported from tests.fakes are taken by name
from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from bot.services import Services
from bot.worker import SyncParts, model_change_pending, run_sync
from retrieval.answer import AskContext
from retrieval.db import Database
from retrieval.settings import Settings, load_settings
from retrieval.status import index_status
from retrieval.sync import Progress
from tests.fakes.openai_api import FakeOpenAI, fake_openai  # noqa: F401

REPO = Path(__file__).resolve().parents[1]
QUESTION = "How do I connect to the VPN when I'm working from home?"


def spaces(db: Database) -> list[tuple[str, str, int]]:
    with db.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(  # type: ignore[misc]
            "SELECT s.model, s.status, (SELECT count(*) FROM embeddings e WHERE e.space_id = s.id) "
            "FROM embedding_spaces s ORDER BY s.id")).all()]


def question_embeddings(fake: FakeOpenAI) -> int:
    return sum(1 for r in fake.requests_to("POST", "/v1/embeddings") if QUESTION in str(r.json.get("input")))


def demo_kb_on_openai(db: Database, fake: FakeOpenAI, tmp_path: Path, **overrides: object) -> Settings:
    """The demo KB (indexed with the local model) configured to embed with the fake OpenAI endpoint."""
    sources = tmp_path / "sources.yml"
    sources.write_text(f"sources:\n  - name: demo\n    type: filesystem\n    options: {{path: {REPO / 'demo_kb'}}}\n")
    return load_settings(
        _env_file=None, database_url=db.engine.url.render_as_string(hide_password=False),
        data_dir=tmp_path / "data", sources_file=sources, embedding_provider="openai",
        embedding_base_url=fake.url + "/v1", embedding_api_key="test-key", full_sync_cron="", **overrides)


def test_answers_keep_working_while_a_new_model_builds_and_switch_when_done(
        demo_database: Database, fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    settings = demo_kb_on_openai(demo_database, fake_openai, tmp_path, embedding_model="text-embedding-3-small")
    services = Services(settings)
    try:
        assert model_change_pending(services.database(), settings.embeddings)
        searched = services.searcher().search(QUESTION)
        assert searched.space is not None and searched.space.model == "all-MiniLM-L6-v2"
        assert searched.hits and searched.hits[0].similarity and searched.hits[0].similarity > 0.5
        assert question_embeddings(fake_openai) == 0  # retrieval embedded it with the active local model
        before = services.pipeline.answer(QUESTION, AskContext())
        assert before.outcome == "answered" and before.citations

        during: list[tuple[str, str | None, str | None]] = []

        def ask_while_building(p: Progress) -> None:
            if p.stage == "backfill" and not during:  # new vectors are being written: the switch is not done
                answer = services.pipeline.answer(QUESTION, AskContext())
                status = index_status(services.database())
                during.append((answer.outcome, status.model, status.building_model))
                assert [h.title for h in services.searcher().search(QUESTION).hits][:1] == \
                    [c.hit.title for c in before.citations][:1]

        outcome = run_sync(SyncParts.of(services), "incremental", progress=ask_while_building)
        assert outcome.kind == "full"  # a model change turns the scheduled run into a re-embed
        assert outcome.status == "ran" and outcome.run is not None and outcome.run.status == "succeeded"
        assert during == [("answered", "local/all-MiniLM-L6-v2", "openai/text-embedding-3-small")]

        # Switched: one active space of the new model holds every vector; the old one is retired and empty.
        chunks = services.database().engine.connect().execute(text("SELECT count(*) FROM chunks")).scalar_one()
        assert spaces(demo_database) == [("all-MiniLM-L6-v2", "retired", 0),
                                         ("text-embedding-3-small", "active", chunks)]
        after = services.searcher().search(QUESTION)  # the same searcher object follows the switch
        assert after.space is not None and after.space.model == "text-embedding-3-small"
        assert after.hits and after.query_vector is not None  # the configured model again: reused by answers
        assert not model_change_pending(services.database(), settings.embeddings)
        assert services.pipeline.answer(QUESTION, AskContext()).outcome in ("answered", "abstained")
    finally:
        services.close()


def test_an_interrupted_reembed_resumes_and_the_old_model_serves_meanwhile(
        demo_database: Database, fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    settings = demo_kb_on_openai(demo_database, fake_openai, tmp_path)
    services = Services(settings)
    try:
        stop = {"now": False}

        def stop_after_first_batch(p: Progress) -> None:
            if p.stage == "backfill":
                stop["now"] = True

        first = run_sync(SyncParts.of(services), "incremental", should_stop=lambda: stop["now"],
                         progress=stop_after_first_batch)
        assert first.status == "stopped" and first.run is not None and first.run.status == "interrupted"
        partial = spaces(demo_database)
        assert partial[0][1] == "active" and partial[1][1] == "building" and partial[1][2] > 0
        assert services.pipeline.answer(QUESTION, AskContext()).outcome == "answered"  # still the old model

        second = run_sync(SyncParts.of(services), "incremental")
        assert second.run is not None and second.run.status == "succeeded"
        assert second.run.chunks_embedded == partial[0][2] - partial[1][2]  # only what was missing
        assert [s[1] for s in spaces(demo_database)] == ["retired", "active"]
    finally:
        services.close()
