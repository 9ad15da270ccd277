"""SQL of the index tables: sources, articles, chunks and their vectors.

`IndexStore` is the write path, driver-level psycopg: vectors go in with binary COPY, chunk rows with one
multi-row statement per article, and every article is its own transaction. The functions below it are the
reads other modules need (search's source filter, `kbbot status`). The lexicon has its own owner,
retrieval/lexical_index.py; the embedding spaces theirs, retrieval/spaces.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import psycopg
from pgvector.psycopg import register_vector
from psycopg.rows import namedtuple_row

from retrieval.db import Database, translate_errors
from retrieval.types import Article, ChunkDraft

KEYWORD_INDEX = "chunks_tsv_idx"
# (space_id, chunk_id, source_id, audience, vector)
VectorRow = tuple[int, int, int, list[str], np.ndarray]


@dataclass(frozen=True)
class IndexedArticle:
    id: int
    content_hash: str


@dataclass(frozen=True)
class PendingArticle:
    """One article's rows to write. `reuse[i]` is the id of a stored chunk with the same content as
    `drafts[i]` (kept with its vector), or None; `vectors[i]` is the new vector of draft i."""

    source_id: int
    article: Article
    content_hash: str
    space_id: int
    drafts: Sequence[ChunkDraft]
    reuse: Sequence[int | None]
    vectors: dict[int, np.ndarray]


@dataclass(frozen=True)
class StoredChunk:
    id: int
    content_hash: str
    has_vector: bool


class IndexStore:
    """Write access to the index tables over one psycopg connection."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn
        register_vector(conn)

    # --- sources -------------------------------------------------------------------------------
    def upsert_source(self, name: str, kind: str, config: dict[str, object]) -> int:
        with self.conn.transaction():
            return self.conn.execute(
                "INSERT INTO sources (name, kind, config) VALUES (%s, %s, %s) "
                "ON CONFLICT (name) DO UPDATE SET kind = EXCLUDED.kind, config = EXCLUDED.config "
                "RETURNING id",
                (name, kind, json.dumps(config, default=str)),
            ).fetchone()[0]  # type: ignore[index]

    def mark_source(self, source_id: int, *, error: str | None, checkpoint: dict[str, object] | None = None) -> None:
        """Record a source's outcome. On success, `checkpoint` (when given) replaces the stored one: it only
        ever advances after the whole source synced."""
        with self.conn.transaction():
            if error is None:
                self.conn.execute(
                    "UPDATE sources SET last_success_at = now(), last_error = NULL, last_error_at = NULL, "
                    "checkpoint = coalesce(%s::jsonb, checkpoint) WHERE id = %s",
                    (None if checkpoint is None else json.dumps(checkpoint, default=str), source_id),
                )
            else:
                self.conn.execute("UPDATE sources SET last_error = %s, last_error_at = now() WHERE id = %s",
                                  (error, source_id))

    def source_checkpoint(self, source_id: int) -> dict[str, object] | None:
        row = self.conn.execute("SELECT checkpoint FROM sources WHERE id = %s", (source_id,)).fetchone()
        return row[0] if row and isinstance(row[0], dict) else None

    def indexed_articles(self, source_id: int) -> dict[str, IndexedArticle]:
        rows = self.conn.execute(
            "SELECT external_id, id, content_hash FROM articles WHERE source_id = %s", (source_id,)
        ).fetchall()
        return {ext: IndexedArticle(aid, h) for ext, aid, h in rows}

    # --- chunks --------------------------------------------------------------------------------
    def stored_chunks(self, article_id: int, space_id: int) -> list[StoredChunk]:
        rows = self.conn.execute(
            "SELECT c.id, c.content_hash, e.chunk_id IS NOT NULL FROM chunks c "
            "LEFT JOIN embeddings e ON e.chunk_id = c.id AND e.space_id = %s "
            "WHERE c.article_id = %s ORDER BY c.ordinal",
            (space_id, article_id),
        ).fetchall()
        return [StoredChunk(*row) for row in rows]

    def apply_articles(self, batch: Sequence[PendingArticle]) -> None:
        """Write several articles in one transaction: a bulk load pays one commit per batch, not per article.
        A failure rolls back the batch; the caller retries its articles one by one to isolate a bad one."""
        with self.conn.transaction():
            self._no_flush_wait()
            rows: list[VectorRow] = []
            upsert = False
            for pending in batch:
                article_rows, article_upsert = self._write_article(pending)
                rows.extend(article_rows)
                upsert = upsert or article_upsert
            self.write_vectors(rows, upsert=upsert)

    def _no_flush_wait(self) -> None:
        # One commit per article would wait for one WAL flush each. Not waiting is safe here: a crash can
        # only lose the last few commits, never half an article, and the next sync writes those articles
        # again because their content hashes are missing.
        self.conn.execute("SET LOCAL synchronous_commit = off")

    def _write_article(self, p: PendingArticle) -> tuple[list[VectorRow], bool]:
        """Write the article's rows except its new vectors, which it returns (with whether any replaces a
        stored one) so that a batch sends all of its vectors in one COPY."""
        source_id, article, content_hash, space_id = p.source_id, p.article, p.content_hash, p.space_id
        # The caller resolved the audience (sync.with_audience); a missing one is held back, never public.
        audience = list(article.audience or ())
        drafts, reuse, vectors = p.drafts, p.reuse, p.vectors
        article_id = self.conn.execute(
            "INSERT INTO articles (source_id, external_id, title, url, owner, source_updated_at, "
            "content_hash, body, metadata, audience, held_back, indexed_at) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, now()) "
            "ON CONFLICT (source_id, external_id) DO UPDATE SET title = EXCLUDED.title, "
            "url = EXCLUDED.url, owner = EXCLUDED.owner, source_updated_at = EXCLUDED.source_updated_at, "
            "content_hash = EXCLUDED.content_hash, body = EXCLUDED.body, metadata = EXCLUDED.metadata, "
            "audience = EXCLUDED.audience, held_back = EXCLUDED.held_back, indexed_at = now() RETURNING id",
            (source_id, article.external_id, article.title, article.url, article.owner,
             article.updated_at, content_hash, article.text, json.dumps(article.metadata, default=str),
             audience, article.held_back),
        ).fetchone()[0]  # type: ignore[index]
        kept = [cid for cid in reuse if cid is not None]
        self.conn.execute(
            "DELETE FROM chunks WHERE article_id = %s AND NOT (id = ANY(%s))", (article_id, kept)
        )
        title = article.title
        updates = [
            (d.ordinal, list(d.heading_path), d.char_start, d.char_end, cid)
            for d, cid in zip(drafts, reuse, strict=True) if cid is not None
        ]
        if updates:
            with self.conn.cursor() as cur:
                cur.executemany(
                    "UPDATE chunks SET ordinal = %s, heading_path = %s, char_start = %s, char_end = %s "
                    "WHERE id = %s", updates,
                )
            # A restriction added or lifted at the source reaches the kept passages and their vectors (in
            # every space) in the same transaction as the article row.
            kept_ids = [u[-1] for u in updates]
            self.conn.execute("UPDATE chunks SET audience = %s WHERE id = ANY(%s) AND audience <> %s",
                              (audience, kept_ids, audience))
            self.conn.execute("UPDATE embeddings SET audience = %s WHERE chunk_id = ANY(%s) AND audience <> %s",
                              (audience, kept_ids, audience))
        new_rows = [
            (i, d) for i, (d, cid) in enumerate(zip(drafts, reuse, strict=True)) if cid is None
        ]
        new_ids: dict[int, int] = {}
        if new_rows:
            ids = self.conn.execute(
                "INSERT INTO chunks (article_id, source_id, audience, ordinal, heading_path, context, text, "
                "char_start, char_end, token_count, content_hash) "
                "SELECT %s, %s, %s, o, h::text[], ctx, t, cs, ce, tc, hs FROM unnest(%s::int[], %s::text[], "
                "%s::text[], %s::text[], %s::int[], %s::int[], %s::int[], %s::text[]) "
                "AS u(o, h, ctx, t, cs, ce, tc, hs) RETURNING id, ordinal",
                (article_id, source_id, audience,
                 [d.ordinal for _, d in new_rows],
                 [_pg_text_array(d.heading_path) for _, d in new_rows],
                 [_context(title, d) for _, d in new_rows],
                 [d.text for _, d in new_rows],
                 [d.char_start for _, d in new_rows],
                 [d.char_end for _, d in new_rows],
                 [d.token_count for _, d in new_rows],
                 [d.hash(title) for _, d in new_rows]),
            ).fetchall()
            by_ordinal = dict((ordinal, cid) for cid, ordinal in ids)
            new_ids = {i: by_ordinal[d.ordinal] for i, d in new_rows}
        rows = []
        for i, vector in vectors.items():
            chunk_id = new_ids.get(i) or reuse[i]
            rows.append((space_id, chunk_id, source_id, audience, vector))
        return rows, any(reuse[i] is not None for i in vectors)

    def write_vectors(self, rows: Iterable[VectorRow], *, upsert: bool = False) -> int:
        """Binary COPY of (space_id, chunk_id, source_id, audience, vector) rows; with `upsert`, via a temp
        table. The audience is written with the vector: setting it afterwards would insert every row into
        the HNSW index a second time."""
        rows = list(rows)
        if not rows:
            return 0
        if not upsert:
            self._copy_vectors("embeddings", rows)
            return len(rows)
        self.conn.execute(
            "CREATE TEMP TABLE IF NOT EXISTS vectors_in (LIKE embeddings INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )
        self._copy_vectors("vectors_in", rows)
        self.conn.execute(
            "INSERT INTO embeddings (space_id, chunk_id, source_id, audience, embedding) "
            "SELECT space_id, chunk_id, source_id, audience, embedding FROM vectors_in "
            "ON CONFLICT (space_id, chunk_id) DO UPDATE SET embedding = EXCLUDED.embedding, "
            "audience = EXCLUDED.audience"
        )
        self.conn.execute("DELETE FROM vectors_in")
        return len(rows)

    def _copy_vectors(self, table: str, rows: list[VectorRow]) -> None:
        with self.conn.cursor() as cur, cur.copy(
            f"COPY {table} (space_id, chunk_id, source_id, audience, embedding) FROM STDIN WITH (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["int4", "int8", "int4", "text[]", "vector"])
            for row in rows:
                copy.write_row(row)

    def delete_articles(self, article_ids: Sequence[int]) -> int:
        if not article_ids:
            return 0
        with self.conn.transaction():
            cur = self.conn.execute("DELETE FROM articles WHERE id = ANY(%s)", (list(article_ids),))
            return cur.rowcount

    def chunks_missing_vectors(self, space_id: int, after_id: int,
                               limit: int) -> list[tuple[int, int, list[str], str]]:
        """(chunk id, source id, audience, embedding input) of chunks without a vector in the space."""
        return self.conn.execute(
            "SELECT c.id, c.source_id, c.audience, c.context || E'\\n' || c.text FROM chunks c "
            "WHERE c.id > %s AND NOT EXISTS (SELECT 1 FROM embeddings e WHERE e.chunk_id = c.id "
            "AND e.space_id = %s) ORDER BY c.id LIMIT %s",
            (after_id, space_id, limit),
        ).fetchall()

    # --- the keyword index ----------------------------------------------------------------------
    def drop_keyword_index_for_bulk_load(self) -> bool:
        """Drop the GIN index on the chunks' tsvectors when there are no chunks yet (a first load); True if
        dropped. Filling a GIN index row by row costs more than building it once over the loaded rows, as
        for the HNSW index; `ensure_keyword_index` builds it at the end of the sync (or of the next one,
        after a crash), and searches meanwhile only run slower."""
        with self.conn.transaction():
            if self.conn.execute("SELECT EXISTS (SELECT 1 FROM chunks)").fetchone()[0]:  # type: ignore[index]
                return False
            self.conn.execute(f"DROP INDEX IF EXISTS {KEYWORD_INDEX}")
            return True

    def ensure_keyword_index(self, *, build_memory_mb: int = 256) -> bool:
        """Build the GIN keyword index if it is missing; True if it was built."""
        exists = self.conn.execute("SELECT to_regclass(%s) IS NOT NULL", (KEYWORD_INDEX,)).fetchone()
        if exists and exists[0]:
            return False
        with self.conn.transaction():
            self.conn.execute(f"SET LOCAL maintenance_work_mem = '{int(build_memory_mb)}MB'")
            self.conn.execute(f"CREATE INDEX IF NOT EXISTS {KEYWORD_INDEX} ON chunks USING gin (tsv)")
        return True


def source_ids(conn: psycopg.Connection[Any], names: Sequence[str]) -> dict[str, int]:
    """Name -> id of the named sources that exist."""
    rows = conn.execute("SELECT name, id FROM sources WHERE name = ANY(%s)", (list(names),)).fetchall()
    return {name: source_id for name, source_id in rows}


def source_names(conn: psycopg.Connection[Any]) -> list[str]:
    """Every source's name, sorted."""
    return [r[0] for r in conn.execute("SELECT name FROM sources ORDER BY name").fetchall()]


def count_vectors(conn: psycopg.Connection[Any], space_id: int, source_ids: Sequence[int], *, stop_at: int) -> int:
    """How many vectors of the space the sources hold, counted through the source B-tree up to `stop_at`."""
    # The space id is inlined (an int from our own table) so the planner matches the space's partial index.
    found = conn.execute(
        f"SELECT count(*) FROM (SELECT 1 FROM embeddings WHERE space_id = {int(space_id)} "
        "AND source_id = ANY(%s) LIMIT %s) t", (list(source_ids), stop_at),
    ).fetchone()
    return int(found[0])  # type: ignore[index]


def vectors_per_audience(conn: psycopg.Connection[Any], space_id: int) -> list[tuple[tuple[str, ...], int]]:
    """(audience, vectors) for each distinct audience in the space: how much of the index a reader reaches."""
    rows = conn.execute(f"SELECT audience, count(*) FROM embeddings WHERE space_id = {int(space_id)} "
                        "GROUP BY audience").fetchall()
    return [(tuple(r[0]), int(r[1])) for r in rows]


def index_counts(conn: psycopg.Connection[Any]) -> tuple[int, int, int]:
    """Articles, chunks, and vectors in the active embedding space."""
    row = conn.execute(
        "SELECT (SELECT count(*) FROM articles), (SELECT count(*) FROM chunks), "
        "(SELECT count(*) FROM embeddings e JOIN embedding_spaces s ON s.id = e.space_id "
        " WHERE s.status = 'active')"
    ).fetchone()
    return row[0], row[1], row[2]  # type: ignore[index]


def source_summaries(conn: psycopg.Connection[Any]) -> list[Any]:
    """Per source, by name: its row's outcome columns and checkpoint, its article count and the oldest and
    newest `source_updated_at` of its articles."""
    with conn.cursor(row_factory=namedtuple_row) as cur:
        return cur.execute(
            "SELECT s.name, s.kind, count(a.id) AS articles, s.last_success_at, s.last_error, s.last_error_at, "
            "s.checkpoint, min(a.source_updated_at) AS oldest, max(a.source_updated_at) AS newest "
            "FROM sources s LEFT JOIN articles a ON a.source_id = s.id GROUP BY s.id ORDER BY s.name"
        ).fetchall()


def held_back_counts(conn: psycopg.Connection[Any], limit: int = 50) -> list[tuple[str, str, int]]:
    """(source name, why held back, articles) for articles no reader may see yet, most first."""
    rows = conn.execute(
        "SELECT s.name, a.held_back, count(*) FROM articles a JOIN sources s ON s.id = a.source_id "
        "WHERE a.held_back IS NOT NULL GROUP BY s.name, a.held_back ORDER BY count(*) DESC, s.name LIMIT %s",
        (limit,),
    ).fetchall()
    return [(r[0], r[1], int(r[2])) for r in rows]


def oldest_articles(conn: psycopg.Connection[Any], n: int) -> list[tuple[str, str, datetime | None]]:
    """(title, source name, source_updated_at) of the `n` articles their source updated longest ago."""
    rows = conn.execute(
        "SELECT a.title, s.name, a.source_updated_at FROM articles a JOIN sources s ON s.id = a.source_id "
        "WHERE a.source_updated_at IS NOT NULL ORDER BY a.source_updated_at LIMIT %s", (n,)
    ).fetchall()
    return [(r[0], r[1], r[2]) for r in rows]


def registered_sources(db: Database) -> list[tuple[str, str, dict[str, Any]]]:
    """The sources `kbbot ingest` registered in the index: (name, kind, stored config), by name."""
    with translate_errors("Reading the configured sources"), db.raw_connection() as pg:
        rows = pg.execute("SELECT name, kind, config FROM sources ORDER BY name").fetchall()
    return [(name, kind, dict(config)) for name, kind, config in rows]


def delete_empty_source(db: Database, name: str) -> bool:
    """Drop the row of a source that has no article left (after `RetiredSource` synced); one that still
    has articles (a sync that could not remove them all) is kept, so nothing is deleted unseen."""
    with translate_errors("Removing the source"), db.raw_connection() as pg, pg.transaction():
        deleted = pg.execute("DELETE FROM sources s WHERE s.name = %s AND NOT EXISTS "
                             "(SELECT 1 FROM articles a WHERE a.source_id = s.id)", (name,)).rowcount
    return bool(deleted)


def _context(title: str, draft: ChunkDraft) -> str:
    return " > ".join((title, *draft.heading_path))


def _pg_text_array(values: Sequence[str]) -> str:
    """A text[] literal, because unnest() over a 2-D array cannot carry ragged heading paths."""
    escaped = ['"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values]
    return "{" + ",".join(escaped) + "}"
