"""Once-only claims every process shares: a Slack event id answered once, a scheduled digest posted once.

Each claim is an `INSERT ... ON CONFLICT DO NOTHING` on a primary key: the first process to insert wins,
whichever replica or worker it is, and the others see nothing come back. The tables are `slack_events`
(migration 0001) and `gaps_digests` (0007); the edges (bot/dedupe.py, bot/gaps_digest.py) decide what a
claim means, this module only keeps the rows.
"""

from __future__ import annotations

from sqlalchemy import text

from retrieval.db import Database, translate_errors

# Slack stops retrying after about an hour; older rows only cost space.
EVENT_RETENTION = "2 days"


def claim_event(db: Database, event_id: str, *, prune: bool = False) -> bool:
    """True when this is the first claim of `event_id`; `prune` also drops claims past the retention."""
    with translate_errors("Recording the Slack event"), db.engine.begin() as conn:
        inserted = conn.execute(text(
            "INSERT INTO slack_events (event_id) VALUES (:id) ON CONFLICT DO NOTHING RETURNING event_id"
        ), {"id": event_id}).first()
        if prune:
            conn.execute(text(f"DELETE FROM slack_events WHERE received_at < now() - interval '{EVENT_RETENTION}'"))
    return inserted is not None


def claim_digest_slot(db: Database, slot: str, channel: str) -> bool:
    """True when no worker has claimed the digest of `slot` yet (this one posts it)."""
    with translate_errors("Claiming the gaps digest"), db.engine.begin() as conn:
        return conn.execute(text(
            "INSERT INTO gaps_digests (slot, channel) VALUES (:s, :c) ON CONFLICT (slot) DO NOTHING RETURNING slot"
        ), {"s": slot, "c": channel}).first() is not None


def finish_digest(db: Database, slot: str, *, message_ts: str | None = None, error: str | None = None) -> None:
    """Record how the claimed digest's post went: its message, or the error that kept it from Slack."""
    with translate_errors("Recording the gaps digest"), db.engine.begin() as conn:
        conn.execute(text("UPDATE gaps_digests SET message_ts = :ts, error = :e WHERE slot = :s"),
                     {"s": slot, "ts": message_ts, "e": error})
