"""What follows a passage in its article, read for one reader.

Chunking packs paragraphs up to a size, so a sentence announcing a list ("…provides six built-in
algorithms:") sometimes ends one chunk while what it announces comes after it: the list opens the next
chunk of the same section, or each announced item is a section of its own right below ("### CNN-QR",
"### DeepAR+"). The extractive answerer then asks what follows. It is read under the same rules as a
search: only passages the reader may see (the audience filter of the search, in the same SQL; None is the
operator at a terminal), and nothing after the first one they may not see (fail closed).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text

from retrieval.access import ReaderScope
from retrieval.db import Database, translate_errors
from retrieval.types import SearchHit

# At most this many later passages are read for the headings of the sections below a passage's own.
MAX_FOLLOWING = 60

# `readable` in SQL, as the search filters: the audience column is the chunk's copy of its article's. The
# text of the first passage only: the others are read for their headings.
_FOLLOWING = """
SELECT c.id, c.heading_path, CASE WHEN c.ordinal = min(c.ordinal) OVER () THEN c.text END AS text,
       c.char_start, c.char_end, {readable} AS readable
FROM chunks prev
JOIN chunks c ON c.article_id = prev.article_id AND c.ordinal > prev.ordinal
WHERE prev.id = :chunk
ORDER BY c.ordinal
LIMIT :limit"""


@dataclass(frozen=True)
class Following:
    """What comes after a passage: the next passage of its section, or else the headings of the sections
    right below its own that follow it (in order)."""

    passage: SearchHit | None = None
    subsections: tuple[str, ...] = ()


class PassageReader:
    """Reads what follows a search hit in its article (one indexed lookup per call)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def following(self, hit: SearchHit, audience: ReaderScope | None) -> Following:
        params: dict[str, Any] = {"chunk": hit.chunk_id, "limit": MAX_FOLLOWING}
        readable = "true"
        if audience is not None:
            readable = "c.audience && CAST(:audience AS text[])"
            params["audience"] = audience.sql_tokens
        with translate_errors("Reading the passages that follow"), self.db.engine.connect() as conn:
            rows = conn.execute(text(_FOLLOWING.format(readable=readable)), params).all()
        section, depth = hit.heading_path, len(hit.heading_path)
        if not rows or not rows[0].readable:
            return Following()
        first = rows[0]
        if tuple(first.heading_path or ()) == section:
            return Following(passage=dataclasses.replace(
                hit, chunk_id=first.id, text=first.text, char_start=first.char_start, char_end=first.char_end,
                similarity=None, dense_rank=None, lexical_rank=None))
        headings: list[str] = []
        for row in rows:
            path = tuple(row.heading_path or ())
            if not row.readable or path[:depth] != section or len(path) == depth:
                break  # past the section (or text of its own after the subsections): what follows is another topic
            if path[depth] not in headings:
                headings.append(path[depth])
        return Following(subsections=tuple(headings))
