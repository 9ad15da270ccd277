"""A local fake of the Zendesk Help Center API over real HTTP, shaped after Zendesk's documented payloads.

    GET /api/v2/help_center/{locale}/articles.json          cursor (page[size], page[after]) or offset
                                                             (page, per_page) pagination; drafts included,
                                                             as for an agent
    GET /api/v2/help_center/{locale}/articles/{id}.json     {"article": ...} or 404 RecordNotFound
    GET /api/v2/help_center/{locale}/sections.json          sections with category_id
    GET /api/v2/help_center/{locale}/categories.json
    GET /api/v2/help_center/user_segments/{id}.json         {"user_segment": ...} or 404
    POST /api/v2/help_center/{locale}/sections/{id}/articles.json   create an article (the documented body,
                                                             `draft: true` for a draft); 201 {"article": ...}
    GET /api/v2/help_center/incremental/articles.json       ?start_time=: articles whose updated_at >=
                                                             start_time, oldest first, `incremental_page_size`
                                                             a page; `end_time` is the last one's time and
                                                             `next_page` starts there (null on the last page)

Archived articles vanish from every endpoint, as in Zendesk. Authentication is the API-token form of basic
auth (`{email}/token:{token}`) or an OAuth bearer token; anything else gets 401.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest

from tests.fakes.json_api import JsonApiFake, Reply, Request, Route, iso


class FakeZendesk(JsonApiFake):
    name = "fake-zendesk"

    def __init__(self, *, email: str = "bot@example.com", token: str = "zd-secret-token") -> None:
        super().__init__()
        self.email = email
        self.token = token
        self.incremental_page_size = 1000
        self.cursor_pagination = True  # False: answer like endpoints that only know offset pagination
        self.articles: dict[tuple[str, int], dict[str, Any]] = {}  # (locale, id) -> article
        self.sections: dict[int, dict[str, Any]] = {}
        self.categories: dict[int, dict[str, Any]] = {}
        self.user_segments: dict[int, dict[str, Any]] = {}
        self._next_id = 360_000_000_001
        self.created: list[dict[str, Any]] = []  # every article create request's body (with section_id)

    # --- content the tests manage ----------------------------------------------------------------
    def _id(self) -> int:
        self._next_id += 1
        return self._next_id

    def add_category(self, name: str) -> int:
        cid = self._id()
        self.categories[cid] = {"id": cid, "name": name, "locale": "en-us", "position": 0,
                                "html_url": f"{self.url}/hc/en-us/categories/{cid}"}
        return cid

    def add_section(self, name: str, category_id: int) -> int:
        sid = self._id()
        self.sections[sid] = {"id": sid, "name": name, "category_id": category_id, "locale": "en-us",
                              "html_url": f"{self.url}/hc/en-us/sections/{sid}", "parent_section_id": None}
        return sid

    def add_user_segment(self, name: str, *, user_type: str = "staff") -> int:
        """A segment as Zendesk defines one: signed-in users or staff, narrowed by groups/tags/orgs."""
        sid = self._id()
        self.user_segments[sid] = {"id": sid, "name": name, "user_type": user_type, "built_in": False,
                                   "group_ids": [], "organization_ids": [], "tags": [], "or_tags": [],
                                   "created_at": iso(self.tick()), "updated_at": iso(self.tick())}
        return sid

    def add_article(self, title: str, body: str, *, section_id: int | None = None, locale: str = "en-us",
                    draft: bool = False, labels: tuple[str, ...] = (), article_id: int | None = None,
                    user_segment_id: int | None = None) -> int:
        aid = article_id or self._id()
        now = self.tick()
        slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
        self.articles[(locale, aid)] = {
            "id": aid, "url": f"{self.url}/api/v2/help_center/{locale}/articles/{aid}.json",
            "html_url": f"{self.url}/hc/{locale}/articles/{aid}-{slug}", "author_id": 90001,
            "comments_disabled": False, "draft": draft, "promoted": False, "position": 0, "vote_sum": 0,
            "vote_count": 0, "section_id": section_id, "created_at": iso(now), "updated_at": iso(now),
            "edited_at": iso(now), "name": title, "title": title, "source_locale": "en-us", "locale": locale,
            "outdated": False, "outdated_locales": [], "permission_group_id": 1001, "user_segment_id": user_segment_id,
            "content_tag_ids": [], "label_names": list(labels), "body": body,
        }
        return aid

    def edit_article(self, article_id: int, locale: str = "en-us", **changes: Any) -> None:
        article = self.articles[(locale, article_id)]
        article.update(changes)
        if "title" in changes:
            article["name"] = changes["title"]
        now = iso(self.tick())
        article["updated_at"] = now
        if "body" in changes or "title" in changes:
            article["edited_at"] = now

    def archive_article(self, article_id: int, locale: str = "en-us") -> None:
        self.tick()
        del self.articles[(locale, article_id)]

    # --- routing ---------------------------------------------------------------------------------
    def authorized(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        expected = base64.b64encode(f"{self.email}/token:{self.token}".encode()).decode()
        return header == f"Basic {expected}" or header == f"Bearer {self.token}"

    def unauthorized(self) -> Reply:
        return Reply(401, {"error": "Couldn't authenticate you"})

    def routes(self) -> list[Route]:
        loc = r"(?P<locale>[a-z]{2}(?:-[a-z]{2})?)"
        return [
            ("GET", r"/api/v2/help_center/incremental/articles(?:\.json)?", self._incremental),
            ("GET", rf"/api/v2/help_center/{loc}/articles(?:\.json)?", self._list_articles),
            ("GET", rf"/api/v2/help_center/{loc}/articles/(?P<id>\d+)(?:\.json)?", self._show_article),
            ("GET", rf"/api/v2/help_center/{loc}/sections(?:\.json)?", self._list_sections),
            ("GET", rf"/api/v2/help_center/{loc}/categories(?:\.json)?", self._list_categories),
            ("GET", r"/api/v2/help_center/user_segments/(?P<id>\d+)(?:\.json)?", self._show_segment),
            ("POST", rf"/api/v2/help_center/(?:{loc}/)?sections/(?P<section>\d+)/articles(?:\.json)?",
             self._create_article),
        ]

    def _show_segment(self, _: Request, match: re.Match[str]) -> Reply:
        segment = self.user_segments.get(int(match["id"]))
        if segment is None:
            return Reply(404, {"error": "RecordNotFound", "description": "Not found"})
        return Reply(200, {"user_segment": segment})

    # --- handlers --------------------------------------------------------------------------------
    def _list_articles(self, request: Request, match: re.Match[str]) -> Reply:
        items = sorted((a for (loc, _), a in self.articles.items() if loc == match["locale"]),
                       key=lambda a: a["id"])
        return self._paginated(request, "articles", items)

    def _show_article(self, _: Request, match: re.Match[str]) -> Reply:
        article = self.articles.get((match["locale"], int(match["id"])))
        if article is None:
            return Reply(404, {"error": "RecordNotFound", "description": "Not found"})
        return Reply(200, {"article": article})

    def _list_sections(self, request: Request, _: re.Match[str]) -> Reply:
        return self._paginated(request, "sections", sorted(self.sections.values(), key=lambda s: s["id"]))

    def _list_categories(self, request: Request, _: re.Match[str]) -> Reply:
        return self._paginated(request, "categories", sorted(self.categories.values(), key=lambda c: c["id"]))

    def _create_article(self, request: Request, match: re.Match[str]) -> Reply:
        """POST .../sections/{id}/articles: `{"article": {title, body, locale?, permission_group_id,
        user_segment_id, draft?}, "notify_subscribers"?}` -> 201 `{"article": ...}`, as documented."""
        article = (request.body or {}).get("article") if isinstance(request.body, dict) else None
        section_id = int(match["section"])
        if section_id not in self.sections:
            return Reply(404, {"error": "RecordNotFound", "description": "Not found"})
        if not isinstance(article, dict) or not article.get("title"):
            return Reply(400, {"error": "RecordInvalid", "description": "Title can't be blank"})
        if "permission_group_id" not in article or "user_segment_id" not in article:
            return Reply(400, {"error": "RecordInvalid",
                               "description": "permission_group_id and user_segment_id are required"})
        locale = match["locale"] or article.get("locale") or "en-us"
        aid = self.add_article(article["title"], article.get("body") or "", section_id=section_id, locale=locale,
                               draft=bool(article.get("draft", False)), labels=tuple(article.get("label_names") or ()))
        created = self.articles[(locale, aid)]
        created.update(permission_group_id=article["permission_group_id"],
                       user_segment_id=article["user_segment_id"])
        self.created.append({"section_id": section_id, **request.body})
        return Reply(201, {"article": created})

    def _incremental(self, request: Request, _: re.Match[str]) -> Reply:
        raw_start = request.arg("start_time")
        if raw_start is None or not raw_start.isdigit():
            return Reply(400, {"error": "InvalidValue", "description": "start_time is required"})
        start = int(raw_start)
        changed = sorted((a for a in self.articles.values() if _epoch(a["updated_at"]) >= start),
                         key=lambda a: (_epoch(a["updated_at"]), a["id"]))
        page = changed[: self.incremental_page_size]
        end_time = _epoch(page[-1]["updated_at"]) if page else start
        more = len(changed) > len(page)
        next_page = (f"{self.url}/api/v2/help_center/incremental/articles.json?start_time={end_time}"
                     if more else None)
        return Reply(200, {"articles": page, "next_page": next_page, "count": len(page), "end_time": end_time})

    def _paginated(self, request: Request, key: str, items: list[dict[str, Any]]) -> Reply:
        base = f"{self.url}{request.path}"
        size_arg = request.arg("page[size]")
        if size_arg is not None and self.cursor_pagination:
            size = min(int(size_arg), 100)
            after = request.arg("page[after]")
            start = 0
            if after:
                last_id = int(base64.urlsafe_b64decode(after.encode()).decode())
                start = next((i for i, item in enumerate(items) if item["id"] > last_id), len(items))
            page = items[start: start + size]
            has_more = start + size < len(items)
            after_cursor = base64.urlsafe_b64encode(str(page[-1]["id"]).encode()).decode() if page else None
            before_cursor = base64.urlsafe_b64encode(str(page[0]["id"]).encode()).decode() if page else None
            links = {
                "next": f"{base}?{urlencode({'page[size]': size, 'page[after]': after_cursor})}" if has_more else None,
                "prev": f"{base}?{urlencode({'page[size]': size, 'page[before]': before_cursor})}" if start else None,
            }
            meta = {"has_more": has_more, "after_cursor": after_cursor, "before_cursor": before_cursor}
            return Reply(200, {key: page, "meta": meta, "links": links})
        per_page = min(int(request.arg("per_page") or 30), 100)
        number = int(request.arg("page") or 1)
        page = items[(number - 1) * per_page: number * per_page]
        page_count = max(1, -(-len(items) // per_page))
        return Reply(200, {
            key: page, "page": number, "per_page": per_page, "page_count": page_count, "count": len(items),
            "sort_by": "position", "sort_order": "asc",
            "next_page": f"{base}?page={number + 1}&per_page={per_page}" if number < page_count else None,
            "previous_page": f"{base}?page={number - 1}&per_page={per_page}" if number > 1 else None,
        })


def _epoch(stamp: str) -> int:
    import calendar
    import time

    return calendar.timegm(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ"))


@pytest.fixture
def fake_zendesk() -> Iterator[FakeZendesk]:
    with FakeZendesk() as fake:
        yield fake
