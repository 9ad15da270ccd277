"""Writing the dataset: atomic JSONL files and the manifest that vouches for them.

Files are written to a temporary sibling, flushed to disk and renamed over the target, so a crash leaves
the old file or the new one, never half of one. The manifest records each file's SHA-256: ``submit``
uploads only files whose hash matches, i.e. files that ``prepare`` wrote after sanitizing.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from finetune.errors import ManifestError
from finetune.pii.sanitizer import SANITIZER_VERSION
from retrieval.file_digest import sha256_file

MANIFEST_NAME = "manifest.json"


def write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def jsonl_bytes(records: Iterable[dict[str, object]]) -> bytes:
    return b"".join(json.dumps(r, ensure_ascii=False).encode("utf-8") + b"\n" for r in records)


def write_manifest(out_dir: Path, files: dict[str, int], extra: dict[str, object]) -> dict[str, object]:
    """``files`` maps a file name in ``out_dir`` to its example count."""
    manifest = {
        "producer": "kbbot finetune prepare",
        "sanitizer_version": SANITIZER_VERSION,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "files": {
            name: {
                "sha256": sha256_file(out_dir / name),
                "bytes": (out_dir / name).stat().st_size,
                "examples": count,
            }
            for name, count in files.items()
        },
        **extra,
    }
    write_atomic(out_dir / MANIFEST_NAME, json.dumps(manifest, indent=2).encode("utf-8"))
    return manifest


def verify_against_manifest(path: Path) -> str:
    """Return the file's SHA-256 if the manifest beside it vouches for it; raise ManifestError otherwise."""
    manifest_path = path.parent / MANIFEST_NAME
    if not manifest_path.exists():
        raise ManifestError(
            f"{path} has no {MANIFEST_NAME} beside it, so nothing shows it was sanitized. Build it with "
            "`kbbot finetune prepare`, or pass --force if you sanitized it yourself."
        )
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        expected = manifest["files"][path.name]["sha256"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ManifestError(
            f"{manifest_path} does not list {path.name}: run `kbbot finetune prepare` again."
        ) from exc
    actual = sha256_file(path)
    if actual != expected:
        raise ManifestError(
            f"{path} changed after `prepare` wrote it (SHA-256 differs from {manifest_path}): "
            "run `prepare` again, or pass --force if the edit is deliberate and sanitized."
        )
    return actual
