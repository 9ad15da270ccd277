"""langchain-postgres PGVectorStore on the aws-docs-qa chunks, used the way its README and how-to notebook show.

Runs in the peers' own virtualenv (never kbbot's): `bench/peers/compare.py` starts it from the repository
root as

    <peer-python> -m bench.peers.langchain_peer --url postgresql+psycopg://... --out result.json

It gets the same chunk texts and precomputed all-MiniLM-L6-v2 vectors as kbbot (through an `Embeddings`
that looks texts up in the cache, so nothing is downloaded or recomputed), writes its ingestion time and
the article ranking of each question for the driver to score, then runs latency rounds on request
(rounds.py).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from langchain_core.embeddings import Embeddings
from langchain_postgres import PGEngine, PGVectorStore
from langchain_postgres.v2.hybrid_search_config import HybridSearchConfig, reciprocal_rank_fusion
from langchain_postgres.v2.indexes import HNSWIndex, HNSWQueryOptions

from bench.peers import cache_format, rounds

TABLE = "aws_chunks"
DEPTH = 50  # chunks retrieved per question for the quality score (as kbbot's evaluation does)


class CachedEmbeddings(Embeddings):
    """Precomputed vectors, looked up by text: the framework never calls a model."""

    def __init__(self, texts: list[str], vectors: np.ndarray, queries: dict[str, np.ndarray]) -> None:
        self._by_text = {t: i for i, t in enumerate(texts)}
        self._vectors = vectors
        self._queries = queries

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self._vectors[self._by_text[t]].tolist() for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self._queries[text].tolist()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True, help="SQLAlchemy URL, postgresql+psycopg://")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--ef-search", type=int, default=100)
    args = parser.parse_args()

    data = cache_format.load()
    texts = [c["input"] for c in data.chunks]
    questions = {q["text"]: v for q, v in zip(data.queries, data.query_vectors, strict=True)}
    embeddings = CachedEmbeddings(texts, np.asarray(data.vectors), questions)
    hybrid = HybridSearchConfig(tsv_lang="pg_catalog.english", fusion_function=reciprocal_rank_fusion,
                                primary_top_k=DEPTH, secondary_top_k=DEPTH)

    engine = PGEngine.from_connection_string(url=args.url)
    started = time.perf_counter()
    engine.init_vectorstore_table(table_name=TABLE, vector_size=384, hybrid_search_config=hybrid)
    store = PGVectorStore.create_sync(engine=engine, table_name=TABLE, embedding_service=embeddings,
                                      hybrid_search_config=hybrid,
                                      index_query_options=HNSWQueryOptions(ef_search=args.ef_search))
    metadatas = [{"article": c["article"]} for c in data.chunks]
    batch = 1000  # the how-to adds documents in calls of this size; one call for 40k also works
    for start in range(0, len(texts), batch):
        store.add_texts(texts[start:start + batch], metadatas=metadatas[start:start + batch])
    load_s = time.perf_counter() - started
    store.apply_vector_index(HNSWIndex())  # the how-to applies the index after adding documents
    store.apply_hybrid_search_index()
    ingest_s = time.perf_counter() - started

    def search(mode: str, question: str, depth: int) -> list:  # type: ignore[type-arg]
        if mode == "dense":
            return store.similarity_search_by_vector(questions[question].tolist(), k=depth)
        config = HybridSearchConfig(
            tsv_lang="pg_catalog.english", fusion_function=reciprocal_rank_fusion,
            primary_top_k=depth, secondary_top_k=depth, tsv_column=hybrid.tsv_column,
        )
        return store.similarity_search(question, k=depth, hybrid_search_config=config)

    result: dict = {"framework": "langchain-postgres", "rows": len(texts), "load_s": round(load_s, 2),
                    "ingest_s": round(ingest_s, 2), "rankings": {}}
    for mode in ("dense", "hybrid"):
        result["rankings"][mode] = [[d.metadata["article"] for d in search(mode, q["text"], DEPTH)]
                                    for q in data.queries]
    args.out.write_text(json.dumps(result))
    # The driver times k=10 searches in rounds interleaved with the other systems' (rounds.py).
    rounds.serve(lambda mode: rounds.timed_round(
        lambda i: search(mode, data.queries[i]["text"], 10), len(data.queries)))
    engine._run_as_sync(engine.close())


if __name__ == "__main__":
    main()
