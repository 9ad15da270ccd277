"""The `--json` shapes of the CLI. They are a public, stable interface (docs/cli-json.md): add fields,
never rename or remove them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from retrieval.answer_eval import AnswerReport
from retrieval.evaluation import EvalReport
from retrieval.runs import SyncRun
from retrieval.status import IndexStatus
from retrieval.types import Answer, SearchHit

SCHEMA_VERSION = 1


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def hit_json(hit: SearchHit, rank: int) -> dict[str, Any]:
    return {
        "rank": rank,
        "chunk_id": hit.chunk_id,
        "article_id": hit.article_id,
        "source": hit.source,
        "external_id": hit.external_id,
        "title": hit.title,
        "url": hit.url,
        "heading_path": list(hit.heading_path),
        "text": hit.text,
        "char_start": hit.char_start,
        "char_end": hit.char_end,
        "updated_at": _iso(hit.updated_at),
        "score": round(hit.score, 6),
        "similarity": None if hit.similarity is None else round(hit.similarity, 6),
        "dense_rank": hit.dense_rank,
        "lexical_rank": hit.lexical_rank,
    }


def search_json(question: str, mode: str, hits: list[SearchHit], timings: dict[str, float]) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "question": question,
        "mode": mode,
        "hits": [hit_json(h, i + 1) for i, h in enumerate(hits)],
        "timings_ms": {k: round(v, 3) for k, v in timings.items()},
    }


def answer_json(answer: Answer, *, answer_id: int | None = None) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "answer_id": answer_id,
        "question": answer.question,
        "rewritten_question": answer.rewritten_question,
        "outcome": answer.outcome,
        "answer": answer.text,
        "model": answer.model,
        "arm": answer.arm,
        "fallback_reason": answer.fallback_reason,
        "note": answer.note,
        "unsure": answer.unsure,
        "citations": [
            {"number": c.number, "quote": c.quote, **hit_json(c.hit, c.number)} for c in answer.citations
        ],
        "nearest": [hit_json(h, i + 1) for i, h in enumerate(answer.nearest)],
        "timings_ms": {k: round(v, 3) for k, v in answer.timings_ms.items()},
    }


def run_json(run: SyncRun) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": run.id,
        "kind": run.kind,
        "trigger": run.trigger,
        "started_by": run.started_by,
        "status": run.status,
        "sources": run.sources,
        "started_at": _iso(run.started_at),
        "finished_at": _iso(run.finished_at),
        "duration_s": None if run.duration_s is None else round(run.duration_s, 3),
        "added": run.added,
        "updated": run.updated,
        "removed": run.removed,
        "unchanged": run.unchanged,
        "failed": run.failed,
        "chunks_embedded": run.chunks_embedded,
        "errors": run.errors,
    }


def status_json(status: IndexStatus) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "articles": status.articles,
        "chunks": status.chunks,
        "vectors": status.vectors,
        "embedding_model": status.model,
        "embedding_dimension": status.dimension,
        "building_model": status.building_model,
        "sources": [
            {"name": s.name, "kind": s.kind, "articles": s.articles,
             "last_success_at": _iso(s.last_success_at), "last_error": s.last_error,
             "last_error_at": _iso(s.last_error_at), "incremental": s.incremental,
             "retry_pending": s.retry_pending, "oldest_update": _iso(s.oldest_update),
             "newest_update": _iso(s.newest_update)}
            for s in status.sources
        ],
        "last_run": run_json(status.last_run) if status.last_run else None,
        "running": run_json(status.running) if status.running else None,
        "oldest_articles": [
            {"title": t, "source": s, "updated_at": _iso(u)} for t, s, u in status.oldest_articles
        ],
        "keyword_lists": {"rebuilt_at": _iso(status.keyword.rebuilt_at),
                          "newer_chunks": status.keyword.newer_chunks} if status.keyword else None,
        "held_back": [{"source": s, "reason": r, "articles": n} for s, r, n in status.held_back],
        "density": {"value": status.density.value, "passages": status.density.passages,
                    "measured_at": _iso(status.density.measured_at),
                    "answer_bar": status.answer_bar} if status.density else None,
        "answer_sentences": {"prepared": status.answer_sentences.prepared,
                             "passages": status.answer_sentences.passages} if status.answer_sentences else None,
    }


def eval_json(report: EvalReport, *, per_query: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {"schema_version": SCHEMA_VERSION, **report.summary()}
    if per_query:
        data["per_query"] = report.per_query
    return data


def answer_eval_json(retrieval: list[dict[str, Any]], answers: list[AnswerReport], *,
                     per_query: bool = False) -> dict[str, Any]:
    """`kbbot eval --answers/--unanswerable`: the retrieval reports and one answer report per answerer."""
    out = []
    for report in answers:
        data: dict[str, Any] = report.summary()
        if per_query:
            data["per_question"] = report.per_question
        out.append(data)
    for item in retrieval:
        item.pop("schema_version", None)
    return {"schema_version": SCHEMA_VERSION, "retrieval": retrieval, "answers": out}
