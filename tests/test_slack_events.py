"""The Bolt app over real HTTP: signature checks, answering mentions, DMs, the messages tab and thread
follow-ups, Slack retries, rate limits, oversized messages and a database outage."""

from __future__ import annotations

import time

from sqlalchemy import text

from tests.slack_fixtures import *  # noqa: F403
from tests.slack_fixtures import EMPLOYEE, BotUnderTest

VPN = "How do I connect to the VPN when I'm working from home?"


def _answers(bot: BotUnderTest) -> list[dict]:
    with bot.db.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(text("SELECT * FROM answers ORDER BY id"))]


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
    time.sleep(0.5)  # give a wrongly accepted request the time to reach the Web API
    assert slack_bot.fake.calls_to("chat.postMessage") == []
    assert _answers(slack_bot) == []


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
