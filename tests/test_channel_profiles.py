"""The channel profiles file: matching by id and name pattern, and mistakes named by file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.channel_profiles import ChannelProfiles, load_profiles, tone_disagreements
from retrieval.errors import ConfigError


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "channels.yml"
    path.write_text(body, encoding="utf-8")
    return path


def test_profiles_match_by_id_first_entry_wins(tmp_path: Path) -> None:
    profiles = ChannelProfiles.load(write(tmp_path, """\
channels:
  - channel: C0HRTEAM
    audience: [S0HR]
  - name: "help-*"
    audience: everyone
    sources: [handbook]
    answer_without_mention: true
  - name: "*"
    audience: public
"""))
    hr = profiles.for_channel("C0HRTEAM", "hr-team")
    assert hr is not None and hr.audience == ("S0HR",) and hr.where.endswith("channels.yml:2")
    help_channel = profiles.for_channel("C0HELP", "help-it")
    assert help_channel is not None and help_channel.answer_without_mention and help_channel.sources == ("handbook",)
    anything = profiles.for_channel("C0RANDOM", "random")
    assert anything is not None and anything.audience == ("public",)
    assert profiles.for_channel("C0NONAME", None) is None  # a name pattern needs the channel's name


@pytest.mark.parametrize(("body", "expected"), [
    ("channels:\n  - channel: C0HR\n    audience: hr\n", r"channels\.yml:3: channels\[0\]: audience 'hr' is not an"),
    ("channels:\n  - name: help\n    audiense: public\n", r"channels\.yml:3: channels\[0\]: audiense unknown field"),
    ("channels:\n  - audience: public\n", r"channels\.yml:2: channels\[0\]: entry give either `channel`"),
    ("channels:\n  - channel: general\n", r"channels\.yml:2: channels\[0\]: channel must be a channel id"),
    ("channels:\n  - name: x\n    answer_without_mention: maybe\n",
     r"channels\.yml:3: channels\[0\]: answer_without_mention"),
    ("channels:\n  - name: x\n    reply_privately: sometimes\n", r"channels\.yml:3: channels\[0\]: reply_privately"),
    ("channels:\n  - name: x\n\n    tone: support\n", r"channels\.yml:4: channels\[0\]: tone"),
    ("profiles: []\n", r"channels\.yml:1: expected only a top-level `channels:` list"),
    ("channels: [\n", r"channels\.yml:2: not valid YAML"),
])
def test_mistakes_name_the_file_line_and_field(tmp_path: Path, body: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        load_profiles(write(tmp_path, body))


def test_a_missing_file_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"does not exist: create it \(see docs/slack\.md\)"):
        load_profiles(tmp_path / "nope.yml")


def test_private_replies_and_tone_are_per_profile(tmp_path: Path) -> None:
    profiles = ChannelProfiles.load(write(tmp_path, """\
channels:
  - channel: C0LEGAL
    reply_privately: true
    tone: false
  - name: "support-*"
    tone: true
  - name: "*"
"""))
    legal = profiles.for_channel("C0LEGAL", "legal")
    assert legal is not None and legal.reply_privately and legal.tone is False
    support = profiles.for_channel("C0SUP", "support-eu")
    assert support is not None and support.tone is True and not support.reply_privately
    rest = profiles.for_channel("C0RANDOM", "random")
    assert rest is not None and rest.tone is None and not rest.reply_privately  # the env decides


def test_one_warning_names_every_channel_the_profiles_and_the_tone_list_disagree_on(tmp_path: Path) -> None:
    profiles = ChannelProfiles.load(write(tmp_path, """\
channels:
  - channel: C0LEGAL
    tone: false
  - channel: C0SUPPORT
    tone: true
  - channel: C0SALES
    tone: true
  - name: "help-*"
    tone: false
"""))
    warning = tone_disagreements(profiles, "channels", ["C0LEGAL", "C0SUPPORT", "dm"])
    assert warning is not None
    assert "C0LEGAL (profile " in warning and "tone false, KBBOT_TONE_CHANNELS: listed" in warning
    assert "C0SALES (profile " in warning and "tone true, KBBOT_TONE_CHANNELS: not listed" in warning
    assert "C0SUPPORT" not in warning and "help-" not in warning  # agrees / a pattern cannot be checked
    assert "The profile wins" in warning
    assert tone_disagreements(profiles, "always", ["C0LEGAL"]) is None  # the list is not read
    assert tone_disagreements(profiles, "channels", []) is None  # only the profiles are set
