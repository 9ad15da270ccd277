"""`kbbot answers export`: the answer log for review outside Slack (spreadsheets, notebooks, BI)."""

from __future__ import annotations

import csv
import json
import re
import sys
from contextlib import nullcontext
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

import click

from bot.cli_help import FullHelpGroup
from retrieval.answer_log import LoggedAnswer

_RELATIVE = re.compile(r"^(\d+)\s*([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}

CSV_COLUMNS = [
    "id", "created_at", "channel_kind", "asker", "channel", "thread_ts", "message_ts", "question",
    "rewritten_question", "answer", "outcome", "model", "arm", "fallback_reason", "latency_total_ms", "latency_ms",
    "error_id", "error", "citations", "feedback_up", "feedback_down", "feedback_reasons",
]


def parse_since(value: str, now: datetime | None = None) -> datetime:
    """`7d`, `24h`, `30m`, `2w`, or an ISO date/time (UTC unless it says otherwise)."""
    now = now or datetime.now(UTC)
    match = _RELATIVE.match(value.strip().lower())
    if match:
        return now - timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError as exc:
        raise click.BadParameter(f"{value!r}: use e.g. 7d, 24h, 30m, 2w or 2026-01-31") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def answer_record(a: LoggedAnswer) -> dict[str, Any]:
    """The JSONL shape: one answer with its citations and feedback."""
    return {
        "id": a.id, "created_at": a.created_at.isoformat(), "channel_kind": a.channel_kind, "asker": a.asker,
        "channel": a.channel, "thread_ts": a.thread_ts, "message_ts": a.message_ts, "question": a.question,
        "rewritten_question": a.rewritten_question, "answer": a.answer_text, "outcome": a.outcome,
        "model": a.model, "arm": a.arm, "fallback_reason": a.fallback_reason, "latency_ms": a.latency_ms,
        "error_id": a.error_id, "error": a.error, "metadata": a.metadata,
        "citations": [{
            "number": c.number, "title": c.title, "url": c.url, "heading": c.heading, "quote": c.quote,
            "score": c.score, "similarity": c.similarity, "source": c.source, "external_id": c.external_id,
            "article_id": c.article_id, "chunk_id": c.chunk_id,
        } for c in a.citations],
        "feedback": [{"user": f.user_id, "value": f.value, "reason": f.reason,
                      "at": f.updated_at.isoformat()} for f in a.feedback],
    }


def csv_row(a: LoggedAnswer) -> dict[str, Any]:
    ups, downs = a.thumbs
    return {
        "id": a.id, "created_at": a.created_at.isoformat(), "channel_kind": a.channel_kind, "asker": a.asker,
        "channel": a.channel, "thread_ts": a.thread_ts, "message_ts": a.message_ts, "question": a.question,
        "rewritten_question": a.rewritten_question, "answer": a.answer_text, "outcome": a.outcome,
        "model": a.model, "arm": a.arm, "fallback_reason": a.fallback_reason,
        "latency_total_ms": a.latency_ms.get("total"),
        "latency_ms": json.dumps(a.latency_ms, sort_keys=True), "error_id": a.error_id, "error": a.error,
        "citations": "\n".join(
            f"[{c.number}] {c.title}" + (f" <{c.url}>" if c.url else "")
            + (f" similarity={c.similarity:.3f}" if c.similarity is not None else "") for c in a.citations),
        "feedback_up": ups, "feedback_down": downs,
        "feedback_reasons": "\n".join(f"{f.user_id}: {f.reason}" for f in a.feedback if f.reason),
    }


def write_export(answers: Any, fmt: str, out: TextIO) -> int:
    count = 0
    if fmt == "csv":
        writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for a in answers:
            writer.writerow(csv_row(a))
            count += 1
    else:
        for a in answers:
            out.write(json.dumps(answer_record(a), ensure_ascii=False, default=str) + "\n")
            count += 1
    return count


@click.group(cls=FullHelpGroup)
def answers() -> None:
    """Review what the bot answered: questions, citations, feedback."""


@answers.command()
@click.option("--since", default="7d", show_default=True, help="How far back: 7d, 24h, 30m, 2w or a date.")
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl"]), default="jsonl", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write to this file (default: standard output).")
@click.option("--by-model", is_flag=True,
              help="Instead of answers: one row per routing arm (tone/base) with its 👍/👎/abstain rates, the "
              "models that wrote its answers and its fallbacks (tone model A/B).")
@click.pass_obj
def export(obj, since: str, fmt: str, output: Path | None, by_model: bool) -> None:  # type: ignore[no-untyped-def]
    """Export the answer log (oldest first): every question, outcome, citation and feedback."""
    start = parse_since(since)
    if by_model:
        _export_by_model(obj.services.answer_log().by_model(since=start), fmt, output, start)
        return
    rows = obj.services.answer_log().export(since=start)
    if output is None:
        count = write_export(rows, fmt, sys.stdout)
    else:
        with output.open("w", encoding="utf-8", newline="") as out:
            count = write_export(rows, fmt, out)
    click.echo(f"Exported {count} answers since {start:%Y-%m-%d %H:%M UTC}"
               + (f" to {output}" if output else "") + ".", err=True)


def _export_by_model(stats: list[Any], fmt: str, output: Path | None, start: datetime) -> None:
    from retrieval.model_comparison import COLUMNS

    with (output.open("w", encoding="utf-8", newline="") if output else nullcontext(sys.stdout)) as out:
        if fmt == "csv":
            writer = csv.DictWriter(out, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(s.as_dict() for s in stats)
        else:
            for s in stats:
                out.write(json.dumps(s.as_dict()) + "\n")
    fallbacks = sum(s.fallbacks for s in stats)
    click.echo(f"Compared {len(stats)} groups over {sum(s.answers for s in stats)} answers"
               + (f" ({fallbacks} written by a fallback model)" if fallbacks else "") + " since "
               f"{start:%Y-%m-%d %H:%M UTC}" + (f" to {output}" if output else "") + ".", err=True)
