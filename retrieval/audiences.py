"""The index's side of access: which audiences its articles have, how many passages each reaches.

Audiences themselves are defined in retrieval/access.py; this module holds the SQL that reads them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text

from retrieval.access import AudienceError, ReaderScope, parse_audience
from retrieval.answer_log import LoggedAnswer
from retrieval.db import Database, translate_errors


def stored_audience(db: Database, source: str) -> tuple[str, ...] | None:
    """The audience `kbbot ingest --audience` registered for a source, or None."""
    with translate_errors("Reading the source's audience"), db.engine.connect() as conn:
        config = conn.execute(text("SELECT config FROM sources WHERE name = :n"), {"n": source}).scalar()
    value = config.get("audience") if isinstance(config, dict) else None
    if value is None:
        return None
    try:
        return parse_audience(value)
    except AudienceError:
        return ()  # unreadable: nobody, until `--audience` is given again


def indexed_groups(db: Database) -> list[str]:
    """The Slack user groups any indexed article is restricted to: the only groups a reader's membership
    needs checking for."""
    with translate_errors("Reading the indexed audiences"), db.engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT DISTINCT t FROM (SELECT DISTINCT audience FROM articles) a, unnest(a.audience) t "
            "WHERE t NOT IN ('public', 'everyone') ORDER BY t")).scalars()
        return list(rows)


@dataclass(frozen=True)
class Reach:
    """What a scope reaches in the index, per source (for `kbbot access`)."""

    source: str
    readable: int
    restricted: int  # articles of the source outside the scope (held back included)
    held_back: int


def reach(db: Database, scope: ReaderScope) -> list[Reach]:
    with translate_errors("Reading what the audience reaches"), db.engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT s.name, count(*) FILTER (WHERE a.audience && CAST(:tokens AS text[])), "
            "count(*) FILTER (WHERE NOT a.audience && CAST(:tokens AS text[])), "
            "count(*) FILTER (WHERE a.held_back IS NOT NULL) "
            "FROM sources s JOIN articles a ON a.source_id = s.id GROUP BY s.name ORDER BY s.name"
        ), {"tokens": scope.sql_tokens}).all()
    return [Reach(r[0], int(r[1]), int(r[2]), int(r[3])) for r in rows]


@dataclass(frozen=True)
class CitedArticle:
    """What an answer's cited article is today: who may read it, and when its source last changed it."""

    audience: tuple[str, ...]
    updated_at: datetime | None


def cited_articles(db: Database, article_ids: Iterable[int | None]) -> dict[int, CitedArticle]:
    """The articles that still exist among `article_ids`, by id (a deleted one is absent: unknown audience)."""
    wanted = sorted({i for i in article_ids if i is not None})
    if not wanted:
        return {}
    with translate_errors("Reading the cited articles' audiences"), db.engine.connect() as conn:
        rows = conn.execute(text("SELECT id, audience, source_updated_at FROM articles WHERE id = ANY(:ids)"),
                            {"ids": wanted}).all()
    return {int(r[0]): CitedArticle(tuple(r[1]), r[2]) for r in rows}


def answer_article_ids(answer: LoggedAnswer) -> list[int | None]:
    """Every article a logged answer showed: its citations and the nearest articles of an abstention."""
    nearest = answer.metadata.get("nearest") or []
    return [c.article_id for c in answer.citations] + [n.get("article_id") for n in nearest if isinstance(n, dict)]


def unreadable_articles(scope: ReaderScope, ids: Iterable[int | None], known: dict[int, CitedArticle]) -> int:
    """How many of `ids` the scope may not read; a deleted article (None or absent) counts as unreadable."""
    return sum(1 for i in ids if i is None or i not in known or not scope.may_read(known[i].audience))


def visible_to(db: Database, scope: ReaderScope, answers: list[LoggedAnswer]) -> list[LoggedAnswer]:
    """The logged answers whose every cited (or offered nearest) article `scope` may read today: a reviewer
    never sees, through the review, what they could not have been answered with. An article deleted since
    (no id left) hides its answer: its audience is unknown."""
    known = cited_articles(db, (i for a in answers for i in answer_article_ids(a)))
    return [a for a in answers if unreadable_articles(scope, answer_article_ids(a), known) == 0]
