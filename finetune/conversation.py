"""The one shape every reader produces and every later stage consumes."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class Turn:
    role: Role
    text: str
    # Who spoke in the source (user id, handle, agent name). Never written to the training files:
    # it is raw PII and only serves the role mapping and its report.
    speaker: str = ""
    timestamp: str = ""


@dataclass(frozen=True)
class Conversation:
    conversation_id: str
    turns: tuple[Turn, ...]
    source: str = ""  # "file:line" or "folder/channel", for messages about this conversation
    # PII the reader knows from metadata (speakers' handles and real names), as (type, value):
    # the sanitizer redacts these wherever they appear, which catches what patterns cannot.
    known_pii: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class ReadProblem:
    """A malformed line/row/file that a reader skipped: reported with its location, never silently."""

    location: str
    reason: str


@dataclass
class ReadResult:
    conversations: list[Conversation] = field(default_factory=list)
    problems: list[ReadProblem] = field(default_factory=list)
    # How speakers were mapped to roles, e.g. {"agent (Slack user in agent list)": 12, ...}:
    # the mapping is explicit and reported, as the issue asks.
    role_mapping: Counter[str] = field(default_factory=Counter)

    def extend(self, other: ReadResult) -> None:
        self.conversations.extend(other.conversations)
        self.problems.extend(other.problems)
        self.role_mapping.update(other.role_mapping)


def identity_pii(value: str) -> tuple[str, str] | None:
    """Classify a speaker identity from metadata: "Sarah Connor" is a NAME, "sarah_c92" a HANDLE."""
    value = value.strip().lstrip("@")
    if len(value) < 2:
        return None
    if all(part.isalpha() for part in value.replace("-", " ").replace("'", " ").split()):
        return ("NAME", value)
    return ("HANDLE", value)
