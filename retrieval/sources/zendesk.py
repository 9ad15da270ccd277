"""Zendesk Help Center (Guide) articles.

Full listing: `GET /api/v2/help_center/{locale}/articles.json` per configured locale, with cursor
pagination (`page[size]`, `meta.has_more`, `links.next`; offset `next_page` is followed too). Changes:
the incremental export `GET /api/v2/help_center/incremental/articles.json?start_time=` whose pages carry
the `end_time` to start the next export from (Zendesk's documented way not to skip or repeat articles).

- Drafts are never indexed; an article that turns into a draft is reported as deleted.
- Archived (deleted) articles vanish from both endpoints without a trace: the periodic full pass prunes
  them (see docs/connectors.md).
- Each locale is its own article: external id `{locale}/{article id}`, e.g. `en-us/360001234`.
- Category and section names become the head of every passage's heading path, and are kept in
  metadata with their ids and the article's labels.
- The incremental export needs an agent or admin token; the listing works with any token that can read
  the help center.
- Access: an article without `user_segment_id` has the source's audience (the help center's: declare
  `audience: public` for a public help center); one with a segment has the Slack audience the sources file
  maps that segment to (`options.user_segments`), and an unmapped segment holds the article back (indexed,
  never answered; `kbbot status` counts it with the segment's name from `user_segments/{id}.json`).
"""

from __future__ import annotations

import logging
from collections.abc import Generator, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from bs4 import BeautifulSoup

from retrieval.errors import ArticleError, SourceError
from retrieval.sources.base import ChangeFeed, ChangeItem, Checkpoint, Deleted, Source, SourceItem
from retrieval.sources.filesystem import as_utc_datetime, html_to_markdown
from retrieval.sources.http import ApiClient
from retrieval.types import Article

log = logging.getLogger(__name__)

PAGE_SIZE = 100  # the most Zendesk's cursor pagination allows
# Changes made while a listing runs must be seen by the next incremental export: start it a little
# before the listing began, on the server's clock. Re-reading an unchanged article costs a hash compare.
CHECKPOINT_OVERLAP = timedelta(minutes=2)


class ZendeskSource(Source):
    kind = "zendesk"

    def __init__(self, name: str, *, base_url: str, locales: Sequence[str] = ("en-us",),
                 email: str | None = None, api_token: str | None = None, oauth_token: str | None = None,
                 credentials_hint: str = "the Zendesk API token", page_size: int = PAGE_SIZE,
                 user_segments: dict[int, tuple[str, ...]] | None = None, **http: Any) -> None:
        super().__init__(name)
        self.user_segments = dict(user_segments or {})
        self._segment_names: dict[int, str | None] = {}
        if not locales:
            raise SourceError(f"Zendesk source {name!r} has no locales: list at least one, e.g. en-us.")
        self.base_url = base_url.rstrip("/")
        self.locales = tuple(loc.lower() for loc in locales)
        self.page_size = page_size
        auth = (f"{email}/token", api_token) if email and api_token else None
        self.client = ApiClient(service=f"Zendesk ({name})", base_url=self.base_url, auth=auth,
                                bearer_token=oauth_token, credentials_hint=credentials_hint, **http)
        self._sections: dict[str, dict[int, dict[str, Any]]] = {}  # locale -> section id -> section
        self._categories: dict[str, dict[int, str]] = {}  # locale -> category id -> name

    def config(self) -> dict[str, object]:
        return {"base_url": self.base_url, "locales": list(self.locales)}

    def access_config(self) -> dict[str, object]:
        config = super().access_config()
        if self.user_segments:
            config["user_segments"] = {str(k): list(v) for k, v in sorted(self.user_segments.items())}
        return config

    def describe(self) -> str:
        return f"zendesk:{self.name} ({self.base_url}, {', '.join(self.locales)})"

    def close(self) -> None:
        self.client.close()

    # --- the Source interface --------------------------------------------------------------------
    def iter_articles(self) -> Iterator[SourceItem]:
        for item in self._listing():
            if not isinstance(item, Deleted):
                yield item

    def iter_changes(self, checkpoint: Checkpoint | None) -> ChangeFeed:
        start = checkpoint.get("start_time") if checkpoint else None
        if not isinstance(start, int):
            return ChangeFeed(self._listing(), complete=True)
        return ChangeFeed(self._incremental(start), complete=False)

    def fetch_articles(self, external_ids: Sequence[str]) -> Iterator[ChangeItem]:
        for external_id in external_ids:
            locale, _, article_id = external_id.partition("/")
            if locale not in self.locales or not article_id.isdigit():
                yield Deleted(external_id)  # a locale no longer configured
                continue
            body = self.client.get_json(f"api/v2/help_center/{locale}/articles/{article_id}.json",
                                        missing_ok=True)
            raw = body.get("article") if isinstance(body, dict) else None
            if not isinstance(raw, dict) or raw.get("draft"):
                yield Deleted(external_id)
            else:
                yield self._article(raw, locale)

    # --- listing and export ----------------------------------------------------------------------
    def _listing(self) -> Generator[ChangeItem, None, Checkpoint]:
        started: datetime | None = None
        for locale in self.locales:
            for raw in self._pages(f"api/v2/help_center/{locale}/articles.json", "articles"):
                started = started or self.client.server_time
                if raw.get("draft"):
                    continue
                yield self._article(raw, locale)
        started = started or self.client.server_time or datetime.now(UTC)
        return {"start_time": int((started - CHECKPOINT_OVERLAP).timestamp())}

    def _incremental(self, start_time: int) -> Generator[ChangeItem, None, Checkpoint]:
        url = "api/v2/help_center/incremental/articles.json"
        params: dict[str, Any] | None = {"start_time": start_time}
        newest = start_time
        yielded: set[tuple[object, object, object]] = set()
        while True:
            page = self._page(url, params)
            articles = _list_of(page, "articles", url)
            for raw in articles:
                locale = str(raw.get("locale", "")).lower()
                if locale not in self.locales:
                    continue
                # A page starts at the previous page's end time, so its boundary article comes twice.
                key = (locale, raw.get("id"), raw.get("updated_at"))
                if key in yielded:
                    continue
                yielded.add(key)
                if raw.get("draft"):
                    yield Deleted(f"{locale}/{raw.get('id')}")
                else:
                    yield self._article(raw, locale)
            end_time = page.get("end_time")
            next_page = page.get("next_page")
            if not isinstance(end_time, int) or not articles or not next_page:
                newest = max(newest, end_time) if isinstance(end_time, int) else newest
                break
            if end_time <= newest:
                # More than a page of articles share one second: the export cannot move past it.
                log.warning("%s: the incremental export is stuck at %s; the next full pass catches up",
                            self.name, end_time)
                break
            newest = end_time
            url, params = next_page, None
        return {"start_time": newest}

    def _pages(self, path: str, key: str) -> Iterator[dict[str, Any]]:
        """Items of a paginated Help Center list, cursor pagination preferred."""
        url: str | None = path
        params: dict[str, Any] | None = {"page[size]": self.page_size}
        while url:
            page = self._page(url, params)
            yield from (item for item in _list_of(page, key, url) if isinstance(item, dict))
            meta, links = page.get("meta") or {}, page.get("links") or {}
            if isinstance(meta, dict) and "has_more" in meta:
                url = links.get("next") if meta.get("has_more") and isinstance(links, dict) else None
            else:
                url = page.get("next_page")
            params = None  # the next URL carries every parameter

    def _page(self, url: str, params: dict[str, Any] | None) -> dict[str, Any]:
        page = self.client.get_json(url, params)
        if not isinstance(page, dict):
            raise SourceError(f"Zendesk ({self.name}) answered {url} with an unexpected shape: check the "
                              "base URL points at the help center's Zendesk account.")
        return page

    # --- one article -----------------------------------------------------------------------------
    def _article(self, raw: dict[str, Any], locale: str) -> Article | ArticleError:
        external_id = f"{locale}/{raw.get('id')}"
        where = f"{self.name}:{external_id}"
        try:
            title = str(raw.get("title") or raw.get("name") or "").strip()
            text = html_to_markdown(BeautifulSoup(str(raw.get("body") or ""), "html.parser"))
            if not title:
                return ArticleError("has no title", location=where, external_id=external_id)
            if not text:
                return ArticleError("has an empty body: nothing to index", location=where,
                                    external_id=external_id)
            stamp = raw.get("edited_at") or raw.get("updated_at")
            updated = as_utc_datetime(stamp) if stamp else None
        except ValueError as exc:
            return ArticleError(f"could not be read: {exc}", location=where, external_id=external_id)
        section_id = raw.get("section_id")
        section = self._section(locale, section_id) if isinstance(section_id, int) else None
        category_id = section.get("category_id") if section else None
        category = self._category(locale, category_id) if isinstance(category_id, int) else None
        metadata: dict[str, object] = {
            "zendesk_id": raw.get("id"), "locale": locale, "section_id": section_id,
            "section": section.get("name") if section else None, "category_id": category_id,
            "category": category, "labels": list(raw.get("label_names") or []),
            "promoted": bool(raw.get("promoted")), "user_segment_id": raw.get("user_segment_id"),
        }
        path = tuple(str(p) for p in (category, section.get("name") if section else None) if p)
        audience, held_back = self._audience(raw.get("user_segment_id"))
        return Article(external_id=external_id, title=title, text=text,
                       url=raw.get("html_url") or None, updated_at=updated, path=path,
                       metadata={k: v for k, v in metadata.items() if v is not None},
                       audience=audience, held_back=held_back)

    def _audience(self, segment: object) -> tuple[tuple[str, ...] | None, str | None]:
        """(audience, held_back) of an article's user segment: none is the help center's audience."""
        if segment is None:
            return None, None
        if isinstance(segment, int) and segment in self.user_segments:
            return self.user_segments[segment], None
        name = self._segment_name(segment) if isinstance(segment, int) else None
        label = f"{segment} ({name})" if name else str(segment)
        return (), (f"Zendesk user segment {label} is not mapped to Slack: add it under options.user_segments "
                    "in the sources file")

    def _segment_name(self, segment: int) -> str | None:
        if segment not in self._segment_names:
            try:
                body = self.client.get_json(f"api/v2/help_center/user_segments/{segment}.json", missing_ok=True)
            except SourceError as exc:  # the name only explains the hold-back; the article is held back anyway
                log.info("%s: could not read user segment %s: %s", self.name, segment, exc)
                body = None
            raw = body.get("user_segment") if isinstance(body, dict) else None
            self._segment_names[segment] = str(raw.get("name")) if isinstance(raw, dict) and raw.get("name") else None
        return self._segment_names[segment]

    def _section(self, locale: str, section_id: int) -> dict[str, Any] | None:
        if locale not in self._sections:
            self._sections[locale] = {
                s["id"]: s for s in self._pages(f"api/v2/help_center/{locale}/sections.json", "sections")
                if isinstance(s.get("id"), int)
            }
        return self._sections[locale].get(section_id)

    def _category(self, locale: str, category_id: int) -> str | None:
        if locale not in self._categories:
            self._categories[locale] = {
                c["id"]: str(c.get("name") or "")
                for c in self._pages(f"api/v2/help_center/{locale}/categories.json", "categories")
                if isinstance(c.get("id"), int)
            }
        return self._categories[locale].get(category_id) or None


def _list_of(page: dict[str, Any], key: str, url: str) -> list[dict[str, Any]]:
    items = page.get(key)
    if not isinstance(items, list):
        raise SourceError(f"Zendesk answered {url.split('?')[0]} without an {key!r} list: check the base "
                          "URL and that the help center is enabled.")
    return items
