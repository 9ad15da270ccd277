"""The Slack app, built by a factory from settings: one Web API client, one App, the listeners."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

from slack_bolt import App
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler

from bot.dedupe import EventDeduper
from bot.home import HomeTab
from bot.listeners import BotParts, register_listeners
from bot.reindex import AdminCheck, Reindexer
from bot.responder import Responder
from bot.services import Services
from retrieval.errors import ConfigError
from retrieval.settings import Settings, SlackSettings

log = logging.getLogger(__name__)


def create_web_client(settings: SlackSettings) -> WebClient:
    if settings.slack_bot_token is None:
        raise ConfigError("SLACK_BOT_TOKEN is not set: copy the app's Bot User OAuth Token (xoxb-…) from "
                          "api.slack.com/apps > OAuth & Permissions (see docs/slack.md).")
    return WebClient(
        token=settings.slack_bot_token.get_secret_value(), base_url=settings.slack_api_url, timeout=15,
        # 429s are retried after Slack's Retry-After; dropped connections once more.
        retry_handlers=[ConnectionErrorRetryHandler(max_retry_count=1), RateLimitErrorRetryHandler(max_retry_count=3)],
    )


def build_parts(settings: SlackSettings, services: Services) -> BotParts:
    admins = AdminCheck(settings.admin_users, settings.admin_groups)
    return BotParts(
        services=services,
        responder=Responder(services, EventDeduper(services.database), workers=settings.slack_workers),
        reindexer=Reindexer(services, admins),
        home=HomeTab(services, admins),
    )


def create_app(settings: Settings, services: Services, parts: BotParts | None = None) -> App:
    """The Bolt app. Pass `parts` to keep a handle on them (to drain answers at shutdown)."""
    slack = settings.slack
    if slack.slack_app_token is None and slack.slack_signing_secret is None:
        raise ConfigError("SLACK_SIGNING_SECRET is not set: HTTP mode needs it to verify Slack's requests "
                          "(Basic Information > Signing Secret), or set SLACK_APP_TOKEN for Socket Mode.")
    secret = slack.slack_signing_secret
    app = App(
        client=create_web_client(slack),
        signing_secret=secret.get_secret_value() if secret else "",
        process_before_response=False,  # ack first, work after: Slack wants its answer within 3 s
        listener_executor=ThreadPoolExecutor(max_workers=16, thread_name_prefix="kbbot-listener"),
        logger=logging.getLogger("kbbot.slack"),
    )
    register_listeners(app, parts or build_parts(slack, services))
    return app
