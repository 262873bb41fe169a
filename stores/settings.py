"""The one settings class: every knob of the deployment, read from the environment.

Standard variable names (``DATABASE_URL``, ``NEO4J_URI``, ``OPENAI_API_KEY``…) are accepted
as they are, because that is what platforms and other tools already export; everything
Mnemograph-specific carries the ``MNEMOGRAPH_`` prefix.
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Annotated

from pydantic import AliasChoices, Field, SecretStr, StringConstraints, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

JWT_SECRET_MIN_BYTES = 32
"""Shortest HS256 secret accepted (RFC 7518: a key at least as long as the hash output)."""


class Settings(BaseSettings):
    """Deployment configuration. Absent services fall back to embedded ones in ``data_dir``."""

    model_config = SettingsConfigDict(
        env_prefix="MNEMOGRAPH_", env_file=None, extra="ignore", populate_by_name=True
    )

    data_dir: Path = Field(
        default=Path(".mnemograph"),
        description="Where embedded PostgreSQL, the graph server and the local model keep data.",
    )

    # --- PostgreSQL -------------------------------------------------------------------
    database_url: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("DATABASE_URL", "MNEMOGRAPH_DATABASE_URL"),
        description="Production Postgres; unset starts the embedded pgserver in data_dir.",
    )
    pool_min_size: int = Field(default=1, ge=1)
    pool_max_size: int = Field(default=10, ge=1)
    lock_pool_max_size: int = Field(
        default=20, ge=1, description="Connections for per-thread advisory locks."
    )
    embedded_pg_keep_running: bool = Field(
        default=False,
        description="Leave the embedded Postgres running at exit so the next start is instant.",
    )
    pgbouncer: bool = Field(
        default=False, description="Disable server-side prepared statements (PgBouncer)."
    )

    # --- Graph (Bolt) -----------------------------------------------------------------
    neo4j_uri: str | None = Field(
        default=None, validation_alias=AliasChoices("NEO4J_URI", "MNEMOGRAPH_NEO4J_URI")
    )
    neo4j_user: str = Field(
        default="neo4j", validation_alias=AliasChoices("NEO4J_USER", "MNEMOGRAPH_NEO4J_USER")
    )
    neo4j_password: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("NEO4J_PASSWORD", "MNEMOGRAPH_NEO4J_PASSWORD"),
    )
    neo4j_database: str | None = Field(
        default=None, description="Bolt database name; embedded ArcadeDB uses 'graph'."
    )

    # --- LLM --------------------------------------------------------------------------
    openai_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("OPENAI_API_KEY", "MNEMOGRAPH_OPENAI_API_KEY"),
    )
    openai_base_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("OPENAI_BASE_URL", "MNEMOGRAPH_OPENAI_BASE_URL"),
    )
    model: str = Field(
        default="gpt-4o-mini",
        description="Chat model name. 'fake' selects the deterministic zero-latency echo model "
        "(tests and benchmarks only).",
    )
    llm_timeout_s: float = Field(default=120.0, gt=0)
    llm_max_retries: int = Field(default=1, ge=0)
    local_llm_port: int = Field(default=0, ge=0, description="0 picks a free port.")
    local_llm_threads: int = Field(default=2, ge=1)

    # --- Embeddings -------------------------------------------------------------------
    embeddings: str = Field(
        default="local",
        description="'local' (packaged all-MiniLM-L6-v2, int8 ONNX), 'local-torch' (the same "
        "model in float32 on torch) or 'openai:<model>'.",
    )
    model_cache_dir: Path = Field(
        default=Path("~/.cache/mnemograph"),
        description="Where the int8 ONNX export of the local embedder is kept, once per machine.",
    )
    embedding_dims: int = Field(default=384, ge=1)
    torch_threads: int = Field(default=1, ge=1)

    # --- Long-term memory (issue 4) ---------------------------------------------------
    memory_weight_relevance: float = Field(
        default=0.5, ge=0, description="Recall score weight of hybrid (text + vector) relevance."
    )
    memory_weight_importance: float = Field(
        default=0.3, ge=0, description="Recall score weight of an item's importance (0-1)."
    )
    memory_weight_recency: float = Field(
        default=0.2, ge=0, description="Recall score weight of recency (since last seen)."
    )
    memory_recency_half_life_days: float = Field(
        default=30.0, gt=0, description="Days after which an unseen memory's recency halves."
    )
    memory_vector_cache_rows: int = Field(
        default=100_000,
        ge=0,
        description="Vectors of large users a process keeps in memory for exact search "
        "(1.5 kB each; 0 = always search in SQL).",
    )
    memory_dedup_threshold: float = Field(
        default=0.92,
        gt=0,
        le=1,
        description="Cosine at or above which a new memory merges into an existing one.",
    )

    keep_warm_s: float = Field(
        default=900.0,
        ge=0,
        description="CLI: keep the embedded services and the local model running between "
        "calls until idle this long (seconds); `mnemograph stop` stops them now. 0 = each call "
        "starts and stops its own.",
    )

    # --- Behaviour --------------------------------------------------------------------
    log_level: str = "WARNING"
    delta_messages: bool = Field(
        default=True,
        description="Store messages in a DeltaChannel (each checkpoint holds only new "
        "messages). Off: a plain reducer; see bench.growth for the trade-off.",
    )
    jwt_secret: SecretStr | None = Field(
        default=None,
        description="Accept HS256 JWT bearer tokens signed with this secret (at least "
        f"{JWT_SECRET_MIN_BYTES} bytes; shorter refuses to start); the token's `sub` must name "
        "an existing, not deleted account (its user id or its name). API keys keep working.",
    )
    jwt_audience: str | None = Field(default=None, description="Required `aud`, if set.")
    jwt_max_ttl_s: float = Field(
        default=24 * 3600,
        gt=0,
        description="Longest lifetime a JWT may have: `exp` at most this far from now, and "
        "from `iat` when the token has one. Longer-lived tokens are refused (401).",
    )
    compact_every_turns: int = Field(
        default=50,
        ge=0,
        description="Every N turns of a thread, drop checkpoints older than the newest "
        "message snapshot (state is unchanged; time travel before it is lost). 0 = off.",
    )
    pii_redaction: bool = Field(
        default=True,
        description="Redact emails, phones, card numbers, SSNs and IBANs before long-term "
        "memory and knowledge-graph writes.",
    )
    pii_regions: Annotated[
        list[Annotated[str, StringConstraints(strip_whitespace=True, to_upper=True)]], NoDecode
    ] = Field(
        # Same list as stores.pii.DEFAULT_REGIONS (settings may not import it; a test checks).
        default_factory=lambda: ["US", "GB", "FR", "DE", "ES", "IT", "NL", "IN", "BR", "JP", "AU"],
        description="ISO 3166 regions whose national phone formats PII redaction recognises "
        "(comma-separated or a JSON list; unknown codes refuse to start). Numbers written "
        "+CC... are found whatever this says. Each region adds time and false-positive risk.",
    )

    @field_validator("jwt_secret", mode="before")
    @classmethod
    def _strong_jwt_secret(cls, value: object) -> object:
        """An empty value is unset; anything shorter than 32 bytes is refused (an HMAC key
        shorter than the hash can be brute-forced from one token)."""
        raw = value.get_secret_value() if isinstance(value, SecretStr) else value
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            return None
        if isinstance(raw, str) and len(raw.encode()) < JWT_SECRET_MIN_BYTES:
            raise ValueError(
                f"must be at least {JWT_SECRET_MIN_BYTES} bytes (it has {len(raw.encode())}); "
                "e.g. `openssl rand -hex 32`"
            )
        return value

    @field_validator("pii_regions", mode="before")
    @classmethod
    def _split_pii_regions(cls, value: object) -> object:
        """``MNEMOGRAPH_PII_REGIONS=FR,DE`` as well as a JSON list."""
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part for part in text.split(",") if part.strip()]
        return value

    # --- Security and data lifecycle (issue 7) ------------------------------------------
    checkpoint_key: SecretStr | None = Field(
        default=None,
        description="Encrypt checkpoints (AES via LangGraph's EncryptedSerializer) with a key "
        "derived from this secret by SHA-256. Unset stores checkpoints unencrypted. Changing or "
        "losing it makes existing checkpoints unreadable.",
    )
    rate_limit_per_min: int = Field(
        default=600,
        ge=0,
        description="Requests per user per minute over HTTP before 429; 0 turns the limit off.",
    )
    address_rate_limit_per_min: int = Field(
        default=120,
        ge=0,
        description="Failed authentications (401s) per client address per minute; once spent, "
        "the address's requests to keyed routes get 429 before their key is checked. 0 = off.",
    )
    open_rate_limit_per_min: int = Field(
        default=1200,
        ge=0,
        description="Requests per client address per minute to the open routes (/health, "
        "/metrics, docs, inspector page) before 429; 0 = off.",
    )
    import_max_bytes: int = Field(
        default=20 * 1024 * 1024,
        ge=1024,
        description="Largest body `POST /me/import` accepts, in bytes, counted as they arrive "
        "(an export document can be far over the 256 KB every other route allows); checked "
        "after the key, before the body is parsed.",
    )
    retention_days: float | None = Field(
        default=None,
        gt=0,
        description="Default age for `mnemograph prune`: checkpoints older than this (except "
        "those a thread still needs) and memories not seen for this long are removed. Unset "
        "means prune needs --older-than.",
    )
    memory_keep_importance: float = Field(
        default=0.9,
        ge=0,
        le=1,
        description="Memories at or above this importance never expire through pruning.",
    )

    @cached_property
    def pg_data_dir(self) -> Path:
        return self.data_dir.resolve() / "pg"

    @cached_property
    def graph_data_dir(self) -> Path:
        return self.data_dir.resolve() / "arcadedb"

    @cached_property
    def model_dir(self) -> Path:
        return self.data_dir.resolve() / "models"


def get_settings() -> Settings:
    """Read settings now; never at import time, so tests can set the environment first."""
    return Settings()
