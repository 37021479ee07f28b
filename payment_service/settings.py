from typing import Literal

from pydantic import Field

from shared_domain.settings import ServiceSettings, failure_rate_field


class Settings(ServiceSettings):
    port: int = Field(8002, ge=1, le=65535, validation_alias="PAYMENT_SERVICE_PORT")
    db_name: str = Field("payment_db", validation_alias="DB_NAME")
    payment_failure_rate: float = failure_rate_field("PAYMENT_FAILURE_RATE")
    payment_refund_failure_rate: float = failure_rate_field("PAYMENT_REFUND_FAILURE_RATE")
    payment_provider: Literal["simulated", "http"] = Field(
        "simulated", validation_alias="PAYMENT_PROVIDER"
    )
    payment_provider_url: str = Field(
        "http://127.0.0.1:9090", validation_alias="PAYMENT_PROVIDER_URL"
    )
    payment_provider_api_key: str = Field("", validation_alias="PAYMENT_PROVIDER_API_KEY")
    payment_provider_timeout: float = Field(
        5.0, gt=0, le=120, validation_alias="PAYMENT_PROVIDER_TIMEOUT"
    )
