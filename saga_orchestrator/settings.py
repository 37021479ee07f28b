from pydantic import Field

from shared_domain.settings import ServiceSettings


class Settings(ServiceSettings):
    port: int = Field(8000, ge=1, le=65535, validation_alias="ORCHESTRATOR_PORT")
    db_name: str = Field("orchestrator_db", validation_alias="DB_NAME")
    compensation_max_attempts: int = Field(
        5, ge=1, le=100, validation_alias="COMPENSATION_MAX_ATTEMPTS"
    )
    compensation_retry_delay: float = Field(
        0.5, gt=0, le=600, validation_alias="COMPENSATION_RETRY_DELAY"
    )
