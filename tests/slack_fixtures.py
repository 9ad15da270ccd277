"""Fixtures for the Slack tests: the real Bolt app served by `kbbot serve`'s HTTP server on a loopback
port, its Web API client pointed at the fake Slack, its database a fresh copy of the indexed demo KB.

Requests are signed with Slack's documented v0 scheme and shaped after Slack's documented payloads.
Import the fixtures into a test module with `from tests.slack_fixtures import *  # noqa: F403`.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from slack_sdk.signature import SignatureVerifier

from bot.app import build_parts, create_app
from bot.cli_serve import HttpServer
from bot.listeners import BotParts
from bot.services import Services
from retrieval.db import Database
from retrieval.settings import Settings, load_settings
from tests.fakes.openai_api import fake_openai
from tests.fakes.slack_api import BOT_USER_ID, TEAM_ID, FakeSlack

# Star-importing this module brings the fixtures (and the fake OpenAI API's) into a test module.
__all__ = ["fake_openai", "fake_slack", "slack_bot"]

SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"  # the example secret of Slack's docs
ADMIN = "U0ADMIN"
EMPLOYEE = "U0EMPLOYEE"
SUPPORT_GROUP = "S0SUPPORT"
_ids = itertools.count(1)


@dataclass
class Posted:
    status: int
    body: str
    elapsed_ms: float


@dataclass
class SlackRequests:
    """Signed requests to a bot at `url`, as Slack sends them; the fake Web API holds the human messages."""

    url: str
    fake: FakeSlack

    # --- raw HTTP --------------------------------------------------------------------------------
    def post(self, body: str, *, content_type: str, timestamp: int | None = None, secret: str = SIGNING_SECRET,
             headers: dict[str, str] | None = None) -> Posted:
        ts = str(int(time.time()) if timestamp is None else timestamp)
        signature = SignatureVerifier(secret).generate_signature(timestamp=ts, body=body)
        request = urllib.request.Request(
            self.url + "/slack/events", data=body.encode(), method="POST",
            headers={"Content-Type": content_type, "X-Slack-Request-Timestamp": ts, "X-Slack-Signature": signature,
                     **(headers or {})},
        )
        started = time.perf_counter()
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                status, text = response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            status, text = exc.code, exc.read().decode()
        return Posted(status, text, (time.perf_counter() - started) * 1000)

    # --- Slack's payloads --------------------------------------------------------------------------
    def event(self, event: dict[str, Any], *, event_id: str | None = None, retry_num: int | None = None,
              **post_kwargs: Any) -> Posted:
        """An Events API `event_callback` envelope around `event`."""
        event_id = event_id or f"Ev{next(_ids):08d}"
        envelope = {
            "token": "verification-token-unused", "team_id": TEAM_ID, "api_app_id": "A0KBBOT",
            "event": {"event_ts": event.get("ts", ""), **event}, "type": "event_callback",
            "event_id": event_id, "event_time": int(time.time()),
            "authorizations": [{"enterprise_id": None, "team_id": TEAM_ID, "user_id": BOT_USER_ID, "is_bot": True,
                                "is_enterprise_install": False}],
            "is_ext_shared_channel": False,
        }
        headers = {}
        if retry_num is not None:
            headers = {"X-Slack-Retry-Num": str(retry_num), "X-Slack-Retry-Reason": "http_timeout"}
        return self.post(json.dumps(envelope), content_type="application/json", headers=headers, **post_kwargs)

    def mention(self, text: str, *, user: str = EMPLOYEE, channel: str = "C0GENERAL", thread_ts: str | None = None,
                **kwargs: Any) -> tuple[str, Posted]:
        """A human @mentions the bot; the fake holds the message as Slack would. Returns (ts, response)."""
        message = self.fake.add_message(channel, user, f"<@{BOT_USER_ID}> {text}", thread_ts=thread_ts)
        event = {"type": "app_mention", "user": user, "text": message["text"], "ts": message["ts"],
                 "channel": channel, "team": TEAM_ID}
        if thread_ts:
            event["thread_ts"] = thread_ts
        return message["ts"], self.event(event, **kwargs)

    def message(self, text: str, *, user: str = EMPLOYEE, channel: str = "C0GENERAL", channel_type: str = "channel",
                thread_ts: str | None = None, **extra: Any) -> tuple[str, Posted]:
        message = self.fake.add_message(channel, user, text, thread_ts=thread_ts)
        event = {"type": "message", "user": user, "text": text, "ts": message["ts"], "channel": channel,
                 "channel_type": channel_type, "team": TEAM_ID, **extra}
        if thread_ts:
            event["thread_ts"] = thread_ts
        return message["ts"], self.event(event)

    def command(self, text: str, *, user: str, response_key: str, command: str = "/reindex") -> Posted:
        form = {
            "token": "verification-token-unused", "team_id": TEAM_ID, "team_domain": "kbbot-test",
            "channel_id": "C0GENERAL", "channel_name": "general", "user_id": user, "user_name": user.lower(),
            "command": command, "text": text, "api_app_id": "A0KBBOT", "is_enterprise_install": "false",
            "response_url": self.fake.response_url(response_key), "trigger_id": f"{next(_ids)}.1.trigger",
        }
        return self.post(urlencode(form), content_type="application/x-www-form-urlencoded")

    def interaction(self, payload: dict[str, Any]) -> Posted:
        base = {"team": {"id": TEAM_ID, "domain": "kbbot-test"}, "api_app_id": "A0KBBOT",
                "token": "verification-token-unused", "is_enterprise_install": False}
        return self.post(urlencode({"payload": json.dumps({**base, **payload})}),
                         content_type="application/x-www-form-urlencoded")

    def click(self, action_id: str, value: str, *, user: str, channel: str, message_ts: str,
              thread_ts: str | None) -> Posted:
        """A `block_actions` payload: `user` clicked a button on the bot's message."""
        message = {"type": "message", "user": BOT_USER_ID, "ts": message_ts, "text": "answer"}
        if thread_ts:
            message["thread_ts"] = thread_ts
        return self.interaction({
            "type": "block_actions", "user": {"id": user, "username": user.lower(), "team_id": TEAM_ID},
            "container": {"type": "message", "message_ts": message_ts, "channel_id": channel,
                          "is_ephemeral": False, "thread_ts": thread_ts},
            "trigger_id": f"{next(_ids)}.1.trigger", "channel": {"id": channel, "name": "general"},
            "message": message, "response_url": self.fake.response_url(f"action-{next(_ids)}"),
            "actions": [{"action_id": action_id, "block_id": f"answer_actions:{value}", "value": value,
                         "type": "button", "action_ts": str(time.time())}],
        })

    def click_ephemeral(self, action_id: str, value: str, *, message: dict[str, Any]) -> str:
        """A `block_actions` payload from a button on an ephemeral message (`fake.ephemeral` entry): Slack
        sends no `message` for those, marks the container ephemeral, and binds the response_url to it.
        Returns the response_url's key (`fake.wait_for_response(key)`)."""
        key = f"ephemeral-action-{next(_ids)}"
        user, channel = message["user"], message["channel"]
        self.interaction({
            "type": "block_actions", "user": {"id": user, "username": user.lower(), "team_id": TEAM_ID},
            "container": {"type": "message", "message_ts": message["message_ts"], "channel_id": channel,
                          "is_ephemeral": True, "thread_ts": message.get("thread_ts")},
            "trigger_id": f"{next(_ids)}.1.trigger", "channel": {"id": channel, "name": channel.lower()},
            "response_url": self.fake.response_url(key, ephemeral=message),
            "actions": [{"action_id": action_id, "block_id": f"answer_actions:{value}", "value": value,
                         "type": "button", "action_ts": str(time.time())}],
        })
        return key



@dataclass
class BotUnderTest(SlackRequests):
    """The bot served in this process, with handles on its parts."""

    settings: Settings
    services: Services
    parts: BotParts
    db: Database
    server: HttpServer
    thread: threading.Thread

    def final_answer(self, channel: str, thread_ts: str, *, count: int = 1) -> list[dict[str, Any]]:
        """Wait for `count` finished bot messages in the thread (placeholders and streams in flight excluded)."""
        def done(_calls: Any) -> list[dict[str, Any]] | None:
            found = [m for m in self.fake.thread(channel, thread_ts)
                     if m.get("user") == BOT_USER_ID and not m.get("streaming") and m.get("text")
                     and "Searching the knowledge base" not in m["text"]]
            return found if len(found) >= count else None

        found = self.fake.wait_for(done)
        self.parts.responder.wait_idle(30)  # the answer log is written after the message is posted
        return found


def start_bot(fake: FakeSlack, db: Database, embedder: Any, tmp_path: Path, **overrides: Any) -> BotUnderTest:
    values: dict[str, Any] = {
        "database_url": db.engine.url.render_as_string(hide_password=False), "data_dir": tmp_path / "data",
        "slack_bot_token": "xoxb-test-token", "slack_signing_secret": SIGNING_SECRET,
        "slack_api_url": fake.api_url, "admin_users": [ADMIN], "support_group": SUPPORT_GROUP,
        "host": "127.0.0.1", "slack_workers": 2,
    }
    values.update(overrides)
    settings = load_settings(_env_file=None, **values)
    services = Services(settings)
    services.embedder = embedder  # the session's model: loading it per test would cost seconds
    parts = build_parts(settings.slack, services)
    app = create_app(settings, services, parts)
    server = HttpServer(app, host="127.0.0.1", port=0, threads=4, loop_timeout_s=0.1)  # quick to stop
    thread = threading.Thread(target=server.run, name="kbbot-http", daemon=True)
    thread.start()
    return BotUnderTest(f"http://127.0.0.1:{server.port}", fake, settings, services, parts, db, server, thread)


def stop_bot(bot: BotUnderTest) -> None:
    bot.server.close()
    bot.thread.join(10)
    bot.parts.responder.close(wait=True)
    bot.parts.reindexer.join(60)
    bot.services.close()


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


@pytest.fixture
def slack_bot(fake_slack: FakeSlack, demo_database: Database, embedder: Any, tmp_path: Path) -> Iterator[BotUnderTest]:
    bot = start_bot(fake_slack, demo_database, embedder, tmp_path)
    yield bot
    stop_bot(bot)
