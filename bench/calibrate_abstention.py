"""Calibrate the abstention gate (retrieval/abstention.py) on answerable and unanswerable questions of the
demo KB and aws-docs-qa, and compare it with the best passage's cosine similarity alone.

    nice -n 5 .venv/bin/python -m bench.answer_quality   # (or this module: the same run)

Needs the demo index (`make demo` fills KBBOT_DATA_DIR) and the aws index (~/.cache/kbbot-bench/aws, built
first when missing, or a reduced one while the shared embedding cache is incomplete: see
bench/answer_quality.py); a part whose index or data is missing is skipped.
Answerable: demo_eval/queries.jsonl and aws-docs-qa's 100 questions; unanswerable: demo_eval/unanswerable.jsonl
and bench/sets/aws-unanswerable.jsonl (written for this project: off-topic, HR questions, other clouds and
Amazon retail). For every question it records the gate's evidence, then searches a grid of gate weights and
thresholds for the one that meets the targets (answer >= 95% of answerable, abstain on >= 90% of
unanswerable) on every set with the most room, and reports each set's rates at it.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
AWS = REPO.parent / "shared" / "data" / "aws-docs-qa"
ANSWER_TARGET, ABSTAIN_TARGET = 0.95, 0.90


def rates(gate, answerable: list[dict], unanswerable: list[dict]) -> tuple[float, float]:  # type: ignore[no-untyped-def, type-arg]
    from retrieval.abstention import Evidence

    answered = sum(gate.answers(Evidence(**e)) for e in answerable) / len(answerable)
    abstained = sum(not gate.answers(Evidence(**e)) for e in unanswerable) / len(unanswerable)
    return answered, abstained


def calibrate(sets: dict[str, dict[str, list[dict]]]) -> dict:  # type: ignore[type-arg]
    """The grid's best gate chosen on all sets together, and chosen on each set alone (with its rates on
    the others: how well a gate calibrated on one knowledge base carries to another)."""
    from retrieval.abstention import AbstentionGate

    grid = [AbstentionGate(threshold=t, unit_weight=u, coverage_weight=c, margin_weight=m)
            for u, c, m, t in itertools.product((0.0, 0.25, 0.5, 0.75, 1.0), (0.0, 0.1, 0.2, 0.3), (0.0, 0.2, 0.4),
                                                [round(0.20 + 0.005 * i, 3) for i in range(101)])]
    per_gate = []
    for gate in grid:
        per_set = {}
        for name, data in sets.items():
            answered, abstained = rates(gate, data["answerable"], data["unanswerable"])
            per_set[name] = {"answered": round(answered, 3), "abstained": round(abstained, 3),
                             "slack": round(min(answered - ANSWER_TARGET, abstained - ABSTAIN_TARGET), 3)}
        per_gate.append((gate, per_set))

    def best(on: list[str], gates: list[tuple[AbstentionGate, dict]]) -> dict:  # type: ignore[type-arg]
        gate, per_set = max(gates, key=lambda g: min(g[1][n]["slack"] for n in on))
        worst = min(per_set[n]["slack"] for n in on)
        return {"chosen_on": on, "gate": asdict(gate), "worst_slack_there": worst, "rates": per_set,
                "meets_targets_there": worst >= 0}

    names = list(sets)
    cosine_only = [g for g in per_gate if g[0].unit_weight == g[0].coverage_weight == g[0].margin_weight == 0.0]
    return {
        "targets": {"answered": ANSWER_TARGET, "abstained": ABSTAIN_TARGET},
        "chosen": best(names, per_gate),
        **{f"chosen_on_{n}": best([n], per_gate) for n in names if len(names) > 1},
        "top_cosine_alone": best(names, cosine_only),
    }


def main() -> None:
    """One run measures both: bench/answer_quality.py asks every question once and calibrates here."""
    from bench.answer_quality import main as measure_and_calibrate

    measure_and_calibrate()


if __name__ == "__main__":
    main()
