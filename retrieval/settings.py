"""Settings, read once from the environment and `.env`, then passed in.

Every field documents itself: the README's configuration table is generated from this class
(`kbbot config --markdown`), so the two cannot drift apart.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import platformdirs
from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from retrieval.errors import ConfigError


def _env(*names: str) -> AliasChoices:
    return AliasChoices(*names)


# Comma-separated in the environment; NoDecode stops pydantic-settings from parsing it as JSON first.
CsvList = Annotated[list[str], NoDecode]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", populate_by_name=True
    )

    # --- storage -------------------------------------------------------------------------------
    database_url: SecretStr | None = Field(
        None,
        validation_alias=_env("DATABASE_URL"),
        description="PostgreSQL with pgvector >= 0.8.4. Unset: an embedded PostgreSQL is started.",
    )
    search_database_url: SecretStr | None = Field(
        None,
        validation_alias=_env("KBBOT_SEARCH_DATABASE_URL"),
        description="A read replica of DATABASE_URL (streaming replication) that searches read from; writes "
        "(answer log, feedback, syncs) stay on DATABASE_URL. Unset: searches use DATABASE_URL.",
    )
    data_dir: Path = Field(
        Path(platformdirs.user_data_dir("kbbot")),
        validation_alias=_env("KBBOT_DATA_DIR"),
        description="Where the embedded PostgreSQL keeps its data.",
    )

    # --- embeddings ----------------------------------------------------------------------------
    embedding_provider: Literal["local", "openai"] = Field(
        "local",
        validation_alias=_env("KBBOT_EMBEDDING_PROVIDER"),
        description="`local` (offline all-MiniLM-L6-v2) or `openai` (any OpenAI-compatible endpoint).",
    )
    embedding_model: str = Field(
        "",
        validation_alias=_env("KBBOT_EMBEDDING_MODEL"),
        description="Model name; default all-MiniLM-L6-v2 (local) or text-embedding-3-small (openai).",
    )
    embedding_base_url: str | None = Field(
        None,
        validation_alias=_env("KBBOT_EMBEDDING_BASE_URL"),
        description="Embeddings endpoint for `openai`; falls back to OPENAI_BASE_URL.",
    )
    embedding_api_key: SecretStr | None = Field(
        None,
        validation_alias=_env("KBBOT_EMBEDDING_API_KEY"),
        description="API key for the embeddings endpoint; falls back to OPENAI_API_KEY.",
    )
    embedding_batch_size: int = Field(
        64, ge=1, le=2048, validation_alias=_env("KBBOT_EMBEDDING_BATCH_SIZE"),
        description="Chunks per embedding call.",
    )

    # --- chunking and search -------------------------------------------------------------------
    chunk_max_tokens: int = Field(
        200, ge=32, le=2000, validation_alias=_env("KBBOT_CHUNK_MAX_TOKENS"),
        description="Upper bound of a chunk, in embedding-model tokens.",
    )
    search_mode: Literal["hybrid", "dense", "lexical"] = Field(
        "hybrid", validation_alias=_env("KBBOT_SEARCH_MODE"),
        description="Retrieval: dense (pgvector HNSW), lexical (BM25) or both fused.",
    )
    top_k: int = Field(
        5, ge=1, le=50, validation_alias=_env("KBBOT_TOP_K"),
        description="Passages given to the answerer.",
    )
    min_relevance: float = Field(
        0.40, ge=0.0, le=1.0, validation_alias=_env("KBBOT_MIN_RELEVANCE"),
        description="Below this cosine similarity of the best passage the bot abstains (calibrated, see "
        "BENCHMARKS.md).",
    )
    hnsw_ef_search: int = Field(
        200, ge=10, le=1000, validation_alias=_env("KBBOT_HNSW_EF_SEARCH"),
        description="pgvector hnsw.ef_search: recall/latency trade-off of dense search (200: Recall@10 0.98 "
        "against exact search at 100k chunks for ~1 ms more than 100; raise it for millions, see BENCHMARKS.md).",
    )
    vector_storage: Literal["vector", "halfvec"] = Field(
        "vector", validation_alias=_env("KBBOT_VECTOR_STORAGE"),
        description="How the HNSW index stores vectors: `vector` (32-bit) or `halfvec` (16-bit: half the "
        "index size and build memory, small recall cost). A change rebuilds the index at the next sync.",
    )
    hnsw_m: int = Field(
        16, ge=2, le=100, validation_alias=_env("KBBOT_HNSW_M"),
        description="HNSW graph degree (pgvector `m`); a change rebuilds the index at the next sync.",
    )
    hnsw_ef_construction: int = Field(
        64, ge=4, le=1000, validation_alias=_env("KBBOT_HNSW_EF_CONSTRUCTION"),
        description="HNSW build-time candidate list (pgvector `ef_construction`); a change rebuilds it.",
    )
    hnsw_build_memory_mb: int = Field(
        4096, ge=64, validation_alias=_env("KBBOT_HNSW_BUILD_MEMORY_MB"),
        description="Most maintenance_work_mem an HNSW build may take; a build whose graph would not fit is "
        "refused with the size it needs (about 2.2 GB per million 384-dim vectors).",
    )
    hnsw_build_workers: int | None = Field(
        None, ge=0, le=64, validation_alias=_env("KBBOT_HNSW_BUILD_WORKERS"),
        description="Parallel workers for HNSW builds. Unset: cores - 1 with the embedded PostgreSQL, the "
        "server's max_parallel_maintenance_workers with DATABASE_URL.",
    )
    sources_file: Path | None = Field(
        None, validation_alias=_env("KBBOT_SOURCES_FILE"),
        description="YAML file declaring the sources that `kbbot sync`, the worker and /reindex read.",
    )

    # --- answer synthesis (LLM) ----------------------------------------------------------------
    openai_api_key: SecretStr | None = Field(
        None, validation_alias=_env("OPENAI_API_KEY"),
        description="Enables LLM answers (with OPENAI_BASE_URL for non-OpenAI endpoints).",
    )
    openai_base_url: str | None = Field(
        None, validation_alias=_env("OPENAI_BASE_URL"),
        description="OpenAI-compatible endpoint (Azure OpenAI, vLLM, Ollama...).",
    )
    llm_model: str = Field(
        "gpt-4o-mini", validation_alias=_env("KBBOT_LLM_MODEL"),
        description="Base chat model for answer synthesis.",
    )
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
    llm_max_retries: int = Field(
        2, ge=0, le=10, validation_alias=_env("KBBOT_LLM_MAX_RETRIES"),
        description="Retries per model on 429/5xx/connection errors, with exponential backoff (honours "
        "Retry-After).",
    )
    llm_max_context_tokens: int = Field(
        6000, ge=500, le=1_000_000, validation_alias=_env("KBBOT_LLM_MAX_CONTEXT_TOKENS"),
        description="Prompt size limit: lower-ranked passages are dropped or shortened to fit, never the "
        "question.",
    )
    llm_max_answer_tokens: int = Field(
        700, ge=50, le=100_000, validation_alias=_env("KBBOT_LLM_MAX_ANSWER_TOKENS"),
        description="Upper bound of the generated answer, in tokens.",
    )
    llm_temperature: float | None = Field(
        None, ge=0.0, le=2.0, validation_alias=_env("KBBOT_LLM_TEMPERATURE"),
        description="Sampling temperature; unset sends none (reasoning models reject it).",
    )
    llm_uncited: Literal["mark", "abstain"] = Field(
        "mark", validation_alias=_env("KBBOT_LLM_UNCITED"),
        description="An LLM answer citing no passage: `mark` it with a warning note, or `abstain` "
        "(replace it with the I-don't-know message and the nearest articles).",
    )
    tone_model: str | None = Field(
        None, validation_alias=_env("KBBOT_TONE_MODEL"),
        description="Fine-tuned support-tone model id; overrides the one activated with "
        "`kbbot finetune activate`. `none` disables the tone model.",
    )
    tone_routing: Literal["always", "channels", "share", "off"] = Field(
        "always", validation_alias=_env("KBBOT_TONE_ROUTING"),
        description="Which answers the tone model writes: `always`, only in `channels` "
        "(KBBOT_TONE_CHANNELS), a `share` of users for A/B (KBBOT_TONE_SHARE), or `off`.",
    )
    tone_channels: CsvList = Field(
        default_factory=list, validation_alias=_env("KBBOT_TONE_CHANNELS"),
        description="Comma-separated Slack channel ids routed to the tone model (`dm` = direct "
        "messages, `cli` = the command line).",
    )
    tone_share: float = Field(
        0.5, ge=0.0, le=1.0, validation_alias=_env("KBBOT_TONE_SHARE"),
        description="Share of users (sticky, by hash of the user id) whose answers the tone model "
        "writes in `share` routing.",
    )
    query_rewrite: Literal["auto", "heuristic", "off"] = Field(
        "auto", validation_alias=_env("KBBOT_QUERY_REWRITE"),
        description="Thread follow-ups rewritten into standalone questions before search: `auto` (LLM "
        "when configured, else heuristic), `heuristic`, or `off`.",
    )
    query_expansion: int = Field(
        0, ge=0, le=5, validation_alias=_env("KBBOT_QUERY_EXPANSION"),
        description="Extra query variants searched and fused with the question (0 = off; measured in "
        "BENCHMARKS.md).",
    )

    # --- Slack ---------------------------------------------------------------------------------
    slack_bot_token: SecretStr | None = Field(
        None, validation_alias=_env("SLACK_BOT_TOKEN"), description="xoxb- token of the Slack app."
    )
    slack_signing_secret: SecretStr | None = Field(
        None, validation_alias=_env("SLACK_SIGNING_SECRET"),
        description="Verifies HTTP Events requests.",
    )
    slack_app_token: SecretStr | None = Field(
        None, validation_alias=_env("SLACK_APP_TOKEN"),
        description="xapp- token: when set, the bot runs in Socket Mode.",
    )
    slack_api_url: str = Field(
        "https://slack.com/api/", validation_alias=_env("SLACK_API_URL"),
        description="Slack Web API base URL (GovSlack, proxies, tests).",
    )
    port: int = Field(3000, ge=1, le=65535, validation_alias=_env("PORT"),
                      description="HTTP port of `kbbot serve`.")
    admin_users: CsvList = Field(
        default_factory=list, validation_alias=_env("KBBOT_ADMIN_USERS"),
        description="Comma-separated Slack user ids allowed to /reindex (workspace admins always are).",
    )
    admin_groups: CsvList = Field(
        default_factory=list, validation_alias=_env("KBBOT_ADMIN_GROUPS"),
        description="Comma-separated Slack user-group ids allowed to /reindex.",
    )
    support_group: str | None = Field(
        None, validation_alias=_env("KBBOT_SUPPORT_GROUP"),
        description="Slack user-group id mentioned by the `Ask a human` button.",
    )
    host: str = Field(
        "0.0.0.0", validation_alias=_env("KBBOT_HOST"),
        description="Interface `kbbot serve` listens on in HTTP mode.",
    )
    slack_workers: int = Field(
        4, ge=1, le=64, validation_alias=_env("KBBOT_SLACK_WORKERS"),
        description="Questions answered at once per process; more wait in a queue (Slack is acked at once). "
        "Extractive answers are CPU-bound: about the core count; LLM answers wait on the network: raise it.",
    )
    stale_after_days: int = Field(
        365, ge=1, validation_alias=_env("KBBOT_STALE_AFTER_DAYS"),
        description="Sources older than this are flagged as possibly out of date in answers.",
    )

    # --- operations ----------------------------------------------------------------------------
    log_level: str = Field("INFO", validation_alias=_env("KBBOT_LOG_LEVEL"), description="Log level.")

    # --- scheduled refresh (`kbbot worker`) ------------------------------------------------------
    sync_interval_minutes: int = Field(
        15, ge=0, le=10080, validation_alias=_env("KBBOT_SYNC_INTERVAL_MINUTES"),
        description="Minutes between incremental syncs run by `kbbot worker` (0: none).",
    )
    sync_cron: str | None = Field(
        None, validation_alias=_env("KBBOT_SYNC_CRON"),
        description="Crontab line for incremental syncs instead of the interval, e.g. `*/10 7-19 * * 1-5`.",
    )
    full_sync_cron: str = Field(
        "30 3 * * *", validation_alias=_env("KBBOT_FULL_SYNC_CRON"),
        description="Crontab line of the full pass that removes articles deleted at the source (and moves "
        "the index to a newly configured embedding model); empty: never.",
    )
    scheduler_timezone: str = Field(
        "UTC", validation_alias=_env("KBBOT_SCHEDULER_TIMEZONE"),
        description="Timezone the cron lines are read in (IANA name, e.g. Europe/Paris).",
    )
    scheduler_in_serve: bool = Field(
        False, validation_alias=_env("KBBOT_SCHEDULER_IN_SERVE"),
        description="Also run the scheduled syncs inside `kbbot serve` (single-process deployments).",
    )

    @field_validator("admin_users", "admin_groups", "tone_channels", mode="before")
    @classmethod
    def _split_csv(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("database_url", "search_database_url")
    @classmethod
    def _check_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(("postgresql", "postgres")):
            raise ValueError("must be a postgresql:// URL")
        return value

    @property
    def resolved_embedding_model(self) -> str:
        if self.embedding_model:
            return self.embedding_model
        return "all-MiniLM-L6-v2" if self.embedding_provider == "local" else "text-embedding-3-small"

    @property
    def llm_enabled(self) -> bool:
        return self.openai_api_key is not None or self.openai_base_url is not None


def _alias_of(field_name: str) -> str:
    field = Settings.model_fields.get(field_name)
    alias = getattr(field, "validation_alias", None) if field else None
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0])
    return field_name.upper()


def load_settings(**overrides: object) -> Settings:
    """Read settings once; turn pydantic's errors into one message that names each variable at fault."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = str(err["loc"][0]) if err["loc"] else "?"
            name = loc if loc.isupper() else _alias_of(loc)
            problems.append(f"{name}: {err['msg']}")
        raise ConfigError("Invalid configuration — " + "; ".join(problems)) from exc
