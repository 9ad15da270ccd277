"""Who reads an answer, asked of Slack: the scope (retrieval/access.py) every reader of it holds.

- A channel's answer is read by all its members. Its audience is the channel profile's (internal channels
  only), else `everyone`, narrowed to `public` when the channel is shared with another organisation
  (`is_ext_shared`, `is_shared` without `is_org_shared`, a pending share) or has a guest or an external
  member (checked member by member, up to MAX_MEMBERS_CHECKED; a larger channel without a profile is
  answered from `public`). A profile's Slack groups are checked, not trusted: a group stays in the scope
  only if every member is in it (a channel too large to check keeps `everyone`).
- A DM, the messages tab or a private (ephemeral) reply in a channel is read by the asker: guests
  (`is_restricted`, `is_ultra_restricted`) and users of another organisation (another team, `is_stranger`)
  hold `public`; a full member holds `everyone` and the Slack user groups they belong to, among those any
  indexed article is restricted to (`usergroups.users.list`).
- A group DM is read by its members: the tokens they all hold.

Slack's answers are cached for `ttl_s` (group membership, guest flags and channel settings change rarely, and
a stale entry lives at most that long), channel member lists for a minute; the asker is always checked. Any
Slack error fails closed: the scope is `public` and marked degraded, so the answer says it only used public
articles.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from retrieval.access import PUBLIC, ReaderScope
from retrieval.audiences import indexed_groups
from retrieval.db import Database

log = logging.getLogger(__name__)

MAX_MEMBERS_CHECKED = 500
# Channel member lists change more often than a person's groups or flags: a guest who joins is seen within
# a minute (and at once when they ask themselves).
MEMBERS_TTL_S = 60.0
DEGRADED_NOTE = ("I could not check with Slack who can read this, so I answered from public articles only. "
                 "Ask again in a moment for the full answer.")


class ReaderUnknown(Exception):
    """Slack did not say who is reading (an API error): the caller fails closed to `public`."""


@dataclass(frozen=True)
class Place:
    """Where an answer is read: the channel, its kind, who asked, and a declared audience (profile)."""

    channel: str
    kind: str  # "channel", "im", "assistant", or "private" (an ephemeral reply in a channel: the asker's)
    asker: str
    declared: tuple[str, ...] | None = None  # the channel profile's audience


class _Cache:
    def __init__(self, ttl_s: float, clock: Callable[[], float]) -> None:
        self.ttl_s = ttl_s
        self.clock = clock
        self._items: dict[str, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def get(self, key: str, load: Callable[[], Any], *, ttl_s: float | None = None, fresh: bool = False) -> Any:
        with self._lock:
            hit = self._items.get(key)
            if hit is not None and hit[0] > self.clock() and not fresh:
                return hit[1]
        value = load()  # outside the lock: a slow Slack call must not block other readers
        with self._lock:
            self._items[key] = (self.clock() + (self.ttl_s if ttl_s is None else min(ttl_s, self.ttl_s)), value)
        return value


class ReaderResolver:
    """Resolves the scope of an answer's readers through the Slack Web API (see the module docstring).

    `groups` lists the Slack user groups any indexed article is restricted to (the only memberships worth
    asking about); it is called at most once per `ttl_s`."""

    def __init__(self, groups: Callable[[], Sequence[str]], *, ttl_s: float = 300.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._groups = groups
        self._cache = _Cache(ttl_s, clock)

    @classmethod
    def of_index(cls, database: Callable[[], Database]) -> ReaderResolver:
        """A resolver asking about the groups the index's articles are restricted to (read when needed)."""
        return cls(lambda: indexed_groups(database()))

    # --- the entry point -----------------------------------------------------------------------------
    def scope(self, client: WebClient, place: Place, *, fresh: bool = False) -> ReaderScope:
        """The scope every reader of an answer at `place` holds; `public` (degraded) if Slack cannot say.
        `fresh`: the channel's settings and members asked of Slack now, not cached (Share in channel)."""
        try:
            if place.kind in ("im", "assistant", "private"):
                return self.user_scope(client, place.asker)
            return self.channel_scope(client, place.channel, place.declared, asker=place.asker, fresh=fresh)
        except ReaderUnknown as exc:
            log.warning("could not tell who reads %s (%s): answering from public articles only",
                        place.channel, exc)
            return ReaderScope.public(f"Slack could not say who reads it: {exc}", degraded=True)

    # --- one user ----------------------------------------------------------------------------------
    def user_scope(self, client: WebClient, user_id: str) -> ReaderScope:
        user = self._user(client, user_id)
        if user.get("is_restricted") or user.get("is_ultra_restricted"):
            return ReaderScope.public(f"{user_id} is a guest")
        if user.get("is_stranger") or user.get("team_id") not in (None, self._team(client)):
            enterprise = (user.get("enterprise_user") or {}).get("enterprise_id")
            if not enterprise or enterprise != self._enterprise(client):
                return ReaderScope.public(f"{user_id} belongs to another organisation")
        if user.get("deleted") or user.get("is_bot"):
            return ReaderScope.public(f"{user_id} is not an active person")
        groups = [g for g in self._indexed_groups() if user_id in self._members_of_group(client, g)]
        return ReaderScope.member(groups, f"{user_id} is a member" + (f" of {', '.join(groups)}" if groups else ""))

    # --- one channel -------------------------------------------------------------------------------
    def channel_scope(self, client: WebClient, channel: str, declared: tuple[str, ...] | None, *,
                      asker: str | None = None, fresh: bool = False) -> ReaderScope:
        info = self._channel(client, channel, fresh=fresh)
        if info.get("is_im"):
            other = info.get("user")
            if not other:
                raise ReaderUnknown(f"conversations.info did not name the other member of {channel}")
            return self.user_scope(client, str(other))
        shared = info.get("is_ext_shared") or info.get("is_pending_ext_shared") or (
            info.get("is_shared") and not info.get("is_org_shared"))
        if shared:
            return ReaderScope.public(f"{channel} is shared with another organisation")
        # The asker reads the answer whatever the (cached) member list says: a guest who just joined is
        # checked now, not when the list is next read.
        if asker and self.user_scope(client, asker).tokens == {PUBLIC}:
            return ReaderScope.public(f"{channel} has guests or people of another organisation ({asker})")
        members = self._members(client, channel, fresh=fresh)
        if info.get("is_mpim"):
            scope = ReaderScope.member(self._indexed_groups(), f"the members of {channel}")
            for member in members:
                scope = scope.intersect(self.user_scope(client, member), f"the members of {channel}")
            return scope
        if declared is not None:
            # An admin declared who reads it (channel profile); a guest member still narrows it to public.
            scope = ReaderScope.of_audience(declared, f"{channel}'s profile")
        else:
            scope = ReaderScope.member([], f"{channel} is an internal channel")
        if len(members) > MAX_MEMBERS_CHECKED and declared is None:
            return ReaderScope.public(f"{channel} has more than {MAX_MEMBERS_CHECKED} members to check for "
                                      "guests: give it a channel profile")
        declared_groups = set(scope.groups)
        for member in members[:MAX_MEMBERS_CHECKED]:
            member_scope = self.user_scope(client, member)
            if member_scope.tokens == {PUBLIC}:
                return ReaderScope.public(f"{channel} has guests or people of another organisation")
            if declared_groups:
                # A profile's groups are checked, not trusted: every member must be in one of them.
                scope = scope.intersect(member_scope, scope.reason)
        if declared_groups and len(members) > MAX_MEMBERS_CHECKED:
            scope = ReaderScope.member([], f"{channel}'s profile names groups, but its {len(members)}+ members "
                                           "are too many to check against them")
        elif declared_groups and set(scope.groups) != declared_groups:
            missing = ", ".join(sorted(declared_groups - set(scope.groups)))
            scope = ReaderScope(scope.tokens, f"{channel}'s profile names {missing}, but not every member is in "
                                              "it", scope.degraded)
        return scope

    def channel_name(self, client: WebClient, channel: str) -> str | None:
        """The channel's name, for profiles matched by name; None for DMs or when Slack cannot say."""
        if channel.startswith("D"):
            return None
        try:
            name = self._channel(client, channel).get("name")
        except ReaderUnknown:
            return None
        return str(name) if name else None

    # --- Slack calls, cached -----------------------------------------------------------------------
    def _call(self, what: str, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except SlackApiError as exc:
            raise ReaderUnknown(f"{what} failed ({exc.response.get('error')})") from exc
        except Exception as exc:  # network errors: slack_sdk raises urllib's and its own
            raise ReaderUnknown(f"{what} failed ({type(exc).__name__})") from exc

    def _auth(self, client: WebClient) -> dict[str, Any]:
        return self._cache.get("auth", lambda: dict(self._call("auth.test", client.auth_test).data))

    def _team(self, client: WebClient) -> str | None:
        return self._auth(client).get("team_id")

    def _enterprise(self, client: WebClient) -> str | None:
        return self._auth(client).get("enterprise_id")

    def _user(self, client: WebClient, user_id: str) -> dict[str, Any]:
        def load() -> dict[str, Any]:
            return dict(self._call("users.info", lambda: client.users_info(user=user_id))["user"])
        return self._cache.get(f"user:{user_id}", load)

    def _members_of_group(self, client: WebClient, group: str) -> frozenset[str]:
        def load() -> frozenset[str]:
            response = self._call("usergroups.users.list", lambda: client.usergroups_users_list(usergroup=group))
            return frozenset(response.get("users") or [])
        return self._cache.get(f"group:{group}", load)

    def _indexed_groups(self) -> list[str]:
        return self._cache.get("indexed-groups", lambda: list(self._groups()))

    def _channel(self, client: WebClient, channel: str, *, fresh: bool = False) -> dict[str, Any]:
        def load() -> dict[str, Any]:
            return dict(self._call("conversations.info",
                                   lambda: client.conversations_info(channel=channel))["channel"])
        return self._cache.get(f"channel:{channel}", load, fresh=fresh)

    def _members(self, client: WebClient, channel: str, *, fresh: bool = False) -> list[str]:
        def load() -> list[str]:
            members: list[str] = []
            cursor = None
            while len(members) <= MAX_MEMBERS_CHECKED:
                page = self._call("conversations.members", functools.partial(
                    client.conversations_members, channel=channel, limit=200, cursor=cursor))
                members += page.get("members") or []
                cursor = (page.get("response_metadata") or {}).get("next_cursor")
                if not cursor:
                    break
            return members
        return self._cache.get(f"members:{channel}", load, ttl_s=MEMBERS_TTL_S, fresh=fresh)
