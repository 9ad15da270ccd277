"""Plain messages: direct messages to the bot, follow-ups in any thread where the bot already answered
(no re-tag needed), and top-level questions in help channels (a channel profile with
`answer_without_mention`). Edits, deletions, joins and other bots' messages are ignored.

Replies inside DM threads (the messages tab) belong to the assistant listener; mentions to the mention
listener (Slack sends both an `app_mention` and a `message` event for them, and only one may answer).
"""

from __future__ import annotations

import logging
import re
from typing import Any

from slack_bolt import App, BoltContext
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.listeners import BotParts, expert_replies
from bot.responder import Question, strip_mentions
from retrieval.errors import KbbotError

log = logging.getLogger(__name__)


def _mentions(text: str, user_id: str | None) -> bool:
    return bool(user_id) and re.search(rf"<@{re.escape(user_id or '')}(\|[^>]*)?>", text or "") is not None


def register(app: App, parts: BotParts) -> None:
    @app.event("message")
    def on_message(event: dict[str, Any], body: dict[str, Any], context: BoltContext, client: WebClient) -> None:
        if event.get("subtype") or event.get("bot_id") or not event.get("user"):
            return  # edits (message_changed), deletions, joins, bots: acked and ignored
        channel_type = event.get("channel_type")
        thread_ts = event.get("thread_ts")
        if channel_type == "im":
            if thread_ts:
                return  # the assistant listener answers DM threads
            kind, thread_ts = "im", event["ts"]
        else:
            if _mentions(event.get("text", ""), context.bot_user_id):
                return  # answered by the mention listener
            if not thread_ts or thread_ts == event["ts"]:
                if not _help_channel(parts, client, event["channel"]):
                    return  # top-level chatter
                thread_ts = event["ts"]  # a help channel: every top-level question gets an answer
            elif expert_replies.capture(parts, event, client):
                return  # a support member answering an escalated question: kept, not answered
            elif not _bot_in_thread(parts, client, event["channel"], thread_ts, context.bot_user_id):
                return
            kind = "channel"
        question = Question(
            text=strip_mentions(event.get("text", "")), asker=event["user"], channel=event["channel"],
            thread_ts=thread_ts, message_ts=event["ts"], channel_kind=kind, event_id=body.get("event_id"),
            team_id=event.get("team") or body.get("team_id"), bot_user_id=context.bot_user_id,
        )
        parts.responder.answer(question, client)


def _help_channel(parts: BotParts, client: WebClient, channel: str) -> bool:
    """Whether the channel's profile asks for answers without an @mention (bot/channel_profiles.py)."""
    responder = parts.responder
    if not responder.profiles.profiles:
        return False
    profile = responder.profiles.for_channel(channel, responder.readers.channel_name(client, channel))
    return profile is not None and profile.answer_without_mention


def _bot_in_thread(parts: BotParts, client: WebClient, channel: str, thread_ts: str, bot_user_id: str | None) -> bool:
    """Has the bot answered in this thread? The answer log says so in one indexed query; while the
    database is down, the thread itself (one Web API call) does, so the follow-up still gets a reply."""
    try:
        return parts.answer_log().answered_in_thread(channel, thread_ts)
    except KbbotError as exc:
        log.warning("answer log unreachable (%s); reading thread %s from Slack instead", exc, thread_ts)
    try:
        replies = client.conversations_replies(channel=channel, ts=thread_ts, limit=100)
    except SlackApiError as exc:
        log.warning("could not read thread %s: %s", thread_ts, exc.response.get("error"))
        return False
    return any(m.get("user") == bot_user_id for m in replies.get("messages", []))
