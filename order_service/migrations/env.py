from order_service.settings import Settings
from order_service.tables import metadata
from shared_domain.migrations import run_env

run_env(metadata, Settings)
