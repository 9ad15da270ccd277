"""From a question to a cited answer: retrieve, decide whether the passages are good enough, synthesize.

The default synthesizer is extractive: it picks the sentences of the retrieved passages that are closest
to the question (cosine similarity of sentence embeddings, with a small preference for higher-ranked
passages) and cites the passage each came from. It needs no LLM and cannot invent anything. When the
best passage is not relevant enough (`min_relevance`, calibrated in BENCHMARKS.md) the answer says so
plainly and lists the nearest articles instead.

An LLM synthesizer (see `retrieval.llm`) plugs in through the same `Synthesizer` protocol.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from retrieval.access import ReaderScope
from retrieval.chunking import split_sentences
from retrieval.embeddings import Embedder
from retrieval.errors import EmptyQuestionError
from retrieval.search import Retriever
from retrieval.settings import DEFAULTS
from retrieval.types import Answer, Citation, SearchHit

log = logging.getLogger(__name__)

ABSTAIN_TEXT = (
    "I couldn't find an answer to that in the knowledge base. These articles were the closest matches; "
    "one of them may help, or ask a human."
)


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


class ExtractiveSynthesizer:
    """Best supporting sentences of the passages, each followed by its [n] marker."""

    name = "extractive"

    def __init__(self, embedder: Embedder, *, max_sentences: int = 3, per_passage: int = 2,
                 passages: int = 4, min_sentence_similarity: float = 0.25) -> None:
        self.embedder = embedder
        self.max_sentences = max_sentences
        self.per_passage = per_passage
        self.passages = passages
        self.min_sentence_similarity = min_sentence_similarity

    def stream(self, question: str, passages: Sequence[SearchHit], *, context: AskContext,
               question_vector: np.ndarray | None) -> Iterator[str | Answer]:
        answer = self.compose(question, passages, question_vector)
        yield answer.text
        yield answer

    def compose(self, question: str, passages: Sequence[SearchHit],
                question_vector: np.ndarray | None) -> Answer:
        candidates: list[tuple[int, int, str]] = []  # (passage index, position, sentence)
        for p_index, hit in enumerate(passages[: self.passages]):
            for position, sentence in enumerate(_sentences(hit.text)):
                candidates.append((p_index, position, sentence))
        if not candidates:
            return Answer(question, "", [], "abstained", self.name, nearest=list(passages))
        qvec = question_vector if question_vector is not None else self.embedder.embed_query(question)
        vectors = self.embedder.embed_documents([s for _, _, s in candidates])
        similarity = vectors @ np.asarray(qvec, dtype=np.float32)
        # A gentle prior for better-ranked passages: retrieval already weighed title and headings.
        scores = similarity - 0.02 * np.array([p for p, _, _ in candidates], dtype=np.float32)
        chosen: list[int] = []
        per_passage: dict[int, int] = {}
        for i in np.argsort(-scores):
            p_index, _, sentence = candidates[i]
            if len(chosen) >= self.max_sentences:
                break
            if chosen and similarity[i] < self.min_sentence_similarity:
                break
            if per_passage.get(p_index, 0) >= self.per_passage:
                continue
            if any(_near_duplicate(sentence, candidates[j][2]) for j in chosen):
                continue
            chosen.append(int(i))
            per_passage[p_index] = per_passage.get(p_index, 0) + 1
        # Read in document order: by passage rank, then position inside the passage.
        chosen.sort(key=lambda i: (candidates[i][0], candidates[i][1]))
        numbers: dict[int, int] = {}
        quotes: dict[int, list[str]] = {}
        parts = []
        for i in chosen:
            p_index, _, sentence = candidates[i]
            number = numbers.setdefault(p_index, len(numbers) + 1)
            quotes.setdefault(p_index, []).append(sentence)
            parts.append(f"{_as_statement(sentence)} [{number}]")
        citations = [
            Citation(number, passages[p_index], " … ".join(quotes[p_index]))
            for p_index, number in sorted(numbers.items(), key=lambda item: item[1])
        ]
        return Answer(question, " ".join(parts), citations, "answered", self.name)


class AnswerPipeline:
    """retrieve -> relevance gate -> synthesize. Stateless; safe to share between threads."""

    def __init__(self, searcher: Retriever, synthesizer: Synthesizer, *, top_k: int = DEFAULTS.search.top_k,
                 min_relevance: float = DEFAULTS.search.min_relevance, nearest_articles: int = 3,
                 rewriter: QueryRewriter | None = None) -> None:
        self.searcher = searcher
        self.synthesizer = synthesizer
        self.top_k = top_k
        self.min_relevance = min_relevance
        self.nearest_articles = nearest_articles
        self.rewriter = rewriter

    def with_synthesizer(self, synthesizer: Synthesizer) -> AnswerPipeline:
        """The same retrieval and gate with another answerer (evaluations compare answerers this way)."""
        return AnswerPipeline(self.searcher, synthesizer, top_k=self.top_k, min_relevance=self.min_relevance,
                              nearest_articles=self.nearest_articles, rewriter=self.rewriter)

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
        result = self.searcher.search(rewritten or question, k=self.top_k, sources=context.sources,
                                      audience=context.audience)
        timings = {"embed_question": result.timings_ms.get("embed", 0.0),
                   "retrieve": result.timings_ms.get("search", 0.0)}
        if rewritten:
            timings["rewrite"] = rewrite_ms
        hits = result.hits
        best = max((h.similarity or 0.0 for h in hits), default=0.0)
        if best < self.min_relevance:
            log.debug("abstaining: best similarity %.3f < %.3f", best, self.min_relevance)
            yield Answer(question, ABSTAIN_TEXT, [], "abstained", "none",
                         nearest=_distinct_articles(hits, self.nearest_articles), rewritten_question=rewritten,
                         timings_ms={**timings, "total": (time.perf_counter() - started) * 1000})
            return
        synth_started = time.perf_counter()
        final: Answer | None = None
        for event in self.synthesizer.stream(question, hits, context=context,
                                             question_vector=result.query_vector):
            if isinstance(event, Answer):
                final = event
            else:
                yield event
        assert final is not None, "a synthesizer must end with an Answer"
        if final.outcome == "abstained":
            final = dataclasses.replace(
                final, text=final.text or ABSTAIN_TEXT,
                nearest=final.nearest or _distinct_articles(hits, self.nearest_articles))
        yield dataclasses.replace(
            final, rewritten_question=final.rewritten_question or rewritten,
            timings_ms={**timings, **final.timings_ms,
                        "synthesize": (time.perf_counter() - synth_started) * 1000,
                        "total": (time.perf_counter() - started) * 1000})

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


_LIST_MARKER = re.compile(r"^\s*(?:[-*+]|\d{1,3}[.)])\s+")
_WORDS = re.compile(r"\w+")


def _sentences(text: str) -> list[str]:
    out = []
    for start, end in split_sentences(text):
        sentence = _LIST_MARKER.sub("", text[start:end]).strip()
        if len(_WORDS.findall(sentence)) >= 5:  # headings and fragments make poor answers
            out.append(sentence)
    return out


def _near_duplicate(a: str, b: str) -> bool:
    wa, wb = set(_WORDS.findall(a.lower())), set(_WORDS.findall(b.lower()))
    return bool(wa and wb) and len(wa & wb) / min(len(wa), len(wb)) > 0.8


def _as_statement(sentence: str) -> str:
    sentence = sentence.rstrip()
    return sentence if sentence.endswith((".", "!", "?", ":", "`", ")")) else sentence + "."
