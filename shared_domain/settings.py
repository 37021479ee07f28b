"""Base settings every service extends: database, broker and messaging knobs.

Values come from the environment and an optional `.env` file. Bad values refuse to
start with a message that names the variable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import quote

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import URL


def failure_rate_field(env: str) -> float:
    """A chaos knob: probability in [0.0, 1.0] that an operation is made to fail."""
    return Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        validation_alias=env,
        description=f"{env}: probability (0.0-1.0) that the operation fails",
    )


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
    )

    db_host: str = Field("127.0.0.1", validation_alias="DB_HOST")
    db_port: int = Field(5432, ge=1, le=65535, validation_alias="DB_PORT")
    db_user: str = Field("postgres", validation_alias="DB_USER")
    db_password: str = Field("postgres", validation_alias="DB_PASSWORD")
    db_name: str = Field("postgres", validation_alias="DB_NAME")
    # Connections per process: DB_POOL_SIZE for the message handlers and commands (the
    # writers), DB_READ_POOL_SIZE for queries and health checks. Both open on demand.
    db_pool_size: int = Field(10, ge=1, le=200, validation_alias="DB_POOL_SIZE")
    db_read_pool_size: int = Field(3, ge=1, le=100, validation_alias="DB_READ_POOL_SIZE")
    # How long a writer connection keeps a prepared statement, and so its plan: a plan
    # made while a table was small is replaced within this time once the table has grown.
    db_statement_lifetime: float = Field(
        5.0, gt=0, le=3600, validation_alias="DB_STATEMENT_LIFETIME"
    )

    rabbitmq_host: str = Field("127.0.0.1", validation_alias="RABBITMQ_HOST")
    rabbitmq_port: int = Field(5672, ge=1, le=65535, validation_alias="RABBITMQ_PORT")
    rabbitmq_username: str = Field("guest", validation_alias="RABBITMQ_USERNAME")
    rabbitmq_password: str = Field("guest", validation_alias="RABBITMQ_PASSWORD")
    rabbitmq_vhost: str = Field("/", validation_alias="RABBITMQ_VHOST")
    prefetch_count: int = Field(64, ge=1, le=10_000, validation_alias="PREFETCH_COUNT")
    # Messages handled in one transaction at most, when several are waiting (services
    # whose handlers only touch their database); 1 gives every message its own.
    consumer_batch_size: int = Field(16, ge=1, le=1000, validation_alias="CONSUMER_BATCH_SIZE")

    host: str = Field("0.0.0.0", validation_alias="HOST")
    port: int = Field(8000, ge=1, le=65535)
    log_level: Literal["CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG"] = Field(
        "INFO", validation_alias="LOG_LEVEL"
    )
    # text: readable lines naming the service; json: one object a line, with the ids of
    # the message or request each line is about as fields (see shared_domain.logs).
    log_format: Literal["text", "json"] = Field("text", validation_alias="LOG_FORMAT")

    # A message whose handler fails for a transient reason is retried this many times,
    # with exponential backoff starting at retry_base_delay, then dead-lettered. The
    # defaults ride out roughly a minute of database or network trouble.
    message_max_retries: int = Field(8, ge=0, le=50, validation_alias="MESSAGE_MAX_RETRIES")
    retry_base_delay: float = Field(0.5, gt=0, le=60, validation_alias="RETRY_BASE_DELAY")
    retry_max_delay: float = Field(30.0, gt=0, le=3600, validation_alias="RETRY_MAX_DELAY")
    # A message that comes before one it follows (choreography's observer hears a
    # saga's events in any order) is tried again with the same backoff, for up to this
    # many seconds from its first try, then dead-lettered.
    message_max_wait: float = Field(600.0, gt=0, le=86_400, validation_alias="MESSAGE_MAX_WAIT")

    # The largest message a consumer reads (an order.created of 100 lines is about
    # 15 KB); a larger one is dead-lettered as too_large, its body cut to its first 64 KiB.
    max_message_bytes: int = Field(
        262_144, ge=4096, le=128 * 1024 * 1024, validation_alias="MAX_MESSAGE_BYTES"
    )

    # The outbox sweep publishes whatever the post-commit fast path left behind.
    outbox_sweep_interval: float = Field(0.5, gt=0, le=60, validation_alias="OUTBOX_SWEEP_INTERVAL")
    outbox_grace_period: float = Field(2.0, ge=0, le=600, validation_alias="OUTBOX_GRACE_PERIOD")
    # How long a commit waits for the broker to confirm its messages before it goes on
    # (an order answered, a message acked) and leaves them to be confirmed later; a
    # blocked broker (memory or disk alarm) is not waited on at all.
    outbox_publish_wait: float = Field(1.0, gt=0, le=60, validation_alias="OUTBOX_PUBLISH_WAIT")

    # A provider's circuit breaker (the card processor's): it opens after this many
    # outages in a row, and lets a probe through this many seconds after opening.
    circuit_breaker_threshold: int = Field(
        5, ge=1, le=1000, validation_alias="CIRCUIT_BREAKER_THRESHOLD"
    )
    circuit_breaker_reset: float = Field(
        10.0, gt=0, le=3600, validation_alias="CIRCUIT_BREAKER_RESET_SECONDS"
    )

    # Who runs the saga (docs/architecture.md, "Two styles"): the orchestrator sends each
    # step's command (orchestration), or each service reacts to the event before it
    # (choreography), the orchestrator then only observing unless SAGA_OBSERVER is off.
    # One value for the whole deployment: a process refuses to start beside others that
    # run another.
    saga_mode: Literal["orchestration", "choreography"] = Field(
        "orchestration", validation_alias="SAGA_MODE"
    )
    saga_observer: bool = Field(True, validation_alias="SAGA_OBSERVER")

    startup_timeout: float = Field(60.0, gt=0, validation_alias="STARTUP_TIMEOUT")
    # The largest request body a process reads; beyond it, 413 (a 100-line order is
    # about 15 KB).
    max_body_bytes: int = Field(
        65_536, ge=1024, le=16 * 1024 * 1024, validation_alias="MAX_BODY_BYTES"
    )

    # Who may do what (docs/operations.md, "Who may do what"). none: reads are open and
    # admin actions need ADMIN_API_KEY in X-Admin-Key (unset, they are disabled); apikey:
    # the operator's and admin's routes need OPERATOR_API_KEY or ADMIN_API_KEY as a bearer
    # credential; jwt: every route but health needs a bearer token with a role.
    auth_mode: Literal["none", "apikey", "jwt"] = Field("none", validation_alias="AUTH_MODE")
    admin_api_key: SecretStr | None = Field(None, validation_alias="ADMIN_API_KEY")
    operator_api_key: SecretStr | None = Field(None, validation_alias="OPERATOR_API_KEY")
    # Tokens (AUTH_MODE=jwt): HS256 with a shared secret, or RS256 against a public key
    # (PEM) or a JWKS file; the issuer, audience and expiry are always checked.
    jwt_algorithm: Literal["HS256", "RS256"] = Field("HS256", validation_alias="JWT_ALGORITHM")
    jwt_secret: SecretStr | None = Field(None, validation_alias="JWT_SECRET")
    jwt_public_key_file: Path | None = Field(None, validation_alias="JWT_PUBLIC_KEY_FILE")
    jwt_jwks_file: Path | None = Field(None, validation_alias="JWT_JWKS_FILE")
    jwt_issuer: str = Field("order-saga", min_length=1, validation_alias="JWT_ISSUER")
    jwt_audience: str = Field("order-saga-api", min_length=1, validation_alias="JWT_AUDIENCE")
    jwt_leeway: float = Field(30.0, ge=0, le=600, validation_alias="JWT_LEEWAY_SECONDS")

    @field_validator("admin_api_key", "operator_api_key")
    @classmethod
    def _strong_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        if len(value.get_secret_value()) < 12:
            raise ValueError("must be at least 12 characters (or unset)")
        return value

    @field_validator("jwt_secret")
    @classmethod
    def _long_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        if len(value.get_secret_value().encode()) < 32:
            raise ValueError("must be at least 32 bytes: a shorter HS256 key can be guessed")
        return value

    @field_validator("jwt_public_key_file", "jwt_jwks_file")
    @classmethod
    def _readable(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"no such file: {value}")
        return value

    @model_validator(mode="after")
    def _auth_complete(self) -> ServiceSettings:
        keys = (self.admin_api_key, self.operator_api_key)
        if self.auth_mode == "apikey" and not any(keys):
            raise ValueError("AUTH_MODE=apikey needs ADMIN_API_KEY or OPERATOR_API_KEY (or both)")
        if all(keys) and keys[0] == keys[1]:
            raise ValueError("OPERATOR_API_KEY must differ from ADMIN_API_KEY")
        if self.auth_mode == "jwt":
            if self.jwt_algorithm == "HS256" and self.jwt_secret is None:
                raise ValueError("AUTH_MODE=jwt with JWT_ALGORITHM=HS256 needs JWT_SECRET")
            if self.jwt_algorithm == "RS256" and not (
                self.jwt_public_key_file or self.jwt_jwks_file
            ):
                raise ValueError(
                    "AUTH_MODE=jwt with JWT_ALGORITHM=RS256 needs JWT_PUBLIC_KEY_FILE or "
                    "JWT_JWKS_FILE"
                )
        return self

    @field_validator("log_level", mode="before")
    @classmethod
    def _level_in_any_case(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("saga_mode", mode="before")
    @classmethod
    def _mode_in_any_case(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("log_format", mode="before")
    @classmethod
    def _format_in_any_case(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    def database_url(self, database: str | None = None) -> URL:
        return URL.create(
            "postgresql+asyncpg",
            username=self.db_user,
            password=self.db_password,
            host=self.db_host,
            port=self.db_port,
            database=database or self.db_name,
        )

    @property
    def amqp_url(self) -> str:
        return (
            f"amqp://{quote(self.rabbitmq_username, safe='')}:"
            f"{quote(self.rabbitmq_password, safe='')}@{self.rabbitmq_host}:"
            f"{self.rabbitmq_port}/{quote(self.rabbitmq_vhost, safe='')}"
        )

    @property
    def saga_style(self) -> str:
        """The deployment's saga style, as every process must agree on it."""
        if self.saga_mode == "choreography" and not self.saga_observer:
            return "choreography-unobserved"
        return self.saga_mode

    @property
    def amqp_display(self) -> str:
        return f"{self.rabbitmq_host}:{self.rabbitmq_port} vhost {self.rabbitmq_vhost!r}"

    @property
    def db_display(self) -> str:
        return f"{self.db_host}:{self.db_port}/{self.db_name}"
