"""Answers one question in one Slack thread: the shared path behind mentions, DMs, the messages tab and
thread follow-ups.

    claim the event id (Slack retries are dropped) -> show a status or placeholder at once ->
    read the thread's earlier turns -> run the answer pipeline, streaming when it streams ->
    log the answer -> post it (or replace the placeholder) -> on any failure, say so with an error id.

In a channel whose profile says `reply_privately`, every message goes to the asker alone (ephemeral, not
streamed) and the answer carries a "Share in channel" button (bot/share.py).

Every path ends in a message the asker sees; nothing fails silently.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import secrets
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot import blocks
from bot.channel_profiles import ChannelProfile, ChannelProfiles
from bot.dedupe import EventDeduper
from bot.readers import DEGRADED_NOTE, Place, ReaderResolver
from retrieval.access import ReaderScope
from retrieval.answer import AnswerPipeline, AskContext, Turn
from retrieval.answer_log import AnswerLog, Asked
from retrieval.audiences import visible_to
from retrieval.db import Database
from retrieval.errors import DatabaseError, EmbeddingError, EmptyQuestionError, KbbotError, LLMError
from retrieval.settings import DEFAULTS
from retrieval.types import Answer

log = logging.getLogger(__name__)

MAX_HISTORY_TURNS = 10
_ALL = "*"  # in `_hidden_answers`: every earlier answer of the thread
_MENTION = re.compile(r"<@[UW][A-Z0-9]+(?:\|[^>]*)?>")
_FALLBACK_ERRORS = {"msg_too_long", "invalid_blocks", "invalid_blocks_format", "too_many_blocks"}

HELP_TEXT = ("Ask me a question about our knowledge base, e.g. _How do I connect to the VPN from home?_ "
             "I answer with the articles I used as sources.")


@dataclass(frozen=True)
class Question:
    text: str
    asker: str
    channel: str
    thread_ts: str  # the thread the answer goes to (the question itself when it starts one)
    message_ts: str  # the asker's message
    channel_kind: str  # "channel", "im" or "assistant"
    event_id: str | None = None
    team_id: str | None = None
    bot_user_id: str | None = None  # ours: its messages in the thread are the assistant's turns
    received_at: float = field(default_factory=time.monotonic)

    @property
    def is_follow_up(self) -> bool:
        return self.thread_ts != self.message_ts


def strip_mentions(text: str) -> str:
    return " ".join(_MENTION.sub(" ", text or "").split())


def new_error_id() -> str:
    return secrets.token_hex(4)


def user_reason(exc: BaseException) -> str:
    """Words for the asker; the log keeps the real cause (which may hold hosts or settings)."""
    if isinstance(exc, DatabaseError):
        return "the knowledge base is unreachable right now."
    if isinstance(exc, LLMError):
        return "the answer model is unavailable right now."
    if isinstance(exc, EmbeddingError):
        return "the search model failed."
    if isinstance(exc, SlackApiError):
        return "Slack did not accept my reply."
    return "something went wrong on my side."


class Responder:
    """Shows progress on the caller's thread (fast), then answers on its own pool, so a queue of slow
    answers never delays Slack acks, button clicks or commands."""

    def __init__(self, pipeline: Callable[[], AnswerPipeline], answer_log: Callable[[], AnswerLog],
                 deduper: EventDeduper, readers: ReaderResolver, *, profiles: ChannelProfiles | None = None,
                 database: Callable[[], Database] | None = None,
                 can_escalate: bool = False, stale_after_days: int = DEFAULTS.slack.stale_after_days,
                 workers: int = DEFAULTS.slack.slack_workers) -> None:
        """`pipeline` and `answer_log` are called when a question needs them: the model loads and the
        database opens on first use (and a database that was down is reached again when it is back).
        Who reads each answer decides what it may use (`readers`, bot/readers.py); `profiles` declare
        channels; `database` is where a follow-up's earlier answers' sources are checked against them."""
        self.pipeline = pipeline
        self.answer_log = answer_log
        self.database = database
        self.readers = readers
        self.profiles = profiles or ChannelProfiles()
        self.deduper = deduper
        self.can_escalate = can_escalate  # a support group is configured for `Ask a human`
        self.stale_after_days = stale_after_days
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kbbot-answer")
        self._in_flight: set[Future[None]] = set()

    def answer(self, question: Question, client: WebClient,
               set_status: Callable[[str], Any] | None = None) -> Future[None] | None:
        """Answer `question` in its thread. `set_status` (assistant threads) replaces the placeholder.

        Returns the pending answer, or None when nothing more is to be done (a retry, or handled here)."""
        if not self.deduper.claim(question.event_id):
            return None
        profile = self._profile(client, question)
        delivery = _Delivery(client, question, private=profile is not None and profile.reply_privately)
        try:
            if not question.text:
                delivery.post_final([blocks.render_notice(HELP_TEXT)])
                return None
            if set_status is not None:
                set_status(blocks.SEARCHING_TEXT)
                delivery.mark_visible()
            else:
                delivery.post_placeholder()
        except Exception as exc:
            self._fail(question, delivery, exc)
            return None
        future = self._pool.submit(self._complete, question, delivery, profile)
        self._in_flight.add(future)
        future.add_done_callback(self._in_flight.discard)
        return future

    def wait_idle(self, timeout: float | None = None) -> None:
        """Block until the answers in flight are delivered (shutdown, tests, benchmarks)."""
        wait(list(self._in_flight), timeout=timeout)

    def close(self, wait: bool = True) -> None:
        """Stop taking questions; with `wait`, finish the ones in flight."""
        self._pool.shutdown(wait=wait, cancel_futures=not wait)

    def _profile(self, client: WebClient, question: Question) -> ChannelProfile | None:
        """The channel profile that applies (channels only: a DM or the messages tab has none)."""
        if question.channel_kind != "channel" or not self.profiles.profiles:
            return None
        return self.profiles.for_channel(question.channel, self.readers.channel_name(client, question.channel))

    def _complete(self, question: Question, delivery: _Delivery, profile: ChannelProfile | None) -> None:
        try:
            self._answer(question, delivery, profile)
        except EmptyQuestionError:
            delivery.post_final([blocks.render_notice(HELP_TEXT)])
        except Exception as exc:  # every failure must reach the asker, whatever its kind
            self._fail(question, delivery, exc)

    # --- the happy path --------------------------------------------------------------------------
    def _answer(self, question: Question, delivery: _Delivery, profile: ChannelProfile | None) -> None:
        # A private reply is read by the asker alone: their own scope, as in a DM.
        place = Place(question.channel, "private" if delivery.private else question.channel_kind, question.asker,
                      declared=profile.audience if profile else None)
        scope = self.readers.scope(delivery.client, place)
        log.info("answering %s in %s for %s%s", question.event_id or "-", question.channel, scope.describe(),
                 " (privately)" if delivery.private else "")
        history = self._history(delivery.client, question, scope) if question.is_follow_up else ()
        context = AskContext(history=history, channel=question.channel, user=question.asker, audience=scope,
                             sources=profile.sources if profile and profile.sources else None,
                             tone=profile.tone if profile else None)
        final: Answer | None = None
        pending: list[str] = []
        streamed: list[str] = []
        for event in self.pipeline().stream(question.text, context):
            if isinstance(event, Answer):
                final = event
                break
            if delivery.private:
                continue  # an ephemeral message can be neither streamed nor updated: it is sent whole
            streamed.append(event)
            pending.append(event)
            if delivery.streamer is None and len(pending) >= 2:
                delivery.start_stream("".join(pending))
                pending.clear()
            elif delivery.streamer is not None:
                delivery.streamer.append(markdown_text=event)
        if final is None:
            raise KbbotError("the answer pipeline ended without an answer")
        if scope.degraded:
            final = dataclasses.replace(final, note=" ".join(filter(None, (final.note, DEGRADED_NOTE))))
        answer_id = self._log(question, final, private=delivery.private)
        messages = blocks.render_answer(final, answer_id=answer_id, can_escalate=self.can_escalate,
                                        stale_after_days=self.stale_after_days,
                                        include_text=delivery.streamer is None, can_share=delivery.private)
        if delivery.streamer is not None:
            delivery.stop_stream(messages)
            if "".join(streamed).strip() != final.text.strip():
                # The answerer corrected what it streamed (e.g. dropped a claim it could not cite): the
                # message must show the answer that was logged and reviewed, not the draft.
                full = blocks.render_answer(final, answer_id=answer_id, can_escalate=self.can_escalate,
                                            stale_after_days=self.stale_after_days)
                delivery.replace_streamed(full[0])
        else:
            delivery.post_final(messages, final, stale_after_days=self.stale_after_days)
        if answer_id is not None:
            try:
                self.answer_log().set_delivery(answer_id, message_ts=delivery.final_ts,
                                               latency_ms=delivery.latency_ms())
            except KbbotError as exc:
                log.warning("answer %s: could not record delivery: %s", answer_id, exc)
        timings = ", ".join(f"{stage.removeprefix('slack_').replace('_', ' ')} {ms:.0f} ms"
                            for stage, ms in delivery.latency_ms().items())
        log.info("answered %s in %s/%s: outcome=%s model=%s (%s)", question.event_id or "-", question.channel,
                 question.thread_ts, final.outcome, final.model, timings or "not delivered")

    def _log(self, question: Question, answer: Answer, *, private: bool = False) -> int | None:
        asked = self._asked(question)
        if private:
            asked.metadata["private"] = True  # answered to the asker alone; Share in channel may publish it
        try:
            return self.answer_log().record(asked, answer)
        except KbbotError as exc:
            # The asker still gets the answer; only its feedback buttons are lost.
            log.error("could not log the answer to %s: %s", question.event_id, exc)
            return None

    def _asked(self, question: Question) -> Asked:
        return Asked(question.text, question.channel_kind, question.asker, question.channel,
                     question.thread_ts, {"event_id": question.event_id, "message_ts": question.message_ts})

    # --- failures --------------------------------------------------------------------------------
    def _fail(self, question: Question, delivery: _Delivery, exc: BaseException) -> None:
        error_id = new_error_id()
        log.error("answering %s failed [error id %s]: %s", question.event_id or question.message_ts,
                  error_id, exc, exc_info=exc)
        try:
            self.answer_log().record_error(self._asked(question), error_id=error_id,
                                           error=f"{type(exc).__name__}: {exc}",
                                           latency_ms=delivery.latency_ms())
        except Exception as log_exc:
            log.warning("error %s not saved to the answer log: %s", error_id, log_exc)
        try:
            delivery.abort_stream()
            delivery.post_final([blocks.render_error(error_id, user_reason(exc))])
        except Exception as post_exc:
            log.error("could not tell the asker about error %s: %s", error_id, post_exc)

    # --- thread history --------------------------------------------------------------------------
    def _history(self, client: WebClient, question: Question, scope: ReaderScope) -> tuple[Turn, ...]:
        """The thread's earlier turns, oldest first, for follow-up rewriting. An earlier answer citing an
        article `scope` may not read (the channel's readers changed since, or the article's audience did)
        is left out: the rewriter and the LLM must not carry its text into this answer."""
        try:
            response = client.conversations_replies(channel=question.channel, ts=question.thread_ts,
                                                    limit=50)
        except SlackApiError as exc:
            log.warning("could not read thread %s for context (%s); answering without it",
                        question.thread_ts, exc.response.get("error"))
            return ()
        turns: list[Turn] = []
        hidden = self._hidden_answers(question, scope)
        for message in response.get("messages", []):
            ts = message.get("ts", "")
            if _ts_key(ts) >= _ts_key(question.message_ts):
                continue
            own = question.bot_user_id is not None and message.get("user") == question.bot_user_id
            if own and (ts in hidden or _ALL in hidden):
                log.info("thread %s: an earlier answer cites articles outside %s; left out of the context",
                         question.thread_ts, scope.describe())
            elif own:
                text = blocks.history_text(message.get("blocks"), message.get("text", ""))
                if text and blocks.SEARCHING_TEXT not in text:
                    turns.append(Turn("assistant", text))
            elif not message.get("bot_id"):
                text = strip_mentions(message.get("text", ""))
                if text:
                    turns.append(Turn("user", text))
        return tuple(turns[-MAX_HISTORY_TURNS:])

    def _hidden_answers(self, question: Question, scope: ReaderScope) -> set[str]:
        """The message ts of this thread's logged answers that `scope` may not read today."""
        if self.database is None:
            return set()
        try:
            answers = self.answer_log().in_thread(question.channel, question.thread_ts)
            readable = {a.id for a in visible_to(self.database(), scope, answers)}
        except KbbotError as exc:
            # Unknown which are readable: answer without the bot's earlier turns rather than risk them.
            log.warning("thread %s: could not check earlier answers' sources (%s); leaving them out",
                        question.thread_ts, exc)
            return {_ALL}
        return {a.message_ts for a in answers if a.id not in readable and a.message_ts}


def _ts_key(ts: str) -> tuple[int, int]:
    seconds, _, micros = ts.partition(".")
    return int(seconds or 0), int(micros or 0)


class _Delivery:
    """The messages of one answer in one thread: placeholder, stream, final message(s). `private`: every
    one of them ephemeral, to the asker alone (Slack cannot update those: the answer follows the
    placeholder as a new message)."""

    def __init__(self, client: WebClient, question: Question, *, private: bool = False) -> None:
        self.client = client
        self.question = question
        self.private = private
        self.placeholder_ts: str | None = None
        self.final_ts: str | None = None
        self.streamer: Any = None
        self.visible_ms: float | None = None
        self.delivered_ms: float | None = None

    def _elapsed(self) -> float:
        return (time.monotonic() - self.question.received_at) * 1000

    def mark_visible(self) -> None:
        if self.visible_ms is None:
            self.visible_ms = self._elapsed()

    def latency_ms(self) -> dict[str, float]:
        out = {}
        if self.visible_ms is not None:
            out["slack_first_visible"] = self.visible_ms
        if self.delivered_ms is not None:
            out["slack_delivered"] = self.delivered_ms
        return out

    def post_placeholder(self) -> None:
        message = blocks.render_placeholder()
        if self.private:
            self._post(message)
            self.mark_visible()
            return
        response = self.client.chat_postMessage(channel=self.question.channel, thread_ts=self.question.thread_ts,
                                                text=message.text, blocks=message.blocks)
        self.placeholder_ts = response["ts"]
        self.mark_visible()

    # --- streaming -------------------------------------------------------------------------------
    def start_stream(self, text: str) -> None:
        self.streamer = self.client.chat_stream(
            channel=self.question.channel, thread_ts=self.question.thread_ts,
            recipient_user_id=self.question.asker, recipient_team_id=self.question.team_id,
        )
        self.streamer.append(markdown_text=text)

    def stop_stream(self, messages: list[blocks.SlackMessage]) -> None:
        first, *rest = messages
        response = self.streamer.stop(blocks=first.blocks or None)
        self.final_ts = self.streamer.ts or response.get("ts")
        self.streamer = None
        self._drop_placeholder()
        for message in rest:
            self._post(message)
        self.delivered_ms = self._elapsed()
        self.mark_visible()

    def replace_streamed(self, message: blocks.SlackMessage) -> None:
        if self.final_ts is not None:
            self.client.chat_update(channel=self.question.channel, ts=self.final_ts, text=message.text,
                                    blocks=message.blocks)

    def abort_stream(self) -> None:
        """Close a stream cut short by an error, so the error message follows the partial text."""
        if self.streamer is not None and self.streamer.ts:
            try:
                self.streamer.stop(markdown_text="\n\n_(interrupted)_")
            except SlackApiError as exc:
                log.warning("could not close the interrupted stream: %s", exc.response.get("error"))
        self.streamer = None

    # --- final messages --------------------------------------------------------------------------
    def post_final(self, messages: list[blocks.SlackMessage], answer: Answer | None = None, *,
                   stale_after_days: int = DEFAULTS.slack.stale_after_days) -> None:
        try:
            self._post_all(messages)
        except SlackApiError as exc:
            if answer is None or exc.response.get("error") not in _FALLBACK_ERRORS:
                raise
            # Slack refused the blocks (too long, or a limit we did not foresee): plain text still reaches
            # the asker, without buttons.
            log.warning("Slack refused the answer message (%s): sending it as plain text",
                        exc.response.get("error"))
            texts = blocks.plain_messages(answer, stale_after_days=stale_after_days)
            self._post_all([blocks.SlackMessage(t, []) for t in texts])
        self.delivered_ms = self._elapsed()
        self.mark_visible()

    def _post_all(self, messages: list[blocks.SlackMessage]) -> None:
        first, *rest = messages
        if self.private:
            for message in messages:
                self._post(message)
            return
        if self.placeholder_ts is not None:
            self.client.chat_update(channel=self.question.channel, ts=self.placeholder_ts, text=first.text,
                                    blocks=first.blocks)
            self.final_ts = self.placeholder_ts
            self.placeholder_ts = None
        else:
            self.final_ts = self._post(first)
        for message in rest:
            self._post(message)

    def _post(self, message: blocks.SlackMessage) -> str:
        kwargs: dict[str, Any] = {"blocks": message.blocks} if message.blocks else {}
        if self.private:
            # An ephemeral message's ts names nothing in the thread: it is not recorded as the answer's.
            self.client.chat_postEphemeral(channel=self.question.channel, user=self.question.asker,
                                           thread_ts=self.question.thread_ts, text=message.text, **kwargs)
            return ""
        response = self.client.chat_postMessage(channel=self.question.channel,
                                                thread_ts=self.question.thread_ts, text=message.text, **kwargs)
        return str(response["ts"])

    def _drop_placeholder(self) -> None:
        if self.placeholder_ts is None:
            return
        try:
            self.client.chat_delete(channel=self.question.channel, ts=self.placeholder_ts)
        except SlackApiError as exc:
            log.warning("could not remove the placeholder: %s", exc.response.get("error"))
        self.placeholder_ts = None
