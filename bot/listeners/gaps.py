"""App Home > Gaps: a reviewer accepts an expert's reply as the answer to the question it answered."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient

from bot.home_gaps import ACCEPT_ACTION
from bot.listeners import BotParts
from retrieval.errors import KbbotError
from retrieval.expert_replies import ExpertReplies

log = logging.getLogger(__name__)


def register(app: App, parts: BotParts) -> None:
    @app.action(ACCEPT_ACTION)
    def on_accept(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        ack()
        user = body["user"]["id"]
        if not parts.home.is_reviewer(client, user):
            log.warning("%s clicked accept on an expert reply without being a reviewer", user)
            parts.home.publish(client, user)
            return
        try:
            reply_id = int(body["actions"][0].get("value") or "")
        except ValueError:
            log.warning("accept clicked with a malformed reply id %r", body["actions"][0].get("value"))
            return
        try:
            accepted = ExpertReplies(parts.database()).accept(reply_id, user)
        except KbbotError as exc:
            log.error("accepting expert reply %s failed: %s", reply_id, exc)
            accepted = None
        if accepted is None:
            log.warning("expert reply %s is no longer in the log", reply_id)
        parts.home.publish(client, user, "gaps")  # type: ignore[arg-type]
