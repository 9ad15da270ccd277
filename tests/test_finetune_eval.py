"""Evaluation metrics and the prompt both models get."""

# ruff: noqa: F811 - `fake_openai` is a fixture imported from tests.fakes and taken by name
from __future__ import annotations

import json
from pathlib import Path

import openai
import pytest

from finetune.evaluate import STYLE_MARKERS, evaluate, rouge_l, token_f1
from tests.fakes.openai_api import FakeOpenAI, Scripted, fake_openai  # noqa: F401 - fixture


def test_overlap_metrics() -> None:
    assert token_f1("thanks for reaching out", "thanks for reaching out") == 1.0
    assert token_f1("", "anything") == 0.0
    assert rouge_l("a b c d", "a c d") == pytest.approx(2 * (3 / 4) * 1.0 / (3 / 4 + 1.0))
    assert rouge_l("x y", "a b") == 0.0


def test_style_markers() -> None:
    assert STYLE_MARKERS["greeting"].search("Hi [NAME_1], sorry!")
    assert STYLE_MARKERS["sign_off"].search("Let us know. ^[NAME_2]")
    assert STYLE_MARKERS["sign_off"].search("Let us know. *QD")
    assert not STYLE_MARKERS["greeting"].search("This is fixed.")


def test_both_models_get_the_same_prompt_with_passages(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    validation = tmp_path / "validation.jsonl"
    example = {
        "messages": [
            {"role": "system", "content": "Tone."},
            {"role": "user", "content": "VPN drops"},
            {"role": "assistant", "content": "Hi! Update the client."},
        ]
    }
    validation.write_text(json.dumps(example) + "\n")
    fake_openai.models.add("ft:tone")
    fake_openai.script("POST", "/v1/chat/completions", Scripted.error(500), Scripted.error(500))
    client = openai.OpenAI(base_url=fake_openai.url + "/v1", api_key="test", max_retries=0)
    report = evaluate(
        client,
        validation,
        base_model="gpt-4o-mini",
        tuned_model="ft:tone",
        context=lambda q: [f"Passage about {q}"],
    )
    sent = [r.json for r in fake_openai.requests_to("POST", "/v1/chat/completions")]
    assert sent[0]["messages"] == sent[1]["messages"]
    assert sent[0]["messages"][0]["content"] == "Tone.\n\nPassages:\n[1] Passage about VPN drops"
    assert [m["role"] for m in sent[0]["messages"]] == ["system", "user"]  # the reference reply is withheld
    # A failing call is counted, not fatal.
    assert report["models"]["gpt-4o-mini"]["failures"] == 1 and report["models"]["ft:tone"]["failures"] == 1
