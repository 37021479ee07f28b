# One image for all six services; docker-compose.yml picks the service with its command,
# e.g. `python -m payment_service`. Each service creates and migrates its own database
# before it serves.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

COPY pyproject.toml alembic.ini ./
COPY shared_domain ./shared_domain
COPY saga_orchestrator ./saga_orchestrator
COPY order_service ./order_service
COPY payment_service ./payment_service
COPY inventory_service ./inventory_service
COPY shipping_service ./shipping_service
COPY notification_service ./notification_service

RUN pip install --no-cache-dir . \
    && rm -rf build ./*.egg-info

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin saga
USER saga

# saga_orchestrator, order, payment, inventory, shipping, notification
EXPOSE 8000 8001 8002 8003 8004 8005

CMD ["python", "-m", "saga_orchestrator"]
