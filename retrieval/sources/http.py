"""The HTTP client API connectors share: timeouts, bounded retries, and rate limits honoured.

- 429 (and 503) with `Retry-After`: wait exactly what the server asks (seconds or an HTTP date), up to
  `max_wait_s`; a longer wait fails the source for this run instead of stalling the whole sync.
- 5xx, timeouts and dropped connections: exponential backoff, `max_retries` times.
- 401/403/404 and other 4xx: no retry; a `SourceError` that says what to check.

Credentials travel in the client's auth headers only; log lines carry the method, URL and status, never
headers. The response's `Date` header is kept (`server_time`) because checkpoints are best taken on the
server's clock, not ours.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx2

from retrieval.errors import SourceError

log = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
USER_AGENT = "kbbot (+https://github.com/kbbot/kbbot)"


class ApiClient:
    """GET (and POST) JSON to one API. `requests` counts what was sent (retries included)."""

    def __init__(self, *, service: str, base_url: str, auth: httpx2.Auth | tuple[str, str] | None = None,
                 bearer_token: str | None = None, credentials_hint: str = "the credentials",
                 timeout_s: float = 30.0, max_retries: int = 5, max_wait_s: float = 300.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if bearer_token:
            headers["Authorization"] = f"Bearer {bearer_token}"
        self.service = service
        self.base_url = base_url.rstrip("/")
        self.credentials_hint = credentials_hint
        self.max_retries = max_retries
        self.max_wait_s = max_wait_s
        self.requests = 0
        self.waits: list[float] = []  # every pause taken (rate limits and backoff), for logs and tests
        self.server_time: datetime | None = None  # the `Date` of the last response
        self._sleep = sleep
        self._client_options: dict[str, Any] = {
            "base_url": self.base_url, "auth": auth, "headers": headers, "follow_redirects": True,
            "timeout": httpx2.Timeout(timeout_s, connect=min(10.0, timeout_s)),
        }
        self._http: httpx2.Client | None = None

    @property
    def _client(self) -> httpx2.Client:
        # Opened on first use and again after close(): a source object may serve several runs.
        if self._http is None:
            self._http = httpx2.Client(**self._client_options)
        return self._http

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    def url(self, path: str) -> str:
        """An absolute URL for a path under the base URL (or the URL itself when already absolute)."""
        return path if path.startswith(("http://", "https://")) else f"{self.base_url}/{path.lstrip('/')}"

    def get_json(self, url: str, params: Mapping[str, Any] | None = None, *,
                 missing_ok: bool = False) -> Any:
        """The decoded JSON body; None for a 404 when `missing_ok` (the item is gone)."""
        attempt = 0
        while True:
            attempt += 1
            problem, wait = self._attempt(url, params, attempt)
            if isinstance(problem, httpx2.Response):
                response = problem
                if response.status_code == 404 and missing_ok:
                    return None
                if response.status_code < 400:
                    return self._decode(response)
                if response.status_code not in RETRYABLE_STATUS:
                    raise self._client_error(response)
                reason = f"HTTP {response.status_code}"
            else:
                reason = problem
            if attempt > self.max_retries:
                raise SourceError(
                    f"{self.service} did not answer after {attempt} attempts ({reason} from {_short(url)}). "
                    "Its articles stay indexed as they were; the next run tries again."
                )
            if wait > self.max_wait_s:
                raise SourceError(
                    f"{self.service} is rate limiting kbbot and asked to wait {wait:.0f} s ({_short(url)}), "
                    f"longer than the {self.max_wait_s:.0f} s a run waits. The next run continues from the "
                    "same point; if this repeats, sync less often."
                )
            log.info("%s: %s, retrying in %.1f s (attempt %d of %d)", self.service, reason, wait, attempt,
                     self.max_retries + 1)
            self.waits.append(wait)
            self._sleep(wait)

    def post_json(self, url: str, payload: Any, *, max_rate_limited: int = 3) -> Any:
        """POST a JSON body and decode the answer. A create is not idempotent, so only a 429 (the server
        refused to process it) is retried, after its Retry-After; anything else fails at once."""
        for _ in range(max_rate_limited + 1):
            self.requests += 1
            try:
                response = self._client.post(url, json=payload)
            except httpx2.TransportError as exc:
                raise SourceError(f"{self.service} could not be reached ({exc}) at {_short(url)}: nothing was "
                                  "sent, or the answer was lost; check before sending it again.") from exc
            log.debug("%s: POST %s -> %d", self.service, _short(url), response.status_code)
            if response.status_code != 429:
                break
            wait = _retry_after(response) or 1.0
            if wait > self.max_wait_s:
                break
            self.waits.append(wait)
            self._sleep(wait)
        if response.status_code >= 400:
            raise self._client_error(response)
        return self._decode(response)

    # --- one request ---------------------------------------------------------------------------
    def _attempt(self, url: str, params: Mapping[str, Any] | None,
                 attempt: int) -> tuple[httpx2.Response | str, float]:
        """The response, or a description of the transport failure, and how long to wait before a retry."""
        backoff = min(30.0, 2.0 ** (attempt - 1))
        self.requests += 1
        try:
            response = self._client.get(url, params=params)
        except httpx2.TimeoutException as exc:
            log.debug("%s: GET %s timed out", self.service, _short(url), exc_info=True)
            return f"timed out ({type(exc).__name__})", backoff
        except httpx2.TransportError as exc:
            log.debug("%s: GET %s failed", self.service, _short(url), exc_info=True)
            return f"connection failed ({exc})", backoff
        log.debug("%s: GET %s -> %d", self.service, _short(url), response.status_code)
        self.server_time = _server_time(response) or self.server_time
        retry_after = _retry_after(response)
        return response, backoff if retry_after is None else retry_after

    def _decode(self, response: httpx2.Response) -> Any:
        try:
            return response.json()
        except ValueError as exc:
            raise SourceError(
                f"{self.service} answered {_short(str(response.url))} with something that is not JSON "
                f"({response.headers.get('content-type', 'no content type')}): check the base URL."
            ) from exc

    def _client_error(self, response: httpx2.Response) -> SourceError:
        status = response.status_code
        where = _short(str(response.url))
        if status == 401:
            return SourceError(f"{self.service} rejected the credentials (401 at {where}): check "
                               f"{self.credentials_hint}.")
        if status == 403:
            return SourceError(f"{self.service} refused access (403 at {where}): the account behind "
                               f"{self.credentials_hint} lacks permission to read it.")
        if status == 404:
            return SourceError(f"{self.service} has nothing at {where} (404): check the base URL and the "
                               "names (space keys, locales) in the sources file.")
        return SourceError(f"{self.service} refused the request (HTTP {status} at {where}): "
                           f"{_error_message(response)}")


def _short(url: str) -> str:
    """The URL without its query string: enough to locate a problem, short enough for a log line."""
    return url.split("?", 1)[0]


def _retry_after(response: httpx2.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _server_time(response: httpx2.Response) -> datetime | None:
    value = response.headers.get("date")
    if not value:
        return None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _error_message(response: httpx2.Response) -> str:
    """The API's own explanation (Zendesk: error/description, Confluence: message), briefly."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200] or "no details"
    if isinstance(body, dict):
        for key in ("description", "message", "error"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return value[:300]
            if isinstance(value, dict) and isinstance(value.get("message"), str):
                return value["message"][:300]
    return str(body)[:200]
