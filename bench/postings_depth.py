"""What the BM25 postings (retrieval/lexical_index.py) cost and give on the real aws-docs-qa index, one index, one
run: for each postings depth, the rebuild time and lexical / hybrid article-level Recall@10, nDCG@10 and
latency; the exact SQL scorer they replaced (the path filtered searches still take) as the reference; and
the per-search cost of a delta (chunks written since the last rebuild, scored exactly by each search).

    nice -n 10 .venv/bin/python -m bench.postings_depth [--depths 1000,2000,5000,10000]
        [--deltas 0,250,1000,2000] [--json-out bench/results/postings_depth.json]

A delta of n chunks is made by moving `lexicon_stats.max_chunk_id` back by n: to a search those chunks are
exactly what a sync writes after the rebuild. The database is created on the benchmark's embedded
PostgreSQL and dropped at the end.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np
import psycopg

from bench.common import emit, load_aws, machine, summarize_ms, timed_round
from bench.scale_data import real_index
from bench.scale_search import PrecomputedQuestions
from retrieval.evaluation import ndcg, rank_articles, recall
from retrieval.lexical_index import LexicalIndex, LexicalOptions
from retrieval.search import Searcher

log = logging.getLogger("bench.postings")
DEPTH = 50  # chunks retrieved per question, collapsed to articles, as in bench/peers/compare.py


def measure(searcher: Searcher, data, repeats: int = 2) -> dict:  # type: ignore[no-untyped-def]
    """Quality from the first round, latency at k=10 from the later ones (prepared statements warm)."""
    row: dict = {}
    for mode in ("lexical", "hybrid"):
        recalls, ndcgs, times = [], [], []
        for q, v in zip(data.queries, data.query_vectors, strict=True):
            ranked = rank_articles([h.external_id for h in searcher.search_vector(
                q["text"], v, k=DEPTH, mode=mode).hits])  # type: ignore[arg-type]
            recalls.append(recall(ranked, q["relevant"], 10))
            ndcgs.append(ndcg(ranked, q["relevant"], 10))
        for _ in range(repeats):
            times += timed_round(lambda i, mode=mode: searcher.search_vector(
                data.queries[i]["text"], data.query_vectors[i], k=10, mode=mode), len(data.queries))  # type: ignore[arg-type]
        row[mode] = {"recall@10": round(float(np.mean(recalls)), 3), "ndcg@10": round(float(np.mean(ndcgs)), 3),
                     **summarize_ms(times)}
    return row


def rebuild(conninfo: str, lexical: LexicalIndex) -> float:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        started = time.perf_counter()
        lexical.refresh(conn)
        seconds = time.perf_counter() - started
        conn.execute("VACUUM ANALYZE lexicon")
    return round(seconds, 2)


def rebuild_before_newest(conninfo: str, lexical: LexicalIndex, delta: int) -> None:
    """The lexicon as a rebuild would have left it before the newest `delta` chunks were written."""
    with psycopg.connect(conninfo) as conn, conn.transaction():
        conn.execute(
            "WITH covered AS (SELECT id, tsv FROM chunks ORDER BY id "
            "  LIMIT greatest((SELECT count(*) FROM chunks) - %s, 0)) "
            "UPDATE lexicon_stats SET doc_count = (SELECT count(*) FROM covered), "
            "avg_doc_len = (SELECT avg(length(tsv)) FROM covered), "
            "max_chunk_id = (SELECT max(id) FROM covered)", (delta,))
        lexical.rebuild_postings(conn)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--depths", default="1000,2000,5000,10000")
    parser.add_argument("--deltas", default="0,250,1000,2000")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    data = load_aws()
    default_depth = LexicalOptions().postings_depth
    report: dict = {"machine": machine(), "chunks": len(data.chunks), "queries": len(data.queries),
                    "default_depth": default_depth, "depths": {}, "deltas": {}}
    with real_index(data, "postings") as (db, conninfo):
        def searcher_for(lexical: LexicalIndex) -> Searcher:
            return Searcher(db, PrecomputedQuestions(), ef_search=100, lexical=lexical)  # type: ignore[arg-type]

        # The reference: BM25 scored from the tsvectors in SQL, as before postings (and for filtered searches).
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute("UPDATE lexicon SET postings = NULL")
        report["exact_sql"] = measure(searcher_for(LexicalIndex()), data)
        log.info("exact SQL scorer: %s", report["exact_sql"])

        for depth in (int(d) for d in args.depths.split(",")):
            lexical = LexicalIndex(LexicalOptions(postings_depth=depth))
            row = {"rebuild_s": rebuild(conninfo, lexical), **measure(searcher_for(lexical), data)}
            report["depths"][depth] = row
            log.info("depth %d: %s", depth, row)

        lexical = LexicalIndex()
        rebuild(conninfo, lexical)
        for delta in (int(d) for d in args.deltas.split(",")):
            rebuild_before_newest(conninfo, lexical, delta)
            row = measure(searcher_for(lexical), data)
            report["deltas"][delta] = row
            log.info("delta of %d chunks: %s", delta, row)
    emit(report, args.json_out)


if __name__ == "__main__":
    main()
