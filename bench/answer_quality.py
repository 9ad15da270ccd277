"""Answer quality on the demo KB and aws-docs-qa: what `kbbot eval --answers --unanswerable` reports, for
both sets in one run, plus retrieval Recall@10 and search latency on the aws index.

    nice -n 5 .venv/bin/python -m bench.answer_quality

The demo part uses the index in KBBOT_DATA_DIR (`make demo`); the aws part the index in
~/.cache/kbbot-bench/aws (KBBOT_BENCH_DIR), built here first when missing, from the shared embedding
cache of bench/common.py (one builder at a time). Questions: demo_eval/{queries,answers,unanswerable}.jsonl;
aws-docs-qa's queries, qrels and answers.jsonl (../shared/data, never copied) and the project's own
bench/sets/aws-unanswerable.jsonl. Each question is asked once; the abstention gate is then calibrated on
the recorded evidence (bench/calibrate_abstention.py's grid) and the answers are scored behind the shipped
gate (`AbstentionGate()`). Results: bench/results/answer_quality.json (the gate's report: calibrate_abstention).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "bench" / "peers"))
AWS = REPO.parent / "shared" / "data" / "aws-docs-qa"
BENCH_DIR = Path(os.environ.get("KBBOT_BENCH_DIR", Path.home() / ".cache" / "kbbot-bench"))


def ensure_aws_index() -> tuple[Path, dict[str, object]]:
    """The full aws index when the shared embedding cache is complete, else a reduced one (see below)."""
    from cache_format import CacheFiles, default_stem
    from common import MAX_TOKENS

    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    full = CacheFiles(default_stem(MAX_TOKENS)).complete()
    data_dir = BENCH_DIR / ("aws" if full else "aws-reduced")
    with open(BENCH_DIR / f"{data_dir.name}-index.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another benchmark building it: wait for it
        manifest = data_dir / "manifest.json"
        if full and not data_dir.exists():  # bench/ingest_aws.py builds the same index into the same folder
            from ingest_aws import build_full_index

            manifest.parent.mkdir(parents=True, exist_ok=True)
            manifest.write_text(json.dumps({"index": "full", **build_full_index(data_dir)}))
        elif not full and not manifest.exists():
            manifest.parent.mkdir(parents=True, exist_ok=True)
            manifest.write_text(json.dumps(build_reduced_index(data_dir)))
    return data_dir, json.loads(manifest.read_text()) if manifest.exists() else {"index": "full"}


def build_reduced_index(data_dir: Path) -> dict[str, object]:
    """While the shared cache is still being embedded: the corpus's first articles whose vectors are in the
    cache's leading blocks, plus every gold article (embedded here). Fewer distractors than the real KB, so
    retrieval figures are optimistic; what it measures well is the answer given the passages."""
    import numpy as np
    from cache_format import default_stem
    from common import EMBED_BLOCK, MAX_TOKENS
    from ingest_aws import CachedEmbedder

    from retrieval.chunking import chunk_article
    from retrieval.db import Database
    from retrieval.embeddings import LocalEmbedder
    from retrieval.settings import load_settings
    from retrieval.sources import JsonlSource
    from retrieval.sources.base import Source
    from retrieval.sync import Indexer
    from retrieval.types import Article

    partial = default_stem(MAX_TOKENS).with_name(default_stem(MAX_TOKENS).name + ".partial")
    blocks = []
    while (partial / f"{len(blocks) * EMBED_BLOCK:08d}-{EMBED_BLOCK}.npy").is_file():
        blocks.append(np.load(partial / f"{len(blocks) * EMBED_BLOCK:08d}-{EMBED_BLOCK}.npy"))
    vectors = np.vstack(blocks) if blocks else np.zeros((0, 384), dtype=np.float32)
    gold = {line.split("\t")[1] for line in (AWS / "qrels.tsv").read_text().splitlines()[1:] if line.strip()}
    embedder = LocalEmbedder()
    cache: dict[str, np.ndarray] = {}
    chosen: list[Article] = []
    position = 0
    for item in JsonlSource("aws", AWS / "corpus.jsonl").iter_articles():
        if not isinstance(item, Article):
            continue
        if position < len(vectors):
            drafts = chunk_article(item.text, max_tokens=MAX_TOKENS, count_tokens=embedder.count_tokens)
            inputs = [d.embedding_input(item.title) for d in drafts]
            if position + len(inputs) <= len(vectors):
                cache.update(zip(inputs, vectors[position:position + len(inputs)], strict=True))
                chosen.append(item)
            position += len(inputs)
    chosen += [a for a in _gold_articles(gold) if a.external_id not in {c.external_id for c in chosen}]

    class Articles(Source):
        kind = "bench"

        def iter_articles(self):  # type: ignore[no-untyped-def]
            yield from chosen

    cached = CachedEmbedder(embedder, cache)
    db = Database.open(load_settings(_env_file=None, data_dir=data_dir).storage)
    run = Indexer(db, cached, chunk_max_tokens=MAX_TOKENS).sync([Articles("aws")], trigger="bench")
    db.close()
    return {"index": "reduced", "articles": run.added, "of_articles": 2791, "gold_articles": len(gold),
            "chunks": run.chunks_embedded, "vectors_from_cache": cached.hits, "vectors_computed": cached.misses}


def _gold_articles(gold: set[str]) -> list:  # type: ignore[type-arg]
    from retrieval.sources import JsonlSource
    from retrieval.types import Article

    return [a for a in JsonlSource("aws", AWS / "corpus.jsonl").iter_articles()
            if isinstance(a, Article) and a.external_id in gold]


def one_pass(services, questions: list[str], recorded: list[dict] | None = None,  # type: ignore[no-untyped-def, type-arg]
             embedder=None, synthesizer=None) -> list[dict]:  # type: ignore[no-untyped-def, type-arg]
    """Each question once through the pipeline's own steps (search, unit support, relevant passages, the
    extractive answer), keeping the gate's evidence, so every gate setting is scored without re-asking.
    With `recorded` (an earlier pass of the same questions), its search results are answered again: the
    answerer is measured without searching (its "ms" then leave the search out)."""
    from dataclasses import asdict

    from retrieval.abstention import Evidence
    from retrieval.answer import AskContext
    from retrieval.extractive import ExtractiveSynthesizer
    from retrieval.support import score_support

    searcher, pipeline = services.searcher(), services.pipeline
    embedder = embedder or pipeline.unit_embedder
    synthesizer = synthesizer or ExtractiveSynthesizer(embedder)
    following = pipeline.following_for(AskContext())
    density = pipeline.density() if pipeline.density else None  # the gate's bar depends on the index
    out = []
    for i, question in enumerate(questions):
        started = time.perf_counter()
        if recorded is None:
            result = searcher.search(question, k=max(pipeline.top_k, pipeline.candidates))
            hits, qvec = result.hits, result.query_vector
        else:
            hits, qvec = recorded[i]["hits"], recorded[i]["query_vector"]
        support = score_support(question, qvec, hits, embedder)
        relevant = support.relevant(hits, pipeline.min_relevance)[: synthesizer.passages]
        answer = synthesizer.compose(question, relevant, qvec, support.within(relevant),
                                     following=following)
        out.append({"evidence": asdict(Evidence.of(hits, support, density)), "answer": answer,
                    "ms": (time.perf_counter() - started) * 1000,
                    # What the answerer was given, so `--recompose` can answer again without searching.
                    "hits": hits, "query_vector": qvec})
    return out


def recompose(name: str, source: Path) -> None:
    """A set's recorded passes in `source` answered again by the current answerer (same search results,
    same gate evidence unless the support changed), into PASSES. Unit vectors are kept in PASSES between
    runs, so a second recomposition embeds only sentences it has not seen."""
    import pickle
    import shutil

    from bot.services import Services
    from retrieval.answer_eval import load_questions
    from retrieval.embedding_cache import CachedEmbedder
    from retrieval.evaluation import load_labelled_queries

    files = question_sets()[name]
    services = Services(settings_for(name))
    embedder = CachedEmbedder(services.embedder, max_entries=10**7)
    vectors = PASSES / f"{name}-unit-vectors.pkl"
    for known in (source / vectors.name, vectors):
        if known.exists():
            embedder._vectors.update(pickle.loads(known.read_bytes()))
    questions = {"answerable": [q.text for q in load_labelled_queries(files["queries"], files["qrels"])],  # type: ignore[arg-type]
                 "unanswerable": [q.text for q in load_questions(files["unanswerable"])]}  # type: ignore[arg-type]
    PASSES.mkdir(parents=True, exist_ok=True)
    for kind, texts in questions.items():
        recorded = pickle.loads((source / f"{name}-{kind}.pkl").read_bytes())
        result = one_pass(services, texts, recorded, embedder)
        (PASSES / f"{name}-{kind}.pkl").write_bytes(pickle.dumps(result))
    if source != PASSES:
        shutil.copyfile(source / f"{name}-retrieval.pkl", PASSES / f"{name}-retrieval.pkl")
    vectors.write_bytes(pickle.dumps(dict(embedder._vectors)))
    services.close()


def gated(recorded: dict[str, dict], gate):  # type: ignore[no-untyped-def, type-arg]
    """An `answer(question)` replaying the recorded pass behind `gate`, as AnswerPipeline would answer."""
    from retrieval.abstention import Evidence
    from retrieval.answer import ABSTAIN_TEXT
    from retrieval.types import Answer

    def answer(question: str) -> Answer:
        record = recorded[question]
        if gate.answers(Evidence(**record["evidence"])) and record["answer"].outcome == "answered":
            return record["answer"]
        return Answer(question, ABSTAIN_TEXT, [], "abstained", "none")

    return answer


# One file per set and kind, so the passes run in parallel. `--passes NAME` records under another name (the
# default folder holds passes others read: re-record elsewhere while an answerer is being changed).
PASSES = BENCH_DIR / "answer-passes"


def question_sets() -> dict[str, dict[str, object]]:
    demo = REPO / "demo_eval"
    sets: dict[str, dict[str, object]] = {
        "demo": {"queries": demo / "queries.jsonl", "qrels": demo / "qrels.tsv", "gold": demo / "answers.jsonl",
                 "unanswerable": demo / "unanswerable.jsonl"},
    }
    if (AWS / "answers.jsonl").exists():
        sets["aws"] = {"queries": AWS / "queries.jsonl", "qrels": AWS / "qrels.tsv", "gold": AWS / "answers.jsonl",
                       "unanswerable": REPO / "bench" / "sets" / "aws-unanswerable.jsonl"}
    return sets


def settings_for(name: str):  # type: ignore[no-untyped-def]
    from retrieval.settings import load_settings

    if name == "demo":
        return load_settings()
    return load_settings(_env_file=None, data_dir=ensure_aws_index()[0])


def run_pass(name: str, kind: str) -> None:
    """One set's answerable or unanswerable questions (or its retrieval evaluation), saved for the report."""
    import pickle

    from bot.services import Services
    from retrieval.answer_eval import load_questions
    from retrieval.evaluation import evaluate, load_labelled_queries

    files = question_sets()[name]
    services = Services(settings_for(name))
    labelled = load_labelled_queries(files["queries"], files["qrels"])  # type: ignore[arg-type]
    if kind == "retrieval":
        result: object = evaluate(services.searcher(), labelled, k=10).summary()
    elif kind == "answerable":
        result = one_pass(services, [q.text for q in labelled])
    else:
        result = one_pass(services, [q.text for q in load_questions(files["unanswerable"])])  # type: ignore[arg-type]
    services.close()
    PASSES.mkdir(parents=True, exist_ok=True)
    (PASSES / f"{name}-{kind}.pkl").write_bytes(pickle.dumps(result))


def load_set(name: str) -> dict | None:  # type: ignore[type-arg]
    import pickle

    from retrieval.answer_eval import load_questions
    from retrieval.evaluation import load_labelled_queries

    files = question_sets()[name]
    parts = {kind: PASSES / f"{name}-{kind}.pkl" for kind in ("retrieval", "answerable", "unanswerable")}
    if not all(p.exists() for p in parts.values()):
        return None
    loaded = {kind: pickle.loads(p.read_bytes()) for kind, p in parts.items()}
    return {"retrieval": loaded["retrieval"], "answerable_pass": loaded["answerable"],
            "unanswerable_pass": loaded["unanswerable"], "gold": files["gold"],
            "labelled": load_labelled_queries(files["queries"], files["qrels"]),  # type: ignore[arg-type]
            "unanswerable": load_questions(files["unanswerable"])}  # type: ignore[arg-type]


def answer_report(data: dict, gate, *, rows: bool = False) -> dict:  # type: ignore[no-untyped-def, type-arg]
    from retrieval.answer_eval import evaluate_answers, load_gold_answers

    recorded = {q.text: r for q, r in zip(data["labelled"], data["answerable_pass"], strict=True)}
    recorded.update({q.text: r for q, r in zip(data["unanswerable"], data["unanswerable_pass"], strict=True)})
    report = evaluate_answers(gated(recorded, gate), "extractive", data["labelled"],
                              load_gold_answers(data["gold"]), data["unanswerable"])
    summary = report.summary()
    times = [r["ms"] for r in data["answerable_pass"] + data["unanswerable_pass"]]
    summary["answer_ms_p50"], summary["answer_ms_p95"] = percentile(times, 50), percentile(times, 95)
    misses = [{k: q.get(k) for k in ("id", "outcome", "gold", "answer", "cited", "relevant", "token_recall")}
              for q in report.per_question
              if (q["kind"] == "answerable" and not q.get("all_key_terms"))
              or (q["kind"] == "unanswerable" and q["outcome"] != "abstained")]
    return {"answers": summary, "misses": misses, **({"per_question": report.per_question} if rows else {})}


def percentile(values: list[float], q: float) -> float:
    import numpy as np

    return round(float(np.percentile(values, q)), 1) if values else 0.0


def main() -> None:
    import subprocess

    from calibrate_abstention import calibrate

    from retrieval.abstention import AbstentionGate

    parser = argparse.ArgumentParser()
    parser.add_argument("--part", help="internal: run one pass, e.g. demo-answerable")
    parser.add_argument("--report-only", action="store_true", help="score the saved passes again")
    parser.add_argument("--passes", default="answer-passes", help="folder under KBBOT_BENCH_DIR for the passes")
    parser.add_argument("--recompose", metavar="FROM", help="answer the search results recorded in folder FROM "
                        "again with the current answerer (no search), into --passes")
    parser.add_argument("--json-out", type=Path, default=REPO / "bench" / "results" / "answer_quality.json")
    # bench/results/abstention.json is bench.calibrate_abstention's (held-out and cross-validated rates too)
    parser.add_argument("--abstention-out", type=Path, default=None)
    args = parser.parse_args()
    global PASSES  # one process records one folder of passes
    PASSES = BENCH_DIR / args.passes
    if args.part:
        name, kind = args.part.split("-", 1)
        run_pass(name, kind)
        return
    names = list(question_sets())
    if args.recompose:
        for name in names:
            recompose(name, BENCH_DIR / args.recompose)
    elif not args.report_only:
        if "aws" in names:
            ensure_aws_index()  # once, before the parallel passes
        # In parallel: on shared cores each process gets its own slice of CPU.
        children = [subprocess.Popen([sys.executable, "-m", "bench.answer_quality", "--part", f"{n}-{k}",
                                      "--passes", args.passes],
                                     cwd=REPO) for n in names for k in ("retrieval", "answerable", "unanswerable")]
        if any(child.wait() for child in children):
            raise SystemExit("a pass failed (see above)")
    sets = {name: data for name in names if (data := load_set(name)) is not None}
    evidence = {name: {"answerable": [r["evidence"] for r in d["answerable_pass"]],
                       "unanswerable": [r["evidence"] for r in d["unanswerable_pass"]]} for name, d in sets.items()}
    calibration = calibrate(evidence)
    shipped = AbstentionGate()
    report: dict[str, object] = {"aws_index": ensure_aws_index()[1] if "aws" in sets else None,
                                 "shipped_gate": shipped.__dict__, "calibration": calibration}
    for name, data in sets.items():
        report[name] = {"retrieval": data["retrieval"], **answer_report(data, shipped)}
    if args.abstention_out:
        args.abstention_out.parent.mkdir(parents=True, exist_ok=True)
        args.abstention_out.write_text(json.dumps({**calibration, "evidence": evidence}, indent=1) + "\n")
    args.json_out.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n")
    print(json.dumps({k: v if not isinstance(v, dict) or "answers" not in v else
                      {"retrieval": v["retrieval"], "answers": v["answers"]} for k, v in report.items()}, indent=2))


if __name__ == "__main__":
    main()
