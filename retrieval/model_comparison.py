"""Answers and feedback compared by routing arm: base vs fine-tuned tone model (an A/B with
KBBOT_TONE_ROUTING=share), or before/after a model change.

An answer counts in the arm the router assigned, whichever model wrote it: when the tone model fails and
the base model answers, the answer stays in the tone arm as a fallback (`fallbacks`, and `models` lists
who wrote the arm's answers). Answers no router placed in an arm are grouped by their model.

`AnswerLog.by_model` counts; this module turns the counts into rates a support lead can read, with a 95%
Wilson interval on the share of 👍 among votes, because a few dozen votes rarely settle an A/B.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

# The `answers.model` value of an answer that failed before a model was chosen (an abstention of the
# relevance gate, before any model ran, is "none").
FAILED = "(failed)"


@dataclass(frozen=True)
class ModelStats:
    arm: str  # "tone" / "base", or the model of answers with no arm ("none", "(failed)", "extractive", ...)
    models: str  # the models that wrote this group's answers, with counts: "gpt-4o-mini (3), ft:... (1)"
    answers: int
    answered: int
    abstained: int
    errors: int
    rated: int  # answers with at least one vote
    up: int
    down: int
    latency_p50_ms: float | None
    fallbacks: int = 0  # answers written by a later model of the chain (the arm's first model failed)

    @property
    def votes(self) -> int:
        return self.up + self.down

    @property
    def abstain_rate(self) -> float | None:
        return self.abstained / self.answers if self.answers else None

    @property
    def up_rate(self) -> float | None:
        return self.up / self.votes if self.votes else None

    @property
    def down_rate(self) -> float | None:
        return self.down / self.votes if self.votes else None

    @property
    def fallback_rate(self) -> float | None:
        return self.fallbacks / self.answers if self.answers else None

    @property
    def rated_rate(self) -> float | None:
        return self.rated / self.answers if self.answers else None

    def as_dict(self) -> dict[str, Any]:
        low, high = wilson_interval(self.up, self.votes)
        return {
            "arm": self.arm, "models": self.models, "answers": self.answers, "answered": self.answered,
            "abstained": self.abstained, "errors": self.errors, "rated": self.rated, "up": self.up,
            "down": self.down, "up_rate": _round(self.up_rate), "up_rate_ci95_low": _round(low),
            "up_rate_ci95_high": _round(high), "down_rate": _round(self.down_rate),
            "abstain_rate": _round(self.abstain_rate), "rated_rate": _round(self.rated_rate),
            "fallbacks": self.fallbacks, "fallback_rate": _round(self.fallback_rate),
            "latency_p50_ms": None if self.latency_p50_ms is None else round(self.latency_p50_ms, 1),
        }


def wilson_interval(successes: int, trials: int, z: float = 1.96) -> tuple[float | None, float | None]:
    """95% interval for a proportion that stays sensible at small counts (unlike p ± 1.96·se)."""
    if trials == 0:
        return None, None
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    margin = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return max(0.0, centre - margin), min(1.0, centre + margin)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


COLUMNS = list(ModelStats("", "", 0, 0, 0, 0, 0, 0, 0, None).as_dict())
