"""The lexical index: BM25 over the chunks' tsvectors, and the tables that serve it (`lexicon`, `lexicon_stats`).

PostgreSQL's `ts_rank` ignores document frequency, which is why fusing it can hurt a good dense model
(DESIGN.md). This module is BM25's one home: its formula, its constants (`LexicalOptions`) and every
statement that reads or writes the lexicon. `retrieval/search.py` asks it for the lexical ranking and fuses
that with the dense one.

Impact-ordered postings. Scoring BM25 from the chunks' tsvectors costs a heap fetch, a detoast and an unnest
per candidate chunk (~5 microseconds), and a question with one mid-frequency word has thousands of
candidates. So the per-chunk part of BM25 (term frequency saturated and normalised by chunk length) is
computed once, when the lexicon is refreshed, and stored per lexeme in descending order ("champion lists",
Manning et al., IR book ch. 7). A search reads the first `postings_depth` entries of each question term in
one indexed query and adds them up with numpy: ~0.5 ms instead of 2-20 ms on the aws-docs-qa KB at the same
Recall@10 (BENCHMARKS.md).

Lists longer than the depth are truncated, so a chunk that is in no term's top entries is missed and a chunk
in some lists but not others gets a lower bound of its score. Terms in more than `common_term_share` of the
chunks are skipped unless they are among the question's two rarest: their idf is near zero and their lists
are the longest. Searches filtered by source use the exact scorer instead (`exact_cte`: a small source's
chunks need not reach any list's top entries), as does a lexicon refreshed before postings existed.

The delta. Rebuilding the postings reads every chunk (about 2 s at 40k chunks; see BENCHMARKS.md for 1M),
so a sync does not rebuild them for a small change. Chunks written since the last rebuild (ids above
`lexicon_stats.max_chunk_id`: chunk ids only grow, and a changed passage is a new row) are the "delta": each
search scores them exactly from their tsvectors, with the same idf and length normalisation, and adds them
as one more list. A question word that only the delta contains counts as the rarest possible word. Deleted
chunks stay in the lists until the rebuild and are dropped when the search joins the chunks. A sync
rebuilds once the delta or the deletions pass `backlog_due`'s bounds, which keep both the per-search cost
of the delta and the drift of the statistics small.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import psycopg

# One posting: chunk id and its BM25 term weight, big-endian as int8send/float4send write them.
POSTING = np.dtype([("chunk_id", ">i8"), ("weight", ">f4")])


@dataclass(frozen=True)
class LexicalOptions:
    """BM25's constants and the bounds that keep a lexical search's cost flat as the KB grows."""

    # Term-frequency saturation and length normalisation. Lower than the textbook 1.2 / 0.75: a passage
    # holding every question word beats one repeating some of them (the title weight below already makes
    # every passage of an article repeat its title's words), and a long passage such as a rates table is
    # not penalised for its length. Hybrid nDCG@10 and gold-first rose on aws-docs-qa and demo, python-faq
    # held with the score fusion (BENCHMARKS.md "Session 7: ranking").
    k1: float = 0.5
    b: float = 0.5
    # A question word found in the article's title, or in the headings above the passage, counts as this
    # many occurrences (BM25F-style field weights: a passage under "Reset your password" is about passwords
    # even when its text says "it"); 1.0 scores them like body words. Title x3 raised hybrid nDCG@10 on all
    # three sets measured (demo, python-faq, aws-docs-qa: BENCHMARKS.md, bench/retrieval_variants.py);
    # headings x2 helped aws alone. A change reaches the stored postings at the next sync (`postings_scoring`).
    title_weight: float = 3.0
    heading_weight: float = 1.0
    # BM25F: title and heading occurrences are not normalised by the passage's length (`_term_weight`).
    field_norm: bool = False
    # Entries kept (and read) per lexeme. On aws-docs-qa (40k chunks) hybrid Recall@10 was 0.90 at 1,000,
    # 0.93 at 2,000 and 0.95 (the exact scorer's) from 5,000 on; each entry costs 12 bytes to store and read.
    postings_depth: int = 5000
    common_term_share: float = 0.2
    # Exact scorer: candidates come from the rarest query terms whose postings (chunks containing them) add
    # up to at most this many; the rarest term counts up to 4x the budget, and a query made only of commoner
    # words gets no lexical candidates (the dense branch answers it). Scoring a candidate costs ~10
    # microseconds, so this bounds a lexical search at any KB size: at 1M chunks a common term alone matches
    # 100k chunks (5 s), while the rare terms that fit the budget carry most of BM25's weight anyway
    # (measured in BENCHMARKS.md).
    postings_budget: int = 5000
    # Exact scorer: a selective term found in at most this many chunks makes its chunks candidates on its
    # own; commoner ones only in pairs. On aws-docs-qa this cut hybrid search from 20 to 7 ms at unchanged
    # Recall@10 (BENCHMARKS.md).
    rare_term_max_chunks: int = 200
    # A rebuild is due when more chunks than this were added or removed since the last one (or more than
    # refresh_share of them): each search scores the delta, ~3 microseconds per chunk (a 500-chunk delta
    # adds ~1.7 ms to a 40k-chunk search, bench/postings_depth.py), and document frequencies and the average
    # length drift by at most that share. Embedding 500 new chunks takes longer than a rebuild at 100k chunks.
    refresh_backlog_chunks: int = 500
    refresh_share: float = 0.02

    @property
    def postings_scoring(self) -> str:
        """The settings baked into stored postings; postings computed with others are rebuilt."""
        return (f"k1={self.k1} b={self.b} title={self.title_weight} heading={self.heading_weight} "
                f"depth={self.postings_depth}" + (" bm25f" if self.field_norm else ""))

    @property
    def delta_max_chunks(self) -> int:
        """A search reads at most this many delta chunks (the oldest first); only a sync that could not
        rebuild leaves more, and the newest beyond it are then found by the dense branch alone until the
        next rebuild."""
        return 2 * self.refresh_backlog_chunks


@dataclass(frozen=True)
class KeywordStatus:
    """The BM25 postings: when a sync last rebuilt them and how many passages are newer (searched as their
    delta until the next rebuild)."""

    rebuilt_at: datetime
    newer_chunks: int


def _idf(doc_count: str, doc_freq: str) -> str:
    return f"ln(1 + ({doc_count} - {doc_freq} + 0.5) / ({doc_freq} + 0.5))::float8"


class LexicalIndex:
    """Owns `lexicon` and `lexicon_stats`: rebuilds them, says when a rebuild is due, and ranks a question.

    Holds no connection: each method runs on the psycopg connection it is given (the sync's write
    connection, or the search's). Float8 constants throughout: numeric arithmetic over every matched term
    cost as much as finding the candidates.
    """

    def __init__(self, options: LexicalOptions | None = None) -> None:
        self.options = options or LexicalOptions()
        self._refresh_sql = self._build_refresh_sql()
        self._rank_sql = self._build_rank_sql()

    # --- the formula ------------------------------------------------------------------------------
    def _term_weight(self, tf: str, ctx: str, doc_len: str, avg_len: str) -> str:
        """The per-chunk BM25 factor of a term; a term's score in a chunk is its idf times this. Classic
        BM25: tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl)). With `field_norm` (BM25F), the text
        occurrences `tf` are normalised by the passage's length and the weighted title and heading ones
        `ctx` are not, then saturated together: tfn = tf / (1 - b + b * dl / avgdl) + ctx,
        tfn * (k1 + 1) / (tfn + k1). A term found only in the text scores the same either way."""
        k1, b = f"{self.options.k1}::float8", f"{self.options.b}::float8"
        norm = f"(1 - {b} + {b} * {doc_len} / {avg_len})"
        if not self.options.field_norm:
            return f"{tf} * ({k1} + 1) / ({tf} + {k1} * {norm})"
        tfn = f"({tf} / {norm} + {ctx})"
        return f"{tfn} * ({k1} + 1) / ({tfn} + {k1})"

    @property
    def weighs_context(self) -> bool:
        """Whether title and heading positions are told apart from the text's (`_context_ends`)."""
        return self.options.field_norm or (self.options.title_weight, self.options.heading_weight) != (1.0, 1.0)

    def _tf(self, positions: str, ends: str) -> tuple[str, str]:
        """A term's frequency in a chunk as (text occurrences, weighted title and heading occurrences), the
        SQL expressions `_term_weight` takes; without `field_norm` all of it is the first. The tsvector is
        built from `context || ' ' || text` (context: "title > heading > ..."), so positions up to the last
        one of the title's own tsvector are title words, and those up to the context's last are heading
        words: `{ends}.title_end` and `{ends}.context_end` (`_context_ends`)."""
        if not self.weighs_context:
            return f"cardinality({positions})::float8", "0::float8"
        tw, hw = self.options.title_weight, self.options.heading_weight
        if self.options.field_norm:
            # positions are sorted: width_bucket counts those up to the title's and the context's end
            p = f"CAST({positions} AS int[])"
            in_title, in_context = f"width_bucket({ends}.title_end, {p})", f"width_bucket({ends}.context_end, {p})"
            return (f"(cardinality({positions}) - {in_context})::float8",
                    f"({tw}::float8 * {in_title} + {hw}::float8 * ({in_context} - {in_title}))")
        title, heading = tw - 1, hw - 1
        extra = []
        if title:
            extra.append(f"{title}::float8 * count(*) FILTER (WHERE p <= {ends}.title_end)")
        if heading:
            headings = f"p > {ends}.title_end AND p <= {ends}.context_end"
            extra.append(f"{heading}::float8 * count(*) FILTER (WHERE {headings})")
        # Positions are stored in ascending order: a term whose first one lies past the context occurs in
        # the text alone, as most do, and skips counting.
        return (f"(cardinality({positions}) + CASE WHEN {positions}[1] <= {ends}.context_end THEN "
                f"(SELECT {' + '.join(extra)} FROM unnest({positions}) AS p) ELSE 0 END)::float8", "0::float8")

    def _context_ends(self, chunk: str) -> str:
        """Columns `title_end, context_end` for a chunk row (see `_tf`); none when context is not weighed."""
        if not self.weighs_context:
            return ""
        last = "coalesce((SELECT max(p) FROM unnest(to_tsvector('english', {})) u, unnest(u.positions) p), 0)"
        # The title is the context up to its first " > " (a title that itself holds " > " counts in part).
        title = last.format(f"split_part({chunk}.context, ' > ', 1)")
        return f", {title} AS title_end, {last.format(chunk + '.context')} AS context_end"

    # --- rebuilding -------------------------------------------------------------------------------
    def _build_refresh_sql(self) -> str:
        # One pass over every (chunk, lexeme) pair yields both the document frequencies and the postings,
        # sorted by lexeme in the C collation (byte order; a linguistic collation sorts the million-row
        # input several times slower). The chunk length is computed once per chunk in the subquery:
        # length(tsv) in the outer expression would detoast the tsvector again for each of its lexemes.
        weight = self._term_weight("t.tf", "t.ctx", "c.doc_len", "st.avg_doc_len")
        tf, ctx = self._tf("positions", "c")
        return f"""
INSERT INTO lexicon (lexeme, doc_freq, postings)
SELECT lexeme COLLATE "C", count(*),
       substring(string_agg(int8send(chunk_id) || float4send(weight::float4), ''::bytea ORDER BY weight DESC, chunk_id)
                 FROM 1 FOR {POSTING.itemsize * self.options.postings_depth})
FROM (
    SELECT c.id AS chunk_id, t.lexeme, {weight} AS weight
    FROM (SELECT id, length(tsv)::float8 AS doc_len, tsv{self._context_ends("chunks")} FROM chunks
          WHERE id <= (SELECT max_chunk_id FROM lexicon_stats) OFFSET 0) c
    CROSS JOIN (SELECT greatest(avg_doc_len, 1) AS avg_doc_len FROM lexicon_stats) st
    CROSS JOIN LATERAL (SELECT lexeme, {tf} AS tf, {ctx} AS ctx FROM unnest(c.tsv)) t
) pairs
GROUP BY lexeme COLLATE "C"
"""

    def refresh(self, conn: psycopg.Connection[Any], *, sort_memory_mb: int = 256) -> None:
        """Document frequencies, average length and impact-ordered postings, recomputed from the chunks'
        tsvectors in one pass. Searches keep reading the previous lexicon until this commits."""
        with conn.transaction():
            conn.execute("LOCK TABLE lexicon IN EXCLUSIVE MODE")
            # The postings' length normalisation reads the new average, so the statistics come first.
            conn.execute(
                "INSERT INTO lexicon_stats (id, doc_count, avg_doc_len, max_chunk_id, scoring, refreshed_at) "
                "SELECT true, count(*), coalesce(avg(length(tsv)), 0), coalesce(max(id), 0), %s, now() "
                "FROM chunks ON CONFLICT (id) DO UPDATE SET doc_count = EXCLUDED.doc_count, "
                "avg_doc_len = EXCLUDED.avg_doc_len, max_chunk_id = EXCLUDED.max_chunk_id, "
                "scoring = EXCLUDED.scoring, refreshed_at = now()",
                (self.options.postings_scoring,),
            )
            self.rebuild_postings(conn, sort_memory_mb=sort_memory_mb)

    def rebuild_postings(self, conn: psycopg.Connection[Any], *, sort_memory_mb: int = 256) -> None:
        """Rewrite `lexicon` from the chunks up to `lexicon_stats.max_chunk_id`, with the statistics as
        stored (`refresh` updates them first; a benchmark sets them to simulate a delta). Inside the
        caller's transaction."""
        conn.execute("DELETE FROM lexicon")
        # The pass sorts every (chunk, lexeme) pair: ~33 per chunk, ~120 bytes each in memory.
        conn.execute(f"SET LOCAL work_mem = '{int(sort_memory_mb)}MB'")
        conn.execute(self._refresh_sql)

    def backlog_due(self, doc_count: int, added: int, removed: int) -> bool:
        """Whether the chunks added and removed since the last rebuild warrant rebuilding the postings now."""
        backlog = added + removed
        return backlog > min(self.options.refresh_backlog_chunks, self.options.refresh_share * doc_count)

    def needs_refresh(self, conn: psycopg.Connection[Any], *, any_change: bool = False) -> bool:
        """Whether to rebuild the lexicon now: it was never built, predates postings or was computed with
        other BM25 settings, or more chunks were added or removed since its rebuild than searches should
        score as a delta (`backlog_due`). With `any_change`, any such chunk is reason enough (a nightly
        full pass)."""
        row = conn.execute(
            "SELECT st.doc_count, st.max_chunk_id IS NULL OR st.scoring IS DISTINCT FROM %s "
            "OR EXISTS (SELECT 1 FROM lexicon WHERE postings IS NULL), "
            "(SELECT count(*) FROM chunks WHERE id > st.max_chunk_id), "
            "st.doc_count - (SELECT count(*) FROM chunks WHERE id <= st.max_chunk_id) "
            "FROM lexicon_stats st",
            (self.options.postings_scoring,),
        ).fetchone()
        if row is None:
            return True
        doc_count, outdated, added, removed = row
        if outdated:
            return True
        if any_change:
            return bool(added or removed)
        return self.backlog_due(doc_count, added, removed)

    def status(self, conn: psycopg.Connection[Any]) -> KeywordStatus | None:
        """When the postings were rebuilt and how many chunks are newer; None until a sync builds them."""
        row = conn.execute(
            "SELECT refreshed_at, (SELECT count(*) FROM chunks WHERE id > st.max_chunk_id) "
            "FROM lexicon_stats st WHERE st.max_chunk_id IS NOT NULL"
        ).fetchone()
        return KeywordStatus(row[0], row[1]) if row else None

    # --- ranking from postings --------------------------------------------------------------------
    def _build_rank_sql(self) -> str:
        # The question's lexemes with their idf and the first `postings_depth` postings (the column is stored
        # uncompressed so that PostgreSQL reads only that slice): the selective ones, or if there are fewer
        # than two, the two rarest (in a KB of a few articles every word may be "common"). Then one more
        # row: the delta chunks that contain a question term, with their whole BM25 score as the weight and
        # an idf of 1. No rows: none of the question's words is in the KB. A NULL postings column: the
        # lexicon predates postings (the next sync fills it). The delta is read through the primary key in
        # id order, which the LIMIT makes the planner's choice even in a generic plan.
        o = self.options
        weight = self._term_weight("u.tf", "u.ctx", "c.doc_len", "st.avg_doc_len")
        tf, ctx = self._tf("positions", "c")
        return f"""
WITH st AS MATERIALIZED (
    SELECT doc_count, greatest(avg_doc_len, 1) AS avg_doc_len, max_chunk_id FROM lexicon_stats
), terms AS MATERIALIZED (
    SELECT q.lexeme, q.known, q.postings, {_idf("st.doc_count", "q.df")} AS idf
    FROM (
        SELECT t.lexeme, l.lexeme IS NOT NULL AS known, l.postings, coalesce(l.doc_freq, 0) AS df,
               row_number() OVER (PARTITION BY l.lexeme IS NULL ORDER BY l.doc_freq, t.lexeme) AS rarity
        FROM unnest(tsvector_to_array(to_tsvector('english', %(qtext)s))) AS t(lexeme)
        LEFT JOIN lexicon l ON l.lexeme = t.lexeme
    ) q
    CROSS JOIN st
    WHERE NOT q.known OR q.df <= st.doc_count * {o.common_term_share}::float8 OR q.rarity <= 2
)
SELECT idf, substring(postings FROM 1 FOR {POSTING.itemsize * o.postings_depth}) AS postings FROM terms WHERE known
UNION ALL
SELECT 1::float8, string_agg(int8send(d.id) || float4send(d.score::float4), ''::bytea)
FROM (
    SELECT c.id, sum(terms.idf * ({weight})) AS score
    FROM (SELECT id, length(tsv)::float8 AS doc_len, tsv{self._context_ends("chunks")} FROM chunks
          WHERE id > (SELECT max_chunk_id FROM st) ORDER BY id LIMIT {o.delta_max_chunks}) c
    CROSS JOIN st
    -- only the question's lexemes of each chunk (setweight marks them, ts_filter keeps them): unnesting a
    -- whole tsvector and joining its ~100 lexemes cost ~10 microseconds per delta chunk
    CROSS JOIN LATERAL (
        SELECT lexeme, {tf} AS tf, {ctx} AS ctx
        FROM unnest(ts_filter(setweight(c.tsv, 'A', (SELECT array_agg(lexeme) FROM terms)), '{{a}}'))
    ) u
    JOIN terms ON terms.lexeme = u.lexeme
    GROUP BY c.id
) d
HAVING count(*) > 0
"""

    def rank(self, conn: psycopg.Connection[Any], question: str, n: int, *,
             readable_by: Sequence[str] | None = None) -> list[int] | None:
        """The question's BM25 ranking from postings plus delta (chunk ids, best first, at most `n`), or None
        when the lexicon has no postings yet: then the caller scores with `exact_cte`. With `readable_by`
        (a reader's audience tokens), the best `n` of the candidates whose chunks that reader may see,
        whatever their rank overall: restricted chunks never take a place."""
        ranked = self.rank_scored(conn, question, n, readable_by=readable_by)
        return None if ranked is None else [chunk_id for chunk_id, _ in ranked]

    def rank_scored(self, conn: psycopg.Connection[Any], question: str, n: int, *,
                    readable_by: Sequence[str] | None = None) -> list[tuple[int, float]] | None:
        """`rank` with each chunk's BM25 score: (chunk id, score), best first."""
        rows = self._postings(conn, question)
        try:
            if readable_by is None:
                return scored_chunks(rows, n)
            # Candidates are checked best first, in growing pools, until n are readable or none are left.
            checked = 0
            readable: list[tuple[int, float]] = []
            for pool in (8 * n, 64 * n, 1 << 62):
                ranked = scored_chunks(rows, pool)
                score = dict(ranked[checked:])
                readable += [(c, score[c]) for c in _readable(conn, [c for c, _ in ranked[checked:]], readable_by,
                                                              n - len(readable))]
                checked = len(ranked)
                if len(readable) >= n or len(ranked) < pool:
                    break
            return readable
        except _PostingsMissing:
            return None

    def _postings(self, conn: psycopg.Connection[Any], question: str) -> list[tuple[float, bytes | None]]:
        # Binary results: the postings arrive as raw bytes (text format would hex-encode them, twice the size).
        with conn.cursor(binary=True) as cur:
            return cur.execute(self._rank_sql, {"qtext": question}, prepare=True).fetchall()

    # --- exact scoring inside the search statement ------------------------------------------------
    def exact_cte(self, n: int, *, source_filter: str = "") -> str:
        """CTEs ending in `lexical (chunk_id, rank)`: exact BM25 over the chunks that hold the question's
        selective terms (`%(qtext)s`), for the fused search statement. `source_filter` is an SQL condition
        on the chunk `c` (e.g. its source), ANDed in."""
        o = self.options
        weight = self._term_weight(*self._tf("u.positions", "c"), "length(c.tsv)", "greatest(st.avg_doc_len, 1)")
        where = "c.tsv @@ (SELECT query FROM candidates)" + (f" AND {source_filter}" if source_filter else "")
        if self.weighs_context:
            # the title's and headings' last positions computed once per candidate (OFFSET 0 keeps the
            # planner from evaluating them again for each matched term)
            chunks = f"(SELECT c.id, c.tsv{self._context_ends('c')} FROM chunks c WHERE {where} OFFSET 0) c"
            where = "true"
        else:
            chunks = "chunks c"
        return f"""
qterms AS (
    SELECT l.lexeme, {_idf("st.doc_count", "l.doc_freq")} AS idf, l.doc_freq
    FROM unnest(to_tsvector('english', %(qtext)s)) AS q
    JOIN lexicon l ON l.lexeme = q.lexeme
    CROSS JOIN lexicon_stats st
),
selective AS (
    -- keep terms that narrow the candidates; if all are common, the two rarest; and of those, only the
    -- rarest whose postings fit the budget
    SELECT lexeme, idf, doc_freq FROM (
        SELECT lexeme, idf, doc_freq, sum(doc_freq) OVER (ORDER BY doc_freq, lexeme) AS postings FROM qterms
        WHERE doc_freq <= (SELECT doc_count * {o.common_term_share} FROM lexicon_stats)
           OR lexeme IN (SELECT lexeme FROM qterms ORDER BY doc_freq LIMIT 2)
    ) ranked
    -- the rarest term alone may exceed the budget a little; a query of only very common words is left to
    -- the dense branch
    WHERE postings <= {o.postings_budget} OR (postings = doc_freq AND doc_freq <= 4 * {o.postings_budget})
),
candidates AS (
    -- chunks holding two of the selective terms, or a rare one: BM25's top ranks come from these, and
    -- the GIN index intersects the pairs for a fraction of the union's rows
    SELECT coalesce(string_agg(expr, ' | ')::tsquery, ''::tsquery) AS query FROM (
        SELECT quote_literal(a.lexeme) || ' & ' || quote_literal(b.lexeme) AS expr
        FROM selective a JOIN selective b ON a.lexeme < b.lexeme
        UNION ALL
        SELECT quote_literal(lexeme) FROM selective
        WHERE doc_freq <= {o.rare_term_max_chunks} OR (SELECT count(*) FROM selective) = 1
    ) terms
),
lexical AS (
    SELECT chunk_id, bm25 AS score, row_number() OVER (ORDER BY bm25 DESC, chunk_id) AS rank
    FROM (
        SELECT c.id AS chunk_id, sum(qt.idf * ({weight})) AS bm25
        FROM {chunks}
        -- only the question's lexemes of each candidate: setweight marks them, ts_filter keeps them, so
        -- unnest yields a few rows per chunk instead of its whole vocabulary
        CROSS JOIN LATERAL unnest(ts_filter(setweight(c.tsv, 'A', (SELECT array_agg(lexeme) FROM qterms)),
                                            '{{a}}')) AS u
        JOIN qterms qt ON qt.lexeme = u.lexeme
        CROSS JOIN lexicon_stats st
        WHERE {where}
        GROUP BY c.id
        ORDER BY bm25 DESC, c.id
        LIMIT {int(n)}
    ) scored
)"""


def _readable(conn: psycopg.Connection[Any], ranked: list[int], tokens: Sequence[str], n: int) -> list[int]:
    """The first `n` of `ranked` whose chunks exist and share an audience token with `tokens`, in order."""
    if not ranked or n <= 0:
        return []
    rows = conn.execute(
        "SELECT u.id FROM unnest(CAST(%s AS bigint[])) WITH ORDINALITY AS u(id, r) JOIN chunks c ON c.id = u.id "
        "WHERE c.audience && CAST(%s AS text[]) ORDER BY u.r LIMIT %s", (ranked, list(tokens), n),
        prepare=True).fetchall()
    return [int(r[0]) for r in rows]


class _PostingsMissing(Exception):
    """The lexicon was refreshed before postings existed: score this question the exact way."""


def scored_chunks(rows: Sequence[tuple[float, bytes | None]], n: int) -> list[tuple[int, float]]:
    """(chunk id, BM25 score) summed over the question terms' postings, best first, at most `n`."""
    if not rows:
        return []
    ids, scores = [], []
    for idf, blob in rows:
        if blob is None:
            raise _PostingsMissing()
        entries = np.frombuffer(blob, dtype=POSTING)
        ids.append(entries["chunk_id"])
        scores.append(entries["weight"].astype(np.float64) * idf)
    chunk_ids, where = np.unique(np.concatenate(ids), return_inverse=True)
    totals = np.bincount(where, weights=np.concatenate(scores))
    best = np.argpartition(-totals, n - 1)[:n] if len(totals) > n else np.arange(len(totals))
    # Ties broken by chunk id so that repeated searches rank alike.
    order = np.lexsort((chunk_ids[best], -totals[best]))
    return [(int(i), float(t)) for i, t in zip(chunk_ids[best][order], totals[best][order], strict=True)]
