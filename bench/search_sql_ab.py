"""The search statement of two versions of retrieval/search.py side by side on the aws index: same hits?
how fast?

    nice -n 5 .venv/bin/python -m bench.search_sql_ab --old /work/main/retrieval/search.py [--rounds 4]

For a change of the statement's shape that must not change any result: the old file is loaded as its own
module next to this checkout's, both search the same index with the same question vectors (the shared
aws-docs-qa cache, bench/common.py), unfiltered (postings), filtered to the source (exact BM25) and as a
member (the audience filter), in alternating rounds. Reports whether every hit list is identical (chunk
ids, scores and similarities to 1e-9) and the SQL time's p50/p95 of each version. The index is
BENCH_DIR/<--index> (default `aws-ask-new`, bench/ask_wall.py's copy of the shared aws index).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path

import numpy as np

from bench.common import emit, load_aws, summarize_ms
from retrieval.access import ReaderScope
from retrieval.db import Database
from retrieval.search import Searcher
from retrieval.settings import load_settings

BENCH_DIR = Path(os.environ.get("KBBOT_BENCH_DIR", Path.home() / ".cache" / "kbbot-bench"))


class _NoEmbedder:
    """The question vectors are precomputed; nothing is embedded here."""

    provider, model, dimension = "local", "all-MiniLM-L6-v2", 384

    def embed_query(self, text: str) -> np.ndarray:
        raise AssertionError("precomputed vectors only")


def _old_searcher_class(path: Path) -> type:
    spec = importlib.util.spec_from_file_location("search_old", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module.Searcher


def _key(hits) -> list[tuple]:  # type: ignore[no-untyped-def]
    return [(h.chunk_id, round(h.score, 9), None if h.similarity is None else round(h.similarity, 9)) for h in hits]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old", type=Path, required=True, help="the other version's retrieval/search.py")
    parser.add_argument("--index", default="aws-ask-new")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--json-out", type=Path, default=Path(__file__).parent / "results" / "search_sql_ab.json")
    args = parser.parse_args()
    data = load_aws()
    storage = load_settings(_env_file=None).storage.model_copy(update={"data_dir": BENCH_DIR / args.index})
    db = Database.open(storage, migrate=False)
    arms = {"old": _old_searcher_class(args.old)(db, _NoEmbedder()), "new": Searcher(db, _NoEmbedder())}  # type: ignore[arg-type]
    with db.engine.connect() as conn:
        source = conn.exec_driver_sql("SELECT name FROM sources LIMIT 1").scalar()
    member = ReaderScope.member([], "bench: a member of no group")
    kinds = {"unfiltered": {}, "filtered": {"sources": [source]}, "member": {"audience": member}}
    times = {arm: {kind: [] for kind in kinds} for arm in arms}  # type: ignore[var-annotated]
    differing = {kind: 0 for kind in kinds}
    for r in range(args.rounds):
        order = list(arms) if r % 2 == 0 else list(arms)[::-1]
        for query, qvec in zip(data.queries, data.query_vectors, strict=True):
            for kind, extra in kinds.items():
                hits = {}
                for arm in order:
                    result = arms[arm].search_vector(query["text"], qvec, k=8, **extra)
                    hits[arm] = _key(result.hits)
                    if r > 0:  # round 0 warms the caches
                        times[arm][kind].append(result.timings_ms["search"])
                differing[kind] += hits["old"] != hits["new"]
    report = {"benchmark": "search_sql_ab", "rounds": args.rounds, "questions": len(data.queries),
              "index": args.index, "differing_hit_lists": differing,
              **{kind: {"old_ms": summarize_ms(times["old"][kind]), "new_ms": summarize_ms(times["new"][kind]),
                        "p95_ratio": round(float(np.percentile(times["new"][kind], 95))
                                           / float(np.percentile(times["old"][kind], 95)), 3)}
                 for kind in kinds},
              "load": os.getloadavg()[0]}
    emit(report, args.json_out)


if __name__ == "__main__":
    main()
