"""Articles from a JSON Lines file: one JSON object per line.

    {"id": "vpn-setup", "title": "Connecting to the VPN", "text": "# ...", "url": "https://...",
     "updated_at": "2026-09-14T10:00:00Z", "owner": "it-team", "team": "IT"}

`id` (or `_id`) and `text` are required; `title`, `url`, `owner` and `updated_at` (ISO 8601) are
optional; every other key goes to the article's metadata. A BEIR `corpus.jsonl` (`_id`, `title`,
`text`, optional `metadata` object) loads as is; its `metadata` keys are merged into the metadata.

Each bad line -- invalid JSON, a missing or empty field, a wrong type, an id already used -- becomes an
`ArticleError` located at `path:line`; the rest of the file still loads. The file is streamed, so a
large corpus is never held in memory as a whole.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

from retrieval.access import audience_field
from retrieval.errors import ArticleError, SourceError
from retrieval.sources.base import Source, SourceItem
from retrieval.sources.filesystem import as_utc_datetime, missing_path
from retrieval.types import Article

logger = logging.getLogger(__name__)

_UTF8_BOM = b"\xef\xbb\xbf"
_ARTICLE_KEYS = frozenset({"id", "_id", "title", "text", "url", "owner", "updated_at", "metadata", "audience"})
_FALLBACK_TITLE_CHARS = 80


class _BadLine(Exception):
    """One line cannot become an article; `external_id` is set when its id could be read."""

    def __init__(self, message: str, external_id: str | None = None) -> None:
        super().__init__(message)
        self.external_id = external_id


class JsonlSource(Source):
    """One article per line of a `.jsonl` file; see the module docstring for the fields."""

    kind = "jsonl"

    def __init__(self, name: str, path: Path) -> None:
        super().__init__(name)
        self.path = Path(path)

    def config(self) -> dict[str, object]:
        return {"path": str(self.path.resolve())}

    def describe(self) -> str:
        return f"{self.kind}:{self.name} ({self.path})"

    def iter_articles(self) -> Iterator[SourceItem]:
        if not self.path.is_file():
            if self.path.is_dir():
                raise SourceError(f"The JSONL file {self.path} is a folder, not a file (source {self.name!r}): "
                                  "give the .jsonl file's path.")
            raise SourceError(missing_path(f"The JSONL file {self.path}", self.name))
        first_line_of: dict[str, int] = {}
        try:
            with self.path.open("rb") as lines:
                for lineno, raw in enumerate(lines, start=1):
                    item = self._parse(raw, lineno, first_line_of)
                    if item is not None:
                        yield item
        except OSError as exc:
            raise SourceError(f"Cannot read {self.path}: {exc.strerror}.") from exc

    def _parse(self, raw: bytes, lineno: int, first_line_of: dict[str, int]) -> SourceItem | None:
        location = f"{self.path}:{lineno}"
        if lineno == 1 and raw.startswith(_UTF8_BOM):
            raw = raw[len(_UTF8_BOM):]
        if not raw.strip():
            return None
        try:
            record = _decode_line(raw)
            external_id = _record_id(record)
        except _BadLine as exc:
            return ArticleError(str(exc), location=location)
        if external_id in first_line_of:
            # The first definition stays; a silent "last one wins" would hide a broken export.
            return ArticleError(
                f"duplicate id {external_id!r}: already used on line {first_line_of[external_id]}; "
                "this line is ignored",
                location=location,
            )
        first_line_of[external_id] = lineno
        try:
            return _article(record, external_id)
        except _BadLine as exc:
            # With its id known, the sync keeps the indexed version rather than deleting it.
            return ArticleError(str(exc), location=location, external_id=external_id)


def _decode_line(raw: bytes) -> dict[str, object]:
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _BadLine(
            f"is not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1}); "
            "re-export the file as UTF-8"
        ) from exc
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise _BadLine(f"is not valid JSON ({exc.msg} at column {exc.colno})") from exc
    if not isinstance(record, dict):
        raise _BadLine(f"must be a JSON object with id and text, not a {type(record).__name__}")
    return record


def _record_id(record: dict[str, object]) -> str:
    value = record.get("id", record.get("_id"))
    if value is None:
        raise _BadLine('has no "id" (or "_id"): every article needs a stable id')
    # bool is an int subclass, but `true` as an id is a mistake, not an id.
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _BadLine(f'"id" must be a string or an integer, not {json.dumps(value)}')
    external_id = str(value).strip()
    if not external_id:
        raise _BadLine('"id" is empty')
    return external_id


def _article(record: dict[str, object], external_id: str) -> Article:
    text = record.get("text")
    if text is None:
        raise _BadLine('has no "text"', external_id)
    if not isinstance(text, str):
        raise _BadLine(f'"text" must be a string, not {type(text).__name__}', external_id)
    if not text.strip():
        raise _BadLine('"text" is empty: there is nothing to index', external_id)
    updated = _optional_string(record, "updated_at", external_id)
    try:
        updated_at = as_utc_datetime(updated) if updated else None
    except ValueError as exc:
        raise _BadLine(
            f'"updated_at" {updated!r} is not an ISO 8601 timestamp (e.g. 2026-09-14T10:00:00Z)', external_id
        ) from exc
    audience, held_back = audience_field(record.get("audience"), '"audience" field')
    return Article(
        external_id=external_id,
        title=_optional_string(record, "title", external_id) or _fallback_title(text),
        text=text.strip(),
        url=_optional_string(record, "url", external_id),
        owner=_optional_string(record, "owner", external_id),
        updated_at=updated_at,
        metadata=_metadata(record),
        audience=audience,
        held_back=held_back,
    )



def _optional_string(record: dict[str, object], key: str, external_id: str) -> str | None:
    value = record.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _BadLine(f'"{key}" must be a string, not {type(value).__name__}', external_id)
    return value.strip() or None


def _fallback_title(text: str) -> str:
    """An untitled record (BEIR titles are often empty) is named by its first line, shortened."""
    first_line = text.strip().split("\n", 1)[0].lstrip("# ").strip()
    if len(first_line) <= _FALLBACK_TITLE_CHARS:
        return first_line
    return first_line[:_FALLBACK_TITLE_CHARS].rsplit(" ", 1)[0] + "…"


def _metadata(record: dict[str, object]) -> dict[str, object]:
    metadata = {key: value for key, value in record.items() if key not in _ARTICLE_KEYS}
    nested = record.get("metadata")
    if isinstance(nested, dict):
        metadata.update(nested)
    elif nested is not None:
        metadata["metadata"] = nested
    return metadata
