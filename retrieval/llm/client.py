"""Chat completions against any OpenAI-compatible endpoint, with a deadline, bounded retries and errors a
person can act on.

One ``openai.OpenAI`` client is built per process (it pools connections). Its own retries are switched
off: ``ChatClient`` retries itself so that every wait counts against the answer's budget, honours
``Retry-After``, and never retries once text has been streamed (a retry would repeat it).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

# The transport the openai SDK is built on: a stream can fail with its errors mid-iteration.
import httpx2 as _http
import openai

from retrieval.errors import ConfigError, LLMError
from retrieval.settings import DEFAULTS, LLMSettings, OpenAISettings

log = logging.getLogger(__name__)

Message = dict[str, str]
_BACKOFF_BASE_S = 0.5
_BACKOFF_CAP_S = 8.0
# A call with less time than this left is not worth starting.
_MIN_CALL_S = 0.2


def create_openai_client(endpoint: OpenAISettings, *, timeout_s: float) -> openai.OpenAI:
    """The process's client, from OPENAI_API_KEY / OPENAI_BASE_URL (read by Settings, .env included)."""
    if endpoint.openai_api_key is not None:
        api_key = endpoint.openai_api_key.get_secret_value()
    elif endpoint.openai_base_url:
        api_key = "unused"  # local servers (Ollama, vLLM) ignore the key, but the SDK insists on one
    else:
        raise ConfigError("LLM answers need OPENAI_API_KEY (and OPENAI_BASE_URL for a non-OpenAI endpoint).")
    return openai.OpenAI(api_key=api_key, base_url=endpoint.openai_base_url or None,
                         timeout=timeout_s, max_retries=0)


@dataclass(frozen=True)
class Deadline:
    """A point on the monotonic clock by which the answer's LLM work must be done."""

    at: float

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(time.monotonic() + seconds)

    def remaining(self) -> float:
        return self.at - time.monotonic()


class ChatClient:
    """Streams or completes one chat request for a given model."""

    def __init__(self, client: openai.OpenAI, *, timeout_s: float = DEFAULTS.llm.llm_timeout_s,
                 max_retries: int = DEFAULTS.llm.llm_max_retries,
                 max_answer_tokens: int = DEFAULTS.llm.llm_max_answer_tokens,
                 temperature: float | None = DEFAULTS.llm.llm_temperature,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.client = client
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.max_answer_tokens = max_answer_tokens
        self.temperature = temperature
        self._sleep = sleep
        # OpenAI's newer models want max_completion_tokens; many local servers only know max_tokens.
        # Start with what the endpoint most likely speaks and switch once if it says otherwise.
        self._limit_field = "max_completion_tokens" if _is_openai_or_azure(client) else "max_tokens"

    @classmethod
    def from_settings(cls, endpoint: OpenAISettings, settings: LLMSettings,
                      client: openai.OpenAI | None = None) -> ChatClient:
        return cls(client or create_openai_client(endpoint, timeout_s=settings.llm_timeout_s),
                   timeout_s=settings.llm_timeout_s,
                   max_retries=settings.llm_max_retries, max_answer_tokens=settings.llm_max_answer_tokens,
                   temperature=settings.llm_temperature)

    @property
    def endpoint(self) -> str:
        """The base URL without credentials or query, safe for logs and messages."""
        parts = urlsplit(str(self.client.base_url))
        return f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}{parts.path}"

    def stream(self, model: str, messages: Sequence[Message], deadline: Deadline, *,
               max_tokens: int | None = None) -> Iterator[str]:
        """Yield the answer's text deltas. Raises LLMError; retries happen only before the first delta."""
        response = self._with_retries(model, messages, deadline, max_tokens, stream=True)
        produced = False
        try:
            for chunk in response:
                if not chunk.choices:
                    continue
                delta = chunk.choices[0].delta.content
                if delta:
                    produced = True
                    yield delta
                if deadline.remaining() <= 0:
                    raise LLMError(f"Model {model} was still writing when the answer's time budget ran out "
                                   "(KBBOT_LLM_ANSWER_BUDGET).")
        except (openai.OpenAIError, _http.HTTPError) as exc:
            where = "mid-answer" if produced else "before answering"
            raise self._error(exc, model, f"The stream from {model} broke {where}") from exc
        finally:
            response.close()

    def complete(self, model: str, messages: Sequence[Message], deadline: Deadline, *,
                 max_tokens: int | None = None) -> str:
        """The whole reply at once (query rewriting, `kbbot llm check`)."""
        completion = self._with_retries(model, messages, deadline, max_tokens, stream=False)
        if not completion.choices:
            raise LLMError(f"Model {model} at {self.endpoint} returned no choices.")
        return completion.choices[0].message.content or ""

    def list_models(self) -> list[str]:
        try:
            return sorted(model.id for model in self.client.models.list())
        except openai.OpenAIError as exc:
            raise self._error(exc, "", "Listing the models") from exc

    # --- internals -------------------------------------------------------------------------------
    def _with_retries(self, model: str, messages: Sequence[Message], deadline: Deadline,
                      max_tokens: int | None, *, stream: bool) -> Any:
        attempt = 0
        switched_limit_field = False
        while True:
            timeout = min(self.timeout_s, deadline.remaining())
            if timeout < _MIN_CALL_S:
                raise LLMError(f"No time left in the answer's budget to call {model} "
                               "(KBBOT_LLM_ANSWER_BUDGET).")
            try:
                return self.client.chat.completions.create(
                    model=model, messages=list(messages), stream=stream, timeout=timeout,  # type: ignore[arg-type]
                    **self._options(max_tokens),
                )
            except openai.BadRequestError as exc:
                if not switched_limit_field and _complains_about_limit_field(exc):
                    switched_limit_field = True
                    self._limit_field = ("max_tokens" if self._limit_field == "max_completion_tokens"
                                         else "max_completion_tokens")
                    log.info("endpoint %s wants %s; switching", self.endpoint, self._limit_field)
                    continue
                raise self._error(exc, model, f"Calling {model}") from exc
            except (openai.RateLimitError, openai.InternalServerError, openai.APIConnectionError) as exc:
                if isinstance(exc, openai.APITimeoutError) or _quota_exhausted(exc):
                    # A timeout already cost a full KBBOT_LLM_TIMEOUT: the fallback model is the better
                    # use of what is left. An empty quota does not refill in seconds.
                    raise self._error(exc, model, f"Calling {model}") from exc
                attempt += 1
                delay = _backoff(attempt, _retry_after(exc))
                if attempt > self.max_retries or delay + _MIN_CALL_S >= deadline.remaining():
                    raise self._error(exc, model, f"Calling {model} ({attempt} attempts)") from exc
                log.warning("%s from %s for %s; retry %d/%d in %.1fs", type(exc).__name__, self.endpoint,
                            model, attempt, self.max_retries, delay)
                self._sleep(delay)
            except openai.OpenAIError as exc:
                raise self._error(exc, model, f"Calling {model}") from exc

    def _options(self, max_tokens: int | None) -> dict[str, Any]:
        options: dict[str, Any] = {self._limit_field: max_tokens or self.max_answer_tokens}
        if self.temperature is not None:
            options["temperature"] = self.temperature
        return options

    def _error(self, exc: BaseException, model: str, action: str) -> LLMError:
        return LLMError(f"{action}: {describe_error(exc, model, self.endpoint, self.timeout_s)}")


def describe_error(exc: BaseException, model: str, endpoint: str, timeout_s: float) -> str:
    """What went wrong, in words that say which setting to look at."""
    if isinstance(exc, openai.AuthenticationError):
        return f"the endpoint {endpoint} refused the API key (401). Check OPENAI_API_KEY."
    if isinstance(exc, openai.PermissionDeniedError):
        return f"this API key may not use model {model!r} (403): {_message(exc)}"
    if isinstance(exc, openai.NotFoundError):
        if _code(exc) == "model_not_found" or "model" in _message(exc).lower():
            return (f"model {model!r} does not exist at {endpoint} or this key cannot use it. Set "
                    "KBBOT_LLM_MODEL (or KBBOT_TONE_MODEL) to an available model: `kbbot llm check` lists them.")
        return f"{endpoint} answered 404. Check OPENAI_BASE_URL (it usually ends in /v1)."
    if isinstance(exc, openai.RateLimitError):
        if _quota_exhausted(exc):
            return f"the account's quota is used up (429 insufficient_quota): {_message(exc)}"
        return "still rate-limited (429) after retries. Wait a minute, or raise the endpoint's limits."
    if isinstance(exc, openai.BadRequestError):
        if _code(exc) == "context_length_exceeded":
            return (f"the prompt is too long for {model!r}: lower KBBOT_LLM_MAX_CONTEXT_TOKENS "
                    "to fit its context window.")
        return f"the endpoint refused the request (400): {_message(exc)}"
    if isinstance(exc, (openai.APITimeoutError, _http.TimeoutException)):
        return f"no reply from {model!r} within {timeout_s:g}s (KBBOT_LLM_TIMEOUT)."
    if isinstance(exc, (openai.APIConnectionError, _http.TransportError)):
        return f"cannot reach {endpoint}. Check OPENAI_BASE_URL and the network."
    if isinstance(exc, openai.APIStatusError):
        return f"the endpoint failed ({exc.status_code}): {_message(exc)}"
    return f"{type(exc).__name__}: {exc}"


def _message(exc: BaseException) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return str(inner["message"])
    return str(getattr(exc, "message", exc))


def _code(exc: BaseException) -> str | None:
    code = getattr(exc, "code", None)
    if code:
        return str(code)
    body = getattr(exc, "body", None)
    inner = body.get("error", body) if isinstance(body, dict) else None
    return str(inner["code"]) if isinstance(inner, dict) and inner.get("code") else None


def _quota_exhausted(exc: BaseException) -> bool:
    return isinstance(exc, openai.RateLimitError) and _code(exc) == "insufficient_quota"


def _complains_about_limit_field(exc: openai.BadRequestError) -> bool:
    text = _message(exc)
    return "max_tokens" in text or "max_completion_tokens" in text


def _retry_after(exc: BaseException) -> float | None:
    response = getattr(exc, "response", None)
    value = response.headers.get("retry-after") if response is not None else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: rare from these APIs, and the exponential backoff is a fine stand-in


def _backoff(attempt: int, retry_after: float | None) -> float:
    if retry_after is not None:
        return min(retry_after, _BACKOFF_CAP_S * 4)
    # Full jitter: replicas rate-limited together must not retry together.
    return random.uniform(0, min(_BACKOFF_CAP_S, _BACKOFF_BASE_S * 2 ** (attempt - 1)))


def _is_openai_or_azure(client: openai.OpenAI) -> bool:
    host = urlsplit(str(client.base_url)).hostname or ""
    return host == "api.openai.com" or host.endswith((".openai.azure.com", ".cognitiveservices.azure.com"))
