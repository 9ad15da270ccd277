"""The App Home tab: published when a user opens it, re-published when a reviewer changes the filter."""

from __future__ import annotations

import re
from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient

from bot.home import FILTERS
from bot.listeners import BotParts


def register(app: App, parts: BotParts) -> None:
    @app.event("app_home_opened")
    def on_home_opened(event: dict[str, Any], client: WebClient) -> None:
        if event.get("tab", "home") != "home":
            return  # the messages tab has its own listener
        parts.home.publish(client, event["user"])

    @app.action(re.compile(r"^home_filter:"))
    def on_filter(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        ack()
        review = body["actions"][0].get("value", "all")
        parts.home.publish(client, body["user"]["id"], review if review in FILTERS else "all")  # type: ignore[arg-type]
