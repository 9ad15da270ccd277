"""Answer latency of two versions of kbbot side by side: `AnswerPipeline.answer` (search, the abstention
gate's sentence support, the extractive answer) on the same index and questions.

    nice -n 5 .venv/bin/python -m bench.answer_latency --refs BEFORE AFTER [--set demo|aws] [--rounds 3]

Each ref is exported with `git archive` into a temporary directory; every round runs one child process
per ref (alternating which goes first, so load on the shared cores falls on both) that builds `Services`
as `kbbot ask` does, answers three warm-up questions, then times each question once. The sentence-vector
cache starts empty in every child, as in a freshly started bot. `--set demo` uses the index in
KBBOT_DATA_DIR (`make demo`) and demo_eval's answerable and unanswerable questions; `--set aws` the index
in ~/.cache/kbbot-bench/aws (bench/answer_quality.py builds it) and the first 40 aws-docs-qa questions
plus 20 of bench/sets/aws-unanswerable.jsonl. Writes bench/results/answer_latency.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import emit, summarize_ms

REPO = Path(__file__).resolve().parents[1]
AWS = REPO.parent / "shared" / "data" / "aws-docs-qa"
BENCH_DIR = Path(os.environ.get("KBBOT_BENCH_DIR", Path.home() / ".cache" / "kbbot-bench"))

# Runs inside the exported tree (python -c puts it first on sys.path), so it times that version's code.
CHILD = """
import json, sys, time
from bot.services import Services
from retrieval.settings import load_settings
questions = json.loads(sys.argv[1])
services = Services(load_settings())
pipeline = services.pipeline() if callable(services.pipeline) else services.pipeline
for q in questions[:3]:
    pipeline.answer(q)
times, answered = [], 0
for q in questions:
    started = time.perf_counter()
    answered += pipeline.answer(q).outcome == "answered"
    times.append((time.perf_counter() - started) * 1000)
services.close()
print(json.dumps({"ms": times, "answered": answered}))
"""


def questions_for(name: str) -> tuple[list[str], dict[str, str]]:
    def texts(path: Path, limit: int | None = None) -> list[str]:
        rows = [json.loads(line)["text"] for line in path.read_text().splitlines() if line.strip()]
        return rows[:limit]

    if name == "demo":
        return texts(REPO / "demo_eval" / "queries.jsonl") + texts(REPO / "demo_eval" / "unanswerable.jsonl"), {}
    env = {"KBBOT_DATA_DIR": str(BENCH_DIR / "aws")}
    return texts(AWS / "queries.jsonl", 40) + texts(REPO / "bench" / "sets" / "aws-unanswerable.jsonl", 20), env


def run(tree: Path, questions: list[str], env: dict[str, str]) -> dict:  # type: ignore[type-arg]
    child_env = {**os.environ, **env, "KBBOT_LOG_LEVEL": "WARNING", "PYTHONPATH": str(tree)}
    out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(questions)], cwd=tree, env=child_env,
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--refs", nargs=2, default=["main", "HEAD"], metavar=("BEFORE", "AFTER"))
    parser.add_argument("--set", choices=("demo", "aws"), default="demo")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json-out", type=Path, default=REPO / "bench" / "results" / "answer_latency.json")
    args = parser.parse_args()
    refs = [subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", r], check=True, capture_output=True,
                           text=True).stdout.strip() for r in args.refs]
    questions, env = questions_for(args.set)
    times: dict[str, list[float]] = {ref: [] for ref in refs}
    answered: dict[str, list[int]] = {ref: [] for ref in refs}
    loads = []
    with tempfile.TemporaryDirectory(prefix="kbbot-latency-") as tmp:
        trees = {}
        for ref in refs:
            trees[ref] = Path(tmp) / ref
            trees[ref].mkdir()
            archive = subprocess.run(["git", "-C", str(REPO), "archive", ref], check=True, capture_output=True)
            subprocess.run(["tar", "-x", "-C", str(trees[ref])], input=archive.stdout, check=True)
        for round_no in range(args.rounds):
            for ref in refs if round_no % 2 == 0 else refs[::-1]:
                loads.append(round(os.getloadavg()[0], 1))
                result = run(trees[ref], questions, env)
                times[ref] += result["ms"]
                answered[ref].append(result["answered"])
                print(f"round {round_no + 1} {ref}: p50 {summarize_ms(result['ms'])['p50']} ms", flush=True)
    before, after = (summarize_ms(times[ref]) for ref in refs)
    emit({"set": args.set, "questions": len(questions), "rounds": args.rounds, "load_avg_1m": loads,
          "before": {"ref": refs[0], **before, "answered_per_round": answered[refs[0]]},
          "after": {"ref": refs[1], **after, "answered_per_round": answered[refs[1]]},
          "p50_ratio_after_over_before": round(after["p50"] / before["p50"], 2) if before["p50"] else None},
         args.json_out)


if __name__ == "__main__":
    main()
