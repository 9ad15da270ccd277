"""Chat-log readers: each turns one export format into ``Conversation``s plus the problems it skipped.

Formats: ``openai`` (chat fine-tuning JSONL), ``csv`` (Zendesk/Intercom-style transcripts), ``slack``
(an export folder) and ``twitter`` (support threads as a JSON list with dialogContent). ``detect_format``
infers the format from the path when the user does not name one.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from finetune.conversation import ReadResult
from finetune.errors import InputError
from finetune.readers.csv_transcripts import read_csv_transcripts
from finetune.readers.openai_jsonl import read_openai_jsonl
from finetune.readers.slack_export import SlackAgents, read_slack_export
from finetune.readers.twitter_threads import read_twitter_threads

FORMATS = ("openai", "csv", "slack", "twitter")


def detect_format(path: Path) -> str:
    if path.is_dir():
        return "slack"
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return "openai"
    if suffix in {".csv", ".tsv"}:
        return "csv"
    if suffix == ".json":
        # Peek only at the opening bytes: a list of dicts with dialogContent is the support-threads shape.
        with path.open("r", encoding="utf-8", errors="replace") as handle:
            head = handle.read(4096)
        if head.lstrip().startswith("[") and "dialogContent" in head:
            return "twitter"
        if head.lstrip().startswith("{") and '"messages"' in head:
            return "openai"
    raise InputError(f"Cannot tell the format of {path}: name it with --format ({', '.join(FORMATS)}).")


def read_inputs(
    paths: Sequence[Path],
    fmt: str | None = None,
    *,
    slack_agents: SlackAgents | None = None,
    csv_agents: frozenset[str] = frozenset(),
) -> ReadResult:
    result = ReadResult()
    for path in paths:
        if not path.exists():
            raise InputError(f"Input {path} does not exist.")
        chosen = fmt or detect_format(path)
        if chosen == "openai":
            result.extend(read_openai_jsonl(path))
        elif chosen == "csv":
            result.extend(read_csv_transcripts(path, agent_names=csv_agents))
        elif chosen == "slack":
            if slack_agents is None or slack_agents.is_empty():
                raise InputError(
                    f"{path} is a Slack export: say who the agents are with --agent-ids U1,U2 "
                    "or --agent-group (a user group in the export's usergroups.json)."
                )
            result.extend(read_slack_export(path, slack_agents))
        elif chosen == "twitter":
            result.extend(read_twitter_threads(path))
        else:
            raise InputError(f"Unknown format {chosen!r}: use one of {', '.join(FORMATS)}.")
    return result


__all__ = ["FORMATS", "SlackAgents", "detect_format", "read_inputs"]
