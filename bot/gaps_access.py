"""Who may see which gaps: the reader scope (retrieval/access.py) of an App Home reviewer or of the digest's
channel, so the report shows only groups, nearest articles and experts' replies about articles they may read.

Scopes come from the reader resolver the answers use (`bot.readers`, which asks Slack about guests, shared
channels and group memberships). Until that resolver is installed, a reviewer (an admin or a support-group
member, never a guest) and the digest channel (chosen by an admin) read as full members without group
memberships (`everyone`): articles restricted to Slack groups, and held-back ones, are left out.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_sdk import WebClient

from retrieval.access import ReaderScope

log = logging.getLogger(__name__)


def _resolver(services: Any, home: Any = None) -> Any | None:
    existing = getattr(home, "readers", None)
    if existing is not None:
        return existing
    try:
        from bot.readers import ReaderResolver
    except ImportError:  # the Slack side of audiences is not installed
        return None
    from retrieval.audiences import indexed_groups

    return ReaderResolver(lambda: indexed_groups(services.database()))


def reviewer_scope(services: Any, client: WebClient, user_id: str, home: Any = None) -> ReaderScope:
    """What one App Home viewer may read, as if the bot answered them in a DM."""
    readers = _resolver(services, home)
    if readers is None:
        return ReaderScope.member([], f"{user_id} is a reviewer (group-restricted articles left out)")
    from bot.readers import Place

    return readers.scope(client, Place(user_id, "im", user_id))


def channel_scope(services: Any, client: WebClient, channel: str) -> ReaderScope:
    """What every member of the digest's channel may read."""
    readers = _resolver(services)
    if readers is None:
        return ReaderScope.member([], f"{channel} is the digest channel (group-restricted articles left out)")
    from bot.readers import Place

    return readers.scope(client, Place(channel, "channel", ""))
