"""Unit scorers for the extractive answer, measured on recorded passes (no search): which unit of the
candidate passages should anchor the answer, and what a scorer that reads the question better adds.

    KBBOT_DATA_DIR=<demo data dir> nice -n 5 .venv/bin/python -m bench.unit_scorer \
        --source answer-passes-s9-src [--failures /tmp/failures.txt] [--variants NAME,...]

Every variant answers the same recorded search results of `--source` (a folder of bench.answer_quality
passes with its unit vectors) behind the shipped gate, and is scored as bench.answer_quality scores
(contains gold, token recall, all key terms, citation precision). `--failures` writes, for each aws miss,
where the gold sits among the candidate units (the rank of the best unit holding 80% of the gold's words).
Results: bench/results/unit_scorer.json.
"""

from __future__ import annotations

import argparse
import json
import pickle
import re
import sys
import time
from pathlib import Path
from typing import ClassVar

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import answer_quality as aq  # noqa: E402


class Context:
    """One set's recorded passes, questions, gold and services, loaded once for every variant."""

    def __init__(self, name: str, source: Path) -> None:
        from bot.services import Services
        from retrieval.answer_eval import load_gold_answers, load_questions
        from retrieval.embedding_cache import CachedEmbedder
        from retrieval.evaluation import load_labelled_queries

        self.name = name
        files = aq.question_sets()[name]
        self.services = Services(aq.settings_for(name))
        self.embedder = CachedEmbedder(self.services.embedder, max_entries=10**7)
        vectors = source / f"{name}-unit-vectors.pkl"
        if vectors.exists():
            self.embedder._vectors.update(pickle.loads(vectors.read_bytes()))
        self.labelled = load_labelled_queries(files["queries"], files["qrels"])  # type: ignore[arg-type]
        self.unanswerable = load_questions(files["unanswerable"])  # type: ignore[arg-type]
        self.gold = load_gold_answers(files["gold"])  # type: ignore[arg-type]
        self.recorded = {kind: pickle.loads((source / f"{name}-{kind}.pkl").read_bytes())
                         for kind in ("answerable", "unanswerable", "retrieval")}

    def run(self, synthesizer) -> dict:  # type: ignore[no-untyped-def, type-arg]
        from retrieval.abstention import AbstentionGate

        started = time.perf_counter()
        passes = {kind: aq.one_pass(self.services, [q.text for q in questions], self.recorded[kind],
                                    self.embedder, synthesizer)
                  for kind, questions in (("answerable", self.labelled), ("unanswerable", self.unanswerable))}
        data = {"retrieval": self.recorded["retrieval"], "answerable_pass": passes["answerable"],
                "unanswerable_pass": passes["unanswerable"], "gold": aq.question_sets()[self.name]["gold"],
                "labelled": self.labelled, "unanswerable": self.unanswerable}
        report = aq.answer_report(data, AbstentionGate(), rows=True)
        report["seconds"] = round(time.perf_counter() - started, 1)
        report["passes"] = passes
        return report


def record_deeper(ctx: Context, k: int, folder: Path) -> dict[str, list[dict]]:  # type: ignore[type-arg]
    """The set's questions searched again k deep (hits and question vector only), kept in `folder`."""
    path = folder / f"{ctx.name}-k{k}.pkl"
    if path.exists():
        return pickle.loads(path.read_bytes())
    searcher = ctx.services.searcher()
    out: dict[str, list[dict]] = {}  # type: ignore[type-arg]
    for kind, questions in (("answerable", ctx.labelled), ("unanswerable", ctx.unanswerable)):
        out[kind] = []
        for q in questions:
            result = searcher.search(q.text, k=k)
            out[kind].append({"hits": result.hits, "query_vector": result.query_vector})
    folder.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(out))
    return out


def deeper_pass(ctx: Context, deeper: dict, synthesizer) -> dict:  # type: ignore[no-untyped-def, type-arg]
    """Answers from the first `synthesizer.passages` of the deeper search; the gate's evidence stays that of
    the recorded (shipped-depth) candidates, so only what the answer reads changes."""
    from dataclasses import asdict

    from retrieval.abstention import AbstentionGate, Evidence
    from retrieval.support import score_support

    pipeline = ctx.services.pipeline
    density = pipeline.density() if pipeline.density else None
    following = pipeline.following_for(__import__("retrieval.answer", fromlist=["AskContext"]).AskContext())
    passes = {}
    for kind, questions in (("answerable", ctx.labelled), ("unanswerable", ctx.unanswerable)):
        rows = []
        for q, shallow, deep in zip(questions, ctx.recorded[kind], deeper[kind], strict=True):
            started = time.perf_counter()
            evidence = Evidence.of(shallow["hits"], score_support(q.text, shallow["query_vector"], shallow["hits"],
                                                                   ctx.embedder), density)
            hits = deep["hits"]
            support = score_support(q.text, deep["query_vector"], hits, ctx.embedder)
            relevant = support.relevant(hits, pipeline.min_relevance)[: synthesizer.passages]
            answer = synthesizer.compose(q.text, relevant, deep["query_vector"], support.within(relevant),
                                         following=following)
            rows.append({"evidence": asdict(evidence), "answer": answer,
                         "ms": (time.perf_counter() - started) * 1000})
        passes[kind] = rows
    data = {"retrieval": ctx.recorded["retrieval"], "answerable_pass": passes["answerable"],
            "unanswerable_pass": passes["unanswerable"], "gold": aq.question_sets()[ctx.name]["gold"],
            "labelled": ctx.labelled, "unanswerable": ctx.unanswerable}
    report = aq.answer_report(data, AbstentionGate(), rows=True)
    report["passes"] = passes
    report["seconds"] = 0.0
    return report


class GoldArticlesOnly:
    """Oracle: only units of a gold article may answer (what a perfect choice of article would give)."""

    def __init__(self, relevant: dict[str, set[str]]) -> None:
        self.relevant = relevant

    def __call__(self, question: str, support):  # type: ignore[no-untyped-def]
        import dataclasses

        from retrieval.support import Support

        gold = self.relevant.get(question, set())
        if not any(u.hit.external_id in gold for u in support.units):
            return support
        return Support([u if u.hit.external_id in gold else dataclasses.replace(u, score=u.score - 10.0)
                        for u in support.units], support.coverage)


class GoldUnitFirst:
    """Oracle: the best-scored unit holding 80% of the gold's words anchors (a perfect unit scorer)."""

    def __init__(self, gold: dict[str, str]) -> None:
        self.gold = gold

    def __call__(self, question: str, support):  # type: ignore[no-untyped-def]
        import dataclasses

        from retrieval.answer_eval import CONTAINS_RECALL, token_recall
        from retrieval.support import Support

        gold = self.gold.get(question)
        holding = [u for u in support.units if gold and not u.unit.fragment
                   and token_recall(gold, u.unit.rendered) >= CONTAINS_RECALL]
        if not holding:
            return support
        best = max(holding, key=lambda u: u.score)
        top = max(u.score for u in support.units)
        return Support([dataclasses.replace(u, score=top + 1.0) if u is best else u for u in support.units],
                       support.coverage)


def where_gold_is(ctx: Context, synthesizer, report: dict) -> list[dict]:  # type: ignore[no-untyped-def, type-arg]
    """For each answerable miss: the candidate units holding the gold, ranked as the answerer scores them."""
    from retrieval.answer_eval import CONTAINS_RECALL, token_recall
    from retrieval.support import score_support

    pipeline = ctx.services.pipeline
    rows = []
    for query, record, answer in zip(ctx.labelled, ctx.recorded["answerable"], report["passes"]["answerable"],
                                     strict=True):
        gold = ctx.gold.get(query.id)
        if gold is None:
            continue
        text = answer["answer"].text if answer["answer"].outcome == "answered" else ""
        recall = token_recall(gold.text, text)
        if recall >= CONTAINS_RECALL:
            continue
        hits, qvec = record["hits"], record["query_vector"]
        support = score_support(query.text, qvec, hits, ctx.embedder)
        relevant = support.relevant(hits, pipeline.min_relevance)[: synthesizer.passages]
        scored = synthesizer.answer_scores(query.text, support.within(relevant))
        ranked = sorted((u for u in scored.units if not u.unit.fragment), key=lambda u: -u.score)
        holding = [(i, u) for i, u in enumerate(ranked) if token_recall(gold.text, u.unit.rendered) >= CONTAINS_RECALL]
        rows.append({
            "id": query.id, "question": query.text, "gold": gold.text, "answer": text, "token_recall": round(recall, 3),
            "gold_articles_in_hits": [i for i, h in enumerate(hits) if h.external_id in query.relevant],
            "gold_articles_answered_from": [i for i, h in enumerate(relevant) if h.external_id in query.relevant],
            "anchor": _unit(ranked[0]) if ranked else None,
            "gold_units": [{"rank": i, **_unit(u)} for i, u in holding[:3]],
            "units": len(ranked),
        })
    return rows


def _unit(u) -> dict:  # type: ignore[no-untyped-def, type-arg]
    return {"text": u.unit.rendered[:300], "score": round(u.score, 3), "similarity": round(u.similarity, 3),
            "overlap": round(u.overlap, 3), "passage": u.rank, "kind": u.unit.kind}


def write_failures(rows: list[dict], path: Path) -> None:  # type: ignore[type-arg]
    lines = []
    for r in rows:
        lines.append(f"== {r['id']}: {r['question']}  (recall {r['token_recall']})")
        lines.append(f"   gold: {r['gold']}")
        lines.append(f"   answer: {r['answer'][:400]!r}")
        lines.append(f"   gold passages in hits {r['gold_articles_in_hits']}, answered from "
                     f"{r['gold_articles_answered_from']} of {r['units']} units")
        if r["anchor"]:
            a = r["anchor"]
            lines.append(f"   anchor: p{a['passage']} {a['score']} (sim {a['similarity']}, ov {a['overlap']}) "
                         f"{a['text'][:200]!r}")
        for g in r["gold_units"]:
            lines.append(f"   gold unit #{g['rank']}: p{g['passage']} {g['score']} (sim {g['similarity']}, "
                         f"ov {g['overlap']}) {g['kind']} {g['text'][:200]!r}")
        if not r["gold_units"]:
            lines.append("   no candidate unit holds the gold")
        lines.append("")
    path.write_text("\n".join(lines))


# How deep the 'passages N of M' variants search (Recall@10 is measured at 10).
DEEPER = 10
SUMMARY = ("contains_gold", "token_recall", "all_key_terms", "citation_precision", "citations_per_answer",
           "answered_rate", "abstained_rate", "answer_words_p50", "first_cited_gold")


def variants() -> dict[str, object]:
    """Name -> a factory of the synthesizer, given the set's embedder."""
    from retrieval.extractive import ExtractiveSynthesizer

    out: dict[str, object] = {
        "shipped": lambda embedder, ctx: ExtractiveSynthesizer(embedder),
        "before (no answer type)": lambda embedder, ctx: ExtractiveSynthesizer(embedder, yes_no_weight=0,
                                                                                value_weight=0),
        "oracle: only gold articles' units": lambda embedder, ctx: ExtractiveSynthesizer(
            embedder, rescore=GoldArticlesOnly({q.text: q.relevant for q in ctx.labelled})),
        "oracle: the best unit holding the gold anchors": lambda embedder, ctx: ExtractiveSynthesizer(
            embedder, rescore=GoldUnitFirst({q.text: ctx.gold[q.id].text for q in ctx.labelled if q.id in ctx.gold})),
    }
    for depth in (8, 10):  # 8: the shipped depth, from the same deeper search
        out[f"passages {depth} of {DEEPER}"] = (
            lambda d: lambda embedder, ctx: ExtractiveSynthesizer(embedder, passages=d))(depth)
    # The sweep of BENCHMARKS.md (top 4/8, x 0.1-0.5, with and without the heading) lost everywhere; these
    # few show it (each costs a model call per question: ~1 min a set here).
    for top, weight, heading in ((4, 0.1, False), (8, 0.1, False), (8, 0.2, False), (8, 0.2, True)):
        name = f"maxsim top {top} x {weight}{' +heading' if heading else ''}"
        out[name] = (lambda t, w, h: lambda embedder, ctx: ExtractiveSynthesizer(
            embedder, yes_no_weight=0, value_weight=0, rescore=MaxSimRescore(embedder, t, w, h)))(top, weight, heading)
    for kind in AnswerType.KINDS:
        for weight in (0.03, 0.06, 0.1, 0.15):
            out[f"answer type {kind} x {weight}"] = (lambda k, w: lambda embedder, ctx: ExtractiveSynthesizer(
                embedder, yes_no_weight=0, value_weight=0, rescore=AnswerType(k, w)))(kind, weight)
    for top in (2, 3):
        for weight in (0.05, 0.1, 0.2):
            out[f"article vote top {top} x {weight}"] = (lambda t, w: lambda embedder, ctx: ExtractiveSynthesizer(
                embedder, yes_no_weight=0, value_weight=0, rescore=ArticleVote(t, w)))(top, weight)
    for yes_no, value in ((0.1, 0.1), (0.1, 0.15), (0.06, 0.06)):
        out[f"answer type yes-no x {yes_no} + value x {value}"] = (lambda a, b: lambda embedder, ctx: (
            ExtractiveSynthesizer(embedder, yes_no_weight=0, value_weight=0,
                                  rescore=Chain(AnswerType("yes-no", a), AnswerType("value", b)))))(
                yes_no, value)
    return out


class Chain:
    def __init__(self, *steps) -> None:  # type: ignore[no-untyped-def]
        self.steps = steps

    def __call__(self, question: str, support):  # type: ignore[no-untyped-def]
        for step in self.steps:
            support = step(question, support)
        return support


class ArticleVote:
    """The anchor's article by its units' evidence: weight x (the mean of an article's `top` best unit scores
    - the best article's) is added to each of its units."""

    def __init__(self, top: int, weight: float) -> None:
        self.top, self.weight = top, weight

    def __call__(self, question: str, support):  # type: ignore[no-untyped-def]
        import dataclasses

        from retrieval.support import Support

        by_article: dict[int, list[float]] = {}
        for u in support.units:
            if not u.unit.fragment:
                by_article.setdefault(u.hit.article_id, []).append(u.score)
        if len(by_article) < 2:
            return support
        vote = {a: sum(sorted(v, reverse=True)[: self.top]) / self.top for a, v in by_article.items()}
        best = max(vote.values())
        return Support([dataclasses.replace(u, score=u.score + self.weight * (vote.get(u.hit.article_id, best) - best))
                        for u in support.units], support.coverage)


class AnswerType:
    """What the question asks for, read from its words, as a bonus for units of that shape."""

    KINDS = ("definition", "yes-no", "value", "value-strict", "list")
    _DEFINITION = re.compile(r"^\s*what(?:'s| is| are)\s+(?:an?\s+|the\s+)?(?P<x>[^?]+?)\??\s*$", re.I)
    _YES_NO = re.compile(r"^\s*(?:can|could|does|do|is|are|will|should)\s+(?:i|we|you)?\b", re.I)
    _ASSERTS = re.compile(r"\b(?:can(?:not|'t)?|supports?|supported|isn't|doesn't|don't|not|only|must|allows?)\b", re.I)
    _VALUE = re.compile(r"\b(?:maximum|minimum|max|min|default|limits?|quotas?|how (?:much|many|long|big|often)|"
                        r"size|number of|rates?|costs?|price|fees?|deadline)\b", re.I)
    _LIST = re.compile(r"^\s*(?:what|which)\s+are\s+(?:the\s+)?(?:\w+\s+){0,3}?(?:types?|kinds?|factors?|benefits?|"
                       r"options?|ways?|steps?|features?|components?|modes?|methods?)\b", re.I)
    _DIGIT = re.compile(r"\d")

    def __init__(self, kind: str, weight: float) -> None:
        self.kind, self.weight = kind, weight

    def __call__(self, question: str, support):  # type: ignore[no-untyped-def]
        import dataclasses

        from retrieval.support import Support
        from retrieval.terms import stems

        bonus = self._bonus(question, stems)
        if bonus is None:
            return support
        return Support([dataclasses.replace(u, score=u.score + self.weight * b) if (b := bonus(u)) else u
                        for u in support.units], support.coverage)

    def _bonus(self, question: str, stems):  # type: ignore[no-untyped-def]
        if self.kind == "definition" and (m := self._DEFINITION.match(question)) and not self._VALUE.search(question):
            subject = set(stems(m["x"]))

            def opens_with_subject(u) -> float:  # type: ignore[no-untyped-def]
                head = stems(u.unit.rendered)[:3]
                return float(bool(head) and head[0] in subject
                             and sum(w in subject for w in head) >= min(2, len(subject)))
            return opens_with_subject
        if self.kind == "yes-no" and self._YES_NO.match(question):
            return lambda u: float(bool(self._ASSERTS.search(u.unit.rendered)))
        if self.kind.startswith("value") and self._VALUE.search(question):
            strict = self.kind == "value-strict"
            return lambda u: 1.0 if self._DIGIT.search(u.unit.rendered) else (-1.0 if strict else 0.0)
        if self.kind == "list" and self._LIST.match(question):
            return lambda u: float(u.unit.lead_in or (u.unit.block is not None and not u.unit.ordered))
        return None


class MaxSimRescore:
    """Adds weight x (the unit's MaxSim - the best unit's) to the `top` best units' answer scores."""

    timings: ClassVar[list[float]] = []

    def __init__(self, embedder, top: int, weight: float, heading: bool) -> None:  # type: ignore[no-untyped-def]
        self.inner = getattr(embedder, "inner", embedder)
        self.top, self.weight, self.heading = top, weight, heading

    def __call__(self, question: str, support):  # type: ignore[no-untyped-def]
        import dataclasses

        from late_interaction import maxsim, question_token_weights, token_vectors

        from retrieval.support import Support, _heading_words, _question_weights
        from retrieval.terms import stems

        ranked = sorted((u for u in support.units if not u.unit.fragment), key=lambda u: -u.score)[: self.top]
        if len(ranked) < 2:
            return support
        started = time.perf_counter()
        weights = _question_weights(question, [set(stems(u.unit.rendered)) | _heading_words(u.hit)
                                               for u in support.units])
        texts = [(f"{u.hit.heading_path[-1]}: " if self.heading and u.hit.heading_path else "") + u.unit.rendered
                 for u in ranked]
        encoded = token_vectors(self.inner, [question, *texts])
        q_enc, q_vec = encoded[0]
        q_weights = question_token_weights(question, q_enc, weights)
        keep = q_weights > 0
        scores = {id(u): maxsim(q_vec[keep], q_weights[keep], vec) for u, (_, vec) in zip(ranked, encoded[1:],
                                                                                            strict=True)}
        MaxSimRescore.timings.append((time.perf_counter() - started) * 1000)
        best = scores[id(ranked[0])]
        return Support([dataclasses.replace(u, score=u.score + self.weight * (scores[id(u)] - best))
                        if id(u) in scores else u for u in support.units], support.coverage)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--source", default="answer-passes-s9-src", help="recorded passes under KBBOT_BENCH_DIR")
    parser.add_argument("--sets", default="aws,demo")
    parser.add_argument("--variants", default="", help="comma-separated names (default: all)")
    parser.add_argument("--failures", type=Path, help="write where the gold is for each aws miss of the first variant")
    parser.add_argument("--deeper", default="answer-passes-s9-deeper",
                        help="folder under KBBOT_BENCH_DIR for the deeper searches of the 'passages N' variants")
    parser.add_argument("--json-out", type=Path, default=REPO / "bench" / "results" / "unit_scorer.json")
    args = parser.parse_args()
    source = aq.BENCH_DIR / args.source
    factories = variants()
    chosen = [v for v in args.variants.split(",") if v] or list(factories)
    out: dict[str, object] = {"source": args.source, "variants": {}}
    contexts = {name: Context(name, source) for name in args.sets.split(",")}
    for variant in chosen:
        row: dict[str, object] = {}
        for name, ctx in contexts.items():
            synthesizer = factories[variant](ctx.embedder, ctx)  # type: ignore[operator]
            MaxSimRescore.timings = []
            if variant.startswith("passages "):  # read from a deeper search than was recorded
                deeper = record_deeper(ctx, DEEPER, aq.BENCH_DIR / args.deeper)
                report = deeper_pass(ctx, deeper, synthesizer)
            else:
                report = ctx.run(synthesizer)
            first = [q for q in report["per_question"] if q.get("kind") == "answerable" and q.get("cited")]
            report["answers"]["first_cited_gold"] = sum(q["cited"][0] in q["relevant"] for q in first)
            if args.failures and name == "aws" and variant == chosen[0]:
                write_failures(where_gold_is(ctx, synthesizer, report), args.failures)
            row[name] = {k: round(report["answers"][k], 4) for k in SUMMARY} | {"seconds": report["seconds"]}
            if MaxSimRescore.timings:  # the rescoring's own cost per question (model call + MaxSim)
                row[name]["rescore_ms_p50"] = aq.percentile(MaxSimRescore.timings, 50)  # type: ignore[index]
                row[name]["rescore_ms_p95"] = aq.percentile(MaxSimRescore.timings, 95)  # type: ignore[index]
        out["variants"][variant] = row  # type: ignore[index]
        print(variant, json.dumps({n: {k: r[k] for k in (*SUMMARY[:4], "rescore_ms_p95") if k in r}
                                   for n, r in row.items()}), flush=True)
    for ctx in contexts.values():
        ctx.services.close()
    args.json_out.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
