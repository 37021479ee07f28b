from typing import Literal

from pydantic import Field

from shared_domain.settings import ServiceSettings, failure_rate_field


class Settings(ServiceSettings):
    port: int = Field(8004, ge=1, le=65535, validation_alias="SHIPPING_SERVICE_PORT")
    db_name: str = Field("shipping_db", validation_alias="DB_NAME")
    shipping_failure_rate: float = failure_rate_field("SHIPPING_FAILURE_RATE")
    # simulated: SHIPPING_FAILURE_RATE of bookings refused; http: a carrier's REST API,
    # through a circuit breaker
    shipping_carrier: Literal["simulated", "http"] = Field(
        "simulated", validation_alias="SHIPPING_CARRIER"
    )
    shipping_carrier_url: str = Field(
        "http://127.0.0.1:9091", validation_alias="SHIPPING_CARRIER_URL"
    )
    shipping_carrier_api_key: str = Field("", validation_alias="SHIPPING_CARRIER_API_KEY")
    shipping_carrier_timeout: float = Field(
        5.0, gt=0, le=120, validation_alias="SHIPPING_CARRIER_TIMEOUT"
    )
