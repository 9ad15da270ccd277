"""From read conversations to training examples: sanitize, clean, filter, dedupe, split.

Sanitizing comes first: every later step, and everything written, sees placeholders only. Each dropped
conversation is counted under one reason, in the order the checks run, so the report adds up.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from finetune.conversation import Conversation, Turn
from finetune.dedupe import NearDuplicateFilter
from finetune.pii.sanitizer import Sanitizer
from finetune.validate import example_tokens
from retrieval.tokens import TokenCounter, default_counter

logger = logging.getLogger(__name__)

DEFAULT_SYSTEM_PROMPT = (
    "You are the company's support assistant. Answer in the support team's voice: warm, brief and "
    "concrete. Greet the person, acknowledge the problem in one sentence, give the next step plainly, and "
    "offer further help. Answer only from the passages you are given and cite them; if they do not "
    "answer the question, say so and point to a human."
)

# Messages a helpdesk sends by itself: not the team's voice, and identical across thousands of threads.
AUTO_REPLY = re.compile(
    r"(?i)\b(?:this\s+is\s+an\s+auto(?:mated|matic)?(?:\s+|-)(?:message|response|reply|e-?mail)"
    r"|auto(?:-|\s)?(?:reply|response)|out\s+of\s+(?:the\s+)?office"
    r"|do\s+not\s+reply\s+to\s+this\s+(?:e-?mail|message)"
    r"|we(?:'ve|\s+have)\s+received\s+your\s+(?:request|message|e-?mail|ticket)"
    r"|your\s+(?:ticket|request|case)\s+(?:number|#|id)\s+is"
    r"|(?:our|the)\s+(?:office|support\s+team|team)\s+is\s+(?:currently\s+)?closed"
    r"|(?:this\s+)?conversation\s+(?:has\s+been|was)\s+(?:automatically\s+)?closed)\b"
)


@dataclass(frozen=True)
class BuildOptions:
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    min_assistant_chars: int = 20  # "ok" or "thanks!" alone teaches no tone
    min_user_chars: int = 5
    max_example_tokens: int = 4096  # long threads are rare, costly and mostly pasted logs
    validation_fraction: float = 0.1
    split_seed: str = "kbbot"
    dedupe_threshold: float = 0.8


@dataclass
class BuildReport:
    conversations_in: int = 0
    redactions: Counter[str] = field(default_factory=Counter)
    redacted_values: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)
    auto_reply_turns_removed: int = 0
    turns_merged: int = 0
    kept: int = 0
    train: int = 0
    validation: int = 0

    def as_dict(self) -> dict[str, object]:
        return {
            "conversations_in": self.conversations_in,
            "redactions_by_type": dict(self.redactions.most_common()),
            # Distinct values per conversation (a person named in three turns counts once), per type.
            "redacted_values_by_type": dict(self.redacted_values.most_common()),
            "dropped_by_reason": dict(self.dropped.most_common()),
            "auto_reply_turns_removed": self.auto_reply_turns_removed,
            "turns_merged": self.turns_merged,
            "kept": self.kept,
            "train_examples": self.train,
            "validation_examples": self.validation,
        }


@dataclass
class Dataset:
    train: list[dict[str, object]]
    validation: list[dict[str, object]]
    report: BuildReport


def merge_turns(turns: Iterable[Turn]) -> tuple[list[Turn], int]:
    """Join consecutive turns of one role: chat users send three short messages where they mean one."""
    merged: list[Turn] = []
    joins = 0
    for turn in turns:
        text = turn.text.strip()
        if not text:
            continue
        if merged and merged[-1].role == turn.role:
            merged[-1] = Turn(turn.role, merged[-1].text + "\n" + text)
            joins += 1
        else:
            merged.append(Turn(turn.role, text))
    return merged, joins


def in_validation(conversation_id: str, options: BuildOptions) -> bool:
    """Deterministic split by a hash of the id: the same conversation lands on the same side every run."""
    digest = hashlib.sha256(f"{options.split_seed}\x00{conversation_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < options.validation_fraction


def _drop_reason(turns: list[Turn], options: BuildOptions) -> str | None:
    if not any(t.role == "assistant" for t in turns) or not any(t.role == "user" for t in turns):
        return "no agent reply" if any(t.role == "user" for t in turns) else "no customer turn"
    if sum(len(t.text) for t in turns if t.role == "assistant") < options.min_assistant_chars:
        return "too short"
    if sum(len(t.text) for t in turns if t.role == "user") < options.min_user_chars:
        return "too short"
    return None


def build_dataset(
    conversations: Iterable[Conversation],
    options: BuildOptions | None = None,
    sanitizer: Sanitizer | None = None,
    counter: TokenCounter | None = None,
) -> Dataset:
    options = options or BuildOptions()
    sanitizer = sanitizer or Sanitizer()
    counter = counter or default_counter()
    dedupe = NearDuplicateFilter(options.dedupe_threshold)
    report = BuildReport()
    kept: list[tuple[str, dict[str, object]]] = []
    for conversation in conversations:
        report.conversations_in += 1
        sanitized = sanitizer.sanitize_conversation(conversation)
        report.redactions.update(sanitized.redactions)
        report.redacted_values.update(sanitized.values)
        turns: list[Turn] = []
        for turn in sanitized.conversation.turns:
            if turn.role == "assistant" and AUTO_REPLY.search(turn.text):
                report.auto_reply_turns_removed += 1
                continue
            turns.append(turn)
        turns, joins = merge_turns(turns)
        report.turns_merged += joins
        had_agent_reply = any(t.role == "assistant" for t in turns)
        # Training starts with the customer and ends with the agent: an agent's opener has nothing to
        # answer and a customer's last word has no reply to learn from.
        while turns and turns[0].role == "assistant":
            turns.pop(0)
        while turns and turns[-1].role == "user":
            turns.pop()
        reason = _drop_reason(turns, options) if had_agent_reply else "no agent reply"
        if reason is None:
            messages = [{"role": "system", "content": options.system_prompt}]
            messages += [{"role": t.role, "content": t.text} for t in turns]
            if example_tokens(messages, counter) > options.max_example_tokens:
                reason = "too long"
            elif dedupe.is_duplicate("\n".join(t.text for t in turns)):
                reason = "near-duplicate"
            else:
                kept.append((conversation.conversation_id, {"messages": messages}))
        if reason is not None:
            report.dropped[reason] += 1
    report.kept = len(kept)
    train = [example for cid, example in kept if not in_validation(cid, options)]
    validation = [example for cid, example in kept if in_validation(cid, options)]
    if not validation and len(train) >= 2 and options.validation_fraction > 0:
        # A tiny dataset can hash every id to train: hold out the last one so eval has something.
        validation.append(train.pop())
    report.train, report.validation = len(train), len(validation)
    logger.info(
        "built %s train and %s validation examples from %s conversations",
        report.train,
        report.validation,
        report.conversations_in,
    )
    return Dataset(train, validation, report)
