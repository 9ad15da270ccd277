"""Plain data passed between the core's stages: source -> article -> chunks -> hits -> answer."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal


def content_hash(*parts: str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode("utf-8"))
        digest.update(b"\x00")
    return digest.hexdigest()


@dataclass(frozen=True)
class Article:
    """One KB article as a source delivers it. `external_id` is stable across syncs."""

    external_id: str
    title: str
    text: str  # plain text or Markdown; HTML is converted by the source
    url: str | None = None
    owner: str | None = None
    updated_at: datetime | None = None
    metadata: dict[str, object] = field(default_factory=dict)
    # Where the article sits in its source's hierarchy (Confluence ancestors, Zendesk category and
    # section): it heads the heading path of every passage, so a citation says where it lives.
    path: tuple[str, ...] = ()
    # Who may read it (retrieval/access.py): None is the source's default audience. `held_back` says why
    # the source restricts it to people kbbot cannot name (indexed, never answered; audience empty).
    audience: tuple[str, ...] | None = None
    held_back: str | None = None

    @property
    def hash(self) -> str:
        parts = [self.title, self.text, self.url or "", self.owner or "",
                 self.updated_at.isoformat() if self.updated_at else ""]
        if self.path:  # only when set, so articles without a path keep the hashes they were indexed with
            parts.append(" > ".join(self.path))
        return content_hash(*parts)


@dataclass(frozen=True)
class ChunkDraft:
    """A passage of an article, before embedding. Offsets index into `Article.text`."""

    ordinal: int
    text: str
    heading_path: tuple[str, ...]
    char_start: int
    char_end: int
    token_count: int

    def embedding_input(self, title: str) -> str:
        """What gets embedded: title and heading path give a short passage its context."""
        context = " > ".join((title, *self.heading_path))
        return f"{context}\n{self.text}"

    def hash(self, title: str) -> str:
        return content_hash(self.embedding_input(title))


@dataclass(frozen=True)
class SearchHit:
    chunk_id: int
    article_id: int
    source: str
    external_id: str
    title: str
    url: str | None
    heading_path: tuple[str, ...]
    text: str
    char_start: int
    char_end: int
    updated_at: datetime | None
    score: float  # fused score used for ranking
    similarity: float | None  # cosine similarity to the question (None when not computed)
    dense_rank: int | None = None
    lexical_rank: int | None = None


@dataclass(frozen=True)
class Citation:
    number: int  # the [n] marker in the answer text
    hit: SearchHit
    quote: str  # the cited sentence(s) from the passage


Outcome = Literal["answered", "abstained", "error"]


@dataclass(frozen=True)
class Answer:
    """Built once by a synthesizer; later stages add to it with `dataclasses.replace`."""

    question: str
    text: str  # Markdown with [n] markers; Slack rendering converts it
    citations: list[Citation]
    outcome: Outcome
    model: str  # "extractive" or the LLM model id that wrote it
    nearest: list[SearchHit] = field(default_factory=list)  # offered when abstaining
    rewritten_question: str | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)
    note: str | None = None  # e.g. "the LLM was unreachable; extractive answer"
    arm: str | None = None  # the routing arm ("tone" / "base") when a router chose the model; see routing.py
    fallback_reason: str | None = None  # why `model` is not the arm's first model (what the failed ones said)
    # The gate's confidence only just cleared its bar (retrieval/abstention.py): the text opens with UNSURE_LEAD.
    unsure: bool = False
