"""Knowledge gaps: the questions the bot could not answer well, grouped by meaning, ranked for a KB owner.

A question is a gap when the bot abstained, answered only unsure (retrieval/abstention.py's unsure band:
mostly near-miss questions such as a company car next to the corporate card), someone gave its answer a
👎, or the asker pressed "Ask a human". Gap questions are embedded (once per embedding model:
`question_vectors` caches them) and grouped by agglomerative clustering on cosine distance (SciPy's
hierarchical clustering, average linkage, a threshold measured on demo_eval/gaps_questions.jsonl; see
BENCHMARKS.md). Each group is ranked by how many people asked and how recently: every person counts 1,
halved for each `HALF_LIFE_DAYS` since they last asked.

The report reads nothing of Slack: who may see what is passed in (`Viewer`), and the edges (CLI, App Home,
digest) render it.
"""

from __future__ import annotations

import logging
import re
import time
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import text

from retrieval.access import ReaderScope
from retrieval.db import Database, translate_errors
from retrieval.embeddings import Embedder
from retrieval.feedback_kinds import classify_reason
from retrieval.types import SearchHit

log = logging.getLogger(__name__)

# Average-linkage cosine distance below which two groups of questions are one gap. Measured on the labelled
# set (bench/gaps_clustering.py): the adjusted Rand index peaks at 0.60-0.65 (0.53), but purity falls from
# 0.87 at 0.55 to 0.75: a group mixing two topics costs a reviewer more than one topic split in two.
DISTANCE_THRESHOLD = 0.55
HALF_LIFE_DAYS = 14.0
# The most recent gap questions a report clusters: pairwise distances grow with the square, and a KB owner
# acts on the recent ones first. The report says when older ones were left out.
MAX_QUESTIONS = 4000
EMBED_BATCH = 256

# The article ids a viewer may read, out of those given; None stands for "may read everything".
ArticleFilter = Callable[[Collection[int]], set[int]]
# Nearest indexed articles for a group: (representative question, its centroid vector, reader scope) -> hits.
NearestLookup = Callable[[str, np.ndarray, "ReaderScope | None"], Sequence[SearchHit]]


@dataclass(frozen=True)
class Viewer:
    """Who the report is for. Askers are named only to admins; `visible` narrows articles (None: all), and
    `scope` (retrieval/access.py) the nearest-article searches; `for_scope` sets both from one scope."""

    is_admin: bool = False
    visible: ArticleFilter | None = None
    scope: ReaderScope | None = None

    @staticmethod
    def for_scope(db: Database, scope: ReaderScope | None, *, is_admin: bool = False) -> Viewer:
        return Viewer(is_admin=is_admin, visible=None if scope is None else scope_filter(db, scope), scope=scope)


def scope_filter(db: Database, scope: ReaderScope) -> ArticleFilter:
    """The article ids, of those asked about, whose audience `scope` may read (held-back ones: none)."""
    def visible(ids: Collection[int]) -> set[int]:
        if not ids:
            return set()
        with translate_errors("Reading the articles' audiences"), db.engine.connect() as conn:
            return set(conn.execute(text(
                "SELECT id FROM articles WHERE id = ANY(:ids) AND audience && CAST(:tokens AS text[])"
            ), {"ids": sorted(ids), "tokens": scope.sql_tokens}).scalars())

    return visible


@dataclass(frozen=True)
class ArticleRef:
    article_id: int | None
    title: str
    url: str | None
    count: int = 1  # how many of the group's answers cited it (nearest: 0)
    similarity: float | None = None


@dataclass(frozen=True)
class DownVote:
    user_id: str
    category: str | None  # wrong, outdated, incomplete, off_topic, other; None when no reason was given
    reason: str | None


@dataclass
class GapQuestion:
    answer_id: int
    created_at: datetime
    question: str  # as searched: a thread follow-up's standalone rewrite when there is one
    asker: str | None
    outcome: str
    answer_text: str | None
    escalated: bool
    citations: list[ArticleRef] = field(default_factory=list)
    down_votes: list[DownVote] = field(default_factory=list)

    @property
    def reasons(self) -> list[str]:
        return [v.reason for v in self.down_votes if v.reason]


@dataclass
class GapGroup:
    representative: str  # the question nearest the group's centroid
    questions: list[GapQuestion]
    score: float
    people: int
    last_asked: datetime
    cited: list[ArticleRef]
    nearest: list[ArticleRef] = field(default_factory=list)
    centroid: np.ndarray | None = field(default=None, repr=False)

    @property
    def asked(self) -> int:
        return len(self.questions)

    @property
    def abstained(self) -> int:
        return sum(1 for q in self.questions if q.outcome == "abstained")

    @property
    def down_voted(self) -> int:
        return sum(1 for q in self.questions if q.down_votes)

    @property
    def escalated(self) -> int:
        return sum(1 for q in self.questions if q.escalated)

    @property
    def reasons(self) -> list[str]:
        return [r for q in self.questions for r in q.reasons]

    @property
    def askers(self) -> list[str]:
        return sorted({q.asker for q in self.questions if q.asker})

    @property
    def answer_sample(self) -> str | None:
        """The most common answer the bot gave in this group (None when it only abstained)."""
        answers = Counter(q.answer_text for q in self.questions if q.outcome == "answered" and q.answer_text)
        return answers.most_common(1)[0][0] if answers else None


@dataclass
class GapsReport:
    since: datetime
    generated_at: datetime
    gap_questions: int  # how many questions were gaps in the window (before `MAX_QUESTIONS`)
    groups: list[GapGroup]
    hidden_groups: int = 0  # groups left out because they cite articles the viewer may not read
    embedded: int = 0  # question vectors computed by this report (the rest came from the cache)
    hidden_questions: int = 0  # the questions of those groups
    timings_ms: dict[str, float] = field(default_factory=dict)

    @property
    def clustered(self) -> int:
        return sum(g.asked for g in self.groups) + self.hidden_questions

    @property
    def truncated(self) -> bool:
        """True when older gap questions were left out (`MAX_QUESTIONS`)."""
        return self.gap_questions > self.clustered


_GAP_CONDITION = (
    "(a.outcome = 'abstained' OR a.metadata ? 'unsure' OR a.metadata ? 'escalated_by' OR EXISTS "
    "(SELECT 1 FROM feedback f WHERE f.answer_id = a.id AND f.value = 'down'))"
)


def model_key(embedder: Embedder) -> str:
    return f"{embedder.provider}/{embedder.model}"


class GapFinder:
    """Reads gap questions from the answer log, keeps their vectors cached, and groups them."""

    def __init__(self, db: Database, embedder: Embedder, *, threshold: float = DISTANCE_THRESHOLD,
                 max_questions: int = MAX_QUESTIONS) -> None:
        self.db = db
        self.embedder = embedder
        self.threshold = threshold
        self.max_questions = max_questions

    def report(self, *, since: datetime, viewer: Viewer | None = None, limit: int | None = 50,
               nearest: NearestLookup | None = None, now: datetime | None = None) -> GapsReport:
        """Groups of gap questions asked since `since`, best first; `limit` groups get nearest articles."""
        viewer = viewer or Viewer()
        now = now or datetime.now(UTC)
        timings: dict[str, float] = {}
        started = time.perf_counter()
        total, questions, vectors = self._load(since)
        timings["load"] = _ms(started)
        embedded = 0
        missing = [i for i, v in enumerate(vectors) if v is None]
        if missing:
            step = time.perf_counter()
            fresh = self._embed_and_store([questions[i] for i in missing])
            for i, vector in zip(missing, fresh, strict=True):
                vectors[i] = vector
            embedded = len(missing)
            timings["embed"] = _ms(step)
        step = time.perf_counter()
        groups = group_questions(questions, vectors, threshold=self.threshold, now=now)  # type: ignore[arg-type]
        timings["cluster"] = _ms(step)
        hidden = hidden_questions = 0
        if viewer.visible is not None:
            shown = []
            for g in groups:
                if _readable(g.cited, viewer.visible):
                    shown.append(g)
                else:
                    hidden += 1
                    hidden_questions += g.asked
            groups = shown
        step = time.perf_counter()
        for g in groups[:limit] if limit is not None else groups:
            if nearest is not None and g.centroid is not None:
                refs = _distinct_articles(nearest(g.representative, g.centroid, viewer.scope))
                if viewer.visible is not None:
                    allowed = viewer.visible({r.article_id for r in refs if r.article_id is not None})
                    refs = [r for r in refs if r.article_id in allowed]
                g.nearest = refs
        timings["nearest"] = _ms(step)
        timings["total"] = _ms(started)
        return GapsReport(since=since, generated_at=now, gap_questions=total, groups=groups, hidden_groups=hidden,
                          hidden_questions=hidden_questions, embedded=embedded, timings_ms=timings)

    def embed_missing(self, *, since: datetime) -> int:
        """Embed the gap questions that have no vector for the current model yet (the worker keeps the
        cache warm so that a report never waits on the embedder); returns how many were embedded."""
        _, questions, vectors = self._load(since)
        todo = [q for q, v in zip(questions, vectors, strict=True) if v is None]
        if todo:
            self._embed_and_store(todo)
        return len(todo)

    # --- the answer log ---------------------------------------------------------------------------
    def _load(self, since: datetime) -> tuple[int, list[GapQuestion], list[np.ndarray | None]]:
        with translate_errors("Reading the knowledge gaps"), self.db.engine.connect() as conn:
            total = conn.execute(text(
                f"SELECT count(*) FROM answers a WHERE a.created_at >= :since AND {_GAP_CONDITION}"
            ), {"since": since}).scalar_one()
            rows = conn.execute(text(
                "SELECT a.id, a.created_at, a.asker, a.question, a.rewritten_question, a.outcome, a.answer_text, "
                "a.metadata ? 'escalated_by' AS escalated, vector_send(v.embedding) AS embedding "
                "FROM answers a LEFT JOIN question_vectors v ON v.answer_id = a.id AND v.model = :model "
                f"WHERE a.created_at >= :since AND {_GAP_CONDITION} ORDER BY a.created_at DESC, a.id DESC LIMIT :n"
            ), {"since": since, "model": model_key(self.embedder), "n": self.max_questions}).all()
            questions = [GapQuestion(
                answer_id=r.id, created_at=r.created_at, question=r.rewritten_question or r.question,
                asker=r.asker, outcome=r.outcome, answer_text=r.answer_text, escalated=bool(r.escalated),
            ) for r in rows]
            vectors: list[np.ndarray | None] = [
                None if r.embedding is None else _as_array(r.embedding) for r in rows]
            by_id = {q.answer_id: q for q in questions}
            ids = list(by_id)
            if ids:
                for c in conn.execute(text(
                    "SELECT answer_id, article_id, title, url FROM answer_citations WHERE answer_id = ANY(:ids) "
                    "ORDER BY answer_id, number"), {"ids": ids}):
                    by_id[c.answer_id].citations.append(ArticleRef(c.article_id, c.title, c.url))
                for f in conn.execute(text(
                    "SELECT answer_id, user_id, category, reason FROM feedback WHERE value = 'down' "
                    "AND answer_id = ANY(:ids) ORDER BY updated_at"), {"ids": ids}):
                    category = f.category or classify_reason(f.reason)
                    by_id[f.answer_id].down_votes.append(DownVote(f.user_id, category, f.reason))
        return int(total), questions, vectors

    def _embed_and_store(self, questions: Sequence[GapQuestion]) -> list[np.ndarray]:
        out: list[np.ndarray] = []
        key = model_key(self.embedder)
        for start in range(0, len(questions), EMBED_BATCH):
            batch = questions[start:start + EMBED_BATCH]
            vectors = np.asarray(self.embedder.embed_documents([q.question for q in batch]), dtype=np.float32)
            with translate_errors("Saving question vectors"), self.db.engine.begin() as conn:
                conn.execute(text(
                    "INSERT INTO question_vectors (answer_id, model, embedding) VALUES (:id, :model, :v) "
                    "ON CONFLICT (answer_id) DO UPDATE SET model = EXCLUDED.model, embedding = EXCLUDED.embedding"
                ), [{"id": q.answer_id, "model": key, "v": v} for q, v in zip(batch, vectors, strict=True)])
            out.extend(vectors)
        log.debug("embedded %d gap questions for the gaps report", len(out))
        return out


# --- grouping (pure) ------------------------------------------------------------------------------

def normalized(question: str) -> str:
    """Questions that differ only in case, spacing and punctuation are the same question."""
    return re.sub(r"[^\w]+", " ", question.casefold()).strip()


def cluster_labels(vectors: np.ndarray, threshold: float = DISTANCE_THRESHOLD) -> np.ndarray:
    """A group label per row of `vectors`: agglomerative clustering, average linkage, cosine distance, cut
    where groups are further apart than `threshold`.

    SciPy's hierarchical clustering, called directly: scikit-learn's AgglomerativeClustering runs this same
    linkage underneath (identical labels, checked in tests) but copies the distance matrix twice more, which
    was a third of the report's time at 3,500 questions."""
    n = len(vectors)
    if n < 2:
        return np.zeros(n, dtype=int)
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    unit = np.asarray(vectors, dtype=np.float32)
    unit = unit / np.maximum(np.linalg.norm(unit, axis=1, keepdims=True), 1e-12)
    similarity = unit @ unit.T  # one BLAS product: the distances are the cost at scale
    np.fill_diagonal(similarity, 1.0)
    condensed = squareform(1.0 - similarity, checks=False).astype(np.float64)
    np.clip(condensed, 0.0, 2.0, out=condensed)
    return fcluster(linkage(condensed, method="average"), threshold, criterion="distance") - 1


def group_questions(questions: Sequence[GapQuestion], vectors: Sequence[np.ndarray], *,
                    threshold: float = DISTANCE_THRESHOLD, now: datetime | None = None) -> list[GapGroup]:
    """Group questions by meaning and rank the groups (best first)."""
    if not questions:
        return []
    now = now or datetime.now(UTC)
    # Repeats of one question are one point: they weigh in the ranking, not in the distance matrix.
    first_of: dict[str, int] = {}
    point_of = []
    for q in questions:
        point_of.append(first_of.setdefault(normalized(q.question), len(first_of)))
    distinct = np.zeros(len(first_of), dtype=int)
    for i, p in enumerate(point_of):
        distinct[p] = i
    matrix = np.stack([np.asarray(vectors[i], dtype=np.float32) for i in distinct])
    labels = cluster_labels(matrix, threshold)
    members: dict[int, list[int]] = {}
    for i, p in enumerate(point_of):
        members.setdefault(int(labels[p]), []).append(i)
    unit = matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)
    groups = []
    for indices in members.values():
        qs = [questions[i] for i in indices]
        points = sorted({point_of[i] for i in indices})
        centroid = unit[points].mean(axis=0)
        medoid = points[int(np.argmax(unit[points] @ centroid))]
        groups.append(GapGroup(
            representative=questions[distinct[medoid]].question, questions=qs, score=_score(qs, now),
            people=_people(qs), last_asked=max(q.created_at for q in qs), cited=_cited(qs),
            centroid=centroid / max(float(np.linalg.norm(centroid)), 1e-12),
        ))
    groups.sort(key=lambda g: (-g.score, -g.asked, -g.last_asked.timestamp()))
    return groups


def _people(questions: Sequence[GapQuestion]) -> int:
    """Distinct askers; a question with no known asker (the CLI) counts as one person."""
    return len({q.asker for q in questions if q.asker}) + sum(1 for q in questions if not q.asker)


def _score(questions: Sequence[GapQuestion], now: datetime) -> float:
    latest: dict[str, datetime] = {}
    anonymous = []
    for q in questions:
        if q.asker:
            latest[q.asker] = max(latest.get(q.asker, q.created_at), q.created_at)
        else:
            anonymous.append(q.created_at)
    return sum(0.5 ** (max(0.0, (now - t).total_seconds()) / 86400 / HALF_LIFE_DAYS)
               for t in [*latest.values(), *anonymous])


def _cited(questions: Sequence[GapQuestion]) -> list[ArticleRef]:
    counts: Counter[tuple[int | None, str, str | None]] = Counter()
    for q in questions:
        for c in {(c.article_id, c.title, c.url) for c in q.citations}:
            counts[c] += 1
    return [ArticleRef(a, t, u, n) for (a, t, u), n in counts.most_common()]


def _distinct_articles(hits: Sequence[SearchHit], limit: int = 3) -> list[ArticleRef]:
    seen: dict[int, ArticleRef] = {}
    for h in hits:
        if h.article_id not in seen:
            seen[h.article_id] = ArticleRef(h.article_id, h.title, h.url, 0, h.similarity)
        if len(seen) == limit:
            break
    return list(seen.values())


def _readable(refs: Sequence[ArticleRef], visible: ArticleFilter) -> bool:
    """Fail closed: a group is shown only when the viewer may read every article it names; a citation of a
    deleted article (no id left to check) hides it too."""
    if any(r.article_id is None for r in refs):
        return False
    ids = {r.article_id for r in refs if r.article_id is not None}
    return not ids or ids <= visible(ids)


def _as_array(value: bytes) -> np.ndarray:
    """pgvector's binary form (`vector_send`): int16 dimension, int16 unused, then big-endian float4s. Read
    as one buffer: parsing the text form of thousands of vectors took seconds."""
    return np.frombuffer(value, dtype=">f4", offset=4).astype(np.float32)


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def nearest_from_searcher(searcher: Any, k: int = 10) -> NearestLookup:
    """Nearest articles through the answer path's own search (so it filters what the answers filter): the
    group's centroid when it was embedded by the index's model, else the representative question."""
    def lookup(question: str, centroid: np.ndarray, scope: ReaderScope | None) -> Sequence[SearchHit]:
        space = searcher.space()
        if (space.provider, space.model) == (searcher.embedder.provider, searcher.embedder.model):
            return searcher.search_vector(question, centroid, k=k, space=space, audience=scope).hits
        return searcher.search(question, k=k, audience=scope).hits

    return lookup
