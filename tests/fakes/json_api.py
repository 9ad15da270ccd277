"""Plumbing shared by the Zendesk and Confluence fakes: a real HTTP server on 127.0.0.1 in a thread.

What tests control on any fake built on it:

- ``fake.requests``: every request (method, path, query, headers);
- ``fake.script(path_regex, *Scripted)``: the next matching requests get these responses (429 with
  ``Retry-After``, 500, a delay) before the normal handler takes over again;
- ``fake.hold(path_regex)``: matching requests wait until the returned ``Hold`` is released; its
  ``reached`` event tells the test a request is waiting (so a test can act while a client is mid-run);
- ``fake.clock``: the server's time (Unix seconds). Responses carry it in ``Date`` and every change the
  test makes advances it by a second, so timestamps are distinct and tests need no sleeping.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any = None  # a POST's decoded JSON body

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Scripted:
    status: int | None = None  # None: after the delay, the normal handler answers
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0

    @staticmethod
    def rate_limited(retry_after: float | str) -> Scripted:
        return Scripted(429, {"error": "TooManyRequests", "description": "Rate limit exceeded"},
                        {"Retry-After": str(retry_after)})


class Hold:
    def __init__(self) -> None:
        self.reached = threading.Event()
        self._released = threading.Event()

    def release(self) -> None:
        self._released.set()

    def wait(self, timeout: float = 120.0) -> None:
        self.reached.set()
        self._released.wait(timeout)


Route = tuple[str, str, Callable[[Request, re.Match[str]], Reply]]


class JsonApiFake:
    """Subclasses define ``routes()`` and ``authorized(request)``."""

    name = "fake-api"

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.clock = 1_767_225_600  # 2026-01-01T00:00:00Z
        self._lock = threading.RLock()
        self._scripts: list[tuple[re.Pattern[str], list[Scripted]]] = []
        self._holds: list[tuple[re.Pattern[str], Callable[[Request], bool], Hold]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=self.name, daemon=True)

    # --- lifecycle -------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> JsonApiFake:
        self._thread.start()
        return self

    def stop(self) -> None:
        for *_, hold in self._holds:
            hold.release()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self):  # type: ignore[no-untyped-def]
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- test controls ---------------------------------------------------------------------------
    def tick(self, seconds: int = 1) -> int:
        with self._lock:
            self.clock += seconds
            return self.clock

    def script(self, path: str, *responses: Scripted) -> None:
        with self._lock:
            self._scripts.append((re.compile(path), list(responses)))

    def hold(self, path: str, when: Callable[[Request], bool] | None = None) -> Hold:
        """Matching requests (path regex, and `when` if given) wait until the hold is released."""
        hold = Hold()
        with self._lock:
            self._holds.append((re.compile(path), when or (lambda _r: True), hold))
        return hold

    def requests_to(self, path: str) -> list[Request]:
        pattern = re.compile(path)
        return [r for r in self.requests if pattern.fullmatch(r.path)]

    # --- subclass hooks --------------------------------------------------------------------------
    def routes(self) -> list[Route]:
        raise NotImplementedError

    def authorized(self, request: Request) -> bool:
        return True

    def unauthorized(self) -> Reply:
        return Reply(401, {"error": "Unauthorized"})

    # --- plumbing --------------------------------------------------------------------------------
    def _dispatch(self, request: Request) -> Reply:
        with self._lock:
            hold = next((h for p, when, h in self._holds if p.fullmatch(request.path) and when(request)), None)
            scripted = None
            for pattern, queue in self._scripts:
                if queue and pattern.fullmatch(request.path):
                    scripted = queue.pop(0)
                    break
        if hold is not None:
            hold.wait()
        if scripted is not None:
            if scripted.delay_s:
                time.sleep(scripted.delay_s)
            if scripted.status is not None:
                return Reply(scripted.status, scripted.body, scripted.headers)
        if not self.authorized(request):
            return self.unauthorized()
        for method, pattern, handler in self.routes():
            match = re.fullmatch(pattern, request.path)
            if method == request.method and match:
                with self._lock:
                    return handler(request, match)
        return Reply(404, {"error": "InvalidEndpoint", "description": f"Not found: {request.path}"})

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def date_time_string(self, timestamp: float | None = None) -> str:
                return formatdate(fake.clock, usegmt=True)  # the `Date` header: the fake's own clock

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode(errors="replace")
                request = Request(self.command, parts.path, parse_qs(parts.query),
                                  {k.lower(): v for k, v in self.headers.items()}, body)
                fake.requests.append(request)
                reply = fake._dispatch(request)
                content_type = "application/json; charset=utf-8"
                if isinstance(reply.body, str):  # e.g. an HTML error page from a proxy
                    payload, content_type = reply.body.encode(), "text/html; charset=utf-8"
                else:
                    payload = json.dumps(reply.body).encode() if reply.body is not None else b""
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client gave up first
                    self.send_response(reply.status)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(payload)))
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(payload)

            do_POST = do_GET

        return Handler


def iso(epoch: int) -> str:
    """Zendesk/Confluence style UTC timestamps."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))
