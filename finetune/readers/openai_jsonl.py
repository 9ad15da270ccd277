"""OpenAI chat fine-tuning JSONL: one ``{"messages": [{"role", "content"}, ...]}`` per line."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from finetune.conversation import Conversation, ReadProblem, ReadResult, Turn, identity_pii

logger = logging.getLogger(__name__)

_ROLES = {"user": "user", "assistant": "assistant"}


def _content_text(content: object) -> str | None:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: keep the text ones, images cannot be trained here
        texts = [
            part.get("text", "") for part in content if isinstance(part, dict) and part.get("type") == "text"
        ]
        return "\n".join(t for t in texts if isinstance(t, str)) or None
    return None


def read_openai_jsonl(path: Path) -> ReadResult:
    result = ReadResult()
    with path.open("r", encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            location = f"{path}:{number}"
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                result.problems.append(ReadProblem(location, f"not JSON ({exc.msg})"))
                continue
            messages = record.get("messages") if isinstance(record, dict) else None
            if not isinstance(messages, list) or not messages:
                result.problems.append(ReadProblem(location, "no `messages` list"))
                continue
            turns: list[Turn] = []
            bad = ""
            for index, message in enumerate(messages):
                if not isinstance(message, dict):
                    bad = f"message {index} is not an object"
                    break
                role = message.get("role")
                text = _content_text(message.get("content"))
                if role == "system":
                    # The builder writes its own tone prompt: a source system prompt is not the agents voice.
                    result.role_mapping["system message (replaced by the tone prompt)"] += 1
                    continue
                if role not in _ROLES:
                    bad = f"message {index} has unknown role {role!r}"
                    break
                if text is None:
                    bad = f"message {index} has no text content"
                    break
                result.role_mapping[f"role {role} -> {_ROLES[role]}"] += 1
                turns.append(Turn(role=_ROLES[role], text=text, speaker=str(message.get("name", ""))))  # type: ignore[arg-type]
            if bad:
                result.problems.append(ReadProblem(location, bad))
                continue
            names = tuple(filter(None, (identity_pii(t.speaker) for t in turns if t.speaker)))
            result.conversations.append(
                Conversation(f"{path.name}:{number}", tuple(turns), source=location, known_pii=names)
            )
    logger.info(
        "read %s conversations from %s (%s problems)", len(result.conversations), path, len(result.problems)
    )
    return result
