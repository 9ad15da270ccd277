"""Shared pieces of the scale and peer benchmarks: the aws-docs-qa embedding cache, a benchmark
PostgreSQL server, throw-away databases, and small timing helpers.

Run it directly to build the cache once (chunks with kbbot's chunker at 200 tokens, embeds them with the
local all-MiniLM-L6-v2; ~8 min on 2 shared cores, so run it with `nice`):

    nice -n 10 .venv/bin/python -m bench.common [--rebuild]
    nice -n 10 .venv/bin/python -m bench.common --helper   # optional, alongside: embeds blocks from the end
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psycopg
from sqlalchemy.engine import URL, make_url

from bench.peers import cache_format
from bench.peers.cache_format import CACHE_DIR, AwsChunks, CacheFiles, default_stem, percentile
from bench.peers.rounds import timed_round  # shared with the peers' side
from retrieval.file_digest import sha256_file

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

log = logging.getLogger("bench")

AWS_DIR = REPO.parent / "shared" / "data" / "aws-docs-qa"
MAX_TOKENS = 200
EMBED_BLOCK = 1024

__all__ = ["AWS_DIR", "AwsChunks", "bench_server", "load_aws", "percentile", "scratch_database", "timed_round"]


# --- the embedding cache --------------------------------------------------------------------------------
def local_embedder(concurrent_calls: int = 1):  # type: ignore[no-untyped-def]
    """all-MiniLM-L6-v2 on the runtime kbbot itself would use (KBBOT_EMBEDDING_BACKEND: ONNX Runtime by
    default, `torch` for sentence-transformers; KBBOT_EMBEDDING_THREADS), as `kbbot ingest` builds it.
    Both runtimes write the same space (cosine >= 0.9999998, BENCHMARKS.md), so the cache is shared."""
    from retrieval.embeddings import create_local_embedder
    from retrieval.settings import load_settings

    return create_local_embedder(load_settings(_env_file=None).embeddings, "all-MiniLM-L6-v2",
                                 concurrent_calls=concurrent_calls)


def chunk_corpus(corpus: Path, embedder, max_tokens: int) -> list[dict]:  # type: ignore[no-untyped-def]
    """Every chunk of the corpus as kbbot's Indexer cuts it, with what gets embedded (`input`)."""
    from retrieval.chunking import chunk_article

    chunks: list[dict] = []
    with corpus.open(encoding="utf-8") as fh:
        for line in fh:
            record = json.loads(line)
            title = str(record.get("title") or record["_id"])
            for d in chunk_article(record["text"], max_tokens=max_tokens, count_tokens=embedder.count_tokens):
                chunks.append({
                    "article": record["_id"], "title": title, "ordinal": d.ordinal,
                    "heading_path": list(d.heading_path), "char_start": d.char_start, "char_end": d.char_end,
                    "token_count": d.token_count, "text": d.text, "input": d.embedding_input(title),
                })
    return chunks


def build_aws_cache(stem: Path, *, aws_dir: Path = AWS_DIR, helper: bool = False) -> None:
    """Chunk the corpus the way `Indexer` does and embed every chunk and question once."""
    from retrieval.evaluation import load_labelled_queries

    corpus = aws_dir / "corpus.jsonl"
    # KBBOT_EMBEDDING_THREADS=1 wastes less CPU when the 2 cores are shared with others.
    embedder = local_embedder()
    max_tokens = min(MAX_TOKENS, embedder.max_tokens - 40)  # the Indexer's own rule
    chunks = chunk_corpus(corpus, embedder, max_tokens)
    log.info("chunked %s into %d chunks; embedding them", corpus, len(chunks))
    started = time.perf_counter()
    # Blocks are saved as they finish, so an interrupted build resumes where it stopped.
    partial = stem.with_name(stem.name + ".partial")
    partial.mkdir(parents=True, exist_ok=True)
    starts = list(range(0, len(chunks), EMBED_BLOCK))
    computed = 0
    # Each block is claimed by one process (`--helper` runs another, from the end): on shared cores two
    # single-threaded processes get more done than one process with two threads.
    for start in reversed(starts) if helper else starts:
        block_file = partial / f"{start:08d}-{EMBED_BLOCK}.npy"
        try:
            (partial / f"{start:08d}.claim").open("x").close()
        except FileExistsError:
            continue
        if block_file.is_file():
            continue
        texts = [str(c["input"]) for c in chunks[start:start + EMBED_BLOCK]]
        scratch = block_file.with_name(block_file.stem + ".tmp.npy")
        np.save(scratch, embedder.embed_documents(texts))
        os.replace(scratch, block_file)  # a reader never sees half a block
        computed += len(texts)
        log.info("embedded block %d of %d (%.1f chunks/s in this process)", start // EMBED_BLOCK + 1,
                 len(starts), computed / (time.perf_counter() - started))
    if helper:
        return
    files = [partial / f"{start:08d}-{EMBED_BLOCK}.npy" for start in starts]
    while not all(f.is_file() for f in files):
        time.sleep(2)  # a helper is finishing its last block
    time.sleep(1)
    vectors = np.vstack([np.load(f) for f in files]).astype(np.float32)
    queries = load_labelled_queries(aws_dir / "queries.jsonl", aws_dir / "qrels.tsv")
    query_vectors = np.vstack([embedder.embed_query(q.text) for q in queries]).astype(np.float32)

    files = CacheFiles(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    with files.chunks.open("w", encoding="utf-8") as fh:
        for chunk in chunks:
            fh.write(json.dumps(chunk, ensure_ascii=False) + "\n")
    with files.queries.open("w", encoding="utf-8") as fh:
        for q in queries:
            record = {"id": q.id, "text": q.text, "relevant": q.relevant}
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    np.save(files.vectors, vectors)
    np.save(files.query_vectors, query_vectors)
    files.manifest.write_text(json.dumps({
        "corpus": str(corpus), "corpus_sha256": sha256_file(corpus),
        "chunker_sha256": sha256_file(REPO / "retrieval" / "chunking.py"), "max_tokens": max_tokens,
        "model": f"{embedder.provider}/{embedder.model}", "runtime": getattr(embedder, "backend", None),
        "dimension": int(vectors.shape[1]),
        "chunks": len(chunks), "articles": len({c["article"] for c in chunks}), "queries": len(queries),
        "embed_seconds": round(time.perf_counter() - started, 1),
    }, indent=2))
    shutil.rmtree(partial, ignore_errors=True)
    log.info("wrote %s.* (%d chunks, %.0f s)", stem, len(chunks), time.perf_counter() - started)


def import_blocks_from_index(conninfo: str) -> int:
    """Fill missing cache blocks from a kbbot index of the same corpus (e.g. bench/ingest_aws.py's), so the
    vectors are not computed twice. A block is taken only when every chunk's embedded text matches."""
    stem = default_stem(MAX_TOKENS)
    embedder = local_embedder()
    chunks = chunk_corpus(AWS_DIR / "corpus.jsonl", embedder, min(MAX_TOKENS, embedder.max_tokens - 40))
    with psycopg.connect(conninfo) as conn:
        rows = conn.execute(
            "SELECT a.external_id, c.ordinal, c.context || E'\\n' || c.text, e.embedding::text FROM chunks c "
            "JOIN articles a ON a.id = c.article_id JOIN embeddings e ON e.chunk_id = c.id "
            "JOIN embedding_spaces s ON s.id = e.space_id AND s.status = 'active' "
            "AND s.model = 'all-MiniLM-L6-v2'"
        ).fetchall()
    found = {(ext, ordinal): (text, vec) for ext, ordinal, text, vec in rows}
    partial = stem.with_name(stem.name + ".partial")
    imported = 0
    for start in range(0, len(chunks), EMBED_BLOCK):
        block_file = partial / f"{start:08d}-{EMBED_BLOCK}.npy"
        if block_file.is_file():
            continue
        block = chunks[start:start + EMBED_BLOCK]
        hits = [found.get((c["article"], c["ordinal"])) for c in block]
        if any(h is None or h[0] != c["input"] for h, c in zip(hits, block, strict=True)):
            continue
        vectors = np.asarray([json.loads(h[1]) for h in hits], dtype=np.float32)  # type: ignore[index]
        scratch = block_file.with_name(block_file.stem + ".tmp.npy")
        np.save(scratch, vectors)
        os.replace(scratch, block_file)
        (partial / f"{start:08d}.claim").touch()
        imported += 1
    return imported


def load_aws_partial() -> AwsChunks:
    """Only the blocks embedded so far (while the cache is being built): for runs that cannot wait, with
    the real share stated in their report."""
    from retrieval.evaluation import load_labelled_queries

    stem = default_stem(MAX_TOKENS)
    if CacheFiles(stem).complete():
        return load_aws()
    partial = stem.with_name(stem.name + ".partial")
    listing, query_file = partial / "chunks.jsonl", partial / "queries.npy"
    embedder = None
    if not listing.is_file():
        embedder = local_embedder()
        chunks = chunk_corpus(AWS_DIR / "corpus.jsonl", embedder, min(MAX_TOKENS, embedder.max_tokens - 40))
        listing.write_text("".join(json.dumps(c, ensure_ascii=False) + "\n" for c in chunks), encoding="utf-8")
    with listing.open(encoding="utf-8") as fh:  # not splitlines(): texts hold U+2028 and friends
        chunks = [json.loads(line) for line in fh]
    queries = load_labelled_queries(AWS_DIR / "queries.jsonl", AWS_DIR / "qrels.tsv")
    if not query_file.is_file():
        embedder = embedder or local_embedder()
        np.save(query_file, np.vstack([embedder.embed_query(q.text) for q in queries]).astype(np.float32))
    kept, parts = [], []
    for block_file in sorted(partial.glob(f"*-{EMBED_BLOCK}.npy")):
        start = int(block_file.name.split("-")[0])
        parts.append(np.load(block_file))
        kept.extend(chunks[start:start + len(parts[-1])])
    if not parts:
        raise SystemExit(f"No embedded blocks in {partial} yet: run `bench/common.py` first.")
    return AwsChunks(kept, np.vstack(parts), [{"id": q.id, "text": q.text, "relevant": q.relevant} for q in queries],
                     np.load(query_file), {"partial": True, "chunks": len(kept), "of_chunks": len(chunks)})


def load_aws(*, rebuild: bool = False) -> AwsChunks:
    """The cached chunks and vectors, built first if missing (one builder at a time, across processes)."""
    if not (AWS_DIR / "corpus.jsonl").is_file():
        raise SystemExit(f"{AWS_DIR} is missing: these benchmarks need ../shared/data/aws-docs-qa.")
    stem = default_stem(MAX_TOKENS)
    files = CacheFiles(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    with open(str(stem) + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second benchmark waits for the first one's build
        if rebuild and files.complete():
            files.manifest.unlink()
        if not files.complete():
            build_aws_cache(stem)
    data = cache_format.load(stem)
    if data.manifest.get("corpus_sha256") != sha256_file(AWS_DIR / "corpus.jsonl"):
        raise SystemExit(f"{stem}.*: the corpus changed since the cache was built; rerun with --rebuild.")
    return data


# --- PostgreSQL -----------------------------------------------------------------------------------------
def bench_server(data_dir: Path = CACHE_DIR) -> URL:
    """The benchmarks' embedded PostgreSQL (the wheel kbbot embeds), data in `data_dir/pg`."""
    from retrieval.db import embedded_url

    return make_url(embedded_url(data_dir))


def admin_conninfo(server: URL) -> str:
    return server.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)


def libpq_url(url: URL) -> str:
    """A plain postgresql:// URL (for psycopg and the peer frameworks)."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


@contextlib.contextmanager
def scratch_database(server: URL, prefix: str, *, keep: bool = False) -> Iterator[URL]:
    """A database that exists for the length of the block and is dropped after it, even on error."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_conninfo(server), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield server.set(database=name)
    finally:
        if keep:
            log.warning("kept database %s", name)
        else:
            with psycopg.connect(admin_conninfo(server), autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def drop_leftovers(server: URL, prefixes: tuple[str, ...]) -> list[str]:
    """Drop databases an interrupted earlier run left behind (its `finally` never ran)."""
    dropped = []
    with psycopg.connect(admin_conninfo(server), autocommit=True) as conn:
        names = [r[0] for r in conn.execute("SELECT datname FROM pg_database").fetchall()]
        for name in names:
            if name.startswith(tuple(p + "_" for p in prefixes)):
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                dropped.append(name)
    return dropped


def emit(report: dict, json_out: Path | None) -> None:
    """Print a benchmark's report as JSON, and save it when asked."""
    text = json.dumps(report, indent=2)
    print(text)
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(text + "\n")


def summarize_ms(values: list[float]) -> dict[str, float]:
    return {"p50": round(percentile(values, 50), 2), "p95": round(percentile(values, 95), 2),
            "mean": round(float(np.mean(values)) if values else 0.0, 2)}


def machine() -> str:
    import platform

    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores, {mem_gb:.0f} GB RAM, Python {platform.python_version()}"


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if "--import-from" in sys.argv:  # a kbbot database URL (libpq form) holding the same corpus
        count = import_blocks_from_index(sys.argv[sys.argv.index("--import-from") + 1])
        log.info("imported %d blocks", count)
        raise SystemExit(0)
    if "--helper" in sys.argv:
        build_aws_cache(default_stem(MAX_TOKENS), helper=True)
        raise SystemExit(0)
    data = load_aws(rebuild="--rebuild" in sys.argv)
    print(json.dumps(data.manifest, indent=2))
