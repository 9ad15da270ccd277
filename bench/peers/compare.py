"""kbbot side by side with langchain-postgres and llama-index on the same machine, the same embedded
PostgreSQL and the same precomputed aws-docs-qa embeddings, in one run.

    nice -n 10 .venv/bin/python -m bench.peers.compare --peer-python /work/bench-venv/bin/python \
        [--json-out bench/results/peers.json]

The peers live only in their own virtualenv (see bench/peers/README.md), never in kbbot's dependencies.
Each system gets its own database, dropped at the end. Measured per system: ingestion (rows/s from
precomputed vectors to a searchable index: rows, HNSW index and lexical index), dense and hybrid query
latency at k=10 (wall time of the call, question vector precomputed; timed in rounds of the 100 questions
that the systems take in turns, rounds.py, so that the machine's load falls on all of them alike), and
article-level Recall@10,
nDCG@10 and MRR@10 over the 100 questions, with 50 chunks retrieved per question and collapsed to
articles in rank order for every system alike (retrieval/evaluation.py scores all three).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bench.common import (
    bench_server,
    drop_leftovers,
    libpq_url,
    load_aws,
    load_aws_partial,
    machine,
    scratch_database,
    summarize_ms,
)
from bench.peers import rounds
from bench.scale_data import finish_index, load_index, synthesize
from bench.scale_search import PrecomputedQuestions
from retrieval.db import Database
from retrieval.evaluation import ndcg, rank_articles, recall, reciprocal_rank
from retrieval.search import Searcher
from retrieval.spaces import create_space

log = logging.getLogger("bench.peers")
REPO = Path(__file__).resolve().parents[2]
DEPTH = 50


RoundFn = Callable[[str], list[float]]


def start_kbbot(server, data, stack: contextlib.ExitStack) -> tuple[dict, RoundFn]:  # type: ignore[no-untyped-def]
    url = stack.enter_context(scratch_database(server, "peer_kbbot"))
    db = Database.from_url(url.set(drivername="postgresql+psycopg").render_as_string(hide_password=False))
    stack.callback(db.close)
    with db.engine.begin() as conn:
        space = create_space(conn, "local", "all-MiniLM-L6-v2", 384, "active")
    scale = synthesize(data, len(data.chunks))  # every real chunk, no synthetic ones
    started = time.perf_counter()
    load = load_index(libpq_url(url), data, scale, space.id)
    finish_index(db, libpq_url(url), space)
    ingest_s = time.perf_counter() - started
    searcher = Searcher(db, PrecomputedQuestions(), ef_search=100)  # type: ignore[arg-type]
    out: dict = {"framework": "kbbot", "rows": load["rows"], "load_s": load["seconds"],
                 "ingest_s": round(ingest_s, 2), "rankings": {}}
    for mode in ("dense", "hybrid"):
        out["rankings"][mode] = [
            [h.external_id for h in searcher.search_vector(q["text"], v, k=DEPTH, mode=mode).hits]  # type: ignore[arg-type]
            for q, v in zip(data.queries, data.query_vectors, strict=True)
        ]

    def one_round(mode: str) -> list[float]:
        return rounds.timed_round(lambda i: searcher.search_vector(
            data.queries[i]["text"], data.query_vectors[i], k=10, mode=mode), len(data.queries))  # type: ignore[arg-type]

    return out, one_round


def start_peer(server, module: str, prefix: str, peer_python: str, urls: dict[str, str],  # type: ignore[no-untyped-def]
               stack: contextlib.ExitStack) -> tuple[dict, RoundFn]:
    """Start a peer: it builds its index, writes its ingestion figures and rankings, then serves rounds."""
    url = stack.enter_context(scratch_database(server, prefix))
    out = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "result.json"
    # Run from the repository root so that the peers' venv finds `bench.peers` without kbbot installed.
    argv = [peer_python, "-m", f"bench.peers.{module}", "--out", str(out)]
    for flag, driver in urls.items():
        argv += [flag, url.set(drivername=driver).render_as_string(hide_password=False)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    log.info("running %s", module)
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=REPO)
    stack.callback(_stop, proc)  # before its database is dropped (the stack unwinds in reverse)
    rounds.wait_ready(proc.stdout)
    return json.loads(out.read_text()), lambda mode: rounds.request_round(proc.stdin, proc.stdout, mode)


def _stop(proc: subprocess.Popen) -> None:  # type: ignore[type-arg]
    with contextlib.suppress(BrokenPipeError, OSError):
        proc.stdin.write("quit\n")  # type: ignore[union-attr]
        proc.stdin.flush()  # type: ignore[union-attr]
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def interleaved_latency(systems: dict[str, RoundFn], count: int) -> dict[str, dict[str, list[float]]]:
    """`count` timed rounds per system and mode, the systems taking turns (rotated each round) so that all
    of them are measured over the same minutes; a first round warms up and is not counted."""
    names = list(systems)
    latency: dict[str, dict[str, list[float]]] = {n: {"dense": [], "hybrid": []} for n in names}
    for r in range(count + 1):
        for mode in ("dense", "hybrid"):
            for name in names[r % len(names):] + names[:r % len(names)]:
                times = systems[name](mode)
                if r:
                    latency[name][mode].extend(times)
        log.info("latency round %d of %d done", r, count)
    return latency


def score(result: dict, queries: list[dict]) -> dict:
    summary: dict = {"rows": result["rows"], "ingest_s": result["ingest_s"],
                     "ingest_rows_per_s": round(result["rows"] / result["ingest_s"]),
                     "load_rows_per_s": round(result["rows"] / result["load_s"])}
    for mode in ("dense", "hybrid"):
        ranked = [rank_articles(r) for r in result["rankings"][mode]]
        rel = [q["relevant"] for q in queries]
        summary[mode] = {
            **summarize_ms(result["latency_ms"][mode]),
            "recall@10": round(float(np.mean([recall(r, g, 10) for r, g in zip(ranked, rel, strict=True)])), 3),
            "ndcg@10": round(float(np.mean([ndcg(r, g, 10) for r, g in zip(ranked, rel, strict=True)])), 3),
            "mrr@10": round(float(np.mean([reciprocal_rank(r, g, 10) for r, g in zip(ranked, rel, strict=True)])), 3),
        }
    return summary


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peer-python", default="/work/bench-venv/bin/python",
                        help="python of the virtualenv holding langchain-postgres and llama-index")
    parser.add_argument("--only", default="kbbot,langchain,llama-index")
    parser.add_argument("--json-out", type=Path)
    parser.add_argument("--rounds", type=int, default=5,
                        help="timed rounds of the 100 questions per system and mode, interleaved")
    parser.add_argument("--partial-real", action="store_true",
                        help="use the chunks embedded so far (the cache is still being built)")
    args = parser.parse_args()
    if not Path(args.peer_python).is_file():
        raise SystemExit(f"{args.peer_python} does not exist: create the peers' virtualenv first "
                         "(bench/peers/README.md) or pass --peer-python.")
    data = load_aws_partial() if args.partial_real else load_aws()
    if args.partial_real:
        # Only questions whose gold articles are in the embedded part can be answered by anyone.
        present = {c["article"] for c in data.chunks}
        keep = [i for i, q in enumerate(data.queries) if set(q["relevant"]) <= present]
        data.queries = [data.queries[i] for i in keep]
        data.query_vectors = np.asarray(data.query_vectors)[keep]
        log.info("partial cache: %d chunks, %d answerable questions", len(data.chunks), len(keep))
    server = bench_server()
    for name in drop_leftovers(server, ("peer_kbbot", "peer_langchain", "peer_llama")):
        log.warning("dropped %s left by an interrupted run", name)
    wanted = args.only.split(",")
    with contextlib.ExitStack() as stack:
        started: dict[str, tuple[dict, RoundFn]] = {}
        if "kbbot" in wanted:
            started["kbbot"] = start_kbbot(server, data, stack)
        if "langchain" in wanted:
            started["langchain-postgres"] = start_peer(
                server, "langchain_peer", "peer_langchain", args.peer_python,
                {"--url": "postgresql+psycopg"}, stack)
        if "llama-index" in wanted:
            started["llama-index"] = start_peer(
                server, "llamaindex_peer", "peer_llama", args.peer_python,
                {"--url": "postgresql+psycopg2", "--async-url": "postgresql+asyncpg"}, stack)
        latency = interleaved_latency({name: fn for name, (_, fn) in started.items()}, args.rounds)
    raw = {name: {**result, "latency_ms": latency[name]} for name, (result, _) in started.items()}
    report: dict = {"machine": machine(), "chunks": len(data.chunks), "queries": len(data.queries),
                    "latency": f"k=10, {args.rounds} rounds per system and mode, interleaved",
                    "cache": data.manifest,
                    "systems": {name: score(r, data.queries) for name, r in raw.items()}}
    systems = report["systems"]
    peers = [s for n, s in systems.items() if n != "kbbot"]
    if "kbbot" in systems and peers:
        kb = systems["kbbot"]
        fastest_ingest = max(p["ingest_rows_per_s"] for p in peers)
        report["ratios"] = {
            "ingest_vs_faster_peer": round(kb["ingest_rows_per_s"] / fastest_ingest, 1),
            **{f"{mode}_{pct}_vs_faster_peer": round(min(p[mode][pct] for p in peers) / kb[mode][pct], 1)
               for mode in ("dense", "hybrid") for pct in ("p50", "p95")},
        }
    text = json.dumps(report, indent=2)
    print(text)
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(text + "\n")


if __name__ == "__main__":
    main()
