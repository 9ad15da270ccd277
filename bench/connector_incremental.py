"""Incremental vs full sync through the Zendesk connector, on a 10x synthetic help center.

The corpus: the 35 demo articles, each in 100 office-specific variants (3,500 short Zendesk articles in
35 sections of 5 categories), served by the local Zendesk fake (tests/fakes/zendesk_api.py) over real
HTTP, indexed into an embedded PostgreSQL with the real local embedding model.

After the initial index, each round edits 1% of the articles at the source, then syncs:
- incremental: the incremental export since the stored checkpoint (what `kbbot worker` runs);
- full: every article listed again and compared by hash (the pruning pass; also what a connector without
  a change feed costs on every run).
The two alternate on fresh edits, so both see the same amount of change. Also measured: an incremental
run with nothing changed (a quiet scheduled tick).

    nice -n 10 .venv/bin/python -m bench.connector_incremental [--variants 100] [--rounds 3]
"""

from __future__ import annotations

import argparse
import html
import logging
import os
import random
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from bench.common import local_embedder  # noqa: E402
from retrieval.db import Database, embedded_url  # noqa: E402
from retrieval.embeddings import Embedder  # noqa: E402
from retrieval.sources.filesystem import FilesystemSource  # noqa: E402
from retrieval.sources.zendesk import ZendeskSource  # noqa: E402
from retrieval.sync import Indexer  # noqa: E402
from retrieval.types import Article  # noqa: E402
from tests.fakes.zendesk_api import FakeZendesk  # noqa: E402

OFFICES = ["Lisbon", "Austin", "Nairobi", "Osaka", "Toronto", "Krakow", "Recife", "Perth", "Dublin", "Pune"]
CATEGORIES = ["IT", "People", "Finance", "Security", "Workplace"]


@dataclass
class Measure:
    label: str
    seconds: float
    requests: int
    delivered: int  # articles the connector handed to the sync
    embedded: int  # passages embedded
    embedding_s: float  # time inside the embedding model
    finishing_s: float  # index check, lexicon refresh and commit after the last article

    @property
    def other_s(self) -> float:
        """Everything but embedding: HTTP, parsing, hashing, database writes."""
        return self.seconds - self.embedding_s


class TimedEmbedder:
    """The real embedder, timing its calls (embedding cost is proportional to change either way)."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.provider, self.model = inner.provider, inner.model
        self.max_tokens = getattr(inner, "max_tokens", None)
        self.seconds = 0.0

    @property
    def dimension(self) -> int:
        return self.inner.dimension

    def embed_documents(self, texts):  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        try:
            return self.inner.embed_documents(texts)
        finally:
            self.seconds += time.perf_counter() - started

    def embed_query(self, text):  # type: ignore[no-untyped-def]
        return self.inner.embed_query(text)

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)


def short_html(article: Article) -> str:
    """The article's first blocks as Help Center HTML (short articles keep the embedding cost sane)."""
    blocks = [b.strip() for b in article.text.split("\n\n") if b.strip()][:3]
    out = []
    for block in blocks:
        if block.startswith("#"):
            out.append(f"<h2>{html.escape(block.lstrip('#').strip())}</h2>")
        else:
            out.append(f"<p>{html.escape(' '.join(block.split()))}</p>")
    return "".join(out)


def build_help_center(fake: FakeZendesk, variants: int) -> list[int]:
    demo = [a for a in FilesystemSource("demo", REPO / "demo_kb").iter_articles() if isinstance(a, Article)]
    categories = [fake.add_category(name) for name in CATEGORIES]
    ids = []
    for n, article in enumerate(demo):
        section = fake.add_section(f"{article.title} topics", categories[n % len(categories)])
        body = short_html(article)
        for v in range(variants):
            office = f"{OFFICES[v % len(OFFICES)]} {v // len(OFFICES) + 1}"
            ids.append(fake.add_article(
                f"{article.title} ({office})",
                f"<p>This applies to the {office} office.</p>{body}", section_id=section))
    fake.tick(3600)
    return ids


def edit(fake: FakeZendesk, ids: list[int], share: float, rng: random.Random) -> int:
    chosen = rng.sample(ids, max(1, round(len(ids) * share)))
    for article_id in chosen:
        article = fake.articles[("en-us", article_id)]
        fake.edit_article(article_id, body=article["body"] + f"<p>Updated on round {fake.clock}.</p>")
    fake.tick(600)
    return len(chosen)


def measure(label: str, indexer: Indexer, fake: FakeZendesk, kind: str) -> Measure:
    source = ZendeskSource("help-center", base_url=fake.url, email=fake.email, api_token=fake.token)
    timed: TimedEmbedder = indexer.embedder  # type: ignore[assignment]
    timed.seconds = 0.0
    index_started: list[float] = []
    indexer.progress = lambda p: index_started.append(time.perf_counter()) if p.stage == "index" else None
    started = time.perf_counter()
    run = indexer.sync([source], kind=kind, trigger="bench")  # type: ignore[arg-type]
    ended = time.perf_counter()
    assert run.status == "succeeded", run.errors
    delivered = run.added + run.updated + run.unchanged + run.failed
    return Measure(label, ended - started, source.client.requests, delivered, run.chunks_embedded,
                   timed.seconds, ended - (index_started[0] if index_started else ended))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", type=int, default=100, help="variants per demo article (100: 3,500)")
    parser.add_argument("--share", type=float, default=0.01, help="share of articles edited per round")
    parser.add_argument("--rounds", type=int, default=3, help="incremental and full runs measured, each")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    rng = random.Random(2026)
    embedder = TimedEmbedder(local_embedder())
    embedder.inner.embed_documents(["warm up: load the model before anything is timed"])
    with tempfile.TemporaryDirectory(prefix="kbbot-bench-") as tmp, FakeZendesk() as fake:
        db = Database.from_url(embedded_url(Path(tmp)))
        ids = build_help_center(fake, args.variants)
        indexer = Indexer(db, embedder, chunk_max_tokens=200)  # type: ignore[arg-type]
        initial = measure("initial index (full listing)", indexer, fake, "incremental")
        print(f"corpus: {len(ids)} articles, {initial.embedded} passages", flush=True)
        print(f"initial: {initial}", flush=True)
        quiet = measure("incremental, nothing changed", indexer, fake, "incremental")
        incremental: list[Measure] = []
        full: list[Measure] = []
        changed = 0
        for _ in range(args.rounds):
            changed = edit(fake, ids, args.share, rng)
            incremental.append(measure("incremental", indexer, fake, "incremental"))
            print(incremental[-1], flush=True)
            edit(fake, ids, args.share, rng)
            full.append(measure("full", indexer, fake, "full"))
            print(full[-1], flush=True)
        db.close()
    report(len(ids), changed, initial, quiet, incremental, full)


def _median(values: list[float]) -> float:
    return statistics.median(values)


def report(articles: int, changed: int, initial: Measure, quiet: Measure, inc: list[Measure],
           full: list[Measure]) -> None:
    def row(label: str, ms: list[Measure]) -> str:
        return (f"| {label} | {_median([m.seconds for m in ms]):.2f} | {_median([m.embedding_s for m in ms]):.2f} "
                f"| {_median([m.other_s for m in ms]):.2f} | {_median([m.finishing_s for m in ms]):.2f} "
                f"| {_median([m.requests for m in ms]):.0f} | {_median([m.delivered for m in ms]):.0f} "
                f"| {_median([m.embedded for m in ms]):.0f} |")

    def ratio(attr: str) -> str:
        a = _median([getattr(m, attr) for m in full])
        b = _median([getattr(m, attr) for m in inc])
        return f"{a / b:.1f}x" if b else "n/a"

    print(f"\n{articles} articles; {changed} edited ({changed / articles:.0%}) before each measured run; "
          f"median of {len(inc)} runs each\n")
    print("| run | seconds | embedding s | everything else s | of which finishing s | HTTP requests "
          "| articles delivered | passages embedded |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    print(row("initial index", [initial]))
    print(row("full pass after 1% edits", full))
    print(row("incremental after 1% edits", inc))
    print(row("incremental, nothing changed", [quiet]))
    print(f"| full / incremental | {ratio('seconds')} | {ratio('embedding_s')} | {ratio('other_s')} | "
          f"| {ratio('requests')} | {ratio('delivered')} | {ratio('embedded')} |")


if __name__ == "__main__":
    main()
