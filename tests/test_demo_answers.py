"""The demo is the product's first impression: every question a newcomer is shown (`kbbot demo`, the README,
docs/, Slack's suggested prompts) is answered right, from the right passage, through the real CLI on the
indexed demo KB.

The expectations are labelled in demo_eval/newcomer_questions.jsonl: for each question its gold article and
section (the first citation, and the only sections an answer may cite), the facts the answer must state (in
order: a procedure's steps), and what it must not contain (a sentence from an unrelated section). An answer
the bot is unsure of fails unless the entry says `may_be_unsure`."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy.engine import URL

from bot.cli import main
from bot.cli_index import DEMO_QUESTIONS
from bot.listeners.assistant import SUGGESTED_PROMPTS
from retrieval.answer_units import passage_units
from tests.conftest import DEMO_KB, _drop_database, fresh_database_url

REPO = Path(__file__).resolve().parents[1]
LABELLED = [json.loads(line) for line in (REPO / "demo_eval" / "newcomer_questions.jsonl").open() if line.strip()]
ASKED = {entry["question"]: entry for entry in LABELLED if entry["command"] == "ask"}


@pytest.fixture
def kbbot(pg_server: URL, demo_template: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator:  # type: ignore[type-arg]
    url, name = fresh_database_url(pg_server, demo_template)
    monkeypatch.setenv("DATABASE_URL", url.render_as_string(hide_password=False))
    monkeypatch.setenv("KBBOT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()

    def run(*args: str, as_json: bool = True):  # type: ignore[no-untyped-def]
        result = runner.invoke(main, [*args, "--json"] if as_json else list(args), catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return json.loads(result.output) if as_json else result.output

    yield run
    _drop_database(pg_server, name)


def _answer_words(answer: dict) -> str:  # type: ignore[type-arg]
    return re.sub(r"\s*\[\d+\]", "", answer["answer"]).strip()


def _plain(text: str) -> str:
    """Text as a terminal shows it: no bold markers, lines joined (the console wraps at its width)."""
    return " ".join(text.replace("**", "").split())


def _section(hit: dict) -> str:  # type: ignore[type-arg]
    """The passage's own heading; the article's title for the text above its first heading."""
    return (hit["heading_path"] or [hit["title"]])[-1]


def _in_order(text: str, facts: list[str]) -> bool:
    positions = [text.find(fact) for fact in facts]
    return -1 not in positions and positions == sorted(positions)


def _shown_questions() -> dict[str, str]:
    """Every question a newcomer is shown, and where: a question added to the README or docs without a label
    fails here."""
    shown = {q: "kbbot demo" for q in DEMO_QUESTIONS}
    shown.update({p["message"]: "Slack suggested prompt" for p in SUGGESTED_PROMPTS})
    demo_source = (REPO / "bot" / "cli_index.py").read_text()
    shown.update({q: "kbbot demo (try your own)" for q in re.findall(r'kbbot ask \\"([^"\\]+)\\"', demo_source)})
    patterns = [re.compile(r'"((?:How|What|When|Where|Who|Which|Why|Can|Is|Do|Does|I)\b[^"\n]*\?)"'),
                re.compile(r"`@kbbot ([^`]+\?)`"), re.compile(r'kbbot search "([^"]+)"')]
    for doc in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        text = doc.read_text()
        for pattern in patterns:
            shown.update({q: str(doc.relative_to(REPO)) for q in pattern.findall(text)})
    return shown


def test_every_question_shown_to_a_newcomer_is_labelled() -> None:
    shown = _shown_questions()
    assert len(shown) >= 12  # the demo's four, the README's two, docs' three, Slack's three, …
    labelled = {entry["question"] for entry in LABELLED}
    missing = {q: where for q, where in shown.items() if q not in labelled}
    assert not missing, f"label these in demo_eval/newcomer_questions.jsonl: {missing}"
    for entry in LABELLED:
        assert entry["command"] in ("ask", "search") and entry["shown_in"]
        if entry.get("outcome") != "abstained":
            assert (DEMO_KB / entry["article"]).exists() and entry["sections"] and entry["must_contain"]


@pytest.mark.parametrize("entry", LABELLED, ids=[f"{e['command']} {e['question']}" for e in LABELLED])
def test_newcomer_question_is_answered_right(kbbot, entry: dict) -> None:  # type: ignore[no-untyped-def, type-arg]
    if entry["command"] == "search":
        first = kbbot("search", entry["question"], "--k", "3")["hits"][0]
        assert (first["external_id"], _section(first)) == (entry["article"], entry["sections"][0])
        assert _in_order(first["text"], entry["must_contain"]), first["text"]
        return
    answer = kbbot("ask", entry["question"])
    assert answer["outcome"] == entry["outcome"], answer["answer"]
    if entry["outcome"] == "abstained":
        assert answer["citations"] == []
        # an off-topic question is told the KB has nothing on it, not pointed at unrelated articles
        assert entry.get("lists_nearest", True) == bool(answer["nearest"]), answer["answer"]
        return
    # "I'm not sure this answers your question" is no way to answer a question the docs suggest; a vague
    # statement ("a weird email asking for my password") may be answered so
    assert entry.get("may_be_unsure") or not answer["unsure"], answer["answer"]
    text = answer["answer"]
    first = answer["citations"][0]
    assert (first["external_id"], _section(first)) == (entry["article"], entry["sections"][0]), text
    cited = [(c["external_id"], _section(c)) for c in answer["citations"]]
    assert all(article == entry["article"] and section in entry["sections"] for article, section in cited), (
        f"a citation that does not help: {cited}\n{text}")
    assert _in_order(text, entry["must_contain"]), text
    assert not [bad for bad in entry.get("must_not_contain", []) if bad.lower() in text.lower()], text
    assert not _answer_words(answer).endswith(":")


def test_kbbot_demo_answers_its_questions_right(cli) -> None:  # type: ignore[no-untyped-def]
    """`kbbot demo` itself, on an empty database: it indexes the demo KB and prints each answer."""
    output = cli("demo").output
    blocks = re.split(r"^Q: ", output, flags=re.MULTILINE)[1:]
    assert [b.split("\n", 1)[0].strip() for b in blocks] == list(DEMO_QUESTIONS)
    for block in blocks:
        question, shown = block.split("\n", 1)
        entry = ASKED[question.strip()]
        answer = _plain(shown.split("Sources", 1)[0] if "Sources" in shown else shown)
        if entry["outcome"] == "abstained":
            assert "Sources" not in shown
            if entry.get("lists_nearest", True):
                assert "couldn't find an answer" in answer and "Nearest articles" in shown, shown
            else:
                assert "has nothing on that" in answer and "Nearest articles" not in shown, shown
            continue
        assert _in_order(answer, [_plain(fact) for fact in entry["must_contain"]]), answer
        assert not [bad for bad in entry["must_not_contain"] if bad.lower() in answer.lower()], answer
        sources = shown.split("Sources", 1)[1]
        assert re.findall(r"\[\d+\] ", sources) == ["[1] "], sources  # one cited passage: the gold section
        assert f"› {entry['sections'][0]}" in sources


def test_readme_search_shows_the_row_it_was_found_for(kbbot) -> None:  # type: ignore[no-untyped-def]
    # The rates table opens with Lisbon: its first 240 characters never reach Toronto.
    shown = kbbot("search", "per diem in Toronto", "--k", "3", as_json=False)
    first = shown.split("\n2. ", 1)[0]
    assert "2026 rates by city" in first and "City: Toronto, Canada; Daily rate: CAD 85" in _plain(first), shown
    assert "Lisbon" in first  # still the passage's opening, shortened


def test_readme_mfa_question_quotes_only_the_enrolment_steps(kbbot) -> None:  # type: ignore[no-untyped-def]
    answer = kbbot("ask", "How do I enroll in MFA?")
    steps = [line for line in answer["answer"].split("\n") if re.match(r"\d+\. ", line)]
    assert len(steps) == 5 and steps[0].startswith("1. Install **Northwind Verify**"), answer["answer"]


def test_off_topic_company_question_abstains(kbbot) -> None:  # type: ignore[no-untyped-def]
    answer = kbbot("ask", "What is the stock price of Northwind Labs today?")
    assert answer["outcome"] == "abstained" and answer["citations"] == []


def test_units_of_a_table_a_procedure_and_its_lead_in() -> None:
    per_diem = (DEMO_KB / "travel" / "per-diem.md").read_text()
    table = per_diem[per_diem.index("| City |"):per_diem.index("Rates are reviewed")]
    rows = passage_units(table)
    toronto = next(u for u in rows if "Toronto" in u.quote)
    assert toronto.kind == "row" and toronto.rendered == "City: Toronto, Canada; Daily rate: CAD 85"
    assert len(rows) == 17 and all(u.kind == "row" for u in rows)

    mfa = (DEMO_KB / "it" / "mfa.md").read_text()
    phone = mfa[mfa.index("If you still have the old phone"):mfa.index("## Lost or stolen")]
    units = passage_units(phone)
    lead_in, *steps = units
    assert lead_in.lead_in and lead_in.quote.endswith(":") and not lead_in.fragment
    assert [u.ordered for u in steps] == [True, True, True] and {u.block for u in units} == {lead_in.block}
    for unit in units:
        assert unit.quote in phone  # a citation quotes the passage's own words

    badges = (DEMO_KB / "facilities" / "office-access-badges.txt").read_text()
    heading = next(u for u in passage_units(badges) if u.quote == "LOST OR FORGOTTEN BADGE")
    assert heading.fragment
