"""Side-by-side evaluation of the base and the tuned model on held-out conversations.

Each validation example is replayed up to its last agent reply: both models get the same messages (the
dataset's system prompt, plus retrieved passages when a ``context`` function is given, then the
conversation so far) and their answers are compared with what the agent really wrote. Fine-tuning here
is for tone, so the figures are about form: length, greeting/apology/thanks/question habits, placeholders
and sign-offs, and overlap with the agents' real replies (token F1 and ROUGE-L).
"""

from __future__ import annotations

import json
import logging
import re
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import openai

from finetune.errors import InputError
from finetune.jobs import api_errors

logger = logging.getLogger(__name__)

Context = Callable[[str], Sequence[str]]

STYLE_MARKERS: dict[str, re.Pattern[str]] = {
    "greeting": re.compile(r"(?i)^\W*(?:hi|hello|hey|good\s+(?:morning|afternoon|evening)|dear)\b"),
    "apology": re.compile(r"(?i)\b(?:sorry|apologi[sz]e|apologies)\b"),
    "thanks": re.compile(r"(?i)\b(?:thanks|thank\s+you)\b"),
    "question": re.compile(r"\?"),
    "exclamation": re.compile(r"!"),
    "addresses_by_name": re.compile(r"\[NAME_\d+\]"),
    "sign_off": re.compile(r"(?:[\^*/~-]\s?\[NAME_\d+\]|[\^*/][A-Z]{2,3})\s*$"),
    "link": re.compile(r"https?://|\[URL_\d+\]"),
    "emoji": re.compile("[\U0001f300-\U0001faff\u2600-\u27bf]"),
}
_TOKEN = re.compile(r"\[[A-Z_]+_\d+\]|\w+")


def _tokens(text: str) -> list[str]:
    return [t.lower() for t in _TOKEN.findall(text)]


def token_f1(candidate: str, reference: str) -> float:
    cand, ref = _tokens(candidate), _tokens(reference)
    if not cand or not ref:
        return 0.0
    remaining = list(ref)
    common = 0
    for token in cand:
        if token in remaining:
            remaining.remove(token)
            common += 1
    if not common:
        return 0.0
    precision, recall = common / len(cand), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def rouge_l(candidate: str, reference: str) -> float:
    cand, ref = _tokens(candidate), _tokens(reference)
    if not cand or not ref:
        return 0.0
    previous = [0] * (len(ref) + 1)
    for token in cand:
        current = [0]
        for j, other in enumerate(ref, start=1):
            current.append(previous[j - 1] + 1 if token == other else max(previous[j], current[j - 1]))
        previous = current
    lcs = previous[-1]
    if not lcs:
        return 0.0
    precision, recall = lcs / len(cand), lcs / len(ref)
    return 2 * precision * recall / (precision + recall)


@dataclass
class ModelFigures:
    model: str
    answers: list[str] = field(default_factory=list)
    failures: int = 0

    def summary(self, references: list[str]) -> dict[str, object]:
        pairs = [(a, r) for a, r in zip(self.answers, references, strict=True) if a]
        answers = [a for a, _ in pairs]
        if not answers:
            return {"model": self.model, "answered": 0, "failures": self.failures}
        words = [len(a.split()) for a in answers]
        return {
            "model": self.model,
            "answered": len(answers),
            "failures": self.failures,
            "mean_words": round(statistics.fmean(words), 1),
            "median_words": statistics.median(words),
            "style_rates": {
                name: round(sum(bool(p.search(a)) for a in answers) / len(answers), 3)
                for name, p in STYLE_MARKERS.items()
            },
            "token_f1_vs_agent": round(statistics.fmean(token_f1(a, r) for a, r in pairs), 4),
            "rouge_l_vs_agent": round(statistics.fmean(rouge_l(a, r) for a, r in pairs), 4),
        }


def load_examples(path: Path, limit: int | None = None) -> list[list[dict[str, str]]]:
    examples = []
    with path.open("r", encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                messages = json.loads(line)["messages"]
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise InputError(f"{path}:{number}: not a chat fine-tuning example") from exc
            if any(m.get("role") == "assistant" for m in messages):
                examples.append(messages)
            if limit is not None and len(examples) >= limit:
                break
    if not examples:
        raise InputError(f"{path} has no example with an agent reply to compare against.")
    return examples


def _prompt(messages: list[dict[str, str]], context: Context | None) -> tuple[list[dict[str, str]], str]:
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    prompt, reference = [dict(m) for m in messages[:last]], messages[last]["content"]
    if context is not None:
        question = next((m["content"] for m in reversed(prompt) if m["role"] == "user"), "")
        passages = "\n\n".join(f"[{i}] {p}" for i, p in enumerate(context(question), start=1))
        if passages:
            system = prompt[0]["content"] if prompt and prompt[0]["role"] == "system" else ""
            block = {"role": "system", "content": f"{system}\n\nPassages:\n{passages}".strip()}
            prompt = [block, *prompt[1:]] if system else [block, *prompt]
    return prompt, reference


def evaluate(
    client: openai.OpenAI,
    validation_file: Path,
    *,
    base_model: str,
    tuned_model: str,
    limit: int | None = 50,
    context: Context | None = None,
    max_tokens: int = 300,
) -> dict[str, object]:
    examples = load_examples(validation_file, limit)
    figures = {name: ModelFigures(name) for name in (base_model, tuned_model)}
    references: list[str] = []
    rows: list[dict[str, object]] = []
    for messages in examples:
        prompt, reference = _prompt(messages, context)
        references.append(reference)
        row: dict[str, object] = {"reference_words": len(reference.split())}
        for name, figure in figures.items():
            try:
                with api_errors(f"Asking {name}", client, name):
                    reply = client.chat.completions.create(
                        model=name,
                        messages=prompt,
                        temperature=0,
                        max_tokens=max_tokens,  # type: ignore[arg-type]
                    )
                answer = reply.choices[0].message.content or ""
            except Exception as exc:  # one failed call must not sink the comparison; it is counted
                if isinstance(exc.__cause__, openai.NotFoundError):
                    raise  # a wrong model id fails every call: say so at once
                logger.warning("evaluation call to %s failed: %s", name, exc)
                figure.failures += 1
                answer = ""
            figure.answers.append(answer)
            row[name] = {"words": len(answer.split()), "rouge_l": round(rouge_l(answer, reference), 4)}
        rows.append(row)
    return {
        "validation_file": str(validation_file),
        "examples": len(examples),
        "context": "retrieved passages" if context else "none (conversation only)",
        "reference": {
            "mean_words": round(statistics.fmean(len(r.split()) for r in references), 1),
            "style_rates": {
                name: round(sum(bool(p.search(r)) for r in references) / len(references), 3)
                for name, p in STYLE_MARKERS.items()
            },
        },
        "models": {name: figure.summary(references) for name, figure in figures.items()},
        "per_example": rows,
    }
