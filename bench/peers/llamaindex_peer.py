"""llama-index's PGVectorStore (llama-index-vector-stores-postgres) on the aws-docs-qa chunks, used the way
its Postgres vector store guide shows: `PGVectorStore.from_params(..., hybrid_search=True, hnsw_kwargs=...)`,
a `VectorStoreIndex` over nodes, and `index.as_retriever(vector_store_query_mode="hybrid", ...)`.

Runs in the peers' own virtualenv (never kbbot's): `bench/peers/compare.py` starts it from the repository
root as

    <peer-python> -m bench.peers.llamaindex_peer --url postgresql+psycopg2://... --async-url ... --out r.json

Nodes carry the precomputed all-MiniLM-L6-v2 vectors (so the index does not embed them) and questions come
with their vectors in the QueryBundle; the `embed_model` is a cache lookup that never calls a model.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from llama_index.core import QueryBundle, StorageContext, VectorStoreIndex
from llama_index.core.embeddings import BaseEmbedding
from llama_index.core.schema import TextNode
from llama_index.vector_stores.postgres import PGVectorStore
from pydantic import PrivateAttr

from bench.peers import cache_format, rounds

DEPTH = 50


class CachedEmbedding(BaseEmbedding):
    """Question vectors from the cache, by text; documents arrive already embedded."""

    _queries: dict[str, list[float]] = PrivateAttr(default_factory=dict)

    def __init__(self, queries: dict[str, list[float]], **kwargs: Any) -> None:
        super().__init__(model_name="all-MiniLM-L6-v2 (precomputed)", **kwargs)
        self._queries = queries

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._queries[query]

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._queries[query]

    def _get_text_embedding(self, text: str) -> list[float]:
        raise AssertionError("documents are embedded ahead of time")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True, help="SQLAlchemy URL, postgresql+psycopg2://")
    parser.add_argument("--async-url", required=True, help="SQLAlchemy URL, postgresql+asyncpg://")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--ef-search", type=int, default=100)
    args = parser.parse_args()

    data = cache_format.load()
    vectors = np.asarray(data.vectors)
    questions = {q["text"]: v.tolist() for q, v in zip(data.queries, data.query_vectors, strict=True)}
    nodes = [TextNode(text=c["input"], metadata={"article": c["article"]}, embedding=vectors[i].tolist())
             for i, c in enumerate(data.chunks)]
    embed_model = CachedEmbedding(questions)

    started = time.perf_counter()
    store = PGVectorStore.from_params(
        connection_string=args.url, async_connection_string=args.async_url, table_name="aws_chunks",
        embed_dim=384, hybrid_search=True, text_search_config="english",
        hnsw_kwargs={"hnsw_m": 16, "hnsw_ef_construction": 64, "hnsw_ef_search": args.ef_search,
                     "hnsw_dist_method": "vector_cosine_ops"},
    )
    index = VectorStoreIndex(nodes, storage_context=StorageContext.from_defaults(vector_store=store),
                             embed_model=embed_model)
    ingest_s = time.perf_counter() - started

    retrievers = {
        (mode, depth): index.as_retriever(similarity_top_k=depth) if mode == "dense" else
        index.as_retriever(vector_store_query_mode="hybrid", similarity_top_k=depth, sparse_top_k=depth)
        for mode in ("dense", "hybrid") for depth in (10, DEPTH)
    }

    def search(mode: str, question: str, depth: int) -> list:  # type: ignore[type-arg]
        return retrievers[mode, depth].retrieve(QueryBundle(query_str=question, embedding=questions[question]))

    result: dict = {"framework": "llama-index", "rows": len(nodes), "load_s": round(ingest_s, 2),
                    "ingest_s": round(ingest_s, 2), "rankings": {}}
    for mode in ("dense", "hybrid"):
        result["rankings"][mode] = [[n.node.metadata["article"] for n in search(mode, q["text"], DEPTH)]
                                    for q in data.queries]
    args.out.write_text(json.dumps(result))
    # The driver times k=10 searches in rounds interleaved with the other systems' (rounds.py).
    rounds.serve(lambda mode: rounds.timed_round(
        lambda i: search(mode, data.queries[i]["text"], 10), len(data.queries)))


if __name__ == "__main__":
    main()
