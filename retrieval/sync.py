"""Incremental sync: sources -> articles -> chunks -> vectors, recorded as a run.

Cost follows change: an article whose content hash is unchanged costs one dictionary look-up; an edited
one is re-chunked and only chunks whose text changed are embedded (the others keep their vectors); an
article gone from its source is deleted with its chunks and vectors. Embedding is batched across articles
for throughput, but each article is written in its own transaction, so a crash loses at most the batch in
flight and the next run picks up where this one stopped.

Sources with a change feed (Zendesk, Confluence) are read incrementally: an `incremental` run asks each
for what changed since its stored checkpoint, and the checkpoint advances only when the whole source
synced. Articles that failed are remembered with it and fetched again by the next run. `full` runs list
every article of every source (and prune what is gone), whatever the checkpoints say.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from retrieval import neighbour_density
from retrieval.access import DEFAULT_AUDIENCE
from retrieval.chunking import chunk_article
from retrieval.db import Database, translate_errors
from retrieval.embeddings import Embedder
from retrieval.errors import (
    ArticleError,
    EmbeddingError,
    KbbotError,
    ModelMismatchError,
    SourceError,
    SyncStoppedError,
)
from retrieval.index_store import IndexStore, PendingArticle
from retrieval.lexical_index import LexicalIndex
from retrieval.runs import RunCounts, RunKind, RunLog, SyncRun
from retrieval.sources.base import ChangeItem, Deleted, Source
from retrieval.spaces import (
    EmbeddingSpace,
    HnswOptions,
    activate,
    active_space,
    building_space,
    create_space,
    ensure_hnsw_index,
)
from retrieval.types import Article, ChunkDraft, content_hash

log = logging.getLogger(__name__)

EMBED_BATCH_CHUNKS = 256  # chunks per embedding call across articles
HEARTBEAT_EVERY_S = 2.0
# Knowledge-base articles are a few kB to a few hundred; one this large is usually several documents in
# one file (or an export), and it takes minutes to split and embed on a CPU.
LARGE_ARTICLE_CHARS = 500_000
# Log records of the errors a run's summary lists (an article skipped, one that could not be written, a
# source that failed) carry this attribute: a caller printing the summary can filter them out of the log
# instead of showing each error twice.
LISTED_IN_SUMMARY_LOG_FLAG = "kbbot_listed_in_summary"


@dataclass(frozen=True)
class Progress:
    stage: str  # "source", "articles", "embedding" (done/total passages of a batch), "backfill", "index", "done"
    source: str | None
    done: int
    total: int | None
    counts: RunCounts


ProgressCallback = Callable[[Progress], None]


@dataclass
class _Pending:
    article: Article
    article_hash: str
    drafts: list[ChunkDraft]
    reuse: list[int | None]
    to_embed: list[int]  # indexes into drafts
    existed: bool
    vectors: dict[int, np.ndarray] = field(default_factory=dict)


class Indexer:
    """Runs syncs. Everything it needs is passed in; it opens no connections of its own accord."""

    def __init__(self, db: Database, embedder: Embedder, *, chunk_max_tokens: int,
                 progress: ProgressCallback | None = None, should_stop: Callable[[], bool] | None = None,
                 index_options: HnswOptions | None = None, lexical: LexicalIndex | None = None) -> None:
        self.db = db
        self.embedder = embedder
        self.index_options = index_options or HnswOptions()
        self.lexical = lexical or LexicalIndex()
        # The margin leaves room for the title and headings embedded with each passage. An API model with no
        # known limit takes passages of the configured size, so changing the embedding model does not
        # re-chunk unchanged articles: they keep their passages (and the active space its vectors) while
        # the new model's vectors are built.
        limit = getattr(embedder, "max_tokens", None)
        self.chunk_max_tokens = min(chunk_max_tokens, limit - 40) if limit else chunk_max_tokens
        self.progress = progress or (lambda _p: None)
        # Asked between articles: True ends the run early (status `interrupted`) after the articles in
        # hand are written, e.g. when the worker gets SIGTERM.
        self.should_stop = should_stop or (lambda: False)
        self.runs = RunLog(db)
        # GIN builds gain little past a few hundred MB; the HNSW ceiling is meant for graphs, not this.
        self._keyword_index_memory_mb = min(self.index_options.build_memory_mb, 512)

    def sync(self, sources: Sequence[Source], *, kind: RunKind = "incremental", trigger: str = "cli",
             started_by: str | None = None, prune: bool = True) -> SyncRun:
        """Bring the index in line with `sources`. Raises SyncInProgressError if another sync runs."""
        counts = RunCounts()
        with self.runs.exclusive(kind=kind, trigger=trigger, started_by=started_by,
                                 sources=[s.name for s in sources]) as (run_id, lock_conn):
            status = "failed"
            try:
                with self.db.raw_connection() as pg:
                    store = IndexStore(pg)
                    space, switching = self._target_space(store, kind)
                    # A first load builds the keyword index after its rows; any other sync first rebuilds
                    # one that a crashed first load left missing.
                    if not store.drop_keyword_index_for_bulk_load():
                        store.ensure_keyword_index(build_memory_mb=self._keyword_index_memory_mb)
                    beat = _Heartbeat(lambda: self.runs.heartbeat(lock_conn, run_id, counts))
                    for source in sources:
                        self._sync_source(store, source, space, counts, beat, prune=prune, kind=kind)
                    self._backfill(store, space, counts, beat)
                    self.progress(Progress("index", None, 0, None, counts))
                    with self.db.engine.begin() as conn:
                        ensure_hnsw_index(conn, space, self.index_options)
                        if switching:
                            activate(conn, space)
                    store.ensure_keyword_index(build_memory_mb=self._keyword_index_memory_mb)
                    # Small changes are searched as the postings' delta; full passes rebuild for any.
                    if self.lexical.needs_refresh(pg, any_change=kind != "incremental"):
                        self.lexical.refresh(pg)
                status = "partial" if counts.failed else "succeeded"
            except SyncStoppedError as exc:
                log.warning("sync run %s stopped early: the process is shutting down", run_id)
                counts.errors.append({"where": "run", "error": str(exc)})
                status = "interrupted"
            except KbbotError as exc:
                counts.errors.append({"where": "run", "error": str(exc)})
                raise
            except Exception as exc:
                log.exception("sync run %s failed", run_id)
                counts.errors.append({"where": "run", "error": f"unexpected error: {exc}"})
                raise
            finally:
                self._settle_density(counts, status)
                self.runs.finish(lock_conn, run_id, counts, status)
                self.progress(Progress("done", None, 0, None, counts))
        run = self.runs.get(run_id)
        assert run is not None
        return run

    def _settle_density(self, counts: RunCounts, status: str) -> None:
        """Measure the index's neighbour density again when this run changed passages or vectors (or the
        active space has none stored), so that questions read it instead of measuring it
        (retrieval/neighbour_density.py). A run that changed them and did not finish clears it instead:
        the next question measures the index as it is. Never fails the run: a density that could not be
        stored is measured by the next reader."""
        changed = bool(counts.added or counts.updated or counts.removed or counts.chunks_embedded)
        try:
            with self.db.engine.connect() as conn:
                space = active_space(conn)
            if space is None:
                return
            if status not in ("succeeded", "partial"):
                if changed:
                    neighbour_density.clear(self.db, space)
                return
            if changed or neighbour_density.stored(self.db, space) is None:
                neighbour_density.store(self.db, space, neighbour_density.measure(self.db, space))
        except Exception as exc:
            log.warning("the index's density was not stored (the next question measures it): %s", exc)
            log.debug("storing the index's density failed", exc_info=True)

    # --- stages --------------------------------------------------------------------------------
    def _target_space(self, store: IndexStore, kind: RunKind) -> tuple[EmbeddingSpace, bool]:
        """The space to write vectors into, and whether it replaces the active one at the end."""
        provider, model = self.embedder.provider, self.embedder.model
        with self.db.engine.begin() as conn:
            current = active_space(conn)
            if current is None:
                return create_space(conn, provider, model, self.embedder.dimension, "active"), False
            if (current.provider, current.model) == (provider, model):
                return current, False
            if kind not in ("full", "reembed"):
                raise ModelMismatchError(f"{current.provider}/{current.model}", f"{provider}/{model}")
            building = building_space(conn)
            if building is not None and (building.provider, building.model) == (provider, model):
                return building, True  # resume an interrupted re-embed
            return create_space(conn, provider, model, self.embedder.dimension, "building"), True

    def _sync_source(self, store: IndexStore, source: Source, space: EmbeddingSpace, counts: RunCounts,
                     beat: _Heartbeat, *, prune: bool, kind: RunKind = "incremental") -> None:
        config = {**source.config(), **source.access_config()}
        source_id = store.upsert_source(source.name, source.kind, config)
        indexed = store.indexed_articles(source_id)
        state = store.source_checkpoint(source_id) if kind == "incremental" else None
        fingerprint = content_hash(json.dumps(config, sort_keys=True, default=str))
        if state is not None and state.get("config") != fingerprint:
            # A locale or space added to the sources file has articles older than the checkpoint.
            log.info("source %s: its configuration changed, listing every article", source.name)
            state = None
        failed: set[str] = set()  # external ids to fetch again next run
        seen: set[str] = set()
        seen_hash: dict[str, str] = {}
        pending: list[_Pending] = []
        pending_chunks = 0
        done = 0
        try:
            feed = source.iter_changes(state.get("cursor") if state else None)
            retry = [str(i) for i in (state or {}).get("retry") or []]  # type: ignore[union-attr]
            items: Iterable[ChangeItem] = feed
            if retry and not feed.complete:
                items = itertools.chain(source.fetch_articles(retry), feed)
            self.progress(Progress("source", source.name, 0, (len(indexed) or None) if feed.complete else None,
                                   counts))
            for item in _guarded(source, items):
                if self.should_stop():
                    failed |= self._flush(store, source_id, space, pending, counts)
                    raise SyncStoppedError()
                done += 1
                if isinstance(item, Deleted):
                    gone = indexed.pop(item.external_id, None)
                    if gone is not None:
                        counts.removed += store.delete_articles([gone.id])
                    continue
                if isinstance(item, ArticleError):
                    if item.external_id:
                        seen.add(item.external_id)
                        failed.add(item.external_id)
                    # An article the source could not deliver: who may read it is unknown, so nobody in Slack.
                    counts.record_error(item.location or source.name, item.message, audience=())
                    log.warning("skipped article: %s", item, extra={LISTED_IN_SUMMARY_LOG_FLAG: True})
                    continue
                if seen_hash.get(item.external_id) == item.hash:
                    continue  # delivered twice in one run (a retried article, overlapping change windows)
                seen.add(item.external_id)
                seen_hash[item.external_id] = item.hash
                failures_before = counts.failed
                prepared = self._prepare(store, with_audience(item, source), indexed.get(item.external_id),
                                         space, counts)
                if prepared is not None:
                    pending.append(prepared)
                    pending_chunks += len(prepared.to_embed)
                elif counts.failed > failures_before:
                    failed.add(item.external_id)
                if pending_chunks >= EMBED_BATCH_CHUNKS:
                    failed |= self._flush(store, source_id, space, pending, counts)
                    pending, pending_chunks = [], 0
                self.progress(Progress("articles", source.name, done, None, counts))
                beat()
            failed |= self._flush(store, source_id, space, pending, counts)
        except SourceError as exc:
            # The listing is incomplete: keep every indexed article of this source as it is, and keep the
            # checkpoint where it was so the next run reads the same changes again.
            self._flush(store, source_id, space, pending, counts)
            counts.record_error(source.name, str(exc))
            store.mark_source(source_id, error=str(exc))
            log.error("source %s failed: %s", source.name, exc, extra={LISTED_IN_SUMMARY_LOG_FLAG: True})
            return
        finally:
            source.close()
        if prune and feed.complete:
            gone_ids = [a.id for ext, a in indexed.items() if ext not in seen]
            counts.removed += store.delete_articles(gone_ids)
        checkpoint = None if feed.checkpoint is None else {
            "cursor": feed.checkpoint, "retry": sorted(failed), "config": fingerprint}
        store.mark_source(source_id, error=None, checkpoint=checkpoint)

    def _prepare(self, store: IndexStore, article: Article, indexed: object, space: EmbeddingSpace,
                 counts: RunCounts) -> _Pending | None:
        parts = [article.hash, f"chunker:v1:{self.chunk_max_tokens}"]
        if article.audience != DEFAULT_AUDIENCE or article.held_back:
            # Only when not the default, so articles indexed before audiences keep their hashes; a changed
            # audience or restriction rewrites the article (its unchanged passages keep their vectors).
            parts.append(f"audience:{','.join(article.audience or ())}:{article.held_back or ''}")
        article_hash = content_hash(*parts)
        if indexed is not None and indexed.content_hash == article_hash:  # type: ignore[attr-defined]
            counts.unchanged += 1
            return None
        if len(article.text) >= LARGE_ARTICLE_CHARS:
            log.warning("%s is unusually large (%.1f MB of text; articles are usually under 100 kB): splitting "
                        "and embedding it takes minutes. If it holds several documents, index them as separate "
                        "articles so that citations point at the right one.", article.external_id,
                        len(article.text) / 1e6)
        try:
            drafts = chunk_article(article.text, max_tokens=self.chunk_max_tokens,
                                   count_tokens=self.embedder.count_tokens)
        except Exception as exc:  # a chunker bug must cost one article, not the run
            log.exception("chunking %s failed", article.external_id)
            counts.record_error(article.external_id, f"could not be split into passages: {exc}",
                                audience=article.audience or ())
            return None
        if not drafts:
            counts.record_error(article.external_id, "has no text to index", audience=article.audience or ())
            return None
        if article.path:
            drafts = [dataclasses.replace(d, heading_path=(*article.path, *d.heading_path)) for d in drafts]
        stored = store.stored_chunks(indexed.id, space.id) if indexed is not None else []  # type: ignore[attr-defined]
        available = {}
        for chunk in stored:
            available.setdefault(chunk.content_hash, []).append(chunk)
        reuse: list[int | None] = []
        to_embed: list[int] = []
        for i, draft in enumerate(drafts):
            matches = available.get(draft.hash(article.title))
            if matches:
                chunk = matches.pop(0)
                reuse.append(chunk.id)
                if not chunk.has_vector:
                    to_embed.append(i)
            else:
                reuse.append(None)
                to_embed.append(i)
        return _Pending(article, article_hash, drafts, reuse, to_embed, existed=indexed is not None)

    def _flush(self, store: IndexStore, source_id: int, space: EmbeddingSpace, pending: list[_Pending],
               counts: RunCounts) -> set[str]:
        """Embed and write the pending articles; returns the external ids of those that failed."""
        if not pending:
            return set()
        texts = [p.drafts[i].embedding_input(p.article.title) for p in pending for i in p.to_embed]
        try:
            vectors = self._embed(texts, space, counts)
        except EmbeddingError as exc:
            for p in pending:
                counts.record_error(p.article.external_id, str(exc), audience=p.article.audience or ())
            log.error("embedding a batch of %d articles failed: %s", len(pending), exc)
            return {p.article.external_id for p in pending}
        cursor = 0
        for p in pending:
            for i in p.to_embed:
                p.vectors[i] = vectors[cursor]
                cursor += 1
        writes = [PendingArticle(source_id, p.article, p.article_hash, space.id, p.drafts, p.reuse, p.vectors)
                  for p in pending]
        failed: set[str] = set()
        try:
            # The batch in one transaction (one commit, one COPY of its vectors) ...
            with translate_errors(f"Writing {len(writes)} articles"):
                store.apply_articles(writes)
        except KbbotError as exc:
            # ... and if it fails, article by article, so that one bad article does not hold back the rest.
            log.warning("writing a batch of %d articles failed (%s); writing them one by one", len(writes), exc)
            for p, write in zip(pending, writes, strict=True):
                try:
                    with translate_errors(f"Writing article {p.article.external_id}"):
                        store.apply_articles([write])
                except KbbotError as exc:
                    counts.record_error(p.article.external_id, str(exc), audience=p.article.audience or ())
                    log.error("writing %s failed: %s", p.article.external_id, exc,
                              extra={LISTED_IN_SUMMARY_LOG_FLAG: True})
                    failed.add(p.article.external_id)
        for p in pending:
            if p.article.external_id in failed:
                continue
            counts.chunks_embedded += len(p.to_embed)
            if p.existed:
                counts.updated += 1
            else:
                counts.added += 1
        return failed

    def _embed(self, texts: list[str], space: EmbeddingSpace, counts: RunCounts) -> np.ndarray:
        """Embed in slices, reporting progress after each: one large article is thousands of passages, and
        minutes without a sign of life read as a hang."""
        if not texts:
            return np.zeros((0, space.dimension))
        # Said before the first slice too: one slice takes seconds on a CPU, during which a progress bar
        # would otherwise still show the article count it had when the embedding began.
        self.progress(Progress("embedding", None, 0, len(texts), counts))
        parts = []
        for start in range(0, len(texts), EMBED_BATCH_CHUNKS):
            parts.append(self.embedder.embed_documents(texts[start:start + EMBED_BATCH_CHUNKS]))
            self.progress(Progress("embedding", None, start + len(parts[-1]), len(texts), counts))
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _backfill(self, store: IndexStore, space: EmbeddingSpace, counts: RunCounts, beat: _Heartbeat) -> None:
        """Embed chunks that have no vector in the target space (a re-embed, or a crash between writes)."""
        after = 0
        while True:
            if self.should_stop():
                raise SyncStoppedError()  # a re-embed resumes from the missing vectors next run
            rows = store.chunks_missing_vectors(space.id, after, EMBED_BATCH_CHUNKS)
            if not rows:
                return
            vectors = self.embedder.embed_documents([r[3] for r in rows])
            with store.conn.transaction():
                store.write_vectors(
                    ((space.id, cid, sid, audience, vec)
                     for (cid, sid, audience, _), vec in zip(rows, vectors, strict=True)),
                    upsert=True,
                )
            counts.chunks_embedded += len(rows)
            after = rows[-1][0]
            self.progress(Progress("backfill", None, counts.chunks_embedded, None, counts))
            beat()


def with_audience(article: Article, source: Source) -> Article:
    """The article with its effective audience: its own, else its source's; held back means nobody."""
    if article.held_back:
        return dataclasses.replace(article, audience=())
    if article.audience is None:
        return dataclasses.replace(article, audience=source.audience)
    return article


def _guarded(source: Source, items: Iterable[ChangeItem]) -> Iterator[ChangeItem]:
    """The items, with a connector's unexpected exception turned into that source's failure: a bug in one
    connector must cost its own source this run, not every source after it."""
    iterator = iter(items)
    while True:
        try:
            item = next(iterator)
        except StopIteration:
            return
        except KbbotError:
            raise
        except Exception as exc:
            log.exception("source %s failed unexpectedly", source.name)
            raise SourceError(f"{source.describe()} failed unexpectedly ({type(exc).__name__}: {exc}); "
                              "its indexed articles are kept and the next run tries again.") from exc
        yield item


class _Heartbeat:
    def __init__(self, write: Callable[[], None]) -> None:
        self._write = write
        self._last = 0.0

    def __call__(self) -> None:
        now = time.monotonic()
        if now - self._last >= HEARTBEAT_EVERY_S:
            self._last = now
            self._write()
