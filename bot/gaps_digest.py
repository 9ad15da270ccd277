"""The weekly knowledge-gaps digest: the top gaps, experts' replies waiting for a reviewer and the articles
to review, posted to KBBOT_GAPS_DIGEST_CHANNEL by the worker's scheduler (KBBOT_GAPS_DIGEST_CRON).

Each scheduled slot is claimed in `gaps_digests` before posting (its primary key is the slot), so any
number of workers post it once. A failed post keeps its error there and in the log. Digests name no askers:
the channel is not an admin.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from apscheduler.triggers.cron import CronTrigger
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.home_gaps import ARTICLES_SHOWN, GapsParts, gaps_blocks, visible_replies
from bot.readers import Place, ReaderResolver
from bot.services import Services
from retrieval.claims import claim_digest_slot, finish_digest
from retrieval.errors import KbbotError
from retrieval.expert_replies import ExpertReplies
from retrieval.gaps import GapFinder, Viewer, nearest_from_searcher
from retrieval.gaps_articles import articles_to_review

log = logging.getLogger(__name__)

DIGEST_GROUPS = 5
DIGEST_BLOCKS = 50  # chat.postMessage's limit


def post_digest(parts: GapsParts, client: WebClient, *, channel: str | None, days: int, slot: str,
                now: datetime | None = None) -> str:
    """Post the digest of the `days` before `slot` (e.g. the scheduled fire time) to `channel` unless another
    worker did; says what happened. It shows what every member of the channel may read."""
    if not channel:
        return "no digest channel configured (KBBOT_GAPS_DIGEST_CHANNEL)"
    db = parts.database()
    if not claim_digest_slot(db, slot, channel):
        return f"the digest of {slot} was already posted by another worker"
    now = now or datetime.now(UTC)
    since = now - timedelta(days=days)
    viewer = Viewer.for_scope(db, parts.readers.scope(client, Place(channel, "channel", "")))
    visible = viewer.visible
    report = GapFinder(db, parts.embedder()).report(
        since=since, viewer=viewer, limit=DIGEST_GROUPS, now=now,
        nearest=nearest_from_searcher(parts.searcher()))
    report.groups = report.groups[:DIGEST_GROUPS]
    articles = articles_to_review(db, since=since, stale_after_days=parts.stale_after_days,
                                  visible=visible, limit=ARTICLES_SHOWN, now=now)
    replies = visible_replies(ExpertReplies(db).pending(limit=5), visible)
    blocks = gaps_blocks(report, articles, replies, days=days, show_askers=False, buttons=False)[:DIGEST_BLOCKS]
    summary = (f"Knowledge gaps, last {days} days: {report.gap_questions} questions without a good answer, "
               f"{len(articles)} articles to review.")
    try:
        posted = client.chat_postMessage(channel=channel, text=summary, blocks=blocks, unfurl_links=False)
    except SlackApiError as exc:
        error = exc.response.get("error") or str(exc)
        hint = " (invite the bot to the channel)" if error in ("not_in_channel", "channel_not_found") else ""
        log.error("posting the gaps digest to %s failed: %s%s", channel, error, hint)
        finish_digest(db, slot, error=error)
        return f"failed: {error}{hint}"
    finish_digest(db, slot, message_ts=posted.get("ts"))
    log.info("posted the gaps digest to %s: %s", channel, summary)
    return f"posted to {channel}: {summary}"


def last_fire_time(trigger: CronTrigger, now: datetime) -> datetime:
    """The latest time ≤ now the cron line fired: the digest's slot, the same on every worker however late
    each one runs it."""
    fire = trigger.get_next_fire_time(None, now - timedelta(days=32))
    latest = fire
    for _ in range(50_000):  # an every-minute line over 32 days; weekly lines stop after a few steps
        if fire is None or fire > now:
            break
        latest = fire
        fire = trigger.get_next_fire_time(fire, fire + timedelta(seconds=1))
    return latest or now


class DigestJob:
    """The scheduler's digest job: one Web API client and one cache of Slack's answers about readers."""

    def __init__(self, parts: GapsParts, client: WebClient, trigger: CronTrigger, *, channel: str | None,
                 days: int) -> None:
        self.parts = parts
        self.client = client
        self.trigger = trigger
        self.channel = channel
        self.days = days

    @classmethod
    def of(cls, services: Services, trigger: CronTrigger) -> DigestJob:
        from bot.app import create_web_client

        schedule = services.settings.scheduler
        return cls(GapsParts.of(services, ReaderResolver.of_index(services.database)),
                   create_web_client(services.settings.slack),  # fails at start-up without SLACK_BOT_TOKEN
                   trigger, channel=schedule.gaps_digest_channel, days=schedule.gaps_digest_days)

    def run(self) -> str:
        """Never raises: the scheduler thread must survive a failed digest; the log says why."""
        try:
            slot = last_fire_time(self.trigger, datetime.now(self.trigger.timezone))
            return post_digest(self.parts, self.client, channel=self.channel, days=self.days,
                               slot=slot.isoformat())
        except KbbotError as exc:
            log.error("the gaps digest failed: %s", exc)
            return f"failed: {exc}"
        except Exception as exc:
            log.exception("the gaps digest failed unexpectedly")
            return f"failed: {type(exc).__name__}: {exc}"
