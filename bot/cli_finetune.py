"""`kbbot finetune ...`: prepare sanitized training data, run fine-tuning jobs, manage the tone model.

The core (``finetune``) raises ``FinetuneError``s; this module turns them into ``click.ClickException``
and prints reports. ``prepare`` and ``validate`` work without a database or an API key.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from bot.cli_help import FullHelpGroup
from finetune.errors import FinetuneError
from retrieval.errors import KbbotError


@contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except KbbotError as err:  # FinetuneError, and DatabaseError/ConfigError from the edges it touches
        raise click.ClickException(str(err)) from err


def _table(title: str, counts: dict[str, Any]) -> None:
    click.echo(click.style(title, bold=True))
    if not counts:
        click.echo("  (none)")
    width = max((len(str(k)) for k in counts), default=0)
    for key, value in counts.items():
        click.echo(f"  {key!s:<{width}}  {value}")


def _print_validation(report: dict[str, Any], *, with_cost: bool = True) -> None:
    tokens = report.get("tokens_per_example") or {}
    click.echo(
        f"  {report['file']}: {report['examples']} examples, {report['tokens_total']} tokens "
        f"(per example min {tokens.get('min', '-')}, median {tokens.get('median', '-')}, "
        f"max {tokens.get('max', '-')}), {report['examples_over_limit']} over the "
        f"{report['context_limit']}-token limit"
    )
    if report["format_errors"]:
        click.echo(f"  format errors: {report['format_errors']}")
        for line in report["error_lines"][:10]:
            click.echo(f"    {line}")
    if not with_cost:  # a validation file is scored, not trained on: it costs nothing to train
        return
    click.echo(
        f"  estimated cost on {report['base_model']}: ${report['estimated_cost_usd']:.2f} for "
        f"{report['epochs']} epochs ({report['epochs_source']}) at ${report['price_usd_per_mtok']}/1M tokens"
    )
    click.echo(f"  token counts: {report['token_counter']}")


@click.group(cls=FullHelpGroup)
def finetune() -> None:
    """Fine-tune a support-tone model from sanitized chat logs (tone only: knowledge stays in the index)."""


@finetune.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for train.jsonl, validation.jsonl, report.json and manifest.json.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["openai", "csv", "slack", "twitter"]),
    help="Input format; inferred from each input when omitted.",
)
@click.option("--agent-ids", default="", help="Slack export: comma-separated user ids of the support agents.")
@click.option("--agent-group", default=None, help="Slack export: user group (id or handle) of the agents.")
@click.option(
    "--agent",
    "csv_agents",
    multiple=True,
    help="CSV without a role column: a speaker name that is an agent (repeatable).",
)
@click.option(
    "--system-prompt-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The tone system prompt to put in every example (default: a built-in one).",
)
@click.option("--validation-fraction", default=0.1, show_default=True, type=click.FloatRange(0, 0.5))
@click.option("--max-example-tokens", default=4096, show_default=True, type=click.IntRange(64))
@click.option(
    "--phone-region",
    "phone_regions",
    multiple=True,
    help="Region whose national phone formats to detect (repeatable; default US and GB).",
)
@click.option(
    "--base-model", default="gpt-4o-mini", show_default=True, help="For limits and the cost estimate."
)
@click.option(
    "--epochs", type=click.IntRange(1, 50), help="For the cost estimate (default: OpenAI's heuristic)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def prepare(
    inputs: tuple[Path, ...],
    out_dir: Path,
    fmt: str | None,
    agent_ids: str,
    agent_group: str | None,
    csv_agents: tuple[str, ...],
    system_prompt_file: Path | None,
    validation_fraction: float,
    max_example_tokens: int,
    phone_regions: tuple[str, ...],
    base_model: str,
    epochs: int | None,
    as_json: bool,
) -> None:
    """Read chat logs, sanitize them and write the training files (no database needed)."""
    from finetune.builder import BuildOptions
    from finetune.pii.sanitizer import SanitizerConfig
    from finetune.prepare import PrepareRequest
    from finetune.prepare import prepare as run_prepare
    from finetune.readers import SlackAgents

    options = BuildOptions(validation_fraction=validation_fraction, max_example_tokens=max_example_tokens)
    if system_prompt_file is not None:
        options = BuildOptions(
            system_prompt=system_prompt_file.read_text(encoding="utf-8").strip(),
            validation_fraction=validation_fraction,
            max_example_tokens=max_example_tokens,
        )
    request = PrepareRequest(
        inputs=inputs,
        out_dir=out_dir,
        fmt=fmt,
        slack_agents=SlackAgents(
            frozenset(filter(None, (a.strip() for a in agent_ids.split(",")))), agent_group
        ),
        csv_agents=frozenset(csv_agents),
        options=options,
        sanitizer=SanitizerConfig(phone_regions=tuple(r.upper() for r in phone_regions) or ("US", "GB")),
        base_model=base_model,
        epochs=epochs,
    )
    with _errors():
        report = run_prepare(request)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(
        f"Read {report['conversations_read']} conversations; {report['unreadable']['count']} unreadable "
        "lines/rows skipped."
    )
    for line in report["unreadable"]["first"][:10]:
        click.echo(f"  {line}")
    _table("Roles", report["role_mapping"])
    _table("Redacted (placeholders)", report["redactions_by_type"])
    _table("Distinct values removed", report["redacted_values_by_type"])
    _table("Dropped conversations", report["dropped_by_reason"])
    click.echo(
        f"Auto-reply turns removed: {report['auto_reply_turns_removed']}; "
        f"turns merged: {report['turns_merged']}"
    )
    click.echo(
        click.style(
            f"Kept {report['kept']}: {report['train_examples']} train, "
            f"{report['validation_examples']} validation",
            bold=True,
        )
    )
    for name, validation in report["validation"].items():
        _print_validation(validation, with_cost=name == "train.jsonl")
    click.echo(
        f"Wrote {out_dir}/train.jsonl, validation.jsonl, report.json, manifest.json "
        f"({report['conversations_per_second']} conversations/s)"
    )


@finetune.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--base-model", default="gpt-4o-mini", show_default=True)
@click.option("--epochs", type=click.IntRange(1, 50))
@click.option(
    "--price-per-mtok", type=float, help="USD per 1M training tokens, to override the built-in price."
)
@click.option("--json", "as_json", is_flag=True)
def validate(
    file: Path, base_model: str, epochs: int | None, price_per_mtok: float | None, as_json: bool
) -> None:
    """Check a chat fine-tuning JSONL file: format, token counts, limit, estimated cost."""
    from finetune.validate import validate_file

    result = validate_file(file, base_model)
    report = result.as_dict(base_model, epochs, price_per_mtok)
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        _print_validation(report)
    if not result.ok:
        raise click.ClickException(f"{file} has format errors or no examples: fix them before submitting.")


def _jobs(obj: Any) -> Any:
    from finetune.jobs import FineTuningJobs, client_from_settings

    return FineTuningJobs(client_from_settings(obj.settings.openai))


def _echo_event(event: Any) -> None:
    click.echo(f"  [{event.level}] {event.message}")


@finetune.command()
@click.argument("data", type=click.Path(exists=True, path_type=Path))
@click.option("--base-model", default="gpt-4o-mini-2024-07-18", show_default=True)
@click.option("--suffix", default="support-tone", show_default=True, help="Appears in the tuned model's id.")
@click.option("--epochs", type=click.IntRange(1, 50), help="Default: the provider's choice.")
@click.option("--seed", type=int)
@click.option("--force", is_flag=True, help="Upload files that no `prepare` manifest vouches for.")
@click.pass_obj
def submit(
    obj: Any, data: Path, base_model: str, suffix: str, epochs: int | None, seed: int | None, force: bool
) -> None:
    """Upload DATA (a prepare folder, or a train.jsonl) and start a fine-tuning job."""
    from finetune import registry

    train = data / "train.jsonl" if data.is_dir() else data
    validation = train.parent / "validation.jsonl"
    has_validation = validation.exists() and validation.stat().st_size > 0 and validation != train
    with _errors():
        submission = _jobs(obj).submit(
            train,
            validation if has_validation else None,
            base_model=base_model,
            suffix=suffix,
            epochs=epochs,
            seed=seed,
            force=force,
        )
        registry.record_job(
            obj.database().engine,
            submission.job,
            manifest_sha256=submission.manifest_sha256,
            metadata={"forced": force, "train_file": train.name},
        )
    job = submission.job
    click.echo(
        f"Started {job.job_id} on {job.base_model} ({job.status}). "
        f"Follow it with `kbbot finetune wait {job.job_id}`."
    )


@finetune.command()
@click.argument("job_id")
@click.option("--events", "n_events", default=10, show_default=True, help="How many recent events to show.")
@click.pass_obj
def status(obj: Any, job_id: str, n_events: int) -> None:
    """Show a job's status and its recent events (and record them)."""
    from finetune import registry

    with _errors():
        jobs = _jobs(obj)
        info = jobs.status(job_id)
        events = jobs.events(job_id)[-n_events:] if n_events else []
        registry.record_job(obj.database().engine, info)
    click.echo(f"{info.job_id}: {info.status} (base {info.base_model})")
    if info.fine_tuned_model:
        click.echo(f"  model: {info.fine_tuned_model}  ->  `kbbot finetune activate {info.job_id}`")
    if info.error:
        click.echo(f"  error: {info.error}")
    for event in events:
        _echo_event(event)


@finetune.command()
@click.argument("job_id")
@click.option("--poll", "poll_s", default=15.0, show_default=True, help="Seconds between polls.")
@click.option("--timeout", "timeout_s", default=6 * 3600.0, show_default=True, help="Give up after seconds.")
@click.option("--activate", "then_activate", is_flag=True, help="Activate the model if the job succeeds.")
@click.pass_obj
def wait(obj: Any, job_id: str, poll_s: float, timeout_s: float, then_activate: bool) -> None:
    """Follow a job's events until it ends."""
    from finetune import registry

    with _errors():
        engine = obj.database().engine
        info = _jobs(obj).wait(job_id, poll_s=poll_s, timeout_s=timeout_s, on_event=_echo_event)
        registry.record_job(engine, info)
        if info.status != "succeeded":
            raise FinetuneError(f"Job {job_id} ended {info.status}: {info.error or 'see the events above'}.")
        click.echo(f"{job_id} succeeded: {info.fine_tuned_model}")
        if then_activate:
            click.echo(f"Active tone model: {registry.activate(engine, job_id)}")


@finetune.command()
@click.argument("model_or_job", required=False)
@click.option("--none", "deactivate", is_flag=True, help="Deactivate: answers use the base model again.")
@click.option("--notes", help="Why this model (kept in the registry).")
@click.pass_obj
def activate(obj: Any, model_or_job: str | None, deactivate: bool, notes: str | None) -> None:
    """Make a tuned model (or a succeeded job's model) the tone model; the bot picks it up at once."""
    from finetune import registry

    if not deactivate and not model_or_job:
        raise click.UsageError("Name a model id or job id, or pass --none.")
    with _errors():
        engine = obj.database().engine
        if deactivate:
            previous = registry.deactivate(engine)
            click.echo(f"No tone model active (was {previous or 'none'}); answers use the base model.")
            return
        assert model_or_job is not None
        click.echo(f"Active tone model: {registry.activate(engine, model_or_job, notes=notes)}")


@finetune.command("list")
@click.option("--jobs", "show_jobs", is_flag=True, help="List recorded fine-tuning jobs too.")
@click.pass_obj
def list_(obj: Any, show_jobs: bool) -> None:
    """Show the registered tone models (the active one first)."""
    from finetune import registry

    with _errors():
        engine = obj.database().engine
        models = registry.list_models(engine)
        jobs = registry.list_jobs(engine) if show_jobs else []
    if not models:
        click.echo("No tone model registered yet: `kbbot finetune submit`, then `wait --activate`.")
    for model in models:
        mark = "*" if model.is_active else " "
        click.echo(
            f"{mark} {model.model_id}  base={model.base_model or '-'}  job={model.job_id or '-'}  "
            f"registered {model.created_at:%Y-%m-%d}" + (f"  ({model.notes})" if model.notes else "")
        )
    for job in jobs:
        click.echo(f"  {job.job_id}  {job.status:<16} {job.base_model}  -> {job.fine_tuned_model or '-'}")


@finetune.command("eval")
@click.argument("data", type=click.Path(exists=True, path_type=Path))
@click.option("--tuned", "tuned_model", help="Tuned model id (default: the active tone model).")
@click.option("--base", "base_model", help="Base model id (default: KBBOT_LLM_MODEL).")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1))
@click.option("--force", is_flag=True, help="Use a validation file that no manifest vouches for.")
@click.option(
    "--out", "out_file", type=click.Path(dir_okay=False, path_type=Path), help="Write the JSON here."
)
@click.pass_obj
def eval_(
    obj: Any,
    data: Path,
    tuned_model: str | None,
    base_model: str | None,
    limit: int,
    force: bool,
    out_file: Path | None,
) -> None:
    """Replay held-out conversations through the base and the tuned model; compare them side by side."""
    from finetune import registry
    from finetune.evaluate import evaluate
    from finetune.jobs import client_from_settings
    from finetune.output import verify_against_manifest, write_atomic

    validation = data / "validation.jsonl" if data.is_dir() else data
    with _errors():
        if not force:
            verify_against_manifest(validation)  # only sanitized text goes to the API
        tuned = tuned_model or registry.active_tone_model(obj.database().engine)
        if not tuned:
            raise FinetuneError("No tuned model: pass --tuned MODEL or activate one first.")
        base = base_model or obj.settings.llm.llm_model
        report = evaluate(
            client_from_settings(obj.settings.openai), validation, base_model=base, tuned_model=tuned, limit=limit
        )
    if out_file is not None:
        write_atomic(out_file, json.dumps(report, indent=2).encode("utf-8"))
    _print_eval(report)


def _print_eval(report: dict[str, Any]) -> None:
    models = list(report["models"].values())
    click.echo(f"{report['examples']} held-out conversations; context: {report['context']}")
    rows: list[tuple[str, Callable[[dict[str, Any]], Any]]] = [
        ("answered", lambda m: m.get("answered")),
        ("failures", lambda m: m.get("failures")),
        ("mean words", lambda m: m.get("mean_words")),
        ("token F1 vs agent", lambda m: m.get("token_f1_vs_agent")),
        ("ROUGE-L vs agent", lambda m: m.get("rouge_l_vs_agent")),
    ]
    rows += [
        (f"{name} rate", lambda m, n=name: (m.get("style_rates") or {}).get(n))
        for name in report["reference"]["style_rates"]
    ]
    reference = {
        "mean words": report["reference"]["mean_words"],
        **{f"{k} rate": v for k, v in report["reference"]["style_rates"].items()},
    }
    header = ["", *[m["model"][-28:] for m in models], "agents"]
    click.echo("  ".join(f"{h:>28}" if i else f"{h:<20}" for i, h in enumerate(header)))
    for label, getter in rows:
        cells = [str(getter(m)) for m in models] + [str(reference.get(label, ""))]
        click.echo(f"{label:<20}  " + "  ".join(f"{c:>28}" for c in cells))
