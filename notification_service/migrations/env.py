from notification_service.settings import Settings
from notification_service.tables import metadata
from shared_domain.migrations import run_env

run_env(metadata, Settings)
