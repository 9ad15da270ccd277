"""`LLMSynthesizer`: the answer written by a chat model from the retrieved passages, streamed, grounded.

Per answer: build the prompt within the token budget, route (tone model or base), stream the model's
text through the citation filter, and end with the Answer. Failures walk down a chain that always ends
in an answer: tone model -> base model -> the extractive answer with a short note. Every LLM call of
the answer shares one deadline (KBBOT_LLM_ANSWER_BUDGET). The Answer keeps the route's arm and, when a
fallback wrote it, why the models before it failed.

The final Answer is authoritative. Its text equals the joined deltas, except when a model failed after
it had started writing (the fallback's answer replaces it) or an uncited answer was withheld
(KBBOT_LLM_UNCITED=abstain): the Slack layer shows the final Answer when it arrives.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterator, Sequence
from typing import Literal

import numpy as np

from retrieval.answer import AskContext, Synthesizer
from retrieval.errors import LLMError
from retrieval.llm.client import ChatClient, Deadline
from retrieval.llm.grounding import GroundedText, StreamGrounder, build_citations
from retrieval.llm.prompt import Prompt, PromptBuilder
from retrieval.routing import RouteRequest, ToneRouter
from retrieval.settings import DEFAULTS
from retrieval.types import Answer, SearchHit

log = logging.getLogger(__name__)

UNCITED_NOTE = "This answer cites no article, so it may not come from the knowledge base: check it."
WITHHELD_NOTE = "The model's answer cited no article, so it was withheld."
EXTRACTIVE_NOTE = ("The language model is unavailable right now, so this answer quotes the articles "
                   "directly.")
EMPTY_NOTE = "The model returned an empty answer."
TOO_LONG_NOTE = "The question leaves no room for any article in the model's context."

FALLBACK_REASON_CHARS = 1000

UncitedPolicy = Literal["mark", "abstain"]


class LLMSynthesizer:
    name = "llm"

    def __init__(self, chat: ChatClient, router: ToneRouter, prompts: PromptBuilder, fallback: Synthesizer,
                 *, budget_s: float = DEFAULTS.llm.llm_answer_budget_s,
                 uncited: UncitedPolicy = DEFAULTS.llm.llm_uncited) -> None:
        self.chat = chat
        self.router = router
        self.prompts = prompts
        self.fallback = fallback
        self.budget_s = budget_s
        self.uncited = uncited

    def stream(self, question: str, passages: Sequence[SearchHit], *, context: AskContext,
               question_vector: np.ndarray | None) -> Iterator[str | Answer]:
        started = time.perf_counter()
        deadline = Deadline.after(self.budget_s)
        prompt = self.prompts.build(question, passages, context.history)
        route = self.router.route(RouteRequest(context.channel, context.user, fallback_key=question,
                                                 tone=context.tone))
        timings = {"prompt": _ms(started)}
        log.debug("route %s (%s); prompt %d tokens, %d passages (%d dropped, %d shortened)",
                  route.models, route.reason, prompt.tokens, len(prompt.passages), prompt.dropped_passages,
                  prompt.truncated_passages)
        if not prompt.passages:
            yield Answer(question, "", [], "abstained", "none", note=TOO_LONG_NOTE, timings_ms=timings,
                         arm=route.arm)
            return
        shown = False
        failures: list[str] = []
        for model in route.models:
            grounder = StreamGrounder(len(prompt.passages))
            call_started = time.perf_counter()
            try:
                for delta in self.chat.stream(model, prompt.messages, deadline):
                    timings.setdefault("first_token", _ms(started))
                    piece = grounder.feed(delta)
                    if piece:
                        shown = True
                        yield piece
            except LLMError as exc:
                failures.append(f"{model}: {exc}")
                log.warning("model %s failed%s: %s", model,
                            ", trying the next one" if model != route.models[-1] else "", exc)
                continue
            tail, grounded = grounder.finish()
            if tail:
                yield tail
            timings["llm"] = _ms(call_started)
            answer = self._answer(question, grounded, prompt, model)
            if grounded.dropped_markers:
                log.info("removed %d citation(s) to passages that do not exist", grounded.dropped_markers)
            yield dataclasses.replace(answer, timings_ms=timings, arm=route.arm,
                                      fallback_reason=_fallback_reason(failures))
            return
        log.error("no model could answer (%s); sending the extractive answer", "; ".join(failures))
        for event in self._extractive(question, passages, context, question_vector, timings,
                                      stream_text=not shown):
            if isinstance(event, Answer):
                event = dataclasses.replace(event, arm=route.arm, fallback_reason=_fallback_reason(failures))
            yield event

    def _answer(self, question: str, grounded: GroundedText, prompt: Prompt, model: str) -> Answer:
        if grounded.no_answer:
            return Answer(question, "", [], "abstained", model)
        if not grounded.text:
            log.warning("model %s returned an empty answer", model)
            return Answer(question, "", [], "abstained", model, note=EMPTY_NOTE)
        if not grounded.cited:
            if self.uncited == "abstain":
                return Answer(question, "", [], "abstained", model, note=WITHHELD_NOTE)
            return Answer(question, grounded.text, [], "answered", model, note=UNCITED_NOTE)
        citations = build_citations(grounded, prompt.passages)
        return Answer(question, grounded.text, citations, "answered", model)

    def _extractive(self, question: str, passages: Sequence[SearchHit], context: AskContext,
                    question_vector: np.ndarray | None, timings: dict[str, float], *,
                    stream_text: bool) -> Iterator[str | Answer]:
        final: Answer | None = None
        for event in self.fallback.stream(question, passages, context=context,
                                          question_vector=question_vector):
            if isinstance(event, Answer):
                final = event
            elif stream_text:
                yield event
        assert final is not None, "a synthesizer must end with an Answer"
        yield dataclasses.replace(final, note=EXTRACTIVE_NOTE, timings_ms={**timings, **final.timings_ms})


def _fallback_reason(failures: list[str]) -> str | None:
    """What the models before the one that answered said ("model: error; ..."), for the answer log."""
    if not failures:
        return None
    reason = "; ".join(failures)
    return reason if len(reason) <= FALLBACK_REASON_CHARS else reason[: FALLBACK_REASON_CHARS - 1] + "…"


def _ms(since: float) -> float:
    return (time.perf_counter() - since) * 1000
