"""Precision and recall of the sanitizer per PII type, on text labelled inline as ``{{TYPE:value}}``.

A detection is right when it overlaps a labelled span of the same type. ``leaked`` counts labelled spans
that no detection of any type covers: what matters for privacy is that PII goes, whatever its label.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from finetune.pii.sanitizer import Sanitizer
from finetune.pii.spans import Span

_LABEL = re.compile(r"\{\{([A-Z_]+):(.*?)\}\}", re.DOTALL)


def parse_labelled(marked: str) -> tuple[str, list[Span]]:
    text: list[str] = []
    spans: list[Span] = []
    cursor = length = 0
    for match in _LABEL.finditer(marked):
        plain = marked[cursor : match.start()]
        text.append(plain)
        length += len(plain)
        value = match.group(2)
        spans.append(Span(length, length + len(value), match.group(1), value))
        text.append(value)
        length += len(value)
        cursor = match.end()
    text.append(marked[cursor:])
    return "".join(text), spans


@dataclass
class TypeScore:
    true_positives: int = 0
    false_positives: int = 0
    gold: int = 0
    found: int = 0  # gold spans found with the right type
    leaked: int = 0  # gold spans no detection covered at all

    @property
    def precision(self) -> float | None:
        predicted = self.true_positives + self.false_positives
        return self.true_positives / predicted if predicted else None

    @property
    def recall(self) -> float | None:
        return self.found / self.gold if self.gold else None


@dataclass
class SanitizerScore:
    by_type: dict[str, TypeScore] = field(default_factory=dict)
    false_positive_examples: Counter[str] = field(default_factory=Counter)

    def type(self, name: str) -> TypeScore:
        return self.by_type.setdefault(name, TypeScore())

    def as_dict(self) -> dict[str, dict[str, float | int | None]]:
        return {
            name: {
                "gold": s.gold,
                "predicted": s.true_positives + s.false_positives,
                "precision": s.precision,
                "recall": s.recall,
                "leaked": s.leaked,
            }
            for name, s in sorted(self.by_type.items())
        }


def score_sanitizer(path: Path, sanitizer: Sanitizer | None = None) -> SanitizerScore:
    sanitizer = sanitizer or Sanitizer()
    score = SanitizerScore()
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        text, gold = parse_labelled(json.loads(line)["text"])
        predicted = sanitizer.detect(text)
        for span in predicted:
            if any(span.overlaps(g) and g.pii_type == span.pii_type for g in gold):
                score.type(span.pii_type).true_positives += 1
            else:
                score.type(span.pii_type).false_positives += 1
                score.false_positive_examples[f"{span.pii_type}: {text[span.start : span.end]}"] += 1
        for g in gold:
            entry = score.type(g.pii_type)
            entry.gold += 1
            if any(p.overlaps(g) and p.pii_type == g.pii_type for p in predicted):
                entry.found += 1
            if not any(p.overlaps(g) for p in predicted):
                entry.leaked += 1
    return score
