from inventory_service.app import SERVICE
from shared_domain.runtime import main

main(SERVICE)
