"""Calibrate the abstention gate (retrieval/abstention.py) on answerable and unanswerable questions of the
demo KB and aws-docs-qa, and compare it with the best passage's cosine similarity alone.

    nice -n 5 .venv/bin/python -m bench.calibrate_abstention [--json-out bench/results/abstention.json]

Needs the demo index (`make demo` fills KBBOT_DATA_DIR) and the aws index (~/.cache/kbbot-bench/aws, built
by bench/answer_quality.py or bench/ingest_aws.py); a part whose index or data is missing is skipped.
Answerable: demo_eval/queries.jsonl and aws-docs-qa's 100 questions; unanswerable: demo_eval/unanswerable.jsonl
and bench/sets/aws-unanswerable.jsonl (written for this project: off-topic, HR questions, other clouds and
Amazon retail). For every question it records the gate's evidence, then searches a grid of gate weights and
thresholds for the one that meets the targets (answer >= 95% of answerable, abstain on >= 90% of
unanswerable) on every set with the most room, and reports each set's rates at it.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
from dataclasses import asdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
AWS = REPO.parent / "shared" / "data" / "aws-docs-qa"
BENCH_DIR = Path(os.environ.get("KBBOT_BENCH_DIR", Path.home() / ".cache" / "kbbot-bench"))
ANSWER_TARGET, ABSTAIN_TARGET = 0.95, 0.90


def evidence_for(services, questions: list[str]) -> list[dict[str, float]]:  # type: ignore[no-untyped-def]
    from retrieval.abstention import Evidence
    from retrieval.support import score_support

    searcher, pipeline = services.searcher(), services.pipeline
    out = []
    for question in questions:
        result = searcher.search(question, k=max(pipeline.top_k, pipeline.candidates))
        support = score_support(question, result.query_vector, result.hits, searcher.embedder)
        out.append(asdict(Evidence.of(result.hits, support)))
    return out


def rates(gate, answerable: list[dict], unanswerable: list[dict]) -> tuple[float, float]:  # type: ignore[no-untyped-def, type-arg]
    from retrieval.abstention import Evidence

    answered = sum(gate.answers(Evidence(**e)) for e in answerable) / len(answerable)
    abstained = sum(not gate.answers(Evidence(**e)) for e in unanswerable) / len(unanswerable)
    return answered, abstained


def calibrate(sets: dict[str, dict[str, list[dict]]]) -> dict:  # type: ignore[type-arg]
    from retrieval.abstention import AbstentionGate

    def scored(gate: AbstentionGate) -> tuple[float, dict[str, dict[str, float]]]:
        per_set = {}
        slack = []
        for name, data in sets.items():
            answered, abstained = rates(gate, data["answerable"], data["unanswerable"])
            per_set[name] = {"answered": round(answered, 3), "abstained": round(abstained, 3)}
            slack += [answered - ANSWER_TARGET, abstained - ABSTAIN_TARGET]
        return min(slack), per_set

    thresholds = [round(0.20 + 0.005 * i, 3) for i in range(101)]
    best: tuple[float, AbstentionGate, dict] | None = None  # type: ignore[type-arg]
    baseline: tuple[float, AbstentionGate, dict] | None = None  # type: ignore[type-arg]
    for unit_weight, coverage_weight, threshold in itertools.product(
            (0.0, 0.25, 0.5, 0.75, 1.0), (0.0, 0.1, 0.2, 0.3, 0.4, 0.5), thresholds):
        gate = AbstentionGate(threshold=threshold, unit_weight=unit_weight, coverage_weight=coverage_weight)
        slack, per_set = scored(gate)
        if best is None or slack > best[0]:
            best = (slack, gate, per_set)
        if unit_weight == 0.0 and coverage_weight == 0.0 and (baseline is None or slack > baseline[0]):
            baseline = (slack, gate, per_set)
    assert best and baseline
    return {
        "targets": {"answered": ANSWER_TARGET, "abstained": ABSTAIN_TARGET},
        "chosen": {"gate": asdict(best[1]), "worst_slack": round(best[0], 3), "rates": best[2],
                   "meets_targets": best[0] >= 0},
        "top_cosine_alone": {"threshold": baseline[1].threshold, "worst_slack": round(baseline[0], 3),
                             "rates": baseline[2]},
    }


def main() -> None:
    from bot.services import Services
    from retrieval.errors import KbbotError
    from retrieval.settings import load_settings

    parser = argparse.ArgumentParser()
    parser.add_argument("--json-out", type=Path, default=REPO / "bench" / "results" / "abstention.json")
    args = parser.parse_args()

    def texts(path: Path) -> list[str]:
        return [json.loads(line)["text"] for line in path.open(encoding="utf-8") if line.strip()]

    sets: dict[str, dict[str, list[dict]]] = {}  # type: ignore[type-arg]
    try:
        services = Services(load_settings())
        sets["demo"] = {"answerable": evidence_for(services, texts(REPO / "demo_eval" / "queries.jsonl")),
                        "unanswerable": evidence_for(services, texts(REPO / "demo_eval" / "unanswerable.jsonl"))}
        services.close()
    except KbbotError as exc:
        print(f"demo part skipped: {exc}")
    if (AWS / "queries.jsonl").exists() and (BENCH_DIR / "aws").exists():
        services = Services(load_settings(_env_file=None, data_dir=BENCH_DIR / "aws"))
        own = REPO / "bench" / "sets" / "aws-unanswerable.jsonl"
        sets["aws"] = {"answerable": evidence_for(services, texts(AWS / "queries.jsonl")),
                       "unanswerable": evidence_for(services, texts(own))}
        services.close()
    else:
        print("aws part skipped: build the aws index first (bench/answer_quality.py)")
    report = calibrate(sets)
    report["questions"] = {name: {k: len(v) for k, v in data.items()} for name, data in sets.items()}
    report["evidence"] = sets
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "evidence"}, indent=2))


if __name__ == "__main__":
    main()
