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
from tests.fakes.slack_api import FakeSlack, SlackReply
from tests.slack_fixtures import *  # noqa: F403 - the fixtures
from tests.slack_fixtures import SIGNING_SECRET, SlackRequests

KBBOT = Path(sys.executable).parent / "kbbot"
REPO = Path(__file__).resolve().parents[1]  # the code under test, also when the venv's kbbot is another checkout's
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
    from bot.app import create_app, create_web_client
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
    # A process that only posts (the worker's gaps digest) needs the bot token alone.
    poster = create_web_client(http_without_secret.slack)
    assert poster.auth_test()["user_id"] and poster.base_url == fake_slack.api_url
    with pytest.raises(ConfigError, match=r"^SLACK_BOT_TOKEN is not set"):
        create_web_client(no_token.slack)


# --- start-up problems: one line saying what happened and what to do, the cause only with -v ----------------

def _start_env(tmp_path: Path, **settings: str) -> dict[str, str]:
    kept = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "KBBOT_", "OPENAI_"))}
    return {**kept, "KBBOT_DATA_DIR": str(tmp_path / "data"), "KBBOT_HOST": "127.0.0.1", "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": str(REPO), **settings}


def _start(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(KBBOT), *args, "serve"], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=180)


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, result.stdout + result.stderr
    return lines[0]


def test_serve_names_every_missing_slack_setting_at_once(tmp_path: Path) -> None:
    line = _one_line(_start(_start_env(tmp_path), tmp_path))
    assert line.startswith("Error: SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET are not set")
    assert "xoxb-" in line and "Signing Secret" in line and "docs/slack.md" in line
    socket_mode = _one_line(_start(_start_env(tmp_path, SLACK_APP_TOKEN="xapp-1-A0-1-secret"), tmp_path))
    assert "SLACK_BOT_TOKEN is not set" in socket_mode and "SLACK_SIGNING_SECRET" not in socket_mode


def test_serve_with_a_token_slack_refuses_says_so_in_one_line(fake_slack: FakeSlack, tmp_path: Path) -> None:
    env = _start_env(tmp_path, SLACK_BOT_TOKEN=TOKEN, SLACK_SIGNING_SECRET=SIGNING_SECRET,
                     SLACK_API_URL=fake_slack.api_url, PORT=str(_free_port()))
    fake_slack.script("auth.test", SlackReply.error("invalid_auth"))  # Slack's answer to a wrong token
    line = _one_line(_start(env, tmp_path))
    assert line.startswith("Error: Slack refused SLACK_BOT_TOKEN (invalid_auth): copy it again")
    assert "OAuth & Permissions" in line and TOKEN not in line
    fake_slack.script("auth.test", SlackReply.error("invalid_auth"))
    verbose = _start(env, tmp_path, "-v")
    assert verbose.returncode == 1 and "BoltError" in verbose.stderr and "invalid_auth" in verbose.stderr


def test_serve_when_slack_is_unreachable_says_so_in_one_line(tmp_path: Path) -> None:
    closed = _free_port()  # nothing listens there: connections are refused, as with Slack unreachable
    env = _start_env(tmp_path, SLACK_BOT_TOKEN=TOKEN, SLACK_SIGNING_SECRET=SIGNING_SECRET,
                     SLACK_API_URL=f"http://127.0.0.1:{closed}/api/")
    line = _one_line(_start(env, tmp_path))
    assert line.startswith(f"Error: Slack is unreachable at http://127.0.0.1:{closed}/api/ (")
    assert "Connection refused" in line and "proxy" in line


def test_serve_on_a_port_in_use_says_so_before_loading_anything(fake_slack: FakeSlack, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = _start_env(tmp_path, SLACK_BOT_TOKEN=TOKEN, SLACK_SIGNING_SECRET=SIGNING_SECRET,
                         SLACK_API_URL=fake_slack.api_url, PORT=str(port))
        started = time.monotonic()
        line = _one_line(_start(env, tmp_path))
    assert line == (f"Error: Port {port} is already in use on 127.0.0.1 (another `kbbot serve`?): stop that "
                    "process, or listen on another port with --port or PORT.")
    assert time.monotonic() - started < 30  # no model load, no database start before the bind


@pytest.mark.slow
def test_socket_mode_with_an_app_token_slack_refuses_says_so(fake_slack: FakeSlack, database_url: str,
                                                             tmp_path: Path) -> None:
    env = _start_env(tmp_path, SLACK_BOT_TOKEN=TOKEN, SLACK_APP_TOKEN="xapp-1-A0-1-secret",
                     SLACK_API_URL=fake_slack.api_url, DATABASE_URL=database_url)
    fake_slack.script("apps.connections.open", SlackReply.error("invalid_auth"))
    result = _start(env, tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Error: Slack refused SLACK_APP_TOKEN (invalid_auth)" in result.stderr
    assert "App-Level Tokens" in result.stderr and "Traceback" not in result.stderr
