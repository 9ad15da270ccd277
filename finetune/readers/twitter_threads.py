"""Support threads from Twitter: a JSON list of {dialogHeader, dialogContent, agentURL}.

``dialogHeader.company`` is the brand's support account. A turn is the agent's when its key is ``agent`` or
its author is that account; every other author (``client``, ``client1``, the brand's marketing account) is
the user. ``agentURL.url_utterance`` is the agent reply that closed the thread. The leading run of
@mentions is Twitter's reply addressing, not what anyone said, so it is cut before the text goes on.
"""

from __future__ import annotations

import html
import json
import logging
import re
from pathlib import Path

from finetune.conversation import Conversation, ReadProblem, ReadResult, Turn
from finetune.errors import InputError

logger = logging.getLogger(__name__)

_LEADING_MENTIONS = re.compile(r"^(?:\s*@\w{1,15})+\s*")


def _strip_addressing(text: str) -> str:
    # Tweets come HTML-escaped ("AT&amp;T"); the model should learn the text people read.
    return html.unescape(_LEADING_MENTIONS.sub("", text, count=1)).strip()


def read_twitter_threads(path: Path) -> ReadResult:
    result = ReadResult()
    try:
        threads = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path} is not readable JSON: {exc}") from exc
    if not isinstance(threads, list):
        raise InputError(f"{path}: expected a JSON list of threads.")
    for index, thread in enumerate(threads):
        location = f"{path}#{index}"
        try:
            header = thread["dialogHeader"]
            company = str(header["company"])
            session = str(header.get("sessionID") or index)
            content = thread["dialogContent"]
        except (KeyError, TypeError):
            result.problems.append(ReadProblem(location, "missing dialogHeader/dialogContent"))
            continue
        turns: list[Turn] = []
        authors: set[str] = set()
        for entry in content if isinstance(content, list) else []:
            if not isinstance(entry, dict) or not isinstance(entry.get("message"), str):
                result.problems.append(ReadProblem(location, "dialogContent entry without message"))
                continue
            author_key = next((k for k in ("agent", "client", "client1", "client2") if k in entry), None)
            author = str(entry.get(author_key, "")) if author_key else ""
            role = "assistant" if author_key == "agent" or author == company else "user"
            result.role_mapping[
                f"{author_key or 'no author'} {'= support account' if author == company else ''}"
                f" -> {role}".replace("  ", " ")
            ] += 1
            if author:
                authors.add(author)
            turns.append(
                Turn(role, _strip_addressing(entry["message"]), author, str(entry.get("datetime", "")))
            )
        closing = (thread.get("agentURL") or {}).get("url_utterance")
        if isinstance(closing, str) and closing.strip():
            result.role_mapping["agentURL.url_utterance -> assistant"] += 1
            turns.append(Turn("assistant", _strip_addressing(closing), company))
        # The customers' own handles are redacted wherever they appear, even without "@". Mentions of
        # other accounts are redacted by the @handle pattern where they are written with "@"; taking them
        # as bare words too would also blank "YouTube" or "Zoom" in ordinary sentences.
        known = tuple(sorted(("HANDLE", h) for h in authors if h and h != company))
        result.conversations.append(Conversation(f"{company}/{session}", tuple(turns), location, known))
    if not result.conversations and not result.problems:
        raise InputError(f"{path} holds no threads.")
    logger.info(
        "read %s threads from %s (%s problems)", len(result.conversations), path, len(result.problems)
    )
    return result
