"""👍 / 👎 on an answer (👎 opens a modal asking for an optional reason), and "Ask a human", which mentions
the support group in the thread so a person picks the question up.

Feedback is stored the moment a button is clicked; the reason, when given, is added on submit. Each person
has one vote per answer; the latest click wins.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient

from bot.blocks import escape
from bot.listeners import BotParts
from bot.responder import new_error_id
from retrieval.errors import KbbotError
from retrieval.feedback_kinds import KINDS

log = logging.getLogger(__name__)

REASON_CALLBACK = "feedback_reason"
REASON_BLOCK, REASON_ACTION = "reason", "reason_input"
KIND_BLOCK, KIND_ACTION = "kind", "kind_input"  # the kind of 👎 (retrieval/feedback_kinds.py)


def _answer_id(action: dict[str, Any]) -> int | None:
    try:
        return int(action.get("value") or "")
    except ValueError:
        return None


def _where(body: dict[str, Any]) -> tuple[str | None, str | None]:
    """(channel, thread) of the message the button sits on."""
    channel = (body.get("channel") or body.get("container", {})).get("id") or body.get("container", {}).get(
        "channel_id")
    message = body.get("message") or {}
    return channel, message.get("thread_ts") or message.get("ts") or body.get("container", {}).get("thread_ts")


def _tell(client: WebClient, body: dict[str, Any], text: str) -> None:
    """An ephemeral note to the clicker, in the thread of the answer."""
    channel, thread_ts = _where(body)
    if channel is None:
        return
    try:
        client.chat_postEphemeral(channel=channel, user=body["user"]["id"], thread_ts=thread_ts, text=text)
    except Exception as exc:
        log.warning("could not post an ephemeral note: %s", exc)


def reason_modal(answer_id: int, channel: str | None, thread_ts: str | None) -> dict[str, Any]:
    return {
        "type": "modal", "callback_id": REASON_CALLBACK,
        "private_metadata": json.dumps({"answer_id": answer_id, "channel": channel, "thread_ts": thread_ts}),
        "title": {"type": "plain_text", "text": "What went wrong?"},
        "submit": {"type": "plain_text", "text": "Send"},
        "close": {"type": "plain_text", "text": "Skip"},
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": "Thanks, your 👎 is recorded. A reason helps "
                                          "the team fix the article or the answer (optional)."}},
            {"type": "input", "block_id": KIND_BLOCK, "optional": True,
             "label": {"type": "plain_text", "text": "What was wrong?"},
             "element": {"type": "radio_buttons", "action_id": KIND_ACTION, "options": [
                 {"text": {"type": "plain_text", "text": label}, "value": kind} for kind, label in KINDS.items()]}},
            {"type": "input", "block_id": REASON_BLOCK, "optional": True,
             "label": {"type": "plain_text", "text": "Reason"},
             "element": {"type": "plain_text_input", "action_id": REASON_ACTION, "multiline": True,
                         "max_length": 1000,
                         "placeholder": {"type": "plain_text", "text": "e.g. the article is out of date"}}},
        ],
    }


def register(app: App, parts: BotParts) -> None:
    def save(body: dict[str, Any], client: WebClient, value: str, reason: str | None = None) -> bool:
        answer_id = _answer_id(body["actions"][0]) if "actions" in body else None
        if answer_id is None:
            return False
        try:
            found = parts.answer_log().record_feedback(answer_id, body["user"]["id"], value, reason)  # type: ignore[arg-type]
        except KbbotError as exc:
            error_id = new_error_id()
            log.error("feedback on answer %s failed [error id %s]: %s", answer_id, error_id, exc)
            _tell(client, body, f":warning: Sorry, I couldn't save your feedback (error id `{error_id}`). "
                  "Please try again in a minute.")
            return False
        if not found:
            _tell(client, body, "That answer is no longer in the log, so I couldn't attach your feedback.")
        return found

    @app.action("feedback_up")
    def on_up(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        ack()
        if save(body, client, "up"):
            _tell(client, body, "Thanks for the 👍!")

    @app.action("feedback_down")
    def on_down(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        ack()
        # Open the modal first: the trigger_id expires 3 s after the click.
        answer_id = _answer_id(body["actions"][0])
        channel, thread_ts = _where(body)
        if answer_id is not None:
            try:
                client.views_open(trigger_id=body["trigger_id"], view=reason_modal(answer_id, channel, thread_ts))
            except Exception as exc:
                log.warning("could not open the feedback modal: %s", exc)
        save(body, client, "down")

    @app.view(REASON_CALLBACK)
    def on_reason(ack: Ack, body: dict[str, Any], view: dict[str, Any], client: WebClient) -> None:
        ack()
        meta = json.loads(view.get("private_metadata") or "{}")
        values = view["state"]["values"]
        reason = (values.get(REASON_BLOCK, {}).get(REASON_ACTION, {}).get("value") or "").strip() or None
        picked = (values.get(KIND_BLOCK, {}).get(KIND_ACTION, {}).get("selected_option") or {}).get("value")
        kind = picked if picked in KINDS else None
        if not (reason or kind) or "answer_id" not in meta:
            return
        user = body["user"]["id"]
        try:
            parts.answer_log().record_feedback(int(meta["answer_id"]), user, "down", reason, kind)
        except KbbotError as exc:
            error_id = new_error_id()
            log.error("feedback reason on answer %s failed [error id %s]: %s", meta["answer_id"], error_id, exc)
            if meta.get("channel"):
                try:
                    client.chat_postEphemeral(channel=meta["channel"], user=user, thread_ts=meta.get("thread_ts"),
                                              text=f":warning: Sorry, I couldn't save your reason (error id "
                                                   f"`{error_id}`).")
                except Exception as post_exc:
                    log.warning("could not post an ephemeral note: %s", post_exc)

    @app.action("ask_human")
    def on_ask_human(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        ack()
        group = parts.support_group
        channel, thread_ts = _where(body)
        user = body["user"]["id"]
        if not group or channel is None:
            _tell(client, body, "No support team is configured for escalations; please ask in your help channel.")
            return
        answer_id = _answer_id(body["actions"][0])
        if answer_id is not None:
            try:  # recorded first, but never at the cost of the escalation itself
                parts.answer_log().add_metadata(
                    answer_id, {"escalated_by": user, "escalated_at": datetime.now(UTC).isoformat()})
            except KbbotError as exc:
                log.warning("could not record the escalation of answer %s: %s", answer_id, exc)
        mention = f"<!subteam^{escape(group)}>"
        client.chat_postMessage(channel=channel, thread_ts=thread_ts,
                                text=f"{mention} <@{user}> would like a person to help with this question.")
