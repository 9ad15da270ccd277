"""A local fake of the Slack Web API over real HTTP, for the real ``slack_sdk.WebClient``.

Point a client at it with ``WebClient(token=..., base_url=fake.api_url)``. It answers the way Slack's
documented methods do (``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``), keeps the messages it
was sent so ``conversations.replies`` reads threads back, enforces Block Kit's limits, and records every
call in ``fake.calls`` (method, parameters with JSON fields decoded, headers, arrival time).

Methods: auth.test, users.info, usergroups.users.list, chat.postMessage, chat.update, chat.delete,
chat.postEphemeral, chat.startStream, chat.appendStream, chat.stopStream, assistant.threads.setStatus,
assistant.threads.setSuggestedPrompts, assistant.threads.setTitle, conversations.replies, conversations.info,
conversations.members, views.publish, views.open. Any other method gets Slack's ``unknown_method``.

``POST /response/{id}`` stands for the ``response_url`` of a slash command or a button click
(``fake.response_url(id)``); the posts are kept in ``fake.responses[id]``.

Ephemeral messages (``chat.postEphemeral``: only ``user`` sees them, in ``channel`` and optionally a thread)
are kept in ``fake.ephemeral``, never in the channel's history (``conversations.replies`` does not return
them, as on Slack). Slack refuses one for a user outside the channel (``user_not_in_channel``, checked
when ``fake.members`` lists the channel). A click on an ephemeral message carries a ``response_url`` bound
to it (``fake.response_url(id, ephemeral=message)``): as Slack documents, a post with
``"replace_original": true`` replaces that message, ``"delete_original": true`` removes it, and any other
post adds a new ephemeral message for the same user (``"response_type": "in_channel"`` posts publicly).

Tests control:
- ``fake.users[user_id] = {...}`` (e.g. ``{"is_admin": True}``, a guest ``{"is_restricted": True}``, someone
  of another organisation ``{"team_id": "T0OTHER", "is_stranger": True}``), ``fake.usergroups[id] = [user ids]``;
- ``fake.channels[channel_id] = {...}`` (e.g. ``{"is_ext_shared": True}``) and ``fake.members[channel_id]``:
  what conversations.info/members say (any other channel is an internal public channel with no members);
- ``fake.add_message(channel, user, text, ts, thread_ts=None)``: a human's message Slack would hold;
- ``fake.script(method, *replies)``: the next calls of ``method`` get these replies in order, e.g.
  ``SlackReply.rate_limited(retry_after=1)`` (HTTP 429 with Retry-After) or ``SlackReply.error("msg_too_long")``;
- ``fake.wait_for(predicate)``: block until a recorded call satisfies it (the bot works in the background).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

JSON = dict[str, Any]

TEAM_ID = "T0KBBOT"
BOT_USER_ID = "UKBBOT"
BOT_ID = "BKBBOT"
_JSON_FIELDS = ("blocks", "attachments", "view", "prompts", "chunks", "metadata", "loading_messages")


@dataclass
class Call:
    method: str
    params: JSON
    headers: dict[str, str]
    at: float  # time.monotonic() on arrival


@dataclass
class SlackReply:
    status: int = 200
    body: JSON | None = None
    headers: dict[str, str] = field(default_factory=dict)

    @staticmethod
    def rate_limited(retry_after: int = 1) -> SlackReply:
        return SlackReply(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": str(retry_after)})

    @staticmethod
    def error(code: str) -> SlackReply:
        return SlackReply(200, {"ok": False, "error": code})


class FakeSlack:
    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.responses: dict[str, list[JSON]] = {}
        self.users: dict[str, JSON] = {}
        self.usergroups: dict[str, list[str]] = {}
        self.channels: dict[str, JSON] = {}
        self.members: dict[str, list[str]] = {}
        self.messages: dict[str, list[JSON]] = {}  # channel -> messages, in ts order
        self.ephemeral: list[JSON] = []  # {channel, user, thread_ts, text, blocks, message_ts}
        self._response_targets: dict[str, JSON] = {}  # response_url key -> the ephemeral message it acts on
        self._scripts: dict[str, list[SlackReply]] = {}
        self._lock = threading.Condition()
        self._ts = itertools.count(1)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    # --- lifecycle -------------------------------------------------------------------------------
    def __enter__(self) -> FakeSlack:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def api_url(self) -> str:
        return self.url + "/api/"

    def response_url(self, key: str, *, ephemeral: JSON | None = None) -> str:
        if ephemeral is not None:
            with self._lock:
                self._response_targets[key] = ephemeral
        return f"{self.url}/response/{key}"

    def ephemeral_for(self, user: str, channel: str | None = None) -> list[JSON]:
        """The ephemeral messages `user` sees now (in `channel`), oldest first."""
        with self._lock:
            return [dict(m) for m in self.ephemeral
                    if m["user"] == user and (channel is None or m["channel"] == channel)]

    def wait_for_ephemeral(self, user: str, predicate: Callable[[JSON], Any], timeout: float = 30.0) -> JSON:
        """The first ephemeral message `user` sees that satisfies `predicate`, waiting for it."""
        def found(_calls: list[Call]) -> JSON | None:
            return next((m for m in self.ephemeral_for(user) if predicate(m)), None)
        return self.wait_for(found, timeout)

    # --- test controls ---------------------------------------------------------------------------
    def script(self, method: str, *replies: SlackReply) -> None:
        with self._lock:
            self._scripts.setdefault(method, []).extend(replies)

    def new_ts(self) -> str:
        return f"{1_700_000_000 + next(self._ts)}.000100"

    def add_message(self, channel: str, user: str, text: str, ts: str | None = None,
                    thread_ts: str | None = None, **extra: Any) -> JSON:
        message = {"type": "message", "user": user, "text": text, "ts": ts or self.new_ts(), **extra}
        if thread_ts:
            message["thread_ts"] = thread_ts
        with self._lock:
            self.messages.setdefault(channel, []).append(message)
        return message

    def calls_to(self, method: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.method == method]

    def wait_for(self, predicate: Callable[[list[Call]], Any], timeout: float = 30.0) -> Any:
        """Wait until `predicate(calls)` is truthy; return its value. Fails the test on timeout."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                found = predicate(list(self.calls))
                if found:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    methods = [c.method for c in self.calls]
                    raise AssertionError(f"timed out waiting; calls so far: {methods}")
                self._lock.wait(min(left, 0.2))

    def wait_for_response(self, key: str, count: int = 1, timeout: float = 30.0) -> list[JSON]:
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self.responses.get(key, [])) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out waiting for {count} posts to {key}: "
                                         f"{self.responses.get(key)}")
                self._lock.wait(min(left, 0.2))
            return list(self.responses[key])

    def thread(self, channel: str, thread_ts: str) -> list[JSON]:
        with self._lock:
            return [m for m in self.messages.get(channel, [])
                    if m["ts"] == thread_ts or m.get("thread_ts") == thread_ts]

    # --- request handling ------------------------------------------------------------------------
    def _record(self, call: Call) -> SlackReply | None:
        with self._lock:
            self.calls.append(call)
            scripted = self._scripts.get(call.method)
            reply = scripted.pop(0) if scripted else None
            self._lock.notify_all()
            return reply

    def _record_response(self, key: str, body: JSON) -> None:
        with self._lock:
            self.responses.setdefault(key, []).append(body)
            target = self._response_targets.get(key)
            if target is not None:
                self._respond_to_ephemeral(target, body)
            self._lock.notify_all()

    def _respond_to_ephemeral(self, target: JSON, body: JSON) -> None:
        """What Slack does with a response_url post from a click on an ephemeral message (lock held)."""
        original = next((m for m in self.ephemeral if m["message_ts"] == target["message_ts"]), None)
        if body.get("delete_original"):
            if original is not None:
                self.ephemeral.remove(original)
            return
        if body.get("replace_original") and original is not None:
            original.update(text=body.get("text", ""), blocks=body.get("blocks") or [])
            return
        if body.get("response_type") == "in_channel":
            self.messages.setdefault(target["channel"], []).append({
                "type": "message", "user": BOT_USER_ID, "bot_id": BOT_ID, "text": body.get("text", ""),
                "blocks": body.get("blocks") or [], "ts": self.new_ts(),
                **({"thread_ts": body["thread_ts"]} if body.get("thread_ts") else {})})
            return
        self.ephemeral.append({"channel": target["channel"], "user": target["user"],
                               "thread_ts": target.get("thread_ts"), "text": body.get("text", ""),
                               "blocks": body.get("blocks") or [], "message_ts": self.new_ts()})

    def handle(self, method: str, p: JSON) -> JSON:
        handler = getattr(self, "_m_" + method.replace(".", "_"), None)
        if handler is None:
            return {"ok": False, "error": "unknown_method"}
        return handler(p)

    def _m_auth_test(self, p: JSON) -> JSON:
        return {"ok": True, "url": "https://kbbot-test.slack.com/", "team": "kbbot test", "user": "kbbot",
                "team_id": TEAM_ID, "user_id": BOT_USER_ID, "bot_id": BOT_ID, "is_enterprise_install": False}

    def _m_users_info(self, p: JSON) -> JSON:
        user_id = p.get("user", "")
        if not re.fullmatch(r"[UW][A-Z0-9_]+", user_id):
            return {"ok": False, "error": "user_not_found"}
        profile = {"id": user_id, "team_id": TEAM_ID, "name": user_id.lower(), "deleted": False,
                   "is_admin": False, "is_owner": False, "is_primary_owner": False, "is_bot": False}
        profile.update(self.users.get(user_id, {}))
        return {"ok": True, "user": profile}

    def _m_usergroups_users_list(self, p: JSON) -> JSON:
        group = p.get("usergroup", "")
        if group not in self.usergroups:
            return {"ok": False, "error": "no_such_subteam"}
        return {"ok": True, "users": list(self.usergroups[group])}

    def _m_conversations_info(self, p: JSON) -> JSON:
        channel = p.get("channel", "")
        if not re.fullmatch(r"[CGD][A-Z0-9]+", channel):
            return {"ok": False, "error": "channel_not_found"}
        im = channel.startswith("D")
        info = {"id": channel, "name": channel.lower(), "is_channel": not im, "is_group": False, "is_im": im,
                "is_mpim": False, "is_private": False, "is_archived": False, "is_general": False,
                "is_shared": False, "is_ext_shared": False, "is_org_shared": False,
                "is_pending_ext_shared": False, "is_member": True, "context_team_id": TEAM_ID}
        info.update(self.channels.get(channel, {}))
        return {"ok": True, "channel": info}

    def _m_conversations_members(self, p: JSON) -> JSON:
        members = list(self.members.get(p.get("channel", ""), []))
        limit = int(p.get("limit") or 100)
        start = int(p.get("cursor") or 0)
        page = members[start: start + limit]
        more = start + limit < len(members)
        return {"ok": True, "members": page, "response_metadata": {"next_cursor": str(start + limit) if more else ""}}

    def _check_message(self, p: JSON) -> str | None:
        if len(p.get("text") or "") > 40_000:
            return "msg_too_long"
        blocks = p.get("blocks") or []
        if len(blocks) > 50:
            return "invalid_blocks"
        for block in blocks:
            texts = [block.get("text", {}).get("text", "")] + [e.get("text", "") for e in block.get("elements", [])
                                                                 if isinstance(e.get("text"), str)]
            if any(len(t) > 3000 for t in texts):
                return "invalid_blocks"
        if not p.get("text") and not blocks:
            return "no_text"
        return None

    def _m_chat_postMessage(self, p: JSON) -> JSON:
        problem = self._check_message(p)
        if problem:
            return {"ok": False, "error": problem}
        message = self.add_message(p["channel"], BOT_USER_ID, p.get("text", ""), thread_ts=p.get("thread_ts"),
                                   bot_id=BOT_ID, blocks=p.get("blocks") or [])
        return {"ok": True, "channel": p["channel"], "ts": message["ts"], "message": message}

    def _find(self, channel: str, ts: str) -> JSON | None:
        return next((m for m in self.messages.get(channel, []) if m["ts"] == ts), None)

    def _m_chat_update(self, p: JSON) -> JSON:
        problem = self._check_message(p)
        if problem:
            return {"ok": False, "error": problem}
        with self._lock:
            message = self._find(p["channel"], p["ts"])
            if message is None:
                return {"ok": False, "error": "message_not_found"}
            message.update(text=p.get("text", ""), blocks=p.get("blocks") or [])
        return {"ok": True, "channel": p["channel"], "ts": p["ts"], "text": p.get("text", "")}

    def _m_chat_delete(self, p: JSON) -> JSON:
        with self._lock:
            message = self._find(p["channel"], p["ts"])
            if message is None:
                return {"ok": False, "error": "message_not_found"}
            self.messages[p["channel"]].remove(message)
        return {"ok": True, "channel": p["channel"], "ts": p["ts"]}

    def _m_chat_postEphemeral(self, p: JSON) -> JSON:
        if not p.get("channel") or not p.get("user"):
            return {"ok": False, "error": "channel_not_found" if not p.get("channel") else "user_not_found"}
        problem = self._check_message(p)
        if problem:
            return {"ok": False, "error": problem}
        with self._lock:
            members = self.members.get(p["channel"])
            if members is not None and p["user"] not in members and not p["channel"].startswith("D"):
                return {"ok": False, "error": "user_not_in_channel"}
            message = {"channel": p["channel"], "user": p["user"], "thread_ts": p.get("thread_ts"),
                       "text": p.get("text", ""), "blocks": p.get("blocks") or [], "message_ts": self.new_ts()}
            self.ephemeral.append(message)
            self._lock.notify_all()
        return {"ok": True, "message_ts": message["message_ts"]}

    def _m_chat_startStream(self, p: JSON) -> JSON:
        message = self.add_message(p["channel"], BOT_USER_ID, _chunk_text(p), thread_ts=p.get("thread_ts"),
                                   bot_id=BOT_ID, streaming=True)
        return {"ok": True, "channel": p["channel"], "ts": message["ts"]}

    def _m_chat_appendStream(self, p: JSON) -> JSON:
        with self._lock:
            message = self._find(p["channel"], p["ts"])
            if message is None or not message.get("streaming"):
                return {"ok": False, "error": "message_not_in_streaming_state"}
            message["text"] += _chunk_text(p)
        return {"ok": True, "channel": p["channel"], "ts": p["ts"]}

    def _m_chat_stopStream(self, p: JSON) -> JSON:
        with self._lock:
            message = self._find(p["channel"], p["ts"])
            if message is None or not message.get("streaming"):
                return {"ok": False, "error": "message_not_in_streaming_state"}
            message["text"] += _chunk_text(p)
            message["streaming"] = False
            message["blocks"] = p.get("blocks") or []
        return {"ok": True, "channel": p["channel"], "ts": p["ts"], "message": dict(message)}

    def _m_assistant_threads_setStatus(self, p: JSON) -> JSON:
        return {"ok": True}

    def _m_assistant_threads_setSuggestedPrompts(self, p: JSON) -> JSON:
        return {"ok": True}

    def _m_assistant_threads_setTitle(self, p: JSON) -> JSON:
        return {"ok": True}

    def _m_conversations_replies(self, p: JSON) -> JSON:
        messages = self.thread(p["channel"], p["ts"])
        if not messages:
            return {"ok": False, "error": "thread_not_found"}
        return {"ok": True, "messages": [dict(m) for m in messages], "has_more": False}

    def _m_views_publish(self, p: JSON) -> JSON:
        return {"ok": True, "view": {"id": "V" + self.new_ts().replace(".", ""), **(p.get("view") or {})}}

    def _m_views_open(self, p: JSON) -> JSON:
        if not p.get("trigger_id"):
            return {"ok": False, "error": "invalid_trigger_id"}
        return {"ok": True, "view": {"id": "V" + self.new_ts().replace(".", ""), **(p.get("view") or {})}}


def _chunk_text(p: JSON) -> str:
    text = p.get("markdown_text") or ""
    for chunk in p.get("chunks") or []:
        if chunk.get("type") == "markdown_text":
            text += chunk.get("text", "")
    return text


def _decode(params: JSON) -> JSON:
    for name in _JSON_FIELDS:
        if isinstance(params.get(name), str):
            with contextlib.suppress(ValueError):
                params[name] = json.loads(params[name])
    return params


def _handler_for(fake: FakeSlack) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_args: object) -> None:  # keep test output clean
            pass

        def _params(self) -> JSON:
            url = urlsplit(self.path)
            params: JSON = {k: v[-1] for k, v in parse_qs(url.query).items()}
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if raw:
                if "json" in (self.headers.get("Content-Type") or ""):
                    params.update(json.loads(raw))
                else:
                    params.update({k: v[-1] for k, v in parse_qs(raw.decode()).items()})
            return _decode(params)

        def _send(self, reply: SlackReply) -> None:
            data = json.dumps(reply.body or {"ok": True}).encode()
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            for key, value in reply.headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def _dispatch(self) -> None:
            path = urlsplit(self.path).path
            params = self._params()
            if path.startswith("/response/"):
                fake._record_response(path.removeprefix("/response/"), params)
                self._send(SlackReply(200, {"ok": True}))
                return
            if not path.startswith("/api/"):
                self._send(SlackReply(404, {"ok": False, "error": "not_found"}))
                return
            method = path.removeprefix("/api/")
            call = Call(method, params, dict(self.headers.items()), time.monotonic())
            scripted = fake._record(call)
            if scripted is not None:
                self._send(scripted)
                return
            if method != "auth.test" and not (self.headers.get("Authorization") or params.get("token")):
                self._send(SlackReply.error("not_authed"))
                return
            self._send(SlackReply(200, fake.handle(method, params)))

        do_GET = _dispatch
        do_POST = _dispatch

    return Handler
