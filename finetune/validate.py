"""Checks a chat fine-tuning JSONL file the way OpenAI's data-preparation guide does.

Format errors (per the guide's categories), token counts per example and in total, examples over the
base model's context limit, the epochs OpenAI's defaults would pick, and the estimated training cost.
Token counts come from ``retrieval.tokens`` (an offline approximation, named in the result).
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from retrieval.tokens import TokenCounter, default_counter

# Per message, the chat format adds about 3 tokens of framing; every reply is primed with 3 more
# (OpenAI cookbook, "How to count tokens with tiktoken").
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING_TOKENS = 3

# Training context per example and USD per 1M training tokens, from OpenAI's fine-tuning docs and
# pricing page (2025). Prices change: pass --price-per-mtok to override.
MODEL_LIMITS: dict[str, tuple[int, float]] = {
    "gpt-4o-mini": (65_536, 3.00),
    "gpt-4o": (65_536, 25.00),
    "gpt-4.1-nano": (65_536, 1.50),
    "gpt-4.1-mini": (65_536, 5.00),
    "gpt-4.1": (65_536, 25.00),
    "gpt-3.5-turbo": (16_385, 8.00),
}
DEFAULT_LIMIT = (16_385, 8.00)

# OpenAI's default-epochs heuristic from the same guide.
TARGET_EPOCHS, MIN_TARGET_EXAMPLES, MAX_TARGET_EXAMPLES = 3, 100, 25_000
MIN_DEFAULT_EPOCHS, MAX_DEFAULT_EPOCHS = 1, 25

_ALLOWED_KEYS = {
    "role",
    "content",
    "name",
    "function_call",
    "weight",
    "tool_calls",
    "tool_call_id",
    "refusal",
}
_ROLES = {"system", "user", "assistant", "function", "tool"}


def model_limits(base_model: str) -> tuple[int, float]:
    """Longest prefix match: "gpt-4o-mini-2024-07-18" is "gpt-4o-mini", not "gpt-4o"."""
    for name in sorted(MODEL_LIMITS, key=len, reverse=True):
        if base_model.startswith(name):
            return MODEL_LIMITS[name]
    return DEFAULT_LIMIT


def example_tokens(messages: list[dict[str, object]], counter: TokenCounter) -> int:
    total = REPLY_PRIMING_TOKENS
    for message in messages:
        total += TOKENS_PER_MESSAGE
        for key, value in message.items():
            if isinstance(value, str) and key in ("role", "content", "name"):
                total += counter.count(value)
                if key == "name":
                    total += TOKENS_PER_NAME
    return total


def default_epochs(examples: int) -> int:
    if examples == 0:
        return TARGET_EPOCHS
    if examples * TARGET_EPOCHS < MIN_TARGET_EXAMPLES:
        return min(MAX_DEFAULT_EPOCHS, MIN_TARGET_EXAMPLES // examples)
    if examples * TARGET_EPOCHS > MAX_TARGET_EXAMPLES:
        return max(MIN_DEFAULT_EPOCHS, MAX_TARGET_EXAMPLES // examples)
    return TARGET_EPOCHS


def format_errors(record: object) -> list[str]:
    """The guide's categories: data_type, missing_messages_list, message_missing_key, ..."""
    if not isinstance(record, dict):
        return ["data_type"]
    messages = record.get("messages")
    if not isinstance(messages, list) or not messages:
        return ["missing_messages_list"]
    errors: list[str] = []
    for message in messages:
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            errors.append("message_missing_key")
            continue
        if any(key not in _ALLOWED_KEYS for key in message):
            errors.append("message_unrecognized_key")
        if message.get("role") not in _ROLES:
            errors.append("unrecognized_role")
        content = message.get("content")
        if (content is None and "function_call" not in message and "tool_calls" not in message) or (
            content is not None and not isinstance(content, str)
        ):
            errors.append("missing_content")
    if not any(isinstance(m, dict) and m.get("role") == "assistant" for m in messages):
        errors.append("example_missing_assistant_message")
    return errors


def _distribution(values: list[int]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)
    return {
        "min": ordered[0],
        "max": ordered[-1],
        "mean": round(statistics.fmean(ordered), 1),
        "median": statistics.median(ordered),
        "p90": ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))],
    }


@dataclass
class ValidationResult:
    path: str
    examples: int = 0
    format_errors: Counter[str] = field(default_factory=Counter)
    error_lines: list[str] = field(default_factory=list)  # "file:line: reason", first few
    tokens_per_example: list[int] = field(default_factory=list)
    assistant_tokens_per_example: list[int] = field(default_factory=list)
    messages_per_example: list[int] = field(default_factory=list)
    over_limit: int = 0
    context_limit: int = 0
    token_counter: str = ""

    @property
    def ok(self) -> bool:
        return self.examples > 0 and not self.format_errors

    def billed_tokens(self) -> int:
        return sum(min(self.context_limit, n) for n in self.tokens_per_example)

    def as_dict(
        self, base_model: str, epochs: int | None = None, price_per_mtok: float | None = None
    ) -> dict[str, object]:
        limit, price = model_limits(base_model)
        price = price if price_per_mtok is None else price_per_mtok
        n_epochs = epochs or default_epochs(self.examples)
        billed = self.billed_tokens()
        return {
            "file": self.path,
            "examples": self.examples,
            "format_errors": dict(self.format_errors),
            "error_lines": self.error_lines,
            "token_counter": self.token_counter,
            "tokens_total": sum(self.tokens_per_example),
            "tokens_per_example": _distribution(self.tokens_per_example),
            "assistant_tokens_per_example": _distribution(self.assistant_tokens_per_example),
            "messages_per_example": _distribution(self.messages_per_example),
            "context_limit": limit,
            "examples_over_limit": self.over_limit,
            "base_model": base_model,
            "epochs": n_epochs,
            "epochs_source": "given" if epochs else "OpenAI default heuristic",
            "billed_tokens_per_epoch": billed,
            "price_usd_per_mtok": price,
            "estimated_cost_usd": round(billed * n_epochs * price / 1_000_000, 4),
        }


def validate_file(
    path: Path, base_model: str = "gpt-4o-mini", counter: TokenCounter | None = None
) -> ValidationResult:
    counter = counter or default_counter()
    limit, _ = model_limits(base_model)
    result = ValidationResult(str(path), context_limit=limit, token_counter=counter.name)
    with path.open("r", encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                record = None
                errors = ["invalid_json"]
            else:
                errors = format_errors(record)
            result.examples += 1
            if errors:
                result.format_errors.update(set(errors))
                if len(result.error_lines) < 20:
                    result.error_lines.append(f"{path}:{number}: {', '.join(sorted(set(errors)))}")
                continue
            assert isinstance(record, dict)
            messages = record["messages"]
            tokens = example_tokens(messages, counter)
            result.tokens_per_example.append(tokens)
            result.assistant_tokens_per_example.append(
                sum(
                    counter.count(m["content"])
                    for m in messages
                    if m["role"] == "assistant" and m.get("content")
                )
            )
            result.messages_per_example.append(len(messages))
            if tokens > limit:
                result.over_limit += 1
    return result
