"""The labelled sets behind bench/pii_eval.py: synthetic labels cover their values, real labels hold no text."""

from __future__ import annotations

import json

import pytest

from bench.pii_eval import LABELS, Tally, kbbot_detector, real_set, score
from bench.pii_synthetic import HELDOUT_LOCALES, TUNING_LOCALES, generate
from finetune.pii.names import GAZETTEER_LOCALES
from tests.conftest import SHARED_DATA

THREADS = SHARED_DATA / "support-threads" / "twitter-support-dev.json"


def test_synthetic_labels_are_where_the_values_are() -> None:
    conversations = generate("is_IS", 5) + generate("vi_VN", 5)
    types = set()
    for conversation in conversations:
        for turn in conversation.turns:
            for start, end, pii_type in turn.spans:
                assert 0 <= start < end <= len(turn.text)
                assert turn.text[start:end].strip() == turn.text[start:end]  # no stray spaces labelled
                types.add(pii_type)
    assert {"NAME", "PHONE", "ADDRESS"} <= types
    assert generate("is_IS", 2)[0].turns[0].text == generate("is_IS", 2)[0].turns[0].text  # seeded


def test_held_out_locales_are_neither_tuned_nor_in_the_gazetteer() -> None:
    assert len(TUNING_LOCALES) >= 20
    assert not set(HELDOUT_LOCALES) & set(TUNING_LOCALES)
    assert not set(HELDOUT_LOCALES) & set(GAZETTEER_LOCALES)


def test_real_labels_are_offsets_only() -> None:
    labels = json.loads(LABELS.read_text(encoding="utf-8"))
    turns = [t for thread in labels["threads"] for t in thread["turns"]]
    assert len(turns) >= 100
    for turn in turns:
        assert set(turn) == {"turn", "spans"}
        for span in turn["spans"]:
            assert len(span) == 3 and isinstance(span[0], int) and isinstance(span[1], int)


@pytest.mark.shared_data
def test_real_labels_point_into_the_threads_and_are_scored() -> None:
    if not THREADS.exists():
        pytest.skip(f"{THREADS} is absent")
    conversations = real_set(THREADS)
    assert conversations is not None
    labelled = [t for c in conversations for t in c.turns if t.group == "real"]
    assert len(labelled) >= 100
    for turn in labelled:
        for start, end, _ in turn.gold:
            assert 0 <= start < end <= len(turn.text) and turn.text[start:end].strip()
    tallies: dict[str, Tally] = {"real": Tally(), "all": Tally()}
    score(conversations, kbbot_detector(), tallies)
    assert tallies["real"].gold["NAME"] >= 40

