"""The App Home tab: how to ask, the index's freshness per source, and for reviewers (admins and the support
group) the answer review: recent answers with their citations and feedback, filtered to 👎, abstentions or errors.

Everyone else sees only their own recent questions: the log holds questions asked in DMs and private
channels, which are not for every employee to read.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from slack_sdk import WebClient

from bot.blocks import escape, link
from bot.readers import Place, ReaderResolver
from bot.reindex import AdminCheck, who
from bot.responder import new_error_id
from retrieval.answer_log import AnswerLog, LoggedAnswer, ReviewFilter
from retrieval.audiences import visible_to
from retrieval.db import Database
from retrieval.errors import KbbotError
from retrieval.status import IndexStatus, SourceStatus, index_status

log = logging.getLogger(__name__)

Block = dict[str, Any]
FILTERS: dict[str, str] = {"all": "All", "down": "👎 Not helpful", "abstained": "No answer", "error": "Errors",
                           "gaps": "Gaps"}  # "gaps": grouped questions, experts' replies, articles (home_gaps.py)
REVIEW_LIMIT = 20
OWN_LIMIT = 10
PREVIEW_CHARS = 300
SOURCE_LINES = 10  # sources listed by name; the rest are counted ("and 4 more")
SOURCE_TEXT_BUDGET = 2800  # of the section's 3000 characters, leaving room for the "more" line
SOURCE_ERROR_CHARS = 200
SOURCE_FIX = (":wrench: A failing source: run `/reindex` to retry; if it keeps failing, check the source's "
              "credentials and URL in the sources file (`kbbot status` shows the full error).")


def _section(text: str) -> Block:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}}


def _context(text: str) -> Block:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text[:3000]}]}


def _when(value: datetime) -> str:
    """Rendered in each viewer's own time zone by Slack."""
    fallback = value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{int(value.timestamp())}^{{date_short_pretty}} {{time}}|{fallback}>"


def _preview(text: str | None) -> str:
    text = " ".join((text or "").split())
    return escape(text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "…")


def answer_blocks(a: LoggedAnswer) -> list[Block]:
    lines = [f"*Q:* {_preview(a.question)}"]
    if a.rewritten_question and a.rewritten_question != a.question:
        lines.append(f"_Understood as:_ {_preview(a.rewritten_question)}")
    if a.outcome == "error":
        lines.append(f":x: *Error* `{a.error_id}`: {_preview(a.error)}")
    elif a.outcome == "abstained":
        lines.append(":mag: *No good answer.*")
        nearest = a.metadata.get("nearest") or []
        if nearest:
            lines.append("Closest: " + " · ".join(link(n.get("url"), n.get("title", "?")) for n in nearest))
    else:
        lines.append(f"*A:* {_preview(a.answer_text)}")
    if a.citations:
        lines.append("*Sources:* " + " · ".join(
            f"[{c.number}] {link(c.url, c.title)}" + (f" ({c.similarity:.2f})" if c.similarity is not None else "")
            for c in a.citations))
    ups, downs = a.thumbs
    meta = [who(a.asker), f"<#{a.channel}>" if a.channel and a.channel_kind == "channel" else a.channel_kind,
            _when(a.created_at), a.outcome + (f" by {a.model}" if a.model and a.outcome == "answered" else "")
            + (f" (fallback in the {a.arm} arm)" if a.arm and a.fallback_reason else "")]
    if "total" in a.latency_ms:
        meta.append(f"{a.latency_ms['total'] / 1000:.1f} s")
    meta.append(f"👍 {ups}  👎 {downs}")
    blocks = [{"type": "divider"}, _section("\n".join(lines)), _context(" · ".join(meta))]
    reasons = [f"{who(f.user_id)}: “{escape(f.reason)}”" for f in a.feedback if f.reason]
    if reasons:
        blocks.append(_context("👎 " + " · ".join(reasons)))
    return blocks


def _status_line(status: IndexStatus) -> str:
    parts = [f"*{status.articles}* articles, *{status.chunks}* passages"]
    if status.running is not None:
        parts.append(f"a sync is running (started by {who(status.running.started_by)})")
    if status.last_run is not None and status.last_run.finished_at is not None:
        parts.append(f"last sync {_when(status.last_run.finished_at)} ({status.last_run.status})")
    else:
        parts.append("never synced")
    return "Knowledge base: " + " · ".join(parts)


def _ago(value: datetime, now: datetime) -> str:
    seconds = max(0.0, (now - value).total_seconds())
    if seconds < 120:
        return "just now"
    if seconds < 7200:
        return f"{int(seconds // 60)} min ago"
    if seconds < 2 * 86400:
        return f"{int(seconds // 3600)} h ago"
    return f"{int(seconds // 86400)} days ago"


def _staleness(s: SourceStatus) -> tuple[bool, bool, datetime]:
    """Failing sources first, then never synced, then the longest since a successful sync."""
    return (not s.failing, s.last_success_at is not None, s.last_success_at or datetime.min.replace(tzinfo=UTC))


def _source_line(s: SourceStatus, now: datetime, *, details: bool) -> str:
    articles = f"{s.articles} article{'' if s.articles == 1 else 's'}"
    if s.last_success_at is not None:
        synced = f"synced {_ago(s.last_success_at, now)} ({_when(s.last_success_at)})"
    else:
        synced = "never synced"
    icon = ":x:" if s.failing else (":white_check_mark:" if s.last_success_at else ":hourglass_flowing_sand:")
    line = f"{icon} *{escape(s.name[:80])}* ({escape(s.kind)}) · {articles} · {synced}"
    if not s.failing:
        return line + ("" if s.last_success_at or not details else ": `/reindex` runs it")
    since = f" since {_when(s.last_error_at)}" if s.last_error_at else ""
    if not details:
        return line + f" · *last sync failed*{since}: answers from it may be out of date"
    error = " ".join((s.last_error or "").split())
    if len(error) > SOURCE_ERROR_CHARS:
        error = error[: SOURCE_ERROR_CHARS - 1] + "…"
    return line + f"\n      *failing*{since}: “{escape(error)}”"


def _sources_block(status: IndexStatus, now: datetime, *, details: bool) -> Block | None:
    """One section: a line per source, the failing and most stale first, within Slack's 3000 characters."""
    if not status.sources:
        return None
    ordered = sorted(status.sources, key=_staleness)
    lines = ["*Sources*"]
    size = len(lines[0]) + len(SOURCE_FIX) + 1
    for s in ordered[:SOURCE_LINES]:
        line = _source_line(s, now, details=details)
        if size + 1 + len(line) > SOURCE_TEXT_BUDGET:
            break
        lines.append(line)
        size += 1 + len(line)
    rest = ordered[len(lines) - 1:]
    if rest:
        failing = sum(1 for s in rest if s.failing)
        lines.append(f"_…and {len(rest)} more source{'' if len(rest) == 1 else 's'}"
                     + (f" ({failing} failing)" if failing else "") + ": `kbbot status` lists them all._")
    if details and any(s.failing for s in status.sources):
        lines.append(SOURCE_FIX)
    return _section("\n".join(lines))


def _status_blocks(status: IndexStatus | None, now: datetime | None, *, details: bool) -> list[Block]:
    if status is None:
        return []
    blocks = [_context(_status_line(status))]
    sources = _sources_block(status, now or datetime.now(UTC), details=details)
    return blocks + ([sources] if sources else [])


def _intro() -> list[Block]:
    return [
        {"type": "header", "text": {"type": "plain_text", "text": "Ask the knowledge base", "emoji": True}},
        _section("Mention me in a channel (I answer in the thread), send me a direct message, or use the "
                 "*Messages* tab. Reply in the thread to ask a follow-up: no need to tag me again. Every answer "
                 "lists the articles it used; 👍 / 👎 tell us how it did."),
    ]


def _held_back_block(status: IndexStatus | None) -> list[Block]:
    """Reviewers' line on what is indexed but never answered, and why: counts and reasons, never which."""
    if status is None or not status.held_back:
        return []
    reasons = "; ".join(f"{escape(source[:80])}: {count} ({escape(reason[:200])})"
                        for source, reason, count in status.held_back[:5])
    return [_context(f":no_entry: *{status.held_back_articles}* articles are held back (indexed, never answered "
                     f"until their restriction maps to Slack groups): {reasons}"[:SOURCE_TEXT_BUDGET])]


def review_view(*, status: IndexStatus | None, answers: list[LoggedAnswer], counts: dict[str, int],
                review: ReviewFilter, now: datetime | None = None, gaps: list[Block] | None = None,
                hidden: int = 0) -> Block:
    """`hidden`: answers of the list left out because they cite articles the reviewer may not read."""
    blocks = _intro() + _status_blocks(status, now, details=True) + _held_back_block(status)
    blocks += [
        {"type": "header", "text": {"type": "plain_text", "text": "Answer review", "emoji": True}},
        _context(f"Last 7 days: *{counts.get('total', 0)}* questions: {counts.get('answered', 0)} answered, "
                 f"{counts.get('abstained', 0)} without a good answer, {counts.get('errors', 0)} errors · "
                 f"👍 {counts.get('up', 0)}  👎 {counts.get('down', 0)} · "
                 "`kbbot answers export --since 7d` for everything"),
        {"type": "actions", "block_id": "home_filters", "elements": [
            {"type": "button", "action_id": f"home_filter:{key}", "value": key,
             "text": {"type": "plain_text", "text": label, "emoji": True},
             **({"style": "primary"} if key == review else {})}
            for key, label in FILTERS.items()
        ]},
    ]
    if gaps is not None:
        blocks += gaps
    elif not answers and not hidden:
        blocks.append(_section("_Nothing here yet._" if review == "all" else "_No answers match this filter._"))
    if hidden and gaps is None:
        blocks.append(_context(f":lock: {hidden} answer{'' if hidden == 1 else 's'} not shown: "
                               f"{'it cites' if hidden == 1 else 'they cite'} articles you may not read."))
    for a in answers:
        blocks += answer_blocks(a)
    return {"type": "home", "private_metadata": review, "blocks": blocks[:100]}


def personal_view(*, status: IndexStatus | None, answers: list[LoggedAnswer],
                  now: datetime | None = None) -> Block:
    """Source errors (hosts, API messages) and the fixes are for reviewers; everyone sees which source failed."""
    blocks = _intro() + _status_blocks(status, now, details=False)
    if answers:
        blocks.append({"type": "header", "text": {"type": "plain_text", "text": "Your recent questions"}})
        for a in answers:
            blocks += answer_blocks(a)[:2]
    return {"type": "home", "blocks": blocks[:100]}


def error_view(error_id: str) -> Block:
    notice = _section(f":warning: The answer log is unreachable right now. Try again in a minute; if it "
                      f"persists, give this error id to your Slack admin: `{error_id}`.")
    return {"type": "home", "blocks": [*_intro(), notice]}


class HomeTab:
    def __init__(self, database: Callable[[], Database], answer_log: Callable[[], AnswerLog],
                 admins: AdminCheck, readers: ReaderResolver, *, support_group: str | None = None,
                 gaps: Callable[[WebClient, str, bool], list[Block]] | None = None) -> None:
        """`gaps` builds the reviewer's Gaps tab (bot/home_gaps.py) for a client, a user and whether they
        are an admin."""
        self.database = database
        self.answer_log = answer_log
        self.admins = admins
        self.readers = readers
        self.support_group = support_group  # its members review answers, as admins do
        self.gaps = gaps

    def is_reviewer(self, client: WebClient, user_id: str) -> bool:
        group = self.support_group
        if group and AdminCheck.in_groups(client, user_id, [group]):
            return True
        return self.admins.is_admin(client, user_id)

    def publish(self, client: WebClient, user_id: str, review: ReviewFilter = "all") -> None:
        try:
            view = self.build(client, user_id, review)
        except KbbotError as exc:
            error_id = new_error_id()
            log.error("App Home for %s failed [error id %s]: %s", user_id, error_id, exc)
            view = error_view(error_id)
        client.views_publish(user_id=user_id, view=view)

    def build(self, client: WebClient, user_id: str, review: ReviewFilter) -> Block:
        db = self.database()
        status = index_status(db)
        answers_log = self.answer_log()
        # Answers show their citations' titles and links: only those the viewer may read are listed.
        scope = self.readers.scope(client, Place(user_id, "im", user_id))
        if self.is_reviewer(client, user_id):
            week_ago = datetime.now(UTC) - timedelta(days=7)
            if review == "gaps" and self.gaps is not None:
                return review_view(status=status, answers=[], counts=answers_log.counts(since=week_ago),
                                   review=review, gaps=self.gaps(client, user_id,
                                                                      self.admins.is_admin(client, user_id)))
            recent = answers_log.recent(limit=REVIEW_LIMIT, review=review)
            answers = visible_to(db, scope, recent)
            return review_view(status=status, answers=answers, counts=answers_log.counts(since=week_ago),
                               review=review, hidden=len(recent) - len(answers))
        own = visible_to(db, scope, answers_log.recent(limit=OWN_LIMIT, asker=user_id))
        return personal_view(status=status, answers=own)
