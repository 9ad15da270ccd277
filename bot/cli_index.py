"""Index commands: migrate, ingest, sync, search, ask, status, eval, demo."""

from __future__ import annotations

import getpass
import json
import logging
import socket
from pathlib import Path

import click

from bot import json_output, terminal
from retrieval.errors import KbbotError
from retrieval.evaluation import evaluate, load_labelled_queries
from retrieval.runs import SyncRun
from retrieval.sources import Source, source_for_path

log = logging.getLogger(__name__)

DEMO_KB = Path(__file__).resolve().parent.parent / "demo_kb"
DEMO_QUESTIONS = (
    "How do I connect to the VPN when I'm working from home?",
    "How many PTO days can I carry over to next year?",
    "I think I got a phishing email. How do I report it?",
    "What is the capital of Peru?",
)


def _emit_json(data: object) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def cli_identity() -> str:
    """Who started a run from the command line, as `/reindex status` and a refused second sync name it."""
    return f"{getpass.getuser()} on the command line of {socket.gethostname()}"


def _run_sync(obj, sources: list[Source], *, kind: str, as_json: bool) -> SyncRun:  # type: ignore[no-untyped-def]
    with terminal.sync_progress(bar=not as_json) as progress, terminal.errors_in_summary_only():
        run = obj.services.indexer(progress).sync(sources, kind=kind, trigger="cli", started_by=cli_identity())
    if as_json:
        _emit_json(json_output.run_json(run))
    else:
        terminal.print_run(run)
    return run


@click.command()
@click.pass_obj
def migrate(obj) -> None:  # type: ignore[no-untyped-def]
    """Apply database migrations (also done at every start)."""
    from retrieval.schema_versions import CodeSchema

    db = obj.database()
    revision, ours = db.current_revision(), CodeSchema.load().head
    newer = "" if revision == ours else f", newer than this kbbot's {ours}: left as it is (see the warning above)"
    click.echo(f"Database {db.display_url} is at revision {revision}{newer}.")


@click.command()
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--name", help="Source name (default: the folder or file name).")
@click.option("--full", is_flag=True, help="Re-embed everything (needed after changing the embedding model).")
@click.option("--audience", help="Who may read its articles: public, everyone (default) or Slack user-group "
              "ids (S0123ABCD,S0456EFGH); an article's own `audience:` narrows it. Kept for later runs.")
@click.option("--json", "as_json", is_flag=True, help="Print the run summary as JSON.")
@click.pass_obj
def ingest(obj, path: Path, name: str | None, full: bool, audience: str | None, as_json: bool) -> None:  # type: ignore[no-untyped-def]
    """Index a folder of articles (Markdown, HTML, text) or a JSONL file; run it again to sync changes."""
    from retrieval.access import AudienceError, parse_audience
    from retrieval.audiences import stored_audience

    source = source_for_path(path, name)
    if audience is not None:
        try:
            source.audience = parse_audience(audience)
        except AudienceError as exc:
            raise click.BadParameter(str(exc), param_hint="--audience") from exc
    else:
        # Re-running without --audience keeps the one given before: forgetting the flag must not widen it.
        source.audience = stored_audience(obj.database(), source.name) or source.audience
    run = _run_sync(obj, [source], kind="full" if full else "incremental", as_json=as_json)
    if run.status == "failed":
        raise SystemExit(1)


@click.command()
@click.option("--full", is_flag=True, help="Re-embed everything (needed after changing the embedding model).")
@click.option("--json", "as_json", is_flag=True, help="Print the run summary as JSON.")
@click.pass_obj
def sync(obj, full: bool, as_json: bool) -> None:  # type: ignore[no-untyped-def]
    """Sync every configured source: the sources file's and those added by `kbbot ingest`."""
    sources = configured_sources(obj)
    if not sources:
        raise click.ClickException("No sources configured: run `kbbot ingest PATH` or set KBBOT_SOURCES_FILE.")
    run = _run_sync(obj, sources, kind="full" if full else "incremental", as_json=as_json)
    if run.status == "failed":
        raise SystemExit(1)


@click.command()
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--json", "as_json", is_flag=True, help="Print the run summary as JSON.")
@click.pass_obj
def forget(obj, name: str, yes: bool, as_json: bool) -> None:  # type: ignore[no-untyped-def]
    """Remove a source and its articles from the index (its files or pages are not touched)."""
    from retrieval.index_store import delete_empty_source, registered_sources
    from retrieval.search import unknown_sources_error
    from retrieval.sources.base import RetiredSource
    from retrieval.sources_config import load_sources_file

    registered = {n: kind for n, kind, _config in registered_sources(obj.database())}
    if name not in registered:
        raise unknown_sources_error({name}, sorted(registered))
    sources_file = obj.settings.index.sources_file
    if sources_file is not None and name in {spec.name for spec in load_sources_file(sources_file)}:
        raise click.ClickException(f"Source {name!r} is declared in the sources file {sources_file}: remove it "
                                   "there first, or the next sync indexes it again.")
    if not yes:
        click.confirm(f"Remove source {name!r} and its articles from the index?", abort=True, err=True)
    run = _run_sync(obj, [RetiredSource(name, registered[name])], kind="incremental", as_json=as_json)
    if run.status == "failed" or not delete_empty_source(obj.database(), name):
        raise click.ClickException(f"Source {name!r} still has articles in the index: run `kbbot forget {name}` "
                                   "again (`-v` logs why).")
    if not as_json:
        click.echo(f"Source {name!r} is no longer in the index.")


def configured_sources(obj) -> list[Source]:  # type: ignore[no-untyped-def]
    """The configured sources (see `Services.configured_sources`)."""
    return obj.services.configured_sources()


@click.command()
@click.argument("question")
@click.option("--k", "k", default=5, show_default=True, help="Passages to return.")
@click.option("--mode", type=click.Choice(["hybrid", "dense", "lexical"]), help="Override KBBOT_SEARCH_MODE.")
@click.option("--source", "sources", multiple=True, help="Only search these sources (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print hits as JSON (see docs/cli-json.md).")
@click.pass_obj
def search(obj, question: str, k: int, mode: str | None, sources: tuple[str, ...], as_json: bool) -> None:  # type: ignore[no-untyped-def]
    """Show the passages that best match QUESTION."""
    searcher = obj.services.searcher()
    result = searcher.search(question, k=k, sources=list(sources) or None, mode=mode)  # type: ignore[arg-type]
    if as_json:
        _emit_json(json_output.search_json(question, mode or searcher.mode, result.hits, result.timings_ms))
    else:
        terminal.print_hits(result.hits, question)


@click.command()
@click.argument("question")
@click.option("--source", "sources", multiple=True, help="Only use these sources (repeatable).")
@click.option("--as-user", "as_user", help="Answer as this Slack user would see it in a DM (asks Slack).")
@click.option("--channel", help="Answer as readers of this Slack channel would see it (asks Slack).")
@click.option("--log", "log_it", is_flag=True,
              help="Record it in the answer log like a Slack question: it then counts in `kbbot gaps`.")
@click.option("--json", "as_json", is_flag=True, help="Print the answer as JSON (see docs/cli-json.md).")
@click.pass_obj
def ask(obj, question: str, sources: tuple[str, ...], as_user: str | None, channel: str | None,  # type: ignore[no-untyped-def]
        log_it: bool, as_json: bool) -> None:
    """Answer QUESTION from the knowledge base, with cited sources.

    It answers from every article, unless --as-user/--channel ask Slack what that reader may see. It is not
    recorded in the answer log (an admin's tests would fill the knowledge gaps) unless --log."""
    from retrieval.access import ReaderScope
    from retrieval.answer import AskContext
    from retrieval.audiences import indexed_groups

    # The operator reads every audience, but held-back articles are never answered, not even here.
    everything = ReaderScope.member(indexed_groups(obj.database()), "the operator: every audience")
    context = AskContext(sources=tuple(sources) or None, audience=everything)
    if as_user or channel:
        from bot.cli_access import reader_scope

        scope, profile = reader_scope(obj, as_user, channel)
        if not as_json:
            click.echo(f"As {'readers of ' + channel if channel else as_user}: {scope.describe()}", err=True)
        profile_sources = profile.sources if profile else None
        context = AskContext(sources=tuple(sources) or profile_sources, audience=scope, channel=channel,
                             user=as_user)
    answer = obj.services.pipeline.answer(question, context)
    answer_id = _log_cli_answer(obj, question, answer, as_user=as_user, channel=channel) if log_it else None
    if as_json:
        _emit_json(json_output.answer_json(answer, answer_id=answer_id))
    else:
        terminal.print_answer(answer)
        if answer_id is not None:
            click.echo(f"Logged as answer {answer_id}: `kbbot gaps` and `kbbot answers export` include it.",
                       err=True)


def _log_cli_answer(obj, question: str, answer, *, as_user: str | None, channel: str | None) -> int:  # type: ignore[no-untyped-def]
    """The question as asked from the terminal: no Slack asker (the gaps report counts the command line
    as one person); whom it was asked as stays in the metadata, never as the asker."""
    from retrieval.answer_log import Asked

    metadata = {key: value for key, value in (("as_user", as_user), ("as_channel", channel)) if value}
    return obj.services.answer_log().record(Asked(question, "cli", metadata=metadata), answer)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print status as JSON.")
@click.pass_obj
def status(obj, as_json: bool) -> None:  # type: ignore[no-untyped-def]
    """Index size, embedding model, sources, last sync and failures."""
    from retrieval.status import index_status

    embeddings = obj.settings.embeddings
    configured = f"{embeddings.embedding_provider}/{embeddings.resolved_model}"
    result = index_status(obj.database())
    if as_json:
        _emit_json(json_output.status_json(result) | {"configured_embedding_model": configured})
    else:
        terminal.print_status(result, configured_model=configured)


@click.command(name="eval")
@click.option("--queries", type=click.Path(exists=True, path_type=Path), required=True,
              help="BEIR queries.jsonl ({_id, text} per line).")
@click.option("--qrels", type=click.Path(exists=True, path_type=Path), required=True,
              help="BEIR qrels.tsv (query-id, corpus-id, score).")
@click.option("--k", "k", default=10, show_default=True, help="Recall cut-off.")
@click.option("--mode", "modes", multiple=True, type=click.Choice(["hybrid", "dense", "lexical"]),
              help="Modes to compare (default: the configured one).")
@click.option("--answers", "answers_path", type=click.Path(exists=True, path_type=Path),
              help="Gold answers ({_id, answer, key_terms?} per line): also measure the answers.")
@click.option("--unanswerable", "unanswerable_path", type=click.Path(exists=True, path_type=Path),
              help="Questions the KB cannot answer ({_id, text} per line): also measure abstention.")
@click.option("--answerer", "answerers", multiple=True, type=click.Choice(["extractive", "llm"]),
              help="Answerers to compare with --answers/--unanswerable (default: the configured one).")
@click.option("--per-query", is_flag=True, help="With --json, include every query's ranks (and answers).")
@click.option("--json", "as_json", is_flag=True, help="Print metrics as JSON (see docs/cli-json.md).")
@click.pass_obj
def eval_command(obj, queries: Path, qrels: Path, k: int, modes: tuple[str, ...],  # type: ignore[no-untyped-def]
                 answers_path: Path | None, unanswerable_path: Path | None, answerers: tuple[str, ...],
                 per_query: bool, as_json: bool) -> None:
    """Measure retrieval on your own labelled questions: Recall@k, nDCG@10, MRR@10, latency; with
    --answers/--unanswerable also the answers: gold content, citation precision, abstention."""
    labelled = load_labelled_queries(queries, qrels)
    if not labelled:
        raise click.ClickException(f"No query in {queries} has a relevant document in {qrels}.")
    searcher = obj.services.searcher()
    reports = [evaluate(searcher, labelled, k=k, mode=m) for m in (modes or (searcher.mode,))]  # type: ignore[arg-type]
    answer_reports = []
    if answers_path or unanswerable_path:
        answer_reports = _answer_reports(obj, labelled, answers_path, unanswerable_path, answerers)
    if as_json:
        data = [json_output.eval_json(r, per_query=per_query) for r in reports]
        if answer_reports:
            _emit_json(json_output.answer_eval_json(data, answer_reports, per_query=per_query))
        else:
            _emit_json(data[0] if len(data) == 1 else data)
    else:
        terminal.print_eval(reports)
        if answer_reports:
            terminal.print_answer_eval(answer_reports)


def _answer_reports(obj, labelled, answers_path: Path | None, unanswerable_path: Path | None,  # type: ignore[no-untyped-def]
                    answerers: tuple[str, ...]) -> list:  # type: ignore[type-arg]
    from retrieval.answer_eval import evaluate_answers, load_gold_answers, load_questions
    from retrieval.extractive import ExtractiveSynthesizer

    gold = load_gold_answers(answers_path) if answers_path else {}
    unanswerable = load_questions(unanswerable_path) if unanswerable_path else []
    services = obj.services
    configured = "llm" if services.chat_client is not None else "extractive"
    out = []
    for answerer in answerers or (configured,):
        if answerer == "llm" and services.chat_client is None:
            raise click.ClickException("--answerer llm needs an LLM endpoint: set OPENAI_API_KEY or "
                                       "OPENAI_BASE_URL (see docs/llm.md).")
        synthesizer = services.synthesizer() if answerer == "llm" else ExtractiveSynthesizer(services.embedder)
        pipeline = services.pipeline.with_synthesizer(synthesizer)
        out.append(evaluate_answers(pipeline.answer, answerer, labelled, gold, unanswerable))
    return out


@click.command()
@click.pass_obj
def demo(obj) -> None:  # type: ignore[no-untyped-def]
    """Index the bundled demo knowledge base and answer a few questions with citations."""
    from retrieval.answer import AskContext
    from retrieval.sources import FilesystemSource

    con = terminal.console
    con.rule("[bold]kbbot demo[/bold]")
    con.print(f"Database: {obj.database().display_url}")
    shown = DEMO_KB.relative_to(Path.cwd()) if DEMO_KB.is_relative_to(Path.cwd()) else DEMO_KB
    con.print(f"Indexing the demo knowledge base in {shown} …")
    _run_sync(obj, [FilesystemSource("demo", DEMO_KB)], kind="incremental", as_json=False)
    pipeline = obj.services.pipeline
    for question in DEMO_QUESTIONS:
        con.rule()
        con.print(f"[bold cyan]Q: {question}[/bold cyan]")
        try:
            terminal.print_answer(pipeline.answer(question, AskContext()))
        except KbbotError as exc:
            con.print(f"[red]{exc}[/red]")
    con.rule()
    con.print("Try your own: [bold].venv/bin/kbbot ask \"How do I enroll in MFA?\"[/bold]  "
              "(or `kbbot search`, `kbbot status`, `kbbot eval --queries demo_eval/queries.jsonl "
              "--qrels demo_eval/qrels.tsv --mode dense --mode lexical --mode hybrid`)")


COMMANDS = [migrate, ingest, sync, forget, search, ask, status, eval_command, demo]
