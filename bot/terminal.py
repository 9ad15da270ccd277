"""Human-readable terminal output for the CLI (rich)."""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from retrieval.abstention import AbstentionGate
from retrieval.answer_eval import AnswerReport
from retrieval.answer_units import passage_units
from retrieval.evaluation import EvalReport
from retrieval.runs import SyncRun
from retrieval.status import IndexStatus
from retrieval.sync import LISTED_IN_SUMMARY_LOG_FLAG, ProgressCallback
from retrieval.sync import Progress as SyncProgress
from retrieval.terms import stems
from retrieval.types import Answer, SearchHit

log = logging.getLogger(__name__)
console = Console(highlight=False)
# Piped or redirected, rich would wrap at 80 columns in mid-sentence: lines in a file or a grep stay whole.
console.soft_wrap = not console.is_terminal
STALE_DAYS = 365


def age(updated: datetime | None) -> str:
    if updated is None:
        return "update date unknown"
    days = (datetime.now(UTC) - updated).days
    label = "today" if days <= 0 else f"{days} day{'s' if days != 1 else ''} ago"
    return f"updated {label}" + (" ⚠ stale" if days > STALE_DAYS else "")


def plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def heading(hit: SearchHit) -> str:
    return " › ".join(hit.heading_path)


SNIPPET_CHARS = 240


def print_hits(hits: list[SearchHit], question: str = "") -> None:
    if not hits:
        console.print("No passages found.")
        return
    for rank, hit in enumerate(hits, 1):
        where = f" › {heading(hit)}" if hit.heading_path else ""
        sim = f"sim {hit.similarity:.2f}" if hit.similarity is not None else ""
        console.print(f"[bold]{rank}. {hit.title}[/bold]{where}  [dim]({hit.source}:{hit.external_id}, {sim})[/dim]")
        console.print(emphasis(f"   {snippet(hit, question)}"))


def snippet(hit: SearchHit, question: str = "") -> str:
    """The passage's opening; when the question's own word (not the title's) comes only further down, the
    opening shortened and the sentence or table row holding it ("per diem in Toronto": the Toronto row of
    a long rates table, which the opening would cut off)."""
    text = " ".join(hit.text.split())
    if len(text) <= SNIPPET_CHARS:
        return text
    head = text[:SNIPPET_CHARS]
    wanted = set(stems(question)) - set(stems(hit.title))
    if wanted and not wanted & set(stems(head)):
        unit = next((u for u in passage_units(hit.text) if wanted & set(stems(u.rendered))), None)
        if unit is not None:
            return f"{text[:SNIPPET_CHARS // 2]}… {' '.join(unit.rendered.split())[:SNIPPET_CHARS]}"
    return clip(text, SNIPPET_CHARS)


def clip(text: str, limit: int) -> str:
    """`text` on one line, shortened at a word boundary with an ellipsis when longer than `limit`."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1].rsplit(" ", 1)[0] + "…"


def emphasis(line: str) -> Text:
    """Markdown's **bold** (which KB articles and LLM answers use) as bold, instead of literal asterisks;
    a pair cut in half by a shortened quote stays as written."""
    parts = line.split("**")
    if len(parts) % 2 == 0:
        parts = [*parts[:-2], parts[-2] + "**" + parts[-1]]
    text = Text()
    for i, part in enumerate(parts):
        text.append(part, style="bold" if i % 2 else "")
    return text


def print_answer(answer: Answer) -> None:
    console.print(emphasis(answer.text))
    if answer.note:
        console.print(f"[dim]({answer.note})[/dim]")
    if answer.citations:
        console.print("\n[bold]Sources[/bold]")
        for c in answer.citations:
            hit = c.hit
            where = f" › {heading(hit)}" if hit.heading_path else ""
            console.print(f"  [{c.number}] {hit.title}{where} — {age(hit.updated_at)}", markup=False)
            if hit.url:
                console.print(f"      {hit.url}", markup=False)
            console.print(emphasis(f"      “{clip(c.quote, 200)}”"))
    elif answer.nearest:
        console.print("\n[bold]Nearest articles[/bold]")
        for hit in answer.nearest:
            console.print(f"  • {hit.title}" + (f" — {hit.url}" if hit.url else ""), markup=False)


def print_run(run: SyncRun, *, label: str = "Sync") -> None:
    colour = {"succeeded": "green", "partial": "yellow"}.get(run.status, "red")
    console.print(
        f"[{colour}]{label} {run.status}[/{colour}] in {run.duration_s or 0:.1f}s: {run.added} added, "
        f"{run.updated} updated, {run.removed} removed, {run.unchanged} unchanged, {run.failed} failed; "
        f"{plural(run.chunks_embedded, 'passage')} embedded."
    )
    for err in run.errors[:20]:
        console.print(f"  [red]✗[/red] {err['where']}: {err['error']}", markup=True)
    if len(run.errors) > 20:
        console.print(f"  … and {len(run.errors) - 20} more (see `kbbot status --json`).")


def print_status(status: IndexStatus, *, configured_model: str | None = None) -> None:
    console.print(f"Index: {plural(status.articles, 'article')}, {plural(status.chunks, 'passage')}, "
                  f"{plural(status.vectors, 'vector')}")
    console.print(f"Embedding model: {status.model or 'none yet'}"
                  + (f" ({status.dimension} dims)" if status.dimension else ""))
    # A changed KBBOT_EMBEDDING_MODEL takes effect only with a full re-embed; until then questions are
    # embedded by the index's own model, which an admin who just switched would not guess.
    if configured_model and status.model and configured_model not in (status.model, status.building_model):
        console.print(f"[yellow]Configured model {configured_model} is not the index's: questions use "
                      f"{status.model} until `kbbot sync --full` re-embeds with it.[/yellow]")
    if status.answer_sentences is not None:
        console.print(status.answer_sentences.line().capitalize())
    if status.building_model:
        console.print(f"[yellow]Re-embedding with {status.building_model} in progress[/yellow]")
    if status.keyword:
        newer = status.keyword.newer_chunks
        since = (f"; {plural(newer, 'passage')} added since {'is' if newer == 1 else 'are'} scored directly "
                 "until the next rebuild" if newer else "")
        console.print(f"Keyword search lists: rebuilt {status.keyword.rebuilt_at:%Y-%m-%d %H:%M UTC}{since}")
    if status.vectors:
        console.print(_answer_bar_line(status), markup=False)
    for s in status.sources:
        ok = s.last_success_at.strftime("%Y-%m-%d %H:%M UTC") if s.last_success_at else "never"
        mode = "incremental" if s.incremental else "lists every article each run"
        retry = f", {s.retry_pending} to retry" if s.retry_pending else ""
        console.print(f"  source {s.name} ({s.kind}): {plural(s.articles, 'article')}, last success {ok} "
                      f"({mode}{retry})", markup=False)
        if s.last_error:
            since = f" since {s.last_error_at:%Y-%m-%d %H:%M UTC}" if s.last_error_at else ""
            console.print(f"    [red]failing{since}:[/red] {escape(s.last_error)}", highlight=False)
    if status.held_back:
        console.print(f"[yellow]Held back (indexed, never answered): {status.held_back_articles} articles[/yellow]")
        for source, why, count in status.held_back:
            console.print(f"  {count} in {source}: {why}", markup=False)
    if status.running:
        console.print(f"[yellow]Sync running since {status.running.started_at:%H:%M:%S} "
                      f"(started by {status.running.started_by or 'unknown'})[/yellow]")
    if status.last_run:
        finished = status.last_run.finished_at or status.last_run.started_at
        print_run(status.last_run, label=f"Last sync ({finished:%Y-%m-%d %H:%M UTC})")
    else:
        console.print("No sync has run yet: `kbbot ingest PATH`.")
    if status.oldest_articles:
        console.print("Oldest articles:")
        for title, source, updated in status.oldest_articles:
            console.print(f"  {title} ({source}) — {age(updated)}", markup=False)


def _answer_bar_line(status: IndexStatus) -> str:
    density, bar = status.density, status.answer_bar
    if density is None or bar is None:
        return "Confidence needed to answer: not known until the next sync or question measures the index"
    base = AbstentionGate().bar(None)
    if density.value is None:
        return f"Confidence needed to answer: {bar:.2f} (no passage is readable by every member to measure by)"
    measured = (f"density {density.value:.2f} over {density.passages:,} passages"
                + (f", measured {density.measured_at:%Y-%m-%d %H:%M UTC}" if density.measured_at else ""))
    if bar > base:
        return f"Confidence needed to answer: {bar:.2f}, raised from {base:.2f} as this index is crowded ({measured})"
    return f"Confidence needed to answer: {bar:.2f} ({measured})"


def print_eval(reports: list[EvalReport]) -> None:
    table = Table(title=f"Retrieval on {reports[0].queries} labelled questions (article level)")
    for column in ("mode", "Recall@5", f"Recall@{reports[0].k}", "nDCG@10", "MRR@10",
                   "search p50 ms", "search p95 ms"):
        table.add_column(column, justify="right")
    for r in reports:
        table.add_row(r.mode, f"{r.recall_at_5:.3f}", f"{r.recall_at_k:.3f}", f"{r.ndcg_at_10:.3f}",
                      f"{r.mrr_at_10:.3f}", f"{r.search_ms_p50:.1f}", f"{r.search_ms_p95:.1f}")
    console.print(table)
    console.print(f"[dim]Question embedding p50: {reports[0].embed_ms_p50:.1f} ms (not in search times)[/dim]")


def print_answer_eval(reports: list[AnswerReport]) -> None:
    first = reports[0]
    table = Table(title=f"Answers to {first.answerable} answerable ({first.with_gold} with gold answers) and "
                        f"{first.unanswerable} unanswerable questions")
    for column in ("answerer", "answered", "abstained (unanswerable)", "gold recall", "contains gold",
                   "all key terms", "citation precision", "unsure (right / wrong)", "answer p50 ms"):
        table.add_column(column, justify="right")
    for r in reports:
        unsure = f"{r.unsure_rate:.1%} ({_share_or_dash(r.unsure_of_right)} / {_share_or_dash(r.unsure_of_wrong)})"
        table.add_row(r.answerer, f"{r.answered_rate:.1%}", f"{r.abstained_rate:.1%}", f"{r.token_recall:.3f}",
                      f"{r.contains_gold:.1%}", f"{r.all_key_terms:.1%}", f"{r.citation_precision:.3f}",
                      unsure, f"{r.answer_ms_p50:.0f}")
    console.print(table)


def _share_or_dash(share: float | None) -> str:
    return "-" if share is None else f"{share:.0%}"


PROGRESS_LOG_EVERY_S = 10.0


def progress_line(p: SyncProgress, source: str | None) -> str:
    """One progress line for a log: where the run is, in words."""
    c = p.counts
    counts = (f"{c.added} added, {c.updated} updated, {c.removed} removed, {c.unchanged} unchanged, "
              f"{c.failed} failed, {c.chunks_embedded:,} passages embedded")
    where = f"syncing {source}" if source else "syncing"
    if p.stage == "embedding":
        return f"{where}: embedding passages {p.done:,}/{p.total:,}"
    if p.stage == "backfill":
        return f"embedding passages that have no vector yet: {p.done:,} done"
    if p.stage == "index":
        return f"building the search indexes ({counts})"
    return f"{where}: {p.done:,} articles read ({counts})"


class ProgressLog:
    """Progress as a log line every `every_s` seconds: a run short enough to need none logs nothing."""

    def __init__(self, every_s: float) -> None:
        self.every_s = every_s
        self._next: float | None = None  # counted from the run's first event, not from the database start
        self._source: str | None = None

    def __call__(self, p: SyncProgress) -> None:
        if p.stage == "source":
            self._source = p.source
        now = time.monotonic()
        if self._next is None:
            self._next = now + self.every_s
        if p.stage == "done" or now < self._next:
            return
        self._next = now + self.every_s
        log.info("%s", progress_line(p, self._source))


class _ListedInSummary(logging.Filter):
    """Drops the log lines of a run that its summary, printed after it, lists (an error shown twice reads
    as two errors). `-v` keeps them."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(record, LISTED_IN_SUMMARY_LOG_FLAG, False) or log.isEnabledFor(logging.DEBUG)


@contextlib.contextmanager
def errors_in_summary_only() -> Iterator[None]:
    """For a command that prints a run's summary: what the summary says is left out of the log."""
    only_in_summary = _ListedInSummary()
    handlers = list(logging.getLogger().handlers)
    for handler in handlers:
        handler.addFilter(only_in_summary)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(only_in_summary)


@contextlib.contextmanager
def _logs_above_the_bar() -> Iterator[None]:
    """While the bar is live, rich prints what is written to sys.stderr above it; the log handlers still hold
    the stderr of before and would write through the bar. Point them at rich's stderr for that time."""
    live_stderr = sys.stderr
    moved = [h for h in logging.getLogger().handlers
             if isinstance(h, logging.StreamHandler) and h.stream is sys.__stderr__ and live_stderr is not h.stream]
    for handler in moved:
        handler.setStream(live_stderr)
    try:
        yield
    finally:
        for handler in moved:
            handler.setStream(sys.__stderr__)


@contextlib.contextmanager
def sync_progress(bar: bool) -> Iterator[ProgressCallback]:
    """A live progress bar when `bar` is asked and the output is a terminal; otherwise (piped, redirected to
    a file, --json) a log line now and then, so that a long run still shows a sign of life."""
    if not bar or not console.is_terminal:
        yield ProgressLog(PROGRESS_LOG_EVERY_S)
        return
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[detail]}"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as bar_, _logs_above_the_bar():
        task = bar_.add_task("Syncing", total=None, detail="")
        current: dict[str, Any] = {"source": None, "total": None}  # of the source being synced

        def update(p: SyncProgress) -> None:
            detail = (f"+{p.counts.added} ~{p.counts.updated} -{p.counts.removed} "
                      f"={p.counts.unchanged} ✗{p.counts.failed}")
            if p.stage == "source":
                current.update(source=p.source, total=p.total)
                bar_.update(task, description=f"Syncing {p.source}", total=p.total, completed=0, detail=detail)
            elif p.stage == "articles":
                total = current["total"]
                bar_.update(task, description=f"Syncing {current['source']}", completed=p.done,
                            total=max(total, p.done) if total else None, detail=detail)
            elif p.stage == "embedding":
                bar_.update(task, description="Embedding passages", completed=p.done, total=p.total,
                            detail=detail)
            elif p.stage == "backfill":
                bar_.update(task, description="Embedding passages", total=None, detail=f"{p.done} embedded")
            elif p.stage == "index":
                bar_.update(task, description="Building the vector index", total=None, completed=0, detail=detail)

        yield update
