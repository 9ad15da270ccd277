"""Whether the retrieved passages answer the question at all, or the bot should say it doesn't know.

The best passage's cosine similarity alone cannot tell "What is the stock price of Northwind Labs today?"
from a real question: every passage about Northwind sounds close. What tells them apart is whether the
question's distinctive words occur in the passages (`coverage`: "stock" and "price" occur nowhere) and
whether some single sentence, list item or table row supports the question (`best_unit`), not just the
passage's general topic. The gate combines them into one confidence, calibrated on answerable and
unanswerable questions of the demo KB and aws-docs-qa (bench/calibrate_abstention.py, BENCHMARKS.md).

How high the bar must be depends on the index: in a crowded one (aws-docs-qa's overlapping guides) an
unanswerable question lands as close to some passage as an answerable one does in the demo KB. The bar
rises with the index's neighbour density (retrieval/neighbour_density.py), which is what lets one gate
serve both; the density reads only passages every member may read, so restricted articles never move it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

from retrieval.support import Support
from retrieval.types import SearchHit


@dataclass(frozen=True)
class Evidence:
    top_similarity: float  # the best passage's cosine similarity to the question
    best_unit: float  # the best sentence/item/row's cosine similarity (with its heading)
    coverage: float  # weighted share of the question's words found in the passages
    margin: float  # best passage's similarity minus the best one from another article
    agreement: float  # 1 when the top passage is in both the dense and the lexical candidates
    # The index's neighbour density (retrieval/neighbour_density.py); None when unknown (base bar).
    density: float | None = None

    @classmethod
    def of(cls, hits: Sequence[SearchHit], support: Support, density: float | None = None) -> Evidence:
        sims = [h.similarity or 0.0 for h in hits]
        top = max(sims, default=0.0)
        best = max((u.similarity for u in support.units if not u.unit.fragment), default=0.0)
        first = max(hits, key=lambda h: h.similarity or 0.0) if hits else None
        other = max((h.similarity or 0.0 for h in hits if first and h.article_id != first.article_id),
                    default=0.0)
        agreement = float(bool(first and first.dense_rank is not None and first.lexical_rank is not None))
        return cls(top, best, support.coverage, top - other, agreement, density)

    def as_dict(self) -> dict[str, float | None]:
        return {k: None if v is None else round(v, 4) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class AbstentionGate:
    """Answer when `confidence` reaches the bar; the weights are the calibrated ones.

    Confidence: half the best passage's similarity, half the best unit's, plus the margin over the best
    passage of another article (a question the KB answers usually has one article clearly ahead; a
    near-miss such as "is there parking at the Toronto office?" finds several about as close). Coverage
    is kept in the evidence but weighs nothing: it did not separate the sets.

    The bar: `threshold` in an index as sparse as the demo KB, raised by `density_weight` per unit of
    neighbour density above `reference_density` (never lowered). In a crowded index an unanswerable
    question lands closer to some passage (an Azure question next to EKS pages), so the same confidence
    means less. Chosen on the demo and aws-docs-qa sets together, checked by cross-validation, on held-out
    questions and on python-faq (bench/calibrate_abstention.py, BENCHMARKS.md "Session 7: abstention").
    """

    threshold: float = 0.525
    unit_weight: float = 0.5
    coverage_weight: float = 0.0
    margin_weight: float = 0.4
    density_weight: float = 0.3
    reference_density: float = 0.6
    # An answer whose confidence clears the bar by less than this is said to be unsure (chosen on the
    # same sets: it flags the wrong answers near the bar and a quarter of the demo's right ones at most;
    # BENCHMARKS.md "Session 8: abstention").
    unsure_band: float = 0.07
    # A refusal lists the nearest articles only when one of them is near: its best passage at least this
    # similar to the question, raised by `near_density_weight` per unit of density above the reference
    # (in aws-docs-qa's crowded index "How tall is Mount Everest?" still finds passages at 0.25-0.45).
    # Below it the "nearest" articles are noise ("What is the capital of Peru?" next to the Wi-Fi and
    # learning-budget articles) and the refusal says the KB has nothing on it instead. Chosen on the
    # refusals of the calibration sets: every refused answerable question keeps its list, and most
    # off-topic ones list nothing (bench/calibrate_abstention.py, BENCHMARKS.md "Session 9: abstention").
    near_similarity: float = 0.28
    near_density_weight: float = 0.8

    def confidence(self, evidence: Evidence) -> float:
        return ((1 - self.unit_weight) * evidence.top_similarity + self.unit_weight * evidence.best_unit
                + self.coverage_weight * (evidence.coverage - 1) + self.margin_weight * evidence.margin)

    def bar(self, density: float | None) -> float:
        if density is None:
            return self.threshold
        return self.threshold + self.density_weight * max(0.0, density - self.reference_density)

    def answers(self, evidence: Evidence) -> bool:
        return self.confidence(evidence) >= self.bar(evidence.density)

    def near_cut(self, density: float | None) -> float:
        """The similarity an article's best passage needs for a refusal to offer it."""
        excess = 0.0 if density is None else max(0.0, density - self.reference_density)
        return self.near_similarity + self.near_density_weight * excess

    def near(self, similarity: float, density: float | None) -> bool:
        return similarity >= self.near_cut(density)

    def sure(self, evidence: Evidence) -> bool:
        """Whether an answer clears the bar by the unsure band: below it, the answer says it is unsure."""
        return self.confidence(evidence) >= self.bar(evidence.density) + self.unsure_band
