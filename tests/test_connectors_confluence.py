"""Confluence Cloud connector against a local fake of the REST API: CQL search with `_links.next`
pagination, storage format to text, page hierarchy as heading path, lastModified windows in the user's
timezone, trashed pages, rate limits and CQL errors."""

# ruff: noqa: F811 - fixtures imported from tests.fakes are taken by name
from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from retrieval.db import Database
from retrieval.errors import SourceError
from retrieval.sources.base import Deleted
from retrieval.sources.confluence import ConfluenceSource
from retrieval.sync import Indexer
from tests.fakes.confluence_api import FakeConfluence, fake_confluence  # noqa: F401
from tests.fakes.json_api import Scripted

LAPTOP = """<h1>Laptop setup</h1><p>New laptops come with the base image.</p>
<ac:structured-macro ac:name="toc"><ac:parameter ac:name="maxLevel">2</ac:parameter></ac:structured-macro>
<h2>Install the tools</h2><p>Run the bootstrap script:</p>
<ac:structured-macro ac:name="code"><ac:parameter ac:name="language">bash</ac:parameter>
<ac:plain-text-body><![CDATA[curl -sSL https://tools.example/bootstrap | sh
brew install --cask northgate]]></ac:plain-text-body></ac:structured-macro>
<ac:structured-macro ac:name="info"><ac:rich-text-body><p>Ask in #it-help if the script fails, and see
<ac:link><ri:page ri:content-title="VPN access" /></ac:link>.</p></ac:rich-text-body></ac:structured-macro>"""


def source(fake: FakeConfluence, **kwargs) -> ConfluenceSource:  # type: ignore[no-untyped-def]
    kwargs.setdefault("sleep", lambda _s: None)
    kwargs.setdefault("spaces", ["ENG"])
    return ConfluenceSource("eng-wiki", base_url=fake.url, email=fake.email, api_token=fake.token, **kwargs)


def seed(fake: FakeConfluence, extra_pages: int = 0) -> dict[str, str]:
    fake.add_space("ENG", "Engineering")
    fake.add_space("HR", "People team")
    home = fake.add_page("ENG", "Engineering handbook", "<p>Start here.</p>")
    onboarding = fake.add_page("ENG", "Onboarding", "<p>Your first week, step by step.</p>", parent=home)
    laptop = fake.add_page("ENG", "Laptop setup", LAPTOP, parent=onboarding)
    hr = fake.add_page("HR", "Parental leave", "<p>Sixteen weeks, fully paid.</p>")
    for i in range(extra_pages):
        fake.add_page("ENG", f"Service {i} runbook", f"<p>Restart service {i} with the deploy tool.</p>",
                      parent=home)
    fake.tick(3600)
    return {"home": home, "onboarding": onboarding, "laptop": laptop, "hr": hr}


def test_search_pages_through_next_links_and_converts_storage_format(fake_confluence: FakeConfluence) -> None:
    ids = seed(fake_confluence, extra_pages=4)
    pages = {a.external_id: a for a in source(fake_confluence, page_size=2).iter_articles()}
    assert set(pages) == {ids["home"], ids["onboarding"], ids["laptop"]} | {
        pid for pid, p in fake_confluence.pages.items() if p["title"].endswith("runbook")}
    assert len(fake_confluence.requests_to("/wiki/rest/api/content/search")) == 4  # 7 pages, 2 a page
    laptop = pages[ids["laptop"]]
    assert laptop.path == ("Engineering handbook", "Onboarding")
    assert "```\ncurl -sSL https://tools.example/bootstrap | sh\nbrew install --cask northgate\n```" in laptop.text
    assert "see VPN access." in laptop.text  # a link without a label reads as its page title
    assert "maxLevel" not in laptop.text and "bash" not in laptop.text  # macro parameters are not text
    assert laptop.url == f"{fake_confluence.url}/wiki/spaces/ENG/pages/{ids['laptop']}/Laptop+setup"
    assert laptop.metadata["space"] == "ENG" and laptop.metadata["version"] == 1
    assert laptop.updated_at == datetime.fromtimestamp(fake_confluence.pages[ids["laptop"]]["when"], UTC)


def test_page_hierarchy_heads_every_passage(fake_confluence: FakeConfluence, database: Database,
                                            embedder) -> None:  # type: ignore[no-untyped-def]
    ids = seed(fake_confluence)
    Indexer(database, embedder, chunk_max_tokens=200).sync([source(fake_confluence)])
    with database.engine.connect() as conn:
        paths = conn.execute(text(
            "SELECT c.heading_path FROM chunks c JOIN articles a ON a.id = c.article_id "
            "WHERE a.external_id = :id ORDER BY c.ordinal"), {"id": ids["laptop"]}).scalars().all()
    assert paths and all(p[:2] == ["Engineering handbook", "Onboarding"] for p in paths)
    assert any("Install the tools" in p for p in paths)


def test_incremental_window_is_written_in_the_users_timezone(database: Database, embedder) -> None:  # type: ignore[no-untyped-def]
    with FakeConfluence(user_timezone="America/Los_Angeles") as fake:
        ids = seed(fake)
        indexer = Indexer(database, embedder, chunk_max_tokens=200)
        first = indexer.sync([source(fake, timezone="America/Los_Angeles")])
        assert first.added == 3
        fake.tick(7200)
        fake.edit_page(ids["onboarding"], storage="<p>Your first week now starts on Tuesday.</p>")
        fake.requests.clear()
        second = indexer.sync([source(fake, timezone="America/Los_Angeles")])
        assert (second.updated, second.unchanged, second.added, second.removed) == (1, 0, 0, 0)
        cql = fake.requests_to("/wiki/rest/api/content/search")[0].arg("cql")
        # The first listing began at 01:00:04 UTC: the window opens 5 minutes earlier, written in Los
        # Angeles time (UTC-8 in January), and the checkpoint moves to when this run's search began.
        assert 'lastModified >= "2025/12/31 16:55"' in (cql or "")
        with database.engine.connect() as conn:
            since = conn.execute(text("SELECT checkpoint FROM sources")).scalar_one()["cursor"]["since"]
        assert since == "2026-01-01T03:00:05+00:00"


def test_a_wrong_timezone_would_miss_changes_so_the_default_must_match(database: Database,
                                                                       embedder) -> None:  # type: ignore[no-untyped-def]
    # Why the option exists: read as UTC by a Los Angeles profile, the window starts 8 hours late.
    with FakeConfluence(user_timezone="America/Los_Angeles") as fake:
        ids = seed(fake)
        indexer = Indexer(database, embedder, chunk_max_tokens=200)
        indexer.sync([source(fake)])
        fake.tick(7200)
        fake.edit_page(ids["onboarding"], storage="<p>Your first week now starts on Tuesday.</p>")
        assert indexer.sync([source(fake)]).updated == 0
        assert indexer.sync([source(fake, timezone="America/Los_Angeles")], kind="full").updated == 1


def test_trashed_pages_are_pruned_by_the_full_pass_and_fetch_reports_them(
        fake_confluence: FakeConfluence, database: Database, embedder) -> None:  # type: ignore[no-untyped-def]
    ids = seed(fake_confluence)
    indexer = Indexer(database, embedder, chunk_max_tokens=200)
    indexer.sync([source(fake_confluence)])
    fake_confluence.trash_page(ids["onboarding"])
    assert indexer.sync([source(fake_confluence)]).removed == 0  # invisible to a lastModified search
    assert indexer.sync([source(fake_confluence)], kind="full").removed == 1
    fetched = list(source(fake_confluence).fetch_articles([ids["onboarding"], ids["hr"], ids["laptop"]]))
    assert fetched[:2] == [Deleted(ids["onboarding"]), Deleted(ids["hr"])]  # trashed; another space
    assert fetched[2].title == "Laptop setup"  # type: ignore[union-attr]


def test_rate_limit_and_cql_errors(fake_confluence: FakeConfluence) -> None:
    seed(fake_confluence)
    fake_confluence.script("/wiki/rest/api/content/search", Scripted(429, {"message": "Rate limited"},
                                                                     {"Retry-After": "11"}))
    waits: list[float] = []
    assert len(list(source(fake_confluence, sleep=waits.append).iter_articles())) == 3
    assert waits == [11.0]
    with pytest.raises(SourceError, match=r"HTTP 400 .*Could not parse cql"):
        list(source(fake_confluence, cql="label ~ fuzzy").iter_articles())


def test_spaces_and_content_types_are_quoted_into_the_query(fake_confluence: FakeConfluence) -> None:
    seed(fake_confluence)
    fake_confluence.add_page("HR", "Team offsite", "<p>In May.</p>", content_type="blogpost")
    src = source(fake_confluence, spaces=["ENG", "HR"], content_types=["page", "blogpost"])
    assert {a.title for a in src.iter_articles()} >= {"Parental leave", "Team offsite", "Laptop setup"}
    cql = next(r for r in reversed(fake_confluence.requests) if r.path.endswith("/search")).arg("cql")
    assert cql and cql.startswith('space in ("ENG", "HR") and type in ("page", "blogpost")')
