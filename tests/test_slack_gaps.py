"""Knowledge gaps through the real Slack app and the Web API fake: the expert's reply kept after "Ask a
human", a reviewer accepting it in App Home > Gaps, the kinds of 👎, the weekly digest, and `kbbot gaps`."""

from __future__ import annotations

import csv
import io
import json
import time

from click.testing import CliRunner
from sqlalchemy import text

from bot.cli import main
from bot.gaps_digest import post_digest
from bot.home_gaps import ACCEPT_ACTION, GapsParts
from retrieval.expert_replies import ExpertReplies
from tests.fakes.slack_api import BOT_USER_ID
from tests.slack_fixtures import *  # noqa: F403 - the fixtures
from tests.slack_fixtures import ADMIN, EMPLOYEE, SUPPORT_GROUP, BotUnderTest, start_bot, stop_bot

DOG = "Can I bring my dog to the office?"
PETS = "Are pets allowed in the Lisbon office?"
EXPERT = "U0EXPERT"


def _ask(bot: BotUnderTest, question: str, *, user: str = EMPLOYEE, channel: str = "C0IT") -> tuple[str, dict, int]:
    ts, _ = bot.mention(question, channel=channel, user=user)
    [answer] = bot.final_answer(channel, ts)
    actions = next(b for b in answer["blocks"] if b["type"] == "actions")
    return ts, answer, int(actions["elements"][0]["value"] or 0)


def _home(bot: BotUnderTest, user: str, count: int) -> dict:
    calls = bot.fake.wait_for(lambda _: [c for c in bot.fake.calls_to("views.publish")
                                        if c.params["user_id"] == user][count - 1:])
    return calls[-1].params["view"]


def _click_home(bot: BotUnderTest, user: str, action_id: str, value: str) -> None:
    bot.interaction({"type": "block_actions", "user": {"id": user, "team_id": "T0KBBOT"},
                     "container": {"type": "view", "view_id": "V0HOME"}, "trigger_id": "1.3.trigger",
                     "view": {"id": "V0HOME", "type": "home"},
                     "actions": [{"action_id": action_id, "value": value, "type": "button", "block_id": "b",
                                  "action_ts": "1"}]})


def _bot_messages(bot: BotUnderTest, channel: str, ts: str) -> list[dict]:
    return [m for m in bot.fake.thread(channel, ts) if m.get("user") == BOT_USER_ID]


def test_the_experts_first_reply_is_kept_and_a_reviewer_accepts_it(slack_bot: BotUnderTest) -> None:
    fake = slack_bot.fake
    fake.usergroups[SUPPORT_GROUP] = [EXPERT]
    ts, answer, answer_id = _ask(slack_bot, DOG)
    slack_bot.click("ask_human", str(answer_id), user=EMPLOYEE, channel="C0IT", message_ts=answer["ts"],
                    thread_ts=ts)
    fake.wait_for(lambda _: [c for c in fake.calls_to("chat.postMessage") if "subteam" in c.params.get("text", "")])
    fake.wait_for(lambda _: "escalated_by" in slack_bot.services.answer_log().get(answer_id).metadata)
    before = len(_bot_messages(slack_bot, "C0IT", ts))

    # Someone outside the support group chimes in first: a follow-up for the bot, not the expert's answer.
    slack_bot.message("any update on this?", user="U0COLLEAGUE", channel="C0IT", thread_ts=ts)
    fake.wait_for(lambda _: len(_bot_messages(slack_bot, "C0IT", ts)) > before)  # the bot answers it
    slack_bot.parts.responder.wait_idle(30)
    replies = ExpertReplies(slack_bot.db)
    assert replies.pending() == []

    slack_bot.message("Yes! Dogs are welcome on Fridays in Lisbon, keep them on a lead.", user=EXPERT,
                      channel="C0IT", thread_ts=ts)
    fake.wait_for(lambda _: replies.pending())
    slack_bot.message("(and register them at reception)", user=EXPERT, channel="C0IT", thread_ts=ts)
    time.sleep(1.0)  # the bot would have started answering by now
    slack_bot.parts.responder.wait_idle(30)
    [kept] = replies.pending()
    assert kept.answer_id == answer_id and kept.user_id == EXPERT and kept.text.startswith("Yes! Dogs are welcome")
    assert kept.question == DOG and not kept.accepted
    bot_posts = len(_bot_messages(slack_bot, "C0IT", ts))
    assert bot_posts == before + 1  # the bot answered the colleague, never the expert

    # A reviewer sees it in App Home > Gaps with an accept button; the question's group is there too.
    _click_home(slack_bot, ADMIN, "home_filter:gaps", "gaps")
    view = _home(slack_bot, ADMIN, 1)
    body = json.dumps(view, ensure_ascii=False)
    assert "Knowledge gaps" in body and DOG in body and "Dogs are welcome" in body and len(view["blocks"]) <= 100
    button = next(b["accessory"] for b in view["blocks"] if b.get("accessory", {}).get("action_id") == ACCEPT_ACTION)
    assert button["value"] == str(kept.id)
    assert f"<@{EMPLOYEE}>" in body  # an admin sees who asked

    _click_home(slack_bot, ADMIN, ACCEPT_ACTION, button["value"])
    accepted_view = json.dumps(_home(slack_bot, ADMIN, 2), ensure_ascii=False)
    assert f"accepted by <@{ADMIN}>" in accepted_view
    assert replies.get(kept.id).accepted_by == ADMIN and replies.pending() == []

    # A support member who is a reviewer but not an admin sees the gaps without the askers' names.
    _click_home(slack_bot, EXPERT, "home_filter:gaps", "gaps")
    expert_view = json.dumps(_home(slack_bot, EXPERT, 1), ensure_ascii=False)
    assert DOG in expert_view and f"<@{EMPLOYEE}>" not in expert_view

    # Someone who is neither cannot accept: the click changes nothing and they get their own home.
    _click_home(slack_bot, "U0STRANGER", ACCEPT_ACTION, button["value"])
    assert "Knowledge gaps" not in json.dumps(_home(slack_bot, "U0STRANGER", 1), ensure_ascii=False)


def test_the_thumbs_down_modal_records_the_kind(slack_bot: BotUnderTest) -> None:
    ts, answer, answer_id = _ask(slack_bot, "How many vacation days can I carry over?")
    slack_bot.click("feedback_down", str(answer_id), user=EMPLOYEE, channel="C0IT", message_ts=answer["ts"],
                    thread_ts=ts)
    [opened] = slack_bot.fake.wait_for(lambda _: slack_bot.fake.calls_to("views.open"))
    modal = opened.params["view"]
    kinds = next(b for b in modal["blocks"] if b.get("block_id") == "kind")["element"]["options"]
    assert {o["value"] for o in kinds} >= {"wrong", "outdated"}
    slack_bot.interaction({
        "type": "view_submission", "user": {"id": EMPLOYEE, "username": "employee", "team_id": "T0KBBOT"},
        "trigger_id": "1.2.trigger",
        "view": {**modal, "id": "V0MODAL", "team_id": "T0KBBOT", "state": {"values": {
            "kind": {"kind_input": {"type": "radio_buttons", "selected_option": kinds[1]}},
            "reason": {"reason_input": {"type": "plain_text_input", "value": None}}}}},
    })

    def stored(_calls: object) -> object:
        with slack_bot.db.engine.connect() as conn:
            return conn.execute(text("SELECT category FROM feedback WHERE answer_id = :a AND category IS NOT NULL"),
                                {"a": answer_id}).scalar()

    assert slack_bot.fake.wait_for(stored) == "outdated"


def test_the_weekly_digest_is_posted_once_per_slot(fake_slack, demo_database, embedder, tmp_path) -> None:  # type: ignore[no-untyped-def]
    bot = start_bot(fake_slack, demo_database, embedder, tmp_path, gaps_digest_channel="C0KBOWNERS")
    try:
        _ask(bot, DOG, user="U0A")
        _ask(bot, PETS, user="U0B")
        _, answer, answer_id = _ask(bot, "How many vacation days can I carry over?")
        bot.click("feedback_down", str(answer_id), user=EMPLOYEE, channel="C0IT", message_ts=answer["ts"],
                  thread_ts=None)
        bot.fake.wait_for(lambda _: bot.services.answer_log().get(answer_id).thumbs[1])
        bot.services.answer_log().record_feedback(answer_id, EMPLOYEE, "down", "The carry-over cap changed",
                                                  "outdated")
        client = _client(bot)
        digest_parts = GapsParts.of(bot.services, bot.parts.home.readers)
        schedule = bot.settings.scheduler

        def digest_now() -> str:
            return post_digest(digest_parts, client, channel=schedule.gaps_digest_channel,
                               days=schedule.gaps_digest_days, slot="2026-12-07T09:00:00+00:00")

        outcome = digest_now()
        assert outcome.startswith("posted to C0KBOWNERS"), outcome
        [post] = [c for c in bot.fake.calls_to("chat.postMessage") if c.params["channel"] == "C0KBOWNERS"]
        digest = json.dumps(post.params["blocks"], ensure_ascii=False)
        assert "Knowledge gaps" in digest and "Articles to review" in digest and "1 × outdated" in digest
        assert (DOG in digest or PETS in digest) and "2 people" in digest
        assert "U0A" not in digest and EMPLOYEE not in digest  # no askers in a channel
        assert len(post.params["blocks"]) <= 50 and "questions without a good answer" in post.params["text"]
        # A second worker firing for the same slot posts nothing.
        assert "already posted" in digest_now()
        assert len([c for c in bot.fake.calls_to("chat.postMessage") if c.params["channel"] == "C0KBOWNERS"]) == 1
    finally:
        stop_bot(bot)


def _client(bot: BotUnderTest):  # type: ignore[no-untyped-def]
    from bot.app import create_web_client

    return create_web_client(bot.settings.slack)


def test_kbbot_gaps_json_csv_and_text(slack_bot: BotUnderTest, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    _ask(slack_bot, DOG, user="U0A")
    _ask(slack_bot, PETS, user="U0B")
    monkeypatch.setenv("DATABASE_URL", slack_bot.db.engine.url.render_as_string(hide_password=False))
    runner = CliRunner()
    result = runner.invoke(main, ["gaps", "--since", "7d", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["schema_version"] == 1 and doc["gap_questions"] == 2 and not doc["truncated"]
    [group] = [g for g in doc["groups"] if g["asked"] == 2]
    assert group["people"] == 2 and group["abstained"] == 2 and group["nearest"]
    assert "asker" not in group["questions"][0]  # askers only with --askers
    with_askers = json.loads(runner.invoke(main, ["gaps", "--json", "--askers"]).stdout)
    assert {q["asker"] for g in with_askers["groups"] for q in g["questions"]} == {"U0A", "U0B"}

    table = list(csv.DictReader(io.StringIO(runner.invoke(main, ["gaps", "--format", "csv"]).stdout)))
    assert table[0]["asked"] == "2" and table[0]["askers"] == ""
    plain = runner.invoke(main, ["gaps"])
    assert plain.exit_code == 0 and "2 questions without a good answer" in plain.stdout
    assert runner.invoke(main, ["gaps", "--since", "yesterday-ish"]).exit_code == 2
