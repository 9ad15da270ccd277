"""What the fake OpenAI API exchanges: recorded requests, replies, scripted responses, error bodies."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

JSON = dict[str, Any]


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    json: Any = None
    form: dict[str, str] = field(default_factory=dict)
    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # field -> (filename, content)


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # dict/list -> JSON; bytes/str sent as is
    headers: dict[str, str] = field(default_factory=dict)
    stream: list[JSON] | None = None  # SSE chunks, followed by data: [DONE]


@dataclass
class Scripted:
    status: int | None = None
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0

    @staticmethod
    def error(
        status: int,
        message: str = "scripted error",
        *,
        code: str | None = None,
        error_type: str | None = None,
        retry_after: float | None = None,
    ) -> Scripted:
        default_type = {
            400: "invalid_request_error",
            401: "invalid_request_error",
            404: "invalid_request_error",
            429: "rate_limit_exceeded",
        }.get(status, "server_error")
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        return Scripted(status, _error_body(message, error_type or default_type, code), headers)

    @staticmethod
    def model_not_found(model: str) -> Scripted:
        return Scripted(404, _model_not_found_body(model))


def _error_body(message: str, error_type: str, code: str | None, param: str | None = None) -> JSON:
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def _model_not_found_body(model: str) -> JSON:
    return _error_body(
        f"The model `{model}` does not exist or you do not have access to it.",
        "invalid_request_error",
        "model_not_found",
        "model",
    )

