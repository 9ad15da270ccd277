"""Access commands: `kbbot access` explains who reads a channel or DM and what that reaches; `kbbot ask
--as-user/--channel` (in cli_index) answers as that reader would see it. Both ask Slack, like the bot."""

from __future__ import annotations

import json

import click

from bot.channel_profiles import ChannelProfile, ChannelProfiles
from bot.readers import Place, ReaderResolver
from bot.terminal import plural
from retrieval.access import ReaderScope, describe_audience
from retrieval.audiences import reach


def reader_scope(obj, user: str | None, channel: str | None) -> tuple[ReaderScope, ChannelProfile | None]:  # type: ignore[no-untyped-def]
    """The scope of an answer to `user` in `channel` (a DM or the messages tab without one), asked of the
    Slack Web API with the bot's token, and the channel's profile."""
    from slack_sdk import WebClient

    if user is None and channel is None:
        raise click.UsageError("Give --as-user U… (a DM) and/or --channel C… (a channel).")
    settings = obj.services.settings.slack
    if settings.slack_bot_token is None:
        raise click.ClickException("SLACK_BOT_TOKEN is not set: these checks ask Slack with the bot's token "
                                   "(see docs/slack.md).")
    client = WebClient(token=settings.slack_bot_token.get_secret_value(), base_url=settings.slack_api_url,
                       timeout=15)
    readers = ReaderResolver.of_index(obj.database)
    profiles = ChannelProfiles.load(settings.channel_profiles_file)
    profile = profiles.for_channel(channel, readers.channel_name(client, channel)) if channel else None
    if channel is None or channel.startswith("D"):
        place = Place(channel or "DM", "im", str(user))
    elif user and profile is not None and profile.reply_privately:
        place = Place(channel, "private", user)  # the answer goes to the asker alone: their own scope
    else:
        place = Place(channel, "channel", user or "", declared=profile.audience if profile else None)
    return readers.scope(client, place), profile


@click.command()
@click.option("--user", "user", help="A Slack user id: what their DMs and messages tab reach.")
@click.option("--channel", help="A Slack channel id: what answers in it reach.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_obj
def access(obj, user: str | None, channel: str | None, as_json: bool) -> None:  # type: ignore[no-untyped-def]
    """Explain who reads answers to a user or in a channel, and which sources and articles that reaches."""
    scope, profile = reader_scope(obj, user, channel)
    reached = reach(obj.database(), scope)
    if as_json:
        click.echo(json.dumps({
            "user": user, "channel": channel, "tokens": scope.sql_tokens, "reason": scope.reason,
            "degraded": scope.degraded, "profile": profile.where if profile else None,
            "sources": [{"source": r.source, "readable": r.readable, "not_readable": r.restricted,
                         "held_back": r.held_back} for r in reached],
        }, indent=2))
        return
    click.echo(f"Answers {'in ' + channel if channel else 'to ' + str(user)} use {scope.describe()}.")
    if scope.degraded:
        click.echo("Slack could not say who reads them: until it can, they use public articles only.")
    if profile:
        click.echo(f"Channel profile {profile.where}: audience "
                   f"{describe_audience(profile.audience) if profile.audience else '(Slack decides)'}"
                   f", sources {', '.join(profile.sources) if profile.sources else 'all'}"
                   f"{', answers without @mention' if profile.answer_without_mention else ''}"
                   f"{', replies privately (Share checks the whole channel)' if profile.reply_privately else ''}"
                   f"{'' if profile.tone is None else ', tone model ' + ('on' if profile.tone else 'off')}.")
    for r in reached:
        held = f", {r.held_back} held back for everyone" if r.held_back else ""
        click.echo(f"  {r.source}: {plural(r.readable, 'article')} readable, {r.restricted} not{held}")


COMMANDS = [access]
