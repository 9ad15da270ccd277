"""Who reads an answer, through the real Bolt app over HTTP and the fake Slack Web API (users.info,
usergroups.users.list, conversations.info/members): for each reader (member, group member, guest, external
user, Slack failing) and place (internal channel, channel with a profile, shared channel, DM, messages tab,
a private reply and its "Share in channel" button), an HR-only article is cited exactly when every reader of
the answer may see it, and otherwise its title, URL and text are in no call the fake received."""


from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from retrieval.db import Database
from retrieval.sources import FilesystemSource
from retrieval.sync import Indexer
from tests.fakes.slack_api import BOT_USER_ID, FakeSlack, SlackReply
from tests.slack_fixtures import *  # noqa: F403
from tests.slack_fixtures import BotUnderTest, start_bot, stop_bot

SECRET_TITLE = "Salary bands (confidential)"
SECRET_URL = "https://wiki.example/hr/salary-bands"
SECRET_MARKERS = (SECRET_TITLE, SECRET_URL, "Mirelta", "97,000", "salary-bands")
QUESTION = "How much does salary band Q7 pay per year?"
HR_GROUP = "S0HR"
READERS = {
    "member": ("U0MEMBER", {}),
    "group member": ("U0HRPERSON", {}),
    "guest": ("U0GUEST", {"is_restricted": True}),
    "single-channel guest": ("U0SCGUEST", {"is_ultra_restricted": True}),
    "external user": ("U0EXT", {"team_id": "T0OTHER", "is_stranger": True}),
}


PRIVATE, HR_PRIVATE = "C0PRIVATE", "C0HRPRIVATE"
PROFILES = f"""\
channels:
  - channel: C0HRTEAM
    audience: [{HR_GROUP}]
  - name: "hr-team-*"
    audience: [{HR_GROUP}]
  - channel: {PRIVATE}
    reply_privately: true
  - channel: {HR_PRIVATE}
    audience: [{HR_GROUP}]
    reply_privately: true
"""


@pytest.fixture
def restricted_db(demo_database: Database, embedder, tmp_path: Path) -> Database:  # type: ignore[no-untyped-def]
    kb = tmp_path / "hr-only"
    kb.mkdir()
    (kb / "salary-bands.md").write_text(
        f"---\ntitle: {SECRET_TITLE}\nurl: {SECRET_URL}\naudience: [{HR_GROUP}]\n---\n# Salary band Q7\n\n"
        "Salary band Q7 pays between 91,000 and 97,000 per year, as set by the Mirelta compensation committee.\n",
        encoding="utf-8")
    (kb / "guest-wifi.md").write_text(
        "---\ntitle: Guest wifi\naudience: public\n---\n# Guest wifi\n\nVisitors join the Northwind-Guest "
        "network; the password is on the reception desk.\n", encoding="utf-8")
    run = Indexer(demo_database, embedder, chunk_max_tokens=200).sync([FilesystemSource("hr-only", kb)])
    assert run.failed == 0
    return demo_database


@pytest.fixture
def access_bot(fake_slack: FakeSlack, restricted_db: Database, embedder, tmp_path: Path):  # type: ignore[no-untyped-def]
    profiles = tmp_path / "channels.yml"
    profiles.write_text(PROFILES, encoding="utf-8")
    for user, flags in READERS.values():
        fake_slack.users[user] = flags
    fake_slack.usergroups[HR_GROUP] = ["U0HRPERSON", "U0HRLEAD"]
    bot = start_bot(fake_slack, restricted_db, embedder, tmp_path, channel_profiles_file=profiles)
    yield bot
    stop_bot(bot)


def ask(bot: BotUnderTest, place: str, user: str) -> str:
    """Ask QUESTION as `user` at `place`; the bot's final message text (with its blocks)."""
    fake = bot.fake
    if place in ("internal channel", "profiled channel", "shared channel"):
        # One channel per reader: the member list of each is read once (Slack's is cached for a minute).
        channel = {"internal channel": "C0INTERNAL", "profiled channel": f"C0HRT{user[2:]}",
                   "shared channel": "C0SHARED"}[place]
        if place == "profiled channel":
            fake.channels[channel] = {"name": f"hr-team-{user[2:].lower()}"}
        fake.members[channel] = [user, "U0HRLEAD"]
        if place == "shared channel":
            fake.channels[channel] = {"is_shared": True, "is_ext_shared": True}
        ts, _ = bot.mention(QUESTION, user=user, channel=channel)
        return _text(bot.final_answer(channel, ts)[-1])
    channel = f"D0{user[2:]}"
    if place == "DM":
        ts, _ = bot.message(QUESTION, user=user, channel=channel, channel_type="im")
        return _text(bot.final_answer(channel, ts)[-1])
    thread_ts = fake.new_ts()
    fake.add_message(channel, BOT_USER_ID, "Hi!", ts=thread_ts, bot_id="BKBBOT")
    bot.message(QUESTION, user=user, channel=channel, channel_type="im", thread_ts=thread_ts)
    return _text(bot.final_answer(channel, thread_ts, count=2)[-1])


def _text(message: dict[str, Any]) -> str:
    return message.get("text", "") + json.dumps(message.get("blocks") or [])


def leaked(fake: FakeSlack, *, except_private_to: str | None = None) -> list[str]:
    """Restricted markers found in any call the fake received (all parameters, blocks included) and any
    post to a response_url; `except_private_to`: leaving out the ephemeral messages to that user."""
    calls = [c.params for c in fake.calls
             if not (c.method == "chat.postEphemeral" and c.params.get("user") == except_private_to)]
    sent = json.dumps([calls, fake.responses])
    return [m for m in SECRET_MARKERS if m in sent]


def ask_privately(bot: BotUnderTest, user: str, channel: str = PRIVATE, question: str = QUESTION) -> dict[str, Any]:
    """Ask in a channel whose profile replies privately; the ephemeral answer `user` got."""
    ts, _ = bot.mention(question, user=user, channel=channel)
    message = bot.fake.wait_for_ephemeral(user, lambda m: m["channel"] == channel and m["thread_ts"] == ts
                                          and "Searching the knowledge base" not in m["text"])
    bot.parts.responder.wait_idle(30)
    return message


def share_value(message: dict[str, Any]) -> str | None:
    """The Share in channel button's value (the answer id), if the message has one."""
    return next((e["value"] for b in message["blocks"] if b["type"] == "actions" for e in b["elements"]
                 if e["action_id"] == "share_answer"), None)


def share(bot: BotUnderTest, message: dict[str, Any]) -> dict[str, Any]:
    """Click Share in channel on a private answer; what the click's response_url was sent."""
    key = bot.click_ephemeral("share_answer", str(share_value(message)), message=message)
    return bot.fake.wait_for_response(key)[-1]


def channel_posts(fake: FakeSlack, channel: str) -> str:
    return json.dumps([c.params for c in fake.calls if c.method == "chat.postMessage"
                       and c.params.get("channel") == channel])


# (place, reader) -> may the answer cite the HR article? Only when every reader may see it: the profiled
# channel is declared HR's, and answers from HR articles only while every member is in the group.
CITED = {("profiled channel", "group member"), ("DM", "group member"), ("messages tab", "group member")}
PLACES = ("internal channel", "profiled channel", "shared channel", "DM", "messages tab")


@pytest.mark.parametrize("place", PLACES)
def test_restricted_content_reaches_exactly_the_readers_who_may_see_it(access_bot: BotUnderTest, place: str) -> None:
    fake = access_bot.fake
    for reader, (user, _flags) in READERS.items():
        before = len(fake.calls)
        text = ask(access_bot, place, user)
        if (place, reader) in CITED:
            assert SECRET_TITLE in text and SECRET_URL in text, (place, reader)
        else:
            new = json.dumps([c.params for c in fake.calls[before:]])
            assert not [m for m in SECRET_MARKERS if m in new], (place, reader, text)
    if not any(p == place for p, _ in CITED):
        assert leaked(fake) == []


@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("failing", ["users.info", "conversations.info", "usergroups.users.list"])
def test_when_slack_cannot_say_who_reads_the_answer_uses_public_articles_and_says_so(
        fake_slack: FakeSlack, restricted_db: Database, embedder, tmp_path: Path, place: str, failing: str) -> None:  # type: ignore[no-untyped-def]
    fake_slack.usergroups[HR_GROUP] = ["U0HRPERSON"]
    fake_slack.script(failing, *[SlackReply.error("internal_error")] * 20)
    bot = start_bot(fake_slack, restricted_db, embedder, tmp_path)
    try:
        text = ask(bot, place, "U0HRPERSON")
    finally:
        stop_bot(bot)
    if fake_slack.calls_to(failing):  # the place needed that call: public only, and said so
        assert leaked(fake_slack) == []
        assert "answered from public articles only" in text
    elif place == "shared channel":  # public whatever its members: nothing else was asked
        assert leaked(fake_slack) == []
    else:  # a DM's reader is known without the channel's settings: the group member gets the HR article
        assert (place, failing) in {("DM", "conversations.info"), ("messages tab", "conversations.info")}
        assert SECRET_TITLE in text


def test_public_content_still_answers_guests_in_a_shared_channel(access_bot: BotUnderTest) -> None:
    fake = access_bot.fake
    fake.channels["C0SHARED"] = {"is_shared": True, "is_ext_shared": True}
    ts, _ = access_bot.mention("What is the guest wifi network called?", user="U0EXT", channel="C0SHARED")
    text = _text(access_bot.final_answer("C0SHARED", ts)[-1])
    assert "Guest wifi" in text and "Northwind-Guest" in text


def test_admins_check_a_readers_view_from_the_command_line(fake_slack: FakeSlack, restricted_db: Database,
                                                           tmp_path: Path) -> None:
    from click.testing import CliRunner

    from bot.cli import main

    fake_slack.users.update({"U0HRPERSON": {}, "U0GUEST": {"is_restricted": True}})
    fake_slack.usergroups[HR_GROUP] = ["U0HRPERSON"]
    fake_slack.channels["C0SHARED"] = {"is_shared": True, "is_ext_shared": True}
    env = {"DATABASE_URL": restricted_db.engine.url.render_as_string(hide_password=False),
           "KBBOT_DATA_DIR": str(tmp_path / "data"), "SLACK_BOT_TOKEN": "xoxb-test-token",
           "SLACK_API_URL": fake_slack.api_url, "HF_HUB_OFFLINE": "1"}
    runner = CliRunner()
    hr = runner.invoke(main, ["ask", QUESTION, "--as-user", "U0HRPERSON", "--json"], env=env)
    assert hr.exit_code == 0, hr.output
    assert SECRET_TITLE in json.dumps(json.loads(hr.output)["citations"])
    guest = runner.invoke(main, ["ask", QUESTION, "--as-user", "U0GUEST"], env=env)
    assert guest.exit_code == 0 and not [m for m in SECRET_MARKERS if m in guest.output]
    shared = runner.invoke(main, ["access", "--channel", "C0SHARED"], env=env)
    assert shared.exit_code == 0
    assert "public articles only (C0SHARED is shared with another organisation)" in shared.output
    assert "hr-only: 1 article readable, 1 not" in shared.output
    member = runner.invoke(main, ["access", "--user", "U0HRPERSON", "--json"], env=env)
    assert json.loads(member.output)["tokens"] == ["S0HR", "everyone", "public"]

    profiles = tmp_path / "channels.yml"
    profiles.write_text(PROFILES, encoding="utf-8")
    env["KBBOT_CHANNEL_PROFILES_FILE"] = str(profiles)
    fake_slack.users["U0MEMBER"] = {}
    fake_slack.members.update({"C0HRTEAM": ["U0HRPERSON", "U0MEMBER"], PRIVATE: ["U0HRPERSON", "U0MEMBER"]})
    hr_team = runner.invoke(main, ["access", "--channel", "C0HRTEAM"], env=env)
    assert "C0HRTEAM's profile names S0HR, but not every member is in it" in hr_team.output, hr_team.output
    private = runner.invoke(main, ["ask", QUESTION, "--as-user", "U0HRPERSON", "--channel", PRIVATE, "--json"],
                            env=env)  # a private reply: the asker's own view
    assert private.exit_code == 0 and SECRET_TITLE in json.dumps(json.loads(private.output)["citations"])
    described = runner.invoke(main, ["access", "--channel", PRIVATE], env=env)
    assert "replies privately (Share checks the whole channel)" in described.output


def test_private_replies_answer_the_asker_alone_and_share_only_what_the_whole_channel_may_read(
        access_bot: BotUnderTest) -> None:
    """The "ephemeral + share" place of the matrix: the private answer is read by the asker alone (their
    own scope, as in a DM); Share posts it in the thread only if every member may read its sources."""
    fake = access_bot.fake
    fake.members[PRIVATE] = [u for u, _ in READERS.values()] + ["U0HRLEAD"]  # guests too: they may ask
    for reader, (user, _flags) in READERS.items():
        before = len(fake.calls)
        private = ask_privately(access_bot, user)
        assert not [c for c in fake.calls[before:] if c.method in ("chat.postMessage", "chat.startStream")
                    and c.params.get("channel") == PRIVATE], reader  # nothing in the channel for everyone
        text = _text(private)
        if reader == "group member":
            assert SECRET_TITLE in text and SECRET_URL in text
            reply = share(access_bot, private)  # the channel has guests: public articles only
            assert re.match(r"I didn't share this answer: \d of the \d articles it cites may not", reply["text"])
            assert "public articles only" in reply["text"] and reply["replace_original"] is False
        else:
            assert not [m for m in SECRET_MARKERS if m in text], reader
            if share_value(private) is not None:  # answered from public articles: those may be shared
                assert share(access_bot, private)["text"] == "You shared this answer in the thread."
    assert leaked(fake, except_private_to="U0HRPERSON") == []
    assert SECRET_TITLE not in channel_posts(fake, PRIVATE)


def test_share_rechecks_who_reads_the_channel_at_the_click(access_bot: BotUnderTest) -> None:
    fake = access_bot.fake
    fake.members[HR_PRIVATE] = ["U0HRPERSON", "U0HRLEAD"]  # an HR channel: its profile says so
    first = ask_privately(access_bot, "U0HRPERSON", HR_PRIVATE)
    assert SECRET_TITLE in _text(first)
    reply = share(access_bot, first)
    assert reply == {"text": "You shared this answer in the thread.", "response_type": "ephemeral",
                     "replace_original": True}
    assert not [m for m in fake.ephemeral_for("U0HRPERSON", HR_PRIVATE) if SECRET_TITLE in _text(m)]
    shared = access_bot.fake.thread(HR_PRIVATE, first["thread_ts"])
    assert len(shared) == 2 and SECRET_TITLE in _text(shared[-1]) and "<@U0HRPERSON> shared" in _text(shared[-1])
    again = share(access_bot, first)
    assert again["text"] == "This answer is already in the thread."
    assert len(access_bot.fake.thread(HR_PRIVATE, first["thread_ts"])) == 2  # not posted twice

    # A guest joins after the answer was written (and within the member list's cache time): the click asks
    # Slack again, so the answer is not shared, and the guest never sees the title.
    second = ask_privately(access_bot, "U0HRPERSON", HR_PRIVATE)
    assert SECRET_TITLE in _text(second)
    fake.members[HR_PRIVATE].append("U0GUEST")
    before = len(fake.calls)
    reply = share(access_bot, second)
    assert re.match(r"I didn't share this answer: \d of the \d articles it cites may not be read by", reply["text"])
    assert "public articles only" in reply["text"] and not [m for m in SECRET_MARKERS if m in json.dumps(reply)]
    assert len(access_bot.fake.thread(HR_PRIVATE, second["thread_ts"])) == 1  # the question alone
    assert not [m for m in SECRET_MARKERS if m in json.dumps([c.params for c in fake.calls[before:]])]


@pytest.mark.parametrize("failing", ["conversations.info", "conversations.members", "users.info"])
def test_share_fails_closed_when_slack_cannot_say_who_reads_the_channel(
        access_bot: BotUnderTest, failing: str) -> None:
    fake = access_bot.fake
    fake.members[HR_PRIVATE] = ["U0HRPERSON", "U0HRLEAD"]
    private = ask_privately(access_bot, "U0HRPERSON", HR_PRIVATE)
    assert SECRET_TITLE in _text(private)
    fake.users["U0NEWCOMER"] = {}
    fake.members[HR_PRIVATE].append("U0NEWCOMER")  # someone not yet asked about: users.info is called
    fake.script(failing, *[SlackReply.error("internal_error")] * 5)
    reply = share(access_bot, private)
    assert reply["text"].startswith("I didn't share this answer")
    assert "I could not check with Slack who reads this channel now" in reply["text"]
    assert leaked(fake, except_private_to="U0HRPERSON") == []


def test_a_follow_up_leaves_out_earlier_answers_its_readers_may_no_longer_see(access_bot: BotUnderTest) -> None:
    """An HR channel's answer cites the HR article; then a guest joins. A follow-up in that thread is
    answered from public articles, and the earlier answer's text is not handed to the answerer."""
    fake = access_bot.fake
    fake.members["C0HRTEAM"] = ["U0HRPERSON", "U0HRLEAD"]
    ts, _ = access_bot.mention(QUESTION, user="U0HRPERSON", channel="C0HRTEAM")
    assert SECRET_TITLE in _text(access_bot.final_answer("C0HRTEAM", ts)[-1])
    pipeline = access_bot.parts.responder.pipeline()
    seen: list[Any] = []
    original = pipeline.stream

    def recording(question: str, context: Any = None) -> Any:
        seen.append(context)
        return original(question, context)

    pipeline.stream = recording  # type: ignore[method-assign]
    fake.members["C0HRTEAM"].append("U0GUEST")  # the guest asks: always checked, whatever the cached list says
    before = len(fake.calls)
    access_bot.message("and the upper bound of Q7?", user="U0GUEST", channel="C0HRTEAM", thread_ts=ts)
    reply = _text(access_bot.final_answer("C0HRTEAM", ts, count=2)[-1])
    assert seen and seen[-1].audience.tokens == {"public"}
    assert [t.role for t in seen[-1].history] == ["user"]  # the question only: the HR answer left out
    new = json.dumps([c.params for c in fake.calls[before:]])
    assert not [m for m in SECRET_MARKERS if m in new], reply


def test_reindex_status_names_an_article_only_to_its_audience_and_shows_admins_what_is_held_back(
        access_bot: BotUnderTest, embedder, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from retrieval.errors import EmbeddingError
    from tests.helpers import CountingEmbedder
    from tests.slack_fixtures import ADMIN

    class TimingOut(CountingEmbedder):
        """The embeddings endpoint times out on one article's passages (the rest embed)."""

        def embed_documents(self, texts):  # type: ignore[no-untyped-def]
            if any("Mirelta" in t for t in texts):
                raise EmbeddingError("the embeddings endpoint timed out")
            return super().embed_documents(texts)

    drafts = tmp_path / "hr-drafts"
    drafts.mkdir()
    (drafts / "salary-bands-draft.md").write_text(
        f"---\ntitle: {SECRET_TITLE} (draft)\naudience: [{HR_GROUP}]\n---\nThe Mirelta committee meets in May.\n",
        encoding="utf-8")  # its embedding fails: an error about an HR article
    (drafts / "salary-bands-old.md").write_text(f"---\ntitle: Old\naudience: [{HR_GROUP}]\n---\n",
                                                encoding="utf-8")  # unreadable (empty): its audience is unknown
    review = tmp_path / "hr-review"
    review.mkdir()
    (review / "pay-review.md").write_text("---\ntitle: Pay review\naudience: hr-team\n---\nThe review is in May.\n",
                                          encoding="utf-8")  # not an audience: held back
    indexer = Indexer(access_bot.db, embedder, chunk_max_tokens=200)
    assert indexer.sync([FilesystemSource("hr-review", review)]).failed == 0
    run = Indexer(access_bot.db, TimingOut(embedder), chunk_max_tokens=200).sync(
        [FilesystemSource("hr-drafts", drafts)])
    assert run.failed == 2 and sorted(e["audience"] for e in run.errors) == [[], [HR_GROUP]]
    fake = access_bot.fake
    fake.users[ADMIN] = {}

    def status(user: str) -> str:
        key = f"status-{user}"
        access_bot.command("status", user=user, response_key=key)
        return fake.wait_for_response(key)[-1]["text"]

    hr = status("U0HRPERSON")
    assert "salary-bands-draft.md" in hr and "timed out" in hr and "held back" not in hr
    assert "salary-bands-old" not in hr and "1 error is about articles you may not read" in hr  # unknown: nobody
    for user in ("U0MEMBER", "U0GUEST", ADMIN):
        text = status(user)
        assert "2 errors are about articles you may not read" in text, user
        assert not [m for m in SECRET_MARKERS if m in text], user
    admin = status(ADMIN)
    assert "1 articles are held back" in admin and "`hr-review`: 1 (its front matter" in admin
    assert "Pay review" not in admin  # counts and reasons, never which articles
    assert "held back" not in status("U0MEMBER")


def test_app_home_review_lists_only_answers_whose_articles_the_reviewer_may_read(
        access_bot: BotUnderTest, embedder, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from tests.slack_fixtures import ADMIN, SUPPORT_GROUP

    fake = access_bot.fake
    review = tmp_path / "hr-review"
    review.mkdir()
    (review / "pay-review.md").write_text("---\ntitle: Pay review\naudience: hr-team\n---\nThe review is in May.\n",
                                          encoding="utf-8")  # not an audience: held back
    Indexer(access_bot.db, embedder, chunk_max_tokens=200).sync([FilesystemSource("hr-review", review)])
    ask(access_bot, "DM", "U0HRPERSON")  # cites the HR article
    ask(access_bot, "DM", "U0MEMBER")  # cannot: answers without it (or abstains)
    fake.users[ADMIN] = {}
    fake.usergroups[SUPPORT_GROUP] = ["U0HRLEAD"]  # a reviewer who is in HR

    def home(user: str) -> str:
        before = len([c for c in fake.calls_to("views.publish") if c.params["user_id"] == user])
        access_bot.event({"type": "app_home_opened", "user": user, "channel": f"D0{user[2:]}", "tab": "home"})
        calls = fake.wait_for(lambda _: [c for c in fake.calls_to("views.publish")
                                         if c.params["user_id"] == user][before:])
        return json.dumps(calls[-1].params["view"], ensure_ascii=False)

    admin = home(ADMIN)
    assert "Answer review" in admin and "1 answer not shown: it cites articles you may not read" in admin
    assert not [m for m in SECRET_MARKERS if m in admin]
    assert "*1* articles are held back" in admin and "hr-review: 1 (its front matter" in admin
    assert "Pay review" not in admin
    hr_reviewer = home("U0HRLEAD")
    assert SECRET_TITLE in hr_reviewer and "not shown" not in hr_reviewer
    own = home("U0MEMBER")  # not a reviewer: their own questions only, and no held-back line
    assert "Answer review" not in own and "held back" not in own and not [m for m in SECRET_MARKERS if m in own]


@pytest.mark.parametrize("failing", ["users.info", "usergroups.users.list"])
def test_a_private_reply_uses_public_articles_and_says_so_when_slack_cannot_say_who_asks(
        access_bot: BotUnderTest, failing: str) -> None:
    fake = access_bot.fake
    fake.members[PRIVATE] = ["U0HRPERSON", "U0HRLEAD"]
    fake.script(failing, *[SlackReply.error("internal_error")] * 20)
    private = ask_privately(access_bot, "U0HRPERSON")
    assert "answered from public articles only" in _text(private)
    assert leaked(fake) == []  # not even in the asker's own private reply
