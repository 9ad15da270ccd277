"""Who may see which gaps: the reader scope (retrieval/access.py) of an App Home reviewer or of the digest's
channel, so the report shows only groups, nearest articles and experts' replies about articles they may read.

Scopes come from the reader resolver the answers use (`bot.readers`, which asks Slack about guests, shared
channels and group memberships, and fails closed to `public` when Slack cannot tell).
"""

from __future__ import annotations

import logging
from typing import Any

from slack_sdk import WebClient

from bot.readers import Place, ReaderResolver
from retrieval.access import ReaderScope
from retrieval.audiences import indexed_groups

log = logging.getLogger(__name__)


def _resolver(services: Any, home: Any = None) -> ReaderResolver:
    existing = getattr(home, "readers", None)
    if existing is not None:
        return existing
    return ReaderResolver(lambda: indexed_groups(services.database()))


def reviewer_scope(services: Any, client: WebClient, user_id: str, home: Any = None) -> ReaderScope:
    """What one App Home viewer may read, as if the bot answered them in a DM."""
    return _resolver(services, home).scope(client, Place(user_id, "im", user_id))


def channel_scope(services: Any, client: WebClient, channel: str) -> ReaderScope:
    """What every member of the digest's channel may read."""
    return _resolver(services).scope(client, Place(channel, "channel", ""))
