"""Search: pgvector HNSW (cosine) and a real BM25, fused with weighted reciprocal rank fusion, in one SQL
statement and one round trip.

PostgreSQL's `ts_rank` ignores document frequency, which is why fusing it can hurt a good dense model
(DESIGN.md). The lexical branch here scores BM25 from the chunks' tsvectors and the `lexicon` table of
document frequencies that every sync refreshes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from sqlalchemy import Connection, text

from retrieval.db import Database, translate_errors
from retrieval.embeddings import Embedder
from retrieval.errors import EmptyQuestionError, ModelMismatchError, SchemaError
from retrieval.spaces import EmbeddingSpace, active_space
from retrieval.types import SearchHit

log = logging.getLogger(__name__)

SearchMode = Literal["hybrid", "dense", "lexical"]
BM25_K1 = 1.2
BM25_B = 0.75
RRF_K = 60
# Lexemes in more than this share of chunks add little to BM25 but make the candidate set huge.
COMMON_TERM_SHARE = 0.2
# Candidates come from the rarest query terms whose postings (chunks containing them) add up to at most this
# many; the rarest term counts up to 4x the budget, and a query made only of commoner words gets no lexical
# candidates (the dense branch answers it). Scoring a candidate costs ~10 microseconds, so this bounds a
# lexical search at any KB size: at 1M chunks a common term alone matches 100k chunks (5 s), while the
# rare terms that fit the budget carry most of BM25's weight anyway (measured in BENCHMARKS.md).
LEXICAL_POSTINGS_BUDGET = 5000
# A search filtered to sources holding at most this many vectors ranks them all exactly instead of scanning
# the HNSW index: at 1M chunks an iterative scan of a 1% source (10k rows) returned full results for only
# 37% of questions (it stops after hnsw.max_scan_tuples = 20,000 index tuples), an exact scan for all.
EXACT_FILTER_MAX_ROWS = 20000


@dataclass(frozen=True)
class FusionWeights:
    dense: float = 1.0
    lexical: float = 1.0


@dataclass
class SearchResult:
    hits: list[SearchHit]
    timings_ms: dict[str, float] = field(default_factory=dict)
    space: EmbeddingSpace | None = None
    query_vector: np.ndarray | None = None  # reused by the answerer (one question embedding per ask)


_DENSE_CTE = """
dense AS (
    SELECT chunk_id, row_number() OVER (ORDER BY dist) AS rank
    FROM (
        SELECT e.chunk_id, ({vec} <=> CAST(:qvec AS {qtype})){exact} AS dist
        FROM embeddings e
        WHERE e.space_id = {space} {dense_filter}
        ORDER BY dist
        LIMIT :n
    ) nearest
)"""

_LEXICAL_CTE = """
qterms AS (
    SELECT l.lexeme,
           ln(1 + (st.doc_count - l.doc_freq + 0.5) / (l.doc_freq + 0.5)) AS idf,
           l.doc_freq
    FROM unnest(to_tsvector('english', :qtext)) AS q
    JOIN lexicon l ON l.lexeme = q.lexeme
    CROSS JOIN lexicon_stats st
),
selective AS (
    -- keep terms that narrow the candidates; if all are common, the two rarest; and of those, only the
    -- rarest whose postings fit the budget
    SELECT lexeme, idf FROM (
        SELECT lexeme, idf, doc_freq, sum(doc_freq) OVER (ORDER BY doc_freq, lexeme) AS postings FROM qterms
        WHERE doc_freq <= (SELECT doc_count * {common} FROM lexicon_stats)
           OR lexeme IN (SELECT lexeme FROM qterms ORDER BY doc_freq LIMIT 2)
    ) ranked
    -- the rarest term alone may exceed the budget a little; a query of only very common words is left to
    -- the dense branch
    WHERE postings <= {budget} OR (postings = doc_freq AND doc_freq <= 4 * {budget})
),
lexical AS (
    SELECT chunk_id, row_number() OVER (ORDER BY bm25 DESC) AS rank
    FROM (
        SELECT c.id AS chunk_id,
               sum(qt.idf * (cardinality(u.positions) * ({k1} + 1))
                   / (cardinality(u.positions)
                      + {k1} * (1 - {b} + {b} * length(c.tsv) / greatest(st.avg_doc_len, 1)))) AS bm25
        FROM chunks c
        CROSS JOIN LATERAL unnest(c.tsv) AS u
        JOIN qterms qt ON qt.lexeme = u.lexeme
        CROSS JOIN lexicon_stats st
        WHERE c.tsv @@ (SELECT coalesce(string_agg(quote_literal(lexeme), ' | ')::tsquery, ''::tsquery)
                        FROM selective)
          {lexical_filter}
        GROUP BY c.id
        ORDER BY bm25 DESC
        LIMIT :n
    ) scored
)"""

_SELECT = """
SELECT c.id AS chunk_id, a.id AS article_id, s.name AS source, a.external_id, a.title, a.url,
       c.heading_path, c.text, c.char_start, c.char_end, a.source_updated_at,
       f.score, f.dense_rank, f.lexical_rank,
       1 - ({evec} <=> CAST(:qvec AS vector({dim}))) AS similarity
FROM fused f
JOIN chunks c ON c.id = f.chunk_id
JOIN articles a ON a.id = c.article_id
JOIN sources s ON s.id = a.source_id
LEFT JOIN embeddings e ON e.chunk_id = c.id AND e.space_id = {space}
ORDER BY f.score DESC
LIMIT :k"""


def _fused_cte(mode: SearchMode, weights: FusionWeights) -> str:
    if mode == "dense":
        return (f"fused AS (SELECT chunk_id, 1.0 / ({RRF_K} + rank) AS score, rank AS dense_rank, "
                "NULL::bigint AS lexical_rank FROM dense)")
    if mode == "lexical":
        return (f"fused AS (SELECT chunk_id, 1.0 / ({RRF_K} + rank) AS score, NULL::bigint AS dense_rank, "
                "rank AS lexical_rank FROM lexical)")
    return (
        "fused AS (SELECT coalesce(d.chunk_id, l.chunk_id) AS chunk_id, "
        f"coalesce({weights.dense:.6f} / ({RRF_K} + d.rank), 0) "
        f"+ coalesce({weights.lexical:.6f} / ({RRF_K} + l.rank), 0) AS score, "
        "d.rank AS dense_rank, l.rank AS lexical_rank "
        "FROM dense d FULL OUTER JOIN lexical l ON d.chunk_id = l.chunk_id)"
    )


def build_search_sql(space: EmbeddingSpace, mode: SearchMode, weights: FusionWeights,
                     filtered: bool, exact: bool = False) -> str:
    """The one statement for a mode. Space id and dimension are inlined (ints from our own table) so the
    planner can match the space's partial HNSW index; `exact` ranks by a distance expression the index
    cannot serve (`+ 0`), so the filtered rows are read through the source B-tree and sorted exactly."""
    ctes = []
    if mode in ("dense", "hybrid"):
        ctes.append(_DENSE_CTE.format(
            vec=space.vector_expr("e."), qtype=space.index_type, space=space.id, exact=" + 0" if exact else "",
            dense_filter="AND e.source_id = ANY(:source_ids)" if filtered else "",
        ))
    if mode in ("lexical", "hybrid"):
        ctes.append(_LEXICAL_CTE.format(
            common=COMMON_TERM_SHARE, k1=BM25_K1, b=BM25_B, budget=LEXICAL_POSTINGS_BUDGET,
            lexical_filter="AND c.source_id = ANY(:source_ids)" if filtered else "",
        ))
    ctes.append(_fused_cte(mode, weights))
    return "WITH " + ",\n".join(ctes) + _SELECT.format(
        evec=f"(e.embedding::vector({space.dimension}))", dim=space.dimension, space=space.id
    )


def filter_is_small(conn: Connection, space: EmbeddingSpace, source_ids: Sequence[int]) -> bool:
    """True when the filtered sources hold at most EXACT_FILTER_MAX_ROWS vectors (counted through the
    source B-tree, stopping at the bound). Those are ranked exactly: complete and exact for the cost of
    reading them, where an iterative HNSW scan would stop at hnsw.max_scan_tuples with results missing."""
    found = conn.execute(text(
        f"SELECT count(*) FROM (SELECT 1 FROM embeddings WHERE space_id = {int(space.id)} "
        "AND source_id = ANY(:ids) LIMIT :bound) t"
    ), {"ids": list(source_ids), "bound": EXACT_FILTER_MAX_ROWS + 1}).scalar_one()
    return int(found) <= EXACT_FILTER_MAX_ROWS


class SpaceChangedError(Exception):
    """The space a search embedded its question for stopped being active meanwhile (a re-embed switched)."""


class Searcher:
    """Searches the active embedding space.

    While a re-embed with a new model builds its space, the active space still holds the old model's
    vectors: with `embedder_for`, questions are embedded by the active space's own model (answers keep
    working), and the searcher follows the switch on the first search after it.
    """

    def __init__(self, db: Database, embedder: Embedder, *, mode: SearchMode = "hybrid",
                 ef_search: int = 200, weights: FusionWeights | None = None,
                 embedder_for: Callable[[EmbeddingSpace], Embedder] | None = None) -> None:
        self.db = db
        self.embedder = embedder
        self.mode = mode
        self.ef_search = ef_search
        self.weights = weights or FusionWeights()
        self.embedder_for = embedder_for
        self._space: EmbeddingSpace | None = None

    def space(self, *, refresh: bool = False) -> EmbeddingSpace:
        if self._space is None or refresh:
            with translate_errors("Reading the index"), self.db.engine.connect() as conn:
                space = active_space(conn)
            if space is None:
                raise SchemaError("The index is empty: run `kbbot ingest PATH` or `kbbot sync` first.")
            self.query_embedder(space)  # fail fast on a model this process cannot embed with
            self._space = space
        return self._space

    def query_embedder(self, space: EmbeddingSpace) -> Embedder:
        """The embedder whose vectors are comparable with the space's."""
        if (space.provider, space.model) == (self.embedder.provider, self.embedder.model):
            return self.embedder
        if self.embedder_for is None:
            raise ModelMismatchError(f"{space.provider}/{space.model}",
                                     f"{self.embedder.provider}/{self.embedder.model}")
        return self.embedder_for(space)

    def search(self, question: str, *, k: int = 5, sources: Sequence[str] | None = None,
               mode: SearchMode | None = None) -> SearchResult:
        question = question.strip()
        if not question:
            raise EmptyQuestionError()
        for attempt in (1, 2):
            space = self.space(refresh=attempt > 1)
            embedder = self.query_embedder(space)
            started = time.perf_counter()
            qvec = embedder.embed_query(question)
            embed_ms = (time.perf_counter() - started) * 1000
            try:
                result = self.search_vector(question, qvec, k=k, sources=sources, mode=mode, space=space)
            except SpaceChangedError:
                if attempt == 2:
                    raise
                log.info("the embedding space changed (a re-embed finished): searching the new one")
                continue
            result.timings_ms["embed"] = embed_ms
            # The answerer reuses the vector only when it embeds with the same model; during a model
            # change it embeds the question itself, with the model its sentence vectors come from.
            result.query_vector = qvec if embedder is self.embedder else None
            return result
        raise AssertionError("unreachable")

    def search_vector(self, question: str, qvec: np.ndarray, *, k: int = 5,
                      sources: Sequence[str] | None = None, mode: SearchMode | None = None,
                      space: EmbeddingSpace | None = None) -> SearchResult:
        """Search with a precomputed question vector (benchmarks time this part alone)."""
        space = space or self.space()
        mode = mode or self.mode
        candidates = max(4 * k, 40)
        params: dict[str, object] = {
            "qvec": _vector_literal(qvec), "qtext": question, "n": candidates, "k": k,
        }
        started = time.perf_counter()
        with translate_errors("Searching the index"), self.db.engine.begin() as conn:
            # HNSW returns at most ef_search rows: never ask for fewer than the candidates wanted.
            ef_search = max(self.ef_search, candidates)
            conn.execute(text("SELECT set_config('hnsw.ef_search', :ef, true)"), {"ef": str(ef_search)})
            still_active = conn.execute(text("SELECT status = 'active' FROM embedding_spaces WHERE id = :id"),
                                        {"id": space.id}).scalar()
            if not still_active:
                raise SpaceChangedError(space.label)
            exact = False
            if sources is not None:
                params["source_ids"] = list(conn.execute(
                    text("SELECT id FROM sources WHERE name = ANY(:names)"), {"names": list(sources)}
                ).scalars())
                exact = filter_is_small(conn, space, params["source_ids"])  # type: ignore[arg-type]
                if not exact:
                    conn.execute(text("SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true)"))
            sql = build_search_sql(space, mode, self.weights, filtered=sources is not None, exact=exact)
            rows = conn.execute(text(sql), params).all()
        sql_ms = (time.perf_counter() - started) * 1000
        hits = [
            SearchHit(
                chunk_id=r.chunk_id, article_id=r.article_id, source=r.source, external_id=r.external_id,
                title=r.title, url=r.url, heading_path=tuple(r.heading_path or ()), text=r.text,
                char_start=r.char_start, char_end=r.char_end, updated_at=r.source_updated_at,
                score=float(r.score), similarity=None if r.similarity is None else float(r.similarity),
                dense_rank=r.dense_rank, lexical_rank=r.lexical_rank,
            )
            for r in rows
        ]
        return SearchResult(hits=hits, timings_ms={"search": sql_ms}, space=space)


def _vector_literal(vector: np.ndarray) -> str:
    return "[" + ",".join(f"{x:.7g}" for x in np.asarray(vector, dtype=np.float32).tolist()) + "]"
