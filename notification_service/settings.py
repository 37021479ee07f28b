from pydantic import Field

from shared_domain.settings import ServiceSettings, failure_rate_field


class Settings(ServiceSettings):
    port: int = Field(8005, ge=1, le=65535, validation_alias="NOTIFICATION_SERVICE_PORT")
    db_name: str = Field("notification_db", validation_alias="DB_NAME")
    notification_failure_rate: float = failure_rate_field("NOTIFICATION_FAILURE_RATE")
    notification_max_attempts: int = Field(
        3, ge=1, le=20, validation_alias="NOTIFICATION_MAX_ATTEMPTS"
    )
    notification_retry_delay: float = Field(
        0.05, gt=0, le=60, validation_alias="NOTIFICATION_RETRY_DELAY"
    )
