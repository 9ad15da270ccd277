"""A detected piece of PII: where it is, what type, and the value that keys its placeholder."""

from __future__ import annotations

from dataclasses import dataclass

# Types, most specific first. When two detections overlap, the one earlier here wins (a card number
# inside a URL is the URL's business; a phone-like run of a card number is the card's; an IBAN, checked
# by mod-97, holds card-like runs).
PII_TYPES: tuple[str, ...] = (
    "SECRET",
    "EMAIL",
    "URL",
    "IBAN",
    "CARD",
    "SSN",
    "NATIONAL_ID",
    "IP",
    "PHONE",
    "ADDRESS",
    "HANDLE",
    "NAME",
)
PRIORITY = {pii_type: rank for rank, pii_type in enumerate(PII_TYPES)}


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    pii_type: str
    # What identifies the same thing across mentions: "+14155550132" for "(415) 555-0132" and
    # "415.555.0132", "sarah" for "Sarah" and "SARAH". Placeholders are numbered per key.
    key: str

    def overlaps(self, other: Span) -> bool:
        return self.start < other.end and other.start < self.end


def resolve_overlaps(spans: list[Span]) -> list[Span]:
    """Keep a non-overlapping set: higher-priority type first, then the longer span."""
    chosen: list[Span] = []
    for span in sorted(spans, key=lambda s: (PRIORITY[s.pii_type], -(s.end - s.start), s.start)):
        if not any(span.overlaps(kept) for kept in chosen):
            chosen.append(span)
    return sorted(chosen, key=lambda s: s.start)
