"""Settings, read once from the environment and `.env`, then passed in, one group per concern.

    Settings                 what `load_settings()` returns: one group per concern
    ├── storage   StorageSettings    where the index lives (Database.open)
    ├── embeddings EmbeddingSettings which model embeds passages and questions (create_embedder)
    ├── index     IndexSettings      how a sync chunks and builds the HNSW index (Indexer, HnswOptions)
    ├── search    SearchSettings     how a question is searched and gated (Searcher, AnswerPipeline)
    ├── openai    OpenAISettings     the OpenAI-compatible endpoint (chat, fine-tuning, embeddings fallback)
    ├── llm       LLMSettings        how answers are written by a model, and which one (retrieval.llm)
    ├── slack     SlackSettings      the Slack app and its HTTP server (bot.app, bot.responder)
    ├── scheduler SchedulerSettings  when `kbbot worker` syncs and posts the gaps digest (bot.worker)
    └── logging   LoggingSettings    the log level

Each part is handed the groups it uses, not the whole. A field's environment variable is `KBBOT_` + its
name unless it says otherwise (`DATABASE_URL`, `OPENAI_*`, `SLACK_*`, `PORT`, two LLM timings). The
defaults here are the only ones: constructors in the core default to `DEFAULTS` (e.g.
`DEFAULTS.search.min_relevance`), so a calibrated value has one home. Every field documents itself: the
README's configuration table is generated from these classes (`kbbot config --markdown`).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Annotated, Any, Literal, get_type_hints

import platformdirs
from pydantic import AfterValidator, AliasChoices, BeforeValidator, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from retrieval.errors import ConfigError


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def _check_postgres_url(value: SecretStr | None) -> SecretStr | None:
    if value is not None and not value.get_secret_value().startswith(("postgresql", "postgres")):
        raise ValueError("must be a postgresql:// URL")
    return value


# Comma-separated in the environment; NoDecode stops pydantic-settings from parsing it as JSON first.
CsvList = Annotated[list[str], NoDecode, BeforeValidator(_split_csv)]
PostgresUrl = Annotated[SecretStr | None, AfterValidator(_check_postgres_url)]


def _env(name: str) -> AliasChoices:
    """For the few variables that do not follow `KBBOT_<FIELD>` (names users' deployments already set)."""
    return AliasChoices(name)


# Settings whose empty value means something of its own (said in its description); any other set to ""
# is unset.
_EMPTY_IS_A_VALUE = frozenset({"full_sync_cron"})


class _Group(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="KBBOT_", env_file=".env", env_file_encoding="utf-8", extra="ignore", populate_by_name=True
    )

    @model_validator(mode="before")
    @classmethod
    def _empty_is_unset(cls, data: Any) -> Any:
        """`NAME=` in a .env file (`kbbot config > .env` writes them), or a compose file's `NAME: ${NAME}`,
        hand over "" for a setting left unset: that is the default, not an empty path (the current
        directory) or a value that fails to parse."""
        if not isinstance(data, dict):
            return data
        by_variable = {cls.env_name(name): name for name in cls.model_fields}
        return {key: value for key, value in data.items()
                if value != "" or by_variable.get(key, key) in _EMPTY_IS_A_VALUE}

    @classmethod
    def env_name(cls, field_name: str) -> str:
        """The environment variable that sets a field."""
        alias = cls.model_fields[field_name].validation_alias
        if isinstance(alias, AliasChoices):
            return str(alias.choices[0])
        return f"KBBOT_{field_name.upper()}"


class StorageSettings(_Group):
    """Storage: where the index lives (handed to `Database.open`)."""

    database_url: PostgresUrl = Field(
        None, validation_alias=_env("DATABASE_URL"),
        description="PostgreSQL with pgvector >= 0.8.4. Unset: an embedded PostgreSQL is started.",
    )
    search_database_url: PostgresUrl = Field(
        None,
        description="A read replica of DATABASE_URL (streaming replication) that searches read from; writes "
        "(answer log, feedback, syncs) stay on DATABASE_URL. Unset: searches use DATABASE_URL.",
    )
    data_dir: Path = Field(
        Path(platformdirs.user_data_dir("kbbot")), description="Where the embedded PostgreSQL keeps its data."
    )

    @property
    def embedded(self) -> bool:
        """True when kbbot runs its own PostgreSQL on this machine."""
        return self.database_url is None


class EmbeddingSettings(_Group):
    """Embeddings: the model that embeds passages and questions (`create_embedder`)."""

    embedding_provider: Literal["local", "openai"] = Field(
        "local", description="`local` (offline all-MiniLM-L6-v2 or all-mpnet-base-v2) or `openai` (any "
        "OpenAI-compatible endpoint).",
    )
    embedding_model: str = Field(
        "", description="Model name; default all-MiniLM-L6-v2 (local; all-mpnet-base-v2 is an opt-in, "
        "docs/embeddings-mpnet.md) or text-embedding-3-small (openai).",
    )
    embedding_base_url: str | None = Field(
        None, description="Embeddings endpoint for `openai`; falls back to OPENAI_BASE_URL.",
    )
    embedding_api_key: SecretStr | None = Field(
        None, description="API key for the embeddings endpoint; falls back to OPENAI_API_KEY.",
    )
    embedding_batch_size: int = Field(64, ge=1, le=2048, description="Chunks per embedding call.")
    embedding_backend: Literal["auto", "onnx", "onnx-int8", "torch"] = Field(
        "auto",
        description="Runtime of the `local` model: `onnx` (ONNX Runtime), `onnx-int8` (quantized: faster, "
        "cosine ~0.993 to the others) or `torch` (sentence-transformers). `auto`: onnx when onnxruntime is "
        "installed, else torch. onnx and torch agree to 1e-5: switching between them needs no re-embed.",
    )
    embedding_threads: int | None = Field(
        None, ge=1, le=256,
        description="Threads per embedding call. Unset: the cores divided by the calls that run at once "
        "(KBBOT_SLACK_WORKERS in `kbbot serve`, one in the CLI).",
    )
    model_cache_dir: Path = Field(
        Path(platformdirs.user_cache_dir("kbbot")) / "models",
        description="Where the ONNX file built from the local model's weights is kept (built on first use; "
        "all-mpnet-base-v2 also unpacks its checked weights there, ~0.9 GB in all).",
    )

    @property
    def resolved_model(self) -> str:
        if self.embedding_model:
            return self.embedding_model
        return "all-MiniLM-L6-v2" if self.embedding_provider == "local" else "text-embedding-3-small"


class IndexSettings(_Group):
    """Indexing: how a sync chunks articles and builds the HNSW index (`Indexer`, `HnswOptions`)."""

    chunk_max_tokens: int = Field(
        200, ge=32, le=2000, description="Upper bound of a chunk, in embedding-model tokens.",
    )
    vector_storage: Literal["vector", "halfvec"] = Field(
        "vector",
        description="How the HNSW index stores vectors: `vector` (32-bit) or `halfvec` (16-bit: half the "
        "index size and build memory, small recall cost). A change rebuilds the index at the next sync.",
    )
    hnsw_m: int = Field(
        16, ge=2, le=100,
        description="HNSW graph degree (pgvector `m`); a change rebuilds the index at the next sync.",
    )
    hnsw_ef_construction: int = Field(
        64, ge=4, le=1000,
        description="HNSW build-time candidate list (pgvector `ef_construction`); a change rebuilds it.",
    )
    hnsw_build_memory_mb: int = Field(
        4096, ge=64,
        description="Most maintenance_work_mem an HNSW build may take; a build whose graph would not fit is "
        "refused with the size it needs (about 2.2 GB per million 384-dim vectors).",
    )
    hnsw_build_workers: int | None = Field(
        None, ge=0, le=64,
        description="Parallel workers for HNSW builds. Unset: cores - 1 with the embedded PostgreSQL, the "
        "server's max_parallel_maintenance_workers with DATABASE_URL.",
    )
    sources_file: Path | None = Field(
        None, description="YAML file declaring the sources that `kbbot sync`, the worker and /reindex read.",
    )
    prepare_answer_sentences: bool = Field(
        True,
        description="`kbbot serve` and `kbbot worker` embed the sentences of new passages in the background "
        "after a sync (lowest priority), so a first question on a topic answers without running the model on "
        "them. Off: each passage's sentences are embedded by the first answer that needs them.",
    )


class SearchSettings(_Group):
    """Search: how a question is searched and when the bot abstains (`Searcher`, `AnswerPipeline`)."""

    search_mode: Literal["hybrid", "dense", "lexical"] = Field(
        "hybrid", description="Retrieval: dense (pgvector HNSW), lexical (BM25) or both fused.",
    )
    top_k: int = Field(5, ge=1, le=50, description="Passages given to the answerer.")
    min_relevance: float = Field(
        0.40, ge=0.0, le=1.0,
        description="Below this cosine similarity of the best passage the bot abstains (calibrated, see "
        "BENCHMARKS.md).",
    )
    hnsw_ef_search: int = Field(
        200, ge=10, le=1000,
        description="pgvector hnsw.ef_search: recall/latency trade-off of dense search (200: Recall@10 0.98 "
        "against exact search at 100k chunks for ~1 ms more than 100; raise it for millions, see BENCHMARKS.md).",
    )
    query_rewrite: Literal["auto", "heuristic", "off"] = Field(
        "auto",
        description="Thread follow-ups rewritten into standalone questions before search: `auto` (LLM "
        "when configured, else heuristic), `heuristic`, or `off`.",
    )
    query_expansion: int = Field(
        0, ge=0, le=5,
        description="Extra query variants searched and fused with the question (0 = off; measured in "
        "BENCHMARKS.md).",
    )


class OpenAISettings(_Group):
    """OpenAI-compatible endpoint: for LLM answers, fine-tuning, and embeddings unless set apart."""

    openai_api_key: SecretStr | None = Field(
        None, validation_alias=_env("OPENAI_API_KEY"),
        description="Enables LLM answers (with OPENAI_BASE_URL for non-OpenAI endpoints).",
    )
    openai_base_url: str | None = Field(
        None, validation_alias=_env("OPENAI_BASE_URL"),
        description="OpenAI-compatible endpoint (Azure OpenAI, vLLM, Ollama...).",
    )

    @property
    def enabled(self) -> bool:
        """An endpoint is configured: answers are written by a model, fine-tuning can run."""
        return self.openai_api_key is not None or self.openai_base_url is not None


class LLMSettings(_Group):
    """LLM answers: the models that write answers, their limits and the tone-model routing."""

    llm_model: str = Field("gpt-4o-mini", description="Base chat model for answer synthesis.")
    llm_timeout_s: float = Field(
        20.0, gt=0, validation_alias=_env("KBBOT_LLM_TIMEOUT"),
        description="Seconds an LLM call may stay silent (connect, first token, between tokens) before "
        "the next model in the fallback chain is tried.",
    )
    llm_answer_budget_s: float = Field(
        45.0, gt=0, validation_alias=_env("KBBOT_LLM_ANSWER_BUDGET"),
        description="Wall-clock seconds for all LLM calls of one answer (retries and fallbacks included); "
        "when spent, the extractive answer is sent with a note.",
    )
    llm_rerank: bool = Field(
        False,
        description="Before answering, the LLM reorders the top fused passages by relevance (one call; on "
        "any failure the search order is kept). Off by default: one more model call per answer.",
    )
    llm_rerank_candidates: int = Field(
        20, ge=2, le=50, description="Passages sent to the LLM rerank; the answerer gets its best KBBOT_TOP_K.",
    )
    llm_rerank_budget_s: float = Field(
        5.0, gt=0, validation_alias=_env("KBBOT_LLM_RERANK_BUDGET"),
        description="Seconds the LLM rerank may take (capped by KBBOT_LLM_ANSWER_BUDGET) before the "
        "search order is used.",
    )
    llm_max_retries: int = Field(
        2, ge=0, le=10,
        description="Retries per model on 429/5xx/connection errors, with exponential backoff (honours "
        "Retry-After).",
    )
    llm_max_context_tokens: int = Field(
        6000, ge=500, le=1_000_000,
        description="Prompt size limit: lower-ranked passages are dropped or shortened to fit, never the "
        "question.",
    )
    llm_max_answer_tokens: int = Field(
        700, ge=50, le=100_000, description="Upper bound of the generated answer, in tokens.",
    )
    llm_temperature: float | None = Field(
        None, ge=0.0, le=2.0, description="Sampling temperature; unset sends none (reasoning models reject it).",
    )
    llm_uncited: Literal["mark", "abstain"] = Field(
        "mark",
        description="An LLM answer citing no passage: `mark` it with a warning note, or `abstain` "
        "(replace it with the I-don't-know message and the nearest articles).",
    )
    tone_model: str | None = Field(
        None,
        description="Fine-tuned support-tone model id; overrides the one activated with "
        "`kbbot finetune activate`. `none` disables the tone model.",
    )
    tone_routing: Literal["always", "channels", "share", "off"] = Field(
        "always",
        description="Which answers the tone model writes: `always`, only in `channels` "
        "(KBBOT_TONE_CHANNELS), a `share` of users for A/B (KBBOT_TONE_SHARE), or `off`.",
    )
    tone_channels: CsvList = Field(
        default_factory=list,
        description="Comma-separated Slack channel ids routed to the tone model (`dm` = direct "
        "messages, `cli` = the command line); a channel profile's `tone` wins over it (docs/slack.md).",
    )
    tone_share: float = Field(
        0.5, ge=0.0, le=1.0,
        description="Share of users (sticky, by hash of the user id) whose answers the tone model "
        "writes in `share` routing.",
    )


class SlackSettings(_Group):
    """Slack: the app's tokens, its HTTP server, who may /reindex, how answers are sent."""

    slack_bot_token: SecretStr | None = Field(
        None, validation_alias=_env("SLACK_BOT_TOKEN"), description="xoxb- token of the Slack app."
    )
    slack_signing_secret: SecretStr | None = Field(
        None, validation_alias=_env("SLACK_SIGNING_SECRET"), description="Verifies HTTP Events requests.",
    )
    slack_app_token: SecretStr | None = Field(
        None, validation_alias=_env("SLACK_APP_TOKEN"),
        description="xapp- token: when set, the bot runs in Socket Mode.",
    )
    slack_api_url: str = Field(
        "https://slack.com/api/", validation_alias=_env("SLACK_API_URL"),
        description="Slack Web API base URL (GovSlack, proxies, tests).",
    )
    port: int = Field(3000, ge=1, le=65535, validation_alias=_env("PORT"), description="HTTP port of `kbbot serve`.")
    admin_users: CsvList = Field(
        default_factory=list,
        description="Comma-separated Slack user ids allowed to /reindex (workspace admins always are).",
    )
    admin_groups: CsvList = Field(
        default_factory=list, description="Comma-separated Slack user-group ids allowed to /reindex.",
    )
    support_group: str | None = Field(
        None, description="Slack user-group id mentioned by the `Ask a human` button.",
    )
    host: str = Field("0.0.0.0", description="Interface `kbbot serve` listens on in HTTP mode.")
    slack_workers: int = Field(
        4, ge=1, le=64,
        description="Questions answered at once per process; more wait in a queue (Slack is acked at once). "
        "Extractive answers are CPU-bound: about the core count; LLM answers wait on the network: raise it.",
    )
    stale_after_days: int = Field(
        365, ge=1, description="Sources older than this are flagged as possibly out of date in answers (and, "
        "when often cited, listed in the gaps report's articles to review).",
    )
    channel_profiles_file: Path | None = Field(
        None, description="YAML file of channel profiles: each channel's audience, sources, whether it "
        "is a help channel, replies privately, and uses the tone model (docs/slack.md).",
    )


class LoggingSettings(_Group):
    """Logging: how much `kbbot` tells on stderr."""

    log_level: str = Field("INFO", description="Log level.")


class SchedulerSettings(_Group):
    """Scheduled refresh: when `kbbot worker` (or `kbbot serve` with KBBOT_SCHEDULER_IN_SERVE) syncs."""

    sync_interval_minutes: int = Field(
        15, ge=0, le=10080, description="Minutes between incremental syncs run by `kbbot worker` (0: none).",
    )
    sync_cron: str | None = Field(
        None, description="Crontab line for incremental syncs instead of the interval, e.g. `*/10 7-19 * * 1-5`.",
    )
    full_sync_cron: str = Field(
        "30 3 * * *",
        description="Crontab line of the full pass that removes articles deleted at the source (and moves "
        "the index to a newly configured embedding model); empty: never.",
    )
    scheduler_timezone: str = Field(
        "UTC", description="Timezone the cron lines are read in (IANA name, e.g. Europe/Paris).",
    )
    scheduler_in_serve: bool = Field(
        False, description="Also run the scheduled syncs inside `kbbot serve` (single-process deployments).",
    )
    gaps_digest_channel: str | None = Field(
        None, description="Channel id where `kbbot worker` posts the weekly knowledge-gaps digest (invite the "
        "bot there; needs SLACK_BOT_TOKEN); unset: no digest.",
    )
    gaps_digest_cron: str = Field(
        "0 9 * * 1", description="Crontab line of the gaps digest (in KBBOT_SCHEDULER_TIMEZONE); default "
        "Mondays 09:00.",
    )
    gaps_digest_days: int = Field(7, ge=1, le=365, description="Days of questions the gaps digest covers.")


@dataclass(frozen=True)
class Settings:
    """Every group, read once at start. Hand a part the group it uses (`settings.search`), not this."""

    storage: StorageSettings
    embeddings: EmbeddingSettings
    index: IndexSettings
    search: SearchSettings
    openai: OpenAISettings
    llm: LLMSettings
    slack: SlackSettings
    scheduler: SchedulerSettings
    logging: LoggingSettings

    @staticmethod
    @functools.cache
    def groups() -> dict[str, type[_Group]]:
        """Group attribute -> class, in the order of the documentation table."""
        hints = get_type_hints(Settings)
        return {f.name: hints[f.name] for f in fields(Settings)}

    @classmethod
    def defaults(cls) -> Settings:
        """The defaults alone, without reading the environment (what core constructors default to)."""
        return cls(**{name: group.model_construct() for name, group in cls.groups().items()})  # type: ignore[arg-type]


DEFAULTS = Settings.defaults()


def _group_of(field_name: str) -> str:
    for name, group in Settings.groups().items():
        if field_name in group.model_fields:
            return name
    raise ConfigError(f"Unknown setting {field_name!r}.")


def load_settings(*, _env_file: Any = ".env", **overrides: object) -> Settings:
    """Read every group once. Overrides use field names (`top_k=3`) or variable names (`OPENAI_API_KEY=`).

    pydantic's errors, from every group at once, become one message that names each variable at fault.
    """
    by_group: dict[str, dict[str, object]] = {name: {} for name in Settings.groups()}
    for key, value in overrides.items():
        by_group[_group_of(_field_name(key))][key] = value
    built: dict[str, _Group] = {}
    problems: list[str] = []
    first: ValidationError | None = None
    for name, group in Settings.groups().items():
        try:
            built[name] = group(_env_file=_env_file, **by_group[name])  # type: ignore[arg-type]
        except ValidationError as exc:
            first = first or exc
            problems.extend(_problem(group, err, _env_file) for err in exc.errors())
    if problems:
        one = len(problems) == 1
        raise ConfigError(f"Invalid setting{'' if one else 's'}: {'; '.join(problems)}. Fix {'it' if one else 'them'}, "
                          f"or unset {'it to use the default' if one else 'them to use the defaults'}.") from first
    return Settings(**built)  # type: ignore[arg-type]


_SECRET_WORDS = ("KEY", "TOKEN", "SECRET", "PASSWORD", "URL")


def _problem(group: type[_Group], err: Any, env_file: Any) -> str:
    """One setting at fault, as the person fixing it needs it: the variable, the value given unless it
    may hold a secret, where it was set, what is wrong, and the default."""
    loc = str(err["loc"][0]) if err["loc"] else ""
    field_name = next((n for n in group.model_fields if loc in (n, group.env_name(n))), None)
    if field_name is None:
        return f"{loc or group.__name__}: {err['msg']}"
    variable = group.env_name(field_name)
    given = err.get("input")
    annotation = str(group.model_fields[field_name].annotation)
    secret = "Secret" in annotation or any(word in variable for word in _SECRET_WORDS)
    shown = f"={given}" if isinstance(given, str) and not secret else ""
    where = " in the environment" if variable in os.environ else f" in {env_file}" if env_file else ""
    default = group.model_fields[field_name].get_default(call_default_factory=True)
    return f"{variable}{shown}{where}: {err['msg']}" + ("" if default in (None, "") else f" (default {default})")


def _field_name(key: str) -> str:
    """A field name from a field or variable name, for routing an override to its group."""
    if not key.isupper():
        return key
    for group in Settings.groups().values():
        for field_name in group.model_fields:
            if group.env_name(field_name) == key:
                return field_name
    raise ConfigError(f"Unknown setting {key!r}.")
