"""The search statement (retrieval/search.py) on the indexed demo KB: the similarity each hit carries, which
the fused score is computed from once per passage, is the passage's true cosine to the question."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import text

from retrieval.search import Searcher

QUESTION = "How do I connect to the VPN from home?"


def test_every_hit_carries_its_true_cosine(demo_database, embedder) -> None:  # type: ignore[no-untyped-def]
    qvec = embedder.embed_query(QUESTION)
    hits = Searcher(demo_database, embedder).search_vector(QUESTION, qvec, k=50).hits
    assert len(hits) > 20 and any(h.dense_rank is None for h in hits)  # lexical-only passages too
    with demo_database.engine.connect() as conn:
        stored = dict(conn.execute(text("SELECT chunk_id, embedding FROM embeddings WHERE chunk_id = ANY(:ids)"),
                                   {"ids": [h.chunk_id for h in hits]}).all())
    for h in hits:
        vector = np.asarray(stored[h.chunk_id].to_numpy(), dtype=np.float64)
        cosine = float(vector @ qvec / (np.linalg.norm(vector) * np.linalg.norm(qvec)))
        assert h.similarity == pytest.approx(cosine, abs=1e-6)
