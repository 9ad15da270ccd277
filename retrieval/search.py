"""Search: pgvector HNSW (cosine) and a real BM25, fused with weighted reciprocal rank fusion in SQL.

The lexical branch is BM25 from retrieval/lexical_index.py: an unfiltered search asks it for the ranked
chunk ids (postings plus delta, one statement) and passes them into the fused statement; a search filtered
by source embeds its exact scorer in the statement itself.

Access (retrieval/access.py) is a filter of every branch, never a pass over the top k: the dense branch
scans HNSW iteratively with `audience && reader` as its condition (or ranks a small audience's vectors
exactly through the GIN index), the exact lexical scorer has it in its WHERE, the postings' ranking keeps
the best candidates whose chunks the reader may see (a small audience is scored exactly instead: its best
passages need not reach any term's top postings), and the final join checks it once more. A restricted
passage never takes a slot.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np
import psycopg
from psycopg.rows import namedtuple_row

from retrieval.access import ReaderScope
from retrieval.acronyms import AcronymReader
from retrieval.db import Database, translate_errors
from retrieval.embeddings import Embedder
from retrieval.errors import EmptyQuestionError, ModelMismatchError, SchemaError, SourceError, SpaceChangedError
from retrieval.index_store import count_vectors, source_ids, source_names, vectors_per_audience
from retrieval.lexical_index import LexicalIndex
from retrieval.settings import DEFAULTS
from retrieval.spaces import EmbeddingSpace, active_space, is_active
from retrieval.types import SearchHit

log = logging.getLogger(__name__)

SearchMode = Literal["hybrid", "dense", "lexical"]
RRF_K = 60
# A search filtered to sources holding at most this many vectors ranks them all exactly instead of scanning
# the HNSW index: at 1M chunks an iterative scan of a 1% source (10k rows) returned full results for only
# 37% of questions (it stops after hnsw.max_scan_tuples = 20,000 index tuples), an exact scan for all.
EXACT_FILTER_MAX_ROWS = 20000


@dataclass(frozen=True)
class FusionWeights:
    """How the branches' rankings become one. `method="scores"` (the default): the first `score_head`
    passages by a convex combination of the branches' scores (below), the others by weighted reciprocal rank
    fusion, weight / (rrf_k + rank) per branch; `method="rrf"`: all by the latter. Then `article`: a
    passage gains that share of the scores of its article's other candidate passages (0: each on its own).

    Measured side by side on three sets of different kinds (BENCHMARKS.md "Session 7: ranking",
    bench/fusion_replay.py, bench/retrieval_variants.py). Ranks alone throw away how far ahead a branch's
    best passage is: the dense branch's clear winner on an FAQ-style question came 7th after fusion. The
    score choice of the first passage raised the share of questions whose first passage is from a gold
    article on all three sets (aws-docs-qa 0.60 -> 0.67, python-faq 0.78 -> 0.85, demo 0.93 -> 0.95);
    ordering every passage by score lost aws Recall@10 (0.95 -> 0.93), hence RRF for the rest. Weighting
    RRF towards dense helped the FAQ sets and lost on aws; article aggregation hurt on every set (long
    articles with many matching passages crowd out the short one that answers), hence 0."""

    dense: float = 1.0
    lexical: float = 1.0
    rrf_k: int = RRF_K
    article: float = 0.0
    # "scores": instead of ranks, a convex combination of the branches' scores, dense_share x the cosine
    # similarity scaled to the dense candidates' range + (1 - dense_share) x BM25 over the best BM25 (0 for
    # a passage without the question's selective words). A passage only one branch found keeps its true
    # cosine (computed for every fused passage), so a clear dense winner is not buried by ranks alone.
    method: Literal["rrf", "scores"] = "scores"
    dense_share: float = 0.6
    # ... for the first `score_head` passages (what a reader sees and the answerer cites first); the rest
    # keep the reciprocal-rank order, whose recall of the tail the score combination lost (aws-docs-qa
    # Recall@10 0.95 -> 0.93 when it ordered everything). 1: the first passage by score, on all three sets
    # the same gold-first rate as 5, and the gate's candidates closest to the ones it was calibrated on.
    score_head: int = 1


@dataclass
class SearchResult:
    hits: list[SearchHit]
    timings_ms: dict[str, float] = field(default_factory=dict)
    space: EmbeddingSpace | None = None
    query_vector: np.ndarray | None = None  # reused by the answerer (one question embedding per ask)


class Retriever(Protocol):
    """What answering needs from search: a `Searcher`, or a wrapper such as `rewrite.ExpandingSearcher`."""

    def search(self, question: str, *, k: int = 5, sources: Sequence[str] | None = None,
               mode: SearchMode | None = None, audience: ReaderScope | None = None) -> SearchResult: ...

    def query_embedder(self, space: EmbeddingSpace) -> Embedder:
        """The embedder whose vectors are comparable with the space's."""
        ...


_DENSE_CTE = """
dense AS (
    SELECT chunk_id, dist, row_number() OVER (ORDER BY dist) AS rank
    FROM (
        SELECT e.chunk_id, ({vec} <=> CAST(%(qvec)s AS {qtype})){exact} AS dist
        FROM embeddings e
        WHERE e.space_id = {space} {dense_filter} {dense_audience}
        ORDER BY dist
        LIMIT {n}
    ) nearest
)"""

# The lexical ranks computed from postings, passed in as a bigint[] literal (one parameter type whatever the
# ids, so the prepared statement is reused).
_POSTINGS_LEXICAL_CTE = """
lexical AS (
    SELECT chunk_id, rank, score
    FROM unnest(CAST(%(lexical_ids)s AS bigint[]), CAST(%(lexical_scores)s AS float8[])) WITH ORDINALITY
         AS l(chunk_id, score, rank)
)"""

_SELECT = """
SELECT c.id AS chunk_id, a.id AS article_id, s.name AS source, a.external_id, a.title, a.url,
       c.heading_path, c.text, c.char_start, c.char_end, a.source_updated_at,
       {score} AS score, f.score AS rank_score, f.dense_rank, f.lexical_rank,
       1 - ({evec} <=> CAST(%(qvec)s AS vector({dim}))) AS similarity
FROM fused f
JOIN chunks c ON c.id = f.chunk_id
JOIN articles a ON a.id = c.article_id
JOIN sources s ON s.id = a.source_id
LEFT JOIN embeddings e ON e.chunk_id = c.id AND e.space_id = {space}{ranges}
-- a re-embed may have switched spaces since the caller read this one: then no rows, and the caller checks
WHERE EXISTS (SELECT 1 FROM embedding_spaces WHERE id = {space} AND status = 'active') {final_audience}"""

# Score fusion: the first `score_head` passages by the fused score, then the others by reciprocal rank.
_HEAD_ORDER = """
SELECT * FROM (SELECT *, row_number() OVER (ORDER BY score DESC, chunk_id) AS score_rank FROM ({select}) scored) ranked
ORDER BY score_rank <= {head} DESC, CASE WHEN score_rank <= {head} THEN score_rank END, rank_score DESC, chunk_id
LIMIT {k}"""


def _fused_cte(mode: SearchMode, weights: FusionWeights) -> str:
    rrf_k = int(weights.rrf_k)
    if mode == "dense":
        return (f"fused AS (SELECT chunk_id, 1.0 / ({rrf_k} + rank) AS score, rank AS dense_rank, "
                "NULL::bigint AS lexical_rank FROM dense)")
    if mode == "lexical":
        return (f"fused AS (SELECT chunk_id, 1.0 / ({rrf_k} + rank) AS score, NULL::bigint AS dense_rank, "
                "rank AS lexical_rank FROM lexical)")
    return (
        "fused AS (SELECT coalesce(d.chunk_id, l.chunk_id) AS chunk_id, "
        f"coalesce({weights.dense:.6f} / ({rrf_k} + d.rank), 0) "
        f"+ coalesce({weights.lexical:.6f} / ({rrf_k} + l.rank), 0) AS score, "
        "d.rank AS dense_rank, l.rank AS lexical_rank, l.score AS lexical_score "
        "FROM dense d FULL OUTER JOIN lexical l ON d.chunk_id = l.chunk_id)"
    )


# The branches' score ranges for `FusionWeights.method == "scores"`, over each branch's first NORM_DEPTH
# passages whatever the number of candidates asked for, so that a passage scores the same for `--k 3` and
# for a deeper search: NULL when a branch found nothing (the score expression then counts that branch as 0).
NORM_DEPTH = 40
_RANGES = f"""
CROSS JOIN (SELECT min(1 - dist) FILTER (WHERE rank <= {NORM_DEPTH}) AS lo, max(1 - dist) AS hi FROM dense) dr
CROSS JOIN (SELECT min(score) FILTER (WHERE rank <= {NORM_DEPTH}) AS lo, max(score) AS hi FROM lexical) lr"""


def _score_expr(mode: SearchMode, weights: FusionWeights, similarity: str) -> str:
    """The fused score's SQL: RRF (`f.score`), or the convex combination of min-max scaled scores."""
    if mode != "hybrid" or weights.method == "rrf":
        return "f.score"
    share = min(max(weights.dense_share, 0.0), 1.0)
    # a passage the dense branch did not return still has its cosine (below the range: negative)
    dense = f"coalesce((coalesce({similarity}, dr.lo) - dr.lo) / nullif(dr.hi - dr.lo, 0), 1)"
    lexical = ("CASE WHEN f.lexical_score IS NULL THEN 0 "
               "ELSE coalesce((f.lexical_score - lr.lo) / nullif(lr.hi - lr.lo, 0), 1) END")
    return f"coalesce({share:.6f} * {dense}, 0) + {1 - share:.6f} * {lexical}"


def build_search_sql(space: EmbeddingSpace, mode: SearchMode, weights: FusionWeights,
                     filtered: bool, exact: bool = False, *, k: int = 10, candidates: int = 40,
                     lexical_ids: bool = False, lexical: LexicalIndex | None = None, audience: bool = False) -> str:
    """The one statement for a mode. Space id and dimension are inlined (ints from our own table) so the
    planner can match the space's partial HNSW index, and so are the limits (a LIMIT the planner cannot
    see makes it choose a sequential scan); `exact` ranks by a distance expression the index cannot serve
    (`+ 0`), so the filtered rows are read through the source B-tree and sorted exactly. `lexical_ids`:
    the lexical ranking is passed in (`%(lexical_ids)s`, from postings) instead of scored in SQL by
    `lexical`'s exact scorer. `audience`: only passages whose audience shares a token with `%(audience)s`
    (the reader's scope)."""
    reader = "audience && CAST(%(audience)s AS text[])"
    ctes = []
    if mode in ("dense", "hybrid"):
        ctes.append(_DENSE_CTE.format(
            vec=space.vector_expr("e."), qtype=space.index_type, space=space.id, exact=" + 0" if exact else "",
            n=int(candidates), dense_filter="AND e.source_id = ANY(%(source_ids)s)" if filtered else "",
            dense_audience=f"AND e.{reader}" if audience else "",
        ))
    if mode in ("lexical", "hybrid") and lexical_ids:
        ctes.append(_POSTINGS_LEXICAL_CTE)
    elif mode in ("lexical", "hybrid"):
        conditions = (["c.source_id = ANY(%(source_ids)s)"] if filtered else []) + ([f"c.{reader}"] if audience else [])
        ctes.append((lexical or LexicalIndex()).exact_cte(candidates, source_filter=" AND ".join(conditions)))
    ctes.append(_fused_cte(mode, weights))
    evec = f"(e.embedding::vector({space.dimension}))"
    base = _score_expr(mode, weights, f"1 - ({evec} <=> CAST(%(qvec)s AS vector({space.dimension})))")
    # After the final audience filter, so a passage the reader may not see lends its article nothing.
    score = (f"{base} + {weights.article:.6f} * (sum({base}) OVER (PARTITION BY c.article_id) - {base})"
             if weights.article else base)
    select = _SELECT.format(score=score, evec=evec, dim=space.dimension, space=space.id,
                            final_audience=f"AND c.{reader}" if audience else "",
                            ranges=_RANGES if base != "f.score" else "")
    if base == "f.score":
        return "WITH " + ",\n".join(ctes) + select + f"\nORDER BY score DESC\nLIMIT {int(k)}"
    return "WITH " + ",\n".join(ctes) + _HEAD_ORDER.format(select=select, head=int(weights.score_head), k=int(k))


def filter_is_small(conn: psycopg.Connection[Any], space: EmbeddingSpace, sources: Sequence[int],
                    max_rows: int = EXACT_FILTER_MAX_ROWS) -> bool:
    """True when the filtered sources hold at most `max_rows` vectors (counted through the source B-tree,
    stopping at the bound). Those are ranked exactly: complete and exact for the cost of reading them,
    where an iterative HNSW scan would stop at hnsw.max_scan_tuples with results missing."""
    return count_vectors(conn, space.id, sources, stop_at=max_rows + 1) <= max_rows


def unknown_sources_error(unknown: set[str], known: list[str]) -> SourceError:
    names = ", ".join(repr(n) for n in sorted(unknown))
    if not known:
        return SourceError(f"No source named {names}: nothing is indexed yet (`kbbot ingest PATH`).")
    return SourceError(f"No source named {names}: the indexed sources are {', '.join(known)} "
                       "(`kbbot status` describes them).")


class Searcher:
    """Searches the active embedding space.

    While a re-embed with a new model builds its space, the active space still holds the old model's
    vectors: with `embedder_for`, questions are embedded by the active space's own model (answers keep
    working), and the searcher follows the switch on the first search after it. `lexical` ranks the
    lexical branch (BM25, retrieval/lexical_index.py); a filter on sources holding at most
    `exact_filter_max_rows` vectors is ranked exactly (`filter_is_small`).
    """

    def __init__(self, db: Database, embedder: Embedder, *, mode: SearchMode = DEFAULTS.search.search_mode,
                 ef_search: int = DEFAULTS.search.hnsw_ef_search, weights: FusionWeights | None = None,
                 embedder_for: Callable[[EmbeddingSpace], Embedder] | None = None,
                 lexical: LexicalIndex | None = None, exact_filter_max_rows: int = EXACT_FILTER_MAX_ROWS,
                 acronyms: AcronymReader | None = None, expand_acronyms: bool = True) -> None:
        self.db = db
        # The question is embedded with the KB's own acronyms spelled out (retrieval/acronyms.py); the
        # lexical branch searches it as asked. `acronyms` shares one glossary between searchers.
        self.acronyms = (acronyms or AcronymReader(db)) if expand_acronyms else None
        self.embedder = embedder
        self.mode = mode
        self.ef_search = ef_search
        self.weights = weights or FusionWeights()
        self.embedder_for = embedder_for
        self.lexical = lexical or LexicalIndex()
        self.exact_filter_max_rows = exact_filter_max_rows
        self._space: EmbeddingSpace | None = None
        self._audience_counts = AudienceCounts()

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

    def search(self, question: str, *, k: int = DEFAULTS.search.top_k, sources: Sequence[str] | None = None,
               mode: SearchMode | None = None, audience: ReaderScope | None = None) -> SearchResult:
        question = question.strip()
        if not question:
            raise EmptyQuestionError()
        for attempt in (1, 2):
            space = self.space(refresh=attempt > 1)
            embedder = self.query_embedder(space)
            started = time.perf_counter()
            qvec = embedder.embed_query(self.acronyms.expand(question) if self.acronyms else question)
            embed_ms = (time.perf_counter() - started) * 1000
            try:
                result = self.search_vector(question, qvec, k=k, sources=sources, mode=mode, space=space,
                                            audience=audience)
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

    def _run(self, space: EmbeddingSpace, mode: SearchMode, params: dict[str, object], *, k: int,
             candidates: int, ef_search: int, sources: Sequence[str] | None,
             audience: ReaderScope | None, exhaustive: bool = False) -> list[Any]:
        with self.db.search_engine().connect() as sa_conn:
            try:
                conn = sa_conn.connection.driver_connection
                assert isinstance(conn, psycopg.Connection)
                info = sa_conn.connection.info
                _session_setting(conn, info, "hnsw.ef_search", str(ef_search))
                exact = exhaustive
                if sources is not None:
                    found = source_ids(conn, sources)
                    if len(found) < len(set(sources)):  # a typo would otherwise abstain as "not in the KB"
                        raise unknown_sources_error(set(sources) - set(found), source_names(conn))
                    ids = list(found.values())
                    params["source_ids"] = ids
                    exact = exact or filter_is_small(conn, space, ids, self.exact_filter_max_rows)
                small_audience = False
                if audience is not None:
                    params["audience"] = audience.sql_tokens
                    readable, total = self._audience_counts.allowed(conn, space, audience)
                    # Small, and a minority: a reader who sees most of the index is searched like the
                    # unfiltered (HNSW, postings), only the filter added; one who sees few rows exactly.
                    small_audience = readable <= self.exact_filter_max_rows and 2 * readable < total
                    exact = exact or small_audience
                if sources is not None or audience is not None:
                    _session_setting(conn, info, "hnsw.iterative_scan", "relaxed_order")
                from_postings = False
                if sources is None and not exact and mode in ("lexical", "hybrid"):
                    ranked = self.lexical.rank_scored(conn, params["qtext"], candidates,  # type: ignore[arg-type]
                                                      readable_by=None if audience is None else audience.sql_tokens)
                    if ranked is None:
                        log.info("the lexicon has no postings yet (the next sync adds them): scoring BM25 in SQL")
                    else:
                        params["lexical_ids"] = "{" + ",".join(str(c) for c, _ in ranked) + "}"
                        params["lexical_scores"] = "{" + ",".join(f"{v:.9g}" for _, v in ranked) + "}"
                        from_postings = True
                sql = build_search_sql(space, mode, self.weights, filtered=sources is not None, exact=exact,
                                       k=k, candidates=candidates, lexical_ids=from_postings,
                                       lexical=self.lexical, audience=audience is not None)
                if sources is None and audience is None and not exhaustive:
                    # Prepared, so its generic plan (the pool's plan_cache_mode) is reused: no planning per ask.
                    with conn.cursor(row_factory=namedtuple_row) as cur:
                        rows = cur.execute(sql, params, prepare=True).fetchall()
                else:
                    # A filtered statement must be planned for its own sources and audience (how many rows
                    # they hold decides between HNSW and B-tree/GIN): values inlined, as a generic plan over
                    # an unknown source list scanned the table (30 ms instead of 1 ms at 100k chunks).
                    with psycopg.ClientCursor(conn, row_factory=namedtuple_row) as cur:
                        rows = cur.execute(sql, params).fetchall()
                if not rows and not is_active(sa_conn, space):
                    raise SpaceChangedError(space.label)
                return rows
            except psycopg.OperationalError:
                sa_conn.invalidate()
                raise

    def search_vector(self, question: str, qvec: np.ndarray, *, k: int = DEFAULTS.search.top_k,
                      sources: Sequence[str] | None = None, mode: SearchMode | None = None,
                      space: EmbeddingSpace | None = None, audience: ReaderScope | None = None,
                      exhaustive: bool = False, candidates: int | None = None) -> SearchResult:
        """Search with a precomputed question vector (benchmarks time this part alone). `audience`: only
        passages every reader of the answer may see; None is the operator at a terminal (no filter).
        `exhaustive`: rank every passage exactly (no HNSW, no postings): the reference benchmarks measure
        recall against, slow on a large index. `candidates`: passages each branch contributes to the fusion
        (by default 4k, at least 40)."""
        space = space or self.space()
        mode = mode or self.mode
        candidates = candidates or max(4 * k, 40)
        params: dict[str, object] = {
            "qvec": np.asarray(qvec, dtype=np.float32), "qtext": question,
        }
        # HNSW returns at most ef_search rows: never ask for fewer than the candidates wanted.
        ef_search = max(self.ef_search, candidates)
        started = time.perf_counter()
        with translate_errors("Searching the index"):
            for attempt in (1, 2):
                try:
                    rows = self._run(space, mode, params, k=k, candidates=candidates, ef_search=ef_search,
                                     sources=sources, audience=audience, exhaustive=exhaustive)
                    break
                except psycopg.OperationalError:
                    # The search pool does not ping: a connection the server dropped fails here once.
                    if attempt == 2:
                        raise
                    log.info("a search connection was dropped; retrying on a new one")
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


class AudienceCounts:
    """Vectors per distinct audience in a space, re-read at most every `ttl_s`: how many passages a reader
    may see decides between an iterative HNSW scan and an exact ranking, as for sources. Approximate by
    design (a sync may change them meanwhile): only speed depends on it, never who sees what."""

    def __init__(self, ttl_s: float = 60.0) -> None:
        self.ttl_s = ttl_s
        self._cache: dict[int, tuple[float, list[tuple[tuple[str, ...], int]]]] = {}

    def allowed(self, conn: psycopg.Connection[Any], space: EmbeddingSpace,
                audience: ReaderScope) -> tuple[int, int]:
        """(vectors the reader may see, all vectors) in the space."""
        cached = self._cache.get(space.id)
        if cached is None or cached[0] < time.monotonic():
            cached = (time.monotonic() + self.ttl_s, vectors_per_audience(conn, space.id))
            self._cache[space.id] = cached
        return (sum(count for tokens, count in cached[1] if audience.may_read(tokens)),
                sum(count for _, count in cached[1]))


def _session_setting(conn: psycopg.Connection[Any], info: dict[Any, Any], name: str, value: str) -> None:
    """Set a session setting on a search connection unless it already holds that value."""
    if info.get(name) != value:
        conn.execute("SELECT set_config(%s, %s, false)", (name, value))
        info[name] = value


def _vector_literal(vector: np.ndarray) -> str:
    return "[" + ",".join(f"{x:.7g}" for x in np.asarray(vector, dtype=np.float32).tolist()) + "]"
