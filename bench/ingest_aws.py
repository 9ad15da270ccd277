"""Issue 2 benchmark on the aws-docs-qa KB (../shared/data/aws-docs-qa).

    nice -n 5 .venv/bin/python -m bench.ingest_aws [--subset 100] [--rounds 2] [--json-out FILE]

(a) throughput: kbbot's ingest of `--subset` articles next to the bare embedder on exactly the same chunk
    texts, alternating rounds in one process (ratios, because these machines are shared and noisy);
(b) a no-change re-sync of the whole corpus, through the real CLI in a child process;
(c) Recall@5/@10, nDCG@10, MRR@10 for dense, lexical and hybrid (and hybrid branch weights);
(d) search latency p50/p95 without the question's embedding;
(e) peak RSS of an ingest process and of a query process (children, so each is measured alone).

The full index lives in ~/.cache/kbbot-bench/aws (KBBOT_BENCH_DIR) for the other benchmarks. It is built by
kbbot's own Indexer (chunking, hashing, COPY, HNSW, lexicon); when the shared embedding cache of
bench/common.py is complete, vectors for identical chunk texts come from it instead of being computed
again (the model is deterministic, so the index is the same; throughput is measured in (a), not here).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "aws-docs-qa"
BENCH_DIR = Path(os.environ.get("KBBOT_BENCH_DIR", Path.home() / ".cache" / "kbbot-bench"))
MAX_TOKENS = 200


def kbbot(*args: str, data_dir: Path) -> tuple[dict, float, int]:
    """Run the real CLI in a child process; return its JSON, wall time and the child's peak RSS (KiB).

    A fresh wrapper process per call, because RUSAGE_CHILDREN keeps the maximum over all children."""
    env = {**os.environ, "KBBOT_DATA_DIR": str(data_dir), "KBBOT_LOG_LEVEL": "WARNING"}
    wrapper = (
        "import resource, subprocess, sys; "
        "p = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
        "sys.stdout.write(p.stdout); sys.stderr.write(p.stderr); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
        "sys.exit(p.returncode)"
    )
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", wrapper, str(REPO / ".venv/bin/kbbot"), *args, "--json"],
                         env=env, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - started
    peak_kib = int(out.stderr.strip().splitlines()[-1])
    return json.loads(out.stdout), wall, peak_kib


class CachedEmbedder:
    """The real embedder, answering from precomputed vectors where the exact input text is known."""

    def __init__(self, inner, cache: dict[str, np.ndarray]) -> None:  # type: ignore[no-untyped-def]
        self.inner, self.cache = inner, cache
        self.provider, self.model, self.max_tokens = inner.provider, inner.model, inner.max_tokens
        self.hits = self.misses = 0

    @property
    def dimension(self) -> int:
        return self.inner.dimension

    def embed_documents(self, texts):  # type: ignore[no-untyped-def]
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        missing = [i for i, t in enumerate(texts) if t not in self.cache]
        for i, text in enumerate(texts):
            if text in self.cache:
                out[i] = self.cache[text]
        if missing:
            out[missing] = self.inner.embed_documents([texts[i] for i in missing])
        self.hits += len(texts) - len(missing)
        self.misses += len(missing)
        return out

    def embed_query(self, text: str):  # type: ignore[no-untyped-def]
        return self.inner.embed_query(text)

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)


def load_articles(limit: int | None = None) -> list:  # type: ignore[type-arg]
    from retrieval.sources import JsonlSource
    from retrieval.types import Article

    out = []
    for item in JsonlSource("aws", DATA / "corpus.jsonl").iter_articles():
        if isinstance(item, Article):
            out.append(item)
            if limit and len(out) >= limit:
                break
    return out


def throughput(subset: int, rounds: int) -> dict:
    """(a): kbbot's ingest vs the bare embedder on the same chunk texts, rounds alternated."""
    from bench.common import local_embedder
    from retrieval.chunking import chunk_article
    from retrieval.db import Database
    from retrieval.settings import load_settings
    from retrieval.sources.base import Source
    from retrieval.sync import Indexer

    articles = load_articles(subset)

    class ListSource(Source):
        kind = "bench"

        def iter_articles(self):  # type: ignore[no-untyped-def]
            yield from articles

    embedder = local_embedder()
    embedder.embed_documents(["warm up the model and the thread pool"] * 64)
    texts = [d.embedding_input(a.title) for a in articles
             for d in chunk_article(a.text, max_tokens=MAX_TOKENS, count_tokens=embedder.count_tokens)]
    results: dict[str, list[float]] = {"bare": [], "kbbot": []}
    with tempfile.TemporaryDirectory() as tmp:
        db = Database.open(load_settings(_env_file=None, data_dir=Path(tmp)).storage)
        for n in range(rounds):
            started = time.perf_counter()
            for i in range(0, len(texts), 256):
                embedder.embed_documents(texts[i:i + 256])
            results["bare"].append(time.perf_counter() - started)
            with db.engine.begin() as conn:  # an empty index again: every round does the full work
                from sqlalchemy import text

                conn.execute(text("TRUNCATE sources, articles, chunks, embeddings, embedding_spaces, "
                                  "lexicon, lexicon_stats, sync_runs CASCADE"))
                conn.execute(text(f"DROP INDEX IF EXISTS embeddings_hnsw_space_{n}"))
            started = time.perf_counter()
            run = Indexer(db, embedder, chunk_max_tokens=MAX_TOKENS).sync([ListSource("aws")])
            results["kbbot"].append(time.perf_counter() - started)
            assert run.chunks_embedded == len(texts), (run.chunks_embedded, len(texts))
        db.close()
    bare, ours = float(np.median(results["bare"])), float(np.median(results["kbbot"]))
    return {
        "articles": len(articles), "chunks": len(texts),
        "bare_embedder_chunks_per_s": round(len(texts) / bare, 1),
        "kbbot_ingest_chunks_per_s": round(len(texts) / ours, 1),
        "overhead_pct": round((ours / bare - 1) * 100, 1),
        "rounds_s": {k: [round(v, 1) for v in vals] for k, vals in results.items()},
    }


def build_full_index(data_dir: Path) -> dict:
    """The whole corpus through kbbot's Indexer; vectors from the shared cache where available."""
    from bench.common import local_embedder
    from retrieval.db import Database
    from retrieval.settings import load_settings
    from retrieval.sources import JsonlSource
    from retrieval.sync import Indexer

    embedder = local_embedder()
    cache: dict[str, np.ndarray] = {}
    try:
        from bench.peers import cache_format

        cached = cache_format.load()
        cache = {c["input"]: cached.vectors[i] for i, c in enumerate(cached.chunks)}
    except (ImportError, FileNotFoundError, ValueError) as exc:
        print(f"no embedding cache ({exc}); embedding everything", flush=True)
    cached_embedder = CachedEmbedder(embedder, cache)
    db = Database.open(load_settings(_env_file=None, data_dir=data_dir).storage)
    started = time.perf_counter()
    run = Indexer(db, cached_embedder, chunk_max_tokens=MAX_TOKENS).sync(
        [JsonlSource("aws", DATA / "corpus.jsonl")], trigger="bench")
    db.close()
    return {"wall_s": round(time.perf_counter() - started, 1), "added": run.added, "failed": run.failed,
            "chunks": run.chunks_embedded, "vectors_from_cache": cached_embedder.hits,
            "vectors_computed": cached_embedder.misses}


def quality(data_dir: Path) -> dict:
    from bot.services import Services
    from retrieval.evaluation import evaluate, load_labelled_queries
    from retrieval.search import FusionWeights
    from retrieval.settings import load_settings

    services = Services(load_settings(_env_file=None, data_dir=data_dir))
    searcher = services.searcher()
    queries = load_labelled_queries(DATA / "queries.jsonl", DATA / "qrels.tsv")
    evaluate(searcher, queries[:10], k=10)  # warm caches and the model
    out = {}
    for mode in ("dense", "lexical", "hybrid"):
        out[mode] = evaluate(searcher, queries, k=10, mode=mode).summary()  # type: ignore[arg-type]
    for dense_w, lexical_w in ((1.0, 0.5), (1.0, 2.0), (2.0, 1.0)):
        searcher.weights = FusionWeights(dense_w, lexical_w)
        out[f"hybrid dense={dense_w:g} lexical={lexical_w:g}"] = evaluate(searcher, queries, k=10,
                                                                         mode="hybrid").summary()
    services.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--subset", type=int, default=100, help="articles for the throughput comparison")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--only-throughput", action="store_true")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    if not (DATA / "corpus.jsonl").exists():
        print(f"skipped: {DATA} is absent")
        return
    report: dict[str, object] = {}
    if not args.skip_throughput:
        report["throughput"] = throughput(args.subset, args.rounds)
        print(json.dumps(report["throughput"], indent=2), flush=True)
    if not args.only_throughput:
        data_dir = BENCH_DIR / "aws"
        report["full_index"] = build_full_index(data_dir)
        print(json.dumps(report["full_index"], indent=2), flush=True)
        run, wall, _ = kbbot("ingest", str(DATA / "corpus.jsonl"), "--name", "aws", data_dir=data_dir)
        report["no_change_resync"] = {"sync_s": run["duration_s"], "command_wall_s": round(wall, 2),
                                      "unchanged": run["unchanged"], "chunks_embedded": run["chunks_embedded"]}
        print(json.dumps(report["no_change_resync"], indent=2), flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            subset = Path(tmp) / "subset.jsonl"
            with (DATA / "corpus.jsonl").open() as src, subset.open("w") as dst:
                for _, line in zip(range(300), src, strict=False):
                    dst.write(line)
            run, wall, peak = kbbot("ingest", str(subset), data_dir=Path(tmp) / "d")
            report["ingest_process"] = {"articles": run["added"], "chunks": run["chunks_embedded"],
                                        "wall_s": round(wall, 1), "peak_rss_mib": round(peak / 1024)}
        _, wall, peak = kbbot("ask", "How do I enable versioning on an S3 bucket?", data_dir=data_dir)
        report["query_process"] = {"wall_s": round(wall, 2), "peak_rss_mib": round(peak / 1024)}
        print(json.dumps({k: report[k] for k in ("ingest_process", "query_process")}, indent=2), flush=True)
        report["quality"] = quality(data_dir)
        print(json.dumps(report["quality"], indent=2), flush=True)
    if args.json_out:
        # One results file for both parts: a --skip-throughput or --only-throughput run replaces its own
        # keys and keeps the other part's.
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        previous = json.loads(args.json_out.read_text()) if args.json_out.is_file() else {}
        args.json_out.write_text(json.dumps({**previous, **report}, indent=2, default=str))


if __name__ == "__main__":
    main()
