"""Which model writes an answer: the base model, or the fine-tuned support-tone model.

The tone model is looked up on every answer (``finetune.registry.active_tone_model``, one indexed
single-row read), so `kbbot finetune activate` takes effect from the next answer with no restart.
KBBOT_TONE_MODEL overrides the registry (`none` disables the tone model).

Rules (KBBOT_TONE_ROUTING):
- ``always``: every answer, when a tone model exists;
- ``channels``: answers in KBBOT_TONE_CHANNELS (channel ids; `dm` for direct messages, `cli` for the
  command line), the fallback for channels whose profile does not say;
- ``share``: a stable share of users (KBBOT_TONE_SHARE) for an A/B comparison. A user's bucket is a hash
  of their id, so a person always sees the same voice and each arm's feedback stays clean;
- ``off``: never.

A channel profile's `tone: true|false` (bot/channel_profiles.py, passed in as `RouteRequest.tone`) decides
for its channel under every rule but ``off``: an admin who names a channel's voice means it, and ``off``
stays the one switch that turns the tone model off everywhere.

The route is an ordered chain: the tone model first, the base model as its fallback. Its `arm` (`tone` or
`base`) is logged with each answer next to the model that actually wrote it, so an answer the base model
wrote after the tone model failed still counts in the tone arm (with its fallback reason).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from retrieval.errors import KbbotError
from retrieval.settings import DEFAULTS

log = logging.getLogger(__name__)

RoutingRule = Literal["always", "channels", "share", "off"]
_SALT = "kbbot-tone-ab"


@dataclass(frozen=True)
class Route:
    models: tuple[str, ...]  # tried in order; the later ones are fallbacks
    reason: str

    @property
    def tone(self) -> bool:
        return len(self.models) > 1

    @property
    def arm(self) -> str:
        """The arm the answer belongs to, whichever model ends up writing it: an A/B compares arms."""
        return "tone" if self.tone else "base"


@dataclass(frozen=True)
class RouteRequest:
    """What routing may look at: where the question was asked and by whom."""

    channel: str | None = None
    user: str | None = None
    fallback_key: str = ""  # used for the A/B bucket when the user is unknown (e.g. the question)
    tone: bool | None = None  # the channel profile's decision; None: the rule decides


def ab_bucket(key: str) -> float:
    """A number in [0, 1) that depends only on the key: the same user lands in the same arm every time,
    on every replica, across restarts."""
    digest = hashlib.sha256(f"{_SALT}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


class ToneRouter:
    def __init__(self, base_model: str, *, rule: RoutingRule = DEFAULTS.llm.tone_routing,
                 channels: Sequence[str] = (), share: float = DEFAULTS.llm.tone_share, override: str | None = None,
                 lookup: Callable[[], str | None] | None = None) -> None:
        self.base_model = base_model
        self.rule = rule
        self.channels = frozenset(c.strip() for c in channels if c.strip())
        self.share = share
        self.override = override.strip() if override else None
        self.lookup = lookup

    def tone_model(self) -> str | None:
        if self.override:
            return None if self.override.lower() in ("none", "off", "") else self.override
        if self.lookup is None:
            return None
        try:
            return self.lookup()
        except KbbotError as exc:
            # The registry being unreadable must not stop answers: the base model can write them.
            log.warning("cannot read the active tone model, using the base model: %s", exc)
            return None

    def route(self, request: RouteRequest) -> Route:
        if self.rule == "off":
            return Route((self.base_model,), "tone routing off")
        tone = self.tone_model()
        if tone is None or tone == self.base_model:
            return Route((self.base_model,), "no tone model")
        chosen, reason = self._wants_tone(request)
        return Route((tone, self.base_model) if chosen else (self.base_model,), reason)

    def _wants_tone(self, request: RouteRequest) -> tuple[bool, str]:
        if request.tone is not None:
            return request.tone, f"tone by channel profile: {'on' if request.tone else 'off'}"
        if self.rule == "always":
            return True, "tone: always"
        if self.rule == "channels":
            kind = channel_kind(request.channel)
            chosen = bool(self.channels & {request.channel or "", kind})
            return chosen, f"tone by channel: {request.channel or kind} {'in' if chosen else 'not in'} list"
        key = request.user or request.fallback_key
        bucket = ab_bucket(key)
        chosen = bucket < self.share
        return chosen, f"tone A/B: bucket {bucket:.3f} {'<' if chosen else '>='} share {self.share:g}"


def channel_kind(channel: str | None) -> str:
    """`cli` with no channel, `dm` for a Slack direct message (ids starting with D), else `channel`."""
    if not channel:
        return "cli"
    return "dm" if channel.startswith("D") else "channel"
