from inventory_service.settings import Settings
from inventory_service.tables import metadata
from shared_domain.migrations import run_env

run_env(metadata, Settings)
