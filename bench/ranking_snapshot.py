"""A fingerprint of search's rankings on the demo KB, to show that a change of shape left them alone.

Indexes demo_kb/ into a scratch database on the benchmarks' embedded PostgreSQL, runs every demo question
(demo_eval/queries.jsonl and unanswerable.jsonl) in each mode (dense, lexical, hybrid), unfiltered and
filtered to the demo source, then once more lexically with the postings cleared (the exact SQL scorer that
filtered searches use), and prints each group's count and digest of the ranked chunk ids with their
lexical and dense ranks (scores rounded to 1e-9). Run it on two checkouts, with the same questions, and
compare the lines:

    nice -n 10 .venv/bin/python -m bench.ranking_snapshot [--eval-dir DIR] [--json-out FILE]

(`--eval-dir`: where queries.jsonl and unanswerable.jsonl are read, by default this checkout's demo_eval/.)

The exact scorer does not break ties between exactly equal BM25 scores, so its rankings are also given
with tied chunks sorted by id (`exact_sql_ties_sorted`): that line is the one to compare.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
from pathlib import Path

from bench.common import REPO, bench_server, local_embedder, scratch_database
from retrieval.db import Database
from retrieval.search import Searcher
from retrieval.sources import FilesystemSource
from retrieval.sync import Indexer

log = logging.getLogger("bench.snapshot")
DEMO_EVAL = REPO / "demo_eval"


def questions(eval_dir: Path = DEMO_EVAL) -> list[str]:
    out = []
    for name in ("queries.jsonl", "unanswerable.jsonl"):
        with (eval_dir / name).open(encoding="utf-8") as fh:
            out += [json.loads(line)["text"] for line in fh if line.strip()]
    return out


def _digest(rows: dict[str, object]) -> str:
    return hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()[:16]


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--eval-dir", type=Path, default=DEMO_EVAL)
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    embedder = local_embedder()
    groups: dict[str, dict[str, object]] = {}
    with scratch_database(bench_server(), "snapshot") as url:
        db = Database.from_url(url.set(drivername="postgresql+psycopg").render_as_string(hide_password=False))
        Indexer(db, embedder, chunk_max_tokens=200).sync([FilesystemSource("demo", REPO / "demo_kb")])
        searcher = Searcher(db, embedder)
        qs = questions(args.eval_dir)
        for mode in ("dense", "lexical", "hybrid"):
            for sources in (None, ["demo"]):
                key = f"{mode}{'_filtered' if sources else ''}"
                groups[key] = {q: [(h.chunk_id, round(h.score, 9), h.lexical_rank, h.dense_rank)
                                   for h in searcher.search(q, k=20, mode=mode, sources=sources).hits]
                               for q in qs}
        with db.engine.begin() as conn:
            conn.exec_driver_sql("UPDATE lexicon SET postings = NULL")
        exact = {q: [(h.chunk_id, round(h.score, 9)) for h in searcher.search(q, k=20, mode="lexical").hits]
                 for q in qs}
        groups["exact_sql_ties_sorted"] = {q: sorted(hits, key=lambda h: (-h[1], h[0])) for q, hits in exact.items()}
        db.close()
    report = {key: {"questions": len(rows), "digest": _digest(rows)} for key, rows in groups.items()}
    for key, row in report.items():
        print(f"{key:24} {row['questions']} questions  {row['digest']}")
    if args.json_out:
        args.json_out.write_text(json.dumps({"summary": report, "rankings": groups}, indent=1))


if __name__ == "__main__":
    main()
