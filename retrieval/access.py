"""Who may read what: article audiences and reader scopes.

An article's audience is a short list of tokens, stored on the article and copied onto its chunks and
vectors so that every search branch filters on it in SQL:

    ("public",)            anyone, including guests and people of other organisations
    ("everyone",)          every full member of the workspace (the default of a source)
    ("S0HR", "S0LEGAL")    members of any of these Slack user groups (ids, not handles: handles get renamed)
    ()                     held back: indexed, never answered (the source restricts it to people kbbot
                           cannot map to Slack, e.g. an unmapped Zendesk segment); `articles.held_back`
                           says why

A reader's scope is the set of tokens they hold: a guest or an external user holds only `public`, a full
member also `everyone` plus the ids of the Slack groups they belong to. A passage is readable when its
audience and the scope share a token (SQL `audience && scope`), so an empty audience matches nobody.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

PUBLIC = "public"
EVERYONE = "everyone"
DEFAULT_AUDIENCE: tuple[str, ...] = (EVERYONE,)
_GROUP_ID = re.compile(r"^S[A-Z0-9]{2,}$")
AUDIENCE_HELP = ("an audience is `public`, `everyone`, or a list of Slack user-group ids (S0123ABCD; "
                 "find them under People > User groups, or with usergroups.list)")


class AudienceError(ValueError):
    """An audience value that is neither `public`, `everyone` nor Slack user-group ids."""


def parse_audience(value: object) -> tuple[str, ...]:
    """Normalise an audience from a config file, front matter, JSONL field or command line.

    Accepts `public`, `everyone`, a group id, a comma-separated string of group ids, or a list of them.
    `public` or `everyone` in a list stands for the whole list (it already includes every group)."""
    if isinstance(value, str):
        items = [part.strip() for part in value.split(",")]
    elif isinstance(value, list | tuple):
        items = [str(part).strip() if isinstance(part, str) else part for part in value]
    else:
        raise AudienceError(f"must be text or a list, not {type(value).__name__}; {AUDIENCE_HELP}")
    tokens: list[str] = []
    for item in items:
        if not isinstance(item, str) or not item:
            raise AudienceError(f"has an empty or non-text entry; {AUDIENCE_HELP}")
        lowered = item.lower()
        if lowered in (PUBLIC, EVERYONE):
            tokens.append(lowered)
        elif _GROUP_ID.match(item):
            tokens.append(item)
        else:
            raise AudienceError(f"{item!r} is not an audience; {AUDIENCE_HELP}")
    if not tokens:
        raise AudienceError(f"is empty; {AUDIENCE_HELP}")
    if PUBLIC in tokens:
        return (PUBLIC,)
    if EVERYONE in tokens:
        return (EVERYONE,)
    return tuple(sorted(set(tokens)))


def audience_field(value: object, where: str) -> tuple[tuple[str, ...] | None, str | None]:
    """(audience, held_back) from an article's own `audience` field: absent is the source's default; an
    invalid one holds the article back (a typo must not widen who reads it) and says why."""
    if value is None:
        return None, None
    try:
        return parse_audience(value), None
    except AudienceError as exc:
        return (), f"its {where} {exc}"


def describe_audience(audience: Iterable[str]) -> str:
    tokens = tuple(audience)
    if not tokens:
        return "nobody (held back)"
    if tokens == (PUBLIC,):
        return "public (anyone, guests and other organisations included)"
    if tokens == (EVERYONE,):
        return "everyone (full members of the workspace)"
    return "members of " + ", ".join(tokens)


@dataclass(frozen=True)
class ReaderScope:
    """The audience tokens every reader of one answer holds, and why (shown to admins and in notes).

    `degraded` is set when the scope was narrowed because Slack could not say who is reading: the answer
    then tells the asker so."""

    tokens: frozenset[str]
    reason: str
    degraded: bool = False

    @staticmethod
    def public(reason: str, *, degraded: bool = False) -> ReaderScope:
        return ReaderScope(frozenset({PUBLIC}), reason, degraded)

    @staticmethod
    def member(groups: Iterable[str], reason: str) -> ReaderScope:
        return ReaderScope(frozenset({PUBLIC, EVERYONE, *groups}), reason)

    @staticmethod
    def of_audience(audience: Iterable[str], reason: str) -> ReaderScope:
        """The scope of readers declared to be an audience (a channel profile): `public` readers hold only
        public, `everyone` the members' tokens, groups the members' tokens plus those groups."""
        tokens = tuple(audience)
        if tokens == (PUBLIC,):
            return ReaderScope.public(reason)
        return ReaderScope.member([t for t in tokens if t != EVERYONE], reason)

    def intersect(self, other: ReaderScope, reason: str) -> ReaderScope:
        return ReaderScope(self.tokens & other.tokens, reason, self.degraded or other.degraded)

    def may_read(self, audience: Iterable[str]) -> bool:
        return not self.tokens.isdisjoint(audience)

    @property
    def sql_tokens(self) -> list[str]:
        """Sorted, so equal scopes give equal statements."""
        return sorted(self.tokens)

    @property
    def groups(self) -> list[str]:
        return sorted(t for t in self.tokens if t not in (PUBLIC, EVERYONE))

    def describe(self) -> str:
        if self.tokens == {PUBLIC}:
            kind = "public articles only"
        elif self.groups:
            kind = "public and everyone articles, and those of " + ", ".join(self.groups)
        else:
            kind = "public and everyone articles"
        return f"{kind} ({self.reason})"
