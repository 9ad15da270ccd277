"""A local fake of the OpenAI API over real HTTP, for the real ``openai`` client.

Start it with the ``fake_openai`` fixture (or ``with FakeOpenAI() as fake:``) and point a client at it::

    client = openai.OpenAI(base_url=fake.url + "/v1", api_key="test")

Endpoints, shaped after OpenAI's documented payloads:

    POST /v1/files                           multipart upload (purpose=fine-tune)
    GET  /v1/files/{id}
    POST /v1/fine_tuning/jobs                create a job
    GET  /v1/fine_tuning/jobs                list jobs (limit, after)
    GET  /v1/fine_tuning/jobs/{id}           retrieve: each call advances the simulated job one step
    GET  /v1/fine_tuning/jobs/{id}/events    events, newest first (limit, after)
    POST /v1/chat/completions                non-streaming, and streaming SSE (``data: {...}`` ... ``[DONE]``)
    POST /v1/embeddings                      deterministic unit vectors (float or base64)
    GET  /v1/models, GET /v1/models/{id}

What tests control:

- ``fake.requests``: every request received (method, path, query, headers, raw body, parsed JSON or form);
- ``fake.script(method, path_regex, *responses)``: the next matching calls get these ``Scripted``
  responses in order, e.g. ``Scripted.error(429, retry_after=0)``, ``Scripted.error(500)``,
  ``Scripted(delay_s=2)`` (a slow answer, for client timeouts), ``Scripted.model_not_found("x")``;
  a ``Scripted`` with ``body=None`` and no status falls through to the normal handler after its delay;
- ``fake.chat_responder``: ``(messages, model) -> str``, what chat completions answer;
- ``fake.models``: the model ids that exist; an unknown model gets OpenAI's 404 ``model_not_found``;
- job simulation: a job goes validating_files -> running -> succeeded, one status per
  ``polls_per_status`` retrieves, and on success gets ``fine_tuned_model`` (added to ``fake.models``).
  ``fake.fail_jobs_with = ("invalid_training_file", "...")`` makes new jobs end as ``failed``.

Extending it: add a route in ``_ROUTES`` (method, regex, handler name) and a ``_handle_*`` method on
``FakeOpenAI`` (files and fine-tuning: ``FineTuningEndpoints`` in openai_finetuning.py) that takes the
``Recorded`` request and the regex match and returns a ``Reply``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import itertools
import json
import re
import struct
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.fakes.openai_finetuning import FineTuningEndpoints, _parse_multipart
from tests.fakes.openai_protocol import (
    JSON,
    Recorded,
    Reply,
    Scripted,
    _error_body,
    _model_not_found_body,
)

_ROUTES: tuple[tuple[str, str, str], ...] = (
    ("POST", r"/v1/files", "upload_file"),
    ("GET", r"/v1/files/(?P<file_id>[^/]+)", "get_file"),
    ("POST", r"/v1/fine_tuning/jobs", "create_job"),
    ("GET", r"/v1/fine_tuning/jobs", "list_jobs"),
    ("GET", r"/v1/fine_tuning/jobs/(?P<job_id>[^/]+)", "get_job"),
    ("GET", r"/v1/fine_tuning/jobs/(?P<job_id>[^/]+)/events", "list_events"),
    ("POST", r"/v1/chat/completions", "chat"),
    ("POST", r"/v1/embeddings", "embeddings"),
    ("GET", r"/v1/models", "list_models"),
    ("GET", r"/v1/models/(?P<model>.+)", "get_model"),
)


def default_chat_responder(messages: list[JSON], model: str) -> str:
    """A deterministic answer that says which model spoke, so tests can tell base from tuned."""
    last = next((m.get("content", "") for m in reversed(messages) if m.get("role") == "user"), "")
    return f"Hi there! Thanks for reaching out ({model}). About '{str(last)[:40]}': here is what to do."


class FakeOpenAI(FineTuningEndpoints):
    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.models: set[str] = {
            "gpt-4o-mini",
            "gpt-4o-mini-2024-07-18",
            "gpt-4o",
            "gpt-4.1-mini",
            "gpt-3.5-turbo",
            "text-embedding-3-small",
        }
        self.chat_responder: Callable[[list[JSON], str], str] = default_chat_responder
        self.polls_per_status = 1
        self.fail_jobs_with: tuple[str, str] | None = None
        self.files: dict[str, JSON] = {}
        self.file_contents: dict[str, bytes] = {}
        self.jobs: dict[str, JSON] = {}
        self._events: dict[str, list[JSON]] = {}
        self._polls: dict[str, int] = {}
        self._scripts: list[tuple[str, re.Pattern[str], list[Scripted]]] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-openai", daemon=True
        )

    # --- lifecycle -------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeOpenAI:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- test controls ---------------------------------------------------------------------------
    def script(self, method: str, path: str, *responses: Scripted) -> None:
        """The next ``len(responses)`` calls matching ``method`` and the ``path`` regex get these."""
        with self._lock:
            self._scripts.append((method.upper(), re.compile(path), list(responses)))

    def requests_to(self, method: str, path: str) -> list[Recorded]:
        pattern = re.compile(path)
        return [r for r in self.requests if r.method == method.upper() and pattern.fullmatch(r.path)]

    # --- plumbing --------------------------------------------------------------------------------
    def _next_id(self, prefix: str) -> str:
        return f"{prefix}-{next(self._ids):06d}"

    def _take_script(self, method: str, path: str) -> Scripted | None:
        with self._lock:
            for entry in self._scripts:
                if entry[0] == method and entry[1].fullmatch(path) and entry[2]:
                    return entry[2].pop(0)
        return None

    def _dispatch(self, request: Recorded) -> Reply:
        scripted = self._take_script(request.method, request.path)
        if scripted is not None:
            if scripted.delay_s:
                time.sleep(scripted.delay_s)
            if scripted.status is not None:
                return Reply(scripted.status, scripted.body, scripted.headers)
        if not request.headers.get("authorization", "").startswith("Bearer "):
            return Reply(401, _error_body("You didn't provide an API key.", "invalid_request_error", None))
        for method, pattern, name in _ROUTES:
            match = re.fullmatch(pattern, request.path)
            if method == request.method and match:
                handler: Callable[[Recorded, re.Match[str]], Reply] = getattr(self, f"_handle_{name}")
                return handler(request, match)
        return Reply(
            404,
            _error_body(
                f"Invalid URL ({request.method} {request.path})", "invalid_request_error", "unknown_url"
            ),
        )

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass  # keep test output clean

            def _serve(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                request = Recorded(
                    self.command,
                    parts.path,
                    parse_qs(parts.query),
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                )
                content_type = self.headers.get("Content-Type", "")
                if body and content_type.startswith("application/json"):
                    request.json = json.loads(body)
                elif body and content_type.startswith("multipart/form-data"):
                    _parse_multipart(content_type, body, request)
                fake.requests.append(request)
                # The client may have given up first (a timeout test): then no one is left to answer.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self._send(fake._dispatch(request))

            def _send(self, reply: Reply) -> None:
                if reply.stream is not None:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "text/event-stream")
                    self.send_header("Cache-Control", "no-cache")
                    self.send_header("Connection", "close")
                    self.end_headers()
                    for chunk in reply.stream:
                        self.wfile.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
                        self.wfile.flush()
                    self.wfile.write(b"data: [DONE]\n\n")
                    self.wfile.flush()
                    return
                if isinstance(reply.body, (dict, list)):
                    payload, content_type = json.dumps(reply.body).encode(), "application/json"
                else:
                    raw = reply.body or b""
                    payload, content_type = (raw.encode() if isinstance(raw, str) else raw), "text/plain"
                self.send_response(reply.status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_DELETE = _serve

        return Handler


    # --- inference -------------------------------------------------------------------------------
    def _handle_chat(self, request: Recorded, _: re.Match[str]) -> Reply:
        body = request.json or {}
        model = body.get("model", "")
        if model not in self.models:
            return Reply(404, _model_not_found_body(model))
        messages = body.get("messages") or []
        text = self.chat_responder(messages, model)
        completion_id, created = self._next_id("chatcmpl"), int(time.time())
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in messages)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(text.split()),
            "total_tokens": prompt_tokens + len(text.split()),
        }
        if body.get("stream"):
            base = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": "fp_fake",
            }
            words = re.findall(r"\S+\s*", text) or [""]
            chunks = [
                {
                    **base,
                    "choices": [
                        {
                            "index": 0,
                            "delta": {"role": "assistant", "content": ""},
                            "logprobs": None,
                            "finish_reason": None,
                        }
                    ],
                }
            ]
            chunks += [
                {
                    **base,
                    "choices": [
                        {"index": 0, "delta": {"content": w}, "logprobs": None, "finish_reason": None}
                    ],
                }
                for w in words
            ]
            chunks.append(
                {**base, "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}]}
            )
            if (body.get("stream_options") or {}).get("include_usage"):
                chunks.append({**base, "choices": [], "usage": usage})
            return Reply(200, stream=chunks)
        return Reply(
            200,
            {
                "id": completion_id,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "system_fingerprint": "fp_fake",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text, "refusal": None},
                        "logprobs": None,
                        "finish_reason": "stop",
                    }
                ],
                "usage": usage,
            },
        )

    def _handle_embeddings(self, request: Recorded, _: re.Match[str]) -> Reply:
        body = request.json or {}
        model = body.get("model", "")
        if model not in self.models:
            return Reply(404, _model_not_found_body(model))
        inputs = body.get("input")
        texts = [inputs] if isinstance(inputs, str) else list(inputs or [])
        dims = int(body.get("dimensions") or 1536)
        data = []
        for index, text in enumerate(texts):
            vector = deterministic_vector(str(text), dims)
            if body.get("encoding_format") == "base64":
                embedding: Any = base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode()
            else:
                embedding = vector
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        tokens = sum(len(str(t).split()) for t in texts)
        return Reply(
            200,
            {
                "object": "list",
                "data": data,
                "model": model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
        )

    def _handle_list_models(self, _: Recorded, __: re.Match[str]) -> Reply:
        return Reply(200, {"object": "list", "data": [self._model(m) for m in sorted(self.models)]})

    def _handle_get_model(self, _: Recorded, match: re.Match[str]) -> Reply:
        if match["model"] not in self.models:
            return Reply(404, _model_not_found_body(match["model"]))
        return Reply(200, self._model(match["model"]))

    @staticmethod
    def _model(model_id: str) -> JSON:
        owner = "user-fake" if model_id.startswith("ft:") else "system"
        return {"id": model_id, "object": "model", "created": 1700000000, "owned_by": owner}


def deterministic_vector(text: str, dims: int) -> list[float]:
    """A unit vector that depends only on the text: same text, same vector, across runs and machines."""
    raw = b""
    counter = 0
    while len(raw) < dims * 4:
        raw += hashlib.sha256(f"{counter}\x00{text}".encode()).digest()
        counter += 1
    values = [(b / 255.0) - 0.5 for b in raw[: dims * 4 : 4]]
    norm = sum(v * v for v in values) ** 0.5 or 1.0
    return [v / norm for v in values]



@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    """A running fake OpenAI API; ``fake_openai.url + "/v1"`` is the client's base_url."""
    with FakeOpenAI() as fake:
        yield fake


