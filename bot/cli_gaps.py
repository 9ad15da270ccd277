"""`kbbot gaps`: what the bot could not answer, grouped by meaning, and the articles to review.

    kbbot gaps [--since 30d] [--json | --format csv] [--articles] [--askers]
    kbbot gaps drafts DIR [--zendesk-source NAME --section ID]   accepted experts' answers as draft articles
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Any

import click

from bot.cli_answers import parse_since
from bot.cli_help import FullHelpGroup
from bot.json_output import SCHEMA_VERSION
from bot.terminal import plural
from retrieval.gaps import GapFinder, GapGroup, GapsReport, nearest_from_searcher
from retrieval.gaps_articles import ArticleToReview, articles_to_review

GROUP_COLUMNS = ["rank", "representative", "asked", "people", "abstained", "down_voted", "escalated", "last_asked",
                 "score", "answer", "cited", "nearest", "reasons", "answer_ids", "askers"]
ARTICLE_COLUMNS = ["rank", "title", "url", "source", "updated_at", "citations", "up", "down", "down_rate", "score",
                   "stale", "wrong", "outdated", "reasons"]


def _iso(value: Any) -> str | None:
    return value.isoformat() if value else None


def group_json(g: GapGroup, rank: int, *, askers: bool) -> dict[str, Any]:
    return {
        "rank": rank, "representative": g.representative, "asked": g.asked, "people": g.people,
        "abstained": g.abstained, "down_voted": g.down_voted, "escalated": g.escalated,
        "last_asked": _iso(g.last_asked), "score": round(g.score, 4), "answer": g.answer_sample,
        "cited": [{"article_id": c.article_id, "title": c.title, "url": c.url, "count": c.count} for c in g.cited],
        "nearest": [{"article_id": n.article_id, "title": n.title, "url": n.url,
                     "similarity": None if n.similarity is None else round(n.similarity, 4)} for n in g.nearest],
        "reasons": [{"category": v.category, "reason": v.reason} for q in g.questions for v in q.down_votes
                    if v.reason or v.category],
        "questions": [{"answer_id": q.answer_id, "question": q.question, "asked_at": _iso(q.created_at),
                       "outcome": q.outcome, "down_votes": len(q.down_votes), "escalated": q.escalated,
                       **({"asker": q.asker} if askers else {})} for q in g.questions],
    }


def article_json(a: ArticleToReview, rank: int) -> dict[str, Any]:
    return {"rank": rank, "article_id": a.article_id, "title": a.title, "url": a.url, "source": a.source,
            "updated_at": _iso(a.updated_at), "citations": a.citations, "up": a.up, "down": a.down,
            "down_rate": round(a.down_rate, 4), "score": round(a.score, 4), "stale": a.stale,
            "kinds": dict(a.kinds), "reasons": a.reasons}


def report_json(report: GapsReport, articles: list[ArticleToReview], *, askers: bool) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION, "since": _iso(report.since), "generated_at": _iso(report.generated_at),
        "gap_questions": report.gap_questions, "clustered": report.clustered, "truncated": report.truncated,
        "hidden_groups": report.hidden_groups, "embedded": report.embedded,
        "timings_ms": {k: round(v, 1) for k, v in report.timings_ms.items()},
        "groups": [group_json(g, i, askers=askers) for i, g in enumerate(report.groups, 1)],
        "articles_to_review": [article_json(a, i) for i, a in enumerate(articles, 1)],
    }


def _group_row(g: GapGroup, rank: int, *, askers: bool) -> dict[str, Any]:
    return {
        "rank": rank, "representative": g.representative, "asked": g.asked, "people": g.people,
        "abstained": g.abstained, "down_voted": g.down_voted, "escalated": g.escalated,
        "last_asked": _iso(g.last_asked), "score": round(g.score, 4), "answer": g.answer_sample or "",
        "cited": "\n".join(f"{c.title} <{c.url or ''}> x{c.count}" for c in g.cited),
        "nearest": "\n".join(f"{n.title} <{n.url or ''}>" for n in g.nearest),
        "reasons": "\n".join(g.reasons), "answer_ids": " ".join(str(q.answer_id) for q in g.questions),
        "askers": " ".join(g.askers) if askers else "",
    }


def _article_row(a: ArticleToReview, rank: int) -> dict[str, Any]:
    return {"rank": rank, "title": a.title, "url": a.url or "", "source": a.source,
            "updated_at": _iso(a.updated_at) or "", "citations": a.citations, "up": a.up, "down": a.down,
            "down_rate": round(a.down_rate, 4), "score": round(a.score, 4), "stale": a.stale,
            "wrong": a.kinds.get("wrong", 0), "outdated": a.kinds.get("outdated", 0), "reasons": "\n".join(a.reasons)}


def _print_text(report: GapsReport, articles: list[ArticleToReview], *, askers: bool) -> None:
    click.echo(f"{plural(report.gap_questions, 'question')} without a good answer since {report.since:%Y-%m-%d} "
               f"(abstained, 👎 or escalated), in {plural(len(report.groups), 'group')}"
               + (f"; the {report.clustered} most recent are grouped" if report.truncated else "") + ".")
    if not report.gap_questions:
        # Right after `make demo` a newcomer's own `kbbot ask` questions are not here, on purpose.
        click.echo("Questions asked in Slack are counted; `kbbot ask` questions only with --log.")
    for i, g in enumerate(report.groups, 1):
        counts = (f"{g.asked} asked by {g.people} {'person' if g.people == 1 else 'people'}, last "
                  f"{g.last_asked:%Y-%m-%d}: {g.abstained} unanswered, {g.down_voted} 👎, {g.escalated} escalated")
        click.echo(f"\n{i}. {g.representative}\n   {counts}")
        if g.answer_sample:
            click.echo(f"   answered: {' '.join(g.answer_sample.split())[:160]}")
        if g.cited:
            click.echo("   cited: " + "; ".join(f"{c.title} ({c.count})" for c in g.cited[:3]))
        if g.nearest:
            click.echo("   nearest: " + "; ".join(f"{n.title} <{n.url or '-'}>" for n in g.nearest))
        for reason in g.reasons[:3]:
            click.echo(f"   👎 “{reason}”")
        if askers and g.askers:
            click.echo("   askers: " + ", ".join(g.askers))
    click.echo("\nArticles to review" + ("" if articles else ": none"))
    for i, a in enumerate(articles, 1):
        click.echo(f"{i}. {a.title} <{a.url or '-'}> ({a.source}): cited {a.citations}×, 👍 {a.up} 👎 {a.down}"
                   + (f"; {', '.join(a.why)}" if a.why else ""))


@click.group(cls=FullHelpGroup, invoke_without_command=True)
@click.option("--since", default="30d", show_default=True, help="How far back: 30d, 2w, 24h or a date.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document (docs/cli-json.md).")
@click.option("--format", "fmt", type=click.Choice(["text", "csv"]), default="text", show_default=True,
              help="csv: one row per group (or per article with --articles).")
@click.option("--articles", is_flag=True, help="With --format csv: the articles to review instead of the groups.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 1000),
              help="Groups shown (and looked up for nearest articles).")
@click.option("--askers", is_flag=True, help="Name who asked (the log's Slack user ids); off by default.")
@click.pass_context
def gaps(ctx: click.Context, since: str, as_json: bool, fmt: str, articles: bool, limit: int, askers: bool) -> None:
    """Questions the bot could not answer well (abstained, 👎, escalated), grouped by meaning."""
    if ctx.invoked_subcommand is not None:
        return
    services = ctx.obj.services
    start = parse_since(since)
    finder = GapFinder(services.database(), services.embedder)
    report = finder.report(since=start, limit=limit, nearest=nearest_from_searcher(services.searcher()))
    report.groups = report.groups[:limit]
    to_review = articles_to_review(services.database(), since=start,
                                   stale_after_days=services.settings.slack.stale_after_days)
    if as_json:
        click.echo(json.dumps(report_json(report, to_review, askers=askers), ensure_ascii=False))
    elif fmt == "csv":
        columns = ARTICLE_COLUMNS if articles else GROUP_COLUMNS
        writer = csv.DictWriter(sys.stdout, fieldnames=columns)
        writer.writeheader()
        if articles:
            writer.writerows(_article_row(a, i) for i, a in enumerate(to_review, 1))
        else:
            writer.writerows(_group_row(g, i, askers=askers) for i, g in enumerate(report.groups, 1))
    else:
        _print_text(report, to_review, askers=askers)


@gaps.command()
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option("--all", "everything", is_flag=True, help="Also the accepted answers exported before.")
@click.option("--overwrite", is_flag=True, help="Replace draft files that exist (edited drafts are lost).")
@click.option("--zendesk-source", help="Also create each as a draft article in this Zendesk source (by name).")
@click.option("--section", type=int, help="With --zendesk-source: the Help Center section id.")
@click.option("--permission-group", type=int, help="With --zendesk-source: who may edit it (permission group id).")
@click.option("--locale", default="en-us", show_default=True, help="With --zendesk-source: the draft's locale.")
@click.pass_obj
def drafts(obj, folder: Path, everything: bool, overwrite: bool, zendesk_source: str | None,  # type: ignore[no-untyped-def]
           section: int | None, permission_group: int | None, locale: str) -> None:
    """Write accepted experts' answers as draft articles (Markdown with front matter) into FOLDER."""
    from retrieval.drafts import create_zendesk_draft, draft_from_reply, write_markdown
    from retrieval.expert_replies import ExpertReplies

    client = None
    if zendesk_source:
        if section is None or permission_group is None:
            raise click.UsageError("--zendesk-source needs --section and --permission-group (Zendesk requires "
                                   "both to create an article; find them in Guide admin > Arrange content).")
        source = next((s for s in obj.services.configured_sources() if s.name == zendesk_source), None)
        if source is None or getattr(source, "kind", None) != "zendesk":
            raise click.UsageError(f"No Zendesk source named {zendesk_source!r} in the sources file "
                                   "(`kbbot status` lists the sources).")
        client = source.client  # type: ignore[attr-defined]
    replies = ExpertReplies(obj.services.database())
    written = skipped = created = 0
    for reply in replies.accepted(not_exported=not everything):
        draft = draft_from_reply(reply)
        path = write_markdown(draft, reply.id, folder, overwrite=overwrite)
        if path is None:
            skipped += 1
        else:
            written += 1
        where = str(path or folder)
        if client is not None:
            where = create_zendesk_draft(client, draft, section_id=section, locale=locale,  # type: ignore[arg-type]
                                         permission_group_id=permission_group)  # type: ignore[arg-type]
            created += 1
        replies.mark_exported(reply.id, where)
    click.echo(f"Wrote {written} draft article(s) to {folder}" + (f", kept {skipped} existing" if skipped else "")
               + (f", created {created} Zendesk draft(s)" if client is not None else "") + ".", err=True)
