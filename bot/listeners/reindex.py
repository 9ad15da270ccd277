"""`/reindex [full|status|help]`: acked at once; the work runs after the ack (and the sync in its own
thread), reporting through the command's response_url."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient

from bot.listeners import BotParts
from bot.reindex import parse


def register(app: App, parts: BotParts) -> None:
    @app.command("/reindex")
    def on_reindex(ack: Ack, command: dict[str, Any], client: WebClient, respond: Respond) -> None:
        text = command.get("text", "").strip()
        if parse(text) in ("incremental", "full"):
            typed = f"/reindex {text}".strip()
            ack(response_type="ephemeral",
                text=f":hourglass_flowing_sand: `{typed}` received: checking permissions and starting…")
        else:
            ack()
        parts.reindexer.handle(command.get("text", ""), command["user_id"], client, respond)
