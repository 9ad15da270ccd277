"""Grounded citations, applied to the model's text while it streams.

- A marker that points at no passage of the prompt (`[9]` with 5 passages) is removed.
- Markers are renumbered in order of first appearance, so the reader sees [1], [2], ... and the sources
  list holds exactly the passages the answer cites, in that order.
- `[1, 3]` becomes `[1][3]`.
- A reply that is the prompt's NO_ANSWER sentinel is recognised (and never shown).

The filter holds back only what might still change: a trailing `[12` that may become a marker, the
whitespace before it, and the first few characters while they could be the sentinel. So the joined
deltas equal the final text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from retrieval.chunking import split_sentences
from retrieval.llm.prompt import NO_ANSWER
from retrieval.types import Citation, SearchHit

_MARKER = re.compile(r"[ \t]*\[(\d{1,3}(?:\s*[,;]\s*\d{1,3})*)\]")
_OPEN_MARKER = re.compile(r"\[[\d\s,;]{0,20}$")  # a `[` whose marker may still be arriving
_WORDS = re.compile(r"[a-z0-9]+")
_STOP = frozenset([
    "a", "an", "and", "are", "as", "at", "be", "by", "can", "do", "for", "from", "how", "i", "if",
    "in", "is", "it", "of", "on", "or", "the", "this", "to", "with", "you", "your"
])
_QUOTE_MAX_CHARS = 300


@dataclass(frozen=True)
class GroundedText:
    text: str
    cited: list[int]  # prompt passage numbers (1-based), in the order the answer first cites them
    dropped_markers: int
    no_answer: bool


class StreamGrounder:
    """Feed the model's deltas in; get back text safe to show. Call `finish()` at the end."""

    def __init__(self, passage_count: int) -> None:
        self.passage_count = passage_count
        self._pending = ""
        self._out: list[str] = []
        self._order: dict[int, int] = {}  # prompt number -> shown number
        self._dropped = 0
        self._start_decided = False
        self._no_answer = False

    def feed(self, delta: str) -> str:
        if self._no_answer:
            return ""
        self._pending += delta
        if not self._start_decided:
            head = self._pending.lstrip()
            if head.startswith(NO_ANSWER):
                self._no_answer = True
                return ""
            if NO_ANSWER.startswith(head):
                return ""  # could still be the sentinel
            self._start_decided = True
        cut = self._safe_cut()
        ready, self._pending = self._pending[:cut], self._pending[cut:]
        return self._emit(ready)

    def finish(self) -> tuple[str, GroundedText]:
        """The last piece of text to show, and the grounded whole."""
        tail = "" if self._no_answer else self._emit(self._pending)
        self._pending = ""
        text = "".join(self._out).strip()
        if tail and not tail.strip():
            tail = ""
        cited = sorted(self._order, key=self._order.__getitem__)
        # A sentinel after some text: the model said late that the passages do not answer (the rest).
        late_sentinel = text.endswith(NO_ANSWER)
        if late_sentinel:
            text = text[: -len(NO_ANSWER)].rstrip()
        no_answer = self._no_answer or (late_sentinel and not cited)
        return tail, GroundedText(text, cited, self._dropped, no_answer)

    def _safe_cut(self) -> int:
        text = self._pending
        open_marker = _OPEN_MARKER.search(text)
        cut = open_marker.start() if open_marker else len(text)
        # Whitespace before a marker goes with it when the marker is dropped.
        while cut > 0 and text[cut - 1] in " \t":
            cut -= 1
        return cut

    def _emit(self, text: str) -> str:
        if not text:
            return ""
        shown = _MARKER.sub(self._replace, text)
        if not any(self._out):
            shown = shown.lstrip()
        self._out.append(shown)
        return shown

    def _replace(self, match: re.Match[str]) -> str:
        leading = match.group(0)[: match.group(0).index("[")]
        numbers = [int(n) for n in re.findall(r"\d+", match.group(1))]
        valid = [n for n in numbers if 1 <= n <= self.passage_count]
        self._dropped += len(numbers) - len(valid)
        shown = []
        for n in dict.fromkeys(valid):
            shown.append(self._order.setdefault(n, len(self._order) + 1))
        return leading + "".join(f"[{s}]" for s in shown) if shown else ""


def ground_text(text: str, passage_count: int) -> GroundedText:
    """The same filter over a complete text (non-streaming replies, tests)."""
    grounder = StreamGrounder(passage_count)
    grounder.feed(text)
    return grounder.finish()[1]


def build_citations(grounded: GroundedText, passages: Sequence[SearchHit]) -> list[Citation]:
    """One Citation per cited passage, numbered as shown, quoting the passage sentence that best matches
    the answer sentences citing it."""
    citations = []
    claims = _claims_by_marker(grounded.text)
    for shown, prompt_number in enumerate(grounded.cited, start=1):
        hit = passages[prompt_number - 1]
        citations.append(Citation(shown, hit, best_quote(hit.text, claims.get(shown, []))))
    return citations


def _claims_by_marker(text: str) -> dict[int, list[str]]:
    claims: dict[int, list[str]] = {}
    for start, end in split_sentences(text):
        sentence = text[start:end]
        for number in {int(n) for n in re.findall(r"\[(\d+)\]", sentence)}:
            claims.setdefault(number, []).append(re.sub(r"\[\d+\]", "", sentence))
    return claims


def best_quote(passage: str, claims: Sequence[str]) -> str:
    """The passage sentence sharing the most content words with the claims (cheap, no model call)."""
    wanted = {w for claim in claims for w in _WORDS.findall(claim.lower())} - _STOP
    best, best_score = "", -1.0
    for start, end in split_sentences(passage):
        sentence = passage[start:end].strip()
        words = set(_WORDS.findall(sentence.lower())) - _STOP
        if len(words) < 3:
            continue  # headings and fragments make poor quotes
        score = len(words & wanted) / (len(words) ** 0.5)
        if score > best_score:
            best, best_score = sentence, score
    best = best or passage.strip()
    return best if len(best) <= _QUOTE_MAX_CHARS else best[:_QUOTE_MAX_CHARS].rsplit(" ", 1)[0] + " …"
