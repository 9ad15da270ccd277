"""Does a stronger embedder move the answer targets? The same KBs built with all-MiniLM-L6-v2 (the default)
and all-mpnet-base-v2 (the opt-in, docs/embeddings-mpnet.md), scored side by side: retrieval (nDCG@10,
Recall@10), answers behind the shipped gate (contains gold, token recall, all key terms, citation
precision, answered/abstained), and the cost (query-embedding p50/p95 and ingest passages/s, as ratios of
rounds alternated in one run).

    nice -n 5 .venv/bin/python -m bench.model_answers              # everything (the aws vectors first)
    nice -n 5 .venv/bin/python -m bench.model_answers --embed-blocks 2   # only: 2 more blocks of aws vectors

Sets: the demo KB (demo_eval/), python-faq (bench/python_faq.py; retrieval and citations only: it has no
gold answers or unanswerable questions) and aws-docs-qa on the reduced index's article list (the 696
articles of ~/.cache/kbbot-bench/aws-reduced, the 56 gold ones included; bench/answer_quality.py built it).
Both models index the same chunks (kbbot's chunker at 200 tokens: the two WordPiece vocabularies count
the same on these texts, checked below). MiniLM's aws vectors come from the shared cache of
bench/common.py; mpnet's (~7x slower to embed) are computed once in blocks, each block its own short run
(`--embed-blocks`, under the shared heavy lock), and kept in ~/.cache/kbbot-bench/model-answers/ so a
rerun only scores. Results: bench/results/model_answers.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bench import answer_quality  # noqa: E402
from bench.common import MAX_TOKENS, emit, machine  # noqa: E402
from bench.ingest_aws import CachedEmbedder  # noqa: E402

BENCH_DIR = answer_quality.BENCH_DIR
OUT = BENCH_DIR / "model-answers"
AWS = answer_quality.AWS
MINILM, MPNET = "all-MiniLM-L6-v2", "all-mpnet-base-v2"
MODELS = (MINILM, MPNET)
BLOCK = 512  # mpnet vectors per block: ~2-4 min on the shared cores, so one heavy-lock turn stays short


def settings(data_dir: Path, model: str):  # type: ignore[no-untyped-def]
    from retrieval.settings import load_settings

    return load_settings(_env_file=None, data_dir=data_dir, embedding_model=model)


def embedder(model: str):  # type: ignore[no-untyped-def]
    from retrieval.embeddings import create_local_embedder

    return create_local_embedder(settings(OUT, model).embeddings, model)


# --- aws: the reduced index's articles and their chunks ----------------------------------------------------
def reduced_article_ids() -> list[str]:
    """The external ids of the articles in the reduced aws index (read once, then kept next to the vectors)."""
    listing = OUT / "aws-articles.json"
    if listing.exists():
        return json.loads(listing.read_text())
    from sqlalchemy import text

    from retrieval.db import Database

    data_dir = BENCH_DIR / "aws-reduced"
    if not (data_dir / "manifest.json").exists():
        raise SystemExit(f"{data_dir} is missing: run `python -m bench.answer_quality` first (it builds it).")
    db = Database.open(settings(data_dir, MINILM).storage)
    with db.engine.connect() as conn:
        ids = sorted(conn.execute(text("SELECT external_id FROM articles")).scalars())
    db.close()
    OUT.mkdir(parents=True, exist_ok=True)
    listing.write_text(json.dumps(ids))
    return ids


def gold_articles() -> set[str]:
    return {line.split("\t")[1] for line in (AWS / "qrels.tsv").read_text().splitlines()[1:] if line.strip()}


def aws_chunks() -> tuple[list[dict], np.ndarray]:
    """The chunks of the reduced article list as the shared cache holds them, with MiniLM's vectors, in
    the order mpnet embeds them: the first block as it was first run, then the gold articles' chunks, then
    the rest, so that a partial run (these cores give mpnet ~2 passages/s) still holds every gold article."""
    from bench.peers import cache_format

    wanted = set(reduced_article_ids())
    cached = cache_format.load()
    keep = [i for i, c in enumerate(cached.chunks) if c["article"] in wanted]
    gold = gold_articles()
    head = keep[:BLOCK]
    rest = keep[BLOCK:]
    order = head + [i for i in rest if cached.chunks[i]["article"] in gold] + \
        [i for i in rest if cached.chunks[i]["article"] not in gold]
    return [cached.chunks[i] for i in order], cached.vectors[order]


def mpnet_aws_vectors(max_blocks: int | None = None) -> np.ndarray:
    """mpnet's vectors of `aws_chunks()`, computed block by block (at most `max_blocks` more in this call):
    the leading blocks done so far, so possibly fewer rows than chunks."""
    chunks, _ = aws_chunks()
    folder = OUT / f"aws-reduced.c{MAX_TOKENS}.{MPNET}.blocks"
    folder.mkdir(parents=True, exist_ok=True)
    starts = list(range(0, len(chunks), BLOCK))
    model = None
    done = 0
    for start in starts:
        block = folder / f"{start:06d}.npy"
        if block.exists():
            continue
        if max_blocks is not None and done >= max_blocks:
            break
        model = model or embedder(MPNET)
        began = time.perf_counter()
        vectors = model.embed_documents([str(c["input"]) for c in chunks[start:start + BLOCK]])
        scratch = block.with_suffix(".tmp.npy")
        np.save(scratch, vectors)
        os.replace(scratch, block)
        done += 1
        print(f"mpnet block {start // BLOCK + 1}/{len(starts)}: {len(vectors)} passages in "
              f"{time.perf_counter() - began:.0f} s", flush=True)
    blocks = []
    for start in starts:
        if not (folder / f"{start:06d}.npy").exists():
            break
        blocks.append(np.load(folder / f"{start:06d}.npy"))
    print(f"{len(blocks)}/{len(starts)} mpnet blocks done", flush=True)
    return np.vstack(blocks) if blocks else np.zeros((0, 768), dtype=np.float32)


def aws_article_subset() -> tuple[list[str], dict[str, object]]:
    """The reduced list's articles whose every chunk has an mpnet vector (all 696 once every block is done):
    both models index exactly these."""
    chunks, _ = aws_chunks()
    done = len(mpnet_aws_vectors(0))
    complete: dict[str, bool] = {}
    for i, c in enumerate(chunks):
        complete[c["article"]] = complete.get(c["article"], True) and i < done
    ids = sorted(a for a, ok in complete.items() if ok)
    gold = gold_articles()
    return ids, {"articles": len(ids), "of_reduced": len(complete), "gold_articles": len(gold & set(ids)),
                 "of_gold": len(gold), "mpnet_vectors": done, "of_chunks": len(chunks)}


# --- the KBs, one per set and model ---------------------------------------------------------------------
def question_sets() -> dict[str, dict[str, Path | None]]:
    from bench import python_faq

    sets = {name: {**files} for name, files in answer_quality.question_sets().items()}
    if python_faq.available():
        sets["python-faq"] = {"queries": python_faq.QUERIES, "qrels": python_faq.QRELS, "gold": None,
                              "unanswerable": None}
    return {name: sets[name] for name in ("demo", "python-faq", "aws") if name in sets}


def source_for(name: str):  # type: ignore[no-untyped-def]
    from retrieval.sources import FilesystemSource, JsonlSource
    from retrieval.sources.base import Source
    from retrieval.types import Article

    if name == "demo":
        return FilesystemSource("demo", REPO / "demo_kb")
    if name == "python-faq":
        from bench import python_faq

        return JsonlSource("python-faq", python_faq.write_corpus(OUT / "python-faq-corpus"))
    wanted = set(aws_article_subset()[0])

    class ReducedAws(Source):
        kind = "bench"

        def iter_articles(self):  # type: ignore[no-untyped-def]
            for item in JsonlSource("aws", AWS / "corpus.jsonl").iter_articles():
                if isinstance(item, Article) and item.external_id in wanted:
                    yield item

    return ReducedAws("aws")


def index_dir(name: str, model: str) -> Path:
    return OUT / f"{name}.{model}"


def build_index(name: str, model: str) -> dict[str, object]:
    """The set's KB indexed with `model` by kbbot's Indexer (aws: vectors from the caches above)."""
    from retrieval.db import Database
    from retrieval.sync import Indexer

    data_dir = index_dir(name, model)
    marker = data_dir / "indexed.json"
    if marker.exists():
        return json.loads(marker.read_text())
    known: dict[str, np.ndarray] = {}
    if name == "aws":
        chunks, minilm_vectors = aws_chunks()
        vectors = minilm_vectors if model == MINILM else mpnet_aws_vectors(0)
        known = {str(c["input"]): v for c, v in zip(chunks, vectors, strict=False)}
    inner = embedder(model)
    wrapped = CachedEmbedder(inner, known)
    db = Database.open(settings(data_dir, model).storage)
    began = time.perf_counter()
    run = Indexer(db, wrapped, chunk_max_tokens=MAX_TOKENS).sync([source_for(name)], trigger="bench")
    db.close()
    info = {**(aws_article_subset()[1] if name == "aws" else {}), "articles": run.added,
            "passages": run.chunks_embedded, "vectors_precomputed": wrapped.hits,
            "vectors_computed": wrapped.misses, "wall_s": round(time.perf_counter() - began, 1)}
    marker.write_text(json.dumps(info))
    return info


# --- one pass of a set's questions through one model's KB -------------------------------------------------
def run_pass(name: str, model: str) -> None:
    """Retrieval, then each question once through the pipeline's steps (answer_quality.one_pass), saved."""
    import pickle

    from bot.services import Services
    from retrieval.answer_eval import load_questions
    from retrieval.evaluation import evaluate, load_labelled_queries

    files = question_sets()[name]
    build_index(name, model)
    services = Services(settings(index_dir(name, model), model))
    labelled = load_labelled_queries(files["queries"], files["qrels"])  # type: ignore[arg-type]
    unanswerable = load_questions(files["unanswerable"]) if files["unanswerable"] else []
    result = {"retrieval": evaluate(services.searcher(), labelled, k=10).summary(),
              "answerable": answer_quality.one_pass(services, [q.text for q in labelled]),
              "unanswerable": answer_quality.one_pass(services, [q.text for q in unanswerable])}
    services.close()
    (OUT / "passes").mkdir(parents=True, exist_ok=True)
    (OUT / "passes" / f"{name}.{model}.pkl").write_bytes(pickle.dumps(result))


def set_report(name: str, model: str, own_gate=None) -> dict | None:  # type: ignore[no-untyped-def, type-arg]
    """The set's scores with `model` behind the shipped gate and, given `own_gate`, behind that one too."""
    import pickle

    from retrieval.abstention import AbstentionGate
    from retrieval.answer_eval import load_questions
    from retrieval.evaluation import load_labelled_queries

    path = OUT / "passes" / f"{name}.{model}.pkl"
    if not path.exists():
        return None
    files = question_sets()[name]
    saved = pickle.loads(path.read_bytes())
    data = {"answerable_pass": saved["answerable"], "unanswerable_pass": saved["unanswerable"],
            "gold": files["gold"] or OUT / "no-gold.jsonl",
            "labelled": load_labelled_queries(files["queries"], files["qrels"]),  # type: ignore[arg-type]
            "unanswerable": load_questions(files["unanswerable"]) if files["unanswerable"] else []}
    if files["gold"] is None:
        data["gold"].write_text("")  # python-faq has no gold answers: answer metrics are citations only
    report = answer_quality.answer_report(data, AbstentionGate())
    own = answer_quality.answer_report(data, own_gate)["answers"] if own_gate is not None else None
    retrieval = saved["retrieval"]
    return {"index": json.loads((index_dir(name, model) / "indexed.json").read_text()),
            "ndcg_at_10": round(retrieval["ndcg_at_10"], 4), "recall_at_10": round(retrieval["recall_at_k"], 4),
            "answers": _rounded(report["answers"]),
            **({"answers_behind_own_gate": _rounded(own)} if own is not None else {}),
            "evidence": {"answerable": [r["evidence"] for r in saved["answerable"]],
                         "unanswerable": [r["evidence"] for r in saved["unanswerable"]]}}


def _rounded(summary: dict) -> dict:  # type: ignore[type-arg]
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in summary.items()}


# --- cost: rounds alternated in one process ----------------------------------------------------------------
def cost(rounds: int = 4, passages: int = 32) -> dict[str, object]:
    """Query-embedding p50/p95 over every set's questions and passages/s over aws chunks, both models
    alternating (each round starts with the other one), so load changes fall on both sides."""
    from retrieval.evaluation import load_labelled_queries

    questions = [q.text for files in question_sets().values()
                 for q in load_labelled_queries(files["queries"], files["qrels"])]  # type: ignore[arg-type]
    chunks, _ = aws_chunks()
    step = max(1, len(chunks) // passages)
    texts = [str(c["input"]) for c in chunks[::step][:passages]]
    models = {m: embedder(m) for m in MODELS}
    for m in models.values():  # load (and build) outside the timed rounds
        m.embed_documents(texts[:4])
        m.embed_query("warm up")
    query_ms: dict[str, list[float]] = {m: [] for m in MODELS}
    rate: dict[str, list[float]] = {m: [] for m in MODELS}
    for r in range(rounds):
        for name in MODELS if r % 2 == 0 else tuple(reversed(MODELS)):
            for question in questions:
                began = time.perf_counter()
                models[name].embed_query(question)
                query_ms[name].append((time.perf_counter() - began) * 1000)
            began = time.perf_counter()
            models[name].embed_documents(texts)
            rate[name].append(len(texts) / (time.perf_counter() - began))
    out: dict[str, object] = {"rounds": rounds, "questions": len(questions), "passages": len(texts),
                              "threads": {m: models[m].threads for m in MODELS}}  # type: ignore[attr-defined]
    for name in MODELS:
        out[name] = {"query_ms_p50": round(float(np.percentile(query_ms[name], 50)), 1),
                     "query_ms_p95": round(float(np.percentile(query_ms[name], 95)), 1),
                     "passages_per_s": round(float(np.median(rate[name])), 1)}
    a, b = out[MINILM], out[MPNET]  # type: ignore[index]
    out["mpnet_over_minilm"] = {"query_ms_p50": round(b["query_ms_p50"] / a["query_ms_p50"], 2),
                                "query_ms_p95": round(b["query_ms_p95"] / a["query_ms_p95"], 2),
                                "passages_per_s": round(b["passages_per_s"] / a["passages_per_s"], 3)}
    return out


def report(json_out: Path) -> None:
    from bench.calibrate_abstention import calibrate

    out: dict[str, object] = {"machine": machine(), "load": os.getloadavg()[0]}
    cost_file = OUT / "cost.json"
    out["cost"] = json.loads(cost_file.read_text()) if cost_file.exists() else None
    from retrieval.abstention import AbstentionGate

    # The gate each model's own evidence chooses (the shipped one was calibrated on MiniLM's), on the sets
    # with unanswerable questions; answers are then scored behind both.
    evidence: dict[str, dict] = {m: {} for m in MODELS}  # type: ignore[type-arg]
    for name in question_sets():
        for model in MODELS:
            scored = set_report(name, model)
            if scored is not None and scored["evidence"]["unanswerable"]:
                evidence[model][name] = scored["evidence"]
    chosen = {m: calibrate(e)["chosen"] for m, e in evidence.items() if e}
    out["gate_calibrated_per_model"] = chosen
    for name in question_sets():
        row: dict[str, object] = {}
        for model in MODELS:
            own = AbstentionGate(**chosen[model]["gate"]) if model in chosen else None
            scored = set_report(name, model, own)
            if scored is not None:
                scored.pop("evidence")
                row[model] = scored
        out[name] = row
    emit(out, json_out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--embed-blocks", type=int, help="only embed this many more blocks of mpnet aws vectors")
    parser.add_argument("--pass", dest="one", metavar="SET:MODEL", help="only index and ask one set with one model")
    parser.add_argument("--cost", action="store_true", help="only measure the cost ratios")
    parser.add_argument("--report-only", action="store_true", help="only score the saved passes")
    parser.add_argument("--json-out", type=Path, default=REPO / "bench" / "results" / "model_answers.json")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    if args.embed_blocks is not None:
        mpnet_aws_vectors(args.embed_blocks)
    elif args.one:
        name, model = args.one.split(":")
        run_pass(name, model)
    elif args.cost:
        (OUT / "cost.json").write_text(json.dumps(cost()))
    else:
        if not args.report_only:
            for name in question_sets():
                for model in MODELS:
                    run_pass(name, model)
            (OUT / "cost.json").write_text(json.dumps(cost()))
        report(args.json_out)


if __name__ == "__main__":
    main()
