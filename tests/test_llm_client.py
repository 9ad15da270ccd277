# ruff: noqa: F811 - `fake_openai` is a fixture imported from tests.fakes and taken by name
"""The chat client over real HTTP against the fake OpenAI API: retries, timeouts, clear errors, settings."""

from __future__ import annotations

import pytest

from retrieval import openai_adapter
from retrieval.errors import ConfigError, LLMError
from retrieval.llm.client import ChatClient, Deadline
from retrieval.settings import load_settings
from tests.fakes.openai_api import FakeOpenAI, Scripted, fake_openai  # noqa: F401 - fixture

CHAT = r"/v1/chat/completions"
MESSAGES = [{"role": "user", "content": "Say hello"}]


def client(fake: FakeOpenAI, **overrides: object) -> ChatClient:
    settings = load_settings(_env_file=None, openai_api_key="sk-test", openai_base_url=fake.url + "/v1",
                             **overrides)
    sleeps: list[float] = []
    chat = ChatClient.from_settings(settings.openai, settings.llm)
    chat._sleep = sleeps.append  # backoff waits are recorded, not slept
    chat.sleeps = sleeps  # type: ignore[attr-defined]
    return chat


def test_streams_deltas_in_order(fake_openai: FakeOpenAI) -> None:
    fake_openai.chat_responder = lambda messages, model: "one two three four"
    deltas = list(client(fake_openai).stream("gpt-4o-mini", MESSAGES, Deadline.after(10)))
    assert deltas == ["one ", "two ", "three ", "four"]
    request = fake_openai.requests_to("POST", CHAT)[0]
    assert request.json["stream"] is True
    assert request.json["max_tokens"] == 700  # a local endpoint: the classic field
    assert "temperature" not in request.json
    assert request.headers["authorization"] == "Bearer sk-test"


def test_429_then_success_retries_after_the_servers_delay(fake_openai: FakeOpenAI) -> None:
    fake_openai.script("POST", CHAT, Scripted.error(429, "Rate limit reached", retry_after=1.5))
    chat = client(fake_openai)
    assert "".join(chat.stream("gpt-4o-mini", MESSAGES, Deadline.after(10))).startswith("Hi there!")
    assert len(fake_openai.requests_to("POST", CHAT)) == 2
    assert chat.sleeps == [1.5]  # type: ignore[attr-defined]


def test_5xx_retries_are_bounded(fake_openai: FakeOpenAI) -> None:
    fake_openai.script("POST", CHAT, *[Scripted.error(500, "boom")] * 5)
    chat = client(fake_openai, llm_max_retries=2)
    with pytest.raises(LLMError, match=r"\(3 attempts\).*failed \(500\): boom"):
        chat.complete("gpt-4o-mini", MESSAGES, Deadline.after(10))
    assert len(fake_openai.requests_to("POST", CHAT)) == 3
    assert len(chat.sleeps) == 2  # type: ignore[attr-defined]
    assert all(0 <= s <= 8 for s in chat.sleeps)  # type: ignore[attr-defined]


def test_insufficient_quota_is_not_retried(fake_openai: FakeOpenAI) -> None:
    fake_openai.script("POST", CHAT, Scripted.error(429, "You exceeded your current quota",
                                                    code="insufficient_quota", error_type="insufficient_quota"))
    with pytest.raises(LLMError, match="quota is used up"):
        client(fake_openai).complete("gpt-4o-mini", MESSAGES, Deadline.after(10))
    assert len(fake_openai.requests_to("POST", CHAT)) == 1


def test_timeout_is_reported_with_the_setting_to_change(fake_openai: FakeOpenAI) -> None:
    fake_openai.script("POST", CHAT, Scripted(delay_s=1.5))
    with pytest.raises(LLMError, match=r"no reply from 'gpt-4o-mini' within 0.3s \(KBBOT_LLM_TIMEOUT\)"):
        list(client(fake_openai, llm_timeout_s=0.3).stream("gpt-4o-mini", MESSAGES, Deadline.after(10)))
    assert len(fake_openai.requests_to("POST", CHAT)) == 1  # a timeout is not retried on the same model


def test_spent_budget_stops_before_calling(fake_openai: FakeOpenAI) -> None:
    with pytest.raises(LLMError, match="KBBOT_LLM_ANSWER_BUDGET"):
        client(fake_openai).complete("gpt-4o-mini", MESSAGES, Deadline.after(0.05))
    assert fake_openai.requests_to("POST", CHAT) == []


def test_unknown_model_names_the_model_and_the_setting(fake_openai: FakeOpenAI) -> None:
    with pytest.raises(LLMError) as caught:
        client(fake_openai).complete("gpt-9-ultra", MESSAGES, Deadline.after(10))
    message = str(caught.value)
    assert "model 'gpt-9-ultra' does not exist at http://127.0.0.1:" in message
    assert "KBBOT_LLM_MODEL" in message and "kbbot llm check" in message


def test_wrong_key_says_check_openai_api_key(fake_openai: FakeOpenAI) -> None:
    fake_openai.script("POST", CHAT, Scripted.error(401, "Incorrect API key provided: sk-test.",
                                                    code="invalid_api_key"))
    with pytest.raises(LLMError, match=r"refused the API key \(401\)\. Check OPENAI_API_KEY"):
        client(fake_openai).complete("gpt-4o-mini", MESSAGES, Deadline.after(10))
    assert len(fake_openai.requests_to("POST", CHAT)) == 1


def test_unreachable_endpoint_says_check_base_url() -> None:
    settings = load_settings(_env_file=None, openai_api_key="k", openai_base_url="http://127.0.0.1:9/v1",
                             llm_max_retries=0)
    with pytest.raises(LLMError, match=r"cannot reach http://127\.0\.0\.1:9/v1.*OPENAI_BASE_URL"):
        ChatClient.from_settings(settings.openai, settings.llm).complete("m", MESSAGES, Deadline.after(5))


def test_switches_token_limit_field_when_the_endpoint_asks(fake_openai: FakeOpenAI) -> None:
    fake_openai.script("POST", CHAT, Scripted.error(
        400, "Unsupported parameter: 'max_tokens' is not supported with this model. Use "
        "'max_completion_tokens' instead.", code="unsupported_parameter"))
    chat = client(fake_openai, llm_max_answer_tokens=321, llm_temperature=0.2)
    assert chat.complete("gpt-4o-mini", MESSAGES, Deadline.after(10)).startswith("Hi there!")
    first, second = (r.json for r in fake_openai.requests_to("POST", CHAT))
    assert first["max_tokens"] == 321 and "max_completion_tokens" not in first
    assert second["max_completion_tokens"] == 321 and "max_tokens" not in second
    assert second["temperature"] == 0.2


def test_openai_sdk_environment_variables_enable_the_llm(fake_openai: FakeOpenAI,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    monkeypatch.setenv("OPENAI_BASE_URL", fake_openai.url + "/v1")
    settings = load_settings(_env_file=None)
    assert settings.openai.enabled
    ChatClient.from_settings(settings.openai, settings.llm).complete("gpt-4o-mini", MESSAGES, Deadline.after(10))
    assert fake_openai.requests[-1].headers["authorization"] == "Bearer sk-from-env"


def test_local_server_without_key_and_no_config_at_all(fake_openai: FakeOpenAI) -> None:
    keyless = load_settings(_env_file=None, openai_base_url=fake_openai.url + "/v1")
    assert keyless.openai.enabled
    # Ollama/vLLM ignore the key; the SDK wants one
    chat = openai_adapter.CHAT
    assert openai_adapter.create_client(chat, keyless.openai, timeout_s=5, max_retries=0).api_key == "unused"
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        openai_adapter.create_client(chat, load_settings(_env_file=None).openai, timeout_s=5, max_retries=0)


def test_lists_models(fake_openai: FakeOpenAI) -> None:
    assert "gpt-4o-mini" in client(fake_openai).list_models()
