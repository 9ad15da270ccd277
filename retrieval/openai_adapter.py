"""The one place kbbot meets the `openai` package: it builds the clients and says what each error means.

Chat answers (retrieval/llm/client.py), OpenAI embeddings (retrieval/embeddings.py) and fine-tuning
(finetune/jobs.py, finetune/evaluate.py) all get their client from `create_client` and turn openai's
exceptions into the project's with `raised_as` (or `describe`, for a caller that retries first). Which
error says what is decided once, in `ERRORS`: one entry per exception class the installed `openai` exports
(tests/test_openai_adapter.py checks that none is missing), looked up along the exception's MRO so the
most specific entry wins. Messages name the endpoint, the model and the setting to look at; never the key.

A `Use` says which settings a use of the endpoint is configured by, so the same error points a chat
failure at KBBOT_LLM_MODEL and an embeddings failure at KBBOT_EMBEDDING_MODEL.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx2
import openai

from retrieval.errors import ConfigError, KbbotError
from retrieval.settings import OpenAISettings

# Local servers (Ollama, vLLM) ignore the key, but the SDK insists on one.
KEYLESS = "unused"


@dataclass(frozen=True)
class Use:
    """One use of an OpenAI-compatible endpoint, and the settings its errors point to."""

    purpose: str  # the subject of "... needs OPENAI_API_KEY"
    key_setting: str = "OPENAI_API_KEY"
    base_url_setting: str = "OPENAI_BASE_URL"
    model_setting: str = ""  # picks the model: named when the endpoint does not know it
    model_hint: str = ""  # where to find the models the endpoint has
    timeout_setting: str = ""  # bounds one call: named when a call times out
    context_setting: str = ""  # bounds the prompt: named when it is too long for the model


CHAT = Use("LLM answers", model_setting="KBBOT_LLM_MODEL (or KBBOT_TONE_MODEL)",
           model_hint="`kbbot llm check` lists them.", timeout_setting="KBBOT_LLM_TIMEOUT",
           context_setting="KBBOT_LLM_MAX_CONTEXT_TOKENS")
EMBEDDINGS = Use("KBBOT_EMBEDDING_PROVIDER=openai", key_setting="OPENAI_API_KEY (or KBBOT_EMBEDDING_API_KEY)",
                 base_url_setting="OPENAI_BASE_URL / KBBOT_EMBEDDING_BASE_URL", model_setting="KBBOT_EMBEDDING_MODEL")
FINE_TUNING = Use("Fine-tuning")


def create_client(use: Use, endpoint: OpenAISettings, *, timeout_s: float, max_retries: int,
                  key_required: bool = False, missing: type[KbbotError] = ConfigError) -> openai.OpenAI:
    """A client for `endpoint` (one per process and use: it pools connections).

    `max_retries` is the SDK's own backoff on 429/5xx/connection errors (it honours Retry-After); a caller
    that retries itself against a deadline passes 0. Without a key, only a base URL (a local server) will
    do, unless `key_required`; the refusal is a `missing` error naming the variables to set.
    """
    key = endpoint.openai_api_key
    if key is None and (key_required or not endpoint.openai_base_url):
        raise missing(f"{use.purpose} needs {use.key_setting} (and {use.base_url_setting} for a non-OpenAI "
                      "endpoint).")
    return openai.OpenAI(api_key=key.get_secret_value() if key is not None else KEYLESS,
                         base_url=endpoint.openai_base_url or None, timeout=timeout_s, max_retries=max_retries)


def endpoint_of(client: openai.OpenAI) -> str:
    """The client's base URL without credentials or query, safe for logs and messages."""
    parts = urlsplit(str(client.base_url))
    return f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}{parts.path}"


# --- what an error means ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Call:
    """What was called when an error happened, for its message."""

    use: Use
    endpoint: str
    model: str = ""
    timeout_s: float | None = None


def error_message(exc: BaseException) -> str:
    """The endpoint's own words (`error.message` of an OpenAI error body), else the exception's."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return str(inner["message"])
    return str(getattr(exc, "message", exc))


def error_code(exc: BaseException) -> str | None:
    code = getattr(exc, "code", None)
    if code:
        return str(code)
    body = getattr(exc, "body", None)
    inner = body.get("error", body) if isinstance(body, dict) else None
    return str(inner["code"]) if isinstance(inner, dict) and inner.get("code") else None


def quota_exhausted(exc: BaseException) -> bool:
    """A 429 that waiting will not cure: the account's quota is used up."""
    return isinstance(exc, openai.RateLimitError) and error_code(exc) == "insufficient_quota"


def retry_after(exc: BaseException) -> float | None:
    """Seconds the endpoint asked to wait (Retry-After), when it said."""
    response = getattr(exc, "response", None)
    value = response.headers.get("retry-after") if response is not None else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: rare from these APIs, and exponential backoff is a fine stand-in


def _status(exc: BaseException) -> str:
    status = getattr(exc, "status_code", None)
    return f" ({status})" if status else ""


def _model(call: Call) -> str:
    return f"model {call.model!r}" if call.model else "this request"


Describe = Callable[[BaseException, Call], str]


def _says(template: str) -> Describe:
    """An entry whose words need no decision: `template` with {endpoint}, {model}, {message}, {status}
    (" (404)" or ""), {exception} and the settings of the use ({key}, {base_url})."""
    def words(exc: BaseException, call: Call) -> str:
        return template.format(endpoint=call.endpoint, model=_model(call), message=error_message(exc),
                               status=_status(exc), exception=type(exc).__name__, key=call.use.key_setting,
                               base_url=call.use.base_url_setting)
    return words


def _not_found(exc: BaseException, call: Call) -> str:
    message = error_message(exc)
    if call.model and (error_code(exc) == "model_not_found" or "model" in message.lower()):
        setting = f" Set {call.use.model_setting} to an available model" if call.use.model_setting else ""
        hint = f": {call.use.model_hint}" if call.use.model_hint else "."
        return (f"model {call.model!r} does not exist at {call.endpoint} or this key cannot use it."
                f"{setting}{hint if setting else ''}")
    return (f"not found (404) at {call.endpoint}: {message}. If every call says so, check "
            f"{call.use.base_url_setting} (it usually ends in /v1).")


def _rate_limited(exc: BaseException, call: Call) -> str:
    if quota_exhausted(exc):
        return f"the account's quota is used up (429 insufficient_quota): {error_message(exc)}"
    return "still rate-limited (429) after retries. Wait a minute, or raise the endpoint's limits."


def _bad_request(exc: BaseException, call: Call) -> str:
    if error_code(exc) == "context_length_exceeded":
        fix = f": lower {call.use.context_setting} to fit its context window." if call.use.context_setting else "."
        return f"the prompt is too long for {_model(call)}{fix}"
    return f"the endpoint refused the request (400): {error_message(exc)}"


def _timed_out(exc: BaseException, call: Call) -> str:
    who = repr(call.model) if call.model else call.endpoint
    within = f" within {call.timeout_s:g}s" if call.timeout_s else ""
    if call.use.timeout_setting:
        return f"no reply from {who}{within} ({call.use.timeout_setting})."
    return f"no reply from {who}{within}. Retry, or check {call.use.base_url_setting}."


_FAILED = _says("the endpoint failed{status}: {message}")
_UNREACHABLE = _says("cannot reach {endpoint}. Check {base_url} and the network.")
# Realtime websockets and webhooks are not used by kbbot: seeing one of these is a bug to report.
_UNEXPECTED = _says("unexpected {exception} from the openai client: {message}")

ERRORS: dict[type[BaseException], Describe] = {
    openai.AuthenticationError: _says("the endpoint {endpoint} refused the API key (401). Check {key}."),
    openai.OAuthError: _says("the endpoint {endpoint} refused the OAuth credentials{status}: {message}"),
    openai.PermissionDeniedError: _says("permission denied (403): this API key may not use {model}: {message}"),
    openai.NotFoundError: _not_found,
    openai.ConflictError: _says("the endpoint refused the request as conflicting (409): {message}"),
    openai.UnprocessableEntityError: _says("the endpoint could not process the request (422): {message}"),
    openai.RateLimitError: _rate_limited,
    openai.BadRequestError: _bad_request,
    openai.InternalServerError: _FAILED,
    openai.APIStatusError: _FAILED,
    openai.APITimeoutError: _timed_out,
    openai.APIConnectionError: _UNREACHABLE,
    openai.APIResponseValidationError: _says("{endpoint} sent a reply the openai client cannot read{status}: is "
                                             "{base_url} an OpenAI-compatible endpoint?"),
    openai.APIError: _FAILED,
    openai.LengthFinishReasonError: _says("{model} reached its token limit before finishing the reply."),
    openai.ContentFilterFinishReasonError: _says("{model} refused to write the reply (the endpoint's content "
                                                 "filter)."),
    openai.WebSocketConnectionClosedError: _UNEXPECTED,
    openai.WebSocketQueueFullError: _UNEXPECTED,
    openai.InvalidWebhookSignatureError: _UNEXPECTED,
    openai.OpenAIError: _UNEXPECTED,
    # The transport under the SDK: a stream that breaks mid-iteration raises these unwrapped.
    httpx2.TimeoutException: _timed_out,
    httpx2.TransportError: _UNREACHABLE,
    httpx2.HTTPError: _UNEXPECTED,
}

# What `raised_as` and a retrying caller catch: everything the table speaks for.
CAUGHT: tuple[type[BaseException], ...] = (openai.OpenAIError, openai.InvalidWebhookSignatureError,
                                           httpx2.HTTPError)


def describe(exc: BaseException, call: Call) -> str:
    """What went wrong, in words that say which setting to look at."""
    for cls in type(exc).__mro__:
        if cls in ERRORS:
            return ERRORS[cls](exc, call)
    return f"{type(exc).__name__}: {exc}"


@contextmanager
def raised_as(error: type[KbbotError], action: str, call: Call) -> Iterator[None]:
    """Turn the openai client's exceptions into `error("<action>: <what went wrong>")`, cause kept."""
    try:
        yield
    except CAUGHT as exc:
        raise error(f"{action}: {describe(exc, call)}") from exc
