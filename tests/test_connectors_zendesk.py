"""Zendesk Help Center connector against a local fake of the API: listing, pagination, incremental export
with per-source checkpoints, drafts, archived articles, rate limits, auth, and failure isolation."""

# ruff: noqa: F811 - fixtures imported from tests.fakes are taken by name
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
from sqlalchemy import text

from retrieval.db import Database
from retrieval.errors import EmbeddingError, SourceError
from retrieval.sources.base import Deleted
from retrieval.sources.filesystem import FilesystemSource
from retrieval.sources.zendesk import ZendeskSource
from retrieval.sync import Indexer
from tests.fakes.json_api import Scripted
from tests.fakes.zendesk_api import FakeZendesk, fake_zendesk  # noqa: F401
from tests.helpers import CountingEmbedder

VPN_BODY = """<h2>Before you start</h2><p>Install <strong>NorthGate</strong> from the self-service portal.</p>
<h2>Connecting</h2><ol><li>Open NorthGate.</li><li>Sign in with your SSO account and approve the push.</li></ol>"""


def source(fake: FakeZendesk, **kwargs) -> ZendeskSource:  # type: ignore[no-untyped-def]
    waits: list[float] = []
    kwargs.setdefault("sleep", waits.append)  # rate-limit pauses are recorded, not slept
    return ZendeskSource("help-center", base_url=fake.url, email=fake.email, api_token=fake.token, **kwargs)


def seed(fake: FakeZendesk, n: int = 5) -> dict[str, int]:
    it = fake.add_category("IT help")
    network = fake.add_section("Network", it)
    ids = {"vpn": fake.add_article("Connect to the VPN", VPN_BODY, section_id=network, labels=("vpn",))}
    for i in range(n - 1):
        ids[f"a{i}"] = fake.add_article(f"Printer {i} setup", f"<p>Printer {i} is on floor {i}. Add it from "
                                        "Settings, then print a test page.</p>", section_id=network)
    fake.add_article("Unfinished draft", "<p>Work in progress, do not index.</p>", section_id=network, draft=True)
    fake.tick(3600)  # the first sync happens an hour after these articles were written
    return ids


def db_articles(db: Database) -> dict[str, str]:
    with db.engine.connect() as conn:
        return dict(conn.execute(text("SELECT external_id, title FROM articles")).all())


def checkpoint(db: Database, name: str = "help-center") -> dict:  # type: ignore[type-arg]
    with db.engine.connect() as conn:
        return conn.execute(text("SELECT checkpoint FROM sources WHERE name = :n"), {"n": name}).scalar_one()


def test_listing_follows_cursor_pages_skips_drafts_and_keeps_section_and_category(fake_zendesk: FakeZendesk) -> None:
    ids = seed(fake_zendesk, n=7)
    src = source(fake_zendesk, page_size=3)
    articles = list(src.iter_articles())
    assert len(articles) == 7  # the draft is not there
    assert len(fake_zendesk.requests_to(r"/api/v2/help_center/en-us/articles\.json")) == 3  # 8 records, 3 a page
    vpn = next(a for a in articles if a.external_id == f"en-us/{ids['vpn']}")
    assert vpn.title == "Connect to the VPN"
    assert vpn.text.startswith("## Before you start\n\nInstall NorthGate from the self-service portal.")
    assert "1. Open NorthGate." in vpn.text
    assert vpn.path == ("IT help", "Network")
    assert vpn.metadata["section"] == "Network" and vpn.metadata["category"] == "IT help"
    assert vpn.metadata["labels"] == ["vpn"]
    assert vpn.url and vpn.url.endswith(f"/hc/en-us/articles/{ids['vpn']}-connect-to-the-vpn")
    assert vpn.updated_at is not None and vpn.updated_at.year == 2026
    # sections and categories are read once per run, not once per article
    assert len(fake_zendesk.requests_to(r".*/sections\.json")) == 1


def test_offset_pagination_is_followed_when_cursors_are_not_supported(fake_zendesk: FakeZendesk) -> None:
    seed(fake_zendesk, n=40)
    fake_zendesk.cursor_pagination = False  # answers with page/per_page/next_page (30 a page)
    assert len(list(source(fake_zendesk).iter_articles())) == 40
    assert len(fake_zendesk.requests_to(r"/api/v2/help_center/en-us/articles\.json")) == 2


def test_incremental_sync_reads_only_changes_and_advances_the_checkpoint(
        fake_zendesk: FakeZendesk, database: Database, embedder) -> None:  # type: ignore[no-untyped-def]
    ids = seed(fake_zendesk)
    counting = CountingEmbedder(embedder)
    indexer = Indexer(database, counting, chunk_max_tokens=200)
    first = indexer.sync([source(fake_zendesk)])
    assert (first.added, first.failed) == (5, 0)
    start = checkpoint(database)["cursor"]["start_time"]
    assert start <= fake_zendesk.clock  # taken on the server's clock, not ours

    fake_zendesk.tick(600)
    fake_zendesk.edit_article(ids["a0"], body="<p>Printer 0 moved to floor 7. Add it again from Settings.</p>")
    new_id = fake_zendesk.add_article("Guest Wi-Fi", "<p>The guest network is NW-Guest; the password is at "
                                      "reception.</p>", section_id=fake_zendesk.articles[("en-us", ids["vpn"])]
                                      ["section_id"])
    fake_zendesk.edit_article(ids["a1"], draft=True)  # unpublished: must leave the index
    fake_zendesk.requests.clear()
    embedded_before = counting.embedded

    second = indexer.sync([source(fake_zendesk)])
    assert (second.added, second.updated, second.removed, second.unchanged, second.failed) == (1, 1, 1, 0, 0)
    paths = [r.path for r in fake_zendesk.requests]
    assert not any(p.endswith("/en-us/articles.json") for p in paths)  # no full listing
    export = fake_zendesk.requests_to(r"/api/v2/help_center/incremental/articles\.json")
    assert export[0].arg("start_time") == str(start)
    assert counting.embedded - embedded_before == second.chunks_embedded <= 3
    titles = db_articles(database)
    assert f"en-us/{new_id}" in titles and f"en-us/{ids['a1']}" not in titles
    assert checkpoint(database)["cursor"]["start_time"] > start

    fake_zendesk.requests.clear()
    third = indexer.sync([source(fake_zendesk)])  # nothing changed since
    assert (third.added, third.updated, third.removed, third.chunks_embedded) == (0, 0, 0, 0)
    assert all("incremental" in r.path for r in fake_zendesk.requests)


def test_incremental_export_pages_by_end_time(fake_zendesk: FakeZendesk) -> None:
    ids = seed(fake_zendesk, n=6)
    src = source(fake_zendesk)
    feed = src.iter_changes(None)
    list(feed)
    fake_zendesk.tick(600)
    for key in ("a0", "a1", "a2", "a3", "a4"):
        fake_zendesk.edit_article(ids[key], body=f"<p>{key} was edited.</p>")
    fake_zendesk.incremental_page_size = 2
    changes = src.iter_changes(feed.checkpoint)
    edited = [item.external_id for item in changes]
    assert edited == [f"en-us/{ids[k]}" for k in ("a0", "a1", "a2", "a3", "a4")]  # each once, in order
    pages = fake_zendesk.requests_to(r"/api/v2/help_center/incremental/articles\.json")
    assert len(pages) == 4  # a page starts at the previous page's end_time
    assert changes.checkpoint == {"start_time": fake_zendesk.clock}


def test_articles_archived_at_the_source_leave_the_index_at_the_next_full_pass(
        fake_zendesk: FakeZendesk, database: Database, embedder) -> None:  # type: ignore[no-untyped-def]
    ids = seed(fake_zendesk)
    indexer = Indexer(database, embedder, chunk_max_tokens=200)
    indexer.sync([source(fake_zendesk)])
    fake_zendesk.tick(600)
    fake_zendesk.archive_article(ids["a2"])
    incremental = indexer.sync([source(fake_zendesk)])
    assert incremental.removed == 0  # the export cannot say an article was archived
    full = indexer.sync([source(fake_zendesk)], kind="full")
    assert full.removed == 1 and full.unchanged == 4 and full.chunks_embedded == 0
    assert f"en-us/{ids['a2']}" not in db_articles(database)


def test_rate_limits_are_honoured_with_retry_after(fake_zendesk: FakeZendesk) -> None:
    seed(fake_zendesk)
    fake_zendesk.script(r"/api/v2/help_center/en-us/articles\.json", Scripted.rate_limited(7),
                        Scripted.rate_limited("2"))
    waits: list[float] = []
    src = source(fake_zendesk, sleep=waits.append)
    assert len(list(src.iter_articles())) == 5
    assert waits == [7.0, 2.0]
    assert src.client.requests == 2 + 3  # two refused, then articles, sections, categories


def test_a_rate_limit_longer_than_allowed_fails_the_source_but_not_the_run(
        fake_zendesk: FakeZendesk, database: Database, embedder, tmp_path) -> None:  # type: ignore[no-untyped-def]
    seed(fake_zendesk)
    indexer = Indexer(database, embedder, chunk_max_tokens=200)
    indexer.sync([source(fake_zendesk)])
    before = checkpoint(database)
    fake_zendesk.tick(600)
    fake_zendesk.script(r"/api/v2/help_center/incremental/articles\.json", Scripted.rate_limited(3600))
    folder = tmp_path / "kb"
    folder.mkdir()
    (folder / "holidays.md").write_text("# Holidays\n\nThe office closes between Christmas and New Year.\n")
    run = indexer.sync([source(fake_zendesk, max_wait_s=300), FilesystemSource("handbook", folder)])
    assert run.status == "partial"
    assert run.added == 1  # the other source synced
    assert "asked to wait 3600 s" in run.errors[0]["error"]
    assert len(db_articles(database)) == 6  # Zendesk's articles are kept as they were
    assert checkpoint(database) == before  # the same window is read again next run
    with database.engine.connect() as conn:
        row = conn.execute(text("SELECT last_error, last_error_at FROM sources WHERE name = 'help-center'")).one()
    assert "rate limiting" in row.last_error and row.last_error_at is not None
    again = indexer.sync([source(fake_zendesk)])
    assert again.status == "succeeded"
    with database.engine.connect() as conn:
        assert conn.execute(text("SELECT last_error FROM sources WHERE name = 'help-center'")).scalar() is None


def test_server_errors_are_retried_with_backoff(fake_zendesk: FakeZendesk) -> None:
    seed(fake_zendesk)
    fake_zendesk.script(r"/api/v2/help_center/en-us/articles\.json", Scripted(503), Scripted(500))
    waits: list[float] = []
    assert len(list(source(fake_zendesk, sleep=waits.append).iter_articles())) == 5
    assert waits == [1.0, 2.0]


def test_bad_credentials_name_the_variable_and_never_the_secret(fake_zendesk: FakeZendesk) -> None:
    seed(fake_zendesk)
    src = ZendeskSource("help-center", base_url=fake_zendesk.url, email=fake_zendesk.email,
                        api_token="wrong-token-value", credentials_hint="ZENDESK_API_TOKEN and the email")
    with pytest.raises(SourceError) as caught:
        list(src.iter_articles())
    assert "rejected the credentials (401" in str(caught.value)
    assert "ZENDESK_API_TOKEN" in str(caught.value)
    assert "wrong-token-value" not in str(caught.value)
    assert len(fake_zendesk.requests) == 1  # a 401 is not retried


class FlakyEmbedder(CountingEmbedder):
    """Fails any batch that contains `poison` while `broken` is set (an embedding endpoint hiccup)."""

    def __init__(self, inner, poison: str) -> None:  # type: ignore[no-untyped-def]
        super().__init__(inner)
        self.poison = poison
        self.broken = True

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        if self.broken and any(self.poison in t for t in texts):
            raise EmbeddingError("the embeddings endpoint timed out")
        return super().embed_documents(texts)


def test_an_article_that_failed_is_fetched_again_next_run(
        fake_zendesk: FakeZendesk, database: Database, embedder) -> None:  # type: ignore[no-untyped-def]
    ids = seed(fake_zendesk)
    Indexer(database, embedder, chunk_max_tokens=200).sync([source(fake_zendesk)])
    fake_zendesk.tick(600)
    fake_zendesk.edit_article(ids["a3"], body="<p>Printer 3 now needs the Quokka driver.</p>")
    flaky = FlakyEmbedder(embedder, poison="Quokka")
    failed = Indexer(database, flaky, chunk_max_tokens=200).sync([source(fake_zendesk)])
    assert failed.status == "partial" and failed.failed == 1
    assert failed.errors[0]["where"] == f"en-us/{ids['a3']}"
    assert checkpoint(database)["retry"] == [f"en-us/{ids['a3']}"]

    flaky.broken = False
    fake_zendesk.requests.clear()
    retried = Indexer(database, flaky, chunk_max_tokens=200).sync([source(fake_zendesk)])
    assert (retried.updated, retried.failed) == (1, 0)
    assert fake_zendesk.requests_to(rf"/api/v2/help_center/en-us/articles/{ids['a3']}\.json")
    assert checkpoint(database)["retry"] == []
    with database.engine.connect() as conn:
        body = conn.execute(text("SELECT body FROM articles WHERE external_id = :e"),
                            {"e": f"en-us/{ids['a3']}"}).scalar_one()
    assert "Quokka" in body


def test_fetching_a_missing_or_unpublished_article_reports_it_deleted(fake_zendesk: FakeZendesk) -> None:
    ids = seed(fake_zendesk)
    fake_zendesk.archive_article(ids["a0"])
    fake_zendesk.edit_article(ids["a1"], draft=True)
    items = list(source(fake_zendesk).fetch_articles([f"en-us/{ids['a0']}", f"en-us/{ids['a1']}",
                                                      f"en-us/{ids['a2']}", f"fr/{ids['a2']}"]))
    assert items[:2] == [Deleted(f"en-us/{ids['a0']}"), Deleted(f"en-us/{ids['a1']}")]
    assert items[2].title == "Printer 2 setup"  # type: ignore[union-attr]
    assert items[3] == Deleted(f"fr/{ids['a2']}")  # a locale no longer configured


def test_each_locale_is_its_own_article(fake_zendesk: FakeZendesk) -> None:
    ids = seed(fake_zendesk, n=2)
    fake_zendesk.add_article("Se connecter au VPN", "<p>Installez NorthGate.</p>", locale="fr",
                             article_id=ids["vpn"])
    found = {a.external_id: a for a in source(fake_zendesk, locales=["en-us", "fr"]).iter_articles()}
    assert found[f"fr/{ids['vpn']}"].title == "Se connecter au VPN"
    assert found[f"en-us/{ids['vpn']}"].title == "Connect to the VPN"


def test_adding_a_locale_lists_everything_once(fake_zendesk: FakeZendesk, database: Database,
                                               embedder) -> None:  # type: ignore[no-untyped-def]
    ids = seed(fake_zendesk, n=2)
    fake_zendesk.add_article("Se connecter au VPN", "<p>Installez NorthGate depuis le portail.</p>", locale="fr",
                             article_id=ids["vpn"])
    fake_zendesk.tick(3600)  # the French article is older than any checkpoint taken from now on
    indexer = Indexer(database, embedder, chunk_max_tokens=200)
    indexer.sync([source(fake_zendesk)])
    assert indexer.sync([source(fake_zendesk, locales=["en-us", "fr"])]).added == 1
    assert f"fr/{ids['vpn']}" in db_articles(database)
    fake_zendesk.requests.clear()
    assert indexer.sync([source(fake_zendesk, locales=["en-us", "fr"])]).added == 0
    assert all("incremental" in r.path for r in fake_zendesk.requests)  # back to reading changes only
