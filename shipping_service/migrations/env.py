from shared_domain.migrations import run_env
from shipping_service.settings import Settings
from shipping_service.tables import metadata

run_env(metadata, Settings)
