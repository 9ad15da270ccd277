"""LLM answer synthesis over any OpenAI-compatible chat endpoint (OpenAI, Azure OpenAI, vLLM, Ollama).

    client.py       chat calls with a deadline and retries (client and error words: retrieval/openai_adapter.py)
    prompt.py       rules, fenced passages [1..k], thread context, token budget
    grounding.py    citation filter applied while streaming; quotes for the sources list
    synthesizer.py  LLMSynthesizer: route, stream, ground, fall back (tone -> base -> extractive)

The factories below build these from settings; `bot.services` calls them once per process.
"""

from __future__ import annotations

from collections.abc import Callable

from retrieval.answer import QueryRewriter, Synthesizer
from retrieval.llm.client import ChatClient, Deadline
from retrieval.llm.prompt import PromptBuilder
from retrieval.llm.synthesizer import LLMSynthesizer
from retrieval.routing import ToneRouter
from retrieval.settings import LLMSettings, SearchSettings

__all__ = ["ChatClient", "Deadline", "LLMSynthesizer", "create_llm_synthesizer", "create_rewriter", "create_router"]


def create_router(settings: LLMSettings, tone_lookup: Callable[[], str | None] | None = None) -> ToneRouter:
    return ToneRouter(settings.llm_model, rule=settings.tone_routing, channels=settings.tone_channels,
                      share=settings.tone_share, override=settings.tone_model, lookup=tone_lookup)


def create_llm_synthesizer(settings: LLMSettings, chat: ChatClient, *, fallback: Synthesizer,
                           tone_lookup: Callable[[], str | None] | None = None) -> LLMSynthesizer:
    from retrieval.tokens import default_counter

    prompts = PromptBuilder(default_counter(), max_tokens=settings.llm_max_context_tokens)
    return LLMSynthesizer(chat, create_router(settings, tone_lookup), prompts, fallback,
                          budget_s=settings.llm_answer_budget_s, uncited=settings.llm_uncited)


def create_rewriter(search: SearchSettings, chat: ChatClient | None, *, model: str) -> QueryRewriter | None:
    """KBBOT_QUERY_REWRITE: `auto` uses the LLM (`model`) when one is configured, else the heuristic."""
    from retrieval.rewrite import HeuristicRewriter, LLMRewriter

    if search.query_rewrite == "off":
        return None
    if search.query_rewrite == "auto" and chat is not None:
        return LLMRewriter(chat, model)
    return HeuristicRewriter()
