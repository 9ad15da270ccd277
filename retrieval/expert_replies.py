"""Experts' replies: after "Ask a human", the first reply of a support-group member in the question's thread
is kept against the question; a reviewer may accept it as the answer, and accepted answers become draft
articles (retrieval/drafts.py). The SQL for `expert_replies` lives here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text

from retrieval.db import Database, translate_errors


@dataclass(frozen=True)
class ExpertReply:
    id: int
    answer_id: int
    question: str
    channel: str
    thread_ts: str
    message_ts: str
    user_id: str
    text: str
    created_at: datetime
    accepted_by: str | None
    accepted_at: datetime | None
    exported_at: datetime | None
    exported_to: str | None
    cited: tuple[int, ...] = ()  # article ids the bot's answer cited (for audience checks)

    @property
    def accepted(self) -> bool:
        return self.accepted_at is not None


_COLUMNS = ("r.id, r.answer_id, coalesce(a.rewritten_question, a.question) AS question, r.channel, r.thread_ts, "
            "r.message_ts, r.user_id, r.text, r.created_at, r.accepted_by, r.accepted_at, r.exported_at, "
            "r.exported_to, coalesce((SELECT array_agg(DISTINCT c.article_id) FROM answer_citations c "
            "WHERE c.answer_id = r.answer_id AND c.article_id IS NOT NULL), '{}') AS cited")


class ExpertReplies:
    def __init__(self, db: Database) -> None:
        self.db = db

    def thread_escalation(self, channel: str, thread_ts: str, before_ts: str) -> tuple[bool, int | None]:
        """(was a question of this thread escalated, the escalated answer still waiting for an expert's
        reply: the latest one before `before_ts`, or None)."""
        with translate_errors("Reading the answer log"), self.db.engine.connect() as conn:
            rows = conn.execute(text(
                "SELECT a.id, EXISTS (SELECT 1 FROM expert_replies r WHERE r.answer_id = a.id) AS replied "
                "FROM answers a WHERE a.channel = :c AND a.thread_ts = :t AND a.metadata ? 'escalated_by' "
                "AND (a.message_ts IS NULL OR a.message_ts < :before) ORDER BY a.created_at DESC, a.id DESC"
            ), {"c": channel, "t": thread_ts, "before": before_ts}).all()
        return bool(rows), next((r.id for r in rows if not r.replied), None)

    def record(self, answer_id: int, *, channel: str, thread_ts: str, message_ts: str, user_id: str,
               body: str) -> int | None:
        """Keep the first reply only (a retried event or a second expert does not replace it); returns its
        id, or None when one was already kept."""
        with translate_errors("Saving the expert's reply"), self.db.engine.begin() as conn:
            return conn.execute(text(
                "INSERT INTO expert_replies (answer_id, channel, thread_ts, message_ts, user_id, text) "
                "VALUES (:a, :c, :t, :m, :u, :x) ON CONFLICT (answer_id) DO NOTHING RETURNING id"
            ), {"a": answer_id, "c": channel, "t": thread_ts, "m": message_ts, "u": user_id, "x": body}).scalar()

    def accept(self, reply_id: int, reviewer: str) -> ExpertReply | None:
        """Mark a reply as the accepted answer (idempotent: the first reviewer is kept)."""
        with translate_errors("Accepting the expert's reply"), self.db.engine.begin() as conn:
            conn.execute(text(
                "UPDATE expert_replies SET accepted_by = :u, accepted_at = now() "
                "WHERE id = :id AND accepted_at IS NULL"), {"id": reply_id, "u": reviewer})
        return self.get(reply_id)

    def mark_exported(self, reply_id: int, where: str) -> None:
        with translate_errors("Updating the expert's reply"), self.db.engine.begin() as conn:
            conn.execute(text("UPDATE expert_replies SET exported_at = now(), exported_to = :w WHERE id = :id"),
                         {"id": reply_id, "w": where})

    def get(self, reply_id: int) -> ExpertReply | None:
        found = self._load("r.id = :id", {"id": reply_id}, limit=1)
        return found[0] if found else None

    def pending(self, *, limit: int = 10) -> list[ExpertReply]:
        """Replies no reviewer accepted yet, newest first."""
        return self._load("r.accepted_at IS NULL", {}, limit=limit)

    def accepted(self, *, not_exported: bool = False, limit: int = 1000) -> list[ExpertReply]:
        return self._load("r.accepted_at IS NOT NULL" + (" AND r.exported_at IS NULL" if not_exported else ""),
                          {}, limit=limit)

    def _load(self, where: str, params: dict[str, object], *, limit: int) -> list[ExpertReply]:
        with translate_errors("Reading the experts' replies"), self.db.engine.connect() as conn:
            rows = conn.execute(text(
                f"SELECT {_COLUMNS} FROM expert_replies r JOIN answers a ON a.id = r.answer_id "
                f"WHERE {where} ORDER BY r.created_at DESC, r.id DESC LIMIT :n"), {**params, "n": limit}).all()
        return [ExpertReply(**{**r._mapping, "cited": tuple(r.cited or ())}) for r in rows]
