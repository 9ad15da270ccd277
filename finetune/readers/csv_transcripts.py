"""CSV transcripts, one row per message: conversation id, speaker/role, timestamp, text.

Zendesk, Intercom, Freshdesk and Front exports all come down to this shape with different column names,
so columns are found by alias. Roles come from a role column (``agent``/``customer``...) or, when there is
none, from ``--agent`` names matched against the speaker column. Rows keep the file's order: exports are
already chronological and timestamps come in too many formats to re-sort safely.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

from finetune.conversation import Conversation, ReadProblem, ReadResult, Role, Turn, identity_pii
from finetune.errors import InputError

logger = logging.getLogger(__name__)

_ID_COLUMNS = ("conversation_id", "conversation", "ticket_id", "ticket", "thread_id", "chat_id", "session_id")
_ROLE_COLUMNS = ("role", "speaker_role", "author_type", "sender_type", "speaker_type", "from")
_NAME_COLUMNS = ("speaker", "author", "author_name", "sender", "sender_name", "name", "agent_name")
_TEXT_COLUMNS = ("text", "message", "body", "content", "comment", "plain_body")
_TIME_COLUMNS = ("timestamp", "time", "created_at", "date", "datetime", "sent_at")

_ASSISTANT_ROLES = {"agent", "admin", "operator", "support", "staff", "assistant", "teammate", "rep"}
_USER_ROLES = {
    "customer",
    "user",
    "end-user",
    "end_user",
    "enduser",
    "visitor",
    "lead",
    "contact",
    "requester",
    "client",
}
# Bot messages are the helpdesk's auto-replies and internal notes are not said to the customer:
# neither is the support team's voice, so they are skipped and counted.
_SKIPPED_ROLES = {"bot", "system", "note", "internal", "internal_note", "automation"}


def _pick(header: list[str], aliases: tuple[str, ...]) -> str | None:
    normalized = {column.strip().lower().replace(" ", "_"): column for column in header}
    for alias in aliases:
        if alias in normalized:
            return normalized[alias]
    return None


def read_csv_transcripts(path: Path, agent_names: frozenset[str] = frozenset()) -> ReadResult:
    result = ReadResult()
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    agents = {name.strip().lower() for name in agent_names}
    with path.open("r", encoding="utf-8-sig", errors="replace", newline="") as handle:
        reader = csv.DictReader(handle, delimiter=delimiter)
        header = list(reader.fieldnames or [])
        id_col, text_col = _pick(header, _ID_COLUMNS), _pick(header, _TEXT_COLUMNS)
        role_col, name_col, time_col = (
            _pick(header, _ROLE_COLUMNS),
            _pick(header, _NAME_COLUMNS),
            _pick(header, _TIME_COLUMNS),
        )
        if id_col is None or text_col is None:
            raise InputError(
                f"{path}: needs a conversation id column ({', '.join(_ID_COLUMNS)}) and a text column "
                f"({', '.join(_TEXT_COLUMNS)}); found {', '.join(header) or 'no header'}."
            )
        if role_col is None and (name_col is None or not agents):
            raise InputError(
                f"{path}: no role column ({', '.join(_ROLE_COLUMNS)}): name the agents with --agent NAME "
                "so their rows can be told from the customers'."
            )
        grouped: dict[str, list[Turn]] = {}
        first_line: dict[str, int] = {}
        known: dict[str, set[tuple[str, str]]] = {}
        for row in reader:
            line = reader.line_num
            location = f"{path}:{line}"
            if None in row:  # more cells than header columns: a broken quote or delimiter
                result.problems.append(ReadProblem(location, "more cells than the header has columns"))
                continue
            conversation_id = (row.get(id_col) or "").strip()
            text = row.get(text_col) or ""
            if not conversation_id:
                result.problems.append(ReadProblem(location, f"empty {id_col}"))
                continue
            if not text.strip():
                result.problems.append(ReadProblem(location, f"empty {text_col}"))
                continue
            speaker = (row.get(name_col) or "").strip() if name_col else ""
            role: Role | None
            if role_col is not None:
                raw_role = (row.get(role_col) or "").strip().lower()
                if raw_role in _SKIPPED_ROLES:
                    result.role_mapping[f"{role_col}={raw_role} -> skipped"] += 1
                    continue
                role = (
                    "assistant"
                    if raw_role in _ASSISTANT_ROLES
                    else "user"
                    if raw_role in _USER_ROLES
                    else None
                )
                if role is None:
                    result.problems.append(ReadProblem(location, f"unknown {role_col} {raw_role!r}"))
                    continue
                result.role_mapping[f"{role_col}={raw_role} -> {role}"] += 1
            else:
                role = "assistant" if speaker.lower() in agents else "user"
                how = "in --agent list" if role == "assistant" else "not in --agent list"
                result.role_mapping[f"{name_col} {how} -> {role}"] += 1
            timestamp = (row.get(time_col) or "").strip() if time_col else ""
            grouped.setdefault(conversation_id, []).append(Turn(role, text, speaker, timestamp))
            first_line.setdefault(conversation_id, line)
            if speaker and (pii := identity_pii(speaker)):
                known.setdefault(conversation_id, set()).add(pii)
    for conversation_id, turns in grouped.items():
        result.conversations.append(
            Conversation(
                conversation_id,
                tuple(turns),
                source=f"{path}:{first_line[conversation_id]}",
                known_pii=tuple(sorted(known.get(conversation_id, ()))),
            )
        )
    logger.info(
        "read %s conversations from %s (%s problems)", len(result.conversations), path, len(result.problems)
    )
    return result
