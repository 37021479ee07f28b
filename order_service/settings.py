from pydantic import Field

from shared_domain.settings import ServiceSettings


class Settings(ServiceSettings):
    port: int = Field(8001, ge=1, le=65535, validation_alias="ORDER_SERVICE_PORT")
    db_name: str = Field("order_db", validation_alias="DB_NAME")
