"""A Slack export folder: ``users.json``, ``channels.json`` and ``<channel>/YYYY-MM-DD.json`` day files.

A conversation is a thread (the root message and its replies); a top-level message nobody answered in a
thread is a conversation of one turn and is dropped later for having no agent reply. Agents are named by
Slack user id or by a user group from ``usergroups.json``; every other human is the user. Bot messages and
channel events (joins, topic changes) are skipped and counted.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from finetune.conversation import Conversation, ReadProblem, ReadResult, Turn, identity_pii
from finetune.errors import InputError

logger = logging.getLogger(__name__)

_DAY_FILE = re.compile(r"^\d{4}-\d{2}-\d{2}\.json$")
_MENTION = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^>]*)?>")
_KEPT_SUBTYPES = {None, "thread_broadcast", "file_share", "me_message"}


@dataclass(frozen=True)
class SlackAgents:
    user_ids: frozenset[str] = frozenset()
    group: str | None = None  # id or handle of a user group listed in usergroups.json

    def is_empty(self) -> bool:
        return not self.user_ids and not self.group


def _load_json(path: Path, result: ReadResult) -> object | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        result.problems.append(ReadProblem(str(path), f"unreadable JSON ({exc})"))
        return None


def _resolve_agents(folder: Path, agents: SlackAgents, result: ReadResult) -> frozenset[str]:
    ids = set(agents.user_ids)
    if agents.group:
        groups = (
            _load_json(folder / "usergroups.json", result) if (folder / "usergroups.json").exists() else None
        )
        match = [
            g
            for g in groups or []
            if isinstance(g, dict) and agents.group in (g.get("id"), g.get("handle"), g.get("name"))
        ]
        if not match:
            raise InputError(
                f"User group {agents.group!r} is not in {folder / 'usergroups.json'}: "
                "pass the agents' user ids with --agent-ids instead."
            )
        ids.update(str(u) for u in match[0].get("users", []))
    return frozenset(ids)


def _user_names(folder: Path, result: ReadResult) -> dict[str, set[str]]:
    names: dict[str, set[str]] = {}
    users = _load_json(folder / "users.json", result) if (folder / "users.json").exists() else []
    for user in users if isinstance(users, list) else []:
        if not isinstance(user, dict) or "id" not in user:
            continue
        profile = user.get("profile") or {}
        found = {
            user.get("name"),
            user.get("real_name"),
            profile.get("real_name"),
            profile.get("display_name"),
        }
        names[str(user["id"])] = {str(n) for n in found if n}
    return names


def read_slack_export(folder: Path, agents: SlackAgents) -> ReadResult:
    result = ReadResult()
    agent_ids = _resolve_agents(folder, agents, result)
    names = _user_names(folder, result)
    channels = sorted(p for p in folder.iterdir() if p.is_dir())
    if not channels:
        raise InputError(f"{folder} has no channel folders: is it an unzipped Slack export?")
    for channel in channels:
        threads: dict[str, list[dict[str, object]]] = {}
        for day_file in sorted(p for p in channel.iterdir() if _DAY_FILE.match(p.name)):
            messages = _load_json(day_file, result)
            if not isinstance(messages, list):
                if messages is not None:
                    result.problems.append(ReadProblem(str(day_file), "not a list of messages"))
                continue
            for index, message in enumerate(messages):
                location = f"{day_file}#{index}"
                if not isinstance(message, dict) or "ts" not in message:
                    result.problems.append(ReadProblem(location, "message without ts"))
                    continue
                subtype = message.get("subtype")
                if subtype not in _KEPT_SUBTYPES or message.get("bot_id"):
                    result.role_mapping[f"subtype {subtype or 'bot'} -> skipped"] += 1
                    continue
                if not message.get("user") or not str(message.get("text", "")).strip():
                    result.problems.append(ReadProblem(location, "message without user or text"))
                    continue
                root = str(message.get("thread_ts") or message["ts"])
                threads.setdefault(root, []).append(message)
        for root, messages in sorted(threads.items()):
            messages.sort(key=lambda m: float(str(m["ts"])))
            turns: list[Turn] = []
            known: set[tuple[str, str]] = set()
            for message in messages:
                user = str(message["user"])
                role = "assistant" if user in agent_ids else "user"
                result.role_mapping[
                    f"user {'in' if role == 'assistant' else 'not in'} agent list -> {role}"
                ] += 1
                turns.append(Turn(role, str(message["text"]), user, str(message["ts"])))
                mentioned = _MENTION.findall(str(message["text"]))
                for uid in (user, *mentioned):
                    known.update(p for n in names.get(uid, ()) if (p := identity_pii(n)))
            result.conversations.append(
                Conversation(
                    f"{channel.name}/{root}",
                    tuple(turns),
                    source=f"{channel}/{root}",
                    known_pii=tuple(sorted(known)),
                )
            )
    logger.info(
        "read %s threads from %s (%s problems)", len(result.conversations), folder, len(result.problems)
    )
    return result
