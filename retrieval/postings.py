"""Impact-ordered BM25 postings: each lexeme's chunks, best first, stored next to its document frequency.

Scoring BM25 from the chunks' tsvectors costs a heap fetch, a detoast and an unnest per candidate chunk
(~5 microseconds), and a question with one mid-frequency word has thousands of candidates. Here the
per-chunk part of BM25 (term frequency saturated and normalised by chunk length) is computed once, when the
lexicon is refreshed, and stored per lexeme in descending order ("champion lists", Manning et al., IR book
ch. 7). A search reads the first POSTINGS_DEPTH entries of each question term in one indexed query and adds
them up with numpy: ~0.5 ms instead of 2-20 ms on the aws-docs-qa KB at the same Recall@10 (BENCHMARKS.md).

Lists longer than the depth are truncated, so a chunk that is in no term's top entries is missed and a
chunk in some lists but not others gets a lower bound of its score. Terms in more than COMMON_TERM_SHARE of
the chunks are skipped unless they are among the question's two rarest: their idf is near zero and their
lists are the longest. Searches filtered by
source use the exact SQL scoring instead (a small source's chunks need not reach any list's top entries).

Rebuilding the postings reads every chunk (about 2 s at 40k chunks; see BENCHMARKS.md for 1M), so a sync
does not rebuild them for a small change. Chunks written since the last rebuild (ids above
`lexicon_stats.max_chunk_id`: chunk ids only grow, and a changed passage is a new row) are the "delta": each
search scores them exactly from their tsvectors, with the same idf and length normalisation, and adds them
as one more list. A question word that only the delta contains counts as the rarest possible word. Deleted
chunks stay in the lists until the rebuild and are dropped when the search joins the chunks. A sync
rebuilds once the delta or the deletions pass `needs_refresh`'s bounds, which keep both the per-search cost
of the delta and the drift of the statistics small.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

BM25_K1 = 1.2
BM25_B = 0.75
# Entries kept per lexeme. On aws-docs-qa (40k chunks) hybrid Recall@10 was 0.90 at 1,000, 0.93 at 2,000
# and 0.95 (the exact scorer's) from 5,000 on; each entry costs 12 bytes to store and to read.
POSTINGS_DEPTH = 5000
COMMON_TERM_SHARE = 0.2
# One entry: chunk id and its BM25 term weight, big-endian as int8send/float4send write them.
POSTING = np.dtype([("chunk_id", ">i8"), ("weight", ">f4")])
# A rebuild is due when more chunks than this were added or removed since the last one (or more than
# REFRESH_SHARE of them): each search scores the delta, ~3 microseconds per chunk (a 500-chunk delta adds
# ~1.7 ms to a 40k-chunk search, bench/postings_depth.py), and document frequencies and the average length
# drift by at most that share. Embedding 500 new chunks takes longer than a rebuild at 100k chunks.
REFRESH_BACKLOG_CHUNKS = 500
REFRESH_SHARE = 0.02
# A search reads at most this many delta chunks (the oldest first); only a sync that could not rebuild
# leaves more, and the newest beyond it are then found by the dense branch alone until the next rebuild.
DELTA_MAX_CHUNKS = 2 * REFRESH_BACKLOG_CHUNKS

# The per-chunk BM25 factor of a term: tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl)). One pass over
# every (chunk, lexeme) pair yields both the document frequencies and the postings, sorted by lexeme in the
# C collation (byte order; a linguistic collation sorts the million-row input several times slower).
# The chunk length is computed once per chunk in the subquery: length(tsv) in the outer expression would
# detoast the tsvector again for each of its lexemes.
REFRESH_SQL = f"""
INSERT INTO lexicon (lexeme, doc_freq, postings)
SELECT lexeme COLLATE "C", count(*),
       substring(string_agg(int8send(chunk_id) || float4send(weight::float4), ''::bytea ORDER BY weight DESC, chunk_id)
                 FROM 1 FOR %(depth_bytes)s)
FROM (
    SELECT c.id AS chunk_id, t.lexeme,
           t.tf * ({BM25_K1}::float8 + 1)
           / (t.tf + {BM25_K1}::float8 * (1 - {BM25_B}::float8 + {BM25_B}::float8 * c.doc_len / st.avg_doc_len))
               AS weight
    FROM (SELECT id, length(tsv)::float8 AS doc_len, tsv FROM chunks
          WHERE id <= (SELECT max_chunk_id FROM lexicon_stats) OFFSET 0) c
    CROSS JOIN (SELECT greatest(avg_doc_len, 1) AS avg_doc_len FROM lexicon_stats) st
    CROSS JOIN LATERAL (SELECT lexeme, cardinality(positions)::float8 AS tf FROM unnest(c.tsv)) t
) pairs
GROUP BY lexeme COLLATE "C"
"""

# The question's lexemes with their idf and the first `depth` postings (the column is stored uncompressed so
# that PostgreSQL reads only that slice): the selective ones, or if there are fewer than two, the two rarest
# (in a KB of a few articles every word may be "common"). Then one more row: the delta chunks that contain
# a question term, with their whole BM25 score as the weight and an idf of 1. No rows: none of the
# question's words is in the KB. A NULL postings column: the lexicon predates postings (the next sync fills
# it); the caller scores in SQL. The delta is read through the primary key in id order, which the LIMIT
# makes the planner's choice even in a generic plan.
QUERY_SQL = f"""
WITH st AS MATERIALIZED (
    SELECT doc_count, greatest(avg_doc_len, 1) AS avg_doc_len, max_chunk_id FROM lexicon_stats
), terms AS MATERIALIZED (
    SELECT q.lexeme, q.known, q.postings, ln(1 + (st.doc_count - q.df + 0.5) / (q.df + 0.5))::float8 AS idf
    FROM (
        SELECT t.lexeme, l.lexeme IS NOT NULL AS known, l.postings, coalesce(l.doc_freq, 0) AS df,
               row_number() OVER (PARTITION BY l.lexeme IS NULL ORDER BY l.doc_freq, t.lexeme) AS rarity
        FROM unnest(tsvector_to_array(to_tsvector('english', %(qtext)s))) AS t(lexeme)
        LEFT JOIN lexicon l ON l.lexeme = t.lexeme
    ) q
    CROSS JOIN st
    WHERE NOT q.known OR q.df <= st.doc_count * {COMMON_TERM_SHARE}::float8 OR q.rarity <= 2
)
SELECT idf, substring(postings FROM 1 FOR {POSTING.itemsize} * %(depth)s) AS postings FROM terms WHERE known
UNION ALL
SELECT 1::float8, string_agg(int8send(d.id) || float4send(d.score::float4), ''::bytea)
FROM (
    SELECT c.id,
           sum(terms.idf * u.tf * ({BM25_K1}::float8 + 1)
               / (u.tf + {BM25_K1}::float8 * (1 - {BM25_B}::float8 + {BM25_B}::float8 * c.doc_len / st.avg_doc_len)))
               AS score
    FROM (SELECT id, length(tsv)::float8 AS doc_len, tsv FROM chunks
          WHERE id > (SELECT max_chunk_id FROM st) ORDER BY id LIMIT {DELTA_MAX_CHUNKS}) c
    CROSS JOIN st
    -- only the question's lexemes of each chunk (setweight marks them, ts_filter keeps them): unnesting a
    -- whole tsvector and joining its ~100 lexemes cost ~10 microseconds per delta chunk
    CROSS JOIN LATERAL (
        SELECT lexeme, cardinality(positions)::float8 AS tf
        FROM unnest(ts_filter(setweight(c.tsv, 'A', (SELECT array_agg(lexeme) FROM terms)), '{{a}}'))
    ) u
    JOIN terms ON terms.lexeme = u.lexeme
    GROUP BY c.id
) d
HAVING count(*) > 0
"""


def needs_refresh(doc_count: int, added: int, removed: int) -> bool:
    """Whether the chunks added and removed since the last rebuild warrant rebuilding the postings now."""
    backlog = added + removed
    return backlog > min(REFRESH_BACKLOG_CHUNKS, REFRESH_SHARE * doc_count)


class PostingsMissing(Exception):
    """The lexicon was refreshed before postings existed: score this question the exact way."""


def top_chunks(rows: Sequence[tuple[float, bytes | None]], n: int) -> list[int]:
    """Chunk ids ranked by BM25 summed over the question terms' postings, best first, at most `n`."""
    if not rows:
        return []
    ids, scores = [], []
    for idf, blob in rows:
        if blob is None:
            raise PostingsMissing()
        entries = np.frombuffer(blob, dtype=POSTING)
        ids.append(entries["chunk_id"])
        scores.append(entries["weight"].astype(np.float64) * idf)
    chunk_ids, where = np.unique(np.concatenate(ids), return_inverse=True)
    totals = np.bincount(where, weights=np.concatenate(scores))
    best = np.argpartition(-totals, n - 1)[:n] if len(totals) > n else np.arange(len(totals))
    # Ties broken by chunk id so that repeated searches rank alike.
    order = np.lexsort((chunk_ids[best], -totals[best]))
    return [int(i) for i in chunk_ids[best][order]]
