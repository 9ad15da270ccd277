"""The expert's reply: after "Ask a human", the first message a member of the support group
(KBBOT_SUPPORT_GROUP) posts in the question's thread is kept against the question, for a reviewer to accept
as the answer (App Home > Gaps). A support member's messages in an escalated thread are for the asker, not
questions for the bot: the bot does not answer them.

Called by the message listener (Bolt runs one listener per event) before it treats a reply as a follow-up.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_sdk import WebClient

from bot.listeners import BotParts
from bot.reindex import AdminCheck
from bot.responder import strip_mentions
from retrieval.errors import KbbotError
from retrieval.expert_replies import ExpertReplies

log = logging.getLogger(__name__)


def capture(parts: BotParts, event: dict[str, Any], client: WebClient) -> bool:
    """True when the message is a support member's reply in an escalated thread (kept if it is the first)."""
    group = parts.support_group
    thread_ts, channel, user = event.get("thread_ts"), event.get("channel"), event.get("user")
    if not group or not thread_ts or thread_ts == event.get("ts") or not channel or not user:
        return False
    replies = ExpertReplies(parts.database())
    try:
        escalated, waiting = replies.thread_escalation(channel, thread_ts, event["ts"])
    except KbbotError as exc:
        log.warning("could not check thread %s for an escalation: %s", thread_ts, exc)
        return False
    if not escalated or not AdminCheck.in_groups(client, user, [group]):
        return False
    if waiting is None:
        return True  # the first reply is already kept; later ones stay in the thread
    body = strip_mentions(event.get("text", "")).strip()
    if not body:
        return True
    try:
        if replies.record(waiting, channel=channel, thread_ts=thread_ts, message_ts=event["ts"], user_id=user,
                          body=body) is not None:
            log.info("kept %s's reply to escalated answer %s for review", user, waiting)
    except KbbotError as exc:
        log.error("could not keep the expert's reply in thread %s: %s", thread_ts, exc)
    return True
