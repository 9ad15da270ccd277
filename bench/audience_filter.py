"""Search with an audience filter at 100k chunks: p95 latency and Recall@10 of the allowed content against
exact search, for readers who may see 90%, 50% and 5% of the chunks, next to the unfiltered figures.

    nice -n 10 .venv/bin/python -m bench.audience_filter --chunks 100000 [--ef 100,200,400] [--partial-real]
        [--json-out bench/results/audience_filter.json]

The index is bench/scale_data.py's (real aws-docs-qa chunks, synthetic rows beyond them). Each article gets
one of 20 Slack-group audiences (S0G00..S0G19, by a hash of its id, ~5% of the chunks each); a reader
holding 18, 10 or 1 of the groups is excluded from ~10%, 50% or 95% of the chunks. Recall@10 is, for dense,
against the exact top 10 among the chunks that reader may see (numpy over all vectors), and for hybrid
against the same fused ranking with both branches exact (`search_vector(exhaustive=True)`: every allowed
vector scored, BM25 by the exact scorer); every hit of every branch is checked to be readable. The small
audience is also searched without exact ranking (HNSW iterative scan and postings), the strategy the
product would otherwise use. The searches alternate between the unfiltered and the
filtered readers question by question, so load on the machine hits them alike (ratios, not lone times).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
import psycopg

from bench.common import (
    bench_server,
    drop_leftovers,
    emit,
    libpq_url,
    load_aws,
    load_aws_partial,
    machine,
    scratch_database,
    summarize_ms,
)
from bench.scale_data import finish_index, load_index, row_of_chunk, synthesize
from bench.scale_search import K, PrecomputedQuestions, exact_top, recall_at_k
from retrieval.access import PUBLIC, ReaderScope
from retrieval.db import Database
from retrieval.search import Searcher
from retrieval.spaces import create_space

log = logging.getLogger("bench.audience")
GROUPS = 20
READERS = {"excludes_10pct": 18, "excludes_50pct": 10, "excludes_95pct": 1}
SMALL = "excludes_95pct"


def pgvector_settings(conninfo: str) -> dict[str, str]:
    with psycopg.connect(conninfo) as conn:
        version = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
        conn.execute("LOAD 'vector'")  # its settings exist in a session once the library is loaded
        tuples = conn.execute("SELECT current_setting('hnsw.max_scan_tuples', true)").fetchone()
    return {"version": version[0] if version else "?", "hnsw.max_scan_tuples": tuples[0] if tuples else "?",
            "hnsw.iterative_scan (filtered searches)": "relaxed_order"}


def assign_audiences(conninfo: str) -> None:
    """One group per article, by a hash of its external id, copied onto its chunks and vectors (before the
    HNSW build, as a sync writes them with the rows)."""
    group = f"'S0G' || lpad((abs(hashtext(a.external_id)) % {GROUPS})::text, 2, '0')"
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f"UPDATE articles a SET audience = ARRAY[{group}]")
        conn.execute("UPDATE chunks c SET audience = a.audience FROM articles a WHERE a.id = c.article_id")
        conn.execute("UPDATE embeddings e SET audience = c.audience FROM chunks c WHERE c.id = e.chunk_id")


def run(args: argparse.Namespace) -> dict:
    data = load_aws_partial() if args.partial_real else load_aws()
    scale = synthesize(data, args.chunks)
    queries, qvecs = data.queries, np.asarray(data.query_vectors)
    server = bench_server()
    for name in drop_leftovers(server, ("audience",)):
        log.warning("dropped %s left by an interrupted run", name)
    report: dict = {"chunks": args.chunks, "real_chunks": len(data.chunks), "machine": machine(),
                    "queries": len(queries), "groups": GROUPS, "readers": {}}
    with scratch_database(server, "audience") as url:
        conninfo = libpq_url(url)
        db = Database.from_url(url.set(drivername="postgresql+psycopg").render_as_string(hide_password=False))
        with db.engine.begin() as conn:
            space = create_space(conn, "local", "all-MiniLM-L6-v2", 384, "active")
        report["load"] = load_index(conninfo, data, scale, space.id)
        assign_audiences(conninfo)
        finish_index(db, conninfo, space, vacuum=True)
        chunk_row = row_of_chunk(conninfo, data, scale)
        with psycopg.connect(conninfo) as conn:
            audience_of = dict(conn.execute("SELECT id, audience[1] FROM chunks").fetchall())
        row_group = np.empty(len(scale.vectors), dtype=object)
        for cid, row in chunk_row.items():
            row_group[row] = audience_of[cid]
        scopes = {name: ReaderScope(frozenset({PUBLIC, *(f"S0G{i:02d}" for i in range(n))}), name)
                  for name, n in READERS.items()}
        masks = {name: np.isin(row_group, sorted(s.tokens)) for name, s in scopes.items()}
        kths = {None: exact_top(scale.vectors, qvecs)}
        kths.update({name: exact_top(scale.vectors, qvecs, mask) for name, mask in masks.items()})
        searcher = Searcher(db, PrecomputedQuestions(), mode="dense")  # type: ignore[arg-type]
        # The same reader searched the other way round: the small audience through the HNSW iterative scan
        # and the postings (no exact ranking), to compare the two strategies under the same load.
        hnsw_only = Searcher(db, PrecomputedQuestions(), mode="dense", exact_filter_max_rows=0)  # type: ignore[arg-type]
        arms: dict[str, tuple[Searcher, str | None]] = {"unfiltered": (searcher, None)}
        arms.update({name: (searcher, name) for name in READERS})
        arms[f"{SMALL}_without_exact_ranking"] = (hnsw_only, SMALL)
        report["pgvector"] = pgvector_settings(conninfo)
        # Hybrid's reference: the same fused ranking with both branches exact (numpy cannot score BM25).
        reference = {scope: [{h.chunk_id for h in searcher.search_vector(
            q["text"], v, k=K, mode="hybrid", audience=scopes.get(scope or ""), exhaustive=True).hits}
            for q, v in zip(queries, qvecs, strict=True)] for scope in [None, *READERS]}
        for ef, mode in [(ef, mode) for ef in args.ef for mode in ("dense", "hybrid")]:
            for s in (searcher, hnsw_only):
                s.ef_search = ef
            for q, v in zip(queries[:10], qvecs[:10], strict=True):  # warm caches and the audience counts
                for s, scope_name in arms.values():
                    s.search_vector(q["text"], v, k=K, mode=mode, audience=scopes.get(scope_name or ""))
            times: dict[str, list[float]] = {arm: [] for arm in arms}
            recalls: dict[str, list[float]] = {arm: [] for arm in arms}
            leaks = 0
            for i, (q, v) in enumerate(zip(queries, qvecs, strict=True)):
                for arm, (s, scope_name) in arms.items():
                    scope = scopes.get(scope_name or "")
                    result = s.search_vector(q["text"], v, k=K, mode=mode, audience=scope)  # type: ignore[arg-type]
                    times[arm].append(result.timings_ms["search"])
                    rows = [chunk_row[h.chunk_id] for h in result.hits]
                    if scope_name is not None:
                        leaks += sum(not masks[scope_name][r] for r in rows)
                    if mode == "dense":
                        kth = kths[scope_name][i]
                        recalls[arm].append(recall_at_k(rows, v, kth, scale.vectors))
                    else:
                        recalls[arm].append(len(reference[scope_name][i] & {h.chunk_id for h in result.hits}) / K)
            unfiltered_p95 = summarize_ms(times["unfiltered"])["p95"]
            for arm, (_s, scope_name) in arms.items():
                entry = {**summarize_ms(times[arm]), "recall@10_vs_exact": round(float(np.mean(recalls[arm])), 4)}
                if scope_name is not None:
                    entry["excluded_share"] = round(1 - float(masks[scope_name].mean()), 3)
                    entry["p95_vs_unfiltered"] = round(entry["p95"] / unfiltered_p95, 2)
                report["readers"].setdefault(f"ef_search={ef}", {}).setdefault(arm, {})[mode] = entry
                log.info("ef_search=%d %s %s: %s", ef, mode, arm, entry)
            report.setdefault("unreadable_hits", {})[f"ef_search={ef} {mode}"] = leaks
        db.close()
    return report


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--ef", type=lambda s: [int(x) for x in s.split(",")], default=[100, 200, 400],
                        help="hnsw.ef_search values (200 is KBBOT_HNSW_EF_SEARCH's default)")
    parser.add_argument("--partial-real", action="store_true",
                        help="use the real vectors embedded so far while the cache is still being built")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    emit(run(args), args.json_out)


if __name__ == "__main__":
    sys.exit(main())
