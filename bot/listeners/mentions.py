"""@mentions in channels: answer in the thread (a new one under the question, or the one it was asked in)."""

from __future__ import annotations

from typing import Any

from slack_bolt import App, BoltContext
from slack_sdk import WebClient

from bot.listeners import BotParts
from bot.responder import Question, strip_mentions


def register(app: App, parts: BotParts) -> None:
    @app.event("app_mention")
    def on_mention(event: dict[str, Any], body: dict[str, Any], context: BoltContext, client: WebClient) -> None:
        if event.get("bot_id") or event.get("subtype"):
            return  # other bots, and edits (Slack sends edits as message_changed, but be safe)
        question = Question(
            text=strip_mentions(event.get("text", "")), asker=event.get("user", ""), channel=event["channel"],
            thread_ts=event.get("thread_ts") or event["ts"], message_ts=event["ts"], channel_kind="channel",
            event_id=body.get("event_id"), team_id=event.get("team") or body.get("team_id"),
            bot_user_id=context.bot_user_id,
        )
        parts.responder.answer(question, client)
