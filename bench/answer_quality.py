"""Answer quality on the demo KB and aws-docs-qa: what `kbbot eval --answers --unanswerable` reports, for
both sets in one run, plus retrieval Recall@10 and search latency on the aws index.

    nice -n 5 .venv/bin/python -m bench.answer_quality [--only demo|aws] [--json-out FILE]

The demo part uses the index in KBBOT_DATA_DIR (`make demo`); the aws part the index in
~/.cache/kbbot-bench/aws (KBBOT_BENCH_DIR), built here first when missing, from the shared embedding
cache of bench/common.py (one builder at a time). Questions: demo_eval/{queries,answers,unanswerable}.jsonl;
aws-docs-qa's queries, qrels and answers.jsonl (../shared/data, never copied) and the project's own
bench/sets/aws-unanswerable.jsonl. Results: bench/results/answer_quality.json.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "bench" / "peers"))
AWS = REPO.parent / "shared" / "data" / "aws-docs-qa"
BENCH_DIR = Path(os.environ.get("KBBOT_BENCH_DIR", Path.home() / ".cache" / "kbbot-bench"))


def ensure_aws_index() -> Path:
    data_dir = BENCH_DIR / "aws"
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    with open(BENCH_DIR / "aws-index.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another benchmark building it: wait for it
        if not data_dir.exists():  # bench/ingest_aws.py builds the same index into the same folder
            from common import load_aws
            from ingest_aws import build_full_index

            load_aws()  # waits for (or builds) the shared embedding cache
            print(json.dumps(build_full_index(data_dir)), flush=True)
    return data_dir


def measure(settings, queries: Path, qrels: Path, answers: Path, unanswerable: Path) -> dict:  # type: ignore[no-untyped-def]
    from bot.services import Services
    from retrieval.answer import ExtractiveSynthesizer
    from retrieval.answer_eval import evaluate_answers, load_gold_answers, load_questions
    from retrieval.evaluation import evaluate, load_labelled_queries

    services = Services(settings)
    labelled = load_labelled_queries(queries, qrels)
    retrieval = evaluate(services.searcher(), labelled, k=10).summary()
    pipeline = services.pipeline.with_synthesizer(ExtractiveSynthesizer(services.embedder))
    report = evaluate_answers(pipeline.answer, "extractive", labelled, load_gold_answers(answers),
                              load_questions(unanswerable))
    services.close()
    misses = [{k: q.get(k) for k in ("id", "outcome", "gold", "answer", "cited", "relevant", "token_recall")}
              for q in report.per_question
              if (q["kind"] == "answerable" and not q.get("all_key_terms"))
              or (q["kind"] == "unanswerable" and q["outcome"] != "abstained")]
    return {"retrieval": retrieval, "answers": report.summary(), "misses": misses}


def main() -> None:
    from retrieval.errors import KbbotError
    from retrieval.settings import load_settings

    parser = argparse.ArgumentParser()
    parser.add_argument("--only", choices=["demo", "aws"])
    parser.add_argument("--json-out", type=Path, default=REPO / "bench" / "results" / "answer_quality.json")
    args = parser.parse_args()
    report: dict[str, object] = {}
    if args.json_out.exists():
        report = json.loads(args.json_out.read_text())  # --only refreshes one part
    demo = REPO / "demo_eval"
    if args.only in (None, "demo"):
        try:
            report["demo"] = measure(load_settings(), demo / "queries.jsonl", demo / "qrels.tsv",
                                     demo / "answers.jsonl", demo / "unanswerable.jsonl")
        except KbbotError as exc:
            print(f"demo part skipped: {exc}")
    if args.only in (None, "aws"):
        if (AWS / "answers.jsonl").exists():
            settings = load_settings(_env_file=None, data_dir=ensure_aws_index())
            report["aws"] = measure(settings, AWS / "queries.jsonl", AWS / "qrels.tsv", AWS / "answers.jsonl",
                                    REPO / "bench" / "sets" / "aws-unanswerable.jsonl")
        else:
            print(f"aws part skipped: {AWS} is absent")
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n")
    print(json.dumps({k: {"retrieval": v["retrieval"], "answers": v["answers"]}  # type: ignore[index]
                      for k, v in report.items()}, indent=2))


if __name__ == "__main__":
    main()
