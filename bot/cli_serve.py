"""`kbbot serve`: the Slack bot. HTTP Events mode (the `web:` line of the Procfile) unless SLACK_APP_TOKEN
is set, then Socket Mode. `kbbot manifest` prints the Slack app manifest to paste at api.slack.com/apps.

HTTP mode serves bolt's WSGI adapter with waitress: a multi-threaded, production-grade pure-Python server
(no C build, runs wherever Python does, Windows included) that embeds in this process. One process keeps one
copy of the embedding model and one database pool, shared by every request thread; a pre-fork server such
as gunicorn would load the model once per worker. Scale out with more processes or replicas: everything
they share (retry dedupe, sync lock, answer log) is in PostgreSQL.
"""

from __future__ import annotations

import errno
import logging
import signal
import threading
from collections.abc import Callable, Iterable
from typing import Any

import click
import waitress
from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk.errors import SlackApiError
from waitress import wasyncore

from bot.app import build_parts, create_app, slack_start_error
from bot.manifest import EVENTS_PATH, manifest_yaml, request_url_for
from bot.services import Services
from retrieval.errors import KbbotError

log = logging.getLogger(__name__)

HEALTH_PATH = "/healthz"


class HttpServer:
    """Slack's request URL (`/slack/events`: events, commands, interactivity) and a health check."""

    def __init__(self, app: App, *, host: str, port: int, threads: int = 8, loop_timeout_s: float = 1.0) -> None:
        slack = SlackRequestHandler(app, path=EVENTS_PATH)

        def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            if environ.get("PATH_INFO") == HEALTH_PATH:
                start_response("200 OK", [("Content-Type", "text/plain")])
                return [b"ok\n"]
            return slack(environ, start_response)

        self._running = False
        self._server = waitress.create_server(wsgi, host=host, port=port, threads=threads, ident="kbbot",
                                              clear_untrusted_proxy_headers=True,
                                              asyncore_loop_timeout=loop_timeout_s)

    @property
    def port(self) -> int:
        return int(self._server.effective_port)  # type: ignore[union-attr]

    def run(self) -> None:
        self._running = True
        try:
            self._server.run()
        finally:
            self._running = False

    def close(self) -> None:
        """Stop serving. From another thread, the loop is asked to close its own sockets (closing them under
        a running select() fails with EBADF)."""
        server: Any = self._server

        def stop() -> None:
            server.task_dispatcher.shutdown()
            wasyncore.close_all(server._map)

        if self._running:
            server.trigger.pull_trigger(stop)
        else:
            stop()


def warm_up(services: Services) -> None:
    """Load the embedding model and open the database before the first question, not during it. A database
    that is down is logged, not fatal: the bot answers with an error message and recovers when it returns."""
    embedder = services.embedder
    try:
        embedder.embed_query("warm up")
        log.info("the embedding model %s/%s is loaded", embedder.provider, embedder.model)
    except KbbotError as exc:
        log.error("the embedding model could not be loaded: %s", exc)
    try:
        services.database()
    except KbbotError as exc:
        log.error("the database is unreachable at start-up (the bot retries on each question): %s", exc)
        return
    try:
        services.acronyms.terms()  # read every readable article once (~0.7 s on 2,800 articles)
    except KbbotError as exc:
        log.error("the knowledge base's acronyms could not be read at start-up (read on the first question): %s",
                  exc)
    try:
        density = services.pipeline.density
        if density is not None:
            # Stored by the last sync; an index synced before densities were stored is measured here (~1.5 s
            # on 40k passages) rather than in the first answer.
            value = density()
            if value is not None:
                log.info("index density %.3f: the abstention gate's bar follows it", value)
    except KbbotError as exc:
        log.error("the index's density could not be measured at start-up (measured on the first question): %s",
                  exc)


def _prepare_answer_sentences(services: Services) -> None:
    """In the background: the sentences of passages synced without them (retrieval/unit_warm.py)."""
    try:
        services.start_unit_warmer()
    except KbbotError as exc:
        log.error("answer sentences are not prepared in the background (answers embed them): %s", exc)


def _listen(app: App, host: str, port: int, *, threads: int) -> HttpServer:
    try:
        return HttpServer(app, host=host, port=port, threads=threads)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise KbbotError(f"Port {port} is already in use on {host} (another `kbbot serve`?): stop that "
                             "process, or listen on another port with --port or PORT.") from exc
        raise KbbotError(f"kbbot serve cannot listen on {host}:{port} ({exc.strerror or exc}): choose another "
                         "interface or port with --host/--port (KBBOT_HOST/PORT); ports below 1024 need root.") from exc


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt  # waitress's loop exits cleanly on it


@click.command()
@click.option("--host", help="Interface to listen on (default: KBBOT_HOST, 0.0.0.0).")
@click.option("--port", type=int, help="Port (default: PORT, 3000).")
@click.pass_obj
def serve(obj, host: str | None, port: int | None) -> None:  # type: ignore[no-untyped-def]
    """Run the Slack bot (HTTP Events mode; Socket Mode when SLACK_APP_TOKEN is set)."""
    settings, services = obj.settings, obj.services
    slack = settings.slack
    services.concurrent_embeds = slack.slack_workers  # each answer worker's embedding gets its share
    parts = build_parts(slack, services)
    app = create_app(settings, services, parts)
    # Bound before the model loads: a port in use fails in a second, not after the warm-up.
    server = None if slack.slack_app_token else _listen(app, host or slack.host, port or slack.port,
                                                         threads=max(4, slack.slack_workers))
    warm_up(services)
    _prepare_answer_sentences(services)
    scheduler = None
    if settings.scheduler.scheduler_in_serve:  # single-process deployments: the worker's schedule runs here too
        from bot.worker import start_scheduler

        scheduler = start_scheduler(services)
    try:
        if server is None:
            assert slack.slack_app_token is not None
            from slack_bolt.adapter.socket_mode import SocketModeHandler

            log.info("kbbot is connecting to Slack in Socket Mode")
            try:
                SocketModeHandler(app, slack.slack_app_token.get_secret_value()).start()
            except (SlackApiError, OSError) as exc:
                raise slack_start_error(exc, slack, token="SLACK_APP_TOKEN") from exc
        else:
            if threading.current_thread() is threading.main_thread():
                # Platforms stop a process with SIGTERM: finish the answers in flight, then exit.
                signal.signal(signal.SIGTERM, _interrupt)
            log.info("kbbot is listening on http://%s:%d%s", host or slack.host, server.port, EVENTS_PATH)
            server.run()
    finally:
        if scheduler is not None:
            scheduler.stop(wait=True)  # the running sync writes the articles in hand, then stops
        log.info("finishing the answers in flight")
        parts.responder.close(wait=True)


@click.command()
@click.option("--url", "base_url", metavar="URL", help="Public base URL of `kbbot serve` (HTTP mode), "
              "e.g. https://kbbot.example.com")
@click.option("--socket", "socket_mode", is_flag=True, help="Manifest for Socket Mode (no public URL).")
@click.option("--name", default="kbbot", show_default=True, help="The app's display name in Slack.")
def manifest(base_url: str | None, socket_mode: bool, name: str) -> None:
    """Print the Slack app manifest (paste it at api.slack.com/apps > Create New App > From a manifest)."""
    if bool(base_url) == socket_mode:
        raise click.UsageError("Give either --url https://your-host (HTTP mode) or --socket (Socket Mode).")
    request_url = None
    if base_url:
        try:
            request_url = request_url_for(base_url)
        except ValueError as exc:
            raise click.ClickException(f"--url: {exc}") from exc
    click.echo(manifest_yaml(name=name, request_url=request_url), nl=False)


COMMANDS = [serve, manifest]
