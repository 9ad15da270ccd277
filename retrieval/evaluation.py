"""Retrieval evaluation on BEIR-format labelled questions: Recall@k, nDCG@10, MRR@10, latency.

Scored at article level: chunk hits are collapsed to their article in rank order, and an article is
relevant when qrels lists its external id (for a BEIR corpus ingested from JSONL that is the `_id`; for
a folder, the file's relative path).
"""

from __future__ import annotations

import csv
import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from retrieval.errors import SourceError
from retrieval.search import Searcher, SearchMode


@dataclass(frozen=True)
class LabelledQuery:
    id: str
    text: str
    relevant: dict[str, int]  # external id -> graded relevance


@dataclass
class EvalReport:
    mode: str
    queries: int
    k: int
    recall_at_5: float
    recall_at_k: float
    ndcg_at_10: float
    mrr_at_10: float
    search_ms_p50: float  # SQL only, the question's embedding excluded
    search_ms_p95: float
    embed_ms_p50: float
    per_query: list[dict[str, object]]

    def summary(self) -> dict[str, object]:
        data = asdict(self)
        data.pop("per_query")
        return data


def load_labelled_queries(queries_path: Path, qrels_path: Path) -> list[LabelledQuery]:
    try:
        texts: dict[str, str] = {}
        with queries_path.open(encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                    texts[str(record["_id"])] = str(record["text"])
                except (json.JSONDecodeError, KeyError) as exc:
                    raise SourceError(f"{queries_path}:{lineno}: not a BEIR query line ({exc})") from exc
        relevant: dict[str, dict[str, int]] = {}
        with qrels_path.open(encoding="utf-8", newline="") as fh:
            for lineno, row in enumerate(csv.reader(fh, delimiter="\t"), 1):
                if not row or (lineno == 1 and row[0] == "query-id"):
                    continue
                if len(row) < 3:
                    raise SourceError(f"{qrels_path}:{lineno}: expected query-id, corpus-id, score")
                score = int(float(row[2]))
                if score > 0:
                    relevant.setdefault(row[0], {})[row[1]] = score
    except OSError as exc:
        raise SourceError(f"Cannot read the evaluation files: {exc}") from exc
    return [LabelledQuery(qid, texts[qid], rel) for qid, rel in relevant.items() if qid in texts]


def rank_articles(hits_external_ids: Sequence[str]) -> list[str]:
    seen: set[str] = set()
    ranked = []
    for ext in hits_external_ids:
        if ext not in seen:
            seen.add(ext)
            ranked.append(ext)
    return ranked


def ndcg(ranked: Sequence[str], relevant: dict[str, int], k: int) -> float:
    dcg = sum(relevant.get(doc, 0) / math.log2(i + 2) for i, doc in enumerate(ranked[:k]))
    ideal = sorted(relevant.values(), reverse=True)[:k]
    idcg = sum(rel / math.log2(i + 2) for i, rel in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def reciprocal_rank(ranked: Sequence[str], relevant: dict[str, int], k: int) -> float:
    for i, doc in enumerate(ranked[:k]):
        if doc in relevant:
            return 1.0 / (i + 1)
    return 0.0


def recall(ranked: Sequence[str], relevant: dict[str, int], k: int) -> float:
    return len(set(ranked[:k]) & set(relevant)) / len(relevant) if relevant else 0.0


def evaluate(searcher: Searcher, queries: Sequence[LabelledQuery], *, k: int = 10,
             mode: SearchMode | None = None, chunk_depth: int = 50) -> EvalReport:
    """Run every query; `chunk_depth` chunks are retrieved so that k distinct articles can be ranked."""
    per_query: list[dict[str, object]] = []
    search_ms: list[float] = []
    embed_ms: list[float] = []
    for query in queries:
        started = time.perf_counter()
        qvec = searcher.embedder.embed_query(query.text)
        embed_ms.append((time.perf_counter() - started) * 1000)
        result = searcher.search_vector(query.text, qvec, k=max(chunk_depth, k), mode=mode)
        search_ms.append(result.timings_ms["search"])
        ranked = rank_articles([h.external_id for h in result.hits])
        per_query.append({
            "id": query.id, "recall@5": recall(ranked, query.relevant, 5),
            f"recall@{k}": recall(ranked, query.relevant, k), "ndcg@10": ndcg(ranked, query.relevant, 10),
            "mrr@10": reciprocal_rank(ranked, query.relevant, 10),
            "top": ranked[:3], "relevant": sorted(query.relevant),
            "best_similarity": max((h.similarity or 0.0 for h in result.hits), default=0.0),
        })
    n = len(per_query) or 1

    def mean(key: str) -> float:
        return float(sum(float(q[key]) for q in per_query) / n)  # type: ignore[arg-type]

    return EvalReport(
        mode=mode or searcher.mode, queries=len(per_query), k=k,
        recall_at_5=mean("recall@5"), recall_at_k=mean(f"recall@{k}"), ndcg_at_10=mean("ndcg@10"),
        mrr_at_10=mean("mrr@10"),
        search_ms_p50=_pct(search_ms, 50), search_ms_p95=_pct(search_ms, 95),
        embed_ms_p50=_pct(embed_ms, 50), per_query=per_query,
    )


def _pct(values: Sequence[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else 0.0
