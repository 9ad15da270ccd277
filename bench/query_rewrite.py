"""Issue 4 benchmark: does query rewriting help retrieval on aws-docs-qa? (100 questions, gold documents)

    nice -n 10 .venv/bin/python -m bench.query_rewrite [--json-out FILE]

Needs the aws index built by bench/ingest_aws.py (~/.cache/kbbot-bench/aws, KBBOT_BENCH_DIR). Retrieval
only (hybrid, kbbot's defaults), scored at article level: nDCG@10, Recall@10, MRR@10.

1. Multi-query expansion, offline variants (`HeuristicExpander`) fused with the question by weighted RRF,
   against the question alone. With OPENAI_API_KEY/OPENAI_BASE_URL set, LLM variants are measured too.
2. Thread follow-ups, synthetic: for questions naming an AWS service ("... in Amazon Forecast?"), a
   thread whose first message names the service and a follow-up that says "it" instead
   ("... in it?"). Searched as asked, after the heuristic rewrite (and the LLM's, with an endpoint), and
   the original question as the ceiling.
3. Topic switches: each question after an unrelated earlier question in the same thread. A rewriter must
   leave these alone: the share rewritten and the nDCG cost are reported.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

AWS = REPO.parent / "shared" / "data" / "aws-docs-qa"
BENCH_DIR = Path(os.environ.get("KBBOT_BENCH_DIR", Path.home() / ".cache" / "kbbot-bench"))
SERVICE = re.compile(r"\b(?:Amazon|AWS) [A-Z][\w-]*(?: [A-Z][\w-]*)?")
DEPTH = 50  # chunks retrieved, so that 10 distinct articles can be ranked


class PrefixEveryTime:
    """The naive alternative many RAG bots use: always search with the previous question prepended."""

    def rewrite(self, question: str, history) -> str | None:  # type: ignore[no-untyped-def]
        earlier = [t.text for t in history if t.role == "user"]
        return f"{earlier[-1]} {question}" if earlier else None


def score(searcher, queries, texts: list[str]) -> dict:  # type: ignore[no-untyped-def]
    from retrieval.evaluation import ndcg, rank_articles, recall, reciprocal_rank

    n = len(queries)
    totals = {"ndcg@10": 0.0, "recall@10": 0.0, "mrr@10": 0.0}
    per_query = []
    started = time.perf_counter()
    for query, text in zip(queries, texts, strict=True):
        ranked = rank_articles([h.external_id for h in searcher.search(text, k=DEPTH).hits])
        q = ndcg(ranked, query.relevant, 10)
        totals["ndcg@10"] += q
        totals["recall@10"] += recall(ranked, query.relevant, 10)
        totals["mrr@10"] += reciprocal_rank(ranked, query.relevant, 10)
        per_query.append(q)
    out = {k: round(v / n, 4) for k, v in totals.items()}
    out["ms_per_query"] = round((time.perf_counter() - started) * 1000 / n, 1)
    out["_per_query"] = per_query
    return out


def compare(base: dict, other: dict) -> dict:
    """Paired: how many questions got better or worse, and the nDCG difference."""
    better = sum(o > b + 1e-9 for b, o in zip(base["_per_query"], other["_per_query"], strict=True))
    worse = sum(o < b - 1e-9 for b, o in zip(base["_per_query"], other["_per_query"], strict=True))
    return {"ndcg_delta": round(other["ndcg@10"] - base["ndcg@10"], 4), "better": better, "worse": worse}


def clean(report: dict) -> dict:
    return {k: v for k, v in report.items() if not k.startswith("_")}


def expansion(searcher, queries, chat) -> dict:  # type: ignore[no-untyped-def]
    from retrieval.rewrite import ExpandingSearcher, HeuristicExpander, LLMExpander

    texts = [q.text for q in queries]
    base = score(searcher, queries, texts)
    rows = {"question alone": clean(base)}
    setups = [("heuristic, 1 variant, weight 0.5", HeuristicExpander(), 1, 0.5),
              ("heuristic, 2 variants, weight 0.5", HeuristicExpander(), 2, 0.5),
              ("heuristic, 2 variants, weight 1.0", HeuristicExpander(), 2, 1.0)]
    if chat is not None:
        setups.append(("LLM, 2 variants, weight 0.5", LLMExpander(chat, chat.model), 2, 0.5))
    for name, expander, n, weight in setups:
        result = score(ExpandingSearcher(searcher, expander, variants=n, variant_weight=weight), queries, texts)
        rows[name] = {**clean(result), **compare(base, result)}
    return rows


def follow_ups(searcher, queries, chat) -> dict:  # type: ignore[no-untyped-def]
    from retrieval.answer import Turn
    from retrieval.rewrite import HeuristicRewriter, LLMRewriter

    picked, threads, follow = [], [], []
    for query in queries:
        match = SERVICE.search(query.text)
        if not match:
            continue
        picked.append(query)
        threads.append((Turn("user", f"I have some questions about {match.group(0)}."),
                        Turn("assistant", f"Sure, ask me anything about {match.group(0)}.")))
        follow.append((query.text[: match.start()] + "it" + query.text[match.end():]).replace("it's", "its"))
    rewriters = [("heuristic rewrite", HeuristicRewriter()), ("always prefix the previous question", PrefixEveryTime())]
    if chat is not None:
        rewriters.append(("LLM rewrite", LLMRewriter(chat, chat.model)))
    ceiling = score(searcher, picked, [q.text for q in picked])
    as_asked = score(searcher, picked, follow)
    rows = {"questions": len(picked), "example": follow[0] if follow else None,
            "original question (ceiling)": clean(ceiling), "follow-up as asked": clean(as_asked)}
    for name, rewriter in rewriters:
        texts = [rewriter.rewrite(f, t) or f for f, t in zip(follow, threads, strict=True)]
        rewritten = sum(t != f for t, f in zip(texts, follow, strict=True))
        result = score(searcher, picked, texts)
        rows[name] = {**clean(result), **compare(as_asked, result), "rewritten": rewritten}
    return rows


def topic_switches(searcher, queries, chat) -> dict:  # type: ignore[no-untyped-def]
    from retrieval.answer import Turn
    from retrieval.rewrite import HeuristicRewriter, LLMRewriter

    # The previous question in the thread is another question, from the other half of the set.
    half = len(queries) // 2
    earlier = [queries[(i + half) % len(queries)].text for i in range(len(queries))]
    threads = [(Turn("user", e), Turn("assistant", "Here is what the documentation says.")) for e in earlier]
    texts = [q.text for q in queries]
    base = score(searcher, queries, texts)
    rows = {"question alone": clean(base)}
    rewriters = [("heuristic rewrite", HeuristicRewriter()), ("always prefix the previous question", PrefixEveryTime())]
    if chat is not None:
        rewriters.append(("LLM rewrite", LLMRewriter(chat, chat.model)))
    for name, rewriter in rewriters:
        rewritten_texts = [rewriter.rewrite(t, th) or t for t, th in zip(texts, threads, strict=True)]
        result = score(searcher, queries, rewritten_texts)
        changed = sum(r != t for r, t in zip(rewritten_texts, texts, strict=True))
        rows[name] = {**clean(result), **compare(base, result), "rewritten": changed}
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json-out", type=Path)
    parser.add_argument("--skip-expansion", action="store_true")
    args = parser.parse_args()
    if not (AWS / "queries.jsonl").exists() or not (BENCH_DIR / "aws").exists():
        print("skipped: needs ../shared/data/aws-docs-qa and the index of bench/ingest_aws.py")
        return
    from bot.services import Services
    from retrieval.evaluation import load_labelled_queries
    from retrieval.settings import load_settings

    settings = load_settings(data_dir=BENCH_DIR / "aws")
    services = Services(settings)
    chat = services.chat_client
    if chat is not None:
        chat.model = settings.llm.llm_model  # type: ignore[attr-defined]
    searcher = services.searcher()
    queries = load_labelled_queries(AWS / "queries.jsonl", AWS / "qrels.tsv")
    searcher.search("warm up", k=5)
    report = {"queries": len(queries), "mode": searcher.mode,
              "llm": settings.llm.llm_model if chat is not None else "none (offline: heuristic paths only)",
              "expansion": None if args.skip_expansion else expansion(searcher, queries, chat),
              "follow_ups": follow_ups(searcher, queries, chat),
              "topic_switches": topic_switches(searcher, queries, chat)}
    services.close()
    print(json.dumps(report, indent=2))
    if args.json_out:
        args.json_out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
