from pydantic import Field

from shared_domain.settings import ServiceSettings


class Settings(ServiceSettings):
    port: int = Field(8003, ge=1, le=65535, validation_alias="INVENTORY_SERVICE_PORT")
    db_name: str = Field("inventory_db", validation_alias="DB_NAME")
