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
# Digit runs shaped like a phone number: 7-15 digits in groups, an optional "+44"/"0044"/"(0)" and an
# extension ("x123", "ext. 12"), for the pass that does not need a number plan.
_PHONE_LIKE = re.compile(
    r"(?<![\w+.,/-])(?:\+[ \t]?|00)?\(?\d[\d \t().\-/]{5,20}\d"
    r"(?:[ \t]?(?:x|ext\.?|extension|#)[ \t]?\d{1,6})?(?![\w]|[.,/-]\d)"
)
_EXTENSION = re.compile(r"[ \t]?(?:x|ext\.?|extension|#)[ \t]?\d{1,6}$")
_EXTENSION_AFTER = re.compile(r"[ \t]?(?:x|ext\.?|extension)[ \t]?\d{1,6}(?![\w])")
# Dates and times are not numbers to call: "2024-03-15", "15.03.2024", "2011-06-09 06".
_DATE = re.compile(r"^(?:(?:19|20)\d\d[-./]\d\d?[-./]\d\d?|\d\d?[-./]\d\d?[-./](?:19|20)\d\d)(?:\s|$)")
_IPV4_SHAPED = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")
_VERSION_BEFORE = re.compile(r"(?i)\b(?:version|ver\.?|v|build|release|firmware|update|patch|ios|android)\s*$")
_MONEY_AROUND = re.compile(r"[$€£¥₹]\s*$|^\s*(?:kr|eur|usd|gbp|chf|sek|nok|dkk|pln|huf|czk|€|\$)\b", re.IGNORECASE)
_CUE_WINDOW = 40


def _key(number: phonenumbers.PhoneNumber) -> str:
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)


# "ticket number 123-45-67890" is not a phone cue.
_NOT_PHONE_CUE = re.compile(
    r"(?i)\b(?:ticket|order|case|reference|ref|tracking|confirmation|account|serial|model|invoice|claim|"
    r"transaction|booking|reservation|member(?:ship)?|policy|id)\s*(?:number|no\.?|#)?\s*(?:is|:)?\s*$"
)


_ID_NEAR_END = re.compile(
    r"(?i)\b(?:ticket|order|case|reference|tracking|confirmation|serial|invoice|transaction|account|"
    r"member(?:ship)?|policy|model)\s*$"
)
_ID_NEAR = re.compile(r"(?i)\b(?:ticket|order|case|reference|tracking|confirmation|serial|invoice|transaction)\b")


def _personal(number: phonenumbers.PhoneNumber) -> bool:
    """Toll-free numbers belong to businesses (a support line), not to a person: they stay."""
    return phonenumbers.number_type(number) != phonenumbers.PhoneNumberType.TOLL_FREE


def find_phones(text: str, regions: Sequence[str] = ("US", "GB")) -> Iterator[Span]:
    if sum(c.isdigit() for c in text) < 7:
        return  # most turns have no number at all: skip the matcher's work
    seen: set[tuple[int, int]] = set()
    for region in regions:
        for match in PhoneNumberMatcher(text, region, leniency=Leniency.VALID):
            if (match.start, match.end) in seen:
                continue
            seen.add((match.start, match.end))
            if not _personal(match.number) or _not_a_phone(text, match.start, match.raw_string):
                continue
            extension = _EXTENSION_AFTER.match(text, match.end)
            end = extension.end() if extension else match.end
            yield Span(match.start, end, "PHONE", _key(match.number))
    for match in _PHONE_LIKE.finditer(text):
        raw = match.group(0).rstrip(" .-/(")
        start, end = match.start(), match.start() + len(raw)
        if any(s < end and start < e for s, e in seen):
            continue
        window = text[max(0, start - _CUE_WINDOW) : start]
        if _not_a_phone(text, start, raw):
            continue
        number = _EXTENSION.sub("", raw)
        digits = re.sub(r"\D", "", number)
        if not 7 <= len(digits) <= 15:
            continue
        # "call me" is a cue; the "number" of "ticket number" is not.
        cued = any(not _ID_NEAR_END.search(window[: m.start()]) for m in _PHONE_CUE.finditer(window))
        if not cued and not _looks_dialled(number, digits):
            continue
        if (
            not cued
            and not number.startswith(("+", "("))
            and len(re.findall(r"\d+", number)) == 1
            and _ID_NEAR.search(window)
        ):
            continue  # "the ticket number for the studio. 1283104957": an id named just before
        seen.add((start, end))
        yield Span(start, end, "PHONE", _loose_key(number, digits, regions))


def _not_a_phone(text: str, start: int, raw: str) -> bool:
    """An order id ("ORD-2024-150078"), a version ("build 19.0.16523.808"), a date or a price."""
    window = text[max(0, start - _CUE_WINDOW) : start]
    end = start + len(raw)
    return bool(
        _IPV4_SHAPED.fullmatch(raw)
        or re.search(r"[\w][-/#]$", window)
        or _NOT_PHONE_CUE.search(window)
        or _VERSION_BEFORE.search(window)
        or _DATE.match(raw.lstrip("("))
        or _MONEY_AROUND.search(window[-3:])
        or _MONEY_AROUND.search(text[end : end + 5])
    )


def _looks_dialled(number: str, digits: str) -> bool:
    """Without a cue, only what is written the way phone numbers are: international, trunk-prefixed or
    grouped like one. A bare run of digits could be any id."""
    if number.startswith(("+", "00", "(")):
        return len(digits) >= 8
    groups = re.findall(r"\d+", number)
    if len(groups) == 1:
        return digits.startswith("0") and len(digits) >= 9
    if "." in number and not re.fullmatch(r"\d{2,4}(?:\.\d{2,4}){2,4}", number):
        return False
    # Groups of 2-4 digits (and a 5-8 digit subscriber part): "0177-763170", "387.405.4790", "29 21 93 59".
    return len(digits) >= 8 and all(len(g) <= 8 for g in groups) and len(groups) <= 6


def _loose_key(number: str, digits: str, regions: Sequence[str]) -> str:
    """The same number written twice gets one placeholder: E.164 when a plan knows it, else the digits."""
    for region in regions:
        try:
            return _key(phonenumbers.parse(number, region))
        except phonenumbers.NumberParseException:
            continue
    return digits
