"""Slack listeners, one module per concern. `register_listeners` wires them all onto an App."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from slack_bolt import App

from bot.home import HomeTab
from bot.reindex import Reindexer
from bot.responder import Responder
from bot.share import Sharer
from retrieval.answer_log import AnswerLog
from retrieval.db import Database


@dataclass(frozen=True)
class BotParts:
    """What the listeners use, built once per process by `bot.app.build_parts`."""

    responder: Responder
    reindexer: Reindexer
    home: HomeTab
    sharer: Sharer  # "Share in channel" on private answers
    answer_log: Callable[[], AnswerLog]  # feedback, escalations, "has the bot answered in this thread?"
    database: Callable[[], Database]  # experts' replies to escalated questions
    support_group: str | None  # mentioned by `Ask a human`; None: no escalation


def register_listeners(app: App, parts: BotParts) -> None:
    # The assistant middleware goes first: it claims the messages-tab threads before the generic
    # message listener sees them.
    from bot.listeners import assistant, feedback, gaps, home, mentions, messages, reindex, share

    assistant.register(app, parts)
    mentions.register(app, parts)
    messages.register(app, parts)
    feedback.register(app, parts)
    reindex.register(app, parts)
    home.register(app, parts)
    gaps.register(app, parts)
    share.register(app, parts)
