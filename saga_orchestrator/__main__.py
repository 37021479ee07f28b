from saga_orchestrator.app import SERVICE
from shared_domain.runtime import main

main(SERVICE)
