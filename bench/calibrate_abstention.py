"""Calibrate KBBOT_MIN_RELEVANCE: the best passage's cosine similarity for questions the KB answers versus
questions it cannot, on the demo KB and on aws-docs-qa.

    .venv/bin/python -m bench.calibrate_abstention

Needs the demo index (`make demo` fills KBBOT_DATA_DIR) and the aws index built by bench/ingest_aws.py;
either part is skipped when its index or data is missing. Prints, per threshold, the share of answerable
questions still answered and of unanswerable ones refused.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
AWS = REPO.parent / "shared" / "data" / "aws-docs-qa"
BENCH_DIR = Path(os.environ.get("KBBOT_BENCH_DIR", Path.home() / ".cache" / "kbbot-bench"))

# Questions an AWS documentation KB cannot answer: other companies' HR/IT matters and off-topic ones.
AWS_UNANSWERABLE = [
    "How many vacation days can I carry over to next year?",
    "What is the parental leave policy?",
    "How do I book a flight for a business trip?",
    "Who do I ask for a new laptop charger?",
    "What is the per diem for meals in Toronto?",
    "How do I enroll in the company health insurance plan?",
    "What is the capital of Peru?",
    "Give me a recipe for sourdough bread",
    "Who won the football world cup in 2018?",
    "How tall is Mount Everest?",
    "When is the office holiday party?",
    "What is the dress code on Fridays?",
    "Can I bring my dog to the office?",
    "How do I get a parking pass for the Lisbon office?",
    "What is the company's stock option vesting schedule?",
    "How do I report a phishing email to the security team?",
    "What is the wifi password for guests?",
    "How much is the home office stipend?",
    "When are performance reviews due?",
    "How do I reset my Northwind ID password?",
]


def best_similarities(searcher, questions: list[str]) -> np.ndarray:  # type: ignore[no-untyped-def]
    return np.array([max((h.similarity or 0.0) for h in searcher.search(q, k=5).hits) for q in questions])


def report(name: str, answerable: np.ndarray, unanswerable: np.ndarray) -> dict:
    rows = []
    for threshold in np.arange(0.20, 0.56, 0.05):
        rows.append({
            "threshold": round(float(threshold), 2),
            "answered": round(float((answerable >= threshold).mean()), 3),
            "refused": round(float((unanswerable < threshold).mean()), 3),
        })
    print(f"\n{name}: {len(answerable)} answerable, {len(unanswerable)} unanswerable")
    print(f"  best similarity, answerable   p5/p50: {np.percentile(answerable, 5):.3f} / "
          f"{np.median(answerable):.3f}")
    print(f"  best similarity, unanswerable p50/p95: {np.median(unanswerable):.3f} / "
          f"{np.percentile(unanswerable, 95):.3f}")
    print("  threshold  answered  refused")
    for row in rows:
        print(f"  {row['threshold']:>9.2f}  {row['answered']:>8.3f}  {row['refused']:>7.3f}")
    return {"answerable": len(answerable), "unanswerable": len(unanswerable), "rows": rows}


def main() -> None:
    from bot.services import Services
    from retrieval.errors import KbbotError
    from retrieval.settings import load_settings

    out = {}
    demo_eval = REPO / "demo_eval"
    try:
        services = Services(load_settings())
        searcher = services.searcher()
        answerable = [json.loads(line)["text"] for line in (demo_eval / "queries.jsonl").open()]
        unanswerable = [json.loads(line)["text"] for line in (demo_eval / "unanswerable.jsonl").open()]
        out["demo"] = report("demo KB", best_similarities(searcher, answerable),
                             best_similarities(searcher, unanswerable))
        services.close()
    except KbbotError as exc:
        print(f"demo part skipped: {exc}")
    if (AWS / "queries.jsonl").exists() and (BENCH_DIR / "aws").exists():
        services = Services(load_settings(_env_file=None, data_dir=BENCH_DIR / "aws"))
        searcher = services.searcher()
        answerable = [json.loads(line)["text"] for line in (AWS / "queries.jsonl").open()]
        out["aws"] = report("aws-docs-qa", best_similarities(searcher, answerable),
                            best_similarities(searcher, AWS_UNANSWERABLE))
        services.close()
    else:
        print("aws part skipped: run bench/ingest_aws.py first")
    (REPO / "bench" / "results").mkdir(exist_ok=True)
    (REPO / "bench" / "results" / "abstention.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
