"""What kind of 👎 a vote is. The reason modal offers these kinds; votes from before it (or with only a free
text) are classified from their words, so "the policy changed last year" still counts as outdated."""

from __future__ import annotations

import re

KINDS: dict[str, str] = {
    "wrong": "The answer is wrong",
    "outdated": "The article is out of date",
    "incomplete": "Something is missing",
    "off_topic": "It answered another question",
    "other": "Something else",
}
# Kinds that say the cited article itself needs an edit ("Articles to review").
ARTICLE_KINDS = ("wrong", "outdated")

_PATTERNS = [
    ("outdated", re.compile(r"\b(out[ -]?of[ -]?date|outdated|obsolete|no longer|not anymore|old (policy|info|"
                            r"article|version)|changed|deprecated|stale)\b", re.I)),
    ("wrong", re.compile(r"\b(wrong|incorrect|not (true|correct|right)|inaccurate|false|mistake|error in)\b",
                         re.I)),
    ("incomplete", re.compile(r"\b(incomplete|missing|partial|not enough|more detail)", re.I)),
    ("off_topic", re.compile(r"\b(not what i asked|different question|irrelevant|off[ -]topic|didn'?t answer)",
                             re.I)),
]


def classify_reason(reason: str | None) -> str | None:
    """The kind a free-text reason names, `other` when it names none, None when there is no reason."""
    if not reason or not reason.strip():
        return None
    for kind, pattern in _PATTERNS:
        if pattern.search(reason):
            return kind
    return "other"
