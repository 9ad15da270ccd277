"""A local fake of the Confluence Cloud REST API over real HTTP, shaped after Atlassian's documented payloads.

    GET /wiki/rest/api/content/search?cql=...&limit=&expand=   CQL search; `_links.next` (relative to
                                                               `_links.base`) carries an opaque cursor
    GET /wiki/rest/api/content/{id}?expand=                   one page; 404 once trashed or purged
    GET /wiki/rest/api/content/{id}/restriction/byOperation/read   the page's own read restrictions

The CQL understood is what a KB connector sends: `space = "K"`, `space in ("A","B")`, `type = page`,
`type in (page, blogpost)`, `lastModified >= "yyyy/MM/dd HH:mm"` (minute precision, read in
`user_timezone`), joined by `and`, with an optional `order by lastmodified asc|desc`. Anything else gets
Confluence's 400 "Could not parse cql". `expand` is honoured for body.storage, version, ancestors,
space and restrictions.read.restrictions.group/user. Read restrictions are set per page
(`restrict_read`) and, as in Confluence, change no version and no lastModified. Trashed pages leave
search results, as in Confluence. Auth: basic `email:api_token`.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import pytest

from tests.fakes.json_api import JsonApiFake, Reply, Request, Route

_CLAUSE = re.compile(
    r"""^\s*(?:
        (?P<field>space|type)\s*(?P<op>=|in)\s*(?P<values>\(.*\)|"[^"]*"|\w+)
      | lastmodified\s*(?P<cmp>>=|>)\s*"(?P<date>\d{4}/\d{2}/\d{2}(?:\s+\d{2}:\d{2})?)"
    )\s*$""",
    re.IGNORECASE | re.VERBOSE,
)


class FakeConfluence(JsonApiFake):
    name = "fake-confluence"

    def __init__(self, *, email: str = "bot@example.com", token: str = "cf-secret-token",
                 user_timezone: str = "UTC") -> None:
        super().__init__()
        self.email = email
        self.token = token
        self.user_timezone = ZoneInfo(user_timezone)
        self.spaces: dict[str, str] = {}
        self.pages: dict[str, dict[str, Any]] = {}
        self._next_id = 98_300_000

    # --- content the tests manage ----------------------------------------------------------------
    def add_space(self, key: str, name: str) -> None:
        self.spaces[key] = name

    def add_page(self, space: str, title: str, storage: str, *, parent: str | None = None,
                 content_type: str = "page", editor: str = "Ada Admin") -> str:
        self._next_id += 1
        page_id = str(self._next_id)
        self.pages[page_id] = {"id": page_id, "type": content_type, "status": "current", "title": title,
                               "space": space, "parent": parent, "storage": storage, "version": 1,
                               "when": self.tick(), "editor": editor, "read_groups": [], "read_users": []}
        return page_id

    def restrict_read(self, page_id: str, *, groups: tuple[str, ...] = (), users: tuple[str, ...] = ()) -> None:
        """Who may view the page (nobody named: unrestricted). Its descendants inherit it."""
        self.pages[page_id]["read_groups"] = list(groups)
        self.pages[page_id]["read_users"] = list(users)

    def edit_page(self, page_id: str, *, title: str | None = None, storage: str | None = None,
                  parent: str | None = None) -> None:
        page = self.pages[page_id]
        page["title"] = title or page["title"]
        page["storage"] = storage if storage is not None else page["storage"]
        page["parent"] = parent if parent is not None else page["parent"]
        page["version"] += 1
        page["when"] = self.tick()

    def trash_page(self, page_id: str) -> None:
        self.pages[page_id]["status"] = "trashed"
        self.tick()

    # --- routing ---------------------------------------------------------------------------------
    def authorized(self, request: Request) -> bool:
        expected = base64.b64encode(f"{self.email}:{self.token}".encode()).decode()
        return request.headers.get("authorization") == f"Basic {expected}"

    def unauthorized(self) -> Reply:
        return Reply(401, {"statusCode": 401, "message": "Client must be authenticated to access this resource."})

    def routes(self) -> list[Route]:
        return [
            ("GET", r"/wiki/rest/api/content/search", self._search),
            ("GET", r"/wiki/rest/api/content/(?P<id>\d+)", self._get),
            ("GET", r"/wiki/rest/api/content/(?P<id>\d+)/restriction/byOperation/read", self._read_restrictions),
        ]

    def _read_restrictions(self, _: Request, match: re.Match[str]) -> Reply:
        page = self.pages.get(match["id"])
        if page is None or page["status"] != "current":
            return Reply(404, {"statusCode": 404, "message": "No content found with id: " + match["id"]})
        return Reply(200, {"operation": "read", "restrictions": self._restrictions(page),
                           "content": {"id": page["id"], "type": page["type"], "title": page["title"]},
                           "_links": {"base": self.base}})

    def _restrictions(self, page: dict[str, Any]) -> dict[str, Any]:
        groups = [{"type": "group", "name": g, "id": f"gid-{g}"} for g in page["read_groups"]]
        users = [{"type": "known", "accountId": u, "displayName": u} for u in page["read_users"]]
        return {"group": {"results": groups, "start": 0, "limit": 200, "size": len(groups)},
                "user": {"results": users, "start": 0, "limit": 200, "size": len(users)}}

    @property
    def base(self) -> str:
        return f"{self.url}/wiki"

    # --- handlers --------------------------------------------------------------------------------
    def _search(self, request: Request, _: re.Match[str]) -> Reply:
        cql = request.arg("cql") or ""
        try:
            matches = self._query(cql)
        except ValueError as exc:
            return Reply(400, {"statusCode": 400, "message": f"Could not parse cql : {cql} ({exc})"})
        limit = min(int(request.arg("limit") or 25), 50 if "body" in (request.arg("expand") or "") else 250)
        start = int(base64.urlsafe_b64decode((request.arg("cursor") or "MA==").encode()).decode())
        page = matches[start: start + limit]
        expand = set((request.arg("expand") or "").split(","))
        links: dict[str, Any] = {"base": self.base, "context": "/wiki",
                                 "self": f"{self.base}/rest/api/content/search"}
        if start + limit < len(matches):
            cursor = base64.urlsafe_b64encode(str(start + limit).encode()).decode()
            query = {"cql": cql, "limit": limit, "expand": request.arg("expand") or "", "cursor": cursor,
                     "next": "true"}
            links["next"] = f"/rest/api/content/search?{urlencode(query)}"
        return Reply(200, {"results": [self._render(p, expand) for p in page], "start": start,
                           "limit": limit, "size": len(page), "_links": links})

    def _get(self, request: Request, match: re.Match[str]) -> Reply:
        page = self.pages.get(match["id"])
        if page is None or page["status"] != "current":
            return Reply(404, {"statusCode": 404, "message": "No content found with id: " + match["id"]})
        return Reply(200, self._render(page, set((request.arg("expand") or "").split(","))))

    # --- CQL and rendering -----------------------------------------------------------------------
    def _query(self, cql: str) -> list[dict[str, Any]]:
        ordering = re.search(r"\s+order\s+by\s+(?P<order>.*)$", cql, re.IGNORECASE)
        text = cql[: ordering.start()] if ordering else cql
        order = ordering["order"] if ordering else ""
        predicates = []
        for clause in re.split(r"\s+and\s+", text.strip(), flags=re.IGNORECASE):
            clause = clause.strip()
            while clause.startswith("(") and clause.endswith(")") and _balanced(clause[1:-1]):
                clause = clause[1:-1].strip()
            found = _CLAUSE.match(clause)
            if not found:
                raise ValueError(f"unsupported clause {clause!r}")
            if found["field"]:
                values = {v.strip().strip('"') for v in found["values"].strip("()").split(",")}
                key = "space" if found["field"].lower() == "space" else "type"
                predicates.append(lambda p, key=key, values=values: p[key] in values)
            else:
                fmt = "%Y/%m/%d %H:%M" if ":" in found["date"] else "%Y/%m/%d"
                local = datetime.strptime(found["date"], fmt).replace(tzinfo=self.user_timezone)
                limit = int(local.timestamp())
                strict = found["cmp"] == ">"
                predicates.append(lambda p, limit=limit, strict=strict: p["when"] > limit if strict
                                  else p["when"] >= limit)
        pages = [p for p in self.pages.values() if p["status"] == "current" and all(f(p) for f in predicates)]
        descending = "desc" in order.lower()
        return sorted(pages, key=lambda p: (p["when"], p["id"]), reverse=descending)

    def _ancestors(self, page: dict[str, Any]) -> list[dict[str, Any]]:
        chain = []
        parent = page["parent"]
        while parent is not None and parent in self.pages:
            chain.append(self.pages[parent])
            parent = self.pages[parent]["parent"]
        return list(reversed(chain))  # root first, as Confluence returns them

    def _render(self, page: dict[str, Any], expand: set[str]) -> dict[str, Any]:
        slug = page["title"].replace(" ", "+")
        out: dict[str, Any] = {
            "id": page["id"], "type": page["type"], "status": page["status"], "title": page["title"],
            "_links": {"webui": f"/spaces/{page['space']}/pages/{page['id']}/{slug}",
                       "self": f"{self.base}/rest/api/content/{page['id']}", "tinyui": f"/x/{page['id']}",
                       "base": self.base},
            "_expandable": {"body": "", "version": "", "ancestors": "", "space": ""},
        }
        if "body.storage" in expand:
            out["body"] = {"storage": {"value": page["storage"], "representation": "storage"}}
        if "version" in expand:
            when = datetime.fromtimestamp(page["when"], ZoneInfo("UTC"))
            out["version"] = {"number": page["version"], "when": when.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                              "by": {"type": "known", "displayName": page["editor"],
                                     "accountId": "5b10ac8d82e05b22cc7d4ef5"}, "minorEdit": False}
        if "ancestors" in expand:
            out["ancestors"] = [{"id": a["id"], "type": a["type"], "status": a["status"], "title": a["title"]}
                                for a in self._ancestors(page)]
        if "restrictions.read.restrictions.group" in expand:
            out["restrictions"] = {"read": {"operation": "read", "restrictions": self._restrictions(page)}}
        if "space" in expand:
            out["space"] = {"key": page["space"], "name": self.spaces.get(page["space"], page["space"]),
                            "type": "global"}
        return out


def _balanced(text: str) -> bool:
    depth = 0
    for ch in text:
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if depth < 0:
            return False
    return depth == 0


@pytest.fixture
def fake_confluence() -> Iterator[FakeConfluence]:
    with FakeConfluence() as fake:
        yield fake
