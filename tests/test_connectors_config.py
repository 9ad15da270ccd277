"""The sources file: every type builds its connector, secrets come from the environment by name, and every
mistake names the file, line and field; `Services.configured_sources` merges it with `ingest`'s sources."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from bot.services import Services
from retrieval.errors import ConfigError
from retrieval.sources import FilesystemSource, JsonlSource
from retrieval.sources.confluence import ConfluenceSource
from retrieval.sources.zendesk import ZendeskSource
from retrieval.sources_config import configured_sources, load_sources_file

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "sources.yml"
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return path


FULL = """\
sources:
  - name: help-center
    type: zendesk
    options:
      subdomain: acme
      locales: [en-us, fr]
      email: kb-bot@acme.example
      token_env: ZENDESK_API_TOKEN
  - name: eng-wiki
    type: confluence
    options:
      site: acme
      spaces: [ENG, IT]
      timezone: Europe/Paris
      email: kb-bot@acme.example
      token_env: CONFLUENCE_API_TOKEN
  - name: handbook
    type: filesystem
    options: {path: kb}
  - name: faq
    type: jsonl
    api_base_url: https://ignored.example
    options: {path: faq.jsonl}
  - name: old-wiki
    type: filesystem
    enabled: false
    options: {path: old}
"""


def test_every_type_builds_its_connector(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZENDESK_API_TOKEN", "zd-token")
    monkeypatch.setenv("CONFLUENCE_API_TOKEN", "cf-token")
    sources = configured_sources(write(tmp_path, FULL), [])
    assert [s.name for s in sources] == ["help-center", "eng-wiki", "handbook", "faq"]  # old-wiki is off
    zendesk, confluence, handbook, faq = sources
    assert isinstance(zendesk, ZendeskSource) and zendesk.base_url == "https://acme.zendesk.com"
    assert zendesk.locales == ("en-us", "fr")
    assert isinstance(confluence, ConfluenceSource) and confluence.base_url == "https://acme.atlassian.net"
    assert confluence.spaces == ("ENG", "IT") and str(confluence.timezone) == "Europe/Paris"
    assert isinstance(handbook, FilesystemSource) and handbook.root == tmp_path / "kb"  # relative to the file
    assert isinstance(faq, JsonlSource)
    assert "zd-token" not in str(zendesk.config()) and "cf-token" not in str(confluence.config())


def test_api_base_url_overrides_the_derived_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZD_OAUTH", "oauth-token")
    path = write(tmp_path, """\
        sources:
          - name: hc
            type: zendesk
            api_base_url: http://127.0.0.1:8080
            options: {oauth_token_env: ZD_OAUTH}
        """)
    [source] = configured_sources(path, [])
    assert isinstance(source, ZendeskSource) and source.base_url == "http://127.0.0.1:8080"


def test_secrets_can_come_from_dotenv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("CONFLUENCE_API_TOKEN=from-dotenv\n")
    path = write(tmp_path, """\
        sources:
          - name: wiki
            type: confluence
            options: {site: acme, spaces: [ENG], email: a@b.example, token_env: CONFLUENCE_API_TOKEN}
        """)
    [source] = configured_sources(path, [])
    assert isinstance(source, ConfluenceSource)


@pytest.mark.parametrize(("body", "expected"), [
    ("sources:\n  - name: hc\n    type: zendsk\n    options: {}\n",
     r"sources\.yml:3: source 'hc': type Input should be 'filesystem', 'jsonl', 'zendesk' or 'confluence'"),
    ("sources:\n  - name: wiki\n    type: confluence\n    options:\n      site: acme\n      email: a@b.c\n",
     r"sources\.yml:4: source 'wiki': options\.spaces is required"),
    ("sources:\n  - name: hc\n    type: zendesk\n    options:\n      subdomain: acme\n      token: abc123\n",
     r"sources\.yml:6: source 'hc': options\.token secrets are not written in the sources file.*token_env"),
    ("sources:\n  - name: hc\n    type: zendesk\n    options:\n      subdomain: acme\n      locale: [en-us]\n",
     r"sources\.yml:6: source 'hc': options\.locale unknown field"),
    ("sources:\n  - name: a\n    type: filesystem\n    options: {path: x}\n"
     "  - name: a\n    type: filesystem\n    options: {path: y}\n",
     r"sources\.yml:5: source 'a': the name is already used on line 2"),
    ("sources:\n  - name: hc\n    type: zendesk\n    options: {email: a@b.c, token_env: T}\n",
     r"sources\.yml:4: source 'hc': options\.subdomain .* or api_base_url is required"),
    ("sources:\n  - name: hc\n    type: [zendesk\n", r"sources\.yml:\d+: not valid YAML"),
    ("sources: {name: hc}\n", r"sources\.yml:1: expected a top-level `sources:` list"),
    ("source:\n  - name: hc\n", r"sources\.yml:1: expected a top-level `sources:` list"),
    ("sources:\n  - name: bad name!\n    type: filesystem\n    options: {path: x}\n",
     r"sources\.yml:2: source 'bad name!': name must be letters, digits"),
    ("sources:\n  - name: hc\n    type: zendesk\n    options:\n      subdomain: acme.zendesk.com\n",
     r"sources\.yml:5: source 'hc': options\.subdomain must be the Zendesk subdomain alone"),
])
def test_mistakes_name_the_file_line_and_field(tmp_path: Path, body: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        load_sources_file(write(tmp_path, body))


def test_an_unset_secret_names_the_variable(tmp_path: Path) -> None:
    path = write(tmp_path, FULL)
    with pytest.raises(ConfigError, match=r"sources\.yml:2: source 'help-center': options\.token_env names "
                                          r"ZENDESK_API_TOKEN, which is not set"):
        configured_sources(path, [])


def test_a_missing_file_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"does not exist: create it \(see examples/sources\.yml\)"):
        load_sources_file(tmp_path / "nope.yml")


def test_the_documented_example_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ZENDESK_API_TOKEN", "CONFLUENCE_API_TOKEN"):
        monkeypatch.setenv(name, "x")
    specs = load_sources_file(REPO / "examples" / "sources.yml")
    assert {s.type for s in specs} == {"zendesk", "confluence", "filesystem"}
    assert configured_sources(REPO / "examples" / "sources.yml", [])


def test_services_merge_the_file_with_ingested_sources(make_settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    services = Services(make_settings(sources_file=write(tmp_path, """\
        sources:
          - name: handbook
            type: filesystem
            options: {path: kb}
        """)))
    try:
        from sqlalchemy import text

        with services.database().engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO sources (name, kind, config) VALUES "
                "('handbook', 'filesystem', '{\"path\": \"/elsewhere\"}'), "
                "('ingested', 'jsonl', '{\"path\": \"/data/faq.jsonl\"}'), "
                "('dropped-zendesk', 'zendesk', '{\"base_url\": \"https://x.zendesk.com\"}')"))
        sources = services.configured_sources()
        assert [(s.name, type(s).__name__) for s in sources] == [
            ("handbook", "FilesystemSource"), ("ingested", "JsonlSource")]
        assert sources[0].root == tmp_path / "kb"  # type: ignore[attr-defined]  # the file wins
    finally:
        services.close()
