"""The sources file: which knowledge bases to index, read by `kbbot sync`, the worker and /reindex.

    sources:
      - name: help-center            # unique; keys the index (renaming re-indexes the source)
        type: zendesk                # filesystem | jsonl | zendesk | confluence
        options:
          subdomain: acme            # https://acme.zendesk.com
          locales: [en-us]
          email: kb-bot@acme.com
          token_env: ZENDESK_API_TOKEN   # the NAME of the variable holding the secret
          user_segments:             # Zendesk user segment id -> Slack audience (unmapped: held back)
            360001234: [S0AGENTS]
      - name: handbook
        type: filesystem
        audience: everyone           # public | everyone (the default) | [Slack user-group ids]
        options: {path: ./handbook}  # relative to this file

`api_base_url` overrides the URL a connector derives from its options (a proxy, a regional host, a
test server). Secrets never live in the file: options ending in `_env` name an environment variable (or a
line of `.env`) that holds them. Every mistake is reported with the file, line and field at fault.
See docs/connectors.md for every option.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from dotenv import dotenv_values
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from retrieval.access import DEFAULT_AUDIENCE, parse_audience
from retrieval.errors import ConfigError, SourceError
from retrieval.sources.base import Source

log = logging.getLogger(__name__)

SourceType = Literal["filesystem", "jsonl", "zendesk", "confluence"]
_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
_PATTERN_HINTS = {
    "name": "must be letters, digits, '.', '_' or '-' (no spaces), at most 63 characters",
    "subdomain": "must be the Zendesk subdomain alone, e.g. acme for acme.zendesk.com",
    "site": "must be the Atlassian site name alone, e.g. acme for acme.atlassian.net",
    "api_base_url": "must be a URL starting with https:// (or http:// for a local test server)",
}
_PATTERN_HINTS.update(dict.fromkeys(("token_env", "oauth_token_env", "bearer_token_env"),
                                    "must be the NAME of an environment variable, e.g. ZENDESK_API_TOKEN"))
_SECRET_KEYS = frozenset({"token", "api_token", "password", "oauth_token", "bearer_token", "secret"})


# --- the schema ----------------------------------------------------------------------------------
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# `public`, `everyone` or Slack user-group ids (retrieval/access.py); a bad value names the file and line.
AudienceValue = Annotated[str | list[str], AfterValidator(parse_audience)]


class PathOptions(_Strict):
    path: str = Field(min_length=1)


class HttpOptions(_Strict):
    timeout_s: float = Field(30.0, gt=0, le=600)
    max_retries: int = Field(5, ge=0, le=20)
    max_rate_limit_wait_s: float = Field(300.0, ge=0, le=3600)


class ZendeskOptions(HttpOptions):
    subdomain: str | None = Field(None, pattern=r"^[a-z0-9][a-z0-9-]*$")
    locales: list[str] = Field(default_factory=lambda: ["en-us"], min_length=1)
    email: str | None = None
    token_env: str | None = Field(None, pattern=_ENV_NAME)
    oauth_token_env: str | None = Field(None, pattern=_ENV_NAME)
    user_segments: dict[int, AudienceValue] = Field(default_factory=dict)


class ConfluenceOptions(HttpOptions):
    site: str | None = Field(None, pattern=r"^[a-z0-9][a-z0-9-]*$")
    spaces: list[str] = Field(min_length=1)
    content_types: list[Literal["page", "blogpost"]] = Field(default_factory=lambda: ["page"], min_length=1)
    cql: str | None = None
    timezone: str = "UTC"
    email: str | None = None
    token_env: str | None = Field(None, pattern=_ENV_NAME)
    bearer_token_env: str | None = Field(None, pattern=_ENV_NAME)
    groups: dict[str, AudienceValue] = Field(default_factory=dict)  # Confluence group name -> Slack audience


class SourceEntry(_Strict):
    name: str = Field(pattern=_NAME)
    type: SourceType
    options: dict[str, Any] = Field(default_factory=dict)
    api_base_url: str | None = Field(None, pattern=r"^https?://\S+$")
    enabled: bool = True
    audience: AudienceValue = Field("everyone", validate_default=True)


_OPTIONS: dict[str, type[BaseModel]] = {
    "filesystem": PathOptions, "jsonl": PathOptions, "zendesk": ZendeskOptions, "confluence": ConfluenceOptions,
}


@dataclass(frozen=True)
class SourceSpec:
    """One validated entry of the sources file, secrets not yet resolved."""

    name: str
    type: str
    options: BaseModel
    api_base_url: str | None
    enabled: bool
    file: Path
    line: int
    audience: tuple[str, ...] = DEFAULT_AUDIENCE

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}: source {self.name!r}"


# --- reading the file ----------------------------------------------------------------------------
class _Mapping(dict):  # type: ignore[type-arg]
    """A YAML mapping that remembers the line of each key, for error messages."""

    line: int = 0
    key_lines: dict[str, int]


class _Loader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> _Mapping:
    loader.flatten_mapping(node)
    mapping = _Mapping()
    mapping.line = node.start_mark.line + 1
    mapping.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in mapping:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark)
        mapping[key] = loader.construct_object(value_node, deep=True)
        mapping.key_lines[str(key)] = key_node.start_mark.line + 1
    return mapping


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
# For other config files validated the same way (bot/channel_profiles.py).
YamlLineLoader = _Loader
YamlMapping = _Mapping


def load_sources_file(path: Path) -> list[SourceSpec]:
    """Parse and validate the sources file. Raises ConfigError naming file, line and field."""
    path = Path(path)
    try:
        raw_text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"The sources file {path} (KBBOT_SOURCES_FILE) does not exist: create it (see "
                          "examples/sources.yml) or unset KBBOT_SOURCES_FILE.") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"The sources file {path} cannot be read: {exc}.") from exc
    try:
        document = yaml.load(raw_text, Loader=_Loader)  # a SafeLoader subclass: no arbitrary objects
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}: not valid YAML ({problem}).") from exc
    if document is None:
        return []
    if not isinstance(document, dict) or not isinstance(document.get("sources"), list):
        raise ConfigError(f"{path}:1: expected a top-level `sources:` list (see examples/sources.yml).")
    extra = sorted(set(document) - {"sources"})
    if extra:
        line = document.key_lines.get(extra[0], 1) if isinstance(document, _Mapping) else 1
        raise ConfigError(f"{path}:{line}: unknown top-level key {extra[0]!r}; only `sources:` is read.")
    specs: list[SourceSpec] = []
    names: dict[str, int] = {}
    for index, entry in enumerate(document["sources"]):
        if not isinstance(entry, _Mapping):
            raise ConfigError(f"{path}: sources[{index}] must be a mapping with name, type and options.")
        spec = _validate(entry, path, index)
        if spec.name in names:
            raise ConfigError(f"{spec.where}: the name is already used on line {names[spec.name]}; names "
                              "must be unique.")
        names[spec.name] = spec.line
        specs.append(spec)
    return specs


def _validate(entry: _Mapping, path: Path, index: int) -> SourceSpec:
    label = f"source {entry.get('name')!r}" if isinstance(entry.get("name"), str) else f"sources[{index}]"
    try:
        top = SourceEntry.model_validate(dict(entry))
    except ValidationError as exc:
        raise _config_error(exc, entry, path, label, prefix=()) from exc
    options_node = entry.get("options")
    options_map = options_node if isinstance(options_node, _Mapping) else _Mapping()
    try:
        options = _OPTIONS[top.type].model_validate(dict(top.options))
    except ValidationError as exc:
        raise _config_error(exc, entry, path, label, prefix=("options",)) from exc
    if top.type == "zendesk" and not (getattr(options, "subdomain", None) or top.api_base_url):
        raise ConfigError(f"{path}:{options_map.line or entry.line}: {label}: options.subdomain (acme for "
                          "acme.zendesk.com) or api_base_url is required.")
    if top.type == "confluence" and not (getattr(options, "site", None) or top.api_base_url):
        raise ConfigError(f"{path}:{options_map.line or entry.line}: {label}: options.site (acme for "
                          "acme.atlassian.net) or api_base_url is required.")
    return SourceSpec(top.name, top.type, options, top.api_base_url, top.enabled, path, entry.line,
                      tuple(top.audience))


def _config_error(exc: ValidationError, entry: _Mapping, path: Path, label: str,
                  prefix: tuple[str, ...]) -> ConfigError:
    err = exc.errors()[0]
    loc = (*prefix, *(str(part) for part in err["loc"]))
    line = line_of(entry, loc)
    field = ".".join(loc)
    message = err["msg"]
    if err["type"] == "extra_forbidden" and loc[-1] in _SECRET_KEYS:
        message = ("secrets are not written in the sources file: put the value in an environment variable "
                   f"and name it, e.g. `{loc[-1].removesuffix('_token')}_token_env: ZENDESK_API_TOKEN`"
                   if loc[-1] != "token" else
                   "secrets are not written in the sources file: put the value in an environment variable and "
                   "name it with `token_env: ZENDESK_API_TOKEN`")
    elif err["type"] == "extra_forbidden":
        message = "unknown field (see docs/connectors.md for the options of each type)"
    elif err["type"] == "missing":
        message = "is required"
    elif err["type"] == "string_pattern_mismatch":
        message = _PATTERN_HINTS.get(loc[-1], "has an unexpected form")
    elif err["type"] == "value_error":
        message = message.removeprefix("Value error, ")
    return ConfigError(f"{path}:{line}: {label}: {field} {message}.")


def line_of(entry: _Mapping, loc: tuple[str, ...]) -> int:
    """The line of the deepest key of `loc` found in `entry` (its own line if none)."""
    node: Any = entry
    line = entry.line
    for part in loc:
        if isinstance(node, _Mapping) and part in node.key_lines:
            line = node.key_lines[part]
            # keys keep their YAML type (a Zendesk segment id is an int); the location names them as text
            node = next(value for key, value in node.items() if str(key) == part)
        else:
            break
    return line


# --- building sources ----------------------------------------------------------------------------
def _secret(spec: SourceSpec, option: str) -> str | None:
    variable = getattr(spec.options, option, None)
    if variable is None:
        return None
    value = os.environ.get(variable)
    if value is None and Path(".env").is_file():
        value = dotenv_values(".env").get(variable)
    if not value:
        raise ConfigError(f"{spec.where}: options.{option} names {variable}, which is not set in the environment "
                          "or in .env: set it to the token.")
    return value


def build_source(spec: SourceSpec) -> Source:
    """The connector for one entry, with its secrets read from the environment now."""
    source = _connector(spec)
    source.audience = spec.audience
    return source


def _connector(spec: SourceSpec) -> Source:
    from retrieval.sources import FilesystemSource, JsonlSource

    opts: Any = spec.options
    if spec.type in ("filesystem", "jsonl"):
        path = Path(opts.path).expanduser()
        if not path.is_absolute():
            path = spec.file.resolve().parent / path
        return FilesystemSource(spec.name, path) if spec.type == "filesystem" else JsonlSource(spec.name, path)
    http = {"timeout_s": opts.timeout_s, "max_retries": opts.max_retries, "max_wait_s": opts.max_rate_limit_wait_s}
    if spec.type == "zendesk":
        from retrieval.sources.zendesk import ZendeskSource

        token, oauth = _secret(spec, "token_env"), _secret(spec, "oauth_token_env")
        if token and not opts.email:
            raise ConfigError(f"{spec.where}: options.email is required with token_env (Zendesk API tokens "
                              "authenticate as `email/token`).")
        if not token and not oauth:
            raise ConfigError(f"{spec.where}: set options.token_env (with email) or options.oauth_token_env: "
                              "the incremental export needs an agent or admin token.")
        base = spec.api_base_url or f"https://{opts.subdomain}.zendesk.com"
        hint = (f"{opts.token_env} and the email {opts.email}" if token else f"{opts.oauth_token_env}")
        return ZendeskSource(spec.name, base_url=base, locales=opts.locales, email=opts.email, api_token=token,
                             oauth_token=oauth, credentials_hint=hint, user_segments=opts.user_segments, **http)
    from retrieval.sources.confluence import ConfluenceSource

    token, bearer = _secret(spec, "token_env"), _secret(spec, "bearer_token_env")
    if token and not opts.email:
        raise ConfigError(f"{spec.where}: options.email is required with token_env (Confluence Cloud API "
                          "tokens authenticate as `email:token`).")
    if not token and not bearer:
        raise ConfigError(f"{spec.where}: set options.token_env (with email) or options.bearer_token_env.")
    base = spec.api_base_url or f"https://{opts.site}.atlassian.net"
    hint = f"{opts.token_env} and the email {opts.email}" if token else f"{opts.bearer_token_env}"
    return ConfluenceSource(spec.name, base_url=base, spaces=opts.spaces, content_types=opts.content_types,
                            cql=opts.cql, timezone=opts.timezone, email=opts.email, api_token=token,
                            bearer_token=bearer, credentials_hint=hint, groups=opts.groups, **http)


def configured_sources(sources_file: Path | None, registered: list[tuple[str, str, dict[str, Any]]]) -> list[Source]:
    """Every source to sync: those declared in the sources file, then those `kbbot ingest` registered in
    the index (name, kind, stored config) that the file does not declare.

    A registered source that cannot be rebuilt (e.g. a connector removed from the file) is skipped with a
    warning rather than failing every other source; its articles stay searchable until `kbbot forget` removes it.
    """
    specs = load_sources_file(sources_file) if sources_file is not None else []
    sources = [build_source(spec) for spec in specs if spec.enabled]
    declared = {spec.name for spec in specs}
    from retrieval.sources import source_from_record

    for name, kind, config in registered:
        if name in declared:
            continue
        try:
            sources.append(source_from_record(name, kind, config))
        except SourceError as exc:
            log.warning("not syncing source %s: %s", name, exc)
    return sources

