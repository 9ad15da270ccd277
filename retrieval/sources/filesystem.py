"""A folder of KB articles on disk: Markdown (with optional YAML front matter), HTML and plain text.

    kb/
      it/vpn.md            -> external_id "it/vpn.md"
      hr/reviews.html      -> external_id "hr/reviews.html"
      .drafts/wip.md       -> skipped (hidden)

Files are read as UTF-8 (a UTF-8 byte-order mark is accepted). A file that cannot be read as an
article -- binary, another encoding, empty, broken front matter -- is reported as an `ArticleError`
naming the file and what to do about it; nothing is guessed or silently repaired.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime
from pathlib import Path

import yaml
from bs4 import BeautifulSoup, NavigableString, Tag
from bs4.element import PreformattedString

from retrieval.access import audience_field
from retrieval.chunking import clean_heading
from retrieval.errors import ArticleError, SourceError
from retrieval.sources.base import Source, SourceItem
from retrieval.types import Article

logger = logging.getLogger(__name__)

MARKDOWN_SUFFIXES = frozenset({".md", ".markdown"})
HTML_SUFFIXES = frozenset({".html", ".htm"})
TEXT_SUFFIXES = frozenset({".txt"})
SUPPORTED_SUFFIXES = MARKDOWN_SUFFIXES | HTML_SUFFIXES | TEXT_SUFFIXES

_UTF8_BOM = b"\xef\xbb\xbf"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_RESAVE_HINT = "re-save the file as UTF-8 (most editors offer it under 'Save with encoding')"


class _Unreadable(Exception):
    """One file cannot become an article; carries the message for the ArticleError."""


class FilesystemSource(Source):
    """Articles from a folder tree, or from a single supported file.

    `root` may be a directory (read recursively, in sorted path order, hidden files and folders
    skipped) or one `.md`/`.markdown`/`.html`/`.htm`/`.txt` file, whose external_id is then its name.
    """

    kind = "filesystem"

    def __init__(self, name: str, root: Path) -> None:
        super().__init__(name)
        self.root = Path(root)

    def config(self) -> dict[str, object]:
        return {"path": str(self.root.resolve())}

    def describe(self) -> str:
        return f"{self.kind}:{self.name} ({self.root})"

    def iter_articles(self) -> Iterator[SourceItem]:
        for external_id, path in self._list_files():
            yield read_article_file(path, external_id)

    def _list_files(self) -> list[tuple[str, Path]]:
        if self.root.is_file():
            if self.root.suffix.lower() not in SUPPORTED_SUFFIXES:
                raise SourceError(
                    f"{self.root} is not a supported article file: use a folder, or a "
                    f"{', '.join(sorted(SUPPORTED_SUFFIXES))} file."
                )
            return [(self.root.name, self.root)]
        if not self.root.is_dir():
            raise SourceError(missing_path(f"The knowledge-base folder {self.root}", self.name))
        return _walk(self.root)


def missing_path(what: str, source: str) -> str:
    """A path-based source whose path is gone. It came from the sources file or from `kbbot ingest`, which
    a source does not know: name both ways of pointing it at the new place."""
    return (f"{what} does not exist (source {source!r}): restore it, point the source at where it is now "
            f"(its `path:` in the sources file, or `kbbot ingest NEW-PATH --name {source}`), or take it out of "
            f"the index with `kbbot forget {source}`.")


def _walk(root: Path) -> list[tuple[str, Path]]:
    files: list[tuple[str, Path]] = []
    ignored: dict[str, int] = {}  # files of unsupported types, by extension

    def fail(exc: OSError) -> None:
        # An unreadable sub-folder would make its articles look deleted: fail the whole listing instead.
        raise SourceError(f"Cannot list {exc.filename}: {exc.strerror}. Fix its permissions and sync again.")

    for folder, dirnames, filenames in os.walk(root, onerror=fail):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for filename in filenames:
            if filename.startswith("."):
                continue
            path = Path(folder, filename)
            if path.suffix.lower() in SUPPORTED_SUFFIXES:
                files.append((path.relative_to(root).as_posix(), path))
            else:
                kind = path.suffix.lower() or "(no extension)"
                ignored[kind] = ignored.get(kind, 0) + 1
                logger.debug("ignoring %s: not a supported article type", path)
    if ignored and not files:
        # A folder of PDFs or Word files would otherwise sync "successfully" with nothing in it.
        logger.warning("%s holds no article kbbot reads: its %d files are %s; kbbot reads %s files", root,
                       sum(ignored.values()), ", ".join(sorted(ignored)), ", ".join(sorted(SUPPORTED_SUFFIXES)))
    elif ignored:
        logger.debug("%s: ignored %d files with unsupported extensions", root, sum(ignored.values()))
    files.sort(key=lambda item: item[0])
    return files


def read_article_file(path: Path, external_id: str) -> SourceItem:
    """Read one file as an Article, or explain why it cannot be one."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return ArticleError(f"cannot be read ({exc.strerror})", location=str(path), external_id=external_id)
    suffix = path.suffix.lower()
    try:
        text = _decode(raw)
        if suffix in MARKDOWN_SUFFIXES:
            article = _markdown_article(text, external_id, path)
        elif suffix in HTML_SUFFIXES:
            article = _html_article(text, external_id, path)
        else:
            article = _text_article(text, external_id)
    except _Unreadable as exc:
        return ArticleError(str(exc), location=str(path), external_id=external_id)
    return article


# --- bytes to text ---------------------------------------------------------------------------------
def _decode(raw: bytes) -> str:
    if raw.startswith(_UTF16_BOMS):
        raise _Unreadable(f"is encoded as UTF-16, not UTF-8: {_RESAVE_HINT}")
    if b"\x00" in raw:
        offset = raw.index(b"\x00")
        raise _Unreadable(f"looks like a binary file (NUL byte at offset {offset}), not a text article")
    bom = len(_UTF8_BOM) if raw.startswith(_UTF8_BOM) else 0
    try:
        text = raw[bom:].decode("utf-8")
    except UnicodeDecodeError as exc:
        offset = bom + exc.start
        line = raw.count(b"\n", 0, offset) + 1
        raise _Unreadable(
            f"is not valid UTF-8: byte 0x{raw[offset]:02x} at offset {offset} (line {line}) cannot be "
            f"decoded; {_RESAVE_HINT}"
        ) from exc
    # One line-ending convention, so an article's hash does not depend on the editor that saved it.
    return text.replace("\r\n", "\n").replace("\r", "\n")


# --- Markdown ----------------------------------------------------------------------------------------
_FRONT_MATTER_CLOSE = re.compile(r"^(?:---|\.\.\.)[ \t]*$", re.MULTILINE)
_MARKDOWN_H1 = re.compile(r"^ {0,3}#[ \t]+(.+?)(?:[ \t]+#+)?[ \t]*$")
_FENCE = re.compile(r"^[ \t]*(?:```|~~~)")
_KNOWN_KEYS = frozenset({"title", "url", "owner", "updated", "updated_at", "audience"})


def _markdown_article(text: str, external_id: str, path: Path) -> Article:
    meta, body = _split_front_matter(text)
    body = body.strip()
    if not body:
        where = " after the front matter" if text.startswith("---") else ""
        raise _Unreadable(f"is empty: it has no text{where} to index")
    title = _optional_text(meta, "title") or _first_markdown_h1(body) or humanise_stem(path.stem)
    updated = meta.get("updated_at", meta.get("updated"))
    extra = {key: _json_safe(value) for key, value in meta.items() if key not in _KNOWN_KEYS}
    audience, held_back = audience_field(meta.get("audience"), "front matter field 'audience'")
    return Article(
        external_id=external_id,
        title=title,
        text=body,
        url=_optional_text(meta, "url"),
        owner=_optional_text(meta, "owner"),
        updated_at=_field_datetime(updated, "updated") if updated is not None else None,
        metadata={"format": "markdown", **extra},
        audience=audience,
        held_back=held_back,
    )


def _split_front_matter(text: str) -> tuple[dict[str, object], str]:
    first_line, _, rest = text.partition("\n")
    if first_line.rstrip() != "---":
        return {}, text
    close = _FRONT_MATTER_CLOSE.search(rest)
    if close is None:
        raise _Unreadable("front matter opened with '---' on line 1 is never closed: add a '---' line "
                          "after it")
    try:
        meta = yaml.safe_load(rest[: close.start()])
    except yaml.YAMLError as exc:
        problem = _yaml_problem(exc)
        raise _Unreadable(f"front matter is not valid YAML ({problem}); fix it or remove it") from exc
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        raise _Unreadable("front matter must be 'key: value' lines (a YAML mapping)")
    return {str(key): value for key, value in meta.items()}, rest[close.end():]


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    if mark is None:
        return problem
    # +2: the YAML starts on the file's second line, and marks count from zero.
    return f"line {mark.line + 2}: {problem}"


def _first_markdown_h1(body: str) -> str | None:
    in_fence = False
    for line in body.split("\n"):
        if _FENCE.match(line):
            in_fence = not in_fence
            continue
        match = None if in_fence else _MARKDOWN_H1.match(line)
        if match:
            return clean_heading(match.group(1)) or None
    return None


def _optional_text(meta: Mapping[str, object], key: str) -> str | None:
    value = meta.get(key)
    if value is None:
        return None
    if isinstance(value, dict | list):
        raise _Unreadable(f"front matter field {key!r} must be a single value, not a list or mapping")
    return str(value).strip() or None


def _json_safe(value: object) -> object:
    """Front-matter values go to Article.metadata, stored as JSON: YAML dates become ISO strings."""
    if isinstance(value, date | datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


# --- dates -------------------------------------------------------------------------------------------
def as_utc_datetime(value: object) -> datetime:
    """A date, datetime or ISO 8601 string as a timezone-aware UTC datetime.

    Naive values are taken to be UTC already. Raises ValueError for anything else.
    """
    if isinstance(value, str):
        value = datetime.fromisoformat(value.strip())
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    raise ValueError(f"expected a date or an ISO 8601 timestamp, got {value!r}")


def _field_datetime(value: object, field: str) -> datetime:
    try:
        return as_utc_datetime(value)
    except ValueError as exc:
        raise _Unreadable(
            f"{field} {value!r} is not a date: use ISO 8601, e.g. 2026-09-14 or 2026-09-14T10:00:00Z"
        ) from exc


# --- plain text --------------------------------------------------------------------------------------
def _text_article(text: str, external_id: str) -> Article:
    stripped = text.strip()
    if not stripped:
        raise _Unreadable("is empty: it has no text to index")
    first_line, _, rest = stripped.partition("\n")
    # A one-line file is still an answer: its only line is both title and body.
    body = rest.strip() or first_line.strip()
    return Article(external_id=external_id, title=first_line.strip(), text=body, metadata={"format": "text"})


def humanise_stem(stem: str) -> str:
    """`sso_password-reset` -> `Sso password reset`: a readable title for an untitled file."""
    words = re.sub(r"[-_\s]+", " ", stem).strip()
    return words[:1].upper() + words[1:] if words else stem


# --- HTML --------------------------------------------------------------------------------------------
def _html_article(html: str, external_id: str, path: Path) -> Article:
    soup = BeautifulSoup(html, "html.parser")
    title_tag = soup.find("title")
    h1 = soup.find("h1")
    title = (_tag_text(title_tag) if title_tag else "") or (_tag_text(h1) if h1 else "")
    updated = _meta_content(soup, name="kb-updated") or _meta_content(soup, property="article:modified_time")
    # <main> marks the page's own content, leaving out headers, breadcrumbs and footers around it.
    main = soup.find("main")
    body = html_to_markdown(main if isinstance(main, Tag) else soup.body or soup)
    if not body:
        raise _Unreadable("is empty: the HTML has no visible text")
    return Article(
        external_id=external_id,
        title=title or humanise_stem(path.stem),
        text=body,
        url=_meta_content(soup, name="kb-url") or _canonical_link(soup),
        owner=_meta_content(soup, name="kb-owner") or _meta_content(soup, name="author"),
        updated_at=_field_datetime(updated, "kb-updated") if updated else None,
        metadata={"format": "html"},
    )


def _meta_content(soup: BeautifulSoup, **attrs: str) -> str | None:
    tag = soup.find("meta", attrs=attrs)
    content = tag.get("content") if isinstance(tag, Tag) else None
    return (content.strip() or None) if isinstance(content, str) else None


def _canonical_link(soup: BeautifulSoup) -> str | None:
    tag = soup.find("link", rel="canonical")
    href = tag.get("href") if isinstance(tag, Tag) else None
    return (href.strip() or None) if isinstance(href, str) else None


def _tag_text(tag: object) -> str:
    return " ".join(tag.get_text(" ").split()) if isinstance(tag, Tag) else ""


_DROPPED_TAGS = frozenset({
    "script", "style", "nav", "noscript", "template", "head", "title", "meta", "link", "svg", "iframe",
    "button", "select", "option", "input", "textarea",
})
_HEADING_LEVELS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
_BLOCK_TAGS = frozenset({
    "p", "div", "section", "article", "main", "header", "footer", "aside", "blockquote", "figure",
    "figcaption", "dl", "dt", "dd", "form", "fieldset", "details", "summary", "address", "caption", "hr",
    "body", "html",
})


def html_to_markdown(root: Tag) -> str:
    """Markdown-ish text of an HTML tree: `#` headings, `- ` list items, tables as one line per row."""
    writer = _MarkdownWriter()
    writer.children(root)
    return writer.finish()


class _MarkdownWriter:
    """Walks the tree once; inline text collects in a buffer that each block boundary flushes."""

    def __init__(self) -> None:
        self._lines: list[str] = []
        self._inline: list[str] = []
        self._first_prefix = ""  # prefix of the next line (a list marker)
        self._prefix = ""  # prefix of the following lines (list indentation)

    def finish(self) -> str:
        self._paragraph_break()
        text = "\n".join(self._lines)
        return re.sub(r"\n{3,}", "\n\n", text).strip()

    def children(self, node: Tag) -> None:
        for child in node.children:
            self._node(child)

    def _node(self, node: object) -> None:
        if isinstance(node, PreformattedString):  # comments, doctype, CDATA, processing instructions
            return
        if isinstance(node, NavigableString):
            self._inline.append(str(node))
            return
        if not isinstance(node, Tag) or node.name in _DROPPED_TAGS or node.get("role") == "navigation":
            return
        name = node.name
        if name in _HEADING_LEVELS:
            self._heading(node, _HEADING_LEVELS[name])
        elif name in ("ul", "ol"):
            self._list(node, ordered=name == "ol")
        elif name == "pre":
            self._preformatted(node)
        elif name == "table":
            self._table(node)
        elif name == "br":
            self._flush()
        elif name == "code":
            self._inline.append(f"`{node.get_text()}`")
        elif name == "img":
            alt = node.get("alt")
            if isinstance(alt, str) and alt.strip():
                self._inline.append(f" {alt.strip()} ")
        elif name in _BLOCK_TAGS:
            self._paragraph_break()
            self.children(node)
            self._paragraph_break()
        else:
            self.children(node)

    def _flush(self) -> None:
        text = " ".join("".join(self._inline).split())
        self._inline.clear()
        if text:
            self._lines.append(self._first_prefix + text)
            self._first_prefix = self._prefix

    def _paragraph_break(self) -> None:
        self._flush()
        # Inside a list item, blocks stay on consecutive lines so the list reads as one.
        if self._lines and self._lines[-1] and not self._prefix:
            self._lines.append("")

    def _heading(self, node: Tag, level: int) -> None:
        self._paragraph_break()
        text = _tag_text(node)
        if text:
            self._lines.append(f"{'#' * level} {text}")
            self._lines.append("")

    def _list(self, node: Tag, *, ordered: bool) -> None:
        self._flush()
        outer_first, outer_prefix = self._first_prefix, self._prefix
        items = [child for child in node.children if isinstance(child, Tag) and child.name == "li"]
        for number, item in enumerate(items, start=1):
            marker = f"{number}. " if ordered else "- "
            self._first_prefix = outer_prefix + marker
            self._prefix = outer_prefix + " " * len(marker)
            self.children(item)
            self._flush()
        self._first_prefix, self._prefix = outer_first, outer_prefix
        if not outer_prefix:
            self._paragraph_break()

    def _preformatted(self, node: Tag) -> None:
        self._paragraph_break()
        code = node.get_text().strip("\n")
        if code.strip():
            self._lines.extend(["```", *code.split("\n"), "```", ""])

    def _table(self, node: Tag) -> None:
        self._paragraph_break()
        caption = node.find("caption")
        if isinstance(caption, Tag) and _tag_text(caption):
            self._lines.append(_tag_text(caption))
        row_tags = node.find_all("tr")
        header: list[str] | None = None
        if row_tags and _is_header_row(row_tags[0]):
            header = _row_cells(row_tags.pop(0))
            if not row_tags:  # a header alone is all the table says
                row_tags, header = [*node.find_all("tr")], None
        for row_tag in row_tags:
            cells = _row_cells(row_tag)
            if any(cells):
                self._lines.append("- " + _table_row(cells, header))
        self._lines.append("")


def _row_cells(row: Tag) -> list[str]:
    return [_tag_text(cell) for cell in row.find_all(("th", "td"), recursive=False)]


def _is_header_row(row: Tag) -> bool:
    cells = row.find_all(("th", "td"), recursive=False)
    return bool(cells) and (all(c.name == "th" for c in cells) or row.find_parent("thead") is not None)


def _table_row(cells: list[str], header: list[str] | None) -> str:
    # "Column: value" keeps each row readable on its own after the table is split into chunks.
    if header and len(header) == len(cells):
        return "; ".join(f"{name}: {value}" if name else value
                         for name, value in zip(header, cells, strict=True) if value)
    return " | ".join(cell for cell in cells if cell)
