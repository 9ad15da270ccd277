"""The on-disk format of the precomputed aws-docs-qa chunks and embeddings, shared by every benchmark.

Written once by `bench/common.py` (kbbot's chunker + all-MiniLM-L6-v2, ~8 min on 2 cores) under
`~/.cache/kbbot-bench/`, then read by kbbot's benchmarks and by the peer scripts, which run in their own
virtualenv without kbbot installed: this module therefore needs nothing but numpy and the standard library.

    <stem>.chunks.jsonl     one chunk per line: article, title, ordinal, heading_path, char_start,
                            char_end, token_count, text, input (what was embedded: context + text)
    <stem>.vectors.npy      float32 (n_chunks, 384), L2-normalised; row i belongs to line i
    <stem>.queries.jsonl    the 100 questions: id, text, relevant (article id -> grade)
    <stem>.queries.npy      float32 (n_queries, 384); row i belongs to line i
    <stem>.manifest.json    what made the files (corpus sha256, chunker settings, model, counts)
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

CACHE_DIR = Path(os.environ.get("KBBOT_BENCH_CACHE", Path.home() / ".cache" / "kbbot-bench"))


@dataclass(frozen=True)
class CacheFiles:
    stem: Path

    @property
    def chunks(self) -> Path:
        return self.stem.with_name(self.stem.name + ".chunks.jsonl")

    @property
    def vectors(self) -> Path:
        return self.stem.with_name(self.stem.name + ".vectors.npy")

    @property
    def queries(self) -> Path:
        return self.stem.with_name(self.stem.name + ".queries.jsonl")

    @property
    def query_vectors(self) -> Path:
        return self.stem.with_name(self.stem.name + ".queries.npy")

    @property
    def manifest(self) -> Path:
        return self.stem.with_name(self.stem.name + ".manifest.json")

    def complete(self) -> bool:
        # The manifest is written last: its presence means every other file is whole.
        return self.manifest.is_file()


def default_stem(max_tokens: int = 200, model: str = "all-MiniLM-L6-v2") -> Path:
    return CACHE_DIR / f"aws-docs-qa.c{max_tokens}.{model}"


@dataclass
class AwsChunks:
    chunks: list[dict[str, Any]]
    vectors: np.ndarray
    queries: list[dict[str, Any]]
    query_vectors: np.ndarray
    manifest: dict[str, Any]


def load(stem: Path | None = None) -> AwsChunks:
    files = CacheFiles(stem or default_stem())
    if not files.complete():
        raise FileNotFoundError(
            f"No precomputed embeddings at {files.stem}.*: run `.venv/bin/python -m bench.common` in the "
            "kbbot repo first (about 8 minutes on 2 cores)."
        )
    with files.chunks.open(encoding="utf-8") as fh:
        chunks = [json.loads(line) for line in fh]
    with files.queries.open(encoding="utf-8") as fh:
        queries = [json.loads(line) for line in fh]
    vectors = np.load(files.vectors, mmap_mode="r")
    query_vectors = np.load(files.query_vectors)
    if len(vectors) != len(chunks) or len(query_vectors) != len(queries):
        raise ValueError(f"{files.stem}: the cache files disagree in length; delete them and rebuild.")
    return AwsChunks(chunks, vectors, queries, query_vectors, json.loads(files.manifest.read_text()))


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else 0.0
