"""Private replies and their "Share in channel" button.

A channel profile with `reply_privately: true` answers there with an ephemeral message only the asker sees
(`chat.postEphemeral`, in the question's thread). Only the asker reads it, so it answers from what the asker
may read, as a DM would. Its button posts the answer in the thread for everyone, but only after asking Slack
again, at the click, who reads the channel now (channel settings and member list fetched afresh, not the
resolver's cache, nor the audience the answer was written for): if any cited article is not readable by
every reader of the channel, nothing is posted and the asker is told why, without naming the article.
Slack failing to say who reads the channel makes it `public`, as everywhere else (fail closed).

The shared message is rebuilt from the answer log, so the click works on any replica and after a restart.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from slack_sdk import WebClient

from bot import blocks
from bot.channel_profiles import ChannelProfiles
from bot.dedupe import EventDeduper
from bot.readers import DEGRADED_NOTE, Place, ReaderResolver
from retrieval.answer_log import AnswerLog, LoggedAnswer
from retrieval.audiences import CitedArticle, answer_article_ids, cited_articles, unreadable_articles
from retrieval.db import Database
from retrieval.types import Answer, Citation, SearchHit

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class ShareOutcome:
    posted: bool
    text: str  # for the clicker (ephemeral)


def answer_from_log(logged: LoggedAnswer, known: dict[int, CitedArticle]) -> Answer:
    """The logged answer as the pipeline gave it, enough to render it again (citations as logged, their
    articles' current update dates)."""
    citations = []
    for c in logged.citations:
        article = known.get(c.article_id) if c.article_id is not None else None
        hit = SearchHit(
            chunk_id=c.chunk_id or 0, article_id=c.article_id or 0, source=c.source or "",
            external_id=c.external_id or "", title=c.title, url=c.url,
            heading_path=tuple(c.heading.split(" > ")) if c.heading else (), text=c.quote or "",
            char_start=0, char_end=0, updated_at=article.updated_at if article else None,
            score=c.score or 0.0, similarity=c.similarity)
        citations.append(Citation(c.number, hit, c.quote or ""))
    # The asker's private notes (e.g. "only public articles") say nothing true about the channel's copy.
    note = str(logged.metadata.get("note") or "").replace(DEGRADED_NOTE, "").strip()
    return Answer(logged.question, logged.answer_text or "", citations, logged.outcome,  # type: ignore[arg-type]
                  logged.model or "", rewritten_question=logged.rewritten_question, note=note or None)


class Sharer:
    """Posts a private answer in its thread when every reader of the channel may read its sources."""

    def __init__(self, answer_log: Callable[[], AnswerLog], database: Callable[[], Database],
                 readers: ReaderResolver, profiles: ChannelProfiles, deduper: EventDeduper, *,
                 can_escalate: bool, stale_after_days: int) -> None:
        self.answer_log = answer_log
        self.database = database
        self.readers = readers
        self.profiles = profiles
        self.deduper = deduper
        self.can_escalate = can_escalate
        self.stale_after_days = stale_after_days

    def share(self, client: WebClient, *, answer_id: int, user: str, channel: str) -> ShareOutcome:
        logged = self.answer_log().get(answer_id)
        if logged is None or logged.channel != channel:
            return ShareOutcome(False, "That answer is no longer in the log, so I can't share it.")
        if logged.asker != user:
            return ShareOutcome(False, "Only the person who asked can share this answer.")
        if logged.metadata.get("shared_ts") or not logged.metadata.get("private"):
            return ShareOutcome(False, "This answer is already in the thread.")
        if logged.outcome != "answered":
            return ShareOutcome(False, "There is no answer to share; ask in the channel to let others help.")
        profile = self.profiles.for_channel(channel, self.readers.channel_name(client, channel))
        place = Place(channel, "channel", user, declared=profile.audience if profile else None)
        scope = self.readers.scope(client, place, fresh=True)
        ids = list(dict.fromkeys(answer_article_ids(logged)))  # each cited article once
        known = cited_articles(self.database(), ids)
        hidden = unreadable_articles(scope, ids, known)
        if hidden:
            log.info("answer %s not shared in %s: %d of %d sources outside %s", answer_id, channel, hidden,
                     len(ids), scope.describe())
            why = ("I could not check with Slack who reads this channel now, so only answers from public "
                   "articles can be shared." if scope.degraded else
                   f"This channel is read with {scope.describe()}.")
            return ShareOutcome(False, f"I didn't share this answer: {hidden} of the {len(ids)} articles it cites "
                                       f"may not be read by everyone in this channel. {why} It stays visible to "
                                       "you only.")
        attempt = int(logged.metadata.get("share_failures") or 0)
        if not self.deduper.claim(f"share:{answer_id}:{attempt}"):
            return ShareOutcome(False, "This answer is already being shared in the thread.")
        try:
            ts = self._post(client, logged, known, user)
        except Exception:
            self.answer_log().add_metadata(answer_id, {"share_failures": attempt + 1})  # the next click may retry
            raise
        self.answer_log().add_metadata(answer_id, {"shared_by": user, "shared_ts": ts,
                                                   "shared_at": datetime.now(UTC).isoformat()})
        # The thread's copy is the answer's message now: follow-ups and feedback map to it.
        self.answer_log().set_delivery(answer_id, message_ts=ts)
        log.info("answer %s shared in %s/%s by %s", answer_id, channel, logged.thread_ts, user)
        return ShareOutcome(True, "You shared this answer in the thread.")

    def _post(self, client: WebClient, logged: LoggedAnswer, known: dict[int, CitedArticle], user: str) -> str:
        answer = answer_from_log(logged, known)
        messages = blocks.render_answer(answer, answer_id=logged.id, can_escalate=self.can_escalate,
                                        stale_after_days=self.stale_after_days)
        header = {"type": "context", "elements": [
            {"type": "mrkdwn", "text": f"<@{blocks.escape(user)}> shared an answer from kbbot"}]}
        first_ts = ""
        for i, message in enumerate(messages):
            page = ([header] if i == 0 else []) + message.blocks
            if len(page) > blocks.BLOCK_LIMIT:  # the header pushed a full page over: drop it, keep the answer
                page = message.blocks
            response = client.chat_postMessage(channel=str(logged.channel), thread_ts=logged.thread_ts,
                                               text=message.text, blocks=page)
            first_ts = first_ts or str(response["ts"])
        return first_ts
