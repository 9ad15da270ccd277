"""Calibrate the abstention gate (retrieval/abstention.py) on answerable and unanswerable questions of the
demo KB and aws-docs-qa, check that it generalizes, and compare it with the best passage's cosine alone.

    flock /tmp/kbbot-heavy.lock nice -n 5 .venv/bin/python -m bench.calibrate_abstention record [--name NAME]
    nice -n 5 .venv/bin/python -m bench.calibrate_abstention [--name NAME]      # calibrate and report

`record` asks every question once through the product's own search and sentence support and keeps what
the gate reads (the passages returned, with their ranks, and every unit's support) in
~/.cache/kbbot-bench/abstention-passes/NAME/, so any gate, including one with new signals, is scored
without asking again. Indexes: the demo KB indexed afresh under ~/.cache/kbbot-bench/demo-abstain-NAME (the
default data dir may hold other sources someone ingested), the full aws index of bench/answer_quality.py,
and python-faq (Debian's python3-doc, bench/python_faq.py; skipped when absent) under
~/.cache/kbbot-bench/python-faq-abstain-NAME. Delete those folders to re-index after a chunking change.

Sets: calibration on demo_eval/{queries,unanswerable}.jsonl and aws-docs-qa's 100 questions with
bench/sets/aws-unanswerable.jsonl; never used for calibration, only to check it: demo_eval/
{answerable,unanswerable}-heldout.jsonl and bench/sets/aws-unanswerable-heldout.jsonl (kinds the calibration
sets lack: policies the KB does not have, AWS services outside its 14 guides, other vendors),
bench/sets/aws-answerable-heldout.jsonl (20 questions of ours on pages outside the gold set) and
python-faq's 105 questions (answerable, a third kind of KB). The report gives each set's rates at the
chosen gate, the same chosen on one set alone (does it carry to the other?), and cross-validated rates:
the gate chosen on 4/5 of each calibration set, scored on the fifth it did not see. It also gives what each
refusal lists (`shipped_refusals`: off-topic refusals listing nothing, answerable ones keeping their list,
by the sets' `kind` labels) and the nearness cut-off chosen on the refusals (`near_chosen`,
AbstentionGate.near). `record --no-acronyms` embeds the questions as asked (retrieval/acronyms.py off).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import pickle
import random
import sys
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
AWS = REPO.parent / "shared" / "data" / "aws-docs-qa"
BENCH_DIR = Path(os.environ.get("KBBOT_BENCH_DIR", Path.home() / ".cache" / "kbbot-bench"))
ANSWER_TARGET, ABSTAIN_TARGET = 0.95, 0.90
FOLDS, REPEATS = 5, 4


def rates(gate, answerable: list[dict], unanswerable: list[dict]) -> tuple[float, float]:  # type: ignore[no-untyped-def, type-arg]
    from retrieval.abstention import Evidence

    answered = sum(gate.answers(Evidence(**e)) for e in answerable) / len(answerable) if answerable else 1.0
    abstained = (sum(not gate.answers(Evidence(**e)) for e in unanswerable) / len(unanswerable)
                 if unanswerable else 1.0)
    return answered, abstained


THRESHOLDS = [round(0.40 + 0.005 * i, 3) for i in range(61)]
WEIGHTS = list(itertools.product((0.25, 0.5, 0.75), (0.0, 0.1), (0.0, 0.2, 0.4), (0.0, 0.1, 0.2, 0.3, 0.4)))


def gate_grid() -> list:  # type: ignore[type-arg]
    """(unit, coverage, margin, density) weights x thresholds, in the order _best breaks ties."""
    from retrieval.abstention import AbstentionGate

    return [AbstentionGate(threshold=t, unit_weight=u, coverage_weight=c, margin_weight=m, density_weight=d)
            for u, c, m, d in WEIGHTS for t in THRESHOLDS]


def _slacks(sets: dict[str, dict]):  # type: ignore[no-untyped-def, type-arg]
    """(worst set's slack, mean slack over the sets) for every gate of gate_grid(), in its order (numpy:
    the grid is large)."""
    import numpy as np

    from retrieval.abstention import AbstentionGate, Evidence

    thresholds = np.array(THRESHOLDS)
    worst, mean = [], []
    for u, c, m, d in WEIGHTS:
        gate = AbstentionGate(threshold=0.0, unit_weight=u, coverage_weight=c, margin_weight=m, density_weight=d)
        per_set = []
        for data in sets.values():
            slack = np.full(len(thresholds), np.inf)
            for kind, target in (("answerable", ANSWER_TARGET), ("unanswerable", ABSTAIN_TARGET)):
                if not data[kind]:
                    continue
                evidence = [Evidence(**e) for e in data[kind]]
                above = np.array([gate.confidence(e) - gate.bar(e.density) for e in evidence])  # bar at t=0
                answered = (above[:, None] >= thresholds[None, :]).mean(axis=0)
                slack = np.minimum(slack, (answered if kind == "answerable" else 1 - answered) - target)
            per_set.append(slack)
        worst.append(np.min(per_set, axis=0))
        mean.append(np.mean(per_set, axis=0))
    return np.concatenate(worst), np.concatenate(mean)


def _best(grid: list, sets: dict[str, dict]):  # type: ignore[no-untyped-def, type-arg]
    """The gate with the most room against both targets on its worst set; among those, the most room on
    the others (then the first in the grid)."""
    if grid is _GRID_CACHE.get("grid"):
        import numpy as np

        worst, mean = _slacks(sets)
        return grid[int(np.lexsort((-mean, -np.round(worst, 9)))[0])]
    return max(grid, key=lambda g: (round(min(s := [_slack(g, d) for d in sets.values()]), 9), sum(s) / len(s)))


_GRID_CACHE: dict[str, list] = {}  # type: ignore[type-arg]


def _grid() -> list:  # type: ignore[type-arg]
    if "grid" not in _GRID_CACHE:
        _GRID_CACHE["grid"] = gate_grid()
    return _GRID_CACHE["grid"]


def _slack(gate, data: dict) -> float:  # type: ignore[no-untyped-def, type-arg]
    answered, abstained = rates(gate, data["answerable"], data["unanswerable"])
    return min(answered - ANSWER_TARGET, abstained - ABSTAIN_TARGET)


def calibrate(sets: dict[str, dict[str, list[dict]]]) -> dict:  # type: ignore[type-arg]
    """The grid's best gate chosen on all sets together, and chosen on each set alone (with its rates on
    the others: how well a gate calibrated on one knowledge base carries to another)."""
    grid = _grid()

    def report(gate, on: list[str]) -> dict:  # type: ignore[no-untyped-def, type-arg]
        per_set = {}
        for name, data in sets.items():
            answered, abstained = rates(gate, data["answerable"], data["unanswerable"])
            per_set[name] = {"answered": round(answered, 3), "abstained": round(abstained, 3),
                             "slack": round(min(answered - ANSWER_TARGET, abstained - ABSTAIN_TARGET), 3)}
        worst = min(per_set[n]["slack"] for n in on)
        return {"chosen_on": on, "gate": asdict(gate), "worst_slack_there": worst, "rates": per_set,
                "meets_targets_there": worst >= 0}

    names = list(sets)
    from retrieval.abstention import AbstentionGate

    cosine_only = [AbstentionGate(threshold=t, unit_weight=0.0, margin_weight=0.0, density_weight=0.0)
                   for t in THRESHOLDS]
    return {
        "targets": {"answered": ANSWER_TARGET, "abstained": ABSTAIN_TARGET},
        "chosen": report(_best(grid, sets), names),
        **{f"chosen_on_{n}": report(_best(grid, {n: sets[n]}), [n]) for n in names if len(names) > 1},
        "top_cosine_alone": report(_best(cosine_only, sets), names),
    }


def cross_validated(sets: dict[str, dict[str, list[dict]]], seed: int = 0) -> dict:  # type: ignore[type-arg]
    """Rates on questions the gate was not chosen on: each calibration set is split into FOLDS parts
    (answerable and unanswerable separately), the grid's best gate is chosen on all the others of every
    set and scored on the part left out; REPEATS shuffles, averaged."""
    from dataclasses import replace

    grid = _grid()
    rng = random.Random(seed)
    totals = {n: {"answered": 0.0, "abstained": 0.0} for n in sets}
    # answers given / said unsure on the left-out part, with the unsure band chosen on the rest too
    unsure = {n: {"right": [0, 0], "wrong": [0, 0]} for n in sets}
    thresholds = []
    for _ in range(REPEATS):
        folds = {n: {kind: _split(d[kind], rng) for kind in ("answerable", "unanswerable")} for n, d in sets.items()}
        for i in range(FOLDS):
            train = {n: {kind: [e for j, part in enumerate(parts) if j != i for e in part]
                         for kind, parts in f.items()} for n, f in folds.items()}
            gate = _best(grid, train)
            gate = replace(gate, unsure_band=choose_band(gate, train))
            thresholds.append(asdict(gate))
            for n, f in folds.items():
                answered, abstained = rates(gate, f["answerable"][i], f["unanswerable"][i])
                totals[n]["answered"] += answered * len(f["answerable"][i])
                totals[n]["abstained"] += abstained * len(f["unanswerable"][i])
                for kind, key in (("answerable", "right"), ("unanswerable", "wrong")):
                    share, given = unsure_shares(gate, f[kind][i])
                    unsure[n][key][0] += given
                    unsure[n][key][1] += round(share * given)
    out: dict[str, object] = {"folds": FOLDS, "repeats": REPEATS}
    for n, d in sets.items():
        out[n] = {"answered": round(totals[n]["answered"] / (REPEATS * len(d["answerable"])), 3),
                  "abstained": round(totals[n]["abstained"] / (REPEATS * len(d["unanswerable"])), 3),
                  **{f"unsure_of_{key}_answers": round(said / given, 3) if given else None
                     for key, (given, said) in unsure[n].items()}}
    out["gates_chosen"] = thresholds
    return out


def _split(items: list, rng: random.Random) -> list[list]:  # type: ignore[type-arg]
    shuffled = items[:]
    rng.shuffle(shuffled)
    return [shuffled[i::FOLDS] for i in range(FOLDS)]


# --- recording -------------------------------------------------------------------------------------------

def question_files() -> dict[str, dict[str, Path]]:
    """Per set, its question files by kind; kinds ending in -heldout are never calibrated on."""
    demo = REPO / "demo_eval"
    out = {"demo": {"answerable": demo / "queries.jsonl", "unanswerable": demo / "unanswerable.jsonl",
                    "answerable-heldout": demo / "answerable-heldout.jsonl",
                    "unanswerable-heldout": demo / "unanswerable-heldout.jsonl"}}
    if (AWS / "queries.jsonl").exists():
        out["aws"] = {"answerable": AWS / "queries.jsonl",
                      "unanswerable": REPO / "bench" / "sets" / "aws-unanswerable.jsonl",
                      "answerable-heldout": REPO / "bench" / "sets" / "aws-answerable-heldout.jsonl",
                      "unanswerable-heldout": REPO / "bench" / "sets" / "aws-unanswerable-heldout.jsonl"}
    from bench import python_faq

    if python_faq.available():
        out["python-faq"] = {"answerable-heldout": python_faq.QUERIES}
    return out


def _indexed(data_dir: Path, source_factory):  # type: ignore[no-untyped-def]
    """Settings for an index in data_dir, built with the product's defaults the first time."""
    from retrieval.db import Database
    from retrieval.embeddings import LocalEmbedder
    from retrieval.settings import load_settings
    from retrieval.sync import Indexer

    settings = load_settings(_env_file=None, data_dir=data_dir)
    marker = data_dir / "indexed"
    if not marker.exists():
        db = Database.open(settings.storage)
        Indexer(db, LocalEmbedder(), chunk_max_tokens=settings.index.chunk_max_tokens).sync([source_factory()])
        db.close()
        marker.write_text("indexed with the defaults of the checkout that recorded the passes\n")
    return settings


def settings_for(name: str, run: str):  # type: ignore[no-untyped-def]
    from retrieval.sources import FilesystemSource, JsonlSource

    if name == "demo":
        return _indexed(BENCH_DIR / f"demo-abstain-{run}", lambda: FilesystemSource("demo", REPO / "demo_kb"))
    if name == "python-faq":
        from bench import python_faq

        corpus = python_faq.write_corpus(BENCH_DIR / f"python-faq-abstain-{run}" / "corpus")
        return _indexed(BENCH_DIR / f"python-faq-abstain-{run}", lambda: JsonlSource("python-faq", corpus))
    from bench.answer_quality import settings_for as aws_settings

    return aws_settings("aws")


def record(names: list[str], run: str, kinds: set[str] | None = None, acronyms: bool = True) -> None:
    """Each question once through the pipeline's search and support; what the gate reads is kept.
    `acronyms=False` embeds the questions as asked (retrieval/acronyms.py off), to measure what it does."""
    import time

    from bot.services import Services
    from retrieval.answer_eval import load_questions
    from retrieval.support import score_support

    out_dir = BENCH_DIR / "abstention-passes" / run
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in names:
        services = Services(settings_for(name, run))
        _current_postings(services)
        pipeline = services.pipeline
        if not acronyms:
            pipeline.searcher.acronyms = None  # type: ignore[attr-defined]
        _save_density(services, out_dir / f"{name}-density.json")
        for kind, path in question_files()[name].items():
            if kinds and kind not in kinds:
                continue
            passes = []
            for question in load_questions(path):
                started = time.perf_counter()
                result = pipeline.searcher.search(question.text, k=max(pipeline.top_k, pipeline.candidates))
                support = score_support(question.text, result.query_vector, result.hits, pipeline.unit_embedder)
                passes.append({"id": question.id, "question": question.text, "hits": result.hits,
                               "support": support, "ms": (time.perf_counter() - started) * 1000})
            (out_dir / f"{name}-{kind}.pkl").write_bytes(pickle.dumps(passes))
            print(f"{name} {kind}: {len(passes)} questions", file=sys.stderr)
        services.close()


def _current_postings(services) -> None:  # type: ignore[no-untyped-def]
    """The BM25 postings rebuilt when they were built with other settings than this checkout's, as the
    next `kbbot sync` would (the shared aws index predates a change of the defaults otherwise)."""
    import psycopg

    from retrieval.lexical_index import LexicalIndex

    url = services.database().engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url, autocommit=True) as conn:
        lexical = LexicalIndex()
        if lexical.needs_refresh(conn):
            print(f"rebuilding the BM25 postings ({lexical.options.postings_scoring})", file=sys.stderr)
            lexical.refresh(conn)


def _save_density(services, path: Path) -> None:  # type: ignore[no-untyped-def]
    """The index's neighbour density, as the product measures it (retrieval/neighbour_density.py)."""
    from retrieval.neighbour_density import NeighbourDensity

    searcher = services.searcher()
    path.write_text(json.dumps({"density": NeighbourDensity(searcher).measure(searcher.space())}) + "\n")


def measure_densities(names: list[str], run: str) -> None:
    from bot.services import Services

    for name in names:
        services = Services(settings_for(name, run))
        _save_density(services, BENCH_DIR / "abstention-passes" / run / f"{name}-density.json")
        services.close()


def load_evidence(run: str) -> dict[str, dict[str, list[dict]]]:  # type: ignore[type-arg]
    from retrieval.abstention import Evidence

    out: dict[str, dict[str, list[dict]]] = {}  # type: ignore[type-arg]
    for name, kind, density, passes in recorded_passes(run):
        out.setdefault(name, {})[kind] = [
            {"id": p["id"], **asdict(Evidence.of(p["hits"], p["support"], density))} for p in passes]
    return out


def recorded_passes(run: str) -> Iterator[tuple[str, str, float | None, list[dict]]]:  # type: ignore[type-arg]
    """Each recorded (set, kind) of `run`: the set's stored density and the passes."""
    for name, kinds in question_files().items():
        density_file = BENCH_DIR / "abstention-passes" / run / f"{name}-density.json"
        density = json.loads(density_file.read_text())["density"] if density_file.exists() else None
        for kind in kinds:
            path = BENCH_DIR / "abstention-passes" / run / f"{name}-{kind}.pkl"
            if path.exists():
                yield name, kind, density, pickle.loads(path.read_bytes())


# The unsure band (AbstentionGate.unsure_band): answers that clear the bar by less are said to be unsure.
# Chosen as the band with the largest difference between the share of wrong answers it flags and the share
# of right answers it flags, averaged over the calibration sets (ties: the narrower band). A cap on the
# right answers flagged (at most one in six) was tried first: on 4/5 of the sets it picked bands from
# 0.015 to 0.065 and flagged a third of the wrong answers left out; this rule picks 0.07 in every fold.
BANDS = [round(0.005 * i, 3) for i in range(31)]


def unsure_shares(gate, items: list[dict]) -> tuple[float, int]:  # type: ignore[no-untyped-def, type-arg]
    """The share of the answers given that are said to be unsure, and how many answers were given."""
    given = [e for e in items if gate.answers(Evidence_of(e))]
    return (sum(not gate.sure(Evidence_of(e)) for e in given) / len(given) if given else 0.0), len(given)


def choose_band(gate, sets: dict[str, dict]) -> float:  # type: ignore[no-untyped-def, type-arg]
    from dataclasses import replace

    best, best_gain = 0.0, 0.0
    for band in BANDS:
        banded = replace(gate, unsure_band=band)
        gain = sum(unsure_shares(banded, d["unanswerable"])[0] - unsure_shares(banded, d["answerable"])[0]
                   for d in sets.values()) / len(sets)
        if gain > best_gain + 1e-9:
            best, best_gain = band, gain
    return best


def unsure_report(gate, recorded: dict[str, dict[str, list[dict]]]) -> dict:  # type: ignore[no-untyped-def, type-arg]
    """Per set and kind: of the answers given, how many are said to be unsure (on answerable questions
    a hedge on a right answer; on unanswerable ones a wrong answer the reader is warned about)."""
    out: dict[str, dict] = {}  # type: ignore[type-arg]
    for name, kinds in recorded.items():
        for kind, items in kinds.items():
            share, given = unsure_shares(gate, items)
            out.setdefault(name, {})[kind] = {"answers_given": given, "said_unsure": round(share, 3)}
    return out


# --- what a refusal lists (AbstentionGate.near) -------------------------------------------------------

NEAR_THRESHOLDS = [round(0.20 + 0.01 * i, 2) for i in range(26)]
NEAR_WEIGHTS = [round(0.1 * i, 1) for i in range(11)]
# A refused answerable question must keep its list by this much: its nearest article is what it needs.
NEAR_MARGIN = 0.03


def _gold_articles() -> dict[str, set[str]]:
    """Each answerable question's relevant articles (qrels, or a held-out line's own `article`)."""
    import csv

    from bench import python_faq

    out: dict[str, set[str]] = {}
    for path in (REPO / "demo_eval" / "qrels.tsv", AWS / "qrels.tsv", python_faq.QRELS):
        if path.exists():
            with path.open(encoding="utf-8") as fh:
                for row in csv.DictReader(fh, delimiter="\t"):
                    out.setdefault(row["query-id"], set()).add(row["corpus-id"])
    for kinds in question_files().values():
        for path in kinds.values():
            for line in path.open(encoding="utf-8"):
                record = json.loads(line)
                if "article" in record:
                    out[record["_id"]] = {record["article"]}
    return out


def _labels() -> dict[str, str]:
    """An unanswerable question's `kind`: off-topic (nothing to do with the KB's subject) or near-miss."""
    return {record["_id"]: record["kind"] for kinds in question_files().values() for path in kinds.values()
            for line in path.open(encoding="utf-8") if "kind" in (record := json.loads(line))}


def load_refusals(run: str, gate) -> dict[str, dict[str, list[dict]]]:  # type: ignore[no-untyped-def, type-arg]
    """Per set and kind, each question `gate` refuses: the best similarity among the articles the refusal
    would list (AnswerPipeline._near_articles), whether one of them is gold, and the question's label."""
    from retrieval.abstention import Evidence
    from retrieval.answer import _distinct_articles

    gold, labels = _gold_articles(), _labels()
    out: dict[str, dict[str, list[dict]]] = {}  # type: ignore[type-arg]
    for name, kind, density, passes in recorded_passes(run):
        refused = out.setdefault(name, {}).setdefault(kind, [])
        for p in passes:
            if gate.answers(Evidence.of(p["hits"], p["support"], density)):
                continue
            listed = {h.article_id: h.external_id for h in _distinct_articles(p["hits"], 3)}
            best = max((h.similarity or 0.0 for h in p["hits"] if h.article_id in listed), default=0.0)
            refused.append({"id": p["id"], "similarity": best, "density": density,
                            "gold_listed": bool(gold.get(p["id"], set()) & set(listed.values())),
                            "label": "answerable" if kind.startswith("answerable") else labels.get(p["id"])})
    return out


def nearness_report(gate, refusals: dict[str, dict[str, list[dict]]]) -> dict:  # type: ignore[no-untyped-def, type-arg]
    """Per set and kind, of the refusals: how many list articles, the off-topic ones listing none, the
    answerable ones (and those whose gold was listed) keeping their list."""
    out: dict[str, dict] = {}  # type: ignore[type-arg]
    for name, kinds in refusals.items():
        for kind, items in kinds.items():
            near = [gate.near(r["similarity"], r["density"]) for r in items]
            entry: dict[str, object] = {"refused": len(items), "listing_articles": sum(near)}
            for label in ("answerable", "off-topic", "near-miss"):
                mine = [n for r, n in zip(items, near, strict=True) if r["label"] == label]
                if mine:
                    entry[label] = {"refused": len(mine), "listing_articles": sum(mine)}
            gold = [n for r, n in zip(items, near, strict=True) if r["gold_listed"]]
            if gold:
                entry["gold_listed_kept"] = f"{sum(gold)}/{len(gold)}"
            out.setdefault(name, {})[kind] = entry
    return out


def choose_near(gate, refusals: dict[str, dict[str, list[dict]]]):  # type: ignore[no-untyped-def, type-arg]
    """The nearness cut-off (near_similarity, near_density_weight) chosen on the calibration sets'
    refusals: every refused answerable question keeps its list by NEAR_MARGIN; then the most off-topic
    refusals listing nothing (mean share over the sets); then the widest margin."""
    from dataclasses import replace

    calibration = {n: k for n, k in refusals.items() if "answerable" in k and "unanswerable" in k}
    best, best_key = None, None
    for t, w in itertools.product(NEAR_THRESHOLDS, NEAR_WEIGHTS):
        candidate = replace(gate, near_similarity=t, near_density_weight=w)
        answerable = [r for k in calibration.values() for r in k["answerable"]]
        margin = min((r["similarity"] - candidate.near_cut(r["density"]) for r in answerable), default=1.0)
        if margin < NEAR_MARGIN:
            continue
        shares = []
        for kinds in calibration.values():
            off = [r for r in kinds["unanswerable"] if r["label"] == "off-topic"]
            if off:
                shares.append(sum(not candidate.near(r["similarity"], r["density"]) for r in off) / len(off))
        key = (round(sum(shares) / len(shares), 9) if shares else 0.0, round(margin, 9))
        if best_key is None or key > best_key:
            best, best_key = candidate, key
    return best


def report(run: str) -> dict:  # type: ignore[type-arg]
    from retrieval.abstention import AbstentionGate

    recorded = load_evidence(run)

    def strip(items: list[dict]) -> list[dict]:  # type: ignore[type-arg]
        return [{k: v for k, v in e.items() if k != "id"} for e in items]

    calibration_sets = {n: {"answerable": strip(k["answerable"]), "unanswerable": strip(k["unanswerable"])}
                        for n, k in recorded.items() if "answerable" in k and "unanswerable" in k}
    shipped = AbstentionGate()
    calibration = calibrate(calibration_sets)
    for entry in calibration.values():
        if isinstance(entry, dict) and "gate" in entry:
            entry["held_out"] = held_out_rates(AbstentionGate(**entry["gate"]), recorded)
    chosen = AbstentionGate(**calibration["chosen"]["gate"])
    band = choose_band(chosen, {n: {k: recorded[n][k] for k in ("answerable", "unanswerable")}
                                for n in calibration_sets})
    calibration["chosen"]["gate"]["unsure_band"] = band
    refusals = load_refusals(run, shipped)
    near = choose_near(shipped, refusals)
    return {"run": run, "shipped_gate": asdict(shipped), "shipped": per_kind(shipped, recorded),
            "shipped_unsure": unsure_report(shipped, recorded),
            "shipped_refusals": nearness_report(shipped, refusals),
            "near_chosen": None if near is None else {"near_similarity": near.near_similarity,
                                                      "near_density_weight": near.near_density_weight},
            "calibration": calibration, "cross_validated": cross_validated(calibration_sets),
            "evidence": {n: {kind: [{k: round(v, 4) if isinstance(v, float) else v for k, v in e.items()}
                                    for e in items] for kind, items in kinds.items()}
                         for n, kinds in recorded.items()}}


def per_kind(gate, recorded: dict[str, dict[str, list[dict]]]) -> dict:  # type: ignore[no-untyped-def, type-arg]
    """Each set's and kind's rate at `gate`, with the questions it gets wrong."""
    out: dict[str, dict] = {}  # type: ignore[type-arg]
    for name, kinds in recorded.items():
        out[name] = {}
        for kind, items in kinds.items():
            answerable = kind.startswith("answerable")
            answers = [gate.answers(Evidence_of(e)) for e in items]
            right = [a == answerable for a in answers]
            out[name][kind] = {"questions": len(items),
                               ("answered" if answerable else "abstained"): round(sum(right) / len(right), 3),
                               "misses": [e["id"] for e, ok in zip(items, right, strict=True) if not ok]}
    return out


def held_out_rates(gate, recorded: dict[str, dict[str, list[dict]]]) -> dict[str, float]:  # type: ignore[no-untyped-def, type-arg]
    rates_ = per_kind(gate, {n: {k: v for k, v in kinds.items() if k.endswith("-heldout")}
                             for n, kinds in recorded.items()})
    return {f"{n}/{k}": next(v for key, v in r.items() if key in ("answered", "abstained"))
            for n, kinds in rates_.items() for k, r in kinds.items()}


def Evidence_of(e: dict):  # type: ignore[no-untyped-def, type-arg]
    from retrieval.abstention import Evidence

    return Evidence(**{k: v for k, v in e.items() if k != "id"})


def main() -> None:
    sys.path.insert(0, str(REPO))
    parser = argparse.ArgumentParser()
    parser.add_argument("command", nargs="?", choices=("record", "density", "report"), default="report")
    parser.add_argument("--name", default="base", help="the recorded passes to use (a folder name)")
    parser.add_argument("--sets", default="demo,aws,python-faq")
    parser.add_argument("--kinds", help="record only these kinds, e.g. answerable-heldout (default: all)")
    parser.add_argument("--no-acronyms", action="store_true",
                        help="record: embed questions as asked, without the KB's acronyms spelled out")
    parser.add_argument("--json-out", type=Path, default=REPO / "bench" / "results" / "abstention.json")
    args = parser.parse_args()
    names = [n for n in args.sets.split(",") if n in question_files()]
    if args.command == "record":
        record(names, args.name, set(args.kinds.split(",")) if args.kinds else None, not args.no_acronyms)
        return
    if args.command == "density":  # passes recorded before the density was: measure it alone
        measure_densities(names, args.name)
        return
    result = report(args.name)
    args.json_out.write_text(json.dumps(result, indent=1) + "\n")
    summary = {k: v for k, v in result.items() if k != "evidence"}
    summary["cross_validated"] = {k: v for k, v in result["cross_validated"].items() if k != "gates_chosen"}
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
