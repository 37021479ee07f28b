from shared_domain.runtime import main
from shipping_service.app import SERVICE

main(SERVICE)
