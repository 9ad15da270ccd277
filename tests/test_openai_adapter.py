"""retrieval/openai_adapter.py: every exception the installed openai exports has its own words, as httpx
tests its own mapping; each use's client is built in one place."""

from __future__ import annotations

import inspect
from typing import Any

import httpx2
import openai
import pytest
from openai.types.chat import ChatCompletion

from retrieval.errors import ConfigError, EmbeddingError, LLMError
from retrieval.openai_adapter import CHAT, EMBEDDINGS, ERRORS, FINE_TUNING, Call, create_client, describe, raised_as
from retrieval.settings import OpenAISettings

ENDPOINT = "http://127.0.0.1:9/v1"
REQUEST = httpx2.Request("POST", f"{ENDPOINT}/chat/completions")
STATUS = {"AuthenticationError": 401, "OAuthError": 401, "PermissionDeniedError": 403, "NotFoundError": 404,
          "ConflictError": 409, "UnprocessableEntityError": 422, "RateLimitError": 429, "BadRequestError": 400,
          "InternalServerError": 500}


def exported_exceptions() -> list[type[BaseException]]:
    return sorted((value for name, value in list(vars(openai).items())
                   if not name.startswith("_") and isinstance(value, type) and issubclass(value, BaseException)),
                  key=lambda cls: cls.__name__)


def an_instance(cls: type[BaseException]) -> BaseException:
    """One instance of an openai exception, built from its signature as the SDK would raise it."""
    status = STATUS.get(cls.__name__, 503)
    body = {"error": {"message": f"the server says {cls.__name__}", "code": None}}
    values: dict[str, Any] = {
        "message": f"the server says {cls.__name__}", "request": REQUEST, "body": body,
        "response": httpx2.Response(status, request=REQUEST, json=body), "unsent_messages": [],
        "completion": ChatCompletion(id="c", object="chat.completion", created=0, model="gpt-4o-mini", choices=[]),
    }
    parameters = inspect.signature(cls.__init__).parameters
    if any(p.kind is p.VAR_POSITIONAL for p in parameters.values()):
        return cls(values["message"])
    args, kwargs = [], {}
    for name, parameter in list(parameters.items())[1:]:
        if parameter.kind is parameter.POSITIONAL_OR_KEYWORD and parameter.default is parameter.empty:
            args.append(values[name])
        elif name in values and parameter.default is parameter.empty:
            kwargs[name] = values[name]
    return cls(*args, **kwargs)


def test_every_exception_the_installed_openai_exports_is_mapped() -> None:
    exported = exported_exceptions()
    assert len(exported) >= 15  # the SDK's exceptions were found, not an empty list
    missing = [cls.__name__ for cls in exported if cls not in ERRORS]
    assert not missing, f"map these in retrieval/openai_adapter.py ERRORS: {missing}"


@pytest.mark.parametrize("cls", exported_exceptions(), ids=lambda cls: cls.__name__)
def test_each_exception_gets_its_own_words_and_keeps_its_cause(cls: type[BaseException]) -> None:
    exc = an_instance(cls)
    call = Call(CHAT, ENDPOINT, "gpt-4o-mini", 20.0)
    words = describe(exc, call)
    assert words == ERRORS[cls](exc, call)  # the exact class decides, not a base class's entry
    assert words and not words.startswith(f"{cls.__name__}:")
    with pytest.raises(LLMError) as caught, raised_as(LLMError, "Calling gpt-4o-mini", call):
        raise exc
    assert str(caught.value) == f"Calling gpt-4o-mini: {words}" and caught.value.__cause__ is exc


def test_the_words_point_at_the_setting_of_each_use() -> None:
    missing_model = an_instance(openai.NotFoundError)
    missing_model.body = {"error": {"message": "The model `x` does not exist", "code": "model_not_found"}}
    chat = describe(missing_model, Call(CHAT, ENDPOINT, "x"))
    embeddings = describe(missing_model, Call(EMBEDDINGS, ENDPOINT, "x"))
    assert "KBBOT_LLM_MODEL" in chat and "kbbot llm check" in chat
    assert "KBBOT_EMBEDDING_MODEL" in embeddings and "KBBOT_LLM_MODEL" not in embeddings
    refused = an_instance(openai.AuthenticationError)
    assert "KBBOT_EMBEDDING_API_KEY" in describe(refused, Call(EMBEDDINGS, ENDPOINT))
    assert describe(an_instance(openai.APITimeoutError), Call(CHAT, ENDPOINT, "m", 0.5)) == \
        "no reply from 'm' within 0.5s (KBBOT_LLM_TIMEOUT)."
    stream_broke = httpx2.ReadError("connection reset", request=REQUEST)  # raised unwrapped mid-stream
    assert describe(stream_broke, Call(CHAT, ENDPOINT)).startswith(f"cannot reach {ENDPOINT}")


def test_clients_are_built_in_one_place() -> None:
    keyless = OpenAISettings(_env_file=None, OPENAI_BASE_URL=ENDPOINT)
    client = create_client(CHAT, keyless, timeout_s=5, max_retries=0)
    assert client.api_key == "unused" and str(client.base_url).startswith(ENDPOINT)  # Ollama/vLLM: no key
    assert (client.timeout, client.max_retries) == (5, 0)
    with pytest.raises(ConfigError, match=r"LLM answers needs OPENAI_API_KEY"):
        create_client(CHAT, OpenAISettings(_env_file=None), timeout_s=5, max_retries=0)
    with pytest.raises(EmbeddingError, match="Fine-tuning needs OPENAI_API_KEY"):
        create_client(FINE_TUNING, keyless, timeout_s=5, max_retries=0, key_required=True, missing=EmbeddingError)
    keyed = create_client(FINE_TUNING, OpenAISettings(_env_file=None, OPENAI_API_KEY="sk-test"), timeout_s=60,
                          max_retries=3, key_required=True)
    assert keyed.api_key == "sk-test" and keyed.max_retries == 3
