"""Issue 2 benchmark on the aws-docs-qa KB (../shared/data/aws-docs-qa): ingestion throughput next to the
bare embedder, no-change re-sync, retrieval quality per search mode, search latency, peak memory.

    nice -n 10 .venv/bin/python bench/ingest_aws.py [--subset 300] [--fresh] [--json-out FILE]

The full index is kept in ~/.cache/kbbot-bench/aws (KBBOT_BENCH_DIR) so other benchmarks (Slack load,
scale) can reuse it; `--fresh` rebuilds it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = REPO.parent / "shared" / "data" / "aws-docs-qa"
BENCH_DIR = Path(os.environ.get("KBBOT_BENCH_DIR", Path.home() / ".cache" / "kbbot-bench"))


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


def throughput(subset: int) -> dict:
    """kbbot's ingest of `subset` articles vs the bare embedder on exactly the same chunk texts."""
    import tempfile

    from retrieval.chunking import chunk_article
    from retrieval.db import Database
    from retrieval.embeddings import LocalEmbedder
    from retrieval.settings import load_settings
    from retrieval.sources import JsonlSource
    from retrieval.sources.base import Source
    from retrieval.sync import Indexer
    from retrieval.types import Article

    articles = [a for a in JsonlSource("aws", DATA / "corpus.jsonl").iter_articles()
                if isinstance(a, Article)][:subset]

    class ListSource(Source):
        kind = "bench"

        def iter_articles(self):  # type: ignore[no-untyped-def]
            yield from articles

    embedder = LocalEmbedder()
    embedder.embed_documents(["warm up the model and the thread pool"] * 64)
    max_tokens = 200
    started = time.perf_counter()
    texts = [d.embedding_input(a.title) for a in articles
             for d in chunk_article(a.text, max_tokens=max_tokens, count_tokens=embedder.count_tokens)]
    chunk_s = time.perf_counter() - started
    results: dict[str, list[float]] = {"bare": [], "kbbot": []}
    with tempfile.TemporaryDirectory() as tmp:
        for _round in range(2):  # alternate, so machine noise hits both sides alike
            started = time.perf_counter()
            for i in range(0, len(texts), 256):
                embedder.embed_documents(texts[i:i + 256])
            results["bare"].append(time.perf_counter() - started)
            db = Database.open(load_settings(_env_file=None, data_dir=Path(tmp) / f"d{_round}"))
            started = time.perf_counter()
            run = Indexer(db, embedder, chunk_max_tokens=max_tokens).sync([ListSource("aws")])
            results["kbbot"].append(time.perf_counter() - started)
            assert run.chunks_embedded == len(texts), (run.chunks_embedded, len(texts))
            db.close()
    bare, ours = min(results["bare"]), min(results["kbbot"])
    return {
        "articles": len(articles), "chunks": len(texts), "chunking_s": round(chunk_s, 2),
        "bare_embedder_chunks_per_s": round(len(texts) / bare, 1),
        "kbbot_ingest_chunks_per_s": round(len(texts) / ours, 1),
        "overhead_pct": round((ours / bare - 1) * 100, 1), "rounds": results,
    }


def quality(data_dir: Path) -> dict:
    from bot.services import Services
    from retrieval.evaluation import evaluate, load_labelled_queries
    from retrieval.search import FusionWeights
    from retrieval.settings import load_settings

    services = Services(load_settings(_env_file=None, data_dir=data_dir))
    searcher = services.searcher()
    queries = load_labelled_queries(DATA / "queries.jsonl", DATA / "qrels.tsv")
    out = {}
    for mode in ("dense", "lexical", "hybrid"):
        report = evaluate(searcher, queries, k=10, mode=mode)  # type: ignore[arg-type]
        out[mode] = report.summary()
    for dense_w, lexical_w in ((1.0, 0.5), (1.0, 2.0), (1.0, 3.0)):
        searcher.weights = FusionWeights(dense_w, lexical_w)
        report = evaluate(searcher, queries, k=10, mode="hybrid")
        out[f"hybrid d{dense_w:g}/l{lexical_w:g}"] = report.summary()
    services.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--subset", type=int, default=300, help="articles for the throughput comparison")
    parser.add_argument("--fresh", action="store_true", help="rebuild the full index")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    if not (DATA / "corpus.jsonl").exists():
        print(f"skipped: {DATA} is absent")
        return
    report: dict[str, object] = {}
    if not args.skip_throughput:
        report["throughput"] = throughput(args.subset)
        print(json.dumps(report["throughput"], indent=2), flush=True)
    data_dir = BENCH_DIR / "aws"
    if args.fresh and data_dir.exists():
        import shutil

        shutil.rmtree(data_dir)
    corpus = str(DATA / "corpus.jsonl")
    run, wall, peak = kbbot("ingest", corpus, "--name", "aws", data_dir=data_dir)
    report["full_ingest"] = {"run": run, "wall_s": round(wall, 1), "peak_rss_mib": round(peak / 1024)}
    print(json.dumps(report["full_ingest"], indent=2, default=str), flush=True)
    run, wall, _ = kbbot("ingest", corpus, "--name", "aws", data_dir=data_dir)
    report["no_change_resync"] = {"sync_s": run["duration_s"], "command_wall_s": round(wall, 2),
                                  "unchanged": run["unchanged"], "chunks_embedded": run["chunks_embedded"]}
    print(json.dumps(report["no_change_resync"], indent=2), flush=True)
    _, wall, peak = kbbot("ask", "How do I enable versioning on an S3 bucket?", data_dir=data_dir)
    report["query_process"] = {"wall_s": round(wall, 2), "peak_rss_mib": round(peak / 1024)}
    report["quality"] = quality(data_dir)
    print(json.dumps(report["quality"], indent=2), flush=True)
    if args.json_out:
        args.json_out.write_text(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
