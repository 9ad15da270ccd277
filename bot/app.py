"""The Slack app, built by a factory from settings: one Web API client, one App, the listeners."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

from slack_bolt import App
from slack_bolt.error import BoltError
from slack_bolt.logger.messages import warning_client_prioritized_and_token_skipped
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler

from bot.channel_profiles import ChannelProfiles, tone_disagreements
from bot.dedupe import EventDeduper
from bot.home import Block, HomeTab
from bot.home_gaps import GapsParts, reviewer_gaps_blocks
from bot.listeners import BotParts, register_listeners
from bot.readers import ReaderResolver
from bot.reindex import AdminCheck, Reindexer
from bot.responder import Responder
from bot.services import Services
from bot.share import Sharer
from retrieval.errors import ConfigError, KbbotError
from retrieval.settings import Settings, SlackSettings

log = logging.getLogger(__name__)


_WHERE = {
    "SLACK_BOT_TOKEN": "the Bot User OAuth Token (xoxb-…) from OAuth & Permissions",
    "SLACK_SIGNING_SECRET": "the Signing Secret from Basic Information (HTTP mode; or set SLACK_APP_TOKEN "
                            "for Socket Mode)",
}


def check_slack_settings(settings: SlackSettings, *, receiving: bool = True) -> None:
    """Every missing Slack setting in one message: fixing one only to be told of the next wastes a start.
    `receiving=False` for a process that only posts (the worker's digest): it needs no signing secret."""
    missing = [name for name, value in (("SLACK_BOT_TOKEN", settings.slack_bot_token),
                                        ("SLACK_SIGNING_SECRET", settings.slack_signing_secret))
               if value is None and not (name == "SLACK_SIGNING_SECRET"
                                         and (settings.slack_app_token or not receiving))]
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        raise ConfigError(f"{' and '.join(missing)} {verb} not set: copy "
                          f"{' and '.join(_WHERE[name] for name in missing)} at api.slack.com/apps into the "
                          "environment or .env (see docs/slack.md).")


def slack_start_error(exc: Exception, settings: SlackSettings, token: str = "SLACK_BOT_TOKEN") -> KbbotError:
    """What a failed first call to Slack means for the person starting the bot, in one line."""
    api_error = exc if isinstance(exc, SlackApiError) else exc.__context__
    if isinstance(api_error, SlackApiError):
        code = api_error.response.get("error") if isinstance(api_error.response.data, dict) else None
        where = ("OAuth & Permissions > Bot User OAuth Token (xoxb-…)" if token == "SLACK_BOT_TOKEN"
                 else "Basic Information > App-Level Tokens (xapp-…, scope connections:write)")
        return ConfigError(f"Slack refused {token} ({code or 'unexpected answer'}): copy it again from "
                           f"api.slack.com/apps > {where}; reinstall the app if the token was revoked.")
    if not isinstance(exc, OSError):
        return ConfigError(f"The Slack app could not start: {exc} (see docs/slack.md).")
    reason = getattr(exc, "reason", None) or exc
    return KbbotError(f"Slack is unreachable at {settings.slack_api_url} ({reason}): check this machine's "
                      "network and proxy (HTTPS_PROXY), and SLACK_API_URL if you set it, then start again.")


class _OwnClientNotice(logging.Filter):
    """Bolt reads SLACK_BOT_TOKEN from the environment by itself and, seeing kbbot's client (built from the
    same token, with kbbot's retries and base URL), warns that its token is unused: a false alarm at every start."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != warning_client_prioritized_and_token_skipped()


_OWN_CLIENT_NOTICE = _OwnClientNotice()


def create_web_client(settings: SlackSettings) -> WebClient:
    check_slack_settings(settings, receiving=False)
    assert settings.slack_bot_token is not None
    return WebClient(
        token=settings.slack_bot_token.get_secret_value(), base_url=settings.slack_api_url, timeout=15,
        # 429s are retried after Slack's Retry-After; dropped connections once more.
        retry_handlers=[ConnectionErrorRetryHandler(max_retry_count=1), RateLimitErrorRetryHandler(max_retry_count=3)],
    )


def build_parts(settings: SlackSettings, services: Services) -> BotParts:
    """The listeners' parts, each handed what it uses. The pipeline and the database are reached through
    `services` on first use, so the app starts (and says so in Slack) while the database is down."""
    admins = AdminCheck(settings.admin_users, settings.admin_groups)
    readers = ReaderResolver.of_index(services.database)  # one cache of Slack's answers
    profiles = ChannelProfiles.load(settings.channel_profiles_file)
    llm = services.settings.llm
    disagreement = tone_disagreements(profiles, llm.tone_routing, llm.tone_channels)
    if disagreement:
        log.warning(disagreement)
    deduper = EventDeduper(services.database)

    gaps_parts = GapsParts.of(services, readers)

    def gaps(client: WebClient, user_id: str, is_admin: bool) -> list[Block]:
        return reviewer_gaps_blocks(gaps_parts, client, user_id, is_admin=is_admin)

    return BotParts(
        responder=Responder(lambda: services.pipeline, services.answer_log, deduper, readers, profiles=profiles,
                            database=services.database, can_escalate=settings.support_group is not None,
                            stale_after_days=settings.stale_after_days, workers=settings.slack_workers),
        reindexer=Reindexer(services.configured_sources, services.indexer, services.database, admins, readers),
        home=HomeTab(services.database, services.answer_log, admins, readers,
                     support_group=settings.support_group, gaps=gaps),
        sharer=Sharer(services.answer_log, services.database, readers, profiles, deduper,
                      can_escalate=settings.support_group is not None, stale_after_days=settings.stale_after_days),
        answer_log=services.answer_log,
        database=services.database,
        support_group=settings.support_group,
    )


def create_app(settings: Settings, services: Services, parts: BotParts | None = None) -> App:
    """The Bolt app. Pass `parts` to keep a handle on them (to drain answers at shutdown)."""
    slack = settings.slack
    check_slack_settings(slack)
    secret = slack.slack_signing_secret
    bolt_log = logging.getLogger("kbbot.slack")
    bolt_log.addFilter(_OWN_CLIENT_NOTICE)
    try:  # bolt checks the token with auth.test here
        app = App(
            client=create_web_client(slack),
            signing_secret=secret.get_secret_value() if secret else "",
            process_before_response=False,  # ack first, work after: Slack wants its answer within 3 s
            listener_executor=ThreadPoolExecutor(max_workers=16, thread_name_prefix="kbbot-listener"),
            logger=bolt_log,
        )
    except (BoltError, SlackApiError, OSError) as exc:  # URLError is an OSError
        raise slack_start_error(exc, slack) from exc
    register_listeners(app, parts or build_parts(slack, services))
    return app
