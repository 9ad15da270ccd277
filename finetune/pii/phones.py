"""Phone numbers, by Google's libphonenumber (the ``phonenumbers`` port).

International numbers (+44 ..., 0044 ...) are found whatever the region. National formats depend on the
region, so only the configured regions' are tried with ``Leniency.VALID`` (the number must exist in that
region's plan). A phone cue ("call me", "my number", "tel") lowers the bar to ``POSSIBLE`` in any
region: a customer who writes "my cell is 0612 345 678" means it even when the plan says otherwise.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence

import phonenumbers
from phonenumbers import Leniency, PhoneNumberFormat, PhoneNumberMatcher

from finetune.pii.spans import Span

_PHONE_CUE = re.compile(
    r"(?i)\b(?:call|ring|phone|tel|telephone|mobile|cell|cellphone|whatsapp|sms|text\s+me|number|no\.|contact|"
    r"fax|reach\s+me|dial)\b"
)
# Digit runs shaped like a phone number (7-15 digits, usual separators), for the cue-based pass.
_PHONE_LIKE = re.compile(r"(?<![\w+])(?:\+|00)?\(?\d[\d\s().-]{5,18}\d(?![\w])")
_CUE_WINDOW = 40


def _key(number: phonenumbers.PhoneNumber) -> str:
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)


# "ticket number 123-45-67890" is not a phone cue.
_NOT_PHONE_CUE = re.compile(
    r"(?i)\b(?:ticket|order|case|reference|ref|tracking|confirmation|account|serial|model|invoice|claim|"
    r"transaction|booking|reservation|member(?:ship)?|policy|id)\s*(?:number|no\.?|#)?\s*(?:is|:)?\s*$"
)


def _personal(number: phonenumbers.PhoneNumber) -> bool:
    """Toll-free numbers belong to businesses (a support line), not to a person: they stay."""
    return phonenumbers.number_type(number) != phonenumbers.PhoneNumberType.TOLL_FREE


def find_phones(text: str, regions: Sequence[str] = ("US", "GB")) -> Iterator[Span]:
    if sum(c.isdigit() for c in text) < 7:
        return  # most turns have no number at all: skip the matcher's work
    seen: set[tuple[int, int]] = set()
    for region in regions:
        for match in PhoneNumberMatcher(text, region, leniency=Leniency.VALID):
            if (match.start, match.end) not in seen:
                seen.add((match.start, match.end))
                if not _personal(match.number):
                    continue
                yield Span(match.start, match.end, "PHONE", _key(match.number))
    for match in _PHONE_LIKE.finditer(text):
        if any(s <= match.start() < e for s, e in seen):
            continue
        window = text[max(0, match.start() - _CUE_WINDOW) : match.start()]
        if not _PHONE_CUE.search(window) or _NOT_PHONE_CUE.search(window):
            continue
        digits = re.sub(r"\D", "", match.group(0))
        if not 7 <= len(digits) <= 15 or re.fullmatch(
            r"(?:19|20)\d\d[-./]\d\d?[-./]\d\d?", match.group(0).strip()
        ):
            continue  # dates are not numbers to call
        for region in (*regions, "IN", "DE", "FR", "AU"):
            found = next(iter(PhoneNumberMatcher(match.group(0), region, leniency=Leniency.POSSIBLE)), None)
            if found is not None and _personal(found.number):
                start = match.start() + found.start
                yield Span(start, start + len(found.raw_string), "PHONE", _key(found.number))
                break
