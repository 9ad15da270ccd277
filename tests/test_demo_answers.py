"""The demo is the product's first impression: every question of `kbbot demo` and of the README is
answered right, from the right passage, through the real CLI on the indexed demo KB."""

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
from retrieval.answer_units import passage_units
from tests.conftest import DEMO_KB, _drop_database, fresh_database_url

MFA_STEPS = [
    "Install **Northwind Verify** from the App Store or Google Play on your phone.",
    "Sign in at `id.northwind.example` and go to **Settings > Security methods**.",
    "Choose **Set up** next to Northwind Verify and scan the QR code with the app.",
    "Approve a test push to confirm it works.",
]


@pytest.fixture
def kbbot(pg_server: URL, demo_template: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator:  # type: ignore[type-arg]
    url, name = fresh_database_url(pg_server, demo_template)
    monkeypatch.setenv("DATABASE_URL", url.render_as_string(hide_password=False))
    monkeypatch.setenv("KBBOT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()

    def run(*args: str) -> dict:  # type: ignore[type-arg]
        result = runner.invoke(main, [*args, "--json"], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return json.loads(result.output)

    yield run
    _drop_database(pg_server, name)


def _answer_words(answer: dict) -> str:  # type: ignore[type-arg]
    return re.sub(r"\s*\[\d+\]", "", answer["answer"]).strip()


def test_readme_mfa_question_quotes_the_enrolment_steps_in_order(kbbot) -> None:  # type: ignore[no-untyped-def]
    answer = kbbot("ask", "How do I enroll in MFA?")
    assert answer["outcome"] == "answered"
    first = answer["citations"][0]
    assert first["external_id"] == "it/mfa.md" and first["heading_path"][-1] == "Enrolling"
    positions = [answer["answer"].find(step) for step in MFA_STEPS]
    assert -1 not in positions and positions == sorted(positions), answer["answer"]
    assert "new phone" not in answer["answer"]
    assert "lost or stolen" not in answer["answer"]  # one procedure: not also the lost-device steps
    assert [c["heading_path"][-1] for c in answer["citations"]] == ["Enrolling"]
    assert not _answer_words(answer).endswith(":")
    assert {c["external_id"] for c in answer["citations"]} == {"it/mfa.md"}


def test_readme_per_diem_question_states_the_rate_from_the_table(kbbot) -> None:  # type: ignore[no-untyped-def]
    answer = kbbot("ask", "What is the per diem in Toronto?")
    assert answer["outcome"] == "answered" and "CAD 85" in answer["answer"]
    assert "Toronto" in answer["answer"].split("CAD 85")[0]
    first = answer["citations"][0]
    assert first["external_id"] == "travel/per-diem.md" and first["heading_path"][-1] == "2026 rates by city"
    assert "| Toronto, Canada | CAD 85 |" in first["quote"]


def test_readme_per_diem_search_ranks_the_rates_table_first(kbbot) -> None:  # type: ignore[no-untyped-def]
    # the README's `kbbot search "per diem in Toronto" --k 3`: every passage of the article says "per diem"
    # (its title), only the long rates table says "Toronto"
    found = kbbot("search", "per diem in Toronto", "--k", "3")
    first = found["hits"][0]
    assert first["external_id"] == "travel/per-diem.md" and first["heading_path"][-1] == "2026 rates by city"
    assert "| Toronto, Canada | CAD 85 |" in first["text"]



def test_off_topic_company_question_abstains(kbbot) -> None:  # type: ignore[no-untyped-def]
    answer = kbbot("ask", "What is the stock price of Northwind Labs today?")
    assert answer["outcome"] == "abstained" and answer["citations"] == []


@pytest.mark.parametrize(("question", "article", "expected"), [
    (DEMO_QUESTIONS[0], "it/vpn.md", "Sign in with Northwind ID"),
    (DEMO_QUESTIONS[1], "hr/pto.md", "5 unused days"),
    (DEMO_QUESTIONS[2], "security/reporting-phishing.md", "Report phish"),
])
def test_demo_questions_are_answered_from_the_right_passage(kbbot, question: str, article: str,  # type: ignore[no-untyped-def]
                                                           expected: str) -> None:
    answer = kbbot("ask", question)
    assert answer["outcome"] == "answered"
    assert answer["citations"][0]["external_id"] == article
    assert expected in answer["answer"]
    assert {c["external_id"] for c in answer["citations"]} == {article}  # no unrelated [2]
    assert not _answer_words(answer).endswith(":")


def test_carry_over_answer_is_not_padded_with_how_much_pto_you_get(kbbot) -> None:  # type: ignore[no-untyped-def]
    answer = kbbot("ask", DEMO_QUESTIONS[1])
    assert [c["heading_path"][-1] for c in answer["citations"]] == ["Carry-over"], answer["answer"]
    assert "25 working days" not in answer["answer"] and "Tenure bonus" not in answer["answer"]


def test_demo_off_topic_question_abstains(kbbot) -> None:  # type: ignore[no-untyped-def]
    assert DEMO_QUESTIONS[3] == "What is the capital of Peru?"
    assert kbbot("ask", DEMO_QUESTIONS[3])["outcome"] == "abstained"


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
