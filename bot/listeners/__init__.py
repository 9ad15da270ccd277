"""Slack listeners, one module per concern. `register_listeners` wires them all onto an App."""

from __future__ import annotations

from dataclasses import dataclass

from slack_bolt import App

from bot.home import HomeTab
from bot.reindex import Reindexer
from bot.responder import Responder
from bot.services import Services


@dataclass(frozen=True)
class BotParts:
    """What the listeners share, built once per process by `bot.app.create_app`."""

    services: Services
    responder: Responder
    reindexer: Reindexer
    home: HomeTab


def register_listeners(app: App, parts: BotParts) -> None:
    # The assistant middleware goes first: it claims the messages-tab threads before the generic
    # message listener sees them.
    from bot.listeners import assistant, feedback, gaps, home, mentions, messages, reindex

    assistant.register(app, parts)
    mentions.register(app, parts)
    messages.register(app, parts)
    feedback.register(app, parts)
    reindex.register(app, parts)
    home.register(app, parts)
    gaps.register(app, parts)
