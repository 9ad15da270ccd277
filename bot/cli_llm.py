"""`kbbot llm check`: is the answer model reachable, does the key work, do the model names exist?"""

from __future__ import annotations

import json
import time

import click

from bot.cli_help import FullHelpGroup
from retrieval.errors import ConfigError, KbbotError, LLMError


@click.group(cls=FullHelpGroup)
def llm() -> None:
    """The LLM that writes answers (OPENAI_API_KEY, OPENAI_BASE_URL, KBBOT_LLM_MODEL, KBBOT_TONE_*)."""


@llm.command()
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_obj
def check(obj, as_json: bool) -> None:  # type: ignore[no-untyped-def]
    """Call the base model (and the tone model, if one is active) with a one-word prompt."""
    from retrieval.llm import Deadline, create_router

    services = obj.services
    settings = services.settings.llm
    chat = services.chat_client
    if chat is None:
        raise ConfigError("No LLM is configured, so answers are extractive (quotes from the articles). Set "
                          "OPENAI_API_KEY, and OPENAI_BASE_URL for a non-OpenAI endpoint (see docs/llm.md).")
    try:
        models: list[str] | None = chat.list_models()
        list_error = None
    except LLMError as exc:  # some endpoints (Azure deployments, proxies) do not list models
        models, list_error = None, str(exc)
    try:
        tone_lookup = services.active_tone_model
        tone = create_router(settings, tone_lookup).tone_model()
    except KbbotError as exc:
        tone, list_error = None, f"{list_error or ''} (tone registry unreadable: {exc})".strip()
    results = []
    for role, model in (("base", settings.llm_model), ("tone", tone)):
        if model is None:
            continue
        started = time.perf_counter()
        try:
            chat.complete(model, [{"role": "user", "content": "Reply with the word OK."}],
                          Deadline.after(settings.llm_timeout_s), max_tokens=16)
            results.append({"role": role, "model": model, "ok": True,
                            "latency_ms": round((time.perf_counter() - started) * 1000, 1), "error": None})
        except LLMError as exc:
            results.append({"role": role, "model": model, "ok": False, "latency_ms": None, "error": str(exc)})
    report = {
        "endpoint": chat.endpoint, "base_model": settings.llm_model, "tone_model": tone,
        "tone_routing": settings.tone_routing, "tone_channels": settings.tone_channels,
        "tone_share": settings.tone_share, "available_models": models, "list_models_error": list_error,
        "checks": results,
    }
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        _print(report)
    failed = [r for r in results if not r["ok"]]
    if failed and as_json:
        raise LLMError("; ".join(f"{r['role']} model: {r['error']}" for r in failed))
    if failed:  # the report above says why, once
        roles = " and the ".join(f"{r['role']} model" for r in failed)
        raise LLMError(f"The {roles} failed the check: see `Check` above.")


def _print(report: dict) -> None:  # type: ignore[type-arg]
    click.echo(f"Endpoint:     {report['endpoint']}")
    click.echo(f"Base model:   {report['base_model']}")
    routing = report["tone_routing"]
    if report["tone_model"]:
        detail = {"channels": f" in {', '.join(report['tone_channels']) or '(no channels listed)'}",
                  "share": f" for {report['tone_share']:.0%} of users"}.get(routing, "")
        click.echo(f"Tone model:   {report['tone_model']} (routing: {routing}{detail})")
    else:
        click.echo("Tone model:   none (answers use the base model)")
    if report["available_models"] is not None:
        shown = report["available_models"][:20]
        more = len(report["available_models"]) - len(shown)
        click.echo("Models:       " + ", ".join(shown) + (f" (+{more} more)" if more > 0 else ""))
    elif report["list_models_error"]:
        click.echo(f"Models:       not listed ({report['list_models_error']})")
    for result in report["checks"]:
        status = f"OK in {result['latency_ms']:.0f} ms" if result["ok"] else f"FAILED: {result['error']}"
        click.echo(f"Check {result['role']}:   {result['model']}: {status}")
