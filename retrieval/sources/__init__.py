"""Where articles come from. Every connector implements `Source` (see `base.py`).

`source_for_path` picks the connector for a path given on the command line:

- a folder                          -> FilesystemSource over the folder tree
- a `.jsonl` file                   -> JsonlSource (BEIR `corpus.jsonl` included)
- one `.md`/`.markdown`/`.html`/`.htm`/`.txt` file -> FilesystemSource over that file alone
  (its external_id is the file name)
- anything else, or a missing path  -> SourceError saying what is accepted
"""

from __future__ import annotations

from pathlib import Path

from retrieval.access import AudienceError, parse_audience
from retrieval.errors import SourceError
from retrieval.sources.base import Source, SourceItem
from retrieval.sources.filesystem import SUPPORTED_SUFFIXES, FilesystemSource
from retrieval.sources.jsonl import JsonlSource

__all__ = [
    "FilesystemSource", "JsonlSource", "Source", "SourceItem", "source_for_path", "source_from_record",
]


def source_for_path(path: Path, name: str | None = None) -> Source:
    """The source for a folder, a `.jsonl` file or a single article file; `name` defaults to its stem."""
    path = Path(path)
    default_name = path.resolve().stem if path.is_file() else path.resolve().name
    source_name = name or default_name
    if path.is_dir():
        return FilesystemSource(source_name, path)
    if not path.exists():
        raise SourceError(f"{path} does not exist: give a folder of articles or a .jsonl file.")
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return JsonlSource(source_name, path)
    if suffix in SUPPORTED_SUFFIXES:
        return FilesystemSource(source_name, path)
    accepted = ", ".join(sorted(SUPPORTED_SUFFIXES | {".jsonl"}))
    raise SourceError(f"{path} is not a supported source: give a folder, or a file ending in {accepted}.")


def source_from_record(name: str, kind: str, config: dict[str, object]) -> Source:
    """Rebuild a source registered in the index (by `kbbot ingest`) from its stored config."""
    path = config.get("path")
    if kind in ("filesystem", "jsonl") and isinstance(path, str):
        source: Source = FilesystemSource(name, Path(path)) if kind == "filesystem" else JsonlSource(name, Path(path))
        if config.get("audience") is not None:
            try:
                source.audience = parse_audience(config["audience"])
            except AudienceError as exc:
                raise SourceError(f"Source {name!r}: its stored audience {exc}; run `kbbot ingest` again "
                                  "with --audience.") from exc
        return source
    raise SourceError(
        f"Source {name!r} of kind {kind!r} cannot be rebuilt from the index; declare it in the sources "
        "file (KBBOT_SOURCES_FILE)."
    )
