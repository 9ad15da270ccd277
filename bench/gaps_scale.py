"""The gaps report on 10,000 logged questions: fills a scratch answer log (demo KB indexed, questions made
from demo_eval/gaps_questions.jsonl and demo_eval/queries.jsonl with varied wording, 400 askers over 30
days, a realistic share of abstentions, 👎 and escalations, citations and reasons) and times the report.

- embed: the one-time cost of embedding every gap question (a report does it for the questions it has not
  seen; afterwards they are cached in question_vectors);
- report: every later report (App Home, the digest, `kbbot gaps`), in-process, rounds alternating with a
  plain read of the same answers through `AnswerLog.export` as a yardstick;
- cli: `kbbot gaps --json` as a fresh process (Python start, imports, database connection included).

    nice -n 5 .venv/bin/python -m bench.gaps_scale [--questions 10000] [--gap-share 0.35] [--rounds 5]
        [--json-out bench/results/gaps_scale.json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from sqlalchemy import text  # noqa: E402

PREFIXES = ["", "hi, ", "quick question: ", "hey team, ", "sorry if this was asked: ", "does anyone know ",
            "help: ", "Q: "]
SUFFIXES = ["", " thanks!", " (asking for a colleague)", " pls", " asap", " :)", " in Lisbon", " in Toronto",
            " for my team", " this week"]
REASONS = ["The article is out of date", "wrong number of days", "didn't answer my question", "missing the "
           "Toronto rules", "no longer true since the policy changed", ""]


def _questions(n: int, rng: random.Random) -> list[str]:
    base = [json.loads(line)["text"] for line in (REPO / "demo_eval" / "gaps_questions.jsonl").open()]
    base += [json.loads(line)["text"] for line in (REPO / "demo_eval" / "queries.jsonl").open()]
    out = []
    for _ in range(n):
        q = rng.choice(base)
        out.append(rng.choice(PREFIXES) + (q[0].lower() + q[1:] if rng.random() < 0.5 else q) + rng.choice(SUFFIXES))
    return out


def fill(db, n: int, gap_share: float, seed: int = 7) -> dict:  # type: ignore[no-untyped-def]
    rng = random.Random(seed)
    now = datetime.now(UTC)
    with db.engine.connect() as conn:
        articles = conn.execute(text("SELECT id, title, url FROM articles")).all()
    rows, citations, feedback = [], [], []
    for i, q in enumerate(_questions(n, rng)):
        gap = rng.random() < gap_share
        kind = rng.choices(["abstained", "down", "escalated"], [0.75, 0.17, 0.08])[0] if gap else "fine"
        outcome = "abstained" if kind == "abstained" else "answered"
        meta = {"escalated_by": f"U{rng.randrange(400):04d}"} if kind == "escalated" else {}
        rows.append({"id": i + 1, "at": now - timedelta(minutes=rng.randrange(30 * 24 * 60)),
                     "asker": f"U{rng.randrange(400):04d}", "q": q, "outcome": outcome,
                     "answer": None if outcome == "abstained" else f"An answer to: {q} [1]",
                     "meta": json.dumps(meta)})
        if outcome == "answered":
            for number, a in enumerate(rng.sample(articles, 2), 1):
                citations.append({"a": i + 1, "n": number, "art": a.id, "title": a.title, "url": a.url})
            if kind == "down":
                reason = rng.choice(REASONS)
                feedback.append({"a": i + 1, "u": rows[-1]["asker"], "v": "down", "r": reason or None})
            elif rng.random() < 0.1:
                feedback.append({"a": i + 1, "u": rows[-1]["asker"], "v": "up", "r": None})
    with db.engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO answers (id, created_at, channel_kind, asker, channel, thread_ts, question, answer_text, "
            "outcome, model, metadata) VALUES (:id, :at, 'channel', :asker, 'C0BENCH', '1.1', :q, :answer, "
            ":outcome, 'extractive', CAST(:meta AS jsonb))"), rows)
        conn.execute(text("SELECT setval('answers_id_seq', :n)"), {"n": n})
        conn.execute(text(
            "INSERT INTO answer_citations (answer_id, number, article_id, title, url) "
            "VALUES (:a, :n, :art, :title, :url)"), citations)
        if feedback:
            conn.execute(text("INSERT INTO feedback (answer_id, user_id, value, reason) VALUES (:a, :u, :v, :r)"),
                         feedback)
    return {"logged": n, "citations": len(citations), "feedback": len(feedback)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--questions", type=int, default=10_000)
    parser.add_argument("--gap-share", type=float, default=0.35)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()

    from bench.common import bench_server, emit, local_embedder, machine, scratch_database, summarize_ms
    from bot.cli_gaps import report_json
    from retrieval.answer_log import AnswerLog
    from retrieval.db import Database
    from retrieval.gaps import GapFinder, nearest_from_searcher
    from retrieval.gaps_articles import articles_to_review
    from retrieval.search import Searcher
    from retrieval.sources.filesystem import FilesystemSource
    from retrieval.sync import Indexer

    embedder = local_embedder()
    server = bench_server()
    with scratch_database(server, "gaps") as url:
        db = Database.from_url(url.render_as_string(hide_password=False), migrate=True)
        Indexer(db, embedder, chunk_max_tokens=200).sync([FilesystemSource("demo", REPO / "demo_kb")])
        filled = fill(db, args.questions, args.gap_share)
        since = datetime.now(UTC) - timedelta(days=30)
        searcher = Searcher(db, embedder)

        def report_once() -> tuple[float, dict]:
            started = time.perf_counter()
            report = GapFinder(db, embedder).report(since=since, nearest=nearest_from_searcher(searcher))
            articles = articles_to_review(db, since=since, stale_after_days=365)
            doc = report_json(report, articles, askers=False)
            json.dumps(doc)
            return (time.perf_counter() - started) * 1000, doc

        def export_once() -> float:
            started = time.perf_counter()
            count = sum(1 for _ in AnswerLog(db).export(since=since))
            assert count == args.questions
            return (time.perf_counter() - started) * 1000

        started = time.perf_counter()
        embedded = GapFinder(db, embedder).embed_missing(since=since)
        embed_ms = (time.perf_counter() - started) * 1000
        _, cold = report_once()
        warm, export, phases = [], [], []
        for _ in range(args.rounds):  # alternating: the yardstick shares each round's machine load
            ms, doc = report_once()
            warm.append(ms)
            phases.append(doc["timings_ms"])
            export.append(export_once())
        env = {**os.environ, "DATABASE_URL": url.render_as_string(hide_password=False), "KBBOT_LOG_LEVEL": "WARNING",
               "PYTHONPATH": str(REPO)}
        cli = []
        for _ in range(max(1, args.rounds // 2)):
            started = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "bot.cli", "gaps", "--json"], env=env, cwd=REPO,
                                  capture_output=True, text=True, timeout=300)
            cli.append((time.perf_counter() - started) * 1000)
            assert done.returncode == 0, done.stderr[-2000:]
        db.close()
    report = {
        "benchmark": "gaps_scale", "machine": machine(), **filled, "gap_share": args.gap_share,
        "gap_questions": cold["gap_questions"], "clustered": cold["clustered"], "truncated": cold["truncated"],
        "groups": len(cold["groups"]), "embedded_once": embedded, "embed_once_ms": round(embed_ms, 1),
        "embed_per_question_ms": round(embed_ms / max(1, embedded), 2), "warm_report_ms": summarize_ms(warm),
        "warm_phases_ms_last": phases[-1], "answer_log_export_ms": summarize_ms(export),
        "warm_over_export": round(sorted(warm)[len(warm) // 2] / sorted(export)[len(export) // 2], 2),
        "cli_process_ms": summarize_ms(cli),
        "load_average_1_5_15": [round(x, 1) for x in os.getloadavg()],  # the machine is shared: context
    }
    emit(report, args.json_out)


if __name__ == "__main__":
    main()
