"""The knowledge base's own acronyms spelled out in the embedded question (retrieval/acronyms.py): what counts
as a definition, how a question is expanded, that a restricted article's definitions are never read, and
what it does to the README's "How do I enroll in MFA?" (real PostgreSQL + pgvector, real embeddings)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from retrieval.acronyms import AcronymReader, expand, glossary, long_form
from retrieval.db import Database
from retrieval.search import Searcher
from retrieval.sources import FilesystemSource
from retrieval.sync import Indexer


def test_a_definition_is_the_words_that_spell_the_acronym() -> None:
    assert long_form("Every Northwind ID account must have multi-factor authentication", "MFA") == (
        "multi-factor authentication")
    assert long_form("Access is managed with AWS Identity and Access Management", "IAM") == (
        "identity and access management")  # the shortest run of words that spells it
    assert long_form("Talk to the Employee assistance programme", "EAP") == "employee assistance programme"
    assert long_form("Download the form from the portal", "PDF") is None  # initials that spell nothing
    assert long_form("the price of a cup", "Pc") is None  # one capital: a word in brackets, not an acronym


def test_the_most_frequent_long_form_wins() -> None:
    terms = glossary([("single sign-on", "SSO"), ("the single sign-on", "SSO"), ("Staff Support Office", "SSO")])
    assert terms == {"SSO": "single sign-on"}


def test_a_question_gets_the_long_form_after_the_acronym_it_uses() -> None:
    terms = {"MFA": "multi-factor authentication", "EAP": "employee assistance programme",
             "IT": "information technology"}
    assert expand("How do I enroll in MFA?", terms) == "How do I enroll in MFA (multi-factor authentication)?"
    assert expand("is the eap free?", terms) == "is the eap (employee assistance programme) free?"  # as typed in Slack
    assert expand("can it wait?", terms) == "can it wait?"  # a two-letter acronym only as written: not "it"
    # part of a name: "SQL Server" is what the passages say, not "SQL (structured query language) Server"
    named = {"SQL": "structured query language", "KMS": "key management service"}
    assert expand("How do I shorten failover in SQL Server?", named) == "How do I shorten failover in SQL Server?"
    assert expand("Can I use my own keys in KMS?", named) == "Can I use my own keys in KMS (key management service)?"
    spelled = "How do I enroll in multi-factor authentication (MFA)?"
    assert expand(spelled, terms) == spelled  # already said
    assert expand("What is the capital of Peru?", terms) == "What is the capital of Peru?"


def _article(root: Path, rel: str, body: str, audience: str | None = None) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    front = f"audience: {audience}\n" if audience else ""
    path.write_text(f"---\ntitle: {rel}\n{front}---\n{body}\n", encoding="utf-8")


def test_only_definitions_every_member_may_read_are_used(database: Database, embedder: Any, tmp_path: Path) -> None:
    kb = tmp_path / "kb"
    _article(kb, "facilities/garage.md", "## Levels\nThe Parking Garage Lift (PGL) runs from 7:00.")
    _article(kb, "hr/bonus.md", "## Bonus\nThe Quorbex Bonus Scheme (QBS) pays in March.", audience="[S0HR]")
    _article(kb, "it/portal.md", "## Portal\nAsk in the Self Service Desk (SSD) portal.", audience="public")
    # NAC is in 3 of the 5 articles every member may read: the KB's own name, it tells no article apart
    _article(kb, "it/lockers.md", "## Lockers\nLockers open with the Northwind Access Card (NAC).")
    _article(kb, "it/wifi.md", "## Wi-Fi\nYour NAC is not needed for Wi-Fi.")
    _article(kb, "it/printing.md", "## Printing\nTap your NAC on the printer.")
    Indexer(database, embedder, chunk_max_tokens=200).sync([FilesystemSource("kb", kb)])
    terms = AcronymReader(database).read()
    assert terms == {"PGL": "parking garage lift", "SSD": "self service desk"}, terms  # not the HR-only QBS
    assert AcronymReader(database).expand("when does the QBS pay?") == "when does the QBS pay?"


def test_the_readme_mfa_question_is_embedded_with_what_mfa_stands_for(demo_database: Database,
                                                                      embedder: Any) -> None:
    reader = AcronymReader(demo_database)
    assert reader.terms()["MFA"] == "multi-factor authentication"  # "# Multi-factor authentication (MFA)"
    expanded = Searcher(demo_database, embedder).search("How do I enroll in MFA?", k=8)
    as_asked = Searcher(demo_database, embedder, expand_acronyms=False).search("How do I enroll in MFA?", k=8)
    assert expanded.hits[0].external_id == "it/mfa.md"
    # The enrolment steps come closer to the question once it says what MFA is.
    enrolling = [h for h in expanded.hits if h.heading_path[-1:] == ("Enrolling",)]
    enrolling_before = [h for h in as_asked.hits if h.heading_path[-1:] == ("Enrolling",)]
    assert enrolling and enrolling_before
    assert enrolling[0].similarity > enrolling_before[0].similarity + 0.1  # type: ignore[operator]


def test_the_glossary_is_read_again_only_after_a_sync_changed_the_articles(database: Database, embedder: Any,
                                                                         tmp_path: Path) -> None:
    kb = tmp_path / "kb"
    _article(kb, "facilities/garage.md", "## Levels\nThe Parking Garage Lift (PGL) runs from 7:00.")
    for name in ("wifi", "printing"):  # so PGL is not in most articles (the KB's own name)
        _article(kb, f"it/{name}.md", f"## {name}\nAsk the IT desk about {name}.")
    Indexer(database, embedder, chunk_max_tokens=200).sync([FilesystemSource("kb", kb)])
    reader = AcronymReader(database)
    assert reader.terms() == {"PGL": "parking garage lift"}
    reads = []
    real_read = reader.read
    reader.read = lambda: reads.append(1) or real_read()  # type: ignore[method-assign]

    reader._refresh()  # the hourly look, nothing synced since
    assert reads == [] and reader.terms() == {"PGL": "parking garage lift"}

    _article(kb, "it/portal.md", "## Portal\nAsk in the Self Service Desk (SSD) portal.")
    Indexer(database, embedder, chunk_max_tokens=200).sync([FilesystemSource("kb", kb)])
    reader._refresh()
    assert reads == [1] and reader.terms()["SSD"] == "self service desk"
