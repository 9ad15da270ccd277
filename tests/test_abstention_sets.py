"""The question sets the abstention gate is calibrated and checked on (bench/calibrate_abstention.py).

The held-out sets are only read to check the gate: a question in both a calibration set and a held-out one
would make the held-out rates a second reading of the calibration, so they must not share questions."""

from __future__ import annotations

from pathlib import Path

from retrieval.answer_eval import load_questions
from retrieval.terms import content_tokens

REPO = Path(__file__).resolve().parents[1]
DEMO, SETS = REPO / "demo_eval", REPO / "bench" / "sets"
AWS_QUESTIONS = REPO.parent / "shared" / "data" / "aws-docs-qa" / "queries.jsonl"  # not in the repo
CALIBRATION = [DEMO / "queries.jsonl", DEMO / "unanswerable.jsonl", SETS / "aws-unanswerable.jsonl",
               *([AWS_QUESTIONS] if AWS_QUESTIONS.exists() else [])]
HELD_OUT_ANSWERABLE = [DEMO / "answerable-heldout.jsonl", SETS / "aws-answerable-heldout.jsonl"]
HELD_OUT_UNANSWERABLE = [DEMO / "unanswerable-heldout.jsonl", SETS / "aws-unanswerable-heldout.jsonl"]
HELD_OUT = HELD_OUT_ANSWERABLE + HELD_OUT_UNANSWERABLE


def _normal(text: str) -> tuple[str, ...]:
    return tuple(sorted(content_tokens(text)))


def test_held_out_questions_are_not_calibration_questions() -> None:
    seen = {_normal(q.text): path.name for path in CALIBRATION for q in load_questions(path)}
    repeated = [(q.id, seen[_normal(q.text)]) for path in HELD_OUT for q in load_questions(path)
                if _normal(q.text) in seen]
    assert repeated == []


def test_question_ids_are_unique_within_each_set() -> None:
    for path in CALIBRATION + HELD_OUT:
        ids = [q.id for q in load_questions(path)]
        assert len(ids) == len(set(ids)), path.name


def test_held_out_unanswerable_sets_are_large_enough_to_read_a_rate() -> None:
    # 30+ questions: one miss moves the rate by about 3 points, not 10.
    assert all(len(load_questions(path)) >= 30 for path in HELD_OUT_UNANSWERABLE)
    assert all(len(load_questions(path)) >= 20 for path in HELD_OUT_ANSWERABLE)
