"""Accepted experts' answers exported as draft articles: Markdown files a folder source indexes, and draft
articles created in a Zendesk Help Center section over its documented API (the local fake)."""

from __future__ import annotations

from pathlib import Path

import yaml
from click.testing import CliRunner

from bot.cli import main
from retrieval.answer_log import AnswerLog, Asked
from retrieval.db import Database
from retrieval.drafts import slack_to_markdown
from retrieval.expert_replies import ExpertReplies
from retrieval.sources.filesystem import FilesystemSource
from retrieval.types import Answer
from tests.fakes.zendesk_api import FakeZendesk, fake_zendesk  # noqa: F401 - the fixture

QUESTION = "Can I bring my dog to the office?"
REPLY = "Yes, on *Fridays* in Lisbon. Register the dog at reception: <https://wiki.example/pets|pet policy>."


def _accepted_reply(db: Database) -> int:
    answer_id = AnswerLog(db).record(Asked(QUESTION, "channel", "U0ASKER", "C0IT", "1.1"),
                                     Answer(QUESTION, "I don't know", [], "abstained", "none"))
    replies = ExpertReplies(db)
    reply_id = replies.record(answer_id, channel="C0IT", thread_ts="1.1", message_ts="1.5", user_id="U0EXPERT",
                              body=REPLY)
    assert reply_id is not None
    assert replies.record(answer_id, channel="C0IT", thread_ts="1.1", message_ts="1.6", user_id="U0EXPERT",
                          body="second") is None  # the first reply is kept
    replies.accept(reply_id, "U0LEAD")
    return reply_id


def test_accepted_answers_export_as_markdown_a_folder_source_reads(database: Database, tmp_path: Path,
                                                                   monkeypatch) -> None:  # type: ignore[no-untyped-def]
    reply_id = _accepted_reply(database)
    monkeypatch.setenv("DATABASE_URL", database.engine.url.render_as_string(hide_password=False))
    out = tmp_path / "drafts"
    result = CliRunner().invoke(main, ["gaps", "drafts", str(out)])
    assert result.exit_code == 0, result.output
    [path] = list(out.glob("*.md"))
    assert path.name == f"can-i-bring-my-dog-to-the-office-{reply_id}.md"
    head, body = path.read_text().split("---\n", 2)[1:]
    meta = yaml.safe_load(head)
    assert meta["title"] == QUESTION and meta["draft"] is True and meta["kbbot"]["accepted_by"] == "U0LEAD"
    assert "**Fridays**" in body and "[pet policy](https://wiki.example/pets)" in body

    [item] = list(FilesystemSource("drafts", out).iter_articles())
    assert item.title == QUESTION and "Register the dog at reception" in item.text
    assert ExpertReplies(database).get(reply_id).exported_to == str(path)

    # Exported once: a second run writes nothing new and keeps the (possibly edited) file.
    path.write_text(path.read_text() + "\nEdited by the KB owner.\n")
    again = CliRunner().invoke(main, ["gaps", "drafts", str(out), "--all"])
    assert again.exit_code == 0 and "kept 1 existing" in again.output
    assert "Edited by the KB owner" in path.read_text()


def test_accepted_answers_become_zendesk_drafts(database: Database, tmp_path: Path, monkeypatch,  # type: ignore[no-untyped-def]
                                                fake_zendesk: FakeZendesk) -> None:  # noqa: F811
    reply_id = _accepted_reply(database)
    section = fake_zendesk.add_section("Office life", fake_zendesk.add_category("Workplace"))
    sources = tmp_path / "sources.yml"
    sources.write_text(yaml.safe_dump({"sources": [{
        "name": "help", "type": "zendesk", "api_base_url": fake_zendesk.url,
        "options": {"subdomain": "acme", "locales": ["en-us"], "email": fake_zendesk.email,
                    "token_env": "ZD_TOKEN"}}]}))
    monkeypatch.setenv("ZD_TOKEN", fake_zendesk.token)
    monkeypatch.setenv("KBBOT_SOURCES_FILE", str(sources))
    monkeypatch.setenv("DATABASE_URL", database.engine.url.render_as_string(hide_password=False))
    runner = CliRunner()
    refused = runner.invoke(main, ["gaps", "drafts", str(tmp_path / "d"), "--zendesk-source", "help"])
    assert refused.exit_code == 2 and "--section and --permission-group" in refused.output

    result = runner.invoke(main, ["gaps", "drafts", str(tmp_path / "d"), "--zendesk-source", "help",
                                  "--section", str(section), "--permission-group", "1001"])
    assert result.exit_code == 0, result.output
    [sent] = fake_zendesk.created
    assert sent["section_id"] == section and sent["notify_subscribers"] is False
    article = sent["article"]
    assert article["draft"] is True and article["title"] == QUESTION and article["permission_group_id"] == 1001
    assert article["user_segment_id"] is None and "<strong>Fridays</strong>" in article["body"]
    [stored] = [a for a in fake_zendesk.articles.values() if a["title"] == QUESTION]
    assert stored["draft"] is True
    assert ExpertReplies(database).get(reply_id).exported_to == stored["html_url"]


def test_slack_mrkdwn_becomes_markdown() -> None:
    assert slack_to_markdown("*bold* <@U123> <https://x.example|x> &amp;") == "**bold** @U123 [x](https://x.example) &"
