"""The answer log: every question the bot was asked, what it answered (or why not), what it cited, and the
feedback people gave. Support teams review it in the App Home and export it with `kbbot answers export`.

The SQL for `answers`, `answer_citations` and `feedback` lives here and nowhere else. Citations copy the
article's title and URL, so a review still reads after the article is deleted from the index.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import text

from retrieval.db import Database, translate_errors
from retrieval.model_comparison import FAILED, ModelStats
from retrieval.types import Answer

ReviewFilter = Literal["all", "down", "abstained", "error"]
FeedbackValue = Literal["up", "down"]


@dataclass(frozen=True)
class LoggedCitation:
    number: int
    title: str
    url: str | None
    heading: str | None
    quote: str | None
    score: float | None
    similarity: float | None
    article_id: int | None
    chunk_id: int | None
    source: str | None
    external_id: str | None


@dataclass(frozen=True)
class LoggedFeedback:
    user_id: str
    value: str
    reason: str | None
    updated_at: datetime


@dataclass
class LoggedAnswer:
    id: int
    created_at: datetime
    channel_kind: str
    asker: str | None
    channel: str | None
    thread_ts: str | None
    message_ts: str | None
    question: str
    rewritten_question: str | None
    answer_text: str | None
    outcome: str
    model: str | None
    latency_ms: dict[str, float]
    error_id: str | None
    error: str | None
    metadata: dict[str, Any]
    arm: str | None  # the routing arm ("tone" / "base"); None when no router chose a model
    fallback_reason: str | None  # why `model` is not the arm's first choice
    citations: list[LoggedCitation] = field(default_factory=list)
    feedback: list[LoggedFeedback] = field(default_factory=list)

    @property
    def thumbs(self) -> tuple[int, int]:
        """(👍 count, 👎 count)."""
        ups = sum(1 for f in self.feedback if f.value == "up")
        return ups, len(self.feedback) - ups


@dataclass(frozen=True)
class Asked:
    """Where and by whom a question was asked."""

    question: str
    channel_kind: str = "cli"  # "channel", "im", "assistant", "cli"
    asker: str | None = None
    channel: str | None = None
    thread_ts: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


_ANSWER_COLUMNS = (
    "id, created_at, channel_kind, asker, channel, thread_ts, message_ts, question, rewritten_question, "
    "answer_text, outcome, model, latency_ms, error_id, error, metadata, arm, fallback_reason"
)

_FILTERS: dict[str, str] = {
    "all": "TRUE",
    "down": "EXISTS (SELECT 1 FROM feedback f WHERE f.answer_id = answers.id AND f.value = 'down')",
    "abstained": "outcome = 'abstained'",
    "error": "outcome = 'error'",
}


class AnswerLog:
    """Reads and writes the answer log. Every method is one short transaction."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # --- writing ---------------------------------------------------------------------------------
    def record(self, asked: Asked, answer: Answer, *, extra_latency_ms: dict[str, float] | None = None) -> int:
        """Store an answered or abstained question with its citations; returns the answer id."""
        metadata = dict(asked.metadata)
        if answer.note:
            metadata["note"] = answer.note
        if answer.unsure:  # the gate only just let it through: a gap candidate (retrieval/gaps.py)
            metadata["unsure"] = True
        if answer.nearest:
            metadata["nearest"] = [
                {"title": h.title, "url": h.url, "similarity": h.similarity, "article_id": h.article_id}
                for h in answer.nearest
            ]
        latency = {**answer.timings_ms, **(extra_latency_ms or {})}
        with translate_errors("Saving the answer to the answer log"), self.db.engine.begin() as conn:
            answer_id = conn.execute(text(
                "INSERT INTO answers (channel_kind, asker, channel, thread_ts, question, rewritten_question, "
                "answer_text, outcome, model, latency_ms, metadata, arm, fallback_reason) VALUES (:kind, :asker, "
                ":channel, :thread, :question, :rewritten, :answer, :outcome, :model, CAST(:latency AS jsonb), "
                "CAST(:metadata AS jsonb), :arm, :fallback_reason) RETURNING id"
            ), {
                "kind": asked.channel_kind, "asker": asked.asker, "channel": asked.channel,
                "thread": asked.thread_ts, "question": asked.question,
                "rewritten": answer.rewritten_question, "answer": answer.text, "outcome": answer.outcome,
                "model": answer.model, "latency": _json_latency(latency), "metadata": json.dumps(metadata),
                "arm": answer.arm, "fallback_reason": answer.fallback_reason,
            }).scalar_one()
            if answer.citations:
                conn.execute(text(
                    "INSERT INTO answer_citations (answer_id, number, chunk_id, article_id, source, "
                    "external_id, title, url, heading, quote, score, similarity) VALUES (:answer_id, :number, "
                    "(SELECT id FROM chunks WHERE id = :chunk_id), "
                    "(SELECT id FROM articles WHERE id = :article_id), :source, :external_id, :title, :url, "
                    ":heading, :quote, :score, :similarity)"
                ), [{
                    "answer_id": answer_id, "number": c.number, "chunk_id": c.hit.chunk_id,
                    "article_id": c.hit.article_id, "source": c.hit.source, "external_id": c.hit.external_id,
                    "title": c.hit.title, "url": c.hit.url,
                    "heading": " > ".join(c.hit.heading_path) or None, "quote": c.quote,
                    "score": c.hit.score, "similarity": c.hit.similarity,
                } for c in answer.citations])
        return int(answer_id)

    def record_error(self, asked: Asked, *, error_id: str, error: str,
                     latency_ms: dict[str, float] | None = None) -> int:
        """Store a question the bot could not answer because something failed."""
        with translate_errors("Saving the failed question to the answer log"), self.db.engine.begin() as conn:
            return int(conn.execute(text(
                "INSERT INTO answers (channel_kind, asker, channel, thread_ts, question, outcome, latency_ms, "
                "error_id, error, metadata) VALUES (:kind, :asker, :channel, :thread, :question, 'error', "
                "CAST(:latency AS jsonb), :error_id, :error, CAST(:metadata AS jsonb)) RETURNING id"
            ), {
                "kind": asked.channel_kind, "asker": asked.asker, "channel": asked.channel,
                "thread": asked.thread_ts, "question": asked.question, "error_id": error_id, "error": error,
                "latency": _json_latency(latency_ms or {}), "metadata": json.dumps(asked.metadata),
            }).scalar_one())

    def set_delivery(self, answer_id: int, *, message_ts: str | None,
                     latency_ms: dict[str, float] | None = None) -> None:
        """Remember which Slack message shows the answer, and how long delivery took."""
        with translate_errors("Updating the answer log"), self.db.engine.begin() as conn:
            conn.execute(text(
                "UPDATE answers SET message_ts = coalesce(:ts, message_ts), "
                "latency_ms = latency_ms || CAST(:latency AS jsonb) WHERE id = :id"
            ), {"ts": message_ts, "latency": _json_latency(latency_ms or {}), "id": answer_id})

    def add_metadata(self, answer_id: int, values: dict[str, Any]) -> None:
        with translate_errors("Updating the answer log"), self.db.engine.begin() as conn:
            conn.execute(text("UPDATE answers SET metadata = metadata || CAST(:m AS jsonb) WHERE id = :id"),
                         {"m": json.dumps(values, default=str), "id": answer_id})

    def record_feedback(self, answer_id: int, user_id: str, value: FeedbackValue,
                        reason: str | None = None, category: str | None = None) -> bool:
        """Upsert one person's 👍/👎 on an answer (the latest click wins). False if the answer is unknown.

        A new value without a reason keeps no stale reason (nor `category`, the kind of 👎 picked in the
        modal); the reason of the same value is kept."""
        with translate_errors("Saving feedback"), self.db.engine.begin() as conn:
            row = conn.execute(text(
                "INSERT INTO feedback (answer_id, user_id, value, reason, category) "
                "SELECT :answer_id, :user_id, :value, :reason, :category WHERE EXISTS "
                "(SELECT 1 FROM answers WHERE id = :answer_id) "
                "ON CONFLICT (answer_id, user_id) DO UPDATE SET value = EXCLUDED.value, "
                "reason = CASE WHEN EXCLUDED.reason IS NOT NULL THEN EXCLUDED.reason "
                "WHEN feedback.value = EXCLUDED.value THEN feedback.reason END, "
                "category = CASE WHEN EXCLUDED.category IS NOT NULL THEN EXCLUDED.category "
                "WHEN feedback.value = EXCLUDED.value THEN feedback.category END, updated_at = now() "
                "RETURNING id"
            ), {"answer_id": answer_id, "user_id": user_id, "value": value, "reason": reason,
                "category": category}).first()
        return row is not None

    # --- reading ---------------------------------------------------------------------------------
    def answered_in_thread(self, channel: str, thread_ts: str) -> bool:
        """Has the bot taken part in this thread? Then replies there are follow-ups meant for it."""
        with translate_errors("Reading the answer log"), self.db.engine.connect() as conn:
            return conn.execute(text(
                "SELECT EXISTS (SELECT 1 FROM answers WHERE channel = :c AND thread_ts = :t)"
            ), {"c": channel, "t": thread_ts}).scalar_one()

    def in_thread(self, channel: str, thread_ts: str) -> list[LoggedAnswer]:
        """The answers given in one thread, oldest first (a follow-up checks their sources)."""
        return self._load(f"SELECT {_ANSWER_COLUMNS} FROM answers WHERE channel = :c AND thread_ts = :t "
                          "AND outcome <> 'error' ORDER BY id", {"c": channel, "t": thread_ts})

    def get(self, answer_id: int) -> LoggedAnswer | None:
        found = self._load(f"SELECT {_ANSWER_COLUMNS} FROM answers WHERE id = :id", {"id": answer_id})
        return found[0] if found else None

    def recent(self, *, limit: int = 20, review: ReviewFilter = "all", asker: str | None = None) -> list[LoggedAnswer]:
        """Newest first; `review` narrows to 👎, abstentions or errors; `asker` to one person's questions."""
        where = [_FILTERS[review]]
        params: dict[str, Any] = {"n": limit}
        if asker is not None:
            where.append("asker = :asker")
            params["asker"] = asker
        return self._load(
            f"SELECT {_ANSWER_COLUMNS} FROM answers WHERE {' AND '.join(where)} "
            "ORDER BY created_at DESC, id DESC LIMIT :n", params)

    def counts(self, *, since: datetime | None = None) -> dict[str, int]:
        """Questions by outcome, and 👍/👎 totals, for the review header."""
        with translate_errors("Reading the answer log"), self.db.engine.connect() as conn:
            row = conn.execute(text(
                "SELECT count(*) AS total, count(*) FILTER (WHERE outcome = 'answered') AS answered, "
                "count(*) FILTER (WHERE outcome = 'abstained') AS abstained, "
                "count(*) FILTER (WHERE outcome = 'error') AS errors, "
                "(SELECT count(*) FROM feedback f JOIN answers a ON a.id = f.answer_id "
                " WHERE f.value = 'up' AND a.created_at >= coalesce(:since, '-infinity')) AS up, "
                "(SELECT count(*) FROM feedback f JOIN answers a ON a.id = f.answer_id "
                " WHERE f.value = 'down' AND a.created_at >= coalesce(:since, '-infinity')) AS down "
                "FROM answers WHERE created_at >= coalesce(:since, '-infinity')"
            ), {"since": since}).one()
        return dict(row._mapping)

    def export(self, *, since: datetime, batch: int = 500) -> Iterator[LoggedAnswer]:
        """Every answer since `since`, oldest first, in batches (keyset pagination keeps memory flat)."""
        after = 0
        while True:
            page = self._load(
                f"SELECT {_ANSWER_COLUMNS} FROM answers WHERE created_at >= :since AND id > :after "
                "ORDER BY id LIMIT :n", {"since": since, "after": after, "n": batch})
            yield from page
            if len(page) < batch:
                return
            after = page[-1].id

    def by_model(self, *, since: datetime) -> list[ModelStats]:
        """Outcomes, votes, fallbacks and median latency per routing arm (`kbbot answers export --by-model`),
        with the models that wrote each arm's answers. An answer no router placed in an arm is grouped by its
        model: gate abstentions `none`, failures before any model `(failed)`, `extractive` with no LLM, and
        answers logged before arms were recorded (migration 0004)."""
        with translate_errors("Reading the answer log"), self.db.engine.connect() as conn:
            rows = conn.execute(text(
                "WITH votes AS (SELECT answer_id, count(*) FILTER (WHERE value = 'up') AS up, "
                "count(*) FILTER (WHERE value = 'down') AS down FROM feedback GROUP BY answer_id), "
                "grouped AS (SELECT *, coalesce(arm, model, :failed) AS arm_key, "
                "coalesce(model, :failed) AS model_key FROM answers WHERE created_at >= :since), "
                "models AS (SELECT arm_key, string_agg(model_key || ' (' || n || ')', ', ' "
                "ORDER BY n DESC, model_key) AS models FROM (SELECT arm_key, model_key, count(*) AS n "
                "FROM grouped GROUP BY 1, 2) m GROUP BY 1) "
                "SELECT a.arm_key AS arm, min(m.models) AS models, count(*) AS answers, "
                "count(*) FILTER (WHERE a.outcome = 'answered') AS answered, "
                "count(*) FILTER (WHERE a.outcome = 'abstained') AS abstained, "
                "count(*) FILTER (WHERE a.outcome = 'error') AS errors, count(v.answer_id) AS rated, "
                "coalesce(sum(v.up), 0)::int AS up, coalesce(sum(v.down), 0)::int AS down, "
                "count(*) FILTER (WHERE a.fallback_reason IS NOT NULL) AS fallbacks, "
                "percentile_cont(0.5) WITHIN GROUP (ORDER BY (a.latency_ms ->> 'total')::float) "
                "AS latency_p50_ms "
                "FROM grouped a LEFT JOIN votes v ON v.answer_id = a.id "
                "JOIN models m ON m.arm_key = a.arm_key GROUP BY 1 ORDER BY count(*) DESC, 1"
            ), {"since": since, "failed": FAILED}).all()
        return [ModelStats(**r._mapping) for r in rows]

    def _load(self, sql: str, params: dict[str, Any]) -> list[LoggedAnswer]:
        with translate_errors("Reading the answer log"), self.db.engine.connect() as conn:
            rows = conn.execute(text(sql), params).all()
            answers = [LoggedAnswer(**{**r._mapping, "latency_ms": dict(r.latency_ms or {}),
                                       "metadata": dict(r.metadata or {})}) for r in rows]
            if not answers:
                return []
            ids = [a.id for a in answers]
            by_id = {a.id: a for a in answers}
            for c in conn.execute(text(
                "SELECT answer_id, number, title, url, heading, quote, score, similarity, article_id, "
                "chunk_id, source, external_id FROM answer_citations WHERE answer_id = ANY(:ids) "
                "ORDER BY answer_id, number"), {"ids": ids}):
                by_id[c.answer_id].citations.append(LoggedCitation(
                    c.number, c.title, c.url, c.heading, c.quote, c.score, c.similarity, c.article_id,
                    c.chunk_id, c.source, c.external_id))
            for f in conn.execute(text(
                "SELECT answer_id, user_id, value, reason, updated_at FROM feedback "
                "WHERE answer_id = ANY(:ids) ORDER BY updated_at"), {"ids": ids}):
                by_id[f.answer_id].feedback.append(LoggedFeedback(f.user_id, f.value, f.reason, f.updated_at))
        return answers


def _json_latency(latency: dict[str, float]) -> str:
    return json.dumps({k: round(float(v), 1) for k, v in latency.items()})
