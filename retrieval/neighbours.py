"""The passage that follows a passage in its article, read for one reader.

Chunking packs paragraphs up to a size, so a sentence announcing a list ("…provides six built-in
algorithms:") sometimes ends one chunk while the list it announces opens the next. The extractive answerer
then asks for that next passage. It is read under the same rules as a search: only when it is in the same
section (a chunk never crosses a heading, so a new heading path is another topic) and only when the reader
may see it (the audience filter of the search, in the same SQL; None is the operator at a terminal).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from sqlalchemy import text

from retrieval.access import ReaderScope
from retrieval.db import Database, translate_errors
from retrieval.types import SearchHit

# `readable` in SQL, as the search filters: the audience column is the chunk's copy of its article's.
_NEXT = """
SELECT c.id, c.heading_path, c.text, c.char_start, c.char_end,
       {readable} AS readable
FROM chunks prev
JOIN chunks c ON c.article_id = prev.article_id AND c.ordinal > prev.ordinal
WHERE prev.id = :chunk
ORDER BY c.ordinal
LIMIT 1"""


class PassageReader:
    """Reads passages next to a search hit (one indexed lookup per call)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def next_passage(self, hit: SearchHit, audience: ReaderScope | None) -> SearchHit | None:
        """The passage right after `hit` in its section, if the reader may see it; else None."""
        params: dict[str, Any] = {"chunk": hit.chunk_id}
        readable = "true"
        if audience is not None:
            readable = "c.audience && CAST(:audience AS text[])"
            params["audience"] = audience.sql_tokens
        with translate_errors("Reading the next passage"), self.db.engine.connect() as conn:
            row = conn.execute(text(_NEXT.format(readable=readable)), params).first()
        if row is None or not row.readable or tuple(row.heading_path or ()) != hit.heading_path:
            return None
        return dataclasses.replace(hit, chunk_id=row.id, text=row.text, char_start=row.char_start,
                                   char_end=row.char_end, similarity=None, dense_rank=None, lexical_rank=None)
