"""`/reindex` for admins: who may run it, and the run itself in a background thread.

Slack lets a command's `response_url` be used 5 times in 30 minutes, so a run says at most: started, two
progress updates (replacing each other), and the summary. Live progress of a long run is always one
`/reindex status` away (it reads the run's heartbeat from PostgreSQL, so it works from any replica).
Exclusivity is the sync's PostgreSQL advisory lock: a second run from any replica is refused.

What a run reports follows access (retrieval/access.py): an error about an article names it only to someone
who may read that article (the run recorded its audience; an article the source could not deliver has none
known, so it is named to nobody in Slack; `kbbot status` on the server names them all). Admins also see how
many articles are held back (indexed, never answered) and why.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.readers import Place, ReaderResolver
from bot.responder import new_error_id
from retrieval.access import ReaderScope
from retrieval.db import Database
from retrieval.errors import KbbotError, SyncInProgressError
from retrieval.runs import SyncRun
from retrieval.sources import Source
from retrieval.status import index_status
from retrieval.sync import Indexer, Progress, ProgressCallback

log = logging.getLogger(__name__)

Respond = Callable[..., Any]  # bolt's `respond`: posts to the command's response_url
Action = Literal["incremental", "full", "status", "help"]

USAGE = ("`/reindex` syncs changed articles, `/reindex full` re-embeds everything (needed after changing the "
         "embedding model), `/reindex status` shows the running or last sync.")
_SLACK_USER = re.compile(r"[UW][A-Z0-9]{2,}")


def parse(text: str) -> Action:
    word = (text or "").strip().lower()
    if word in ("", "incremental", "sync"):
        return "incremental"
    if word in ("full", "status"):
        return word  # type: ignore[return-value]
    return "help"


def who(started_by: str | None) -> str:
    if not started_by:
        return "someone"
    return f"<@{started_by}>" if _SLACK_USER.fullmatch(started_by) else started_by


def in_progress_text(exc: SyncInProgressError) -> str:
    when = exc.started_at.strftime("%Y-%m-%d %H:%M UTC") if exc.started_at else "a moment ago"
    return (f":no_entry: A sync is already running, started by {who(exc.started_by)} at {when}. "
            "Try again when it ends (`/reindex status` shows its progress).")


class AdminCheck:
    """Admins: listed users, members of listed user groups, and Slack workspace admins and owners."""

    def __init__(self, admin_users: list[str], admin_groups: list[str]) -> None:
        self.admin_users = set(admin_users)
        self.admin_groups = list(admin_groups)

    def is_admin(self, client: WebClient, user_id: str) -> bool:
        if user_id in self.admin_users:
            return True
        try:
            user = client.users_info(user=user_id)["user"]
            if user.get("is_admin") or user.get("is_owner") or user.get("is_primary_owner"):
                return True
        except SlackApiError as exc:
            log.warning("users.info for %s failed (%s): not treated as a workspace admin", user_id,
                        exc.response.get("error"))
        return self.in_groups(client, user_id, self.admin_groups)

    @staticmethod
    def in_groups(client: WebClient, user_id: str, groups: list[str]) -> bool:
        for group in groups:
            try:
                if user_id in client.usergroups_users_list(usergroup=group).get("users", []):
                    return True
            except SlackApiError as exc:
                log.warning("usergroups.users.list for %s failed (%s)", group, exc.response.get("error"))
        return False


def visible_errors(run: SyncRun, scope: ReaderScope | None) -> tuple[list[dict[str, Any]], int]:
    """(the run's errors `scope` may see, how many others): a source's error is for everyone, an article's
    only for its audience. An error without a recorded audience that is not a source's (a run logged before
    audiences were recorded) is hidden: its article's audience is unknown. `scope` None: the operator."""
    if scope is None:
        return list(run.errors), 0
    shown = [e for e in run.errors
             if ("audience" in e and scope.may_read(e["audience"]))
             or ("audience" not in e and e.get("where") in run.sources)]
    return shown, len(run.errors) - len(shown)


def summary_text(run: SyncRun, scope: ReaderScope | None = None) -> str:
    icon = {"succeeded": ":white_check_mark:", "partial": ":warning:"}.get(run.status, ":x:")
    duration = f" in {run.duration_s:.1f} s" if run.duration_s is not None else ""
    lines = [
        f"{icon} Reindex {run.status} ({run.kind}, run #{run.id}){duration}: {run.added} added, {run.updated} "
        f"updated, {run.removed} removed, {run.unchanged} unchanged, {run.failed} failed; "
        f"{run.chunks_embedded} passages embedded."
    ]
    errors, hidden = visible_errors(run, scope)
    for error in errors[:5]:
        lines.append(f"• `{error.get('where', '?')}`: {error.get('error', '')}")
    if len(errors) > 5:
        lines.append(f"…and {len(errors) - 5} more (`kbbot status` lists them).")
    if hidden:
        lines.append(f"{hidden} {'error is' if hidden == 1 else 'errors are'} about articles you may not read "
                     "(or whose audience is unknown): `kbbot status` on the server lists them.")
    return "\n".join(lines)


def progress_text(p: Progress) -> str:
    c = p.counts
    where = f" `{p.source}`" if p.source else ""
    return (f":hourglass_flowing_sand: Reindexing{where}: {c.added} added, {c.updated} updated, "
            f"{c.unchanged} unchanged, {c.failed} failed so far; {c.chunks_embedded} passages embedded.")


@dataclass
class _Budget:
    """Posts left on a response_url and when the last progress went out."""

    progress_left: int
    every_s: float
    last_at: float = 0.0


class Reindexer:
    def __init__(self, sources: Callable[[], list[Source]], indexer: Callable[[ProgressCallback], Indexer],
                 database: Callable[[], Database], admins: AdminCheck, readers: ReaderResolver, *,
                 progress_every_s: float = 15.0, progress_posts: int = 2) -> None:
        """`sources` lists what to sync (re-read at each command), `indexer` builds an Indexer reporting to
        the given callback, `database` is where `/reindex status` reads, `readers` what the person reading
        a report may see (errors about articles are named to their audience only)."""
        self.sources = sources
        self.readers = readers
        self.indexer = indexer
        self.database = database
        self.admins = admins
        self.progress_every_s = progress_every_s
        self.progress_posts = progress_posts
        self.threads: list[threading.Thread] = []

    def handle(self, text: str, user_id: str, client: WebClient, respond: Respond) -> None:
        """Runs after the command was acked; long work goes to its own thread."""
        action = parse(text)
        try:
            if action == "help":
                respond(text=USAGE, response_type="ephemeral")
            elif action == "status":
                admin = self.admins.is_admin(client, user_id)
                respond(text=self.status_text(self._scope(client, user_id), admin=admin), response_type="ephemeral")
            elif not self.admins.is_admin(client, user_id):
                respond(text=":lock: Sorry, only knowledge-base admins can run `/reindex`. Ask one of them, "
                        "or use `/reindex status` to see when the index was last refreshed.",
                        response_type="ephemeral")
            else:
                self._start(action, user_id, self._scope(client, user_id), respond)
        except KbbotError as exc:
            error_id = new_error_id()
            log.error("/reindex %s by %s failed [error id %s]: %s", action, user_id, error_id, exc)
            respond(text=f":x: {exc} (error id `{error_id}`)", response_type="ephemeral")

    def _scope(self, client: WebClient, user_id: str) -> ReaderScope:
        """What the person asking may read (a report reaches them alone, ephemeral)."""
        return self.readers.scope(client, Place(user_id, "private", user_id))

    def _start(self, kind: Literal["incremental", "full"], user_id: str, scope: ReaderScope,
               respond: Respond) -> None:
        # No look at sync_runs first: a row left `running` by a crashed process would refuse forever.
        # The sync's advisory lock decides, and its refusal names who holds it.
        sources = self.sources()
        if not sources:
            respond(text=":warning: No sources are configured yet: run `kbbot ingest PATH` (or set "
                    "KBBOT_SOURCES_FILE) first.", response_type="ephemeral")
            return
        thread = threading.Thread(target=self._run, args=(kind, user_id, sources, scope, respond),
                                  name=f"reindex-{user_id}", daemon=True)
        self.threads.append(thread)
        thread.start()

    def _run(self, kind: Literal["incremental", "full"], user_id: str, sources: list[Any], scope: ReaderScope,
             respond: Respond) -> None:
        budget = _Budget(self.progress_posts, self.progress_every_s)
        started = False

        def on_progress(p: Progress) -> None:
            nonlocal started
            if not started:  # the first progress event comes right after the lock was taken
                started = True
                names = ", ".join(f"`{s.name}`" for s in sources)
                _safe(respond, text=f":arrows_counterclockwise: Started {_article(kind)} {kind} reindex of {names} "
                      f"(requested by <@{user_id}>). I'll post the summary here.", response_type="ephemeral")
                budget.last_at = time.monotonic()
                return
            if p.stage == "done" or budget.progress_left <= 0:
                return
            if time.monotonic() - budget.last_at >= budget.every_s:
                budget.progress_left -= 1
                budget.last_at = time.monotonic()
                _safe(respond, text=progress_text(p), response_type="ephemeral", replace_original=True)

        try:
            run = self.indexer(on_progress).sync(sources, kind=kind, trigger="slack", started_by=user_id)
            _safe(respond, text=summary_text(run, scope), response_type="ephemeral", replace_original=False)
            log.info("/reindex by %s: %s", user_id, summary_text(run).splitlines()[0])
        except SyncInProgressError as exc:
            _safe(respond, text=in_progress_text(exc), response_type="ephemeral")
        except KbbotError as exc:
            error_id = new_error_id()
            log.error("/reindex by %s failed [error id %s]: %s", user_id, error_id, exc)
            _safe(respond, text=f":x: Reindex failed: {exc} (error id `{error_id}`)", response_type="ephemeral")
        except Exception as exc:
            error_id = new_error_id()
            log.exception("/reindex by %s failed unexpectedly [error id %s]", user_id, error_id)
            _safe(respond, text=f":x: Reindex failed unexpectedly ({type(exc).__name__}); the bot's log has "
                  f"the details under error id `{error_id}`.", response_type="ephemeral")

    def status_text(self, scope: ReaderScope, *, admin: bool = False) -> str:
        """The running or last sync and the index size, as `scope` may see it; admins also read how many
        articles are held back and why (counts and reasons only: never which articles)."""
        status = index_status(self.database())
        lines = []
        if status.running is not None:
            r = status.running
            lines.append(f":hourglass_flowing_sand: A {r.kind} sync is running, started by {who(r.started_by)} "
                         f"at {r.started_at:%Y-%m-%d %H:%M UTC}: {r.added} added, {r.updated} updated, "
                         f"{r.unchanged} unchanged, {r.failed} failed so far; {r.chunks_embedded} passages "
                         "embedded.")
        if status.last_run is not None:
            lines.append(f"Last sync, finished {status.last_run.finished_at:%Y-%m-%d %H:%M UTC} "
                         f"by {who(status.last_run.started_by)}:")
            lines.append(summary_text(status.last_run, scope))
        elif status.running is None:
            lines.append("No sync has run yet.")
        lines.append(f"Index: {status.articles} articles, {status.chunks} passages, model "
                     f"`{status.model or 'none'}`.")
        if status.answer_sentences is not None:
            lines.append(status.answer_sentences.line().capitalize() + ".")
        if admin and status.held_back:
            lines.append(f":no_entry: {status.held_back_articles} articles are held back (indexed, never answered "
                         "until their restriction maps to Slack groups):")
            lines += [f"• `{source}`: {count} ({reason})" for source, reason, count in status.held_back[:10]]
        return "\n".join(lines)

    def join(self, timeout: float | None = None) -> None:
        for thread in self.threads:
            thread.join(timeout)


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def _safe(respond: Respond, **kwargs: Any) -> None:
    try:
        respond(**kwargs)
    except Exception as exc:  # a dead response_url must not kill the run
        log.warning("posting to the response_url failed: %s", exc)
