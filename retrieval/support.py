"""How well each unit (sentence, list item, table row) of the retrieved passages supports the question.

Two signals per unit: the cosine similarity of its embedding (with the passage's closest heading, which
often carries the topic: "Enrolling", "2026 rates by city") to the question's, and the share of the
question's distinctive words it contains, each word weighted by how rare it is among the candidate units.
The second finds the table row holding "Toronto" that a sentence embedding alone ranks low; a question
word found in no passage at all ("stock", "price") weighs most, which is what makes the support of an
off-topic question low however similar its vocabulary sounds.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from retrieval.answer_units import Unit, passage_units
from retrieval.embeddings import Embedder
from retrieval.terms import stems
from retrieval.types import SearchHit
from retrieval.unit_vectors import PassageUnits, UnitEmbedder, embedding_text

OVERLAP_WEIGHT = 0.15
HEADING_WEIGHT = 0.1
RANK_PENALTY = 0.01
STEP_BONUS = 0.08
VALUE_BONUS = 0.03

_PROCEDURE = re.compile(r"^\s*(how (do|can|should|would) (i|we|you)|how to|what are the steps|steps? to|"
                        r"where do i (go|start))\b", re.IGNORECASE)
_VALUE = re.compile(r"^\s*(how (much|many|long|often|soon|big)|what(?:'s| is| are) the|when|which)\b|"
                    r"\b(rate|limit|maximum|minimum|allowance|budget|deadline|cost|price|fee)s?\b", re.IGNORECASE)
_DIGIT = re.compile(r"\d")


@dataclass(frozen=True)
class ScoredUnit:
    hit: SearchHit  # the passage the unit comes from
    rank: int  # the passage's rank among the candidates (0 = first)
    unit: Unit
    similarity: float
    overlap: float  # weighted share of the question's words found in the unit
    score: float


@dataclass(frozen=True)
class Support:
    units: list[ScoredUnit]
    coverage: float  # weighted share of the question's words found anywhere in the passages

    @property
    def best(self) -> ScoredUnit | None:
        return max((u for u in self.units if not u.unit.fragment), key=lambda u: u.score, default=None)

    def relevant(self, hits: Sequence[SearchHit], bar: float) -> list[SearchHit]:
        """Passages at or above the bar by their own similarity or by their best unit's (a table's rows
        are each clearer than the table as a whole), in rank order."""
        best_unit: dict[int, float] = {}
        for u in self.units:
            if not u.unit.fragment:
                best_unit[u.hit.chunk_id] = max(best_unit.get(u.hit.chunk_id, 0.0), u.similarity)
        return [h for h in hits if max(h.similarity or 0.0, best_unit.get(h.chunk_id, 0.0)) >= bar]

    def within(self, hits: Sequence[SearchHit]) -> Support:
        ids = {h.chunk_id for h in hits}
        return Support([u for u in self.units if u.hit.chunk_id in ids], self.coverage)


def score_support(question: str, question_vector: np.ndarray, hits: Sequence[SearchHit],
                  embedder: Embedder) -> Support:
    units = [(p, unit) for p, hit in enumerate(hits) for unit in passage_units(hit.text)]
    if not units:
        return Support([], 0.0)
    texts = [_embedding_text(hits[p], unit) for p, unit in units]
    vectors = _embed_units(embedder, hits, units, texts)
    similarity = vectors @ np.asarray(question_vector, dtype=np.float32)
    words = [set(stems(unit.rendered)) for _, unit in units]
    headings = [_heading_words(hits[p]) for p, _ in units]
    weights = _question_weights(question, [w | h for w, h in zip(words, headings, strict=True)])
    total = sum(weights.values()) or 1.0
    procedure, value = bool(_PROCEDURE.search(question)), bool(_VALUE.search(question))
    scored = []
    for i, (p, unit) in enumerate(units):
        overlap = sum(w for t, w in weights.items() if t in words[i]) / total
        in_heading = sum(w for t, w in weights.items() if t in headings[i]) / total
        score = (float(similarity[i]) + OVERLAP_WEIGHT * overlap + HEADING_WEIGHT * in_heading
                 - RANK_PENALTY * p)
        if procedure and unit.ordered:
            score += STEP_BONUS
        if value and _DIGIT.search(unit.rendered):
            score += VALUE_BONUS
        scored.append(ScoredUnit(hits[p], p, unit, float(similarity[i]), overlap, score))
    found = set().union(*words, *headings, *(set(stems(h.title)) for h in hits))
    coverage = sum(w for t, w in weights.items() if t in found) / total
    return Support(scored, coverage)


def is_procedure_question(question: str) -> bool:
    return bool(_PROCEDURE.search(question))


def _embedding_text(hit: SearchHit, unit: Unit) -> str:
    return embedding_text(hit.title, hit.heading_path, unit.rendered)


def _embed_units(embedder: Embedder, hits: Sequence[SearchHit], units: Sequence[tuple[int, Unit]],
                 texts: Sequence[str]) -> np.ndarray:
    """Through the stored vectors when the embedder keeps them (retrieval/unit_vectors.py), by passage."""
    if not isinstance(embedder, UnitEmbedder):
        return embedder.embed_documents(texts)
    by_passage: dict[int, list[str]] = {}
    for (p, _), text in zip(units, texts, strict=True):
        by_passage.setdefault(p, []).append(text)
    # Units come passage by passage (the order of `units`), so the stacked vectors line up with `texts`.
    return embedder.embed_units([PassageUnits(hits[p].chunk_id, ts) for p, ts in by_passage.items()])


def _heading_words(hit: SearchHit) -> set[str]:
    """The words of the passage's own heading ("Enrolling"); the title is shared by all the article's
    passages and was already weighed by retrieval."""
    return set(stems(hit.heading_path[-1])) if hit.heading_path else set()


def _question_weights(question: str, unit_words: Sequence[set[str]]) -> dict[str, float]:
    """Inverse document frequency over the candidate units: a word in every unit tells nothing."""
    n = len(unit_words)
    weights = {}
    for term in set(stems(question)):
        df = sum(term in w for w in unit_words)
        weights[term] = math.log((n + 1) / (df + 0.5))
    return weights
