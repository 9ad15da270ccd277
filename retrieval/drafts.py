"""Accepted experts' answers as draft articles: Markdown files with front matter, ready to review and drop
into a folder source, or draft articles in a Zendesk Help Center section (never published: a KB owner
edits and publishes them in Zendesk).

Slack's mrkdwn (`*bold*`, `<url|label>`, `<@U123>`) is turned into Markdown on the way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from retrieval.errors import SourceError
from retrieval.expert_replies import ExpertReply

_SLUG = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True)
class Draft:
    title: str
    body: str  # Markdown
    front_matter: dict[str, Any]

    def markdown(self) -> str:
        head = yaml.safe_dump(self.front_matter, sort_keys=False, allow_unicode=True).strip()
        return f"---\n{head}\n---\n\n# {self.title}\n\n{self.body}\n"


def slack_to_markdown(text: str) -> str:
    text = re.sub(r"<(https?://[^|>]+)\|([^>]+)>", r"[\2](\1)", text)
    text = re.sub(r"<(https?://[^>]+)>", r"<\1>", text)
    text = re.sub(r"<@([UW][A-Z0-9]+)(\|[^>]*)?>", r"@\1", text)
    text = re.sub(r"<!subteam\^[A-Z0-9]+(\|([^>]*))?>", r"\2", text)
    text = re.sub(r"(?<![\w*])\*([^*\n]+)\*(?![\w*])", r"**\1**", text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def draft_from_reply(reply: ExpertReply) -> Draft:
    title = " ".join(reply.question.split()).rstrip("?") + "?" if reply.question.strip() else "Untitled"
    return Draft(title=title, body=slack_to_markdown(reply.text).strip(), front_matter={
        "title": title, "owner": reply.user_id, "updated": reply.created_at.date().isoformat(), "draft": True,
        "kbbot": {"expert_reply": reply.id, "answer_id": reply.answer_id, "accepted_by": reply.accepted_by,
                  "slack_thread": f"{reply.channel}/{reply.thread_ts}"},
    })


def slug(title: str, reply_id: int) -> str:
    return f"{_SLUG.sub('-', title.lower()).strip('-')[:60].rstrip('-') or 'answer'}-{reply_id}"


def write_markdown(draft: Draft, reply_id: int, folder: Path, *, overwrite: bool = False) -> Path | None:
    """The file written, or None when it exists already (a re-run never clobbers an edited draft)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{slug(draft.title, reply_id)}.md"
    if path.exists() and not overwrite:
        return None
    path.write_text(draft.markdown(), encoding="utf-8")
    return path


def zendesk_payload(draft: Draft, *, locale: str, permission_group_id: int,
                    user_segment_id: int | None = None) -> dict[str, Any]:
    """The documented body of POST /api/v2/help_center/{locale}/sections/{id}/articles: a draft, nobody
    notified; `user_segment_id` None is visible to everyone once published."""
    from markdown_it import MarkdownIt

    return {"article": {"title": draft.title, "body": MarkdownIt("commonmark").render(draft.body),
                        "locale": locale, "permission_group_id": permission_group_id,
                        "user_segment_id": user_segment_id, "draft": True},
            "notify_subscribers": False}


def create_zendesk_draft(client: Any, draft: Draft, *, section_id: int, locale: str, permission_group_id: int,
                         user_segment_id: int | None = None) -> str:
    """Create the draft through a Zendesk source's API client; returns the new article's URL."""
    body = client.post_json(f"api/v2/help_center/{locale}/sections/{section_id}/articles.json",
                            zendesk_payload(draft, locale=locale, permission_group_id=permission_group_id,
                                            user_segment_id=user_segment_id))
    article = (body or {}).get("article") if isinstance(body, dict) else None
    if not isinstance(article, dict) or "id" not in article:
        raise SourceError("Zendesk accepted the draft but answered without an article: check it in the Help "
                          "Center before exporting again.")
    return str(article.get("html_url") or article["id"])
