from saga_orchestrator.settings import Settings
from saga_orchestrator.tables import metadata
from shared_domain.migrations import run_env

run_env(metadata, Settings)
