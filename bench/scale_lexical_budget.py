"""What the lexical postings budget (`LexicalOptions.postings_budget`, retrieval/lexical_index.py) costs in
quality and saves in time, on the real aws-docs-qa index: article-level Recall@10 / nDCG@10 of lexical and
hybrid search, and their latency, for several budgets, one index, one run. "unbounded" is the search before
the budget existed. Since BM25 is read from postings (bench/postings_depth.py), the budget bounds only the
exact SQL scorer that filtered searches use; this script measures that scorer, latency at k=10 (before: at
k=50).

    nice -n 10 .venv/bin/python -m bench.scale_lexical_budget [--budgets 0,20000,10000,5000,2000]
        [--json-out bench/results/lexical_budget.json]

(0 means unbounded.) The database is created on the benchmark's embedded PostgreSQL and dropped at the end.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import psycopg

from bench.common import emit, load_aws, load_aws_partial, machine
from bench.postings_depth import measure
from bench.scale_data import real_index
from bench.scale_search import PrecomputedQuestions
from retrieval.lexical_index import LexicalIndex, LexicalOptions
from retrieval.search import Searcher

log = logging.getLogger("bench.lexical")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budgets", default="0,20000,10000,5000,2000")
    parser.add_argument("--partial-real", action="store_true")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    data = load_aws_partial() if args.partial_real else load_aws()
    present = {c["article"] for c in data.chunks}
    keep = [i for i, q in enumerate(data.queries) if set(q["relevant"]) <= present]
    queries, qvecs = [data.queries[i] for i in keep], np.asarray(data.query_vectors)[keep]
    report: dict = {"machine": machine(), "chunks": len(data.chunks), "queries": len(queries), "budgets": {}}
    with real_index(data, "lexbudget") as (db, conninfo):
        # Unfiltered searches read postings and ignore the budget: take the exact SQL scorer that filtered
        # searches use, as a lexicon without postings makes every search do.
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute("UPDATE lexicon SET postings = NULL")
        data.queries, data.query_vectors = queries, qvecs
        for budget in (int(b) for b in args.budgets.split(",")):
            lexical = LexicalIndex(LexicalOptions(postings_budget=budget or 10**12))
            searcher = Searcher(db, PrecomputedQuestions(), ef_search=100, lexical=lexical)  # type: ignore[arg-type]
            row = measure(searcher, data)
            report["budgets"][budget or "unbounded"] = row
            log.info("budget %s: %s", budget or "unbounded", row)
    emit(report, args.json_out)


if __name__ == "__main__":
    main()
