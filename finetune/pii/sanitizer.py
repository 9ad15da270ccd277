"""Replace PII with typed placeholders that stay consistent within a conversation.

``[NAME_1]`` is the same person in every turn of one conversation, and ``[PHONE_1]`` the same number
however it was written; numbering restarts with each conversation, so nothing links two conversations.
Every later stage (dedupe, split, validation, upload) sees only the sanitized text.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache

from finetune.conversation import Conversation
from finetune.pii.names import find_names
from finetune.pii.patterns import PATTERN_DETECTORS, URL
from finetune.pii.phones import find_phones
from finetune.pii.spans import PII_TYPES, Span, resolve_overlaps

# Bumped whenever detection changes, and written to the manifest: a dataset says which sanitizer made it.
SANITIZER_VERSION = "2"

_TYPES_INSIDE_LINKS = frozenset({"URL", "EMAIL", "SECRET", "IP"})

PLACEHOLDER = re.compile(r"\[(" + "|".join(PII_TYPES) + r")_(\d+)\]")


@dataclass(frozen=True)
class SanitizerConfig:
    phone_regions: tuple[str, ...] = ("US", "GB")
    # Types to leave alone, e.g. ("URL",) when links are known to be public help-centre pages.
    keep_types: frozenset[str] = frozenset()


@dataclass
class SanitizedConversation:
    conversation: Conversation
    redactions: Counter[str] = field(default_factory=Counter)  # mentions replaced, per type
    values: Counter[str] = field(default_factory=Counter)  # distinct values (placeholders), per type


@lru_cache(maxsize=4096)
def _word_pattern(value: str) -> re.Pattern[str]:
    return re.compile(
        r"(?<![\w@])" + r"\s+".join(re.escape(part) for part in value.split()) + r"(?![\w])", re.IGNORECASE
    )


class _Placeholders:
    """Numbers placeholders per type and key; a name's parts share the full name's number."""

    def __init__(self, existing: Iterable[str]) -> None:
        self._numbers: dict[tuple[str, str], int] = {}
        self._next: Counter[str] = Counter()
        for text in existing:  # "[NAME_3]" already in the input: new numbers start after it
            for match in PLACEHOLDER.finditer(text):
                self._next[match.group(1)] = max(self._next[match.group(1)], int(match.group(2)))

    def for_span(self, span: Span) -> str:
        number = self._numbers.get((span.pii_type, span.key))
        if number is None and span.pii_type == "NAME":
            parts = span.key.split()
            number = next((self._numbers[("NAME", p)] for p in parts if ("NAME", p) in self._numbers), None)
        if number is None:
            self._next[span.pii_type] += 1
            number = self._next[span.pii_type]
        self._numbers[(span.pii_type, span.key)] = number
        if span.pii_type == "NAME":
            for part in span.key.split():
                if len(part) > 2:
                    self._numbers.setdefault(("NAME", part), number)
        return f"[{span.pii_type}_{number}]"


class Sanitizer:
    def __init__(self, config: SanitizerConfig | None = None) -> None:
        self.config = config or SanitizerConfig()

    def detect(self, text: str, known: Sequence[tuple[str, str]] = ()) -> list[Span]:
        """All PII spans in one text, overlaps resolved. ``known`` adds (type, value) from metadata."""
        spans: list[Span] = []
        for detector in PATTERN_DETECTORS:
            spans.extend(detector(text))
        spans.extend(find_phones(text, self.config.phone_regions))
        spans.extend(find_names(text))
        for pii_type, value in known:
            if len(value) < 2:
                continue
            for match in _word_pattern(value).finditer(text):
                spans.append(Span(match.start(), match.end(), pii_type, " ".join(value.lower().split())))
        # Text that is already a placeholder is never redacted again: sanitizing twice changes nothing.
        spans.extend(Span(m.start(), m.end(), "SECRET", "\x00placeholder") for m in PLACEHOLDER.finditer(text))
        # Inside a public link, digits (an archive timestamp, an article id) are not cards or phones and
        # a word ("support.google.com/youtube") is not a handle: a link that is personal is a URL span.
        links = [(m.start(), m.end()) for m in URL.finditer(text)]
        spans = [
            s
            for s in spans
            if s.pii_type in _TYPES_INSIDE_LINKS or not any(start <= s.start and s.end <= end for start, end in links)
        ]
        # A postcode ("75980-6834") or house number inside an address is part of the address, not a phone.
        addresses = [s for s in spans if s.pii_type == "ADDRESS"]
        spans = [
            s
            for s in spans
            if s.pii_type != "PHONE" or not any(a.start <= s.start and s.end <= a.end for a in addresses)
        ]
        resolved = _merge_adjacent_addresses(text, resolve_overlaps(spans))
        return [s for s in resolved if s.key != "\x00placeholder" and s.pii_type not in self.config.keep_types]

    def detect_conversation(self, texts: Sequence[str], known: Sequence[tuple[str, str]] = ()) -> list[list[Span]]:
        """The spans of every turn of one conversation, with names found in one turn looked for in all."""
        per_text = [self.detect(text, known) for text in texts]
        # A name found anywhere is redacted everywhere in the conversation ("Tobias" in a later turn
        # without a cue). Only names of 3+ letters: "Al" or an agent's initials would hit ordinary words.
        names = {s.key for spans in per_text for s in spans if s.pii_type == "NAME"}
        names.update(" ".join(value.lower().split()) for pii_type, value in known if pii_type == "NAME")
        names.update(part for key in list(names) for part in key.split())
        names = {n for n in names if len(n) >= 3 and n not in _NEVER_PROPAGATED}
        if names:
            for index, text in enumerate(texts):
                links = [(m.start(), m.end()) for m in URL.finditer(text)]
                extra = [
                    Span(m.start(), m.end(), "NAME", name)
                    for name in sorted(names)
                    for m in _word_pattern(name).finditer(text)
                    if not any(start <= m.start() < end for start, end in links)
                ]
                if extra:
                    per_text[index] = resolve_overlaps(per_text[index] + extra)
        return per_text

    def sanitize_texts(
        self, texts: Sequence[str], known: Sequence[tuple[str, str]] = ()
    ) -> tuple[list[str], Counter[str]]:
        """Sanitize the turns of one conversation together, so placeholders agree across turns."""
        per_text = self.detect_conversation(texts, known)
        placeholders = _Placeholders(texts)
        counts: Counter[str] = Counter()
        out: list[str] = []
        for text, spans in zip(texts, per_text, strict=True):
            pieces: list[str] = []
            cursor = 0
            for span in spans:
                pieces.append(text[cursor : span.start])
                pieces.append(placeholders.for_span(span))
                counts[span.pii_type] += 1
                cursor = span.end
            pieces.append(text[cursor:])
            out.append("".join(pieces))
        return out, counts

    def sanitize_conversation(self, conversation: Conversation) -> SanitizedConversation:
        texts, counts = self.sanitize_texts([t.text for t in conversation.turns], conversation.known_pii)
        # Distinct placeholders new to this conversation: "[NAME_1]" three times is one person removed.
        before = {m.group(0) for t in conversation.turns for m in PLACEHOLDER.finditer(t.text)}
        values = Counter(
            m.group(1)
            for m in {m.group(0): m for t in texts for m in PLACEHOLDER.finditer(t)}.values()
            if m.group(0) not in before
        )
        turns = tuple(
            replace(turn, text=text, speaker="") for turn, text in zip(conversation.turns, texts, strict=True)
        )
        # known_pii is raw PII: it must not travel further than the sanitizer.
        return SanitizedConversation(replace(conversation, turns=turns, known_pii=()), counts, values)


# Words too common to redact everywhere even if a cue once made them look like a name.
_NEVER_PROPAGATED = frozenset({"the", "and", "you", "for", "not", "can", "but", "all", "new", "one"})


def _merge_adjacent_addresses(text: str, spans: list[Span]) -> list[Span]:
    """A street and a postcode next to each other ("12 Baker Street, London NW1 6XE") are one address."""
    merged: list[Span] = []
    for span in spans:
        if (
            merged
            and span.pii_type == "ADDRESS"
            and merged[-1].pii_type == "ADDRESS"
            and re.fullmatch(r"[,\s]*(?:[A-Z][a-z]+[,\s]+)?", text[merged[-1].end : span.start])
        ):
            previous = merged.pop()
            merged.append(
                Span(
                    previous.start,
                    span.end,
                    "ADDRESS",
                    " ".join(text[previous.start : span.end].lower().split()),
                )
            )
        else:
            merged.append(span)
    return merged
