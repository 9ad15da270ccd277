"""The connectors' HTTP client over real HTTP: rate limits, backoff, timeouts, clear errors, no secrets
in messages or logs."""

# ruff: noqa: F811 - fixtures imported from tests.fakes are taken by name
from __future__ import annotations

import base64
import logging
from email.utils import formatdate

import pytest

from retrieval.errors import SourceError
from retrieval.sources.http import ApiClient
from tests.fakes.json_api import Scripted
from tests.fakes.zendesk_api import FakeZendesk, fake_zendesk  # noqa: F401

SECTIONS = "/api/v2/help_center/en-us/sections.json"


def client(fake: FakeZendesk, waits: list[float], **kwargs) -> ApiClient:  # type: ignore[no-untyped-def]
    return ApiClient(service="Zendesk (hc)", base_url=fake.url, auth=(f"{fake.email}/token", fake.token),
                     credentials_hint="ZENDESK_API_TOKEN", sleep=waits.append, **kwargs)


def test_retry_after_as_an_http_date_is_honoured(fake_zendesk: FakeZendesk) -> None:
    import time

    when = formatdate(time.time() + 30, usegmt=True)
    fake_zendesk.script(SECTIONS, Scripted(429, {"error": "TooManyRequests"}, {"Retry-After": when}))
    waits: list[float] = []
    assert client(fake_zendesk, waits).get_json(SECTIONS)["sections"] == []
    assert len(waits) == 1 and 25 <= waits[0] <= 30


def test_a_slow_answer_times_out_and_is_retried(fake_zendesk: FakeZendesk) -> None:
    fake_zendesk.script(SECTIONS, Scripted(delay_s=1.5))
    waits: list[float] = []
    http = client(fake_zendesk, waits, timeout_s=0.3)
    assert http.get_json(SECTIONS)["sections"] == []
    assert waits == [1.0] and http.requests == 2


def test_retries_are_bounded(fake_zendesk: FakeZendesk) -> None:
    fake_zendesk.script(SECTIONS, *[Scripted(502, {"error": "Bad gateway"})] * 3)
    waits: list[float] = []
    with pytest.raises(SourceError, match=r"did not answer after 3 attempts \(HTTP 502 from .*sections\.json\)"
                                          r".*next run tries again"):
        client(fake_zendesk, waits, max_retries=2).get_json(SECTIONS)
    assert waits == [1.0, 2.0]


@pytest.mark.parametrize(("status", "expected"), [
    (403, r"refused access \(403 at .*\): the account behind ZENDESK_API_TOKEN lacks permission"),
    (404, r"has nothing at .* \(404\): check the base URL"),
    (422, r"refused the request \(HTTP 422 at .*\): start_time is too recent"),
])
def test_client_errors_say_what_to_check(fake_zendesk: FakeZendesk, status: int, expected: str) -> None:
    fake_zendesk.script(SECTIONS, Scripted(status, {"error": "X", "description": "start_time is too recent"}))
    waits: list[float] = []
    with pytest.raises(SourceError, match=expected):
        client(fake_zendesk, waits).get_json(SECTIONS)
    assert waits == []  # not retried


def test_a_non_json_answer_points_at_the_base_url(fake_zendesk: FakeZendesk) -> None:
    fake_zendesk.script(SECTIONS, Scripted(200, "<html>Sign in to your proxy</html>"))
    with pytest.raises(SourceError, match=r"not JSON \(text/html.*check the base URL"):
        client(fake_zendesk, []).get_json(SECTIONS)


def test_missing_ok_turns_a_404_into_none(fake_zendesk: FakeZendesk) -> None:
    assert client(fake_zendesk, []).get_json("/api/v2/help_center/en-us/articles/1.json", missing_ok=True) is None


def test_credentials_never_reach_the_logs(fake_zendesk: FakeZendesk, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    fake_zendesk.script(SECTIONS, Scripted.rate_limited(1), Scripted(401, {"error": "Couldn't authenticate"}))
    with pytest.raises(SourceError) as caught:
        client(fake_zendesk, []).get_json(SECTIONS)
    basic = base64.b64encode(f"{fake_zendesk.email}/token:{fake_zendesk.token}".encode()).decode()
    for secret in (fake_zendesk.token, basic):
        assert secret not in caplog.text and secret not in str(caught.value)
    assert "sections.json" in caplog.text  # the log does say what was asked
