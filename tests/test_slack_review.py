"""Feedback buttons, the 👎 reason modal, "Ask a human", the App Home review and `kbbot answers export`."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import text

from bot.cli import main
from bot.home import SOURCE_LINES, review_view
from retrieval.sources.filesystem import FilesystemSource
from retrieval.status import index_status
from tests.fakes.slack_api import BOT_USER_ID
from tests.slack_fixtures import *  # noqa: F403 - the fixtures
from tests.slack_fixtures import ADMIN, EMPLOYEE, SUPPORT_GROUP, BotUnderTest

VPN = "How do I connect to the VPN when I'm working from home?"
PERU = "What is the capital of Peru?"


def _ask(bot: BotUnderTest, question: str, channel: str = "C0IT") -> tuple[str, dict, int]:
    """(thread ts, the answer message, its answer id)."""
    ts, _ = bot.mention(question, channel=channel)
    [answer] = bot.final_answer(channel, ts)
    actions = next(b for b in answer["blocks"] if b["type"] == "actions")
    return ts, answer, int(actions["elements"][0]["value"] or 0)


def _feedback(bot: BotUnderTest) -> list[tuple]:
    with bot.db.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text("SELECT answer_id, user_id, value, reason FROM feedback "
                                                    "ORDER BY answer_id, user_id"))]


def test_thumbs_are_stored_and_a_thumbs_down_asks_for_a_reason(slack_bot: BotUnderTest) -> None:
    ts, answer, answer_id = _ask(slack_bot, VPN)
    up = slack_bot.click("feedback_up", str(answer_id), user="U0FAN", channel="C0IT", message_ts=answer["ts"],
                         thread_ts=ts)
    assert up.status == 200
    slack_bot.fake.wait_for(lambda _: slack_bot.fake.calls_to("chat.postEphemeral"))
    assert _feedback(slack_bot) == [(answer_id, "U0FAN", "up", None)]

    slack_bot.click("feedback_down", str(answer_id), user=EMPLOYEE, channel="C0IT", message_ts=answer["ts"],
                    thread_ts=ts)
    [opened] = slack_bot.fake.wait_for(lambda _: slack_bot.fake.calls_to("views.open"))
    modal = opened.params["view"]
    assert modal["callback_id"] == "feedback_reason" and opened.params["trigger_id"]
    slack_bot.fake.wait_for(lambda _: len(_feedback(slack_bot)) == 2)
    assert (answer_id, EMPLOYEE, "down", None) in _feedback(slack_bot)  # stored before any reason

    submitted = slack_bot.interaction({
        "type": "view_submission", "user": {"id": EMPLOYEE, "username": "employee", "team_id": "T0KBBOT"},
        "trigger_id": "1.2.trigger",
        "view": {**modal, "id": "V0MODAL", "team_id": "T0KBBOT", "state": {"values": {
            "reason": {"reason_input": {"type": "plain_text_input", "value": "The article is out of date"}}}}},
    })
    assert submitted.status == 200
    slack_bot.fake.wait_for(lambda _: (answer_id, EMPLOYEE, "down", "The article is out of date")
                            in _feedback(slack_bot))

    # Changing one's mind replaces the vote (one per person and answer).
    slack_bot.click("feedback_up", str(answer_id), user=EMPLOYEE, channel="C0IT", message_ts=answer["ts"],
                    thread_ts=ts)
    slack_bot.fake.wait_for(lambda _: (answer_id, EMPLOYEE, "up", None) in _feedback(slack_bot))
    assert len(_feedback(slack_bot)) == 2


def test_ask_a_human_mentions_the_support_group_in_the_thread(slack_bot: BotUnderTest) -> None:
    ts, answer, answer_id = _ask(slack_bot, PERU)
    slack_bot.click("ask_human", str(answer_id), user=EMPLOYEE, channel="C0IT", message_ts=answer["ts"],
                    thread_ts=ts)
    post = slack_bot.fake.wait_for(lambda _: [c for c in slack_bot.fake.calls_to("chat.postMessage")
                                             if "subteam" in c.params.get("text", "")])[0]
    assert post.params["thread_ts"] == ts
    assert f"<!subteam^{SUPPORT_GROUP}>" in post.params["text"] and f"<@{EMPLOYEE}>" in post.params["text"]
    with slack_bot.db.engine.connect() as conn:
        metadata = conn.execute(text("SELECT metadata FROM answers WHERE id = :id"), {"id": answer_id}).scalar()
    assert metadata["escalated_by"] == EMPLOYEE


def _home_view(bot: BotUnderTest, user: str, count: int = 1) -> dict:
    calls = bot.fake.wait_for(lambda _: [c for c in bot.fake.calls_to("views.publish")
                                        if c.params["user_id"] == user][count - 1:])
    return calls[-1].params["view"]


def _view_text(view: dict) -> str:
    return json.dumps(view, ensure_ascii=False)


def test_app_home_lists_answers_with_citations_and_feedback_for_reviewers(slack_bot: BotUnderTest) -> None:
    fake = slack_bot.fake
    _, answer, answer_id = _ask(slack_bot, VPN)
    _ask(slack_bot, PERU)
    slack_bot.click("feedback_down", str(answer_id), user=EMPLOYEE, channel="C0IT", message_ts=answer["ts"],
                    thread_ts=None)
    fake.wait_for(lambda _: _feedback(slack_bot))

    slack_bot.event({"type": "app_home_opened", "user": ADMIN, "channel": "D0ADMIN", "tab": "home"})
    view = _home_view(slack_bot, ADMIN)
    body = _view_text(view)
    assert view["type"] == "home" and "Answer review" in body
    assert "VPN" in body and "Peru" in body and "No good answer" in body
    assert "*Sources:*" in body and "👎 1" in body
    assert len(view["blocks"]) <= 100

    # The 👎 filter narrows the list to the answer with a thumbs down.
    filters = next(b for b in view["blocks"] if b.get("block_id") == "home_filters")
    down = next(e for e in filters["elements"] if e["value"] == "down")
    slack_bot.interaction({"type": "block_actions", "user": {"id": ADMIN, "team_id": "T0KBBOT"},
                           "container": {"type": "view", "view_id": "V0HOME"}, "trigger_id": "1.3.trigger",
                           "view": {"id": "V0HOME", "type": "home"},
                           "actions": [{**{k: down[k] for k in ("action_id", "value")}, "type": "button",
                                        "block_id": "home_filters", "action_ts": "1"}]})
    filtered = _view_text(_home_view(slack_bot, ADMIN, count=2))
    assert "VPN" in filtered and "Peru" not in filtered

    # An employee who is not a reviewer sees only their own questions, not everyone's.
    slack_bot.event({"type": "app_home_opened", "user": "U0STRANGER", "channel": "D0X", "tab": "home"})
    personal = _view_text(_home_view(slack_bot, "U0STRANGER"))
    assert "Answer review" not in personal and "VPN" not in personal and "Ask the knowledge base" in personal


def test_app_home_shows_each_sources_freshness_and_a_failing_sources_error(
    slack_bot: BotUnderTest, tmp_path: Path
) -> None:
    wiki = tmp_path / "wiki"
    wiki.mkdir()
    for name in ("parking", "badges"):
        (wiki / f"{name}.md").write_text(f"# {name.title()}\n\nHow {name} work at the office, step by step.\n")
    indexer = slack_bot.services.indexer()
    indexer.sync([FilesystemSource("wiki", wiki)], prune=False)
    for path in wiki.iterdir():
        path.unlink()
    wiki.rmdir()  # the next sync of `wiki` fails; its articles stay
    assert indexer.sync([FilesystemSource("wiki", wiki)], prune=False).status != "succeeded"

    slack_bot.event({"type": "app_home_opened", "user": ADMIN, "channel": "D0ADMIN", "tab": "home"})
    view = _home_view(slack_bot, ADMIN)
    assert len(view["blocks"]) <= 100
    [sources] = [b["text"]["text"] for b in view["blocks"]
                 if b["type"] == "section" and b["text"]["text"].startswith("*Sources*")]
    lines = sources.split("\n")
    # The failing source comes first, with its article count, last success, the error and what to do.
    assert lines[1].startswith(":x: *wiki* (filesystem) · 2 articles · synced just now (<!date^")
    assert "*failing* since <!date^" in lines[2] and "does not exist" in lines[2]
    demo_articles = index_status(slack_bot.db).sources[0].articles
    assert lines[3].startswith(f":white_check_mark: *demo* (filesystem) · {demo_articles} articles · synced ")
    assert lines[4].startswith(":wrench:") and "`/reindex`" in lines[4] and "credentials" in lines[4]

    # Everyone sees which source failed, not the error (hosts, API messages) meant for the admins.
    slack_bot.event({"type": "app_home_opened", "user": "U0STRANGER", "channel": "D0X", "tab": "home"})
    personal = _view_text(_home_view(slack_bot, "U0STRANGER"))
    assert "*wiki*" in personal and "last sync failed" in personal and "does not exist" not in personal


def test_app_home_lists_many_sources_within_slacks_limits(slack_bot: BotUnderTest) -> None:
    with slack_bot.db.engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO sources (name, kind, last_success_at, last_error, last_error_at) "
            "SELECT 'src-' || i, 'zendesk', now() - i * interval '1 hour', "
            "CASE WHEN i % 10 = 0 THEN repeat('HTTP 401 Unauthorized ', 50) END, "
            "CASE WHEN i % 10 = 0 THEN now() END FROM generate_series(1, 60) i"))
    view = review_view(status=index_status(slack_bot.db), answers=[], counts={}, review="all")
    [sources] = [b["text"]["text"] for b in view["blocks"]
                 if b["type"] == "section" and b["text"]["text"].startswith("*Sources*")]
    assert len(sources) <= 3000 and len(view["blocks"]) <= 100
    lines = [line for line in sources.split("\n")[1:] if not line.startswith(" ")]
    assert lines.pop().startswith(":wrench:")  # what to do, said once
    shown = lines[:-1]
    assert 0 < len(shown) <= SOURCE_LINES
    # The six failing sources first (the one without a success for longest leading), then the most stale.
    assert shown[0].startswith(":x: *src-60*") and all(line.startswith(":x:") for line in shown)
    assert lines[-1].startswith(f"_…and {61 - len(shown)} more sources")
    assert "`kbbot status` lists them all" in lines[-1]


def test_support_group_members_are_reviewers(slack_bot: BotUnderTest) -> None:
    slack_bot.fake.usergroups[SUPPORT_GROUP] = ["U0SUPPORT"]
    _ask(slack_bot, VPN)
    slack_bot.event({"type": "app_home_opened", "user": "U0SUPPORT", "channel": "D0S", "tab": "home"})
    assert "Answer review" in _view_text(_home_view(slack_bot, "U0SUPPORT"))


def test_answers_export_csv_and_jsonl(slack_bot: BotUnderTest, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    _, answer, answer_id = _ask(slack_bot, VPN)
    _ask(slack_bot, PERU)
    slack_bot.click("feedback_up", str(answer_id), user=EMPLOYEE, channel="C0IT", message_ts=answer["ts"],
                    thread_ts=None)
    slack_bot.fake.wait_for(lambda _: _feedback(slack_bot))
    monkeypatch.setenv("DATABASE_URL", slack_bot.db.engine.url.render_as_string(hide_password=False))
    runner = CliRunner()

    result = runner.invoke(main, ["answers", "export", "--since", "7d", "--format", "jsonl"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["outcome"] for r in rows] == ["answered", "abstained"]
    assert rows[0]["citations"] and rows[0]["citations"][0]["url"] and rows[0]["feedback"][0]["value"] == "up"
    assert rows[0]["asker"] == EMPLOYEE and rows[0]["channel"] == "C0IT" and "total" in rows[0]["latency_ms"]

    result = runner.invoke(main, ["answers", "export", "--since", "1h", "--format", "csv"])
    assert result.exit_code == 0, result.output
    table = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(table) == 2 and table[0]["feedback_up"] == "1" and "[1]" in table[0]["citations"]

    result = runner.invoke(main, ["answers", "export", "--since", "2099-01-01", "--format", "csv"])
    assert result.exit_code == 0 and len(list(csv.DictReader(io.StringIO(result.stdout)))) == 0
    assert runner.invoke(main, ["answers", "export", "--since", "last tuesday"]).exit_code == 2
    assert BOT_USER_ID not in result.stdout
