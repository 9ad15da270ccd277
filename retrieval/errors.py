"""The one exception hierarchy of kbbot.

Every error the core raises on purpose is a ``KbbotError``. Its message is written for the person who
has to act on it (an admin at a terminal, an employee in Slack): what happened and what to do next.
Third-party errors (SQLAlchemy, psycopg, openai, httpx) are wrapped with ``raise ... from exc`` so the
log keeps the cause while the edges (CLI, Slack) only ever show ``str(error)``.

    KbbotError
    ├── ConfigError            a setting is missing or invalid (names the variable)
    ├── DatabaseError          PostgreSQL unreachable, or a query failed
    │   └── SchemaError        pgvector missing/too old, migrations not applied
    ├── SourceError            a source cannot be read at all (folder missing, API down)
    │   └── ArticleError       one article is unreadable (binary, bad encoding, empty, bad JSONL line)
    ├── EmbeddingError         the embedding model failed or cannot be loaded
    │   ├── ModelMismatchError the index was built with another model; a full re-embed is needed
    │   └── SpaceChangedError  a re-embed switched models during a search, twice in a row (ask again)
    ├── LLMError               the chat model failed (timeout, auth, unknown model, rate limit)
    ├── SyncInProgressError    another sync holds the lock (carries who started it and when)
    ├── SyncStoppedError       the process is shutting down; the run stopped between articles
    └── EmptyQuestionError     the question is blank

finetune/errors.py extends the tree with FinetuneError (data preparation or a fine-tuning job failed) and
its subclasses: fine-tuning builds on the core, the core knows nothing of it.
"""

from __future__ import annotations

from datetime import datetime


class KbbotError(Exception):
    """Base class: the message is meant for a human and says what to do."""


class ConfigError(KbbotError):
    pass


class DatabaseError(KbbotError):
    pass


class SchemaError(DatabaseError):
    pass


class SourceError(KbbotError):
    pass


class ArticleError(SourceError):
    """One article could not be read; the rest of the source is fine."""

    def __init__(self, message: str, *, location: str = "", external_id: str | None = None) -> None:
        super().__init__(f"{location}: {message}" if location else message)
        self.message = message  # without the location, for reports that show it in a column of its own
        self.location = location
        # Set when the article's id is known: the sync then keeps its indexed version instead of
        # treating it as deleted at the source.
        self.external_id = external_id


class EmbeddingError(KbbotError):
    pass


class ModelMismatchError(EmbeddingError):
    def __init__(self, indexed: str, configured: str) -> None:
        super().__init__(
            f"The index was built with embedding model {indexed!r} but {configured!r} is configured. "
            "Vectors from different models cannot be mixed: run `kbbot sync --full` (or `/reindex full` in Slack) "
            "to re-embed everything with the new model, or set KBBOT_EMBEDDING_MODEL back."
        )
        self.indexed = indexed
        self.configured = configured


class SpaceChangedError(EmbeddingError):
    """The space a search embedded its question for stopped being active meanwhile (a re-embed switched).
    A search retries once on the new space; this escapes only when the switch happens again."""

    def __init__(self, space: str) -> None:
        super().__init__(f"The index switched away from embedding space {space} while this search ran "
                         "(a re-embed finished): ask again.")
        self.space = space


class LLMError(KbbotError):
    pass


class SyncInProgressError(KbbotError):
    def __init__(self, started_by: str | None, started_at: datetime | None) -> None:
        who = started_by or "someone"
        when = started_at.strftime("%Y-%m-%d %H:%M UTC") if started_at else "a moment ago"
        super().__init__(f"A sync is already running (started by {who} at {when}). Try again when it ends.")
        self.started_by = started_by
        self.started_at = started_at


class SyncStoppedError(KbbotError):
    def __init__(self) -> None:
        super().__init__("The sync stopped early because kbbot is shutting down; the articles written so far "
                         "are kept and the next run continues from there.")


class EmptyQuestionError(KbbotError):
    def __init__(self) -> None:
        super().__init__("The question is empty: ask something, e.g. `How do I reset my VPN password?`")

