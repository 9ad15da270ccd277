"""The validator: OpenAI's format checks, token counts, the context limit, epochs and cost."""

from __future__ import annotations

import json
from pathlib import Path

from finetune.validate import default_epochs, format_errors, model_limits, validate_file
from retrieval.tokens import CharEstimateCounter, default_counter


def _write(path: Path, *records: object) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def test_format_error_categories() -> None:
    assert format_errors([1, 2]) == ["data_type"]
    assert format_errors({"messages": []}) == ["missing_messages_list"]
    assert "message_missing_key" in format_errors({"messages": [{"role": "user"}]})
    assert "unrecognized_role" in format_errors({"messages": [{"role": "bot", "content": "x"}]})
    assert "message_unrecognized_key" in format_errors(
        {"messages": [{"role": "assistant", "content": "x", "mood": "happy"}]}
    )
    assert format_errors({"messages": [{"role": "user", "content": "hi"}]}) == [
        "example_missing_assistant_message"
    ]
    assert (
        format_errors(
            {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}
        )
        == []
    )


def test_validate_counts_tokens_limit_and_cost(tmp_path: Path) -> None:
    good = {
        "messages": [
            {"role": "system", "content": "Be kind."},
            {"role": "user", "content": "a" * 400},
            {"role": "assistant", "content": "b" * 40},
        ]
    }
    huge = {"messages": [{"role": "user", "content": "c" * 80_000}, {"role": "assistant", "content": "ok"}]}
    path = _write(
        tmp_path / "t.jsonl", good, huge, "not json", {"messages": [{"role": "user", "content": "x"}]}
    )
    result = validate_file(path, "gpt-3.5-turbo", CharEstimateCounter())
    assert result.examples == 4 and not result.ok
    assert dict(result.format_errors) == {"invalid_json": 1, "example_missing_assistant_message": 1}
    assert result.error_lines[0].endswith(":3: invalid_json")
    # chars/4 of each role and content, 3 per message, 3 to prime the reply:
    # system (2 + 2) + user (1 + 100) + assistant (3 + 10) + 3 * 3 + 3 = 130
    assert result.tokens_per_example[0] == 130
    assert result.over_limit == 1  # 20,000 tokens > 16,385 for gpt-3.5-turbo
    report = result.as_dict("gpt-3.5-turbo", epochs=2, price_per_mtok=10.0)
    billed = result.tokens_per_example[0] + 16_385  # over-limit examples are billed up to the limit
    assert report["billed_tokens_per_epoch"] == billed
    assert report["estimated_cost_usd"] == round(billed * 2 * 10.0 / 1e6, 4)


def test_epochs_heuristic_and_model_limits() -> None:
    assert default_epochs(10) == 10  # small sets get more epochs to reach 100 example-passes
    assert default_epochs(500) == 3
    assert default_epochs(20_000) == 1
    assert model_limits("gpt-4o-mini-2024-07-18") == (65_536, 3.0)
    assert model_limits("gpt-4o-2024-08-06")[1] == 25.0


def test_offline_tokenizer_is_used_when_installed() -> None:
    counter = default_counter()
    assert counter.count("Hi [NAME_1], sorry for the trouble!") > 5
    assert "WordPiece" in counter.name or "chars/4" in counter.name
