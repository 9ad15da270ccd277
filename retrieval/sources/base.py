"""The source interface every connector implements (filesystem, JSONL, Zendesk, Confluence...).

A source lists articles. Per-article problems are *yielded* as `ArticleError` instead of raised, so the
sync can record them and carry on with the rest; a problem with the whole source (folder missing, API
down) is raised as `SourceError` and the sync then keeps every article of that source as it was.

Sources whose API can say what changed since a point in time (Zendesk's incremental export, Confluence's
`lastModified` CQL) also implement `iter_changes(checkpoint)`. The sync stores the checkpoint a feed ends
with (in `sources.checkpoint`) only after the whole source synced, so an interrupted or failed run
re-reads the same window next time; re-reading is cheap because unchanged articles are skipped by hash.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from retrieval.access import DEFAULT_AUDIENCE
from retrieval.errors import ArticleError
from retrieval.types import Article

SourceItem = Article | ArticleError
Checkpoint = dict[str, Any]  # JSON-serialisable; its meaning belongs to the source that made it


@dataclass(frozen=True)
class Deleted:
    """An article the source reports as gone (deleted, archived, unpublished)."""

    external_id: str


ChangeItem = Article | ArticleError | Deleted


class ChangeFeed:
    """What a source yields for one sync: articles, deletions, and afterwards the next checkpoint.

    `complete` feeds are full listings: articles of the source that are indexed but not yielded are
    deleted at the end (pruning). Incremental feeds only say what changed; nothing is pruned.
    `checkpoint` is set once the feed has been iterated to the end (None for sources without one).
    """

    def __init__(self, items: Iterable[ChangeItem] | Generator[ChangeItem, None, Checkpoint | None], *,
                 complete: bool, checkpoint: Checkpoint | None = None) -> None:
        self._items = items
        self.complete = complete
        self.checkpoint = checkpoint

    def __iter__(self) -> Iterator[ChangeItem]:
        result = yield from self._items
        if result is not None:  # a generator's return value is the checkpoint it ended at
            self.checkpoint = result


class Source(ABC):
    """A named origin of articles. `name` is unique per deployment and keys the index's sources table."""

    kind: str = "abstract"
    # Who may read an article that does not narrow it itself (the sources file's `audience:`,
    # `kbbot ingest --audience`); connectors narrow it per article from the source's own permissions.
    audience: tuple[str, ...] = DEFAULT_AUDIENCE

    def __init__(self, name: str) -> None:
        self.name = name

    @abstractmethod
    def iter_articles(self) -> Iterator[SourceItem]:
        """Yield every live article (or an ArticleError for one that cannot be read).

        A complete listing: articles of this source that are in the index but not yielded here (and not
        reported as errors) are removed from the index at the end of the sync.
        """

    def iter_changes(self, checkpoint: Checkpoint | None) -> ChangeFeed:
        """Changes since `checkpoint` (None: a full listing that ends with a first checkpoint).

        The default is a full listing every time with no checkpoint: right for a folder or a file, where
        listing is cheap. API connectors override it.
        """
        return ChangeFeed(self.iter_articles(), complete=True)

    def fetch_articles(self, external_ids: Sequence[str]) -> Iterator[ChangeItem]:
        """Re-read these articles (those that failed in an earlier incremental run): each one comes
        back as an Article, an ArticleError, or Deleted when the source no longer has it.

        Only called for sources whose `iter_changes` returns checkpoints.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot fetch single articles")

    def config(self) -> dict[str, object]:
        """What `sources_from_records` needs to rebuild this source later (no secrets: those stay in
        the environment). Stored with the source so `kbbot sync` can re-sync what `ingest` added."""
        return {}

    def access_config(self) -> dict[str, object]:
        """The access settings stored with the source and fingerprinted with its config: changing them
        makes the next sync list every article again, so each one's audience is recomputed."""
        return {} if self.audience == DEFAULT_AUDIENCE else {"audience": list(self.audience)}

    def describe(self) -> str:
        return f"{self.kind}:{self.name}"

    def close(self) -> None:
        """Release connections (HTTP clients); called by the sync when the source is done."""
        return None


class RetiredSource(Source):
    """A source being taken out of the index (`kbbot forget`): an empty full listing under its name, so a
    sync removes every article it had the way it removes any deleted article, under the same lock."""

    def __init__(self, name: str, kind: str) -> None:
        super().__init__(name)
        self.kind = kind

    def iter_articles(self) -> Iterator[SourceItem]:
        return iter(())
