from typing import Literal

from pydantic import Field, field_validator

from shared_domain import rate_limits
from shared_domain.settings import ServiceSettings


class Settings(ServiceSettings):
    port: int = Field(8001, ge=1, le=65535, validation_alias="ORDER_SERVICE_PORT")
    db_name: str = Field("order_db", validation_alias="DB_NAME")
    # POST /orders at most this often (`10/second`, `100 per minute`), per customer or per
    # client address, counted by each replica on its own; unset or empty: no limit.
    order_rate_limit: str | None = Field(None, validation_alias="ORDER_RATE_LIMIT")
    order_rate_limit_by: Literal["customer", "client"] = Field(
        "customer", validation_alias="ORDER_RATE_LIMIT_BY"
    )
    # An Idempotency-Key is the customer's own, kept this many seconds after its order
    # (then the same key places a new order); the sweep looks every interval.
    idempotency_key_retention: float = Field(
        86_400.0, ge=1, le=366 * 86_400, validation_alias="IDEMPOTENCY_KEY_RETENTION_SECONDS"
    )
    idempotency_key_sweep_interval: float = Field(
        60.0, gt=0, le=86_400, validation_alias="IDEMPOTENCY_KEY_SWEEP_INTERVAL"
    )

    # Choreography: a saga with no outcome this many seconds after its order is unwound
    # (the order service sends `shipping.cancel`, and the undos run back from there); one
    # with none this long after the unwind fails, for a human to look at. The watcher
    # looks every interval.
    saga_deadline: float = Field(120.0, ge=1, le=86_400, validation_alias="SAGA_DEADLINE_SECONDS")
    deadline_check_interval: float = Field(
        1.0, gt=0, le=3600, validation_alias="DEADLINE_CHECK_INTERVAL"
    )

    @field_validator("order_rate_limit")
    @classmethod
    def _a_rate(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        try:
            if rate_limits.parse(value).amount < 1:
                raise ValueError
        except ValueError:
            raise ValueError(
                f"{value!r} is not a rate: say how many per what, e.g. '10/second' or "
                "'100 per minute'"
            ) from None
        return value.strip()
