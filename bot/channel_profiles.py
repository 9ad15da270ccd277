"""Channel profiles: per channel (id) or channel-name pattern, who reads it and how the bot answers there.

    channels:
      - name: "hr-*"                 # a name pattern (fnmatch), or `channel: C0123ABCD` for one channel
        audience: [S0HR]             # public | everyone | Slack user-group ids: who may read answers here
        sources: [hr-wiki]           # only these sources (default: all)
        answer_without_mention: true # a help channel: answer every top-level question, no @mention needed
        reply_privately: true        # answers only the asker sees, with a "Share in channel" button
        tone: false                  # the support-tone model writes answers here (true) or not (false)

The file is KBBOT_CHANNEL_PROFILES_FILE, read once at start; every mistake names its file, line and field,
like the sources file. The first entry that matches a channel applies. A profile's audience is trusted
(declare it only for channels whose membership you control), but it never widens a channel shared with
another organisation or one with guests: those are answered from `public` whatever it says (bot/readers.py).

`tone` replaces KBBOT_TONE_CHANNELS for the channels a profile covers (retrieval/routing.py: it decides under
every KBBOT_TONE_ROUTING rule but `off`); the variable stays the fallback for other channels and for `dm` and
`cli`, and `tone_disagreements` names the channels the two contradict each other on, for one warning at start.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from retrieval.errors import ConfigError
from retrieval.sources_config import AudienceValue, YamlLineLoader, YamlMapping, line_of


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channel: str | None = Field(None, pattern=r"^[CG][A-Z0-9]{2,}$")
    name: str | None = Field(None, min_length=1)
    audience: AudienceValue | None = None
    sources: list[str] | None = Field(None, min_length=1)
    answer_without_mention: bool = False
    reply_privately: bool = False
    tone: bool | None = None

    @model_validator(mode="after")
    def _one_selector(self) -> _Entry:
        if (self.channel is None) == (self.name is None):
            raise ValueError("give either `channel` (an id such as C0123ABCD) or `name` (a pattern such as help-*)")
        return self


@dataclass(frozen=True)
class ChannelProfile:
    where: str  # file:line, for logs and `kbbot access`
    channel: str | None
    name: str | None
    audience: tuple[str, ...] | None
    sources: tuple[str, ...] | None
    answer_without_mention: bool
    reply_privately: bool = False
    tone: bool | None = None  # None: KBBOT_TONE_ROUTING (and KBBOT_TONE_CHANNELS) decide

    def matches(self, channel: str, name: str | None) -> bool:
        if self.channel is not None:
            return channel == self.channel
        return name is not None and fnmatch.fnmatchcase(name.lstrip("#"), str(self.name).lstrip("#"))


class ChannelProfiles:
    def __init__(self, profiles: list[ChannelProfile] | None = None) -> None:
        self.profiles = profiles or []

    @staticmethod
    def load(path: Path | None) -> ChannelProfiles:
        return ChannelProfiles(load_profiles(path) if path is not None else [])

    def for_channel(self, channel: str, name: str | None) -> ChannelProfile | None:
        return next((p for p in self.profiles if p.matches(channel, name)), None)


def load_profiles(path: Path) -> list[ChannelProfile]:
    """Parse and validate the channel profiles file. Raises ConfigError naming file, line and field."""
    try:
        document = yaml.load(Path(path).read_text(encoding="utf-8"), Loader=YamlLineLoader)  # safe subclass
    except FileNotFoundError as exc:
        raise ConfigError(f"The channel profiles file {path} (KBBOT_CHANNEL_PROFILES_FILE) does not exist: "
                          "create it (see docs/slack.md) or unset the variable.") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"The channel profiles file {path} cannot be read: {exc}.") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise ConfigError(f"{where}: not valid YAML ({getattr(exc, 'problem', None) or exc}).") from exc
    if document is None:
        return []
    if not isinstance(document, YamlMapping) or not isinstance(document.get("channels"), list) or set(document) - {
            "channels"}:
        raise ConfigError(f"{path}:1: expected only a top-level `channels:` list (see docs/slack.md).")
    profiles = []
    for index, entry in enumerate(document["channels"]):
        if not isinstance(entry, YamlMapping):
            raise ConfigError(f"{path}: channels[{index}] must be a mapping (channel or name, audience...).")
        try:
            parsed = _Entry.model_validate(dict(entry))
        except ValidationError as exc:
            raise _error(exc, entry, path, index) from exc
        profiles.append(ChannelProfile(
            f"{path}:{entry.line}", parsed.channel, parsed.name,
            tuple(parsed.audience) if parsed.audience is not None else None,
            tuple(parsed.sources) if parsed.sources else None, parsed.answer_without_mention,
            parsed.reply_privately, parsed.tone))
    return profiles


def tone_disagreements(profiles: ChannelProfiles, rule: str, tone_channels: Iterable[str]) -> str | None:
    """One warning naming the channels whose profile says `tone` the opposite of KBBOT_TONE_CHANNELS (only
    when the `channels` rule reads that list), or None. The profile wins; a name pattern's channels are
    unknown until they are asked in, so only profiles by channel id can be checked here."""
    listed = {c.strip() for c in tone_channels if c.strip()}
    if rule != "channels" or not listed:
        return None
    clashes = []
    for profile in profiles.profiles:
        if profile.tone is None or profile.channel is None:
            continue
        if profile.tone != (profile.channel in listed):
            clashes.append(f"{profile.channel} (profile {profile.where}: tone {str(profile.tone).lower()}, "
                           f"KBBOT_TONE_CHANNELS: {'listed' if profile.channel in listed else 'not listed'})")
    if not clashes:
        return None
    return ("The channel profiles and KBBOT_TONE_CHANNELS disagree on the tone model for "
            + "; ".join(clashes) + ". The profile wins: remove those channels from KBBOT_TONE_CHANNELS "
            "(it is only the fallback for channels without a profile `tone`, and for dm/cli).")


def _error(exc: ValidationError, entry: Any, path: Path, index: int) -> ConfigError:
    err = exc.errors()[0]
    loc = tuple(str(part) for part in err["loc"])
    field = ".".join(loc) or "entry"
    message = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        message = ("unknown field (a profile has channel or name, audience, sources, answer_without_mention, "
                   "reply_privately, tone)")
    elif err["type"] == "string_pattern_mismatch":
        message = "must be a channel id such as C0123ABCD (or use `name:` for a name pattern)"
    return ConfigError(f"{path}:{line_of(entry, loc)}: channels[{index}]: {field} {message}.")
