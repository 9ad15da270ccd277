"""Articles to review: the indexed articles whose answers people say are wrong or out of date, and the old
ones that are still cited often.

An article is listed when an answer citing it got a 👎 of kind `wrong` or `outdated` (retrieval/
feedback_kinds.py), or when it is older than KBBOT_STALE_AFTER_DAYS and was cited at least
`min_citations` times in the window. The rank is citations x down-vote rate, where the rate is 👎 / (👍 + 👎)
over the rated answers citing it: an article cited a hundred times that half its raters dislike comes before
one cited ten times with two 👎. Old articles nobody rated follow, most cited first.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from retrieval.db import Database, translate_errors
from retrieval.feedback_kinds import ARTICLE_KINDS, classify_reason
from retrieval.gaps import ArticleFilter

STALE_MIN_CITATIONS = 3


@dataclass
class ArticleToReview:
    article_id: int
    title: str
    url: str | None
    source: str
    updated_at: datetime | None
    citations: int  # answers citing it in the window
    up: int
    down: int
    kinds: Counter[str] = field(default_factory=Counter)  # 👎 kinds: wrong, outdated, incomplete...
    reasons: list[str] = field(default_factory=list)
    stale: bool = False

    @property
    def down_rate(self) -> float:
        rated = self.up + self.down
        return self.down / rated if rated else 0.0

    @property
    def score(self) -> float:
        return self.citations * self.down_rate

    @property
    def why(self) -> list[str]:
        """Short, human reasons it is listed."""
        out = [f"{self.kinds[k]} × {k}" for k in ARTICLE_KINDS if self.kinds.get(k)]
        if self.stale and self.updated_at is not None:
            out.append(f"last updated {self.updated_at:%Y-%m-%d}")
        return out


def articles_to_review(db: Database, *, since: datetime, stale_after_days: int,
                       min_citations: int = STALE_MIN_CITATIONS, visible: ArticleFilter | None = None,
                       limit: int = 20, now: datetime | None = None) -> list[ArticleToReview]:
    now = now or datetime.now(UTC)
    stale_before = now - timedelta(days=stale_after_days)
    with translate_errors("Reading the articles to review"), db.engine.connect() as conn:
        rows = conn.execute(text(
            "WITH cited AS (SELECT DISTINCT c.article_id, c.answer_id FROM answer_citations c "
            " JOIN answers a ON a.id = c.answer_id WHERE a.created_at >= :since AND c.article_id IS NOT NULL), "
            "votes AS (SELECT answer_id, count(*) FILTER (WHERE value = 'up') AS up, "
            " count(*) FILTER (WHERE value = 'down') AS down FROM feedback "
            " WHERE answer_id IN (SELECT answer_id FROM cited) GROUP BY answer_id) "
            "SELECT ar.id, ar.title, ar.url, s.name AS source, ar.source_updated_at, count(*) AS citations, "
            "coalesce(sum(v.up), 0)::int AS up, coalesce(sum(v.down), 0)::int AS down "
            "FROM cited JOIN articles ar ON ar.id = cited.article_id JOIN sources s ON s.id = ar.source_id "
            "LEFT JOIN votes v ON v.answer_id = cited.answer_id GROUP BY ar.id, s.name"
        ), {"since": since}).all()
        reasons = conn.execute(text(
            "SELECT DISTINCT c.article_id, f.answer_id, f.user_id, f.category, f.reason FROM feedback f "
            "JOIN answer_citations c ON c.answer_id = f.answer_id JOIN answers a ON a.id = f.answer_id "
            "WHERE f.value = 'down' AND a.created_at >= :since AND c.article_id IS NOT NULL"
        ), {"since": since}).all()
    found = {r.id: ArticleToReview(r.id, r.title, r.url, r.source, r.source_updated_at, r.citations, r.up, r.down)
             for r in rows}
    for r in reasons:
        article = found.get(r.article_id)
        if article is None:
            continue
        kind = r.category or classify_reason(r.reason)
        if kind:
            article.kinds[kind] += 1
        if r.reason:
            article.reasons.append(r.reason)
    for a in found.values():
        a.stale = a.updated_at is not None and a.updated_at < stale_before
    listed = [a for a in found.values()
              if any(a.kinds.get(k) for k in ARTICLE_KINDS) or (a.stale and a.citations >= min_citations)]
    if visible is not None:
        allowed = visible({a.article_id for a in listed})
        listed = [a for a in listed if a.article_id in allowed]
    listed.sort(key=lambda a: (-a.score, -a.citations, a.title))
    return listed[:limit]
