"""What preparing the answer sentences costs (retrieval/unit_warm.py): time, passages/s, the table's size.

    flock /tmp/kbbot-heavy.lock nice -n 5 .venv/bin/python -m bench.unit_warm [--minutes 5]
        [--data-dir ~/.cache/kbbot-bench/aws] [--concurrent-calls 1] [--json-out bench/results/unit_warm.json]

Runs kbbot's warm (the same UnitWarmer `kbbot serve` starts) on the index in KBBOT_DATA_DIR form (default
the aws index bench/ingest_aws.py keeps) for at most `--minutes`, then stops between two batches: the warm
is resumable, so a whole index is prepared in several short slices under the shared lock. Each slice is
appended to `--json-out` with its passages, units, seconds and load; the totals (passages/s over every
slice, the index's prepared share, `unit_vectors`' size on disk) are recomputed from all slices.
`--concurrent-calls 1` embeds with every core, as a `kbbot worker` or a quiet server would; `kbbot serve`
with 4 answer workers gives the warm one core's share (`--concurrent-calls 4`).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

BENCH_DIR = Path(os.environ.get("KBBOT_BENCH_DIR", Path.home() / ".cache" / "kbbot-bench"))


class _Counting:
    """The embedder, counting the units and tokens the warm embeds."""

    def __init__(self, inner) -> None:  # type: ignore[no-untyped-def]
        self.inner, self.provider, self.model = inner, inner.provider, inner.model
        self.units = self.tokens = 0

    @property
    def dimension(self) -> int:
        return self.inner.dimension

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        self.units += len(texts)
        self.tokens += sum(self.inner.count_tokens(t) for t in texts)
        return self.inner.embed_documents(texts)

    def embed_query(self, text: str) -> np.ndarray:
        return self.inner.embed_query(text)

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)


def _answer(settings, db, embedder, queries: Path) -> dict[str, object]:  # type: ignore[no-untyped-def]
    from bot.services import Services

    services = Services(settings, database=db, embedder=embedder)
    questions = [json.loads(line)["text"] for line in queries.open() if line.strip()]
    started = time.monotonic()
    for question in questions:
        services.pipeline.answer(question)
    services.sentence_embedder.flush()
    units = services.sentence_embedder
    return {"file": str(queries), "questions": len(questions), "seconds": round(time.monotonic() - started, 1),
            "units_from_table": units.db_hits, "units_computed": units.db_misses}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--data-dir", type=Path, default=BENCH_DIR / "aws")
    parser.add_argument("--concurrent-calls", type=int, default=1)
    parser.add_argument("--questions", type=Path, help="a queries.jsonl: after the slice, answer each once "
                        "through `kbbot serve`'s pipeline, which stores the sentences of the passages it reads "
                        "(what a full warm would have stored for them)")
    parser.add_argument("--json-out", type=Path, default=Path("bench/results/unit_warm.json"))
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from retrieval.db import Database
    from retrieval.embeddings import create_embedder
    from retrieval.settings import load_settings
    from retrieval.unit_vectors import UnitVectorStore
    from retrieval.unit_warm import UnitWarmer, preparation

    settings = load_settings(_env_file=None, data_dir=args.data_dir)
    db = Database.open(settings.storage)  # applies the migration that adds unit_vectors, if not yet
    embedder = _Counting(create_embedder(settings.embeddings, settings.openai,
                                         concurrent_calls=args.concurrent_calls))
    embedder.embed_query("load the model")
    store = UnitVectorStore(db, provider=embedder.provider, model=embedder.model, dimension=embedder.dimension)
    warmer = UnitWarmer(db, embedder, store)
    load_before = round(os.getloadavg()[0], 1)
    started_at, started = datetime.now(UTC), time.monotonic()
    deadline = started + args.minutes * 60
    passages = warmer.warm(should_stop=lambda: time.monotonic() > deadline)
    seconds = time.monotonic() - started
    answered = _answer(settings, db, embedder.inner, args.questions) if args.questions else None
    with db.raw_connection() as conn:
        state = preparation(conn)
        size = conn.execute("SELECT pg_total_relation_size('unit_vectors'), pg_relation_size('unit_vectors'), "
                            "(SELECT count(*) FROM unit_vectors)").fetchone()
    db.close()
    assert state is not None and size is not None
    slice_ = {"started_at": started_at.isoformat(timespec="seconds"), "passages": passages,
              "units": embedder.units, "tokens": embedder.tokens, "seconds": round(seconds, 1),
              "passages_per_s": round(passages / seconds, 2) if seconds else None,
              "concurrent_calls": args.concurrent_calls, "load_avg_1m_before": load_before,
              "load_avg_1m_after": round(os.getloadavg()[0], 1), "answered_questions": answered}
    previous = json.loads(args.json_out.read_text()) if args.json_out.exists() else {}
    slices = [*previous.get("slices", []), slice_]
    total_passages = sum(s["passages"] for s in slices)
    total_seconds = sum(s["seconds"] for s in slices)
    result = {
        "data_dir": str(args.data_dir), "slices": slices,
        "total": {"passages": total_passages, "units": sum(s["units"] for s in slices),
                  "tokens": sum(s["tokens"] for s in slices), "seconds": round(total_seconds, 1),
                  "passages_per_s": round(total_passages / total_seconds, 2) if total_seconds else None},
        "index": {"prepared": state.prepared, "passages": state.passages, "complete": state.complete,
                  "unit_vectors_rows": size[2], "unit_vectors_total_bytes": size[0],
                  "unit_vectors_heap_bytes": size[1]},
    }
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({"slice": slice_, "index": result["index"]}), flush=True)


if __name__ == "__main__":
    main()
