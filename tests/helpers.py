"""Small test helpers shared by the core's tests."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


class CountingEmbedder:
    """Wraps the real embedder, counting what it is asked to embed; can pose as another model and
    fail after a number of calls (to simulate a crash mid-sync)."""

    def __init__(self, inner, *, model: str | None = None, fail_after_calls: int | None = None) -> None:  # type: ignore[no-untyped-def]
        self.inner = inner
        self.provider = inner.provider
        self.model = model or inner.model
        self.max_tokens = getattr(inner, "max_tokens", 256)
        self.calls: list[list[str]] = []
        self.fail_after_calls = fail_after_calls

    @property
    def dimension(self) -> int:
        return self.inner.dimension

    @property
    def embedded(self) -> int:
        return sum(len(c) for c in self.calls)

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        if self.fail_after_calls is not None and len(self.calls) >= self.fail_after_calls:
            raise RuntimeError("simulated crash in the middle of a sync")
        self.calls.append(list(texts))
        return self.inner.embed_documents(texts)

    def embed_query(self, text: str) -> np.ndarray:
        return self.inner.embed_query(text)

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)


def write_article(root: Path, rel: str, title: str, body: str, *, updated: str = "2026-10-01") -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"---\ntitle: {title}\nurl: https://kb.example/{rel}\nupdated: {updated}\n---\n{body}",
                    encoding="utf-8")
    return path


SECTIONED = """# {title}

## Overview
{topic} is handled by the platform team. Every employee gets access on the first day. The team
reviews access every quarter and removes accounts that were not used for ninety days.

## Requesting access
Open a ticket in the service portal and pick the {topic} category. Your manager approves the
request, then the platform team grants access within two working days.

## Troubleshooting
If {topic} does not load, clear the browser cache and sign in again. Still broken? Post in the
help channel with a screenshot and the time it happened.
"""


def sectioned_article(topic: str) -> str:
    return SECTIONED.format(title=f"{topic} guide", topic=topic)
