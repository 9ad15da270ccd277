"""Block Kit rendering of answers, abstentions, errors and placeholders.

Slack's limits shape this module: a section's text holds at most 3,000 characters, a message at most 50
blocks, and `text` (the notification and screen-reader fallback) at most 40,000. A long answer becomes
several sections and, past 50 blocks, several messages; the buttons always sit on the last one.

Text from the knowledge base is escaped (`&`, `<`, `>`), so an article can never ping `@channel` or forge a
link; only the links this module builds are live.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from retrieval.settings import DEFAULTS
from retrieval.types import Answer, SearchHit

Block = dict[str, Any]

SECTION_LIMIT = 3000
BLOCK_LIMIT = 50
FALLBACK_TEXT_LIMIT = 3900  # well under Slack's 40,000; notifications show far less anyway
QUOTE_LIMIT = 280
SEARCHING_TEXT = "Searching the knowledge base…"
SHARE_ACTION = "share_answer"  # bot/share.py


@dataclass(frozen=True)
class SlackMessage:
    text: str  # fallback: notifications, screen readers, and what a thread's history reads back
    blocks: list[Block]


# --- Markdown -> Slack mrkdwn --------------------------------------------------------------------

_CODE = re.compile(r"```.*?```|`[^`\n]+`", re.S)
_LINK = re.compile(r"\[([^\]\n]+)\]\((https?://[^\s)]+)\)")
_BOLD = re.compile(r"\*\*(.+?)\*\*|__(.+?)__")
_ITALIC = re.compile(r"(?<![\w*])\*(?!\s)([^*\n]+?)(?<!\s)\*(?![\w*])")
_STRIKE = re.compile(r"~~(.+?)~~")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*$", re.M)
_BULLET = re.compile(r"^(\s*)[-*+]\s+", re.M)
_MARKER = re.compile(r"\[(\d{1,3})\](?!\()")
_BOLD_OPEN, _BOLD_CLOSE = "\x01", "\x02"


def escape(text: str) -> str:
    """Slack's three control characters; everything else is literal."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def link(url: str | None, label: str) -> str:
    label = escape(label).replace("|", "¦")
    if not url or not url.startswith(("http://", "https://", "mailto:")):
        return label
    return f"<{url.replace('>', '%3E').replace('|', '%7C')}|{label}>"


def to_mrkdwn(markdown: str, marker_urls: dict[int, str | None] | None = None) -> str:
    """Convert the answerer's Markdown to Slack mrkdwn; [n] markers link to the cited article."""
    marker_urls = marker_urls or {}
    out: list[str] = []
    pos = 0
    for code in _CODE.finditer(markdown):
        out.append(_convert_prose(markdown[pos:code.start()], marker_urls))
        out.append(escape(code.group(0)))
        pos = code.end()
    out.append(_convert_prose(markdown[pos:], marker_urls))
    return "".join(out)


def _convert_prose(text: str, marker_urls: dict[int, str | None]) -> str:
    links: list[str] = []

    def keep_link(match: re.Match[str]) -> str:
        links.append(link(match.group(2), match.group(1)))
        return f"\x03{len(links) - 1}\x03"

    text = _LINK.sub(keep_link, text)
    text = escape(text)
    text = _HEADING.sub(lambda m: f"{_BOLD_OPEN}{m.group(1)}{_BOLD_CLOSE}", text)
    text = _BOLD.sub(lambda m: f"{_BOLD_OPEN}{m.group(1) or m.group(2)}{_BOLD_CLOSE}", text)
    text = _ITALIC.sub(r"_\1_", text)
    text = _STRIKE.sub(r"~\1~", text)
    text = _BULLET.sub(r"\1• ", text)
    text = text.replace(_BOLD_OPEN, "*").replace(_BOLD_CLOSE, "*")

    def marker(match: re.Match[str]) -> str:
        url = marker_urls.get(int(match.group(1)))
        return link(url, match.group(0)) if url else match.group(0)

    text = _MARKER.sub(marker, text)
    return re.sub(r"\x03(\d+)\x03", lambda m: links[int(m.group(1))], text)


# --- splitting -----------------------------------------------------------------------------------

def split_text(text: str, limit: int = SECTION_LIMIT) -> list[str]:
    """Pieces of at most `limit` characters, cut at the best boundary available (paragraph, line,
    sentence, word), never inside a `<link|label>`; an open code fence is closed and reopened."""
    pieces: list[str] = []
    rest = text.strip()
    while len(rest) > limit:
        budget = limit - 4  # room to close a code fence
        cut = _best_cut(rest, budget)
        piece, rest = rest[:cut].rstrip(), rest[cut:].lstrip()
        if piece.count("```") % 2:
            piece += "\n```"
            rest = "```\n" + rest
        pieces.append(piece)
    if rest:
        pieces.append(rest)
    return pieces


def _best_cut(text: str, budget: int) -> int:
    window = text[:budget]
    for pattern in ("\n\n", "\n", ". ", " "):
        at = window.rfind(pattern)
        while at > budget // 3:
            cut = at + len(pattern)
            if not _inside_link(text, cut):
                return cut
            at = window.rfind(pattern, 0, at)
    cut = budget
    while cut > budget // 2 and _inside_link(text, cut):
        cut -= 1
    return cut


def _inside_link(text: str, index: int) -> bool:
    opened = text.rfind("<", 0, index)
    return opened != -1 and text.rfind(">", 0, index) < opened


# --- pieces of an answer -------------------------------------------------------------------------

def age_text(updated_at: datetime | None, now: datetime, stale_after_days: int) -> str | None:
    """'_updated 12 days ago_', flagged when older than `stale_after_days`; None when the date is unknown."""
    if updated_at is None:
        return None
    if updated_at.tzinfo is None:
        updated_at = updated_at.replace(tzinfo=UTC)
    days = max(0, (now - updated_at).days)
    age = {0: "updated today", 1: "updated yesterday"}.get(days, f"updated {days} days ago")
    if days > stale_after_days:
        return f"_{age}_ · :warning: *may be out of date*"
    return f"_{age}_"


def _quote(text: str) -> str:
    text = " ".join(text.split())
    if len(text) > QUOTE_LIMIT:
        text = text[: QUOTE_LIMIT - 1].rsplit(" ", 1)[0] + "…"
    return "> " + escape(text)


def _source_line(number: int | None, hit: SearchHit, now: datetime, stale_after_days: int) -> str:
    head = f"*[{number}]* " if number is not None else "• "
    title = link(hit.url, hit.title or hit.external_id)
    heading = " › ".join(hit.heading_path)
    parts = [head + title + (f" › {escape(heading)}" if heading else "")]
    age = age_text(hit.updated_at, now, stale_after_days)
    if age:
        parts.append(age)
    return "\n".join(parts)


def _section(text: str) -> Block:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text[:SECTION_LIMIT]}}


def _context(text: str) -> Block:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text[:SECTION_LIMIT]}]}


def _button(action_id: str, label: str, value: str, style: str | None = None) -> Block:
    button: Block = {"type": "button", "action_id": action_id, "value": value,
                     "text": {"type": "plain_text", "text": label, "emoji": True}}
    if style:
        button["style"] = style
    return button


def action_buttons(answer_id: int | None, *, can_escalate: bool, can_share: bool = False) -> list[Block]:
    """👍 / 👎 (with an answer id to attach them to), Ask a human, and on a private answer Share in channel
    (bot/share.py; it needs the logged answer)."""
    elements = []
    if answer_id is not None:
        elements += [_button("feedback_up", "👍 Helpful", str(answer_id)),
                     _button("feedback_down", "👎 Not helpful", str(answer_id))]
        if can_share:
            elements.append(_button(SHARE_ACTION, "📣 Share in channel", str(answer_id)))
    if can_escalate:
        elements.append(_button("ask_human", "🙋 Ask a human", str(answer_id or ""), "primary"))
    if not elements:
        return []
    return [{"type": "actions", "block_id": f"answer_actions:{answer_id or 0}", "elements": elements}]


def sources_blocks(answer: Answer, *, now: datetime, stale_after_days: int) -> list[Block]:
    """The Sources (or closest articles) part: one section per cited passage, with a short quote."""
    blocks: list[Block] = []
    if answer.citations:
        blocks += [{"type": "divider"}, _context("*Sources*")]
        for c in answer.citations:
            line = _source_line(c.number, c.hit, now, stale_after_days)
            quote = _quote(c.quote or c.hit.text)
            blocks.append(_section(f"{line}\n{quote}"))
    elif answer.nearest:
        blocks += [{"type": "divider"}, _context("*Closest articles*")]
        blocks += [_section(_source_line(None, h, now, stale_after_days)) for h in answer.nearest]
    return blocks


def answer_text_mrkdwn(answer: Answer) -> str:
    urls = {c.number: c.hit.url for c in answer.citations}
    return to_mrkdwn(answer.text, urls)


# --- whole messages ------------------------------------------------------------------------------

def render_answer(answer: Answer, *, answer_id: int | None, can_escalate: bool, stale_after_days: int,
                  now: datetime | None = None, include_text: bool = True,
                  can_share: bool = False) -> list[SlackMessage]:
    """The answer as one or more messages (more only when it exceeds 50 blocks).

    `include_text=False` renders only what follows a streamed answer (sources, notes, buttons); `can_share`
    adds Share in channel (a private answer)."""
    now = now or datetime.now(UTC)
    body = answer_text_mrkdwn(answer)
    blocks: list[Block] = []
    if include_text:
        if answer.outcome == "abstained":
            body = f":mag: {body}"
        blocks += [_section(piece) for piece in split_text(body)]
    if answer.rewritten_question and answer.rewritten_question.strip() != answer.question.strip():
        blocks.append(_context(f"Answering: _{escape(answer.rewritten_question)}_"))
    blocks += sources_blocks(answer, now=now, stale_after_days=stale_after_days)
    if answer.note:
        blocks.append(_context(f":information_source: {escape(answer.note)}"))
    actions = action_buttons(answer_id, can_escalate=can_escalate,
                             can_share=can_share and answer.outcome == "answered")
    return _paginate(blocks, actions, fallback=body)


def _paginate(blocks: list[Block], tail: list[Block], *, fallback: str) -> list[SlackMessage]:
    pages: list[list[Block]] = []
    current: list[Block] = []
    for block in blocks:
        if len(current) == BLOCK_LIMIT:
            pages.append(current)
            current = []
        current.append(block)
    if len(current) + len(tail) > BLOCK_LIMIT:
        pages.append(current)
        current = []
    pages.append(current + tail)
    texts = [_plain_fallback(fallback)] + [f"(continued {i + 2}/{len(pages)})" for i in range(len(pages) - 1)]
    return [SlackMessage(text, page) for text, page in zip(texts, pages, strict=True)]


def _plain_fallback(text: str) -> str:
    return text if len(text) <= FALLBACK_TEXT_LIMIT else text[: FALLBACK_TEXT_LIMIT - 1] + "…"


def plain_messages(answer: Answer, *, now: datetime | None = None,
                   stale_after_days: int = DEFAULTS.slack.stale_after_days,
                   limit: int = SECTION_LIMIT) -> list[str]:
    """The msg_too_long / invalid_blocks fallback: the same content as plain mrkdwn texts, no blocks."""
    now = now or datetime.now(UTC)
    lines = [answer_text_mrkdwn(answer)]
    hits = [(c.number, c.hit, c.quote) for c in answer.citations] or [(None, h, None) for h in answer.nearest]
    if hits:
        lines.append("*Sources*" if answer.citations else "*Closest articles*")
        for number, hit, quote in hits:
            line = _source_line(number, hit, now, stale_after_days)
            lines.append(line + (f"\n{_quote(quote)}" if quote else ""))
    return split_text("\n\n".join(lines), limit)


def render_placeholder(text: str = SEARCHING_TEXT) -> SlackMessage:
    return SlackMessage(text, [_context(f":mag: {text}")])


def render_error(error_id: str, reason: str) -> SlackMessage:
    text = (f":warning: Sorry, I couldn't answer that: {reason} Please try again in a minute; if it keeps "
            f"happening, give this error id to your Slack admin: `{error_id}`.")
    return SlackMessage(text, [_section(text)])


def render_notice(text: str) -> SlackMessage:
    return SlackMessage(text, [_section(text)])


def history_text(blocks: Sequence[Block] | None, text: str) -> str:
    """What one of our earlier messages said, for a follow-up's history: its text, without the chrome."""
    return re.sub(r"<[^|>]+\|([^>]+)>", r"\1", text or "").strip()
