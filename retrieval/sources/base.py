"""The source interface every connector implements (filesystem, JSONL, Zendesk, Confluence...).

A source lists articles. Per-article problems are *yielded* as `ArticleError` instead of raised, so the
sync can record them and carry on with the rest; a problem with the whole source (folder missing, API
down) is raised as `SourceError` and the sync then keeps every article of that source as it was.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator

from retrieval.errors import ArticleError
from retrieval.types import Article

SourceItem = Article | ArticleError


class Source(ABC):
    """A named origin of articles. `name` is unique per deployment and keys the index's sources table."""

    kind: str = "abstract"

    def __init__(self, name: str) -> None:
        self.name = name

    @abstractmethod
    def iter_articles(self) -> Iterator[SourceItem]:
        """Yield every live article (or an ArticleError for one that cannot be read).

        A complete listing: articles of this source that are in the index but not yielded here (and not
        reported as errors) are removed from the index at the end of the sync.
        """

    def config(self) -> dict[str, object]:
        """What `sources_from_records` needs to rebuild this source later (no secrets: those stay in
        the environment). Stored with the source so `kbbot sync` can re-sync what `ingest` added."""
        return {}

    def describe(self) -> str:
        return f"{self.kind}:{self.name}"
