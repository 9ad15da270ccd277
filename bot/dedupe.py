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

from sqlalchemy import text

from retrieval.db import Database, translate_errors
from retrieval.errors import DatabaseError

log = logging.getLogger(__name__)

_MEMORY_SIZE = 10_000
# Slack stops retrying after about an hour; older rows only cost space.
_RETENTION = "2 days"


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
        db = self._database()
        with translate_errors("Recording the Slack event"), db.engine.begin() as conn:
            inserted = conn.execute(text(
                "INSERT INTO slack_events (event_id) VALUES (:id) ON CONFLICT DO NOTHING RETURNING event_id"
            ), {"id": event_id}).first()
            self._claims += 1
            if self._claims % 1000 == 1:
                conn.execute(text(f"DELETE FROM slack_events WHERE received_at < now() - interval '{_RETENTION}'"))
        if inserted is None:
            log.info("event %s already handled (a Slack retry or another replica): dropped", event_id)
        return inserted is not None
