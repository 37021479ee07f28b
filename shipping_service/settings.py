from pydantic import Field

from shared_domain.settings import ServiceSettings, failure_rate_field


class Settings(ServiceSettings):
    port: int = Field(8004, ge=1, le=65535, validation_alias="SHIPPING_SERVICE_PORT")
    db_name: str = Field("shipping_db", validation_alias="DB_NAME")
    shipping_failure_rate: float = failure_rate_field("SHIPPING_FAILURE_RATE")
