"""The "Gaps" view of the App Home, for reviewers: questions the bot could not answer well grouped by
meaning, experts' replies waiting to be accepted as answers, and the articles to review. The same blocks
make the weekly digest (bot/gaps_digest.py), without the buttons and without askers.

Askers are named only to admins. Groups citing an article the viewer may not read are left out (the core's
`Viewer.visible`), and said so.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from slack_sdk import WebClient

from bot.blocks import escape, link
from bot.readers import Place, ReaderResolver
from bot.reindex import who
from retrieval.db import Database
from retrieval.embeddings import Embedder
from retrieval.expert_replies import ExpertReply
from retrieval.gaps import GapGroup, GapsReport
from retrieval.gaps_articles import ArticleToReview
from retrieval.search import Searcher

if TYPE_CHECKING:
    from bot.services import Services

Block = dict[str, Any]
GROUPS_SHOWN = 8
ARTICLES_SHOWN = 5
REPLIES_SHOWN = 5
HOME_DAYS = 30
ACCEPT_ACTION = "gaps_accept"
TEXT_CHARS = 2900  # of a section's 3000
QUOTE_CHARS = 500


@dataclass(frozen=True)
class GapsParts:
    """What the Gaps view and the weekly digest read. `database`, `embedder` and `searcher` are called when
    a view is built (the database opens and the model loads on first use); `readers` says who may read what
    (bot/readers.py, the resolver the answers use)."""

    database: Callable[[], Database]
    embedder: Callable[[], Embedder]
    searcher: Callable[[], Searcher]
    readers: ReaderResolver
    stale_after_days: int

    @classmethod
    def of(cls, services: Services, readers: ReaderResolver) -> GapsParts:
        return cls(database=services.database, embedder=lambda: services.embedder, searcher=services.searcher,
                   readers=readers, stale_after_days=services.settings.slack.stale_after_days)


def _section(text: str) -> Block:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text[:TEXT_CHARS]}}


def _context(text: str) -> Block:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text[:TEXT_CHARS]}]}


def _short(text: str | None, limit: int = 200) -> str:
    text = " ".join((text or "").split())
    return escape(text if len(text) <= limit else text[: limit - 1] + "…")


def group_blocks(g: GapGroup, rank: int, *, show_askers: bool) -> list[Block]:
    people = f"{g.people} {'person' if g.people == 1 else 'people'}"
    counts = [f"asked {g.asked}× by {people}", f"last <!date^{int(g.last_asked.timestamp())}^{{date_short}}|"
              f"{g.last_asked:%Y-%m-%d}>"]
    for n, label in ((g.abstained, "unanswered"), (g.down_voted, "👎"), (g.escalated, "escalated")):
        if n:
            counts.append(f"{n} {label}")
    lines = [f"*{rank}. {_short(g.representative)}*", " · ".join(counts)]
    others = [q.question for q in g.questions if q.question != g.representative]
    if others:
        lines.append("_Also asked:_ " + " · ".join(f"“{_short(q, 80)}”" for q in dict.fromkeys(others)
                                                   if q)[:600])
    if g.answer_sample:
        lines.append(f"*Bot answered:* {_short(g.answer_sample)}")
    if g.cited:
        lines.append("*Cited:* " + " · ".join(f"{link(c.url, c.title)} ({c.count})" for c in g.cited[:3]))
    if g.nearest:
        lines.append("*Nearest articles:* " + " · ".join(link(n.url, n.title) for n in g.nearest))
    reasons = [r for r in g.reasons if r]
    if reasons:
        lines.append("👎 " + " · ".join(f"“{_short(r, 120)}”" for r in reasons[:3]))
    if show_askers and g.askers:
        lines.append("_Asked by_ " + ", ".join(who(a) for a in g.askers[:10]))
    return [_section("\n".join(lines))]


def article_line(a: ArticleToReview, rank: int) -> str:
    why = f" — {', '.join(a.why)}" if a.why else ""
    return (f"{rank}. {link(a.url, a.title)} ({escape(a.source)}): cited {a.citations}×, 👍 {a.up} 👎 {a.down}"
            f"{why}")


def reply_blocks(r: ExpertReply, *, buttons: bool) -> list[Block]:
    status = (f":white_check_mark: accepted by {who(r.accepted_by)}" if r.accepted
              else ":hourglass_flowing_sand: waiting for a reviewer")
    if r.exported_to:
        status += f" · exported to {escape(r.exported_to)}"
    block = _section(f"*Q:* {_short(r.question)}\n*{who(r.user_id)} answered:* {_short(r.text, QUOTE_CHARS)}\n"
                     f"{status}")
    if buttons and not r.accepted:
        block["accessory"] = {"type": "button", "action_id": ACCEPT_ACTION, "value": str(r.id), "style": "primary",
                              "text": {"type": "plain_text", "text": "Accept as answer"}}
    return [block]


def gaps_blocks(report: GapsReport, articles: Sequence[ArticleToReview], replies: Sequence[ExpertReply], *,
                days: int, show_askers: bool, buttons: bool) -> list[Block]:
    blocks: list[Block] = [
        {"type": "header", "text": {"type": "plain_text", "text": "Knowledge gaps", "emoji": True}},
        _context(f"Last {days} days: *{report.gap_questions}* questions without a good answer (no answer, 👎 or "
                 f"escalated) in *{len(report.groups)}* groups, most people and most recent first"
                 + (f" · {report.hidden_groups} groups citing articles you may not read are left out"
                    if report.hidden_groups else "")
                 + f" · `kbbot gaps --since {days}d` for all"),
    ]
    if not report.groups:
        blocks.append(_section("_No gaps: every question got an answer nobody down-voted._"))
    for i, g in enumerate(report.groups[:GROUPS_SHOWN], 1):
        blocks += group_blocks(g, i, show_askers=show_askers)
    if replies:
        blocks += [{"type": "divider"}, _section("*Experts' answers* (after “Ask a human”): accepted answers "
                                                 "become draft articles with `kbbot gaps drafts`")]
        for r in replies[:REPLIES_SHOWN]:
            blocks += reply_blocks(r, buttons=buttons)
    blocks += [{"type": "divider"}, _section("*Articles to review* (👎 as wrong or out of date, or old and often "
                                             "cited; citations × 👎 rate)\n"
                                             + ("\n".join(article_line(a, i) for i, a in
                                                          enumerate(articles[:ARTICLES_SHOWN], 1))
                                                or "_None right now._"))]
    return blocks


def reviewer_gaps_blocks(parts: GapsParts, client: WebClient, user_id: str, *, is_admin: bool) -> list[Block]:
    """The Gaps view's blocks for one reviewer: what they may read, as if the bot answered them in a DM
    (askers named only when they are an admin)."""
    from datetime import UTC, datetime, timedelta

    from retrieval.expert_replies import ExpertReplies
    from retrieval.gaps import GapFinder, Viewer, nearest_from_searcher
    from retrieval.gaps_articles import articles_to_review

    since = datetime.now(UTC) - timedelta(days=HOME_DAYS)
    db = parts.database()
    viewer = Viewer.for_scope(db, parts.readers.scope(client, Place(user_id, "im", user_id)), is_admin=is_admin)
    report = GapFinder(db, parts.embedder()).report(
        since=since, viewer=viewer, limit=GROUPS_SHOWN, nearest=nearest_from_searcher(parts.searcher()))
    articles = articles_to_review(db, since=since, stale_after_days=parts.stale_after_days,
                                  visible=viewer.visible, limit=ARTICLES_SHOWN)
    replies = ExpertReplies(db)
    shown = visible_replies([*replies.pending(limit=REPLIES_SHOWN), *replies.accepted(limit=3)], viewer.visible)
    return gaps_blocks(report, articles, shown, days=HOME_DAYS, show_askers=viewer.is_admin, buttons=True)


def visible_replies(replies: Sequence[ExpertReply], visible: Any) -> list[ExpertReply]:
    """Replies to questions whose answer cited only articles the viewer may read (all when unrestricted)."""
    if visible is None:
        return list(replies)
    cited = {a for r in replies for a in r.cited}
    allowed = visible(cited) if cited else set()
    return [r for r in replies if set(r.cited) <= allowed]
