"""The "Share in channel" button on a private answer (bot/share.py decides; this turns it into replies).

The clicker hears back through the click's `response_url`: on success the private copy is replaced by a
short note (the answer now sits in the thread), otherwise a new ephemeral message says why. Any failure is
told with an error id; nothing fails silently.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient

from bot.blocks import SHARE_ACTION
from bot.listeners import BotParts
from bot.responder import new_error_id

log = logging.getLogger(__name__)


def _tell(respond: Respond, client: WebClient, body: dict[str, Any], text: str, *, replace: bool) -> None:
    """To the clicker only: through the response_url, or (expired, used up) a new ephemeral message."""
    try:
        respond(text=text, response_type="ephemeral", replace_original=replace)
        return
    except Exception as exc:
        log.warning("the click's response_url failed (%s): posting an ephemeral message instead", exc)
    container = body.get("container") or {}
    channel = (body.get("channel") or {}).get("id") or container.get("channel_id")
    try:
        client.chat_postEphemeral(channel=channel, user=body["user"]["id"], thread_ts=container.get("thread_ts"),
                                  text=text)
    except Exception as exc:
        log.error("could not tell %s about their share: %s", body["user"]["id"], exc)


def register(app: App, parts: BotParts) -> None:
    @app.action(SHARE_ACTION)
    def on_share(ack: Ack, body: dict[str, Any], client: WebClient, respond: Respond) -> None:
        ack()
        user = body["user"]["id"]
        channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id")
        try:
            answer_id = int(body["actions"][0].get("value") or "")
        except (KeyError, IndexError, ValueError):
            answer_id = None
        if answer_id is None or not channel:
            _tell(respond, client, body, "That button is not attached to an answer I can share.", replace=False)
            return
        try:
            outcome = parts.sharer.share(client, answer_id=answer_id, user=user, channel=channel)
        except Exception as exc:
            error_id = new_error_id()
            log.error("sharing answer %s in %s failed [error id %s]: %s", answer_id, channel, error_id, exc,
                      exc_info=exc)
            _tell(respond, client, body, f":warning: Sorry, I couldn't share this answer (error id `{error_id}`). "
                  "Please try again in a minute.", replace=False)
            return
        _tell(respond, client, body, outcome.text, replace=outcome.posted)
