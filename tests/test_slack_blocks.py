"""Block Kit rendering: Markdown to mrkdwn, escaping, Slack's limits, sources with age and staleness."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot import blocks
from bot.blocks import BLOCK_LIMIT, SECTION_LIMIT, render_answer, split_text, to_mrkdwn
from bot.manifest import manifest_yaml
from retrieval.types import Answer, Citation, SearchHit

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
REPO_MANIFEST = __import__("pathlib").Path(__file__).resolve().parents[1] / "slack" / "manifest.yml"


def _hit(n: int, *, days_old: int | None = 3, url: str | None = "https://kb.example.com/vpn") -> SearchHit:
    return SearchHit(
        chunk_id=n, article_id=n, source="demo", external_id=f"it/vpn-{n}.md", title=f"VPN guide {n}", url=url,
        heading_path=("Remote access", "Connecting"), text="Open the client and pick the Remote profile.",
        char_start=0, char_end=40, updated_at=None if days_old is None else NOW - timedelta(days=days_old),
        score=0.5, similarity=0.7,
    )


def _answer(text: str, citations: int = 1, **kwargs) -> Answer:  # type: ignore[no-untyped-def]
    cites = [Citation(i, _hit(i, **kwargs), f"Quote number {i}.") for i in range(1, citations + 1)]
    return Answer("How do I connect?", text, cites, "answered", "extractive")


def _texts(message: blocks.SlackMessage) -> list[str]:
    out = []
    for block in message.blocks:
        if "text" in block:
            out.append(block["text"]["text"])
        out += [e["text"] for e in block.get("elements", []) if isinstance(e.get("text"), str)]
    return out


def test_markdown_becomes_mrkdwn_and_markers_link_to_their_article() -> None:
    md = "## Setup\n**Install** the [client](https://x.example/c) and *sign in* [1].\n- step one\n`a**b**c` [2]"
    out = to_mrkdwn(md, {1: "https://kb.example.com/vpn", 2: None})
    assert out.startswith("*Setup*\n*Install* the <https://x.example/c|client> and _sign in_ "
                          "<https://kb.example.com/vpn|[1]>.")
    assert "• step one" in out
    assert "`a**b**c` [2]" in out  # code is left alone; an unknown URL leaves the marker plain


def test_text_from_articles_cannot_ping_or_forge_links() -> None:
    out = to_mrkdwn("Tell <!channel> & <@U123> about <https://evil.example|the bank> [1]", {})
    assert "<!channel>" not in out and "<@U123>" not in out and "<https://evil" not in out
    assert "&lt;!channel&gt; &amp; &lt;@U123&gt;" in out
    assert blocks.link("javascript:alert(1)", "x") == "x"


def test_sources_show_title_link_heading_age_and_quote() -> None:
    [message] = render_answer(_answer("Use the Remote profile [1].", citations=1, days_old=12), answer_id=7,
                              can_escalate=True, stale_after_days=365, now=NOW)
    source = next(t for t in _texts(message) if t.startswith("*[1]*"))
    assert "<https://kb.example.com/vpn|VPN guide 1> › Remote access › Connecting" in source
    assert "_updated 12 days ago_" in source and "out of date" not in source
    assert "> Quote number 1." in source
    buttons = message.blocks[-1]["elements"]
    assert [b["action_id"] for b in buttons] == ["feedback_up", "feedback_down", "ask_human"]
    assert {b["value"] for b in buttons} == {"7"}


def test_stale_articles_are_flagged_and_unknown_dates_omitted() -> None:
    [stale] = render_answer(_answer("Old [1].", days_old=400), answer_id=1, can_escalate=False,
                            stale_after_days=365, now=NOW)
    assert any("updated 400 days ago_ · :warning: *may be out of date*" in t for t in _texts(stale))
    [undated] = render_answer(_answer("Undated [1].", days_old=None), answer_id=1, can_escalate=False,
                              stale_after_days=365, now=NOW)
    assert not any("updated" in t for t in _texts(undated))
    assert "ask_human" not in str(undated.blocks[-1])  # no support group configured


def test_long_answers_respect_section_and_block_limits() -> None:
    sentence = "Connect with the Remote profile and approve the prompt on your phone [1]. "
    long_text = "\n\n".join(sentence * 30 for _ in range(40))  # ~90,000 characters
    messages = render_answer(_answer(long_text, citations=12), answer_id=3, can_escalate=True,
                             stale_after_days=365, now=NOW)
    assert len(messages) >= 2
    assert all(len(m.blocks) <= BLOCK_LIMIT for m in messages)
    assert all(len(t) <= SECTION_LIMIT for m in messages for t in _texts(m))
    assert messages[-1].blocks[-1]["type"] == "actions"  # buttons on the last message only
    assert all(m.blocks[-1]["type"] != "actions" for m in messages[:-1])
    assert len(messages[0].text) <= blocks.FALLBACK_TEXT_LIMIT
    # Nothing is lost: every sentence of the answer is in some section.
    rendered = "".join(t for m in messages for t in _texts(m))
    assert rendered.count("Connect with the Remote profile") == 30 * 40


def test_split_text_never_cuts_a_link_and_keeps_code_fences_balanced() -> None:
    link = "<https://kb.example.com/a/very/long/path|a link with several words>"
    pieces = split_text(("word " * 50 + link + " ") * 30, limit=400)
    assert all(p.count("<") == p.count(">") for p in pieces)
    code = "```\n" + "x = 1\n" * 200 + "```"
    pieces = split_text(code, limit=300)
    assert len(pieces) > 1 and all(p.count("```") % 2 == 0 for p in pieces)


def test_abstention_lists_the_closest_articles() -> None:
    answer = Answer("Capital of Peru?", "I couldn't find an answer to that.", [], "abstained", "none",
                    nearest=[_hit(1), _hit(2, url=None)])
    [message] = render_answer(answer, answer_id=9, can_escalate=True, stale_after_days=365, now=NOW)
    texts = _texts(message)
    assert texts[0].startswith(":mag: I couldn't find an answer")
    assert "*Closest articles*" in texts
    assert any(t.startswith("• <https://kb.example.com/vpn|VPN guide 1>") for t in texts)
    assert any(t.startswith("• VPN guide 2") for t in texts)  # no URL: the title, unlinked


def test_plain_fallback_keeps_answer_and_sources() -> None:
    texts = blocks.plain_messages(_answer("Use the Remote profile [1].", citations=2), now=NOW)
    joined = "\n".join(texts)
    assert "Use the Remote profile" in joined and "*Sources*" in joined and "VPN guide 2" in joined
    assert all(len(t) <= SECTION_LIMIT for t in texts)


def test_error_message_carries_the_error_id() -> None:
    message = blocks.render_error("ab12cd34", "the knowledge base is unreachable right now.")
    assert "`ab12cd34`" in message.text and "unreachable" in message.text


def test_the_shipped_manifest_is_the_generated_one() -> None:
    assert REPO_MANIFEST.read_text(encoding="utf-8") == manifest_yaml()
    socket = manifest_yaml(request_url=None)
    assert "socket_mode_enabled: true" in socket and "request_url" not in socket and "url:" not in socket
