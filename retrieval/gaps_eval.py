"""Clustering quality of the gaps report on a labelled question set (demo_eval/gaps_questions.jsonl):
paraphrase groups plus one-off questions, each line `{"id", "group", "text"}`. Used by
bench/gaps_clustering.py and by the test that keeps the measured quality from regressing."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from retrieval.gaps import cluster_labels


@dataclass(frozen=True)
class LabelledQuestions:
    texts: list[str]
    groups: list[str]

    @classmethod
    def read(cls, path: Path) -> LabelledQuestions:
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        return cls([r["text"] for r in rows], [r["group"] for r in rows])

    def subset(self, keep: list[int]) -> LabelledQuestions:
        return LabelledQuestions([self.texts[i] for i in keep], [self.groups[i] for i in keep])


def purity(truth: list[str], predicted: np.ndarray) -> float:
    """Share of questions whose predicted group's majority label is their own label."""
    by_cluster: dict[int, Counter[str]] = {}
    for label, cluster in zip(truth, predicted, strict=True):
        by_cluster.setdefault(int(cluster), Counter())[label] += 1
    return sum(c.most_common(1)[0][1] for c in by_cluster.values()) / max(1, len(truth))


def scores(truth: list[str], vectors: np.ndarray, threshold: float) -> dict[str, float]:
    """Adjusted Rand index, purity (are groups clean?) and inverse purity (are paraphrases kept together?)."""
    from sklearn.metrics import adjusted_rand_score

    predicted = cluster_labels(vectors, threshold)
    codes = {g: i for i, g in enumerate(dict.fromkeys(truth))}
    inverse = purity([str(p) for p in predicted], np.array([codes[g] for g in truth]))
    return {"threshold": threshold, "adjusted_rand_index": round(float(adjusted_rand_score(truth, predicted)), 4),
            "purity": round(purity(truth, predicted), 4), "inverse_purity": round(inverse, 4),
            "groups_found": len(set(predicted.tolist())), "groups_true": len(codes)}
