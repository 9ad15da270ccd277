"""Slack retries an event it thinks we missed (up to 3 times, `X-Slack-Retry-Num`; Socket Mode re-sends an
envelope). Each event id is claimed once in PostgreSQL, so only one delivery is ever answered, whichever
replica it lands on.

When PostgreSQL is unreachable the claim falls back to this process's memory: a retry reaching the same
replica is still dropped, and the asker still gets the (error) reply from the first delivery.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable

from retrieval.claims import claim_event
from retrieval.db import Database
from retrieval.errors import DatabaseError

log = logging.getLogger(__name__)

_MEMORY_SIZE = 10_000
_PRUNE_EVERY = 1000  # claims between two deletions of the old ones


class EventDeduper:
    def __init__(self, database: Callable[[], Database]) -> None:
        self._database = database  # returns the Database; may raise DatabaseError while it is down
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()
        self._claims = 0
        self.dropped = 0  # repeats refused since start (how a test or an operator sees retries handled)

    def claim(self, event_id: str | None) -> bool:
        """True for the first delivery of `event_id` (answer it), False for a repeat (drop it)."""
        if not event_id:
            return True
        with self._lock:
            if event_id in self._seen:
                self.dropped += 1
                log.info("event %s already handled here (a Slack retry): dropped", event_id)
                return False
            self._seen[event_id] = None
            if len(self._seen) > _MEMORY_SIZE:
                self._seen.popitem(last=False)
        try:
            first = self._claim_in_db(event_id)
        except DatabaseError as exc:
            log.warning("event %s: dedupe falls back to this process (%s)", event_id, exc)
            return True
        if not first:
            with self._lock:
                self.dropped += 1
        return first

    def _claim_in_db(self, event_id: str) -> bool:
        self._claims += 1
        first = claim_event(self._database(), event_id, prune=self._claims % _PRUNE_EVERY == 1)
        if not first:
            log.info("event %s already handled (a Slack retry or another replica): dropped", event_id)
        return first
