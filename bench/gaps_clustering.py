"""How well the gaps report groups questions by meaning, on the labelled set demo_eval/gaps_questions.jsonl
(47 paraphrase groups and 71 one-off questions about the demo KB's company and workplace topics).

Embeds the questions with the local model, sweeps the distance threshold of the clustering, and reports the
adjusted Rand index and purity at each, and at the shipped default (retrieval.gaps.DISTANCE_THRESHOLD). To
check the default is not fitted to the whole set, the threshold is also chosen on the odd-numbered groups
and scored on the even-numbered ones (one-offs split the same way).

    nice -n 5 .venv/bin/python -m bench.gaps_clustering [--json-out bench/results/gaps_clustering.json]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

from retrieval.gaps import DISTANCE_THRESHOLD  # noqa: E402
from retrieval.gaps_eval import LabelledQuestions, scores  # noqa: E402

QUESTIONS = REPO / "demo_eval" / "gaps_questions.jsonl"
SWEEP = [round(t, 2) for t in np.arange(0.25, 0.71, 0.05)]


def _halves(data: LabelledQuestions) -> tuple[list[int], list[int]]:
    order = {g: i for i, g in enumerate(dict.fromkeys(data.groups))}
    odd = [i for i, g in enumerate(data.groups) if order[g] % 2 == 0]
    even = [i for i, g in enumerate(data.groups) if order[g] % 2 == 1]
    return odd, even


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    from bench.common import emit, local_embedder, machine

    data = LabelledQuestions.read(QUESTIONS)
    vectors = np.asarray(local_embedder().embed_documents(data.texts), dtype=np.float32)
    sweep = [scores(data.groups, vectors, t) for t in SWEEP]
    tune, held_out = _halves(data)
    tuned = max(SWEEP, key=lambda t: scores([data.groups[i] for i in tune], vectors[tune], t)["adjusted_rand_index"])
    report = {
        "benchmark": "gaps_clustering", "machine": machine(), "questions": len(data.texts),
        "groups": len(set(data.groups)), "one_offs": sum(1 for g in data.groups if g.startswith("solo-")),
        "model": "all-MiniLM-L6-v2",
        "clustering": "SciPy hierarchical (= scikit-learn AgglomerativeClustering), average linkage, cosine",
        "default": scores(data.groups, vectors, DISTANCE_THRESHOLD),
        "held_out": {"threshold_tuned_on_half": tuned,
                     "default_on_other_half": scores([data.groups[i] for i in held_out], vectors[held_out],
                                                     DISTANCE_THRESHOLD),
                     "scored_on_other_half": scores([data.groups[i] for i in held_out], vectors[held_out], tuned)},
        "sweep": sweep,
    }
    emit(report, args.json_out)


if __name__ == "__main__":
    main()
