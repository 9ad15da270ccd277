"""From a question to a cited answer: retrieve, decide whether the passages are good enough, synthesize.

The default synthesizer is extractive (retrieval/extractive.py): it quotes the passages' own best-supported
units and cites the passage each came from; it needs no LLM and cannot invent anything. When the passages
are not good enough (the abstention gate, retrieval/abstention.py, calibrated in BENCHMARKS.md) the answer
says so plainly and lists the nearest articles instead.

An LLM synthesizer (see `retrieval.llm`) plugs in through the same `Synthesizer` protocol.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from retrieval.abstention import AbstentionGate, Evidence
from retrieval.access import ReaderScope
from retrieval.embeddings import Embedder
from retrieval.errors import EmptyQuestionError
from retrieval.neighbours import Following, PassageReader
from retrieval.search import Retriever
from retrieval.settings import DEFAULTS
from retrieval.support import Support, score_support
from retrieval.types import Answer, SearchHit

log = logging.getLogger(__name__)

ABSTAIN_TEXT = (
    "I couldn't find an answer to that in the knowledge base. These articles were the closest matches; "
    "one of them may help, or ask a human."
)
# When no article is listed: none comes near the question (AbstentionGate.near: "What is the capital of
# Peru?"), the index is empty, or the readers may see none. "These articles" would point at noise or at
# nothing.
NOTHING_NEAR_TEXT = ("The knowledge base has nothing on that: no article comes close to your question. "
                     "If it's about work, ask a human.")


# Opens an answer the gate only just let through (AbstentionGate.sure): near the bar most wrong answers
# are, so the reader is told to check it rather than trust it.
UNSURE_LEAD = "I'm not sure this answers your question; the closest the knowledge base has:\n\n"


def abstain_text(nearest: Sequence[SearchHit]) -> str:
    return ABSTAIN_TEXT if nearest else NOTHING_NEAR_TEXT


# What follows a hit in its article, as far as the answer's readers may see it (retrieval/neighbours.py).
FollowingReader = Callable[[SearchHit], Following]


@dataclass(frozen=True)
class Turn:
    """An earlier message of the conversation (a Slack thread), oldest first."""

    role: str  # "user" or "assistant"
    text: str


@dataclass(frozen=True)
class AskContext:
    history: tuple[Turn, ...] = ()
    sources: tuple[str, ...] | None = None  # restrict retrieval to these source names
    channel: str | None = None  # used by model routing
    user: str | None = None  # who asked (Slack user id): the A/B routing bucket
    # Every reader of the answer may see what it uses (retrieval/access.py); None: the operator at a
    # terminal, unfiltered. Slack always sets it.
    audience: ReaderScope | None = None
    tone: bool | None = None  # the channel profile's tone decision (retrieval/routing.py); None: the rule's
    support: Support | None = None  # set by the pipeline: how each unit of the passages supports the question
    # Set by the pipeline: what follows a hit in its article, read for this context's audience.
    following: FollowingReader | None = None


class QueryRewriter(Protocol):
    """Turns a thread follow-up ("and on Mac?") into a standalone question for retrieval."""

    def rewrite(self, question: str, history: Sequence[Turn]) -> str | None:
        """The standalone question, or None to search with the question as asked."""
        ...


class Synthesizer(Protocol):
    """Writes the answer from the question and the retrieved passages (numbered [1..k] in order)."""

    name: str

    def stream(self, question: str, passages: Sequence[SearchHit], *, context: AskContext,
               question_vector: np.ndarray | None) -> Iterator[str | Answer]:
        """Yield text deltas as they are produced, then the final Answer (always last).

        The final Answer is authoritative: its text can differ from the joined deltas when a model
        failed mid-answer and a fallback wrote it, or an uncited answer was withheld.
        """
        ...


class AnswerPipeline:
    """retrieve -> relevance gate -> synthesize. Stateless; safe to share between threads."""

    def __init__(self, searcher: Retriever, synthesizer: Synthesizer, *, top_k: int = DEFAULTS.search.top_k,
                 min_relevance: float = DEFAULTS.search.min_relevance, nearest_articles: int = 3,
                 rewriter: QueryRewriter | None = None, candidates: int = 8,
                 gate: AbstentionGate | None = None, unit_embedder: Embedder | None = None,
                 passage_reader: PassageReader | None = None,
                 density: Callable[[], float | None] | None = None) -> None:
        self.searcher = searcher
        # Embeds the passages' sentences for the gate and the answer (Services gives a cached one: the
        # same passages come back for every question on a topic); the searcher's own model by default.
        self.unit_embedder = unit_embedder or searcher.embedder
        self.synthesizer = synthesizer
        self.top_k = top_k
        self.min_relevance = min_relevance
        self.nearest_articles = nearest_articles
        self.rewriter = rewriter
        self.candidates = candidates
        self.gate = gate or AbstentionGate()
        # The index's neighbour density, which raises the gate's bar in a crowded index
        # (retrieval/neighbour_density.py); None keeps the base bar.
        self.density = density
        # Reads what follows a lead-in that ends its chunk (None: the answer keeps to the hits).
        self.passage_reader = passage_reader

    def following_for(self, context: AskContext) -> FollowingReader | None:
        """What follows a passage, for one answer: read under the same audience as its search."""
        reader = self.passage_reader
        if reader is None:
            return None
        return lambda hit: reader.following(hit, context.audience)

    def with_synthesizer(self, synthesizer: Synthesizer) -> AnswerPipeline:
        """The same retrieval and gate with another answerer (evaluations compare answerers this way)."""
        return AnswerPipeline(self.searcher, synthesizer, top_k=self.top_k, min_relevance=self.min_relevance,
                              nearest_articles=self.nearest_articles, rewriter=self.rewriter,
                              candidates=self.candidates, gate=self.gate, unit_embedder=self.unit_embedder,
                              passage_reader=self.passage_reader, density=self.density)

    def answer(self, question: str, context: AskContext | None = None) -> Answer:
        final: Answer | None = None
        for event in self.stream(question, context):
            if isinstance(event, Answer):
                final = event
        assert final is not None
        return final

    def stream(self, question: str, context: AskContext | None = None) -> Iterator[str | Answer]:
        """Text deltas while the answer is written, then the final Answer.

        Abstentions yield the Answer only (there is nothing to stream).
        """
        context = context or AskContext()
        question = question.strip()
        if not question:
            raise EmptyQuestionError()
        started = time.perf_counter()
        rewritten = self._rewrite(question, context)
        rewrite_ms = (time.perf_counter() - started) * 1000
        # More candidates than the answerer is given: the passage holding the answer (a table, the steps)
        # often ranks just below the top few, and passages below the bar are dropped anyway.
        result = self.searcher.search(rewritten or question, k=max(self.top_k, self.candidates),
                                      sources=context.sources,
                                      audience=context.audience)
        timings = {"embed_question": result.timings_ms.get("embed", 0.0),
                   "retrieve": result.timings_ms.get("search", 0.0)}
        if rewritten:
            timings["rewrite"] = rewrite_ms
        hits = result.hits
        asked = rewritten or question
        embedder, qvec = self.unit_embedder, result.query_vector
        if qvec is None:
            # A re-embed with another model is building: the searched space is still the old model's.
            # The question and its passages' sentences are compared in that space, the one the gate's
            # thresholds were calibrated in, not with the configured model's vectors.
            embedder = self.searcher.query_embedder(result.space) if result.space else embedder
            qvec = embedder.embed_query(asked)
        support = score_support(asked, qvec, hits, embedder)
        evidence = Evidence.of(hits, support, self.density() if self.density else None)
        timings["support"] = (time.perf_counter() - started) * 1000 - sum(timings.values())
        if not self.gate.answers(evidence):
            log.debug("abstaining: confidence %.3f < %.3f (%s)", self.gate.confidence(evidence),
                      self.gate.bar(evidence.density), evidence.as_dict())
            nearest = self._near_articles(hits, evidence.density)
            answer = Answer(question, abstain_text(nearest), [], "abstained", "none", nearest=nearest,
                            rewritten_question=rewritten,
                            timings_ms={**timings, "total": (time.perf_counter() - started) * 1000})
            yield answer
            return
        unsure = not self.gate.sure(evidence)
        if unsure:
            yield UNSURE_LEAD
        synth_started = time.perf_counter()
        # Never give the answerer (so never cite) a passage below the relevance bar. The extractive
        # answerer reads all candidates (it quotes only the best units); a model gets top_k.
        relevant = support.relevant(hits, self.min_relevance)
        relevant = relevant[: getattr(self.synthesizer, "passages", self.top_k)]
        context = dataclasses.replace(context, support=support.within(relevant),
                                      following=self.following_for(context))
        final: Answer | None = None
        for event in self.synthesizer.stream(question, relevant, context=context,
                                             question_vector=result.query_vector):
            if isinstance(event, Answer):
                final = event
            else:
                yield event
        assert final is not None, "a synthesizer must end with an Answer"
        if final.outcome == "abstained":
            nearest = final.nearest or _distinct_articles(hits, self.nearest_articles)
            final = dataclasses.replace(final, text=final.text or abstain_text(nearest), nearest=nearest)
        elif unsure and final.outcome == "answered":
            final = dataclasses.replace(final, text=UNSURE_LEAD + final.text, unsure=True)
        yield dataclasses.replace(
            final, rewritten_question=final.rewritten_question or rewritten,
            timings_ms={**timings, **final.timings_ms,
                        "synthesize": (time.perf_counter() - synth_started) * 1000,
                        "total": (time.perf_counter() - started) * 1000})

    def _near_articles(self, hits: Sequence[SearchHit], density: float | None) -> list[SearchHit]:
        """The nearest distinct articles a refusal offers, or none when not one of them is near."""
        nearest = _distinct_articles(hits, self.nearest_articles)
        listed = {h.article_id for h in nearest}
        best = max((h.similarity or 0.0 for h in hits if h.article_id in listed), default=0.0)
        return nearest if self.gate.near(best, density) else []

    def _rewrite(self, question: str, context: AskContext) -> str | None:
        """The standalone form of a thread follow-up; None for a first message or an unchanged one."""
        if self.rewriter is None or not context.history:
            return None
        rewritten = (self.rewriter.rewrite(question, context.history) or "").strip()
        if not rewritten or rewritten.casefold() == question.casefold():
            return None
        log.debug("follow-up rewritten for search: %r -> %r", question, rewritten)
        return rewritten


def _distinct_articles(hits: Sequence[SearchHit], limit: int) -> list[SearchHit]:
    seen: set[int] = set()
    out = []
    for hit in hits:
        if hit.article_id not in seen:
            seen.add(hit.article_id)
            out.append(hit)
        if len(out) >= limit:
            break
    return out
