"""`kbbot serve` as a real process, the way the Procfile's `web:` line runs it: Slack's URL verification,
a signed mention answered through the fake Web API, a clean stop on SIGTERM, and no secret in its log."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from retrieval.db import Database
from tests.fakes.slack_api import FakeSlack
from tests.slack_fixtures import *  # noqa: F403 - the fixtures
from tests.slack_fixtures import SIGNING_SECRET, SlackRequests

KBBOT = Path(sys.executable).parent / "kbbot"
TOKEN = "xoxb-1234-5678-secret-token-value"
CHALLENGE = "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"  # Slack's documented example


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_kbbot_serve_answers_and_stops_cleanly(fake_slack: FakeSlack, demo_database: Database,
                                               tmp_path: Path) -> None:
    port = _free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "KBBOT_", "OPENAI_"))},
           "DATABASE_URL": demo_database.engine.url.render_as_string(hide_password=False),
           "KBBOT_DATA_DIR": str(tmp_path / "data"), "SLACK_BOT_TOKEN": TOKEN,
           "SLACK_SIGNING_SECRET": SIGNING_SECRET, "SLACK_API_URL": fake_slack.api_url, "PORT": str(port),
           "KBBOT_HOST": "127.0.0.1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log:
        process = subprocess.Popen([str(KBBOT), "serve"], env=env, stdout=log, stderr=subprocess.STDOUT,
                                   cwd=tmp_path)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                    assert response.read() == b"ok\n"
                    break
            except OSError:
                assert process.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, "kbbot serve did not start"
                time.sleep(0.3)
        client = SlackRequests(f"http://127.0.0.1:{port}", fake_slack)
        challenge = client.post(json.dumps({"token": "x", "challenge": CHALLENGE, "type": "url_verification"}),
                                content_type="application/json")
        assert challenge.status == 200 and CHALLENGE in challenge.body
        ts, response = client.mention("How do I connect to the VPN when I'm working from home?", channel="C0IT")
        assert response.status == 200
        [answer] = fake_slack.wait_for(lambda _: [m for m in fake_slack.thread("C0IT", ts)
                                                  if m.get("blocks") and "Sources" in json.dumps(m["blocks"])])
        assert answer["thread_ts"] == ts
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    log = log_path.read_text()
    assert "listening on http://127.0.0.1" in log
    assert TOKEN not in log and SIGNING_SECRET not in log


def test_mode_follows_the_tokens(fake_slack: FakeSlack, tmp_path: Path) -> None:
    from bot.app import create_app
    from bot.services import Services
    from retrieval.errors import ConfigError
    from retrieval.settings import load_settings

    base = {"data_dir": tmp_path, "slack_api_url": fake_slack.api_url, "slack_bot_token": TOKEN}
    http_without_secret = load_settings(_env_file=None, **base)
    with pytest.raises(ConfigError, match="SLACK_SIGNING_SECRET"):
        create_app(http_without_secret, Services(http_without_secret))
    socket_mode = load_settings(_env_file=None, **base, slack_app_token="xapp-1-A0-1-secret")
    app = create_app(socket_mode, Services(socket_mode))  # Socket Mode needs no signing secret
    assert app.client.base_url == fake_slack.api_url
    no_token = load_settings(_env_file=None, data_dir=tmp_path, slack_signing_secret="s")
    with pytest.raises(ConfigError, match="SLACK_BOT_TOKEN"):
        create_app(no_token, Services(no_token))
