"""Chat completions against any OpenAI-compatible endpoint, with a deadline, bounded retries and errors a
person can act on.

One ``openai.OpenAI`` client is built per process by retrieval/openai_adapter.py, which also words
the errors. The SDK's own retries are switched off: ``ChatClient`` retries itself so that every wait counts
against the answer's budget, honours ``Retry-After``, and never retries once text has been streamed (a
retry would repeat it).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import openai

from retrieval.errors import LLMError
from retrieval.openai_adapter import (
    CAUGHT,
    CHAT,
    Call,
    create_client,
    describe,
    endpoint_of,
    error_message,
    quota_exhausted,
    retry_after,
)
from retrieval.settings import DEFAULTS, LLMSettings, OpenAISettings

log = logging.getLogger(__name__)

Message = dict[str, str]
_BACKOFF_BASE_S = 0.5
_BACKOFF_CAP_S = 8.0
# A call with less time than this left is not worth starting.
_MIN_CALL_S = 0.2


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
        # max_retries=0: this class retries itself, so every wait counts against the answer's budget.
        return cls(client or create_client(CHAT, endpoint, timeout_s=settings.llm_timeout_s, max_retries=0),
                   timeout_s=settings.llm_timeout_s,
                   max_retries=settings.llm_max_retries, max_answer_tokens=settings.llm_max_answer_tokens,
                   temperature=settings.llm_temperature)

    @property
    def endpoint(self) -> str:
        """The base URL without credentials or query, safe for logs and messages."""
        return endpoint_of(self.client)

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
        except CAUGHT as exc:
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
        except CAUGHT as exc:
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
                if isinstance(exc, openai.APITimeoutError) or quota_exhausted(exc):
                    # A timeout already cost a full KBBOT_LLM_TIMEOUT: the fallback model is the better
                    # use of what is left. An empty quota does not refill in seconds.
                    raise self._error(exc, model, f"Calling {model}") from exc
                attempt += 1
                delay = _backoff(attempt, retry_after(exc))
                if attempt > self.max_retries or delay + _MIN_CALL_S >= deadline.remaining():
                    raise self._error(exc, model, f"Calling {model} ({attempt} attempts)") from exc
                log.warning("%s from %s for %s; retry %d/%d in %.1fs", type(exc).__name__, self.endpoint,
                            model, attempt, self.max_retries, delay)
                self._sleep(delay)
            except CAUGHT as exc:
                raise self._error(exc, model, f"Calling {model}") from exc

    def _options(self, max_tokens: int | None) -> dict[str, Any]:
        options: dict[str, Any] = {self._limit_field: max_tokens or self.max_answer_tokens}
        if self.temperature is not None:
            options["temperature"] = self.temperature
        return options

    def _error(self, exc: BaseException, model: str, action: str) -> LLMError:
        call = Call(CHAT, self.endpoint, model, self.timeout_s)
        return LLMError(f"{action}: {describe(exc, call)}")


def _complains_about_limit_field(exc: openai.BadRequestError) -> bool:
    text = error_message(exc)
    return "max_tokens" in text or "max_completion_tokens" in text


def _backoff(attempt: int, retry_after: float | None) -> float:
    if retry_after is not None:
        return min(retry_after, _BACKOFF_CAP_S * 4)
    # Full jitter: replicas rate-limited together must not retry together.
    return random.uniform(0, min(_BACKOFF_CAP_S, _BACKOFF_BASE_S * 2 ** (attempt - 1)))


def _is_openai_or_azure(client: openai.OpenAI) -> bool:
    host = urlsplit(str(client.base_url)).hostname or ""
    return host == "api.openai.com" or host.endswith((".openai.azure.com", ".cognitiveservices.azure.com"))
