"""`/reindex` over real HTTP: refused for non-admins, progress and a summary for admins (through the
command's response_url), refused while another sync holds the lock, and `/reindex status`."""

from __future__ import annotations

import getpass
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import main
from retrieval.runs import RunLog
from tests.slack_fixtures import *  # noqa: F403 - the fixtures
from tests.slack_fixtures import ADMIN, EMPLOYEE, BotUnderTest


def test_non_admin_is_refused_politely(slack_bot: BotUnderTest) -> None:
    response = slack_bot.command("", user=EMPLOYEE, response_key="r1")
    assert response.status == 200
    [reply] = slack_bot.fake.wait_for_response("r1")
    assert "only knowledge-base admins" in reply["text"] and reply["response_type"] == "ephemeral"
    # Asked Slack whether the user is a workspace admin before refusing.
    assert slack_bot.fake.calls_to("users.info")[0].params["user"] == EMPLOYEE
    assert [r.trigger for r in RunLog(slack_bot.db).recent()] == ["cli"]  # only the demo KB's indexing


def test_workspace_admin_and_admin_group_members_may_reindex(slack_bot: BotUnderTest) -> None:
    fake = slack_bot.fake
    fake.users["U0OWNER"] = {"is_owner": True}
    admins = slack_bot.parts.reindexer.admins
    admins.admin_groups = ["S0KBADMINS"]
    fake.usergroups["S0KBADMINS"] = ["U0GROUPIE"]
    from bot.app import create_web_client

    client = create_web_client(slack_bot.settings.slack)
    assert admins.is_admin(client, ADMIN)  # listed in KBBOT_ADMIN_USERS
    assert admins.is_admin(client, "U0OWNER")  # Slack workspace owner
    assert admins.is_admin(client, "U0GROUPIE")  # member of an admin user group
    assert not admins.is_admin(client, EMPLOYEE)


def test_admin_reindex_reports_progress_and_a_summary(slack_bot: BotUnderTest) -> None:
    slack_bot.parts.reindexer.progress_every_s = 0.0  # report every step (the demo KB syncs in a blink)
    response = slack_bot.command("", user=ADMIN, response_key="r2")
    assert response.status == 200 and "received" in response.body  # the immediate ephemeral ack
    # started, two progress updates (the most Slack's 5-post budget leaves room for), the summary
    posts = slack_bot.fake.wait_for_response("r2", count=4)
    assert "Started an incremental reindex of `demo`" in posts[0]["text"]
    progress = [p for p in posts if p.get("replace_original") is True]
    assert len(progress) == 2 and all("Reindexing `demo`" in p["text"] for p in progress)
    summary = posts[-1]["text"]
    assert "Reindex succeeded (incremental" in summary and "35 unchanged" in summary and "0 failed" in summary
    slack_bot.parts.reindexer.join(60)
    assert len(slack_bot.fake.responses["r2"]) == 4  # Slack allows 5 posts to a response_url
    [run] = RunLog(slack_bot.db).recent(1)
    assert (run.trigger, run.started_by, run.status) == ("slack", ADMIN, "succeeded")


def test_a_second_reindex_while_one_runs_is_refused_with_who_and_when(slack_bot: BotUnderTest) -> None:
    # Another replica (or the worker) holds the sync lock: same PostgreSQL, another connection.
    with RunLog(slack_bot.db).exclusive(kind="full", trigger="slack", started_by="U0OTHERADMIN", sources=["demo"]):
        slack_bot.command("full", user=ADMIN, response_key="r3")
        [reply] = slack_bot.fake.wait_for_response("r3")
    assert "already running" in reply["text"] and "<@U0OTHERADMIN>" in reply["text"] and "UTC" in reply["text"]
    assert [r.started_by for r in RunLog(slack_bot.db).recent()] == ["U0OTHERADMIN", None]  # no second run


def test_reindex_status_and_help(slack_bot: BotUnderTest) -> None:
    slack_bot.command("status", user=EMPLOYEE, response_key="r4")
    [status] = slack_bot.fake.wait_for_response("r4")
    assert "35 articles" in status["text"] and "all-MiniLM-L6-v2" in status["text"]
    slack_bot.command("what", user=EMPLOYEE, response_key="r5")
    [usage] = slack_bot.fake.wait_for_response("r5")
    assert "`/reindex full`" in usage["text"]


def test_reindex_status_names_a_sync_run_from_the_command_line(slack_bot: BotUnderTest, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", slack_bot.db.engine.url.render_as_string(hide_password=False))
    monkeypatch.setenv("KBBOT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    synced = CliRunner().invoke(main, ["sync"], catch_exceptions=False)
    assert synced.exit_code == 0 and "Sync succeeded" in synced.output, synced.output
    slack_bot.command("status", user=EMPLOYEE, response_key="r6")
    [status] = slack_bot.fake.wait_for_response("r6")
    assert f"by {getpass.getuser()} on the command line of {socket.gethostname()}:" in status["text"]
    assert "someone" not in status["text"] and "0 passages embedded" in status["text"]
