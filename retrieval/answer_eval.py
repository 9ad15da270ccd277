"""Answer-level evaluation: does what a reader sees hold the gold answer, cite the right article, and
say "I don't know" when the knowledge base has no answer?

Inputs are BEIR-style files: the labelled questions and qrels of `retrieval.evaluation`, gold answers as
JSONL (`{"_id", "answer", "key_terms"?}`, the layout of aws-docs-qa's answers.jsonl plus optional key
terms), and unanswerable questions in the queries format. Metrics, per answerer:

- `token_recall`: share of the gold answer's content words found in the answer (mean; an abstention on
  an answerable question scores 0);
- `contains_gold`: share of answerable questions whose answer has token recall >= CONTAINS_RECALL;
- `all_key_terms`: share whose answer holds every key term (the gold's `key_terms` when given, else all
  of its content words: the stricter metric);
- `citation_precision`: cited passages belonging to a gold article, over all cited passages;
- `answered_rate` on answerable and `abstained_rate` on unanswerable questions;
- `unsure_rate`: answers given that open by saying they are unsure (retrieval/abstention.py's unsure band),
  and that share among right answers (`unsure_of_right`: gold content held) and wrong ones
  (`unsure_of_wrong`: an answer to an unanswerable question, or one missing the gold): a hedge should
  fall on the wrong answers.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from retrieval.errors import SourceError
from retrieval.evaluation import LabelledQuery
from retrieval.terms import content_tokens, tokens
from retrieval.types import Answer

# A reader who finds 4 of 5 of the gold answer's content words in the answer has the answer; below that
# it is usually a neighbouring fact.
CONTAINS_RECALL = 0.8


@dataclass(frozen=True)
class GoldAnswer:
    id: str
    text: str
    key_terms: tuple[str, ...] = ()


@dataclass(frozen=True)
class Question:
    id: str
    text: str


def load_gold_answers(path: Path) -> dict[str, GoldAnswer]:
    out: dict[str, GoldAnswer] = {}
    for lineno, record in _jsonl(path):
        try:
            terms = tuple(str(t) for t in record.get("key_terms") or ())
            out[str(record["_id"])] = GoldAnswer(str(record["_id"]), str(record["answer"]), terms)
        except (KeyError, TypeError) as exc:
            raise SourceError(f"{path}:{lineno}: expected {{\"_id\", \"answer\"}} ({exc})") from exc
    return out


def load_questions(path: Path) -> list[Question]:
    out = []
    for lineno, record in _jsonl(path):
        try:
            out.append(Question(str(record["_id"]), str(record["text"])))
        except (KeyError, TypeError) as exc:
            raise SourceError(f"{path}:{lineno}: expected {{\"_id\", \"text\"}} ({exc})") from exc
    return out


def _jsonl(path: Path) -> list[tuple[int, dict]]:  # type: ignore[type-arg]
    records = []
    try:
        with path.open(encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise SourceError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from exc
                if not isinstance(record, dict):
                    raise SourceError(f"{path}:{lineno}: expected a JSON object")
                records.append((lineno, record))
    except OSError as exc:
        raise SourceError(f"Cannot read {path}: {exc}") from exc
    return records


def token_recall(gold: str, answer: str) -> float:
    wanted = set(content_tokens(gold))
    if not wanted:
        return 1.0
    return len(wanted & set(tokens(answer))) / len(wanted)


def has_all_key_terms(gold: GoldAnswer, answer: str) -> bool:
    """Every key term occurs as a contiguous run of tokens (all content words when none are given)."""
    found = tokens(answer)
    if not gold.key_terms:
        return set(content_tokens(gold.text)) <= set(found)
    return all(_contains_run(found, tokens(term)) for term in gold.key_terms)


def _contains_run(haystack: Sequence[str], needle: Sequence[str]) -> bool:
    n = len(needle)
    return n == 0 or any(list(haystack[i:i + n]) == list(needle) for i in range(len(haystack) - n + 1))


@dataclass
class AnswerReport:
    answerer: str
    answerable: int
    unanswerable: int
    answered_rate: float  # answerable questions answered
    abstained_rate: float  # unanswerable questions abstained on
    with_gold: int  # answerable questions that have a gold answer
    token_recall: float
    contains_gold: float
    all_key_terms: float
    citation_precision: float
    citations_per_answer: float
    answer_words_p50: float
    answer_ms_p50: float
    answer_ms_p95: float
    unsure_rate: float = 0.0  # answers given (to either kind of question) that say they are unsure
    unsure_of_right: float | None = None  # ... of the right answers (gold content held); None: there are none
    unsure_of_wrong: float | None = None  # ... of the wrong ones (unanswerable answered, or gold missed)
    per_question: list[dict[str, object]] = field(default_factory=list)

    def summary(self) -> dict[str, object]:
        data = asdict(self)
        data.pop("per_question")
        return data


AnswerFn = Callable[[str], Answer]


def evaluate_answers(answer: AnswerFn, answerer: str, answerable: Sequence[LabelledQuery],
                     gold: dict[str, GoldAnswer], unanswerable: Sequence[Question] = ()) -> AnswerReport:
    """Ask every question through `answer` (a pipeline's `answer`, or anything with its signature)."""
    per_question: list[dict[str, object]] = []
    times: list[float] = []
    recalls: list[float] = []
    contains: list[bool] = []
    key_terms: list[bool] = []
    cited = cited_right = answered = 0
    words: list[int] = []
    unsure: dict[str, list[bool]] = {"all": [], "right": [], "wrong": []}  # per answer given: said unsure?
    for query in answerable:
        result, ms = _timed(answer, query.text)
        times.append(ms)
        is_answer = result.outcome == "answered"
        answered += is_answer
        right = [c.hit.external_id in query.relevant for c in result.citations] if is_answer else []
        cited += len(right)
        cited_right += sum(right)
        row: dict[str, object] = {"id": query.id, "kind": "answerable", "outcome": result.outcome,
                                  "answer": result.text, "cited": [c.hit.external_id for c in result.citations],
                                  "relevant": sorted(query.relevant), "ms": round(ms, 1)}
        if is_answer:
            words.append(len(result.text.split()))
            unsure["all"].append(result.unsure)
            row["unsure"] = result.unsure
        if query.id in gold:
            g = gold[query.id]
            text = result.text if is_answer else ""
            recall = token_recall(g.text, text)
            recalls.append(recall)
            contains.append(recall >= CONTAINS_RECALL)
            key_terms.append(bool(text) and has_all_key_terms(g, text))
            row.update(gold=g.text, token_recall=round(recall, 3), all_key_terms=key_terms[-1])
            if is_answer:
                unsure["right" if contains[-1] else "wrong"].append(result.unsure)
        per_question.append(row)
    abstained = 0
    for question in unanswerable:
        result, ms = _timed(answer, question.text)
        times.append(ms)
        abstained += result.outcome == "abstained"
        row = {"id": question.id, "kind": "unanswerable", "outcome": result.outcome, "answer": result.text,
               "cited": [c.hit.external_id for c in result.citations], "ms": round(ms, 1)}
        if result.outcome == "answered":
            unsure["all"].append(result.unsure)
            unsure["wrong"].append(result.unsure)
            row["unsure"] = result.unsure
        per_question.append(row)
    return AnswerReport(
        answerer=answerer, answerable=len(answerable), unanswerable=len(unanswerable),
        answered_rate=_share(answered, len(answerable)), abstained_rate=_share(abstained, len(unanswerable)),
        with_gold=len(recalls), token_recall=_mean(recalls), contains_gold=_mean(contains),
        all_key_terms=_mean(key_terms), citation_precision=_share(cited_right, cited),
        citations_per_answer=_share(cited, answered), answer_words_p50=_pct(words, 50),
        answer_ms_p50=_pct(times, 50), answer_ms_p95=_pct(times, 95), unsure_rate=_mean(unsure["all"]),
        unsure_of_right=_mean(unsure["right"]) if unsure["right"] else None,
        unsure_of_wrong=_mean(unsure["wrong"]) if unsure["wrong"] else None, per_question=per_question,
    )


def _timed(answer: AnswerFn, question: str) -> tuple[Answer, float]:
    started = time.perf_counter()
    result = answer(question)
    return result, (time.perf_counter() - started) * 1000


def _share(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def _mean(values: Sequence[float | bool]) -> float:
    return float(np.mean(values)) if values else 0.0


def _pct(values: Sequence[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else 0.0
