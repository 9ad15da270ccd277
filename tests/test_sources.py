"""Sources: folder of Markdown/HTML/text files and JSONL, including every way a file can be bad."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from retrieval.errors import ArticleError, SourceError
from retrieval.sources import FilesystemSource, JsonlSource, source_for_path
from retrieval.types import Article

REPO = Path(__file__).resolve().parents[1]
AWS_DOCS = Path(__file__).resolve().parents[2] / "shared/data/aws-docs-qa"

VPN_MD = """---
title: Connecting to the VPN
url: https://wiki.example/it/vpn
owner: it-team
updated: 2026-09-14
tags: [network, remote]
---

# Connecting to the VPN

Use **NorthGate** to reach internal systems.

## Troubleshooting

### Error 809

Switch to the TCP fallback.
"""

REVIEWS_HTML = """<!DOCTYPE html>
<html><head>
  <title>Performance reviews</title>
  <meta name="kb-url" content="https://wiki.example/hr/reviews">
  <meta property="article:modified_time" content="2026-08-01T09:30:00+02:00">
  <style>body { color: red }</style>
  <script>var tracking = "do not index";</script>
</head><body>
  <nav><a href="/">Home</a> <a href="/hr">HR</a></nav>
  <h1>Performance reviews</h1>
  <p>One full review a year,
     and a <strong>check-in</strong> in June.</p>
  <h2>Timeline</h2>
  <table>
    <thead><tr><th>Step</th><th>Due</th></tr></thead>
    <tbody>
      <tr><td>Self-review</td><td>30 October</td></tr>
      <tr><td>Peer feedback</td><td>6 November</td></tr>
    </tbody>
  </table>
  <h3>Who takes part</h3>
  <ul>
    <li>Everyone who started before <em>1 September</em>.</li>
    <li>New starters:
      <ol><li>a check-in</li><li>no rating</li></ol>
    </li>
  </ul>
  <pre>review --year 2026
  --team all</pre>
  <!-- a comment that must not show -->
</body></html>
"""


def write(root: Path, relative: str, content: str | bytes) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def read_all(root: Path) -> list[Article | ArticleError]:
    return list(FilesystemSource("kb", root).iter_articles())


def only_article(root: Path) -> Article:
    (item,) = read_all(root)
    assert isinstance(item, Article), item
    return item


def only_error(root: Path) -> ArticleError:
    (item,) = read_all(root)
    assert isinstance(item, ArticleError), item
    return item


# --- Markdown --------------------------------------------------------------------------------------
def test_markdown_front_matter_fills_the_article(tmp_path: Path) -> None:
    write(tmp_path, "it/vpn.md", VPN_MD)
    article = only_article(tmp_path)
    assert article.external_id == "it/vpn.md"
    assert article.title == "Connecting to the VPN"
    assert article.url == "https://wiki.example/it/vpn"
    assert article.owner == "it-team"
    assert article.updated_at == datetime(2026, 9, 14, tzinfo=UTC)
    assert article.metadata == {"format": "markdown", "tags": ["network", "remote"]}
    assert article.text.startswith("# Connecting to the VPN")
    assert "---" not in article.text and "owner:" not in article.text


def test_front_matter_datetime_becomes_utc(tmp_path: Path) -> None:
    write(tmp_path, "a.md", "---\nupdated_at: 2026-03-01T10:00:00+02:00\n---\nBody.\n")
    assert only_article(tmp_path).updated_at == datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def test_front_matter_date_as_text_is_parsed(tmp_path: Path) -> None:
    write(tmp_path, "a.md", "---\nupdated: '2026-03-01'\n---\nBody.\n")
    assert only_article(tmp_path).updated_at == datetime(2026, 3, 1, tzinfo=UTC)


def test_front_matter_bad_date_is_reported(tmp_path: Path) -> None:
    write(tmp_path, "a.md", "---\nupdated: last tuesday\n---\nBody.\n")
    error = only_error(tmp_path)
    assert "last tuesday" in str(error) and "ISO 8601" in str(error)


def test_markdown_title_falls_back_to_first_heading_then_file_name(tmp_path: Path) -> None:
    write(tmp_path, "a/guide.md", "```\n# not a title\n```\n\n# Real title<a name=\"x\"></a>\n\nText.\n")
    write(tmp_path, "b/wifi_guest-network.markdown", "Just text, no heading.\n")
    first, second = read_all(tmp_path)
    assert isinstance(first, Article) and first.title == "Real title"
    assert isinstance(second, Article) and second.title == "Wifi guest network"


def test_bad_yaml_front_matter_is_reported_with_its_line(tmp_path: Path) -> None:
    write(tmp_path, "bad.md", "---\ntitle: VPN\nowner: [it-team\n---\nBody.\n")
    error = only_error(tmp_path)
    assert "front matter is not valid YAML" in str(error)
    assert "line " in str(error)
    assert error.location.endswith("bad.md")
    assert error.external_id == "bad.md"


def test_front_matter_that_is_not_a_mapping_is_reported(tmp_path: Path) -> None:
    write(tmp_path, "list.md", "---\n- a\n- b\n---\nBody.\n")
    assert "mapping" in str(only_error(tmp_path))


def test_unclosed_front_matter_is_reported(tmp_path: Path) -> None:
    write(tmp_path, "open.md", "---\ntitle: VPN\n\nBody without a closing line.\n")
    assert "never closed" in str(only_error(tmp_path))


def test_front_matter_without_body_is_an_empty_article(tmp_path: Path) -> None:
    write(tmp_path, "empty.md", "---\ntitle: Nothing here\n---\n\n   \n")
    error = only_error(tmp_path)
    assert "empty" in str(error) and "front matter" in str(error)


def test_whitespace_only_file_is_an_empty_article(tmp_path: Path) -> None:
    write(tmp_path, "blank.txt", "\n  \n\t\n")
    assert "empty" in str(only_error(tmp_path))


def test_windows_line_endings_are_normalised(tmp_path: Path) -> None:
    write(tmp_path, "crlf.md", b"---\r\ntitle: CRLF\r\n---\r\nLine one.\r\nLine two.\r\n")
    article = only_article(tmp_path)
    assert article.title == "CRLF"
    assert article.text == "Line one.\nLine two."


# --- HTML ------------------------------------------------------------------------------------------
def test_html_becomes_markdown_with_headings_lists_and_tables(tmp_path: Path) -> None:
    write(tmp_path, "hr/reviews.html", REVIEWS_HTML)
    article = only_article(tmp_path)
    assert article.title == "Performance reviews"
    assert article.url == "https://wiki.example/hr/reviews"
    assert article.updated_at == datetime(2026, 8, 1, 7, 30, tzinfo=UTC)
    assert article.metadata["format"] == "html"
    text = article.text
    assert text.startswith("# Performance reviews\n\nOne full review a year, and a check-in in June.")
    assert "\n## Timeline\n" in text
    assert "- Step: Self-review; Due: 30 October\n- Step: Peer feedback; Due: 6 November" in text
    assert "\n### Who takes part\n" in text
    assert "- Everyone who started before 1 September.\n- New starters:\n  1. a check-in\n  2. no rating" \
        in text
    assert "```\nreview --year 2026\n  --team all\n```" in text
    for dropped in ("tracking", "color: red", "Home", "comment"):
        assert dropped not in text


def test_html_title_from_h1_and_canonical_url(tmp_path: Path) -> None:
    write(tmp_path, "page.htm", '<link rel="canonical" href="https://wiki.example/page">'
                                "<h1>Badge access</h1><p>Tap your badge.</p>"
                                '<meta name="kb-updated" content="2025-01-02">')
    article = only_article(tmp_path)
    assert article.title == "Badge access"
    assert article.url == "https://wiki.example/page"
    assert article.updated_at == datetime(2025, 1, 2, tzinfo=UTC)


def test_html_main_element_leaves_out_the_page_chrome(tmp_path: Path) -> None:
    write(tmp_path, "page.html", "<body><header><p>Security » Policies</p></header>"
                                 "<main><h1>Data classification</h1><p>Four levels.</p></main>"
                                 "<footer>© Northwind</footer></body>")
    article = only_article(tmp_path)
    assert article.text == "# Data classification\n\nFour levels."


def test_html_without_visible_text_is_an_empty_article(tmp_path: Path) -> None:
    write(tmp_path, "blank.html", "<html><head><title>T</title><script>x()</script></head><body> </body>")
    assert "empty" in str(only_error(tmp_path))


# --- plain text ------------------------------------------------------------------------------------
def test_txt_title_is_the_first_non_empty_line(tmp_path: Path) -> None:
    write(tmp_path, "printing.txt",
          "\n\nPrinting in the offices\n\nSend jobs to the shared queue.\nTap your badge.\n")
    article = only_article(tmp_path)
    assert article.title == "Printing in the offices"
    assert article.text == "Send jobs to the shared queue.\nTap your badge."
    assert article.metadata == {"format": "text"}


def test_one_line_txt_keeps_its_line_as_the_body(tmp_path: Path) -> None:
    write(tmp_path, "note.txt", "The guest Wi-Fi password is on the fridge.\n")
    article = only_article(tmp_path)
    assert article.title == article.text == "The guest Wi-Fi password is on the fridge."


# --- bad bytes -------------------------------------------------------------------------------------
def test_binary_file_is_reported(tmp_path: Path) -> None:
    write(tmp_path, "logo.md", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    error = only_error(tmp_path)
    assert "binary" in str(error)
    assert error.external_id == "logo.md"


def test_bad_encoding_names_the_byte_offset_and_suggests_utf8(tmp_path: Path) -> None:
    write(tmp_path, "cafe.txt", "Café menu\nOpening hours\n".encode("latin-1"))
    error = only_error(tmp_path)
    message = str(error)
    assert "not valid UTF-8" in message
    assert "0xe9" in message and "offset 3" in message and "line 1" in message
    assert "re-save the file as UTF-8" in message


def test_bad_byte_offset_counts_from_the_start_of_the_file_after_a_bom(tmp_path: Path) -> None:
    write(tmp_path, "bom.md", b"\xef\xbb\xbfHello\nWorld \xff\n")
    assert "offset 15 (line 2)" in str(only_error(tmp_path))


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    write(tmp_path, "bom.md", b"\xef\xbb\xbf---\ntitle: With BOM\n---\nBody.\n")
    article = only_article(tmp_path)
    assert article.title == "With BOM" and article.text == "Body."


def test_utf16_is_reported_not_guessed(tmp_path: Path) -> None:
    write(tmp_path, "wide.txt", "Title\nBody\n".encode("utf-16"))
    assert "UTF-16" in str(only_error(tmp_path))


# --- the folder ------------------------------------------------------------------------------------
def test_folder_is_read_recursively_in_sorted_order_skipping_hidden_and_unsupported(tmp_path: Path) -> None:
    write(tmp_path, "zeta.md", "Z.")
    write(tmp_path, "it/vpn.md", "VPN.")
    write(tmp_path, "it/Wifi.HTML", "<p>Wi-Fi.</p>")
    write(tmp_path, "hr/pto.txt", "PTO\nTake time off.")
    write(tmp_path, ".git/config.md", "hidden folder")
    write(tmp_path, "it/.draft.md", "hidden file")
    write(tmp_path, "it/diagram.png", b"\x89PNG")
    write(tmp_path, "notes.docx", b"PK")
    ids = [item.external_id for item in read_all(tmp_path) if isinstance(item, Article)]
    assert ids == ["hr/pto.txt", "it/Wifi.HTML", "it/vpn.md", "zeta.md"]


def test_one_bad_file_does_not_stop_the_others(tmp_path: Path) -> None:
    write(tmp_path, "a.md", "Good.")
    write(tmp_path, "b.md", b"\x00\x01")
    write(tmp_path, "c.md", "Also good.")
    kinds = [type(item).__name__ for item in read_all(tmp_path)]
    assert kinds == ["Article", "ArticleError", "Article"]


def test_missing_folder_raises_source_error(tmp_path: Path) -> None:
    source = FilesystemSource("kb", tmp_path / "nope")
    with pytest.raises(SourceError, match="does not exist"):
        list(source.iter_articles())


# --- JSONL -----------------------------------------------------------------------------------------
def write_jsonl(path: Path, lines: list[object | str]) -> Path:
    rendered = [line if isinstance(line, str) else json.dumps(line) for line in lines]
    path.write_text("\n".join(rendered) + "\n", encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[Article | ArticleError]:
    return list(JsonlSource("corpus", path).iter_articles())


def test_jsonl_full_record(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "kb.jsonl", [{
        "id": "vpn", "title": "VPN", "text": "Use NorthGate.", "url": "https://wiki.example/vpn",
        "updated_at": "2026-09-14T10:00:00Z", "owner": "it-team", "team": "IT", "views": 12,
    }])
    (article,) = read_jsonl(path)
    assert article == Article(
        external_id="vpn", title="VPN", text="Use NorthGate.", url="https://wiki.example/vpn",
        owner="it-team", updated_at=datetime(2026, 9, 14, 10, 0, tzinfo=UTC),
        metadata={"team": "IT", "views": 12},
    )


def test_beir_corpus_line_loads_as_is(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "corpus.jsonl", [
        {"_id": "guide/setup.md", "title": "Setting up", "text": "# Setting up\n\nInstall it.",
         "metadata": {"url": "https://docs.example/setup", "lang": "en"}},
        {"_id": 4983, "title": "", "text": "Microstructural development of human brain white matter."},
    ])
    first, second = read_jsonl(path)
    assert isinstance(first, Article) and isinstance(second, Article)
    assert (first.external_id, first.title) == ("guide/setup.md", "Setting up")
    assert first.metadata == {"url": "https://docs.example/setup", "lang": "en"}
    assert second.external_id == "4983"
    assert second.title == "Microstructural development of human brain white matter."


def test_malformed_jsonl_lines_are_reported_with_their_line_numbers(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "kb.jsonl", [
        {"id": "ok", "text": "Fine."},
        "",
        '{"id": "broken", "text": "missing brace"',
        {"title": "no id", "text": "x"},
        {"id": "no-text"},
        {"id": "blank", "text": "   "},
        {"id": ["a"], "text": "x"},
        {"id": "typed", "text": 42},
        {"id": "bad-url", "text": "x", "url": 7},
        {"id": "bad-date", "text": "x", "updated_at": "yesterday"},
        "[1, 2]",
        {"id": "last", "text": "Still read."},
    ])
    items = read_jsonl(path)
    assert [i.external_id for i in items if isinstance(i, Article)] == ["ok", "last"]
    errors = {e.location.rsplit(":", 1)[1]: str(e) for e in items if isinstance(e, ArticleError)}
    assert set(errors) == {"3", "4", "5", "6", "7", "8", "9", "10", "11"}
    assert "not valid JSON" in errors["3"]
    assert 'no "id"' in errors["4"]
    assert 'no "text"' in errors["5"]
    assert "empty" in errors["6"]
    assert '"id" must be a string' in errors["7"]
    assert '"text" must be a string' in errors["8"]
    assert '"url" must be a string' in errors["9"]
    assert "ISO 8601" in errors["10"]
    assert "JSON object" in errors["11"]
    assert all(e.startswith(f"{path}:") for e in errors.values())


def test_jsonl_error_keeps_the_id_when_known(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "kb.jsonl", [{"id": "blank", "text": ""}, "{oops"])
    known, unknown = read_jsonl(path)
    assert isinstance(known, ArticleError) and known.external_id == "blank"
    assert isinstance(unknown, ArticleError) and unknown.external_id is None


def test_duplicate_id_keeps_the_first_and_names_both_lines(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "kb.jsonl", [
        {"id": "vpn", "text": "First."},
        {"id": "wifi", "text": "Other."},
        {"_id": "vpn", "text": "Second."},
    ])
    first, _, duplicate = read_jsonl(path)
    assert isinstance(first, Article) and first.text == "First."
    assert isinstance(duplicate, ArticleError)
    assert duplicate.location == f"{path}:3"
    assert "duplicate id 'vpn'" in str(duplicate) and "line 1" in str(duplicate)
    assert duplicate.external_id is None  # the first line's article stands; nothing to keep or drop


def test_jsonl_bad_utf8_line_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "kb.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"id": "a", "text": "ok"}\n{"id": "b", "text": "caf\xe9"}\n')
    first, second = read_jsonl(path)
    assert isinstance(first, Article)
    assert isinstance(second, ArticleError) and "UTF-8" in str(second) and second.location.endswith(":2")


def test_missing_jsonl_file_raises_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="does not exist"):
        read_jsonl(tmp_path / "missing.jsonl")


# --- source_for_path -------------------------------------------------------------------------------
def test_source_for_path_picks_the_connector_and_default_name(tmp_path: Path) -> None:
    folder = tmp_path / "handbook"
    write(folder, "a.md", "A.")
    corpus = write_jsonl(tmp_path / "corpus.jsonl", [{"_id": "1", "text": "x"}])
    single = write(tmp_path, "faq.md", "# FAQ\n\nAnswers.")

    by_folder = source_for_path(folder)
    assert isinstance(by_folder, FilesystemSource) and by_folder.name == "handbook"
    by_file = source_for_path(corpus, name="aws")
    assert isinstance(by_file, JsonlSource) and by_file.name == "aws"
    one = source_for_path(single)
    assert isinstance(one, FilesystemSource) and one.name == "faq"
    (article,) = list(one.iter_articles())
    assert isinstance(article, Article) and article.external_id == "faq.md"


def test_source_for_path_rejects_missing_and_unsupported_paths(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="does not exist"):
        source_for_path(tmp_path / "nowhere")
    pdf = write(tmp_path, "manual.pdf", b"%PDF")
    with pytest.raises(SourceError, match="not a supported source"):
        source_for_path(pdf)


# --- real data -------------------------------------------------------------------------------------
def test_demo_kb_loads_without_errors() -> None:
    demo = REPO / "demo_kb"
    if not demo.is_dir():
        pytest.skip("demo_kb/ is not in this checkout")
    items = list(FilesystemSource("demo", demo).iter_articles())
    assert items and not [i for i in items if isinstance(i, ArticleError)]


@pytest.mark.shared_data
def test_aws_docs_corpus_loads_completely() -> None:
    corpus = AWS_DOCS / "corpus.jsonl"
    if not corpus.is_file():
        pytest.skip(f"{corpus} is not available on this machine")
    items = list(JsonlSource("aws-docs", corpus).iter_articles())
    errors = [i for i in items if isinstance(i, ArticleError)]
    assert not errors, errors[:3]
    assert len(items) == 2791
    assert all(isinstance(i, Article) and i.title and i.text for i in items)
