"""The app's messages tab (Slack's agent/assistant experience), through bolt's Assistant middleware:
suggested prompts when a thread opens, a "Searching the knowledge base…" status while answering.
Replies inside any DM thread come through here too, so they are answered with the thread as context."""

from __future__ import annotations

from typing import Any

from slack_bolt import App, Assistant, BoltContext, Say, SetStatus, SetSuggestedPrompts
from slack_sdk import WebClient

from bot.listeners import BotParts
from bot.responder import Question, strip_mentions

GREETING = ("Hi! Ask me anything covered by our knowledge base: I answer from the articles and list them "
            "as sources. Reply in this thread to ask a follow-up.")
SUGGESTED_PROMPTS = [
    {"title": "Connect to the VPN", "message": "How do I connect to the VPN when I work from home?"},
    {"title": "Reset my password", "message": "How do I reset my password?"},
    {"title": "Expenses", "message": "How do I file an expense report?"},
]


def register(app: App, parts: BotParts) -> None:
    assistant = Assistant()

    @assistant.thread_started
    def on_thread_started(say: Say, set_suggested_prompts: SetSuggestedPrompts) -> None:
        say(GREETING)
        set_suggested_prompts(prompts=SUGGESTED_PROMPTS, title="Try asking:")

    @assistant.user_message
    def on_user_message(payload: dict[str, Any], body: dict[str, Any], context: BoltContext, client: WebClient,
                        set_status: SetStatus) -> None:
        if payload.get("subtype") or payload.get("bot_id"):
            return
        question = Question(
            text=strip_mentions(payload.get("text", "")), asker=payload.get("user", ""),
            channel=payload["channel"], thread_ts=payload["thread_ts"], message_ts=payload["ts"],
            channel_kind="assistant", event_id=body.get("event_id"),
            team_id=payload.get("team") or body.get("team_id"), bot_user_id=context.bot_user_id,
        )
        parts.responder.answer(question, client, set_status=lambda status: set_status(status=status))

    app.assistant(assistant)
