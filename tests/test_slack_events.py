"""The Bolt app over real HTTP: signature checks, answering mentions, DMs, the messages tab and thread
follow-ups, Slack retries, rate limits, oversized messages and a database outage."""

from __future__ import annotations

import time
from collections.abc import Callable

import psycopg
from sqlalchemy import text

from tests.fakes.slack_api import BOT_USER_ID, SlackReply
from tests.slack_fixtures import *  # noqa: F403 - the fixtures
from tests.slack_fixtures import EMPLOYEE, BotUnderTest, start_bot, stop_bot

VPN = "How do I connect to the VPN when I'm working from home?"


def _answers(bot: BotUnderTest) -> list[dict]:
    with bot.db.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(text("SELECT * FROM answers ORDER BY id"))]


def _wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def _all_text(message: dict) -> str:
    parts = [message.get("text", "")]
    for block in message.get("blocks", []):
        parts.append(block.get("text", {}).get("text", ""))
        parts += [e.get("text", "") for e in block.get("elements", []) if isinstance(e.get("text"), str)]
    return "\n".join(parts)


def test_bad_signature_and_stale_timestamp_are_rejected(slack_bot: BotUnderTest) -> None:
    forged = slack_bot.mention(VPN, secret="not-the-signing-secret")[1]
    stale = slack_bot.mention(VPN, timestamp=int(time.time()) - 10 * 60)[1]
    assert forged.status == 401
    assert stale.status == 401
    # A control: a signed mention after them is answered, so the bot was up and the two were refused.
    ts, _ = slack_bot.mention("How do I reset my password?", channel="C0IT")
    slack_bot.final_answer("C0IT", ts)
    assert {c.params["channel"] for c in slack_bot.fake.calls_to("chat.postMessage")} == {"C0IT"}
    assert [r["channel"] for r in _answers(slack_bot)] == ["C0IT"]


def test_mention_gets_a_threaded_answer_with_sources(slack_bot: BotUnderTest) -> None:
    ts, response = slack_bot.mention(VPN, channel="C0IT")
    assert response.status == 200
    [answer] = slack_bot.final_answer("C0IT", ts)
    assert answer["thread_ts"] == ts
    # The placeholder came first, in the thread, and was replaced by the answer.
    first = slack_bot.fake.calls_to("chat.postMessage")[0]
    assert first.params["thread_ts"] == ts and "Searching the knowledge base" in first.params["text"]
    assert slack_bot.fake.calls_to("chat.update")[0].params["ts"] == answer["ts"]
    body = _all_text(answer)
    assert "*Sources*" in body and "VPN" in body
    assert "<https://" in body or "[1]" in body
    actions = next(b for b in answer["blocks"] if b["type"] == "actions")
    assert {e["action_id"] for e in actions["elements"]} == {"feedback_up", "feedback_down", "ask_human"}
    [row] = _answers(slack_bot)
    assert row["outcome"] == "answered" and row["channel"] == "C0IT" and row["thread_ts"] == ts
    assert row["asker"] == EMPLOYEE and row["message_ts"] == answer["ts"] and row["question"] == VPN
    assert {"retrieve", "total", "slack_first_visible", "slack_delivered"} <= set(row["latency_ms"])
    with slack_bot.db.engine.connect() as conn:
        cited = conn.execute(text("SELECT title, article_id, score FROM answer_citations WHERE answer_id = :id"),
                             {"id": row["id"]}).all()
    assert cited and all(c.article_id is not None and c.score is not None for c in cited)


def test_direct_message_is_answered_in_its_thread(slack_bot: BotUnderTest) -> None:
    ts, response = slack_bot.message("How many PTO days can I carry over to next year?", channel="D0EMPLOYEE",
                                     channel_type="im")
    assert response.status == 200
    [answer] = slack_bot.final_answer("D0EMPLOYEE", ts)
    assert answer["thread_ts"] == ts
    assert "Sources" in _all_text(answer)
    [row] = _answers(slack_bot)
    assert row["channel_kind"] == "im" and row["outcome"] == "answered"


def test_messages_tab_shows_prompts_and_a_status_then_answers(slack_bot: BotUnderTest) -> None:
    fake = slack_bot.fake
    thread_ts = fake.new_ts()
    fake.add_message("D0EMPLOYEE", BOT_USER_ID, "", ts=thread_ts, bot_id="BKBBOT")
    started = slack_bot.event({
        "type": "assistant_thread_started",
        "assistant_thread": {"user_id": EMPLOYEE, "context": {"channel_id": "C0GENERAL", "team_id": "T0KBBOT",
                                                               "enterprise_id": None},
                             "channel_id": "D0EMPLOYEE", "thread_ts": thread_ts},
        "event_ts": thread_ts,
    })
    assert started.status == 200
    prompts = fake.wait_for(lambda _: fake.calls_to("assistant.threads.setSuggestedPrompts"))[0]
    assert prompts.params["thread_ts"] == thread_ts and len(prompts.params["prompts"]) >= 2

    # An explicit question: the vaguer "a weird email asking for my password" is answered only unsure
    # (tests/test_demo_answers.py), which is not what this test is about.
    _ts, _ = slack_bot.message("I got a phishing email asking for my password, what should I do?",
                              channel="D0EMPLOYEE", channel_type="im", thread_ts=thread_ts)
    answers = slack_bot.final_answer("D0EMPLOYEE", thread_ts, count=2)  # the greeting, then the answer
    status = fake.calls_to("assistant.threads.setStatus")[0]
    assert status.params["status"] == "Searching the knowledge base…" and status.params["thread_ts"] == thread_ts
    assert status.at < fake.calls_to("chat.postMessage")[-1].at
    assert "Sources" in _all_text(answers[-1])
    assert _answers(slack_bot)[0]["channel_kind"] == "assistant"


def test_thread_follow_up_is_answered_without_a_retag(slack_bot: BotUnderTest) -> None:
    ts, _ = slack_bot.mention(VPN, channel="C0IT")
    slack_bot.final_answer("C0IT", ts)
    _follow_up, _ = slack_bot.message("and what if it keeps disconnecting?", channel="C0IT", thread_ts=ts)
    answers = slack_bot.final_answer("C0IT", ts, count=2)
    assert len(answers) == 2
    rows = _answers(slack_bot)
    assert [r["thread_ts"] for r in rows] == [ts, ts]
    assert rows[1]["question"] == "and what if it keeps disconnecting?"
    # The thread was read for context, and the follow-up was made standalone from it.
    assert slack_bot.fake.calls_to("conversations.replies")
    assert rows[1]["rewritten_question"] and "VPN" in rows[1]["rewritten_question"]


def test_replies_in_other_threads_edits_and_bots_are_ignored(slack_bot: BotUnderTest) -> None:
    fake = slack_bot.fake
    root = fake.add_message("C0RANDOM", "U0OTHER", "lunch?")["ts"]
    slack_bot.message("pizza", channel="C0RANDOM", thread_ts=root)  # a thread the bot never joined
    slack_bot.message("How do I reset my password?", channel="C0RANDOM")  # top-level chatter, no mention
    slack_bot.event({"type": "message", "subtype": "bot_message", "bot_id": "B0OTHER", "text": "beep",
                     "ts": fake.new_ts(), "channel": "C0RANDOM", "channel_type": "channel", "thread_ts": root})
    slack_bot.event({"type": "message", "subtype": "message_changed", "channel": "C0RANDOM", "channel_type": "im",
                     "hidden": True, "ts": fake.new_ts(),
                     "message": {"type": "message", "user": EMPLOYEE, "text": "edited", "ts": root},
                     "previous_message": {"type": "message", "user": EMPLOYEE, "text": "lunch?", "ts": root}})
    # The bot's own message in a DM: Slack echoes it back as an event.
    slack_bot.event({"type": "message", "user": BOT_USER_ID, "bot_id": "BKBBOT", "text": "an answer",
                     "ts": fake.new_ts(), "channel": "D0EMPLOYEE", "channel_type": "im"})
    # A control: a real DM after them is answered, so the ones before had their chance.
    ts, _ = slack_bot.message("How do I reset my password?", channel="D0EMPLOYEE", channel_type="im")
    slack_bot.final_answer("D0EMPLOYEE", ts)
    assert [r["channel"] for r in _answers(slack_bot)] == ["D0EMPLOYEE"]
    assert all(c.params.get("channel") != "C0RANDOM" for c in fake.calls_to("chat.postMessage"))


def test_a_retried_event_is_answered_once(slack_bot: BotUnderTest) -> None:
    fake = slack_bot.fake
    message = fake.add_message("C0IT", EMPLOYEE, f"<@{BOT_USER_ID}> {VPN}")
    event = {"type": "app_mention", "user": EMPLOYEE, "text": message["text"], "ts": message["ts"],
             "channel": "C0IT", "team": "T0KBBOT"}
    first = slack_bot.event(event, event_id="Ev0RETRIED")
    retries = [slack_bot.event(event, event_id="Ev0RETRIED", retry_num=n) for n in (1, 2, 3)]
    assert {r.status for r in [first, *retries]} == {200}
    slack_bot.final_answer("C0IT", message["ts"])
    _wait_until(lambda: slack_bot.parts.responder.deduper.dropped == 3)  # each retry reached the deduper
    slack_bot.parts.responder.wait_idle(30)
    assert len(_answers(slack_bot)) == 1
    assert len([c for c in fake.calls_to("chat.postMessage") if c.params.get("thread_ts") == message["ts"]]) == 1


def test_a_retry_reaching_another_replica_is_answered_once(slack_bot: BotUnderTest, tmp_path) -> None:  # type: ignore[no-untyped-def]
    other = start_bot(slack_bot.fake, slack_bot.db, slack_bot.services.embedder, tmp_path / "replica2")
    try:
        message = slack_bot.fake.add_message("C0IT", EMPLOYEE, f"<@{BOT_USER_ID}> {VPN}")
        event = {"type": "app_mention", "user": EMPLOYEE, "text": message["text"], "ts": message["ts"],
                 "channel": "C0IT", "team": "T0KBBOT"}
        slack_bot.event(event, event_id="Ev0TWOREPLICAS")
        other.event(event, event_id="Ev0TWOREPLICAS", retry_num=1)
        slack_bot.final_answer("C0IT", message["ts"])
        other.parts.responder.wait_idle(30)
        assert len(_answers(slack_bot)) == 1
    finally:
        stop_bot(other)


def test_rate_limited_calls_are_retried_after_retry_after(slack_bot: BotUnderTest) -> None:
    fake = slack_bot.fake
    fake.script("chat.postMessage", SlackReply.rate_limited(retry_after=1))
    ts, _ = slack_bot.mention(VPN, channel="C0IT")
    [answer] = slack_bot.final_answer("C0IT", ts)
    posts = fake.calls_to("chat.postMessage")
    assert len(posts) == 2  # the placeholder: refused with 429 once, then sent again
    assert posts[1].at - posts[0].at >= 0.9  # waited for Retry-After
    assert "Sources" in _all_text(answer)


def test_an_answer_slack_rejects_as_too_long_still_reaches_the_asker(slack_bot: BotUnderTest) -> None:
    fake = slack_bot.fake
    fake.script("chat.update", SlackReply.error("msg_too_long"))
    ts, _ = slack_bot.mention(VPN, channel="C0IT")
    [answer] = slack_bot.final_answer("C0IT", ts)
    updates = fake.calls_to("chat.update")
    assert len(updates) == 2 and updates[0].params.get("blocks") and not updates[1].params.get("blocks")
    assert "Sources" in answer["text"] and "VPN" in answer["text"]
    assert _answers(slack_bot)[0]["outcome"] == "answered"


def test_no_good_answer_is_said_plainly_with_nearest_articles(slack_bot: BotUnderTest) -> None:
    ts, _ = slack_bot.mention("does the company offer pet insurance?", channel="C0IT")
    [answer] = slack_bot.final_answer("C0IT", ts)
    body = _all_text(answer)
    assert "couldn't find an answer" in body and "Closest articles" in body and "insurance" in body.lower()
    actions = next(b for b in answer["blocks"] if b["type"] == "actions")
    assert "ask_human" in {e["action_id"] for e in actions["elements"]}
    assert _answers(slack_bot)[0]["outcome"] == "abstained"


def test_an_unrelated_question_is_refused_without_unrelated_articles(slack_bot: BotUnderTest) -> None:
    ts, _ = slack_bot.mention("What is the capital of Peru?", channel="C0IT")
    [answer] = slack_bot.final_answer("C0IT", ts)
    body = _all_text(answer)
    assert "The knowledge base has nothing on that" in body and "Closest articles" not in body
    actions = next(b for b in answer["blocks"] if b["type"] == "actions")
    assert "ask_human" in {e["action_id"] for e in actions["elements"]}  # a human may still know
    assert _answers(slack_bot)[0]["outcome"] == "abstained"


def test_a_bare_mention_gets_help_not_an_error(slack_bot: BotUnderTest) -> None:
    ts, _ = slack_bot.mention("", channel="C0IT")
    [answer] = slack_bot.final_answer("C0IT", ts)
    assert "Ask me a question" in answer["text"]
    assert _answers(slack_bot) == []


def _set_connections(bot: BotUnderTest, allowed: bool) -> None:
    url = bot.db.engine.url
    name = url.database
    admin = url.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS {"true" if allowed else "false"}')
        if not allowed:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))


def test_database_down_the_asker_gets_an_error_and_the_bot_recovers(slack_bot: BotUnderTest) -> None:
    ts, _ = slack_bot.mention(VPN, channel="C0IT")
    slack_bot.final_answer("C0IT", ts)
    _set_connections(slack_bot, allowed=False)
    try:
        down_ts, response = slack_bot.mention("How do I reset my password?", channel="C0IT", event_id="Ev0OUTAGE")
        assert response.status == 200
        [reply] = slack_bot.final_answer("C0IT", down_ts)
        assert "knowledge base is unreachable" in reply["text"] and "error id" in reply["text"]
        # Slack's retry during the outage: the claim falls back to the process's memory, still one reply.
        retry = {"type": "app_mention", "user": EMPLOYEE, "text": f"<@{BOT_USER_ID}> How do I reset my password?",
                 "ts": down_ts, "channel": "C0IT", "team": "T0KBBOT"}
        assert slack_bot.event(retry, event_id="Ev0OUTAGE", retry_num=1).status == 200
        # Still serving: the health check and Slack's requests are answered while the database is down.
        assert slack_bot.mention("", channel="C0IT")[1].status == 200
    finally:
        _set_connections(slack_bot, allowed=True)
    back_ts, _ = slack_bot.mention("How do I reset my password?", channel="C0IT")
    [answer] = slack_bot.final_answer("C0IT", back_ts)
    assert len([m for m in slack_bot.fake.thread("C0IT", down_ts) if m.get("user") == BOT_USER_ID]) == 1
    assert "Sources" in _all_text(answer)
    rows = _answers(slack_bot)
    assert [r["outcome"] for r in rows] == ["answered", "answered"]  # the outage itself could not be logged


def test_streamed_llm_answer_uses_the_chat_streaming_api(fake_slack, demo_database, embedder, tmp_path,  # type: ignore[no-untyped-def]
                                                         fake_openai) -> None:
    fake_openai.chat_responder = lambda messages, model: (
        "Open the VPN client, choose the Remote profile and sign in with your SSO account; approve the MFA "
        "prompt on your phone [1]. If the connection drops, reconnect from the same profile [1]. " * 3)
    bot = start_bot(fake_slack, demo_database, embedder, tmp_path, openai_base_url=fake_openai.url + "/v1",
                    openai_api_key="sk-test", llm_model="gpt-4o-mini")
    try:
        ts, _ = bot.mention(VPN, channel="C0IT")
        [answer] = bot.final_answer("C0IT", ts)
        starts = fake_slack.calls_to("chat.startStream")
        assert starts and starts[0].params["thread_ts"] == ts
        assert starts[0].params["recipient_user_id"] == EMPLOYEE
        stop = fake_slack.calls_to("chat.stopStream")[0]
        assert any(b["type"] == "actions" for b in stop.params["blocks"])
        assert "Open the VPN client" in answer["text"]
        assert all("Searching" not in m.get("text", "") for m in fake_slack.thread("C0IT", ts))  # placeholder gone
        [row] = _answers(bot)
        assert row["model"] == "gpt-4o-mini" and row["message_ts"] == answer["ts"]
    finally:
        stop_bot(bot)


def test_a_streamed_draft_the_answerer_withdraws_is_replaced_by_the_final_answer(  # type: ignore[no-untyped-def]
        fake_slack, demo_database, embedder, tmp_path, fake_openai) -> None:
    # The model writes without citing anything; with KBBOT_LLM_UNCITED=abstain the answer is withheld
    # after it streamed, and the message must end up saying so, not show the uncited draft.
    fake_openai.chat_responder = lambda messages, model: "I think you should just restart everything. " * 12
    bot = start_bot(fake_slack, demo_database, embedder, tmp_path, openai_base_url=fake_openai.url + "/v1",
                    openai_api_key="sk-test", llm_uncited="abstain")
    try:
        ts, _ = bot.mention(VPN, channel="C0IT")
        [answer] = bot.final_answer("C0IT", ts)
        bot.parts.responder.wait_idle(30)
        assert fake_slack.calls_to("chat.startStream")
        replaced = fake_slack.calls_to("chat.update")[-1]
        assert replaced.params["ts"] == answer["ts"]
        final_text = _all_text(fake_slack.thread("C0IT", ts)[-1])
        assert "restart everything" not in final_text and "Closest articles" in final_text
        assert _answers(bot)[0]["outcome"] == "abstained"
    finally:
        stop_bot(bot)


def test_a_channel_profile_chooses_the_tone_model_and_a_contradicting_tone_list_is_named_once(  # type: ignore[no-untyped-def]
        fake_slack, demo_database, embedder, tmp_path, fake_openai, caplog) -> None:
    tone = "ft:gpt-4o-mini-2024-07-18:northwind:support-tone:abc123"
    fake_openai.models.add(tone)
    fake_openai.chat_responder = lambda messages, model: "Open the VPN client and sign in with SSO [1]."
    profiles = tmp_path / "channels.yml"
    profiles.write_text("channels:\n  - channel: C0LEGAL\n    tone: false\n  - name: support-*\n    tone: true\n",
                        encoding="utf-8")
    fake_slack.channels["C0SUP"] = {"name": "support-eu"}
    with caplog.at_level("WARNING", logger="bot.app"):
        bot = start_bot(fake_slack, demo_database, embedder, tmp_path, openai_base_url=fake_openai.url + "/v1",
                        openai_api_key="sk-test", llm_model="gpt-4o-mini", tone_model=tone,
                        tone_routing="channels", tone_channels=["C0LEGAL", "C0IT"], channel_profiles_file=profiles)
    try:
        [warning] = [r.getMessage() for r in caplog.records if "KBBOT_TONE_CHANNELS" in r.getMessage()]
        assert "C0LEGAL (profile " in warning and "The profile wins" in warning
        for channel in ("C0LEGAL", "C0SUP", "C0IT", "C0OTHER"):
            ts, _ = bot.mention(VPN, channel=channel)
            bot.final_answer(channel, ts)
        bot.parts.responder.wait_idle(30)
        models = {row["channel"]: row["model"] for row in _answers(bot)}
        # The profiles decide their channels; the list is the fallback for the others.
        assert models == {"C0LEGAL": "gpt-4o-mini", "C0SUP": tone, "C0IT": tone, "C0OTHER": "gpt-4o-mini"}
    finally:
        stop_bot(bot)
