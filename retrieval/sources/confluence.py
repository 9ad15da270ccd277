"""Confluence Cloud pages, found with CQL.

`GET /wiki/rest/api/content/search?cql=...&expand=body.storage,version,ancestors,space` with the
`_links.next` cursor for pagination. A full listing asks for every current page of the configured
spaces; an incremental run adds `lastModified >= "yyyy/MM/dd HH:mm"` to the same query.

- Storage format (XHTML with `ac:` macros) becomes Markdown: code/noformat macros become code blocks,
  link labels are kept, navigation macros (toc, children, page tree...) and macro parameters dropped.
- The page's ancestors (space home > parent > ...) head the heading path of every passage.
- CQL dates have minute precision and are read in the timezone of the API user's Confluence profile:
  set `timezone` in the sources file when that is not UTC. The window starts a few minutes early, and
  re-reading an unchanged page costs only a hash compare.
- Pages moved to the trash or out of the spaces vanish from search: the periodic full pass prunes them;
  an incremental run cannot see them.
- Access: a page's read restrictions and those of every ancestor (a restricted parent hides its
  children; the content restrictions API, `restriction/byOperation/read`) narrow the source's audience.
  Each restricted level allows the Slack audiences its Confluence groups map to (`options.groups`); levels
  combine by intersection, so a reader must pass all of them. A level with no mapped group (only users, or
  unmapped groups) holds the page back: indexed, never answered. Restrictions change without a new page
  version, so an incremental run also lists every page's restrictions (no bodies) and re-reads the pages
  whose access changed since the checkpoint, which keeps the access of restricted pages.
"""

from __future__ import annotations

import logging
from collections.abc import Generator, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bs4 import BeautifulSoup, CData, NavigableString

from retrieval.access import EVERYONE, PUBLIC
from retrieval.errors import ArticleError, ConfigError, SourceError
from retrieval.sources.base import ChangeFeed, ChangeItem, Checkpoint, Deleted, Source, SourceItem
from retrieval.sources.filesystem import as_utc_datetime, html_to_markdown
from retrieval.sources.http import ApiClient
from retrieval.types import Article

log = logging.getLogger(__name__)

PAGE_SIZE = 50  # Confluence caps expanded bodies at 50 results per page
RESTRICTIONS = "restrictions.read.restrictions.group,restrictions.read.restrictions.user"
EXPAND = f"body.storage,version,ancestors,space,{RESTRICTIONS}"
SWEEP_PAGE_SIZE = 200  # the restrictions-only listing carries no bodies
CHECKPOINT_OVERLAP = timedelta(minutes=5)  # minute-precision CQL and clock edges; see the docstring
CODE_MACROS = frozenset({"code", "noformat"})
DROPPED_MACROS = frozenset({
    "toc", "children", "pagetree", "pagetreesearch", "recently-updated", "contentbylabel", "livesearch",
    "attachments", "jira", "anchor", "profile", "status", "create-from-template", "include", "excerpt-include",
})


class ConfluenceSource(Source):
    kind = "confluence"

    def __init__(self, name: str, *, base_url: str, spaces: Sequence[str], content_types: Sequence[str] = ("page",),
                 cql: str | None = None, timezone: str = "UTC", email: str | None = None,
                 api_token: str | None = None, bearer_token: str | None = None,
                 credentials_hint: str = "the Confluence API token", page_size: int = PAGE_SIZE,
                 groups: dict[str, tuple[str, ...]] | None = None, **http: Any) -> None:
        super().__init__(name)
        self.groups = dict(groups or {})
        self._ancestor_levels: dict[str, _Level] = {}
        if not spaces:
            raise SourceError(f"Confluence source {name!r} has no spaces: list the space keys to index.")
        try:
            self.timezone = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ConfigError(f"Confluence source {name!r}: unknown timezone {timezone!r}; use an IANA "
                              "name such as Europe/Paris.") from exc
        self.base_url = base_url.rstrip("/")
        self.spaces = tuple(spaces)
        self.content_types = tuple(content_types)
        self.cql_filter = cql
        self.page_size = page_size
        auth = (email, api_token) if email and api_token else None
        self.client = ApiClient(service=f"Confluence ({name})", base_url=self.base_url, auth=auth,
                                bearer_token=bearer_token, credentials_hint=credentials_hint, **http)

    def config(self) -> dict[str, object]:
        return {"base_url": self.base_url, "spaces": list(self.spaces), "content_types": list(self.content_types),
                "cql": self.cql_filter}

    def access_config(self) -> dict[str, object]:
        config = super().access_config()
        if self.groups:
            config["groups"] = {k: list(v) for k, v in sorted(self.groups.items())}
        return config

    def describe(self) -> str:
        return f"confluence:{self.name} ({self.base_url}, spaces {', '.join(self.spaces)})"

    def close(self) -> None:
        self.client.close()

    # --- the Source interface --------------------------------------------------------------------
    def iter_articles(self) -> Iterator[SourceItem]:
        yield from self._search(self._cql(None))

    def iter_changes(self, checkpoint: Checkpoint | None) -> ChangeFeed:
        since_text = checkpoint.get("since") if checkpoint else None
        if not isinstance(since_text, str):
            return ChangeFeed(self._search(self._cql(None)), complete=True)
        try:
            since = as_utc_datetime(since_text)
        except ValueError:
            log.warning("%s: unreadable checkpoint %r; listing everything", self.name, since_text)
            return ChangeFeed(self._search(self._cql(None)), complete=True)
        known = checkpoint.get("access") if checkpoint else None
        return ChangeFeed(self._search(self._cql(since), known=known if isinstance(known, dict) else {}),
                          complete=False)

    def fetch_articles(self, external_ids: Sequence[str]) -> Iterator[ChangeItem]:
        for page_id in external_ids:
            raw = self.client.get_json(f"wiki/rest/api/content/{page_id}", {"expand": EXPAND}, missing_ok=True)
            space = ((raw or {}).get("space") or {}).get("key")
            if not isinstance(raw, dict) or raw.get("status") != "current" or space not in self.spaces:
                yield Deleted(page_id)
            else:
                yield self._article(raw, (raw.get("_links") or {}).get("base") or f"{self.base_url}/wiki")

    # --- search ----------------------------------------------------------------------------------
    def _cql(self, since: datetime | None) -> str:
        spaces = ", ".join(_quote(s) for s in self.spaces)
        types = ", ".join(_quote(t) for t in self.content_types)
        clauses = [f"space in ({spaces})", f"type in ({types})"]
        if self.cql_filter:
            clauses.append(f"({self.cql_filter})")
        if since is not None:
            local = (since - CHECKPOINT_OVERLAP).astimezone(self.timezone)
            clauses.append(f'lastModified >= "{local:%Y/%m/%d %H:%M}"')
        return " and ".join(clauses) + " order by lastmodified asc"

    def _search(self, cql: str, *, known: dict[str, str] | None = None) -> Generator[ChangeItem, None, Checkpoint]:
        """The pages of `cql`. With `known` (the access of each restricted page at the last checkpoint), an
        incremental run: afterwards every page's restrictions are listed and the pages whose access changed
        are read again. The checkpoint keeps the access of every restricted page."""
        self._ancestor_levels.clear()  # restrictions may have changed since the last run
        access: dict[str, str] = {}
        started: datetime | None = None
        for raw, base in self._results(cql, EXPAND, self.page_size):
            started = started or self.client.server_time
            item = self._article(raw, base)
            if isinstance(item, Article):
                access[item.external_id] = _access_key(item)
            yield item
        if known is not None:
            sweep_cql = self._cql(None)
            for raw, _ in self._results(sweep_cql, f"ancestors,{RESTRICTIONS}", SWEEP_PAGE_SIZE):
                page_id = str(raw.get("id"))
                if page_id in access:
                    continue
                audience, held_back = self._audience(raw)
                key = _access_key(Article(page_id, "", "", audience=audience, held_back=held_back))
                access[page_id] = key
                if known.get(page_id, "") != key:
                    log.info("%s: the read restrictions of page %s changed; reading it again", self.name, page_id)
                    yield from self.fetch_articles([page_id])
        started = started or datetime.now(UTC)
        # the overlap is taken when the next query is written
        return {"since": started.isoformat(), "access": {k: v for k, v in access.items() if v}}

    def _results(self, cql: str, expand: str, limit: int) -> Iterator[tuple[dict[str, Any], str]]:
        url: str | None = "wiki/rest/api/content/search"
        params: dict[str, Any] | None = {"cql": cql, "limit": limit, "expand": expand}
        while url:
            page = self.client.get_json(url, params)
            if not isinstance(page, dict) or not isinstance(page.get("results"), list):
                raise SourceError(f"Confluence ({self.name}) answered the search without a results list: "
                                  "check that the base URL is the site (https://SITE.atlassian.net).")
            links = page.get("_links") or {}
            base = links.get("base") or f"{self.base_url}/wiki"
            for raw in page["results"]:
                if isinstance(raw, dict) and raw.get("status", "current") == "current":
                    yield raw, base
            next_link = links.get("next")
            url = f"{base}{next_link}" if isinstance(next_link, str) and next_link else None
            params = None  # the next link carries the query and the cursor

    # --- one page --------------------------------------------------------------------------------
    def _article(self, raw: dict[str, Any], base: str) -> Article | ArticleError:
        page_id = str(raw.get("id"))
        where = f"{self.name}:{page_id}"
        try:
            title = str(raw.get("title") or "").strip()
            storage = ((raw.get("body") or {}).get("storage") or {}).get("value")
            if not isinstance(storage, str):
                return ArticleError("came without its body (expand=body.storage)", location=where,
                                    external_id=page_id)
            text = storage_to_markdown(storage)
            if not title or not text:
                return ArticleError("is empty: nothing to index", location=where, external_id=page_id)
            version = raw.get("version") or {}
            updated = as_utc_datetime(version["when"]) if version.get("when") else None
        except (ValueError, TypeError, AttributeError) as exc:
            return ArticleError(f"could not be read: {exc}", location=where, external_id=page_id)
        ancestors = [a for a in raw.get("ancestors") or [] if isinstance(a, dict) and a.get("title")]
        webui = (raw.get("_links") or {}).get("webui")
        space = raw.get("space") or {}
        editor = (version.get("by") or {}).get("displayName")
        metadata = {"confluence_id": page_id, "space": space.get("key"), "space_name": space.get("name"),
                    "version": version.get("number"), "last_editor": editor, "type": raw.get("type"),
                    "ancestor_ids": [str(a.get("id")) for a in ancestors]}
        audience, held_back = self._audience(raw)
        return Article(
            external_id=page_id, title=title, text=text, url=f"{base}{webui}" if webui else None,
            updated_at=updated, path=tuple(str(a["title"]) for a in ancestors),
            metadata={k: v for k, v in metadata.items() if v is not None},
            audience=audience, held_back=held_back,
        )

    # --- access ----------------------------------------------------------------------------------
    def _audience(self, raw: dict[str, Any]) -> tuple[tuple[str, ...] | None, str | None]:
        """(audience, held_back) from the read restrictions of the page and of each ancestor."""
        read = ((raw.get("restrictions") or {}).get("read") or {}).get("restrictions")
        if not isinstance(read, dict):
            # Without the expansion the page's own restrictions are unknown: never guess "unrestricted".
            return (), "Confluence did not return the page's read restrictions"
        levels = [_level(read)]
        for ancestor in raw.get("ancestors") or []:
            if isinstance(ancestor, dict) and ancestor.get("id") is not None:
                levels.append(self._ancestor_level(str(ancestor["id"])))
        allowed: set[str] | None = None  # None: no restricted level yet
        for groups, users in levels:
            if not groups and not users:
                continue
            mapped = {token for group in groups for token in self.groups.get(group, ())}
            if not mapped:
                who = ", ".join([*sorted(groups), *([f"{len(users)} named users"] if users else [])])
                return (), (f"Confluence read restrictions ({who}) are not mapped to Slack: map the groups "
                            "under options.groups in the sources file")
            level = {EVERYONE} if mapped & {EVERYONE, PUBLIC} else mapped
            if allowed is None or allowed == {EVERYONE}:
                allowed = level
            elif level != {EVERYONE}:
                allowed &= level
                if not allowed:
                    return (), ("Confluence restricts the page at several levels and no Slack group is allowed "
                                "by all of them")
        if allowed is None:
            return None, None
        return tuple(sorted(allowed)), None

    def _ancestor_level(self, page_id: str) -> _Level:
        if page_id not in self._ancestor_levels:
            body = self.client.get_json(f"wiki/rest/api/content/{page_id}/restriction/byOperation/read",
                                        {"expand": "restrictions.group,restrictions.user"}, missing_ok=True)
            read = body.get("restrictions") if isinstance(body, dict) else None
            # An ancestor gone meanwhile restricts nothing; an unreadable answer fails the source instead
            # of indexing its children unrestricted.
            if body is not None and not isinstance(read, dict):
                raise SourceError(f"Confluence ({self.name}) answered the restrictions of page {page_id} "
                                  "without a restrictions object.")
            self._ancestor_levels[page_id] = _level(read or {})
        return self._ancestor_levels[page_id]


_Level = tuple[frozenset[str], frozenset[str]]  # Confluence group names, user account ids


def _level(read: dict[str, Any]) -> _Level:
    def names(kind: str, key: str) -> frozenset[str]:
        results = (read.get(kind) or {}).get("results") or []
        return frozenset(str(r.get(key)) for r in results if isinstance(r, dict) and r.get(key))

    return names("group", "name"), names("user", "accountId")


def _access_key(article: Article) -> str:
    """'' for the source's default access, else the audience and hold-back reason (kept per page)."""
    if article.audience is None and not article.held_back:
        return ""
    return ",".join(article.audience or ()) + "|" + (article.held_back or "")


def storage_to_markdown(storage: str) -> str:
    """Confluence storage format to the Markdown-ish text every source produces."""
    soup = BeautifulSoup(storage, "html.parser")
    for macro in soup.find_all("ac:structured-macro"):
        name = str(macro.get("ac:name") or "")
        if name in CODE_MACROS:
            body = macro.find("ac:plain-text-body")
            pre = soup.new_tag("pre")
            pre.string = body.get_text() if body else ""
            macro.replace_with(pre)
        elif name in DROPPED_MACROS:
            macro.decompose()
    for tag in soup.find_all(["ac:parameter", "ac:image", "ri:attachment"]):
        tag.decompose()
    for link in soup.find_all("ac:link"):  # a link without a label reads as the page it points to
        target = link.find("ri:page")
        if not link.get_text(strip=True) and target is not None and target.get("ri:content-title"):
            link.replace_with(str(target["ri:content-title"]))
    # Link labels and other plain-text bodies come as CDATA, which the HTML walker skips as markup.
    for cdata in soup.find_all(string=lambda s: isinstance(s, CData)):
        cdata.replace_with(NavigableString(str(cdata)))
    return html_to_markdown(soup)


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
