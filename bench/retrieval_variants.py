"""Search scoring variants side by side on several labelled sets of different kinds (issue 16, retrieval).

    flock /tmp/kbbot-heavy.lock nice -n 5 .venv/bin/python -m bench.retrieval_variants \
        [--sets demo,python-faq,aws] [--chunk-sizes 100,150,200] [--json-out bench/results/retrieval_variants.json]

Sets: `demo` (demo_kb/, company policies, 40 questions), `python-faq` (Python's FAQ and HOWTOs from Debian's
python3-doc, 105 of our questions, bench/python_faq.py) and `aws` (aws-docs-qa, technical manuals, 100
questions; its index is loaded from the shared embedding cache of bench/common.py, so only at its 200-token
chunking). A set whose data is missing is skipped and says so.

Every variant is scored on every set in the same run, at article level (nDCG@10, Recall@10; 50 passages
retrieved so that ten articles can be ranked):
- BM25 title and heading weights (`LexicalOptions.title_weight/heading_weight`; the postings are rebuilt
  for each pair),
- fusion: RRF branch weights and k, and article-level aggregation (`FusionWeights`),
- chunk size (re-embedded on demo and python-faq only; the aws cache holds one chunking).
Then aws search latency of the session-5 defaults (`BEFORE`, or `--old`) against chosen variants (`--new`),
in alternating rounds (ratios). Each variant also reports the gold-first rate: the share of questions whose
first passage of the answerer's search (k = 8) is from a gold article.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import psycopg

from bench import python_faq
from bench.common import AWS_DIR, REPO, bench_server, emit, libpq_url, load_aws, machine, scratch_database
from retrieval.evaluation import LabelledQuery, load_labelled_queries, ndcg, rank_articles, recall
from retrieval.lexical_index import LexicalIndex, LexicalOptions
from retrieval.search import FusionWeights, Searcher

log = logging.getLogger("bench.variants")
DEPTH = 50
ANSWER_K = 8  # the answerer's search (AnswerPipeline.candidates): 40 passages a branch


@dataclass(frozen=True)
class Variant:
    name: str
    lexical: LexicalOptions
    fusion: FusionWeights
    mode: str = "hybrid"


# Session 5's defaults, spelled out: the variants below change one thing at a time from these.
BEFORE_LEXICAL = LexicalOptions(k1=1.2, b=0.75, title_weight=1.0, heading_weight=1.0)
BEFORE_FUSION = FusionWeights(dense=1.0, lexical=1.0, rrf_k=60, article=0.0, method="rrf")
BEFORE = "before: hybrid 1:1, k=60"
# Session 6's default (BM25 title x3, RRF) and session 7's candidates: BM25 k1/b, and the score fusion
# choosing the first `score_head` passages.
SESSION6 = "session 6: title x3, rrf 1:1 k=60"
SESSION6_LEXICAL = LexicalOptions(k1=1.2, b=0.75, title_weight=3.0)


def variants() -> list[Variant]:
    base, fusion = BEFORE_LEXICAL, BEFORE_FUSION
    out = [Variant("dense only", base, fusion, "dense"), Variant("lexical only", base, fusion, "lexical"),
           Variant(BEFORE, base, fusion)]
    for dense, lexical in ((1, 0.5), (1, 0.75), (1, 1.5), (0.75, 1)):
        weights = replace(fusion, dense=dense, lexical=lexical)
        out.append(Variant(f"rrf dense {dense}: lexical {lexical}", base, weights))
    for k in (20, 40, 100):
        out.append(Variant(f"rrf k={k}", base, replace(fusion, rrf_k=k)))
    for share in (0.1, 0.25, 0.5):
        out.append(Variant(f"article aggregation {share}", base, replace(fusion, article=share)))
    for title, heading in ((2, 1), (3, 1), (1, 2), (2, 2), (3, 2)):
        opts = replace(base, title_weight=title, heading_weight=heading)
        out.append(Variant(f"bm25 title x{title} heading x{heading}", opts, fusion))
        out.append(Variant(f"bm25 title x{title} heading x{heading}, lexical-only", opts, fusion, "lexical"))
    for heading in (1, 2):
        opts = replace(base, title_weight=3, heading_weight=heading)
        for lexical, k in ((0.5, 60), (0.75, 60), (1, 20), (0.5, 20), (0.75, 20)):
            out.append(Variant(f"title x3{f' heading x{heading}' if heading > 1 else ''} + rrf lexical {lexical}, "
                               f"k={k}", opts, replace(fusion, lexical=lexical, rrf_k=k)))
    out.append(Variant(SESSION6, SESSION6_LEXICAL, fusion))
    for k1, b in ((0.5, 0.5), (0.7, 0.3), (0.5, 0.4)):
        opts = replace(SESSION6_LEXICAL, k1=k1, b=b)
        out.append(Variant(f"bm25 k1 {k1} b {b}, rrf", opts, fusion))
        for head in (1, 5):
            out.append(Variant(f"bm25 k1 {k1} b {b}, score fusion 0.6 head {head}", opts,
                               FusionWeights(method="scores", dense_share=0.6, score_head=head)))
    out.append(Variant("score fusion 0.6 head 1, session 6 bm25", SESSION6_LEXICAL,
                       FusionWeights(method="scores", dense_share=0.6, score_head=1)))
    out.append(Variant("default now", LexicalOptions(), FusionWeights()))
    return out


class PrecomputedQuestions:
    provider, model, dimension = "local", "all-MiniLM-L6-v2", 384

    def embed_query(self, text: str) -> np.ndarray:
        raise AssertionError("question vectors are precomputed")


@dataclass
class LabelledSet:
    name: str
    queries: list[LabelledQuery]
    qvecs: np.ndarray


def score(searcher: Searcher, data: LabelledSet, mode: str) -> dict:
    ndcgs, recalls, best, first = [], [], [], []
    for query, qvec in zip(data.queries, data.qvecs, strict=True):
        hits = searcher.search_vector(query.text, qvec, k=DEPTH, mode=mode).hits  # type: ignore[arg-type]
        ranked = rank_articles([h.external_id for h in hits])
        ndcgs.append(ndcg(ranked, query.relevant, 10))
        recalls.append(recall(ranked, query.relevant, 10))
        best.append(max((h.similarity or 0.0 for h in hits), default=0.0))
        # what the answerer cites first: the answers' citation precision is bounded by this share
        answer_hits = searcher.search_vector(query.text, qvec, k=ANSWER_K, mode=mode).hits  # type: ignore[arg-type]
        first.append(bool(answer_hits) and answer_hits[0].external_id in query.relevant)
    return {"ndcg@10": round(float(np.mean(ndcgs)), 4), "recall@10": round(float(np.mean(recalls)), 4),
            "gold_first": round(float(np.mean(first)), 4),
            "per_query_ndcg@10": [round(x, 4) for x in ndcgs], "per_query_best_similarity": [round(x, 4) for x in best]}


def rebuild_lexicon(conninfo: str, options: LexicalOptions) -> float:
    started = time.perf_counter()
    with psycopg.connect(conninfo, autocommit=True) as conn:
        LexicalIndex(options).refresh(conn)
    return time.perf_counter() - started


@contextmanager
def indexed(name: str, source, chunk_tokens: int, embedder) -> Iterator[tuple[object, str]]:  # type: ignore[no-untyped-def]
    from retrieval.db import Database
    from retrieval.sync import Indexer

    with scratch_database(bench_server(), "variants") as url:
        db = Database.from_url(url.set(drivername="postgresql+psycopg").render_as_string(hide_password=False))
        try:
            started = time.perf_counter()
            Indexer(db, embedder, chunk_max_tokens=chunk_tokens).sync([source])
            log.info("indexed %s at %d tokens in %.0f s", name, chunk_tokens, time.perf_counter() - started)
            yield db, libpq_url(url)
        finally:
            db.close()


def small_sets(names: list[str], work: Path):  # type: ignore[no-untyped-def]
    """(name, source factory, LabelledSet) for the sets indexed by kbbot's own Indexer."""
    from retrieval.embeddings import LocalEmbedder
    from retrieval.sources import FilesystemSource, JsonlSource

    embedder = LocalEmbedder()
    out = []
    if "demo" in names:
        queries = load_labelled_queries(REPO / "demo_eval" / "queries.jsonl", REPO / "demo_eval" / "qrels.tsv")
        out.append(("demo", lambda: FilesystemSource("demo", REPO / "demo_kb"), queries))
    if "python-faq" in names:
        if python_faq.available():
            corpus = python_faq.write_corpus(work / "python-faq")
            queries = load_labelled_queries(python_faq.QUERIES, python_faq.QRELS)
            out.append(("python-faq", lambda: JsonlSource("python-faq", corpus), queries))
        else:
            log.warning("python-faq skipped: %s is missing (apt-get install python3-doc)", python_faq.SOURCES)
    return embedder, [(name, factory, LabelledSet(name, qs, np.vstack([embedder.embed_query(q.text) for q in qs])))
                      for name, factory, qs in out]


def run_variants(db, conninfo: str, data: LabelledSet, chosen: list[Variant]) -> dict[str, dict]:  # type: ignore[no-untyped-def]
    results: dict[str, dict] = {}
    by_lexical: dict[LexicalOptions, list[Variant]] = {}
    for v in chosen:
        by_lexical.setdefault(v.lexical, []).append(v)
    for options, group in by_lexical.items():
        seconds = rebuild_lexicon(conninfo, options)
        searcher = Searcher(db, PrecomputedQuestions(), lexical=LexicalIndex(options))  # type: ignore[arg-type]
        for v in group:
            searcher.weights = v.fusion
            results[v.name] = {**score(searcher, data, v.mode), "lexicon_rebuild_s": round(seconds, 2)}
            log.info("%s %s: %s", data.name, v.name, results[v.name])
    rebuild_lexicon(conninfo, LexicalOptions())
    return results


def latency(db, conninfo: str, data: LabelledSet, old: Variant, new: Variant, rounds: int) -> dict:  # type: ignore[no-untyped-def]
    """Search time (SQL, question embedding excluded) of `old` and `new` in alternating rounds, unfiltered
    (postings) and filtered to the source (the exact BM25 scorer, which weighs titles per candidate). The
    postings are rebuilt once with `new`'s lexical options: their per-search cost does not depend on them."""
    rebuild = {"old": rebuild_lexicon(conninfo, old.lexical), "new": rebuild_lexicon(conninfo, new.lexical)}
    with psycopg.connect(conninfo) as conn:
        source = conn.execute("SELECT name FROM sources LIMIT 1").fetchone()[0]
    arms = {name: Searcher(db, PrecomputedQuestions(), lexical=LexicalIndex(v.lexical), weights=v.fusion)  # type: ignore[arg-type]
            for name, v in (("old", old), ("new", new))}
    times: dict[str, dict[str, list[float]]] = {a: {"unfiltered": [], "filtered": []} for a in arms}
    for r in range(rounds):
        order = list(arms) if r % 2 == 0 else list(arms)[::-1]
        for query, qvec in zip(data.queries, data.qvecs, strict=True):
            for arm in order:
                for kind, sources in (("unfiltered", None), ("filtered", [source])):
                    result = arms[arm].search_vector(query.text, qvec, k=10, sources=sources)
                    if r > 0 or len(times[arm][kind]) >= 10:  # the first ten of round 0 warm the caches
                        times[arm][kind].append(result.timings_ms["search"])
    out: dict = {"rounds": rounds, "lexicon_rebuild_s": {k: round(v, 2) for k, v in rebuild.items()}}
    for kind in ("unfiltered", "filtered"):
        p95 = {arm: float(np.percentile(times[arm][kind], 95)) for arm in arms}
        p50 = {arm: statistics.median(times[arm][kind]) for arm in arms}
        out[kind] = {"old_p50_ms": round(p50["old"], 2), "new_p50_ms": round(p50["new"], 2),
                     "old_p95_ms": round(p95["old"], 2), "new_p95_ms": round(p95["new"], 2),
                     "p95_ratio": round(p95["new"] / p95["old"], 2)}
    return out


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", default="demo,python-faq,aws")
    parser.add_argument("--chunk-sizes", default="100,150,200",
                        help="chunk_max_tokens for the re-embedded sets (all-MiniLM-L6-v2 takes at most 216)")
    parser.add_argument("--only", help="variant names separated by ';' (default: all)")
    parser.add_argument("--new", help="variants to time against --old on aws, separated by ';'")
    parser.add_argument("--old", default=BEFORE, help="the variant they are timed against (default: BEFORE)")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    names = args.sets.split(",")
    chosen = variants()
    if args.only:
        wanted = set(args.only.split(";"))
        chosen = [v for v in chosen if v.name in wanted or v.name == BEFORE]
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    report: dict = {"machine": machine(), "uptime_before": load, "depth": DEPTH,
                    "variants": {v.name: {"mode": v.mode, "lexical": asdict(v.lexical), "fusion": asdict(v.fusion)}
                                 for v in chosen}, "sets": {}, "chunk_sizes": {}}
    with tempfile.TemporaryDirectory() as tmp:
        embedder, sets = small_sets(names, Path(tmp))
        sizes = [int(s) for s in args.chunk_sizes.split(",")]
        for name, factory, data in sets:
            report["sets"][name] = {"questions": len(data.queries)}
            for size in sizes:
                with indexed(name, factory(), size, embedder) as (db, conninfo):
                    with psycopg.connect(conninfo) as conn:
                        chunks = conn.execute("SELECT count(*) FROM chunks").fetchone()[0]
                    today = [v for v in chosen if v.name == BEFORE]
                    results = run_variants(db, conninfo, data, chosen if size == 200 else today)
                    if size == 200:
                        report["sets"][name].update(chunks=chunks, variants=results)
                    report["chunk_sizes"].setdefault(name, {})[str(size)] = {"chunks": chunks,
                                                                              **results[today[0].name]}
    if "aws" in names:
        if not (AWS_DIR / "corpus.jsonl").is_file():
            log.warning("aws skipped: %s is missing", AWS_DIR)
        else:
            from bench.scale_data import real_index

            cache = load_aws()
            qs = [LabelledQuery(q["id"], q["text"], q["relevant"]) for q in cache.queries]
            data = LabelledSet("aws", qs, np.asarray(cache.query_vectors))
            with real_index(cache, "variants") as (db, conninfo):
                report["sets"]["aws"] = {"questions": len(qs), "chunks": len(cache.chunks),
                                         "variants": run_variants(db, conninfo, data, chosen)}
                old = next(v for v in variants() if v.name == args.old)
                for name in args.new.split(";") if args.new else []:
                    new = next(v for v in variants() if v.name == name)
                    report.setdefault("aws_latency", {})[name] = latency(db, conninfo, data, old, new, args.rounds)
    report["uptime_after"] = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    report["table"] = table(report)
    print("\n".join(report["table"]), file=sys.stderr)
    emit(report, args.json_out)


def table(report: dict) -> list[str]:
    sets = [s for s in report["sets"] if "variants" in report["sets"][s]]
    lines = ["| variant | " + " | ".join(f"{s} nDCG@10 | {s} R@10 | {s} gold first" for s in sets)
             + " | mean nDCG@10 |", "|---" * (3 * len(sets) + 2) + "|"]
    for name in report["variants"]:
        cells, ndcgs = [], []
        for s in sets:
            r = report["sets"][s]["variants"].get(name)
            cells += [f"{r['ndcg@10']:.3f}", f"{r['recall@10']:.2f}", f"{r['gold_first']:.2f}"] if r else ["", "", ""]
            if r:
                ndcgs.append(r["ndcg@10"])
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {np.mean(ndcgs):.3f} |")
    return lines


if __name__ == "__main__":
    main()
