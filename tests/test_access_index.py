"""Article audiences in the index: from front matter, JSONL fields, the sources file and `ingest --audience`;
narrowed by Zendesk user segments and Confluence read restrictions (their own and inherited) over the real
HTTP fakes; held-back articles reported by `kbbot status`; changes reaching chunks and vectors at the next sync."""

# ruff: noqa: F811 - fixtures imported from tests.fakes are taken by name
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import text

from bot.cli import main as cli
from retrieval.access import ReaderScope, parse_audience
from retrieval.db import Database
from retrieval.errors import ConfigError
from retrieval.sources import FilesystemSource, JsonlSource
from retrieval.sources.confluence import ConfluenceSource
from retrieval.sources.zendesk import ZendeskSource
from retrieval.sources_config import build_source, load_sources_file
from retrieval.status import index_status
from retrieval.sync import Indexer
from tests.fakes.confluence_api import FakeConfluence, fake_confluence  # noqa: F401
from tests.fakes.zendesk_api import FakeZendesk, fake_zendesk  # noqa: F401


def audiences(db: Database) -> dict[str, tuple[list[str], str | None, set[tuple[str, ...]], set[tuple[str, ...]]]]:
    """external id -> (article audience, held_back, its chunks' audiences, its vectors' audiences)."""
    with db.engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT a.external_id, a.audience, a.held_back, array_agg(DISTINCT array_to_string(c.audience, ',')), "
            "array_agg(DISTINCT array_to_string(e.audience, ',')) FROM articles a JOIN chunks c ON c.article_id = a.id "
            "JOIN embeddings e ON e.chunk_id = c.id GROUP BY a.id")).all()
    split = lambda values: {tuple(v.split(",")) if v else () for v in values}  # noqa: E731
    return {r[0]: (list(r[1]), r[2], split(r[3]), split(r[4])) for r in rows}


def test_parse_audience_normalises_and_refuses_what_is_not_an_audience() -> None:
    assert parse_audience("Public") == ("public",)
    assert parse_audience("S0HR, S0LEGAL") == ("S0HR", "S0LEGAL")
    assert parse_audience(["S0B", "everyone"]) == ("everyone",)  # everyone already includes every group
    for bad in ("hr-team", "", ["S0HR", 3], "@hr"):
        with pytest.raises(ValueError, match=r"is not an audience|empty|non-text"):
            parse_audience(bad)
    member = ReaderScope.member(["S0HR"], "test")
    assert member.may_read(("S0HR", "S0LEGAL")) and member.may_read(("everyone",))
    assert not member.may_read(("S0LEGAL",)) and not member.may_read(())
    assert not ReaderScope.public("guest").may_read(("everyone",))


def test_front_matter_and_jsonl_audiences_reach_chunks_and_vectors(  # type: ignore[no-untyped-def]
        database: Database, embedder, tmp_path: Path) -> None:
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "open.md").write_text("# Office hours\n\nThe office opens at 8 in the morning.\n")
    (kb / "hr.md").write_text("---\naudience: [S0HR]\n---\n# Salary bands\n\nBand 4 pays between 70k and 90k.\n")
    (kb / "typo.md").write_text("---\naudience: hr-team\n---\n# Layoff plan\n\nThe plan is confidential.\n")
    faq = tmp_path / "faq.jsonl"
    records = [{"id": "wifi", "text": "The guest wifi password is on the door.", "audience": "public"},
               {"id": "payroll", "text": "Payroll runs on the 25th.", "audience": ["S0FIN"]}]
    faq.write_text("".join(json.dumps(r) + "\n" for r in records))
    indexer = Indexer(database, embedder, chunk_max_tokens=200)
    run = indexer.sync([FilesystemSource("handbook", kb), JsonlSource("faq", faq)])
    assert run.failed == 0
    got = audiences(database)
    assert got["open.md"] == (["everyone"], None, {("everyone",)}, {("everyone",)})  # the source's default
    assert got["hr.md"][0] == ["S0HR"] and got["hr.md"][2:] == ({("S0HR",)}, {("S0HR",)})
    # A typo must not widen who reads it: the article is held back, and status says why.
    assert got["typo.md"][0] == [] and got["typo.md"][2:] == ({()}, {()})
    assert "'hr-team' is not an audience" in (got["typo.md"][1] or "")
    assert got["wifi"][0] == ["public"] and got["payroll"][0] == ["S0FIN"]
    status = index_status(database)
    assert status.held_back_articles == 1 and status.held_back[0][0] == "handbook"

    # Narrowing an article rewrites its audience everywhere without embedding anything again.
    (kb / "open.md").write_text("---\naudience: S0OPS\n---\n# Office hours\n\nThe office opens at 8 in the morning.\n")
    run = indexer.sync([FilesystemSource("handbook", kb), JsonlSource("faq", faq)])
    assert (run.updated, run.chunks_embedded) == (1, 0)
    assert audiences(database)["open.md"][2:] == ({("S0OPS",)}, {("S0OPS",)})


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "sources.yml"
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return path


@pytest.mark.parametrize(("body", "expected"), [
    ("sources:\n  - name: kb\n    type: filesystem\n    audience: hr\n    options: {path: kb}\n",
     r"sources\.yml:4: source 'kb': audience 'hr' is not an audience; an audience is `public`"),
    ("sources:\n  - name: zd\n    type: zendesk\n    options:\n      subdomain: acme\n      user_segments:\n"
     "        360001: agents\n", r"sources\.yml:7: source 'zd': options\.user_segments\.360001 'agents' is not an"),
    ("sources:\n  - name: zd\n    type: zendesk\n    options:\n      subdomain: acme\n      user_segments:\n"
     "        staff: S0AGENTS\n", r"sources\.yml:7: source 'zd': options\.user_segments\.staff"),
    ("sources:\n  - name: cf\n    type: confluence\n    options:\n      site: acme\n      spaces: [HR]\n"
     "      groups: {hr-team: [S0HR, nope]}\n", r"sources\.yml:7: source 'cf': options\.groups\.hr-team 'nope'"),
])
def test_access_mistakes_in_the_sources_file_name_file_line_and_field(tmp_path: Path, body: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        load_sources_file(write(tmp_path, body))


def test_the_sources_file_declares_audiences_and_mappings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZD_TOKEN", "t")
    monkeypatch.setenv("CF_TOKEN", "t")
    specs = load_sources_file(write(tmp_path, """\
        sources:
          - name: help
            type: zendesk
            audience: public
            options:
              subdomain: acme
              email: a@b.c
              token_env: ZD_TOKEN
              user_segments: {360001: [S0AGENTS], 360002: everyone}
          - name: wiki
            type: confluence
            options: {site: acme, spaces: [HR], email: a@b.c, token_env: CF_TOKEN, groups: {hr-team: S0HR}}
          - name: kb
            type: filesystem
            options: {path: kb}
        """))
    help_center, wiki, kb = (build_source(s) for s in specs)
    assert isinstance(help_center, ZendeskSource) and help_center.audience == ("public",)
    assert help_center.user_segments == {360001: ("S0AGENTS",), 360002: ("everyone",)}
    assert isinstance(wiki, ConfluenceSource) and wiki.groups == {"hr-team": ("S0HR",)}
    assert wiki.audience == ("everyone",)
    assert kb.audience == ("everyone",)


def test_ingest_audience_is_kept_by_later_runs(database_url: str, tmp_path: Path) -> None:
    kb = tmp_path / "legal"
    kb.mkdir()
    (kb / "nda.md").write_text("# NDA template\n\nUse the 2026 template for every vendor.\n")
    env = {"DATABASE_URL": database_url, "KBBOT_DATA_DIR": str(tmp_path / "data"), "HF_HUB_OFFLINE": "1"}
    runner = CliRunner()
    bad = runner.invoke(cli, ["ingest", str(kb), "--audience", "legal"], env=env)
    assert bad.exit_code == 2 and "'legal' is not an audience" in bad.output
    assert runner.invoke(cli, ["ingest", str(kb), "--audience", "S0LEGAL"], env=env).exit_code == 0
    (kb / "nda.md").write_text("# NDA template\n\nUse the 2027 template for every vendor.\n")
    assert runner.invoke(cli, ["ingest", str(kb)], env=env).exit_code == 0  # no flag: still S0LEGAL
    db = Database.from_url(database_url, migrate=False)
    try:
        assert audiences(db)["nda.md"][:1] == (["S0LEGAL"],)
    finally:
        db.close()


def zendesk(fake: FakeZendesk, **kwargs) -> ZendeskSource:  # type: ignore[no-untyped-def]
    return ZendeskSource("help-center", base_url=fake.url, email=fake.email, api_token=fake.token,
                         sleep=lambda _s: None, **kwargs)


def test_zendesk_user_segments_map_to_slack_groups_and_unmapped_ones_are_held_back(
        fake_zendesk: FakeZendesk, database: Database, embedder) -> None:  # type: ignore[no-untyped-def]
    agents = fake_zendesk.add_user_segment("Agents only")
    vip = fake_zendesk.add_user_segment("VIP customers", user_type="signed_in_users")
    section = fake_zendesk.add_section("Support", fake_zendesk.add_category("Help"))
    ids = {
        "open": fake_zendesk.add_article("Reset your password", "<p>Use the reset link.</p>", section_id=section),
        "agents": fake_zendesk.add_article("Refund overrides", "<p>Agents may override up to 500 EUR.</p>",
                                           section_id=section, user_segment_id=agents),
        "vip": fake_zendesk.add_article("VIP hotline", "<p>Call the VIP hotline.</p>", section_id=section,
                                        user_segment_id=vip),
    }
    fake_zendesk.tick(3600)
    indexer = Indexer(database, embedder, chunk_max_tokens=200)
    src = zendesk(fake_zendesk, user_segments={agents: ("S0AGENTS",)})
    src.audience = ("public",)  # a public help center
    indexer.sync([src])
    got = audiences(database)
    assert got[f"en-us/{ids['open']}"][0] == ["public"]
    assert got[f"en-us/{ids['agents']}"][0] == ["S0AGENTS"]
    assert got[f"en-us/{ids['vip']}"][:2] == ([], f"Zendesk user segment {vip} (VIP customers) is not mapped to "
                                                  "Slack: add it under options.user_segments in the sources file")
    [(source, reason, count)] = index_status(database).held_back
    assert (source, count) == ("help-center", 1) and "VIP customers" in reason

    # The segment moves at the source: the incremental export brings the article and its new audience.
    fake_zendesk.edit_article(ids["agents"], user_segment_id=vip)
    run = indexer.sync([zendesk(fake_zendesk, user_segments={agents: ("S0AGENTS",)})])
    assert run.kind == "incremental" and run.chunks_embedded == 0
    assert audiences(database)[f"en-us/{ids['agents']}"][0] == []
    assert index_status(database).held_back_articles == 2


def confluence(fake: FakeConfluence, **kwargs) -> ConfluenceSource:  # type: ignore[no-untyped-def]
    return ConfluenceSource("wiki", base_url=fake.url, email=fake.email, api_token=fake.token, spaces=["HR"],
                            sleep=lambda _s: None, **kwargs)


def test_confluence_read_restrictions_own_and_inherited_and_their_changes(
        fake_confluence: FakeConfluence, database: Database, embedder) -> None:  # type: ignore[no-untyped-def]
    fake = fake_confluence
    fake.add_space("HR", "People")
    home = fake.add_page("HR", "People handbook", "<p>Welcome to the people team pages.</p>")
    leave = fake.add_page("HR", "Parental leave", "<p>Sixteen weeks, fully paid.</p>", parent=home)
    cases = fake.add_page("HR", "Employee relations", "<p>How cases are handled.</p>", parent=home)
    case_log = fake.add_page("HR", "Open cases", "<p>Case 17: harassment complaint.</p>", parent=cases)
    both = fake.add_page("HR", "Legal holds", "<p>Holds on case files.</p>", parent=cases)
    private = fake.add_page("HR", "Draft reorg", "<p>Reorg plan.</p>", parent=home)
    fake.restrict_read(cases, groups=("hr-team", "hr-leads"))
    fake.restrict_read(both, groups=("legal", "hr-leads"))  # must pass both levels: hr-leads only
    fake.restrict_read(private, users=("5b10ac8d82e05b22cc7d4ef5",))
    fake.tick(3600)
    groups = {"hr-team": ("S0HR",), "hr-leads": ("S0HRLEADS",), "legal": ("S0LEGAL",)}
    indexer = Indexer(database, embedder, chunk_max_tokens=200)
    indexer.sync([confluence(fake, groups=groups)])
    got = audiences(database)
    assert got[leave][0] == ["everyone"]
    assert got[cases][0] == ["S0HR", "S0HRLEADS"]
    assert got[case_log][0] == ["S0HR", "S0HRLEADS"]  # inherited from its parent
    assert got[both][0] == ["S0HRLEADS"]
    assert got[private][0] == [] and "1 named users" in (got[private][1] or "")
    assert fake.requests_to(rf"/wiki/rest/api/content/{cases}/restriction/byOperation/read")

    # Restrictions change without a new version: the next incremental run still sees it.
    fake.restrict_read(cases)
    fake.restrict_read(leave, groups=("hr-team",))
    fake.tick(60)
    run = indexer.sync([confluence(fake, groups=groups)])
    assert run.kind == "incremental" and run.chunks_embedded == 0
    got = audiences(database)
    assert got[leave][0] == ["S0HR"] and got[leave][3] == {("S0HR",)}
    assert got[cases][0] == ["everyone"] and got[case_log][0] == ["everyone"]
    assert got[both][0] == ["S0HRLEADS", "S0LEGAL"]
