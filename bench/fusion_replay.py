"""Fusion variants replayed on recorded branch rankings (issue 16, retrieval): many variants in seconds.

    flock /tmp/kbbot-heavy.lock nice -n 5 .venv/bin/python -m bench.fusion_replay record [--sets demo,python-faq,aws]
    nice -n 5 .venv/bin/python -m bench.fusion_replay replay [--json-out bench/results/fusion_replay.json]

`record` indexes the sets of bench/retrieval_variants.py and stores, per question, the dense branch (the
product's HNSW search, 200 passages with their cosine similarity) and the lexical branch (BM25 from
postings, 200 passages with their score) for each BM25 setting below, plus each passage's article and
length, in ~/.cache/kbbot-bench/fusion-replay.pkl. `replay` fuses them in Python as the search statement
would (each branch cut to the answerer's 40 candidates) and scores article-level nDCG@10 and Recall@10
and the gold-first rate (the rank-1 passage is from a gold article, which bounds the answers' citation
precision). Winners are then confirmed through the real search statement by bench/retrieval_variants.py.
"""

from __future__ import annotations

import argparse
import logging
import pickle
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import psycopg

from bench.common import AWS_DIR, CACHE_DIR, emit, load_aws
from retrieval.evaluation import LabelledQuery, ndcg, rank_articles, recall
from retrieval.lexical_index import LexicalIndex, LexicalOptions

log = logging.getLogger("bench.fusion_replay")
RECORD = CACHE_DIR / "fusion-replay.pkl"
DEPTH = 200
SESSION6 = "session 6: title3 k1 1.2 b0.75"
LEXICAL = {  # BM25 settings spelled out, so that a change of the defaults does not rename them
    "session 6: title3 k1 1.2 b0.75": LexicalOptions(k1=1.2, b=0.75, title_weight=3.0),
    "title1 k1 1.2 b0.75": LexicalOptions(k1=1.2, b=0.75, title_weight=1.0),
    "title3 k1 1.2 b0.5": LexicalOptions(k1=1.2, b=0.5, title_weight=3.0),
    "title3 k1 0.9 b0.4": LexicalOptions(k1=0.9, b=0.4, title_weight=3.0),
    "title3 k1 0.7 b0.4": LexicalOptions(k1=0.7, b=0.4, title_weight=3.0),
    "title3 k1 0.7 b0.3": LexicalOptions(k1=0.7, b=0.3, title_weight=3.0),
    "title3 k1 0.5 b0.4": LexicalOptions(k1=0.5, b=0.4, title_weight=3.0),
    "title3 k1 0.5 b0.5": LexicalOptions(k1=0.5, b=0.5, title_weight=3.0),
    "title2 k1 0.7 b0.4": LexicalOptions(k1=0.7, b=0.4, title_weight=2.0),
    "bm25f title3 k1 0.5 b0.4": LexicalOptions(k1=0.5, b=0.4, title_weight=3.0, field_norm=True),
    "bm25f title3 k1 1.2 b0.75": LexicalOptions(k1=1.2, b=0.75, title_weight=3.0, field_norm=True),
}
# README and demo probes beyond the labelled set: (question, gold article, heading of the passage wanted first)
PROBES = [
    ("per diem in Toronto", "travel/per-diem.md", "2026 rates by city"),
    ("What is the per diem in Toronto?", "travel/per-diem.md", "2026 rates by city"),
    ("a weird email asking for my password", "security/reporting-phishing.md", None),
    ("How do I enroll in MFA?", "it/mfa.md", "Enrolling"),
]


@dataclass
class Recorded:
    queries: list[LabelledQuery]
    dense: list[list[tuple[int, float]]]
    lexical: dict[str, list[list[tuple[int, float]]]]
    article: dict[int, str]
    heading: dict[int, str]
    length: dict[int, int]
    probes: int = 0  # the last `probes` queries are PROBES
    similarity: list[dict[int, float]] | None = None  # per question: lexical candidates beyond the dense list


def record_index(db, conninfo: str, queries: list[LabelledQuery], qvecs: np.ndarray) -> Recorded:  # type: ignore[no-untyped-def]
    from bench.retrieval_variants import PrecomputedQuestions, rebuild_lexicon
    from retrieval.search import Searcher

    searcher = Searcher(db, PrecomputedQuestions())  # type: ignore[arg-type]
    dense = [[(h.chunk_id, float(h.similarity or 0.0)) for h in
              searcher.search_vector(q.text, v, k=DEPTH, candidates=DEPTH, mode="dense").hits]
             for q, v in zip(queries, qvecs, strict=True)]
    lexical = {}
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for name, options in LEXICAL.items():
            rebuild_lexicon(conninfo, options)
            index = LexicalIndex(options)
            lexical[name] = [index.rank_scored(conn, q.text, DEPTH) or [] for q in queries]
        rebuild_lexicon(conninfo, LexicalOptions())
        # the cosine similarity of every lexical candidate too (the search statement computes it for each
        # fused passage), so a score fusion need not guess it for passages beyond the dense branch's cut
        similarity = []
        for i, v in enumerate(qvecs):
            ids = sorted({c for lists in lexical.values() for c, _ in lists[i]} - {c for c, _ in dense[i]})
            literal = "[" + ",".join(map(str, v.tolist())) + "]"
            rows = conn.execute("SELECT chunk_id, 1 - (embedding::vector(384) <=> %s::vector(384)) FROM embeddings "
                                "WHERE chunk_id = ANY(%s)", (literal, ids)).fetchall()
            similarity.append(dict(rows))
        rows = conn.execute("SELECT c.id, a.external_id, coalesce(c.heading_path[array_length(c.heading_path, 1)], "
                            "''), length(c.tsv) FROM chunks c JOIN articles a ON a.id = c.article_id").fetchall()
    return Recorded(queries, dense, lexical, {r[0]: r[1] for r in rows}, {r[0]: r[2] for r in rows},
                    {r[0]: r[3] for r in rows}, similarity=similarity)


def record(names: list[str]) -> None:
    import tempfile

    from bench.retrieval_variants import indexed, small_sets

    out: dict[str, Recorded] = pickle.loads(RECORD.read_bytes()) if RECORD.exists() else {}

    with tempfile.TemporaryDirectory() as tmp:
        embedder, sets = small_sets(names, Path(tmp))
        for name, factory, data in sets:
            queries, qvecs = list(data.queries), data.qvecs
            probes = 0
            if name == "demo":
                extra = [LabelledQuery(f"probe{i}", q, {a: 1}) for i, (q, a, _) in enumerate(PROBES)]
                queries += extra
                qvecs = np.vstack([qvecs, *[embedder.embed_query(q.text) for q in extra]])
                probes = len(extra)
            with indexed(name, factory(), 200, embedder) as (db, conninfo):
                out[name] = record_index(db, conninfo, queries, qvecs)
                out[name].probes = probes
    if "aws" in names and (AWS_DIR / "corpus.jsonl").is_file():
        from bench.scale_data import real_index

        cache = load_aws()
        qs = [LabelledQuery(q["id"], q["text"], q["relevant"]) for q in cache.queries]
        with real_index(cache, "replay") as (db, conninfo):
            out["aws"] = record_index(db, conninfo, qs, np.asarray(cache.query_vectors))
    RECORD.write_bytes(pickle.dumps(out))
    log.info("recorded %s in %s", ", ".join(out), RECORD)


# --- fusion ---------------------------------------------------------------------------------------
Fuse = Callable[[list[tuple[int, float]], list[tuple[int, float]], Recorded, int], list[int]]


@dataclass(frozen=True)
class Fusion:
    dense: float = 1.0
    lexical: float = 1.0
    rrf_k: int = 60
    top_bonus: float = 0.0  # added per branch for its rank 1 (and half for rank 2)
    kind: str = "rrf"  # "rrf", "convex" (min-max normalised scores), "zscore"
    alpha: float = 0.5  # convex: the dense share
    candidates: int = 40
    head: int = 0  # score kinds: only the first `head` by score, the rest by RRF (0: all by score)

    def __call__(self, dense: list[tuple[int, float]], lexical: list[tuple[int, float]], rec: Recorded,
                 rec_index: int = 0) -> list[int]:
        dense, lexical = dense[: self.candidates], lexical[: self.candidates]
        scores: dict[int, float] = {}
        if self.kind == "rrf":
            for weight, branch in ((self.dense, dense), (self.lexical, lexical)):
                for rank, (cid, _) in enumerate(branch, 1):
                    bonus = self.top_bonus if rank == 1 else self.top_bonus / 2 if rank == 2 else 0.0
                    scores[cid] = scores.get(cid, 0.0) + weight / (self.rrf_k + rank) + bonus
        elif self.kind in ("full", "full-mm"):
            # the dense score of every candidate is its cosine, scaled by the dense cut's range; BM25 scaled
            # by its best (or min-max), 0 where the passage has none of the question's selective words
            sims = dict(dense)
            extra = rec.similarity[rec_index] if rec.similarity else {}
            # ranges over each branch's first 40 passages, as the search statement (search.NORM_DEPTH)
            lo, hi = (min(v for _, v in dense[:40]), dense[0][1]) if dense else (0.0, 1.0)
            lex = dict(lexical)
            top = max(lex.values(), default=1.0) or 1.0
            llo = min((v for _, v in lexical[:40]), default=0.0) if self.kind == "full-mm" else 0.0
            for cid in set(sims) | set(lex):
                sim = sims.get(cid, extra.get(cid, lo))
                d = (sim - lo) / (hi - lo) if hi > lo else 1.0
                lx = ((lex[cid] - llo) / (top - llo) if top > llo else 1.0) if cid in lex else 0.0
                scores[cid] = self.alpha * d + (1 - self.alpha) * lx
        else:
            normed = [_normalise(branch, self.kind) for branch in (dense, lexical)]
            ids = set(normed[0]) | set(normed[1])
            floors = [min(n.values(), default=0.0) for n in normed]
            for cid in ids:
                scores[cid] = (self.alpha * normed[0].get(cid, floors[0])
                               + (1 - self.alpha) * normed[1].get(cid, floors[1]))
        ranked = [cid for cid, _ in sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))]
        if self.kind == "rrf" or not self.head:
            return ranked
        rrf = Fusion(candidates=self.candidates)(dense, lexical, rec, rec_index)
        return ranked[: self.head] + [c for c in rrf if c not in set(ranked[: self.head])]


def _normalise(branch: list[tuple[int, float]], kind: str) -> dict[int, float]:
    if not branch:
        return {}
    vals = np.array([v for _, v in branch])
    if kind == "convex":
        lo, hi = vals.min(), vals.max()
        norm = (vals - lo) / (hi - lo) if hi > lo else np.ones_like(vals)
    else:
        norm = (vals - vals.mean()) / (vals.std() or 1.0)
    return {cid: float(v) for (cid, _), v in zip(branch, norm, strict=True)}


def evaluate(rec: Recorded, lexical: str, fuse: Fuse) -> dict:
    n = len(rec.queries) - rec.probes
    ndcgs, recalls, first = [], [], []
    probes = {}
    for i, q in enumerate(rec.queries):
        fused = fuse(rec.dense[i], rec.lexical[lexical][i], rec, i)
        if i >= n:
            want = PROBES[i - n]
            ranks = [r for r, cid in enumerate(fused, 1)
                     if rec.article[cid] == want[1] and (want[2] is None or rec.heading[cid] == want[2])]
            probes[want[0]] = ranks[0] if ranks else None
            continue
        ranked = rank_articles([rec.article[c] for c in fused[:50]])
        ndcgs.append(ndcg(ranked, q.relevant, 10))
        recalls.append(recall(ranked, q.relevant, 10))
        first.append(bool(fused) and rec.article[fused[0]] in q.relevant)
    return {"ndcg@10": round(float(np.mean(ndcgs)), 4), "recall@10": round(float(np.mean(recalls)), 4),
            "gold_first": round(float(np.mean(first)), 4), **({"probes": probes} if probes else {})}


def variants(candidates: int) -> dict[str, tuple[str, Fuse]]:
    base = Fusion(candidates=candidates)
    out: dict[str, tuple[str, Fuse]] = {
        "dense only": (SESSION6, lambda d, lx, r, i: [c for c, _ in d]),
    }
    for lex in LEXICAL:
        out[f"{lex}: rrf 1:1 k60"] = (lex, base)
    for lex in LEXICAL:
        out[f"{lex}: lexical only"] = (lex, lambda d, lx, r, i: [c for c, _ in lx])
        for bonus in (0.01, 0.02):
            out[f"{lex}: rrf + top bonus {bonus}"] = (lex, replace(base, top_bonus=bonus))
        out[f"{lex}: rrf k20"] = (lex, replace(base, rrf_k=20))
        for alpha in (0.5, 0.6, 0.7):
            out[f"{lex}: convex a{alpha}"] = (lex, replace(base, kind="convex", alpha=alpha))
            out[f"{lex}: zscore a{alpha}"] = (lex, replace(base, kind="zscore", alpha=alpha))
            out[f"{lex}: full a{alpha}"] = (lex, replace(base, kind="full", alpha=alpha))
            out[f"{lex}: full-mm a{alpha}"] = (lex, replace(base, kind="full-mm", alpha=alpha))
            for head in (1, 3, 5):  # the search statement's score fusion: the first `head` by score, then RRF
                out[f"{lex}: full-mm a{alpha} head {head}"] = (lex, replace(base, kind="full-mm", alpha=alpha,
                                                                             head=head))
    return out


def replay(json_out: Path | None, only: str | None, candidates: int) -> None:
    recs: dict[str, Recorded] = pickle.loads(RECORD.read_bytes())
    report: dict = {"sets": list(recs), "variants": {}}
    chosen = variants(candidates)
    if only:
        chosen = {k: v for k, v in chosen.items() if any(s in k for s in only.split(";"))}
    lines = ["| variant | " + " | ".join(f"{s} nDCG | {s} R@10 | {s} first" for s in recs) + " | mean nDCG | probes |"]
    for name, (lex, fuse) in chosen.items():
        row = {s: evaluate(rec, lex, fuse) for s, rec in recs.items() if lex in rec.lexical}
        report["variants"][name] = row
        cells = " | ".join(f"{r['ndcg@10']:.3f} | {r['recall@10']:.2f} | {r['gold_first']:.2f}" for r in row.values())
        mean = np.mean([r["ndcg@10"] for r in row.values()])
        probes = row.get("demo", {}).get("probes", {})
        lines.append(f"| {name} | {cells} | {mean:.3f} | {' '.join(str(v) for v in probes.values())} |")
    report["table"] = lines
    print("\n".join(lines), file=sys.stderr)
    if json_out:
        emit(report, json_out)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=["record", "replay"])
    parser.add_argument("--sets", default="demo,python-faq,aws")
    parser.add_argument("--only", help="variant name substrings separated by ';'")
    parser.add_argument("--json-out", type=Path)
    parser.add_argument("--candidates", type=int, default=DEPTH,
                        help="passages per branch fused (retrieval_variants: 200; the answerer: 40)")
    args = parser.parse_args()
    if args.step == "record":
        record(args.sets.split(","))
    else:
        replay(args.json_out, args.only, args.candidates)


if __name__ == "__main__":
    main()
